#include "gateway/ccm/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

namespace ccm::gateway {
namespace {

using fhir::ConditionVerificationStatus;
using fhir::ConsentStatus;
using fhir::InstantRange;

constexpr std::int64_t kMicrosPerMinute = 60'000'000;

struct PatientFacts {
  const PatientFact* patient = nullptr;
  std::vector<std::pair<const std::string*, const ConditionFact*>> conditions;
  std::vector<std::pair<const std::string*, const EncounterFact*>> encounters;
  std::vector<std::pair<const std::string*, const ConsentFact*>> consents;
  std::vector<std::pair<const std::string*, const CarePlanFact*>> care_plans;
  std::vector<fhir::Issue> issues;
};

// Resolves performers to "is a billing practitioner" (rule 7): a configured reference, a
// configured NPI, a Practitioner carrying a configured NPI, or a PractitionerRole of one.
class BillerIndex {
 public:
  BillerIndex(const FactStore& facts, const PracticeConfig& practice)
      : facts_(facts), practice_(practice) {}

  bool IsBiller(const std::string& performer, int depth = 0) const {
    if (practice_.billing_practitioner_refs.contains(performer)) return true;
    if (performer.starts_with("npi:")) {
      return practice_.billing_practitioner_npis.contains(std::string_view(performer).substr(4));
    }
    const StoredFact* stored = facts_.Find(performer);
    if (stored == nullptr || !stored->fact) return false;
    if (const auto* p = std::get_if<PractitionerFact>(stored->fact.get())) {
      return std::any_of(p->npis.begin(), p->npis.end(), [&](const std::string& n) {
        return practice_.billing_practitioner_npis.contains(n);
      });
    }
    if (const auto* r = std::get_if<PractitionerRoleFact>(stored->fact.get())) {
      return depth == 0 && !r->practitioner.empty() && IsBiller(r->practitioner, 1);
    }
    return false;
  }

