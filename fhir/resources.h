// Typed read-only views over FHIR R4 resources held as json::Value.
//
// Contract
// - Each `XxxView::Read(resource, issues)` parses the elements this layer models once, into plain
//   members, and keeps a pointer to the resource (`json()`). The JSON is never copied, modified or
//   trimmed: anything not modelled here (extensions, `_element` primitive extensions, contained
//   resources, narrative, unknown properties) stays in the json::Value, which remains the source of
//   truth for write-back. The json::Value MUST outlive the view (Bundle entries' `resource`
//   pointers point into it as well).
// - Data problems are appended to `issues` with FHIRPath-style paths rooted at the resource type
//   ("Encounter.participant[0].period.start"); nothing throws on bad data. Problems reported:
//   wrong JSON kinds, invalid dates/decimals/references, codes outside the R4 *required* value sets
//   (the enum member is then std::nullopt while the raw code stays available), a missing 1..1
//   status (or other 1..1 element where noted), a resourceType that does not match, more than one
//   choice of a [x] element. This is not a full validator (no terminology, no profiles).
// - Status enums mirror the R4 required value sets; `Parse*` returns std::nullopt for an unknown
//   code (no issue; the Read functions add one), `ToCode` returns the FHIR code.
// - Views are regular copyable values; const use from several threads is safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fhir/datatypes.h"
#include "fhir/datetime.h"
#include "fhir/issues.h"
#include "fhir/json.h"

