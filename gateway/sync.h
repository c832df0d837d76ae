// Pulling the CCM engine's resources from FHIR servers into the state store, incrementally, and
// reading them back into the engine's facts.
//
// Per source and resource type (docs/architecture.md "Sync"):
// - The first sync, a changed patient scope, or --full pulls everything in scope; after a complete
//   full pull, stored resources the server no longer returned are removed (deleted on the server,
//   or out of scope).
// - Later syncs search `_lastUpdated=gt<watermark>`. The watermark is the server's clock (its Date
//   header) at the start of the previous pull minus a safety margin, in whole seconds: windows
//   overlap, so a resource committed late or stamped by a drifting clock is still seen; the
//   overlap is absorbed by de-duplication on id + meta.versionId (StateStore::Upsert).
// - Each page is stored in one transaction; the cursor moves only in the transaction of the last
//   page. A process killed at any point resumes from the old cursor: pages already stored come
//   again and are recognised as unchanged, so nothing is lost or counted twice.
// - Types of one source are pulled concurrently (maxConcurrency connections per source).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fhir/fhir_client.h"
#include "fhir/issues.h"
#include "gateway/ccm_config.h"
#include "gateway/ccm_facts.h"
#include "gateway/evaluate.h"
#include "gateway/state_store.h"
#include "gateway/sync_config.h"

namespace ccm::gateway {

struct TypeSync {
  std::string source, type;
  bool full = false;         // a full pull (no usable cursor, or --full)
  std::size_t searches = 0;  // 1, or more for patient-id chunks or _lastUpdated windows
  std::size_t pages = 0, resources = 0;
  std::size_t inserted = 0, updated = 0, unchanged = 0, older = 0, removed = 0;
  std::size_t rolled_back = 0;  // older versions that replaced the stored ones (full pulls)
  std::size_t bytes = 0;
  double seconds = 0;
  std::string watermark;  // the cursor saved at the end ("" when none was)
  std::string error;      // set when this type failed (its cursor did not move)
};

struct SourceSync {
  std::string name;
  std::vector<TypeSync> types;
  std::vector<std::string> warnings;  // e.g. a type the server does not support
  std::string error;                  // the source could not be synced at all
  fhir::ClientStats http;
  bool ok() const;
};

struct SyncOptions {
  bool full = false;
  std::int64_t run = 0;  // StateStore::StartRun id: marks what this run saw
};

// Progress and events. Called from the worker threads, but one at a time (under a mutex), so the
// callbacks need no locking of their own.
struct SyncObserver {
  std::function<void(const TypeSync&)> on_page;        // after each stored page
  std::function<void(const TypeSync&)> on_type_done;   // success or failure
  std::function<void(const std::string&)> on_warning;  // a source-level warning
};

// The resource types pulled when a source does not list them: the engine's, with Practitioner
// and PractitionerRole only when billing practitioners are configured by NPI (then encounter
// performers must be resolved to NPIs).
std::vector<std::string> DefaultResourceTypes(const EngineConfig& engine);

// A client for `source` (its base URL, auth, TLS, timeouts and retries); `purpose` goes into the
// User-Agent ("sync", "write-back").
Result<std::unique_ptr<fhir::FhirClient>> MakeFhirClient(const SourceConfig& source,
                                                         std::string_view purpose);

// Pulls one source into `store`. Never throws; failures are in the result (per type, or for the
// whole source when it cannot be reached or authorised).
SourceSync SyncSource(const SourceConfig& source, const EngineConfig& engine, StateStore& store,
                      const SyncOptions& options, const SyncObserver& observer);

// Reads every stored resource (of all sources) into `facts`, exactly as CollectFacts reads files:
// the same extraction, so evaluation gives the same answer whatever the source. Issues are located
// as "<source>:<Type>/<id>". Two sources holding the same Type/id are reported (the engine keys
// resources by Type/id, so sources must not share an id space) and the newer version is used.
Result<CollectReport> CollectFactsFromStore(StateStore& store, const EngineConfig& config,
                                            FactStore& facts);

}  // namespace ccm::gateway
