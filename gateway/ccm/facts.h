// Compact facts for the CCM engine, extracted from FHIR resources as they stream past.
//
// The engine never holds the input: each Patient, Condition, Encounter, Consent, CarePlan,
// Practitioner and PractitionerRole is reduced on arrival to the few values the rules need
// (docs/ccm-rules.md), and everything else is dropped. Resources the rules cannot use (an
// Encounter without a care-management code, a Condition outside the chronic value set) keep only
// their key and version stamp, so that a newer version arriving later still replaces an older one
// and the outcome does not depend on input order; resources of other types keep nothing. Memory
// is therefore a small constant per resource of the engine's types plus the facts of what the
// practice can bill -- not the size of the export (docs/benchmarks.md has the figures).
//
// Data problems in the elements the rules read (a bad dateTime, an Encounter without
// period.start, a Duration in an unknown unit) are kept with the fact as issues with their JSON
// path and source location, and surface in the patient's report; the resource is then counted as
// conservatively as possible (usually: not at all).
#pragma once

#include <bitset>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "fhir/datetime.h"
#include "fhir/issues.h"
#include "fhir/json.h"
#include "fhir/reader.h"
#include "fhir/resources.h"
#include "gateway/base/versions.h"
#include "gateway/ccm/engine_config.h"

namespace ccm::gateway {

using fhir::TimePoint;

struct PatientFact {
  bool deceased = false;                   // deceasedBoolean true or any deceasedDateTime
  std::optional<TimePoint> deceased_from;  // earliest instant of deceasedDateTime
  bool inactive = false;                   // active = false (or unreadable)
  // Patient.link (R4 §8.1 link-type): this record was merged into another ("replaced-by"; the
  // survivor as "Patient/<id>", "" when the link does not name one), and records merged into
  // this one ("replaces").
  bool replaced = false;
  std::string replaced_by;
  std::vector<std::string> replaces;
};

enum class Abatement : std::uint8_t {
  kNone,         // not abated (no abatement[x], or abatementBoolean false)
  kAt,           // abated at `abated_from`
  kUnknownDate,  // abated, date unknown (abatementBoolean true / Age / String, or a resolved
                 // clinicalStatus without abatement[x])
};

struct ConditionFact {
  std::string patient;                        // "Patient/<id>"
  const mappings::ChronicCategory* category;  // never null: only chronic conditions are kept
  std::string coding;                         // "system|code" that matched
  std::optional<fhir::ConditionVerificationStatus> verification;
  std::optional<fhir::ConditionClinicalStatus> clinical;
  bool status_unreadable = false;       // a clinical/verification status we could not read
  std::optional<TimePoint> onset_from;  // earliest instant of onset[x] when it is a date
  Abatement abatement = Abatement::kNone;
  TimePoint abated_from{};
};

struct EncounterFact {
  std::string patient;
  bool finished = false;
  std::string status;                   // as written
  bool practitioner_coded = false;      // a code of rules.practitionerTimeCodes
  bool complex_coded = false;           // a code of rules.complexCcmCodes
  std::string activity_code;            // the first care-management code found ("99490")
  std::optional<TimePoint> start;       // period.start (earliest instant)
  std::optional<std::int64_t> micros;   // length, else period.end - period.start
  std::vector<std::string> performers;  // participant individuals: "Practitioner/1", "npi:123…"
};

struct ConsentFact {
  std::string patient;
  std::optional<fhir::ConsentStatus> status;
  bool deny = false;               // provision.type = deny
  std::optional<TimePoint> start;  // provision.period.start, else dateTime
  std::optional<TimePoint> end;    // provision.period.end (latest instant, exclusive)
};

// The CMS comprehensive care plan elements (docs/ccm-rules.md, rule 9).
enum class PlanElement : std::uint8_t {
  kProblemList,           // addresses
  kGoals,                 // goal
  kInterventions,         // activity
  kMedicationManagement,  // a MedicationRequest activity, or an activity tagged so
  kCommunityResources,    // an activity tagged community-resources
  kCoordination,          // careTeam, or an activity tagged care-coordination
  kReviewSchedule,        // an activity tagged review-schedule
  kSymptomManagement,     // an activity tagged symptom-management
  kExpectedOutcome,       // an activity tagged expected-outcome (prognosis)
  kCount
};
std::string_view ToCode(PlanElement e) noexcept;
// System of the codes above when they tag CarePlan.activity.detail.code.
inline constexpr std::string_view kPlanElementSystem = "urn:ccm-gateway:care-plan-element";
// An activity carrying this extension (valueBoolean true) is a placeholder the gateway put into a
// draft CCM care plan for the care team to fill; it counts as no element (rule 9).
inline constexpr std::string_view kPlaceholderExtension = "urn:ccm-gateway:extension:placeholder";

struct CarePlanFact {
  std::string patient;
  std::optional<fhir::CarePlanStatus> status;
  bool intent_ok = false;                 // intent plan or order (not a proposal or option)
  std::optional<TimePoint> period_start;  // earliest; created when there is no period.start
  std::optional<TimePoint> period_end;    // latest, exclusive
  std::bitset<static_cast<std::size_t>(PlanElement::kCount)> elements;
  std::optional<TimePoint> last_revised;  // meta.lastUpdated, else created, else period.start
};

struct PractitionerFact {
  std::vector<std::string> npis;
};
struct PractitionerRoleFact {
  std::string practitioner;  // "Practitioner/<id>" or "npi:<npi>"
};

using Fact = std::variant<PatientFact, ConditionFact, EncounterFact, ConsentFact, CarePlanFact,
                          PractitionerFact, PractitionerRoleFact>;

// Data problems found in the elements read, with the patient they concern (may be "").
struct FactIssues {
  std::string patient;
  fhir::IssueList list;
};

struct StoredFact {
  VersionStamp stamp;
  std::unique_ptr<Fact> fact;          // null: the resource matters to no rule (kept for versions)
  std::unique_ptr<FactIssues> issues;  // only when there are any
  bool listed = false;                 // in FactStore::notable() (set by the store)
};

// What the extraction counted, for the run summary.
struct FactCounts {
  std::size_t resources = 0;  // offered to Add
  std::size_t kept = 0;       // currently holding a fact
  std::size_t ignored_types = 0;
  std::size_t duplicates = 0;  // same type/id seen again
  std::size_t issues = 0;      // data problems found (including in superseded versions)
};

// The top-level elements the extraction reads, per resource type; pass as
// fhir::json::ParseOptions::keep_member so the reader builds nothing else.
bool FactMemberNeeded(std::string_view resource_type, std::string_view member) noexcept;
// The resource types the extraction reads.
bool FactTypeNeeded(std::string_view resource_type) noexcept;

// Reduces one resource to a fact (or to nothing) under `config`. Pure: usable from any thread.
struct Extracted {
  std::string key;      // "Type/id"; empty when the type is not one the engine reads
  std::string patient;  // the patient the resource is about ("Patient/<id>"), when known
  StoredFact stored;
};
Extracted ExtractFact(const fhir::json::Value& resource, const fhir::SourceLocation& where,
                      const EngineConfig& config);

// The fast path for one NDJSON line (data[size] == '\0'; the bytes may be overwritten): the same
// result as parsing the line and calling ExtractFact, several times faster for the many resources
// no rule needs. Resources of other types give an empty Extracted. Error (kParseError, the
// message says where) when the line is not a JSON object. Thread-safe given a scratch buffer per
// thread (reused between calls to avoid an allocation per line).
Result<Extracted> ExtractFactFromLine(char* data, std::size_t size,
                                      const fhir::SourceLocation& where, const EngineConfig& config,
                                      std::string* scratch_buffer);

// All facts of a run, newest version per resource. Not thread-safe; merge extractions from worker
// threads on one thread.
//
// The de-duplication index is one lookup per resource read, in a table far larger than the
// caches: entries are appended to chunks of 4,096 (one allocation per chunk, sequential in
// memory) and found through an open-addressing table of 64-bit slots (a 32-bit hash tag and the
// entry's number), so that adding a key not seen before costs one cache miss and no allocation.
class FactStore {
 public:
  // Adds an extraction (de-duplicating by key and version stamp).
  void Add(Extracted e);
  // Sizes the index for about `resources` entries up front (saves rebuilding a large table).
  void Reserve(std::size_t resources);
  // Convenience: ExtractFact + Add.
  void Add(const fhir::json::Value& resource, const fhir::SourceLocation& where,
           const EngineConfig& config);

