#include "fhir/reader.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <iostream>
#include <vector>

#include "test_util.h"

namespace ccm::fhir {
namespace {

using ccm::testing::SharedData;
using ccm::testing::TempDir;
using ccm::testing::WriteFile;
using ccm::testing::WriteGzFile;

struct Collected {
  std::vector<json::Value> resources;
  std::vector<SourceLocation> where;
  std::vector<Issue> issues;
  ResourceReader MakeReader(ReadOptions options = {}) {
    return ResourceReader(
        [this](json::Value&& v, const SourceLocation& w) {
          resources.push_back(std::move(v));
          where.push_back(w);
          return true;
        },
        [this](const Issue& i) {
          issues.push_back(i);
          return true;
        },
        options);
  }
  std::size_t errors() const {
    std::size_t n = 0;
    for (const Issue& i : issues) n += i.is_error() ? 1 : 0;
    return n;
  }
};

TEST(ReaderTest, ReadsSyntheaNdjsonWithLineNumbers) {
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(SharedData() / "fhir/synthea-bulk-10pt/Patient.000.ndjson"));
  EXPECT_EQ(c.resources.size(), 13u);
  EXPECT_TRUE(c.issues.empty());
  for (std::size_t i = 0; i < c.where.size(); ++i) {
    EXPECT_EQ(c.where[i].line, i + 1);
    EXPECT_EQ(c.resources[i]["resourceType"].str(), "Patient");
  }
}

TEST(ReaderTest, DirectorySkipsBulkLogAndCountsEverything) {
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(SharedData() / "fhir/synthea-bulk-10pt"));
  EXPECT_EQ(c.resources.size(), 13u + 555u + 1215u + 2056u);
  EXPECT_EQ(c.errors(), 0u);
  EXPECT_EQ(r.counts().files, 4u);
  EXPECT_EQ(r.counts().files_skipped, 1u);
  ASSERT_EQ(c.issues.size(), 1u);
  EXPECT_NE(c.issues[0].location.find("log.ndjson"), std::string::npos);
  // Sorted path order: Condition, Encounter, Patient, Procedure.
  EXPECT_EQ(c.resources.front()["resourceType"].str(), "Condition");
  EXPECT_EQ(c.resources.back()["resourceType"].str(), "Procedure");
}

TEST(ReaderTest, BadLinesAreReportedWithFileAndLineAndTheRestIsRead) {
  TempDir dir;
  WriteFile(dir / "mixed.ndjson",
            "{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n"
            "\n"
            "{\"resourceType\":\"Patient\",\"id\":\"b\",}\n"
            "[1,2]\n"
            "   \n"
            "{\"resourceType\":\"Patient\",\"id\":\"c\"}");  // no final newline
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(dir / "mixed.ndjson"));
  ASSERT_EQ(c.resources.size(), 2u);
  EXPECT_EQ(c.resources[0]["id"].str(), "a");
  EXPECT_EQ(c.resources[1]["id"].str(), "c");
  EXPECT_EQ(c.where[1].line, 6u);
  ASSERT_EQ(c.issues.size(), 2u);
  std::string first = FormatIssue(c.issues[0]);
  EXPECT_NE(first.find("mixed.ndjson:3:"), std::string::npos) << first;
  EXPECT_NE(first.find("invalid JSON"), std::string::npos) << first;
  std::string second = FormatIssue(c.issues[1]);
  EXPECT_NE(second.find("mixed.ndjson:4"), std::string::npos) << second;
  EXPECT_NE(second.find("found array"), std::string::npos) << second;
  EXPECT_EQ(r.counts().skipped, 2u);
}

TEST(ReaderTest, GzipNdjsonAndJsonAreReadTransparently) {
  TempDir dir;
  std::string ndjson =
      ccm::testing::ReadFile(SharedData() / "fhir/synthea-g10-2pt/Condition.ndjson");
  WriteGzFile(dir / "Condition.ndjson.gz", ndjson);
  WriteGzFile(
      dir / "bundle.json.gz",
      ccm::testing::ReadFile(SharedData() / "fhir/spec-r4-examples/Bundle-bundle-example.json"));
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(dir.path()));
  EXPECT_EQ(c.errors(), 0u);
  EXPECT_EQ(c.resources.size(), 42u + 2u);  // "Condition…" sorts before "bundle…"
  EXPECT_EQ(c.resources[42]["resourceType"].str(), "MedicationRequest");
}

