// The SQLite state store: the conformance suite on real files, and what is SQLite's own (foreign
// and newer files, WAL, migrations of older schemas, the sync lock beside the file).
#include "gateway/store/sqlite_state_store.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "gateway/store/locks.h"
#include "gateway/store/state_store.h"
#include "store/state_store_conformance.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::TempDir;
using store_testing::BackendName;
using store_testing::PlainEntry;
using store_testing::StateStoreConformance;
using store_testing::StoreBackend;

INSTANTIATE_TEST_SUITE_P(Sqlite, StateStoreConformance,
                         ::testing::Values(StoreBackend{"sqlite",
                                                        [](const std::filesystem::path& dir) {
                                                          return OpenSqliteStateStore(dir /
                                                                                      "state.db");
                                                        }}),
                         BackendName);

TEST(SqliteStateStoreTest, ANewFileHasTheCurrentSchema) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
}

// Runs `sql` on a SQLite file directly (as another program would).
void ExecSql(const std::filesystem::path& file, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sql;
  sqlite3_close(db);
}

// SQL that takes a current file back to schema 6: without what migrations 8 (pending exports)
// and 7 (the billing version's triggers and table) add. Older versions undo more after this.
std::string UndoToSix() {
  std::string sql = "DROP TABLE pending_exports; ";
  for (const char* table : {"ledger", "deliveries", "ledger_proposals", "audit"}) {
    for (const char* event : {"insert", "update", "delete"}) {
      sql += fmt::format("DROP TRIGGER {}_{}_bumps; ", table, event);
    }
  }
  return sql + "DROP TABLE versions; ";
}

TEST(SqliteStateStoreTest, RefusesForeignAndNewerFiles) {
  TempDir dir;
  ExecSql(dir / "other.db", "CREATE TABLE accounts(x)");
  auto foreign = OpenSqliteStateStore(dir / "other.db");
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message.find("not a ccm-gateway state file"), std::string::npos);
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
  }
  ExecSql(dir / "state.db", "PRAGMA user_version = 99");
  auto newer = OpenSqliteStateStore(dir / "state.db");
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().message.find("newer ccm-gateway"), std::string::npos);
  auto missing_dir = OpenSqliteStateStore(dir / "no" / "such" / "dir" / "state.db");
  ASSERT_FALSE(missing_dir);
  EXPECT_NE(missing_dir.error().message.find("cannot open"), std::string::npos);
}

TEST(SqliteStateStoreTest, UsesWalMode) {
  TempDir dir;
  ASSERT_TRUE(OpenSqliteStateStore(dir / "state.db"));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST(SqliteStateStoreTest, SchemaFourKeepsAVersionThreeLedgerAndAddsProposals) {
  TempDir dir;
  std::int64_t id = 0;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    id = *(*store)->AddLedgerEntry(PlainEntry("Patient/p1"));
  }
  // Back to version 3 as released: without what migration 4 adds.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
  const std::string v3 = UndoToSix() + R"sql(
DROP TABLE access_audit;
ALTER TABLE pulls DROP COLUMN last_full_complete_started;
DROP TABLE ledger_proposals;
DROP INDEX audit_target;
ALTER TABLE ledger DROP COLUMN allow_incomplete;
PRAGMA user_version = 3;
)sql";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, v3.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(db);
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
  auto row = (*store)->LedgerEntry(id);
  ASSERT_TRUE(row && *row);
  EXPECT_EQ((*row)->patient, "Patient/p1");
  EXPECT_EQ((*row)->allow_incomplete, "");
  LedgerProposal p;
  p.entry = id;
  p.reason = "test";
  p.proposed = **row;
  p.proposed.kind = LedgerKind::kVoid;
  EXPECT_TRUE((*store)->AddLedgerProposal(p));
}

