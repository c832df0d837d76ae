// `ccm-gateway sync` against a server that answers badly (tests/server/ faults): a broken answer
// must never become a deletion, a moved cursor or an "ok" (docs/architecture.md "Completeness").
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "gateway/sync/sync_support.h"
#include "test_server.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using namespace sync_testing;  // NOLINT(google-build-using-namespace)

class SyncIntegrityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestFhirServer>(ccm::testing::SampleInputs());
  }
  std::unique_ptr<StateStore> Store() {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    EXPECT_TRUE(store) << store.error().message;
    return std::move(*store);
  }
  std::size_t Stored(const char* type) { return *Store()->CountResources("ehr", type); }
  std::optional<SyncCursor> Cursor(const char* type) { return *Store()->GetCursor("ehr", type); }
  PullStatus Pull(const char* type) {
    for (auto& p : *Store()->PullStatuses()) {
      if (p.type == type) return p;
    }
    ADD_FAILURE() << "no pull status for " << type;
    return {};
  }
  std::size_t OnServer(const char* type) {
    Value b = server_->Json("GET", fmt::format("/fhir/R4/{}?_summary=count", type));
    return static_cast<std::size_t>(Num(b, "total"));
  }
  // A first sync that succeeds, so that later runs have rows and cursors to lose.
  void FirstSync(const std::filesystem::path& config) {
    GatewayRun r = Sync(config, dir_ / "first.ndjson");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static std::string Message(const Value* e) {
    return e == nullptr || e->find("message") == nullptr ? "" : std::string((*e)["message"].str());
  }

  std::unique_ptr<TestFhirServer> server_;
  TempDir dir_;
};

// The worst case of the issue: HTTP 200, a searchset holding only an error OperationOutcome.
TEST_F(SyncIntegrityTest, AnErrorOutcomeInASearchsetFailsTheTypeAndRemovesNothing) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  FirstSync(config);
  std::size_t encounters = Stored("Encounter");
  auto cursor = Cursor("Encounter");
  ASSERT_TRUE(cursor);
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "outcome",
                       "severity": "error", "code": "too-costly", "total": 0,
                       "diagnostics": "Patient Jane Roe MRN 1234: too costly", "times": 100}])");
  GatewayRun r = Sync(config, dir_ / "r.ndjson", "--full");
  EXPECT_EQ(r.status, 1) << r.err;
  auto events = Events(r.err);
  const Value* enc = TypeEvent(events, "Encounter");
  ASSERT_NE(enc, nullptr) << r.err;
  EXPECT_EQ((*enc)["state"].str(), "failed");
  EXPECT_NE(Message(enc).find("reports an error or a result cut short (error too-costly)"),
            std::string::npos)
      << Message(enc);
  EXPECT_EQ(r.err.find("Jane Roe"), std::string::npos) << "server text stays out of the logs";
  EXPECT_EQ(Stored("Encounter"), encounters) << "nothing removed";
  EXPECT_EQ(Cursor("Encounter")->watermark, cursor->watermark) << "the cursor did not move";
  EXPECT_EQ(Pull("Encounter").state, PullState::kFailed);
  EXPECT_EQ(Pull("Condition").state, PullState::kComplete) << "the other types went on";
  Value last = FinalEvent(r.err);
  EXPECT_FALSE(last["ok"].as_bool()) << "the last log line agrees with the exit status";
  EXPECT_EQ(last["level"].str(), "error");
  EXPECT_EQ(Num(last, "exitStatus"), 1);

  // And bill will not act on it: it names what is missing and since when.
  GatewayRun bill =
      Gateway(fmt::format("bill --month 2026-10 --dry-run --config {}", config.string()));
  EXPECT_EQ(bill.status, 1) << bill.out << bill.err;
  EXPECT_NE(bill.err.find("ehr/Encounter: failed since"), std::string::npos) << bill.err;
  EXPECT_EQ(bill.err.find("ehr/Condition"), std::string::npos) << "complete types are not named";
}

