#include "gateway/ccm/facts.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include <rapidjson/reader.h>

#include "fhir/r4_model.h"
#include "fhir/reader.h"
#include "mappings/code_systems.h"

namespace ccm::gateway {
namespace {

using fhir::IssueCode;
using fhir::IssueList;
using fhir::json::Value;

// The patient a reference points to, as "Patient/<id>"; "" (with an issue) when it cannot be
// resolved without a server (urn:uuid inside a Bundle, conditional references).
std::string PatientKey(const fhir::Reference& ref, std::string_view path, IssueList& issues) {
  if (ref.empty()) return {};
  if (auto key = ref.Key(); key && ref.type == "Patient") return *key;
  issues.Warning(IssueCode::kNotSupported, std::string(path),
                 "the patient reference is not of the form Patient/<id> (or an absolute URL "
                 "ending so); the resource cannot be attributed to a patient and is not counted");
  return {};
}

// Cheap read of a subject/patient.reference for resources that need no full view.
std::string PatientKeyOfReference(std::string_view ref) {
  if (ref.starts_with("Patient/") && fhir::IsValidId(ref.substr(8))) return std::string(ref);
  auto parsed = fhir::ParseReferenceString(ref);
  if (!parsed || parsed->type != "Patient") return {};
  auto key = parsed->Key();
  return key ? *key : std::string();
}

template <class V>
bool HasCodeIn(const V& codeable_concept, const mappings::CodeSet& set) {
  for (const auto& c : codeable_concept["coding"].array()) {
    if (set.Contains(c["system"].str(), c["code"].str())) return true;
  }
  return false;
}

// Encounter.type[] and serviceType codings, in order.
template <class V, class F>
void ForEachEncounterCoding(const V& r, F&& f) {
  for (const auto& t : r["type"].array()) {
    for (const auto& c : t["coding"].array()) f(c["system"].str(), c["code"].str());
  }
  for (const auto& c : r["serviceType"]["coding"].array()) f(c["system"].str(), c["code"].str());
}

// Whether a resource of the engine's types matters to a rule, so needs reading in full. Most
// encounters (visits, not care management), conditions (not chronic) and consents (other
// categories) do not; they keep only their version stamp and patient.
template <class V>
bool NeedsFullRead(std::string_view type, const V& r, const EngineConfig& config) {
  if (type == "Encounter") {
    bool activity = false;
    ForEachEncounterCoding(r, [&](std::string_view system, std::string_view code) {
      activity = activity || config.activity_codes.Contains(system, code);
    });
    return activity;
  }
  if (type == "Condition") {
    for (const auto& c : r["code"]["coding"].array()) {
      if (config.chronic_conditions.Find(c["system"].str(), c["code"].str()) != nullptr) {
        return true;
      }
    }
    return false;
  }
  if (type == "Consent") {
    for (const auto& c : r["category"].array()) {
      if (HasCodeIn(c, config.consent_codes)) return true;
    }
    return false;
  }
  return true;  // Patient, CarePlan, Practitioner, PractitionerRole: always read
}

template <class V>
void QuickExtract(std::string_view type, const V& r, Extracted& out) {
  out.patient =
      PatientKeyOfReference(r[type == "Consent" ? "patient" : "subject"]["reference"].str());
}

std::optional<TimePoint> Earliest(const std::optional<fhir::FhirDateTime>& d,
                                  const date::time_zone* tz) {
  if (!d) return std::nullopt;
  return d->Range(tz).start;
}

// The exclusive end of a Period whose JSON is `period`: an end that is there but unreadable (the
// view reported it) means "ended at an unknown date", i.e. no longer in effect -- never "open".
std::optional<TimePoint> PeriodEnd(const fhir::Period& read, const Value& period,
                                   const date::time_zone* tz) {
  if (read.end) return read.end->Range(tz).end;
  if (period.find("end") != nullptr) return TimePoint::min();
  return std::nullopt;
}

constexpr std::string_view kParticipationType =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

std::string PerformerKey(const fhir::Reference& ref) {
  if (auto id = ref.SearchIdentifier();
      id && id->system == fhir::kNpiSystem && !id->value.empty()) {
    return "npi:" + id->value;
  }
  if (auto key = ref.Key(); key && (ref.type == "Practitioner" || ref.type == "PractitionerRole")) {
    return *key;
  }
  return {};
}

// ---- per type ----------------------------------------------------------------------------------

void ExtractPatient(const Value& r, const EngineConfig& config, Extracted& out, IssueList& issues) {
  auto v = fhir::PatientView::Read(r, issues);
  out.patient = "Patient/" + v.id;
  PatientFact f;
  f.deceased = v.deceased();
  f.deceased_from = Earliest(v.deceased_date_time, config.practice.time_zone);
  if (!v.deceased_date_time && r.find("deceasedDateTime") != nullptr) {
    // Present but unreadable (an issue says why): dead at an unknown date is the safe reading.
    f.deceased = true;
  }
  // Patient.active is a modifier (R4: a record not in active use is not to be treated as valid);
  // an unreadable value (the view reports it) is read as inactive, the safe way.
  f.inactive = v.active == std::optional<bool>(false) || (!v.active && r.find("active") != nullptr);
  for (std::size_t i = 0; i < r["link"].size(); ++i) {
    const Value& link = r["link"][i];
    std::string_view type = link["type"].str();
    if (type != "replaced-by" && type != "replaces") continue;
    fhir::Reference other =
        fhir::ReadReference(link["other"], fmt::format("Patient.link[{}].other", i), issues);
    std::string key;
    if (auto k = other.Key(); k && other.type == "Patient" && fhir::IsValidId(other.id)) key = *k;
    if (type == "replaced-by") {
      // Merged into another record: never billed, whether or not the survivor can be named.
      if (!f.replaced || f.replaced_by.empty()) f.replaced_by = key;
      f.replaced = true;
    } else if (!key.empty()) {
      f.replaces.push_back(std::move(key));
    }
  }
  out.stored.fact = std::make_unique<Fact>(std::move(f));
}

void ExtractCondition(const Value& r, const EngineConfig& config, Extracted& out,
                      IssueList& issues) {
  // Most conditions are not chronic: find the category before reading the whole resource.
  const mappings::ChronicCategory* category = nullptr;
  std::string coding;
  for (const Value& c : r["code"]["coding"].array()) {
    category = config.chronic_conditions.Find(c["system"].str(), c["code"].str());
    if (category != nullptr) {
      coding = fmt::format("{}|{}", c["system"].str(), c["code"].str());
      break;
    }
  }
  auto v = fhir::ConditionView::Read(r, issues);
  const date::time_zone* tz = config.practice.time_zone;
  ConditionFact f;
  f.patient = PatientKey(v.subject, "Condition.subject", issues);
  out.patient = f.patient;
  f.category = category;
  f.coding = std::move(coding);
  f.verification = v.verification_status_code;
  f.clinical = v.clinical_status_code;
  // A status that is there but not readable as R4 (another system, a typo) could say refuted or
  // resolved: the condition is not counted (the reader's issue says what to fix).
  f.status_unreadable = (!v.verification_status.empty() && !f.verification) ||
                        (!v.clinical_status.empty() && !f.clinical);
  if (const auto* d = std::get_if<fhir::FhirDateTime>(&v.onset)) {
    f.onset_from = d->Range(tz).start;
  } else if (const auto* p = std::get_if<fhir::Period>(&v.onset); p && p->start) {
    f.onset_from = p->start->Range(tz).start;
  }
  // Abatement (R4 Condition.abatement[x]); an abatement we cannot date is treated as "abated
  // before the month" -- the conservative reading (docs/ccm-rules.md, rule 1).
  if (const auto* d = std::get_if<fhir::FhirDateTime>(&v.abatement)) {
    f.abatement = Abatement::kAt;
    f.abated_from = d->Range(tz).start;
  } else if (const auto* p = std::get_if<fhir::Period>(&v.abatement)) {
    if (p->start) {
      f.abatement = Abatement::kAt;
      f.abated_from = p->start->Range(tz).start;
    } else {
      f.abatement = Abatement::kUnknownDate;
    }
  } else if (std::holds_alternative<fhir::Quantity>(v.abatement) ||
             std::holds_alternative<fhir::QuantityRange>(v.abatement) ||
             std::holds_alternative<std::string>(v.abatement)) {
    f.abatement = Abatement::kUnknownDate;
  } else if (const Value* b = r.find("abatementBoolean"); b != nullptr && b->as_bool()) {
    f.abatement = Abatement::kUnknownDate;
  } else if (r.find("abatementDateTime") != nullptr) {
    f.abatement = Abatement::kUnknownDate;  // present but unreadable: abated, date unknown
  }
  if (f.abatement == Abatement::kNone && f.clinical &&
      (*f.clinical == fhir::ConditionClinicalStatus::kResolved ||
       *f.clinical == fhir::ConditionClinicalStatus::kInactive ||
       *f.clinical == fhir::ConditionClinicalStatus::kRemission)) {
    f.abatement = Abatement::kUnknownDate;
  }
  out.stored.fact = std::make_unique<Fact>(std::move(f));
}

void ExtractEncounter(const Value& r, const EngineConfig& config, Extracted& out,
                      IssueList& issues) {
  auto v = fhir::EncounterView::Read(r, issues);
  EncounterFact f;
  f.patient = PatientKey(v.subject, "Encounter.subject", issues);
  out.patient = f.patient;
  f.status = v.status_text;
  f.finished = v.status == fhir::EncounterStatus::kFinished;
  ForEachEncounterCoding(r, [&](std::string_view system, std::string_view code) {
    if (f.activity_code.empty() && config.activity_codes.Contains(system, code)) {
      f.activity_code = std::string(code);
    }
    f.practitioner_coded =
        f.practitioner_coded || config.rules.practitioner_time_codes.Contains(system, code);
    f.complex_coded = f.complex_coded || config.rules.complex_ccm_codes.Contains(system, code);
  });
  const date::time_zone* tz = config.practice.time_zone;
  if (v.period.start) {
    f.start = v.period.start->Range(tz).start;
  } else if (f.finished) {
    issues.Error(IssueCode::kRequired, "Encounter.period.start",
                 "a care-management encounter needs period.start to be placed in a month; its "
                 "time is not counted (add period.start)");
  }
  if (!v.length.empty()) {
    auto us = fhir::DurationToMicros(v.length);
    if (us) {
      f.micros = us->count();
    } else {
      issues.Error(IssueCode::kValue, "Encounter.length",
                   fmt::format("{}; its time is not counted (use a UCUM unit such as "
                               "{{\"value\": 20, \"system\": \"http://unitsofmeasure.org\", "
                               "\"code\": \"min\"}})",
                               us.error().message));
    }
  } else if (v.period.start && v.period.end) {
    // Without `length` the time is period.end - period.start, which is only meaningful when
    // both carry a time of day (a date-only period would count whole days).
    if (v.period.start->has_time() && v.period.end->has_time()) {
      auto d = v.period.end->Range(tz).start - v.period.start->Range(tz).start;
      if (d.count() >= 0) {
        f.micros = d.count();
      } else {
        issues.Error(IssueCode::kInvariant, "Encounter.period",
                     "period.end is before period.start; its time is not counted");
      }
    } else {
      issues.Error(IssueCode::kValue, "Encounter.period",
                   "period.start and period.end need a time of day to give a duration (or "
                   "add Encounter.length); its time is not counted");
    }
  } else if (f.finished && v.period.start) {
    issues.Error(IssueCode::kRequired, "Encounter.length",
                 "a care-management encounter needs length or period.end to give its "
                 "duration; its time is not counted");
  }
  for (std::size_t i = 0; i < v.participant.size(); ++i) {
    // Only those who did the work: no type, or primary/secondary performer or participant
    // (v3 ParticipationType PPRF, SPRF, PART) -- not a referrer, consultant or attender.
    const auto& types = v.participant[i].type;
    bool performer = types.empty() || std::any_of(types.begin(), types.end(), [](const auto& t) {
                       return t.HasCode(kParticipationType, "PPRF") ||
                              t.HasCode(kParticipationType, "SPRF") ||
                              t.HasCode(kParticipationType, "PART");
                     });
    if (!performer) continue;
    std::string key = PerformerKey(v.participant[i].individual);
    if (!key.empty() &&
        std::find(f.performers.begin(), f.performers.end(), key) == f.performers.end()) {
      f.performers.push_back(std::move(key));
    }
  }
  out.stored.fact = std::make_unique<Fact>(std::move(f));
}

void ExtractConsent(const Value& r, const EngineConfig& config, Extracted& out, IssueList& issues) {
  auto v = fhir::ConsentView::Read(r, issues);
  const date::time_zone* tz = config.practice.time_zone;
  ConsentFact f;
  f.patient = PatientKey(v.patient, "Consent.patient", issues);
  out.patient = f.patient;
  f.status = v.status;
  if (v.provision) {
    // An unreadable provision.type is not a permit.
    f.deny = v.provision->type == fhir::ConsentProvisionType::kDeny ||
             (!v.provision->type_text.empty() && !v.provision->type);
    f.start = Earliest(v.provision->period.start, tz);
    f.end = PeriodEnd(v.provision->period, r["provision"]["period"], tz);
  }
  // dateTime stands in only when provision.period.start is absent -- not when it is there but
  // unreadable (an earlier dateTime would open billing before the real start).
  if (!f.start && r["provision"]["period"].find("start") == nullptr) {
    f.start = Earliest(v.date_time, tz);
  }
  if (!f.start && f.status == fhir::ConsentStatus::kActive && !f.deny) {
    issues.Warning(IssueCode::kRequired, "Consent.provision.period.start",
                   "the consent has neither provision.period.start nor dateTime, so the date it "
                   "took effect is unknown; no time is billed under it");
  }
  out.stored.fact = std::make_unique<Fact>(std::move(f));
}

bool IsPlaceholderActivity(const Value& activity) {
  for (const auto& e : activity["extension"].array()) {
    if (e["url"].str() == kPlaceholderExtension && e["valueBoolean"].as_bool()) return true;
  }
  return false;
}

// A plan element tagged on an activity: detail.code with kPlanElementSystem.
std::optional<PlanElement> TaggedElement(const fhir::CarePlanActivity& a) {
  if (!a.detail) return std::nullopt;
  for (const auto& c : a.detail->code.coding) {
    if (c.system != kPlanElementSystem) continue;
    for (std::size_t i = 0; i < static_cast<std::size_t>(PlanElement::kCount); ++i) {
      if (c.code == ToCode(static_cast<PlanElement>(i))) return static_cast<PlanElement>(i);
    }
  }
  return std::nullopt;
}

void ExtractCarePlan(const Value& r, const EngineConfig& config, Extracted& out,
                     IssueList& issues) {
  auto v = fhir::CarePlanView::Read(r, issues);
  const date::time_zone* tz = config.practice.time_zone;
  CarePlanFact f;
  f.patient = PatientKey(v.subject, "CarePlan.subject", issues);
  out.patient = f.patient;
  f.status = v.status;
  f.intent_ok = v.intent == fhir::CarePlanIntent::kPlan || v.intent == fhir::CarePlanIntent::kOrder;
  f.period_start = Earliest(v.period.start, tz);
  if (!f.period_start) f.period_start = Earliest(v.created, tz);  // not in effect before it existed
  f.period_end = PeriodEnd(v.period, r["period"], tz);
  auto set = [&](PlanElement e) { f.elements.set(static_cast<std::size_t>(e)); };
  if (!v.addresses.empty()) set(PlanElement::kProblemList);
  if (!v.goal.empty()) set(PlanElement::kGoals);
  if (!v.care_team.empty()) set(PlanElement::kCoordination);
  const Value& raw_activities = r["activity"];
  for (std::size_t i = 0; i < v.activity.size(); ++i) {
    const auto& a = v.activity[i];
    // A placeholder the gateway wrote into a draft plan is a to-do, not a plan element: it
    // stops counting when the care team replaces it (or removes the placeholder extension).
    if (raw_activities.size() == v.activity.size() && IsPlaceholderActivity(raw_activities[i])) {
      continue;
    }
    set(PlanElement::kInterventions);
    if (a.reference.type == "MedicationRequest" ||
        (a.detail && a.detail->kind == "MedicationRequest")) {
      set(PlanElement::kMedicationManagement);
    }
    if (auto e = TaggedElement(a)) set(*e);
  }
  if (v.meta.last_updated) {
    f.last_revised = v.meta.last_updated->Range(tz).start;
  } else if (v.created) {
    f.last_revised = v.created->Range(tz).start;
  } else {
    f.last_revised = f.period_start;
  }
  out.stored.fact = std::make_unique<Fact>(std::move(f));
}

void ExtractPractitioner(const Value& r, Extracted& out) {
  PractitionerFact f;
  const Value& ids = r["identifier"];
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i]["system"].str() == fhir::kNpiSystem && !ids[i]["value"].str().empty()) {
      f.npis.emplace_back(ids[i]["value"].str());
    }
  }
  out.stored.fact = std::make_unique<Fact>(std::move(f));
}

