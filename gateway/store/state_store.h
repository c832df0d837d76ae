// The gateway's durable state: sync cursors, the newest pulled version of every resource the CCM
// engine reads, the history of runs, the billing ledger with its deliveries, the audit log of
// writes to other systems, and the audit trail of reads of patient data through `serve`.
//
// Contract
// - StateStore is the interface the sync and the billing ledger are written against; the
//   SQLite implementation here is the embedded default, and a PostgreSQL one can fill the same
//   interface (nothing above it issues SQL).
// - Resources are kept per source as the JSON the server sent, newest version only: Upsert
//   compares version stamps (meta.versionId, then meta.lastUpdated; gateway/base/versions.h) so
//   that pages read twice, out of order or from an overlapping window never double-count or roll a
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
#include <vector>

#include "fhir/datetime.h"
#include "fhir/result.h"
#include "gateway/base/versions.h"

namespace ccm::gateway {

enum class UpsertOutcome {
  kInserted,    // first time this resource is seen
  kUpdated,     // a newer version replaced the stored one
  kUnchanged,   // the same version again (an overlapping window, a re-read page)
  kOlder,       // an older version than the one stored; kept the stored one
  kRolledBack,  // an older version than the one stored replaced it (UpsertMode::kTrustServer)
};

// What Upsert does with a version older than the stored one.
enum class UpsertMode {
  kKeepNewest,   // keep the stored one (incremental pulls: an old page, an overlapping window)
  kTrustServer,  // a full pull: the server's copy is the truth (it was restored, or its version
                 // ids went backwards), unless the stored one was stored by this same run (a
                 // resource met twice in one pull keeps its newest version)
};

// Where incremental sync of one source and resource type has got to.
struct SyncCursor {
  std::string watermark;  // an instant "2026-11-22T13:53:28Z": next sync asks _lastUpdated=ge it
  std::string scope;      // fingerprint of the patient scope it was made for; a change = full pull
};

// One entry of the billing ledger (gateway/billing/ledger.h gives it meaning). An entry is one
// revision of what is billed for a patient-month in one code family; a correction is a new revision
// that supersedes the previous one, never an edit of it.
struct LedgerRow {
  std::int64_t id = 0;
  std::string patient;  // "Patient/<id>"
  std::string month;    // "YYYY-MM"
  std::string family;   // code family: codes that are never billed together for a patient-month
  int revision = 1;
  std::string kind;    // "charge" | "adjustment" | "void"
  std::string status;  // "pending" | "submitted" | "acknowledged" | "superseded"
  std::optional<std::int64_t> supersedes;
  std::string program;             // "CCM" | "PCM" ("" for a void)
  std::string lines_json;          // [{"code","units","amount","encounters"}]
  std::int64_t staff_minutes = 0;  // billable minutes behind it
  std::int64_t practitioner_minutes = 0;
  std::int64_t amount_cents = 0;  // expected payment (fee schedule)
  std::string evidence_json;      // conditions, consents, care plans, encounters
  std::string fingerprint;        // equal for equal billing decisions
  std::string created_at, submitted_at, acknowledged_at;
  std::int64_t run = 0;
  // Schema 4: why the run that wrote this entry billed from data it knew to be incomplete
  // (`bill --allow-incomplete`: one line per source/type that was not complete); "" otherwise.
  std::string allow_incomplete;
};

// Delivery of a ledger entry to one output channel ("charge-items", "payer:<name>"), in a batch.
struct DeliveryRow {
  std::int64_t entry = 0;
  std::string channel;
  std::string batch;   // the output it goes out in (a file, a Bundle identifier)
  std::string status;  // "prepared" | "done" | "failed"
  std::string detail;  // where it went, or why it failed
  std::string updated_at;
};

// One write the gateway made (or decided against) on an external system.
struct AuditRow {
  std::int64_t id = 0;
  std::string at;
  std::int64_t run = 0;
  std::string action;   // "create" | "update" | "no-change" | "conflict" | "skip" | "error" | ...
  std::string target;   // "CarePlan/<id>", "ChargeItem/<id>", a file name
  std::string version;  // the version written, when known
  std::string detail;
  std::string provenance;  // "Provenance/<id>" when one was written
};

// The outcome of the last pull of one source's resource type (docs/architecture.md
// "Completeness"). `bill` refuses while a needed type is not kComplete/kNotOffered.
enum class PullState {
  kRunning,     // started and not finished: a sync is running, or one died (no lock held)
  kComplete,    // everything the server holds was read and stored; the cursor moved
  kIncomplete,  // read without error, but not provably everything (short total, unstable
                // paging, implausible clock): what arrived is stored, the cursor did not move
  kFailed,      // an error ended the pull; the cursor did not move, nothing was removed
  kNotOffered,  // the server's CapabilityStatement does not offer the type
};
std::string_view ToCode(PullState s) noexcept;
std::optional<PullState> PullStateFromCode(std::string_view code) noexcept;

// How a pull read its type: everything in scope again (kFull: a first pull, `sync --full`, a
// changed scope, a server without _lastUpdated), or only what changed since the cursor. Only a
// full pull sees what was deleted or lost, so only a complete full pull confirms a void.
enum class PullMode { kIncremental, kFull };

struct PullStatus {
  std::string source, type;
  PullState state = PullState::kRunning;
  std::int64_t run = 0;               // the sync run of the last attempt
  std::string started_at;             // the last attempt (local clock, instants)
  std::string finished_at;            // "" while running
  std::string detail;                 // why it is not complete (no patient data)
  std::string last_complete_started;  // the last complete pull ("" when none)
  std::string last_complete_finished;
  std::string last_full_complete_started;  // the last complete full pull ("" when none)
  std::string failing_since;  // start of the first attempt since the last complete one that was
                              // not complete ("" when the last attempt was complete)
};

// A void or downward adjustment of a delivered ledger entry is not carried out in the run that
// first sees it: it is proposed (gateway/billing/ledger.h), and carried out by a later run once a
// complete sync confirms it or an operator approves it.
enum class ProposalStatus {
  kOpen,        // waiting for a complete sync, or an approval
  kApproved,    // an operator approved it (`ledger --approve`); the next bill carries it out
  kCarriedOut,  // the revision it proposed was written (`result_entry`)
  kDropped,     // it no longer stood (the data came back, or the engine now says otherwise)
};
std::string_view ToCode(ProposalStatus s) noexcept;
std::optional<ProposalStatus> ProposalStatusFromCode(std::string_view code) noexcept;

struct LedgerProposal {
  std::int64_t id = 0;
  std::int64_t entry = 0;  // the active entry it would supersede
  ProposalStatus status = ProposalStatus::kOpen;
  std::string reason;  // why it is proposed (no patient data: it is printed in logs)
  // The revision it would write: patient, month, family, kind ("void" | "adjustment"), program,
  // lines, minutes, amount, evidence, fingerprint (id, revision, status, run are not kept).
  LedgerRow proposed;
  std::string created_at;
  std::int64_t run = 0;  // the bill run that proposed it
  std::string approved_at, approved_by;
  std::string closed_at;  // when carried out or dropped
  std::string outcome;    // how it was confirmed, or why it was dropped
  std::optional<std::int64_t> result_entry;
};

// Schema 6: one access to patient data through `ccm-gateway serve` (HIPAA 45 CFR 164.312(b), audit
// controls): who, what, when, and how it ended. The store is the protected record, so the patient
// reference is kept here in clear (never in a log line).
struct AccessRow {
  std::int64_t id = 0;
  std::string at;         // AccessInstant of the request ("" on insert: now)
  std::string principal;  // the token's name, "certificate:<CN>", or "" (not authenticated)
  std::string method;     // "GET"
  std::string route;      // the route's pattern: "/Patient/{id}/$ccm-status"
  std::string patient;    // "Patient/<id>" asked for ("" when the route names none)
  std::string month;      // "YYYY-MM" asked for ("" none; "(invalid)" when not a month)
  int status = 0;         // the HTTP status answered
};

// Which access records AccessRecords returns: all criteria that are set must hold.
struct AccessQuery {
  std::int64_t after_id = 0;  // only newer records
  std::string patient;        // "Patient/<id>"
  std::string principal;
  std::string since;  // an AccessInstant: records at or after it
};

// `t` as the fixed-width instant access records keep ("2026-11-01T10:00:00.000Z"), so that text
// order is time order.
std::string AccessInstant(fhir::TimePoint t);

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

