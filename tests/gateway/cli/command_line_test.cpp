// The command line as issue 14 asks for it, run as the real binary: per-command help with every
// option and an example, suggestions for what is mistyped, booleans that take no value or
// =true|false and nothing else, `version`, `config check`, and a `ledger` that needs only the state
// store. (No FHIR server: nothing here contacts one.)
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::GatewayRun;
using ccm::testing::TempDir;
using ccm::testing::WriteFile;

using ccm::testing::Gateway;

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// A config with one source whose bearer token is read from `token` (next to the config), the
// state file beside it, and a fee schedule for any month. Nothing listens on 127.0.0.1:9.
std::filesystem::path WriteConfig(const TempDir& dir) {
  WriteFile(dir / "site.json", R"({
    "practice": {"timeZone": "UTC"},
    "billing": {"feeScheduleYear": 2025},
    "sources": [{"name": "ehr", "baseUrl": "http://127.0.0.1:9/fhir",
                 "auth": {"type": "bearer", "tokenFile": "token"}}],
    "state": {"path": "state.db"}
  })");
  return dir / "site.json";
}

TEST(CommandLineTest, HelpListsEveryOptionOfTheCommandWithAnExample) {
  GatewayRun help = Gateway("help bill");
  EXPECT_EQ(help.status, 0) << help.err;
  for (std::string_view option : {"--month", "--config", "--dry-run", "--open-month",
                                  "--allow-incomplete", "--quiet", "--verbose", "--help"}) {
    EXPECT_TRUE(Contains(help.out, option)) << option << "\n" << help.out;
  }
  EXPECT_TRUE(Contains(help.out, "Examples:\n  ccm-gateway bill --month 2026-10 --config"))
      << help.out;
  EXPECT_TRUE(Contains(help.out, "Exit status:")) << help.out;
  // The same text by every spelling.
  for (const char* spelling : {"bill --help", "bill -h", "bill --month 2026-10 --help"}) {
    GatewayRun r = Gateway(spelling);
    EXPECT_EQ(r.status, 0) << spelling << "\n" << r.err;
    EXPECT_EQ(r.out, help.out) << spelling;
  }
  GatewayRun config_help = Gateway("help config check");
  EXPECT_EQ(config_help.status, 0);
  EXPECT_TRUE(Contains(config_help.out, "ccm-gateway config check --config site.json"))
      << config_help.out;
  GatewayRun ledger_help = Gateway("ledger --help");
  for (std::string_view option : {"--format", "--out", "--approve", "--acknowledge", "--audit"}) {
    EXPECT_TRUE(Contains(ledger_help.out, option)) << option << "\n" << ledger_help.out;
  }
}

TEST(CommandLineTest, AMistypedCommandOrOptionSuggestsTheClosest) {
  GatewayRun command = Gateway("bil --month 2026-10");
  EXPECT_EQ(command.status, 2);
  EXPECT_TRUE(Contains(command.err, "unknown command \"bil\"; did you mean bill?")) << command.err;
  GatewayRun evaluate = Gateway("evalute");
  EXPECT_EQ(evaluate.status, 2);
  EXPECT_TRUE(Contains(evaluate.err, "did you mean evaluate?")) << evaluate.err;
  GatewayRun help = Gateway("help ledgr");
  EXPECT_EQ(help.status, 2);
  EXPECT_TRUE(Contains(help.err, "did you mean ledger?")) << help.err;
  GatewayRun option = Gateway("bill --month 2026-10 --config x.json --dry-rn");
  EXPECT_EQ(option.status, 2);
  EXPECT_TRUE(Contains(option.err, "unknown option --dry-rn; did you mean --dry-run?"))
      << option.err;
  EXPECT_TRUE(Contains(option.err, "ccm-gateway help bill")) << option.err;
  GatewayRun far = Gateway("ledger --config x.json --zzzzzzzz");
  EXPECT_EQ(far.status, 2);
  EXPECT_TRUE(Contains(far.err, "unknown option --zzzzzzzz")) << far.err;
  EXPECT_FALSE(Contains(far.err, "did you mean")) << far.err;
}

