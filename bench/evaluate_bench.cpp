// Throughput and memory of `ccm-gateway evaluate` against a plain RapidJSON parse of the same
// NDJSON, measured in the same run on the same machine (docs/benchmarks.md).
//
//   evaluate_bench --binary build/ccm-gateway --source DIR... --mb N [--work DIR] [--repeat R]
//   evaluate_bench --corpus-only --source DIR... --mb N --work DIR    (the corpus, for bench/sync-run)
//
// 1. Builds a corpus of about N MB by replicating the NDJSON files under the source directories;
//    copy k rewrites the first 8 hex digits of every UUID (id XOR k), so every copy is a new set of
//    patients with their own conditions and encounters (references stay consistent), not
//    duplicates that de-duplication would fold away.
// 2. Baseline: read every line with std::getline and rapidjson::Document::Parse it (default
//    flags, built with the same RapidJSON settings as the gateway, e.g. RAPIDJSON_SSE2), one
//    thread -- "a plain RapidJSON parse of the same files".
// 3. Runs the real binary: `evaluate --threads 1` and `--threads 2`, report to /dev/null, timing
//    the wall clock and taking the peak resident set size from wait4().
// Each measurement is repeated (default 3) and the best time kept; the corpus stays in the page
// cache between runs (it is read once before timing), so disk speed is not what is measured.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <rapidjson/document.h>

namespace fs = std::filesystem;

namespace {

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Rewrites the first 8 hex digits of every UUID-shaped token (8-4-4-4-12) with (value XOR k).
void RewriteUuids(std::string& s, unsigned k) {
  static constexpr int kGroups[] = {8, 4, 4, 4, 12};
  for (std::size_t i = 0; i + 36 <= s.size(); ++i) {
    if (!IsHex(s[i]) || (i > 0 && IsHex(s[i - 1]))) continue;
    std::size_t p = i;
    bool ok = true;
    for (int g = 0; g < 5 && ok; ++g) {
      for (int j = 0; j < kGroups[g]; ++j, ++p) ok = ok && IsHex(s[p]);
      if (g < 4) ok = ok && s[p++] == '-';
    }
    if (!ok || (p < s.size() && IsHex(s[p]))) continue;
    unsigned long v = std::stoul(s.substr(i, 8), nullptr, 16) ^ k;
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08lx", v);
    std::memcpy(&s[i], buf, 8);
    i = p - 1;
  }
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Builds the corpus; returns its size in bytes.
std::size_t MakeCorpus(const std::vector<fs::path>& sources, const fs::path& out_dir,
                       std::size_t target_bytes) {
  std::vector<std::pair<std::string, std::string>> files;  // name, content
  std::size_t one_copy = 0;
  for (const auto& dir : sources) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file() || e.path().extension() != ".ndjson" ||
          e.path().filename() == "log.ndjson") {
        continue;
      }
      files.emplace_back(dir.filename().string() + "-" + e.path().filename().string(),
                         Slurp(e.path()));
      one_copy += files.back().second.size();
    }
  }
  std::sort(files.begin(), files.end());
  unsigned copies = static_cast<unsigned>(std::max<std::size_t>(1, target_bytes / one_copy));
  fs::remove_all(out_dir);
  fs::create_directories(out_dir);
  std::size_t total = 0;
  for (const auto& [name, content] : files) {
    std::ofstream out(out_dir / name, std::ios::binary);
    for (unsigned k = 0; k < copies; ++k) {
      std::string copy = content;
      if (k != 0) RewriteUuids(copy, k);
      out.write(copy.data(), static_cast<std::streamsize>(copy.size()));
      total += copy.size();
    }
  }
  std::printf("corpus: %zu file(s), %u cop(ies) of %.1f MB = %.1f MB in %s\n", files.size(), copies,
              one_copy / 1e6, total / 1e6, out_dir.c_str());
  return total;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double BaselineParse(const fs::path& dir, std::size_t* docs) {
  auto t0 = std::chrono::steady_clock::now();
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) {
      rapidjson::Document d;
      d.Parse(line.c_str());  // the fastest plain call (null-terminated: SIMD string scanning)
      n += d.IsObject() ? 1 : 0;
    }
  }
  *docs = n;
  return Seconds(t0);
}

struct ChildRun {
  double seconds = 0;
  long peak_kb = 0;
  int status = -1;
};

ChildRun RunBinary(const std::string& binary, const fs::path& corpus, int threads) {
  std::string t = std::to_string(threads);
  // The report goes to stdout, redirected to /dev/null (not --out, which names a file).
  std::vector<std::string> args = {binary,          "evaluate",  "--month", "2026-10",  "--input",
                                   corpus.string(), "--threads", t,         "--format", "ndjson"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  ChildRun r;
  int status = 0;
  rusage ru{};
  ::wait4(pid, &status, 0, &ru);
  r.seconds = Seconds(t0);
  r.peak_kb = ru.ru_maxrss;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string binary = "build/ccm-gateway";
  std::vector<fs::path> sources;
  std::size_t mb = 100;
  fs::path work = "build/bench-corpus";
  int repeat = 3;
  bool corpus_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--binary") {
      binary = next();
    } else if (a == "--source") {
      sources.emplace_back(next());
      while (i + 1 < argc && argv[i + 1][0] != '-') sources.emplace_back(argv[++i]);
    } else if (a == "--mb") {
      mb = std::stoul(next());
    } else if (a == "--work") {
      work = next();
    } else if (a == "--repeat") {
      repeat = std::stoi(next());
    } else if (a == "--corpus-only") {
      corpus_only = true;
    } else {
      std::fprintf(stderr,
                   "usage: evaluate_bench --binary PATH --source DIR... --mb N [--work DIR] "
                   "[--repeat R] [--corpus-only]\n");
      return 2;
    }
  }
  if (sources.empty()) {
    std::fprintf(stderr, "--source DIR is required\n");
    return 2;
  }
  std::size_t bytes = MakeCorpus(sources, work, mb * 1'000'000);
  if (corpus_only) return 0;
  std::size_t docs = 0;
  BaselineParse(work, &docs);  // warm the page cache
  double base = 1e9, one = 1e9, two = 1e9;
  long peak_one = 0, peak_two = 0;
  for (int r = 0; r < repeat; ++r) {
    base = std::min(base, BaselineParse(work, &docs));
    ChildRun a = RunBinary(binary, work, 1);
    ChildRun b = RunBinary(binary, work, 2);
    if (a.status > 1 || b.status > 1) {
      std::fprintf(stderr, "evaluate failed (exit %d / %d)\n", a.status, b.status);
      return 1;
    }
    one = std::min(one, a.seconds);
    two = std::min(two, b.seconds);
    peak_one = std::max(peak_one, a.peak_kb);
    peak_two = std::max(peak_two, b.peak_kb);
  }
  double mbytes = bytes / 1e6;
  std::printf("resources: %zu\n", docs);
  std::printf(
      "| input MB | RapidJSON parse MB/s | evaluate 1 thread MB/s (%% of parse) | "
      "evaluate 2 threads MB/s | peak RSS 1 thread MB (%% of input) | "
      "peak RSS 2 threads MB |\n");
  std::printf("| %.0f | %.0f | %.0f (%.0f%%) | %.0f | %.0f (%.1f%%) | %.0f |\n", mbytes,
              mbytes / base, mbytes / one, 100.0 * base / one, mbytes / two, peak_one / 1024.0,
              100.0 * peak_one * 1024.0 / bytes, peak_two / 1024.0);
  return 0;
}
