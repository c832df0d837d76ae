// The billing ledger on real SQLite files: exactly-once entries, revisions, voids, withdrawals,
// deliveries, concurrent runs and the schema migration from a version-1 state file.
#include "gateway/ledger.h"

#include <sqlite3.h>

#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::TempDir;

Charge MakeCharge(std::string patient, std::vector<std::pair<std::string, int>> codes,
                  std::vector<std::string> encounters = {"Encounter/e1"}) {
  Charge c;
  c.patient = std::move(patient);
  c.month = "2026-10";
  c.program = "CCM";
  for (auto& [code, units] : codes) {
    BillingLine l;
    l.code = code;
    l.units = units;
    l.amount = Cents{6049} * units;
    l.encounters = encounters;
    c.lines.push_back(std::move(l));
    c.amount += *c.lines.back().amount;
  }
  c.minutes.clinical_staff = 25;
  c.diagnoses = {{"Condition/c1", "diabetes", "http://hl7.org/fhir/sid/icd-10-cm", "E11.9"}};
  c.evidence = fhir::json::Value::MakeObject();
  return c;
}

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenSqliteStateStore(dir_ / "state.db");
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  LedgerOutcome Reconcile(const std::vector<Charge>& charges, std::int64_t run = 1,
                          bool dry_run = false) {
    auto out = ReconcileLedger(*store_, "2026-10", charges, run, channels_,
                               fmt::format("2026-10-run{}", run), dry_run);
    EXPECT_TRUE(out) << out.error().message;
    return out ? *out : LedgerOutcome{};
  }
  std::vector<LedgerRow> Active() { return *store_->LedgerEntries("2026-10", true); }
  std::vector<LedgerRow> All() { return *store_->LedgerEntries("", false); }
  void DeliverAll(const LedgerRow& row) {
    for (const auto& ch : channels_) ASSERT_TRUE(store_->SetDelivery(row.id, ch, "done", "test"));
    ASSERT_TRUE(MarkDelivered(*store_, {row.id}));
  }

  TempDir dir_;
  std::unique_ptr<StateStore> store_;
  std::vector<std::string> channels_ = {"charge-items", "payer:medicare"};
};

TEST_F(LedgerTest, NewChargesAreRecordedOnceAndRerunsChangeNothing) {
  auto first = Reconcile({MakeCharge("Patient/a", {{"99490", 1}}),
                          MakeCharge("Patient/b", {{"99490", 1}, {"99439", 2}})});
  ASSERT_EQ(first.changes.size(), 2u);
  for (const auto& c : first.changes) EXPECT_EQ(c.action, LedgerAction::kNew);
  auto rows = Active();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].patient, "Patient/b");
  EXPECT_EQ(rows[1].kind, "charge");
  EXPECT_EQ(rows[1].status, "pending");
  EXPECT_EQ(rows[1].revision, 1);
  EXPECT_EQ(rows[1].amount_cents, 6049 * 3);
  auto lines = LedgerLines(rows[1]);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].code, "99439");
  EXPECT_EQ(lines[1].units, 2);
  EXPECT_EQ(lines[1].amount, Cents{12098});
  EXPECT_EQ(lines[1].encounters, std::vector<std::string>{"Encounter/e1"});
  EXPECT_EQ(LedgerDiagnoses(rows[1]).at(0).code, "E11.9");
  auto deliveries = *store_->Deliveries(rows[0].id);
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0].status, "prepared");
  EXPECT_EQ(deliveries[0].batch, "2026-10-run1");

  auto again = Reconcile({MakeCharge("Patient/a", {{"99490", 1}}),
                          MakeCharge("Patient/b", {{"99490", 1}, {"99439", 2}})},
                         2);
  EXPECT_TRUE(again.changes.empty());
  EXPECT_EQ(again.unchanged, 2u);
  EXPECT_EQ(All().size(), 2u);
}

