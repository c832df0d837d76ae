// `ccm-gateway sync` against a real FHIR server on loopback (Medplum's router in node,
// tests/server/), run as a user runs it: the built binary, a config file, a SQLite state file.
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ingest/collect.h"
#include "gateway/ingest/store_facts.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "gateway/sync/sync.h"
#include "gateway/sync/sync_support.h"
#include "test_server.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::GatewayRun;
using ccm::testing::ReadFile;
using ccm::testing::SourceDir;
using ccm::testing::TempDir;
using ccm::testing::TestFhirServer;
using ccm::testing::WriteFile;
using fhir::json::Value;

using namespace sync_testing;  // NOLINT(google-build-using-namespace)

class SyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestFhirServer>(ccm::testing::SampleInputs());
  }
  std::unique_ptr<TestFhirServer> server_;
  TempDir dir_;
};

TEST_F(SyncTest, FirstSyncPagesThroughEverythingAndEqualsEvaluate) {
  auto config = WriteConfig(dir_, *server_);
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  auto events = Events(r.err);
  const Value* enc = TypeEvent(events, "Encounter");
  ASSERT_NE(enc, nullptr) << r.err;
  EXPECT_EQ((*enc)["mode"].str(), "full");
  EXPECT_GT(Num(*enc, "pages"), 10) << "small pages: the next links were followed";
  EXPECT_EQ(Num(*enc, "resources"), Num(*enc, "inserted"));
  // Every type the engine reads was pulled, the capability statement read once.
  for (const char* t : {"Patient", "Condition", "Encounter", "CarePlan", "Consent", "Practitioner",
                        "PractitionerRole"}) {
    EXPECT_NE(TypeEvent(events, t), nullptr) << t;
  }
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/metadata"), 1u);
  // No query ever carried fractional seconds or an unencoded '+'.
  Value requests = server_->Requests();
  for (const Value& q : requests.array()) {
    std::string url(q["url"].str());
    EXPECT_EQ(url.find('+'), std::string::npos) << url;
    EXPECT_TRUE(q["userAgent"].str().starts_with("ccm-gateway/")) << q["userAgent"].str();
  }
  // The summary line and the run history.
  ASSERT_FALSE(events.empty());
  const Value& last = events.back();
  EXPECT_EQ(last["event"].str(), "sync-finished");
  auto store = OpenSqliteStateStore(dir_ / "state.db");
  ASSERT_TRUE(store);
  auto run = (*store)->LastRun(RunKind::kSync);
  ASSERT_TRUE(run && *run);
  EXPECT_EQ((*run)->status, RunStatus::kOk);
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
}

TEST_F(SyncTest, SecondSyncPullsOnlyTheChangesAndTheReportFollows) {
  auto config = WriteConfig(dir_, *server_, R"("safetyMarginSeconds": 0)");
  GatewayRun first = Sync(config, dir_ / "r1.ndjson");
  ASSERT_EQ(first.status, 0) << first.err;
  ASSERT_TRUE(SameReport(ReadFile(dir_ / "r1.ndjson"), *server_));

  // Revoke the consent of a billable patient on the server.
  Value consents = server_->Json("GET", "/fhir/R4/Consent?_count=100");
  ASSERT_GT(consents["entry"].size(), 0u);
  Value consent = consents["entry"][0]["resource"];
  std::string patient(consent["patient"]["reference"].str());
  consent.set("status", Value::String("rejected"));
  server_->Put(consent);
  TestFhirServer::AwaitNextSecond();  // a sync reads what changed before its first second
  server_->ClearRequests();

  GatewayRun second = Sync(config, dir_ / "r2.ndjson");
  ASSERT_EQ(second.status, 0) << second.err;
  auto events = Events(second.err);
  std::size_t pulled = 0;
  for (const char* t : {"Patient", "Condition", "Encounter", "CarePlan", "Consent"}) {
    const Value* e = TypeEvent(events, t);
    ASSERT_NE(e, nullptr) << t;
    EXPECT_EQ((*e)["mode"].str(), "incremental") << t;
    EXPECT_EQ(Num(*e, "inserted"), 0) << t;
    pulled += static_cast<std::size_t>(Num(*e, "resources"));
  }
  EXPECT_EQ(Num(*TypeEvent(events, "Consent"), "updated"), 1);
  EXPECT_LE(pulled, 2u) << "only the change (and at most one resource of the overlap)";
  EXPECT_GT(CountRequests(*server_, "_lastUpdated=ge"), 0u);

  // The report follows: that patient's consent is now revoked, and only that record changed.
  std::string r1 = ReadFile(dir_ / "r1.ndjson"), r2 = ReadFile(dir_ / "r2.ndjson");
  EXPECT_NE(r1, r2);
  bool found = false;
  std::size_t start = 0;
  while (start < r2.size()) {
    std::size_t end = r2.find('\n', start);
    auto rec = fhir::json::Parse(r2.substr(start, end - start));
    start = end + 1;
    ASSERT_TRUE(rec);
    if ((*rec)["patient"].str() != patient) continue;
    found = true;
    EXPECT_EQ((*rec)["consent"].str(), "revoked");
  }
  EXPECT_TRUE(found) << patient;
}

