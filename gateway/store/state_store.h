// The gateway's durable state: sync cursors, the newest pulled version of every resource the CCM
// engine reads, the history of runs, the billing ledger with its deliveries, the audit log of
// writes to other systems, and the audit trail of reads of patient data through `serve`.
//
// Contract
// - StateStore is the interface the sync and the billing ledger are written against: the narrow
//   interfaces below (ResourceTable, SyncProgress, RunHistory, LedgerStore, AuditTrail) plus
//   transactions. The SQLite implementation (sqlite_state_store.h) is the embedded default; another
//   backend fills the same interfaces and passes the same conformance suite
//   (tests/gateway/store/state_store_conformance.h). Nothing above the store issues SQL.
// - Every status and kind is an enum here; the store keeps each as its code (ToCode), which is what
//   reports and the ledger command print.
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

// A Bulk Data export a source's sync started and has not finished with: what a killed or
// stopped sync resumes polling instead of asking the server for the same export again.
struct PendingExport {
  std::string status_url;  // the kick-off's Content-Location
  std::string request;     // the kick-off URL; a different request starts a new export
  std::string started_at;  // instant (UTC) of the kick-off
};

// What a ledger revision does to the patient-month and family it is about.
enum class LedgerKind {
  kCharge,      // bills it (first time, or a correction of something never delivered)
  kAdjustment,  // replaces a delivered charge with another amount
  kVoid,        // cancels a delivered charge
};
std::string_view ToCode(LedgerKind k) noexcept;  // "charge" | "adjustment" | "void"
std::optional<LedgerKind> LedgerKindFromCode(std::string_view code) noexcept;

// Where a ledger entry is. Only the store supersedes (AddLedgerEntry, WithdrawLedgerEntry).
enum class LedgerStatus {
  kPending,       // written, not yet out on every channel
  kSubmitted,     // every delivery done
  kAcknowledged,  // the payer (or an operator) confirmed it
  kSuperseded,    // a later revision replaced it, or it was withdrawn
};
// "pending" | "submitted" | "acknowledged" | "superseded"
std::string_view ToCode(LedgerStatus s) noexcept;
std::optional<LedgerStatus> LedgerStatusFromCode(std::string_view code) noexcept;

// One entry of the billing ledger (gateway/billing/ledger.h gives it meaning). An entry is one
// revision of what is billed for a patient-month in one code family; a correction is a new revision
// that supersedes the previous one, never an edit of it.
struct LedgerRow {
  std::int64_t id = 0;
  std::string patient;  // "Patient/<id>"
  std::string month;    // "YYYY-MM"
  std::string family;   // code family: codes that are never billed together for a patient-month
  int revision = 1;
  LedgerKind kind = LedgerKind::kCharge;
  LedgerStatus status = LedgerStatus::kPending;
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

// Which ledger entries LedgerEntries returns, oldest first.
struct LedgerQuery {
  std::optional<std::string> month;  // "YYYY-MM"; every month when absent
  enum class Revisions { kActive, kAll } revisions = Revisions::kActive;  // kAll: superseded too

  // The active entries (of `month`, else of every month).
  static LedgerQuery Active(std::optional<std::string> month = std::nullopt) {
    return {std::move(month), Revisions::kActive};
  }
  // Every revision, superseded ones too (of `month`, else of every month).
  static LedgerQuery AllRevisions(std::optional<std::string> month = std::nullopt) {
    return {std::move(month), Revisions::kAll};
  }
};

enum class DeliveryStatus {
  kPrepared,  // queued in a batch (or held: batch "")
  kDone,      // out, and the channel took it
  kFailed,    // tried and refused or unreachable (a held claim: detail starts "held:")
};
std::string_view ToCode(DeliveryStatus s) noexcept;  // "prepared" | "done" | "failed"
std::optional<DeliveryStatus> DeliveryStatusFromCode(std::string_view code) noexcept;

// Delivery of a ledger entry to one output channel ("charge-items", "payer:<name>"), in a batch.
struct DeliveryRow {
  std::int64_t entry = 0;
  std::string channel;
  std::string batch;  // the output it goes out in (a file, a Bundle identifier)
  DeliveryStatus status = DeliveryStatus::kPrepared;
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

// Which proposals LedgerProposals returns, oldest first.
struct ProposalQuery {
  std::optional<std::string> month;                       // "YYYY-MM"; every month when absent
  enum class Which { kOpen, kAll } which = Which::kOpen;  // kOpen: open and approved ones

