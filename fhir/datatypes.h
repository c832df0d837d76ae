// FHIR R4 general-purpose datatypes (R4 §2.24 "Data Types") read from json::Value.
//
// Contract
// - Each Read*() takes the JSON element, the element's path in FHIRPath style with indices
//   (e.g. "Encounter.participant[0].period") and an IssueList. Data problems (wrong JSON kind, bad
//   date, bad decimal, malformed reference) are appended to the list with that path, and the
//   problematic part is left empty; nothing throws on bad data. A JSON null/absent element yields
//   an empty value without issues. Unknown members (extensions etc.) are ignored here; they remain
//   in the JSON, which these types never modify.
// - The types own copies of the strings they hold (no pointers into the JSON), so they may outlive
//   the json::Value they were read from. They are regular value types; no shared state, so
//   concurrent use of distinct objects, and concurrent const use of one object, are safe.
// - Not modelled (read from the JSON directly if needed): Identifier.assigner, Coding/primitive
//   extensions, HumanName (no PHI handling in this layer).
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/datetime.h"
#include "fhir/issues.h"
#include "fhir/json.h"
#include "fhir/result.h"

namespace ccm::fhir {

// Well-known identifier systems.
inline constexpr std::string_view kNpiSystem = "http://hl7.org/fhir/sid/us-npi";
inline constexpr std::string_view kMbiSystem = "http://hl7.org/fhir/sid/us-mbi";
inline constexpr std::string_view kUcumSystem = "http://unitsofmeasure.org";

// Reads a string primitive; an issue (kStructure) when present but not a JSON string. "" if absent.
std::string ReadString(const json::Value& v, std::string_view path, IssueList& issues);
// Reads a date/dateTime/instant primitive; issue (kValue) with the parser's message when invalid.
std::optional<FhirDateTime> ReadDateTime(const json::Value& v, std::string_view path,
                                         IssueList& issues,
                                         DateTimeKind kind = DateTimeKind::kDateTime);
// Reads a boolean primitive; issue when present but not a JSON boolean.
std::optional<bool> ReadBool(const json::Value& v, std::string_view path, IssueList& issues);

// FHIR decimal (R4 §2.24.0.1): kept as its exact text; arithmetic on the text, never via double.
struct Decimal {
  std::string text;  // as written, e.g. "20.50"
  // The value as unscaled integer and scale: "20.50" -> {2050, 2}. Error when the text is not a
  // JSON/FHIR decimal or needs more than 18 significant digits.
  struct Parts {
    std::int64_t unscaled = 0;
    int scale = 0;  // number of digits after the point (negative for positive exponents)
  };
  Result<Parts> parts() const;
  bool operator==(const Decimal&) const = default;
};

// Coding (R4 §2.24.0.5).
struct Coding {
  std::string system, version, code, display;
  std::optional<bool> user_selected;
  bool Is(std::string_view sys, std::string_view c) const noexcept {
    return system == sys && code == c;
  }
};
Coding ReadCoding(const json::Value& v, std::string_view path, IssueList& issues);

// CodeableConcept (R4 §2.24.0.4).
struct CodeableConcept {
  std::vector<Coding> coding;
  std::string text;

  bool empty() const noexcept { return coding.empty() && text.empty(); }
  // True when some coding has exactly this system and code.
  bool HasCode(std::string_view system, std::string_view code) const noexcept;
  // The first coding in `system`, or nullptr.
  const Coding* FirstInSystem(std::string_view system) const noexcept;
  // The first code in `system`, or "" (view into this object).
  std::string_view FirstCode(std::string_view system) const noexcept;
};
CodeableConcept ReadCodeableConcept(const json::Value& v, std::string_view path, IssueList& issues);
std::vector<CodeableConcept> ReadCodeableConcepts(const json::Value& array, std::string_view path,
                                                  IssueList& issues);
// True when any concept has the code.
bool AnyHasCode(const std::vector<CodeableConcept>& concepts, std::string_view system,
                std::string_view code) noexcept;

// Period (R4 §2.24.0.11). Per the spec, a missing start is unknown (treated as unbounded), a
// missing end means ongoing, and the end is inclusive of its precision ("2012-02-03" ends at the
// end of that day), so Range() is [start.Earliest, end.LatestExclusive).
struct Period {
  std::optional<FhirDateTime> start, end;

