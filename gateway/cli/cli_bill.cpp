// `ccm-gateway bill`: close a month -- care plans written back, the ledger updated exactly once,
// ChargeItems and payer claims delivered. `ccm-gateway ledger`: look at the ledger, acknowledge.
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <variant>

#include <fmt/format.h>

#include "gateway/billing/bill_checks.h"
#include "gateway/billing/ledger.h"
#include "gateway/cli/cli_common.h"
#include "gateway/config/writeback_config.h"
#include "gateway/ingest/store_facts.h"
#include "gateway/io/files.h"
#include "gateway/store/locks.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "gateway/sync/connection.h"
#include "gateway/writeback/billing_outputs.h"
#include "gateway/writeback/careplan_writeback.h"
#include "gateway/writeback/prior_billing.h"
#include "gateway/writeback/write_capabilities.h"

namespace ccm::gateway::cli {
namespace {

using fhir::json::Value;

struct Loaded {
  EngineConfig engine;
  SyncConfig sync;
  WriteBackConfig write_back;
  std::unique_ptr<StateStore> store;
};

// Loads the three config sections and opens the state store; prints the error and returns the
// exit status on failure.
std::variant<Loaded, int> Load(const Args& args, std::string_view command) {
  std::string config_path = args.required("--config");
  auto engine = LoadEngineConfig(config_path);
  if (!engine) {
    fmt::print(stderr, "ccm-gateway {}: {}\n", command, engine.error().message);
    return engine.error().is(Errc::kInternal) ? kExitFatal : kExitUsage;
  }
  auto sync = LoadSyncConfig(config_path, ProcessEnvironment());
  if (!sync) {
    fmt::print(stderr, "ccm-gateway {}: {}\n", command, sync.error().message);
    return kExitUsage;
  }
  auto wb = LoadWriteBackConfig(config_path, ProcessEnvironment(), *sync);
  if (!wb) {
    fmt::print(stderr, "ccm-gateway {}: {}\n", command, wb.error().message);
    return kExitUsage;
  }
  auto store = OpenSqliteStateStore(sync->state_path);
  if (!store) {
    fmt::print(stderr, "ccm-gateway {}: {}\n", command, store.error().message);
    return kExitFatal;
  }
  return Loaded{std::move(*engine), std::move(*sync), std::move(*wb), std::move(*store)};
}

// Test hook for the crash tests (tests/gateway/bill_test.cpp): CCM_GATEWAY_CRASH_AT=<step>
// ends the process abruptly right after that step, as a kill -9 would.
void Checkpoint(std::string_view step) {
  const char* at = std::getenv("CCM_GATEWAY_CRASH_AT");  // NOLINT(concurrency-mt-unsafe)
  if (at != nullptr && step == at) ::_exit(86);
}

// Refuses (returns exit 2) when a server bill creates on says it does not support conditional
// create for what is created there (fix the server or vouch for it). A statement that cannot be
// read is a warning: the ledger and the payer files must not depend on the EHR being up, and a
// server that cannot answer GET metadata will not take the writes either (they fail per patient
// and are retried next run).
int CheckWriteTargets(const WriteBackConfig& wb, fhir::FhirClient* ehr) {
  auto refuse = [](const Error& e) {
    if (!e.is(Errc::kUnsupported)) {
      fmt::print(stderr, "ccm-gateway bill: warning: {}\n", e.message);
      return kExitOk;
    }
    fmt::print(stderr, "ccm-gateway bill: {}; nothing was written\n", e.message);
    return kExitUsage;
  };
  if (ehr != nullptr && wb.require_conditional_create) {
    std::vector<std::string> types;
    if (wb.care_plans) types.emplace_back("CarePlan");
    if (wb.charge_items) types.emplace_back("ChargeItem");
    Status s =
        CheckConditionalCreate(*ehr, types, fmt::format("writeBack.target \"{}\"", wb.target->name),
                               "writeBack.requireConditionalCreate");
    if (!s) {
      if (int exit = refuse(s.error()); exit != kExitOk) return exit;
    }
  }
  for (std::size_t i = 0; i < wb.payers.size(); ++i) {
    const PayerConfig& payer = wb.payers[i];
    if (!payer.endpoint || !payer.require_conditional_create) continue;
    auto client = MakeFhirClient(*payer.endpoint, "billing");
    if (!client) {
      fmt::print(stderr, "ccm-gateway bill: billing.payers[{}].endpoint: {}\n", i,
                 client.error().message);
      return kExitUsage;
    }
    Status s = CheckConditionalCreate(
        **client, {"Bundle"}, fmt::format("billing.payers[{}].endpoint ({})", i, payer.name),
        fmt::format("billing.payers[{}].requireConditionalCreate", i));
    if (!s) {
      if (int exit = refuse(s.error()); exit != kExitOk) return exit;
    }
  }
  return kExitOk;
}

// Refuses (returns the exit status) when the ledger is empty but this practice's claims already
// exist elsewhere: a new or emptied state file would bill those patient-months again. Once a
// bill run has finished on the state file, an empty ledger only means nothing was billable.
int CheckNotANewLedger(StateStore& store, const SyncConfig& sync, const WriteBackConfig& wb,
                       fhir::FhirClient* ehr) {
  // Claim files the ledger never queued: the state file is older than the claims already
  // written (a backup restored), and would bill their patient-months again.
  auto unknown = ClaimFilesUnknownToTheLedger(wb, store);
  if (!unknown) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", unknown.error().message);
    return kExitFatal;
  }
  if (!unknown->empty()) {
    fmt::print(stderr,
               "ccm-gateway bill: the payers' directories hold {} claim file(s) that the ledger "
               "in {} never wrote:\n",
               unknown->size(), sync.state_path.string());
    for (std::size_t i = 0; i < unknown->size() && i < 10; ++i) {
      fmt::print(stderr, "  {}\n", (*unknown)[i]);
    }
    if (unknown->size() > 10) fmt::print(stderr, "  ... and {} more\n", unknown->size() - 10);
    fmt::print(stderr,
               "The state file is older than the claims already sent (was a backup restored?): "
               "billing from it could bill those patient-months again. Restore the newest state "
               "file (state.path); if these files are not this gateway's, move them out of the "
               "directory. Nothing was written.\n");
    return kExitDataProblems;
  }
  auto last = store.LastRun("bill");
  if (!last) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", last.error().message);
    return kExitFatal;
  }
  if (*last && (*last)->status == "ok") return kExitOk;  // the usual case: no ledger read
  auto entries = store.LedgerEntries("", false);
  if (!entries) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", entries.error().message);
    return kExitFatal;
  }
  if (!entries->empty()) return kExitOk;
  auto found = FindPriorBilling(wb, ehr);
  if (!found) {
    fmt::print(stderr,
               "ccm-gateway bill: the ledger in {} is empty, and whether this practice's claims "
               "already exist could not be checked: {}; run bill again when it can be\n",
               sync.state_path.string(), found.error().message);
    return kExitDataProblems;
  }
  if (found->empty()) return kExitOk;
  fmt::print(stderr,
             "ccm-gateway bill: the ledger in {} is empty, but this practice's claims already "
             "exist:\n",
             sync.state_path.string());
  for (const auto& f : *found) fmt::print(stderr, "  {}\n", f);
  fmt::print(stderr,
             "Billing now would bill those patient-months again: the ledger that records what "
             "was billed lives in the state file. Restore the previous state file (state.path; "
             "see docs/configuration.md#statepath) from its backup and run bill again.\n");
  return kExitDataProblems;
}