TEST_F(SyncIntegrityTest, WarningOutcomesAreLoggedAndThePullGoesOn) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  server_->Faults(R"([{"match": "GET /fhir/R4/Condition?", "kind": "outcome", "keepEntries": true,
                       "severity": "warning", "code": "informational", "times": 100}])");
  GatewayRun r = Sync(config, dir_ / "r.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("the server notes: warning informational"), std::string::npos) << r.err;
  auto events = Events(r.err);
  ASSERT_NE(TypeEvent(events, "Condition"), nullptr);
  EXPECT_EQ((*TypeEvent(events, "Condition"))["state"].str(), "complete");
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "r.ndjson"), *server_));

  // A "warning" that says the result was cut short is not a note: the search is not whole.
  server_->Send("DELETE", "/__admin/faults");
  server_->Faults(R"([{"match": "GET /fhir/R4/Condition?", "kind": "outcome", "keepEntries": true,
                       "severity": "warning", "code": "incomplete", "times": 100}])");
  GatewayRun cut = Sync(config, dir_ / "r.ndjson", "--full");
  EXPECT_EQ(cut.status, 1) << cut.err;
  auto cut_events = Events(cut.err);
  ASSERT_NE(TypeEvent(cut_events, "Condition"), nullptr);
  EXPECT_EQ((*TypeEvent(cut_events, "Condition"))["state"].str(), "failed");
}

TEST_F(SyncIntegrityTest, EntriesOfAnotherTypeAreReportedAndNeverMakeAPageComplete) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  // Every entry of every Condition page relabelled: nothing of what was searched came back.
  server_->Faults(R"([{"match": "GET /fhir/R4/Condition?", "kind": "wrong-type",
                       "resourceType": "Observation", "times": 100}])");
  GatewayRun r = Sync(config, dir_ / "r.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  auto events = Events(r.err);
  const Value* cond = TypeEvent(events, "Condition");
  ASSERT_NE(cond, nullptr);
  EXPECT_EQ((*cond)["state"].str(), "failed");
  EXPECT_NE(Message(cond).find("none is a Condition with an id (e.g. Observation)"),
            std::string::npos)
      << Message(cond);
  EXPECT_EQ(Stored("Condition"), 0u);
  EXPECT_FALSE(Cursor("Condition"));

  // One stray entry per page, every time: reported, and the type is short of its total.
  server_->Send("DELETE", "/__admin/faults");
  server_->Faults(R"([{"match": "GET /fhir/R4/Condition?", "kind": "wrong-type", "count": 1,
                       "times": 1000}])");
  r = Sync(config, dir_ / "r.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  events = Events(r.err);
  cond = TypeEvent(events, "Condition");
  ASSERT_NE(cond, nullptr);
  EXPECT_EQ((*cond)["state"].str(), "incomplete");
  EXPECT_GT(Num(*cond, "rejected"), 0);
  EXPECT_NE(r.err.find("entries skipped: not a Condition with an id"), std::string::npos);
  EXPECT_FALSE(Cursor("Condition")) << "an incomplete pull moves no cursor";
  EXPECT_EQ(Pull("Condition").state, PullState::kIncomplete);
}

TEST_F(SyncIntegrityTest, FewerResourcesThanTheTotalSaidIsIncompleteAndKeepsEverything) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  FirstSync(config);
  std::size_t encounters = Stored("Encounter");
  auto cursor = Cursor("Encounter");
  // Every Encounter page loses its last entry; the total still counts it.
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "drop-entries",
                       "times": 1000}])");
  GatewayRun r = Sync(config, dir_ / "r.ndjson", "--full");
  EXPECT_EQ(r.status, 1) << r.err;
  auto events = Events(r.err);
  const Value* enc = TypeEvent(events, "Encounter");
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ((*enc)["state"].str(), "incomplete");
  EXPECT_NE(Message(enc).find("Bundle.total"), std::string::npos) << Message(enc);
  EXPECT_EQ(Num(*enc, "passes"), 3) << "read again before giving up";
  EXPECT_EQ(Stored("Encounter"), encounters) << "a full pull that is incomplete removes nothing";
  EXPECT_EQ(Cursor("Encounter")->watermark, cursor->watermark);
  EXPECT_FALSE(FinalEvent(r.err)["ok"].as_bool());

  // A fault that happens once is read through: the second read is whole.
  server_->Send("DELETE", "/__admin/faults");
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "drop-entries"}])");
  r = Sync(config, dir_ / "r.ndjson", "--full");
  ASSERT_EQ(r.status, 0) << r.err;
  auto again = Events(r.err);
  ASSERT_NE(TypeEvent(again, "Encounter"), nullptr);
  EXPECT_EQ(Num(*TypeEvent(again, "Encounter"), "passes"), 2);
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "r.ndjson"), *server_));
}

