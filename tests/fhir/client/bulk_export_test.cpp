// The Bulk Data client: manifest validation, and the protocol against the loopback test server's
// $export (tests/server/README.md, "Bulk Data $export").
#include "fhir/client/bulk_export.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "test_server.h"
#include "test_util.h"

namespace ccm::fhir {
namespace {

using ccm::testing::SourceDir;
using ccm::testing::TestFhirServer;

json::Value BulkJson(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v) << text;
  return v ? std::move(*v) : json::Value();
}

TEST(BulkManifestTest, AValidManifestIsReadWithEveryField) {
  auto m = ParseBulkManifest(BulkJson(R"({
    "transactionTime": "2026-11-02T10:00:00.123Z", "request": "https://ehr/fhir/$export",
    "requiresAccessToken": true,
    "output": [{"type": "Patient", "url": "https://ehr/files/1.ndjson", "count": 3},
               {"type": "Condition", "url": "https://ehr/files/2.ndjson"}],
    "error": [{"type": "OperationOutcome", "url": "https://ehr/files/e.ndjson"}],
    "deleted": [{"type": "Bundle", "url": "https://ehr/files/d.ndjson"}]})"));
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->transaction_time, "2026-11-02T10:00:00.123Z");
  EXPECT_TRUE(m->requires_access_token);
  ASSERT_EQ(m->output.size(), 2u);
  EXPECT_EQ(m->output[0].count, std::optional<std::size_t>(3));
  EXPECT_FALSE(m->output[1].count);
  EXPECT_EQ(m->error.size(), 1u);
  EXPECT_EQ(m->deleted.size(), 1u);
  // v3 servers leave out the deprecated request, and empty error arrays are often omitted.
  auto lean = ParseBulkManifest(BulkJson(
      R"({"transactionTime": "2026-11-02T10:00:00Z", "requiresAccessToken": false, "output": []})"));
  ASSERT_TRUE(lean) << lean.error().message;
  EXPECT_FALSE(lean->requires_access_token);
}

TEST(BulkManifestTest, ABrokenManifestIsAnErrorNeverAnEmptyExport) {
  const char* good = R"("requiresAccessToken": true, "output": [])";
  for (
      std::string text : {
          fmt::format(R"({{{}}})", good),                                   // no transactionTime
          fmt::format(R"({{"transactionTime": "yesterday", {}}})", good),   // not an instant
          fmt::format(R"({{"transactionTime": "2026-11-02", {}}})", good),  // a date, no instant
          std::string(R"({"transactionTime": "2026-11-02T10:00:00Z", "output": []})"),
          std::string(
              R"({"transactionTime": "2026-11-02T10:00:00Z", "requiresAccessToken": "yes", "output": []})"),
          std::string(
              R"({"transactionTime": "2026-11-02T10:00:00Z", "requiresAccessToken": true})"),
          std::string(
              R"({"transactionTime": "2026-11-02T10:00:00Z", "requiresAccessToken": true, "output": {}})"),
      }) {
    auto m = ParseBulkManifest(BulkJson(text));
    EXPECT_FALSE(m) << text;
    if (!m) {
      EXPECT_TRUE(m.error().is(Errc::kInvalidResource)) << text;
    }
  }
  for (std::string item : {
           R"({"type": "Patient", "url": "ftp://ehr/files/1.ndjson"})",
           R"({"type": "Patient", "url": "/files/1.ndjson"})",
           R"({"type": "Patient", "url": "https://"})",
           R"({"type": "Patient", "url": "https://ehr/a b.ndjson"})",
           R"({"type": "Patient"})",
           R"({"type": "Patients", "url": "https://ehr/files/1.ndjson"})",
           R"({"url": "https://ehr/files/1.ndjson"})",
           R"({"type": "Patient", "url": "https://ehr/files/1.ndjson", "count": -1})",
           R"({"type": "Patient", "url": "https://ehr/files/1.ndjson", "count": 1.5})",
           R"({"type": "Patient", "url": "https://ehr/files/1.ndjson", "count": "3"})",
           R"("https://ehr/files/1.ndjson")",
       }) {
    auto m = ParseBulkManifest(BulkJson(fmt::format(
        R"({{"transactionTime": "2026-11-02T10:00:00Z", "requiresAccessToken": true, "output": [{}]}})",
        item)));
    EXPECT_FALSE(m) << item;
  }
  auto wrong_error = ParseBulkManifest(BulkJson(
      R"({"transactionTime": "2026-11-02T10:00:00Z", "requiresAccessToken": true, "output": [],
          "error": [{"type": "Patient", "url": "https://ehr/e.ndjson"}]})"));
  EXPECT_FALSE(wrong_error) << "error files hold OperationOutcomes";
}