TEST(ReaderTest, TruncatedGzipIsReportedNotCrashed) {
  TempDir dir;
  std::string ndjson =
      ccm::testing::ReadFile(SharedData() / "fhir/synthea-g10-2pt/Encounter.ndjson");
  WriteGzFile(dir / "full.ndjson.gz", ndjson);
  std::string gz = ccm::testing::ReadFile(dir / "full.ndjson.gz");
  WriteFile(dir / "cut.ndjson.gz", std::string_view(gz).substr(0, gz.size() / 2));
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(dir / "cut.ndjson.gz"));
  EXPECT_GT(c.resources.size(), 10u);
  EXPECT_LT(c.resources.size(), 189u);
  ASSERT_GE(c.errors(), 1u);
  EXPECT_NE(FormatIssue(c.issues.back()).find("the rest of the file was not read"),
            std::string::npos)
      << FormatIssue(c.issues.back());
}

TEST(ReaderTest, OverlongLineIsSkippedWithinTheLimit) {
  TempDir dir;
  std::string big =
      "{\"resourceType\":\"Basic\",\"id\":\"x\",\"pad\":\"" + std::string(5000, 'a') + "\"}";
  WriteFile(dir / "big.ndjson", big + "\n{\"resourceType\":\"Basic\",\"id\":\"y\"}\n");
  for (unsigned threads : {1u, 2u}) {  // the parallel path must apply the same limit
    Collected c;
    ReadOptions o;
    o.max_line_bytes = 1000;
    o.threads = threads;
    ResourceReader r = c.MakeReader(o);
    ASSERT_TRUE(r.Read(dir / "big.ndjson"));
    ASSERT_EQ(c.resources.size(), 1u) << threads;
    EXPECT_EQ(c.resources[0]["id"].str(), "y");
    EXPECT_EQ(c.where[0].line, 2u);
    ASSERT_EQ(c.issues.size(), 1u);
    EXPECT_EQ(c.issues[0].code, IssueCode::kTooLong);
    EXPECT_EQ(c.issues[0].location, (dir / "big.ndjson").string() + ":1");
  }
}

TEST(ReaderTest, LinesLongerThanABlockAreReadOrSkippedAlikeOnBothPaths) {
  // The parallel path reads 1 MiB blocks: a line that spans several must be carried whole into
  // the next block, or, when over the limit, skipped to its end across blocks.
  TempDir dir;
  std::string long_line = "{\"resourceType\":\"Basic\",\"id\":\"long\",\"pad\":\"" +
                          std::string(std::size_t{2} << 20, 'a') + "\"}";
  std::string over_line = "{\"resourceType\":\"Basic\",\"id\":\"over\",\"pad\":\"" +
                          std::string(std::size_t{5} << 20, 'b') + "\"}";
  WriteFile(dir / "long.ndjson", "{\"resourceType\":\"Basic\",\"id\":\"a\"}\n" + long_line + "\n" +
                                     over_line + "\n{\"resourceType\":\"Basic\",\"id\":\"z\"}");
  for (unsigned threads : {1u, 2u}) {
    Collected c;
    ReadOptions o;
    o.max_line_bytes = std::size_t{4} << 20;
    o.threads = threads;
    ResourceReader r = c.MakeReader(o);
    ASSERT_TRUE(r.Read(dir / "long.ndjson"));
    ASSERT_EQ(c.resources.size(), 3u) << threads;
    EXPECT_EQ(c.resources[0]["id"].str(), "a");
    EXPECT_EQ(c.resources[1]["id"].str(), "long");
    EXPECT_EQ(c.resources[1]["pad"].str().size(), std::size_t{2} << 20);
    EXPECT_EQ(c.where[1].line, 2u);
    EXPECT_EQ(c.resources[2]["id"].str(), "z");
    EXPECT_EQ(c.where[2].line, 4u) << threads;
    ASSERT_EQ(c.issues.size(), 1u) << threads;
    EXPECT_EQ(c.issues[0].code, IssueCode::kTooLong);
    EXPECT_EQ(c.issues[0].location, (dir / "long.ndjson").string() + ":3");
  }
}