TEST_F(SyncIntegrityTest, PagingEndsInBoundedWork) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1, "maxPagesPerSearch": 3)");
  server_->Faults(R"([{"match": "GET /fhir/R4/Patient?", "kind": "empty-next", "times": 1000}])");
  GatewayRun r = Sync(config, dir_ / "r.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  auto events = Events(r.err);
  EXPECT_NE(Message(TypeEvent(events, "Patient")).find("has no entries but links a next page"),
            std::string::npos)
      << r.err;
  EXPECT_LE(CountRequests(*server_, "GET /fhir/R4/Patient?"), 3u) << "retries only, no paging";
  const Value* enc = TypeEvent(events, "Encounter");
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ((*enc)["state"].str(), "failed");
  EXPECT_NE(Message(enc).find("more than 3 pages in one Encounter search"), std::string::npos)
      << Message(enc);
  EXPECT_NE(Message(enc).find("maxPagesPerSearch"), std::string::npos);
}

// The CapabilityStatement, served instead of the real one for the next runs.
void ServeCapabilities(TestFhirServer& server, const std::string& cs, int times = 10) {
  server.Send("DELETE", "/__admin/faults");
  server.Faults(fmt::format(R"([{{"match": "GET /fhir/R4/metadata", "kind": "status",
                                  "status": 200, "times": {}, "body": {}}}])",
                            times, cs));
}

TEST_F(SyncIntegrityTest, ACapabilityStatementThatOffersNothingUsableFailsTheSource) {
  auto config = WriteConfig(dir_, *server_);
  struct Case {
    const char* cs;
    const char* says;
  };
  for (const Case& c : {
           Case{R"({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                    "fhirVersion": "4.0.1", "format": ["json"], "rest": []})",
                "offers none of the types this source pulls (Patient, Condition, Encounter, "
                "CarePlan, Consent, Practitioner, PractitionerRole) (it lists no resource types"},
           Case{R"({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                    "fhirVersion": "5.0.0", "format": ["json"], "rest": [{"mode": "server",
                    "resource": [{"type": "Patient"}]}]})",
                "says FHIR 5.0.0 (fhirVersion), and ccm-gateway reads FHIR R4"},
           Case{R"({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                    "fhirVersion": "4.0.1", "format": ["xml", "application/fhir+xml"],
                    "rest": [{"mode": "server", "resource": [{"type": "Patient"}]}]})",
                "offers the formats xml, application/fhir+xml and no JSON"},
           Case{R"({"resourceType": "OperationOutcome", "issue": []})",
                "answered with a OperationOutcome instead of a CapabilityStatement"},
       }) {
    ServeCapabilities(*server_, c.cs);
    GatewayRun r = Sync(config, dir_ / "r.ndjson");
    EXPECT_EQ(r.status, 1) << c.says << "\n" << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    auto none = Events(r.err);
    EXPECT_EQ(TypeEvent(none, "Patient"), nullptr) << "nothing was pulled";
    EXPECT_EQ(Pull("Encounter").state, PullState::kFailed);
    EXPECT_FALSE(FinalEvent(r.err)["ok"].as_bool());
  }
  // A JSON MIME type with parameters is JSON.
  ServeCapabilities(*server_, R"({"resourceType": "CapabilityStatement", "status": "active",
      "kind": "instance", "fhirVersion": "4.0.1",
      "format": ["application/fhir+json; fhirVersion=4.0", "xml"],
      "rest": [{"mode": "server", "resource": [{"type": "Patient"}, {"type": "Condition"},
        {"type": "Encounter"}, {"type": "CarePlan"}, {"type": "Consent"},
        {"type": "Practitioner"}, {"type": "PractitionerRole"}]}]})");
  GatewayRun ok = Sync(config, dir_ / "r.ndjson");
  EXPECT_EQ(ok.status, 0) << ok.err;
}