// The user running the command, for the record of an approval.
std::string OperatorName() {
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  return fmt::format("uid {}", ::geteuid());
}

Value ProposalJson(const LedgerProposal& p) {
  Value o = Value::MakeObject();
  o.set("proposal", Value::Number(p.id));
  o.set("entry", Value::Number(p.entry));
  o.set("patient", Value::String(p.proposed.patient));
  o.set("month", Value::String(p.proposed.month));
  o.set("family", Value::String(p.proposed.family));
  o.set("kind", Value::String(p.proposed.kind));
  o.set("status", Value::String(std::string(ToCode(p.status))));
  o.set("reason", Value::String(p.reason));
  if (p.proposed.kind != "void") {
    Value proposed = Value::MakeObject();
    proposed.set("program", Value::String(p.proposed.program));
    auto lines = fhir::json::Parse(p.proposed.lines_json);
    proposed.set("lines", lines ? std::move(*lines) : Value::MakeArray());
    proposed.set("amount", Value::Number(FormatCents(p.proposed.amount_cents)));
    o.set("proposed", std::move(proposed));
  }
  o.set("created", Value::String(p.created_at));
  if (!p.approved_at.empty()) {
    o.set("approved", Value::String(p.approved_at));
    o.set("approvedBy", Value::String(p.approved_by));
  }
  if (!p.closed_at.empty()) o.set("closed", Value::String(p.closed_at));
  if (!p.outcome.empty()) o.set("outcome", Value::String(p.outcome));
  if (p.result_entry) o.set("resultEntry", Value::Number(*p.result_entry));
  return o;
}