namespace ccm::fhir {

// `resourceType` of a resource, or "" when absent / not a string.
std::string_view ResourceType(const json::Value& resource) noexcept;
// "Type/id", or "" when the resource lacks a type or id.
std::string ResourceKey(const json::Value& resource);

// ---- Required value sets -------------------------------------------------------------------

// http://hl7.org/fhir/encounter-status
enum class EncounterStatus {
  kPlanned,
  kArrived,
  kTriaged,
  kInProgress,
  kOnLeave,
  kFinished,
  kCancelled,
  kEnteredInError,
  kUnknown
};
std::optional<EncounterStatus> ParseEncounterStatus(std::string_view code) noexcept;
std::string_view ToCode(EncounterStatus v) noexcept;

// http://hl7.org/fhir/request-status (CarePlan.status)
enum class RequestStatus {
  kDraft,
  kActive,
  kOnHold,
  kRevoked,
  kCompleted,
  kEnteredInError,
  kUnknown
};
std::optional<RequestStatus> ParseRequestStatus(std::string_view code) noexcept;
std::string_view ToCode(RequestStatus v) noexcept;
using CarePlanStatus = RequestStatus;

// http://hl7.org/fhir/request-intent restricted to CarePlan's value set (care-plan-intent)
enum class CarePlanIntent { kProposal, kPlan, kOrder, kOption };
std::optional<CarePlanIntent> ParseCarePlanIntent(std::string_view code) noexcept;
std::string_view ToCode(CarePlanIntent v) noexcept;

// http://hl7.org/fhir/care-plan-activity-status
enum class CarePlanActivityStatus {
  kNotStarted,
  kScheduled,
  kInProgress,
  kOnHold,
  kCompleted,
  kCancelled,
  kStopped,
  kUnknown,
  kEnteredInError
};
std::optional<CarePlanActivityStatus> ParseCarePlanActivityStatus(std::string_view code) noexcept;
std::string_view ToCode(CarePlanActivityStatus v) noexcept;

// http://hl7.org/fhir/care-plan-activity-kind (CarePlan.activity.detail.kind)
// Kept as text in CarePlanView (the value set is long and only informative for us).

// http://hl7.org/fhir/consent-state-codes
enum class ConsentStatus { kDraft, kProposed, kActive, kRejected, kInactive, kEnteredInError };
std::optional<ConsentStatus> ParseConsentStatus(std::string_view code) noexcept;
std::string_view ToCode(ConsentStatus v) noexcept;

// http://hl7.org/fhir/consent-provision-type
enum class ConsentProvisionType { kDeny, kPermit };
std::optional<ConsentProvisionType> ParseConsentProvisionType(std::string_view code) noexcept;
std::string_view ToCode(ConsentProvisionType v) noexcept;

// http://terminology.hl7.org/CodeSystem/condition-clinical
enum class ConditionClinicalStatus {
  kActive,
  kRecurrence,
  kRelapse,
  kInactive,
  kRemission,
  kResolved
};
std::optional<ConditionClinicalStatus> ParseConditionClinicalStatus(std::string_view code) noexcept;
std::string_view ToCode(ConditionClinicalStatus v) noexcept;
inline constexpr std::string_view kConditionClinicalSystem =
    "http://terminology.hl7.org/CodeSystem/condition-clinical";

// http://terminology.hl7.org/CodeSystem/condition-ver-status
enum class ConditionVerificationStatus {
  kUnconfirmed,
  kProvisional,
  kDifferential,
  kConfirmed,
  kRefuted,
  kEnteredInError
};
std::optional<ConditionVerificationStatus> ParseConditionVerificationStatus(
    std::string_view code) noexcept;
std::string_view ToCode(ConditionVerificationStatus v) noexcept;
inline constexpr std::string_view kConditionVerificationSystem =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";

// http://hl7.org/fhir/bundle-type
enum class BundleType {
  kDocument,
  kMessage,
  kTransaction,
  kTransactionResponse,
  kBatch,
  kBatchResponse,
  kHistory,
  kSearchset,
  kCollection
};
std::optional<BundleType> ParseBundleType(std::string_view code) noexcept;
std::string_view ToCode(BundleType v) noexcept;

// http://hl7.org/fhir/http-verb
enum class HttpVerb { kGet, kHead, kPost, kPut, kDelete, kPatch };
std::optional<HttpVerb> ParseHttpVerb(std::string_view code) noexcept;
std::string_view ToCode(HttpVerb v) noexcept;

// http://hl7.org/fhir/chargeitem-status
enum class ChargeItemStatus {
  kPlanned,
  kBillable,
  kNotBillable,
  kAborted,
  kBilled,
  kEnteredInError,
  kUnknown
};
std::optional<ChargeItemStatus> ParseChargeItemStatus(std::string_view code) noexcept;
std::string_view ToCode(ChargeItemStatus v) noexcept;

// http://hl7.org/fhir/fm-status (Claim.status)
enum class FinancialResourceStatus { kActive, kCancelled, kDraft, kEnteredInError };
std::optional<FinancialResourceStatus> ParseFinancialResourceStatus(std::string_view code) noexcept;
std::string_view ToCode(FinancialResourceStatus v) noexcept;

// http://hl7.org/fhir/claim-use
enum class ClaimUse { kClaim, kPreauthorization, kPredetermination };
std::optional<ClaimUse> ParseClaimUse(std::string_view code) noexcept;
std::string_view ToCode(ClaimUse v) noexcept;

// http://hl7.org/fhir/narrative-status
enum class NarrativeStatus { kGenerated, kExtensions, kAdditional, kEmpty };
std::optional<NarrativeStatus> ParseNarrativeStatus(std::string_view code) noexcept;
std::string_view ToCode(NarrativeStatus v) noexcept;

// http://hl7.org/fhir/issue-severity (maps onto issues.h Severity)
std::optional<Severity> ParseIssueSeverity(std::string_view code) noexcept;
// http://hl7.org/fhir/issue-type: true when `code` is one of its codes (issues.h's IssueCode models
// only the subset the gateway emits, so OperationOutcome views keep the code as text).
bool IsIssueTypeCode(std::string_view code) noexcept;

// ---- Views ---------------------------------------------------------------------------------

// Members common to every resource (Resource, DomainResource).
struct ResourceView {
  const json::Value* resource = nullptr;  // the viewed resource; not owned
  std::string id;
  Meta meta;
  std::optional<NarrativeStatus> text_status;  // DomainResource.text.status

