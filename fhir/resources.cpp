#include "fhir/resources.h"

#include <charconv>

#include <fmt/format.h>

namespace ccm::fhir {
namespace {

template <class E>
struct CodeEntry {
  std::string_view code;
  E value;
};

template <class E, std::size_t N>
std::optional<E> Lookup(const CodeEntry<E> (&table)[N], std::string_view code) noexcept {
  for (const auto& e : table) {
    if (e.code == code) return e.value;
  }
  return std::nullopt;
}

template <class E, std::size_t N>
std::string_view CodeOf(const CodeEntry<E> (&table)[N], E v) noexcept {
  for (const auto& e : table) {
    if (e.value == v) return e.code;
  }
  return {};
}

template <class E, std::size_t N>
std::string Alternatives(const CodeEntry<E> (&table)[N]) {
  std::string out;
  for (const auto& e : table) {
    if (!out.empty()) out += " | ";
    out += e.code;
  }
  return out;
}

// R4 value sets (4.0.1). Order follows the spec's code system definitions.
constexpr CodeEntry<EncounterStatus> kEncounterStatus[] = {
    {"planned", EncounterStatus::kPlanned},
    {"arrived", EncounterStatus::kArrived},
    {"triaged", EncounterStatus::kTriaged},
    {"in-progress", EncounterStatus::kInProgress},
    {"onleave", EncounterStatus::kOnLeave},
    {"finished", EncounterStatus::kFinished},
    {"cancelled", EncounterStatus::kCancelled},
    {"entered-in-error", EncounterStatus::kEnteredInError},
    {"unknown", EncounterStatus::kUnknown},
};
constexpr CodeEntry<RequestStatus> kRequestStatus[] = {
    {"draft", RequestStatus::kDraft},         {"active", RequestStatus::kActive},
    {"on-hold", RequestStatus::kOnHold},      {"revoked", RequestStatus::kRevoked},
    {"completed", RequestStatus::kCompleted}, {"entered-in-error", RequestStatus::kEnteredInError},
    {"unknown", RequestStatus::kUnknown},
};
constexpr CodeEntry<CarePlanIntent> kCarePlanIntent[] = {
    {"proposal", CarePlanIntent::kProposal},
    {"plan", CarePlanIntent::kPlan},
    {"order", CarePlanIntent::kOrder},
    {"option", CarePlanIntent::kOption},
};
constexpr CodeEntry<CarePlanActivityStatus> kCarePlanActivityStatus[] = {
    {"not-started", CarePlanActivityStatus::kNotStarted},
    {"scheduled", CarePlanActivityStatus::kScheduled},
    {"in-progress", CarePlanActivityStatus::kInProgress},
    {"on-hold", CarePlanActivityStatus::kOnHold},
    {"completed", CarePlanActivityStatus::kCompleted},
    {"cancelled", CarePlanActivityStatus::kCancelled},
    {"stopped", CarePlanActivityStatus::kStopped},
    {"unknown", CarePlanActivityStatus::kUnknown},
    {"entered-in-error", CarePlanActivityStatus::kEnteredInError},
};
constexpr CodeEntry<ConsentStatus> kConsentStatus[] = {
    {"draft", ConsentStatus::kDraft},       {"proposed", ConsentStatus::kProposed},
    {"active", ConsentStatus::kActive},     {"rejected", ConsentStatus::kRejected},
    {"inactive", ConsentStatus::kInactive}, {"entered-in-error", ConsentStatus::kEnteredInError},
};
constexpr CodeEntry<ConsentProvisionType> kConsentProvisionType[] = {
    {"deny", ConsentProvisionType::kDeny},
    {"permit", ConsentProvisionType::kPermit},
};
constexpr CodeEntry<ConditionClinicalStatus> kConditionClinicalStatus[] = {
    {"active", ConditionClinicalStatus::kActive},
    {"recurrence", ConditionClinicalStatus::kRecurrence},
    {"relapse", ConditionClinicalStatus::kRelapse},
    {"inactive", ConditionClinicalStatus::kInactive},
    {"remission", ConditionClinicalStatus::kRemission},
    {"resolved", ConditionClinicalStatus::kResolved},
};
constexpr CodeEntry<ConditionVerificationStatus> kConditionVerificationStatus[] = {
    {"unconfirmed", ConditionVerificationStatus::kUnconfirmed},
    {"provisional", ConditionVerificationStatus::kProvisional},
    {"differential", ConditionVerificationStatus::kDifferential},
    {"confirmed", ConditionVerificationStatus::kConfirmed},
    {"refuted", ConditionVerificationStatus::kRefuted},
    {"entered-in-error", ConditionVerificationStatus::kEnteredInError},
};
constexpr CodeEntry<BundleType> kBundleType[] = {
    {"document", BundleType::kDocument},
    {"message", BundleType::kMessage},
    {"transaction", BundleType::kTransaction},
    {"transaction-response", BundleType::kTransactionResponse},
    {"batch", BundleType::kBatch},
    {"batch-response", BundleType::kBatchResponse},
    {"history", BundleType::kHistory},
    {"searchset", BundleType::kSearchset},
    {"collection", BundleType::kCollection},
};
constexpr CodeEntry<HttpVerb> kHttpVerb[] = {
    {"GET", HttpVerb::kGet}, {"HEAD", HttpVerb::kHead},     {"POST", HttpVerb::kPost},
    {"PUT", HttpVerb::kPut}, {"DELETE", HttpVerb::kDelete}, {"PATCH", HttpVerb::kPatch},
};
constexpr CodeEntry<ChargeItemStatus> kChargeItemStatus[] = {
    {"planned", ChargeItemStatus::kPlanned},
    {"billable", ChargeItemStatus::kBillable},
    {"not-billable", ChargeItemStatus::kNotBillable},
    {"aborted", ChargeItemStatus::kAborted},
    {"billed", ChargeItemStatus::kBilled},
    {"entered-in-error", ChargeItemStatus::kEnteredInError},
    {"unknown", ChargeItemStatus::kUnknown},
};
constexpr CodeEntry<FinancialResourceStatus> kFinancialResourceStatus[] = {
    {"active", FinancialResourceStatus::kActive},
    {"cancelled", FinancialResourceStatus::kCancelled},
    {"draft", FinancialResourceStatus::kDraft},
    {"entered-in-error", FinancialResourceStatus::kEnteredInError},
};
constexpr CodeEntry<ClaimUse> kClaimUse[] = {
    {"claim", ClaimUse::kClaim},
    {"preauthorization", ClaimUse::kPreauthorization},
    {"predetermination", ClaimUse::kPredetermination},
};
constexpr CodeEntry<NarrativeStatus> kNarrativeStatus[] = {
    {"generated", NarrativeStatus::kGenerated},
    {"extensions", NarrativeStatus::kExtensions},
    {"additional", NarrativeStatus::kAdditional},
    {"empty", NarrativeStatus::kEmpty},
};
constexpr CodeEntry<Severity> kIssueSeverity[] = {
    {"fatal", Severity::kFatal},
    {"error", Severity::kError},
    {"warning", Severity::kWarning},
    {"information", Severity::kInformation},
};
constexpr std::string_view kIssueTypeCodes[] = {
    "invalid",       "structure", "required",         "value",         "invariant",  "security",
    "login",         "unknown",   "expired",          "forbidden",     "suppressed", "processing",
    "not-supported", "duplicate", "multiple-matches", "not-found",     "deleted",    "too-long",
    "code-invalid",  "extension", "too-costly",       "business-rule", "conflict",   "transient",
    "lock-error",    "no-store",  "exception",        "timeout",       "incomplete", "throttled",
    "informational",
};

// ---- Reading helpers --------------------------------------------------------------------

bool CheckArray(const json::Value& v, std::string_view path, IssueList& issues) {
  if (v.is_null() || v.is_array()) return true;
  issues.Error(IssueCode::kStructure, std::string(path),
               fmt::format("expected a JSON array, found {}", json::KindName(v.kind())));
  return false;
}

// Calls f(element, element_path) for each element of a repeating element.
template <class F>
void ForEach(const json::Value& array, std::string_view path, IssueList& issues, F&& f) {
  if (!CheckArray(array, path, issues)) return;
  for (std::size_t i = 0; i < array.size(); ++i) f(array[i], IndexPath(path, i));
}

template <class T, class F>
std::vector<T> ReadAll(const json::Value& array, std::string_view path, IssueList& issues, F&& f) {
  std::vector<T> out;
  ForEach(array, path, issues,
          [&](const json::Value& e, const std::string& p) { out.push_back(f(e, p)); });
  return out;
}

std::vector<std::string> ReadStrings(const json::Value& array, std::string_view path,
                                     IssueList& issues) {
  return ReadAll<std::string>(array, path, issues, [&](const json::Value& e, const std::string& p) {
    return ReadString(e, p, issues);
  });
}

std::vector<Annotation> ReadAnnotations(const json::Value& array, std::string_view path,
                                        IssueList& issues) {
  return ReadAll<Annotation>(array, path, issues, [&](const json::Value& e, const std::string& p) {
    return ReadAnnotation(e, p, issues);
  });
}

// R4 §2.6.2.4: a primitive may be present only as "_key" (an extension, e.g. data-absent-reason,
// with no value); the element then exists and satisfies its cardinality.
bool HasPrimitiveExtension(const json::Value& parent, std::string_view key) {
  for (const auto& m : parent.object()) {
    if (m.key.size() == key.size() + 1 && m.key[0] == '_' &&
        std::string_view(m.key).substr(1) == key) {
      return true;
    }
  }
  return false;
}

// 1..1 / 1..* elements (R4 §2.6.2: absent and empty are the same in JSON).
void Require(const json::Value& parent, std::string_view key, std::string_view parent_path,
             IssueList& issues) {
  const json::Value* v = parent.find(key);
  if ((v == nullptr || v->is_null() || ((v->is_array() || v->is_object()) && v->size() == 0)) &&
      !HasPrimitiveExtension(parent, key)) {
    issues.Error(IssueCode::kRequired, JoinPath(parent_path, key),
                 fmt::format("{} is required", key));
  }
}

// Reads a `code` primitive bound to a required value set. An unknown code is an error issue
// (kCodeInvalid) naming the alternatives; `text` receives the code as written.
template <class E, std::size_t N>
std::optional<E> ReadCode(const json::Value& parent, std::string_view key,
                          std::string_view parent_path, IssueList& issues,
                          const CodeEntry<E> (&table)[N], bool required,
                          std::string* text = nullptr) {
  const std::string path = JoinPath(parent_path, key);
  const json::Value& v = parent[key];
  if (v.is_null()) {
    if (required && !HasPrimitiveExtension(parent, key)) {
      issues.Error(IssueCode::kRequired, path, fmt::format("{} is required", key));
    }
    return std::nullopt;
  }
  std::string code = ReadString(v, path, issues);
  if (!v.is_string()) return std::nullopt;
  auto parsed = Lookup(table, code);
  if (!parsed) {
    issues.Error(IssueCode::kCodeInvalid, path,
                 fmt::format("unknown code \"{}\"; expected one of {}",
                             std::string_view(code).substr(0, 64), Alternatives(table)));
  }
  if (text != nullptr) *text = std::move(code);
  return parsed;
}

// A CodeableConcept bound to a required code system (Condition.clinicalStatus): the coding in
// `system` must hold a known code.
template <class E, std::size_t N>
std::optional<E> ReadConceptCode(const CodeableConcept& cc, std::string_view system,
                                 std::string_view path, IssueList& issues,
                                 const CodeEntry<E> (&table)[N]) {
  if (cc.empty()) return std::nullopt;
  const Coding* c = cc.FirstInSystem(system);
  if (c == nullptr) {
    issues.Error(IssueCode::kCodeInvalid, std::string(path),
                 fmt::format("no coding from {} (required binding)", system));
    return std::nullopt;
  }
  auto parsed = Lookup(table, c->code);
  if (!parsed) {
    issues.Error(IssueCode::kCodeInvalid, std::string(path),
                 fmt::format("unknown code \"{}\" in {}; expected one of {}",
                             std::string_view(c->code).substr(0, 64), system, Alternatives(table)));
  }
  return parsed;
}

// integer / positiveInt / unsignedInt (R4 §2.24.0.1): a JSON number without fraction or exponent.
std::optional<std::int64_t> ReadInteger(const json::Value& v, std::string_view path,
                                        IssueList& issues) {
  if (v.is_null()) return std::nullopt;
  const std::string_view text = v.number_text();
  std::int64_t out = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (!v.is_number() || ec != std::errc() || end != text.data() + text.size()) {
    issues.Error(IssueCode::kValue, std::string(path), "expected an integer");
    return std::nullopt;
  }
  return out;
}

// Finds the one member `base<Type>` of a [x] choice element (R4 §2.24.0.0 "Choice of Data
// Types": only one may be present). Returns nullptr when absent; more than one is an error issue.
const json::Member* FindChoice(const json::Value& parent, std::string_view base,
                               std::string_view parent_path, IssueList& issues) {
  const json::Member* found = nullptr;
  for (const auto& m : parent.object()) {
    const std::string_view key = m.key;
    if (key.size() > base.size() && key.substr(0, base.size()) == base && key[base.size()] >= 'A' &&
        key[base.size()] <= 'Z') {
      if (found != nullptr) {
        issues.Error(IssueCode::kStructure, JoinPath(parent_path, key),
                     fmt::format("only one of {}[x] may be present (found {} and {})", base,
                                 found->key, key));
        continue;
      }
      found = &m;
    }
  }
  return found;
}

void UnsupportedChoice(const json::Member& m, std::string_view parent_path, IssueList& issues) {
  issues.Error(IssueCode::kStructure, JoinPath(parent_path, m.key),
               fmt::format("{} is not a valid type choice here", m.key));
}

DateTimeOrPeriod ReadDateTimeOrPeriod(const json::Value& parent, std::string_view base,
                                      std::string_view date_suffix, std::string_view parent_path,
                                      IssueList& issues, bool* timing = nullptr) {
  const json::Member* m = FindChoice(parent, base, parent_path, issues);
  if (m == nullptr) return std::monostate{};
  const std::string path = JoinPath(parent_path, m->key);
  const std::string_view suffix = std::string_view(m->key).substr(base.size());
  if (suffix == date_suffix) {
    // servicedDate is a FHIR date; occurrenceDateTime a dateTime.
    const auto kind = date_suffix == "Date" ? DateTimeKind::kDate : DateTimeKind::kDateTime;
    if (auto d = ReadDateTime(m->value, path, issues, kind)) return std::move(*d);
    return std::monostate{};
  }
  if (suffix == "Period") return ReadPeriod(m->value, path, issues);
  if (suffix == "Timing" && timing != nullptr) {
    *timing = true;
    return std::monostate{};
  }
  UnsupportedChoice(*m, parent_path, issues);
  return std::monostate{};
}

ConditionTiming ReadConditionTiming(const json::Value& parent, std::string_view base,
                                    std::string_view parent_path, IssueList& issues) {
  const json::Member* m = FindChoice(parent, base, parent_path, issues);
  if (m == nullptr) return std::monostate{};
  const std::string path = JoinPath(parent_path, m->key);
  const std::string_view suffix = std::string_view(m->key).substr(base.size());
  if (suffix == "DateTime") {
    if (auto d = ReadDateTime(m->value, path, issues)) return std::move(*d);
    return std::monostate{};
  }
  if (suffix == "Age") return ReadQuantity(m->value, path, issues);
  if (suffix == "Period") return ReadPeriod(m->value, path, issues);
  if (suffix == "Range") return ReadRange(m->value, path, issues);
  if (suffix == "String") return ReadString(m->value, path, issues);
  UnsupportedChoice(*m, parent_path, issues);
  return std::monostate{};
}

// Resource.id, meta, DomainResource.text.status, and the resourceType check.
void ReadCommon(const json::Value& r, std::string_view type, ResourceView& view,
                IssueList& issues) {
  view.resource = &r;
  if (!r.is_object()) {
    issues.Error(
        IssueCode::kStructure, std::string(type),
        fmt::format("expected a {} resource object, found {}", type, json::KindName(r.kind())));
    return;
  }
  const std::string_view actual = ResourceType(r);
  if (actual != type) {
    issues.Error(IssueCode::kInvalid, JoinPath(type, "resourceType"),
                 actual.empty() ? std::string("resourceType is missing")
                                : fmt::format("expected resourceType {}, found {}", type,
                                              actual.substr(0, 64)));
  }
  const std::string id_path = JoinPath(type, "id");
  view.id = ReadString(r["id"], id_path, issues);
  if (r.find("id") != nullptr && r["id"].is_string() && !IsValidId(view.id)) {
    issues.Error(IssueCode::kValue, id_path,
                 "id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'");
  }
  if (const auto* meta = r.find("meta"))
    view.meta = ReadMeta(*meta, JoinPath(type, "meta"), issues);
  if (const auto* text = r.find("text")) {
    view.text_status = ReadCode(*text, "status", JoinPath(type, "text"), issues, kNarrativeStatus,
                                /*required=*/true);
  }
}

Reference Ref(const json::Value& parent, std::string_view key, std::string_view parent_path,
              IssueList& issues, std::initializer_list<std::string_view> types = {}) {
  return ReadReference(parent[key], JoinPath(parent_path, key), issues, types);
}
std::vector<Reference> Refs(const json::Value& parent, std::string_view key,
                            std::string_view parent_path, IssueList& issues,
                            std::initializer_list<std::string_view> types = {}) {
  return ReadReferences(parent[key], JoinPath(parent_path, key), issues, types);
}
CodeableConcept Concept(const json::Value& parent, std::string_view key,
                        std::string_view parent_path, IssueList& issues) {
  return ReadCodeableConcept(parent[key], JoinPath(parent_path, key), issues);
}
std::vector<CodeableConcept> Concepts(const json::Value& parent, std::string_view key,
                                      std::string_view parent_path, IssueList& issues) {
  return ReadCodeableConcepts(parent[key], JoinPath(parent_path, key), issues);
}
std::vector<Identifier> Identifiers(const json::Value& r, std::string_view type,
                                    IssueList& issues) {
  return ReadIdentifiers(r["identifier"], JoinPath(type, "identifier"), issues);
}

}  // namespace

// ---- Codes ---------------------------------------------------------------------------------

#define CCM_FHIR_CODE_FUNCTIONS(Enum, table)                                                      \
  std::optional<Enum> Parse##Enum(std::string_view code) noexcept { return Lookup(table, code); } \
  std::string_view ToCode(Enum v) noexcept { return CodeOf(table, v); }

CCM_FHIR_CODE_FUNCTIONS(EncounterStatus, kEncounterStatus)
CCM_FHIR_CODE_FUNCTIONS(RequestStatus, kRequestStatus)
CCM_FHIR_CODE_FUNCTIONS(CarePlanIntent, kCarePlanIntent)
CCM_FHIR_CODE_FUNCTIONS(CarePlanActivityStatus, kCarePlanActivityStatus)
CCM_FHIR_CODE_FUNCTIONS(ConsentStatus, kConsentStatus)
CCM_FHIR_CODE_FUNCTIONS(ConsentProvisionType, kConsentProvisionType)
CCM_FHIR_CODE_FUNCTIONS(ConditionClinicalStatus, kConditionClinicalStatus)
CCM_FHIR_CODE_FUNCTIONS(ConditionVerificationStatus, kConditionVerificationStatus)
CCM_FHIR_CODE_FUNCTIONS(BundleType, kBundleType)
CCM_FHIR_CODE_FUNCTIONS(HttpVerb, kHttpVerb)
CCM_FHIR_CODE_FUNCTIONS(ChargeItemStatus, kChargeItemStatus)
CCM_FHIR_CODE_FUNCTIONS(FinancialResourceStatus, kFinancialResourceStatus)
CCM_FHIR_CODE_FUNCTIONS(ClaimUse, kClaimUse)
CCM_FHIR_CODE_FUNCTIONS(NarrativeStatus, kNarrativeStatus)
#undef CCM_FHIR_CODE_FUNCTIONS

std::optional<Severity> ParseIssueSeverity(std::string_view code) noexcept {
  return Lookup(kIssueSeverity, code);
}

bool IsIssueTypeCode(std::string_view code) noexcept {
  for (auto c : kIssueTypeCodes) {
    if (c == code) return true;
  }
  return false;
}

std::string_view ResourceType(const json::Value& resource) noexcept {
  return resource["resourceType"].str();
}

std::string ResourceKey(const json::Value& resource) {
  const std::string_view type = ResourceType(resource);
  const std::string_view id = resource["id"].str();
  if (type.empty() || id.empty()) return {};
  std::string key;
  key.reserve(type.size() + 1 + id.size());
  key.append(type).append(1, '/').append(id);
  return key;
}

InstantRange RangeOf(const DateTimeOrPeriod& v, const date::time_zone* tz) {
  if (const auto* d = std::get_if<FhirDateTime>(&v)) return d->Range(tz);
  if (const auto* p = std::get_if<Period>(&v)) return p->Range(tz);
  return {};
}

// ---- Views ---------------------------------------------------------------------------------

// R4 §8.1 Patient.
PatientView PatientView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Patient";
  PatientView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.active = ReadBool(r["active"], "Patient.active", issues);
  v.gender = ReadString(r["gender"], "Patient.gender", issues);
  v.birth_date = ReadDateTime(r["birthDate"], "Patient.birthDate", issues, DateTimeKind::kDate);
  if (const json::Member* m = FindChoice(r, "deceased", kType, issues)) {
    const std::string path = JoinPath(kType, m->key);
    if (m->key == "deceasedBoolean") {
      v.deceased_boolean = ReadBool(m->value, path, issues);
    } else if (m->key == "deceasedDateTime") {
      v.deceased_date_time = ReadDateTime(m->value, path, issues);
    } else {
      UnsupportedChoice(*m, kType, issues);
    }
  }
  v.general_practitioner = Refs(r, "generalPractitioner", kType, issues,
                                {"Organization", "Practitioner", "PractitionerRole"});
  v.managing_organization = Ref(r, "managingOrganization", kType, issues, {"Organization"});
  return v;
}