  bool empty() const noexcept { return !start && !end; }
  InstantRange Range(const date::time_zone* tz = nullptr) const;
  bool Contains(TimePoint t, const date::time_zone* tz = nullptr) const {
    return Range(tz).Contains(t);
  }
  bool Overlaps(const InstantRange& r, const date::time_zone* tz = nullptr) const {
    return Range(tz).Overlaps(r);
  }
  // end - start when both are present (exact, inclusive end semantics), else nullopt.
  std::optional<Micros> Duration(const date::time_zone* tz = nullptr) const;
};
// Also reports per-1 (start <= end) as an error issue (kInvariant).
Period ReadPeriod(const json::Value& v, std::string_view path, IssueList& issues);

// Identifier (R4 §2.24.0.7).
struct Identifier {
  std::string use, system, value;
  CodeableConcept type;
  Period period;
  bool empty() const noexcept { return system.empty() && value.empty(); }
};
Identifier ReadIdentifier(const json::Value& v, std::string_view path, IssueList& issues);
std::vector<Identifier> ReadIdentifiers(const json::Value& array, std::string_view path,
                                        IssueList& issues);
// The value of the first identifier in `system`, or "" (view into `ids`).
std::string_view FindIdentifier(const std::vector<Identifier>& ids,
                                std::string_view system) noexcept;

// Quantity and its profiles Age/Duration/Count/Distance/SimpleQuantity (R4 §2.24.0.12).
struct Quantity {
  std::optional<Decimal> value;
  std::string comparator;  // "<", "<=", ">=", ">" or ""
  std::string unit, system, code;
  bool empty() const noexcept { return !value && unit.empty() && code.empty(); }
};
Quantity ReadQuantity(const json::Value& v, std::string_view path, IssueList& issues);
// Quantity profiles (R4 §2.24.0.12): same shape, only their invariants differ.
using Duration = Quantity;
using Age = Quantity;

// Range (R4 §2.24.0.13).
struct QuantityRange {
  Quantity low, high;
};
QuantityRange ReadRange(const json::Value& v, std::string_view path, IssueList& issues);

// Converts a time Quantity (e.g. a Duration) to exact microseconds / seconds.
// The unit is the UCUM `code` (or `unit` when there is no code): `ms`, `s`, `min`, `h`, `d`, `wk`
// (7 d, exact). `mo` and `a` are rejected (calendar units have no fixed length in UCUM terms that
// a billing-minute count should rely on). The decimal text is converted exactly: "20.5" `min` is
// 1230 s. Errors (kInvalidArgument): no value, a comparator, a non-UCUM system, an unknown unit, a
// negative value, overflow, or (ToSeconds only) a value that is not a whole number of seconds /
// (ToMicros) not a whole number of microseconds.
Result<Micros> DurationToMicros(const Quantity& q);
Result<std::chrono::seconds> DurationToSeconds(const Quantity& q);

// Meta (R4 §2.24.0.20 / resource.html#Meta).
struct Meta {
  std::string version_id;
  std::optional<FhirDateTime> last_updated;  // an instant
  std::string source;
  std::vector<std::string> profile;
  std::vector<Coding> security, tag;
};
Meta ReadMeta(const json::Value& v, std::string_view path, IssueList& issues);

// The forms a Reference can take (R4 §2.3.0 references.html).
enum class ReferenceKind {
  kEmpty,        // no reference, identifier or display
  kRelative,     // "Patient/123" (optionally "/_history/2")
  kAbsolute,     // "https://ehr.example/fhir/Patient/123", or any other absolute URL
  kContained,    // "#p1": a resource in .contained
  kUrn,          // "urn:uuid:..." or "urn:oid:..." (Bundle-internal, fullUrl)
  kConditional,  // "Patient?identifier=sys|value" (transaction Bundles; Synthea writes these)
  kLogical,      // no reference, only `identifier`
  kDisplayOnly,  // only `display`
};
std::string_view ToString(ReferenceKind k) noexcept;

// Reference (R4 §2.24.0.15 and §2.3.0). Members not applicable to the kind are empty.
struct Reference {
  ReferenceKind kind = ReferenceKind::kEmpty;
  std::string reference;  // Reference.reference as written
  std::string type;       // resource type from the URL, else from Reference.type
  std::string id;         // logical id (relative/absolute FHIR URLs), or the contained id
  std::string version;    // from ".../_history/<v>"
  std::string base;       // service base of an absolute URL ("https://ehr.example/fhir")
  std::string query;      // conditional: the text after '?'
  std::string urn;        // urn:uuid:/urn:oid: value, whole
  std::optional<Identifier> identifier;  // Reference.identifier
  std::string display;

  // "Type/id" for relative, and absolute FHIR-REST URLs; nullopt otherwise.
  std::optional<std::string> Key() const;
  // For conditional references whose query is `identifier=system|value`: that identifier.
  // Otherwise, for logical references: Reference.identifier. Else nullopt.
  std::optional<Identifier> SearchIdentifier() const;
  bool empty() const noexcept { return kind == ReferenceKind::kEmpty; }
};
// Classifies a reference string alone (as found in Reference.reference or Bundle.entry.fullUrl).
// Error (kInvalidArgument) when it is not a valid literal reference of any form.
Result<Reference> ParseReferenceString(std::string_view text);
// Reads a Reference element; a malformed `reference` becomes an error issue at path + ".reference".
// `expected_types`, when non-empty, lists allowed target types; a different type is an error issue.
Reference ReadReference(const json::Value& v, std::string_view path, IssueList& issues,
                        std::initializer_list<std::string_view> expected_types = {});
std::vector<Reference> ReadReferences(const json::Value& array, std::string_view path,
                                      IssueList& issues,
                                      std::initializer_list<std::string_view> expected_types = {});

// Annotation (R4 §2.24.0.16); author[x] reduced to its text or reference.
struct Annotation {
  std::string text;
  std::optional<FhirDateTime> time;
  std::string author_string;
  Reference author_reference;
};
Annotation ReadAnnotation(const json::Value& v, std::string_view path, IssueList& issues);

// Money (R4 §2.24.0.10).
struct Money {
  std::optional<Decimal> value;
  std::string currency;
};
Money ReadMoney(const json::Value& v, std::string_view path, IssueList& issues);

// Path helpers: "a.b" and "a[3]".
std::string JoinPath(std::string_view path, std::string_view member);
std::string IndexPath(std::string_view path, std::size_t index);

// True when `s` is an R4 resource type name ("Patient"; also the abstract "Resource",
// "DomainResource").
bool IsResourceType(std::string_view s) noexcept;

// True when `s` is a valid FHIR id (R4 §2.24.0.1 id: [A-Za-z0-9\-\.]{1,64}).
bool IsValidId(std::string_view s) noexcept;
// R4 uuid and oid (§2.24.0.1), with their "urn:uuid:" / "urn:oid:" prefix. A uuid is lower-case
// hex, as R4's regex has it.
bool IsUuidUrn(std::string_view s) noexcept;
bool IsOidUrn(std::string_view s) noexcept;

}  // namespace ccm::fhir
