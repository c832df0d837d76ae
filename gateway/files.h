// Writing output files safely (reports, claim files).
#pragma once

#include <filesystem>
#include <string_view>

#include "fhir/result.h"

namespace ccm::gateway {

// Writes `text` to `path` through a temporary file renamed into place, so that a failed run never
// leaves a partial report where a previous good one was. Devices and pipes are written directly.
Status WriteFileAtomically(const std::filesystem::path& path, std::string_view text);

}  // namespace ccm::gateway
