#include "gateway/tools/sample_activity.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "fhir/json.h"
#include "fhir/reader.h"
#include "mappings/code_maps.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;

// splitmix64: small, well-distributed and fully specified, so the output is the same on every
// platform and standard library (std::mt19937's distributions are not portable across libraries).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi].
  int Between(int lo, int hi) {
    return lo + static_cast<int>(Next() % static_cast<std::uint64_t>(hi - lo + 1));
  }

 private:
  std::uint64_t state_;
};

std::uint64_t Fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

constexpr std::string_view kCpt = "http://www.ama-assn.org/go/cpt";
constexpr std::string_view kIdSystem = "urn:ccm-gateway:sample-activity";
constexpr std::string_view kStaff = "Practitioner/ccm-sample-rn";
constexpr std::string_view kPhysician = "Practitioner/ccm-sample-md";

struct Scenario {
  std::string_view name;
  std::string_view consent;    // "active", "revoked-mid-month", "none"
  std::string_view care_plan;  // "active", "draft", "none"
  std::string_view code;       // CPT code on the activity encounters
  std::string_view performer;
  std::array<int, 4> minutes;  // per encounter, 0 = none
  bool overlap = false;        // the second call overlaps the first
};

// One scenario per patient, round-robin. Minutes are chosen around the CPT thresholds.
constexpr std::array<Scenario, 8> kScenarios{{
    {"ccm-staff-45min", "active", "active", "99490", kStaff, {20, 15, 10, 0}},
    {"ccm-staff-19min", "active", "active", "99490", kStaff, {10, 9, 0, 0}},
    {"ccm-practitioner-35min", "active", "active", "99491", kPhysician, {20, 15, 0, 0}},
    {"complex-ccm-95min", "active", "active", "99487", kStaff, {35, 30, 30, 0}},
    {"ccm-consent-revoked", "revoked-mid-month", "active", "99490", kStaff, {12, 14, 0, 0}},
    {"ccm-overlapping-calls", "active", "active", "99490", kStaff, {15, 15, 0, 0}, true},
    {"ccm-no-consent", "none", "active", "99490", kStaff, {25, 0, 0, 0}},
    {"ccm-draft-plan", "active", "draft", "99490", kStaff, {30, 0, 0, 0}},
}};

Value Str(std::string_view s) { return Value::String(std::string(s)); }
Value Obj(std::initializer_list<std::pair<std::string_view, Value>> members) {
  Value o = Value::MakeObject();
  for (const auto& [k, v] : members) o.set(k, v);
  return o;
}
Value Arr(std::initializer_list<Value> items) {
  Value a = Value::MakeArray();
  for (const Value& v : items) a.push_back(v);
  return a;
}
Value Coding(std::string_view system, std::string_view code, std::string_view display) {
  return Obj({{"system", Str(system)}, {"code", Str(code)}, {"display", Str(display)}});
}
Value Ref(std::string_view r) { return Obj({{"reference", Str(r)}}); }
// meta.tag naming the scenario, so tests and people can see why a patient's numbers are what they
// are.
Value ScenarioMeta(std::string_view scenario) {
  return Obj({{"tag", Arr({Obj({{"system", Str("urn:ccm-gateway:sample-scenario")},
                                {"code", Str(scenario)}})})}});
}

std::string_view CptDisplay(std::string_view code) {
  if (code == "99491") return "Chronic care management services, first 30 minutes by physician";
  if (code == "99487") return "Complex chronic care management services, first 60 minutes";
  return "Chronic care management services, first 20 minutes of clinical staff time";
}

std::string Stamp(const ActivityOptions& o, int day, int minute_of_day) {
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:00{}", o.year, o.month, day, minute_of_day / 60,
                     minute_of_day % 60, o.utc_offset);
}

class NdjsonFile {
 public:
  explicit NdjsonFile(std::filesystem::path path)
      : path_(std::move(path)), tmp_(path_.string() + ".tmp") {}
  void Add(const Value& v) {
    fhir::json::SerializeTo(v, text_);
    text_.push_back('\n');
  }
  Status Commit() {
    {
      std::ofstream out(tmp_, std::ios::binary | std::ios::trunc);
      out.write(text_.data(), static_cast<std::streamsize>(text_.size()));
      if (!out) return MakeError(Errc::kIo, fmt::format("cannot write {}", tmp_.string()));
    }
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec)
      return MakeError(Errc::kIo, fmt::format("cannot rename {}: {}", tmp_.string(), ec.message()));
    return {};
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  std::string text_;
};

}  // namespace