TEST_F(SyncIntegrityTest, AServerClockFarFromOursNeverBecomesACursorOrAProof) {
  // One connection: no _lastUpdated windows, whose bounds would also read "_lastUpdated=lt".
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  // Every answer says it is two hours later than it is.
  server_->Faults(R"([{"match": "GET /fhir/R4/", "kind": "date", "offsetSeconds": 7200,
                       "times": 100000}])");
  GatewayRun r = Sync(config, dir_ / "r.ndjson");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("s from ours"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sync.maxClockSkewSeconds"), std::string::npos);
  EXPECT_FALSE(Cursor("Encounter")) << "a clock two hours ahead would skip two hours of changes";
  EXPECT_FALSE(Cursor("Patient"));
  // Without a time bound a search of several pages cannot be proven whole; a one-page one can.
  EXPECT_EQ(Pull("Encounter").state, PullState::kIncomplete);
  EXPECT_NE(Pull("Encounter").detail.find("no usable clock"), std::string::npos);
  EXPECT_EQ(Pull("Patient").state, PullState::kComplete);
  EXPECT_EQ(CountRequests(*server_, "_lastUpdated=lt"), 0u) << "not used as a bound either";

  // A CapabilityStatement served from a cache (an old Date) is not the server's clock: a
  // one-resource search gives it, and the pull is whole.
  server_->Send("DELETE", "/__admin/faults");
  server_->Faults(
      R"([{"match": "GET /fhir/R4/metadata", "kind": "date", "offsetSeconds": -3600}])");
  GatewayRun again = Sync(config, dir_ / "r.ndjson");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_TRUE(Cursor("Encounter"));
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "r.ndjson"), *server_));
}

TEST_F(SyncIntegrityTest, AVersionThatGoesBackwardsWarnsOnIncrementalAndIsTrustedOnFull) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  std::string p5 = R"({"resourceType": "Patient", "id": "vb", "gender": "female",
      "meta": {"versionId": "5", "lastUpdated": "2026-01-01T00:00:00Z"}})";
  server_->Send("POST", "/__admin/load?keepMeta=true", p5);
  FirstSync(config);
  // The server now holds version 3 of it (restored from a backup), stamped just now.
  std::string p3 = fmt::format(R"({{"resourceType": "Patient", "id": "vb", "gender": "male",
      "meta": {{"versionId": "3", "lastUpdated": "{}"}}}})",
                               fhir::NowUtc());
  server_->Send("POST", "/__admin/load?keepMeta=true", p3);
  TestFhirServer::AwaitNextSecond();  // a sync reads what changed before its first second
  GatewayRun inc = Sync(config, dir_ / "r.ndjson");
  ASSERT_EQ(inc.status, 0) << inc.err;
  auto inc_events = Events(inc.err);
  const Value* pat = TypeEvent(inc_events, "Patient");
  ASSERT_NE(pat, nullptr);
  EXPECT_EQ(Num(*pat, "older"), 1);
  EXPECT_EQ((*pat)["level"].str(), "warning");
  EXPECT_NE(Message(pat).find("older version than the one stored, which is kept"),
            std::string::npos);
  EXPECT_NE(Store()->ResourceJson("ehr", "Patient", "vb")->value().find("female"),
            std::string::npos);

  GatewayRun full = Sync(config, dir_ / "r.ndjson", "--full");
  ASSERT_EQ(full.status, 0) << full.err;
  auto full_events = Events(full.err);
  pat = TypeEvent(full_events, "Patient");
  EXPECT_EQ(Num(*pat, "rolledBack"), 1);
  EXPECT_NE(Store()->ResourceJson("ehr", "Patient", "vb")->value().find("\"male\""),
            std::string::npos)
      << "the server's copy";
}

