// The billing ledger: what the engine says is billable for each patient-month, recorded once, and
// corrected only by new revisions (docs/ccm-rules.md "Billing ledger").
//
// Contract
// - A Charge is the engine's billing decision for one patient-month (codes, units, amounts, the
//   encounters behind every line, the chronic conditions as diagnoses). Only a patient-month with
//   at least one billable line yields a Charge.
// - ReconcileLedger compares a month's charges with the ledger's active entries, in one
//   transaction:
//     no entry, a charge        -> a new entry, kind "charge", status "pending";
//     same fingerprint          -> nothing (re-running a month changes nothing);
//     a different charge        -> a new revision that supersedes the old one: kind "adjustment"
//                                  when the old one was delivered anywhere, else "charge";
//     no charge any more        -> a "void" revision when the old one was delivered, else the old
//                                  pending entry is withdrawn.
//   A submitted entry is never edited. The store allows one active entry per patient, month and
//   family, so concurrent runs cannot bill twice (one fails with Errc::kConflict and is re-run).
// - Proposals. A void, or an adjustment that bills less than the delivered entry it supersedes
//   (a lower amount, or a code or unit dropped), is never carried out in the run that first sees
//   it: data that disappeared may come back (a broken server answer, a half-finished sync). It is
//   recorded as a proposal and the active entry stays as it is. A later run carries out a
//   proposal that still stands (the engine proposes exactly the same revision) once it is
//   approved (`ccm-gateway ledger --approve`) or every needed source and type has a complete pull
//   that started after the proposal was made (ReconcileOptions::complete_since); a proposal that
//   no longer stands is dropped, with the reason. New charges and upward changes go out at once.
// - Merged records. A charge of a patient into whose record others were merged (Charge::
//   merged_from) is held while one of those records has an active entry for the month that is not
//   a void: the month was billed under the old record, whose void comes first.
// - Every new entry gets a delivery per output channel ("charge-items", "payer:<name>"), in one
//   batch per run named by its content (BatchName), so re-created state never names the same
//   claims differently; gateway/writeback/billing_outputs.h carries them out.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fhir/json.h"
#include "fhir/result.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/facts.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

// All ten care-management codes form one family: the engine bills at most one base code and its
// add-on per patient-month, and CPT/CMS exclude the families from each other in the same month
// (docs/ccm-rules.md rule 8), so a change from 99490 to 99487 is a correction, not a second bill.
inline constexpr std::string_view kCareManagementFamily = "care-management";

struct Diagnosis {
  std::string condition;     // "Condition/<id>"
  std::string category;      // chronic category
  std::string system, code;  // the Condition's coding that counted
  std::string icd10;         // ICD-10-CM: that coding when it is one, else its mapping; "" if none
};

struct Charge {
  std::string patient;  // "Patient/<id>"
  std::string month;    // "YYYY-MM"
  std::string program;  // "CCM" | "PCM"
  std::vector<BillingLine> lines;
  Minutes minutes;  // billable minutes
  Cents amount = 0;
  // One per counted category (the first Condition's coding), claims' ICD-10-CM from
  // EngineConfig::diagnosis_codes where the coding is not ICD-10-CM itself.
  std::vector<Diagnosis> diagnoses;
  fhir::json::Value evidence;  // the engine's record of the patient-month
  // Records merged into this patient's ("Patient/<id>", PatientMonth::merged_from).
  std::vector<std::string> merged_from;
};

// The patient-month's charge, or nullopt when nothing is billable.
std::optional<Charge> ChargeFor(const PatientMonth& result, const FactStore& facts,
                                const EngineConfig& config);

// The ledger row a charge becomes (lines, evidence, fingerprint); id/status/kind left to the
// caller.
LedgerRow ToLedgerRow(const Charge& charge, std::int64_t run);
// Lines of a stored entry.
std::vector<BillingLine> LedgerLines(const LedgerRow& row);
// Diagnoses of a stored entry.
std::vector<Diagnosis> LedgerDiagnoses(const LedgerRow& row);

