// Round-trip fidelity over every sample resource: parse → serialise → parse gives the same tree,
// and compact NDJSON lines come back byte for byte.
#include <gtest/gtest.h>

#include <filesystem>

#include "fhir/json.h"
#include "fhir/reader.h"
#include "test_util.h"

namespace ccm::fhir {
namespace {

using ccm::testing::ReadFile;
using ccm::testing::SharedData;

std::vector<std::filesystem::path> SampleFiles() {
  std::vector<std::filesystem::path> files;
  for (const char* dir :
       {"fhir/synthea-bulk-10pt", "fhir/synthea-g10-2pt", "fhir/spec-r4-examples"}) {
    for (const auto& e : std::filesystem::directory_iterator(SharedData() / dir)) {
      if (FormatOf(e.path()) != FileFormat::kUnknown && e.path().filename() != "log.ndjson") {
        files.push_back(e.path());
      }
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(RoundTripTest, EveryNdjsonLineComesBackByteForByte) {
  std::size_t lines = 0;
  for (const auto& file : SampleFiles()) {
    if (FormatOf(file) != FileFormat::kNdjson) continue;
    std::string text = ReadFile(file);
    std::string_view rest = text;
    while (!rest.empty()) {
      std::size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
      if (line.empty()) continue;
      ++lines;
      auto v = json::Parse(line);
      ASSERT_TRUE(v) << file << ": " << v.error().message;
      ASSERT_EQ(json::Serialize(*v), line) << file << " line " << lines;
    }
  }
  EXPECT_GT(lines, 4000u);
}

TEST(RoundTripTest, EveryJsonExampleKeepsItsTreeThroughCompactAndPrettyForms) {
  std::size_t files = 0;
  for (const auto& file : SampleFiles()) {
    if (FormatOf(file) != FileFormat::kJson) continue;
    auto original = json::Parse(ReadFile(file));
    ASSERT_TRUE(original) << file << ": " << original.error().message;
    auto compact = json::Parse(json::Serialize(*original));
    auto pretty = json::Parse(json::SerializePretty(*original));
    ASSERT_TRUE(compact && pretty) << file;
    EXPECT_EQ(*compact, *original) << file;
    EXPECT_EQ(*pretty, *original) << file;
    ++files;
  }
  EXPECT_GE(files, 89u);
}

TEST(RoundTripTest, EditingOneElementKeepsEverythingElse) {
  // Unknown properties, modifierExtension, primitive extensions, contained resources and decimals
  // with trailing zeros, as an EHR might send them.
  const std::string original =
      R"({"resourceType":"CarePlan","id":"cp1",)"
      R"("meta":{"versionId":"7","extension":[{"url":"http://ehr.example/x","valueDecimal":2.50}]},)"
      R"("contained":[{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"A1c < 7.0"},"subject":{"reference":"Patient/p"}}],)"
      R"("modifierExtension":[{"url":"http://ehr.example/m","valueBoolean":false}],)"
      R"("status":"active","_status":{"extension":[{"url":"http://ehr.example/why","valueString":"signed"}]},)"
      R"("intent":"plan","subject":{"reference":"Patient/p"},"goal":[{"reference":"#g1"}],)"
      R"("vendorSpecific":{"score":1.000,"flags":[true,null,3e2]}})";
  auto v = json::Parse(original);
  ASSERT_TRUE(v);
  v->set("status", json::Value::String("revoked"));
  std::string edited = json::Serialize(*v);
  std::string expected = original;
  expected.replace(expected.find(R"("status":"active")"), 17, R"("status":"revoked")");
  EXPECT_EQ(edited, expected);
}

TEST(RoundTripTest, ResourcesReadFromBundlesSerialiseAsTheyWereWritten) {
  std::size_t n = 0;
  ResourceReader reader(
      [&](json::Value&& r, const SourceLocation& where) {
        auto again = json::Parse(json::Serialize(r));
        EXPECT_TRUE(again && *again == r) << where.ToString();
        ++n;
        return true;
      },
      [](const Issue&) { return true; });
  ASSERT_TRUE(reader.Read(SharedData() / "fhir/spec-r4-examples"));
  EXPECT_GT(n, 89u);
}

}  // namespace
}  // namespace ccm::fhir