// A state file from before schema 5 knows of complete pulls but not whether they were full: none
// counts as full, so a void waits for the next complete `sync --full`.
TEST(SqliteStateStoreTest, SchemaFiveKnowsNoFullPullOfAnOlderFile) {
  TempDir dir;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->BeginPull("ehr", "Encounter", 1));
    ASSERT_TRUE(
        (*store)->EndPull("ehr", "Encounter", 1, PullState::kComplete, PullMode::kFull, ""));
  }
  ExecSql(dir / "state.db",
          (UndoToSix() +
           "DROP TABLE access_audit; ALTER TABLE pulls DROP COLUMN last_full_complete_started; "
           "PRAGMA user_version = 4;")
              .c_str());
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
  auto pulls = (*store)->PullStatuses();
  ASSERT_TRUE(pulls);
  ASSERT_EQ(pulls->size(), 1u);
  EXPECT_FALSE(pulls->at(0).last_complete_started.empty());
  EXPECT_TRUE(pulls->at(0).last_full_complete_started.empty());
}

// Schema 6: the access trail of `serve`, appended in batches and read back by patient, principal
// and time; a schema-5 file gains the table and keeps what it had.
TEST(SqliteStateStoreTest, SchemaSixKeepsTheAccessTrail) {
  TempDir dir;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->BeginPull("ehr", "Encounter", 1));
  }
  ExecSql(dir / "state.db",
          (UndoToSix() + "DROP TABLE access_audit; PRAGMA user_version = 5;").c_str());
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
  EXPECT_EQ((*store)->PullStatuses()->size(), 1u);
  // The trail works on the migrated file (the conformance suite covers what it does).
  ASSERT_TRUE((*store)->AddAccessRecords(
      {{0, "", "portal", "GET", "/$ccm-billing-summary", "", "2026-10", 200}}));
  EXPECT_EQ((*store)->AccessRecords({})->size(), 1u);
  EXPECT_EQ(AccessInstant(fhir::FhirDateTime::ParseInstant("2026-11-01T10:00:01Z")->Earliest()),
            "2026-11-01T10:00:01.000Z");
  EXPECT_EQ(
      AccessInstant(fhir::FhirDateTime::ParseInstant("2026-11-01T10:00:01.123456Z")->Earliest()),
      "2026-11-01T10:00:01.123Z");
}

// Schema 7: the billing version (triggers on the ledger, deliveries, proposals and audit); a
// schema-6 file gains it and keeps its ledger.
TEST(SqliteStateStoreTest, SchemaSevenCountsBillingChanges) {
  TempDir dir;
  {
    auto store = OpenSqliteStateStore(dir / "state.db");
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->AddLedgerEntry(PlainEntry("Patient/a")));
  }
  ExecSql(dir / "state.db", (UndoToSix() + "PRAGMA user_version = 6;").c_str());
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), CurrentStateSchemaVersion());
  EXPECT_EQ((*store)->LedgerEntries({})->size(), 1u);
  auto before = (*store)->BillingVersion();
  ASSERT_TRUE(before) << before.error().message;
  ASSERT_TRUE((*store)->AddLedgerEntry(PlainEntry("Patient/b")));
  EXPECT_NE(*(*store)->BillingVersion(), *before);
}

TEST(StateLocksTest, OneHolderAtATimeAndTheWaiterNamesIt) {
  TempDir dir;
  auto first = LockSync(dir / "state.db", std::chrono::milliseconds(0));
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(SyncLockHolder(dir / "state.db"), ::getpid());
  // flock locks belong to the open file description: a second open in this process conflicts
  // as another process's would.
  auto second = LockSync(dir / "state.db", std::chrono::milliseconds(120));
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(Errc::kConflict));
  EXPECT_NE(second.error().message.find(fmt::format("pid {}", ::getpid())), std::string::npos)
      << second.error().message;
  // Released (as when the holder exits): the next one gets it at once.
  { auto released = std::move(*first); }
  EXPECT_TRUE(LockSync(dir / "state.db", std::chrono::milliseconds(0)));
}

}  // namespace
}  // namespace ccm::gateway