// R4 §9.2 Condition.
ConditionView ConditionView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Condition";
  ConditionView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.clinical_status = Concept(r, "clinicalStatus", kType, issues);
  v.clinical_status_code =
      ReadConceptCode(v.clinical_status, kConditionClinicalSystem, "Condition.clinicalStatus",
                      issues, kConditionClinicalStatus);
  v.verification_status = Concept(r, "verificationStatus", kType, issues);
  v.verification_status_code =
      ReadConceptCode(v.verification_status, kConditionVerificationSystem,
                      "Condition.verificationStatus", issues, kConditionVerificationStatus);
  v.category = Concepts(r, "category", kType, issues);
  v.severity = Concept(r, "severity", kType, issues);
  v.code = Concept(r, "code", kType, issues);
  Require(r, "subject", kType, issues);
  v.subject = Ref(r, "subject", kType, issues, {"Patient", "Group"});
  v.encounter = Ref(r, "encounter", kType, issues, {"Encounter"});
  v.onset = ReadConditionTiming(r, "onset", kType, issues);
  v.abatement = ReadConditionTiming(r, "abatement", kType, issues);
  v.recorded_date = ReadDateTime(r["recordedDate"], "Condition.recordedDate", issues);
  v.recorder = Ref(r, "recorder", kType, issues);
  v.asserter = Ref(r, "asserter", kType, issues);
  v.note = ReadAnnotations(r["note"], "Condition.note", issues);
  return v;
}

