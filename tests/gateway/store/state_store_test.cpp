// The SQLite state store, on real files.
#include "gateway/store/state_store.h"
#include "gateway/store/sqlite_state_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <gtest/gtest.h>

#include <algorithm>

#include "gateway/store/locks.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::TempDir;

VersionStamp Stamp(std::string v, std::string lu = "") {
  VersionStamp s;
  s.version_id = std::move(v);
  if (!lu.empty()) s.last_updated = fhir::FhirDateTime::ParseInstant(lu)->Earliest();
  return s;
}

std::vector<std::string> All(StateStore& store, std::string_view source = "") {
  std::vector<std::string> out;
  auto s = store.ForEachResource(source, [&](auto src, auto type, auto id, auto json) {
    out.push_back(fmt::format("{}|{}/{}|{}", src, type, id, json));
    return true;
  });
  EXPECT_TRUE(s);
  std::sort(out.begin(), out.end());  // the store promises no order
  return out;
}

TEST(StateStoreTest, UpsertKeepsTheNewestVersionWhateverTheOrder) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  StateStore& s = **store;
  EXPECT_EQ(s.schema_version(), CurrentStateSchemaVersion());
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("2"), R"({"v":2})", 1),
            UpsertOutcome::kInserted);
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("1"), R"({"v":1})", 1), UpsertOutcome::kOlder);
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("2"), R"({"v":2})", 1),
            UpsertOutcome::kUnchanged);
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("10"), R"({"v":10})", 1),
            UpsertOutcome::kUpdated);
  // Same versionId but a later lastUpdated (opaque version ids): newer.
  EXPECT_EQ(*s.Upsert("ehr", "Encounter", "e", Stamp("a", "2026-01-01T00:00:00Z"), "{}", 1),
            UpsertOutcome::kInserted);
  EXPECT_EQ(*s.Upsert("ehr", "Encounter", "e", Stamp("b", "2026-01-02T00:00:00Z"), R"({"x":1})", 1),
            UpsertOutcome::kUpdated);
  EXPECT_EQ(*s.Upsert("ehr", "Encounter", "e", Stamp("c", "2025-12-31T00:00:00Z"), R"({"x":0})", 1),
            UpsertOutcome::kOlder);
  // Unstamped resources: the content decides.
  EXPECT_EQ(*s.Upsert("ehr", "Consent", "c", Stamp(""), R"({"a":1})", 1), UpsertOutcome::kInserted);
  EXPECT_EQ(*s.Upsert("ehr", "Consent", "c", Stamp(""), R"({"a":1})", 1),
            UpsertOutcome::kUnchanged);
  EXPECT_EQ(*s.Upsert("ehr", "Consent", "c", Stamp(""), R"({"a":2})", 1), UpsertOutcome::kUpdated);
  // Sources are separate namespaces.
  EXPECT_EQ(*s.Upsert("other", "Patient", "1", Stamp("1"), R"({"o":1})", 1),
            UpsertOutcome::kInserted);
  EXPECT_EQ(All(s, "ehr"),
            (std::vector<std::string>{R"(ehr|Consent/c|{"a":2})", R"(ehr|Encounter/e|{"x":1})",
                                      R"(ehr|Patient/1|{"v":10})"}));
  EXPECT_EQ(*s.CountResources("", ""), 4u);
  EXPECT_EQ(*s.CountResources("ehr", "Patient"), 1u);
}

TEST(StateStoreTest, SurvivesReopenAndRemovesWhatARunDidNotSee) {
  TempDir dir;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    for (const char* id : {"a", "b", "c"}) {
      ASSERT_TRUE((*store)->Upsert("ehr", "Condition", id, Stamp("1"), "{}", 1));
    }
    ASSERT_TRUE((*store)->Upsert("ehr", "Patient", "p", Stamp("1"), "{}", 1));
    ASSERT_TRUE((*store)->SetCursor("ehr", "Condition", {"2026-11-01T00:00:00Z", "all"}));
  }
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  StateStore& s = **store;
  auto c = s.GetCursor("ehr", "Condition");
  ASSERT_TRUE(c && *c);
  EXPECT_EQ((*c)->watermark, "2026-11-01T00:00:00Z");
  EXPECT_EQ((*c)->scope, "all");
  EXPECT_FALSE(*s.GetCursor("ehr", "Encounter"));
  // Run 2 sees a (unchanged) and c (updated) but not b: b is the candidate; Patient untouched.
  EXPECT_EQ(*s.Upsert("ehr", "Condition", "a", Stamp("1"), "{}", 2), UpsertOutcome::kUnchanged);
  EXPECT_EQ(*s.Upsert("ehr", "Condition", "c", Stamp("2"), "{}", 2), UpsertOutcome::kUpdated);
  EXPECT_EQ(*s.UnseenIds("ehr", "Condition", 2), std::vector<std::string>{"b"});
  EXPECT_TRUE(*s.RemoveResource("ehr", "Condition", "b"));
  EXPECT_EQ(All(s), (std::vector<std::string>{"ehr|Condition/a|{}", "ehr|Condition/c|{}",
                                              "ehr|Patient/p|{}"}));
}

