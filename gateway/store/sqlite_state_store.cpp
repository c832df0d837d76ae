#include "gateway/store/sqlite_state_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <array>
#include <chrono>
#include <map>

#include "fhir/datetime.h"

namespace ccm::gateway {
namespace {

// Schema migrations, applied in order; entry i takes the schema from version i to i + 1 and is
// never edited once released (a new change is a new entry). The version lives in
// PRAGMA user_version, so that a file from a newer build is recognised and refused.
constexpr std::array<std::string_view, 8> kMigrations = {
    R"sql(
CREATE TABLE resources (
  source        TEXT NOT NULL,
  type          TEXT NOT NULL,
  id            TEXT NOT NULL,
  version_id    TEXT NOT NULL,
  last_updated  TEXT NOT NULL,
  json          TEXT NOT NULL,
  seen_run      INTEGER NOT NULL,
  PRIMARY KEY (source, type, id)
);
CREATE TABLE cursors (
  source        TEXT NOT NULL,
  type          TEXT NOT NULL,
  watermark     TEXT NOT NULL,
  scope         TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  PRIMARY KEY (source, type)
) WITHOUT ROWID;
CREATE TABLE runs (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  command       TEXT NOT NULL,
  started_at    TEXT NOT NULL,
  finished_at   TEXT,
  status        TEXT NOT NULL,
  summary       TEXT
);
)sql",
    // 2: the billing ledger (docs/architecture.md "Billing"), its deliveries and the audit log.
    R"sql(
CREATE TABLE ledger (
  id                    INTEGER PRIMARY KEY AUTOINCREMENT,
  patient               TEXT NOT NULL,
  month                 TEXT NOT NULL,
  family                TEXT NOT NULL,
  revision              INTEGER NOT NULL,
  kind                  TEXT NOT NULL CHECK (kind IN ('charge', 'adjustment', 'void')),
  status                TEXT NOT NULL
                        CHECK (status IN ('pending', 'submitted', 'acknowledged', 'superseded')),
  supersedes            INTEGER REFERENCES ledger (id),
  program               TEXT NOT NULL,
  lines                 TEXT NOT NULL,
  staff_minutes         INTEGER NOT NULL,
  practitioner_minutes  INTEGER NOT NULL,
  amount_cents          INTEGER NOT NULL,
  evidence              TEXT NOT NULL,
  fingerprint           TEXT NOT NULL,
  created_at            TEXT NOT NULL,
  created_run           INTEGER NOT NULL,
  submitted_at          TEXT,
  acknowledged_at       TEXT,
  UNIQUE (patient, month, family, revision)
);
CREATE UNIQUE INDEX ledger_one_active ON ledger (patient, month, family)
  WHERE status <> 'superseded';
CREATE INDEX ledger_month ON ledger (month);
CREATE TABLE deliveries (
  entry       INTEGER NOT NULL REFERENCES ledger (id),
  channel     TEXT NOT NULL,
  batch       TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('prepared', 'done', 'failed')),
  detail      TEXT NOT NULL DEFAULT '',
  updated_at  TEXT NOT NULL,
  PRIMARY KEY (entry, channel)
) WITHOUT ROWID;
CREATE INDEX deliveries_open ON deliveries (status) WHERE status <> 'done';
CREATE TABLE audit (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  at          TEXT NOT NULL,
  run         INTEGER NOT NULL,
  action      TEXT NOT NULL,
  target      TEXT NOT NULL,
  version     TEXT NOT NULL,
  detail      TEXT NOT NULL,
  provenance  TEXT NOT NULL
);
)sql",
    // 3: the outcome of each source's last pull per type, which `bill` checks before it acts.
    R"sql(
CREATE TABLE pulls (
  source                  TEXT NOT NULL,
  type                    TEXT NOT NULL,
  state                   TEXT NOT NULL
                          CHECK (state IN ('running', 'complete', 'incomplete', 'failed',
                                           'not-offered')),
  run                     INTEGER NOT NULL,
  started_at              TEXT NOT NULL,
  finished_at             TEXT,
  detail                  TEXT NOT NULL DEFAULT '',
  last_complete_started   TEXT,
  last_complete_finished  TEXT,
  failing_since           TEXT,
  PRIMARY KEY (source, type)
) WITHOUT ROWID;
)sql",
    // 4: what `bill` holds back (docs/architecture.md "Billing ledger and write-back"): entries
    // written from data known to be incomplete say so; voids and downward adjustments are
    // proposed before they are carried out; audit records are looked up by target.
    R"sql(
ALTER TABLE ledger ADD COLUMN allow_incomplete TEXT NOT NULL DEFAULT '';
CREATE TABLE ledger_proposals (
  id                    INTEGER PRIMARY KEY AUTOINCREMENT,
  entry                 INTEGER NOT NULL REFERENCES ledger (id),
  patient               TEXT NOT NULL,
  month                 TEXT NOT NULL,
  family                TEXT NOT NULL,
  kind                  TEXT NOT NULL CHECK (kind IN ('void', 'adjustment')),
  status                TEXT NOT NULL
                        CHECK (status IN ('open', 'approved', 'carried-out', 'dropped')),
  reason                TEXT NOT NULL,
  program               TEXT NOT NULL,
  lines                 TEXT NOT NULL,
  staff_minutes         INTEGER NOT NULL,
  practitioner_minutes  INTEGER NOT NULL,
  amount_cents          INTEGER NOT NULL,
  evidence              TEXT NOT NULL,
  fingerprint           TEXT NOT NULL,
  created_at            TEXT NOT NULL,
  created_run           INTEGER NOT NULL,
  approved_at           TEXT,
  approved_by           TEXT,
  closed_at             TEXT,
  outcome               TEXT NOT NULL DEFAULT '',
  result_entry          INTEGER REFERENCES ledger (id)
);
CREATE UNIQUE INDEX ledger_proposals_one_open ON ledger_proposals (entry)
  WHERE status IN ('open', 'approved');