TEST_F(SyncTest, TransientFaultsAreRetriedAndNothingIsLost) {
  auto config = WriteConfig(dir_, *server_);
  server_->Faults(R"([
    {"match": "GET /fhir/R4/Encounter?", "kind": "status", "status": 429, "retryAfter": "1"},
    {"match": "GET /fhir/R4/Encounter?", "kind": "status", "status": 503},
    {"match": "_offset=50", "kind": "drop"},
    {"match": "_offset=100", "kind": "truncate"},
    {"match": "GET /fhir/R4/Condition?", "kind": "invalid-json"},
    {"match": "GET /fhir/R4/Patient?", "kind": "status", "status": 502},
    {"match": "GET /fhir/R4/Consent?", "kind": "status", "status": 504}
  ])");
  auto t0 = std::chrono::steady_clock::now();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
  EXPECT_GE(took, std::chrono::seconds(1)) << "Retry-After: 1 was honoured";
  EXPECT_EQ(server_->Json("GET", "/__admin/faults").size(), 0u) << "every fault was hit";
  auto events = Events(r.err);
  ASSERT_FALSE(events.empty());
  // Six of the faults are retried by the gateway; a dropped keep-alive connection may already be
  // retried once by libcurl itself (it re-sends on a fresh connection when a reused one dies).
  EXPECT_GE(Num(events.back(), "retries"), 6);
}

// `config` with logging.serverDiagnostics on (servers' free text in messages), as `name`.
std::filesystem::path WithServerDiagnostics(const std::filesystem::path& config,
                                            const std::string& name) {
  std::string text = ReadFile(config);
  text.insert(text.find('{') + 1, R"("logging": {"serverDiagnostics": true},)");
  WriteFile(config.parent_path() / name, text);
  return config.parent_path() / name;
}

TEST_F(SyncTest, PersistentFailureIsAClearErrorAndTheNextRunRecovers) {
  auto config =
      WriteConfig(dir_, *server_, R"("retry": {"maxAttempts": 2, "initialBackoffMs": 10})");
  server_->Faults(R"([{"match": "GET /fhir/R4/Condition?", "kind": "status", "status": 503,
                       "times": 100, "body": {"resourceType": "OperationOutcome", "issue": [
                         {"severity": "error", "code": "transient",
                          "diagnostics": "database is being restored"}]}}])");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  auto cond_events = Events(r.err);
  const Value* cond = TypeEvent(cond_events, "Condition");
  ASSERT_NE(cond, nullptr);
  std::string msg(cond->find("message") ? (*cond)["message"].str() : "");
  EXPECT_NE(msg.find("HTTP 503: error transient (server diagnostics withheld, 26 characters"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("database is being restored"), std::string::npos) << "withheld: " << msg;
  EXPECT_NE(msg.find("gave up after 2 attempt(s)"), std::string::npos) << msg;
  GatewayRun shown =
      Sync(WithServerDiagnostics(config, "diagnostics.json"), dir_ / "report.ndjson");
  EXPECT_EQ(shown.status, 1) << shown.err;
  auto shown_events = Events(shown.err);
  const Value* shown_cond = TypeEvent(shown_events, "Condition");
  ASSERT_NE(shown_cond, nullptr);
  EXPECT_NE(std::string((*shown_cond)["message"].str())
                .find("HTTP 503: error transient: database is being restored"),
            std::string::npos)
      << (*shown_cond)["message"].str();
  auto store = OpenSqliteStateStore(dir_ / "state.db");
  ASSERT_TRUE(store);
  EXPECT_FALSE(*(*store)->GetCursor("ehr", "Condition")) << "a failed type keeps its cursor";
  EXPECT_TRUE(*(*store)->GetCursor("ehr", "Encounter")) << "other types went on";
  store->reset();

  server_->Send("DELETE", "/__admin/faults");
  GatewayRun again = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
}

