# Quiver: the two commands are `make serve` and `make test`; both set everything up first.
# Builds use ninja (and ccache when present) in build/ (RelWithDebInfo), build-asan/, build-tsan/.

BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all setup configure build python test test-cpp test-python test-asan test-tsan serve demo \
	bench bench-cpp bench-tier bench-resp bench-shm bench-durability bench-object-store bench-history bench-schema-change bench-feast feast-suite bench-attacks soak fuzz format lint tidy clean

all: build python

setup:
	@./scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DQUIVER_BUILD_PYTHON=ON \
	  $(CMAKE_ARGS) > /dev/null

# quiverd, the tests, the benchmarks and the Python extension, from the same objects; then the
# Python package and its `quiver` CLI into .venv (python).
build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The Python package (python/: scikit-build-core + nanobind, same CMake project) into .venv. Its
# build tree is $(BUILD) itself, configured as `build` configures it: the extension `build` made
# is installed as it is, not compiled again.
python: build
	@.venv/bin/pip install --no-build-isolation --no-deps --quiet ./python \
	  --config-settings=build-dir=$(CURDIR)/$(BUILD) \
	  --config-settings=cmake.define.QUIVER_BUILD_TESTS=ON \
	  --config-settings=cmake.define.QUIVER_BUILD_BENCHMARKS=ON
	@# .venv-feast (Feast's tests, requirements-feast.txt) gets the same package, linked.
	@ln -sfn "$$(.venv/bin/python -c 'import os, quiver; print(os.path.dirname(quiver.__file__))')" \
	  "$$(.venv-feast/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/quiver"

# Every test: the C++ tests, the end-to-end tests against the real quiverd, then the engine
# tests and the end-to-end tests again under ASan+UBSan, and the concurrency test under TSan.
test: lint test-cpp test-python test-asan test-tsan

test-cpp: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-python: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python -m pytest tests -q
	@# Feast's online-store tests in their own venv (tests/feast_store; the run above skips them).
	@QUIVERD=$(BUILD)/quiverd .venv-feast/bin/python -m pytest tests/feast_store -q

test-asan: python
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQUIVER_SANITIZE="address;undefined" \
	  -DQUIVER_BUILD_BENCHMARKS=OFF > /dev/null
	@cmake --build build-asan -j $(JOBS) --target engine_test engine_concurrency_test schema_fuzz \
	  codec_fuzz codec_test storage_test storage_fuzz resp_test resp_fuzz keyspace_fuzz app_test quiverd \
	  objstore_test \
	  shm_test shm_concurrency_test shm_stress_reader shm_fuzz shm_reader
	@ASAN_OPTIONS=detect_leaks=1 ARROW_DEFAULT_MEMORY_POOL=system \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS)
	@# tests/bench only checks that the benchmark scripts run and report: not again under ASan.
	@ASAN_OPTIONS=detect_leaks=1 ARROW_DEFAULT_MEMORY_POOL=system QUIVERD=build-asan/quiverd \
	  .venv/bin/python -m pytest tests -q --ignore=tests/bench

test-tsan: setup
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUIVER_SANITIZE=thread \
	  -DQUIVER_BUILD_BENCHMARKS=OFF > /dev/null
	@cmake --build build-tsan -j $(JOBS) --target engine_concurrency_test storage_test resp_test \
	  shm_concurrency_test shm_stress_reader
	@# detect_deadlocks=0: FLUSHALL holds the keyspace's 64 shard locks and then the log's, more
	@# than the lock-order detector can track (64); data races are still reported.
	@TSAN_OPTIONS="halt_on_error=1 detect_deadlocks=0 suppressions=$(CURDIR)/scripts/tsan-suppressions.txt" \
	  ARROW_DEFAULT_MEMORY_POOL=system \
	  ctest --test-dir build-tsan --output-on-failure -R "Concurrency|StorageTest|KeyspacePersistence"

# The crash test with many more kill-and-restart cycles (SOAK_CYCLES, default 500), against the
# normal quiverd.
SOAK_CYCLES ?= 500
soak: build python
	@CRASH_CYCLES=$(SOAK_CYCLES) QUIVERD=$(BUILD)/quiverd .venv/bin/python -m pytest -q \
	  tests/e2e/test_durability.py -k sigkill

# The server on its embedded default: 127.0.0.1:8080, ./quiver-data (docs/http.md).
serve: build python
	@./$(BUILD)/quiverd --data-dir ./quiver-data

# The engine end to end without a server: load, read, write an Arrow file (apps/quiver_demo.cc).
demo: build
	@./$(BUILD)/apps/quiver-demo --data-dir ./quiver-data

# Quiver against Redis (bench/suite, docs/benchmarks.md): quiverd over HTTP and Flight, the
# embedded engine, redis-server with blobs and with hashes, all started here; writes
# bench/results/<timestamp>/. BENCH_ROWS (default 100,000; 10000000 is the full size).
bench: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python bench/suite/run.py

# The C++ microbenchmarks: engine, HTTP and Flight from C++ clients (BENCH_ROWS, default 10,000,000),
# and the keyspace's lookups.
bench-cpp: build
	@./$(BUILD)/bench/engine_benchmark --benchmark_counters_tabular=true
	@./$(BUILD)/bench/http_benchmark
	@./$(BUILD)/bench/flight_benchmark
	@./$(BUILD)/bench/keyspace_benchmark

# quiverd's Redis protocol against redis-server with redis-benchmark, 1 and 2 server threads,
# pipelines 1 and 16, and memory per key (bench/suite/resp.py; BENCH_REQUESTS, BENCH_RUNS, ...).
bench-resp: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python bench/suite/resp.py

