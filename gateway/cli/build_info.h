// What this binary was built from, for `ccm-gateway version`. Generated at configure time into
// build_info.cpp (gateway/CMakeLists.txt): a new commit recompiles that one file, not every
// target, and the commit is the one of the last configure (scripts/build configures every time).
#pragma once

#include <string_view>

namespace ccm::gateway::cli {

std::string_view BuildVersion() noexcept;  // the project version, "0.1.0"
// The git commit, abbreviated, with "-dirty" when tracked files had changes; "unknown" outside git.
std::string_view BuildCommit() noexcept;
std::string_view BuildType() noexcept;  // CMAKE_BUILD_TYPE: "Release", "Debug", ...

}  // namespace ccm::gateway::cli