TEST(BulkManifestTest, TheKickOffUrlCarriesEveryParameterEncoded) {
  BulkExportRequest r;
  r.level = BulkLevel::kGroup;
  r.group_id = "g1";
  r.types = {"Patient", "Encounter"};
  r.since = "2026-11-02T10:00:00.123+01:00";
  r.type_filters = {"Encounter?date=ge2026-01-01"};
  EXPECT_EQ(BulkKickOffUrl("https://ehr/fhir/R4/", r),
            "https://ehr/fhir/R4/Group/g1/$export?_outputFormat=application%2Ffhir%2Bndjson"
            "&_type=Patient%2CEncounter&_since=2026-11-02T10%3A00%3A00.123%2B01%3A00"
            "&_typeFilter=Encounter%3Fdate%3Dge2026-01-01");
  EXPECT_EQ(BulkKickOffUrl("https://ehr/fhir/R4", {}),
            "https://ehr/fhir/R4/$export?_outputFormat=application%2Ffhir%2Bndjson");
  r.level = BulkLevel::kPatient;
  EXPECT_TRUE(
      BulkKickOffUrl("https://ehr/fhir/R4", r).starts_with("https://ehr/fhir/R4/Patient/$export?"));
}

class BulkExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestFhirServer>(std::vector<std::filesystem::path>{
        SourceDir() / "samples" / "synthea-g10-2pt", SourceDir() / "samples" / "activity"});
  }
  BulkExportClient Client(int attempts = 3, std::shared_ptr<TokenSource> auth = nullptr) {
    BulkExportOptions o;
    o.base_url = server_->base();
    o.retry.max_attempts = attempts;
    o.retry.initial_backoff = std::chrono::milliseconds(5);
    o.retry.max_backoff = std::chrono::milliseconds(100);
    o.max_wait = std::chrono::seconds(60);
    return BulkExportClient(o, std::move(auth));
  }
  void Export(const std::string& json) { server_->Send("POST", "/__admin/export", json); }
  struct Exported {
    std::string status_url;
    BulkManifest manifest;
  };
  // Kicks off an export of `types` with `c` and waits for its manifest; nullopt (and a failure
  // of the test) when either step fails.
  static std::optional<Exported> ExportOf(BulkExportClient& c, std::vector<std::string> types) {
    BulkExportRequest r;
    r.types = std::move(types);
    auto status = c.KickOff(r);
    EXPECT_TRUE(status) << (status ? "" : status.error().message);
    if (!status) return std::nullopt;
    auto m = c.AwaitManifest(*status);
    EXPECT_TRUE(m) << (m ? "" : m.error().message);
    if (!m) return std::nullopt;
    return Exported{*status, std::move(*m)};
  }
  // The request log entries whose "METHOD url" contains `needle`.
  std::vector<json::Value> Logged(std::string_view needle) {
    std::vector<json::Value> out;
    json::Value all = server_->Requests();
    for (const json::Value& r : all.array()) {
      if (fmt::format("{} {}", r["method"].str(), r["url"].str()).find(needle) !=
          std::string::npos) {
        out.push_back(r);
      }
    }
    return out;
  }
  static long long Time(const json::Value& logged) {
    return std::stoll(std::string(logged["time"].number_text()));
  }
  // Ids of `type` the server holds.
  std::set<std::string> ServerIds(const std::string& type) {
    json::Value b = server_->Json("GET", "/fhir/R4/" + type + "?_count=100000");
    std::set<std::string> ids;
    for (const json::Value& e : b["entry"].array()) ids.emplace(e["resource"]["id"].str());
    return ids;
  }
  std::unique_ptr<TestFhirServer> server_;
};

