// A deterministic stand-in for libFuzzer, so fuzz targets run under g++ in `make test`:
//
//   <target> [--iterations N] [--seed S] CORPUS_FILE_OR_DIR...
//
// Runs LLVMFuzzerTestOneInput on every corpus input, then on N mutations of them (byte flips,
// insertions, deletions, splices, and tokens from the inputs themselves). A crash or abort in
// the target fails the run. Real coverage-guided fuzzing: `make fuzz` with clang and libFuzzer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string Mutate(const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  std::string input = corpus[rng() % corpus.size()];
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t position = input.empty() ? 0 : rng() % (input.size() + 1);
    switch (rng() % 5) {
      case 0:  // flip a byte
        if (!input.empty()) input[position % input.size()] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 1:  // insert a random byte
        input.insert(position, 1, static_cast<char>(rng() % 256));
        break;
      case 2:  // delete a stretch
        if (!input.empty()) input.erase(position % input.size(), 1 + rng() % 8);
        break;
      case 3: {  // splice in a piece of another input
        const std::string& other = corpus[rng() % corpus.size()];
        if (!other.empty()) {
          const size_t start = rng() % other.size();
          input.insert(position, other.substr(start, 1 + rng() % 16));
        }
        break;
      }
      default:  // duplicate a stretch (nesting, repeated fields)
        if (!input.empty()) {
          const size_t start = position % input.size();
          input.insert(start, input.substr(start, 1 + rng() % 32));
        }
        break;
    }
  }
  return input;
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = 20000;
  uint64_t seed = 1;
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--iterations" && i + 1 < argc) {
      iterations = std::atol(argv[++i]);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        corpus.push_back(ReadFile(entry.path()));
      }
    } else {
      corpus.push_back(ReadFile(arg));
    }
  }
  if (corpus.empty()) corpus.push_back("");
  for (const std::string& input : corpus) Run(input);
  std::mt19937_64 rng(seed);
  for (long i = 0; i < iterations; ++i) Run(Mutate(corpus, rng));
  std::printf("fuzz driver: %zu corpus inputs and %ld mutations ran without a failure\n",
              corpus.size(), iterations);
  return 0;
}