// `--dry-run=no` used to run dry and `--open-month=no` to turn open-month billing on. A boolean
// now takes no value or =true / =false; any other value is refused before anything is read.
TEST(CommandLineTest, BooleansTakeNoValueOrTrueOrFalse) {
  TempDir dir;
  std::string config = WriteConfig(dir).string();
  WriteFile(dir / "token", "t0ken-value\n");
  for (const char* value : {"no", "yes", "maybe", "1", "TRUE"}) {
    for (const char* flag : {"--dry-run", "--open-month", "--allow-incomplete"}) {
      GatewayRun r =
          Gateway(fmt::format("bill --month 2099-01 --config {} {}={}", config, flag, value));
      EXPECT_EQ(r.status, 2) << flag << "=" << value << "\n" << r.err;
      EXPECT_TRUE(Contains(
          r.err, fmt::format("{}: takes no value, or =true or =false; got \"{}\"", flag, value)))
          << r.err;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "state.db"));  // refused before anything was opened
  // =false is false: a month that has not ended is refused...
  for (const char* open : {"", "--open-month=false"}) {
    GatewayRun r = Gateway(fmt::format("bill --month 2099-01 --config {} {}", config, open));
    EXPECT_EQ(r.status, 2) << open << "\n" << r.err;
    EXPECT_TRUE(Contains(r.err, "2099-01 has not ended in UTC")) << r.err;
  }
  // ...and no value or =true is true: billing goes on (to the empty state store, which it names).
  for (const char* open : {"--open-month", "--open-month=true"}) {
    for (const char* dry : {"--dry-run", "--dry-run=true", "--dry-run=false"}) {
      GatewayRun r =
          Gateway(fmt::format("bill --month 2099-01 --config {} {} {}", config, open, dry));
      EXPECT_EQ(r.status, 2) << open << " " << dry << "\n" << r.err;
      EXPECT_TRUE(Contains(r.err, "holds no resources; run `ccm-gateway sync")) << r.err;
    }
  }
  GatewayRun twice =
      Gateway(fmt::format("bill --month 2099-01 --month 2099-02 --config {}", config));
  EXPECT_EQ(twice.status, 2);
  EXPECT_TRUE(Contains(twice.err, "--month")) << twice.err;
  GatewayRun both = Gateway(fmt::format("ledger --config {} --quiet --verbose", config));
  EXPECT_EQ(both.status, 2);
  EXPECT_TRUE(Contains(both.err, "--quiet and --verbose exclude each other")) << both.err;
}

// The ledger reads only the state store: it runs where the EHR's credentials are not.
TEST(CommandLineTest, LedgerNeedsOnlyTheStateStore) {
  TempDir dir;
  std::string config = WriteConfig(dir).string();  // no token file
  GatewayRun ndjson = Gateway(fmt::format("ledger --config {}", config));
  EXPECT_EQ(ndjson.status, 0) << ndjson.err;
  EXPECT_EQ(ndjson.out, "");  // nothing billed yet; NDJSON in a pipe
  EXPECT_TRUE(std::filesystem::exists(dir / "state.db"));
  GatewayRun table = Gateway(fmt::format("ledger --config {} --format table --all", config));
  EXPECT_EQ(table.status, 0) << table.err;
  EXPECT_TRUE(Contains(table.out, "entry  patient")) << table.out;
  EXPECT_TRUE(Contains(table.out, "0 entr(ies)")) << table.out;
  GatewayRun csv =
      Gateway(fmt::format("ledger --config {} --out {}", config, (dir / "ledger.csv").string()));
  EXPECT_EQ(csv.status, 0) << csv.err;
  EXPECT_TRUE(ccm::testing::ReadFile(dir / "ledger.csv").starts_with("record,id,entry,patient,"));
  GatewayRun format = Gateway(fmt::format("ledger --config {} --format xml", config));
  EXPECT_EQ(format.status, 2);
  EXPECT_TRUE(Contains(format.err, "--format must be ndjson, csv or table")) << format.err;
  GatewayRun approve = Gateway(fmt::format("ledger --config {} --approve 7", config));
  EXPECT_EQ(approve.status, 1) << approve.err;  // no such proposal
  // The commands that contact the EHR do need the credentials, and say which key names them.
  GatewayRun bill = Gateway(fmt::format("bill --config {} --month 2026-10", config));
  EXPECT_EQ(bill.status, 2);
  EXPECT_TRUE(Contains(bill.err, "sources[0].auth.tokenFile")) << bill.err;
}

