// `ccm-gateway sync` of a source with `bulk` (Bulk Data $export) against the loopback test server's
// $export (tests/server/README.md), run as a user runs it: the built binary, a config file, a
// SQLite state file.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/client/http_client.h"
#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "gateway/sync/sync_support.h"
#include "test_server.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::GatewayRun;
using ccm::testing::ReadFile;
using ccm::testing::TempDir;
using ccm::testing::TestFhirServer;
using fhir::json::Value;

using namespace sync_testing;  // NOLINT(google-build-using-namespace)

constexpr const char* kBulkTypes[] = {"Patient", "Condition",    "Encounter",       "CarePlan",
                                      "Consent", "Practitioner", "PractitionerRole"};

class BulkSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestFhirServer>(ccm::testing::SampleInputs());
  }
  void Export(const std::string& json) { server_->Send("POST", "/__admin/export", json); }
  std::filesystem::path WriteBulkConfig(const std::string& bulk = R"({"parallelDownloads": 3})",
                                        const std::string& extra = "") {
    return WriteConfig(dir_, *server_, fmt::format(R"("bulk": {}{})", bulk, extra));
  }
  std::optional<SyncCursor> Cursor(const std::string& type) {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    EXPECT_TRUE(store);
    if (!store) return std::nullopt;
    auto c = (*store)->GetCursor("ehr", type);
    EXPECT_TRUE(c);
    return c ? *c : std::nullopt;
  }
  // Puts Group/panel on the server with the first patient as its only member; that patient's id.
  std::string PutPanelOfOne() {
    Value patients = server_->Json("GET", "/fhir/R4/Patient?_count=1");
    std::string member(patients["entry"][0]["resource"]["id"].str());
    auto group = fhir::json::Parse(fmt::format(
        R"({{"resourceType": "Group", "id": "panel", "type": "person", "actual": true,
            "member": [{{"entity": {{"reference": "Patient/{}"}}}}]}})",
        member));
    EXPECT_TRUE(group);
    if (group) server_->Put(*group);
    return member;
  }
  std::unique_ptr<TestFhirServer> server_;
  TempDir dir_;
};

TEST_F(BulkSyncTest, ABulkSyncStoresWhatEvaluateReadsAndEndsTheExport) {
  Export(R"({"polls": 2, "maxPerFile": 50})");
  auto config = WriteBulkConfig();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  auto events = Events(r.err);
  for (const char* t : kBulkTypes) {
    const Value* e = TypeEvent(events, t);
    ASSERT_NE(e, nullptr) << t << "\n" << r.err;
    EXPECT_EQ((*e)["state"].str(), "complete") << t;
    EXPECT_EQ((*e)["mode"].str(), "full") << t;
    EXPECT_EQ(Num(*e, "resources"), Num(*e, "inserted")) << t;
  }
  EXPECT_GT(Num(*TypeEvent(events, "Encounter"), "pages"), 1) << "several files";
  EXPECT_TRUE(std::any_of(events.begin(), events.end(), [](const Value& e) {
    return e["event"].str() == "export-progress";
  })) << "X-Progress is shown";
  // One export, no searches, and the export ended with DELETE.
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/$export?"), 1u);
  EXPECT_EQ(CountRequests(*server_, "_count="), 0u);
  EXPECT_EQ(CountRequests(*server_, "DELETE /fhir/R4/$bulk-status/"), 1u);
  EXPECT_EQ(server_->Json("GET", "/__admin/export")["jobs"].size(), 0u);
  auto cursor = Cursor("Encounter");
  ASSERT_TRUE(cursor);
  EXPECT_EQ(cursor->scope, "bulk:system:");
  EXPECT_TRUE(fhir::FhirDateTime::ParseInstant(cursor->watermark)) << cursor->watermark;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
}

