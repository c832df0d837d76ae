// The sources/state/sync config sections: defaults, secrets from files and environment only,
// and errors that name the key.
#include "gateway/config/sync_config.h"

#include "gateway/ccm/engine_config.h"
#include "gateway/config/writeback_config.h"

#include <fmt/format.h>

#include <map>

#include <gtest/gtest.h>

#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::TempDir;
using ccm::testing::WriteFile;

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

Result<SyncConfig> Load(const TempDir& dir, std::string_view json, EnvLookup env = Env({})) {
  WriteFile(dir / "config.json", json);
  return LoadSyncConfig(dir / "config.json", env);
}

std::string ErrorOf(const TempDir& dir, std::string_view json, EnvLookup env = Env({})) {
  auto c = Load(dir, json, std::move(env));
  return c ? std::string("(no error)") : c.error().message;
}

TEST(SyncConfigTest, DefaultsAndAFullSource) {
  TempDir dir;
  WriteFile(dir / "secrets" / "token", "s3cret\n");
  auto c = Load(dir, R"({
    // comments are allowed
    "sources": [
      {"name": "ehr", "baseUrl": "https://ehr.example/fhir/R4"},
      {"name": "clinic", "baseUrl": "http://127.0.0.1:8080/fhir",
       "auth": {"type": "bearer", "tokenFile": "secrets/token"},
       "pageSize": 50, "maxConcurrency": 4, "safetyMarginSeconds": 60,
       "scope": {"patients": ["Patient/1", "2"]},
       "timeouts": {"connectSeconds": 3, "totalSeconds": 30, "lowSpeedSeconds": 5},
       "retry": {"maxAttempts": 3, "initialBackoffMs": 10, "maxBackoffSeconds": 1,
                 "maxRetryAfterSeconds": 2}},
    ],
    "state": {"path": "var/state.db"},
    "sync": {"intervalSeconds": 60}
  })");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->sources.size(), 2u);
  const SourceConfig& a = c->sources[0];
  EXPECT_EQ(a.auth.kind, AuthKind::kNone);
  EXPECT_EQ(a.page_size, 100);
  EXPECT_EQ(a.scope, ScopeKind::kAll);
  EXPECT_TRUE(a.http.tls.verify);
  const SourceConfig& b = c->sources[1];
  EXPECT_EQ(b.auth.kind, AuthKind::kBearer);
  EXPECT_EQ(b.auth.token, "s3cret");
  EXPECT_EQ(b.page_size, 50);
  EXPECT_EQ(b.max_concurrency, 4);
  EXPECT_EQ(b.safety_margin, std::chrono::seconds(60));
  EXPECT_EQ(b.scope, ScopeKind::kPatients);
  EXPECT_EQ(b.patients, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(b.http.connect_timeout, std::chrono::seconds(3));
  EXPECT_EQ(b.retry.max_attempts, 3);
  EXPECT_EQ(b.retry.max_retry_after, std::chrono::seconds(2));
  EXPECT_EQ(c->state_path, dir / "var" / "state.db");
  EXPECT_EQ(c->interval, std::chrono::seconds(60));

  auto none = Load(dir, "{}");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->sources.empty());
  EXPECT_EQ(none->state_path, dir / "ccm-gateway-state.db");
}

TEST(SyncConfigTest, SecretsComeFromFilesOrEnvironmentNeverTheConfig) {
  TempDir dir;
  std::string err = ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x/fhir",
      "auth": {"type": "bearer", "token": "abc"}}]})");
  EXPECT_NE(err.find("sources[0].auth.token: secrets are not taken from the config file"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("abc"), std::string::npos) << "the secret is not echoed";
  auto c = Load(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x/fhir",
      "auth": {"type": "client-credentials", "clientId": "gw", "clientSecretEnv": "EHR_SECRET",
               "tokenUrl": "https://x/token", "scope": "system/*.rs"}}]})",
                Env({{"EHR_SECRET", "pa55"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sources[0].auth.client_secret, "pa55");
  err = ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x/fhir",
      "auth": {"type": "client-credentials", "clientId": "gw", "clientSecretEnv": "NOPE",
               "tokenUrl": "https://x/token"}}]})");
  EXPECT_NE(err.find("the environment variable NOPE is not set"), std::string::npos) << err;
  err = ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x/fhir",
      "auth": {"type": "smart-backend-services", "clientId": "gw", "keyId": "k1",
               "privateKeyFile": "missing.pem"}}]})");
  EXPECT_NE(err.find("sources[0].auth.privateKeyFile: cannot read"), std::string::npos) << err;
  err = ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x/fhir",
      "auth": {"type": "smart-backend-services", "clientId": "gw", "keyId": "k1",
               "privateKeyEnv": "K", "algorithm": "HS256"}}]})",
                Env({{"K", "pem"}}));
  EXPECT_NE(err.find("expected \"RS384\" or \"ES384\""), std::string::npos) << err;
}

