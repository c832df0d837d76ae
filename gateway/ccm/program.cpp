#include "gateway/ccm/program.h"

#include <fmt/format.h>

#include "gateway/base/config_keys.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;

constexpr std::int64_t kWhole = 10'000;  // basis points in 1

// A decimal share in [0, 1] with at most 4 decimals ("0.68") to basis points, from its text:
// shares, like amounts, never go through a double.
Result<std::int64_t> ShareKey(const Value& parent, std::string_view key, std::string_view origin,
                              std::string_view path, std::int64_t fallback) {
  const Value* v = parent.find(key);
  if (v == nullptr) return fallback;
  const std::string full = config::Join(path, key);
  auto bad = [&] {
    return config::ConfigError(origin, full, "expected a share from 0 to 1, e.g. 0.68");
  };
  if (!v->is_number()) return bad();
  std::string_view text = v->number_text();
  if (text.find_first_of("eE-") != std::string_view::npos) return bad();
  std::size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  if (frac.size() > 4 || whole.size() > 1) return bad();
  std::int64_t bp = (whole.empty() ? 0 : whole[0] - '0') * kWhole;
  std::int64_t scale = 1000;
  for (char c : frac) {
    bp += (c - '0') * scale;
    scale /= 10;
  }
  if (bp > kWhole) return bad();
  return bp;
}

std::int64_t Ratio(std::size_t num, std::size_t den) {
  return den == 0 ? 0 : static_cast<std::int64_t>(num) * kWhole / static_cast<std::int64_t>(den);
}

// population x qualify x enrol x net, rounded down once at the end. Split at 10^8 (bp x bp) so
// that no product overflows 64 bits for any practice size.
Cents Project(std::size_t population, std::int64_t qualify_bp, std::int64_t enrol_bp, Cents net) {
  const std::int64_t x = static_cast<std::int64_t>(population) * qualify_bp * enrol_bp;
  constexpr std::int64_t kScale = kWhole * kWhole;
  return x / kScale * net + x % kScale * net / kScale;
}

Value Share(std::int64_t bp) {
  return Value::Number(fmt::format("{}.{:04}", bp / kWhole, bp % kWhole));
}

}  // namespace

Result<ProgramAssumptions> ProgramAssumptionsFromJson(const Value* program,
                                                      std::string_view origin) {
  ProgramAssumptions a;
  if (program == nullptr) return a;
  if (!program->is_object()) return config::ConfigError(origin, "program", "expected an object");
  CCM_TRY(config::CheckKeys(*program, origin, "program", {"assumptions"}));
  CCM_TRY_ASSIGN(const Value* s, config::Section(*program, "assumptions", origin, "program"));
  if (s == nullptr) return a;
  const std::string path = "program.assumptions";
  CCM_TRY(
      config::CheckKeys(*s, origin, path, {"qualifyShare", "enrolShare", "netPerPatientMonth"}));
  CCM_TRY_ASSIGN(a.qualify_bp, ShareKey(*s, "qualifyShare", origin, path, a.qualify_bp));
  CCM_TRY_ASSIGN(a.enrol_bp, ShareKey(*s, "enrolShare", origin, path, a.enrol_bp));
  if (const Value* net = s->find("netPerPatientMonth")) {
    auto cents = net->is_number() ? ParseCents(net->number_text())
                                  : Result<Cents>(MakeError(Errc::kInvalidArgument, ""));
    if (!cents) {
      return config::ConfigError(origin, config::Join(path, "netPerPatientMonth"),
                                 "expected an amount such as 46.67");
    }
    a.net_per_patient_month = *cents;
  }
  return a;
}

