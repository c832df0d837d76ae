// Helpers shared by the test suites: temporary directories, file I/O, paths to test data.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

namespace ccm::testing {

inline std::filesystem::path SourceDir() { return CCM_SOURCE_DIR; }
inline std::filesystem::path SharedData() { return CCM_SHARED_DATA; }
inline std::filesystem::path BinaryPath() { return CCM_BINARY; }

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("ccm-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::filesystem::path& p, std::string_view content) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

inline void WriteGzFile(const std::filesystem::path& p, std::string_view content) {
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, content.data(), static_cast<unsigned>(content.size()));
  gzclose(f);
}

// The bundled sample inputs: Synthea patients and the generated CCM activity of 2026-10.
inline std::vector<std::filesystem::path> SampleInputs() {
  auto s = SourceDir() / "samples";
  return {s / "synthea-10pt", s / "synthea-g10-2pt", s / "activity"};
}

// Runs the built ccm-gateway with `args` (a shell command line fragment) as a user would.
struct GatewayRun {
  int status = -1;  // exit status, -1 when it did not exit normally
  std::string out;  // stdout (and stderr when not separated)
  std::string err;  // stderr when separated
};
inline GatewayRun RunGatewayBinary(const std::string& args, bool separate_stderr) {
  TempDir tmp;
  std::string cmd = BinaryPath().string() + " " + args +
                    (separate_stderr ? " 2>" + (tmp / "stderr").string() : std::string(" 2>&1"));
  GatewayRun r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (separate_stderr) r.err = ReadFile(tmp / "stderr");
  return r;
}
// The gateway run with stdout and stderr apart: what most tests compare.
inline GatewayRun Gateway(const std::string& args) { return RunGatewayBinary(args, true); }

}  // namespace ccm::testing