  static ProposalQuery Open(std::optional<std::string> month = std::nullopt) {
    return {std::move(month), Which::kOpen};
  }
  static ProposalQuery All(std::optional<std::string> month = std::nullopt) {
    return {std::move(month), Which::kAll};
  }
};

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

// The commands whose runs the store records.
enum class RunKind { kSync, kBill, kBillDryRun };
std::string_view ToCode(RunKind k) noexcept;  // "sync" | "bill" | "bill-dry-run"
std::optional<RunKind> RunKindFromCode(std::string_view code) noexcept;

enum class RunStatus {
  kRunning,  // started; not finished (running now, or the process died)
  kOk,       // finished; everything it had to do is done
  kFailed,   // finished with an error or with data problems
  kStopped,  // stopped on request (serve's shutdown) after the page it was storing
};
std::string_view ToCode(RunStatus s) noexcept;  // "running" | "ok" | "failed" | "stopped"
std::optional<RunStatus> RunStatusFromCode(std::string_view code) noexcept;

struct RunInfo {
  std::int64_t id = 0;
  RunKind kind = RunKind::kSync;
  std::string started, finished;
  RunStatus status = RunStatus::kRunning;
  std::string summary;  // JSON
};

// The newest pulled version of every resource, per source.
class ResourceTable {
 public:
  virtual ~ResourceTable() = default;
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
  using ResourceVisitor = std::function<bool(std::string_view source, std::string_view type,
                                             std::string_view id, std::string_view json)>;
  // Calls `fn` for every stored resource of every source, in no particular order (storage order:
  // the fastest); stops early when fn returns false. `fn` may call the store.
  virtual Status ForEachResource(const ResourceVisitor& fn) = 0;
  // The same for the resources of one source.
  virtual Status ForEachResourceOf(std::string_view source, const ResourceVisitor& fn) = 0;
  // The stored JSON of `source`'s `type`/`id`, if any (a primary-key look-up).
  virtual Result<std::optional<std::string>> ResourceJson(std::string_view source,
                                                          std::string_view type,
                                                          std::string_view id) = 0;
  virtual Result<std::size_t> CountResources(std::string_view source, std::string_view type) = 0;
  // The sources that have stored resources, sorted.
  virtual Result<std::vector<std::string>> SourceNames() = 0;
};

// Where the sync of each source and type has got to: cursors and the outcome of each pull.
class SyncProgress {
 public:
  virtual ~SyncProgress() = default;
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
  // The Bulk Data export of `source` not finished with, if any (at most one per source: Set
  // replaces it; Clear forgets it and is not an error when there is none).
  virtual Result<std::optional<PendingExport>> GetPendingExport(std::string_view source) = 0;
  virtual Status SetPendingExport(std::string_view source, const PendingExport& e) = 0;
  virtual Status ClearPendingExport(std::string_view source) = 0;
};

// The history of sync and bill runs.
class RunHistory {
 public:
  virtual ~RunHistory() = default;
  // Records a run of `kind` as running; returns its id.
  virtual Result<std::int64_t> StartRun(RunKind kind) = 0;
  // Records how run `run` ended (not kRunning) and its summary (JSON).
  virtual Status FinishRun(std::int64_t run, RunStatus status, std::string_view summary_json) = 0;
  // The newest run of `kind`, if any.
  virtual Result<std::optional<RunInfo>> LastRun(RunKind kind) = 0;
};

// The billing ledger (gateway/billing/ledger.h), its deliveries and proposals. Call inside
// StateStore::InTransaction when several changes must land together.
class LedgerStore {
 public:
  virtual ~LedgerStore() = default;
  virtual Result<std::vector<LedgerRow>> LedgerEntries(const LedgerQuery& query) = 0;
  virtual Result<std::optional<LedgerRow>> LedgerEntry(std::int64_t id) = 0;
  // Inserts `row` (its id and status are ignored: a new entry is kPending) and marks the entry it
  // supersedes kSuperseded (dropping that entry's deliveries not yet done: the successor carries
  // the change). At most one entry per patient, month and family is not superseded: a second one
  // is refused with Errc::kConflict, which is what makes billing exactly-once under concurrent
  // runs.
  virtual Result<std::int64_t> AddLedgerEntry(const LedgerRow& row) = 0;
  // Supersedes a pending entry that was never delivered anywhere, without a successor (what it
  // billed is no longer billable and nobody has seen it). Its undelivered deliveries go with it.
  // Errc::kConflict when it is superseded already or was delivered.
  virtual Status WithdrawLedgerEntry(std::int64_t id) = 0;
  // kPending -> kSubmitted (stamping submitted_at); Errc::kConflict from any other status.
  virtual Status MarkSubmitted(std::int64_t id) = 0;
  // kSubmitted -> kAcknowledged (stamping acknowledged_at); Errc::kConflict from any other status.
  virtual Status MarkAcknowledged(std::int64_t id) = 0;