// Identifier values: "<patient id>-<YYYY-MM>-r<revision>" for a claim, plus "-<code>" before the
// revision for a ChargeItem. Systems: `<billing.identifierSystem>:claim`, `...:charge-item`,
// `...:claim-batch`.
std::string ClaimIdentifierValue(const LedgerRow& entry);
std::string ChargeItemIdentifierValue(const LedgerRow& entry, std::string_view code);
// A batch's name from its content: "<YYYY-MM>-<16 hex digits>", a stable 64-bit hash (FNV-1a) of
// the sorted claim identifier values in it. The same patient-month revisions always make the same
// name, whichever run or state file queues them.
std::string BatchName(std::string_view month, std::vector<std::string> claim_identifier_values);

// Whether `proposed` bills less than `current`: a lower amount, or fewer units of some code
// (a code dropped). A void always does.
bool BillsLess(const LedgerRow& proposed, const LedgerRow& current);

enum class LedgerAction { kNew, kAdjusted, kVoided, kWithdrawn };
std::string_view ToCode(LedgerAction a) noexcept;

struct LedgerChange {
  LedgerAction action;
  std::optional<LedgerRow> previous;     // the entry superseded or withdrawn
  std::optional<LedgerRow> entry;        // the new entry (with its id once stored)
  std::optional<std::int64_t> proposal;  // the proposal this change carries out
};

enum class ProposalAction {
  kProposed,   // recorded in this run; nothing sent
  kHeld,       // proposed earlier, still standing, not yet confirmed
  kConfirmed,  // carried out in this run (its LedgerChange is in `changes`)
  kDropped,    // no longer stands; closed with the reason
};
std::string_view ToCode(ProposalAction a) noexcept;

struct ProposalChange {
  ProposalAction action;
  LedgerProposal proposal;  // with its id once stored
  std::string outcome;      // kConfirmed: how it was confirmed; kDropped: why
};

// A charge held because the month was billed under a record since merged into the patient's.
struct MergeHold {
  std::string patient;        // the surviving record
  std::string merged_record;  // the record merged into it, billed for the month
  std::int64_t entry = 0;     // that record's active entry
};

struct LedgerOutcome {
  std::vector<LedgerChange> changes;
  std::vector<ProposalChange> proposals;
  std::vector<MergeHold> merge_holds;
  std::size_t unchanged = 0;  // active entries that already say what the engine says
  std::string batch;          // the batch of this run's new entries ("" when there are none)
  std::size_t held() const;   // proposals open after the run (proposed or held)
};

struct ReconcileOptions {
  std::int64_t run = 0;
  // The output channels every new entry is queued for.
  std::vector<std::string> channels;
  // With dry_run the same plan is computed and nothing is stored.
  bool dry_run = false;
  // Why each patient without a charge is not billable (the engine's blockedBy codes, joined), for
  // the reason of a void proposal. A patient absent here has no clinical data in the store.
  std::map<std::string, std::string, std::less<>> not_billable;
  // The start of the oldest of the last complete *full* pulls of every source and type billing
  // needs (Completeness::full_complete_since); nullopt when some type has never been pulled
  // completely in full. A proposal made before it is confirmed by the data: a full pull re-reads
  // everything, so what a lost page or a wrong removal hid is back by then.
  std::optional<fhir::TimePoint> complete_since;
  // Why this run bills from data known to be incomplete (`bill --allow-incomplete`), recorded on
  // every entry it writes; "" when the data is complete.
  std::string allow_incomplete;
};

// See the contract above.
Result<LedgerOutcome> ReconcileLedger(StateStore& store, const std::string& month,
                                      const std::vector<Charge>& charges,
                                      const ReconcileOptions& options);

// Marks entries whose deliveries are all done as submitted. Returns how many changed.
Result<std::size_t> MarkDelivered(StateStore& store, const std::vector<std::int64_t>& entries);

}  // namespace ccm::gateway