TEST(ReaderTest, ParallelReadDeliversInOrderWithLineNumbers) {
  TempDir dir;
  std::string text;
  const int n = 30000;  // several blocks
  for (int i = 1; i <= n; ++i) {
    if (i % 1000 == 0) {
      text += "{not json\n";
    } else if (i % 777 == 0) {
      text += "\r\n";  // blank (CRLF)
    } else {
      text += fmt::format("{{\"resourceType\":\"Basic\",\"id\":\"b{}\",\"pad\":\"{}\"}}\r\n", i,
                          std::string(static_cast<std::size_t>(i % 97), 'x'));
    }
  }
  text += "{\"resourceType\":\"Basic\",\"id\":\"last\"}";  // no final newline
  WriteFile(dir / "many.ndjson", text);
  Collected one, two;
  ReadOptions o1, o2;
  o2.threads = 2;
  ResourceReader r1 = one.MakeReader(o1);
  ResourceReader r2 = two.MakeReader(o2);
  ASSERT_TRUE(r1.Read(dir / "many.ndjson"));
  ASSERT_TRUE(r2.Read(dir / "many.ndjson"));
  ASSERT_EQ(one.resources.size(), two.resources.size());
  EXPECT_EQ(one.resources.size(), static_cast<std::size_t>(n - 30 - n / 777 + 1));
  for (std::size_t i = 0; i < one.resources.size(); ++i) {
    ASSERT_EQ(one.resources[i], two.resources[i]) << i;
    ASSERT_EQ(one.where[i].line, two.where[i].line) << i;
  }
  EXPECT_EQ(two.resources.back()["id"].str(), "last");
  EXPECT_EQ(two.where.back().line, static_cast<std::size_t>(n + 1));
  ASSERT_EQ(two.issues.size(), 30u);
  EXPECT_EQ(two.issues[0].location, (dir / "many.ndjson").string() + ":1000:2");
  EXPECT_EQ(r2.counts().skipped, 30u);
}

TEST(ReaderTest, SearchsetBundleEntriesCarryLineAndPointer) {
  Collected c;
  ResourceReader r = c.MakeReader();
  auto file = SharedData() / "fhir/spec-r4-examples/Bundle-bundle-example.json";
  ASSERT_TRUE(r.Read(file));
  ASSERT_EQ(c.resources.size(), 2u);
  EXPECT_EQ(c.where[0].pointer, "Bundle.entry[0].resource");
  EXPECT_EQ(c.where[0].line, 20u);  // the line of the entry's opening brace
  EXPECT_EQ(c.where[1].pointer, "Bundle.entry[1].resource");
  EXPECT_EQ(c.resources[1]["resourceType"].str(), "Medication");
}

TEST(ReaderTest, TransactionBundleReportsRequestsItCannotApply) {
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(SharedData() / "fhir/spec-r4-examples/Bundle-bundle-transaction.json"));
  EXPECT_EQ(c.resources.size(), 6u);
  std::size_t deletes = 0, gets = 0;
  for (const Issue& i : c.issues) {
    if (i.message.starts_with("DELETE")) ++deletes;
    if (i.message.starts_with("GET")) ++gets;
  }
  EXPECT_EQ(deletes, 2u);
  EXPECT_EQ(gets, 2u);
  EXPECT_EQ(r.counts().skipped, 2u);  // the DELETEs; GETs carry no data
}