 private:
  const FactStore& facts_;
  const PracticeConfig& practice_;
};

// Rule 1: does the condition count for the month?
bool ConditionCounts(const ConditionFact& c, const InstantRange& month, const RuleConfig& rules) {
  if (c.status_unreadable) return false;
  if (c.verification && rules.excluded_verification.contains(*c.verification)) return false;
  if (c.onset_from && *c.onset_from >= month.end) return false;
  if (c.abatement == Abatement::kUnknownDate) return false;
  if (c.abatement == Abatement::kAt && c.abated_from < month.start) return false;
  return true;
}

struct ConsentOutcome {
  ConsentState state = ConsentState::kNone;
  std::optional<TimePoint> from;
};

// Rule 4. A permit consent is in effect from its start; an `active` one until its end, an
// `inactive` one (revoked) until its provision.period.end. CMS: a revocation takes effect at the
// end of the month, so being in effect at any time in the month is enough.
ConsentOutcome EvaluateConsents(const PatientFacts& pf, const InstantRange& month) {
  ConsentOutcome out;
  bool revoked = false;
  for (const auto& [key, c] : pf.consents) {
    if (!c->status) continue;
    switch (*c->status) {
      case ConsentStatus::kDraft:
      case ConsentStatus::kProposed:
      case ConsentStatus::kEnteredInError:
        continue;  // not (or never) a consent
      case ConsentStatus::kRejected:
        revoked = true;
        continue;
      case ConsentStatus::kActive:
      case ConsentStatus::kInactive:
        break;
    }
    if (c->deny) {
      revoked = true;
      continue;
    }
    bool inactive = *c->status == ConsentStatus::kInactive;
    if (inactive && !c->end) {
      revoked = true;  // revoked at an unknown date: conservatively, before the month
      continue;
    }
    if (!c->start) continue;  // start unknown: a warning was recorded; nothing billed under it
    if (*c->start >= month.end) continue;  // takes effect after the month
    if (c->end && *c->end <= month.start) {
      revoked = true;
      continue;
    }
    out.state = ConsentState::kActive;
    if (!out.from || *c->start < *out.from) out.from = c->start;
  }
  if (out.state != ConsentState::kActive && revoked) out.state = ConsentState::kRevoked;
  return out;
}

// Rule 5: in effect during the month. A plan since completed still counts for a month its period
// covers (re-running an old month must not change its answer); a revoked one never does.
bool PlanInEffect(const CarePlanFact& p, const InstantRange& month) {
  if (!p.status || !p.intent_ok) return false;
  bool status_ok = *p.status == fhir::CarePlanStatus::kActive ||
                   (*p.status == fhir::CarePlanStatus::kCompleted && p.period_end);
  if (!status_ok) return false;
  if (p.period_start && *p.period_start >= month.end) return false;
  if (p.period_end && *p.period_end <= month.start) return false;
  return true;
}

struct Interval {
  TimePoint start, end;
  std::size_t evidence;  // index into PatientMonth::encounters
};

// Union of one performer's intervals: sets `field` on each interval's evidence to the part of it
// not already covered by an earlier (or equal-start, earlier-listed) interval.
void UnionMicros(std::vector<Interval>& intervals, std::vector<EncounterEvidence>& evidence,
                 std::int64_t EncounterEvidence::*field) {
  std::sort(intervals.begin(), intervals.end(), [](const Interval& a, const Interval& b) {
    return a.start != b.start ? a.start < b.start : a.evidence < b.evidence;
  });
  TimePoint covered = TimePoint::min();
  for (const Interval& i : intervals) {
    TimePoint from = std::max(i.start, covered);
    evidence[i.evidence].*field = i.end > from ? (i.end - from).count() : 0;
    covered = std::max(covered, i.end);
  }
}

struct Option {
  std::vector<BillingLine> lines;
  Cents amount = 0;
  bool practitioner_pool = false;  // draws on practitioner time only
};

void AddLine(Option& o, std::string_view code, std::int64_t units, const EngineConfig& config) {
  auto cap = config.rules.max_units.find(code);
  if (cap != config.rules.max_units.end()) units = std::min<std::int64_t>(units, cap->second);
  if (units <= 0) return;
  BillingLine line;
  line.code = std::string(code);
  line.units = static_cast<int>(units);
  if (auto rate = config.fee_schedule.Rate(code)) {
    line.amount = *rate * units;
    o.amount += *line.amount;
  }
  o.lines.push_back(std::move(line));
}

// A base code at `threshold` minutes plus add-on units per further full `step` minutes.
Option Family(std::int64_t minutes, const CodeFamily& f, const EngineConfig& config) {
  Option o;
  o.practitioner_pool = f.practitioner_time;
  if (minutes < f.threshold_minutes) return o;
  AddLine(o, f.base, 1, config);
  AddLine(o, f.add_on, (minutes - f.threshold_minutes) / f.step_minutes, config);
  return o;
}

// Rule 8's families (docs/ccm-rules.md "Codes" cites CPT and the PFS for each threshold).
constexpr CodeFamily kFamilies[] = {
    {Program::kCcm, "99490", 20, "99439", 20, false, false},  // CCM, clinical staff
    {Program::kCcm, "99487", 60, "99489", 30, false, true},   // complex CCM
    {Program::kCcm, "99491", 30, "99437", 30, true, false},   // CCM, billing practitioner
    {Program::kPcm, "99426", 30, "99427", 30, false, false},  // PCM, clinical staff
    {Program::kPcm, "99424", 30, "99425", 30, true, false},   // PCM, billing practitioner
};

}  // namespace

Result<YearMonth> YearMonth::Parse(std::string_view text) {
  auto bad = [&] {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("\"{}\" is not a month (expected YYYY-MM, e.g. 2026-10)", text));
  };
  if (text.size() != 7 || text[4] != '-') return bad();
  YearMonth ym;
  auto [e1, c1] = std::from_chars(text.data(), text.data() + 4, ym.year);
  auto [e2, c2] = std::from_chars(text.data() + 5, text.data() + 7, ym.month);
  if (c1 != std::errc() || c2 != std::errc() || e1 != text.data() + 4 || e2 != text.data() + 7 ||
      ym.year < 1900 || ym.month < 1 || ym.month > 12) {
    return bad();
  }
  return ym;
}