// R4 §11.x Encounter.
EncounterView EncounterView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Encounter";
  EncounterView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.status = ReadCode(r, "status", kType, issues, kEncounterStatus, true, &v.status_text);
  Require(r, "class", kType, issues);
  v.encounter_class = ReadCoding(r["class"], "Encounter.class", issues);
  v.type = Concepts(r, "type", kType, issues);
  v.service_type = Concept(r, "serviceType", kType, issues);
  v.priority = Concept(r, "priority", kType, issues);
  v.subject = Ref(r, "subject", kType, issues, {"Patient", "Group"});
  v.episode_of_care = Refs(r, "episodeOfCare", kType, issues, {"EpisodeOfCare"});
  v.participant = ReadAll<EncounterParticipant>(
      r["participant"], "Encounter.participant", issues,
      [&](const json::Value& e, const std::string& p) {
        EncounterParticipant out;
        out.type = Concepts(e, "type", p, issues);
        out.period = ReadPeriod(e["period"], JoinPath(p, "period"), issues);
        out.individual =
            Ref(e, "individual", p, issues, {"Practitioner", "PractitionerRole", "RelatedPerson"});
        return out;
      });
  v.period = ReadPeriod(r["period"], "Encounter.period", issues);
  v.length = ReadQuantity(r["length"], "Encounter.length", issues);
  v.reason_code = Concepts(r, "reasonCode", kType, issues);
  v.reason_reference =
      Refs(r, "reasonReference", kType, issues,
           {"Condition", "Procedure", "Observation", "ImmunizationRecommendation"});
  v.diagnosis = ReadAll<EncounterDiagnosis>(
      r["diagnosis"], "Encounter.diagnosis", issues,
      [&](const json::Value& e, const std::string& p) {
        EncounterDiagnosis out;
        out.condition = Ref(e, "condition", p, issues, {"Condition", "Procedure"});
        out.use = Concept(e, "use", p, issues);
        out.rank = ReadInteger(e["rank"], JoinPath(p, "rank"), issues);
        return out;
      });
  v.location = ReadAll<EncounterLocation>(
      r["location"], "Encounter.location", issues, [&](const json::Value& e, const std::string& p) {
        EncounterLocation out;
        out.location = Ref(e, "location", p, issues, {"Location"});
        out.status = ReadString(e["status"], JoinPath(p, "status"), issues);
        out.period = ReadPeriod(e["period"], JoinPath(p, "period"), issues);
        return out;
      });
  v.service_provider = Ref(r, "serviceProvider", kType, issues, {"Organization"});
  v.part_of = Ref(r, "partOf", kType, issues, {"Encounter"});
  return v;
}

