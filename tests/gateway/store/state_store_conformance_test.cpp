// The state store's conformance suite (state_store_conformance.h): every case runs against every
// backend that instantiates StateStoreConformance.
#include "store/state_store_conformance.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace ccm::gateway::store_testing {
namespace {

TEST_P(StateStoreConformance, UpsertKeepsTheNewestVersionWhateverTheOrder) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  EXPECT_GT(s.schema_version(), 0);
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
  EXPECT_EQ(AllResources(s, "ehr"),
            (std::vector<std::string>{R"(ehr|Consent/c|{"a":2})", R"(ehr|Encounter/e|{"x":1})",
                                      R"(ehr|Patient/1|{"v":10})"}));
  EXPECT_EQ(AllResources(s).size(), 4u);
  EXPECT_EQ(*s.CountResources("", ""), 4u);
  EXPECT_EQ(*s.CountResources("ehr", "Patient"), 1u);
  EXPECT_EQ(*s.SourceNames(), (std::vector<std::string>{"ehr", "other"}));
  EXPECT_EQ(*s.ResourceJson("other", "Patient", "1"), std::optional<std::string>(R"({"o":1})"));
  EXPECT_EQ(*s.ResourceJson("other", "Patient", "2"), std::nullopt);
}

TEST_P(StateStoreConformance, AVisitorStopsEarlyAndMayReadTheStore) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(s.Upsert("ehr", "Patient", id, {}, "{}", 1));
  int seen = 0;
  ASSERT_TRUE(s.ForEachResource([&](auto, auto type, auto id, auto) {
    ++seen;
    auto json = s.ResourceJson("ehr", type, id);  // the callback may call back into the store
    EXPECT_TRUE(json && *json);
    return seen < 2;
  }));
  EXPECT_EQ(seen, 2);
}

TEST_P(StateStoreConformance, SurvivesReopenAndRemovesWhatARunDidNotSee) {
  {
    auto store = Open();
    ASSERT_TRUE(store);
    for (const char* id : {"a", "b", "c"}) {
      ASSERT_TRUE(store->Upsert("ehr", "Condition", id, Stamp("1"), "{}", 1));
    }
    ASSERT_TRUE(store->Upsert("ehr", "Patient", "p", Stamp("1"), "{}", 1));
    ASSERT_TRUE(store->SetCursor("ehr", "Condition", {"2026-11-01T00:00:00Z", "all"}));
  }
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
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
  EXPECT_EQ(AllResources(s), (std::vector<std::string>{"ehr|Condition/a|{}", "ehr|Condition/c|{}",
                                                       "ehr|Patient/p|{}"}));
}

TEST_P(StateStoreConformance, TransactionsCommitOrRollBackAsAWhole) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  Status failed = s.InTransaction([&]() -> Status {
    EXPECT_TRUE(s.Upsert("ehr", "Patient", "1", Stamp("1"), "{}", 1));
    EXPECT_TRUE(s.SetCursor("ehr", "Patient", {"2026-11-01T00:00:00Z", "all"}));
    EXPECT_TRUE(s.AddLedgerEntry(PlainEntry("Patient/1")));
    return MakeError(Errc::kNetwork, "page 3 failed");
  });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "page 3 failed");
  EXPECT_EQ(*s.CountResources("", ""), 0u);
  EXPECT_FALSE(*s.GetCursor("ehr", "Patient"));
  EXPECT_TRUE(s.LedgerEntries({.revisions = LedgerQuery::Revisions::kAll})->empty());
  ASSERT_TRUE(s.InTransaction([&]() -> Status {
    EXPECT_TRUE(s.Upsert("ehr", "Patient", "1", Stamp("1"), "{}", 1));
    return {};
  }));
  EXPECT_EQ(*s.CountResources("", ""), 1u);
}

