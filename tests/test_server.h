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
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fhir/client/http_client.h"
#include "fhir/json.h"
#include "test_util.h"

namespace ccm::testing {

namespace detail {

// One node process running tests/server/server.mjs with a given command line.
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> args) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe failed");
    }
    // Close-on-exec everywhere: a gateway the test starts later must not hold this server's stdin
    // open (the server would outlive a test process that dies). The argv is built before fork: the
    // child of a threaded process may only make async-signal-safe calls.
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      // dup2 clears close-on-exec on the copies the child keeps as stdin and stdout.
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
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
  ~ServerProcess() { Stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& base() const { return base_; }
  const std::string& origin() const { return origin_; }
  int port() const { return port_; }

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
};

// The idle servers of this test process, by command line. Starting node with Medplum costs about
// half a second of CPU; restarting an idle server (POST /__admin/restart) about 20 ms. ctest runs
// each test executable in a few shards (tests/CMakeLists.txt), so one server serves many tests in
// turn. Set CCM_TEST_FRESH_SERVERS=1 to start a new server for every test instead.
class ServerPool {
 public:
  static ServerPool& Instance() {
    static ServerPool pool;  // the test process's lifetime; its servers end with it
    return pool;
  }
  std::unique_ptr<ServerProcess> Take(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto process = std::move(it->second);
    idle_.erase(it);
    return process;
  }
  void Give(std::string key, std::unique_ptr<ServerProcess> process) {
    if (Disabled()) return;  // process ends here
    std::lock_guard lock(mu_);
    idle_.emplace(std::move(key), std::move(process));
  }
  static bool Disabled() {
    const char* fresh = std::getenv("CCM_TEST_FRESH_SERVERS");
    return fresh != nullptr && std::string_view(fresh) == "1";
  }

 private:
  std::mutex mu_;
  std::multimap<std::string, std::unique_ptr<ServerProcess>> idle_;
};

}  // namespace detail

// A test's FHIR server: as if freshly started with these arguments (empty repository apart from
// `load`, no faults, no request log, auth mode none), but taken from the process's pool when an
// idle one with the same command line exists. Returned to the pool when the object ends, unless
// Shutdown() ended it.
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
    std::vector<std::string> args = {"node", script.string(), "--port", "0"};
    for (const auto& p : load) {
      args.emplace_back("--load");
      args.push_back(p.string());
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    for (const auto& a : args) key_ += a + '\n';
    process_ = detail::ServerPool::Instance().Take(key_);
    if (process_) {
      auto r = http_.Send(
          fhir::HttpRequest{.method = "POST", .url = process_->origin() + "/__admin/restart"});
      if (!r || r->status != 200) process_.reset();  // it died or went wrong: start a new one
    }
    if (!process_) process_ = std::make_unique<detail::ServerProcess>(std::move(args));
  }
  ~TestFhirServer() {
    if (process_) detail::ServerPool::Instance().Give(std::move(key_), std::move(process_));
  }
  TestFhirServer(const TestFhirServer&) = delete;
  TestFhirServer& operator=(const TestFhirServer&) = delete;

  // Ends the server process now (the EHR goes away): its port refuses connections from here on.
  void Shutdown() { process_.reset(); }

  const std::string& base() const { return process_->base(); }      // http://127.0.0.1:N/fhir/R4
  const std::string& origin() const { return process_->origin(); }  // http(s)://127.0.0.1:N
  int port() const { return process_->port(); }

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
  std::string key_;  // the command line: which pooled servers can stand in
  std::unique_ptr<detail::ServerProcess> process_;
  fhir::HttpClient http_;
  std::chrono::system_clock::time_point last_write_{};
};

}  // namespace ccm::testing