// R4 §12.x CarePlan.
CarePlanView CarePlanView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "CarePlan";
  CarePlanView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.status = ReadCode(r, "status", kType, issues, kRequestStatus, true, &v.status_text);
  v.intent = ReadCode(r, "intent", kType, issues, kCarePlanIntent, true, &v.intent_text);
  v.category = Concepts(r, "category", kType, issues);
  v.title = ReadString(r["title"], "CarePlan.title", issues);
  v.description = ReadString(r["description"], "CarePlan.description", issues);
  Require(r, "subject", kType, issues);
  v.subject = Ref(r, "subject", kType, issues, {"Patient", "Group"});
  v.encounter = Ref(r, "encounter", kType, issues, {"Encounter"});
  v.period = ReadPeriod(r["period"], "CarePlan.period", issues);
  v.created = ReadDateTime(r["created"], "CarePlan.created", issues);
  v.author = Ref(r, "author", kType, issues);
  v.contributor = Refs(r, "contributor", kType, issues);
  v.care_team = Refs(r, "careTeam", kType, issues, {"CareTeam"});
  v.addresses = Refs(r, "addresses", kType, issues, {"Condition"});
  v.goal = Refs(r, "goal", kType, issues, {"Goal"});
  v.activity = ReadAll<CarePlanActivity>(
      r["activity"], "CarePlan.activity", issues, [&](const json::Value& e, const std::string& p) {
        CarePlanActivity out;
        out.reference = Ref(e, "reference", p, issues);
        out.outcome_codeable_concept = Concepts(e, "outcomeCodeableConcept", p, issues);
        out.progress = ReadAnnotations(e["progress"], JoinPath(p, "progress"), issues);
        if (const auto* d = e.find("detail")) {
          const std::string dp = JoinPath(p, "detail");
          CarePlanActivityDetail detail;
          detail.kind = ReadString((*d)["kind"], JoinPath(dp, "kind"), issues);
          detail.code = Concept(*d, "code", dp, issues);
          detail.status = ReadCode(*d, "status", dp, issues, kCarePlanActivityStatus, true,
                                   &detail.status_text);
          detail.status_reason = Concept(*d, "statusReason", dp, issues);
          detail.do_not_perform =
              ReadBool((*d)["doNotPerform"], JoinPath(dp, "doNotPerform"), issues);
          detail.location = Ref(*d, "location", dp, issues, {"Location"});
          detail.performer = Refs(*d, "performer", dp, issues);
          detail.description = ReadString((*d)["description"], JoinPath(dp, "description"), issues);
          out.detail = std::move(detail);
        }
        // cpl-3: "Provide a reference or detail, not both".
        if (out.detail && !out.reference.empty()) {
          issues.Error(IssueCode::kInvariant, p, "cpl-3: provide a reference or detail, not both");
        }
        return out;
      });
  v.note = ReadAnnotations(r["note"], "CarePlan.note", issues);
  return v;
}

