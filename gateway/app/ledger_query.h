// QueryLedger: what `ccm-gateway ledger` does -- the billing ledger's entries with their
// deliveries, the proposals, or the audit log; and the operator's acknowledgements and approvals.
// QueryAccessAudit: what `ccm-gateway audit` does -- the trail of reads of patient data.
// Reads and writes only the state store: no FHIR server, no credentials.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fhir/json.h"
#include "gateway/app/workflow.h"
#include "gateway/ccm/engine.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway::app {

struct LedgerRequest {
  std::optional<YearMonth> month;  // every month when absent
  bool all = false;                // superseded entries and closed proposals too
  bool audit = false;              // the audit log of writes instead of entries and proposals
  std::vector<std::int64_t> acknowledge;  // submitted entries the payer acknowledged
  std::vector<std::int64_t> approve;      // proposals to carry out at the next bill
  std::string approved_by;  // who approves, recorded with each approval ("operator alice")
};

struct LedgerObserver {
  // After each approval is recorded (before the next one is tried).
  std::function<void(std::int64_t proposal)> on_approved;
};

struct LedgerEntryView {
  LedgerRow entry;
  std::vector<DeliveryRow> deliveries;  // empty when they could not be read
};

struct LedgerAnswer {
  std::vector<LedgerEntryView> entries;   // active ones (all: every revision), by id
  std::vector<LedgerProposal> proposals;  // open and approved ones (all: every one)
  std::vector<AuditRow> audit;            // with request.audit only
};

// Records the acknowledgements, then the approvals (each approval and its audit record in one
// transaction), in the order given; the first that fails stops the query (kRefused
// "ledger-update": no such entry or proposal, or not in a state that allows it). Then reads the
// audit log, or the entries and the proposals. kFailed when the store cannot be read.
WorkflowResult<LedgerAnswer> QueryLedger(StateStore& store, const LedgerRequest& request,
                                         const LedgerObserver& observer = {});

// What `ccm-gateway audit` does: the access trail of `serve` (reads of patient data), oldest
// first, filtered by `query` (AccessQuery: patient, principal, since). kFailed when the store
// cannot be read.
WorkflowResult<std::vector<AccessRow>> QueryAccessAudit(AuditTrail& store,
                                                        const AccessQuery& query);

// The NDJSON records of `ccm-gateway ledger` (docs/ccm-rules.md "Billing ledger") and `audit`.
fhir::json::Value ToJson(const LedgerEntryView& entry);
fhir::json::Value ToJson(const LedgerProposal& proposal);
fhir::json::Value ToJson(const AuditRow& audit);
fhir::json::Value ToJson(const AccessRow& access);

}  // namespace ccm::gateway::app