TEST_F(SyncTest, ClientErrorsAreNotRetriedAndCarryTheOperationOutcome) {
  auto config = WriteConfig(dir_, *server_);
  // (The search's pages carry _count=25; a probe that would split it carries _count=1.)
  server_->Faults(R"([{"match": "GET /fhir/R4/CarePlan?_count=25", "kind": "status", "status": 400,
                       "body": {"resourceType": "OperationOutcome", "issue": [
                         {"severity": "error", "code": "invalid",
                          "diagnostics": "_count must be at most 10"}]}}])");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1);
  auto cp_events = Events(r.err);
  const Value* cp = TypeEvent(cp_events, "CarePlan");
  ASSERT_NE(cp, nullptr);
  EXPECT_NE(std::string((*cp)["message"].str())
                .find("HTTP 400: error invalid (server diagnostics withheld, 25 characters; set "
                      "logging.serverDiagnostics to true to log them)"),
            std::string::npos)
      << (*cp)["message"].str();
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/CarePlan?_count=25"), 1u);
  server_->Faults(R"([{"match": "GET /fhir/R4/CarePlan?_count=25", "kind": "status", "status": 400,
                       "body": {"resourceType": "OperationOutcome", "issue": [
                         {"severity": "error", "code": "invalid",
                          "diagnostics": "_count must be at most 10"}]}}])");
  GatewayRun shown =
      Sync(WithServerDiagnostics(config, "diagnostics.json"), dir_ / "report.ndjson");
  EXPECT_EQ(shown.status, 1);
  auto shown_events = Events(shown.err);
  const Value* shown_cp = TypeEvent(shown_events, "CarePlan");
  ASSERT_NE(shown_cp, nullptr);
  EXPECT_NE(std::string((*shown_cp)["message"].str())
                .find("HTTP 400: error invalid: _count must be at most 10"),
            std::string::npos)
      << (*shown_cp)["message"].str();
}

TEST_F(SyncTest, NextLinkLoopIsDetected) {
  auto config = WriteConfig(dir_, *server_);
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?_count=25", "kind": "loop"}])");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1);
  auto e_events = Events(r.err);
  const Value* e = TypeEvent(e_events, "Encounter");
  ASSERT_NE(e, nullptr);
  EXPECT_NE(std::string((*e)["message"].str()).find("paging loop"), std::string::npos)
      << (*e)["message"].str();
}

TEST_F(SyncTest, KilledMidSyncResumesWithoutLossOrDoubleCounting) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  // Slow down the Encounter pages so that the kill lands in the middle of them.
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 150,
                       "times": 1000}])");
  pid_t pid = StartGateway(fmt::format("sync --once --month 2026-10 --config {} --report {}",
                                       config.string(), (dir_ / "killed.ndjson").string()));
  // Wait until some Encounter pages are stored, then kill without warning.
  WaitForRequests(*server_, "GET /fhir/R4/Encounter?", 5);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the sync finished before it could be killed";
  EXPECT_FALSE(std::filesystem::exists(dir_ / "killed.ndjson")) << "no partial report";
  {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    ASSERT_TRUE(store) << store.error().message;
    EXPECT_FALSE(*(*store)->GetCursor("ehr", "Encounter")) << "killed mid-type: no cursor yet";
    EXPECT_GT(*(*store)->CountResources("ehr", "Encounter"), 0u) << "pages stored before the kill";
  }
  server_->Send("DELETE", "/__admin/faults");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
  auto enc_events = Events(r.err);
  const Value* enc = TypeEvent(enc_events, "Encounter");
  ASSERT_NE(enc, nullptr);
  EXPECT_GT(Num(*enc, "unchanged"), 0) << "pages stored before the kill were recognised";
}

TEST(CollectFactsFromStoreTest, AResourceHeldByTwoSourcesIsReportedAndCountedOnce) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  auto config = DefaultEngineConfig();
  ASSERT_TRUE(config) << config.error().message;
  const std::string older = R"({"resourceType": "Patient", "id": "p1",
      "meta": {"versionId": "1", "lastUpdated": "2026-10-01T00:00:00Z"}, "gender": "male"})";
  const std::string newer = R"({"resourceType": "Patient", "id": "p1",
      "meta": {"versionId": "2", "lastUpdated": "2026-10-02T00:00:00Z"}, "gender": "female"})";
  const std::string other = R"({"resourceType": "Patient", "id": "p2",
      "meta": {"versionId": "1", "lastUpdated": "2026-10-01T00:00:00Z"}})";
  ASSERT_TRUE((*store)->InTransaction([&]() -> Status {
    VersionStamp v1{"1", std::nullopt}, v2{"2", std::nullopt};
    CCM_TRY((*store)->Upsert("ehr-b", "Patient", "p1", v2, newer, 1));
    CCM_TRY((*store)->Upsert("ehr-a", "Patient", "p1", v1, older, 1));
    CCM_TRY((*store)->Upsert("ehr-a", "Patient", "p2", v1, other, 1));
    return {};
  }));
  FactStore facts;
  auto report = CollectFactsFromStore(**store, *config, {"ehr-a", "ehr-b"}, facts);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->read.resources, 3u);
  ASSERT_EQ(report->read_issues.size(), 1u) << "one warning, for p1 only";
  const std::string& message = report->read_issues.items()[0].message;
  EXPECT_NE(message.find("Patient/p1"), std::string::npos) << message;
  EXPECT_NE(message.find("Sources must not share resource ids"), std::string::npos) << message;
  EXPECT_EQ(facts.size(), 2u) << "p1 once, p2";
  ASSERT_NE(facts.Find("Patient/p1"), nullptr);
  EXPECT_EQ(facts.Find("Patient/p1")->stamp.version_id, "2") << "the newer version is kept";
}