// Offset paging while someone edits: the edit moves a resource already read to the end of the
// (lastUpdated-ordered) result, every later resource moves up one place, and the one at the page
// boundary is never on any page.
TEST_F(SyncIntegrityTest, AnEditDuringPagingNeverHidesAnUnchangedResource) {
  auto config = WriteConfig(dir_, *server_,
                            R"("maxConcurrency": 1, "pageSize": 5, "splitByLastUpdated": false)");
  Value first_page = server_->Json("GET", "/fhir/R4/Encounter?_count=5");
  Value edited = first_page["entry"][0]["resource"];
  edited.set("language", Value::String("en"));
  // Applied to the second page's request, after the first page was read.
  server_->Faults(fmt::format(R"([{{"match": ["GET /fhir/R4/Encounter?", "_count=5&_offset=5"],
                                   "kind": "write-first", "resource": {}}}])",
                              fhir::json::Serialize(edited)));
  GatewayRun r = Sync(config, dir_ / "r.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(server_->Json("GET", "/__admin/faults").size(), 0u) << "the edit happened mid-pull";
  auto events = Events(r.err);
  const Value* enc = TypeEvent(events, "Encounter");
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(Num(*enc, "passes"), 2) << "the change was seen and the search read again";
  // Every Encounter the server had before the edit began is stored (the edited one is outside
  // this pull's time bound and comes with the next sync).
  EXPECT_EQ(Stored("Encounter"), OnServer("Encounter"));
  TestFhirServer::AwaitNextSecond();
  GatewayRun next = Sync(config, dir_ / "r.ndjson");
  ASSERT_EQ(next.status, 0) << next.err;
  EXPECT_TRUE(SameReport(ReadFile(dir_ / "r.ndjson"), *server_));
}

// Paging that loses a resource while its counts agree with the loss: only asking the server for
// each removal candidate by id finds out. The candidate is kept (and refreshed), not removed.
TEST_F(SyncIntegrityTest, AFullPullRemovesOnlyWhatTheServerConfirmsGone) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1, "pageSize": 25)");
  FirstSync(config);
  std::size_t encounters = Stored("Encounter");
  server_->Faults(R"([
    {"match": "GET /fhir/R4/Encounter?_count=25&", "kind": "total", "add": -1, "times": 100},
    {"match": ["GET /fhir/R4/Encounter?", "_count=25&_offset=25"], "kind": "drop-entries"},
    {"match": ["GET /fhir/R4/Encounter?", "_summary=count"], "kind": "total", "add": -1,
     "times": 100}])");
  GatewayRun r = Sync(config, dir_ / "r.ndjson", "--full");
  EXPECT_EQ(r.status, 1) << r.err;
  auto events = Events(r.err);
  const Value* enc = TypeEvent(events, "Encounter");
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ((*enc)["state"].str(), "incomplete");
  EXPECT_EQ(Num(*enc, "recovered"), 1);
  EXPECT_EQ(Num(*enc, "removed"), 0);
  EXPECT_NE(Message(enc).find("paging missed 1 Encounter resource(s) the server still has"),
            std::string::npos)
      << Message(enc);
  EXPECT_EQ(Stored("Encounter"), encounters);
  EXPECT_GT(CountRequests(*server_, "Encounter?_id="), 0u);

  // A resource really deleted goes, after the same check.
  server_->Send("DELETE", "/__admin/faults");
  Value one = server_->Json("GET", "/fhir/R4/Encounter?_count=1");
  std::string id(one["entry"][0]["resource"]["id"].str());
  ASSERT_LT(server_->Send("DELETE", "/fhir/R4/Encounter/" + id).status, 300);
  r = Sync(config, dir_ / "r.ndjson", "--full");
  ASSERT_EQ(r.status, 0) << r.err;
  auto gone = Events(r.err);
  ASSERT_NE(TypeEvent(gone, "Encounter"), nullptr);
  EXPECT_EQ(Num(*TypeEvent(gone, "Encounter"), "removed"), 1);
  EXPECT_FALSE(*Store()->ResourceJson("ehr", "Encounter", id));
  EXPECT_EQ(Stored("Encounter"), encounters - 1);
}