  // The viewed resource. Only valid on views returned by Read() (resource != nullptr).
  const json::Value& json() const noexcept { return *resource; }
};

// [x] choices used by several resources. monostate = absent.
using DateTimeOrPeriod = std::variant<std::monostate, FhirDateTime, Period>;
// Condition.onset[x] / abatement[x]: dateTime | Age | Period | Range | string.
using ConditionTiming =
    std::variant<std::monostate, FhirDateTime, Quantity, Period, QuantityRange, std::string>;
// The UTC interval a DateTimeOrPeriod denotes (unbounded when absent).
InstantRange RangeOf(const DateTimeOrPeriod& v, const date::time_zone* tz = nullptr);

struct PatientView : ResourceView {
  std::vector<Identifier> identifier;
  std::optional<bool> active;
  std::string gender;
  std::optional<FhirDateTime> birth_date;  // a FHIR date
  std::optional<bool> deceased_boolean;
  std::optional<FhirDateTime> deceased_date_time;
  std::vector<Reference> general_practitioner;
  Reference managing_organization;

  // deceasedBoolean true, or any deceasedDateTime.
  bool deceased() const noexcept {
    return deceased_date_time.has_value() || deceased_boolean.value_or(false);
  }
  std::string_view mbi() const noexcept { return FindIdentifier(identifier, kMbiSystem); }
  std::string_view npi() const noexcept { return FindIdentifier(identifier, kNpiSystem); }

  static PatientView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static PatientView Read(json::Value&&, IssueList&) = delete;
};

struct ConditionView : ResourceView {
  std::vector<Identifier> identifier;
  CodeableConcept clinical_status;
  std::optional<ConditionClinicalStatus>
      clinical_status_code;  // from the condition-clinical coding
  CodeableConcept verification_status;
  std::optional<ConditionVerificationStatus> verification_status_code;
  std::vector<CodeableConcept> category;
  CodeableConcept severity;
  CodeableConcept code;
  Reference subject;  // 1..1 Patient | Group
  Reference encounter;
  ConditionTiming onset;
  ConditionTiming abatement;
  std::optional<FhirDateTime> recorded_date;
  Reference recorder, asserter;
  std::vector<Annotation> note;

  static ConditionView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static ConditionView Read(json::Value&&, IssueList&) = delete;
};

struct EncounterParticipant {
  std::vector<CodeableConcept> type;
  Period period;
  Reference individual;
};
struct EncounterDiagnosis {
  Reference condition;
  CodeableConcept use;
  std::optional<std::int64_t> rank;
};
struct EncounterLocation {
  Reference location;
  std::string status;
  Period period;
};

struct EncounterView : ResourceView {
  std::vector<Identifier> identifier;
  std::string status_text;                // as written
  std::optional<EncounterStatus> status;  // 1..1; nullopt when missing or unknown (issue added)
  Coding encounter_class;                 // Encounter.class, 1..1
  std::vector<CodeableConcept> type;
  CodeableConcept service_type;
  CodeableConcept priority;
  Reference subject;
  std::vector<Reference> episode_of_care;
  std::vector<EncounterParticipant> participant;
  Period period;
  Quantity length;  // a Duration
  std::vector<CodeableConcept> reason_code;
  std::vector<Reference> reason_reference;
  std::vector<EncounterDiagnosis> diagnosis;
  std::vector<EncounterLocation> location;
  Reference service_provider;
  Reference part_of;