// A source taken out of the configuration keeps its rows, but nothing refreshes them any more:
// they are not evaluated (and so never billed), and a warning says so.
TEST(CollectFactsFromStoreTest, ResourcesOfASourceNoLongerConfiguredAreNotEvaluated) {
  TempDir dir;
  auto config = DefaultEngineConfig();
  ASSERT_TRUE(config);
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->Upsert("ehr", "Patient", "p1", VersionStamp{"1", std::nullopt},
                               R"({"resourceType": "Patient", "id": "p1"})", 1));
  ASSERT_TRUE((*store)->Upsert("old-ehr", "Patient", "p2", VersionStamp{"1", std::nullopt},
                               R"({"resourceType": "Patient", "id": "p2"})", 1));
  EXPECT_EQ(*(*store)->SourceNames(), (std::vector<std::string>{"ehr", "old-ehr"}));
  FactStore facts;
  auto report = CollectFactsFromStore(**store, *config, {"ehr"}, facts);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(facts.size(), 1u);
  EXPECT_EQ(facts.Find("Patient/p2"), nullptr);
  ASSERT_EQ(report->read_issues.size(), 1u);
  EXPECT_EQ(report->read_issues.items()[0].message,
            "the state store holds 1 resource(s) of source(s) \"old-ehr\" that the "
            "configuration no longer lists; they are kept, but not evaluated or billed (nothing "
            "refreshes them). List the source in sources[] again to use them");
}

TEST_F(SyncTest, FullSyncRemovesWhatTheServerDeleted) {
  auto config = WriteConfig(dir_, *server_);
  ASSERT_EQ(Sync(config, dir_ / "r1.ndjson").status, 0);
  auto store_count = [&](const char* type) {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    return *(*store)->CountResources("ehr", type);
  };
  std::size_t plans_before = store_count("CarePlan");
  // Delete every care plan on the server: incremental search cannot see deletions; --full can.
  Value plans = server_->Json("GET", "/fhir/R4/CarePlan?_count=1000");
  ASSERT_GT(plans["entry"].size(), 0u);
  for (const Value& e : plans["entry"].array()) {
    auto resp =
        server_->Send("DELETE", fmt::format("/fhir/R4/CarePlan/{}", e["resource"]["id"].str()));
    ASSERT_LT(resp.status, 300) << resp.body;
  }
  // All of a type at once is more than sync.maxDeletePercent: stopped, nothing removed.
  GatewayRun refused = Sync(config, dir_ / "r2.ndjson", "--full");
  EXPECT_EQ(refused.status, 1) << refused.err;
  auto refused_events = Events(refused.err);
  const Value* cp = TypeEvent(refused_events, "CarePlan");
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ((*cp)["state"].str(), "failed");
  EXPECT_NE(std::string((*cp)["message"].str()).find("--allow-mass-delete"), std::string::npos)
      << (*cp)["message"].str();
  EXPECT_EQ(store_count("CarePlan"), plans_before);
  EXPECT_EQ(FinalEvent(refused.err)["ok"].as_bool(), false);

  GatewayRun full = Sync(config, dir_ / "r3.ndjson", "--full --allow-mass-delete");
  ASSERT_EQ(full.status, 0) << full.err;
  auto cp_events = Events(full.err);
  cp = TypeEvent(cp_events, "CarePlan");
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(Num(*cp, "removed"), static_cast<long>(plans["entry"].size()));
  EXPECT_EQ(store_count("CarePlan"), 0u);
  EXPECT_EQ(ReadFile(dir_ / "r3.ndjson").find("\"carePlan\":\"active\""), std::string::npos);
}