// A resource edited as a full pull starts lies outside the pull's time window: it is not in the
// result, yet the server has it. It is neither removed nor taken for a resource paging missed.
TEST_F(SyncIntegrityTest, AnEditAsAFullPullStartsIsNeitherRemovedNorAMiss) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  FirstSync(config);
  Value plan = server_->Json("GET", "/fhir/R4/CarePlan?_count=1")["entry"][0]["resource"];
  plan.set("status", Value::String("completed"));
  // Written just before the metadata request of the full pull is answered (same second).
  server_->Faults(fmt::format(R"([{{"match": "GET /fhir/R4/metadata", "kind": "write-first",
                                   "resource": {}}}])",
                              fhir::json::Serialize(plan)));
  GatewayRun r = Sync(config, dir_ / "r.ndjson", "--full");
  ASSERT_EQ(r.status, 0) << r.err;
  auto events = Events(r.err);
  const Value* cp = TypeEvent(events, "CarePlan");
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ((*cp)["state"].str(), "complete");
  EXPECT_EQ(Num(*cp, "recovered"), 0);
  EXPECT_EQ(Num(*cp, "removed"), 0);
  EXPECT_NE(Store()->ResourceJson("ehr", "CarePlan", plan["id"].str())->value().find("completed"),
            std::string::npos)
      << "the server's present copy is stored";
  EXPECT_EQ(Stored("CarePlan"), OnServer("CarePlan"));
}

TEST_F(SyncIntegrityTest, TwoSyncsOnOneStateFileTakeTurnsAndLoseNothing) {
  auto config = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)");
  FirstSync(config);
  // A slow incremental sync holds the lock while a --full starts.
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 300,
                       "times": 3}])");
  pid_t slow = StartGateway(fmt::format("sync --once --month 2026-10 --config {} --report {}",
                                        config.string(), (dir_ / "slow.ndjson").string()),
                            dir_ / "slow.log");
  WaitForRequests(*server_, "GET /fhir/R4/Encounter?", 1);
  // Meanwhile new data arrives, which the incremental sync will store and the full sync must not
  // remove as unseen.
  server_->Send("POST", "/__admin/load",
                R"({"resourceType": "Patient", "id": "arrived-meanwhile", "gender": "other"})");
  TestFhirServer::AwaitNextSecond();  // before the full sync starts, whenever that is
  GatewayRun full = Sync(config, dir_ / "full.ndjson", "--full");
  int status = 0;
  ::waitpid(slow, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(full.status, 0) << full.err;
  EXPECT_TRUE(*Store()->ResourceJson("ehr", "Patient", "arrived-meanwhile"));
  // They took turns: the full run's pulls started after the incremental run's pulls had ended
  // (the lock covers the pulls; evaluating afterwards needs none, so run rows may overlap).
  std::string slow_last_end, full_first_start;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ / "state.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    // pulls keeps the latest pull per source and type (the full run's); the incremental run's
    // pulls ended before its last type-synced log line.
    sqlite3_prepare_v2(db,
                       "SELECT min(started_at) FROM pulls WHERE run = (SELECT max(id) FROM runs)",
                       -1, &st, nullptr);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
      full_first_start = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  for (const Value& e : Events(ReadFile(dir_ / "slow.log"))) {
    if (e["event"].str() == "type-synced" && e["time"].str() > slow_last_end) {
      slow_last_end = std::string(e["time"].str());
    }
  }
  ASSERT_FALSE(full_first_start.empty());
  ASSERT_FALSE(slow_last_end.empty());
  auto instant = [](const std::string& t) {
    return fhir::FhirDateTime::ParseInstant(t)->Earliest();
  };
  EXPECT_GE(instant(full_first_start), instant(slow_last_end))
      << full_first_start << " vs " << slow_last_end
      << ": the full sync waited for the incremental one";
  for (const char* type : {"Patient", "Condition", "Encounter", "CarePlan", "Consent"}) {
    EXPECT_EQ(Stored(type), OnServer(type)) << type;
  }

  // With no wait allowed, the second one says who holds the state file and fails.
  auto impatient = WriteConfig(dir_, *server_, R"("maxConcurrency": 1)", "impatient.json");
  std::string text = ReadFile(impatient);
  text.replace(text.find("\"state\": {"), 10, R"("sync": {"lockWaitSeconds": 0}, "state": {)");
  WriteFile(impatient, text);
  // The holder's request is held far longer than the second sync can take to start, even on a
  // loaded machine under a sanitizer; the holder is killed once the answer is in.
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 60000}])");
  pid_t holder = StartGateway(fmt::format("sync --once --month 2026-10 --config {} --report {}",
                                          config.string(), (dir_ / "slow.ndjson").string()));
  std::size_t before = CountRequests(*server_, "GET /fhir/R4/Encounter?");
  WaitForRequests(*server_, "GET /fhir/R4/Encounter?", before + 1);
  GatewayRun refused = Sync(impatient, dir_ / "refused.ndjson");
  ::kill(holder, SIGKILL);
  ::waitpid(holder, &status, 0);
  EXPECT_EQ(refused.status, 1) << refused.err;
  EXPECT_NE(refused.err.find(fmt::format("(pid {})", holder)), std::string::npos) << refused.err;
  EXPECT_FALSE(FinalEvent(refused.err)["ok"].as_bool());
}