TEST_F(BulkSyncTest, TheSecondSyncAsksSinceTheTransactionTimeAndChangesNothing) {
  auto config = WriteBulkConfig();
  GatewayRun first = Sync(config, dir_ / "r1.ndjson");
  ASSERT_EQ(first.status, 0) << first.err;
  auto cursor = Cursor("Condition");
  ASSERT_TRUE(cursor);
  server_->ClearRequests();
  GatewayRun second = Sync(config, dir_ / "r2.ndjson");
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/$export?"), 1u);
  EXPECT_EQ(CountRequests(*server_, "&_since=" + fhir::EncodeQueryValue(cursor->watermark)), 1u)
      << "the previous transactionTime is the _since";
  auto events = Events(second.err);
  for (const char* t : kBulkTypes) {
    const Value* e = TypeEvent(events, t);
    ASSERT_NE(e, nullptr) << t;
    EXPECT_EQ((*e)["mode"].str(), "incremental") << t;
    EXPECT_EQ(Num(*e, "inserted") + Num(*e, "updated") + Num(*e, "removed"), 0) << t;
  }
  EXPECT_EQ(ReadFile(dir_ / "r1.ndjson"), ReadFile(dir_ / "r2.ndjson"));
  auto moved = Cursor("Condition");
  ASSERT_TRUE(moved);
  EXPECT_GT(fhir::FhirDateTime::ParseInstant(moved->watermark)->Earliest(),
            fhir::FhirDateTime::ParseInstant(cursor->watermark)->Earliest());
}

TEST_F(BulkSyncTest, ChangesAndDeletionsSinceTheLastExportArePulled) {
  auto config = WriteBulkConfig();
  GatewayRun first = Sync(config, dir_ / "r1.ndjson");
  ASSERT_EQ(first.status, 0) << first.err;
  Value consents = server_->Json("GET", "/fhir/R4/Consent?_count=100");
  ASSERT_GT(consents["entry"].size(), 0u);
  Value consent = consents["entry"][0]["resource"];
  consent.set("status", Value::String("rejected"));
  server_->Put(consent);
  Value conditions = server_->Json("GET", "/fhir/R4/Condition?_count=1");
  std::string gone(conditions["entry"][0]["resource"]["id"].str());
  ASSERT_EQ(server_->Send("DELETE", "/fhir/R4/Condition/" + gone).status, 200);

  GatewayRun second = Sync(config, dir_ / "r2.ndjson");
  ASSERT_EQ(second.status, 0) << second.err;
  auto events = Events(second.err);
  EXPECT_EQ(Num(*TypeEvent(events, "Consent"), "updated"), 1);
  EXPECT_EQ(Num(*TypeEvent(events, "Condition"), "removed"), 1);
  EXPECT_EQ(Num(*TypeEvent(events, "Encounter"), "resources"), 0);
  EXPECT_TRUE(SameLines(ReadFile(dir_ / "r2.ndjson"), EvaluateServer(*server_)));
  auto store = OpenSqliteStateStore(dir_ / "state.db");
  ASSERT_TRUE(store);
  EXPECT_FALSE(*(*store)->ResourceJson("ehr", "Condition", gone));
}

TEST_F(BulkSyncTest, TransientFaultsAreRetriedAndNothingIsLost) {
  Export(R"({"polls": 1, "maxPerFile": 60})");
  server_->Faults(R"([
    {"match": "GET /fhir/R4/$export?", "kind": "status", "status": 429, "retryAfter": "1"},
    {"match": "GET /fhir/R4/$bulk-status/", "kind": "status", "status": 503, "times": 2},
    {"match": "Encounter.ndjson", "kind": "status", "status": 500, "times": 2},
    {"match": "Condition.ndjson", "kind": "truncate"},
    {"match": "Patient.ndjson", "kind": "drop"}
  ])");
  auto config = WriteBulkConfig();
  auto t0 = std::chrono::steady_clock::now();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900))
      << "the kick-off's Retry-After: 1 was honoured";
  EXPECT_EQ(server_->Json("GET", "/__admin/faults").size(), 0u) << "every fault was hit";
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/$export?"), 2u);
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
}

