// Pulling the CCM engine's resources from FHIR servers into the state store, incrementally, and
// reading them back into the engine's facts.
//
// Per source and resource type (docs/architecture.md "Data flow (sync)" and "Completeness"):
// - The first sync, a changed patient scope, or --full pulls everything in scope; later syncs
//   search `_lastUpdated=gt<watermark>`.
// - Every search is bounded above by the server's clock at the start of the source's sync
//   (`_lastUpdated=lt<T>`, T the Date of the CapabilityStatement response in whole seconds): a
//   change made while the search is paged moves its resource out of the result, so the result
//   can only shrink while it is read, and a shrink is the only way a page boundary can skip a
//   resource. A multi-page search is proven complete when its Bundle.total at the first page
//   equals a `_summary=count` at the end, no resource came twice and the distinct resources read
//   equal the total; otherwise it is read again (up to kMaxPasses). What changed in T's own
//   second or later comes with the next sync.
// - A server answer that is not the data it claims to be fails the type: an OperationOutcome of
//   severity error or fatal among the entries, a page whose entries are all of another type or
//   without id, an empty page that links further, more than maxPagesPerSearch pages.
// - Outcomes per type (PullState): complete (the cursor moves to T minus the safety margin, in
//   the transaction that stores the pull status; a full pull then removes what the server no
//   longer has, each removal confirmed by asking the server for it by id, and never more than
//   sync.maxDeletePercent of the type without --allow-mass-delete), incomplete (what arrived is
//   stored; the cursor stays; nothing is removed), failed (the same, with the error).
// - The cursor never comes from an implausible clock: a Date further than sync.maxClockSkewSeconds
//   from ours, or behind the newest meta.lastUpdated read by more than that, is not used (warned).
// - A killed process resumes from the old cursor: pages already stored come again and are
//   recognised as unchanged, so nothing is lost or counted twice.
// - Types of one source are pulled concurrently (maxConcurrency connections per source).
// - Callers serialise syncs on one state file (gateway/store/locks.h); SyncSource does not lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fhir/client/fhir_client.h"
#include "fhir/issues.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/config/sync_config.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

struct TypeSync {
  std::string source, type;
  PullState state = PullState::kRunning;  // the outcome, once the type is done
  bool full = false;                      // a full pull (no usable cursor, or --full)
  std::size_t searches = 0;  // 1, or more for patient-id chunks or _lastUpdated windows
  std::size_t passes = 0;    // search passes (more than `searches` when results changed mid-read)
  std::size_t pages = 0, resources = 0;
  std::size_t inserted = 0, updated = 0, unchanged = 0, older = 0, removed = 0;
  std::size_t rolled_back = 0;       // older versions that replaced the stored ones (full pulls)
  std::size_t rejected = 0;          // entries not of the type, or without an id
  std::size_t recovered = 0;         // removal candidates the server still had (paging missed them)
  std::optional<std::size_t> total;  // what the servers' Bundle.total said (sum over searches)
  std::size_t distinct = 0;          // distinct resources read (sum over searches)
  std::size_t bytes = 0;
  double seconds = 0;
  std::string watermark;  // the cursor saved at the end ("" when it did not move)
  std::string error;      // why the type is not complete (failed or incomplete); no patient data

  // Counts one stored resource by what the store did with it (inserted ... rolled_back).
  void Count(UpsertOutcome o);
};

struct SourceSync {
  std::string name;
  std::vector<TypeSync> types;
  std::vector<std::string> warnings;  // e.g. a type the server does not support
  std::string error;                  // the source could not be synced at all
  fhir::ClientStats http;
  // True when every type is complete (or not offered by the server) and the source did not fail.
  bool ok() const;
};

struct SyncOptions {
  bool full = false;
  bool allow_mass_delete = false;
  std::int64_t run = 0;  // StateStore::StartRun id: marks what this run saw
  std::chrono::seconds max_clock_skew{300};
  int max_delete_percent = 5;
  // Set by another thread to stop the pull early (the service's shutdown): checked before each
  // search and each page, so the page being stored finishes its transaction first. A type stopped
  // so is kFailed ("stopped"), keeps its cursor and removes nothing; the next sync resumes there.
  const std::atomic<bool>* stop = nullptr;
};

// Progress and events. Called from the worker threads, but one at a time (under a mutex), so the
// callbacks need no locking of their own.
struct SyncObserver {
  std::function<void(const TypeSync&)> on_page;        // after each stored page
  std::function<void(const TypeSync&)> on_type_done;   // success or failure
  std::function<void(const std::string&)> on_warning;  // a warning (no patient data)
  // Progress that is no page: a Bulk Data export's X-Progress while it is prepared.
  std::function<void(const std::string&)> on_progress;
};

// The types `source` pulls: its resourceTypes, or DefaultResourceTypes.
std::vector<std::string> SourceResourceTypes(const SourceConfig& source,
                                             const EngineConfig& engine);

// Pulls one source into `store`. Never throws; failures are in the result (per type, or for the
// whole source when it cannot be reached or authorised) and in the store's pull status.
SourceSync SyncSource(const SourceConfig& source, const EngineConfig& engine, StateStore& store,
                      const SyncOptions& options, const SyncObserver& observer);

}  // namespace ccm::gateway
