// Helpers for the tests that run `ccm-gateway sync` against the loopback FHIR server
// (tests/server/): configs, runs of the built binary, the JSON log events, comparisons with
// `evaluate`.
#pragma once

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/json.h"
#include "test_server.h"
#include "test_util.h"

namespace ccm::gateway::sync_testing {

using ccm::testing::GatewayRun;
using ccm::testing::ReadFile;
using ccm::testing::TempDir;
using ccm::testing::TestFhirServer;
using ccm::testing::WriteFile;
using fhir::json::Value;

// The sample practice's config plus one source (`source` holds its extra keys; pageSize 25 and
// short retry backoffs unless they set those) and a state file.
inline std::filesystem::path WriteConfig(const TempDir& dir, const TestFhirServer& server,
                                         const std::string& source = "",
                                         const std::string& name = "config.json") {
  std::string json = fmt::format(
      R"({{
    "practice": {{"timeZone": "America/Chicago", "billingPractitioners": ["9999999991"]}},
    "billing": {{"feeScheduleYear": 2025}},
    "sources": [{{"name": "ehr", "baseUrl": "{}"{}{}{}{}}}],
    "state": {{"path": "state.db"}}
  }})",
      server.base(), source.find("\"pageSize\"") == std::string::npos ? R"(, "pageSize": 25)" : "",
      source.find("\"retry\"") == std::string::npos
          ? R"(, "retry": {"initialBackoffMs": 20, "maxBackoffSeconds": 1})"
          : "",
      source.empty() ? "" : ", ", source);
  WriteFile(dir / name, json);
  return dir / name;
}

using ccm::testing::Gateway;
inline GatewayRun Sync(const std::filesystem::path& config, const std::filesystem::path& report,
                       const std::string& extra = "") {
  return Gateway(fmt::format("sync --once --month 2026-10 --config {} --report {} {}",
                             config.string(), report.string(), extra));
}

// The sync's report is `evaluate` over the server's resources, exactly, and bills what
// `evaluate` over the original sample files bills.
inline ::testing::AssertionResult SameReport(const std::string& report, TestFhirServer& server);

// What `evaluate` says of the same sample files, under the same config.
inline const std::string& EvaluateSamples() {
  static const std::string report = [] {
    TempDir dir;
    WriteFile(dir / "c.json", R"({"practice": {"timeZone": "America/Chicago",
        "billingPractitioners": ["9999999991"]}, "billing": {"feeScheduleYear": 2025}})");
    std::string inputs;
    for (const auto& p : ccm::testing::SampleInputs()) {
      inputs += ' ';
      inputs += p.string();
    }
    GatewayRun r = Gateway(fmt::format("evaluate --month 2026-10 --config {} --input{}",
                                       (dir / "c.json").string(), inputs));
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
  }();
  return report;
}

// Equal NDJSON; on failure names the first differing record rather than printing both files.
inline ::testing::AssertionResult SameLines(const std::string& got, const std::string& want) {
  auto split = [](const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
      std::size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      out.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    return out;
  };
  auto a = split(got), b = split(want);
  for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    std::string x = i < a.size() ? a[i] : "(none)";
    std::string y = i < b.size() ? b[i] : "(none)";
    if (x != y) {
      return ::testing::AssertionFailure()
             << "record " << i << " differs:\n  sync:     " << x.substr(0, 600)
             << "\n  evaluate: " << y.substr(0, 600);
    }
  }
  if (a.empty()) return ::testing::AssertionFailure() << "empty report";
  return ::testing::AssertionSuccess();
}

// What `evaluate` says of the resources as the server holds them now (read with plain HTTP into
// NDJSON files): the sync's report must equal it exactly.
inline std::string EvaluateServer(TestFhirServer& server) {
  TempDir dir;
  for (const char* type : {"Patient", "Condition", "Encounter", "CarePlan", "Consent",
                           "Practitioner", "PractitionerRole"}) {
    Value bundle = server.Json("GET", fmt::format("/fhir/R4/{}?_count=100000", type));
    EXPECT_EQ(bundle.find("link") != nullptr &&
                  std::any_of(bundle["link"].array().begin(), bundle["link"].array().end(),
                              [](const Value& l) { return l["relation"].str() == "next"; }),
              false)
        << "one page holds everything";
    std::string ndjson;
    for (const Value& e : bundle["entry"].array()) {
      ndjson += fhir::json::Serialize(e["resource"]);
      ndjson += '\n';
    }
    WriteFile(dir / fmt::format("{}.ndjson", type), ndjson);
  }
  // The config outside the input: a JSON file that is no FHIR resource is an input error.
  TempDir config_dir;
  WriteFile(config_dir / "c.json", R"({"practice": {"timeZone": "America/Chicago",
      "billingPractitioners": ["9999999991"]}, "billing": {"feeScheduleYear": 2025}})");
  GatewayRun r = Gateway(fmt::format("evaluate --month 2026-10 --config {} --input {}",
                                     (config_dir / "c.json").string(), dir.path().string()));
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