// R4 §8.x Consent.
ConsentView ConsentView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Consent";
  ConsentView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.status = ReadCode(r, "status", kType, issues, kConsentStatus, true, &v.status_text);
  Require(r, "scope", kType, issues);
  v.scope = Concept(r, "scope", kType, issues);
  Require(r, "category", kType, issues);
  v.category = Concepts(r, "category", kType, issues);
  v.patient = Ref(r, "patient", kType, issues, {"Patient"});
  v.date_time = ReadDateTime(r["dateTime"], "Consent.dateTime", issues);
  v.performer = Refs(r, "performer", kType, issues);
  v.organization = Refs(r, "organization", kType, issues, {"Organization"});
  v.policy = ReadAll<ConsentPolicy>(
      r["policy"], "Consent.policy", issues, [&](const json::Value& e, const std::string& p) {
        ConsentPolicy out;
        out.authority = ReadString(e["authority"], JoinPath(p, "authority"), issues);
        out.uri = ReadString(e["uri"], JoinPath(p, "uri"), issues);
        return out;
      });
  v.policy_rule = Concept(r, "policyRule", kType, issues);
  if (const auto* pr = r.find("provision")) {
    constexpr std::string_view kPath = "Consent.provision";
    ConsentProvision p;
    p.type = ReadCode(*pr, "type", kPath, issues, kConsentProvisionType, false, &p.type_text);
    p.period = ReadPeriod((*pr)["period"], "Consent.provision.period", issues);
    p.actor = ReadAll<ConsentProvisionActor>((*pr)["actor"], "Consent.provision.actor", issues,
                                             [&](const json::Value& e, const std::string& ap) {
                                               ConsentProvisionActor out;
                                               out.role = Concept(e, "role", ap, issues);
                                               out.reference = Ref(e, "reference", ap, issues);
                                               return out;
                                             });
    p.action = Concepts(*pr, "action", kPath, issues);
    p.nested_provisions = (*pr)["provision"].size();
    v.provision = std::move(p);
  }
  // ppc-1: "Either a Policy or PolicyRule" (checked by the validator, not here).
  return v;
}