CREATE INDEX ledger_proposals_month ON ledger_proposals (month);
CREATE INDEX audit_target ON audit (target);
)sql",
    // 5: when each type was last pulled completely *in full*; only such a pull confirms a void
    // (a complete incremental pull does not re-read what was lost or deleted).
    R"sql(
ALTER TABLE pulls ADD COLUMN last_full_complete_started TEXT;
)sql",
    // 6: who read which patient's data through `serve`, when, and the answer's status (HIPAA
    // 45 CFR 164.312(b)); append-only, looked up by patient.
    R"sql(
CREATE TABLE access_audit (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  at         TEXT NOT NULL,
  principal  TEXT NOT NULL,
  method     TEXT NOT NULL,
  route      TEXT NOT NULL,
  patient    TEXT NOT NULL,
  month      TEXT NOT NULL,
  status     INTEGER NOT NULL
);
CREATE INDEX access_audit_patient ON access_audit (patient) WHERE patient <> '';
)sql",
    // 7: a counter that every change to what a bill reads besides resources moves (ledger,
    // deliveries, proposals, the write-back audit), by any process: a cache key (BillingVersion).
    // Triggers, so that no write path can forget it.
    R"sql(
CREATE TABLE versions (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
INSERT INTO versions VALUES ('billing', 0);
CREATE TRIGGER ledger_insert_bumps AFTER INSERT ON ledger
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER ledger_update_bumps AFTER UPDATE ON ledger
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER ledger_delete_bumps AFTER DELETE ON ledger
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER deliveries_insert_bumps AFTER INSERT ON deliveries
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER deliveries_update_bumps AFTER UPDATE ON deliveries
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER deliveries_delete_bumps AFTER DELETE ON deliveries
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER ledger_proposals_insert_bumps AFTER INSERT ON ledger_proposals
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER ledger_proposals_update_bumps AFTER UPDATE ON ledger_proposals
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER ledger_proposals_delete_bumps AFTER DELETE ON ledger_proposals
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER audit_insert_bumps AFTER INSERT ON audit
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER audit_update_bumps AFTER UPDATE ON audit
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
CREATE TRIGGER audit_delete_bumps AFTER DELETE ON audit
  BEGIN UPDATE versions SET version = version + 1 WHERE name = 'billing'; END;
)sql",
    // 8: the Bulk Data export a source's sync started and has not finished with (resumed by the
    // next sync instead of a second export).
    R"sql(
CREATE TABLE pending_exports (
  source      TEXT PRIMARY KEY,
  status_url  TEXT NOT NULL,
  request     TEXT NOT NULL,
  started_at  TEXT NOT NULL
);
)sql",
};

struct DbDeleter {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

class SqliteStateStore final : public StateStore {
 public:
  static Result<std::unique_ptr<StateStore>> Open(const std::filesystem::path& path) {
    auto store = std::unique_ptr<SqliteStateStore>(new SqliteStateStore(path));
    CCM_TRY(store->Init());
    return std::unique_ptr<StateStore>(std::move(store));
  }

  Status InTransaction(const std::function<Status()>& body) override {
    // BEGIN IMMEDIATE takes the write lock up front: two processes syncing into one file then
    // queue (busy_timeout) instead of failing with SQLITE_BUSY at commit.
    CCM_TRY(Exec("BEGIN IMMEDIATE"));
    Status s = body();
    if (!s) {
      static_cast<void>(Exec("ROLLBACK"));
      return s;
    }
    if (Status c = Exec("COMMIT"); !c) {
      static_cast<void>(Exec("ROLLBACK"));
      return c;
    }
    return {};
  }

  Result<UpsertOutcome> Upsert(std::string_view source, std::string_view type, std::string_view id,
                               const VersionStamp& stamp, std::string_view json, std::int64_t run,
                               UpsertMode mode) override {
    std::string last_updated =
        stamp.last_updated ? fhir::FormatUtc(*stamp.last_updated) : std::string();
    // Without any stamp there is no telling versions apart: the content decides. Only then is
    // the stored text compared (reading it costs a resource's worth of pages).
    bool unstamped = stamp.version_id.empty() && !stamp.last_updated;
    CCM_TRY_ASSIGN(sqlite3_stmt * sel,
                   Prepare("SELECT version_id, last_updated, CASE WHEN ?5 THEN json = ?4 END, "
                           "seen_run FROM resources WHERE source = ?1 AND type = ?2 AND id = ?3",
                           source, type, id, json, std::int64_t{unstamped ? 1 : 0}));
    int rc = sqlite3_step(sel);
    UpsertOutcome outcome = UpsertOutcome::kInserted;
    if (rc == SQLITE_ROW) {
      VersionStamp existing = StampOf(ColumnView(sel, 0), ColumnView(sel, 1));
      bool same_json = sqlite3_column_int(sel, 2) != 0;
      bool seen_by_this_run = sqlite3_column_int64(sel, 3) == run;
      bool same_stamp =
          existing.version_id == stamp.version_id && existing.last_updated == stamp.last_updated;
      if (unstamped ? same_json : same_stamp) {
        outcome = UpsertOutcome::kUnchanged;
      } else if (!unstamped && !IsNewer(stamp, existing)) {
        outcome = mode == UpsertMode::kTrustServer && !seen_by_this_run ? UpsertOutcome::kRolledBack
                                                                        : UpsertOutcome::kOlder;
      } else {
        outcome = UpsertOutcome::kUpdated;
      }
    } else if (rc != SQLITE_DONE) {
      return SqlError("reading a stored resource");
    }
    sqlite3_reset(sel);
    if (outcome == UpsertOutcome::kUnchanged || outcome == UpsertOutcome::kOlder) {
      CCM_TRY_ASSIGN(sqlite3_stmt * mark, Prepare("UPDATE resources SET seen_run = ?4 "
                                                  "WHERE source = ?1 AND type = ?2 AND id = ?3",
                                                  source, type, id, run));
      CCM_TRY(StepDone(mark, "marking a resource seen"));
      return outcome;
    }
    CCM_TRY_ASSIGN(sqlite3_stmt * put,
                   Prepare("INSERT OR REPLACE INTO resources "
                           "(source, type, id, version_id, last_updated, json, seen_run) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           source, type, id, stamp.version_id, last_updated, json, run));
    CCM_TRY(StepDone(put, "storing a resource"));
    return outcome;
  }

  Result<std::vector<std::string>> UnseenIds(std::string_view source, std::string_view type,
                                             std::int64_t run) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT id FROM resources WHERE source = ?1 AND type = ?2 AND "
                           "seen_run <> ?3 ORDER BY id",
                           source, type, run));
    return Rows<std::string>(s, "listing resources not seen by a pull",
                             [](sqlite3_stmt* st) { return Column(st, 0); });
  }