// The lines after the summary that say what the ledger holds back and why (ledger entry and
// proposal ids, no patient ids: `ccm-gateway ledger` names the patients).
void PrintHolds(const LedgerOutcome& outcome, bool dry_run) {
  if (std::size_t held = outcome.held(); held > 0) {
    fmt::print(
        "held: {} void(s)/downward adjustment(s) proposed; confirmed by the next complete "
        "`ccm-gateway sync --full` or `ccm-gateway ledger --approve ID`\n",
        held);
  }
  for (const auto& p : outcome.proposals) {
    const std::string id = dry_run && p.action == ProposalAction::kProposed
                               ? std::string("(new)")
                               : fmt::format("{}", p.proposal.id);
    switch (p.action) {
      case ProposalAction::kProposed:
      case ProposalAction::kHeld:
        fmt::print("  proposal {}: {} of ledger entry {}{}: {}\n", id, p.proposal.proposed.kind,
                   p.proposal.entry,
                   p.action == ProposalAction::kHeld
                       ? fmt::format(" (proposed {})", p.proposal.created_at)
                       : "",
                   p.proposal.reason);
        break;
      case ProposalAction::kConfirmed:
        fmt::print("confirmed: proposal {} ({} of ledger entry {}): {}\n", id,
                   p.proposal.proposed.kind, p.proposal.entry, p.outcome);
        break;
      case ProposalAction::kDropped:
        fmt::print("dropped: proposal {} ({} of ledger entry {}): {}\n", id,
                   p.proposal.proposed.kind, p.proposal.entry, p.outcome);
        break;
    }
  }
  if (!outcome.merge_holds.empty()) {
    fmt::print(
        "held: {} charge(s) of patient records others were merged into: the month was billed "
        "under the merged record; held until its entry is voided\n",
        outcome.merge_holds.size());
    for (const auto& h : outcome.merge_holds) {
      fmt::print("  billed under ledger entry {} (a record since merged)\n", h.entry);
    }
  }
}

}  // namespace