void ExtractPractitionerRole(const Value& r, Extracted& out, IssueList& issues) {
  fhir::Reference ref =
      fhir::ReadReference(r["practitioner"], "PractitionerRole.practitioner", issues);
  PractitionerRoleFact f;
  f.practitioner = PerformerKey(ref);
  out.stored.fact = std::make_unique<Fact>(std::move(f));
}

constexpr std::array<std::string_view, 7> kTypes = {
    "Patient", "Condition", "Encounter", "Consent", "CarePlan", "Practitioner", "PractitionerRole"};

}  // namespace

std::string_view ToCode(PlanElement e) noexcept {
  switch (e) {
    case PlanElement::kProblemList:
      return "problem-list";
    case PlanElement::kGoals:
      return "measurable-goals";
    case PlanElement::kInterventions:
      return "interventions";
    case PlanElement::kMedicationManagement:
      return "medication-management";
    case PlanElement::kCommunityResources:
      return "community-resources";
    case PlanElement::kCoordination:
      return "care-coordination";
    case PlanElement::kReviewSchedule:
      return "review-schedule";
    case PlanElement::kSymptomManagement:
      return "symptom-management";
    case PlanElement::kExpectedOutcome:
      return "expected-outcome";
    case PlanElement::kCount:
      break;
  }
  return "?";
}