TEST(StateStoreTest, TransactionsCommitOrRollBackAsAWhole) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  StateStore& s = **store;
  Status failed = s.InTransaction([&]() -> Status {
    EXPECT_TRUE(s.Upsert("ehr", "Patient", "1", Stamp("1"), "{}", 1));
    EXPECT_TRUE(s.SetCursor("ehr", "Patient", {"2026-11-01T00:00:00Z", "all"}));
    return MakeError(Errc::kNetwork, "page 3 failed");
  });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "page 3 failed");
  EXPECT_EQ(*s.CountResources("", ""), 0u);
  EXPECT_FALSE(*s.GetCursor("ehr", "Patient"));
  ASSERT_TRUE(s.InTransaction([&]() -> Status {
    EXPECT_TRUE(s.Upsert("ehr", "Patient", "1", Stamp("1"), "{}", 1));
    return {};
  }));
  EXPECT_EQ(*s.CountResources("", ""), 1u);
}

TEST(StateStoreTest, RunHistory) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  StateStore& s = **store;
  EXPECT_FALSE(*s.LastRun("sync"));
  auto r1 = s.StartRun("sync");
  auto r2 = s.StartRun("sync");
  ASSERT_TRUE(r1 && r2);
  EXPECT_LT(*r1, *r2);
  ASSERT_TRUE(s.FinishRun(*r2, "ok", R"({"pulled":3})"));
  auto last = s.LastRun("sync");
  ASSERT_TRUE(last && *last);
  EXPECT_EQ((*last)->id, *r2);
  EXPECT_EQ((*last)->status, "ok");
  EXPECT_EQ((*last)->summary, R"({"pulled":3})");
  EXPECT_FALSE((*last)->finished.empty());
}

// Runs `sql` on a SQLite file directly (as another program would).
void ExecSql(const std::filesystem::path& file, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sql;
  sqlite3_close(db);
}

TEST(StateStoreTest, RefusesForeignAndNewerFiles) {
  TempDir dir;
  ExecSql(dir / "other.db", "CREATE TABLE accounts(x)");
  auto foreign = OpenSqliteStateStore(dir / "other.db");
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message.find("not a ccm-gateway state file"), std::string::npos);
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
  }
  ExecSql(dir / "state.db", "PRAGMA user_version = 99");
  auto newer = OpenSqliteStateStore(dir / "state.db");
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().message.find("newer ccm-gateway"), std::string::npos);
  auto missing_dir = OpenSqliteStateStore(dir / "no" / "such" / "dir" / "state.db");
  ASSERT_FALSE(missing_dir);
  EXPECT_NE(missing_dir.error().message.find("cannot open"), std::string::npos);
}

TEST(StateStoreTest, UsesWalMode) {
  TempDir dir;
  ASSERT_TRUE(OpenSqliteStateStore(dir / "state.db"));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST(StateStoreTest, TrustServerTakesAnOlderVersionOncePerRun) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  StateStore& s = **store;
  ASSERT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("5"), R"({"v":5})", 1),
            UpsertOutcome::kInserted);
  // An incremental pull keeps the stored, newer version.
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("3"), R"({"v":3})", 2), UpsertOutcome::kOlder);
  // A full pull takes the server's copy (its versions went backwards, e.g. a restore) ...
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("3"), R"({"v":3})", 3, UpsertMode::kTrustServer),
            UpsertOutcome::kRolledBack);
  EXPECT_EQ(*s.ResourceJson("ehr", "Patient", "1"), std::optional<std::string>(R"({"v":3})"));
  // ... but a resource met twice in that same pull keeps the newer of the two.
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("4"), R"({"v":4})", 3, UpsertMode::kTrustServer),
            UpsertOutcome::kUpdated);
  EXPECT_EQ(*s.Upsert("ehr", "Patient", "1", Stamp("3"), R"({"v":3})", 3, UpsertMode::kTrustServer),
            UpsertOutcome::kOlder);
  EXPECT_EQ(*s.ResourceJson("ehr", "Patient", "1"), std::optional<std::string>(R"({"v":4})"));
  // Candidates for removal and removal one by one.
  ASSERT_TRUE(s.Upsert("ehr", "Patient", "2", Stamp("1"), "{}", 2));
  ASSERT_TRUE(s.Upsert("ehr", "Patient", "0", Stamp("1"), "{}", 2));
  EXPECT_EQ(*s.UnseenIds("ehr", "Patient", 3), (std::vector<std::string>{"0", "2"}));
  EXPECT_TRUE(*s.RemoveResource("ehr", "Patient", "2"));
  EXPECT_FALSE(*s.RemoveResource("ehr", "Patient", "2"));
  EXPECT_EQ(*s.UnseenIds("ehr", "Patient", 3), (std::vector<std::string>{"0"}));
}

