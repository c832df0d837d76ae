// Reading the state store's resources into the engine's facts (the counterpart of
// gateway/ingest/collect.h for files).
#pragma once

#include <string>
#include <vector>

#include "fhir/result.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ccm/facts.h"
#include "gateway/ingest/collect.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

// Reads the stored resources of `sources` (the configured source names) into `facts`, exactly as
// CollectFacts reads files:
// the same extraction, so evaluation gives the same answer whatever the source. Issues are located
// as "<source>:<Type>/<id>". Two sources holding the same Type/id are reported (the engine keys
// resources by Type/id, so sources must not share an id space) and the newer version is used.
// Rows of a source no longer configured are not read -- nothing refreshes them, so billing from
// them would bill from stale data -- and one warning says how many there are and whose.
Result<CollectReport> CollectFactsFromStore(ResourceTable& store, const EngineConfig& config,
                                            const std::vector<std::string>& sources,
                                            FactStore& facts);

}  // namespace ccm::gateway
