// Codes -> meaning for the CCM engine: which diagnosis codes are chronic conditions (and of which
// category), which encounter codes are care-management time, which consent codes are CCM consent.
//
// Contract
// - The mappings are FHIR R4 data: ConceptMaps (code -> chronic category) and ValueSets (code
//   sets). The defaults are the files in mappings/data/ (see its README.md), compiled into the
//   library; an integration engineer extends or replaces them with files of the same shape.
// - Loading reports problems as Errors whose message names the origin (file), the JSON path
//   (`ConceptMap.group[0].element[12].target[0].code`) and what is expected; JSON syntax errors as
//   `file:line:column: what`. A failed Add leaves the map unchanged.
// - Lookups are hash lookups on the exact system and the normalised code (ICD-10-CM: without dot,
//   upper case, see NormalizeIcd10; other systems: exact). They do not allocate for ICD-10-CM codes
//   of ordinary length nor for other systems.
// - Loaded maps and sets are immutable in use: concurrent const calls are safe; Add* calls need
//   exclusive access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fhir/json.h"
#include "fhir/result.h"

namespace ccm::mappings {

// One chronic condition category: what the engine counts (two Conditions in one category are one
// chronic condition). Codes live in the system kChronicCategory (code_systems.h).
struct ChronicCategory {
  std::string code;     // e.g. "diabetes"
  std::string display;  // e.g. "Diabetes"
};

// (system, code) -> chronic category, loaded from FHIR ConceptMap JSON.
//
// Find() returns pointers into the map's own category storage; they stay valid for the map's
// lifetime, also after the map is moved (a copy has its own categories).
class ChronicConditionMap {
 public:
  ChronicConditionMap();
  ~ChronicConditionMap();
  ChronicConditionMap(const ChronicConditionMap&);
  ChronicConditionMap& operator=(const ChronicConditionMap&);
  ChronicConditionMap(ChronicConditionMap&&) noexcept;
  ChronicConditionMap& operator=(ChronicConditionMap&&) noexcept;

  // Adds every group/element/target of a ConceptMap. `origin` names the file in errors.
  // Each group needs `source` (the code system of element.code) and `target` = kChronicCategory;
  // each target needs `code` and `equivalence`; `display` is the category's display (the first one
  // seen wins; the code when none is given). Targets with equivalence "unmatched"/"disjoint" are
  // ignored; an element without targets maps nothing.
  // Errors (Errc::kInvalidArgument) name the origin, the JSON path and what is expected; a code
  // mapped to two different categories (within or across files) is an error, mapping it twice to
  // the same category is fine. `group.unmapped` is rejected (Errc::kUnsupported): every mapped code
  // must be listed. On error nothing is added.
  Status AddConceptMap(const fhir::json::Value& concept_map, std::string_view origin);

  // The category of (system, code), or nullptr. ICD-10-CM (kIcd10Cm) codes match with or without
  // the dot, case-insensitively (NormalizeIcd10); other systems exactly.
  const ChronicCategory* Find(std::string_view system, std::string_view code) const;

  std::size_t size() const noexcept;            // number of (system, code) entries
  std::size_t category_count() const noexcept;  // distinct categories

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Set of (system, code) from a FHIR ValueSet: compose.include[].{system, concept[].code} minus
// compose.exclude[] likewise. Regular type (copyable); immutable in use.
class CodeSet {
 public:
  CodeSet();
  ~CodeSet();
  CodeSet(const CodeSet&);
  CodeSet& operator=(const CodeSet&);
  CodeSet(CodeSet&&) noexcept;
  CodeSet& operator=(CodeSet&&) noexcept;

  // Errors name the origin and the JSON path: a resource that is not a ValueSet, no
  // compose.include, an include without system or code (Errc::kInvalidArgument); an include or
  // exclude of a whole system (no concept[]), with filter[] or valueSet[] (Errc::kUnsupported: list
  // the codes instead).
  static Result<CodeSet> FromValueSet(const fhir::json::Value& value_set, std::string_view origin);

  void Add(std::string_view system, std::string_view code);
  // ICD-10-CM normalised as in ChronicConditionMap::Find; other systems exactly.
  bool Contains(std::string_view system, std::string_view code) const;
  bool empty() const noexcept;
  std::size_t size() const noexcept;
  // Every (system, code), sorted; ICD-10-CM codes in their normalised (dot-less) form.
  std::vector<std::pair<std::string, std::string>> Entries() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// (system, code) -> a code of another system, from FHIR ConceptMaps (group.source -> group.target),
// e.g. SNOMED CT -> ICD-10-CM for claim diagnoses. Targets with equivalence "unmatched" or
// "disjoint" (or without a code) map nothing; the first mapped target of an element is used.
// Regular type; immutable in use.
class CodeTranslation {
 public:
  struct Target {
    std::string system, code, equivalence;
  };
  // Errors name the origin and the JSON path (a group without source/target, an element without
  // code, a code mapped to two different targets).
  Status AddConceptMap(const fhir::json::Value& concept_map, std::string_view origin);
  // The target of (system, code), or nullptr. ICD-10-CM sources match as in CodeSet::Contains.
  const Target* Find(std::string_view system, std::string_view code) const;
  std::size_t size() const noexcept { return map_.size(); }

 private:
  std::map<std::pair<std::string, std::string>, Target, std::less<>> map_;
};

// Loading files: reads, json::Parse (errors as `file:line:column: what`, Errc::kParseError), checks
// resourceType (Errc::kInvalidArgument), then AddConceptMap / FromValueSet with the file name as
// origin. A missing file is Errc::kNotFound, an unreadable one Errc::kIo.
// Each file must be a ConceptMap; they are added to `start` (empty: a map of these files only).
Result<ChronicConditionMap> LoadChronicConditionMaps(
    const std::vector<std::filesystem::path>& files, ChronicConditionMap start = {});
Result<CodeSet> LoadCodeSet(const std::filesystem::path& file);  // a ValueSet

// Built-in defaults: the files in mappings/data/, embedded into the library at build time (so the
// binary works without the source tree). Each call parses them again (about 5-20 ms for the
// chronic condition maps in a release build; callers keep the result). Errors here mean a broken
// build.
Result<ChronicConditionMap> DefaultChronicConditionMap();  // ccw + snomed ConceptMaps
Result<CodeSet> DefaultActivityCodes();                    // ccm-activity-codes.valueset.json
Result<CodeSet> DefaultConsentCodes();                     // ccm-consent-codes.valueset.json
// snomed-icd10cm-diagnoses.conceptmap.json: ICD-10-CM codes for the curated SNOMED CT concepts.
Result<CodeTranslation> DefaultDiagnosisTranslation();

// The embedded text of mappings/data/<file_name> (e.g. "ccm-consent-codes.valueset.json"), for
// docs and tests; "" if there is no such file. The view stays valid for the process lifetime.
std::string_view EmbeddedMappingFile(std::string_view file_name);
// Names of every embedded file, sorted.
std::vector<std::string_view> EmbeddedMappingFileNames();

}  // namespace ccm::mappings