TEST_P(StateStoreConformance, RunHistoryKeepsEachKindApart) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  EXPECT_FALSE(*s.LastRun(RunKind::kSync));
  auto r1 = s.StartRun(RunKind::kSync);
  auto r2 = s.StartRun(RunKind::kSync);
  auto bill = s.StartRun(RunKind::kBill);
  ASSERT_TRUE(r1 && r2 && bill);
  EXPECT_LT(*r1, *r2);
  auto running = s.LastRun(RunKind::kSync);
  ASSERT_TRUE(running && *running);
  EXPECT_EQ((*running)->status, RunStatus::kRunning);
  EXPECT_TRUE((*running)->finished.empty());
  EXPECT_FALSE(s.FinishRun(*r2, RunStatus::kRunning, "{}")) << "a finished run has an outcome";
  ASSERT_TRUE(s.FinishRun(*r2, RunStatus::kOk, R"({"pulled":3})"));
  ASSERT_TRUE(s.FinishRun(*bill, RunStatus::kFailed, "{}"));
  auto last = s.LastRun(RunKind::kSync);
  ASSERT_TRUE(last && *last);
  EXPECT_EQ((*last)->id, *r2);
  EXPECT_EQ((*last)->kind, RunKind::kSync);
  EXPECT_EQ((*last)->status, RunStatus::kOk);
  EXPECT_EQ((*last)->summary, R"({"pulled":3})");
  EXPECT_FALSE((*last)->finished.empty());
  EXPECT_EQ((*s.LastRun(RunKind::kBill))->status, RunStatus::kFailed);
  EXPECT_FALSE(*s.LastRun(RunKind::kBillDryRun));
}

TEST_P(StateStoreConformance, TrustServerTakesAnOlderVersionOncePerRun) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
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

// Exactly once per patient-month and family: one active entry, corrections as revisions, status
// moves only forward.
TEST_P(StateStoreConformance, TheLedgerHoldsOneActiveEntryPerPatientMonthAndFamily) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  LedgerRow first = PlainEntry("Patient/a");
  first.status = LedgerStatus::kAcknowledged;  // ignored: a new entry is pending
  auto a1 = s.AddLedgerEntry(first);
  ASSERT_TRUE(a1) << a1.error().message;
  EXPECT_EQ((*s.LedgerEntry(*a1))->status, LedgerStatus::kPending);
  EXPECT_TRUE(s.AddLedgerEntry(PlainEntry("Patient/a")).error().is(Errc::kConflict))
      << "a second active entry for the same patient-month and family";
  ASSERT_TRUE(s.AddLedgerEntry(PlainEntry("Patient/a", "2026-11")));
  ASSERT_TRUE(s.AddLedgerEntry(PlainEntry("Patient/b")));

  // Status: pending -> submitted -> acknowledged, never back, never skipped.
  EXPECT_TRUE(s.MarkAcknowledged(*a1).error().is(Errc::kConflict));
  ASSERT_TRUE(s.MarkSubmitted(*a1));
  EXPECT_TRUE(s.MarkSubmitted(*a1).error().is(Errc::kConflict));
  ASSERT_TRUE(s.MarkAcknowledged(*a1));
  auto acknowledged = *s.LedgerEntry(*a1);
  EXPECT_EQ(acknowledged->status, LedgerStatus::kAcknowledged);
  EXPECT_FALSE(acknowledged->submitted_at.empty());
  EXPECT_FALSE(acknowledged->acknowledged_at.empty());

  // A void supersedes it; its month then shows the void as the active revision.
  LedgerRow v = PlainEntry("Patient/a");
  v.kind = LedgerKind::kVoid;
  v.revision = 2;
  v.supersedes = *a1;
  auto a2 = s.AddLedgerEntry(v);
  ASSERT_TRUE(a2) << a2.error().message;
  EXPECT_EQ((*s.LedgerEntry(*a1))->status, LedgerStatus::kSuperseded);
  EXPECT_TRUE(s.AddLedgerEntry(v).error().is(Errc::kConflict)) << "superseded once";

  auto active = *s.LedgerEntries({.month = "2026-10"});
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[0].patient, "Patient/b");
  EXPECT_EQ(active[1].id, *a2);
  EXPECT_EQ(active[1].kind, LedgerKind::kVoid);
  EXPECT_EQ(active[1].supersedes, *a1);
  EXPECT_EQ(
      s.LedgerEntries({.month = "2026-10", .revisions = LedgerQuery::Revisions::kAll})->size(), 3u);
  EXPECT_EQ(s.LedgerEntries({})->size(), 3u) << "every month's active entries";
  EXPECT_EQ(s.LedgerEntries({.revisions = LedgerQuery::Revisions::kAll})->size(), 4u);
  EXPECT_TRUE(s.LedgerEntries({.month = "2026-09"})->empty());
  EXPECT_FALSE(*s.LedgerEntry(*a2 + 100));
}