  // Queues entry `entry` for `channel` in `batch` ("" = held), kPrepared.
  virtual Status AddDelivery(std::int64_t entry, std::string_view channel,
                             std::string_view batch) = 0;
  virtual Status SetDelivery(std::int64_t entry, std::string_view channel, DeliveryStatus status,
                             std::string_view detail) = 0;
  // Moves one delivery not yet done to another batch: a claim held back leaves the batch it was
  // queued in ("" while held), and goes out in a batch of its own once released.
  virtual Status SetDeliveryBatch(std::int64_t entry, std::string_view channel,
                                  std::string_view batch) = 0;
  // The batches deliveries to `channel` were ever queued in (not "": held), sorted.
  virtual Result<std::vector<std::string>> DeliveryBatches(std::string_view channel) = 0;
  // The deliveries of one entry, by channel.
  virtual Result<std::vector<DeliveryRow>> Deliveries(std::int64_t entry) = 0;
  // Every delivery not kDone, by entry and channel.
  virtual Result<std::vector<DeliveryRow>> UndoneDeliveries() = 0;

  // Records an open proposal (gateway/billing/ledger.h "Proposals"; its id, status and times are
  // ignored). At most one proposal per entry is open or approved: a second one is refused with
  // Errc::kConflict.
  virtual Result<std::int64_t> AddLedgerProposal(const LedgerProposal& proposal) = 0;
  virtual Result<std::vector<LedgerProposal>> LedgerProposals(const ProposalQuery& query) = 0;
  // An operator's approval of an open proposal, stamped with the time and `by`. Errc::kNotFound
  // when there is no such proposal, Errc::kConflict when it is not open.
  virtual Status ApproveLedgerProposal(std::int64_t id, std::string_view by) = 0;
  // Closes an open or approved proposal as kCarriedOut (with the entry written) or kDropped,
  // saying why. Errc::kConflict when it is already closed, kInvalidArgument for another status.
  virtual Status CloseLedgerProposal(std::int64_t id, ProposalStatus status,
                                     std::string_view outcome,
                                     std::optional<std::int64_t> result_entry) = 0;

  // A number that moves whenever the ledger, its deliveries or proposals, or the audit trail of
  // writes (AuditTrail::AddAudit) change, through this connection or any other; reads and
  // resources leave it alone. What `serve` keys its billing summaries on.
  virtual Result<std::int64_t> BillingVersion() = 0;
};

// What the gateway wrote to other systems (audit log) and who read patient data (access trail).
class AuditTrail {
 public:
  virtual ~AuditTrail() = default;
  // Returns the record's id.
  virtual Result<std::int64_t> AddAudit(const AuditRow& row) = 0;
  // Audit records newer than `after_id`, oldest first.
  virtual Result<std::vector<AuditRow>> AuditLog(std::int64_t after_id) = 0;
  // Audit records whose target is `target`, oldest first.
  virtual Result<std::vector<AuditRow>> AuditRecords(std::string_view target) = 0;
  // Schema 6: the access trail of `serve`. Appends `rows` in one transaction (ids ignored).
  virtual Status AddAccessRecords(const std::vector<AccessRow>& rows) = 0;
  // Access records matching `query`, oldest first.
  virtual Result<std::vector<AccessRow>> AccessRecords(const AccessQuery& query) = 0;
};

class StateStore : public ResourceTable,
                   public SyncProgress,
                   public RunHistory,
                   public LedgerStore,
                   public AuditTrail {
 public:
  ~StateStore() override = default;
  // Runs `body` in one transaction: committed when it succeeds, rolled back when it fails.
  virtual Status InTransaction(const std::function<Status()>& body) = 0;
  // The schema version in the store (migrations are applied on open).
  virtual int schema_version() const = 0;
};

}  // namespace ccm::gateway
