// Files under config/ compiled into the binary (see cmake/embed_files.cmake): the shipped fee
// schedules, so that `evaluate` works without the source tree.
#pragma once

#include <string_view>
#include <vector>

namespace ccm::gateway {

struct EmbeddedFile {
  std::string_view name;  // file name without directory, e.g. "fee-schedule-2025.json"
  std::string_view text;
};

const std::vector<EmbeddedFile>& EmbeddedConfigFiles();

}  // namespace ccm::gateway