  // Stores `json` as the resource `type`/`id` of `source` unless a newer version is stored (see
  // UpsertMode). `run` marks the resource as seen by that run (see UnseenIds), whatever the
  // outcome.
  virtual Result<UpsertOutcome> Upsert(std::string_view source, std::string_view type,
                                       std::string_view id, const VersionStamp& stamp,
                                       std::string_view json, std::int64_t run,
                                       UpsertMode mode = UpsertMode::kKeepNewest) = 0;
  // The ids of `source`/`type` not seen by `run` (after a full pull: the candidates for removal,
  // each to be confirmed with the server before RemoveResource), sorted.
  virtual Result<std::vector<std::string>> UnseenIds(std::string_view source, std::string_view type,
                                                     std::int64_t run) = 0;
  // Deletes one resource (after the server confirmed it is gone). Returns whether it existed.
  virtual Result<bool> RemoveResource(std::string_view source, std::string_view type,
                                      std::string_view id) = 0;
  // Calls `fn` for every stored resource of `source` (all sources when empty), in no particular
  // order (storage order: the fastest); stops early when fn returns false.
  virtual Status ForEachResource(
      std::string_view source,
      const std::function<bool(std::string_view source, std::string_view type, std::string_view id,
                               std::string_view json)>& fn) = 0;
  // The stored JSON of `source`'s `type`/`id`, if any (a primary-key look-up).
  virtual Result<std::optional<std::string>> ResourceJson(std::string_view source,
                                                          std::string_view type,
                                                          std::string_view id) = 0;
  virtual Result<std::size_t> CountResources(std::string_view source, std::string_view type) = 0;
  // The sources that have stored resources, sorted.
  virtual Result<std::vector<std::string>> SourceNames() = 0;

