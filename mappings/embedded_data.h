// Internal to ccm_mappings: the files of mappings/data/ compiled into the library (see
// embed_data.cmake). Use EmbeddedMappingFile() in code_maps.h, which joins the chunks.
#pragma once

#include <span>
#include <string_view>

namespace ccm::mappings::embedded {

struct EmbeddedFile {
  std::string_view name;                     // file name, e.g. "ccm-consent-codes.valueset.json"
  std::span<const std::string_view> chunks;  // the file's bytes, in order
};

// Every embedded file, sorted by name. Defined in the generated embedded_data.cpp.
std::span<const EmbeddedFile> Files() noexcept;

}  // namespace ccm::mappings::embedded