// R4 §8.4 Practitioner.
PractitionerView PractitionerView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Practitioner";
  PractitionerView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.active = ReadBool(r["active"], "Practitioner.active", issues);
  return v;
}

// R4 §8.5 PractitionerRole.
PractitionerRoleView PractitionerRoleView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "PractitionerRole";
  PractitionerRoleView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.active = ReadBool(r["active"], "PractitionerRole.active", issues);
  v.period = ReadPeriod(r["period"], "PractitionerRole.period", issues);
  v.practitioner = Ref(r, "practitioner", kType, issues, {"Practitioner"});
  v.organization = Ref(r, "organization", kType, issues, {"Organization"});
  v.code = Concepts(r, "code", kType, issues);
  v.specialty = Concepts(r, "specialty", kType, issues);
  return v;
}

std::string_view BundleView::LinkUrl(std::string_view relation) const noexcept {
  for (const auto& l : link) {
    if (l.relation == relation) return l.url;
  }
  return {};
}

// R4 §2.36 Bundle.
BundleView BundleView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Bundle";
  BundleView v;
  ReadCommon(r, kType, v, issues);
  if (const auto* id = r.find("identifier")) {
    v.identifier = ReadIdentifier(*id, "Bundle.identifier", issues);
  }
  v.type = ReadCode(r, "type", kType, issues, kBundleType, true, &v.type_text);
  v.timestamp = ReadDateTime(r["timestamp"], "Bundle.timestamp", issues, DateTimeKind::kInstant);
  if (auto total = ReadInteger(r["total"], "Bundle.total", issues)) {
    if (*total < 0) {
      issues.Error(IssueCode::kValue, "Bundle.total", "total must not be negative");
    } else {
      v.total = static_cast<std::uint64_t>(*total);
    }
  }
  v.link = ReadAll<BundleLink>(
      r["link"], "Bundle.link", issues, [&](const json::Value& e, const std::string& p) {
        BundleLink out;
        out.relation = ReadString(e["relation"], JoinPath(p, "relation"), issues);
        out.url = ReadString(e["url"], JoinPath(p, "url"), issues);
        return out;
      });
  v.entry = ReadAll<BundleEntry>(
      r["entry"], "Bundle.entry", issues, [&](const json::Value& e, const std::string& p) {
        BundleEntry out;
        out.full_url = ReadString(e["fullUrl"], JoinPath(p, "fullUrl"), issues);
        if (!out.full_url.empty()) {
          // fullUrl is an absolute URL or urn:uuid:/urn:oid: (R4 §2.36.4 bdl-8).
          auto parsed = ParseReferenceString(out.full_url);
          if (!parsed ||
              (parsed->kind != ReferenceKind::kAbsolute && parsed->kind != ReferenceKind::kUrn)) {
            issues.Error(IssueCode::kValue, JoinPath(p, "fullUrl"),
                         "fullUrl must be an absolute URL, urn:uuid: or urn:oid:");
          }
        }
        if (const auto* res = e.find("resource")) {
          if (res->is_object()) {
            out.resource = res;
          } else {
            issues.Error(IssueCode::kStructure, JoinPath(p, "resource"),
                         "entry resource must be a JSON object");
          }
        }
        out.search_mode = ReadString(e["search"]["mode"], JoinPath(p, "search.mode"), issues);
        if (const auto* rq = e.find("request")) {
          const std::string rp = JoinPath(p, "request");
          BundleEntryRequest req;
          req.method = ReadCode(*rq, "method", rp, issues, kHttpVerb, true, &req.method_text);
          Require(*rq, "url", rp, issues);
          req.url = ReadString((*rq)["url"], JoinPath(rp, "url"), issues);
          req.if_none_match = ReadString((*rq)["ifNoneMatch"], JoinPath(rp, "ifNoneMatch"), issues);
          req.if_modified_since =
              ReadString((*rq)["ifModifiedSince"], JoinPath(rp, "ifModifiedSince"), issues);
          req.if_match = ReadString((*rq)["ifMatch"], JoinPath(rp, "ifMatch"), issues);
          req.if_none_exist = ReadString((*rq)["ifNoneExist"], JoinPath(rp, "ifNoneExist"), issues);
          out.request = std::move(req);
        }
        if (const auto* rs = e.find("response")) {
          const std::string rp = JoinPath(p, "response");
          BundleEntryResponse resp;
          Require(*rs, "status", rp, issues);
          resp.status = ReadString((*rs)["status"], JoinPath(rp, "status"), issues);
          resp.location = ReadString((*rs)["location"], JoinPath(rp, "location"), issues);
          resp.etag = ReadString((*rs)["etag"], JoinPath(rp, "etag"), issues);
          resp.last_modified = ReadDateTime((*rs)["lastModified"], JoinPath(rp, "lastModified"),
                                            issues, DateTimeKind::kInstant);
          out.response = std::move(resp);
        }
        return out;
      });
  return v;
}