  virtual Result<std::optional<SyncCursor>> GetCursor(std::string_view source,
                                                      std::string_view type) = 0;
  virtual Status SetCursor(std::string_view source, std::string_view type,
                           const SyncCursor& cursor) = 0;

  // Pull status (one row per source and type). BeginPull marks an attempt running; EndPull
  // records its outcome (call it in the transaction that moves the cursor, so the two agree).
  virtual Status BeginPull(std::string_view source, std::string_view type, std::int64_t run) = 0;
  virtual Status EndPull(std::string_view source, std::string_view type, std::int64_t run,
                         PullState state, PullMode mode, std::string_view detail) = 0;
  // Every source and type ever pulled, by source and type.
  virtual Result<std::vector<PullStatus>> PullStatuses() = 0;

  // Run history: StartRun records a run as "running"; FinishRun sets its status and summary.
  virtual Result<std::int64_t> StartRun(std::string_view command) = 0;
  virtual Status FinishRun(std::int64_t run, std::string_view status,
                           std::string_view summary_json) = 0;
  virtual Result<std::optional<RunInfo>> LastRun(std::string_view command) = 0;

  // --- Billing ledger (gateway/billing/ledger.h). Call inside InTransaction when several changes
  // must land together. Entries of `month` ("" = all), oldest first; only those not superseded when
  // `active_only`.
  virtual Result<std::vector<LedgerRow>> LedgerEntries(std::string_view month,
                                                       bool active_only) = 0;
  virtual Result<std::optional<LedgerRow>> LedgerEntry(std::int64_t id) = 0;
  // Inserts `row` (its id is ignored) and marks the entry it supersedes "superseded" (dropping
  // that entry's deliveries not yet done: the successor carries the change). At most one
  // entry per patient, month and family is not superseded: a second one is refused (a unique
  // index), which is what makes billing exactly-once under concurrent runs.
  virtual Result<std::int64_t> AddLedgerEntry(const LedgerRow& row) = 0;
  // Supersedes a pending entry that was never delivered anywhere, without a successor (what it
  // billed is no longer billable and nobody has seen it). Its undelivered deliveries go with it.
  virtual Status WithdrawLedgerEntry(std::int64_t id) = 0;
  // Moves an entry to "submitted" or "acknowledged" (stamping the time).
  virtual Status SetLedgerStatus(std::int64_t id, std::string_view status) = 0;