TEST(ReaderTest, ResourceTypeAfterEntriesAndNonBundleEntryArrays) {
  Collected c;
  ResourceReader r = c.MakeReader();
  r.ReadJsonText(R"({"entry":[{"resource":{"resourceType":"Patient","id":"p1"}},
                              {"resource":{"resourceType":"Patient","id":"p2"}}],
                     "type":"collection","resourceType":"Bundle"})",
                 "late.json");
  r.ReadJsonText(R"({"resourceType":"List","id":"l","status":"current","mode":"working",
                     "entry":[{"item":{"reference":"Patient/p1"}},{"item":{"reference":"Patient/p2"}}]})",
                 "list.json");
  ASSERT_EQ(c.resources.size(), 3u);
  EXPECT_EQ(c.resources[0]["id"].str(), "p1");
  EXPECT_EQ(c.resources[1]["id"].str(), "p2");
  EXPECT_EQ(c.resources[2]["resourceType"].str(), "List");
  EXPECT_EQ(c.resources[2]["entry"].size(), 2u);
  EXPECT_EQ(json::Serialize(c.resources[2]["entry"][1]), R"({"item":{"reference":"Patient/p2"}})");
  EXPECT_TRUE(c.issues.empty());
}

TEST(ReaderTest, BrokenBundleKeepsEntriesReadBeforeTheError) {
  Collected c;
  ResourceReader r = c.MakeReader();
  r.ReadJsonText(
      "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[\n"
      "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\"}},\n"
      "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p2\"}},\n"
      "{\"resource\":{\"resourceType\":\"Patient\" \"id\":\"p3\"}}]}\n",
      "broken.json");
  ASSERT_EQ(c.resources.size(), 2u);
  EXPECT_EQ(c.where[1].line, 3u);
  ASSERT_EQ(c.issues.size(), 1u);
  std::string msg = FormatIssue(c.issues[0]);
  EXPECT_NE(msg.find("broken.json:4:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 Bundle entries before this point were read"), std::string::npos) << msg;
}

TEST(ReaderTest, BadEntriesAreSkippedOthersKept) {
  Collected c;
  ResourceReader r = c.MakeReader();
  r.ReadJsonText(R"({"resourceType":"Bundle","type":"collection","entry":[
      42, {"fullUrl":"urn:uuid:1"}, {"resource":[1]}, {"resource":{"resourceType":"Patient","id":"ok"}}]})",
                 "b.json");
  ASSERT_EQ(c.resources.size(), 1u);
  ASSERT_EQ(c.errors(), 3u);
  EXPECT_EQ(c.issues[0].path, "Bundle.entry[0]");
  EXPECT_EQ(c.issues[1].path, "Bundle.entry[1]");
  EXPECT_EQ(c.issues[2].path, "Bundle.entry[2].resource");
}

TEST(ReaderTest, StreamsEntriesAndStopsWhenAsked) {
  // Build a Bundle far larger than one entry; the callback stops after the first entry, proving
  // that entries are handed over as they are parsed, not after the whole file.
  std::string bundle = R"({"resourceType":"Bundle","type":"collection","entry":[)";
  for (int i = 0; i < 5000; ++i) {
    if (i) bundle += ",";
    bundle += R"({"resource":{"resourceType":"Patient","id":"p)" + std::to_string(i) + R"("}})";
  }
  bundle += "]}";
  std::size_t seen = 0;
  ResourceReader r([&](json::Value&&, const SourceLocation&) { return ++seen < 1; },
                   [](const Issue&) { return true; });
  r.ReadJsonText(bundle, "big.json");
  EXPECT_EQ(seen, 1u);
  EXPECT_TRUE(r.stopped());
}