TEST_F(SyncIntegrityTest, GroupScopeHonoursActiveAndMemberPeriods) {
  Value patients = server_->Json("GET", "/fhir/R4/Patient?_count=100");
  ASSERT_GE(patients["entry"].size(), 3u);
  auto pid = [&](std::size_t i) {
    return std::string(patients["entry"][i]["resource"]["id"].str());
  };
  std::string group = fmt::format(R"({{"resourceType": "Group", "id": "panel", "type": "person",
      "actual": true, "member": [
        {{"entity": {{"reference": "Patient/{}"}}}},
        {{"entity": {{"reference": "Patient/{}"}}, "period": {{"end": "2020-01-31"}}}},
        {{"entity": {{"reference": "Patient/{}"}}, "period": {{"start": "2099-01-01"}}}}]}})",
                                  pid(0), pid(1), pid(2));
  server_->Send("POST", "/__admin/load", group);
  auto config = WriteConfig(dir_, *server_, R"("scope": {"group": "Group/panel"})");
  GatewayRun r = Sync(config, dir_ / "r.ndjson");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("2 member(s) whose member.period does not cover today are not pulled"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(Stored("Patient"), 1u);
  EXPECT_TRUE(*Store()->ResourceJson("ehr", "Patient", pid(0)));

  // An inactive group is no panel: the source fails and nothing is removed.
  Value inactive = *fhir::json::Parse(group);
  inactive.set("active", Value::Bool(false));
  server_->Put(inactive);
  GatewayRun off = Sync(config, dir_ / "r.ndjson");
  EXPECT_EQ(off.status, 1) << off.err;
  EXPECT_NE(off.err.find("is inactive (Group.active = false)"), std::string::npos) << off.err;
  EXPECT_EQ(Stored("Patient"), 1u);
  EXPECT_EQ(Pull("Patient").state, PullState::kFailed);
}

// Not on a terminal, every line sync writes is a JSON event, the last one agreeing with the exit
// status — also when it stops before pulling anything.
TEST(SyncLogTest, EveryLineIsJsonAndTheLastAgreesWithTheExitStatus) {
  TempDir dir;
  WriteFile(dir / "bad.json",
            R"({"sources": [{"name": "ehr", "baseUrl": "https://u:p@ehr.example/fhir"}],
      "state": {"path": "state.db"}})");
  GatewayRun r = Gateway(fmt::format("sync --once --config {}", (dir / "bad.json").string()));
  EXPECT_EQ(r.status, 2) << r.err;
  std::size_t lines = 0;
  for (std::size_t pos = 0; pos < r.err.size();) {
    std::size_t nl = r.err.find('\n', pos);
    std::string line = r.err.substr(pos, nl - pos);
    pos = nl == std::string::npos ? r.err.size() : nl + 1;
    ++lines;
    EXPECT_TRUE(fhir::json::Parse(line)) << "not JSON: " << line;
  }
  EXPECT_GE(lines, 1u);
  Value last = Events(r.err).back();
  EXPECT_EQ(last["event"].str(), "config-failed");
  EXPECT_FALSE(last["ok"].as_bool());
  EXPECT_EQ(Num(last, "exitStatus"), 2);
  EXPECT_EQ(r.err.find("u:p"), std::string::npos) << "the credentials are not repeated";
}

}  // namespace
}  // namespace ccm::gateway