# Shared-memory readers (Python hot path, shm read(), HTTP, embedded) on 10M rows, and the C++
# reader against the in-process engine (bench/suite/shm.py, bench/shm_benchmark.cc).
bench-shm: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python bench/suite/shm.py
	@./$(BUILD)/bench/shm_benchmark --benchmark_counters_tabular=true

# Peak resident memory under the memory attacks of issue 21, with and without --maxmemory
# (bench/suite/attacks.py; QUIVERD picks the binary, BENCH_FLAGS adds flags).
bench-attacks: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python bench/suite/attacks.py

# A table larger than memory on the disk tier, against the disk itself and the all-memory table
# (docs/tiering.md; BENCH_ROWS, BENCH_RESIDENT, BENCH_READS; BENCH_TIER_DIR: the tier's disk).
bench-tier: build
	@./$(BUILD)/bench/tier_benchmark --dir $(or $(BENCH_TIER_DIR),$(BUILD)/bench-tier)

# Write throughput per fsync policy and restart time (docs/durability.md; BENCH_ROWS, BENCH_SECONDS).
bench-durability: build
	@./$(BUILD)/bench/durability_benchmark

# Backups to a local S3 server (moto) and bootstrap of an empty node from them: upload throughput,
# bootstrap time and its split (bench/suite/object_store.py; BENCH_ROWS, BENCH_LOG_ROWS, BENCH_RUNS).
bench-object-store: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python bench/suite/object_store.py

bench-history: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python bench/suite/history.py

# An online schema change on a 10M-row table: time, peak memory, reads meanwhile.
bench-schema-change: build python
	@QUIVERD=$(BUILD)/quiverd .venv/bin/python bench/suite/schema_change.py

# Feast's online serving through Quiver against Feast's Redis online store (docs/feast.md).
bench-feast: build python
	@QUIVERD=$(BUILD)/quiverd .venv-feast/bin/python bench/suite/feast_store.py

# Feast's own online-store tests and benchmark against quiver.feast (docs/feast.md); needs a
# checkout of github.com/feast-dev/feast: make feast-suite FEAST_SRC=/path/to/feast.
feast-suite: build python
	@QUIVERD=$(BUILD)/quiverd ./scripts/feast-suite.sh $(FEAST_SRC)

# Coverage-guided fuzzing with libFuzzer (needs clang and its fuzzer runtime: apt-get install
# clang libclang-rt-14-dev; Debian 12's clang leaves the runtime to a recommended package).
# FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: setup
	@cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DQUIVER_FUZZ=ON \
	  -DQUIVER_SANITIZE="address;undefined" -DQUIVER_BUILD_TESTS=ON -DQUIVER_BUILD_BENCHMARKS=OFF > /dev/null
	@cmake --build build-fuzz --target schema_fuzz codec_fuzz resp_fuzz keyspace_fuzz storage_fuzz \
	  shm_fuzz
	@mkdir -p build-fuzz/corpus/schema build-fuzz/corpus/codec
	@cp src/engine/fuzz_corpus/schema/* build-fuzz/corpus/schema/
	@cp src/server/codec/fuzz_corpus/codec/* build-fuzz/corpus/codec/
	@./build-fuzz/src/schema_fuzz -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus/schema
	@ASAN_OPTIONS=detect_leaks=1 ARROW_DEFAULT_MEMORY_POOL=system \
	  ./build-fuzz/src/codec_fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 build-fuzz/corpus/codec
	@mkdir -p build-fuzz/corpus/resp && cp src/server/resp/fuzz_corpus/resp/* build-fuzz/corpus/resp/
	@./build-fuzz/src/resp_fuzz -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus/resp
	@mkdir -p build-fuzz/corpus/keyspace && cp src/storage/fuzz_corpus/keyspace/* build-fuzz/corpus/keyspace/
	@./build-fuzz/src/keyspace_fuzz -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus/keyspace
	@mkdir -p build-fuzz/corpus/storage && cp src/storage/fuzz_corpus/storage/* build-fuzz/corpus/storage/
	@ARROW_DEFAULT_MEMORY_POOL=system ./build-fuzz/src/storage_fuzz -max_total_time=$(FUZZ_SECONDS) \
	  -rss_limit_mb=4096 build-fuzz/corpus/storage
	@mkdir -p build-fuzz/corpus/shm && cp src/shm/fuzz_corpus/shm/* build-fuzz/corpus/shm/
	@ARROW_DEFAULT_MEMORY_POOL=system ./build-fuzz/src/shm_fuzz -max_total_time=$(FUZZ_SECONDS) \
	  build-fuzz/corpus/shm

SOURCES = find src apps bench python/ext -name '*.cc' -o -name '*.h'
LIBRARY_SOURCES = find src apps python/ext -name '*.cc' ! -name '*_test.cc' ! -name '*_fuzz.cc'

format:
	@$(SOURCES) | xargs clang-format -i

# The checks `make test` runs first (scripts/lint.sh): every file formatted as .clang-format says,
# and .clang-tidy's checks on the library and program sources, every finding an error. The static
# analyzer's checks (clang-analyzer-*, several minutes here) are left to `make tidy`.
lint: build
	@./scripts/lint.sh $(BUILD) $(JOBS)

# Every check of .clang-tidy, the static analyzer's included.
tidy: build
	@$(LIBRARY_SOURCES) | sort | xargs -P $(JOBS) -n 4 clang-tidy -p $(BUILD) --quiet

clean:
	@rm -rf build build-asan build-tsan build-fuzz build-python