TEST(CommandLineTest, VersionSaysWhatWasBuiltFromWhat) {
  GatewayRun r = Gateway("version");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("ccm-gateway 0.")) << r.out;
  EXPECT_TRUE(Contains(r.out, "\ncommit: ")) << r.out;
  EXPECT_FALSE(Contains(r.out, "commit: \n")) << r.out;
  EXPECT_TRUE(Contains(r.out, "\nbuild: ")) << r.out;
  EXPECT_TRUE(Contains(r.out, "\nfee schedules built in: 2025")) << r.out;
  EXPECT_EQ(Gateway("--version").out, r.out);
  EXPECT_EQ(Gateway("version --bogus").status, 2);
}

TEST(CommandLineTest, ConfigCheckValidatesEverySectionAndContactsNothing) {
  TempDir dir;
  std::string config = WriteConfig(dir).string();
  GatewayRun missing = Gateway(fmt::format("config check --config {}", config));
  EXPECT_EQ(missing.status, 2);
  EXPECT_TRUE(Contains(missing.err, "sources[0].auth.tokenFile")) << missing.err;
  WriteFile(dir / "token", "t0ken-value\n");
  GatewayRun ok = Gateway(fmt::format("config check --config {}", config));
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(Contains(ok.out, "valid (nothing was contacted)")) << ok.out;
  EXPECT_TRUE(Contains(ok.out, "practice: UTC")) << ok.out;
  EXPECT_TRUE(Contains(ok.out, "fee schedule: 2025")) << ok.out;
  EXPECT_TRUE(Contains(ok.out, "source ehr: http://127.0.0.1:9/fhir")) << ok.out;
  EXPECT_TRUE(Contains(ok.out, "auth: bearer; secret from tokenFile " + (dir / "token").string()))
      << ok.out;
  EXPECT_TRUE(Contains(ok.out, "pulls: Patient, ")) << ok.out;
  EXPECT_TRUE(Contains(ok.out, "write-back: off")) << ok.out;
  EXPECT_TRUE(Contains(ok.out,
                       "program ($ccm-program projection): 68.00 % of patients qualify, "
                       "40.00 % of those enrol, 46.67 USD net per patient-month"))
      << ok.out;
  EXPECT_TRUE(Contains(ok.out, "state: " + (dir / "state.db").string())) << ok.out;
  EXPECT_FALSE(Contains(ok.out, "t0ken-value")) << ok.out;  // where the secret is, never it
  EXPECT_FALSE(std::filesystem::exists(dir / "state.db"));  // the state store is not opened
  WriteFile(dir / "bad.json", R"({"sources": [{"name": "ehr", "baseUrl": "http://127.0.0.1:9",
                                                "pageSize": 0}]})");
  GatewayRun bad = Gateway(fmt::format("config check --config {}", (dir / "bad.json").string()));
  EXPECT_EQ(bad.status, 2);
  EXPECT_TRUE(Contains(bad.err, "sources[0].pageSize")) << bad.err;
  // A bulk source says how it is pulled; a bad bulk key is named.
  WriteFile(dir / "bulk.json", R"({"sources": [{"name": "ehr", "baseUrl": "http://127.0.0.1:9",
      "resourceTypes": ["Patient", "Encounter"], "bulk": {"level": "group", "group": "panel",
      "parallelDownloads": 2, "typeFilters": {"Encounter": "Encounter?date=ge2026-01-01"}}}]})");
  GatewayRun bulk = Gateway(fmt::format("config check --config {}", (dir / "bulk.json").string()));
  EXPECT_EQ(bulk.status, 0) << bulk.err;
  EXPECT_TRUE(Contains(bulk.out,
                       "pulls: Patient, Encounter with Bulk Data Group/panel/$export; 2 "
                       "download(s) at a time; waits up to 240 min for an export; 1 type "
                       "filter(s)"))
      << bulk.out;
  WriteFile(dir / "bulk-bad.json", R"({"sources": [{"name": "ehr", "baseUrl": "http://127.0.0.1:9",
      "bulk": {"level": "ward"}}]})");
  GatewayRun bulk_bad =
      Gateway(fmt::format("config check --config {}", (dir / "bulk-bad.json").string()));
  EXPECT_EQ(bulk_bad.status, 2);
  EXPECT_TRUE(Contains(bulk_bad.err, "sources[0].bulk.level")) << bulk_bad.err;
  GatewayRun group = Gateway("config");
  EXPECT_EQ(group.status, 2);
  EXPECT_TRUE(Contains(group.err, "config check --config FILE")) << group.err;
}