LedgerRow PlainEntry(std::string patient) {
  LedgerRow r;
  r.patient = std::move(patient);
  r.month = "2026-10";
  r.family = "care-management";
  r.kind = "charge";
  r.status = "pending";
  r.program = "CCM";
  r.lines_json = R"([{"code":"99490","units":1,"amount":60.49,"encounters":[]}])";
  r.amount_cents = 6049;
  r.evidence_json = "{}";
  r.fingerprint = "fp";
  r.run = 1;
  return r;
}

TEST(StateStoreTest, ProposalsAreOpenedApprovedAndClosedOnce) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  StateStore& s = **store;
  LedgerRow charge = PlainEntry("Patient/a");
  charge.allow_incomplete = "ehr/Encounter: failed since 2026-11-02T10:00:00Z";
  std::int64_t entry = *s.AddLedgerEntry(charge);
  EXPECT_EQ(s.LedgerEntry(entry)->value().allow_incomplete, charge.allow_incomplete);
  LedgerProposal p;
  p.entry = entry;
  p.reason = "no longer billable: no-consent";
  p.proposed = PlainEntry("Patient/a");
  p.proposed.kind = "void";
  p.proposed.lines_json = "[]";
  p.run = 3;
  auto id = s.AddLedgerProposal(p);
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_TRUE(s.AddLedgerProposal(p).error().is(Errc::kConflict)) << "one open proposal per entry";
  auto open = *s.LedgerProposals("2026-10", true);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].id, *id);
  EXPECT_EQ(open[0].status, ProposalStatus::kOpen);
  EXPECT_EQ(open[0].proposed.kind, "void");
  EXPECT_EQ(open[0].proposed.patient, "Patient/a");
  EXPECT_EQ(open[0].run, 3);
  EXPECT_FALSE(open[0].created_at.empty());
  EXPECT_TRUE(s.LedgerProposals("2026-11", false)->empty());

  ASSERT_TRUE(s.ApproveLedgerProposal(*id, "operator ana"));
  auto approved = s.LedgerProposals("", true)->at(0);
  EXPECT_EQ(approved.status, ProposalStatus::kApproved);
  EXPECT_EQ(approved.approved_by, "operator ana");
  EXPECT_FALSE(approved.approved_at.empty());
  EXPECT_TRUE(s.ApproveLedgerProposal(*id, "x").error().is(Errc::kConflict));
  EXPECT_TRUE(s.ApproveLedgerProposal(*id + 1, "x").error().is(Errc::kNotFound));
  EXPECT_FALSE(s.CloseLedgerProposal(*id, ProposalStatus::kOpen, "", std::nullopt));
  ASSERT_TRUE(s.CloseLedgerProposal(*id, ProposalStatus::kCarriedOut, "approved", entry));
  EXPECT_TRUE(s.LedgerProposals("", true)->empty());
  auto closed = s.LedgerProposals("", false)->at(0);
  EXPECT_EQ(closed.status, ProposalStatus::kCarriedOut);
  EXPECT_EQ(closed.result_entry, entry);
  EXPECT_EQ(closed.outcome, "approved");
  EXPECT_TRUE(s.CloseLedgerProposal(*id, ProposalStatus::kDropped, "", std::nullopt)
                  .error()
                  .is(Errc::kConflict));
  // A closed proposal leaves room for a new one on the same entry.
  EXPECT_TRUE(s.AddLedgerProposal(p));
}