TEST_F(SyncTest, TheCapabilityStatementDecidesWhatIsPulledAndHow) {
  // A server that offers no Consent and cannot search Encounter by _lastUpdated.
  std::string metadata = R"({"resourceType": "CapabilityStatement", "status": "active",
      "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"], "rest": [{"mode": "server",
      "resource": [
        {"type": "Patient", "searchParam": [{"name": "_lastUpdated", "type": "date"}]},
        {"type": "Condition", "searchParam": [{"name": "_lastUpdated", "type": "date"}]},
        {"type": "Encounter", "searchParam": [{"name": "patient", "type": "reference"}]},
        {"type": "CarePlan"}, {"type": "Practitioner"}, {"type": "PractitionerRole"}]}]})";
  server_->Faults(fmt::format(R"([{{"match": "GET /fhir/R4/metadata", "kind": "status",
                                   "status": 200, "times": 2, "body": {}}}])",
                              metadata));
  auto config = WriteConfig(dir_, *server_);
  for (int run = 0; run < 2; ++run) {
    GatewayRun r = Sync(config, dir_ / "report.ndjson");
    ASSERT_EQ(r.status, 0) << r.err;
    auto events = Events(r.err);
    EXPECT_EQ(TypeEvent(events, "Consent"), nullptr) << "not offered, not asked for";
    EXPECT_NE(r.err.find("does not offer Consent; not pulled (no consent can be found, so nothing "
                         "is billed)"),
              std::string::npos)
        << r.err;
    const Value* enc = TypeEvent(events, "Encounter");
    ASSERT_NE(enc, nullptr);
    EXPECT_EQ((*enc)["mode"].str(), "full") << "run " << run;
    const Value* cond = TypeEvent(events, "Condition");
    ASSERT_NE(cond, nullptr);
    EXPECT_EQ((*cond)["mode"].str(), run == 0 ? "full" : "incremental");
  }
  // Without consents nothing is billable.
  EXPECT_EQ(ReadFile(dir_ / "report.ndjson").find("\"billing\":[{"), std::string::npos);
  EXPECT_NE(ReadFile(dir_ / "report.ndjson").find("\"billing\":[]"), std::string::npos);
}

TEST_F(SyncTest, GroupScopePullsOnlyItsMembers) {
  Value patients = server_->Json("GET", "/fhir/R4/Patient?_count=3");
  ASSERT_EQ(patients["entry"].size(), 3u);
  Value group = *fhir::json::Parse(R"({"resourceType": "Group", "id": "ccm-panel", "type": "person",
                                      "actual": true, "member": []})");
  std::set<std::string> members;
  for (std::size_t i = 0; i < 2; ++i) {
    std::string ref = fmt::format("Patient/{}", patients["entry"][i]["resource"]["id"].str());
    members.insert(ref);
    Value m = Value::MakeObject();
    Value entity = Value::MakeObject();
    entity.set("reference", Value::String(ref));
    m.set("entity", std::move(entity));
    group.find("member")->push_back(std::move(m));
  }
  server_->Put(group);
  auto config = WriteConfig(dir_, *server_, R"("scope": {"group": "Group/ccm-panel"})");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  std::string report = ReadFile(dir_ / "report.ndjson");
  std::set<std::string> seen;
  std::size_t start = 0;
  while (start < report.size()) {
    std::size_t end = report.find('\n', start);
    seen.emplace((*fhir::json::Parse(report.substr(start, end - start)))["patient"].str());
    start = end + 1;
  }
  EXPECT_FALSE(seen.empty());
  for (const auto& p : seen) EXPECT_TRUE(members.contains(p)) << p;
  EXPECT_GT(CountRequests(*server_, "patient=Patient%2F"), 0u);
}

TEST_F(SyncTest, APatientListInSeveralChunksIsPulledConcurrentlyAndCompletely) {
  // Every patient on the server plus unknown ids, so that the list needs several searches per
  // type (40 ids each); four connections take the chunks concurrently. Nothing may be missed or
  // counted twice: the report equals evaluate over the whole server.
  Value patients = server_->Json("GET", "/fhir/R4/Patient?_count=1000");
  std::vector<std::string> ids;
  for (const Value& e : patients["entry"].array()) {
    ids.emplace_back(fmt::format("\"{}\"", e["resource"]["id"].str()));
  }
  ASSERT_GT(ids.size(), 10u);
  for (int i = 0; ids.size() < 130; ++i) ids.emplace_back(fmt::format("\"not-there-{}\"", i));
  std::string list;
  for (const auto& id : ids) list += (list.empty() ? "" : ", ") + id;
  auto config = WriteConfig(
      dir_, *server_, fmt::format(R"("maxConcurrency": 4, "scope": {{"patients": [{}]}})", list));
  server_->ClearRequests();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
  EXPECT_GE(CountRequests(*server_, "GET /fhir/R4/Encounter?_count=25&patient="), 4u)
      << "130 ids in chunks of 40: four Encounter searches";
  auto events = Events(r.err);
  const Value* enc = TypeEvent(events, "Encounter");
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(Num(*enc, "inserted"), Num(*enc, "resources")) << "no resource stored twice";
  // A second, incremental run pulls nothing new.
  GatewayRun again = Sync(config, dir_ / "report2.ndjson");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(ReadFile(dir_ / "report.ndjson"), ReadFile(dir_ / "report2.ndjson"));
}

