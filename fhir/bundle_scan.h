// A one-pass scan of a Bundle page (searchset, history) that finds each entry's resource as a span
// of the original text, without building a tree.
//
// For bulk pulls (sync) the text a server sent for a resource is exactly what should be kept:
// nothing re-serialised, decimals and member order as written. The scan validates the whole page
// (JSON syntax, UTF-8, no NUL bytes, nesting depth) and reads only what paging and storage need:
// Bundle.resourceType, type and total, the `next` link, and per entry the resource's resourceType,
// id, meta.versionId, meta.lastUpdated and the entry's search.mode.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/result.h"

namespace ccm::fhir {

struct ScannedEntry {
  std::string resource_type, id, version_id, last_updated, search_mode;
  std::size_t begin = 0, end = 0;  // the resource object is text[begin, end)
  bool has_resource = false;
};

struct ScannedPage {
  std::string resource_type;         // of the page itself ("Bundle")
  std::string type;                  // Bundle.type ("searchset", ...)
  std::optional<std::size_t> total;  // Bundle.total, when present and a valid unsignedInt
  std::string next_url;              // link[relation=next].url, "" when none
  std::vector<ScannedEntry> entries;
  // Bundle.entry was present but not an array (null, an object, a string): not a valid page.
  bool entry_not_array = false;
};

// Error (Errc::kParseError, "line L, column C: ...") when `text` is not valid JSON; a valid JSON
// text that is not a Bundle scans with resource_type set to what it is.
Result<ScannedPage> ScanBundle(std::string_view text, std::size_t max_depth = 100);

}  // namespace ccm::fhir