TEST(StateStoreTest, HeldDeliveriesMoveBatchAndAuditRecordsAreFoundByTarget) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  StateStore& s = **store;
  std::int64_t entry = *s.AddLedgerEntry(PlainEntry("Patient/a"));
  ASSERT_TRUE(s.AddDelivery(entry, "payer:m", "2026-10-aaaa"));
  ASSERT_TRUE(s.SetDeliveryBatch(entry, "payer:m", ""));
  EXPECT_EQ(s.Deliveries(entry)->at(0).batch, "");
  EXPECT_TRUE(s.SetDeliveryBatch(entry, "payer:x", "b").error().is(Errc::kConflict));
  ASSERT_TRUE(s.SetDelivery(entry, "payer:m", "done", "sent"));
  EXPECT_FALSE(s.SetDeliveryBatch(entry, "payer:m", "b")) << "a delivery done stays in its batch";
  ASSERT_TRUE(s.AddAudit(AuditRow{0, "", 1, "create-sent", "CarePlan?identifier=s|a", "", "", ""}));
  ASSERT_TRUE(s.AddAudit(AuditRow{0, "", 1, "create", "CarePlan/1", "v1", "", ""}));
  ASSERT_TRUE(s.AddAudit(AuditRow{0, "", 2, "update", "CarePlan/1", "v2", "", ""}));
  auto records = *s.AuditRecords("CarePlan/1");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].action, "create");
  EXPECT_EQ(records[1].version, "v2");
  EXPECT_TRUE(s.AuditRecords("CarePlan/2")->empty());
}

TEST(StateStoreTest, SchemaFourKeepsAVersionThreeLedgerAndAddsProposals) {
  TempDir dir;
  std::int64_t id = 0;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    id = *(*store)->AddLedgerEntry(PlainEntry("Patient/p1"));
  }
  // Back to version 3 as released: without what migration 4 adds.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
  const char* v3 = R"sql(
DROP TABLE access_audit;
ALTER TABLE pulls DROP COLUMN last_full_complete_started;
DROP TABLE ledger_proposals;
DROP INDEX audit_target;
ALTER TABLE ledger DROP COLUMN allow_incomplete;
PRAGMA user_version = 3;
)sql";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, v3, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(db);
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
  auto row = (*store)->LedgerEntry(id);
  ASSERT_TRUE(row && *row);
  EXPECT_EQ((*row)->patient, "Patient/p1");
  EXPECT_EQ((*row)->allow_incomplete, "");
  LedgerProposal p;
  p.entry = id;
  p.reason = "test";
  p.proposed = **row;
  p.proposed.kind = "void";
  EXPECT_TRUE((*store)->AddLedgerProposal(p));
}

// A state file from before schema 5 knows of complete pulls but not whether they were full: none
// counts as full, so a void waits for the next complete `sync --full`.
TEST(StateStoreTest, SchemaFiveKnowsNoFullPullOfAnOlderFile) {
  TempDir dir;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->BeginPull("ehr", "Encounter", 1));
    ASSERT_TRUE(
        (*store)->EndPull("ehr", "Encounter", 1, PullState::kComplete, PullMode::kFull, ""));
  }
  ExecSql(dir / "state.db",
          "DROP TABLE access_audit; ALTER TABLE pulls DROP COLUMN last_full_complete_started; "
          "PRAGMA user_version = 4;");
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
  auto pulls = (*store)->PullStatuses();
  ASSERT_TRUE(pulls);
  ASSERT_EQ(pulls->size(), 1u);
  EXPECT_FALSE(pulls->at(0).last_complete_started.empty());
  EXPECT_TRUE(pulls->at(0).last_full_complete_started.empty());
}

// Schema 6: the access trail of `serve`, appended in batches and read back by patient, principal
// and time; a schema-5 file gains the table and keeps what it had.
TEST(StateStoreTest, SchemaSixKeepsTheAccessTrail) {
  TempDir dir;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->BeginPull("ehr", "Encounter", 1));
  }
  ExecSql(dir / "state.db", "DROP TABLE access_audit; PRAGMA user_version = 5;");
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), 6);
  EXPECT_EQ((*store)->PullStatuses()->size(), 1u);
  StateStore& s = **store;
  const std::string route = "/Patient/{id}/$ccm-status";
  ASSERT_TRUE(s.AddAccessRecords({
      {0, "2026-11-01T10:00:00.000Z", "portal", "GET", route, "Patient/a", "2026-10", 200},
      {0, "2026-11-01T10:00:01.000Z", "", "GET", route, "Patient/b", "2026-10", 401},
      {0, "", "payer", "GET", "/$ccm-billing-summary", "", "2026-10", 200},
  }));
  ASSERT_TRUE(s.AddAccessRecords({}));
  auto all = s.AccessRecords({});
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(all->at(0).patient, "Patient/a");
  EXPECT_EQ(all->at(1).status, 401);
  EXPECT_EQ(all->at(1).principal, "");
  EXPECT_FALSE(all->at(2).at.empty()) << "stamped when not given";
  EXPECT_LT(all->at(0).id, all->at(2).id);
  EXPECT_EQ(s.AccessRecords({.patient = "Patient/b"})->size(), 1u);
  EXPECT_EQ(s.AccessRecords({.principal = "payer"})->at(0).route, "/$ccm-billing-summary");
  EXPECT_EQ(s.AccessRecords({.since = "2026-11-01T10:00:01.000Z"})->size(), 2u);
  EXPECT_EQ(AccessInstant(fhir::FhirDateTime::ParseInstant("2026-11-01T10:00:01Z")->Earliest()),
            "2026-11-01T10:00:01.000Z");
  EXPECT_EQ(
      AccessInstant(fhir::FhirDateTime::ParseInstant("2026-11-01T10:00:01.123456Z")->Earliest()),
      "2026-11-01T10:00:01.123Z");
  EXPECT_EQ(s.AccessRecords({.after_id = all->at(1).id})->size(), 1u);
}