// Gives every resource of `types` on the server a meta.lastUpdated half a second after the
// previous one, from 12 hours ago: a population whose changes are spread in time, as an EHR's are
// (the test server stamps what it loads within a second). Half seconds put resources exactly on
// the whole-second bounds of the windows.
void SpreadLastUpdated(TestFhirServer& server, const std::vector<std::string>& types) {
  fhir::TimePoint t = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()) -
                      std::chrono::hours(12);
  std::string ndjson;
  for (const auto& type : types) {
    Value bundle = server.Json("GET", fmt::format("/fhir/R4/{}?_count=100000", type));
    for (const Value& e : bundle["entry"].array()) {
      Value r = e["resource"];
      Value meta = r["meta"];
      meta.set("lastUpdated", Value::String(fhir::FormatUtc(t)));
      r.set("meta", std::move(meta));
      t += std::chrono::milliseconds(500);
      ndjson += fhir::json::Serialize(r) + "\n";
    }
  }
  auto loaded = server.Send("POST", "/__admin/load?keepMeta=true", ndjson);
  ASSERT_EQ(loaded.status, 200) << loaded.body;
}

TEST_F(SyncTest, AnAllPatientsSearchIsSplitIntoLastUpdatedWindowsAndMissesNothing) {
  SpreadLastUpdated(*server_, {"Condition", "Encounter"});
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 4, "safetyMarginSeconds": 0)");
  server_->ClearRequests();
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
  auto events = Events(r.err);
  for (const char* type : {"Condition", "Encounter"}) {
    const Value* e = TypeEvent(events, type);
    ASSERT_NE(e, nullptr) << type;
    EXPECT_EQ(Num(*e, "searches"), 4) << type << ": four windows for four connections";
    long on_server =
        Num(server_->Json("GET", fmt::format("/fhir/R4/{}?_summary=count", type)), "total");
    EXPECT_EQ(Num(*e, "resources"), on_server) << type << ": every resource exactly once";
    EXPECT_EQ(Num(*e, "inserted"), on_server) << type;
  }
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/Encounter?_count=1&_sort=_lastUpdated"), 1u);
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/Encounter?_count=1&_sort=-_lastUpdated"), 1u);
  EXPECT_EQ(CountRequests(*server_, "GET /fhir/R4/Encounter?_count=25&_lastUpdated=lt"), 1u);
  EXPECT_GE(CountRequests(*server_, "GET /fhir/R4/Encounter?_count=25&_lastUpdated=ge"), 3u);
  // Types whose resources were all stamped within a second stay one search.
  EXPECT_EQ(Num(*TypeEvent(events, "Patient"), "searches"), 1);

  // Nothing changed: the incremental run pulls nothing and reports the same.
  GatewayRun again = Sync(config, dir_ / "report2.ndjson");
  ASSERT_EQ(again.status, 0) << again.err;
  auto events2 = Events(again.err);
  EXPECT_EQ(Num(*TypeEvent(events2, "Encounter"), "resources"), 0);
  EXPECT_EQ(ReadFile(dir_ / "report.ndjson"), ReadFile(dir_ / "report2.ndjson"));
}

TEST_F(SyncTest, ASearchThatCannotBeSplitIsPulledWholeWithAWarning) {
  SpreadLastUpdated(*server_, {"Encounter"});
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 4)");
  server_->Faults(R"([{"match": "_sort=", "kind": "status", "status": 400, "times": 100,
                       "body": {"resourceType": "OperationOutcome", "issue": [
                         {"severity": "error", "code": "not-supported",
                          "diagnostics": "_sort is not supported"}]}}])");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "report.ndjson"), *server_));
  auto events = Events(r.err);
  EXPECT_EQ(Num(*TypeEvent(events, "Encounter"), "searches"), 1);
  EXPECT_NE(r.err.find("Encounter: the search cannot be split into _lastUpdated windows"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("_sort is not supported"), std::string::npos) << "withheld: " << r.err;
  EXPECT_NE(r.err.find("error not-supported (server diagnostics withheld"), std::string::npos)
      << r.err;

  // Turned off, no probe is sent at all.
  server_->Send("DELETE", "/__admin/faults");
  server_->ClearRequests();
  auto off = WriteConfig(dir_, *server_, R"("maxConcurrency": 4, "splitByLastUpdated": false)",
                         "off.json");
  GatewayRun r2 = Sync(off, dir_ / "report2.ndjson", "--full");
  ASSERT_EQ(r2.status, 0) << r2.err;
  EXPECT_EQ(CountRequests(*server_, "_sort="), 0u);
  EXPECT_EQ(ReadFile(dir_ / "report.ndjson"), ReadFile(dir_ / "report2.ndjson"));
}