bool FactTypeNeeded(std::string_view type) noexcept {
  return std::find(kTypes.begin(), kTypes.end(), type) != kTypes.end();
}

bool FactMemberNeeded(std::string_view type, std::string_view m) noexcept {
  // Everything the views below read, plus what decides whether a resource may be used at all.
  if (m == "id" || m == "meta" || m == "modifierExtension" || m == "implicitRules") return true;
  auto any = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), m) != names.end();
  };
  if (type.empty() || type == "CarePlan") return true;  // care plans are read whole (rule 9)
  if (type == "Encounter") {
    return any({"status", "_status", "class", "type", "serviceType", "subject", "participant",
                "period", "length"});
  }
  if (type == "Condition") {
    return any({"clinicalStatus", "verificationStatus", "code", "subject", "onsetDateTime",
                "_onsetDateTime", "onsetPeriod", "onsetAge", "onsetRange", "onsetString",
                "abatementDateTime", "_abatementDateTime", "abatementPeriod", "abatementAge",
                "abatementRange", "abatementString", "abatementBoolean"});
  }
  if (type == "Consent") {
    return any({"status", "_status", "scope", "category", "patient", "dateTime", "provision"});
  }
  if (type == "Patient") {
    return any({"deceasedBoolean", "deceasedDateTime", "active", "_active", "link"});
  }
  if (type == "Practitioner") return m == "identifier";
  if (type == "PractitionerRole") return any({"practitioner", "identifier"});
  return false;
}

