// Writing the CCM care plan back to the EHR (writeBack.carePlans; docs/architecture.md
// "Write-back").
//
// Contract
// - Only patients with program CCM or PCM, active consent, not deceased and not a merged or
//   inactive record are considered; a patient whose id is not a FHIR id fails (it would go into
//   an identifier search).
// - The gateway-managed plan is found by identifier (writeBack.carePlanIdentifierSystem + the
//   patient id). None, and no other active CarePlan for the patient: a draft is created (a
//   clinician activates it) with a conditional create, so a retried request never makes two.
//   Another active plan (the clinicians' own): nothing is written; it is reported.
// - An existing managed plan is updated only in what the gateway owns: `addresses` gains newly
//   counted chronic Conditions (none is ever removed), one monthly-status extension per month
//   (replaced in place), and the gateway's meta.tag. Every other element stays exactly as read.
//   Nothing changed, nothing written (no version churn). The update carries If-Match with the
//   version read; on 412 the plan is read again and the change re-applied (a clinician's edit in
//   between survives), up to writeBack.maxConflictRetries times.
// - Every write goes into the audit log, and with writeBack.provenance a Provenance (agent: the
//   gateway; target: the version written) is created on the server.
// - A create is put on record ("create-sent") before it is sent. When its answer is lost (the
//   server applied it; the connection dropped), the run that next finds the plan records the
//   create then: audit record "create" saying it was recorded late, and a Provenance targeting
//   the plan's first version with occurredDateTime = when it was sent and the extension
//   kRecordedLateExtension.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fhir/client/fhir_client.h"
#include "fhir/json.h"
#include "gateway/ccm/engine.h"
#include "gateway/config/writeback_config.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

inline constexpr std::string_view kMonthlyStatusExtension =
    "urn:ccm-gateway:extension:ccm-monthly-status";
inline constexpr std::string_view kGatewayTagSystem = "urn:ccm-gateway:tag";
inline constexpr std::string_view kChronicCareModelSystem = "urn:ccm-gateway:chronic-care-model";
inline constexpr std::string_view kCcmPlanCategorySystem = "urn:ccm-gateway:care-plan-category";
// On a Provenance (valueBoolean true) written after the fact for a create whose answer was lost.
inline constexpr std::string_view kRecordedLateExtension =
    "urn:ccm-gateway:extension:recorded-late";

// Whether the patient-month gets a managed care plan at all.
bool WantsCarePlan(const PatientMonth& r);

// The draft plan created for a patient (US Core CarePlan: narrative, status, intent, category
// assess-plan, subject). `now` is an instant ("2026-11-23T12:00:00Z") for `created`.
fhir::json::Value NewCarePlan(const PatientMonth& r, const WriteBackConfig& config,
                              std::string_view now);

// Applies the gateway-owned changes to `plan`; returns whether anything changed.
bool ApplyOwned(fhir::json::Value& plan, const PatientMonth& r);

enum class CarePlanAction {
  kCreated,
  kUpdated,
  kUnchanged,
  kOtherPlan,  // the patient has another active CarePlan: nothing written
  kFailed,
  kWouldCreate,  // --dry-run
  kWouldUpdate,
};
std::string_view ToCode(CarePlanAction a) noexcept;

struct CarePlanWrite {
  std::string patient;
  CarePlanAction action = CarePlanAction::kFailed;
  std::string reference;       // "CarePlan/<id>" when known
  std::string version;         // the version written
  int conflicts = 0;           // 412s met and resolved
  std::string message;         // why it failed, or what the other plan is (no patient data)
  std::int64_t audit = 0;      // the audit record of a failure (it names the patient)
  bool recorded_late = false;  // a create whose answer was lost got its records in this run
  // The write went, but its Provenance (writeBack.provenance) could not be created: why (no
  // patient data). The audit log has a "provenance-failed" record of it.
  std::string provenance_error;
};

// What the EHR holds for the patients of a run, read in a few searches instead of two per patient:
// every plan carrying the gateway's identifier system (one paged search), and the active plans of
// the patients who have none of those (subject searches in chunks of 40 patients).
struct CarePlanSnapshot {
  std::map<std::string, std::vector<fhir::json::Value>, std::less<>> managed;  // by patient id
  std::map<std::string, std::string, std::less<>> other_active;  // "Patient/x" -> "CarePlan/y"
};
Result<CarePlanSnapshot> ReadCarePlans(fhir::FhirClient& client,
                                       const std::vector<const PatientMonth*>& patients,
                                       const WriteBackConfig& config);

// `snapshot` (optional, ReadCarePlans' result) answers the first look-up; a retry after a
// conflict reads again. When reading it failed for want of the server (connection, timeout, 5xx
// after retries), the patient fails at once with that error instead of trying again alone; other
// failures (a server refusing the search) fall back to per-patient searches.
CarePlanWrite WriteCarePlan(fhir::FhirClient& client, AuditTrail& store, const PatientMonth& r,
                            const WriteBackConfig& config, std::int64_t run, bool dry_run,
                            const Result<CarePlanSnapshot>* snapshot = nullptr);

}  // namespace ccm::gateway
