// `ccm-gateway bill`: close a month -- care plans written back, the ledger updated exactly once,
// ChargeItems and payer claims delivered. `ccm-gateway ledger`: look at the ledger, acknowledge.
#include <unistd.h>
#include <cstdlib>
#include <map>
#include <variant>

#include <fmt/format.h>

#include "gateway/billing_outputs.h"
#include "gateway/careplan_writeback.h"
#include "gateway/cli_common.h"
#include "gateway/files.h"
#include "gateway/ledger.h"
#include "gateway/state_store.h"
#include "gateway/sync.h"
#include "gateway/writeback_config.h"

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
  auto stored = store->CountResources("", "");
  if (stored && *stored == 0) {
    fmt::print(stderr,
               "ccm-gateway bill: the state store {} holds no resources; run `ccm-gateway sync "
               "--config ... --once` first\n",
               sync.state_path.string());
    return kExitUsage;
  }
  auto run = store->StartRun(dry_run ? "bill-dry-run" : "bill");
  if (!run) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", run.error().message);
    return kExitFatal;
  }
  FactStore facts;
  auto collected = CollectFactsFromStore(*store, engine, facts);
  if (!collected) {
    fmt::print(stderr, "ccm-gateway bill: {}\n", collected.error().message);
    return kExitFatal;
  }
  std::vector<PatientMonth> results = Evaluate(facts, *month, engine);
  std::vector<std::string> problems;
  Value summary = Value::MakeObject();
  summary.set("month", Value::String(month->ToString()));
  summary.set("dryRun", Value::Bool(dry_run));

  // 1. Care plans.
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
  for (const PatientMonth& r : results) {
    if (auto c = ChargeFor(r, facts, engine)) charges.push_back(std::move(*c));
  }
  std::vector<std::string> channels;
  if (wb.charge_items) channels.emplace_back(kChargeItemChannel);
  for (const auto& p : wb.payers) channels.push_back(PayerChannel(p));
  std::string batch = fmt::format("{}-run{}", month->ToString(), *run);
  auto outcome =
      ReconcileLedger(*store, month->ToString(), charges, *run, channels, batch, dry_run);
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
  Value ledger = Value::MakeObject();
  for (auto a : {LedgerAction::kNew, LedgerAction::kAdjusted, LedgerAction::kVoided,
                 LedgerAction::kWithdrawn}) {
    ledger.set(ToCode(a), n(ledger_counts[a]));
  }
  ledger.set("unchanged", n(outcome->unchanged));
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
      "{} {}: ledger {} new, {} adjusted, {} voided, {} withdrawn, {} unchanged; "
      "{} billable patient-month(s), {} {} expected{}; care plans: {}; deliveries {} done, {} "
      "failed\n",
      dry_run ? "bill --dry-run" : "billed", month->ToString(), ledger_counts[LedgerAction::kNew],
      ledger_counts[LedgerAction::kAdjusted], ledger_counts[LedgerAction::kVoided],
      ledger_counts[LedgerAction::kWithdrawn], outcome->unchanged, billed, FormatCents(amount),
      engine.fee_schedule.currency,
      dry_run ? "" : fmt::format(" ({} pending, {} submitted)", pending, submitted),
      plan_text.empty() ? "off" : plan_text.substr(0, plan_text.size() - 2), delivered.done,
      delivered.failed);
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
  return kExitOk;
}

}  // namespace ccm::gateway::cli