  virtual Status AddDelivery(std::int64_t entry, std::string_view channel,
                             std::string_view batch) = 0;
  virtual Status SetDelivery(std::int64_t entry, std::string_view channel, std::string_view status,
                             std::string_view detail) = 0;
  // The batches deliveries to `channel` were ever queued in (not "": held), sorted.
  virtual Result<std::vector<std::string>> DeliveryBatches(std::string_view channel) = 0;
  // Deliveries of one entry (entry > 0), or all not yet done (entry == 0), by entry and channel.
  virtual Result<std::vector<DeliveryRow>> Deliveries(std::int64_t entry) = 0;

  // Returns the record's id.
  virtual Result<std::int64_t> AddAudit(const AuditRow& row) = 0;
  // Audit records newer than `after_id`, oldest first.
  virtual Result<std::vector<AuditRow>> AuditLog(std::int64_t after_id) = 0;

  // The schema version in the store (migrations are applied on open).
  virtual int schema_version() const = 0;

  // --- Schema 4: proposals (gateway/billing/ledger.h "Proposals"), re-batching of held deliveries,
  // audit records by target. Records an open proposal (its id, status and times are ignored). At
  // most one proposal per entry is open or approved: a second one is refused with Errc::kConflict.
  virtual Result<std::int64_t> AddLedgerProposal(const LedgerProposal& proposal) = 0;
  // Proposals of `month` ("" = all), oldest first; only open and approved ones when `open_only`.
  virtual Result<std::vector<LedgerProposal>> LedgerProposals(std::string_view month,
                                                              bool open_only) = 0;
  // An operator's approval of an open proposal, stamped with the time and `by`. Errc::kNotFound
  // when there is no such proposal, Errc::kConflict when it is not open.
  virtual Status ApproveLedgerProposal(std::int64_t id, std::string_view by) = 0;
  // Closes an open or approved proposal as kCarriedOut (with the entry written) or kDropped,
  // saying why. Errc::kConflict when it is already closed.
  virtual Status CloseLedgerProposal(std::int64_t id, ProposalStatus status,
                                     std::string_view outcome,
                                     std::optional<std::int64_t> result_entry) = 0;
  // Moves one delivery to another batch: a claim held back leaves the batch it was queued in
  // ("" while held), and goes out in a batch of its own once released.
  virtual Status SetDeliveryBatch(std::int64_t entry, std::string_view channel,
                                  std::string_view batch) = 0;
  // Audit records whose target is `target`, oldest first.
  virtual Result<std::vector<AuditRow>> AuditRecords(std::string_view target) = 0;

  // --- Schema 6: the access trail of `serve`. Appends `rows` in one transaction (ids ignored).
  virtual Status AddAccessRecords(const std::vector<AccessRow>& rows) = 0;
  // Access records matching `query`, oldest first.
  virtual Result<std::vector<AccessRow>> AccessRecords(const AccessQuery& query) = 0;
};

}  // namespace ccm::gateway