TEST_F(BulkSyncTest, AFileThatKeepsFailingFailsItsTypeAndKeepsItsCursor) {
  auto config = WriteBulkConfig(R"({"parallelDownloads": 2})",
                                R"(, "retry": {"maxAttempts": 2, "initialBackoffMs": 10})");
  server_->Faults(R"([{"match": "Condition.ndjson", "kind": "status", "status": 503,
                       "times": 100}])");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  auto events = Events(r.err);
  const Value* cond = TypeEvent(events, "Condition");
  ASSERT_NE(cond, nullptr) << r.err;
  EXPECT_EQ((*cond)["state"].str(), "failed");
  std::string msg((*cond)["message"].str());
  EXPECT_NE(msg.find("gave up after 2 attempt(s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the cursor stays"), std::string::npos) << msg;
  EXPECT_FALSE(Cursor("Condition")) << "a failed type keeps its cursor";
  EXPECT_TRUE(Cursor("Encounter")) << "the other types are complete";
  EXPECT_EQ(CountRequests(*server_, "DELETE /fhir/R4/$bulk-status/"), 1u);

  server_->Send("DELETE", "/__admin/faults");
  GatewayRun again = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_TRUE(Cursor("Condition"));
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
}

TEST_F(BulkSyncTest, AnErrorFileFailsTheTypeItNamesAndWarningsDoNot) {
  Export(R"({"errors": [
    {"type": "Condition", "code": "processing", "diagnostics": "Condition/7 for Jane Doe failed"},
    {"severity": "warning", "code": "informational", "diagnostics": "slow"}]})");
  auto config = WriteBulkConfig();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  auto events = Events(r.err);
  const Value* cond = TypeEvent(events, "Condition");
  ASSERT_NE(cond, nullptr);
  EXPECT_EQ((*cond)["state"].str(), "failed");
  std::string msg((*cond)["message"].str());
  EXPECT_NE(msg.find("error file reports error processing"), std::string::npos) << msg;
  EXPECT_EQ(r.err.find("Jane Doe"), std::string::npos) << "no server text in the log";
  EXPECT_EQ((*TypeEvent(events, "Encounter"))["state"].str(), "complete");
  EXPECT_NE(r.err.find("warning informational"), std::string::npos) << r.err;
  EXPECT_FALSE(Cursor("Condition"));
  EXPECT_TRUE(Cursor("Patient"));
}

TEST_F(BulkSyncTest, ABrokenManifestFailsTheSourceAndMovesNoCursor) {
  Export(R"({"manifestPatch": {"transactionTime": null}})");
  auto config = WriteBulkConfig();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("no transactionTime"), std::string::npos) << r.err;
  for (const char* t : kBulkTypes) EXPECT_FALSE(Cursor(t)) << t;
  EXPECT_EQ(CountRequests(*server_, "$bulk-file/"), 0u) << "nothing of it was read";
  EXPECT_EQ(CountRequests(*server_, "DELETE /fhir/R4/$bulk-status/"), 1u);
}

TEST_F(BulkSyncTest, AServerWithoutExportIsAClearErrorNamingTheFix) {
  Export(R"({"supported": false})");
  auto config = WriteBulkConfig();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("does not offer Bulk Data $export"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("remove `bulk` from source \\\"ehr\\\" to pull it with FHIR searches"),
            std::string::npos)
      << r.err;
}

