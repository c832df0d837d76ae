// Small builders for FHIR JSON datatypes (R4 §2.24: Reference, Coding, CodeableConcept,
// Identifier), for code that writes resources. They build plain json::Values; nothing is checked
// here (fhir/validate.h checks what was built).
#pragma once

#include <string_view>

#include "fhir/json.h"

namespace ccm::fhir::build {

json::Value Str(std::string_view s);
// {"reference": reference}
json::Value Ref(std::string_view reference);
// {"system", "code"[, "display"]}
json::Value Coding(std::string_view system, std::string_view code, std::string_view display = {});
// {"coding": [Coding(system, code, display)]}
json::Value Concept(std::string_view system, std::string_view code, std::string_view display = {});
// {"system", "value"}
json::Value Identifier(std::string_view system, std::string_view value);

// The id of a literal reference: "Patient/123" -> "123" (the whole text when it has no '/').
std::string_view ReferenceId(std::string_view reference) noexcept;

}  // namespace ccm::fhir::build
