// The billing ledger on real SQLite files: exactly-once entries, revisions, voids, withdrawals,
// deliveries, concurrent runs and the schema migration from a version-1 state file.
#include "gateway/billing/ledger.h"
#include "gateway/store/sqlite_state_store.h"

#include <sqlite3.h>

#include <chrono>
#include <map>
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
                          bool dry_run = false, ReconcileOptions options = {}) {
    options.run = run;
    options.channels = channels_;
    options.dry_run = dry_run;
    auto out = ReconcileLedger(*store_, "2026-10", charges, options);
    EXPECT_TRUE(out) << out.error().message;
    return out ? *out : LedgerOutcome{};
  }
  // Options of a run after a complete sync that started now (later than every proposal so far).
  static ReconcileOptions Confirmed() {
    ReconcileOptions o;
    o.complete_since =
        std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now()) +
        std::chrono::seconds(1);
    return o;
  }
  std::vector<LedgerProposal> Proposals(bool open_only = true) {
    return *store_->LedgerProposals(open_only ? ProposalQuery::Open("2026-10")
                                              : ProposalQuery::All("2026-10"));
  }
  std::vector<LedgerRow> Active() { return *store_->LedgerEntries(LedgerQuery::Active("2026-10")); }
  std::vector<LedgerRow> All() { return *store_->LedgerEntries(LedgerQuery::AllRevisions()); }
  void DeliverAll(const LedgerRow& row) {
    for (const auto& ch : channels_)
      ASSERT_TRUE(store_->SetDelivery(row.id, ch, DeliveryStatus::kDone, "test"));
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
  EXPECT_EQ(rows[1].kind, LedgerKind::kCharge);
  EXPECT_EQ(rows[1].status, LedgerStatus::kPending);
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
  EXPECT_EQ(deliveries[0].status, DeliveryStatus::kPrepared);
  // The batch is named by its content: the claim identifiers of the run's new entries.
  EXPECT_EQ(deliveries[0].batch, BatchName("2026-10", {"a-2026-10-r1", "b-2026-10-r1"}));
  EXPECT_EQ(first.batch, deliveries[0].batch);
  EXPECT_EQ(store_->Deliveries(rows[1].id)->at(1).batch, first.batch);

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
  EXPECT_EQ(rows[0].kind, LedgerKind::kCharge);
  EXPECT_EQ(rows[0].supersedes, before.changes[0].previous->id);
  // The superseded revision's undelivered deliveries went with it.
  EXPECT_TRUE(store_->Deliveries(before.changes[0].previous->id)->empty());
  EXPECT_EQ(store_->LedgerEntry(before.changes[0].previous->id)->value().status,
            LedgerStatus::kSuperseded);

  DeliverAll(rows[0]);
  EXPECT_EQ(Active()[0].status, LedgerStatus::kSubmitted);
  // A corrected encounter after submission: an adjustment, never an edit of what went out.
  auto after =
      Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 1}}, {"Encounter/e2"})}, 3);
  ASSERT_EQ(after.changes.size(), 1u);
  rows = Active();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, LedgerKind::kAdjustment);
  EXPECT_EQ(rows[0].revision, 3);
  auto submitted = store_->LedgerEntry(*rows[0].supersedes)->value();
  EXPECT_EQ(submitted.status, LedgerStatus::kSuperseded);
  EXPECT_FALSE(submitted.submitted_at.empty());
  EXPECT_EQ(LedgerLines(submitted)[0].encounters, std::vector<std::string>{"Encounter/e1"});
}