TEST_F(LedgerTest, AChangeBeforeDeliveryIsANewChargeRevisionAfterDeliveryAnAdjustment) {
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}})});
  // Not delivered yet: the corrected charge simply replaces it (still kind "charge").
  auto before = Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 1}})}, 2);
  ASSERT_EQ(before.changes.size(), 1u);
  EXPECT_EQ(before.changes[0].action, LedgerAction::kAdjusted);
  auto rows = Active();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].revision, 2);
  EXPECT_EQ(rows[0].kind, "charge");
  EXPECT_EQ(rows[0].supersedes, before.changes[0].previous->id);
  // The superseded revision's undelivered deliveries went with it.
  EXPECT_TRUE(store_->Deliveries(before.changes[0].previous->id)->empty());
  EXPECT_EQ(store_->LedgerEntry(before.changes[0].previous->id)->value().status, "superseded");

  DeliverAll(rows[0]);
  EXPECT_EQ(Active()[0].status, "submitted");
  // A corrected encounter after submission: an adjustment, never an edit of what went out.
  auto after =
      Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 1}}, {"Encounter/e2"})}, 3);
  ASSERT_EQ(after.changes.size(), 1u);
  rows = Active();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, "adjustment");
  EXPECT_EQ(rows[0].revision, 3);
  auto submitted = store_->LedgerEntry(*rows[0].supersedes)->value();
  EXPECT_EQ(submitted.status, "superseded");
  EXPECT_FALSE(submitted.submitted_at.empty());
  EXPECT_EQ(LedgerLines(submitted)[0].encounters, std::vector<std::string>{"Encounter/e1"});
}

TEST_F(LedgerTest, WhatIsNoLongerBillableIsWithdrawnOrVoided) {
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}}), MakeCharge("Patient/b", {{"99490", 1}})});
  auto rows = Active();
  DeliverAll(rows[1]);  // b went out; a did not
  auto out = Reconcile({}, 2);
  ASSERT_EQ(out.changes.size(), 2u);
  EXPECT_EQ(out.changes[0].action, LedgerAction::kWithdrawn);
  EXPECT_EQ(out.changes[0].previous->patient, "Patient/a");
  EXPECT_EQ(out.changes[1].action, LedgerAction::kVoided);
  rows = Active();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].patient, "Patient/b");
  EXPECT_EQ(rows[0].kind, "void");
  EXPECT_TRUE(LedgerLines(rows[0]).empty());
  EXPECT_EQ(store_->Deliveries(rows[0].id)->size(), 2u);  // the cancellation goes out too
  // Stable: nothing more happens while it stays unbillable.
  auto again = Reconcile({}, 3);
  EXPECT_TRUE(again.changes.empty());
  EXPECT_EQ(again.unchanged, 1u);
  // Billable again (say the consent was found): an adjustment revision after the void.
  DeliverAll(rows[0]);
  auto back = Reconcile({MakeCharge("Patient/b", {{"99490", 1}})}, 4);
  ASSERT_EQ(back.changes.size(), 1u);
  EXPECT_EQ(Active()[0].kind, "adjustment");
  EXPECT_EQ(Active()[0].revision, 3);
}

TEST_F(LedgerTest, DryRunPlansTheSameAndStoresNothing) {
  auto planned = Reconcile({MakeCharge("Patient/a", {{"99490", 1}})}, 1, /*dry_run=*/true);
  ASSERT_EQ(planned.changes.size(), 1u);
  EXPECT_TRUE(All().empty());
  EXPECT_TRUE(store_->Deliveries(0)->empty());
}

TEST_F(LedgerTest, EntriesWithoutChannelsStayPendingAndAcknowledgementNeedsSubmission) {
  channels_.clear();
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}})});
  auto row = Active()[0];
  ASSERT_TRUE(MarkDelivered(*store_, {row.id}));
  EXPECT_EQ(Active()[0].status, "pending");  // it went nowhere
  auto refused = store_->SetLedgerStatus(row.id, "acknowledged");
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(Errc::kConflict));
  ASSERT_TRUE(store_->SetLedgerStatus(row.id, "submitted"));
  ASSERT_TRUE(store_->SetLedgerStatus(row.id, "acknowledged"));
  EXPECT_EQ(Active()[0].status, "acknowledged");
  EXPECT_FALSE(Active()[0].acknowledged_at.empty());
  EXPECT_FALSE(store_->SetLedgerStatus(row.id, "superseded"));
}

TEST_F(LedgerTest, TheStoreRefusesASecondActiveEntryForAPatientMonth) {
  LedgerRow row = ToLedgerRow(MakeCharge("Patient/a", {{"99490", 1}}), 1);
  row.kind = "charge";
  row.status = "pending";
  ASSERT_TRUE(store_->AddLedgerEntry(row));
  row.revision = 2;  // a second revision that does not supersede the first
  auto second = store_->AddLedgerEntry(row);
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(Errc::kConflict));
  EXPECT_EQ(All().size(), 1u);
}