TEST_P(StateStoreConformance, OnlyAnUndeliveredEntryIsWithdrawn) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  std::int64_t quiet = *s.AddLedgerEntry(PlainEntry("Patient/a"));
  std::int64_t sent = *s.AddLedgerEntry(PlainEntry("Patient/b"));
  ASSERT_TRUE(s.AddDelivery(quiet, "charge-items", "batch-1"));
  ASSERT_TRUE(s.AddDelivery(sent, "charge-items", "batch-1"));
  ASSERT_TRUE(s.SetDelivery(sent, "charge-items", DeliveryStatus::kDone, "ChargeItem/1"));
  EXPECT_TRUE(s.WithdrawLedgerEntry(sent).error().is(Errc::kConflict)) << "it went out";
  ASSERT_TRUE(s.WithdrawLedgerEntry(quiet));
  EXPECT_EQ((*s.LedgerEntry(quiet))->status, LedgerStatus::kSuperseded);
  EXPECT_TRUE(s.Deliveries(quiet)->empty()) << "its undelivered deliveries go with it";
  EXPECT_TRUE(s.UndoneDeliveries()->empty());
  EXPECT_TRUE(s.WithdrawLedgerEntry(quiet).error().is(Errc::kConflict));
  // A new revision for the withdrawn patient-month may follow; the same revision twice may not.
  EXPECT_TRUE(s.AddLedgerEntry(PlainEntry("Patient/a")).error().is(Errc::kConflict));
  LedgerRow next = PlainEntry("Patient/a");
  next.revision = 2;
  EXPECT_TRUE(s.AddLedgerEntry(next));
}

TEST_P(StateStoreConformance, DeliveriesAreTrackedPerEntryAndChannel) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  std::int64_t a = *s.AddLedgerEntry(PlainEntry("Patient/a"));
  std::int64_t b = *s.AddLedgerEntry(PlainEntry("Patient/b"));
  ASSERT_TRUE(s.AddDelivery(a, "payer:m", "2026-10-aaaa"));
  ASSERT_TRUE(s.AddDelivery(a, "charge-items", "2026-10-bbbb"));
  ASSERT_TRUE(s.AddDelivery(b, "charge-items", "2026-10-bbbb"));
  auto of_a = *s.Deliveries(a);
  ASSERT_EQ(of_a.size(), 2u);
  EXPECT_EQ(of_a[0].channel, "charge-items");  // by channel
  EXPECT_EQ(of_a[0].status, DeliveryStatus::kPrepared);
  EXPECT_EQ(of_a[1].batch, "2026-10-aaaa");
  EXPECT_FALSE(of_a[1].updated_at.empty());
  EXPECT_TRUE(s.Deliveries(0)->empty()) << "no entry 0";
  ASSERT_TRUE(s.SetDelivery(a, "charge-items", DeliveryStatus::kDone, "ChargeItem/9"));
  ASSERT_TRUE(s.SetDelivery(b, "charge-items", DeliveryStatus::kFailed, "HTTP 503"));
  auto undone = *s.UndoneDeliveries();
  ASSERT_EQ(undone.size(), 2u);  // by entry, then channel
  EXPECT_EQ(undone[0].entry, a);
  EXPECT_EQ(undone[0].channel, "payer:m");
  EXPECT_EQ(undone[1].entry, b);
  EXPECT_EQ(undone[1].status, DeliveryStatus::kFailed);
  EXPECT_EQ(undone[1].detail, "HTTP 503");
  EXPECT_EQ(*s.DeliveryBatches("charge-items"), std::vector<std::string>{"2026-10-bbbb"});
}

