#include "gateway/ccm/report.h"

#include <fmt/format.h>

#include <algorithm>

namespace ccm::gateway {
namespace {

using fhir::json::Value;

Value Str(std::string_view s) { return Value::String(std::string(s)); }

Value StrArray(const std::vector<std::string>& items) {
  Value a = Value::MakeArray();
  for (const auto& s : items) a.push_back(Str(s));
  return a;
}

Value Money(Cents c) { return Value::Number(FormatCents(c)); }

Value MinutesJson(const Minutes& m) {
  Value o = Value::MakeObject();
  o.set("clinicalStaff", Value::Number(m.clinical_staff));
  o.set("practitioner", Value::Number(m.practitioner));
  return o;
}

std::string Instant(const std::optional<TimePoint>& t) {
  return t ? fhir::FormatUtc(*t) : std::string();
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::string Codes(const PatientMonth& r) {
  std::vector<std::string> codes;
  for (const auto& l : r.billing) {
    codes.push_back(l.units == 1 ? l.code : fmt::format("{}x{}", l.code, l.units));
  }
  return Join(codes, " ");
}

}  // namespace

Value ToJson(const BillingLine& l) {
  Value e = Value::MakeObject();
  e.set("code", Str(l.code));
  e.set("units", Value::Number(std::int64_t{l.units}));
  e.set("amount", l.amount ? Money(*l.amount) : Value());
  e.set("encounters", StrArray(l.encounters));
  return e;
}

Value ToJson(const PatientMonth& r, const EngineConfig& config) {
  Value o = Value::MakeObject();
  o.set("patient", Str(r.patient));
  o.set("month", Str(r.month.ToString()));
  o.set("program", r.program == Program::kNone ? Value() : Str(ToCode(r.program)));
  Value conditions = Value::MakeArray();
  for (const auto& c : r.chronic_conditions) {
    Value e = Value::MakeObject();
    e.set("category", Str(c.category));
    e.set("display", Str(c.display));
    e.set("conditions", StrArray(c.conditions));
    conditions.push_back(std::move(e));
  }
  o.set("chronicConditions", std::move(conditions));
  o.set("deceased", Value::Bool(r.deceased));
  // Only for merged records and survivors, so that other records read as before.
  if (r.merged) o.set("replacedBy", r.replaced_by.empty() ? Value() : Str(r.replaced_by));
  if (!r.merged_from.empty()) o.set("mergedFrom", StrArray(r.merged_from));
  o.set("consent", Str(ToCode(r.consent)));
  if (r.consent_from) o.set("consentFrom", Str(Instant(r.consent_from)));
  o.set("carePlan", Str(ToCode(r.care_plan)));
  o.set("minutes", MinutesJson(r.minutes));
  o.set("billableMinutes", MinutesJson(r.billable_minutes));
  Value billing = Value::MakeArray();
  for (const auto& l : r.billing) billing.push_back(ToJson(l));
  o.set("billing", std::move(billing));
  o.set("blockedBy", StrArray(r.blocked_by));
  o.set("expectedPayment", Money(r.expected_payment));
  o.set("currency", Str(config.fee_schedule.currency));
  o.set("feeScheduleYear", Value::Number(std::int64_t{config.fee_schedule.year}));
  if (r.care_plan == CarePlanState::kActive) {
    Value cp = Value::MakeObject();
    cp.set("reference", Str(r.care_plan_reference));
    cp.set("missingElements", StrArray(r.care_plan_gaps));
    cp.set("lastRevised",
           r.care_plan_last_revised ? Str(Instant(r.care_plan_last_revised)) : Value());
    cp.set("needsReview", Value::Bool(r.care_plan_stale));
    o.set("carePlanCompleteness", std::move(cp));
  }
  o.set("notes", StrArray(r.notes));
  Value evidence = Value::MakeObject();
  std::vector<std::string> condition_refs;
  for (const auto& c : r.chronic_conditions) {
    condition_refs.insert(condition_refs.end(), c.conditions.begin(), c.conditions.end());
  }
  std::sort(condition_refs.begin(), condition_refs.end());
  evidence.set("conditions", StrArray(condition_refs));
  Value encounters = Value::MakeArray();
  for (const auto& e : r.encounters) {
    Value ev = Value::MakeObject();
    ev.set("reference", Str(e.reference));
    ev.set("code", Str(e.code));
    ev.set("start", e.start ? Str(Instant(e.start)) : Value());
    ev.set("seconds", Value::Number(e.micros / 1'000'000));
    ev.set("countedSeconds", Value::Number(e.counted_micros / 1'000'000));
    ev.set("billableSeconds", Value::Number(e.billable_micros / 1'000'000));
    ev.set("timeOf", Str(e.practitioner ? "practitioner" : "clinicalStaff"));
    ev.set("performer", e.performer.empty() ? Value() : Str(e.performer));
    ev.set("counted", Value::Bool(e.counted));
    ev.set("billable", Value::Bool(e.billable));
    if (!e.reason.empty()) ev.set("reason", Str(e.reason));
    encounters.push_back(std::move(ev));
  }
  evidence.set("encounters", std::move(encounters));
  evidence.set("consents", StrArray(r.consents));
  evidence.set("carePlans", StrArray(r.care_plans));
  o.set("evidence", std::move(evidence));
  Value issues = Value::MakeArray();
  for (const auto& i : r.issues) {
    Value e = Value::MakeObject();
    e.set("severity", Str(fhir::ToCode(i.severity)));
    e.set("code", Str(fhir::ToCode(i.code)));
    if (!i.path.empty()) e.set("path", Str(i.path));
    e.set("message", Str(i.message));
    if (!i.location.empty()) e.set("location", Str(i.location));
    issues.push_back(std::move(e));
  }
  o.set("issues", std::move(issues));
  return o;
}

std::string ToNdjson(const std::vector<PatientMonth>& results, const EngineConfig& config) {
  std::string out;
  for (const auto& r : results) {
    fhir::json::SerializeTo(ToJson(r, config), out);
    out += '\n';
  }
  return out;
}

std::string CsvField(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string ToCsv(const std::vector<PatientMonth>& results) {
  std::string out =
      "patient,month,program,chronic_condition_count,chronic_conditions,consent,care_plan,"
      "staff_minutes,practitioner_minutes,billable_staff_minutes,billable_practitioner_minutes,"
      "codes,expected_payment,blocked_by,care_plan_missing_elements,notes\r\n";
  for (const auto& r : results) {
    std::vector<std::string> categories;
    for (const auto& c : r.chronic_conditions) categories.push_back(c.category);
    std::vector<std::string> fields = {
        r.patient,
        r.month.ToString(),
        std::string(ToCode(r.program)),
        std::to_string(r.chronic_conditions.size()),
        Join(categories, ";"),
        std::string(ToCode(r.consent)),
        std::string(ToCode(r.care_plan)),
        std::to_string(r.minutes.clinical_staff),
        std::to_string(r.minutes.practitioner),
        std::to_string(r.billable_minutes.clinical_staff),
        std::to_string(r.billable_minutes.practitioner),
        Codes(r),
        FormatCents(r.expected_payment),
        Join(r.blocked_by, ";"),
        Join(r.care_plan_gaps, ";"),
        Join(r.notes, ";"),
    };
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i != 0) out += ',';
      out += CsvField(fields[i]);
    }
    out += "\r\n";
  }
  return out;
}

std::string ToTable(const std::vector<PatientMonth>& results, const EngineConfig& config) {
  std::string month = results.empty() ? "" : results.front().month.ToString();
  std::string out = fmt::format("CCM month {} ({}; fee schedule {} {})\n\n", month,
                                config.practice.time_zone_name, config.fee_schedule.year,
                                config.fee_schedule.currency);
  out += fmt::format("{:<38} {:<7} {:>5} {:<8} {:<8} {:>6} {:>6}  {:<16} {:>9}  {}\n", "patient",
                     "program", "cond", "consent", "plan", "staff", "pract", "codes", "expected",
                     "blocked by / notes");
  out += std::string(132, '-') + "\n";
  for (const auto& r : results) {
    std::string id = r.patient.starts_with("Patient/") ? r.patient.substr(8) : r.patient;
    if (id.size() > 38) id = id.substr(0, 37) + "~";
    std::vector<std::string> why = r.blocked_by;
    why.insert(why.end(), r.notes.begin(), r.notes.end());
    std::string row = fmt::format(
        "{:<38} {:<7} {:>5} {:<8} {:<8} {:>6} {:>6}  {:<16} {:>9}  {}", id,
        r.program == Program::kNone ? "-" : ToCode(r.program), r.chronic_conditions.size(),
        ToCode(r.consent), ToCode(r.care_plan), r.minutes.clinical_staff, r.minutes.practitioner,
        r.billing.empty() ? "-" : Codes(r), FormatCents(r.expected_payment), Join(why, ", "));
    while (!row.empty() && row.back() == ' ') row.pop_back();  // no trailing blanks
    out += row + "\n";
  }
  EvaluationSummary s = Summarize(results);
  out += std::string(132, '-') + "\n";
  out += fmt::format(
      "patients {}  eligible {}  consented {}  billable {}  minutes: staff {} practitioner {}  "
      "expected revenue {} {}\n",
      s.patients, s.eligible, s.consented, s.billable, s.minutes.clinical_staff,
      s.minutes.practitioner, FormatCents(s.expected_payment), config.fee_schedule.currency);
  return out;
}

}  // namespace ccm::gateway