TEST_F(LedgerTest, ConcurrentRunsRecordEachPatientMonthOnce) {
  std::vector<Charge> charges;
  for (int i = 0; i < 50; ++i)
    charges.push_back(MakeCharge(fmt::format("Patient/p{}", i), {{"99490", 1}}));
  auto run = [&](std::int64_t n, std::size_t* created) {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    ASSERT_TRUE(store);
    auto out = ReconcileLedger(**store, "2026-10", charges, n, channels_, "b", false);
    ASSERT_TRUE(out) << out.error().message;
    *created = out->changes.size();
  };
  std::size_t a = 0, b = 0;
  std::thread t1(run, 1, &a);
  std::thread t2(run, 2, &b);
  t1.join();
  t2.join();
  // The transactions serialise: one run records all 50, the other finds them all unchanged.
  EXPECT_EQ(a + b, 50u);
  EXPECT_EQ(Active().size(), 50u);
  EXPECT_EQ(All().size(), 50u);
}

TEST(BatchNameTest, IsTheMonthAndAStableHashOfTheClaimIdentifiers) {
  std::string name = BatchName("2026-10", {"b-2026-10-r1", "a-2026-10-r1"});
  EXPECT_EQ(name, BatchName("2026-10", {"a-2026-10-r1", "b-2026-10-r1"}));  // any order
  EXPECT_TRUE(name.starts_with("2026-10-"));
  EXPECT_EQ(name.size(), std::string("2026-10-").size() + 16);
  EXPECT_EQ(name.find_first_not_of("0123456789abcdef-"), std::string::npos);
  EXPECT_NE(name, BatchName("2026-10", {"a-2026-10-r1"}));
  EXPECT_NE(name, BatchName("2026-10", {"a-2026-10-r1", "b-2026-10-r2"}));
  EXPECT_NE(BatchName("2026-10", {"ab", "c"}), BatchName("2026-10", {"a", "bc"}));
  // Pinned (FNV-1a 64 over the month and the sorted values, each after a newline; computed
  // independently): a name changes only with what the batch holds, never with a build.
  EXPECT_EQ(BatchName("2026-10", {"a-2026-10-r1"}), "2026-10-051b2b8d944d8c37");
}

TEST(LedgerMigrationTest, AVersion1StateFileIsMigratedKeepingItsResources) {
  TempDir dir;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
  // Schema version 1 exactly as released (gateway/state_store.cpp, migration 1).
  const char* v1 = R"sql(
CREATE TABLE resources (source TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
  version_id TEXT NOT NULL, last_updated TEXT NOT NULL, json TEXT NOT NULL,
  seen_run INTEGER NOT NULL, PRIMARY KEY (source, type, id));
CREATE TABLE cursors (source TEXT NOT NULL, type TEXT NOT NULL, watermark TEXT NOT NULL,
  scope TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (source, type)) WITHOUT ROWID;
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL,
  started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL, summary TEXT);
INSERT INTO resources VALUES ('ehr', 'Patient', 'p1', '1', '', '{"resourceType":"Patient"}', 1);
PRAGMA user_version = 1;
)sql";
  ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
  EXPECT_TRUE((*store)->PullStatuses()) << "migrated through every later version";
  EXPECT_EQ(*(*store)->CountResources("", ""), 1u);
  EXPECT_EQ((*store)->ResourceJson("ehr", "Patient", "p1")->value(),
            R"({"resourceType":"Patient"})");
  auto id = (*store)->AddLedgerEntry([] {
    LedgerRow r = ToLedgerRow(MakeCharge("Patient/p1", {{"99490", 1}}), 1);
    r.kind = "charge";
    r.status = "pending";
    return r;
  }());
  ASSERT_TRUE(id) << id.error().message;
  ASSERT_TRUE((*store)->AddAudit(AuditRow{0, "", 1, "create", "CarePlan/x", "1", "d", ""}));
  auto audit = (*store)->AuditLog(0);
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].target, "CarePlan/x");
}

}  // namespace
}  // namespace ccm::gateway