Result<ActivitySummary> GenerateActivity(const ActivityOptions& o, fhir::IssueList& issues) {
  if (o.month < 1 || o.month > 12) {
    return MakeError(Errc::kInvalidArgument, "month must be 1-12");
  }
  std::set<std::string> living;
  // Chronic categories per patient (active, not abated), so that the billing scenarios go to the
  // patients who could be billed at all: CCM candidates first, then PCM, then the rest.
  CCM_TRY_ASSIGN(mappings::ChronicConditionMap chronic, mappings::DefaultChronicConditionMap());
  std::map<std::string, std::set<std::string>> categories;
  std::map<std::string, std::vector<std::string>> chronic_conditions;
  fhir::ResourceReader reader(
      [&](Value&& r, const fhir::SourceLocation&) {
        if (r["resourceType"].str() == "Condition") {
          std::string_view clinical = r["clinicalStatus"]["coding"][std::size_t{0}]["code"].str();
          if (clinical != "active" || r.find("abatementDateTime") != nullptr) return true;
          std::string_view subject = r["subject"]["reference"].str();
          if (!subject.starts_with("Patient/")) return true;
          for (const Value& c : r["code"]["coding"].array()) {
            if (const auto* cat = chronic.Find(c["system"].str(), c["code"].str())) {
              std::string pid(subject.substr(8));
              categories[pid].insert(cat->code);
              chronic_conditions[pid].push_back(fmt::format("Condition/{}", r["id"].str()));
              break;
            }
          }
          return true;
        }
        if (r["resourceType"].str() != "Patient" || r["id"].str().empty()) return true;
        // Synthea marks the dead with deceasedDateTime; they get no activity.
        if (r.find("deceasedDateTime") != nullptr || r["deceasedBoolean"].as_bool()) return true;
        living.insert(std::string(r["id"].str()));
        return true;
      },
      [&](const fhir::Issue& i) {
        issues.Add(i.severity, i.code, i.path, i.message, i.location);
        return true;
      });
  for (const auto& input : o.inputs) CCM_TRY(reader.Read(input));

  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) {
    return MakeError(Errc::kIo,
                     fmt::format("cannot create {}: {}", o.out_dir.string(), ec.message()));
  }
  NdjsonFile encounters(o.out_dir / "Encounter.ccm.ndjson");
  NdjsonFile consents(o.out_dir / "Consent.ccm.ndjson");
  NdjsonFile plans(o.out_dir / "CarePlan.ccm.ndjson");
  NdjsonFile practitioners(o.out_dir / "Practitioner.ccm.ndjson");
  ActivitySummary summary;

  practitioners.Add(
      Obj({{"resourceType", Str("Practitioner")},
           {"id", Str("ccm-sample-rn")},
           {"identifier", Arr({Obj({{"system", Str(kIdSystem)}, {"value", Str("rn-1")}})})},
           {"active", Value::Bool(true)},
           {"qualification",
            Arr({Obj({{"code", Obj({{"text", Str("Registered nurse (clinical staff)")}})}})})}}));
  practitioners.Add(
      Obj({{"resourceType", Str("Practitioner")},
           {"id", Str("ccm-sample-md")},
           {"identifier", Arr({Obj({{"system", Str("http://hl7.org/fhir/sid/us-npi")},
                                    {"value", Str("9999999991")}})})},
           {"active", Value::Bool(true)},
           {"qualification",
            Arr({Obj({{"code", Obj({{"text", Str("Physician (billing practitioner)")}})}})})}}));

  std::vector<std::string> order(living.begin(), living.end());
  std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) {
    auto rank = [&](const std::string& id) {
      auto it = categories.find(id);
      std::size_t n = it == categories.end() ? 0 : it->second.size();
      return n >= 2 ? 0 : n == 1 ? 1 : 2;
    };
    return rank(a) < rank(b);
  });
  std::size_t index = 0;
  for (const std::string& id : order) {
    const Scenario& s = kScenarios[index++ % kScenarios.size()];
    SplitMix64 rng(o.seed ^ Fnv1a(id));
    std::string patient = fmt::format("Patient/{}", id);
    std::string tag = fmt::format("{:016x}", Fnv1a(id) ^ o.seed);

    // Calls on distinct working days in the first three weeks, between 08:00 and 16:00.
    int day = rng.Between(1, 4);
    int previous_start = 0;
    int previous_len = 0;
    for (std::size_t k = 0; k < s.minutes.size() && s.minutes[k] > 0; ++k) {
      int start = rng.Between(8 * 60, 16 * 60);
      if (s.overlap && k == 1) {
        // Same nurse, same day, starting inside the first call: counted once (union of intervals).
        start = previous_start + previous_len / 2;
      } else if (k > 0) {
        day += rng.Between(2, 6);
      }
      int len = s.minutes[k];
      Value enc = Obj({
          {"resourceType", Str("Encounter")},
          {"id", Str(fmt::format("ccm-{}-{}", tag.substr(0, 12), k + 1))},
          {"meta", ScenarioMeta(s.name)},
          {"identifier", Arr({Obj({{"system", Str(kIdSystem)},
                                   {"value", Str(fmt::format("enc-{}-{}", tag, k + 1))}})})},
          {"status", Str("finished")},
          {"class", Coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "VR", "virtual")},
          {"type", Arr({Obj({{"coding", Arr({Coding(kCpt, s.code, CptDisplay(s.code))})},
                             {"text", Str("Care coordination call")}})})},
          {"subject", Ref(patient)},
          {"participant", Arr({Obj({{"individual", Ref(s.performer)}})})},
          {"period",
           Obj({{"start", Str(Stamp(o, day, start))}, {"end", Str(Stamp(o, day, start + len))}})},
          {"length", Obj({{"value", Value::Number(len)},
                          {"unit", Str("min")},
                          {"system", Str("http://unitsofmeasure.org")},
                          {"code", Str("min")}})},
      });
      encounters.Add(enc);
      ++summary.encounters;
      previous_start = start;
      previous_len = len;
    }

    if (s.consent != "none") {
      Value provision =
          Obj({{"type", Str("permit")},
               {"period", Obj({{"start", Str(fmt::format("{:04}-01-15", o.year - 1))}})}});
      if (s.consent == "revoked-mid-month") {
        // The patient opted out on the 14th: CMS lets the month of revocation still be billed.
        provision.find("period")->set("end", Str(fmt::format("{:04}-{:02}-14", o.year, o.month)));
      }
      consents.Add(Obj({
          {"resourceType", Str("Consent")},
          {"id", Str(fmt::format("ccm-consent-{}", tag.substr(0, 12)))},
          {"meta", ScenarioMeta(s.name)},
          {"status", Str(s.consent == "active" ? "active" : "inactive")},
          {"scope",
           Obj({{"coding", Arr({Coding("http://terminology.hl7.org/CodeSystem/consentscope",
                                       "treatment", "Treatment")})}})},
          {"category", Arr({Obj({{"coding", Arr({Coding("http://loinc.org", "59284-0",
                                                        "Patient Consent")})}})})},
          {"patient", Ref(patient)},
          {"dateTime", Str(fmt::format("{:04}-01-15", o.year - 1))},
          {"policyRule",
           Obj({{"text", Str("Medicare chronic care management consent (verbal, documented)")}})},
          {"provision", provision},
      }));
      ++summary.consents;
    }
    if (s.care_plan != "none") {
      Value plan = Obj({
          {"resourceType", Str("CarePlan")},
          {"id", Str(fmt::format("ccm-plan-{}", tag.substr(0, 12)))},
          {"meta", ScenarioMeta(s.name)},
          {"text",
           Obj({{"status", Str("generated")},
                {"div", Str("<div xmlns=\"http://www.w3.org/1999/xhtml\">Chronic care management "
                            "comprehensive care plan (sample).</div>")}})},
          {"status", Str(s.care_plan)},
          {"intent", Str("plan")},
          {"category",
           Arr({Obj(
               {{"coding", Arr({Coding("http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                                       "assess-plan", "Assessment and Plan of Treatment")})}})})},
          {"title", Str("Chronic care management plan")},
          {"subject", Ref(patient)},
          {"period", Obj({{"start", Str(fmt::format("{:04}-02-01", o.year - 1))}})},
          // Revised two months before the sample month: inside the 12-month review window.
          {"created", Str(fmt::format("{:04}-{:02}-01", o.month > 2 ? o.year : o.year - 1,
                                      (o.month + 9) % 12 + 1))},
          {"author", Ref(kPhysician)},
      });
      Value addresses = Value::MakeArray();
      std::vector<std::string> refs = chronic_conditions[id];
      std::sort(refs.begin(), refs.end());
      refs.erase(std::unique(refs.begin(), refs.end()), refs.end());
      for (const auto& ref : refs) addresses.push_back(Ref(ref));
      if (addresses.size() > 0) plan.set("addresses", std::move(addresses));
      plans.Add(plan);
      ++summary.care_plans;
    }
    ++summary.patients;
  }
  for (NdjsonFile* f : {&practitioners, &encounters, &consents, &plans}) {
    CCM_TRY(f->Commit());
    summary.files.push_back(f->path().string());
  }
  return summary;
}

}  // namespace ccm::gateway
