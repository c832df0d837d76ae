// Canonical code system URIs and code normalisation used when matching codes to meaning.
#pragma once

#include <string>
#include <string_view>

namespace ccm::mappings {

inline constexpr std::string_view kSnomed = "http://snomed.info/sct";
inline constexpr std::string_view kIcd10Cm = "http://hl7.org/fhir/sid/icd-10-cm";
inline constexpr std::string_view kCpt = "http://www.ama-assn.org/go/cpt";
inline constexpr std::string_view kLoinc = "http://loinc.org";
// The chronic condition categories the CCM engine counts
// (mappings/data/chronic-categories.codesystem.json).
inline constexpr std::string_view kChronicCategory = "urn:ccm-gateway:chronic-category";

// ICD-10-CM codes appear with the dot in FHIR (`E11.9`) and without it in claims data (`E119`);
// returns the upper-case, dot-less form used as the lookup key.
std::string NormalizeIcd10(std::string_view code);

}  // namespace ccm::mappings
