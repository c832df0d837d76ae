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
// - Every new entry gets a delivery per output channel ("charge-items", "payer:<name>"), in the
//   batch named for the run; gateway/billing_outputs.h carries them out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fhir/json.h"
#include "fhir/result.h"
#include "gateway/ccm_engine.h"
#include "gateway/ccm_facts.h"
#include "gateway/state_store.h"

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

enum class LedgerAction { kNew, kAdjusted, kVoided, kWithdrawn };
std::string_view ToCode(LedgerAction a) noexcept;

struct LedgerChange {
  LedgerAction action;
  std::optional<LedgerRow> previous;  // the entry superseded or withdrawn
  std::optional<LedgerRow> entry;     // the new entry (with its id once stored)
};

struct LedgerOutcome {
  std::vector<LedgerChange> changes;
  std::size_t unchanged = 0;  // active entries that already say what the engine says
};

// See the contract above. `channels` are the output channels every new entry is queued for, in
// batch `batch`. With `dry_run` the same plan is computed and nothing is stored.
Result<LedgerOutcome> ReconcileLedger(StateStore& store, const std::string& month,
                                      const std::vector<Charge>& charges, std::int64_t run,
                                      const std::vector<std::string>& channels,
                                      const std::string& batch, bool dry_run);

// Marks entries whose deliveries are all done as submitted. Returns how many changed.
Result<std::size_t> MarkDelivered(StateStore& store, const std::vector<std::int64_t>& entries);

}  // namespace ccm::gateway
