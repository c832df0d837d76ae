// What the billing ledger sends out: FHIR ChargeItems to the EHR (or a billing FHIR endpoint),
// and per payer a FHIR Bundle of professional Claims plus a CSV summary, written to a directory
// and/or POSTed to the payer's endpoint.
//
// Contract
// - Builders are pure: the same ledger rows give byte-identical resources and files, so a batch
//   re-sent after a crash is the same batch (same file name, same identifiers).
// - Every output is idempotent on its identifier: ChargeItems are conditional creates
//   (If-None-Exist on identifier), claim Bundles are conditional creates on Bundle.identifier,
//   files are written through a temporary file renamed into place under a name fixed by the
//   batch. Re-running a delivery that may or may not have happened is therefore always safe.
// - DeliverOpen works per entry and channel: one patient's failure (a 400, a timeout) is recorded
//   on that delivery and never stops the others; failed deliveries are retried by the next run.
// - A claim is held (its delivery "failed" with a reason starting "held:") when a payer would
//   reject it or it cannot be identified safely: no ICD-10-CM diagnosis, no patient identity (no
//   stored Patient, or neither an MBI nor the payer's member id), or a patient id that is not a
//   FHIR id. A held claim leaves its batch (which goes without it); once released it goes out in
//   a batch of its own (BatchName of the released claims, stored before anything is written).
//   Cancellations (voids) are never held for identity: they name the claim the payer received.
//   ChargeItems are held only for a patient id that is not a FHIR id.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fhir/client/fhir_client.h"
#include "fhir/json.h"
#include "gateway/billing/ledger.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/config/writeback_config.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

inline constexpr std::string_view kCptSystem = "http://www.ama-assn.org/go/cpt";
inline constexpr std::string_view kChargeItemChannel = "charge-items";
std::string PayerChannel(const PayerConfig& payer);  // "payer:<name>"

// The patient's id for `payer` on its claims: the identifier of the payer's memberIdSystem when
// configured and present, else the Medicare Beneficiary Identifier; "" when the Patient (JSON as
// stored, "" when not synced) has neither. (The MBI system is fhir::kMbiSystem.)
std::string MemberId(std::string_view patient_json, const PayerConfig& payer);

// One ChargeItem for `line` of `entry` (status "billable", or "entered-in-error" to withdraw it).
fhir::json::Value MakeChargeItem(const LedgerRow& entry, const BillingLine& line,
                                 std::string_view status, const WriteBackConfig& config,
                                 const std::string& currency);

// The entries of one batch for one payer, with what each needs from the ledger and the store.
struct ClaimInput {
  LedgerRow entry;
  std::optional<LedgerRow> cancels;   // a void: the revision it cancels
  std::optional<LedgerRow> replaces;  // an adjustment: the last revision the payer received
  std::string patient_json;           // the Patient as stored ("" when not synced)
};
// A Bundle (type collection) of Claims with the Patients, Coverages and Organizations they
// reference, every reference resolving inside the Bundle (urn:uuid fullUrls).
fhir::json::Value MakeClaimBundle(const std::vector<ClaimInput>& claims, const PayerConfig& payer,
                                  const WriteBackConfig& config, const std::string& batch,
                                  const std::string& currency);
// One row per patient-month-code, then a totals row (RFC 4180).
std::string MakeClaimCsv(const std::vector<ClaimInput>& claims, const PayerConfig& payer,
                         const std::string& batch);

// --- Deciding (pure): what to do with each queued claim, before anything is written.

// The earlier revision of `in.entry` that it corrects at one payer, from `chain` (its previous
// revisions, newest first) and `received` (whether that payer took a revision, by ledger id): a
// void cancels the last revision the payer received, an adjustment or charge replaces it. A
// cancellation ends the chain: a charge after it is a new claim that replaces nothing.
void ResolvePriorClaim(ClaimInput& in, const std::vector<LedgerRow>& chain,
                       const std::function<bool(std::int64_t entry)>& received);

// Why the claim `in` must not go to `payer` yet ("" when it may), starting "held:": an invalid
// patient id, no ICD-10-CM diagnosis, no stored Patient or no member id (MBI) on it.
std::string HoldReason(const ClaimInput& in, const PayerConfig& payer);

// The decisions for one payer batch: every claim lands in exactly one list, in input order.
struct PayerBatchPlan {
  std::vector<ClaimInput> send;              // they go out (a Bundle, a file, an endpoint)
  std::vector<LedgerRow> nothing_to_cancel;  // voids of revisions this payer never received
  std::vector<std::pair<LedgerRow, std::string>> held;  // held back for now, and why
};
PayerBatchPlan PlanPayerBatch(std::vector<ClaimInput> claims, const PayerConfig& payer);

// --- Acting: the deliveries carried out and recorded in the state store.

struct DeliveryReport {
  std::size_t done = 0, failed = 0;
  std::size_t charge_items_written = 0;
  std::vector<std::string> files;     // written or rewritten
  std::vector<std::string> problems;  // "<channel> <patient> <month>: what went wrong"
  std::vector<std::int64_t> entries;  // entries touched (for MarkDelivered)
};

struct DeliveryContext {
  StateStore& store;
  const WriteBackConfig& config;
  std::string currency;
  std::int64_t run = 0;
  fhir::FhirClient* ehr = nullptr;   // for ChargeItems (writeBack.chargeItems)
  std::vector<std::string> sources;  // where to look for stored Patients (claims carry them)
  // Test hook: called with a step name after each durable step ("charge-item", "claims-file",
  // "claims-endpoint"); the crash tests make it exit the process there.
  std::function<void(std::string_view step)> checkpoint;
};

// Carries out every delivery not yet done (any run's), channel by channel.
DeliveryReport DeliverOpen(DeliveryContext& ctx);

}  // namespace ccm::gateway