// A JSON object that is not an R4 resource is never delivered: it is reported where it is, at
// its resourceType, with the type it probably means, on every way a resource is read.
TEST(ReaderTest, ObjectsWithoutAnR4ResourceTypeAreReportedAtTheirResourceType) {
  TempDir dir;
  WriteFile(dir / "in" / "mixed.ndjson",
            "{\"resourceType\":\"Patient\",\"id\":\"ok\"}\n"
            "{\"resourceType\":\"patient\",\"id\":\"a\"}\n"
            "{\"id\":\"b\",\"resourceType\":\"Encounters\"}\n"
            "{\"id\":\"c\"}\n"
            "{\"resourceType\":7}\n"
            "{\"patient\":\"Patient/p1\",\"month\":\"2026-10\",\"program\":\"CCM\"}\n"
            "{\"resourceType\":\"Zebra\"}\n");
  WriteFile(dir / "in" / "bundle.json",
            R"({"resourceType":"Bundle","type":"collection","entry":[
                {"resource":{"resourceType":"Patient","id":"p2"}},
                {"resource":{"resourceType":"condition","id":"c1"}}]})");
  WriteFile(dir / "in" / "single.json", R"({"resourceType":"Observations","id":"o"})");
  for (unsigned threads : {1u, 3u}) {
    Collected c;
    ResourceReader r = c.MakeReader(ReadOptions{.threads = threads});
    ASSERT_TRUE(r.Read(dir / "in"));
    ASSERT_EQ(c.resources.size(), 2u) << threads;
    EXPECT_EQ(c.resources[0]["id"].str(), "p2");
    EXPECT_EQ(c.resources[1]["id"].str(), "ok");
    EXPECT_EQ(r.counts().resources, 2u);
    EXPECT_EQ(r.counts().skipped, 8u);
    std::vector<std::string> lines;
    for (const Issue& i : c.issues) {
      EXPECT_TRUE(i.is_error());
      lines.push_back(FormatIssue(i));
    }
    std::string in = (dir / "in").string();
    std::vector<std::string> expected = {
        in + "/bundle.json:3: Bundle.entry[1].resource.resourceType: \"condition\" is not an R4 "
             "resource type (type names are case-sensitive); did you mean Condition?; entry "
             "skipped",
        in + "/mixed.ndjson:2: resourceType: \"patient\" is not an R4 resource type (type names "
             "are case-sensitive); did you mean Patient?; line skipped",
        in + "/mixed.ndjson:3: resourceType: \"Encounters\" is not an R4 resource type; did you "
             "mean Encounter?; line skipped",
        in + "/mixed.ndjson:4: resourceType: missing: not a FHIR resource; a resource names its "
             "type, e.g. \"resourceType\": \"Patient\"; line skipped",
        in + "/mixed.ndjson:5: resourceType: expected a string naming an R4 resource type, found "
             "number; line skipped",
        in + "/mixed.ndjson:6: resourceType: missing: this looks like a ccm-gateway report record "
             "(it has patient and month), not a FHIR resource; give the FHIR input, not a report "
             "of evaluate or sync; line skipped",
        in + "/mixed.ndjson:7: resourceType: \"Zebra\" is not an R4 resource type; use a type of "
             "the R4 specification, spelled as there (e.g. Patient, Encounter); line skipped",
        in + "/single.json:1: resourceType: \"Observations\" is not an R4 resource type; did you "
             "mean Observation?; file skipped",
    };
    EXPECT_EQ(lines, expected);
    EXPECT_EQ(c.issues[0].path, "Bundle.entry[1].resource.resourceType");
    EXPECT_EQ(c.issues[0].code, IssueCode::kInvalid);
  }
}

std::vector<std::string> Lines(const std::vector<Issue>& issues) {
  std::vector<std::string> out;
  for (const Issue& i : issues) out.push_back(FormatIssue(i));
  return out;
}

