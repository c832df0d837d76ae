#include "gateway/app/ledger_query.h"

#include <fmt/format.h>

#include "gateway/ccm/engine_config.h"

namespace ccm::gateway::app {

using fhir::json::Value;

WorkflowResult<LedgerAnswer> QueryLedger(StateStore& store, const LedgerRequest& request,
                                         const LedgerObserver& observer) {
  for (std::int64_t id : request.acknowledge) {
    if (Status s = store.MarkAcknowledged(id); !s) {
      return Fail(ErrorKind::kRefused, "ledger-update", s.error().message);
    }
  }
  for (std::int64_t id : request.approve) {
    // An operator's decision: recorded on the proposal and in the audit log, with who and when.
    auto approve = [&]() -> Status {
      CCM_TRY(store.ApproveLedgerProposal(id, request.approved_by));
      CCM_TRY(store.AddAudit(AuditRow{0, "", 0, "approve", fmt::format("ledger proposal {}", id),
                                      "", fmt::format("approved by {}", request.approved_by), ""}));
      return {};
    };
    if (Status s = store.InTransaction(approve); !s) {
      return Fail(ErrorKind::kRefused, "ledger-update", s.error().message);
    }
    if (observer.on_approved) observer.on_approved(id);
  }
  LedgerAnswer answer;
  if (request.audit) {
    auto audit = store.AuditLog(0);
    if (!audit) return Fail(ErrorKind::kFailed, "state-failed", audit.error().message);
    answer.audit = std::move(*audit);
    return answer;
  }
  std::optional<std::string> month;
  if (request.month) month = request.month->ToString();
  auto rows = store.LedgerEntries(
      {.month = month,
       .revisions = request.all ? LedgerQuery::Revisions::kAll : LedgerQuery::Revisions::kActive});
  if (!rows) return Fail(ErrorKind::kFailed, "state-failed", rows.error().message);
  for (auto& r : *rows) {
    LedgerEntryView view{std::move(r), {}};
    if (auto ds = store.Deliveries(view.entry.id)) view.deliveries = std::move(*ds);
    answer.entries.push_back(std::move(view));
  }
  auto proposals = store.LedgerProposals(
      {.month = month,
       .which = request.all ? ProposalQuery::Which::kAll : ProposalQuery::Which::kOpen});
  if (!proposals) return Fail(ErrorKind::kFailed, "state-failed", proposals.error().message);
  answer.proposals = std::move(*proposals);
  return answer;
}

WorkflowResult<std::vector<AccessRow>> QueryAccessAudit(AuditTrail& store,
                                                        const AccessQuery& query) {
  auto rows = store.AccessRecords(query);
  if (!rows) return Fail(ErrorKind::kFailed, "state-failed", rows.error().message);
  return std::move(*rows);
}

Value ToJson(const LedgerEntryView& view) {
  const LedgerRow& r = view.entry;
  Value o = Value::MakeObject();
  o.set("id", Value::Number(r.id));
  o.set("patient", Value::String(r.patient));
  o.set("month", Value::String(r.month));
  o.set("family", Value::String(r.family));
  o.set("revision", Value::Number(std::int64_t{r.revision}));
  o.set("kind", Value::String(std::string(ToCode(r.kind))));
  o.set("status", Value::String(std::string(ToCode(r.status))));
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
  if (!r.allow_incomplete.empty()) o.set("allowIncomplete", Value::String(r.allow_incomplete));
  Value deliveries = Value::MakeArray();
  for (const auto& d : view.deliveries) {
    Value dv = Value::MakeObject();
    dv.set("channel", Value::String(d.channel));
    dv.set("batch", Value::String(d.batch));
    dv.set("status", Value::String(std::string(ToCode(d.status))));
    if (!d.detail.empty()) dv.set("detail", Value::String(d.detail));
    deliveries.push_back(std::move(dv));
  }
  o.set("deliveries", std::move(deliveries));
  return o;
}

Value ToJson(const LedgerProposal& p) {
  Value o = Value::MakeObject();
  o.set("proposal", Value::Number(p.id));
  o.set("entry", Value::Number(p.entry));
  o.set("patient", Value::String(p.proposed.patient));
  o.set("month", Value::String(p.proposed.month));
  o.set("family", Value::String(p.proposed.family));
  o.set("kind", Value::String(std::string(ToCode(p.proposed.kind))));
  o.set("status", Value::String(std::string(ToCode(p.status))));
  o.set("reason", Value::String(p.reason));
  if (p.proposed.kind != LedgerKind::kVoid) {
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

Value ToJson(const AuditRow& a) {
  Value o = Value::MakeObject();
  o.set("id", Value::Number(a.id));
  o.set("at", Value::String(a.at));
  o.set("run", Value::Number(a.run));
  o.set("action", Value::String(a.action));
  o.set("target", Value::String(a.target));
  if (!a.version.empty()) o.set("version", Value::String(a.version));
  if (!a.detail.empty()) o.set("detail", Value::String(a.detail));
  if (!a.provenance.empty()) o.set("provenance", Value::String(a.provenance));
  return o;
}

}  // namespace ccm::gateway::app

namespace ccm::gateway::app {

Value ToJson(const AccessRow& a) {
  Value o = Value::MakeObject();
  o.set("id", Value::Number(a.id));
  o.set("at", Value::String(a.at));
  o.set("principal", Value::String(a.principal));
  o.set("method", Value::String(a.method));
  o.set("route", Value::String(a.route));
  if (!a.patient.empty()) o.set("patient", Value::String(a.patient));
  if (!a.month.empty()) o.set("month", Value::String(a.month));
  o.set("status", Value::Number(std::int64_t{a.status}));
  return o;
}

}  // namespace ccm::gateway::app