TEST_F(LedgerTest, WhatIsNoLongerBillableIsWithdrawnOrProposedForAVoid) {
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}}), MakeCharge("Patient/b", {{"99490", 1}})});
  auto rows = Active();
  DeliverAll(rows[1]);  // b went out; a did not
  ReconcileOptions why;
  why.not_billable["Patient/b"] = "no-consent";
  auto out = Reconcile({}, 2, false, why);
  // a never left the gateway: withdrawn at once. b's void is only proposed: nothing goes out.
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(out.changes[0].action, LedgerAction::kWithdrawn);
  EXPECT_EQ(out.changes[0].previous->patient, "Patient/a");
  ASSERT_EQ(out.proposals.size(), 1u);
  EXPECT_EQ(out.proposals[0].action, ProposalAction::kProposed);
  EXPECT_EQ(out.held(), 1u);
  EXPECT_TRUE(out.batch.empty());
  rows = Active();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, LedgerKind::kCharge);
  EXPECT_EQ(rows[0].status, LedgerStatus::kSubmitted);
  EXPECT_TRUE(store_->UndoneDeliveries()->empty()) << "nothing queued";
  auto proposals = Proposals();
  ASSERT_EQ(proposals.size(), 1u);
  EXPECT_EQ(proposals[0].entry, rows[0].id);
  EXPECT_EQ(proposals[0].status, ProposalStatus::kOpen);
  EXPECT_EQ(proposals[0].proposed.kind, LedgerKind::kVoid);
  EXPECT_EQ(proposals[0].reason, "no longer billable: no-consent");

  // A run without a complete sync since: still held, nothing changes.
  auto held = Reconcile({}, 3);
  EXPECT_TRUE(held.changes.empty());
  ASSERT_EQ(held.proposals.size(), 1u);
  EXPECT_EQ(held.proposals[0].action, ProposalAction::kHeld);
  EXPECT_EQ(Active()[0].kind, LedgerKind::kCharge);

  // Every needed type pulled completely since it was proposed, and the engine says the same:
  // carried out, the proposal closed with the entry it wrote.
  auto confirmed = Reconcile({}, 4, false, Confirmed());
  ASSERT_EQ(confirmed.changes.size(), 1u);
  EXPECT_EQ(confirmed.changes[0].action, LedgerAction::kVoided);
  EXPECT_EQ(confirmed.changes[0].proposal, proposals[0].id);
  rows = Active();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, LedgerKind::kVoid);
  EXPECT_TRUE(LedgerLines(rows[0]).empty());
  EXPECT_EQ(store_->Deliveries(rows[0].id)->size(), 2u);  // the cancellation goes out
  EXPECT_TRUE(Proposals().empty());
  auto closed = Proposals(false);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].status, ProposalStatus::kCarriedOut);
  EXPECT_EQ(closed[0].result_entry, rows[0].id);
  EXPECT_NE(closed[0].outcome.find("pulled completely and in full after it was proposed"),
            std::string::npos)
      << closed[0].outcome;

  // Stable: nothing more happens while it stays unbillable.
  auto again = Reconcile({}, 5, false, Confirmed());
  EXPECT_TRUE(again.changes.empty());
  EXPECT_TRUE(again.proposals.empty());
  EXPECT_EQ(again.unchanged, 1u);
  // Billable again (say the consent was found): at once, as a new charge revision after the
  // void -- the payer cancelled the claim, so there is nothing left to correct.
  DeliverAll(rows[0]);
  auto back = Reconcile({MakeCharge("Patient/b", {{"99490", 1}})}, 6);
  ASSERT_EQ(back.changes.size(), 1u);
  EXPECT_EQ(Active()[0].kind, LedgerKind::kCharge);
  EXPECT_EQ(Active()[0].revision, 3);
  EXPECT_EQ(Active()[0].supersedes, rows[0].id);
}

TEST_F(LedgerTest, AProposalIsNotConfirmedByASyncThatStartedBeforeIt) {
  Reconcile({MakeCharge("Patient/b", {{"99490", 1}})});
  DeliverAll(Active()[0]);
  ReconcileOptions earlier;  // complete pulls, but all started before the proposal is made
  earlier.complete_since =
      std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now()) -
      std::chrono::seconds(5);
  EXPECT_EQ(Reconcile({}, 2, false, earlier).proposals.at(0).action, ProposalAction::kProposed);
  EXPECT_EQ(Reconcile({}, 3, false, earlier).proposals.at(0).action, ProposalAction::kHeld);
  ReconcileOptions never;  // some type never pulled completely
  EXPECT_EQ(Reconcile({}, 4, false, never).proposals.at(0).action, ProposalAction::kHeld);
  EXPECT_EQ(Active()[0].kind, LedgerKind::kCharge);
}