// Everything in a directory that is not read is named with the reason: as a warning (counted as
// skipped) when it may hold data, as a note when it does not.
TEST(ReaderTest, EveryFileNotReadIsNamedWithTheReason) {
  TempDir dir;
  const std::string patient = "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n";
  WriteFile(dir / "in" / "a.ndjson", patient);
  WriteFile(dir / "in" / "b.NDJSON", patient);
  WriteFile(dir / "in" / "c.Json", patient);
  WriteGzFile(dir / "in" / "d.ndjson.GZ", patient);
  WriteFile(dir / "in" / "e.ndjson.bz2", "BZh9");
  WriteFile(dir / "in" / "f.zip", "PK");
  WriteGzFile(dir / "in" / "g.gz", patient);
  WriteFile(dir / "in" / "README.md", "# export\n");
  WriteFile(dir / "in" / ".hidden.ndjson", patient);
  WriteFile(dir / "in" / ".git" / "x.ndjson", patient);
  WriteFile(dir / "in" / "log.ndjson", "{\"type\":\"status\"}\n");
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(dir / "in"));
  EXPECT_EQ(c.resources.size(), 1u);
  EXPECT_EQ(r.counts().files, 1u);
  EXPECT_EQ(r.counts().files_skipped, 10u);
  EXPECT_EQ(r.counts().skipped, 6u) << "the ones that may hold data";
  std::string in = (dir / "in").string();
  const std::string read = "(read: .ndjson, .jsonl and .json, each also gzip-compressed (.gz))";
  std::vector<std::string> expected = {
      in + "/.git: information: skipped: a hidden directory (never read)",
      in + "/.hidden.ndjson: information: skipped: a hidden file (never read)",
      in + "/README.md: information: skipped: not a FHIR file by its name " + read,
      in +
          "/b.NDJSON: warning: not read: endings are case-sensitive; rename it to b.ndjson to "
          "read it " +
          read,
      in +
          "/c.Json: warning: not read: endings are case-sensitive; rename it to c.json to read "
          "it " +
          read,
      in +
          "/d.ndjson.GZ: warning: not read: endings are case-sensitive; rename it to "
          "d.ndjson.gz to read it " +
          read,
      in + "/e.ndjson.bz2: warning: not read: .bz2 files are not read " + read +
          "; decompress it, or recompress it with gzip",
      in + "/f.zip: warning: not read: .zip files are not read " + read +
          "; unpack it into .ndjson or .json files",
      in + "/g.gz: warning: not read: a .gz file is read when its name says what it holds " + read +
          "; rename it",
      in + "/log.ndjson: information: skipped: a Bulk Data client log, not FHIR resources",
  };
  EXPECT_EQ(Lines(c.issues), expected);

  // Named as inputs themselves, files are read by their ending in any case; another
  // compression is an error.
  Collected named;
  ResourceReader r2 = named.MakeReader();
  ASSERT_TRUE(r2.Read(dir / "in" / "b.NDJSON"));
  ASSERT_TRUE(r2.Read(dir / "in" / "d.ndjson.GZ"));
  ASSERT_TRUE(r2.Read(dir / "in" / "e.ndjson.bz2"));
  EXPECT_EQ(named.resources.size(), 2u);
  ASSERT_EQ(named.issues.size(), 1u);
  EXPECT_TRUE(named.issues[0].is_error());
  EXPECT_NE(named.issues[0].message.find(".bz2 files are not read"), std::string::npos);
}

// Symbolic links are followed; a dangling one, a loop (to itself, or back to a directory being
// read) and a second way to something already read are named, never followed for ever.
TEST(ReaderTest, SymbolicLinksAreFollowedAndLoopsNamed) {
  namespace fs = std::filesystem;
  TempDir dir;
  const std::string patient = "{\"resourceType\":\"Patient\",\"id\":\"p\"}\n";
  WriteFile(dir / "in" / "sub" / "p.ndjson", patient);
  WriteFile(dir / "elsewhere" / "q.ndjson", "{\"resourceType\":\"Patient\",\"id\":\"q\"}\n");
  fs::create_directory_symlink("..", dir / "in" / "sub" / "up");
  fs::create_symlink("self.ndjson", dir / "in" / "self.ndjson");
  fs::create_symlink("missing.ndjson", dir / "in" / "dangling.ndjson");
  fs::create_directory_symlink(dir / "in" / "sub", dir / "in" / "alias");
  fs::create_symlink(dir / "in" / "sub" / "p.ndjson", dir / "in" / "link.ndjson");
  fs::create_directory_symlink(dir / "elsewhere", dir / "in" / "other");
  Collected c;
  ResourceReader r = c.MakeReader();
  ASSERT_TRUE(r.Read(dir / "in"));
  ASSERT_EQ(c.resources.size(), 2u);  // p once, and q through the link to elsewhere
  EXPECT_EQ(c.resources[0]["id"].str(), "p");
  EXPECT_EQ(c.resources[1]["id"].str(), "q");
  std::string in = (dir / "in").string();
  std::vector<std::string> expected = {
      in + "/dangling.ndjson: warning: not read: a dangling symbolic link (its target "
           "missing.ndjson does not exist)",
      in + "/link.ndjson: information: skipped: the same file as " + in +
          "/alias/p.ndjson, already read",
      in + "/self.ndjson: warning: not read: a symbolic link loop (the link leads back to "
           "itself)",
      in + "/sub: information: skipped: the same directory as " + in + "/alias, already read",
  };
  // alias/up leads back to `in` itself, which is being read.
  expected.insert(expected.begin(), in +
                                        "/alias/up: warning: not read: a symbolic link loop (it "
                                        "leads back to " +
                                        in + ", which is being read)");
  EXPECT_EQ(Lines(c.issues), expected);
  EXPECT_EQ(r.counts().skipped, 3u);

  // As inputs themselves: an error that stops before reading, saying what is wrong.
  auto dangling = r.Read(dir / "in" / "dangling.ndjson");
  ASSERT_FALSE(dangling);
  EXPECT_EQ(dangling.error().message,
            in + "/dangling.ndjson: dangling symbolic link (its target missing.ndjson does not "
                 "exist)");
  auto loop = CheckInputPath(dir / "in" / "self.ndjson");
  ASSERT_FALSE(loop);
  EXPECT_NE(loop.error().message.find("symbolic link loop"), std::string::npos);
}