Extracted ExtractFact(const Value& r, const fhir::SourceLocation& where,
                      const EngineConfig& config) {
  Extracted out;
  std::string_view type = fhir::ResourceType(r);
  if (!FactTypeNeeded(type)) return out;
  std::string_view id = r["id"].str();
  out.key =
      id.empty() ? fmt::format("{}/#{}", type, where.ToString()) : fmt::format("{}/{}", type, id);
  out.stored.stamp = StampOfJson(r);
  IssueList issues;
  if (!NeedsFullRead(type, r, config)) {
    QuickExtract(type, r, out);
  } else if (type != "Patient" &&
             (r.find("modifierExtension") != nullptr || r.find("implicitRules") != nullptr)) {
    // R4 §2.4.4: a system must not process a resource whose modifier extensions (or implicit
    // rules) it does not understand; the safe reading is to leave it out and say so.
    issues.Error(IssueCode::kNotSupported,
                 fmt::format("{}.{}", type,
                             r.find("modifierExtension") ? "modifierExtension" : "implicitRules"),
                 "the resource carries a modifier the gateway does not understand; it is left "
                 "out of the evaluation (remove or map the modifier)");
    QuickExtract(type, r, out);
  } else if (type == "Patient") {
    ExtractPatient(r, config, out, issues);
  } else if (type == "Condition") {
    ExtractCondition(r, config, out, issues);
  } else if (type == "Encounter") {
    ExtractEncounter(r, config, out, issues);
  } else if (type == "Consent") {
    ExtractConsent(r, config, out, issues);
  } else if (type == "CarePlan") {
    ExtractCarePlan(r, config, out, issues);
  } else if (type == "Practitioner") {
    ExtractPractitioner(r, out);
  } else {
    ExtractPractitionerRole(r, out, issues);
  }
  if (id.empty()) {
    issues.Error(IssueCode::kRequired, fmt::format("{}.id", type),
                 "the resource has no id, so other resources cannot refer to it and a newer "
                 "version cannot replace it");
  }
  if (!issues.empty()) {
    issues.SetLocation(where.ToString());
    out.stored.issues = std::make_unique<FactIssues>(FactIssues{out.patient, std::move(issues)});
  }
  return out;
}