TEST(SyncConfigTest, ErrorsNameTheKey) {
  TempDir dir;
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e"}]})").find("sources[0].baseUrl: required"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "ftp://x"}]})")
                .find("sources[0].baseUrl"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x", "pagesize": 5}]})")
                .find("sources[0].pagesize: unknown key"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x", "pageSize": 0}]})")
                .find("sources[0].pageSize: expected a whole number from 1 to 1000"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://a"},
                                        {"name": "e", "baseUrl": "https://b"}]})")
                .find("sources[1].name: \"e\" is used by two sources"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x",
                                         "scope": {"group": "g", "patients": ["1"]}}]})")
                .find("either group or patients"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x",
                                         "auth": {"type": "kerberos"}}]})")
                .find("sources[0].auth.type: \"kerberos\""),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x",
                                         "tls": {"clientCertFile": "config.json"}}]})")
                .find("needs both clientCertFile and clientKeyFile"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sync": {"intervalSeconds": 1}})").find("sync.intervalSeconds"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": {}})").find("sources: expected an array"),
            std::string::npos);
}

// A base URL carries no credentials, query or fragment, wherever a FHIR endpoint is configured;
// the error names the key and never repeats the URL (it may hold a password).
TEST(SyncConfigTest, EndpointUrlsCarryNoCredentialsQueryOrFragment) {
  TempDir dir;
  struct Case {
    std::string url, expected;
  };
  const Case cases[] = {
      {"https://gw:s3cretpw@ehr.example/fhir", "carries a user name or password"},
      {"https://gw@ehr.example/fhir", "carries a user name or password"},
      {"https://ehr.example/fhir?_format=json&key=s3cretpw", "has a query string"},
      {"https://ehr.example/fhir?", "has a query string"},
      {"https://ehr.example/fhir#s3cretpw", "has a fragment"},
  };
  for (const Case& c : cases) {
    std::string source = fmt::format(R"({{"name": "e", "baseUrl": "{}"}})", c.url);
    std::string target = fmt::format(R"({{"baseUrl": "{}"}})", c.url);
    const std::pair<std::string, std::string> places[] = {
        {fmt::format(R"({{"sources": [{}]}})", source), "sources[0].baseUrl: "},
        {fmt::format(R"({{"writeBack": {{"target": {}}}}})", target), "writeBack.target.baseUrl: "},
        {fmt::format(R"({{"billing": {{"payers": [{{"name": "mac", "endpoint": {}}}]}}}})", target),
         "billing.payers[0].endpoint.baseUrl: "},
    };
    for (const auto& [json, key] : places) {
      WriteFile(dir / "c.json", json);
      auto sync = LoadSyncConfig(dir / "c.json", Env({}));
      std::string err = sync ? "(no error)" : sync.error().message;
      if (sync) {
        auto wb = LoadWriteBackConfig(dir / "c.json", Env({}), *sync);
        err = wb ? "(no error)" : wb.error().message;
      }
      EXPECT_NE(err.find(key + "the URL " + c.expected), std::string::npos) << json << "\n" << err;
      EXPECT_EQ(err.find("s3cretpw"), std::string::npos) << "the URL is not repeated: " << err;
    }
  }
  // A token endpoint may have a query, never credentials.
  EXPECT_EQ(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x/fhir",
      "auth": {"type": "client-credentials", "clientId": "gw", "clientSecretEnv": "S",
               "tokenUrl": "https://x/token?api-version=2"}}]})",
                    Env({{"S", "pa55"}})),
            "(no error)");
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x/fhir",
      "auth": {"type": "client-credentials", "clientId": "gw", "clientSecretEnv": "S",
               "tokenUrl": "https://gw:pw@x/token"}}]})",
                    Env({{"S", "pa55"}}))
                .find("sources[0].auth.tokenUrl: the URL carries a user name or password"),
            std::string::npos);
  // Ports, paths and IPv6 literals are fine.
  EXPECT_EQ(
      ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "http://[::1]:8080/fhir/R4/"}]})"),
      "(no error)");
}

