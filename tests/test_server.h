// Starts the loopback FHIR test server (tests/server/server.mjs: Medplum's router and in-memory
// repository behind node:http, with paging, fault injection and auth modes) for integration tests,
// and talks to its admin API.
//
// The server listens on 127.0.0.1 and a free port only. It exits when its stdin closes, so a test
// process that dies never leaves it running.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fhir/client/http_client.h"
#include "fhir/json.h"
#include "test_util.h"

namespace ccm::testing {

class TestFhirServer {
 public:
  // `args`: further command-line options (e.g. --tls-cert/--tls-key); `http`: how the admin client
  // connects (a CA file when the server speaks TLS).
  explicit TestFhirServer(const std::vector<std::filesystem::path>& load = {},
                          const std::vector<std::string>& extra_args = {},
                          fhir::HttpOptions http = {})
      : http_(std::move(http)) {
    std::filesystem::path script = SourceDir() / "tests" / "server" / "server.mjs";
    if (!std::filesystem::exists(SourceDir() / "tests" / "server" / "node_modules")) {
      throw std::runtime_error(
          "tests/server/node_modules is missing: run tests/server/install.sh "
          "(scripts/test does)");
    }
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> args = {"node", script.string(), "--port", "0"};
    for (const auto& p : load) {
      args.emplace_back("--load");
      args.push_back(p.string());
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[0]);
      ::close(in[1]);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("node", argv.data());
      std::perror("execvp node");
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    // The first stdout line: {"port":N,"base":"http://127.0.0.1:N/fhir/R4"}.
    std::string line;
    char c = 0;
    while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(out[0]);
    auto v = fhir::json::Parse(line);
    if (!v || !(*v)["base"].is_string()) {
      Stop();
      throw std::runtime_error("test FHIR server did not start: \"" + line + "\"");
    }
    base_ = std::string((*v)["base"].str());
    port_ = std::stoi(std::string((*v)["port"].number_text()));
    origin_ = base_.substr(0, base_.find("/fhir/R4"));
  }
  ~TestFhirServer() { Stop(); }
  TestFhirServer(const TestFhirServer&) = delete;
  TestFhirServer& operator=(const TestFhirServer&) = delete;

  const std::string& base() const { return base_; }      // http://127.0.0.1:N/fhir/R4
  const std::string& origin() const { return origin_; }  // http(s)://127.0.0.1:N
  int port() const { return port_; }

  // A request to the server (admin API or FHIR), no retries.
  fhir::HttpResponse Send(const std::string& method, const std::string& path_or_url,
                          const std::string& body = "",
                          const std::string& content_type = "application/json") {
    fhir::HttpRequest r;
    r.method = method;
    r.url = path_or_url.starts_with("http") ? path_or_url : origin() + path_or_url;
    r.body = body;
    if (!body.empty()) r.headers.emplace_back("Content-Type", content_type);
    auto resp = http_.Send(r);
    if (!resp) throw std::runtime_error(resp.error().message);
    // A data write (FHIR API or admin load; not faults, auth or log resets) stamps resources now.
    if (method != "GET" && (r.url.find("/fhir/") != std::string::npos ||
                            r.url.find("/__admin/load") != std::string::npos)) {
      last_write_ = std::chrono::system_clock::now();
    }
    return std::move(*resp);
  }
  fhir::json::Value Json(const std::string& method, const std::string& path,
                         const std::string& body = "") {
    auto r = Send(method, path, body);
    auto v = fhir::json::Parse(r.body);
    if (!v) throw std::runtime_error("not JSON from " + path + ": " + r.body.substr(0, 200));
    return std::move(*v);
  }
  void Faults(const std::string& json_array) { Send("POST", "/__admin/faults", json_array); }
  void Auth(const std::string& json) { Send("POST", "/__admin/auth", json); }
  fhir::json::Value Requests() { return Json("GET", "/__admin/requests"); }
  void ClearRequests() { Send("DELETE", "/__admin/requests"); }
  // Returns once the clock (the server's: it runs on this machine) has passed into the next whole
  // second. A sync reads what changed before the second it started in, so a test that writes and
  // then syncs waits for this to see its write in that sync.
  static void AwaitNextSecond() {
    auto next = std::chrono::ceil<std::chrono::seconds>(std::chrono::system_clock::now() +
                                                        std::chrono::milliseconds(1));
    std::this_thread::sleep_until(next);
  }
  // Returns once a sync started now sees every write made through Send/Put so far: at once when
  // none was made in the current second, else at the next second (AwaitNextSecond).
  void AwaitWritesVisible() const {
    if (std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()) <=
        std::chrono::floor<std::chrono::seconds>(last_write_)) {
      AwaitNextSecond();
    }
  }
  // PUT a resource through the FHIR API (creates or updates; new versionId and lastUpdated).
  fhir::json::Value Put(const fhir::json::Value& resource) {
    std::string path = "/fhir/R4/" + std::string(resource["resourceType"].str()) + "/" +
                       std::string(resource["id"].str());
    auto r = Send("PUT", path, fhir::json::Serialize(resource), "application/fhir+json");
    if (r.status >= 300) throw std::runtime_error("PUT " + path + ": " + r.body);
    return *fhir::json::Parse(r.body);
  }

 private:
  void Stop() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  pid_t pid_ = -1;
  int stdin_ = -1;
  std::string base_, origin_;
  int port_ = 0;
  fhir::HttpClient http_;
  std::chrono::system_clock::time_point last_write_{};
};

}  // namespace ccm::testing