// Lines up to this size are parsed recursively (faster); longer ones iteratively, so that no input
// can exhaust a thread's stack however deeply it nests.
constexpr std::size_t kRecursiveParseLimit = 8192;

namespace {

// What decides whether a line matters, read by a SAX pass that builds no tree: resourceType, id,
// meta.versionId/lastUpdated, subject/patient.reference and the codings NeedsFullRead looks at
// (Encounter.type[].coding[], Encounter.serviceType.coding[], Condition.code.coding[],
// Consent.category[].coding[]). Strings are views of the in-situ parsed text. Anything unusual
// (a member twice, more codings than fit) sets `unsure`, and the line is then read in full by the
// lossless parser, whose reading is the reference.
struct Skim {
  enum Element : std::uint8_t { kType, kServiceType, kCode, kCategory };
  struct Coding {
    Element element;
    std::string_view system, code;
  };
  std::string_view type, id, version_id, last_updated, subject, patient;
  std::array<Coding, 8> codings;
  std::size_t coding_count = 0;
  bool object = false;  // the line is a JSON object
  bool unsure = false;

  bool AnyCoding(Element element, const auto& test) const {
    for (std::size_t i = 0; i < coding_count; ++i) {
      if (codings[i].element == element && test(codings[i].system, codings[i].code)) return true;
    }
    return false;
  }
};

// The SAX handler. Depth d counts open containers (the resource object is depth 1); key_[d] is the
// last member name read in the object at depth d, array_[d] whether the container at depth d is an
// array. Paths deeper than kMaxDepth are only counted.
class Skimmer : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Skimmer> {
 public:
  explicit Skimmer(Skim& out) : out_(out) {}