TEST_F(LedgerTest, DownwardAdjustmentsAreProposedUpwardOnesGoAtOnce) {
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 1}}),
             MakeCharge("Patient/b", {{"99490", 1}})});
  for (const auto& r : Active()) DeliverAll(r);
  // a loses its add-on (an encounter disappeared); b gains one (late data).
  auto out = Reconcile({MakeCharge("Patient/a", {{"99490", 1}}),
                        MakeCharge("Patient/b", {{"99490", 1}, {"99439", 1}})},
                       2);
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(out.changes[0].action, LedgerAction::kAdjusted);
  EXPECT_EQ(out.changes[0].entry->patient, "Patient/b");
  EXPECT_EQ(out.changes[0].entry->kind, LedgerKind::kAdjustment);
  ASSERT_EQ(out.proposals.size(), 1u);
  EXPECT_EQ(out.proposals[0].proposal.proposed.kind, LedgerKind::kAdjustment);
  EXPECT_EQ(out.proposals[0].proposal.reason,
            "bills less: 99490x1 99439x1 (120.98) -> 99490x1 (60.49)");
  // The data came back before anyone confirmed it: dropped, recorded as such.
  auto back = Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 1}}),
                         MakeCharge("Patient/b", {{"99490", 1}, {"99439", 1}})},
                        3, false, Confirmed());
  EXPECT_TRUE(back.changes.empty());
  EXPECT_EQ(back.unchanged, 2u);
  ASSERT_EQ(back.proposals.size(), 1u);
  EXPECT_EQ(back.proposals[0].action, ProposalAction::kDropped);
  auto all = Proposals(false);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].status, ProposalStatus::kDropped);
  EXPECT_NE(all[0].outcome.find("the data came back"), std::string::npos) << all[0].outcome;
  EXPECT_FALSE(all[0].closed_at.empty());
  EXPECT_EQ(Active().size(), 2u);
  EXPECT_EQ(All().size(), 3u);  // a's entry untouched all along
  // A code swapped for a cheaper one at the same units is downward too (BillsLess).
  LedgerRow cheaper = ToLedgerRow(MakeCharge("Patient/a", {{"99491", 1}}), 4);
  cheaper.amount_cents = 1;
  EXPECT_TRUE(BillsLess(cheaper, Active()[0]));
  LedgerRow richer = ToLedgerRow(MakeCharge("Patient/a", {{"99490", 1}, {"99439", 2}}), 4);
  EXPECT_FALSE(BillsLess(richer, Active()[0]));
}

TEST_F(LedgerTest, AnApprovedProposalIsCarriedOutAndAChangedOneStartsAgain) {
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 2}}),
             MakeCharge("Patient/b", {{"99490", 1}})});
  for (const auto& r : Active()) DeliverAll(r);
  auto first = Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 1}})}, 2);
  ASSERT_EQ(first.proposals.size(), 2u);
  auto open = Proposals();
  ASSERT_EQ(open.size(), 2u);
  const LedgerProposal& for_a = open[0].proposed.patient == "Patient/a" ? open[0] : open[1];
  const LedgerProposal& for_b = open[0].proposed.patient == "Patient/b" ? open[0] : open[1];
  ASSERT_TRUE(store_->ApproveLedgerProposal(for_b.id, "operator test"));
  auto twice = store_->ApproveLedgerProposal(for_b.id, "operator test");
  ASSERT_FALSE(twice);
  EXPECT_TRUE(twice.error().is(Errc::kConflict));
  EXPECT_TRUE(store_->ApproveLedgerProposal(999, "x").error().is(Errc::kNotFound));
  // b: approved, carried out without waiting for a sync. a: the engine now drops both add-on
  // units: the old proposal no longer stands; a new one replaces it.
  auto second = Reconcile({MakeCharge("Patient/a", {{"99490", 1}})}, 3);
  ASSERT_EQ(second.changes.size(), 1u);
  EXPECT_EQ(second.changes[0].action, LedgerAction::kVoided);
  EXPECT_EQ(second.changes[0].previous->patient, "Patient/b");
  std::map<ProposalAction, int> actions;
  for (const auto& p : second.proposals) ++actions[p.action];
  EXPECT_EQ(actions[ProposalAction::kConfirmed], 1);
  EXPECT_EQ(actions[ProposalAction::kDropped], 1);
  EXPECT_EQ(actions[ProposalAction::kProposed], 1);
  for (const auto& p : Proposals(false)) {
    if (p.id == for_b.id) {
      EXPECT_EQ(p.status, ProposalStatus::kCarriedOut);
      EXPECT_EQ(p.approved_by, "operator test");
      EXPECT_NE(p.outcome.find("approved by operator test"), std::string::npos);
    } else if (p.id == for_a.id) {
      EXPECT_EQ(p.status, ProposalStatus::kDropped);
      EXPECT_NE(p.outcome.find("superseded by a new proposal"), std::string::npos) << p.outcome;
    } else {
      EXPECT_EQ(p.status, ProposalStatus::kOpen);
      EXPECT_EQ(p.proposed.amount_cents, 6049);
    }
  }
}

