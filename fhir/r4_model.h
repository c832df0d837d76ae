// The FHIR R4 (4.0.1) structure model: which properties each resource, datatype and backbone
// element has, their types, cardinalities and (for `code` elements with a required binding) the
// allowed codes.
//
// Contract
// - Read-only lookups over a generated table (fhir/r4_model_data.inc, made by
//   scripts/gen-r4-model.mjs from the R4 StructureDefinitions). The hash indexes are built once, on
//   first use, in function-local statics; every function is thread-safe and never allocates after
//   that.
// - Names are R4 spellings and case-sensitive. A "structure" is a resource type ("Encounter"), a
//   complex datatype ("Period"), an abstract base ("Resource", "DomainResource", "Element",
//   "BackboneElement") or a backbone element named by its path ("Encounter.participant",
//   "Timing.repeat").
// - Element names are JSON property names: choice elements are expanded (`Observation.value[x]`
//   appears as `valueQuantity`, `valueString`, ... each with choice_base "value").
// - Returned pointers and views refer to static data and stay valid for the life of the program.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace ccm::fhir::r4 {

enum class StructureKind : std::uint8_t {
  kResource,  // a concrete resource type
  kDatatype,  // a concrete complex datatype
  kBackbone,  // a backbone element (or a datatype's nested element), named by its path
  kAbstract,  // Resource, DomainResource, Element, BackboneElement
};

enum class TypeKind : std::uint8_t {
  kPrimitive,  // one of PrimitiveTypes(): a JSON string, number or boolean plus an optional `_name`
  kComplex,    // a datatype or backbone structure: a JSON object
  kResource,   // "Resource": any resource, an object with its own resourceType
};

struct ElementInfo {
  std::string_view name;         // JSON property name, e.g. "status", "valueQuantity"
  std::string_view type;         // "code", "Period", "Encounter.participant", "Resource"
  std::string_view choice_base;  // "value" for valueQuantity; "" when not a choice element
  std::uint32_t min = 0;         // 0 or 1 (for a choice: of the whole choice group)
  bool many = false;             // max is "*": the JSON value is an array
  TypeKind type_kind = TypeKind::kComplex;
  std::string_view value_set;               // required value set URL, "" when codes are not checked
  std::span<const std::string_view> codes;  // allowed codes, sorted; empty when not checked

  bool is_choice() const noexcept { return !choice_base.empty(); }
  // Whether `code` is allowed (always true when codes are not checked). Binary search.
  bool AllowsCode(std::string_view code) const noexcept;
};

struct StructureInfo {
  std::string_view name;
  StructureKind kind = StructureKind::kDatatype;
  std::span<const ElementInfo> elements;  // in StructureDefinition order
};

// True for the 146 concrete R4 resource types (not "Resource" / "DomainResource").
bool IsResourceType(std::string_view name) noexcept;
// True for the 20 R4 primitive types ("boolean", "dateTime", "xhtml", ...).
bool IsPrimitiveType(std::string_view name) noexcept;

std::span<const std::string_view> ResourceTypes() noexcept;  // sorted
// The R4 resource type `name` most likely means, for a "did you mean ...?": the same letters in
// another case ("patient" -> "Patient"), a plural ("Encounters" -> "Encounter"), or a spelling at
// most one edit per four letters away ("Obsrvation" -> "Observation"). "" when none is that close
// (or `name` is itself a resource type).
std::string_view SuggestResourceType(std::string_view name);
std::span<const std::string_view> PrimitiveTypes() noexcept;  // sorted

// The structure named `name`, or nullptr.
const StructureInfo* FindStructure(std::string_view name) noexcept;

// The child of structure `structure` whose JSON property name is `json_name`, or nullptr.
// Includes inherited elements (id, meta, extension, ...).
const ElementInfo* FindChild(std::string_view structure, std::string_view json_name) noexcept;

// Follows a dotted path of JSON property names relative to `type`, e.g. ("Encounter",
// "participant.individual") or ("Observation", "valueQuantity.value"); nullptr when any step is
// unknown or steps into a primitive or a resource.
const ElementInfo* FindElement(std::string_view type, std::string_view relative_path) noexcept;

}  // namespace ccm::fhir::r4
