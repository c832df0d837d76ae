// `ccm-gateway bill`: close a month (app::CloseMonth). `ccm-gateway ledger`: look at the ledger,
// acknowledge, approve (app::QueryLedger). `ccm-gateway audit`: the access trail of `serve`
// (app::QueryAccessAudit).
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <map>

#include <fmt/format.h>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/app/close_month.h"
#include "gateway/app/ledger_query.h"
#include "gateway/ccm/report.h"
#include "gateway/cli/cli_common.h"
#include "gateway/config/gateway_config.h"
#include "gateway/io/files.h"

namespace ccm::gateway::cli {
namespace {

using fhir::json::Value;

// Test hook for the crash tests (tests/gateway/cli/bill_test.cpp): CCM_GATEWAY_CRASH_AT=<step>
// ends the process abruptly right after that step, as a kill -9 would.
void Checkpoint(std::string_view step) {
  const char* at = std::getenv("CCM_GATEWAY_CRASH_AT");  // NOLINT(concurrency-mt-unsafe)
  if (at != nullptr && step == at) ::_exit(86);
}

// The user running the command, for the record of an approval.
std::string OperatorName() {
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  return fmt::format("uid {}", ::geteuid());
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
        fmt::print("  proposal {}: {} of ledger entry {}{}: {}\n", id,
                   ToCode(p.proposal.proposed.kind), p.proposal.entry,
                   p.action == ProposalAction::kHeld
                       ? fmt::format(" (proposed {})", p.proposal.created_at)
                       : "",
                   p.proposal.reason);
        break;
      case ProposalAction::kConfirmed:
        fmt::print("confirmed: proposal {} ({} of ledger entry {}): {}\n", id,
                   ToCode(p.proposal.proposed.kind), p.proposal.entry, p.outcome);
        break;
      case ProposalAction::kDropped:
        fmt::print("dropped: proposal {} ({} of ledger entry {}): {}\n", id,
                   ToCode(p.proposal.proposed.kind), p.proposal.entry, p.outcome);
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

// With --dry-run: what the run would write, one line each, before the summary.
void PrintPlan(const app::CloseMonthResult& r) {
  for (const auto& [patient, w] : r.care_plans) {
    if (w.action == CarePlanAction::kFailed || w.action == CarePlanAction::kUnchanged ||
        !w.provenance_error.empty()) {
      continue;  // (a problem line instead, or nothing to say)
    }
    fmt::print("care plan  {:<14} {}{}\n", ToCode(w.action), patient,
               w.reference.empty() ? "" : fmt::format(" ({})", w.reference));
  }
  for (const auto& c : r.ledger.changes) {
    const LedgerRow& row = c.entry ? *c.entry : *c.previous;
    std::string lines;
    for (const auto& l : LedgerLines(row)) lines += fmt::format(" {}x{}", l.code, l.units);
    fmt::print("ledger     {:<14} {} {}{}\n", ToCode(c.action), row.patient, row.month,
               lines.empty() ? "" : " ->" + lines);
  }
  for (const auto& p : r.ledger.proposals) {
    fmt::print("ledger     {:<14} {} {} ({} of ledger entry {}: {})\n",
               fmt::format("{}-{}", ToCode(p.action), ToCode(p.proposal.proposed.kind)),
               p.proposal.proposed.patient, p.proposal.proposed.month,
               ToCode(p.proposal.proposed.kind), p.proposal.entry,
               p.outcome.empty() ? p.proposal.reason : p.outcome);
  }
  for (const auto& h : r.ledger.merge_holds) {
    fmt::print("ledger     {:<14} {} {} (billed under merged record {}, ledger entry {})\n",
               "held-merged", h.patient, r.month.ToString(), h.merged_record, h.entry);
  }
}

class BillCommand : public Command {
 public:
  BillCommand()
      : Command(
            "bill", "--month YYYY-MM --config FILE [--dry-run] [--open-month] [--allow-incomplete]",
            "Close the month from the state store (run `sync` first): write back CCM care plans "
            "(writeBack.carePlans), record every billable patient-month in the ledger exactly "
            "once (corrections of earlier months become adjustments or voids), and deliver "
            "ChargeItems (writeBack.chargeItems) and payer claim Bundles and CSV "
            "(billing.payers).\nRe-running changes nothing. --dry-run prints what would be "
            "written and writes nothing. A month that has not ended is refused unless "
            "--open-month. Refused while a sync runs, or when a needed type's last pull was not "
            "complete, or for a closed month started before it ended (--allow-incomplete bills "
            "anyway and the ledger records it). Voids and downward adjustments are proposed "
            "first and carried out after the next complete `sync --full` or an approval "
            "(`ledger --approve`).",
            "ccm-gateway bill --month 2026-10 --config site.json --dry-run\n"
            "ccm-gateway bill --month 2026-10 --config site.json") {
    AddRequired("--month", month_, "The calendar month to bill")->type_name("YYYY-MM");
    AddRequired("--config", config_, "The gateway's config (state, writeBack, billing)")
        ->type_name("FILE");
    AddSwitch("--dry-run", dry_run_, "Print what would be written; write nothing");
    AddSwitch("--open-month", open_month_, "Bill a month that has not ended yet");
    AddSwitch("--allow-incomplete", allow_incomplete_,
              "Bill although a needed type's last pull was not complete (recorded)");
  }

  int Run(Console& console) override {
    app::CloseMonthRequest request{ParseMonth(month_), dry_run_, open_month_, allow_incomplete_};
    auto config = LoadGatewayConfig(config_);
    if (!config) {
      console.Error(config.error().message);
      return config.error().is(Errc::kInternal) ? kExitFatal : kExitUsage;
    }
    auto store = app::OpenStateStore(*config);
    if (!store) return ReportError(console, store.error());
    app::CloseMonthObserver observer;
    observer.on_incomplete = [&console](const std::vector<std::string>& gaps) {
      console.Error(
          "warning: billing from incomplete data (--allow-incomplete); every ledger entry this "
          "run writes records it:");
      for (const auto& g : gaps) fmt::print(stderr, "  {}\n", g);
    };
    observer.on_warning = [&console](const std::string& w) {
      console.Error(fmt::format("warning: {}", w));
    };
    observer.on_progress = [&console](std::string_view step, std::size_t done, std::size_t total) {
      console.Progress(fmt::format("bill: {} {}/{}", step, done, total));
    };
    observer.checkpoint = Checkpoint;
    auto result = app::CloseMonth(*config, **store, request, observer);
    console.EndProgress();
    if (!result) return ReportError(console, result.error());
    const app::CloseMonthResult& r = *result;
    if (r.dry_run) PrintPlan(r);
    for (const auto& p : r.problems) fmt::print(stderr, "problem: {}\n", p);
    if (!console.quiet()) {
      for (const auto& f : r.files) fmt::print(stderr, "wrote {}\n", f);
    }
    std::string plan_text;
    for (const auto& [k, v] : r.care_plan_counts) plan_text += fmt::format("{} {}, ", v, k);
    auto count = [](const auto& counts, auto key) {
      auto it = counts.find(key);
      return it == counts.end() ? std::size_t{0} : it->second;
    };
    fmt::print(
        "{} {}: ledger {} new, {} adjusted, {} voided, {} withdrawn, {} unchanged, {} held; "
        "{} billable patient-month(s), {} {} expected{}; care plans: {}; deliveries {} done, {} "
        "failed\n",
        r.dry_run ? "bill --dry-run" : "billed", r.month.ToString(),
        count(r.ledger_counts, LedgerAction::kNew), count(r.ledger_counts, LedgerAction::kAdjusted),
        count(r.ledger_counts, LedgerAction::kVoided),
        count(r.ledger_counts, LedgerAction::kWithdrawn), r.ledger.unchanged, r.held(), r.billable,
        FormatCents(r.amount), r.currency,
        r.dry_run ? "" : fmt::format(" ({} pending, {} submitted)", r.pending, r.submitted),
        plan_text.empty() ? "off" : plan_text.substr(0, plan_text.size() - 2), r.deliveries_done,
        r.deliveries_failed);
    PrintHolds(r.ledger, r.dry_run);
    if (r.unrecorded) return ReportError(console, *r.unrecorded);
    return r.ok() ? kExitOk : kExitDataProblems;
  }

 private:
  std::string month_, config_;
  bool dry_run_ = false, open_month_ = false, allow_incomplete_ = false;
};

// One line of a delivery list: "charge-items done, payer:medicare failed".
std::string DeliverySummary(const app::LedgerEntryView& e) {
  std::string out;
  for (const auto& d : e.deliveries) {
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", d.channel, ToCode(d.status));
  }
  return out;
}

std::string Codes(std::string_view lines_json) {
  std::string out;
  auto lines = fhir::json::Parse(lines_json);
  if (!lines) return out;
  for (const auto& l : lines->array()) {
    out +=
        fmt::format("{}{}x{}", out.empty() ? "" : " ", l["code"].str(), l["units"].number_text());
  }
  return out;
}

// The ledger for people (a terminal) or spreadsheets (CSV). NDJSON is app::ToJson's.
std::string LedgerTable(const app::LedgerAnswer& a) {
  std::string out =
      fmt::format("{:>5}  {:<44} {:<7} {:>3} {:<10} {:<12} {:<16} {:>9}  {}\n", "entry", "patient",
                  "month", "rev", "kind", "status", "codes", "amount", "deliveries");
  for (const auto& e : a.entries) {
    const LedgerRow& r = e.entry;
    out += fmt::format("{:>5}  {:<44} {:<7} {:>3} {:<10} {:<12} {:<16} {:>9}  {}\n", r.id,
                       r.patient, r.month, r.revision, ToCode(r.kind), ToCode(r.status),
                       Codes(r.lines_json), FormatCents(r.amount_cents), DeliverySummary(e));
  }
  out += fmt::format("{} entr(ies)\n", a.entries.size());
  if (!a.proposals.empty()) {
    out += fmt::format("\n{:>8}  {:>5}  {:<44} {:<7} {:<10} {:<9}  {}\n", "proposal", "entry",
                       "patient", "month", "kind", "status", "reason");
    for (const auto& p : a.proposals) {
      out += fmt::format("{:>8}  {:>5}  {:<44} {:<7} {:<10} {:<9}  {}\n", p.id, p.entry,
                         p.proposed.patient, p.proposed.month, ToCode(p.proposed.kind),
                         ToCode(p.status), p.reason);
    }
  }
  return out;
}

std::string LedgerCsv(const app::LedgerAnswer& a) {
  std::string out =
      "record,id,entry,patient,month,revision,kind,status,program,codes,amount,created,"
      "deliveries,reason\n";
  for (const auto& e : a.entries) {
    const LedgerRow& r = e.entry;
    out += fmt::format("entry,{},,{},{},{},{},{},{},{},{},{},{},\n", r.id, CsvField(r.patient),
                       CsvField(r.month), r.revision, CsvField(ToCode(r.kind)),
                       CsvField(ToCode(r.status)), CsvField(r.program),
                       CsvField(Codes(r.lines_json)), FormatCents(r.amount_cents),
                       CsvField(r.created_at), CsvField(DeliverySummary(e)));
  }
  for (const auto& p : a.proposals) {
    out += fmt::format(
        "proposal,{},{},{},{},,{},{},{},{},{},{},,{}\n", p.id, p.entry,
        CsvField(p.proposed.patient), CsvField(p.proposed.month), CsvField(ToCode(p.proposed.kind)),
        CsvField(ToCode(p.status)), CsvField(p.proposed.program),
        CsvField(p.proposed.kind == LedgerKind::kVoid ? "" : Codes(p.proposed.lines_json)),
        p.proposed.kind == LedgerKind::kVoid ? "" : FormatCents(p.proposed.amount_cents),
        CsvField(p.created_at), CsvField(p.reason));
  }
  return out;
}

std::string AuditTable(const std::vector<AuditRow>& audit) {
  std::string out = fmt::format("{:>5}  {:<27} {:>4}  {:<14} {:<40} {}\n", "id", "at", "run",
                                "action", "target", "detail");
  for (const auto& a : audit) {
    out += fmt::format("{:>5}  {:<27} {:>4}  {:<14} {:<40} {}\n", a.id, a.at, a.run, a.action,
                       a.target, a.detail);
  }
  return out;
}

std::string AuditCsv(const std::vector<AuditRow>& audit) {
  std::string out = "id,at,run,action,target,version,detail,provenance\n";
  for (const auto& a : audit) {
    out += fmt::format("{},{},{},{},{},{},{},{}\n", a.id, CsvField(a.at), a.run, CsvField(a.action),
                       CsvField(a.target), CsvField(a.version), CsvField(a.detail),
                       CsvField(a.provenance));
  }
  return out;
}

class LedgerCommand : public Command {
 public:
  LedgerCommand()
      : Command(
            "ledger",
            "--config FILE [--month YYYY-MM] [--all] [--acknowledge ID...] [--approve ID...] "
            "[--audit] [--format ndjson|csv|table] [--out FILE]",
            "List the billing ledger (active entries; --all includes superseded ones) with their "
            "deliveries, then the proposals (open ones; --all: every one); --acknowledge marks "
            "submitted entries as acknowledged by the payer; --approve approves proposals so that "
            "the next bill carries them out; --audit lists the audit log of writes to other "
            "systems instead.\nReads only the state store: the EHR's credentials are not needed. "
            "Default format: a table on a terminal, CSV for an --out file ending in .csv, else "
            "NDJSON.",
            "ccm-gateway ledger --config site.json --month 2026-10\n"
            "ccm-gateway ledger --config site.json --approve 3\n"
            "ccm-gateway ledger --config site.json --all --out ledger.csv") {
    AddRequired("--config", config_, "The gateway's config (only state.path is used)")
        ->type_name("FILE");
    app().add_option("--month", month_, "Only this month")->type_name("YYYY-MM");
    AddSwitch("--all", all_, "Superseded entries and closed proposals too");
    app()
        .add_option("--acknowledge", acknowledge_, "Mark submitted entries as acknowledged")
        ->type_name("ID");
    app().add_option("--approve", approve_, "Approve proposals for the next bill")->type_name("ID");
    AddSwitch("--audit", audit_, "The audit log of writes instead");
    app().add_option("--format", format_, "ndjson, csv or table")->type_name("FORMAT");
    app()
        .add_option("--out", out_, "Write the listing here (atomically), not to stdout")
        ->type_name("FILE");
  }

  int Run(Console& console) override {
    app::LedgerRequest request;
    if (!month_.empty()) request.month = ParseMonth(month_);
    request.all = all_;
    request.audit = audit_;
    request.acknowledge = ParseIds(acknowledge_, "--acknowledge", "ledger entry");
    request.approve = ParseIds(approve_, "--approve", "ledger proposal");
    app::ReportFormat format = ChooseFormat(format_, out_, console.stdout_is_terminal());
    // Only the state store is used: the credentials the config names are not read, so the ledger
    // can be looked at where the EHR's secrets are not.
    auto config = LoadGatewayConfig(config_, {.env = {}, .credentials = Credentials::kSkip});
    if (!config) {
      console.Error(config.error().message);
      return config.error().is(Errc::kInternal) ? kExitFatal : kExitUsage;
    }
    auto store = app::OpenStateStore(*config);
    if (!store) return ReportError(console, store.error());
    if (!request.approve.empty()) request.approved_by = fmt::format("operator {}", OperatorName());
    app::LedgerObserver observer;
    observer.on_approved = [&console](std::int64_t id) {
      console.Info(fmt::format(
          "approved ledger proposal {}; the next `ccm-gateway bill` carries it out", id));
    };
    auto answer = app::QueryLedger(**store, request, observer);
    if (!answer) return ReportError(console, answer.error());
    std::string text;
    if (request.audit) {
      if (format == app::ReportFormat::kTable) {
        text = AuditTable(answer->audit);
      } else if (format == app::ReportFormat::kCsv) {
        text = AuditCsv(answer->audit);
      } else {
        for (const auto& a : answer->audit) text += fhir::json::Serialize(app::ToJson(a)) + "\n";
      }
    } else if (format == app::ReportFormat::kTable) {
      text = LedgerTable(*answer);
    } else if (format == app::ReportFormat::kCsv) {
      text = LedgerCsv(*answer);
    } else {
      for (const auto& e : answer->entries) text += fhir::json::Serialize(app::ToJson(e)) + "\n";
      for (const auto& p : answer->proposals) {
        text += fhir::json::Serialize(app::ToJson(p)) + "\n";
      }
    }
    return EmitListing(console, out_, text);
  }

 private:
  std::string config_, month_, format_, out_;
  std::vector<std::string> acknowledge_, approve_;
  bool all_ = false, audit_ = false;
};

std::string AccessTable(const std::vector<AccessRow>& rows) {
  std::string out = fmt::format("{:>6}  {:<24} {:<20} {:<26} {:<24} {:<9} {}\n", "id", "at",
                                "principal", "route", "patient", "month", "status");
  for (const auto& a : rows) {
    out += fmt::format("{:>6}  {:<24} {:<20} {:<26} {:<24} {:<9} {}\n", a.id, a.at,
                       a.principal.empty() ? "(none)" : a.principal, a.route, a.patient, a.month,
                       a.status);
  }
  return out;
}

std::string AccessCsv(const std::vector<AccessRow>& rows) {
  std::string out = "id,at,principal,method,route,patient,month,status\n";
  for (const auto& a : rows) {
    out += fmt::format("{},{},{},{},{},{},{},{}\n", a.id, CsvField(a.at), CsvField(a.principal),
                       CsvField(a.method), CsvField(a.route), CsvField(a.patient),
                       CsvField(a.month), a.status);
  }
  return out;
}

// `audit`: the trail of reads of patient data through `serve` (the writes to other systems are
// `ledger --audit`). A command of its own: its filters are not the ledger's.
class AuditCommand : public Command {
 public:
  AuditCommand()
      : Command("audit",
                "--config FILE [--patient REF] [--principal NAME] [--since INSTANT] "
                "[--format ndjson|csv|table] [--out FILE]",
                "List the access audit of `ccm-gateway serve`: every request for patient data "
                "($ccm-status, $ccm-billing-summary), with who asked (the token's name, the "
                "client certificate, or none when refused), the route, the patient or month "
                "asked for, when, and the status answered. Oldest first. The writes the gateway "
                "made to other systems are `ledger --audit`.\nReads only the state store. The "
                "listing holds patient references: treat it as the protected record it is. "
                "Default format: a table on a terminal, CSV for an --out file ending in .csv, "
                "else NDJSON.",
                "ccm-gateway audit --config site.json --patient Patient/123\n"
                "ccm-gateway audit --config site.json --since 2026-11-01T00:00:00Z --out "
                "access.csv") {
    AddRequired("--config", config_, "The gateway's config (only state.path is used)")
        ->type_name("FILE");
    app().add_option("--patient", patient_, "Only requests for this patient")->type_name("REF");
    app()
        .add_option("--principal", principal_, "Only requests by this token or certificate")
        ->type_name("NAME");
    app()
        .add_option("--since", since_, "Only requests at or after this instant")
        ->type_name("INSTANT");
    app().add_option("--format", format_, "ndjson, csv or table")->type_name("FORMAT");
    app()
        .add_option("--out", out_, "Write the listing here (atomically), not to stdout")
        ->type_name("FILE");
  }

  int Run(Console& console) override {
    AccessQuery query;
    query.patient = patient_;
    if (!query.patient.empty() && !query.patient.starts_with("Patient/")) {
      query.patient = "Patient/" + query.patient;  // an id alone names the patient too
    }
    query.principal = principal_;
    if (!since_.empty()) {
      auto since = fhir::FhirDateTime::ParseInstant(since_);
      if (!since) throw UsageError(fmt::format("--since: {}", since.error().message));
      query.since = AccessInstant(since->Earliest());
    }
    app::ReportFormat format = ChooseFormat(format_, out_, console.stdout_is_terminal());
    auto config = LoadGatewayConfig(config_, {.env = {}, .credentials = Credentials::kSkip});
    if (!config) {
      console.Error(config.error().message);
      return config.error().is(Errc::kInternal) ? kExitFatal : kExitUsage;
    }
    auto store = app::OpenStateStore(*config);
    if (!store) return ReportError(console, store.error());
    auto rows = app::QueryAccessAudit(**store, query);
    if (!rows) return ReportError(console, rows.error());
    std::string text;
    if (format == app::ReportFormat::kTable) {
      text = AccessTable(*rows);
    } else if (format == app::ReportFormat::kCsv) {
      text = AccessCsv(*rows);
    } else {
      for (const auto& a : *rows) text += fhir::json::Serialize(app::ToJson(a)) + "\n";
    }
    return EmitListing(console, out_, text);
  }

 private:
  std::string config_, patient_, principal_, since_, format_, out_;
};

}  // namespace

std::unique_ptr<Command> MakeBillCommand() { return std::make_unique<BillCommand>(); }
std::unique_ptr<Command> MakeLedgerCommand() { return std::make_unique<LedgerCommand>(); }
std::unique_ptr<Command> MakeAuditCommand() { return std::make_unique<AuditCommand>(); }

}  // namespace ccm::gateway::cli