int RunBill(const Args& args) {
  auto month = YearMonth::Parse(args.required("--month"));
  if (!month) throw UsageError(fmt::format("--month: {}", month.error().message));
  bool dry_run = args.flag("--dry-run");
  auto loaded = Load(args, "bill");
  if (auto* exit = std::get_if<int>(&loaded)) return *exit;
  auto& [engine, sync, wb, store] = std::get<Loaded>(loaded);
  // CCM is billed per calendar month (docs/ccm-rules.md, rule 6): billing a month still under
  // way bills what is met so far, and the rest of the month then arrives as corrections.
  if (YearMonth now = CurrentMonth(engine); !(*month < now) && !args.flag("--open-month")) {
    throw UsageError(fmt::format(
        "{} has not ended in {} (today is in {}); bill it once it has, or pass --open-month to "
        "bill what is met so far (time added later then goes out as corrected claims)",
        month->ToString(), engine.practice.time_zone_name, now.ToString()));
  }
  if (Status s = UseFeeScheduleForYear(engine, month->year); !s) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", s.error().message);
    return kExitUsage;
  }
  // One bill run per state file at a time: two runs delivering the same queued ChargeItems could
  // race past a server's conditional create. The kernel drops the lock if this process dies.
  std::filesystem::path lock_path = sync.state_path;
  lock_path += ".bill-lock";
  auto lock = FileLock::TryLock(lock_path);
  if (!lock) {
    fmt::print(stderr, "ccm-gateway bill: {}\n",
               lock.error().is(Errc::kConflict)
                   ? fmt::format("another `ccm-gateway bill` is running on {} ({}); run again "
                                 "when it has finished",
                                 sync.state_path.string(), lock_path.string())
                   : lock.error().message);
    return lock.error().is(Errc::kConflict) ? kExitDataProblems : kExitFatal;
  }
  // No bill while a sync runs (it would bill half-pulled data), and no sync while this bill runs:
  // the sync lock, held until the process ends.
  auto sync_lock = LockSync(sync.state_path, std::chrono::milliseconds(0));
  if (!sync_lock) {
    if (!sync_lock.error().is(Errc::kConflict)) {
      fmt::print(stderr, "ccm-gateway bill: {}\n", sync_lock.error().message);
      return kExitFatal;
    }
    auto holder = SyncLockHolder(sync.state_path);
    fmt::print(stderr,
               "ccm-gateway bill: a sync is running on {}{}; billing now would read half-pulled "
               "data: run bill again when the sync has finished\n",
               sync.state_path.string(), holder ? fmt::format(" (pid {})", *holder) : "");
    return kExitDataProblems;
  }
  auto stored = store->CountResources("", "");
  if (stored && *stored == 0) {
    fmt::print(stderr,
               "ccm-gateway bill: the state store {} holds no resources; run `ccm-gateway sync "
               "--config ... --once` first\n",
               sync.state_path.string());
    return kExitUsage;
  }
  std::string config_path = args.required("--config");
  // Bill only from data known to be complete: every needed type's last pull complete.
  auto statuses = store->PullStatuses();
  if (!statuses) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", statuses.error().message);
    return kExitFatal;
  }
  // A closed month is billed from pulls that started after it ended: its last days' notes are
  // often signed the next morning.
  std::optional<fhir::TimePoint> needed_from;
  if (*month < CurrentMonth(engine)) needed_from = MonthEnd(*month, engine);
  Completeness completeness = CheckCompleteness(*statuses, sync, engine, needed_from);
  std::vector<std::string> gaps;
  for (const auto& g : completeness.gaps) gaps.push_back(Describe(g));
  if (!gaps.empty() && !args.flag("--allow-incomplete")) {
    fmt::print(stderr,
               "ccm-gateway bill: refusing to bill {}: the state store does not hold a complete "
               "pull of every resource type billing needs:\n",
               month->ToString());
    for (const auto& g : gaps) fmt::print(stderr, "  {}\n", g);
    fmt::print(stderr,
               "Run `ccm-gateway sync --config {} --once` and bill once it has pulled every type "
               "completely; a type that keeps failing needs its cause fixed first (the detail "
               "above, the sync's log). --allow-incomplete bills anyway and records that in the "
               "ledger.\n",
               config_path);
    return kExitDataProblems;
  }
  std::string allow_incomplete;
  if (!gaps.empty()) {
    for (const auto& g : gaps) allow_incomplete += (allow_incomplete.empty() ? "" : "; ") + g;
    fmt::print(stderr,
               "ccm-gateway bill: warning: billing from incomplete data (--allow-incomplete); "
               "every ledger entry this run writes records it:\n");
    for (const auto& g : gaps) fmt::print(stderr, "  {}\n", g);
  }

  std::unique_ptr<fhir::FhirClient> ehr;
  if ((wb.care_plans || wb.charge_items) && wb.target) {
    auto client = MakeFhirClient(*wb.target, "write-back");
    if (!client) {
      fmt::print(stderr, "ccm-gateway bill: writeBack.target {}: {}\n", wb.target->name,
                 client.error().message);
      return kExitUsage;
    }
    ehr = std::move(*client);
  }
  // A new (or emptied) state file beside claims already made would bill every patient-month
  // again: the ledger that says what was billed lives in the state file.
  if (int exit = CheckWriteTargets(wb, ehr.get()); exit != kExitOk) return exit;
  if (int exit = CheckNotANewLedger(*store, sync, wb, ehr.get()); exit != kExitOk) return exit;

  auto run = store->StartRun(dry_run ? "bill-dry-run" : "bill");
  if (!run) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", run.error().message);
    return kExitFatal;
  }
  FactStore facts;
  std::vector<std::string> source_names;
  for (const auto& s : sync.sources) source_names.push_back(s.name);
  auto collected = CollectFactsFromStore(*store, engine, source_names, facts);
  if (!collected) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", collected.error().message);
    return kExitFatal;
  }
  std::vector<PatientMonth> results = Evaluate(facts, *month, engine);
  std::vector<std::string> problems;
  Value summary = Value::MakeObject();
  summary.set("month", Value::String(month->ToString()));
  summary.set("dryRun", Value::Bool(dry_run));
  if (!gaps.empty()) {
    Value reasons = Value::MakeArray();
    for (const auto& g : gaps) reasons.push_back(Value::String(g));
    summary.set("allowIncomplete", std::move(reasons));
  }

  // 1. Care plans.
  std::map<std::string, std::size_t> plan_counts;
  if (wb.care_plans) {
    std::vector<const PatientMonth*> wanted;
    for (const PatientMonth& r : results) {
      if (WantsCarePlan(r)) wanted.push_back(&r);
    }
    // A few searches for everyone (see WriteCarePlan for what happens when they fail).
    auto snapshot = ReadCarePlans(*ehr, wanted, wb);
    for (const PatientMonth* p : wanted) {
      const PatientMonth& r = *p;
      CarePlanWrite w = WriteCarePlan(*ehr, *store, r, wb, *run, dry_run, &snapshot);
      ++plan_counts[std::string(ToCode(w.action))];
      if (w.recorded_late) ++plan_counts["create-recorded-late"];
      if (w.action == CarePlanAction::kFailed) {
        // The audit record names the patient; the log line does not (no PHI in logs).
        problems.push_back(fmt::format("care plan{} (audit record {}): {}",
                                       w.reference.empty() ? "" : " " + w.reference, w.audit,
                                       w.message));
      } else if (!w.provenance_error.empty()) {
        problems.push_back(
            fmt::format("care plan {} written, but {}", w.reference, w.provenance_error));
      } else if (dry_run && w.action != CarePlanAction::kUnchanged) {
        fmt::print("care plan  {:<14} {}{}\n", ToCode(w.action), r.patient,
                   w.reference.empty() ? "" : fmt::format(" ({})", w.reference));
      }
      if (w.action == CarePlanAction::kCreated || w.action == CarePlanAction::kUpdated) {
        Checkpoint("care-plan");
      }
    }
  }

  DeliveryContext ctx{*store, wb, engine.fee_schedule.currency, *run, ehr.get(), {}, Checkpoint};
  for (const auto& s : sync.sources) ctx.sources.push_back(s.name);
  DeliveryReport delivered;
  auto deliver = [&]() {
    DeliveryReport d = DeliverOpen(ctx);
    auto marked = MarkDelivered(*store, d.entries);
    if (!marked) d.problems.push_back(marked.error().message);
    delivered.done += d.done;
    delivered.failed += d.failed;
    delivered.charge_items_written += d.charge_items_written;
    delivered.files.insert(delivered.files.end(), d.files.begin(), d.files.end());
    problems.insert(problems.end(), d.problems.begin(), d.problems.end());
  };
  // 2. What an earlier, interrupted run left undelivered goes first, as it was decided then.
  if (!dry_run) deliver();

  // 3. The ledger.
  std::vector<Charge> charges;
  ReconcileOptions options;
  options.run = *run;
  options.dry_run = dry_run;
  // A run that bills from incomplete data confirms no proposal by the data (an approval still
  // does): what a failed pull left is exactly what a proposal waits to see confirmed.
  if (gaps.empty()) options.complete_since = completeness.full_complete_since;
  options.allow_incomplete = allow_incomplete;
  if (wb.charge_items) options.channels.emplace_back(kChargeItemChannel);
  for (const auto& p : wb.payers) options.channels.push_back(PayerChannel(p));
  for (const PatientMonth& r : results) {
    if (auto c = ChargeFor(r, facts, engine)) {
      charges.push_back(std::move(*c));
      continue;
    }
    std::string why;
    for (const auto& b : r.blocked_by) why += (why.empty() ? "" : ", ") + b;
    options.not_billable[r.patient] = why.empty() ? "nothing billable" : why;
  }
  // A merged record's clinical data usually move to the survivor, leaving it without a result:
  // its Patient still says why it is not billable.
  for (const auto& [key, fact] : facts.notable()) {
    const auto* p = fact->fact ? std::get_if<PatientFact>(fact->fact.get()) : nullptr;
    if (p == nullptr || (!p->replaced && !p->inactive)) continue;
    options.not_billable.try_emplace(*key, p->replaced && p->inactive ? "merged, inactive-record"
                                           : p->replaced              ? "merged"
                                                                      : "inactive-record");
  }
  auto outcome = ReconcileLedger(*store, month->ToString(), charges, options);
  if (!outcome) {
    fmt::print(stderr, "ccm-gateway bill: ledger: {}\n", outcome.error().message);
    static_cast<void>(store->FinishRun(*run, "failed", "{}"));
    return outcome.error().is(Errc::kConflict) ? kExitDataProblems : kExitFatal;
  }
  Checkpoint("ledger");
  std::map<LedgerAction, std::size_t> ledger_counts;
  for (const auto& c : outcome->changes) {
    ++ledger_counts[c.action];
    if (dry_run) {
      const LedgerRow& row = c.entry ? *c.entry : *c.previous;
      std::string lines;
      for (const auto& l : LedgerLines(row)) lines += fmt::format(" {}x{}", l.code, l.units);
      fmt::print("ledger     {:<14} {} {}{}\n", ToCode(c.action), row.patient, row.month,
                 lines.empty() ? "" : " ->" + lines);
    }
  }
  std::map<ProposalAction, std::size_t> proposal_counts;
  for (const auto& p : outcome->proposals) {
    ++proposal_counts[p.action];
    if (dry_run) {
      fmt::print("ledger     {:<14} {} {} ({} of ledger entry {}: {})\n",
                 fmt::format("{}-{}", ToCode(p.action), p.proposal.proposed.kind),
                 p.proposal.proposed.patient, p.proposal.proposed.month, p.proposal.proposed.kind,
                 p.proposal.entry, p.outcome.empty() ? p.proposal.reason : p.outcome);
    }
  }
  if (dry_run) {
    for (const auto& h : outcome->merge_holds) {
      fmt::print("ledger     {:<14} {} {} (billed under merged record {}, ledger entry {})\n",
                 "held-merged", h.patient, month->ToString(), h.merged_record, h.entry);
    }
  }

  // 4. Deliveries of this run.
  if (!dry_run) deliver();

  // Totals: what the month bills (after a real run the ledger's active entries say the same) and
  // where the ledger's entries stand.
  std::size_t billed = charges.size(), pending = 0, submitted = 0;
  Cents amount = 0;
  for (const auto& c : charges) amount += c.amount;
  if (auto active = store->LedgerEntries(month->ToString(), true); active && !dry_run) {
    for (const auto& e : *active) {
      if (e.kind != "void") (e.status == "pending" ? pending : submitted) += 1;
    }
  }
  auto n = [](std::size_t v) { return Value::Number(static_cast<std::int64_t>(v)); };
  std::size_t held = outcome->held() + outcome->merge_holds.size();
  Value ledger = Value::MakeObject();
  for (auto a : {LedgerAction::kNew, LedgerAction::kAdjusted, LedgerAction::kVoided,
                 LedgerAction::kWithdrawn}) {
    ledger.set(ToCode(a), n(ledger_counts[a]));
  }
  ledger.set("unchanged", n(outcome->unchanged));
  ledger.set("held", n(held));
  Value proposals = Value::MakeObject();
  for (auto a : {ProposalAction::kProposed, ProposalAction::kHeld, ProposalAction::kConfirmed,
                 ProposalAction::kDropped}) {
    proposals.set(ToCode(a), n(proposal_counts[a]));
  }
  ledger.set("proposals", std::move(proposals));
  ledger.set("mergeHolds", n(outcome->merge_holds.size()));
  if (!outcome->batch.empty()) ledger.set("batch", Value::String(outcome->batch));
  summary.set("ledger", std::move(ledger));
  Value plans = Value::MakeObject();
  for (const auto& [k, v] : plan_counts) plans.set(k, n(v));
  summary.set("carePlans", std::move(plans));
  summary.set("deliveries", n(delivered.done));
  summary.set("deliveryFailures", n(delivered.failed));
  summary.set("billablePatientMonths", n(billed));
  summary.set("expectedPayment", Value::Number(FormatCents(amount)));
  for (const auto& p : problems) fmt::print(stderr, "problem: {}\n", p);
  for (const auto& f : delivered.files) fmt::print(stderr, "wrote {}\n", f);

  std::string plan_text;
  for (const auto& [k, v] : plan_counts) plan_text += fmt::format("{} {}, ", v, k);
  fmt::print(
      "{} {}: ledger {} new, {} adjusted, {} voided, {} withdrawn, {} unchanged, {} held; "
      "{} billable patient-month(s), {} {} expected{}; care plans: {}; deliveries {} done, {} "
      "failed\n",
      dry_run ? "bill --dry-run" : "billed", month->ToString(), ledger_counts[LedgerAction::kNew],
      ledger_counts[LedgerAction::kAdjusted], ledger_counts[LedgerAction::kVoided],
      ledger_counts[LedgerAction::kWithdrawn], outcome->unchanged, held, billed,
      FormatCents(amount), engine.fee_schedule.currency,
      dry_run ? "" : fmt::format(" ({} pending, {} submitted)", pending, submitted),
      plan_text.empty() ? "off" : plan_text.substr(0, plan_text.size() - 2), delivered.done,
      delivered.failed);
  PrintHolds(*outcome, dry_run);
  bool ok = problems.empty();
  if (Status s = store->FinishRun(*run, ok ? "ok" : "failed", fhir::json::Serialize(summary)); !s) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", s.error().message);
    return kExitFatal;
  }
  return ok ? kExitOk : kExitDataProblems;
}