TEST_F(LedgerTest, ASurvivorIsNotBilledForAMonthBilledUnderTheRecordMergedIntoIt) {
  Reconcile({MakeCharge("Patient/old", {{"99490", 1}})});
  LedgerRow old = Active()[0];
  DeliverAll(old);
  // The EHR merges Patient/old into Patient/new: the engine stops billing old and bills new.
  Charge survivor = MakeCharge("Patient/new", {{"99490", 1}});
  survivor.merged_from = {"Patient/old"};
  ReconcileOptions why;
  why.not_billable["Patient/old"] = "merged";
  auto out = Reconcile({survivor}, 2, false, why);
  EXPECT_TRUE(out.changes.empty());
  ASSERT_EQ(out.merge_holds.size(), 1u);
  EXPECT_EQ(out.merge_holds[0].patient, "Patient/new");
  EXPECT_EQ(out.merge_holds[0].merged_record, "Patient/old");
  EXPECT_EQ(out.merge_holds[0].entry, old.id);
  ASSERT_EQ(out.proposals.size(), 1u);  // old's void, a proposal like any other
  EXPECT_EQ(out.proposals[0].proposal.reason, "no longer billable: merged");
  // Confirmed: old is voided in this run; new still waits for the void to be on record.
  auto confirmed = Reconcile({survivor}, 3, false, Confirmed());
  ASSERT_EQ(confirmed.changes.size(), 1u);
  EXPECT_EQ(confirmed.changes[0].action, LedgerAction::kVoided);
  EXPECT_EQ(confirmed.merge_holds.size(), 1u);
  auto released = Reconcile({survivor}, 4, false, Confirmed());
  ASSERT_EQ(released.changes.size(), 1u);
  EXPECT_EQ(released.changes[0].action, LedgerAction::kNew);
  EXPECT_EQ(released.changes[0].entry->patient, "Patient/new");
  EXPECT_TRUE(released.merge_holds.empty());
}

TEST_F(LedgerTest, EntriesOfARunWithIncompleteDataSaySo) {
  ReconcileOptions o;
  o.allow_incomplete = "ehr/Encounter: failed since 2026-11-02T10:00:00Z: HTTP 503";
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}})}, 1, false, o);
  EXPECT_EQ(Active()[0].allow_incomplete, o.allow_incomplete);
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}, {"99439", 1}})}, 2);
  EXPECT_EQ(Active()[0].allow_incomplete, "");
  EXPECT_EQ(All()[0].allow_incomplete, o.allow_incomplete);
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

TEST_F(LedgerTest, ARecreatedStateFileNamesTheSameClaimsTheSameBatch) {
  auto first = Reconcile({MakeCharge("Patient/a", {{"99490", 1}})}, 7);
  TempDir other;
  auto fresh = OpenSqliteStateStore(other / "state.db");
  ASSERT_TRUE(fresh);
  ReconcileOptions o;
  o.run = 1;  // a new file counts its runs from 1 again
  o.channels = channels_;
  auto again = ReconcileLedger(**fresh, "2026-10", {MakeCharge("Patient/a", {{"99490", 1}})}, o);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->batch, first.batch);
}

TEST_F(LedgerTest, DryRunPlansTheSameAndStoresNothing) {
  auto planned = Reconcile({MakeCharge("Patient/a", {{"99490", 1}})}, 1, /*dry_run=*/true);
  ASSERT_EQ(planned.changes.size(), 1u);
  EXPECT_TRUE(All().empty());
  EXPECT_TRUE(store_->UndoneDeliveries()->empty());
}

TEST_F(LedgerTest, EntriesWithoutChannelsStayPendingAndAcknowledgementNeedsSubmission) {
  channels_.clear();
  Reconcile({MakeCharge("Patient/a", {{"99490", 1}})});
  auto row = Active()[0];
  ASSERT_TRUE(MarkDelivered(*store_, {row.id}));
  EXPECT_EQ(Active()[0].status, LedgerStatus::kPending);  // it went nowhere
  auto refused = store_->MarkAcknowledged(row.id);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(Errc::kConflict));
  ASSERT_TRUE(store_->MarkSubmitted(row.id));
  ASSERT_TRUE(store_->MarkAcknowledged(row.id));
  EXPECT_EQ(Active()[0].status, LedgerStatus::kAcknowledged);
  EXPECT_FALSE(Active()[0].acknowledged_at.empty());
}

TEST_F(LedgerTest, TheStoreRefusesASecondActiveEntryForAPatientMonth) {
  LedgerRow row = ToLedgerRow(MakeCharge("Patient/a", {{"99490", 1}}), 1);
  row.kind = LedgerKind::kCharge;
  row.status = LedgerStatus::kPending;
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
    ReconcileOptions options;
    options.run = n;
    options.channels = channels_;
    auto out = ReconcileLedger(**store, "2026-10", charges, options);
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

TEST(LedgerMigrationTest, AVersion1StateFileIsMigratedKeepingItsResources) {
  TempDir dir;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
  // Schema version 1 exactly as released (gateway/store/state_store.cpp, migration 1).
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
    r.kind = LedgerKind::kCharge;
    r.status = LedgerStatus::kPending;
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