  const FactCounts& counts() const noexcept { return counts_; }
  // The entry of key "Type/id", or null.
  const StoredFact* Find(std::string_view key) const;
  // How many distinct keys are held.
  std::size_t size() const noexcept { return size_; }
  // The entries that have (or had) a fact or issues -- what the engine reads -- each once. Check
  // `fact`/`issues`: a later version may have cleared them.
  const std::vector<std::pair<const std::string*, const StoredFact*>>& notable() const noexcept {
    return notable_;
  }
  // Patients referenced by any Condition, Encounter, Consent or CarePlan, or present themselves.
  const std::unordered_map<std::string, bool>& patients() const noexcept { return patients_; }

 private:
  struct Entry {
    std::string key;
    StoredFact stored;
  };
  // Entries live in chunks of kChunk (one allocation per chunk, never moved: notable_ points in).
  static constexpr std::size_t kChunkBits = 12;
  static constexpr std::size_t kChunk = std::size_t{1} << kChunkBits;
  Entry& At(std::size_t n) { return chunks_[n >> kChunkBits][n & (kChunk - 1)]; }
  const Entry& At(std::size_t n) const { return chunks_[n >> kChunkBits][n & (kChunk - 1)]; }
  // The slot for `key`: the one holding it, or the empty one where it would go.
  std::size_t Probe(std::string_view key, std::uint64_t hash) const;
  void Rebuild(std::size_t slots);

  std::vector<std::unique_ptr<Entry[]>> chunks_;
  std::size_t size_ = 0;
  // 0 = empty; else the key hash's upper 32 bits << 32 | (entry number + 1).
  std::vector<std::uint64_t> slots_;
  std::vector<std::pair<const std::string*, const StoredFact*>> notable_;
  // Patient key -> true when referenced by clinical data (false: only the Patient resource seen).
  std::unordered_map<std::string, bool> patients_;
  FactCounts counts_;
};

}  // namespace ccm::gateway