std::string YearMonth::ToString() const { return fmt::format("{:04}-{:02}", year, month); }

std::string_view ToCode(Program p) noexcept {
  switch (p) {
    case Program::kCcm:
      return "CCM";
    case Program::kPcm:
      return "PCM";
    case Program::kNone:
      break;
  }
  return "";
}

std::string_view ToCode(ConsentState c) noexcept {
  switch (c) {
    case ConsentState::kActive:
      return "active";
    case ConsentState::kRevoked:
      return "revoked";
    case ConsentState::kNone:
      break;
  }
  return "none";
}

std::string_view ToCode(CarePlanState c) noexcept {
  switch (c) {
    case CarePlanState::kActive:
      return "active";
    case CarePlanState::kDraft:
      return "draft";
    case CarePlanState::kMissing:
      break;
  }
  return "missing";
}

std::span<const CodeFamily> CodeFamilies() noexcept { return kFamilies; }

std::vector<BillingLine> ChooseCodes(Program program, Minutes billable, std::int64_t combined,
                                     bool complex_documented, const EngineConfig& config) {
  // The billing practitioner's own time may count toward the clinical-staff codes (CMS FAQ), so
  // staff-code options draw on both pools; the practitioner codes on the practitioner's alone.
  const std::int64_t all = combined;
  const std::int64_t own = billable.practitioner;
  std::vector<Option> options;
  for (const CodeFamily& f : kFamilies) {
    if (f.program != program || (f.complex && !complex_documented)) continue;
    options.push_back(Family(f.practitioner_time ? own : all, f, config));
  }
  // The code families are mutually exclusive in a month (docs/ccm-rules.md, rule 8): pick the one
  // that pays most; on a tie, the earlier (staff before practitioner codes).
  const Option* best = nullptr;
  for (const Option& o : options) {
    if (o.lines.empty()) continue;
    if (best == nullptr || o.amount > best->amount) best = &o;
  }
  if (best == nullptr) return {};
  std::vector<BillingLine> lines = best->lines;
  if (best->practitioner_pool) {
    for (auto& l : lines) l.practitioner_time = true;
  }
  return lines;
}