// --- Auth -------------------------------------------------------------------------------------

class SmartAuthTest : public SyncTest, public ::testing::WithParamInterface<bool> {};

TEST_P(SmartAuthTest, BackendServicesTokenIsObtainedCachedAndRenewedAfterRevocation) {
  bool ec = GetParam();
  std::string public_pem = WriteKeyPair(dir_, ec);
  Value auth = Value::MakeObject();
  auth.set("mode", Value::String("smart"));
  auth.set("clientId", Value::String("ccm-gateway-test"));
  auth.set("publicKeyPem", Value::String(public_pem));
  auth.set("alg", Value::String(ec ? "ES384" : "RS384"));
  auth.set("kid", Value::String("test-key-1"));
  server_->Auth(fhir::json::Serialize(auth));
  auto config = WriteConfig(dir_, *server_,
                            fmt::format(R"("auth": {{"type": "smart-backend-services",
      "clientId": "ccm-gateway-test", "keyId": "test-key-1", "privateKeyFile": "key.pem",
      "algorithm": "{}", "scope": "system/*.rs"}})",
                                        ec ? "ES384" : "RS384"));
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameBilling(ReadFile(dir_ / "report.ndjson")));
  Value stats = server_->Json("GET", "/__admin/auth/stats");
  EXPECT_EQ(Num(stats, "tokensIssued"), 1) << "one token, cached across every request and thread";
  Value requests = server_->Requests();
  for (const Value& q : requests.array()) {
    std::string url(q["url"].str());
    if (url.find("/fhir/R4/") != std::string::npos && url.find("metadata") == std::string::npos &&
        url.find("well-known") == std::string::npos) {
      EXPECT_TRUE(q["authorization"].as_bool()) << url;
    }
  }
  EXPECT_EQ(r.err.find("Bearer"), std::string::npos) << "no token in the logs";

  // Tokens revoked while a sync runs: the next request gets 401, the gateway fetches a new token
  // once and goes on.
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 100,
                       "times": 1000}])");
  server_->ClearRequests();
  // (--full: an incremental run would have next to nothing to page through.)
  pid_t pid = StartGateway(fmt::format("sync --once --full --month 2026-10 --config {} --report {}",
                                       config.string(), (dir_ / "r2.ndjson").string()));
  WaitForRequests(*server_, "GET /fhir/R4/Encounter?", 3);
  server_->Send("POST", "/__admin/auth/revoke");
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  stats = server_->Json("GET", "/__admin/auth/stats");
  EXPECT_EQ(Num(stats, "tokensIssued"), 3) << "the second process's token, and one after the 401";
  EXPECT_GE(Num(stats, "unauthorized"), 1);
  EXPECT_TRUE(SameBilling(ReadFile(dir_ / "r2.ndjson")));
}

INSTANTIATE_TEST_SUITE_P(Algorithms, SmartAuthTest, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "ES384" : "RS384"; });

TEST_F(SyncTest, SmartWithTheWrongKeyIsRefusedClearly) {
  WriteKeyPair(dir_, false);  // the gateway's key...
  TempDir other;
  std::string other_public = WriteKeyPair(other, false);  // ...is not the one registered
  Value auth = Value::MakeObject();
  auth.set("mode", Value::String("smart"));
  auth.set("clientId", Value::String("gw"));
  auth.set("publicKeyPem", Value::String(other_public));
  auth.set("alg", Value::String("RS384"));
  auth.set("kid", Value::String("k"));
  server_->Auth(fhir::json::Serialize(auth));
  auto config = WriteConfig(dir_, *server_, R"("auth": {"type": "smart-backend-services",
      "clientId": "gw", "keyId": "k", "privateKeyFile": "key.pem"})");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("invalid_client"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("BEGIN"), std::string::npos) << "no key material in messages";
}

TEST_F(SyncTest, BearerAndClientCredentials) {
  server_->Auth(R"({"mode": "bearer", "token": "t0ken-123"})");
  WriteFile(dir_ / "wrong-token", "nope\n");
  WriteFile(dir_ / "token", "t0ken-123\n");
  auto wrong = WriteConfig(
      dir_, *server_, R"("auth": {"type": "bearer", "tokenFile": "wrong-token"})", "wrong.json");
  GatewayRun r = Sync(wrong, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("HTTP 401"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("nope"), std::string::npos) << "no token in messages";
  auto right = WriteConfig(dir_, *server_, R"("auth": {"type": "bearer", "tokenFile": "token"})",
                           "right.json");
  r = Sync(right, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameBilling(ReadFile(dir_ / "report.ndjson")));

  server_->Auth(R"({"mode": "client-credentials", "clientId": "gw", "clientSecret": "s3cr3t"})");
  ::setenv("CCM_TEST_CLIENT_SECRET", "s3cr3t", 1);
  auto cc = WriteConfig(dir_, *server_,
                        fmt::format(R"("auth": {{"type": "client-credentials",
      "clientId": "gw", "clientSecretEnv": "CCM_TEST_CLIENT_SECRET",
      "tokenUrl": "{}/auth/token"}})",
                                    server_->origin()),
                        "cc.json");
  r = Sync(cc, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(Num(server_->Json("GET", "/__admin/auth/stats"), "tokensIssued"), 1);
}