// R4 §3.x OperationOutcome.
OperationOutcomeView OperationOutcomeView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "OperationOutcome";
  OperationOutcomeView v;
  ReadCommon(r, kType, v, issues);
  Require(r, "issue", kType, issues);
  v.issue = ReadAll<OperationOutcomeIssue>(
      r["issue"], "OperationOutcome.issue", issues,
      [&](const json::Value& e, const std::string& p) {
        OperationOutcomeIssue out;
        out.severity = ReadCode(e, "severity", p, issues, kIssueSeverity, true, &out.severity_text);
        Require(e, "code", p, issues);
        out.code = ReadString(e["code"], JoinPath(p, "code"), issues);
        if (!out.code.empty() && !IsIssueTypeCode(out.code)) {
          issues.Error(IssueCode::kCodeInvalid, JoinPath(p, "code"),
                       fmt::format("unknown issue type \"{}\" (http://hl7.org/fhir/issue-type)",
                                   std::string_view(out.code).substr(0, 64)));
        }
        out.details = Concept(e, "details", p, issues);
        out.diagnostics = ReadString(e["diagnostics"], JoinPath(p, "diagnostics"), issues);
        out.location = ReadStrings(e["location"], JoinPath(p, "location"), issues);
        out.expression = ReadStrings(e["expression"], JoinPath(p, "expression"), issues);
        return out;
      });
  return v;
}

// R4 §15.x ChargeItem.
ChargeItemView ChargeItemView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "ChargeItem";
  ChargeItemView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.definition_uri = ReadStrings(r["definitionUri"], "ChargeItem.definitionUri", issues);
  v.status = ReadCode(r, "status", kType, issues, kChargeItemStatus, true, &v.status_text);
  Require(r, "code", kType, issues);
  v.code = Concept(r, "code", kType, issues);
  Require(r, "subject", kType, issues);
  v.subject = Ref(r, "subject", kType, issues, {"Patient", "Group"});
  v.context = Ref(r, "context", kType, issues, {"Encounter", "EpisodeOfCare"});
  v.occurrence =
      ReadDateTimeOrPeriod(r, "occurrence", "DateTime", kType, issues, &v.has_occurrence_timing);
  v.performer = ReadAll<ChargeItemPerformer>(r["performer"], "ChargeItem.performer", issues,
                                             [&](const json::Value& e, const std::string& p) {
                                               ChargeItemPerformer out;
                                               out.function = Concept(e, "function", p, issues);
                                               Require(e, "actor", p, issues);
                                               out.actor = Ref(e, "actor", p, issues);
                                               return out;
                                             });
  v.performing_organization = Ref(r, "performingOrganization", kType, issues, {"Organization"});
  v.requesting_organization = Ref(r, "requestingOrganization", kType, issues, {"Organization"});
  v.quantity = ReadQuantity(r["quantity"], "ChargeItem.quantity", issues);
  v.entered_date = ReadDateTime(r["enteredDate"], "ChargeItem.enteredDate", issues);
  v.enterer = Ref(r, "enterer", kType, issues);
  v.reason = Concepts(r, "reason", kType, issues);
  v.service = Refs(r, "service", kType, issues);
  v.account = Refs(r, "account", kType, issues, {"Account"});
  v.supporting_information = Refs(r, "supportingInformation", kType, issues);
  v.note = ReadAnnotations(r["note"], "ChargeItem.note", issues);
  return v;
}

