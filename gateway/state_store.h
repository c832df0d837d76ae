// The gateway's durable state: sync cursors, the newest pulled version of every resource the CCM
// engine reads, and the history of runs.
//
// Contract
// - StateStore is the interface the sync (and later the billing ledger) is written against; the
//   SQLite implementation here is the embedded default, and a PostgreSQL one can fill the same
//   interface (nothing above it issues SQL).
// - Resources are kept per source as the JSON the server sent, newest version only: Upsert
//   compares version stamps (meta.versionId, then meta.lastUpdated; gateway/versions.h) so that
//   pages read twice, out of order or from an overlapping window never double-count or roll a
//   resource back.
// - All changes made inside InTransaction() land together or not at all (a process killed half-way
//   leaves the previous state). Outside a transaction each call is its own transaction.
// - One StateStore object is not thread-safe; serialise calls (the sync holds a mutex). Several
//   processes may open the same SQLite file: WAL mode plus a busy timeout make them wait for each
//   other rather than fail.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fhir/result.h"
#include "gateway/versions.h"

namespace ccm::gateway {

enum class UpsertOutcome {
  kInserted,   // first time this resource is seen
  kUpdated,    // a newer version replaced the stored one
  kUnchanged,  // the same version again (an overlapping window, a re-read page)
  kOlder,      // an older version than the one stored; kept the stored one
};

// Where incremental sync of one source and resource type has got to.
struct SyncCursor {
  std::string watermark;  // an instant "2026-11-22T13:53:28Z": next sync asks _lastUpdated=gt it
  std::string scope;      // fingerprint of the patient scope it was made for; a change = full pull
};

struct RunInfo {
  std::int64_t id = 0;
  std::string command, started, finished, status;
  std::string summary;  // JSON
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Runs `body` in one transaction: committed when it succeeds, rolled back when it fails.
  virtual Status InTransaction(const std::function<Status()>& body) = 0;

  // Stores `json` as the resource `type`/`id` of `source` unless a newer version is stored.
  // `run` marks the resource as seen by that run (see RemoveUnseen), whatever the outcome.
  virtual Result<UpsertOutcome> Upsert(std::string_view source, std::string_view type,
                                       std::string_view id, const VersionStamp& stamp,
                                       std::string_view json, std::int64_t run) = 0;
  // Deletes the resources of `source`/`type` not seen by `run` (after a complete full pull they
  // no longer exist on the server, or left the scope). Returns how many.
  virtual Result<std::size_t> RemoveUnseen(std::string_view source, std::string_view type,
                                           std::int64_t run) = 0;
  // Calls `fn` for every stored resource of `source` (all sources when empty), ordered by type and
  // id; stops early when fn returns false.
  virtual Status ForEachResource(
      std::string_view source,
      const std::function<bool(std::string_view source, std::string_view type, std::string_view id,
                               std::string_view json)>& fn) = 0;
  virtual Result<std::size_t> CountResources(std::string_view source, std::string_view type) = 0;

  virtual Result<std::optional<SyncCursor>> GetCursor(std::string_view source,
                                                      std::string_view type) = 0;
  virtual Status SetCursor(std::string_view source, std::string_view type,
                           const SyncCursor& cursor) = 0;

  // Run history: StartRun records a run as "running"; FinishRun sets its status and summary.
  virtual Result<std::int64_t> StartRun(std::string_view command) = 0;
  virtual Status FinishRun(std::int64_t run, std::string_view status,
                           std::string_view summary_json) = 0;
  virtual Result<std::optional<RunInfo>> LastRun(std::string_view command) = 0;

  // The schema version in the store (migrations are applied on open).
  virtual int schema_version() const = 0;
};

// Opens (creating when missing) a SQLite state file, in WAL mode, and migrates its schema to the
// current version. Fails with a clear message when the file is not a ccm-gateway state file, is
// from a newer ccm-gateway, or cannot be opened.
Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::filesystem::path& path);

// The schema version this build writes.
int CurrentStateSchemaVersion() noexcept;

}  // namespace ccm::gateway