TEST(SyncConfigTest, ResourceTypesAreR4TypesSpelledAsInTheSpecification) {
  TempDir dir;
  EXPECT_EQ(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x",
                              "resourceTypes": ["Patient", "Encounter", "Observation"]}]})"),
            "(no error)");
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x",
                              "resourceTypes": ["Patient", "Encounters"]}]})")
                .find("sources[0].resourceTypes[1]: \"Encounters\" is not an R4 resource type; "
                      "did you mean Encounter?"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x",
                              "resourceTypes": ["encounter"]}]})")
                .find("sources[0].resourceTypes[0]: \"encounter\" is not an R4 resource type "
                      "(type names are case-sensitive); did you mean Encounter?"),
            std::string::npos);
}

// `logging` is a real section with one key; `server` (nothing serves yet) is unknown.
TEST(SyncConfigTest, LoggingIsASectionAndServerIsKnown) {
  TempDir dir;
  auto off = Load(dir, R"({"sources": [{"name": "e", "baseUrl": "https://x"}]})");
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_FALSE(off->sources[0].server_diagnostics);
  std::string on_json = R"({"sources": [{"name": "e", "baseUrl": "https://x"}],
      "logging": {"serverDiagnostics": true},
      "writeBack": {"carePlans": true, "target": {"baseUrl": "https://w"}},
      "billing": {"provider": {"name": "P", "npi": "1234567893"},
                  "payers": [{"name": "mac", "endpoint": {"baseUrl": "https://p"}}]}})";
  auto on = Load(dir, on_json);
  ASSERT_TRUE(on) << on.error().message;
  EXPECT_TRUE(on->sources[0].server_diagnostics);
  auto wb = LoadWriteBackConfig(dir / "config.json", Env({}), *on);
  ASSERT_TRUE(wb) << wb.error().message;
  EXPECT_TRUE(wb->target->server_diagnostics);
  EXPECT_TRUE(wb->payers[0].endpoint->server_diagnostics);
  EXPECT_TRUE(LoadEngineConfig(dir / "config.json"));

  EXPECT_NE(ErrorOf(dir, R"({"logging": {"serverDiagnostics": "yes"}})")
                .find("logging.serverDiagnostics: expected true or false"),
            std::string::npos);
  EXPECT_NE(ErrorOf(dir, R"({"logging": {"level": "debug"}})")
                .find("logging.level: unknown key (expected one of: serverDiagnostics)"),
            std::string::npos);
  // `server` is serve's section (gateway/server/server_config.h); a misspelt section is not.
  WriteFile(dir / "server.json", R"({"server": {"port": 8080}})");
  EXPECT_TRUE(LoadEngineConfig(dir / "server.json"));
  WriteFile(dir / "servr.json", R"({"servr": {"port": 8080}})");
  auto engine = LoadEngineConfig(dir / "servr.json");
  ASSERT_FALSE(engine);
  EXPECT_NE(engine.error().message.find("servr: unknown key (expected one of: practice, "
                                        "mappings, rules, billing, sources, state, sync, "
                                        "writeBack, logging, server, program)"),
            std::string::npos)
      << engine.error().message;
}

}  // namespace
}  // namespace ccm::gateway