  static EncounterView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static EncounterView Read(json::Value&&, IssueList&) = delete;
};

struct CarePlanActivityDetail {
  std::string kind;
  CodeableConcept code;
  std::string status_text;
  std::optional<CarePlanActivityStatus> status;  // 1..1 within detail
  CodeableConcept status_reason;
  std::optional<bool> do_not_perform;
  Reference location;
  std::vector<Reference> performer;
  std::string description;
};
struct CarePlanActivity {
  Reference reference;                           // a request resource
  std::optional<CarePlanActivityDetail> detail;  // cpl-3: not both reference and detail
  std::vector<CodeableConcept> outcome_codeable_concept;
  std::vector<Annotation> progress;
};

struct CarePlanView : ResourceView {
  std::vector<Identifier> identifier;
  std::string status_text;
  std::optional<CarePlanStatus> status;  // 1..1
  std::string intent_text;
  std::optional<CarePlanIntent> intent;  // 1..1
  std::vector<CodeableConcept> category;
  std::string title, description;
  Reference subject;  // 1..1 Patient | Group
  Reference encounter;
  Period period;
  std::optional<FhirDateTime> created;
  Reference author;
  std::vector<Reference> contributor;
  std::vector<Reference> care_team;
  std::vector<Reference> addresses;
  std::vector<Reference> goal;
  std::vector<CarePlanActivity> activity;
  std::vector<Annotation> note;

  static CarePlanView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static CarePlanView Read(json::Value&&, IssueList&) = delete;
};

struct ConsentProvisionActor {
  CodeableConcept role;
  Reference reference;
};
struct ConsentProvision {
  std::string type_text;
  std::optional<ConsentProvisionType> type;
  Period period;
  std::vector<ConsentProvisionActor> actor;
  std::vector<CodeableConcept> action;
  std::size_t nested_provisions = 0;  // provision.provision count (read from json() if needed)
};
struct ConsentPolicy {
  std::string authority, uri;
};

struct ConsentView : ResourceView {
  std::vector<Identifier> identifier;
  std::string status_text;
  std::optional<ConsentStatus> status;    // 1..1
  CodeableConcept scope;                  // 1..1
  std::vector<CodeableConcept> category;  // 1..*
  Reference patient;
  std::optional<FhirDateTime> date_time;
  std::vector<Reference> performer;
  std::vector<Reference> organization;
  std::vector<ConsentPolicy> policy;
  CodeableConcept policy_rule;
  std::optional<ConsentProvision> provision;

  static ConsentView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static ConsentView Read(json::Value&&, IssueList&) = delete;
};

struct PractitionerView : ResourceView {
  std::vector<Identifier> identifier;
  std::optional<bool> active;
  std::string_view npi() const noexcept { return FindIdentifier(identifier, kNpiSystem); }

  static PractitionerView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static PractitionerView Read(json::Value&&, IssueList&) = delete;
};

struct PractitionerRoleView : ResourceView {
  std::vector<Identifier> identifier;
  std::optional<bool> active;
  Period period;
  Reference practitioner;
  Reference organization;
  std::vector<CodeableConcept> code;
  std::vector<CodeableConcept> specialty;

  static PractitionerRoleView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static PractitionerRoleView Read(json::Value&&, IssueList&) = delete;
};

struct BundleLink {
  std::string relation, url;
};
struct BundleEntryRequest {
  std::string method_text;
  std::optional<HttpVerb> method;  // 1..1 within request
  std::string url;
  std::string if_none_match, if_modified_since, if_match, if_none_exist;
};
struct BundleEntryResponse {
  std::string status;  // "201 Created"
  std::string location, etag;
  std::optional<FhirDateTime> last_modified;
};
struct BundleEntry {
  std::string full_url;
  const json::Value* resource = nullptr;  // points into the Bundle's JSON; nullptr when absent
  std::string search_mode;
  std::optional<BundleEntryRequest> request;
  std::optional<BundleEntryResponse> response;
};

struct BundleView : ResourceView {
  Identifier identifier;
  std::string type_text;
  std::optional<BundleType> type;  // 1..1
  std::optional<FhirDateTime> timestamp;
  std::optional<std::uint64_t> total;
  std::vector<BundleLink> link;
  std::vector<BundleEntry> entry;