TEST_P(StateStoreConformance, ProposalsAreOpenedApprovedAndClosedOnce) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  LedgerRow charge = PlainEntry("Patient/a");
  charge.allow_incomplete = "ehr/Encounter: failed since 2026-11-02T10:00:00Z";
  std::int64_t entry = *s.AddLedgerEntry(charge);
  EXPECT_EQ(s.LedgerEntry(entry)->value().allow_incomplete, charge.allow_incomplete);
  LedgerProposal p;
  p.entry = entry;
  p.reason = "no longer billable: no-consent";
  p.proposed = PlainEntry("Patient/a");
  p.proposed.kind = LedgerKind::kVoid;
  p.proposed.lines_json = "[]";
  p.run = 3;
  auto id = s.AddLedgerProposal(p);
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_TRUE(s.AddLedgerProposal(p).error().is(Errc::kConflict)) << "one open proposal per entry";
  auto open = *s.LedgerProposals({.month = "2026-10"});
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].id, *id);
  EXPECT_EQ(open[0].status, ProposalStatus::kOpen);
  EXPECT_EQ(open[0].proposed.kind, LedgerKind::kVoid);
  EXPECT_EQ(open[0].proposed.patient, "Patient/a");
  EXPECT_EQ(open[0].run, 3);
  EXPECT_FALSE(open[0].created_at.empty());
  EXPECT_TRUE(
      s.LedgerProposals({.month = "2026-11", .which = ProposalQuery::Which::kAll})->empty());

  ASSERT_TRUE(s.ApproveLedgerProposal(*id, "operator ana"));
  auto approved = s.LedgerProposals({})->at(0);
  EXPECT_EQ(approved.status, ProposalStatus::kApproved);
  EXPECT_EQ(approved.approved_by, "operator ana");
  EXPECT_FALSE(approved.approved_at.empty());
  EXPECT_TRUE(s.ApproveLedgerProposal(*id, "x").error().is(Errc::kConflict));
  EXPECT_TRUE(s.ApproveLedgerProposal(*id + 1, "x").error().is(Errc::kNotFound));
  EXPECT_FALSE(s.CloseLedgerProposal(*id, ProposalStatus::kOpen, "", std::nullopt));
  ASSERT_TRUE(s.CloseLedgerProposal(*id, ProposalStatus::kCarriedOut, "approved", entry));
  EXPECT_TRUE(s.LedgerProposals({})->empty());
  auto closed = s.LedgerProposals({.which = ProposalQuery::Which::kAll})->at(0);
  EXPECT_EQ(closed.status, ProposalStatus::kCarriedOut);
  EXPECT_EQ(closed.result_entry, entry);
  EXPECT_EQ(closed.outcome, "approved");
  EXPECT_TRUE(s.CloseLedgerProposal(*id, ProposalStatus::kDropped, "", std::nullopt)
                  .error()
                  .is(Errc::kConflict));
  // A closed proposal leaves room for a new one on the same entry.
  EXPECT_TRUE(s.AddLedgerProposal(p));
}

TEST_P(StateStoreConformance, HeldDeliveriesMoveBatchAndAuditRecordsAreFoundByTarget) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  std::int64_t entry = *s.AddLedgerEntry(PlainEntry("Patient/a"));
  ASSERT_TRUE(s.AddDelivery(entry, "payer:m", "2026-10-aaaa"));
  ASSERT_TRUE(s.SetDeliveryBatch(entry, "payer:m", ""));
  EXPECT_EQ(s.Deliveries(entry)->at(0).batch, "");
  EXPECT_TRUE(s.SetDeliveryBatch(entry, "payer:x", "b").error().is(Errc::kConflict));
  ASSERT_TRUE(s.SetDelivery(entry, "payer:m", DeliveryStatus::kDone, "sent"));
  EXPECT_FALSE(s.SetDeliveryBatch(entry, "payer:m", "b")) << "a delivery done stays in its batch";
  ASSERT_TRUE(s.AddAudit(AuditRow{0, "", 1, "create-sent", "CarePlan?identifier=s|a", "", "", ""}));
  ASSERT_TRUE(s.AddAudit(AuditRow{0, "", 1, "create", "CarePlan/1", "v1", "", ""}));
  auto last = s.AddAudit(AuditRow{0, "", 2, "update", "CarePlan/1", "v2", "", ""});
  ASSERT_TRUE(last);
  auto records = *s.AuditRecords("CarePlan/1");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].action, "create");
  EXPECT_EQ(records[1].version, "v2");
  EXPECT_TRUE(s.AuditRecords("CarePlan/2")->empty());
  auto log = *s.AuditLog(0);
  ASSERT_EQ(log.size(), 3u);
  EXPECT_FALSE(log[0].at.empty()) << "stamped when not given";
  EXPECT_EQ(s.AuditLog(log[1].id)->size(), 1u);
  EXPECT_EQ(s.AuditLog(log[1].id)->at(0).id, *last);
}

