# Locates Arrow C++ (core, compute, Parquet, Flight, Dataset, S3) and defines imported targets:
#   quiver::arrow  quiver::arrow_compute  quiver::parquet  quiver::arrow_flight
#   quiver::arrow_dataset  quiver::arrow_s3
# First a system Arrow through find_package(Arrow CONFIG); otherwise the headers and versioned
# shared libraries of the pinned pyarrow wheel in the project's .venv, imported by full path with
# the wheel's directory in every binary's RPATH, so nothing needs LD_LIBRARY_PATH.

set(QUIVER_PYTHON "${PROJECT_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
    "Python interpreter whose pyarrow wheel provides Arrow C++ when no system Arrow is found")
option(QUIVER_USE_SYSTEM_ARROW "Try find_package(Arrow) before the pyarrow wheel" ON)

if(QUIVER_USE_SYSTEM_ARROW)
  find_package(Arrow CONFIG QUIET)
endif()

if(Arrow_FOUND)
  find_package(Parquet CONFIG REQUIRED)
  find_package(ArrowFlight CONFIG REQUIRED)
  find_package(ArrowDataset CONFIG REQUIRED)
  find_package(ArrowCompute CONFIG QUIET)
  message(STATUS "Quiver: system Arrow ${Arrow_VERSION}")
  add_library(quiver::arrow INTERFACE IMPORTED)
  target_link_libraries(quiver::arrow INTERFACE Arrow::arrow_shared)
  add_library(quiver::arrow_compute INTERFACE IMPORTED)
  if(TARGET ArrowCompute::arrow_compute_shared)
    target_link_libraries(quiver::arrow_compute INTERFACE ArrowCompute::arrow_compute_shared)
  endif()
  add_library(quiver::parquet INTERFACE IMPORTED)
  target_link_libraries(quiver::parquet INTERFACE Parquet::parquet_shared)
  add_library(quiver::arrow_flight INTERFACE IMPORTED)
  target_link_libraries(quiver::arrow_flight INTERFACE ArrowFlight::arrow_flight_shared)
  add_library(quiver::arrow_dataset INTERFACE IMPORTED)
  target_link_libraries(quiver::arrow_dataset INTERFACE ArrowDataset::arrow_dataset_shared)
  # A system Arrow built with S3 has it in libarrow itself.
  add_library(quiver::arrow_s3 INTERFACE IMPORTED)
  target_link_libraries(quiver::arrow_s3 INTERFACE Arrow::arrow_shared)
  return()
endif()

if(NOT EXISTS "${QUIVER_PYTHON}")
  message(FATAL_ERROR "No system Arrow and no Python at ${QUIVER_PYTHON}: run scripts/setup.sh "
                      "(or make setup) first, or pass -DQUIVER_PYTHON=/path/to/python")
endif()
execute_process(
  COMMAND "${QUIVER_PYTHON}" -c
          "import pyarrow as pa; print(pa.__version__); print(pa.get_include()); print(pa.get_library_dirs()[0])"
  OUTPUT_VARIABLE _quiver_pyarrow_out
  RESULT_VARIABLE _quiver_pyarrow_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _quiver_pyarrow_rc EQUAL 0)
  message(FATAL_ERROR "${QUIVER_PYTHON} cannot import pyarrow: run scripts/setup.sh")
endif()
string(REPLACE "\n" ";" _quiver_pyarrow_out "${_quiver_pyarrow_out}")
list(GET _quiver_pyarrow_out 0 QUIVER_ARROW_VERSION)
list(GET _quiver_pyarrow_out 1 QUIVER_ARROW_INCLUDE_DIR)
list(GET _quiver_pyarrow_out 2 QUIVER_ARROW_LIB_DIR)
set(QUIVER_ARROW_LIB_DIR "${QUIVER_ARROW_LIB_DIR}" CACHE INTERNAL "")
message(STATUS "Quiver: Arrow ${QUIVER_ARROW_VERSION} from the pyarrow wheel in ${QUIVER_ARROW_LIB_DIR}")

# The wheel ships libNAME.so.<major*100> (its SONAME); link that file by full path.
function(_quiver_import_wheel_lib target libname)
  file(GLOB _candidates "${QUIVER_ARROW_LIB_DIR}/lib${libname}.so.[0-9]*")
  list(FILTER _candidates INCLUDE REGEX "lib${libname}\\.so\\.[0-9]+$")
  if(NOT _candidates)
    message(FATAL_ERROR "lib${libname}.so.* not found in ${QUIVER_ARROW_LIB_DIR}")
  endif()
  list(GET _candidates 0 _path)
  add_library(${target} SHARED IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION "${_path}"
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${QUIVER_ARROW_INCLUDE_DIR}"
    INTERFACE_INCLUDE_DIRECTORIES "${QUIVER_ARROW_INCLUDE_DIR}")
  foreach(_dep IN LISTS ARGN)
    set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_LIBRARIES ${_dep})
  endforeach()
endfunction()

_quiver_import_wheel_lib(quiver::arrow arrow)
_quiver_import_wheel_lib(quiver::arrow_compute arrow_compute quiver::arrow)
_quiver_import_wheel_lib(quiver::parquet parquet quiver::arrow)
_quiver_import_wheel_lib(quiver::arrow_flight arrow_flight quiver::arrow)
_quiver_import_wheel_lib(quiver::arrow_acero arrow_acero quiver::arrow_compute)
_quiver_import_wheel_lib(quiver::arrow_dataset arrow_dataset quiver::parquet quiver::arrow_acero)
# S3 lives in its own library in the wheel; linking it registers the s3:// scheme with
# arrow::fs::FileSystemFromUri.
_quiver_import_wheel_lib(quiver::arrow_s3 arrow_s3 quiver::arrow)

# Every binary finds the wheel's libraries through its RPATH, in the build tree and installed.
list(APPEND CMAKE_BUILD_RPATH "${QUIVER_ARROW_LIB_DIR}")
list(APPEND CMAKE_INSTALL_RPATH "${QUIVER_ARROW_LIB_DIR}")