ProgramPicture BuildProgram(const std::vector<PatientMonth>& records, const Worklist& worklist,
                            const ProgramAssumptions& assumptions) {
  ProgramPicture p;
  p.month = worklist.month;
  p.assumed = assumptions;
  for (const PatientMonth& r : records) {
    ++p.population;
    // As Summarize counts them: a deceased patient is not eligible for the month.
    const bool eligible = r.program != Program::kNone && !r.deceased;
    if (eligible && r.program == Program::kCcm) ++p.eligible_ccm;
    if (eligible && r.program == Program::kPcm) ++p.eligible_pcm;
    if (eligible && r.consent == ConsentState::kActive) ++p.consented;
    if (!r.billing.empty()) ++p.billable;
    p.billed += r.expected_payment;
  }
  for (const WorkItem& i : worklist.items) {
    if (i.reason != WorkReason::kNearThreshold || !i.next) continue;
    ++p.near_threshold;
    p.at_stake += i.next->value.value_or(0);
  }
  const std::size_t eligible = p.eligible_ccm + p.eligible_pcm;
  p.observed_qualify_bp = Ratio(eligible, p.population);
  p.observed_enrol_bp = Ratio(p.consented, eligible);
  p.observed_net_per_patient_month =
      p.billable == 0 ? 0 : p.billed / static_cast<Cents>(p.billable);
  p.projected_assumed = Project(p.population, assumptions.qualify_bp, assumptions.enrol_bp,
                                assumptions.net_per_patient_month);
  p.projected_observed = Project(p.population, p.observed_qualify_bp, p.observed_enrol_bp,
                                 p.observed_net_per_patient_month);
  return p;
}

Value ToJson(const ProgramPicture& p, const std::string& currency) {
  auto count = [](std::size_t n) { return Value::Number(static_cast<std::int64_t>(n)); };
  auto money = [](Cents c) { return Value::Number(FormatCents(c)); };
  Value v = Value::MakeObject();
  v.set("month", Value::String(p.month.ToString()));
  v.set("currency", Value::String(currency));
  const std::size_t eligible = p.eligible_ccm + p.eligible_pcm;
  Value funnel = Value::MakeArray();
  auto stage = [&](std::string_view name, std::size_t n, std::size_t previous) {
    Value s = Value::MakeObject();
    s.set("stage", Value::String(std::string(name)));
    s.set("count", count(n));
    s.set("shareOfPrevious", Share(Ratio(n, previous)));
    s.set("shareOfPopulation", Share(Ratio(n, p.population)));
    funnel.push_back(std::move(s));
  };
  stage("population", p.population, p.population);
  stage("eligible", eligible, p.population);
  stage("consented", p.consented, eligible);
  stage("billable", p.billable, p.consented);
  v.set("funnel", std::move(funnel));
  Value by_program = Value::MakeObject();
  by_program.set("CCM", count(p.eligible_ccm));
  by_program.set("PCM", count(p.eligible_pcm));
  v.set("eligibleByProgram", std::move(by_program));
  Value revenue = Value::MakeObject();
  revenue.set("billed", money(p.billed));
  revenue.set("atStake", money(p.at_stake));
  revenue.set("nearThreshold", count(p.near_threshold));
  v.set("revenue", std::move(revenue));
  auto rates = [&](std::int64_t q, std::int64_t e, Cents net, Cents projected) {
    Value r = Value::MakeObject();
    r.set("qualifyShare", Share(q));
    r.set("enrolShare", Share(e));
    r.set("netPerPatientMonth", money(net));
    r.set("projectedMonthly", money(projected));
    return r;
  };
  Value projection = Value::MakeObject();
  projection.set("formula", Value::String("population x qualifyShare x enrolShare x "
                                          "netPerPatientMonth"));
  projection.set("assumed", rates(p.assumed.qualify_bp, p.assumed.enrol_bp,
                                  p.assumed.net_per_patient_month, p.projected_assumed));
  projection.set("observed", rates(p.observed_qualify_bp, p.observed_enrol_bp,
                                   p.observed_net_per_patient_month, p.projected_observed));
  v.set("projection", std::move(projection));
  return v;
}

}  // namespace ccm::gateway