// The billing summary's cache key: every write a bill's outcome depends on, besides resources,
// moves it -- through another connection too -- and nothing else does.
TEST_P(StateStoreConformance, TheBillingVersionMovesWithEveryLedgerOrAuditWrite) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
  std::int64_t last = *s.BillingVersion();
  auto moved = [&](std::string_view what) {
    auto now = s.BillingVersion();
    EXPECT_TRUE(now) << what;
    const bool changed = now && *now != last;
    if (now) last = *now;
    return changed;
  };
  ASSERT_TRUE(s.Upsert("ehr", "Patient", "a", Stamp("1"), R"({"resourceType":"Patient","id":"a"})",
                       1, UpsertMode::kKeepNewest));
  ASSERT_TRUE(s.StartRun(RunKind::kBill));
  ASSERT_TRUE(s.LedgerEntries({}));
  EXPECT_FALSE(moved("resources, runs and reads"));
  std::int64_t entry = *s.AddLedgerEntry(PlainEntry("Patient/a"));
  EXPECT_TRUE(moved("a new entry"));
  ASSERT_TRUE(s.AddDelivery(entry, "charge-items", "b1"));
  EXPECT_TRUE(moved("a delivery queued"));
  ASSERT_TRUE(s.SetDelivery(entry, "charge-items", DeliveryStatus::kDone, "ChargeItem/1"));
  EXPECT_TRUE(moved("a delivery done"));
  ASSERT_TRUE(s.MarkSubmitted(entry));
  EXPECT_TRUE(moved("submitted"));
  LedgerProposal p;
  p.entry = entry;
  p.reason = "no longer billable";
  p.proposed = PlainEntry("Patient/a");
  p.proposed.kind = LedgerKind::kVoid;
  std::int64_t proposal = *s.AddLedgerProposal(p);
  EXPECT_TRUE(moved("a proposal"));
  ASSERT_TRUE(s.ApproveLedgerProposal(proposal, "operator"));
  EXPECT_TRUE(moved("an approval"));
  ASSERT_TRUE(s.AddAudit(AuditRow{0, "", 1, "create", "CarePlan/1", "v1", "", ""}));
  EXPECT_TRUE(moved("a write-back audit record"));
  // Another connection's write is seen too (another process: `ccm-gateway ledger --approve`).
  {
    auto other = Open();
    ASSERT_TRUE(other);
    ASSERT_TRUE(other->MarkAcknowledged(entry));
  }
  EXPECT_TRUE(moved("acknowledged through another connection"));
  // Reading the version leaves nothing open: another connection writes, then this one can too.
  {
    auto other = Open();
    ASSERT_TRUE(other);
    ASSERT_TRUE(other->AddAudit(AuditRow{0, "", 2, "update", "CarePlan/1", "v2", "", ""}));
  }
  auto write = s.AddAccessRecords({{0, "", "portal", "GET", "/$ccm-billing-summary", "", "", 200}});
  ASSERT_TRUE(write) << write.error().message;
  EXPECT_TRUE(moved("an audit record through another connection"));
  ASSERT_TRUE(s.AddAccessRecords({{0, "", "portal", "GET", "/$ccm-billing-summary", "", "", 200}}));
  EXPECT_FALSE(moved("the access trail (who read what) is not billing input"));
}