TEST_F(BulkExportTest, KickOffPollDownloadAndDeleteReadEveryResourceOnce) {
  Export(R"({"polls": 2, "retryAfter": "0", "maxPerFile": 40})");
  BulkExportClient c = Client();
  BulkExportRequest r;
  r.types = {"Patient", "Encounter"};
  auto status = c.KickOff(r);
  ASSERT_TRUE(status) << status.error().message;
  EXPECT_TRUE(status->starts_with(server_->base() + "/$bulk-status/")) << *status;
  std::vector<std::string> progress;
  auto m = c.AwaitManifest(*status, [&](std::string_view p) { progress.emplace_back(p); });
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(progress, (std::vector<std::string>{"33% done", "66% done"}));
  EXPECT_FALSE(m->requires_access_token) << "no auth configured on the server";
  std::map<std::string, std::set<std::string>> got;
  std::map<std::string, std::size_t> files;
  for (const BulkFile& f : m->output) {
    ++files[f.type];
    std::size_t lines = 0;
    auto d = c.Download(f, false, [&](std::string_view line, const json::Value& v) -> Status {
      EXPECT_EQ(v["resourceType"].str(), f.type);
      EXPECT_TRUE(line.starts_with("{") && line.ends_with("}"));
      EXPECT_TRUE(got[f.type].emplace(v["id"].str()).second) << "each resource once";
      ++lines;
      return Status{};
    });
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->attempts, 1);
    EXPECT_EQ(d->lines, lines);
    EXPECT_EQ(f.count, std::optional<std::size_t>(lines));
  }
  EXPECT_EQ(got["Patient"], ServerIds("Patient"));
  EXPECT_EQ(got["Encounter"], ServerIds("Encounter"));
  EXPECT_GT(files["Encounter"], 2u) << "a large type comes in several files";
  for (const json::Value& k : Logged("GET /fhir/R4/$export")) {
    EXPECT_EQ(k["prefer"].str(), "respond-async");
    EXPECT_NE(std::string(k["url"].str()).find("_type=Patient%2CEncounter"), std::string::npos);
  }
  ASSERT_TRUE(c.Delete(*status));
  EXPECT_EQ(server_->Send("GET", *status).status, 404) << "the export is gone";
}

TEST_F(BulkExportTest, AStreamedFileIsNeverHeldWholeSoItsSizeIsNoLimit) {
  BulkExportClient c = Client();
  auto e = ExportOf(c, {"Encounter"});
  ASSERT_TRUE(e);
  ASSERT_EQ(e->manifest.output.size(), 1u);
  const std::string& url = e->manifest.output[0].url;
  HttpOptions small;
  small.max_response_bytes = 4096;
  HttpClient http(small);
  auto whole = http.Send({"GET", url, {}, {}});
  ASSERT_FALSE(whole) << "held, the file is more than the limit";
  std::size_t bytes = 0;
  auto streamed = http.Stream({"GET", url, {}, {}}, [&](std::string_view chunk) {
    bytes += chunk.size();
    return true;
  });
  ASSERT_TRUE(streamed) << streamed.error().message;
  EXPECT_EQ(streamed->status, 200);
  EXPECT_TRUE(streamed->body.empty());
  EXPECT_GT(bytes, 10u * small.max_response_bytes);
  // The client downloads it with that limit too, line by line.
  BulkExportOptions o;
  o.base_url = server_->base();
  o.http = small;
  BulkExportClient bounded(o, nullptr);
  std::size_t lines = 0;
  auto d =
      bounded.Download(e->manifest.output[0], false, [&](std::string_view, const json::Value&) {
        ++lines;
        return Status{};
      });
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(lines, *e->manifest.output[0].count);
  // A line longer than max_line_bytes is refused rather than held.
  o.max_line_bytes = 64;
  o.retry.max_attempts = 1;
  BulkExportClient tiny(o, nullptr);
  auto refused = tiny.Download(e->manifest.output[0], false,
                               [](std::string_view, const json::Value&) { return Status{}; });
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("a line longer than 64 bytes"), std::string::npos)
      << refused.error().message;
}

TEST_F(BulkExportTest, AKickOffWithoutPreferRespondAsyncIsRefused) {
  auto r = server_->Send("GET", server_->base() + "/$export?_type=Patient");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("Prefer: respond-async"), std::string::npos) << r.body;
}