  bool StartObject() { return Open(false); }
  bool StartArray() { return Open(true); }
  bool EndObject(rapidjson::SizeType) {
    if (coding_depth_ == depth_) {
      coding_depth_ = 0;
      if (out_.coding_count == out_.codings.size()) {
        out_.unsure = true;
      } else {
        out_.codings[out_.coding_count++] = coding_;
      }
    }
    --depth_;
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    --depth_;
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (depth_ <= kMaxDepth) key_[depth_] = Classify(std::string_view(s, n));
    return true;
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    std::string_view v(s, n);
    if (depth_ == 1) {
      if (key_[1] == K::kResourceType) Set(out_.type, v);
      if (key_[1] == K::kId) Set(out_.id, v);
    } else if (depth_ == 2 && !array_[2]) {
      if (key_[1] == K::kMeta && key_[2] == K::kVersionId) Set(out_.version_id, v);
      if (key_[1] == K::kMeta && key_[2] == K::kLastUpdated) Set(out_.last_updated, v);
      if (key_[1] == K::kSubject && key_[2] == K::kReference) Set(out_.subject, v);
      if (key_[1] == K::kPatient && key_[2] == K::kReference) Set(out_.patient, v);
    } else if (depth_ == coding_depth_) {
      if (key_[depth_] == K::kSystem) SetCoding(coding_.system, system_set_, v);
      if (key_[depth_] == K::kCode) SetCoding(coding_.code, code_set_, v);
    }
    return true;
  }
  bool RawNumber(const char*, rapidjson::SizeType, bool) { return true; }
  bool Default() { return true; }  // booleans, null

 private:
  enum class K : std::uint8_t {
    kOther,
    kResourceType,
    kId,
    kMeta,
    kVersionId,
    kLastUpdated,
    kSubject,
    kPatient,
    kReference,
    kType,
    kServiceType,
    kCode,
    kCategory,
    kCoding,
    kSystem,
  };
  static constexpr std::size_t kMaxDepth = 5;
  static inline const std::size_t kRefusedDepth = fhir::json::ParseOptions{}.max_depth;

  // The member names the paths above are made of, by length first: this runs for every member
  // of every line, so it must cost a switch and at most a few fixed-size compares.
  // (The switch has checked the size: a fixed-size compare that compiles to a load or two, where
  // string_view's == stayed a call to memcmp.)
  template <std::size_t N>
  static bool Is(std::string_view k, const char (&name)[N]) {
    return std::memcmp(k.data(), name, N - 1) == 0;
  }
  static K Classify(std::string_view k) {
    switch (k.size()) {
      case 2:
        return Is(k, "id") ? K::kId : K::kOther;
      case 4:
        return Is(k, "meta")   ? K::kMeta
               : Is(k, "type") ? K::kType
               : Is(k, "code") ? K::kCode
                               : K::kOther;
      case 6:
        return Is(k, "system") ? K::kSystem : Is(k, "coding") ? K::kCoding : K::kOther;
      case 7:
        return Is(k, "subject") ? K::kSubject : Is(k, "patient") ? K::kPatient : K::kOther;
      case 8:
        return Is(k, "category") ? K::kCategory : K::kOther;
      case 9:
        return Is(k, "versionId") ? K::kVersionId : Is(k, "reference") ? K::kReference : K::kOther;
      case 11:
        return Is(k, "lastUpdated")   ? K::kLastUpdated
               : Is(k, "serviceType") ? K::kServiceType
                                      : K::kOther;
      case 12:
        return Is(k, "resourceType") ? K::kResourceType : K::kOther;
      default:
        return K::kOther;
    }
  }

  bool Open(bool array) {
    if (depth_ == 0) out_.object = !array;
    // As deep as the lossless parser refuses (or nearly): stop, and let it say so.
    if (++depth_ >= kRefusedDepth) return false;
    if (depth_ > kMaxDepth) return true;
    array_[depth_] = array;
    key_[depth_] = K::kOther;
    if (auto element = array ? std::nullopt : CodingAt(depth_)) {
      coding_depth_ = depth_;
      coding_ = {*element, {}, {}};
      system_set_ = code_set_ = false;
    }
    return true;
  }

  // Which element's Coding an object opening at depth d is, if it is one the decision reads: an
  // element of type[]/category[] .coding[] (depth 5) or of serviceType/code .coding[] (depth 4).
  std::optional<Skim::Element> CodingAt(std::size_t d) const {
    if (d == 5 && array_[4] && key_[3] == K::kCoding && !array_[3] && array_[2]) {
      if (key_[1] == K::kType) return Skim::kType;
      if (key_[1] == K::kCategory) return Skim::kCategory;
    }
    if (d == 4 && array_[3] && key_[2] == K::kCoding && !array_[2]) {
      if (key_[1] == K::kServiceType) return Skim::kServiceType;
      if (key_[1] == K::kCode) return Skim::kCode;
    }
    return std::nullopt;
  }

  void Set(std::string_view& field, std::string_view v) {
    if (!field.empty()) out_.unsure = true;  // a member twice: the lossless parser decides
    field = v;
  }
  void SetCoding(std::string_view& field, bool& set, std::string_view v) {
    if (set) out_.unsure = true;
    set = true;
    field = v;
  }

