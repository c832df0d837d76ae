// ExtractFactFromLine, the NDJSON fast path, keeps its contract: the same result as parsing the
// line and calling ExtractFact (the reference reading), on every line of the samples and on lines
// made to reach its fall-backs (members out of order or twice, many codings, odd shapes, bad JSON).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "fhir/json.h"
#include "fhir/reader.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ccm/facts.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

const EngineConfig& Config() {
  static const EngineConfig config = [] {
    auto c = DefaultEngineConfig();
    if (!c) throw std::runtime_error(c.error().message);
    return std::move(*c);
  }();
  return config;
}

// Whether the fast path agrees with the reference on `line`; `fact` (when set) is whether a fact
// is expected, to show the line reaches the path it was written for.
::testing::AssertionResult SameAsReference(const std::string& line,
                                           std::optional<bool> fact = std::nullopt) {
  fhir::SourceLocation where{"test.ndjson", 1, ""};
  std::string buffer = line;
  buffer.append(fhir::json::kInsituPadding + 1, '\0');
  std::string scratch;
  Result<Extracted> fast =
      ExtractFactFromLine(buffer.data(), line.size(), where, Config(), &scratch);
  auto tree = fhir::json::Parse(line);
  if (!tree || !tree->is_object()) {
    if (fast) return ::testing::AssertionFailure() << "fast path accepted: " << line;
    return ::testing::AssertionSuccess();
  }
  // The reference refuses what is not a resource (as the reader does before ExtractFact), with
  // the reader's words.
  if (std::string problem = fhir::ResourceTypeProblem(*tree); !problem.empty()) {
    if (fast) return ::testing::AssertionFailure() << "fast path accepted: " << line;
    if (!fast.error().is(Errc::kInvalidResource) || fast.error().message != problem) {
      return ::testing::AssertionFailure()
             << "fast path: " << fast.error().message << "; reference: " << problem;
    }
    return ::testing::AssertionSuccess();
  }
  if (!fast) return ::testing::AssertionFailure() << fast.error().message << ": " << line;
  Extracted slow = ExtractFact(*tree, where, Config());
  auto differ = [&](std::string_view what, const auto& a, const auto& b) {
    return ::testing::AssertionFailure() << what << " differs: fast " << a << ", reference " << b
                                         << "\n  " << line.substr(0, 300);
  };
  if (fast->key != slow.key) return differ("key", fast->key, slow.key);
  if (fast->patient != slow.patient) return differ("patient", fast->patient, slow.patient);
  if (fast->stored.stamp.version_id != slow.stored.stamp.version_id) {
    return differ("versionId", fast->stored.stamp.version_id, slow.stored.stamp.version_id);
  }
  if (fast->stored.stamp.last_updated != slow.stored.stamp.last_updated) {
    return differ("lastUpdated", fast->stored.stamp.last_updated.has_value(),
                  slow.stored.stamp.last_updated.has_value());
  }
  if ((fast->stored.fact != nullptr) != (slow.stored.fact != nullptr)) {
    return differ("fact", fast->stored.fact != nullptr, slow.stored.fact != nullptr);
  }
  std::size_t fast_issues = fast->stored.issues ? fast->stored.issues->list.size() : 0;
  std::size_t slow_issues = slow.stored.issues ? slow.stored.issues->list.size() : 0;
  if (fast_issues != slow_issues) return differ("issues", fast_issues, slow_issues);
  if (fact && *fact != (slow.stored.fact != nullptr)) {
    return ::testing::AssertionFailure() << "the line does not test what it should: fact is "
                                         << (slow.stored.fact != nullptr) << "\n  " << line;
  }
  return ::testing::AssertionSuccess();
}

TEST(ExtractFactFromLineTest, AgreesWithTheReferenceOnEverySampleLine) {
  std::size_t lines = 0, facts = 0;
  for (const auto& input : ccm::testing::SampleInputs()) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(input)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(input)) {
        if (e.path().extension() == ".ndjson") files.push_back(e.path());
      }
    } else if (input.extension() == ".ndjson") {
      files.push_back(input);
    }
    for (const auto& file : files) {
      std::ifstream in(file);
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        ++lines;
        EXPECT_TRUE(SameAsReference(line)) << file;
        auto tree = fhir::json::Parse(line);
        if (tree && ExtractFact(*tree, {}, Config()).stored.fact) ++facts;
      }
    }
  }
  EXPECT_GT(lines, 1000u);
  EXPECT_GT(facts, 100u) << "the samples reach the full reading too";
}