TEST_F(BulkExportTest, RetryAfterIsHonouredOnKickOffAndPolls) {
  Export(R"({"polls": 1, "retryAfter": "1"})");
  server_->Faults(R"([{"match": "GET /fhir/R4/$export", "kind": "status", "status": 429,
                       "retryAfter": "1"}])");
  BulkExportClient c = Client();
  auto e = ExportOf(c, {"Patient"});
  ASSERT_TRUE(e);
  auto kickoffs = Logged("GET /fhir/R4/$export");
  ASSERT_EQ(kickoffs.size(), 2u) << "the 429 was waited out, then the kick-off repeated";
  EXPECT_GE(Time(kickoffs[1]) - Time(kickoffs[0]), 900);
  auto polls = Logged("GET /fhir/R4/$bulk-status/");
  ASSERT_EQ(polls.size(), 2u);
  EXPECT_GE(Time(polls[1]) - Time(polls[0]), 900) << "Retry-After: 1 between polls";
}

TEST_F(BulkExportTest, TransientStatusErrorsAreRetriedAndAPersistentOneFails) {
  server_->Faults(R"([{"match": "GET /fhir/R4/$bulk-status/", "kind": "status", "status": 503,
                       "times": 2}])");
  BulkExportClient c = Client(3);
  auto e = ExportOf(c, {"Patient"});
  ASSERT_TRUE(e);

  server_->Faults(R"([{"match": "GET /fhir/R4/$bulk-status/", "kind": "status", "status": 500,
                       "times": 100}])");
  auto failed = c.AwaitManifest(e->status_url);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("gave up after 3 attempt(s)"), std::string::npos)
      << failed.error().message;
  // A 4xx that is not marked transient ends the export at once.
  server_->Send("DELETE", "/__admin/faults");
  server_->Faults(R"([{"match": "GET /fhir/R4/$bulk-status/", "kind": "status", "status": 400}])");
  auto refused = c.AwaitManifest(e->status_url);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("the export failed"), std::string::npos)
      << refused.error().message;
}

TEST_F(BulkExportTest, AFileThatFailsTwiceOrArrivesCutIsDownloadedAgain) {
  BulkExportClient c = Client(3);
  auto e = ExportOf(c, {"Encounter"});
  ASSERT_TRUE(e);
  ASSERT_EQ(e->manifest.output.size(), 1u);
  std::size_t expected = ServerIds("Encounter").size();
  for (const char* faults :
       {R"([{"match": "GET /fhir/R4/$bulk-file/", "kind": "status", "status": 500, "times": 2}])",
        R"([{"match": "GET /fhir/R4/$bulk-file/", "kind": "truncate"}])",
        R"([{"match": "GET /fhir/R4/$bulk-file/", "kind": "drop"}])"}) {
    server_->Faults(faults);
    std::size_t lines = 0, restarts = 0;
    auto d = c.Download(
        e->manifest.output[0], false,
        [&](std::string_view, const json::Value&) -> Status {
          ++lines;
          return Status{};
        },
        [&] {
          ++restarts;
          lines = 0;
        });
    ASSERT_TRUE(d) << faults << ": " << d.error().message;
    EXPECT_EQ(lines, expected) << faults;
    EXPECT_EQ(d->lines, expected) << faults;
    EXPECT_EQ(server_->Json("GET", "/__admin/faults").size(), 0u) << faults << ": hit";
    // A dropped kept-alive connection may be re-sent by libcurl itself on a fresh one.
    if (std::string_view(faults).find("drop") == std::string_view::npos) {
      EXPECT_GE(d->attempts, 2) << faults;
    }
    EXPECT_EQ(restarts, static_cast<std::size_t>(d->attempts - 1)) << faults;
  }
  // One that keeps failing is an error naming the file, never a short read.
  server_->Faults(R"([{"match": "GET /fhir/R4/$bulk-file/", "kind": "status", "status": 503,
                       "times": 100}])");
  auto d = c.Download(e->manifest.output[0], false,
                      [](std::string_view, const json::Value&) { return Status{}; });
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("gave up after 3 attempt(s)"), std::string::npos)
      << d.error().message;
}

TEST_F(BulkExportTest, ACountThatDoesNotMatchTheLinesFailsTheFile) {
  BulkExportClient c = Client(2);
  auto e = ExportOf(c, {"Patient"});
  ASSERT_TRUE(e);
  ASSERT_EQ(e->manifest.output.size(), 1u);
  BulkFile f = e->manifest.output[0];
  f.count = *f.count + 1;
  auto d = c.Download(f, false, [](std::string_view, const json::Value&) { return Status{}; });
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("where the manifest says"), std::string::npos)
      << d.error().message;
}