  Skim& out_;
  std::size_t depth_ = 0;
  std::array<K, kMaxDepth + 1> key_{};
  std::array<bool, kMaxDepth + 1> array_{};
  std::size_t coding_depth_ = 0;  // depth of the Coding being read, 0 when none
  Skim::Coding coding_{};
  bool system_set_ = false, code_set_ = false;
};

bool NeedsFullRead(const Skim& s, const EngineConfig& config) {
  if (s.type == "Encounter") {
    auto activity = [&](std::string_view system, std::string_view code) {
      return config.activity_codes.Contains(system, code);
    };
    return s.AnyCoding(Skim::kType, activity) || s.AnyCoding(Skim::kServiceType, activity);
  }
  if (s.type == "Condition") {
    return s.AnyCoding(Skim::kCode, [&](std::string_view system, std::string_view code) {
      return config.chronic_conditions.Find(system, code) != nullptr;
    });
  }
  if (s.type == "Consent") {
    return s.AnyCoding(Skim::kCategory, [&](std::string_view system, std::string_view code) {
      return config.consent_codes.Contains(system, code);
    });
  }
  return true;  // Patient, CarePlan, Practitioner, PractitionerRole: always read
}

}  // namespace

Result<Extracted> ExtractFactFromLine(char* data, std::size_t size,
                                      const fhir::SourceLocation& where, const EngineConfig& config,
                                      std::string* scratch_buffer) {
  // One SAX pass that builds no tree (in situ, on a scratch copy; numbers as strings so that no
  // decimal is rejected for overflowing a double; iterative for long lines, so that no input can
  // exhaust the stack) decides whether the resource matters. Only those that do -- a few percent
  // of a bulk export -- are parsed again into the lossless DOM and read in full.
  std::string_view text(data, size);
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  // Bulk exports write resourceType first: a type no rule reads is dropped without parsing the
  // rest -- if it is an R4 type at all (one hash lookup): a misspelt one is no resource and is
  // refused, never dropped as if it were of a type the engine ignores.
  if (constexpr std::string_view kHead = "{\"resourceType\":\""; text.starts_with(kHead)) {
    std::size_t end = text.find('"', kHead.size());
    std::string_view type = end == std::string_view::npos
                                ? std::string_view()
                                : text.substr(kHead.size(), end - kHead.size());
    if (end != std::string_view::npos && !FactTypeNeeded(type) &&
        type.find('\\') == std::string_view::npos) {
      if (fhir::r4::IsResourceType(type)) return Extracted{};
      return MakeError(Errc::kInvalidResource, fhir::ResourceTypeProblem(type));
    }
  }
  if (fhir::json::FindInvalidUtf8(text) != std::string_view::npos) {
    // The lossless parser words the diagnosis ("line 1, column N: ...").
    auto v = fhir::json::Parse(std::string_view(data, size));
    return MakeError(Errc::kParseError,
                     fmt::format("invalid JSON: {}", v ? "invalid UTF-8" : v.error().message));
  }

  // In situ (strings decoded in place, not copied) on a scratch copy: the line itself must stay
  // intact for the full parse below.
  std::string& scratch = *scratch_buffer;
  scratch.reserve(text.size() + fhir::json::kInsituPadding);  // SIMD scans read ahead
  scratch.assign(text);
  Skim skim;
  Skimmer skimmer(skim);
  rapidjson::Reader reader;
  rapidjson::InsituStringStream stream(scratch.data());
  constexpr unsigned kFlags = rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseInsituFlag;
  rapidjson::ParseResult ok =
      scratch.size() <= kRecursiveParseLimit  // nests at most size/2 deep: safe to recurse
          ? reader.Parse<kFlags>(stream, skimmer)
          : reader.Parse<kFlags | rapidjson::kParseIterativeFlag>(stream, skimmer);
  if (!ok || !skim.object) {
    // The lossless parser gives the reference diagnosis (line, column, duplicate names...), and
    // says what a value that is no object is.
    auto v = fhir::json::Parse(std::string_view(data, size));
    if (!v) return MakeError(Errc::kParseError, fmt::format("invalid JSON: {}", v.error().message));
    if (!v->is_object()) {
      return MakeError(Errc::kParseError,
                       fmt::format("expected a FHIR resource (a JSON object), found {}",
                                   fhir::json::KindName(v->kind())));
    }
    if (std::string problem = fhir::ResourceTypeProblem(*v); !problem.empty()) {
      return MakeError(Errc::kInvalidResource, std::move(problem));
    }
    return ExtractFact(*v, where, config);
  }
  if (!FactTypeNeeded(skim.type)) {
    if (fhir::r4::IsResourceType(skim.type)) return Extracted{};
    // No resourceType, or not an R4 one (rare): the lossless reading words why (and recognises a
    // report record fed back as input).
    auto v = fhir::json::Parse(std::string_view(data, size));
    if (!v) return MakeError(Errc::kParseError, fmt::format("invalid JSON: {}", v.error().message));
    return MakeError(Errc::kInvalidResource, fhir::ResourceTypeProblem(*v));
  }
  if (!skim.id.empty() && !skim.unsure && !NeedsFullRead(skim, config)) {
    Extracted out;
    out.key.reserve(skim.type.size() + 1 + skim.id.size());
    out.key.append(skim.type).append(1, '/').append(skim.id);
    out.stored.stamp = StampOf(skim.version_id, skim.last_updated);
    out.patient = PatientKeyOfReference(skim.type == "Consent" ? skim.patient : skim.subject);
    return out;
  }
  fhir::json::ParseOptions options;
  options.keep_member = FactMemberNeeded;
  auto v = fhir::json::ParseInsitu(data, size, options);
  if (!v) return MakeError(Errc::kParseError, fmt::format("invalid JSON: {}", v.error().message));
  return ExtractFact(*v, where, config);
}