// The service's section and the write checks are shown too; the tokens file is read (a bad one is
// found now, not by the first request), and no token is shown.
TEST(CommandLineTest, ConfigCheckShowsTheServiceAndTheChecksBeforeWriting) {
  TempDir dir;
  WriteFile(dir / "token", "t0ken-value\n");
  WriteFile(dir / "site.json", R"({
    "practice": {"timeZone": "UTC"},
    "billing": {"feeScheduleYear": 2025},
    "sources": [{"name": "ehr", "baseUrl": "http://127.0.0.1:9/fhir",
                 "auth": {"type": "bearer", "tokenFile": "token"}}],
    "writeBack": {"chargeItems": true, "requireConditionalCreate": false},
    "state": {"path": "state.db"},
    "server": {"port": 8443, "tokensFile": "tokens.json", "sessionMinutes": 30,
               "billingSummaryMaxAgeSeconds": 120, "limits": {"maxConnections": 64}}
  })");
  std::string config = (dir / "site.json").string();
  GatewayRun missing = Gateway(fmt::format("config check --config {}", config));
  EXPECT_EQ(missing.status, 2) << missing.out;
  EXPECT_TRUE(Contains(missing.err, "tokens.json")) << missing.err;
  WriteFile(dir / "tokens.json",
            fmt::format(R"({{"tokens": [{{"sha256": "{}", "name": "ehr-sync"}}]}})",
                        std::string(64, 'a')));
  GatewayRun ok = Gateway(fmt::format("config check --config {}", config));
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(Contains(ok.out,
                       "serve: listens on 127.0.0.1:8443 (plain HTTP); 0 token hash(es) "
                       "in the config, more in " +
                           (dir / "tokens.json").string()))
      << ok.out;
  EXPECT_TRUE(Contains(ok.out, "64 connections; access log patient ids hashed")) << ok.out;
  EXPECT_TRUE(Contains(ok.out,
                       "billing summaries cached until the store changes; they read the EHR: "
                       "at most 120 s"))
      << ok.out;
  EXPECT_TRUE(Contains(ok.out, "the care team's page at / (sessions of 30 min after sign-in; "))
      << ok.out;
  EXPECT_TRUE(Contains(ok.out, "conditional create NOT checked (requireConditionalCreate: false)"))
      << ok.out;
  EXPECT_FALSE(Contains(ok.out, std::string(64, 'a'))) << ok.out;
}

}  // namespace
}  // namespace ccm::gateway