TEST_F(BulkSyncTest, TheTokenGoesToTheFilesOnlyWhenTheManifestRequiresIt) {
  ::setenv("CCM_TEST_BULK_TOKEN", "bulk-t0k", 1);
  server_->Auth(R"({"mode": "bearer", "token": "bulk-t0k"})");
  for (bool required : {true, false}) {
    Export(fmt::format(R"({{"requiresAccessToken": {}}})", required));
    server_->ClearRequests();
    TempDir dir;
    auto config = WriteConfig(dir, *server_,
                              R"("auth": {"type": "bearer", "tokenEnv": "CCM_TEST_BULK_TOKEN"},
                                 "bulk": {"parallelDownloads": 2})");
    GatewayRun r = Sync(config, dir / "report.ndjson");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(SameBilling(ReadFile(dir / "report.ndjson")));
    Value requests = server_->Requests();
    std::size_t files = 0;
    for (const Value& q : requests.array()) {
      std::string url(q["url"].str());
      if (url.find("$bulk-file/") != std::string::npos) {
        ++files;
        EXPECT_EQ(q["authorization"].as_bool(), required) << url;
      } else {
        EXPECT_TRUE(q["authorization"].as_bool()) << url;
      }
    }
    EXPECT_GE(files, 6u) << "a file per type that has resources";
  }
}

TEST_F(BulkSyncTest, ASyncKilledDuringTheDownloadsLosesNothingAndTheNextOneCompletes) {
  Export(R"({"maxPerFile": 50})");
  // The Encounter files hang: the gateway is killed with the other files stored or on the way.
  server_->Faults(R"([{"match": "Encounter.ndjson", "kind": "delay", "delayMs": 30000,
                       "times": 1000}])");
  auto config = WriteBulkConfig();
  pid_t pid = StartGateway(fmt::format("sync --once --month 2026-10 --config {} --report {}",
                                       config.string(), (dir_ / "killed.ndjson").string()));
  WaitForRequests(*server_, "Encounter.ndjson", 3);
  ASSERT_GE(CountRequests(*server_, "Encounter.ndjson"), 3u) << "the downloads had started";
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  for (const char* t : kBulkTypes) EXPECT_FALSE(Cursor(t)) << t << ": no cursor moved";

  server_->Send("DELETE", "/__admin/faults");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/$export?"), 1u)
      << "the killed sync's export is resumed, not asked for again";
  auto events = Events(r.err);
  EXPECT_EQ((*TypeEvent(events, "Encounter"))["mode"].str(), "full");
  auto store = OpenSqliteStateStore(dir_ / "state.db");
  ASSERT_TRUE(store);
  Value all = server_->Json("GET", "/fhir/R4/Encounter?_count=100000");
  EXPECT_EQ(*(*store)->CountResources("ehr", "Encounter"), all["entry"].size());
  store->reset();
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
}

// kill -9 while the export is being prepared: the next sync polls the same status URL (kept in
// the state store) instead of kicking off a second export; an export the server has forgotten
// meanwhile is asked for again, once. A finished export is forgotten.
TEST_F(BulkSyncTest, ASyncKilledWhilePollingResumesTheSameExport) {
  auto config = WriteBulkConfig();
  auto pending = [&]() -> std::optional<PendingExport> {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    EXPECT_TRUE(store);
    if (!store) return std::nullopt;
    auto p = (*store)->GetPendingExport("ehr");
    EXPECT_TRUE(p);
    return p ? *p : std::nullopt;
  };
  auto killed_while_polling = [&](const char* report) {
    server_->Faults(R"([{"match": "GET /fhir/R4/$bulk-status/", "kind": "delay",
                         "delayMs": 30000, "times": 1000}])");
    const std::size_t polls = CountRequests(*server_, "GET /fhir/R4/$bulk-status/");
    pid_t pid = StartGateway(fmt::format("sync --once --month 2026-10 --config {} --report {}",
                                         config.string(), (dir_ / report).string()));
    WaitForRequests(*server_, "GET /fhir/R4/$bulk-status/", polls + 1);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    server_->Send("DELETE", "/__admin/faults");
  };

  killed_while_polling("killed.ndjson");
  auto kept = pending();
  ASSERT_TRUE(kept) << "the status URL was kept";
  EXPECT_NE(kept->status_url.find("/$bulk-status/"), std::string::npos) << kept->status_url;
  GatewayRun resumed = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/$export?"), 1u) << "no second export";
  EXPECT_NE(resumed.err.find("resuming the export the last sync started"), std::string::npos)
      << resumed.err;
  EXPECT_FALSE(pending()) << "a finished export is forgotten";
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));

  // The next one is killed too, and the server forgets its export before the sync after it.
  killed_while_polling("killed-again.ndjson");
  kept = pending();
  ASSERT_TRUE(kept);
  const std::string url = kept->status_url;
  server_->Send("DELETE", url.substr(url.find("/fhir/")));
  GatewayRun fresh = Sync(config, dir_ / "report2.ndjson");
  ASSERT_EQ(fresh.status, 0) << fresh.err;
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/$export?"), 3u)
      << "the forgotten export was asked for again, once";
  EXPECT_FALSE(pending());
}