namespace {

std::uint64_t KeyHash(std::string_view key) { return std::hash<std::string_view>{}(key); }
constexpr std::uint64_t kTagMask = 0xffffffff00000000ULL;

}  // namespace

std::size_t FactStore::Probe(std::string_view key, std::uint64_t hash) const {
  // Linear probing; the table is at most half full, so runs stay short.
  const std::size_t mask = slots_.size() - 1;
  const std::uint64_t tag = hash & kTagMask;
  for (std::size_t i = static_cast<std::size_t>(hash) & mask;; i = (i + 1) & mask) {
    std::uint64_t slot = slots_[i];
    if (slot == 0) return i;
    if ((slot & kTagMask) == tag && At((slot & ~kTagMask) - 1).key == key) return i;
  }
}

void FactStore::Rebuild(std::size_t slots) {
  slots_.assign(slots, 0);
  const std::size_t mask = slots - 1;
  for (std::size_t n = 0; n < size_; ++n) {
    std::uint64_t hash = KeyHash(At(n).key);
    std::size_t i = static_cast<std::size_t>(hash) & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = (hash & kTagMask) | (n + 1);
  }
}

void FactStore::Reserve(std::size_t resources) {
  std::size_t want = 16;
  while (want < 2 * resources) want *= 2;
  if (want > slots_.size()) Rebuild(want);
  patients_.reserve(resources / 64);
}

const StoredFact* FactStore::Find(std::string_view key) const {
  if (slots_.empty()) return nullptr;
  std::uint64_t slot = slots_[Probe(key, KeyHash(key))];
  return slot == 0 ? nullptr : &At((slot & ~kTagMask) - 1).stored;
}

void FactStore::Add(Extracted e) {
  ++counts_.resources;
  if (e.key.empty()) {
    ++counts_.ignored_types;
    return;
  }
  if (e.stored.issues) counts_.issues += e.stored.issues->list.size();
  if (!e.patient.empty()) {
    bool clinical = !e.key.starts_with("Patient/") && !e.key.starts_with("Practitioner");
    // find first: emplace would build (allocate) a node before finding the patient is known.
    if (auto it = patients_.find(e.patient); it != patients_.end()) {
      it->second = it->second || clinical;
    } else {
      patients_.emplace(std::move(e.patient), clinical);
    }
  }
  if (2 * (size_ + 1) > slots_.size()) Rebuild(std::max<std::size_t>(16, 2 * slots_.size()));
  std::uint64_t hash = KeyHash(e.key);
  std::size_t i = Probe(e.key, hash);
  Entry* entry = nullptr;
  if (slots_[i] == 0) {
    if (e.stored.fact) ++counts_.kept;
    if ((size_ & (kChunk - 1)) == 0) chunks_.push_back(std::make_unique<Entry[]>(kChunk));
    entry = &At(size_++);
    entry->key = std::move(e.key);
    entry->stored = std::move(e.stored);
    slots_[i] = (hash & kTagMask) | size_;
  } else {
    ++counts_.duplicates;
    entry = &At((slots_[i] & ~kTagMask) - 1);
    if (!IsNewer(e.stored.stamp, entry->stored.stamp)) return;
    if (entry->stored.fact) --counts_.kept;
    if (e.stored.fact) ++counts_.kept;
    bool listed = entry->stored.listed;
    entry->stored = std::move(e.stored);
    entry->stored.listed = listed;
  }
  // Entries with a fact or issues are also listed, so that the engine visits them without
  // walking every version stamp.
  if ((entry->stored.fact || entry->stored.issues) && !entry->stored.listed) {
    entry->stored.listed = true;
    notable_.emplace_back(&entry->key, &entry->stored);
  }
}

void FactStore::Add(const Value& resource, const fhir::SourceLocation& where,
                    const EngineConfig& config) {
  Add(ExtractFact(resource, where, config));
}

}  // namespace ccm::gateway