// A Bulk Data export not finished with: one per source, replaced, forgotten, and kept across a
// reopen (what a killed sync resumes).
TEST_P(StateStoreConformance, APendingExportIsKeptPerSourceUntilCleared) {
  {
    auto store = Open();
    ASSERT_TRUE(store);
    EXPECT_FALSE(*store->GetPendingExport("ehr"));
    ASSERT_TRUE(store->ClearPendingExport("ehr")) << "nothing to clear is not an error";
    ASSERT_TRUE(store->SetPendingExport(
        "ehr", {"https://ehr/$bulk-status/1", "https://ehr/$export?_type=Patient", "t1"}));
    ASSERT_TRUE(store->SetPendingExport(
        "ehr", {"https://ehr/$bulk-status/2", "https://ehr/$export?_type=Patient", "t2"}));
    ASSERT_TRUE(store->SetPendingExport("other", {"https://o/$bulk-status/9", "x", "t3"}));
  }
  auto store = Open();
  ASSERT_TRUE(store);
  auto pending = store->GetPendingExport("ehr");
  ASSERT_TRUE(pending);
  ASSERT_TRUE(*pending) << "kept across a reopen";
  EXPECT_EQ((*pending)->status_url, "https://ehr/$bulk-status/2") << "the last one set";
  EXPECT_EQ((*pending)->request, "https://ehr/$export?_type=Patient");
  EXPECT_EQ((*pending)->started_at, "t2");
  ASSERT_TRUE(store->ClearPendingExport("ehr"));
  EXPECT_FALSE(*store->GetPendingExport("ehr"));
  EXPECT_EQ(store->GetPendingExport("other")->value().status_url, "https://o/$bulk-status/9");
}

TEST_P(StateStoreConformance, TheAccessTrailIsAppendedAndQueried) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
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
  EXPECT_EQ(s.AccessRecords({.after_id = all->at(1).id})->size(), 1u);
}

TEST_P(StateStoreConformance, PullStatusRecordsOutcomesAndFailureStreaks) {
  auto store = Open();
  ASSERT_TRUE(store);
  StateStore& s = *store;
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
}

// The codes the store keeps, and that reports print, for every enum: one each, and back.
TEST(StateStoreCodesTest, EveryStatusAndKindHasOneCodeThatReadsBack) {
  auto check = [](auto values, auto from_code) {
    std::vector<std::string> codes;
    for (auto v : values) {
      std::string code(ToCode(v));
      EXPECT_FALSE(code.empty());
      EXPECT_EQ(from_code(code), v) << code;
      codes.push_back(code);
    }
    std::sort(codes.begin(), codes.end());
    EXPECT_EQ(std::adjacent_find(codes.begin(), codes.end()), codes.end()) << "codes are unique";
  };
  check(std::vector{PullState::kRunning, PullState::kComplete, PullState::kIncomplete,
                    PullState::kFailed, PullState::kNotOffered},
        PullStateFromCode);
  check(std::vector{ProposalStatus::kOpen, ProposalStatus::kApproved, ProposalStatus::kCarriedOut,
                    ProposalStatus::kDropped},
        ProposalStatusFromCode);
  check(std::vector{LedgerKind::kCharge, LedgerKind::kAdjustment, LedgerKind::kVoid},
        LedgerKindFromCode);
  check(std::vector{LedgerStatus::kPending, LedgerStatus::kSubmitted, LedgerStatus::kAcknowledged,
                    LedgerStatus::kSuperseded},
        LedgerStatusFromCode);
  check(std::vector{DeliveryStatus::kPrepared, DeliveryStatus::kDone, DeliveryStatus::kFailed},
        DeliveryStatusFromCode);
  check(std::vector{RunKind::kSync, RunKind::kBill, RunKind::kBillDryRun}, RunKindFromCode);
  check(std::vector{RunStatus::kRunning, RunStatus::kOk, RunStatus::kFailed, RunStatus::kStopped},
        RunStatusFromCode);
  EXPECT_EQ(LedgerStatusFromCode("Pending"), std::nullopt);
  EXPECT_EQ(RunStatusFromCode(""), std::nullopt);
}

}  // namespace
}  // namespace ccm::gateway::store_testing
