#include "gateway/writeback/careplan_writeback.h"

#include <fmt/format.h>

#include <chrono>
#include <utility>

#include "fhir/build.h"
#include "fhir/client/http_client.h"
#include "fhir/datetime.h"
#include "gateway/ccm/facts.h"

namespace ccm::gateway {
namespace {

using fhir::build::Coding;
using fhir::build::Ref;
using fhir::build::ReferenceId;
using fhir::build::Str;
using fhir::json::Value;

std::string Xhtml(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// The CMS care-plan elements the care team must fill (MLN909188, "comprehensive care plan"),
// each with the Chronic Care Model element it serves (Wagner et al., Eff Clin Pract 1998).
struct Placeholder {
  PlanElement element;
  std::string_view model;
  std::string_view model_display;
  std::string_view text;
};
constexpr Placeholder kPlaceholders[] = {
    {PlanElement::kGoals, "self-management-support", "Self-management support",
     "Measurable treatment goals, agreed with the patient"},
    {PlanElement::kSymptomManagement, "self-management-support", "Self-management support",
     "Symptom management"},
    {PlanElement::kInterventions, "delivery-system-design", "Delivery system design",
     "Planned interventions and the individuals responsible for each"},
    {PlanElement::kMedicationManagement, "decision-support", "Decision support",
     "Medication management (reconciliation, adherence, side effects)"},
    {PlanElement::kExpectedOutcome, "decision-support", "Decision support",
     "Expected outcome and prognosis"},
    {PlanElement::kCommunityResources, "community-resources", "Community resources",
     "Community and social services ordered, and how they are coordinated"},
    {PlanElement::kCoordination, "health-system-organization", "Health system organization",
     "Coordination with outside agencies and specialists"},
    {PlanElement::kReviewSchedule, "clinical-information-systems", "Clinical information systems",
     "Schedule for periodic review and, when applicable, revision of the plan"},
};

Value MonthlyStatus(const PatientMonth& r) {
  auto sub = [](std::string_view url, std::string_view type, Value v) {
    Value e = Value::MakeObject();
    e.set("url", Str(url));
    e.set(type, std::move(v));
    return e;
  };
  std::string billing;
  for (const auto& l : r.billing) {
    billing += fmt::format("{}{} x{}", billing.empty() ? "" : ", ", l.code, l.units);
  }
  if (billing.empty()) {
    billing = "not billable";
    for (const auto& b : r.blocked_by)
      billing += fmt::format("{}{}", billing.size() == 12 ? ": " : ", ", b);
  }
  Value parts = Value::MakeArray();
  parts.push_back(sub("month", "valueString", Str(r.month.ToString())));
  parts.push_back(sub("program", "valueCode", Str(ToCode(r.program))));
  parts.push_back(sub("consent", "valueCode", Str(ToCode(r.consent))));
  parts.push_back(sub("clinicalStaffMinutes", "valueInteger",
                      Value::Number(std::int64_t{r.minutes.clinical_staff})));
  parts.push_back(sub("practitionerMinutes", "valueInteger",
                      Value::Number(std::int64_t{r.minutes.practitioner})));
  parts.push_back(sub("billing", "valueString", Str(billing)));
  Value ext = Value::MakeObject();
  ext.set("url", Str(kMonthlyStatusExtension));
  ext.set("extension", std::move(parts));
  return ext;
}

std::string MonthOf(const Value& ext) {
  for (const auto& e : ext["extension"].array()) {
    if (e["url"].str() == "month") return std::string(e["valueString"].str());
  }
  return "";
}

// A Provenance of the gateway's write of `target` (a versioned reference when the version is
// known): activity CREATE or UPDATE, agent the gateway as assembler.
Value MakeProvenance(const WriteBackConfig& config, const std::string& target,
                     std::string_view action) {
  Value p = Value::MakeObject();
  p.set("resourceType", Str("Provenance"));
  p.set("target", Value::MakeArray({Ref(target)}));
  p.set("recorded", Str(fhir::NowUtc()));
  Value activity = Value::MakeObject();
  activity.set("coding",
               Value::MakeArray({Coding("http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                        action == "create" ? "CREATE" : "UPDATE")}));
  p.set("activity", std::move(activity));
  Value agent = Value::MakeObject();
  Value type = Value::MakeObject();
  type.set(
      "coding",
      Value::MakeArray({Coding("http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                               "assembler", "Assembler")}));
  agent.set("type", std::move(type));
  Value who = config.agent.empty() ? Value::MakeObject() : Ref(config.agent);
  who.set("display", Str("ccm-gateway"));
  agent.set("who", std::move(who));
  p.set("agent", Value::MakeArray({std::move(agent)}));
  return p;
}

// Creates `provenance` when configured; returns its reference ("" when none was written: then
// `error` says why, and an audit record keeps it).
std::string WriteProvenance(fhir::FhirClient& client, AuditTrail& store,
                            const WriteBackConfig& config, std::int64_t run,
                            const Value& provenance, const std::string& target,
                            const std::string& version, std::string& error) {
  if (!config.provenance) return "";
  // Provenance has no identifier (R4 provenance.html), but a version is written once: a create
  // conditional on the versioned target can be retried after a lost answer without making two.
  // Without a version a plain POST, not retried blindly (a lost answer leaves at most a missing
  // Provenance, which the audit log records).
  std::string versioned = version.empty() ? "" : fmt::format("{}/_history/{}", target, version);
  auto created = versioned.empty()
                     ? client.Create(provenance)
                     : client.Create(provenance, "target=" + fhir::EncodeQueryValue(versioned));
  if (created) return fmt::format("Provenance/{}", created->body["id"].str());
  error = fmt::format("its Provenance was not written: {}", created.error().message);
  static_cast<void>(store.AddAudit(
      AuditRow{0, "", run, "provenance-failed", target, version, created.error().message, ""}));
  return "";
}

Status RecordWrite(fhir::FhirClient& client, AuditTrail& store, const WriteBackConfig& config,
                   std::int64_t run, std::string_view action, const Value& written,
                   std::string& provenance_ref, std::string& provenance_error) {
  std::string target = fmt::format("CarePlan/{}", written["id"].str());
  std::string version(written["meta"]["versionId"].str());
  provenance_ref = WriteProvenance(
      client, store, config, run,
      MakeProvenance(config,
                     version.empty() ? target : fmt::format("{}/_history/{}", target, version),
                     action),
      target, version, provenance_error);
  CCM_TRY(store.AddAudit(
      AuditRow{0, "", run, std::string(action), target, version, "CCM care plan", provenance_ref}));
  return {};
}

// The audit target under which an attempted create of the patient's managed plan is recorded
// before it is sent: the conditional create's search.
std::string CreateSentTarget(const std::string& identifier) {
  return fmt::format("CarePlan?identifier={}", identifier);
}

// A create of `plan` whose answer was lost (applied by the server, never acknowledged) is found
// by the next look-up: an attempt is on record and no create record names the plan. It gets its
// create record and Provenance then, marked late. Returns whether it recorded one.
Result<bool> RecordLateCreate(fhir::FhirClient& client, AuditTrail& store,
                              const WriteBackConfig& config, std::int64_t run,
                              const std::string& identifier, const Value& plan,
                              std::string& provenance_error) {
  CCM_TRY_ASSIGN(auto attempts, store.AuditRecords(CreateSentTarget(identifier)));
  if (attempts.empty()) return false;
  std::string target = fmt::format("CarePlan/{}", plan["id"].str());
  CCM_TRY_ASSIGN(auto records, store.AuditRecords(target));
  for (const auto& a : records) {
    if (a.action == "create") return false;
  }
  // The version created is the plan's first; a clinician may have edited it since. Without a
  // history (a server may not offer it) the Provenance names the plan, not a version.
  std::string first_version;
  Status history = client.History("CarePlan", plan["id"].str(), std::nullopt,
                                  [&](Value& bundle, const fhir::PageInfo&) -> Status {
                                    for (const auto& e : bundle["entry"].array()) {
                                      std::string_view v = e["resource"]["meta"]["versionId"].str();
                                      if (!v.empty())
                                        first_version = std::string(v);  // oldest last
                                    }
                                    return {};
                                  });
  if (!history) first_version.clear();
  Value provenance = MakeProvenance(
      config, first_version.empty() ? target : fmt::format("{}/_history/{}", target, first_version),
      "create");
  // When the create happened: when it was sent (the last attempt on record).
  provenance.set("occurredDateTime", Str(attempts.back().at));
  Value late = Value::MakeObject();
  late.set("url", Str(kRecordedLateExtension));
  late.set("valueBoolean", Value::Bool(true));
  provenance.set("extension", Value::MakeArray({std::move(late)}));
  std::string provenance_ref = WriteProvenance(client, store, config, run, provenance, target,
                                               first_version, provenance_error);
  CCM_TRY(store.AddAudit(AuditRow{
      0, "", run, "create", target, first_version,
      fmt::format("CCM care plan; recorded late: the server applied the create sent at {} but "
                  "its answer was lost",
                  attempts.back().at),
      provenance_ref}));
  return true;
}

}  // namespace

std::string_view ToCode(CarePlanAction a) noexcept {
  switch (a) {
    case CarePlanAction::kCreated:
      return "created";
    case CarePlanAction::kUpdated:
      return "updated";
    case CarePlanAction::kUnchanged:
      return "unchanged";
    case CarePlanAction::kOtherPlan:
      return "other-active-plan";
    case CarePlanAction::kFailed:
      return "failed";
    case CarePlanAction::kWouldCreate:
      return "would-create";
    case CarePlanAction::kWouldUpdate:
      return "would-update";
  }
  return "";
}

bool WantsCarePlan(const PatientMonth& r) {
  // A merged or inactive record is not the patient's record any more: the survivor gets the plan.
  return r.program != Program::kNone && r.consent == ConsentState::kActive && !r.deceased &&
         !r.merged && !r.inactive;
}

Value NewCarePlan(const PatientMonth& r, const WriteBackConfig& config, std::string_view now) {
  Value plan = Value::MakeObject();
  plan.set("resourceType", Str("CarePlan"));
  Value meta = Value::MakeObject();
  meta.set(
      "profile",
      Value::MakeArray({Str("http://hl7.org/fhir/us/core/StructureDefinition/us-core-careplan")}));
  plan.set("meta", std::move(meta));

  std::string problems;
  for (const auto& c : r.chronic_conditions) {
    problems += fmt::format("{}{}", problems.empty() ? "" : ", ", Xhtml(c.display));
  }
  std::string todo;
  for (const auto& p : kPlaceholders) todo += fmt::format("<li>{}</li>", Xhtml(p.text));
  Value text = Value::MakeObject();
  text.set("status", Str("generated"));
  text.set("div", Str(fmt::format(
                      "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>Chronic care management "
                      "plan</b> ({}, draft created by ccm-gateway for the care team to complete "
                      "and activate)</p><p>Problems: {}</p><p>To complete:</p><ul>{}</ul></div>",
                      ToCode(r.program), problems.empty() ? "none recorded" : problems, todo)));
  plan.set("text", std::move(text));
  plan.set("identifier", Value::MakeArray({[&] {
             Value id = Value::MakeObject();
             id.set("system", Str(config.care_plan_identifier_system));
             id.set("value", Str(ReferenceId(r.patient)));
             return id;
           }()}));
  plan.set("status", Str("draft"));
  plan.set("intent", Str("plan"));
  Value categories = Value::MakeArray();
  {
    Value c = Value::MakeObject();
    c.set("coding",
          Value::MakeArray({Coding("http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                                   "assess-plan", "Assessment and Plan of Treatment")}));
    categories.push_back(std::move(c));
    Value ccm = Value::MakeObject();
    ccm.set("coding", Value::MakeArray({Coding(kCcmPlanCategorySystem, "ccm-comprehensive",
                                               "CCM comprehensive care plan")}));
    ccm.set("text", Str("Chronic care management comprehensive care plan"));
    categories.push_back(std::move(ccm));
  }
  plan.set("category", std::move(categories));
  plan.set("title", Str("Chronic care management plan"));
  plan.set("subject", Ref(r.patient));
  Value period = Value::MakeObject();
  period.set("start", Str(fmt::format("{}-01", r.month.ToString())));
  plan.set("period", std::move(period));
  plan.set("created", Str(now));
  if (!config.author.empty()) plan.set("author", Ref(config.author));
  if (!config.care_team.empty()) plan.set("careTeam", Value::MakeArray({Ref(config.care_team)}));
  Value activities = Value::MakeArray();
  for (const auto& p : kPlaceholders) {
    Value ext = Value::MakeObject();
    ext.set("url", Str(kPlaceholderExtension));
    ext.set("valueBoolean", Value::Bool(true));
    Value code = Value::MakeObject();
    code.set("coding",
             Value::MakeArray({Coding(kPlanElementSystem, ToCode(p.element)),
                               Coding(kChronicCareModelSystem, p.model, p.model_display)}));
    code.set("text", Str(p.text));
    Value detail = Value::MakeObject();
    detail.set("code", std::move(code));
    detail.set("status", Str("not-started"));
    detail.set("description", Str(fmt::format("To be completed by the care team: {}", p.text)));
    Value a = Value::MakeObject();
    a.set("extension", Value::MakeArray({std::move(ext)}));
    a.set("detail", std::move(detail));
    activities.push_back(std::move(a));
  }
  plan.set("activity", std::move(activities));
  ApplyOwned(plan, r);
  return plan;
}

bool ApplyOwned(Value& plan, const PatientMonth& r) {
  Value before = plan;
  // addresses: add what is newly counted, never remove (a clinician may have added others).
  for (const auto& c : r.chronic_conditions) {
    for (const auto& ref : c.conditions) {
      bool present = false;
      for (const auto& a : plan["addresses"].array())
        present = present || a["reference"].str() == ref;
      if (!present) {
        if (plan.find("addresses") == nullptr) plan.set("addresses", Value::MakeArray());
        plan.find("addresses")->push_back(Ref(ref));
      }
    }
  }
  // The month's status: one extension per month, replaced in place.
  Value status = MonthlyStatus(r);
  std::string month = r.month.ToString();
  bool replaced = false;
  if (Value* exts = plan.find("extension"); exts != nullptr && exts->is_array()) {
    for (Value& e : *exts->mutable_array()) {
      if (e["url"].str() == kMonthlyStatusExtension && MonthOf(e) == month) {
        if (!(e == status)) e = status;
        replaced = true;
        break;
      }
    }
  }
  if (!replaced) {
    if (plan.find("extension") == nullptr) plan.set("extension", Value::MakeArray());
    plan.find("extension")->push_back(std::move(status));
  }
  // The tag that marks the plan as gateway-managed.
  bool tagged = false;
  for (const auto& t : plan["meta"]["tag"].array()) {
    tagged = tagged || (t["system"].str() == kGatewayTagSystem && t["code"].str() == "ccm-managed");
  }
  if (!tagged) {
    if (plan.find("meta") == nullptr) plan.set("meta", Value::MakeObject());
    Value* meta = plan.find("meta");
    if (meta->find("tag") == nullptr) meta->set("tag", Value::MakeArray());
    meta->find("tag")->push_back(
        Coding(kGatewayTagSystem, "ccm-managed", "Managed by ccm-gateway"));
  }
  return !(plan == before);
}

Result<CarePlanSnapshot> ReadCarePlans(fhir::FhirClient& client,
                                       const std::vector<const PatientMonth*>& patients,
                                       const WriteBackConfig& config) {
  CarePlanSnapshot out;
  if (patients.empty()) return out;
  // "system|" matches every value of the system (R4 §3.1.1.5.5, token search).
  CCM_TRY_ASSIGN(
      auto managed,
      client.SearchAll("CarePlan", {{"identifier", config.care_plan_identifier_system + "|"}}));
  for (Value& plan : managed) {
    for (const auto& id : plan["identifier"].array()) {
      if (id["system"].str() == config.care_plan_identifier_system) {
        out.managed[std::string(id["value"].str())].push_back(plan);
      }
    }
  }
  std::vector<std::string> unmanaged;
  for (const PatientMonth* r : patients) {
    // An id that is not a FHIR id never goes into a search (WriteCarePlan refuses it).
    if (!fhir::IsValidId(ReferenceId(r->patient))) continue;
    if (!out.managed.contains(ReferenceId(r->patient))) unmanaged.push_back(r->patient);
  }
  // Servers limit URL length: the subjects go in chunks, as the sync's patient scope does.
  constexpr std::size_t kChunk = 40;
  for (std::size_t i = 0; i < unmanaged.size(); i += kChunk) {
    std::string subjects;
    for (std::size_t j = i; j < std::min(unmanaged.size(), i + kChunk); ++j) {
      subjects += (subjects.empty() ? "" : ",") + unmanaged[j];
    }
    CCM_TRY_ASSIGN(auto active,
                   client.SearchAll("CarePlan", {{"subject", subjects}, {"status", "active"}}));
    for (const Value& plan : active) {
      out.other_active.emplace(std::string(plan["subject"]["reference"].str()),
                               fmt::format("CarePlan/{}", plan["id"].str()));
    }
  }
  return out;
}

CarePlanWrite WriteCarePlan(fhir::FhirClient& client, AuditTrail& store, const PatientMonth& r,
                            const WriteBackConfig& config, std::int64_t run, bool dry_run,
                            const Result<CarePlanSnapshot>* read) {
  CarePlanWrite out;
  out.patient = r.patient;
  std::string identifier =
      fmt::format("{}|{}", config.care_plan_identifier_system, ReferenceId(r.patient));
  auto fail = [&](std::string message) {
    out.action = CarePlanAction::kFailed;
    out.message = std::move(message);
    auto audit = store.AddAudit(AuditRow{0, "", run, "error",
                                         out.reference.empty() ? r.patient : out.reference, "",
                                         fmt::format("{}: {}", r.patient, out.message), ""});
    if (audit) out.audit = *audit;
    return out;
  };
  if (!fhir::IsValidId(ReferenceId(r.patient))) {
    // The id goes into an identifier search (R4 id: [A-Za-z0-9\-\.]{1,64}); anything else could
    // match another patient's plan or none.
    return fail(
        "the patient's id is not a FHIR id (letters, digits, '-' and '.', at most 64); no care "
        "plan is written for it (correct the record's id in the EHR)");
  }
  const CarePlanSnapshot* snapshot = nullptr;
  if (read != nullptr && *read) {
    snapshot = &**read;
  } else if (read != nullptr) {
    const Error& e = read->error();
    if (e.is(Errc::kNetwork) || e.is(Errc::kTimeout) || e.is(Errc::kServerError)) {
      return fail(e.message);
    }
  }
  for (int attempt = 0; attempt <= config.max_conflict_retries; ++attempt) {
    bool fresh = attempt == 0 && snapshot != nullptr;
    Result<std::vector<Value>> found = std::vector<Value>();
    if (fresh) {
      if (auto it = snapshot->managed.find(ReferenceId(r.patient)); it != snapshot->managed.end()) {
        found = it->second;
      }
    } else {
      found = client.SearchAll("CarePlan", {{"identifier", identifier}});
    }
    if (!found) return fail(found.error().message);
    if (found->size() > 1) {
      return fail(
          // The identifier's value is the patient id: the audit record names the patient, the
          // message (which reaches the log) does not.
          fmt::format("{} CarePlans carry the gateway's identifier ({}|<patient id>) of one "
                      "patient; the gateway manages one per patient: merge them or retire all "
                      "but one in the EHR",
                      found->size(), config.care_plan_identifier_system));
    }
    if (found->empty()) {
      std::string other;
      if (fresh) {
        if (auto it = snapshot->other_active.find(r.patient); it != snapshot->other_active.end()) {
          other = it->second;
        }
      } else {
        auto others = client.SearchAll("CarePlan", {{"subject", r.patient}, {"status", "active"}});
        if (!others) return fail(others.error().message);
        if (!others->empty()) other = fmt::format("CarePlan/{}", (*others)[0]["id"].str());
      }
      if (!other.empty()) {
        out.action = CarePlanAction::kOtherPlan;
        out.reference = other;
        out.message = "the patient has an active care plan the gateway does not manage";
        return out;
      }
      if (dry_run) {
        out.action = CarePlanAction::kWouldCreate;
        return out;
      }
      Value plan = NewCarePlan(r, config, fhir::NowUtc());
      // On record before it is sent: if the answer is lost, the next look-up that finds the plan
      // records the create then (RecordLateCreate).
      if (auto sent =
              store.AddAudit(AuditRow{0, "", run, "create-sent", CreateSentTarget(identifier), "",
                                      "conditional create of the CCM care plan", ""});
          !sent) {
        return fail(sent.error().message);
      }
      auto created = client.Create(plan, "identifier=" + fhir::EncodeQueryValue(identifier));
      if (!created) return fail(created.error().message);
      out.reference = fmt::format("CarePlan/{}", created->body["id"].str());
      out.version = std::string(created->body["meta"]["versionId"].str());
      if (created->status != 201) continue;  // created meanwhile by another run: update that one
      std::string provenance;
      if (Status s = RecordWrite(client, store, config, run, "create", created->body, provenance,
                                 out.provenance_error);
          !s) {
        return fail(s.error().message);
      }
      out.action = CarePlanAction::kCreated;
      return out;
    }
    Value plan = std::move(found->front());
    out.reference = fmt::format("CarePlan/{}", plan["id"].str());
    std::string version(plan["meta"]["versionId"].str());
    if (!dry_run && !out.recorded_late) {
      auto late =
          RecordLateCreate(client, store, config, run, identifier, plan, out.provenance_error);
      if (!late) return fail(late.error().message);
      out.recorded_late = *late;
    }
    if (!ApplyOwned(plan, r)) {
      out.action = CarePlanAction::kUnchanged;
      out.version = version;
      return out;
    }
    if (dry_run) {
      out.action = CarePlanAction::kWouldUpdate;
      return out;
    }
    auto updated =
        client.Update(plan, version.empty() ? std::nullopt : std::optional<std::string>(version));
    if (!updated && updated.error().is(Errc::kConflict)) {
      ++out.conflicts;  // changed since we read it: read again, re-apply, try again
      continue;
    }
    if (!updated) return fail(updated.error().message);
    out.version = std::string(updated->body["meta"]["versionId"].str());
    std::string provenance;
    if (Status s = RecordWrite(client, store, config, run, "update", updated->body, provenance,
                               out.provenance_error);
        !s) {
      return fail(s.error().message);
    }
    out.action = CarePlanAction::kUpdated;
    return out;
  }
  return fail(
      fmt::format("{} kept changing while we updated it ({} conflicts); left for the "
                  "next run",
                  out.reference, out.conflicts));
}

}  // namespace ccm::gateway