  // The url of the link with this relation ("next", "self"), or "".
  std::string_view LinkUrl(std::string_view relation) const noexcept;
  // Reads only the Bundle's own elements; entry resources are not read (use the typed views on
  // `entry[i].resource`), but each entry's fullUrl is checked as a reference form.
  static BundleView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static BundleView Read(json::Value&&, IssueList&) = delete;
};

struct OperationOutcomeIssue {
  std::string severity_text;
  std::optional<Severity> severity;  // 1..1
  std::string code;                  // 1..1, issue-type code as text
  CodeableConcept details;
  std::string diagnostics;
  std::vector<std::string> location, expression;
};

struct OperationOutcomeView : ResourceView {
  std::vector<OperationOutcomeIssue> issue;  // 1..*

  static OperationOutcomeView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static OperationOutcomeView Read(json::Value&&, IssueList&) = delete;
};

struct ChargeItemPerformer {
  CodeableConcept function;
  Reference actor;
};

struct ChargeItemView : ResourceView {
  std::vector<Identifier> identifier;
  std::vector<std::string> definition_uri;
  std::string status_text;
  std::optional<ChargeItemStatus> status;  // 1..1
  CodeableConcept code;                    // 1..1
  Reference subject;                       // 1..1
  Reference context;
  DateTimeOrPeriod occurrence;  // occurrenceTiming is not modelled (noted by has_occurrence_timing)
  bool has_occurrence_timing = false;
  std::vector<ChargeItemPerformer> performer;
  Reference performing_organization, requesting_organization;
  Quantity quantity;
  std::optional<FhirDateTime> entered_date;
  Reference enterer;
  std::vector<CodeableConcept> reason;
  std::vector<Reference> service;
  std::vector<Reference> account;
  std::vector<Reference> supporting_information;
  std::vector<Annotation> note;

  static ChargeItemView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static ChargeItemView Read(json::Value&&, IssueList&) = delete;
};

struct ClaimDiagnosis {
  std::optional<std::int64_t> sequence;
  CodeableConcept diagnosis_codeable_concept;
  Reference diagnosis_reference;
  std::vector<CodeableConcept> type;
};
struct ClaimItem {
  std::optional<std::int64_t> sequence;
  std::vector<std::int64_t> diagnosis_sequence;
  CodeableConcept product_or_service;  // 1..1
  std::vector<CodeableConcept> modifier;
  DateTimeOrPeriod serviced;  // servicedDate | servicedPeriod
  Quantity quantity;
  Money unit_price;
  std::optional<Decimal> factor;
  Money net;
};

struct ClaimView : ResourceView {
  std::vector<Identifier> identifier;
  std::string status_text;
  std::optional<FinancialResourceStatus> status;  // 1..1
  CodeableConcept type;                           // 1..1
  std::string use_text;
  std::optional<ClaimUse> use;  // 1..1
  Reference patient;            // 1..1
  Period billable_period;
  std::optional<FhirDateTime> created;  // 1..1
  Reference enterer, insurer, provider;
  CodeableConcept priority;
  std::vector<ClaimDiagnosis> diagnosis;
  std::vector<ClaimItem> item;
  Money total;

  static ClaimView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static ClaimView Read(json::Value&&, IssueList&) = delete;
};

struct ProvenanceAgent {
  CodeableConcept type;
  std::vector<CodeableConcept> role;
  Reference who;  // 1..1
  Reference on_behalf_of;
};

struct ProvenanceView : ResourceView {
  std::vector<Reference> target;  // 1..*
  DateTimeOrPeriod occurred;
  std::optional<FhirDateTime> recorded;  // 1..1 instant
  std::vector<std::string> policy;
  Reference location;
  CodeableConcept activity;
  std::vector<ProvenanceAgent> agent;  // 1..*

  static ProvenanceView Read(const json::Value& resource, IssueList& issues);
  // Views point into the JSON: reading a temporary would dangle.
  static ProvenanceView Read(json::Value&&, IssueList&) = delete;
};

}  // namespace ccm::fhir
