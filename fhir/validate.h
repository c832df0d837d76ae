// Structural validation of FHIR R4 JSON resources, driven by the generated R4 model (r4_model.h).
//
// Contract
// - Validate() never throws on data and never crashes, whatever the input (it is fuzzed): every
//   problem becomes an Issue with a severity, an IssueCode, a FHIRPath-style path with indices
//   (`Encounter.reasonCode[0].coding[1].code`; choice elements by their JSON name, e.g.
//   `Condition.onsetDateTime`) and a message saying what is wrong and how to fix it.
// - Errors are what a conformant R4 server would reject (R4 §2.6.2 JSON representation, §2.1.28
//   datatypes, cardinalities, required `code` bindings, per-1, dom-2..5, ext-1, ele-1, Bundle rules
//   bdl-1..12 and absolute fullUrls). Content the gateway keeps but does not understand (unknown
//   properties, `fhir_comments`) is a warning (IssueCode::kStructure), never an error.
// - Not checked: profiles (meta.profile), terminology beyond enumerable required `code` bindings
//   (Coding/CodeableConcept bindings, display names), reference resolution, FHIRPath invariants
//   other than those named above, XHTML narrative content beyond the root <div>.
// - Cost is linear in the size of the input; lookups go through hash tables built once; no regular
//   expressions. Thread-safe (no shared mutable state).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "fhir/issues.h"
#include "fhir/json.h"

namespace ccm::fhir {

struct ValidateOptions {
  // How per-1 (Period.start <= Period.end) treats values of different precision whose common
  // components are equal (start "2023-06-21", end "2023-06-21T06:20:00Z").
  enum class PeriodPrecision {
    // FHIRPath semantics, as the HL7 Java validator applies them: the comparison is empty
    // (unknown), so the invariant fails. Matches validator-cases/encounter-period.json.
    kFhirPath,
    // Only flag a start that is certainly after the end.
    kConservative,
  };
  PeriodPrecision period_precision = PeriodPrecision::kFhirPath;
  // Deepest nesting of JSON objects walked; deeper content is reported (kTooLong) and skipped.
  std::size_t max_depth = 64;
  // Report properties unknown to R4 as warnings (they are never errors).
  bool warn_unknown_properties = true;
};

// Validates one resource (a JSON object with a `resourceType`), including contained resources and
// Bundle entry resources, recursively. An empty list (or only warnings) means the resource is
// valid.
IssueList Validate(const json::Value& resource, const ValidateOptions& options = {});

// Checks one primitive JSON value against the R4 rules for `type` ("date", "id", "decimal", ...;
// see r4::PrimitiveTypes()). Returns "" when valid, otherwise what is wrong (for messages). Unknown
// types are accepted.
std::string CheckPrimitive(std::string_view type, const json::Value& value);

}  // namespace ccm::fhir