  Result<bool> RemoveResource(std::string_view source, std::string_view type,
                              std::string_view id) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * del,
                   Prepare("DELETE FROM resources WHERE source = ?1 AND type = ?2 AND id = ?3",
                           source, type, id));
    CCM_TRY(StepDone(del, "removing a resource gone from the server"));
    return sqlite3_changes(db_.get()) > 0;
  }

  Status ForEachResource(const ResourceVisitor& fn) override { return EachResource("", fn); }
  Status ForEachResourceOf(std::string_view source, const ResourceVisitor& fn) override {
    return EachResource(source, fn);
  }

  // Every resource of `source` ("" every source).
  Status EachResource(std::string_view source, const ResourceVisitor& fn) {
    // Not a cached statement: the callback may call back into the store.
    sqlite3_stmt* raw = nullptr;
    // Storage (rowid) order: one sequential pass over the table. An ORDER BY had SQLite copy
    // every row's JSON into a sorter (spilling to temporary files for a large store), and the
    // primary key's order would read the table in random order, page by page through the WAL.
    const char* sql = source.empty() ? "SELECT source, type, id, json FROM resources"
                                     : "SELECT source, type, id, json FROM resources NOT INDEXED "
                                       "WHERE source = ?1";
    if (sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr) != SQLITE_OK) {
      return SqlError("listing resources");
    }
    Stmt stmt(raw);
    if (!source.empty()) Bind(raw, 1, source);
    for (;;) {
      int rc = sqlite3_step(raw);
      if (rc == SQLITE_DONE) return {};
      if (rc != SQLITE_ROW) return SqlError("listing resources");
      if (!fn(ColumnView(raw, 0), ColumnView(raw, 1), ColumnView(raw, 2), ColumnView(raw, 3))) {
        return {};
      }
    }
  }

  Result<std::optional<std::string>> ResourceJson(std::string_view source, std::string_view type,
                                                  std::string_view id) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare("SELECT json FROM resources WHERE source = ?1 AND "
                                             "type = ?2 AND id = ?3",
                                             source, type, id));
    return FirstRow<std::string>(s, "reading a stored resource",
                                 [](sqlite3_stmt* st) { return Column(st, 0); });
  }

  Result<std::size_t> CountResources(std::string_view source, std::string_view type) override {
    // One statement per case, so that a given source and type count through the primary key's
    // index instead of scanning every row (an OR with a parameter defeats the index).
    const char* sql = source.empty() && type.empty() ? "SELECT count(*) FROM resources"
                      : type.empty() ? "SELECT count(*) FROM resources WHERE source = ?1"
                      : source.empty()
                          ? "SELECT count(*) FROM resources WHERE type = ?2"
                          : "SELECT count(*) FROM resources WHERE source = ?1 AND type = ?2";
    CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare(sql, source, type));
    if (sqlite3_step(s) != SQLITE_ROW) return SqlError("counting resources");
    auto n = static_cast<std::size_t>(sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
    return n;
  }

  Result<std::vector<std::string>> DeliveryBatches(std::string_view channel) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT DISTINCT batch FROM deliveries WHERE channel = ?1 AND "
                           "batch <> '' ORDER BY batch",
                           channel));
    return Rows<std::string>(s, "listing delivery batches",
                             [](sqlite3_stmt* st) { return Column(st, 0); });
  }

  Result<std::vector<std::string>> SourceNames() override {
    // The primary key (source, type, id) lets this skip from source to source.
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT DISTINCT source FROM resources ORDER BY source"));
    return Rows<std::string>(s, "listing sources", [](sqlite3_stmt* st) { return Column(st, 0); });
  }

  Result<std::optional<SyncCursor>> GetCursor(std::string_view source,
                                              std::string_view type) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare("SELECT watermark, scope FROM cursors WHERE "
                                             "source = ?1 AND type = ?2",
                                             source, type));
    return FirstRow<SyncCursor>(s, "reading a sync cursor", [](sqlite3_stmt* st) {
      return SyncCursor{Column(st, 0), Column(st, 1)};
    });
  }

  Status SetCursor(std::string_view source, std::string_view type,
                   const SyncCursor& cursor) override {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("INSERT OR REPLACE INTO cursors (source, type, watermark, scope, "
                           "updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                           source, type, cursor.watermark, cursor.scope, now));
    return StepDone(s, "saving a sync cursor");
  }

  Result<std::optional<PendingExport>> GetPendingExport(std::string_view source) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare("SELECT status_url, request, started_at FROM "
                                             "pending_exports WHERE source = ?1",
                                             source));
    return FirstRow<PendingExport>(s, "reading a pending export", [](sqlite3_stmt* st) {
      return PendingExport{Column(st, 0), Column(st, 1), Column(st, 2)};
    });
  }

  Status SetPendingExport(std::string_view source, const PendingExport& e) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("INSERT OR REPLACE INTO pending_exports (source, status_url, request, "
                           "started_at) VALUES (?1, ?2, ?3, ?4)",
                           source, e.status_url, e.request, e.started_at));
    return StepDone(s, "saving a pending export");
  }

  Status ClearPendingExport(std::string_view source) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("DELETE FROM pending_exports WHERE source = ?1", source));
    return StepDone(s, "forgetting a pending export");
  }

  Status BeginPull(std::string_view source, std::string_view type, std::int64_t run) override {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("INSERT INTO pulls (source, type, state, run, started_at) "
                           "VALUES (?1, ?2, 'running', ?3, ?4) ON CONFLICT (source, type) DO "
                           "UPDATE SET state = 'running', run = ?3, started_at = ?4, "
                           "finished_at = NULL, detail = ''",
                           source, type, run, now));
    return StepDone(s, "recording the start of a pull");
  }

  Status EndPull(std::string_view source, std::string_view type, std::int64_t run, PullState state,
                 PullMode mode, std::string_view detail) override {
    std::string now = fhir::NowUtc();
    // A complete (or not offered: nothing to read) pull clears the failure streak; any other
    // outcome starts one at this attempt's start unless one is already running.
    bool good = state == PullState::kComplete || state == PullState::kNotOffered;
    CCM_TRY_ASSIGN(
        sqlite3_stmt * s,
        Prepare("INSERT INTO pulls (source, type, state, run, started_at, finished_at, detail, "
                "last_complete_started, last_complete_finished, failing_since, "
                "last_full_complete_started) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, CASE WHEN ?7 THEN ?5 END, "
                "CASE WHEN ?7 THEN ?5 END, CASE WHEN ?7 THEN NULL ELSE ?5 END, "
                "CASE WHEN ?7 AND ?8 THEN ?5 END) "
                "ON CONFLICT (source, type) DO UPDATE SET state = ?3, run = ?4, "
                "finished_at = ?5, detail = ?6, "
                "last_complete_started = CASE WHEN ?7 THEN started_at "
                "ELSE last_complete_started END, "
                "last_complete_finished = CASE WHEN ?7 THEN ?5 ELSE last_complete_finished END, "
                "last_full_complete_started = CASE WHEN ?7 AND ?8 THEN started_at "
                "ELSE last_full_complete_started END, "
                "failing_since = CASE WHEN ?7 THEN NULL "
                "ELSE coalesce(failing_since, started_at) END",
                source, type, std::string_view(ToCode(state)), run, now, detail,
                std::int64_t{good ? 1 : 0}, std::int64_t{mode == PullMode::kFull ? 1 : 0}));
    return StepDone(s, "recording the outcome of a pull");
  }

  Result<std::vector<PullStatus>> PullStatuses() override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT source, type, state, run, started_at, "
                           "coalesce(finished_at, ''), detail, coalesce(last_complete_started, "
                           "''), coalesce(last_complete_finished, ''), coalesce(failing_since, "
                           "''), coalesce(last_full_complete_started, '') FROM pulls "
                           "ORDER BY source, type"));
    return Rows<PullStatus>(s, "reading pull status", [](sqlite3_stmt* st) {
      PullStatus p;
      p.source = Column(st, 0);
      p.type = Column(st, 1);
      p.state = PullStateFromCode(ColumnView(st, 2)).value_or(PullState::kFailed);
      p.run = sqlite3_column_int64(st, 3);
      p.started_at = Column(st, 4);
      p.finished_at = Column(st, 5);
      p.detail = Column(st, 6);
      p.last_complete_started = Column(st, 7);
      p.last_complete_finished = Column(st, 8);
      p.failing_since = Column(st, 9);
      p.last_full_complete_started = Column(st, 10);
      return p;
    });
  }

  Result<std::int64_t> StartRun(RunKind kind) override {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("INSERT INTO runs (command, started_at, status) VALUES (?1, ?2, "
                           "'running')",
                           ToCode(kind), now));
    CCM_TRY(StepDone(s, "recording a run"));
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
  }

  Status FinishRun(std::int64_t run, RunStatus status, std::string_view summary_json) override {
    if (status == RunStatus::kRunning) {
      return MakeError(Errc::kInvalidArgument,
                       "a run is finished with an outcome, not \"running\"");
    }
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare("UPDATE runs SET finished_at = ?2, status = ?3, "
                                             "summary = ?4 WHERE id = ?1",
                                             run, now, ToCode(status), summary_json));
    return StepDone(s, "recording the end of a run");
  }

  Result<std::optional<RunInfo>> LastRun(RunKind kind) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT id, command, started_at, coalesce(finished_at, ''), status, "
                           "coalesce(summary, '') FROM runs WHERE command = ?1 "
                           "ORDER BY id DESC LIMIT 1",
                           ToCode(kind)));
    return FirstRow<RunInfo>(s, "reading run history", [kind](sqlite3_stmt* st) {
      // A status this build does not know (a newer gateway wrote it) reads as failed: never ok.
      return RunInfo{sqlite3_column_int64(st, 0),
                     kind,
                     Column(st, 2),
                     Column(st, 3),
                     RunStatusFromCode(ColumnView(st, 4)).value_or(RunStatus::kFailed),
                     Column(st, 5)};
    });
  }

  static constexpr const char* kLedgerColumns =
      "id, patient, month, family, revision, kind, status, supersedes, program, lines, "
      "staff_minutes, practitioner_minutes, amount_cents, evidence, fingerprint, created_at, "
      "coalesce(submitted_at, ''), coalesce(acknowledged_at, ''), created_run, allow_incomplete";

  static LedgerRow ReadLedgerRow(sqlite3_stmt* s) {
    LedgerRow r;
    r.id = sqlite3_column_int64(s, 0);
    r.patient = Column(s, 1);
    r.month = Column(s, 2);
    r.family = Column(s, 3);
    r.revision = sqlite3_column_int(s, 4);
    r.kind = LedgerKindFromCode(ColumnView(s, 5)).value_or(LedgerKind::kCharge);
    r.status = LedgerStatusFromCode(ColumnView(s, 6)).value_or(LedgerStatus::kPending);
    if (sqlite3_column_type(s, 7) != SQLITE_NULL) r.supersedes = sqlite3_column_int64(s, 7);
    r.program = Column(s, 8);
    r.lines_json = Column(s, 9);
    r.staff_minutes = sqlite3_column_int64(s, 10);
    r.practitioner_minutes = sqlite3_column_int64(s, 11);
    r.amount_cents = sqlite3_column_int64(s, 12);
    r.evidence_json = Column(s, 13);
    r.fingerprint = Column(s, 14);
    r.created_at = Column(s, 15);
    r.submitted_at = Column(s, 16);
    r.acknowledged_at = Column(s, 17);
    r.run = sqlite3_column_int64(s, 18);
    r.allow_incomplete = Column(s, 19);
    return r;
  }

  Result<std::vector<LedgerRow>> LedgerEntries(const LedgerQuery& q) override {
    const std::string_view month = q.month ? std::string_view(*q.month) : std::string_view();
    const bool active_only = q.revisions == LedgerQuery::Revisions::kActive;
    static const std::string sql = fmt::format(
        "SELECT {} FROM ledger WHERE (?1 = '' OR month = ?1) AND (?2 = 0 OR status <> "
        "'superseded') ORDER BY id",
        kLedgerColumns);
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare(sql.c_str(), month, std::int64_t{active_only ? 1 : 0}));
    return Rows<LedgerRow>(s, "reading the ledger", ReadLedgerRow);
  }

  Result<std::optional<LedgerRow>> LedgerEntry(std::int64_t id) override {
    static const std::string sql =
        fmt::format("SELECT {} FROM ledger WHERE id = ?1", kLedgerColumns);
    CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare(sql.c_str(), id));
    return FirstRow<LedgerRow>(s, "reading a ledger entry", ReadLedgerRow);
  }

  Status Supersede(std::int64_t id, bool only_undelivered) {
    CCM_TRY_ASSIGN(sqlite3_stmt * old,
                   Prepare("UPDATE ledger SET status = 'superseded' WHERE id = ?1 AND "
                           "status <> 'superseded' AND (?2 = 0 OR (status = 'pending' AND NOT "
                           "EXISTS (SELECT 1 FROM deliveries WHERE entry = ?1 AND status = "
                           "'done')))",
                           id, std::int64_t{only_undelivered ? 1 : 0}));
    CCM_TRY(StepDone(old, "superseding a ledger entry"));
    if (sqlite3_changes(db_.get()) != 1) {
      return MakeError(Errc::kConflict,
                       fmt::format("state store {}: ledger entry {} is already superseded or "
                                   "delivered (another run changed the ledger; run again)",
                                   path_.string(), id));
    }
    CCM_TRY_ASSIGN(sqlite3_stmt * drop,
                   Prepare("DELETE FROM deliveries WHERE entry = ?1 AND status <> 'done'", id));
    return StepDone(drop, "dropping the deliveries of a superseded entry");
  }

  Status WithdrawLedgerEntry(std::int64_t id) override { return Supersede(id, true); }

  Result<std::int64_t> AddLedgerEntry(const LedgerRow& r) override {
    // First, so that the one-active-entry index sees the old revision gone.
    if (r.supersedes) CCM_TRY(Supersede(*r.supersedes, false));
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(
        sqlite3_stmt * s,
        Prepare("INSERT INTO ledger (patient, month, family, revision, kind, status, supersedes, "
                "program, lines, staff_minutes, practitioner_minutes, amount_cents, evidence, "
                "fingerprint, created_at, created_run, allow_incomplete) VALUES (?1, ?2, ?3, ?4, "
                "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                r.patient, r.month, r.family, std::int64_t{r.revision}, ToCode(r.kind),
                ToCode(LedgerStatus::kPending), r.supersedes, r.program, r.lines_json,
                r.staff_minutes, r.practitioner_minutes, r.amount_cents, r.evidence_json,
                r.fingerprint, now, r.run, r.allow_incomplete));
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(Errc::kConflict,
                       fmt::format("state store {}: the ledger already holds an entry for this "
                                   "patient-month (another run added it; run again)",
                                   path_.string()));
    }
    if (rc != SQLITE_DONE) return SqlError("adding a ledger entry");
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
  }

  Status MarkSubmitted(std::int64_t id) override {
    return ChangeLedgerStatus(id, LedgerStatus::kSubmitted,
                              "UPDATE ledger SET status = 'submitted', submitted_at = "
                              "coalesce(submitted_at, ?2) WHERE id = ?1 AND status = 'pending'");
  }

  Status MarkAcknowledged(std::int64_t id) override {
    return ChangeLedgerStatus(id, LedgerStatus::kAcknowledged,
                              "UPDATE ledger SET status = 'acknowledged', acknowledged_at = ?2 "
                              "WHERE id = ?1 AND status = 'submitted'");
  }

  // Runs `sql` (?1 the entry, ?2 now), which moves entry `id` to `to` from the one status it may
  // come from; a conflict when it was not there.
  Status ChangeLedgerStatus(std::int64_t id, LedgerStatus to, const char* sql) {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare(sql, id, now));
    CCM_TRY(StepDone(s, "changing a ledger entry's status"));
    if (sqlite3_changes(db_.get()) != 1) {
      return MakeError(
          Errc::kConflict,
          fmt::format("ledger entry {} cannot become {} from its present status", id, ToCode(to)));
    }
    return {};
  }

  Status AddDelivery(std::int64_t entry, std::string_view channel,
                     std::string_view batch) override {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("INSERT INTO deliveries (entry, channel, batch, status, updated_at) "
                           "VALUES (?1, ?2, ?3, 'prepared', ?4)",
                           entry, channel, batch, now));
    return StepDone(s, "preparing a delivery");
  }

  Status SetDelivery(std::int64_t entry, std::string_view channel, DeliveryStatus status,
                     std::string_view detail) override {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("UPDATE deliveries SET status = ?3, detail = ?4, updated_at = ?5 "
                           "WHERE entry = ?1 AND channel = ?2",
                           entry, channel, ToCode(status), detail, now));
    return StepDone(s, "recording a delivery");
  }

  Result<std::vector<DeliveryRow>> Deliveries(std::int64_t entry) override {
    if (entry <= 0) return std::vector<DeliveryRow>{};
    return DeliveriesWhere(entry);
  }
  Result<std::vector<DeliveryRow>> UndoneDeliveries() override { return DeliveriesWhere(0); }

  // The deliveries of `entry`, or (0) every one not done.
  Result<std::vector<DeliveryRow>> DeliveriesWhere(std::int64_t entry) {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT entry, channel, batch, status, detail, updated_at FROM "
                           "deliveries WHERE (?1 > 0 AND entry = ?1) OR (?1 = 0 AND status <> "
                           "'done') ORDER BY entry, channel",
                           entry));
    return Rows<DeliveryRow>(s, "reading deliveries", [](sqlite3_stmt* st) {
      return DeliveryRow{
          sqlite3_column_int64(st, 0),
          Column(st, 1),
          Column(st, 2),
          DeliveryStatusFromCode(ColumnView(st, 3)).value_or(DeliveryStatus::kFailed),
          Column(st, 4),
          Column(st, 5)};
    });
  }

  Result<std::int64_t> AddAudit(const AuditRow& r) override {
    std::string now = r.at.empty() ? fhir::NowUtc() : r.at;
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("INSERT INTO audit (at, run, action, target, version, detail, "
                           "provenance) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           now, r.run, r.action, r.target, r.version, r.detail, r.provenance));
    CCM_TRY(StepDone(s, "writing the audit log"));
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
  }

  Result<std::vector<AuditRow>> AuditLog(std::int64_t after_id) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT id, at, run, action, target, version, detail, provenance FROM "
                           "audit WHERE id > ?1 ORDER BY id",
                           after_id));
    return Rows<AuditRow>(s, "reading the audit log", [](sqlite3_stmt* st) {
      return AuditRow{sqlite3_column_int64(st, 0),
                      Column(st, 1),
                      sqlite3_column_int64(st, 2),
                      Column(st, 3),
                      Column(st, 4),
                      Column(st, 5),
                      Column(st, 6),
                      Column(st, 7)};
    });
  }

  int schema_version() const override { return version_; }

  Result<std::int64_t> AddLedgerProposal(const LedgerProposal& p) override {
    std::string now = fhir::NowUtc();
    const LedgerRow& r = p.proposed;
    CCM_TRY_ASSIGN(
        sqlite3_stmt * s,
        Prepare("INSERT INTO ledger_proposals (entry, patient, month, family, kind, status, "
                "reason, program, lines, staff_minutes, practitioner_minutes, amount_cents, "
                "evidence, fingerprint, created_at, created_run) VALUES (?1, ?2, ?3, ?4, ?5, "
                "'open', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                p.entry, r.patient, r.month, r.family, ToCode(r.kind), p.reason, r.program,
                r.lines_json, r.staff_minutes, r.practitioner_minutes, r.amount_cents,
                r.evidence_json, r.fingerprint, now, p.run));
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(Errc::kConflict,
                       fmt::format("state store {}: ledger entry {} already has an open proposal "
                                   "(another run added it; run again)",
                                   path_.string(), p.entry));
    }
    if (rc != SQLITE_DONE) return SqlError("adding a ledger proposal");
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
  }

  Result<std::vector<LedgerProposal>> LedgerProposals(const ProposalQuery& q) override {
    const std::string_view month = q.month ? std::string_view(*q.month) : std::string_view();
    const bool open_only = q.which == ProposalQuery::Which::kOpen;
    CCM_TRY_ASSIGN(
        sqlite3_stmt * s,
        Prepare("SELECT id, entry, patient, month, family, kind, status, reason, program, lines, "
                "staff_minutes, practitioner_minutes, amount_cents, evidence, fingerprint, "
                "created_at, created_run, coalesce(approved_at, ''), coalesce(approved_by, ''), "
                "coalesce(closed_at, ''), outcome, result_entry FROM ledger_proposals WHERE "
                "(?1 = '' OR month = ?1) AND (?2 = 0 OR status IN ('open', 'approved')) "
                "ORDER BY id",
                month, std::int64_t{open_only ? 1 : 0}));
    return Rows<LedgerProposal>(s, "reading ledger proposals", [](sqlite3_stmt* st) {
      LedgerProposal p;
      p.id = sqlite3_column_int64(st, 0);
      p.entry = sqlite3_column_int64(st, 1);
      p.proposed.patient = Column(st, 2);
      p.proposed.month = Column(st, 3);
      p.proposed.family = Column(st, 4);
      p.proposed.kind = LedgerKindFromCode(ColumnView(st, 5)).value_or(LedgerKind::kVoid);
      p.status = ProposalStatusFromCode(ColumnView(st, 6)).value_or(ProposalStatus::kDropped);
      p.reason = Column(st, 7);
      p.proposed.program = Column(st, 8);
      p.proposed.lines_json = Column(st, 9);
      p.proposed.staff_minutes = sqlite3_column_int64(st, 10);
      p.proposed.practitioner_minutes = sqlite3_column_int64(st, 11);
      p.proposed.amount_cents = sqlite3_column_int64(st, 12);
      p.proposed.evidence_json = Column(st, 13);
      p.proposed.fingerprint = Column(st, 14);
      p.created_at = Column(st, 15);
      p.run = sqlite3_column_int64(st, 16);
      p.approved_at = Column(st, 17);
      p.approved_by = Column(st, 18);
      p.closed_at = Column(st, 19);
      p.outcome = Column(st, 20);
      if (sqlite3_column_type(st, 21) != SQLITE_NULL) p.result_entry = sqlite3_column_int64(st, 21);
      return p;
    });
  }

  Status ApproveLedgerProposal(std::int64_t id, std::string_view by) override {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("UPDATE ledger_proposals SET status = 'approved', approved_at = ?2, "
                           "approved_by = ?3 WHERE id = ?1 AND status = 'open'",
                           id, now, by));
    CCM_TRY(StepDone(s, "approving a ledger proposal"));
    if (sqlite3_changes(db_.get()) == 1) return {};
    return ProposalNotChangeable(id, "approved");
  }

  Result<std::int64_t> BillingVersion() override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT version FROM versions WHERE name = 'billing'"));
    if (sqlite3_step(s) != SQLITE_ROW) return SqlError("reading the billing version");
    const std::int64_t version = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);  // ends the read: a statement left active keeps its snapshot open
    return version;
  }

  Status CloseLedgerProposal(std::int64_t id, ProposalStatus status, std::string_view outcome,
                             std::optional<std::int64_t> result_entry) override {
    if (status != ProposalStatus::kCarriedOut && status != ProposalStatus::kDropped) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("a ledger proposal is closed as carried-out or dropped, not {}",
                                   ToCode(status)));
    }
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("UPDATE ledger_proposals SET status = ?2, closed_at = ?3, outcome = ?4, "
                           "result_entry = ?5 WHERE id = ?1 AND status IN ('open', 'approved')",
                           id, std::string_view(ToCode(status)), now, outcome, result_entry));
    CCM_TRY(StepDone(s, "closing a ledger proposal"));
    if (sqlite3_changes(db_.get()) == 1) return {};
    return ProposalNotChangeable(id, ToCode(status));
  }

  Status SetDeliveryBatch(std::int64_t entry, std::string_view channel,
                          std::string_view batch) override {
    std::string now = fhir::NowUtc();
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("UPDATE deliveries SET batch = ?3, updated_at = ?4 WHERE entry = ?1 AND "
                           "channel = ?2 AND status <> 'done'",
                           entry, channel, batch, now));
    CCM_TRY(StepDone(s, "moving a delivery to another batch"));
    if (sqlite3_changes(db_.get()) != 1) {
      return MakeError(Errc::kConflict,
                       fmt::format("ledger entry {}: no open delivery to {}", entry, channel));
    }
    return {};
  }

  Status AddAccessRecords(const std::vector<AccessRow>& rows) override {
    if (rows.empty()) return {};
    std::string now =
        AccessInstant(std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now()));
    return InTransaction([&]() -> Status {
      for (const AccessRow& r : rows) {
        CCM_TRY_ASSIGN(
            sqlite3_stmt * s,
            Prepare("INSERT INTO access_audit (at, principal, method, route, patient, "
                    "month, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    r.at.empty() ? std::string_view(now) : std::string_view(r.at), r.principal,
                    r.method, r.route, r.patient, r.month, std::int64_t{r.status}));
        CCM_TRY(StepDone(s, "writing the access audit"));
      }
      return {};
    });
  }

  Result<std::vector<AccessRow>> AccessRecords(const AccessQuery& q) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT id, at, principal, method, route, patient, month, status FROM "
                           "access_audit WHERE id > ?1 AND (?2 = '' OR patient = ?2) AND "
                           "(?3 = '' OR principal = ?3) AND (?4 = '' OR at >= ?4) ORDER BY id",
                           q.after_id, q.patient, q.principal, q.since));
    return Rows<AccessRow>(s, "reading the access audit", [](sqlite3_stmt* st) {
      return AccessRow{sqlite3_column_int64(st, 0),
                       Column(st, 1),
                       Column(st, 2),
                       Column(st, 3),
                       Column(st, 4),
                       Column(st, 5),
                       Column(st, 6),
                       sqlite3_column_int(st, 7)};
    });
  }

  Result<std::vector<AuditRow>> AuditRecords(std::string_view target) override {
    CCM_TRY_ASSIGN(sqlite3_stmt * s,
                   Prepare("SELECT id, at, run, action, target, version, detail, provenance FROM "
                           "audit WHERE target = ?1 ORDER BY id",
                           target));
    return Rows<AuditRow>(s, "reading the audit log", [](sqlite3_stmt* st) {
      return AuditRow{sqlite3_column_int64(st, 0),
                      Column(st, 1),
                      sqlite3_column_int64(st, 2),
                      Column(st, 3),
                      Column(st, 4),
                      Column(st, 5),
                      Column(st, 6),
                      Column(st, 7)};
    });
  }

 private:
  // Why proposal `id` could not become `to`: it does not exist, or is no longer open.
  Error ProposalNotChangeable(std::int64_t id, std::string_view to) {
    auto status = [&]() -> Result<std::optional<std::string>> {
      CCM_TRY_ASSIGN(sqlite3_stmt * s,
                     Prepare("SELECT status FROM ledger_proposals WHERE id = ?1", id));
      return FirstRow<std::string>(s, "reading a ledger proposal",
                                   [](sqlite3_stmt* st) { return Column(st, 0); });
    }();
    if (!status) return status.error();
    if (!*status) return MakeError(Errc::kNotFound, fmt::format("no ledger proposal {}", id));
    return MakeError(Errc::kConflict, fmt::format("ledger proposal {} is {} and cannot become {}",
                                                  id, **status, to));
  }

  explicit SqliteStateStore(std::filesystem::path path) : path_(std::move(path)) {}

  Status Init() {
    sqlite3* raw = nullptr;
    int rc =
        sqlite3_open_v2(path_.c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db_.reset(raw);  // closed even when opening failed (sqlite3_open_v2 may allocate anyway)
    if (rc != SQLITE_OK) {
      return MakeError(Errc::kIo,
                       fmt::format("state store {}: cannot open: {}", path_.string(),
                                   raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    sqlite3_busy_timeout(db_.get(), 30'000);
    // 32 KiB pages (before WAL mode and the first table; a no-op on an existing file): a resource
    // is a few KiB, and each page written is a system call, which costs dearly on virtual machines.
    CCM_TRY(Exec("PRAGMA page_size = 32768"));
    // WAL: readers never block the writer; synchronous=NORMAL is durable across process crashes
    // (only a power loss can lose the last transactions, never corrupt the file).
    CCM_TRY(Exec("PRAGMA journal_mode = WAL"));
    CCM_TRY(Exec("PRAGMA synchronous = NORMAL"));
    // Memory-mapped reads keep a sync's look-ups and the evaluation's full scan out of
    // read()/pread() system calls. The page cache stays small (2 MiB): a pull writes each page
    // once, and a large cache only meant touching fresh memory for every page written — page
    // faults that cost a 20 MB pull 15 % on a VM (docs/benchmarks.md).
    CCM_TRY(Exec("PRAGMA cache_size = -2048"));
    CCM_TRY(Exec("PRAGMA mmap_size = 1073741824"));
    CCM_TRY(Exec("PRAGMA foreign_keys = ON"));
    int version = 0;
    {
      CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare("PRAGMA user_version"));
      if (sqlite3_step(s) != SQLITE_ROW) return SqlError("reading the schema version");
      version = sqlite3_column_int(s, 0);
      sqlite3_reset(s);
      statements_.clear();
    }
    if (version > static_cast<int>(kMigrations.size())) {
      return MakeError(Errc::kUnsupported,
                       fmt::format("state store {}: schema version {} was written by a newer "
                                   "ccm-gateway (this one knows up to {}); upgrade ccm-gateway",
                                   path_.string(), version, kMigrations.size()));
    }
    if (version == 0) {
      // A new file, or some other SQLite database: refuse to write into a file with tables.
      CCM_TRY_ASSIGN(sqlite3_stmt * s, Prepare("SELECT count(*) FROM sqlite_schema"));
      if (sqlite3_step(s) != SQLITE_ROW) return SqlError("inspecting the file");
      bool has_tables = sqlite3_column_int(s, 0) > 0;
      sqlite3_reset(s);
      statements_.clear();
      if (has_tables) {
        return MakeError(Errc::kInvalidArgument,
                         fmt::format("state store {}: a SQLite database that is not a "
                                     "ccm-gateway state file; choose another state.path",
                                     path_.string()));
      }
    }
    for (int v = version; v < static_cast<int>(kMigrations.size()); ++v) {
      auto migrate = [&]() -> Status {
        CCM_TRY(Exec(std::string(kMigrations[static_cast<std::size_t>(v)])));
        return Exec(fmt::format("PRAGMA user_version = {}", v + 1));
      };
      CCM_TRY(InTransaction(migrate));
    }
    version_ = static_cast<int>(kMigrations.size());
    return {};
  }

  Error SqlError(std::string_view what) const {
    return MakeError(Errc::kIo, fmt::format("state store {}: {}: {}", path_.string(), what,
                                            sqlite3_errmsg(db_.get())));
  }

  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      return MakeError(Errc::kIo, fmt::format("state store {}: {}", path_.string(), msg));
    }
    return {};
  }

  // Prepared statements are cached by their text (and reset after use by their callers); `args`
  // are bound to ?1, ?2, ... in order (texts without a copy: they must outlive the step).
  template <class... Args>
  Result<sqlite3_stmt*> Prepare(const char* sql, const Args&... args) {
    CCM_TRY_ASSIGN(sqlite3_stmt * s, PrepareCached(sql));
    int i = 0;
    (BindValue(s, ++i, args), ...);
    return s;
  }
  static void BindValue(sqlite3_stmt* s, int i, std::string_view text) { Bind(s, i, text); }
  static void BindValue(sqlite3_stmt* s, int i, std::int64_t n) { sqlite3_bind_int64(s, i, n); }
  static void BindValue(sqlite3_stmt* s, int i, const std::optional<std::int64_t>& n) {
    if (n) {
      sqlite3_bind_int64(s, i, *n);
    } else {
      sqlite3_bind_null(s, i);
    }
  }

  Result<sqlite3_stmt*> PrepareCached(const char* sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) {
      sqlite3_reset(it->second.get());
      sqlite3_clear_bindings(it->second.get());
      return it->second.get();
    }
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr) != SQLITE_OK) {
      return SqlError("preparing a statement");
    }
    statements_.emplace(sql, Stmt(raw));
    return raw;
  }

  // SQLITE_STATIC: every bound text outlives the step that reads it (statements are reset and
  // their bindings cleared before reuse), so SQLite need not copy each resource.
  static void Bind(sqlite3_stmt* s, int i, std::string_view text) {
    // A default-constructed view has no pointer, which sqlite3_bind_text takes for SQL NULL; an
    // empty text is still text ('' = '' holds, NULL = '' does not).
    sqlite3_bind_text(s, i, text.data() != nullptr ? text.data() : "",
                      static_cast<int>(text.size()), SQLITE_STATIC);
  }
  static std::string_view ColumnView(sqlite3_stmt* s, int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p == nullptr ? std::string_view()
                        : std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
  }
  static std::string Column(sqlite3_stmt* s, int i) { return std::string(ColumnView(s, i)); }

  // Steps `s` to the end, converting each row with `read`.
  template <class Row, class Read>
  Result<std::vector<Row>> Rows(sqlite3_stmt* s, std::string_view what, Read read) {
    std::vector<Row> out;
    for (;;) {
      int rc = sqlite3_step(s);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return SqlError(what);
      }
      out.push_back(read(s));
    }
    sqlite3_reset(s);
    return out;
  }

  // The first row of `s` (a query of at most one row), if any.
  template <class Row, class Read>
  Result<std::optional<Row>> FirstRow(sqlite3_stmt* s, std::string_view what, Read read) {
    CCM_TRY_ASSIGN(auto rows, Rows<Row>(s, what, read));
    if (rows.empty()) return std::optional<Row>();
    return std::optional<Row>(std::move(rows.front()));
  }

  Status StepDone(sqlite3_stmt* s, std::string_view what) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return SqlError(what);
    return {};
  }

  std::filesystem::path path_;
  std::unique_ptr<sqlite3, DbDeleter> db_;
  // Declared after db_: finalized before the connection closes.
  std::map<std::string, Stmt, std::less<>> statements_;
  int version_ = 0;
};

}  // namespace

Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::filesystem::path& path) {
  return SqliteStateStore::Open(path);
}

int CurrentStateSchemaVersion() noexcept { return static_cast<int>(kMigrations.size()); }

}  // namespace ccm::gateway