// R4 §13.x Claim.
ClaimView ClaimView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Claim";
  ClaimView v;
  ReadCommon(r, kType, v, issues);
  v.identifier = Identifiers(r, kType, issues);
  v.status = ReadCode(r, "status", kType, issues, kFinancialResourceStatus, true, &v.status_text);
  Require(r, "type", kType, issues);
  v.type = Concept(r, "type", kType, issues);
  v.use = ReadCode(r, "use", kType, issues, kClaimUse, true, &v.use_text);
  Require(r, "patient", kType, issues);
  v.patient = Ref(r, "patient", kType, issues, {"Patient"});
  v.billable_period = ReadPeriod(r["billablePeriod"], "Claim.billablePeriod", issues);
  Require(r, "created", kType, issues);
  v.created = ReadDateTime(r["created"], "Claim.created", issues);
  v.enterer = Ref(r, "enterer", kType, issues);
  v.insurer = Ref(r, "insurer", kType, issues, {"Organization"});
  Require(r, "provider", kType, issues);
  v.provider =
      Ref(r, "provider", kType, issues, {"Practitioner", "PractitionerRole", "Organization"});
  v.priority = Concept(r, "priority", kType, issues);
  v.diagnosis = ReadAll<ClaimDiagnosis>(
      r["diagnosis"], "Claim.diagnosis", issues, [&](const json::Value& e, const std::string& p) {
        ClaimDiagnosis out;
        out.sequence = ReadInteger(e["sequence"], JoinPath(p, "sequence"), issues);
        if (const json::Member* m = FindChoice(e, "diagnosis", p, issues)) {
          if (m->key == "diagnosisCodeableConcept") {
            out.diagnosis_codeable_concept =
                ReadCodeableConcept(m->value, JoinPath(p, m->key), issues);
          } else if (m->key == "diagnosisReference") {
            out.diagnosis_reference =
                ReadReference(m->value, JoinPath(p, m->key), issues, {"Condition"});
          } else {
            UnsupportedChoice(*m, p, issues);
          }
        }
        out.type = Concepts(e, "type", p, issues);
        return out;
      });
  v.item = ReadAll<ClaimItem>(
      r["item"], "Claim.item", issues, [&](const json::Value& e, const std::string& p) {
        ClaimItem out;
        out.sequence = ReadInteger(e["sequence"], JoinPath(p, "sequence"), issues);
        ForEach(e["diagnosisSequence"], JoinPath(p, "diagnosisSequence"), issues,
                [&](const json::Value& n, const std::string& np) {
                  if (auto seq = ReadInteger(n, np, issues)) out.diagnosis_sequence.push_back(*seq);
                });
        Require(e, "productOrService", p, issues);
        out.product_or_service = Concept(e, "productOrService", p, issues);
        out.modifier = Concepts(e, "modifier", p, issues);
        out.serviced = ReadDateTimeOrPeriod(e, "serviced", "Date", p, issues);
        out.quantity = ReadQuantity(e["quantity"], JoinPath(p, "quantity"), issues);
        out.unit_price = ReadMoney(e["unitPrice"], JoinPath(p, "unitPrice"), issues);
        if (const auto* f = e.find("factor")) {
          if (f->is_number()) {
            out.factor = Decimal{std::string(f->number_text())};
          } else {
            issues.Error(IssueCode::kStructure, JoinPath(p, "factor"), "expected a JSON number");
          }
        }
        out.net = ReadMoney(e["net"], JoinPath(p, "net"), issues);
        return out;
      });
  v.total = ReadMoney(r["total"], "Claim.total", issues);
  return v;
}

// R4 §6.x Provenance.
ProvenanceView ProvenanceView::Read(const json::Value& r, IssueList& issues) {
  constexpr std::string_view kType = "Provenance";
  ProvenanceView v;
  ReadCommon(r, kType, v, issues);
  Require(r, "target", kType, issues);
  v.target = Refs(r, "target", kType, issues);
  v.occurred = ReadDateTimeOrPeriod(r, "occurred", "DateTime", kType, issues);
  Require(r, "recorded", kType, issues);
  v.recorded = ReadDateTime(r["recorded"], "Provenance.recorded", issues, DateTimeKind::kInstant);
  v.policy = ReadStrings(r["policy"], "Provenance.policy", issues);
  v.location = Ref(r, "location", kType, issues, {"Location"});
  v.activity = Concept(r, "activity", kType, issues);
  Require(r, "agent", kType, issues);
  v.agent = ReadAll<ProvenanceAgent>(r["agent"], "Provenance.agent", issues,
                                     [&](const json::Value& e, const std::string& p) {
                                       ProvenanceAgent out;
                                       out.type = Concept(e, "type", p, issues);
                                       out.role = Concepts(e, "role", p, issues);
                                       Require(e, "who", p, issues);
                                       out.who = Ref(e, "who", p, issues);
                                       out.on_behalf_of = Ref(e, "onBehalfOf", p, issues);
                                       return out;
                                     });
  return v;
}

}  // namespace ccm::fhir