namespace {

// The month being evaluated and what every rule reads.
struct MonthContext {
  YearMonth ym;
  InstantRange month;
  const EngineConfig& config;
  const BillerIndex& billers;
};

// Each patient's facts (sorted by resource key, so the output does not depend on hashing) and the
// issues of the resources that name the patient.
std::map<std::string, PatientFacts, std::less<>> GroupByPatient(const FactStore& facts) {
  std::map<std::string, PatientFacts, std::less<>> by_patient;
  for (const auto& [patient, clinical] : facts.patients()) {
    if (clinical) by_patient[patient];
  }
  // Issues keyed by resource so that their order does not depend on hashing.
  std::map<std::string_view, std::vector<std::pair<const std::string*, const fhir::IssueList*>>>
      issues_by_patient;
  for (const auto& [key_ptr, stored_ptr] : facts.notable()) {
    const std::string& key = *key_ptr;
    const StoredFact& stored = *stored_ptr;
    if (stored.issues && !stored.issues->patient.empty()) {
      issues_by_patient[stored.issues->patient].emplace_back(&key, &stored.issues->list);
    }
    if (!stored.fact) continue;
    std::visit(
        [&](const auto& f) {
          using T = std::decay_t<decltype(f)>;
          if constexpr (std::is_same_v<T, PatientFact>) {
            auto it = by_patient.find(key);
            if (it != by_patient.end()) it->second.patient = &f;
          } else if constexpr (std::is_same_v<T, ConditionFact> ||
                               std::is_same_v<T, EncounterFact> || std::is_same_v<T, ConsentFact> ||
                               std::is_same_v<T, CarePlanFact>) {
            auto it = by_patient.find(f.patient);
            if (it == by_patient.end()) return;
            if constexpr (std::is_same_v<T, ConditionFact>) {
              it->second.conditions.emplace_back(&key, &f);
            } else if constexpr (std::is_same_v<T, EncounterFact>) {
              it->second.encounters.emplace_back(&key, &f);
            } else if constexpr (std::is_same_v<T, ConsentFact>) {
              it->second.consents.emplace_back(&key, &f);
            } else {
              it->second.care_plans.emplace_back(&key, &f);
            }
          }
        },
        *stored.fact);
  }

  auto by_key = [](const auto& x, const auto& y) { return *x.first < *y.first; };
  for (auto& [patient, pf] : by_patient) {
    std::sort(pf.conditions.begin(), pf.conditions.end(), by_key);
    std::sort(pf.consents.begin(), pf.consents.end(), by_key);
    std::sort(pf.care_plans.begin(), pf.care_plans.end(), by_key);
    auto it = issues_by_patient.find(patient);
    if (it == issues_by_patient.end()) continue;
    std::sort(it->second.begin(), it->second.end(), by_key);
    for (const auto& [key, list] : it->second) {
      for (const auto& i : *list) pf.issues.push_back(i);
    }
  }
  return by_patient;
}

// Merged records: each record merged into another (link replaced-by), credited to every record
// of its chain of replaced-by links (A -> B -> C: A was merged into B, B into C), and each record
// a survivor says it replaces.
std::map<std::string, std::set<std::string>, std::less<>> MergedInto(const FactStore& facts) {
  std::map<std::string, std::set<std::string>, std::less<>> merged_into;
  for (const auto& [key_ptr, stored_ptr] : facts.notable()) {
    if (!stored_ptr->fact) continue;
    const auto* p = std::get_if<PatientFact>(stored_ptr->fact.get());
    if (p == nullptr) continue;
    for (const auto& old : p->replaces) {
      if (old != *key_ptr) merged_into[*key_ptr].insert(old);
    }
    std::set<std::string> seen = {*key_ptr};
    const PatientFact* at = p;
    while (at != nullptr && at->replaced && !at->replaced_by.empty() &&
           seen.insert(at->replaced_by).second) {
      merged_into[at->replaced_by].insert(*key_ptr);
      const StoredFact* next = facts.Find(at->replaced_by);
      at = next != nullptr && next->fact ? std::get_if<PatientFact>(next->fact.get()) : nullptr;
    }
  }
  return merged_into;
}

// Rule 0: deceased before the month (never billed), or during it (noted; time after death is cut
// off by rule 6). Merged and inactive records (R4 Patient.link type replaced-by: "must no longer be
// used"; Patient.active is a modifier): never billed; the survivor is. Returns the time of death.
std::optional<TimePoint> ApplyRecordStatus(
    PatientMonth& r, const PatientFacts& pf, const MonthContext& m,
    const std::map<std::string, std::set<std::string>, std::less<>>& merged_into) {
  std::optional<TimePoint> death;
  if (pf.patient != nullptr && pf.patient->deceased) {
    death = pf.patient->deceased_from.value_or(TimePoint::min());
    r.deceased = *death < m.month.start;
    if (!r.deceased && *death < m.month.end) r.notes.emplace_back("died-this-month");
  }
  if (pf.patient != nullptr) {
    r.merged = pf.patient->replaced;
    r.replaced_by = pf.patient->replaced_by;
    r.inactive = pf.patient->inactive;
  }
  if (auto it = merged_into.find(r.patient); it != merged_into.end()) {
    r.merged_from.assign(it->second.begin(), it->second.end());
  }
  return death;
}

// Rules 1-3: the chronic condition categories that count for the month, and the program they
// make the patient eligible for (two or more: CCM; one: PCM).
void ApplyConditions(PatientMonth& r, const PatientFacts& pf, const MonthContext& m) {
  std::map<std::string, CountedCondition> categories;
  for (const auto& [key, c] : pf.conditions) {
    if (!ConditionCounts(*c, m.month, m.config.rules)) continue;
    CountedCondition& cc = categories[c->category->code];
    cc.category = c->category->code;
    cc.display = c->category->display;
    cc.conditions.push_back(*key);
  }
  for (auto& [code, cc] : categories) r.chronic_conditions.push_back(std::move(cc));
  if (r.chronic_conditions.size() >= 2) {
    r.program = Program::kCcm;
  } else if (r.chronic_conditions.size() == 1) {
    r.program = Program::kPcm;
  }
}

// Rule 4: consent in effect, and from when.
void ApplyConsent(PatientMonth& r, const PatientFacts& pf, const MonthContext& m) {
  ConsentOutcome consent = EvaluateConsents(pf, m.month);
  r.consent = consent.state;
  r.consent_from = consent.from;
  for (const auto& [key, c] : pf.consents) r.consents.push_back(*key);
}

// Rules 5 and 9: the care plan in effect, its missing elements, and whether its review is due.
void ApplyCarePlan(PatientMonth& r, const PatientFacts& pf, const MonthContext& m) {
  const CarePlanFact* plan = nullptr;
  const std::string* plan_key = nullptr;
  bool draft = false;
  for (const auto& [key, p] : pf.care_plans) {
    r.care_plans.push_back(*key);
    if (p->status == fhir::CarePlanStatus::kDraft) draft = true;
    if (!PlanInEffect(*p, m.month)) continue;
    // Several plans in effect: report on the current one -- the most recently revised (a
    // practice's CCM plan rather than an old disease-specific plan), then the most complete.
    const TimePoint revised = p->last_revised.value_or(TimePoint::min());
    const TimePoint best =
        plan == nullptr ? TimePoint::min() : plan->last_revised.value_or(TimePoint::min());
    if (plan == nullptr || revised > best ||
        (revised == best && p->elements.count() > plan->elements.count())) {
      plan = p;
      plan_key = key;
    }
  }
  if (plan == nullptr) {
    if (draft) r.care_plan = CarePlanState::kDraft;
    return;
  }
  r.care_plan = CarePlanState::kActive;
  r.care_plan_reference = *plan_key;
  for (std::size_t i = 0; i < static_cast<std::size_t>(PlanElement::kCount); ++i) {
    if (!plan->elements.test(i)) r.care_plan_gaps.emplace_back(ToCode(static_cast<PlanElement>(i)));
  }
  r.care_plan_last_revised = plan->last_revised;
  if (m.config.rules.care_plan_review_months > 0) {
    // Due: the start of the month N-1 months before M, in the practice's zone -- i.e. the plan
    // must have been revised within the N calendar months ending with M.
    int index = m.ym.year * 12 + static_cast<int>(m.ym.month) - 1 -
                (m.config.rules.care_plan_review_months - 1);
    auto due = fhir::MonthRange(index / 12, static_cast<unsigned>(index % 12) + 1,
                                m.config.practice.time_zone);
    r.care_plan_stale = !plan->last_revised || (due && *plan->last_revised < due->start);
  }
}

// The month's time in whole minutes, all of it and the part after consent (rule 6 floors once,
// from the summed seconds), and whether complex CCM was documented on billable time.
struct TimeTotals {
  std::int64_t all_minutes = 0;
  std::int64_t billable_all_minutes = 0;
  bool complex_documented = false;
};

// Rules 6-7: care-management time of the month per encounter (what counted, what is billable,
// why not) and per pool (clinical staff or billing practitioner).
TimeTotals ApplyTime(PatientMonth& r, PatientFacts& pf, const MonthContext& m,
                     const std::optional<TimePoint>& death) {
  // In start order, so that the evidence reads chronologically and the overlap removal is
  // deterministic.
  std::sort(pf.encounters.begin(), pf.encounters.end(), [](const auto& x, const auto& y) {
    auto sx = x.second->start.value_or(TimePoint::min());
    auto sy = y.second->start.value_or(TimePoint::min());
    return sx != sy ? sx < sy : *x.first < *y.first;
  });
  // Overlapping time of one performer counts once, whichever pool (staff or practitioner) each
  // encounter falls in: the union is taken per performer, and each encounter keeps only the
  // part not already covered by an earlier one. Time after death is cut off.
  std::map<std::string, std::vector<Interval>> counted, billable;
  TimeTotals totals;
  const std::int64_t max_micros =
      static_cast<std::int64_t>(m.config.rules.max_encounter_minutes) * kMicrosPerMinute;
  for (const auto& [key, e] : pf.encounters) {
    if (e->start && (*e->start < m.month.start || *e->start >= m.month.end)) continue;
    if (!e->start && !e->finished) continue;
    EncounterEvidence ev;
    ev.reference = *key;
    ev.code = e->activity_code;
    ev.start = e->start;
    ev.micros = e->micros.value_or(0);
    auto biller = std::find_if(e->performers.begin(), e->performers.end(),
                               [&](const std::string& p) { return m.billers.IsBiller(p); });
    ev.practitioner = e->practitioner_coded || biller != e->performers.end();
    if (biller != e->performers.end()) {
      ev.performer = *biller;
    } else if (!e->performers.empty()) {
      ev.performer = e->performers.front();
    }
    if (!e->finished) {
      ev.reason = "not-finished";
    } else if (!e->start) {
      ev.reason = "no-start";
    } else if (!e->micros) {
      ev.reason = "no-duration";
    } else if (max_micros > 0 && *e->micros > max_micros) {
      ev.reason = "implausible-duration";
    } else if (death && *e->start >= *death) {
      ev.reason = "after-death";
    } else {
      ev.counted = true;
      ev.billable = r.consent_from && *e->start >= *r.consent_from;
      if (!ev.billable) ev.reason = "before-consent";
    }
    if (ev.counted) {
      TimePoint end = *e->start + fhir::Micros(*e->micros);
      if (death && *death < end) end = *death;
      Interval in{*e->start, end, r.encounters.size()};
      counted[ev.performer].push_back(in);
      if (ev.billable) {
        billable[ev.performer].push_back(in);
        totals.complex_documented = totals.complex_documented || e->complex_coded;
      }
    }
    r.encounters.push_back(std::move(ev));
  }
  for (auto& [performer, intervals] : counted) {
    UnionMicros(intervals, r.encounters, &EncounterEvidence::counted_micros);
  }
  for (auto& [performer, intervals] : billable) {
    UnionMicros(intervals, r.encounters, &EncounterEvidence::billable_micros);
  }
  std::int64_t staff_us = 0, own_us = 0, billable_staff_us = 0, billable_own_us = 0;
  for (const auto& ev : r.encounters) {
    (ev.practitioner ? own_us : staff_us) += ev.counted_micros;
    (ev.practitioner ? billable_own_us : billable_staff_us) += ev.billable_micros;
  }
  // Whole minutes, floored once at the end (rule 6): 19 min 59 s is 19 minutes, and the
  // combined pool is floored from the summed seconds, not from the floored parts.
  r.minutes = {staff_us / kMicrosPerMinute, own_us / kMicrosPerMinute};
  r.billable_minutes = {billable_staff_us / kMicrosPerMinute, billable_own_us / kMicrosPerMinute};
  totals.all_minutes = (staff_us + own_us) / kMicrosPerMinute;
  totals.billable_all_minutes = (billable_staff_us + billable_own_us) / kMicrosPerMinute;
  return totals;
}

// Rule 8: what blocks billing, then the codes, each traced to the encounters whose time is in
// its units; and the notes a biller should read.
void ApplyBilling(PatientMonth& r, const TimeTotals& t, const MonthContext& m) {
  if (r.deceased) r.blocked_by.emplace_back("deceased");
  if (r.merged) r.blocked_by.emplace_back("merged");
  if (r.inactive) r.blocked_by.emplace_back("inactive-record");
  if (r.program == Program::kNone) r.blocked_by.emplace_back("not-eligible");
  if (r.consent == ConsentState::kNone) r.blocked_by.emplace_back("no-consent");
  if (r.consent == ConsentState::kRevoked) r.blocked_by.emplace_back("consent-revoked");
  if (r.care_plan != CarePlanState::kActive) r.blocked_by.emplace_back("no-active-care-plan");
  // Would the time qualify if nothing else blocked? Without a consent in effect, judge on all
  // of the month's time; with one, on the time after it.
  const bool after_consent = r.consent == ConsentState::kActive;
  Minutes judged = after_consent ? r.billable_minutes : r.minutes;
  Program judged_program = r.program == Program::kNone ? Program::kCcm : r.program;
  std::vector<BillingLine> lines =
      ChooseCodes(judged_program, judged, after_consent ? t.billable_all_minutes : t.all_minutes,
                  t.complex_documented, m.config);
  r.complex_documented = t.complex_documented;
  if (lines.empty()) r.blocked_by.emplace_back("below-threshold");
  if (r.blocked_by.empty()) {
    std::vector<std::string> all_refs, practitioner_refs;
    for (const auto& ev : r.encounters) {
      if (ev.billable_micros <= 0) continue;  // only encounters whose time is in the units
      all_refs.push_back(ev.reference);
      if (ev.practitioner) practitioner_refs.push_back(ev.reference);
    }
    for (auto& l : lines) {
      const bool own = l.practitioner_time;
      l.encounters = own ? practitioner_refs : all_refs;
      if (l.amount) {
        r.expected_payment += *l.amount;
      } else {
        r.notes.push_back(fmt::format("no-fee-for-{}", l.code));
      }
    }
    r.billing = std::move(lines);
  }
  if (after_consent && t.billable_all_minutes < t.all_minutes) {
    r.notes.emplace_back("time-before-consent");
  }
  if (r.program == Program::kCcm && !t.complex_documented && t.billable_all_minutes >= 90) {
    r.notes.emplace_back("complex-ccm-not-documented");
  }
  if (r.care_plan == CarePlanState::kActive && r.care_plan_stale) {
    r.notes.emplace_back("care-plan-not-revised");
  }
}

}  // namespace

