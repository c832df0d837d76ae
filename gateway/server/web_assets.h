// The care team's page (GET /, docs/worklist.md "The page"): the files of gateway/server/web/,
// compiled into the binary by cmake/embed_files.cmake, so that `serve` needs no file at run time
// and the page always matches the API of the same build.
#pragma once

#include <vector>

#include "gateway/ccm/embedded_config.h"

namespace ccm::gateway::server {

// index.html, app.js, app.css, favicon.svg: name (no directory) and bytes.
const std::vector<EmbeddedFile>& WebAssetFiles();

}  // namespace ccm::gateway::server