// Runs `body` as the unprivileged user nobody when the tests run as root (CI), where chmod 000
// does not keep anything from being read; `body` returns whether its checks held.
::testing::AssertionResult AsUnprivilegedUser(const std::function<bool()>& body) {
  if (::geteuid() != 0) {
    return body() ? ::testing::AssertionSuccess() : ::testing::AssertionFailure();
  }
  pid_t pid = ::fork();
  if (pid < 0) return ::testing::AssertionFailure() << "fork failed";
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(2);
    _exit(body() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "as user nobody: exit status " << WEXITSTATUS(status);
}

TEST(ReaderTest, ADirectoryThatCannotBeListedIsAnError) {
  TempDir dir;
  const std::string patient = "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n";
  WriteFile(dir / "in" / "a.ndjson", patient);
  WriteFile(dir / "in" / "locked" / "b.ndjson", patient);
  std::filesystem::permissions(dir / "in" / "locked", std::filesystem::perms::none);
  std::string in = (dir / "in").string();
  EXPECT_TRUE(AsUnprivilegedUser([&] {
    Collected c;
    ResourceReader r = c.MakeReader();
    bool ok = r.Read(dir / "in") && c.resources.size() == 1 && c.issues.size() == 1 &&
              FormatIssue(c.issues[0]) == in + "/locked: cannot list directory: Permission "
                                               "denied; nothing in it was read" &&
              r.counts().skipped == 1;
    auto top = CheckInputPath(dir / "in" / "locked");
    ok = ok && !top &&
         top.error().message == in + "/locked: cannot list directory: Permission "
                                     "denied";
    for (const Issue& i : c.issues) std::cerr << FormatIssue(i) << "\n";
    return ok;
  }));
  std::filesystem::permissions(dir / "in" / "locked", std::filesystem::perms::owner_all);
}

TEST(ReaderTest, MissingPathIsAnError) {
  Collected c;
  ResourceReader r = c.MakeReader();
  auto st = r.Read("/nonexistent/ccm/input.ndjson");
  ASSERT_FALSE(st);
  EXPECT_TRUE(st.error().is(Errc::kNotFound));
}

TEST(ReaderTest, TopLevelNonObjectAndEmptyFile) {
  Collected c;
  ResourceReader r = c.MakeReader();
  r.ReadJsonText("[{\"resourceType\":\"Patient\"}]", "arr.json");
  r.ReadJsonText("", "empty.json");
  EXPECT_TRUE(c.resources.empty());
  ASSERT_EQ(c.issues.size(), 2u);
  EXPECT_NE(c.issues[0].message.find("top level"), std::string::npos);
  EXPECT_NE(c.issues[1].message.find("empty file"), std::string::npos);
}

}  // namespace
}  // namespace ccm::fhir