TEST(ExtractFactFromLineTest, AgreesWithTheReferenceOnLinesMadeForItsFallBacks) {
  const std::string cpt = "http://www.ama-assn.org/go/cpt";
  const std::string period =
      R"("period": {"start": "2026-10-02T10:00:00Z", "end": "2026-10-02T10:25:00Z"})";
  auto encounter = [&](const std::string& codes) {
    return fmt::format(
        R"({{"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {{"reference": "Patient/p1"}}, {}, {}}})",
        codes, period);
  };
  // Care-management time coded in type[] or serviceType: read in full.
  EXPECT_TRUE(
      SameAsReference(encounter(fmt::format(
                          R"("type": [{{"coding": [{{"system": "{}", "code": "99490"}}]}}])", cpt)),
                      true));
  EXPECT_TRUE(SameAsReference(
      encounter(fmt::format(R"("serviceType": {{"coding": [{{"system": "{}", "code": "99439"}}]}})",
                            cpt)),
      true));
  // A visit: only the stamp and the patient.
  EXPECT_TRUE(SameAsReference(
      encounter(
          R"("type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}])"),
      false));
  // The activity code after more codings than the skim keeps.
  std::string many;
  for (int i = 0; i < 12; ++i) {
    many += fmt::format(R"({{"system": "http://snomed.info/sct", "code": "{}"}}, )", 100 + i);
  }
  EXPECT_TRUE(SameAsReference(
      encounter(fmt::format(R"("type": [{{"coding": [{}{{"system": "{}", "code": "99491"}}]}}])",
                            many, cpt)),
      true));
  // Shapes that are not the R4 ones: a coding object where an array belongs, type as an object.
  EXPECT_TRUE(SameAsReference(encounter(
      fmt::format(R"("type": [{{"coding": {{"system": "{}", "code": "99490"}}}}])", cpt))));
  EXPECT_TRUE(SameAsReference(encounter(
      fmt::format(R"("type": {{"coding": [{{"system": "{}", "code": "99490"}}]}})", cpt))));
  // A coding nested deeper (an extension's) does not count as the encounter's.
  EXPECT_TRUE(SameAsReference(encounter(fmt::format(
      R"("extension": [{{"url": "x", "valueCodeableConcept": {{"coding": [{{"system": "{}", "code": "99490"}}]}}}}])",
      cpt))));
  // resourceType last, meta with both stamps, a subject that is an absolute URL.
  EXPECT_TRUE(SameAsReference(
      R"({"id": "e2", "meta": {"versionId": "7", "lastUpdated": "2026-10-01T12:00:00.123+02:00"}, "status": "finished", "subject": {"reference": "https://ehr.example.org/fhir/Patient/p2"}, "resourceType": "Encounter"})",
      false));
  // Members twice: the lossless parser decides.
  EXPECT_TRUE(SameAsReference(
      R"({"resourceType": "Encounter", "id": "e3", "id": "e4", "subject": {"reference": "Patient/p1"}})"));
  EXPECT_TRUE(SameAsReference(
      R"({"resourceType": "Condition", "id": "c0", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1", "code": "44054006"}]}, "subject": {"reference": "Patient/p1"}})"));
  // A chronic condition and a CCM consent are read in full; others are not.
  EXPECT_TRUE(SameAsReference(
      R"({"resourceType": "Condition", "id": "c1", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "subject": {"reference": "Patient/p1"}})",
      true));
  EXPECT_TRUE(SameAsReference(
      R"({"resourceType": "Condition", "id": "c2", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "160903007"}]}, "subject": {"reference": "Patient/p1"}})",
      false));
  EXPECT_TRUE(SameAsReference(
      R"({"resourceType": "Consent", "id": "k1", "status": "active", "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]}, "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "patient": {"reference": "Patient/p1"}, "dateTime": "2026-09-01"})",
      true));
  EXPECT_TRUE(SameAsReference(
      R"({"resourceType": "Consent", "id": "k2", "status": "active", "category": [{"coding": [{"system": "http://loinc.org", "code": "64292-6"}]}], "patient": {"reference": "Patient/p1"}})",
      false));
  // No id, a type the engine does not read, escapes in the type name, deep nesting.
  EXPECT_TRUE(SameAsReference(R"({"resourceType": "Encounter", "status": "finished"})"));
  EXPECT_TRUE(SameAsReference(R"({"resourceType": "Procedure", "id": "x1"})"));
  EXPECT_TRUE(SameAsReference(R"({"resourceType": "Encount\u0065r", "id": "e5"})"));
  std::string deep = R"({"resourceType": "Encounter", "id": "e6", "extension": )";
  for (int i = 0; i < 3000; ++i) deep += "[";
  for (int i = 0; i < 3000; ++i) deep += "]";
  deep += "}";
  EXPECT_TRUE(SameAsReference(deep));
  // Objects that are not R4 resources are refused on every path, never dropped as a type the
  // engine ignores: resourceType first as bulk exports write it (the head check), later (the
  // skim), missing, and a report record of evaluate fed back.
  for (const char* not_a_resource :
       {R"({"resourceType":"patient","id":"p1"})", R"({"resourceType":"Procedures","id":"x"})",
        R"({"resourceType":"Encounters","id":"e","subject":{"reference":"Patient/p1"}})",
        R"({"id": "e7", "resourceType": "encounter"})", R"({"id": "x2", "resourceType": "Zebra"})",
        R"({"id": "x3"})", R"({"resourceType": 5, "id": "x4"})",
        R"({"patient":"Patient/p1","month":"2026-10","program":"CCM","blockedBy":[]})"}) {
    EXPECT_TRUE(SameAsReference(not_a_resource)) << not_a_resource;
  }
  // Not resources at all.
  for (const char* bad : {"[1, 2]", "\"text\"", "{\"resourceType\": \"Encounter\", \"id\": }",
                          "{\"resourceType\": \"Encounter\"} {}", "{\"id\": \"\xff\"}"}) {
    EXPECT_TRUE(SameAsReference(bad)) << bad;
  }
}

}  // namespace
}  // namespace ccm::gateway