TEST(StateStoreTest, PullStatusRecordsOutcomesAndFailureStreaks) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  StateStore& s = **store;
  auto find = [&](std::string_view type) {
    auto all = s.PullStatuses();
    EXPECT_TRUE(all) << all.error().message;
    for (auto& p : *all) {
      if (p.type == type) return p;
    }
    ADD_FAILURE() << "no pull status for " << type;
    return PullStatus{};
  };
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 1));
  PullStatus p = find("Encounter");
  EXPECT_EQ(p.state, PullState::kRunning);
  EXPECT_TRUE(p.finished_at.empty());
  ASSERT_TRUE(s.EndPull("ehr", "Encounter", 1, PullState::kComplete, PullMode::kFull, ""));
  p = find("Encounter");
  EXPECT_EQ(p.state, PullState::kComplete);
  EXPECT_EQ(p.last_complete_started, p.started_at);
  EXPECT_EQ(p.last_full_complete_started, p.started_at);
  EXPECT_FALSE(p.last_complete_finished.empty());
  EXPECT_TRUE(p.failing_since.empty());
  std::string complete_started = p.last_complete_started;

  // Two failing attempts: the streak starts at the first and the last complete pull is kept.
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 2));
  ASSERT_TRUE(s.EndPull("ehr", "Encounter", 2, PullState::kFailed, PullMode::kFull, "HTTP 503"));
  std::string first_failure = find("Encounter").started_at;
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 3));
  ASSERT_TRUE(
      s.EndPull("ehr", "Encounter", 3, PullState::kIncomplete, PullMode::kFull, "short total"));
  p = find("Encounter");
  EXPECT_EQ(p.state, PullState::kIncomplete);
  EXPECT_EQ(p.run, 3);
  EXPECT_EQ(p.detail, "short total");
  EXPECT_EQ(p.failing_since, first_failure);
  EXPECT_EQ(p.last_complete_started, complete_started);
  EXPECT_EQ(p.last_full_complete_started, complete_started);
  // A complete incremental pull moves the last complete pull, not the last full one.
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 4));
  ASSERT_TRUE(s.EndPull("ehr", "Encounter", 4, PullState::kComplete, PullMode::kIncremental, ""));
  p = find("Encounter");
  EXPECT_EQ(p.run, 4);
  EXPECT_EQ(p.last_complete_started, p.started_at);
  EXPECT_EQ(p.last_full_complete_started, complete_started);

  // A type the server does not offer is recorded without a BeginPull.
  ASSERT_TRUE(
      s.EndPull("ehr", "Consent", 3, PullState::kNotOffered, PullMode::kFull, "not offered"));
  EXPECT_EQ(find("Consent").state, PullState::kNotOffered);
  for (PullState st : {PullState::kRunning, PullState::kComplete, PullState::kIncomplete,
                       PullState::kFailed, PullState::kNotOffered}) {
    EXPECT_EQ(PullStateFromCode(ToCode(st)), st);
  }
}

TEST(StateLocksTest, OneHolderAtATimeAndTheWaiterNamesIt) {
  TempDir dir;
  auto first = LockSync(dir / "state.db", std::chrono::milliseconds(0));
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(SyncLockHolder(dir / "state.db"), ::getpid());
  // flock locks belong to the open file description: a second open in this process conflicts
  // as another process's would.
  auto second = LockSync(dir / "state.db", std::chrono::milliseconds(120));
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(Errc::kConflict));
  EXPECT_NE(second.error().message.find(fmt::format("pid {}", ::getpid())), std::string::npos)
      << second.error().message;
  // Released (as when the holder exits): the next one gets it at once.
  { auto released = std::move(*first); }
  EXPECT_TRUE(LockSync(dir / "state.db", std::chrono::milliseconds(0)));
}

}  // namespace
}  // namespace ccm::gateway