// The billing-relevant fields of each record, for comparing with the report of the original files
// (whose care plans carry no meta.lastUpdated: which plan is the newest can differ once a server
// has stamped them, and with it carePlanCompleteness).
inline std::string Billing(const std::string& ndjson) {
  std::string out;
  std::size_t start = 0;
  while (start < ndjson.size()) {
    std::size_t end = ndjson.find('\n', start);
    if (end == std::string::npos) end = ndjson.size();
    auto rec = fhir::json::Parse(ndjson.substr(start, end - start));
    start = end + 1;
    if (!rec) return "(unparsable report)";
    Value keep = Value::MakeObject();
    for (const char* k :
         {"patient", "program", "chronicConditions", "consent", "carePlan", "minutes",
          "billableMinutes", "billing", "blockedBy", "expectedPayment"}) {
      if (const Value* v = rec->find(k)) keep.set(k, *v);
    }
    out += fhir::json::Serialize(keep);
    out += '\n';
  }
  return out;
}

// Bills what `evaluate` over the original sample files bills (for servers that need a token, which
// EvaluateServer does not have).
inline ::testing::AssertionResult SameBilling(const std::string& report) {
  return SameLines(Billing(report), Billing(EvaluateSamples()));
}

inline ::testing::AssertionResult SameReport(const std::string& report, TestFhirServer& server) {
  auto exact = SameLines(report, EvaluateServer(server));
  if (!exact) return exact;
  return SameLines(Billing(report), Billing(EvaluateSamples()));
}

// The JSON log events of a run (stderr is not a terminal in tests).
inline std::vector<Value> Events(const std::string& err) {
  std::vector<Value> out;
  std::size_t pos = 0;
  while (pos < err.size()) {
    std::size_t nl = err.find('\n', pos);
    if (nl == std::string::npos) nl = err.size();
    std::string line = err.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.starts_with("{")) {
      auto v = fhir::json::Parse(line);
      if (v) out.push_back(std::move(*v));
    }
  }
  return out;
}

// The sync-finished event of a run's log, which must be its last line (a test failure otherwise).
inline Value FinalEvent(const std::string& err) {
  auto events = Events(err);
  if (events.empty() || events.back()["event"].str() != "sync-finished") {
    ADD_FAILURE() << "the last log line is not a sync-finished event:\n" << err;
    return Value::MakeObject();
  }
  return std::move(events.back());
}

// The type-synced event of `type` (a pointer into `events`, which must outlive it).
const Value* TypeEvent(std::vector<Value>&& events, std::string_view type) = delete;
inline const Value* TypeEvent(const std::vector<Value>& events, std::string_view type) {
  for (const Value& e : events) {
    if (e["event"].str() == "type-synced" && e["type"].str() == type) return &e;
  }
  return nullptr;
}

inline long Num(const Value& v, std::string_view key) {
  return std::stol(std::string(v[key].number_text().empty() ? "-1" : v[key].number_text()));
}

inline std::size_t CountRequests(TestFhirServer& server, std::string_view needle) {
  std::size_t n = 0;
  Value requests = server.Requests();
  for (const Value& r : requests.array()) {
    std::string line = fmt::format("{} {}", r["method"].str(), r["url"].str());
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

// Starts the gateway in the background (for tests that act while it runs); its stderr goes to
// `log` when given.
inline pid_t StartGateway(const std::string& args, const std::filesystem::path& log = {}) {
  std::string cmd = fmt::format("exec {} {}", ccm::testing::BinaryPath().string(), args);
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    int err = log.empty() ? devnull : ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(devnull, 1);
    ::dup2(err, 2);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Waits until the server has answered `n` requests containing `needle` (or about 10 s passed).
inline void WaitForRequests(TestFhirServer& server, std::string_view needle, std::size_t n) {
  for (int i = 0; i < 200 && CountRequests(server, needle) < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// SMART Backend Services: writes a new key pair: the private key for the gateway, the public one
// for the server.
inline std::string WriteKeyPair(const TempDir& dir, bool ec) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(ec ? EVP_EC_gen("P-384") : EVP_RSA_gen(2048));
  auto pem = [&](bool priv) {
    BIO* bio = BIO_new(BIO_s_mem());
    if (priv) {
      PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    } else {
      PEM_write_bio_PUBKEY(bio, key.get());
    }
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string s(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return s;
  };
  WriteFile(dir / "key.pem", pem(true));
  return pem(false);
}

}  // namespace ccm::gateway::sync_testing