// The rules in docs/ccm-rules.md order, one function each; each reads the facts and what the
// rules before it decided.
std::vector<PatientMonth> Evaluate(const FactStore& facts, YearMonth ym,
                                   const EngineConfig& config) {
  auto month_range = fhir::MonthRange(ym.year, ym.month, config.practice.time_zone);
  const BillerIndex billers(facts, config.practice);
  const MonthContext m{ym, month_range ? *month_range : InstantRange{}, config, billers};
  auto by_patient = GroupByPatient(facts);
  const auto merged_into = MergedInto(facts);

  std::vector<PatientMonth> results;
  results.reserve(by_patient.size());
  for (auto& [patient, pf] : by_patient) {
    PatientMonth r;
    r.patient = patient;
    r.month = ym;
    r.issues = std::move(pf.issues);
    const std::optional<TimePoint> death = ApplyRecordStatus(r, pf, m, merged_into);
    ApplyConditions(r, pf, m);
    ApplyConsent(r, pf, m);
    ApplyCarePlan(r, pf, m);
    const TimeTotals time = ApplyTime(r, pf, m, death);
    ApplyBilling(r, time, m);
    results.push_back(std::move(r));
  }
  return results;
}

std::vector<fhir::Issue> UnattributedIssues(const FactStore& facts) {
  std::vector<std::pair<const std::string*, const fhir::IssueList*>> found;
  for (const auto& [key_ptr, stored_ptr] : facts.notable()) {
    const std::string& key = *key_ptr;
    const StoredFact& stored = *stored_ptr;
    if (!stored.issues) continue;
    const std::string& patient = stored.issues->patient;
    auto it = facts.patients().find(patient);
    if (!patient.empty() && it != facts.patients().end() && it->second) continue;
    found.emplace_back(&key, &stored.issues->list);
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return *a.first < *b.first; });
  std::vector<fhir::Issue> out;
  for (const auto& [key, list] : found) {
    for (const auto& i : *list) out.push_back(i);
  }
  return out;
}

EvaluationSummary Summarize(const std::vector<PatientMonth>& results) {
  EvaluationSummary s;
  for (const auto& r : results) {
    ++s.patients;
    if (r.program != Program::kNone && !r.deceased) ++s.eligible;
    if (r.consent == ConsentState::kActive) ++s.consented;
    if (!r.billing.empty()) ++s.billable;
    s.minutes.clinical_staff += r.minutes.clinical_staff;
    s.minutes.practitioner += r.minutes.practitioner;
    s.expected_payment += r.expected_payment;
  }
  return s;
}

}  // namespace ccm::gateway