int RunLedger(const Args& args) {
  std::string month;
  if (auto m = args.value("--month")) {
    auto ym = YearMonth::Parse(*m);
    if (!ym) throw UsageError(fmt::format("--month: {}", ym.error().message));
    month = ym->ToString();
  }
  auto loaded = Load(args, "ledger");
  if (auto* exit = std::get_if<int>(&loaded)) return *exit;
  StateStore& store = *std::get<Loaded>(loaded).store;
  for (const auto& id_text : args.all("--acknowledge")) {
    char* end = nullptr;
    long long id = std::strtoll(id_text.c_str(), &end, 10);
    if (end == id_text.c_str() || *end != '\0' || id <= 0) {
      throw UsageError(fmt::format("--acknowledge takes ledger entry ids, got \"{}\"", id_text));
    }
    if (Status s = store.SetLedgerStatus(id, "acknowledged"); !s) {
      fmt::print(stderr, "ccm-gateway ledger: {}\n", s.error().message);
      return kExitDataProblems;
    }
  }
  for (const auto& id_text : args.all("--approve")) {
    char* end = nullptr;
    long long id = std::strtoll(id_text.c_str(), &end, 10);
    if (end == id_text.c_str() || *end != '\0' || id <= 0) {
      throw UsageError(fmt::format("--approve takes ledger proposal ids, got \"{}\"", id_text));
    }
    // An operator's decision: recorded on the proposal and in the audit log, with who and when.
    std::string by = fmt::format("operator {}", OperatorName());
    auto approve = [&]() -> Status {
      CCM_TRY(store.ApproveLedgerProposal(id, by));
      CCM_TRY(store.AddAudit(AuditRow{0, "", 0, "approve", fmt::format("ledger proposal {}", id),
                                      "", fmt::format("approved by {}", by), ""}));
      return {};
    };
    if (Status s = store.InTransaction(approve); !s) {
      fmt::print(stderr, "ccm-gateway ledger: {}\n", s.error().message);
      return kExitDataProblems;
    }
    fmt::print(stderr, "approved ledger proposal {}; the next `ccm-gateway bill` carries it out\n",
               id);
  }
  if (args.flag("--audit")) {
    // The audit log of writes to other systems (CarePlans, ChargeItems, claim Bundles).
    auto audit = store.AuditLog(0);
    if (!audit) {
      fmt::print(stderr, "ccm-gateway ledger: {}\n", audit.error().message);
      return kExitFatal;
    }
    for (const auto& a : *audit) {
      Value o = Value::MakeObject();
      o.set("id", Value::Number(a.id));
      o.set("at", Value::String(a.at));
      o.set("run", Value::Number(a.run));
      o.set("action", Value::String(a.action));
      o.set("target", Value::String(a.target));
      if (!a.version.empty()) o.set("version", Value::String(a.version));
      if (!a.detail.empty()) o.set("detail", Value::String(a.detail));
      if (!a.provenance.empty()) o.set("provenance", Value::String(a.provenance));
      fmt::print("{}\n", fhir::json::Serialize(o));
    }
    return kExitOk;
  }
  auto rows = store.LedgerEntries(month, !args.flag("--all"));
  if (!rows) {
    fmt::print(stderr, "ccm-gateway ledger: {}\n", rows.error().message);
    return kExitFatal;
  }
  for (const auto& r : *rows) {
    Value o = Value::MakeObject();
    o.set("id", Value::Number(r.id));
    o.set("patient", Value::String(r.patient));
    o.set("month", Value::String(r.month));
    o.set("family", Value::String(r.family));
    o.set("revision", Value::Number(std::int64_t{r.revision}));
    o.set("kind", Value::String(r.kind));
    o.set("status", Value::String(r.status));
    o.set("supersedes", r.supersedes ? Value::Number(*r.supersedes) : Value());
    o.set("program", Value::String(r.program));
    auto lines = fhir::json::Parse(r.lines_json);
    o.set("lines", lines ? std::move(*lines) : Value::MakeArray());
    Value minutes = Value::MakeObject();
    minutes.set("clinicalStaff", Value::Number(r.staff_minutes));
    minutes.set("practitioner", Value::Number(r.practitioner_minutes));
    o.set("billableMinutes", std::move(minutes));
    o.set("amount", Value::Number(FormatCents(r.amount_cents)));
    o.set("created", Value::String(r.created_at));
    if (!r.submitted_at.empty()) o.set("submitted", Value::String(r.submitted_at));
    if (!r.acknowledged_at.empty()) o.set("acknowledged", Value::String(r.acknowledged_at));
    if (!r.allow_incomplete.empty()) {
      o.set("allowIncomplete", Value::String(r.allow_incomplete));
    }
    Value deliveries = Value::MakeArray();
    if (auto ds = store.Deliveries(r.id)) {
      for (const auto& d : *ds) {
        Value dv = Value::MakeObject();
        dv.set("channel", Value::String(d.channel));
        dv.set("batch", Value::String(d.batch));
        dv.set("status", Value::String(d.status));
        if (!d.detail.empty()) dv.set("detail", Value::String(d.detail));
        deliveries.push_back(std::move(dv));
      }
    }
    o.set("deliveries", std::move(deliveries));
    fmt::print("{}\n", fhir::json::Serialize(o));
  }
  // Proposals (open and approved ones; every one with --all), after the entries.
  auto proposals = store.LedgerProposals(month, !args.flag("--all"));
  if (!proposals) {
    fmt::print(stderr, "ccm-gateway ledger: {}\n", proposals.error().message);
    return kExitFatal;
  }
  for (const auto& p : *proposals) fmt::print("{}\n", fhir::json::Serialize(ProposalJson(p)));
  return kExitOk;
}

}  // namespace ccm::gateway::cli