namespace ccm::gateway {
namespace {

TEST(SyncConfigTest, ShippedExampleLoads) {
  using ccm::testing::ReadFile;
  using ccm::testing::SourceDir;
  std::filesystem::path example = SourceDir() / "config" / "sync-example.json";
  // As shipped, only the key file (a path on the production host) is missing.
  auto as_is = LoadSyncConfig(example, Env({{"EHR_CLIENT_SECRET", "x"}}));
  ASSERT_FALSE(as_is);
  EXPECT_NE(as_is.error().message.find(
                "sources[0].auth.privateKeyFile: cannot read /etc/ccm-gateway/main-ehr-key.pem"),
            std::string::npos)
      << as_is.error().message;
  TempDir dir;
  std::string text = ReadFile(example);
  auto at = text.find("/etc/ccm-gateway/main-ehr-key.pem");
  text.replace(at, std::string_view("/etc/ccm-gateway/main-ehr-key.pem").size(), "key.pem");
  WriteFile(dir / "key.pem", "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n");
  WriteFile(dir / "sync.json", text);
  auto c = LoadSyncConfig(dir / "sync.json", Env({{"EHR_CLIENT_SECRET", "x"}}));
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->sources.size(), 2u);
  EXPECT_EQ(c->sources[0].auth.kind, AuthKind::kSmartBackendServices);
  EXPECT_EQ(c->sources[0].scope, ScopeKind::kGroup);
  EXPECT_EQ(c->sources[0].group, "Group/ccm-panel");
  EXPECT_EQ(c->sources[1].auth.kind, AuthKind::kClientCredentials);
  EXPECT_EQ(c->sources[1].auth.client_secret, "x");
  EXPECT_EQ(c->state_path, "/var/lib/ccm-gateway/state.db");
  // The engine reads the same file and ignores these sections.
  auto engine = LoadEngineConfig(example);
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_EQ(engine->practice.time_zone_name, "America/New_York");
}

TEST(SyncConfigTest, ABulkSourceAndItsDefaults) {
  TempDir dir;
  auto c = Load(dir, R"({"sources": [
    {"name": "epic", "baseUrl": "https://ehr.example/fhir/R4", "bulk": {}},
    {"name": "oracle", "baseUrl": "https://ehr.example/fhir/R4",
     "resourceTypes": ["Patient", "Encounter"],
     "bulk": {"level": "group", "group": "abc-1", "parallelDownloads": 2, "maxWaitMinutes": 30,
              "typeFilters": {"Encounter": "Encounter?date=ge2026-01-01"}}}]})");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE(c->sources[0].bulk);
  const BulkConfig& a = *c->sources[0].bulk;
  EXPECT_EQ(a.level, fhir::BulkLevel::kSystem);
  EXPECT_EQ(a.parallel_downloads, 4);
  EXPECT_EQ(a.max_wait, std::chrono::minutes(240));
  EXPECT_TRUE(a.type_filters.empty());
  const BulkConfig& b = *c->sources[1].bulk;
  EXPECT_EQ(b.level, fhir::BulkLevel::kGroup);
  EXPECT_EQ(b.group, "Group/abc-1");
  EXPECT_EQ(b.parallel_downloads, 2);
  EXPECT_EQ(b.max_wait, std::chrono::minutes(30));
  ASSERT_EQ(b.type_filters.size(), 1u);
  EXPECT_EQ(b.type_filters[0].second, "Encounter?date=ge2026-01-01");
}

TEST(SyncConfigTest, BulkErrorsNameTheKey) {
  TempDir dir;
  auto source = [](std::string_view bulk, std::string_view extra = "") {
    return fmt::format(
        R"({{"sources": [{{"name": "e", "baseUrl": "https://ehr.example/fhir"{}, "bulk": {}}}]}})",
        extra, bulk);
  };
  struct Case {
    std::string json, key, what;
  };
  for (const Case& k : std::vector<Case>{
           {source(R"({"level": "everything"})"), "sources[0].bulk.level", "expected"},
           {source(R"({"level": "group"})"), "sources[0].bulk.group", "required"},
           {source(R"({"level": "group", "group": "Group/a b"})"), "sources[0].bulk.group",
            "valid FHIR id"},
           {source(R"({"group": "Group/a"})"), "sources[0].bulk.group", "only for level"},
           {source(R"({"parallelDownloads": 11})"), "sources[0].bulk.parallelDownloads", ""},
           {source(R"({"parallelDownloads": 0})"), "sources[0].bulk.parallelDownloads", ""},
           {source(R"({"maxWaitMinutes": 0})"), "sources[0].bulk.maxWaitMinutes", ""},
           {source(R"({"typeFilters": {"Encounter": "Condition?code=x"}})"),
            "sources[0].bulk.typeFilters.Encounter", "a search of the type"},
           {source(R"({"typeFilters": {"Encounter": 3}})"), "sources[0].bulk.typeFilters.Encounter",
            "a search of the type"},
           {source(R"({"typeFilters": {"Encounters": "Encounters?a=b"}})"),
            "sources[0].bulk.typeFilters.Encounters", ""},
           {source(R"({"typeFilters": {"Encounter": "Encounter?a=b"}})",
                   R"(, "resourceTypes": ["Patient"])"),
            "sources[0].bulk.typeFilters.Encounter", "not among the source's resourceTypes"},
           {source(R"({"levl": "system"})"), "sources[0].bulk", "levl"},
           {source(R"("system")"), "sources[0].bulk", ""},
           {source("{}", R"(, "scope": {"group": "g"})"), "sources[0].scope", "bulk.level"},
       }) {
    std::string e = ErrorOf(dir, k.json);
    EXPECT_NE(e.find(k.key), std::string::npos) << k.json << " -> " << e;
    EXPECT_NE(e.find(k.what), std::string::npos) << k.json << " -> " << e;
  }
}

}  // namespace
}  // namespace ccm::gateway