TEST_F(BulkExportTest, TheTokenGoesToFilesOnlyWhenTheManifestAsksForIt) {
  server_->Auth(R"({"mode": "bearer", "token": "t0k"})");
  for (bool required : {true, false}) {
    Export(fmt::format(R"({{"requiresAccessToken": {}}})", required));
    server_->ClearRequests();
    BulkExportClient c = Client(2, StaticBearer("t0k"));
    auto e = ExportOf(c, {"Patient"});
    ASSERT_TRUE(e);
    EXPECT_EQ(e->manifest.requires_access_token, required);
    for (const BulkFile& f : e->manifest.output) {
      auto d = c.Download(f, e->manifest.requires_access_token,
                          [](std::string_view, const json::Value&) { return Status{}; });
      ASSERT_TRUE(d) << d.error().message;
    }
    auto files = Logged("GET /fhir/R4/$bulk-file/");
    ASSERT_FALSE(files.empty());
    for (const json::Value& f : files) EXPECT_EQ(f["authorization"].as_bool(), required);
    for (const json::Value& p : Logged("GET /fhir/R4/$bulk-status/")) {
      EXPECT_TRUE(p["authorization"].as_bool()) << "polls always carry the token";
    }
  }
}

TEST_F(BulkExportTest, ARedirectToAnotherHostIsFollowedWithoutTheToken) {
  server_->Auth(R"({"mode": "bearer", "token": "t0k"})");
  Export(R"({"requiresAccessToken": true, "redirectFiles": true})");
  BulkExportClient c = Client(2, StaticBearer("t0k"));
  auto e = ExportOf(c, {"Patient"});
  ASSERT_TRUE(e);
  ASSERT_EQ(e->manifest.output.size(), 1u);
  server_->ClearRequests();
  std::size_t lines = 0;
  auto d = c.Download(e->manifest.output[0], true, [&](std::string_view, const json::Value&) {
    ++lines;
    return Status{};
  });
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(lines, *e->manifest.output[0].count);
  auto files = Logged("GET /fhir/R4/$bulk-file/");
  ASSERT_EQ(files.size(), 2u) << "the file, then where it redirected";
  EXPECT_TRUE(files[0]["authorization"].as_bool()) << "to the FHIR server: the token";
  EXPECT_EQ(std::string(files[0]["status"].number_text()), "302");
  EXPECT_NE(std::string(files[1]["url"].str()).find("signed=1"), std::string::npos);
  EXPECT_FALSE(files[1]["authorization"].as_bool()) << "to another host: never the token";
}

TEST_F(BulkExportTest, AServerWithoutExportIsUnsupported) {
  Export(R"({"supported": false})");
  BulkExportClient c = Client();
  auto status = c.KickOff({});
  ASSERT_FALSE(status);
  EXPECT_TRUE(status.error().is(Errc::kUnsupported)) << status.error().message;
  EXPECT_NE(status.error().message.find("does not offer Bulk Data $export"), std::string::npos)
      << status.error().message;
}

TEST_F(BulkExportTest, AManifestWithoutTransactionTimeIsAnError) {
  Export(R"({"manifestPatch": {"transactionTime": null}})");
  BulkExportClient c = Client();
  auto status = c.KickOff({});
  ASSERT_TRUE(status);
  auto m = c.AwaitManifest(*status);
  ASSERT_FALSE(m);
  EXPECT_TRUE(m.error().is(Errc::kInvalidResource));
  EXPECT_NE(m.error().message.find("no transactionTime"), std::string::npos) << m.error().message;
  Export(R"({"manifestPatch": {"output": [{"type": "Patient", "url": "file:///etc/passwd"}]}})");
  auto bad_url = c.AwaitManifest(*status);
  ASSERT_FALSE(bad_url);
  EXPECT_NE(bad_url.error().message.find("output[0]"), std::string::npos)
      << bad_url.error().message;
}

TEST_F(BulkExportTest, TheMaxWaitEndsPolling) {
  Export(R"({"polls": 1000, "retryAfter": "0"})");
  BulkExportOptions o;
  o.base_url = server_->base();
  o.retry.initial_backoff = std::chrono::milliseconds(20);
  o.max_wait = std::chrono::milliseconds(300);
  BulkExportClient c(o, nullptr);
  auto status = c.KickOff({});
  ASSERT_TRUE(status);
  auto t0 = std::chrono::steady_clock::now();
  auto m = c.AwaitManifest(*status);
  ASSERT_FALSE(m);
  EXPECT_TRUE(m.error().is(Errc::kTimeout)) << m.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace ccm::fhir