TEST_F(SyncTest, ShortLivedTokensAreRenewedBeforeTheyExpire) {
  server_->Auth(R"({"mode": "client-credentials", "clientId": "gw", "clientSecret": "s3cr3t",
                    "expiresIn": 2})");
  WriteFile(dir_ / "secret", "s3cr3t");
  auto config = WriteConfig(dir_, *server_,
                            fmt::format(R"("auth": {{"type": "client-credentials",
      "clientId": "gw", "clientSecretFile": "secret", "tokenUrl": "{}/auth/token"}})",
                                        server_->origin()));
  // About 6 s of Encounter pages: three token lifetimes.
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 100,
                       "times": 1000}])");
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  Value stats = server_->Json("GET", "/__admin/auth/stats");
  EXPECT_GE(Num(stats, "tokensIssued"), 3);
  EXPECT_EQ(Num(stats, "unauthorized"), 0) << "renewed ahead of expiry, never after a refusal";
  EXPECT_TRUE(SameBilling(ReadFile(dir_ / "report.ndjson")));
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl tool.
void MakeCertificates(const TempDir& dir) {
  std::string d = dir.path().string();
  std::string script = fmt::format(R"(set -e; cd {}
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=ccm test CA"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
    printf "subjectAltName=IP:127.0.0.1\n" > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=ccm-gateway"
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
  )",
                                   d);
  ASSERT_EQ(std::system(("(" + script + ") >/dev/null 2>&1").c_str()), 0) << "openssl failed";
}

TEST(SyncTlsTest, ServerCertificatesAreVerifiedAndClientCertificatesSent) {
  TempDir dir;
  MakeCertificates(dir);
  fhir::HttpOptions admin;
  admin.tls.ca_file = (dir / "ca.pem").string();
  admin.tls.client_cert = (dir / "client.pem").string();
  admin.tls.client_key = (dir / "client.key").string();
  std::vector<std::string> tls = {"--tls-cert", (dir / "server.pem").string(), "--tls-key",
                                  (dir / "server.key").string()};
  {
    TestFhirServer server(ccm::testing::SampleInputs(), tls, admin);
    ASSERT_TRUE(server.base().starts_with("https://127.0.0.1:")) << server.base();
    // Not trusted by default: a clear error, nothing pulled.
    auto untrusted = WriteConfig(dir, server, R"("retry": {"maxAttempts": 1})", "untrusted.json");
    GatewayRun r = Sync(untrusted, dir / "report.ndjson");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("cannot reach the server"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("certificate"), std::string::npos) << r.err;
    // Trusted through tls.caFile.
    auto trusted = WriteConfig(dir, server, R"("tls": {"caFile": "ca.pem"})", "trusted.json");
    r = Sync(trusted, dir / "report.ndjson");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(SameBilling(ReadFile(dir / "report.ndjson")));
  }
  // Mutual TLS: the server wants a client certificate signed by the CA.
  tls.insert(tls.end(), {"--tls-client-ca", (dir / "ca.pem").string()});
  TestFhirServer server(ccm::testing::SampleInputs(), tls, admin);
  std::filesystem::remove(dir / "state.db");
  auto no_cert = WriteConfig(
      dir, server, R"("tls": {"caFile": "ca.pem"}, "retry": {"maxAttempts": 1})", "no-cert.json");
  GatewayRun r = Sync(no_cert, dir / "report.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  auto with_cert = WriteConfig(dir, server, R"("tls": {"caFile": "ca.pem",
      "clientCertFile": "client.pem", "clientKeyFile": "client.key"})",
                               "mtls.json");
  r = Sync(with_cert, dir / "report.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(SameBilling(ReadFile(dir / "report.ndjson")));
}

TEST_F(SyncTest, UnreachableServerFailsTheSourceClearly) {
  auto config =
      WriteConfig(dir_, *server_, R"("retry": {"maxAttempts": 2, "initialBackoffMs": 10})");
  server_->Shutdown();  // nothing listens on that port any more
  GatewayRun r = Sync(config, dir_ / "report.ndjson");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot reach the server"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ccm::gateway