TEST_F(BulkSyncTest, AGroupExportPullsItsMembersOnly) {
  const std::string member = PutPanelOfOne();
  auto config = WriteBulkConfig(R"({"level": "group", "group": "Group/panel"})");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/Group/panel/$export?"), 1u);
  auto store = OpenSqliteStateStore(dir_ / "state.db");
  ASSERT_TRUE(store);
  EXPECT_EQ(*(*store)->CountResources("ehr", "Patient"), 1u);
  std::size_t others = 0;
  Status s = (*store)->ForEachResourceOf(
      "ehr", [&](std::string_view, std::string_view type, std::string_view, std::string_view json) {
        if (type == "Condition" || type == "Encounter") {
          EXPECT_NE(json.find("Patient/" + member), std::string_view::npos);
          ++others;
        }
        return true;
      });
  ASSERT_TRUE(s);
  EXPECT_GT(others, 0u);
  auto cursor = (*store)->GetCursor("ehr", "Patient");
  ASSERT_TRUE(cursor && *cursor);
  EXPECT_EQ((*cursor)->scope, "bulk:group:Group/panel");
}

// A group export with SMART Backend Services, as EHRs offer their bulk APIs: one token for the
// kick-off, the polls and the files (requiresAccessToken), and none in the logs.
TEST_F(BulkSyncTest, AGroupExportWithSmartBackendServicesUsesOneToken) {
  PutPanelOfOne();
  Value auth = Value::MakeObject();
  auth.set("mode", Value::String("smart"));
  auth.set("clientId", Value::String("ccm-gateway-test"));
  auth.set("publicKeyPem", Value::String(WriteKeyPair(dir_, true)));
  auth.set("alg", Value::String("ES384"));
  auth.set("kid", Value::String("bulk-key"));
  server_->Auth(fhir::json::Serialize(auth));
  auto config = WriteBulkConfig(R"({"level": "group", "group": "Group/panel"})",
                                R"(, "auth": {"type": "smart-backend-services",
      "clientId": "ccm-gateway-test", "keyId": "bulk-key", "privateKeyFile": "key.pem",
      "algorithm": "ES384", "scope": "system/*.rs"})");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(Num(server_->Json("GET", "/__admin/auth/stats"), "tokensIssued"), 1);
  std::size_t files = 0;
  Value requests = server_->Requests();
  for (const Value& q : requests.array()) {
    std::string url(q["url"].str());
    if (url.find("/$export") != std::string::npos || url.find("/$bulk-") != std::string::npos) {
      EXPECT_TRUE(q["authorization"].as_bool()) << url;
      files += url.find("/$bulk-file/") != std::string::npos ? 1 : 0;
    }
  }
  EXPECT_GT(files, 0u);
  EXPECT_EQ(r.err.find("Bearer"), std::string::npos) << "no token in the logs";
  auto store = OpenSqliteStateStore(dir_ / "state.db");
  ASSERT_TRUE(store);
  EXPECT_EQ(*(*store)->CountResources("ehr", "Patient"), 1u);
}

}  // namespace
}  // namespace ccm::gateway
