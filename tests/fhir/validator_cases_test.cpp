// Validates the shared test data against Validate():
// - validator-cases/ (HL7 fhir-test-cases): each case's outcome is compared with the Java
//   validator's expected OperationOutcome (outcomes/R4.<name>-base.json or inline in the manifest);
// - spec-r4-examples/ and the two Synthea exports must produce no errors (warnings are listed).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fhir/issues.h"
#include "fhir/json.h"
#include "fhir/r4_model.h"
#include "fhir/validate.h"
#include "test_util.h"

namespace ccm::fhir {
namespace {

namespace fs = std::filesystem;

const fs::path kSharedFhir = fs::path(CCM_SHARED_DATA) / "fhir";

using ccm::testing::ReadFile;

struct Tally {
  std::size_t resources = 0;
  std::vector<std::string> errors;
  std::map<std::string, int> warnings;  // "path-without-indices: message" -> count
};

std::string StripIndices(const std::string& path) {
  std::string out;
  bool in_index = false;
  for (char c : path) {
    if (c == '[') in_index = true;
    if (!in_index) out.push_back(c);
    if (c == ']') in_index = false;
  }
  return out;
}

void ValidateInto(const std::string& text, const std::string& where, Tally& tally) {
  auto v = json::Parse(text);
  if (!v) {
    tally.errors.push_back(where + ": " + v.error().message);
    return;
  }
  ++tally.resources;
  for (const Issue& i : Validate(*v)) {
    if (i.is_error()) {
      tally.errors.push_back(where + ": " + i.path + ": " + i.message);
    } else {
      ++tally.warnings[StripIndices(i.path) + ": " + i.message];
    }
  }
}

void ValidateNdjson(const fs::path& file, Tally& tally) {
  std::istringstream in(ReadFile(file));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ValidateInto(line, file.filename().string() + ":" + std::to_string(n), tally);
  }
}

std::string Dump(const Tally& t) {
  std::string out;
  for (const auto& e : t.errors) out += "  error " + e + "\n";
  for (const auto& [w, n] : t.warnings) out += "  warning x" + std::to_string(n) + " " + w + "\n";
  return out;
}

// ---------------------------------------------------------------------------------------------
// validator-cases

const fs::path kCases = kSharedFhir / "validator-cases";

json::Value ParseFile(const fs::path& p) {
  auto v = json::Parse(ReadFile(p));
  EXPECT_TRUE(v) << p << ": " << (v ? "" : v.error().message);
  return v ? *v : json::Value();
}

// Removes `/*...*/` comments the Java validator puts into expressions.
std::string StripComments(std::string_view s) {
  std::string out;
  while (!s.empty()) {
    std::size_t open = s.find("/*");
    out.append(s.substr(0, open));
    if (open == std::string_view::npos) break;
    std::size_t close = s.find("*/", open);
    if (close == std::string_view::npos) break;
    s.remove_prefix(close + 2);
  }
  return out;
}

struct JavaError {
  std::string expression;  // first expression, comments removed
  std::string text;
  std::size_t line = 0;  // from diagnostics "[line,col]" or "at Line N", 0 if unknown
};

// The Java validator's error-level issues, minus those that came from a terminology server (they
// carry the operationoutcome-issue-server extension: display-name checks against tx.fhir.org that
// an offline validator cannot make), with a `not-found` + `code-invalid` pair on one expression
// (its two reports of one bad required code) counted once.
std::vector<JavaError> JavaErrors(const json::Value& oo) {
  std::vector<JavaError> out;
  std::vector<std::string> code_invalid_at;
  for (const json::Value& issue : oo["issue"].array()) {
    std::string_view sev = issue["severity"].str();
    if (sev != "error" && sev != "fatal") continue;
    bool from_tx = false;
    for (const json::Value& ext : issue["extension"].array()) {
      if (ext["url"].str() ==
          "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-server") {
        from_tx = true;
      }
    }
    if (from_tx) continue;
    JavaError e;
    e.expression = StripComments(issue["expression"][std::size_t{0}].str());
    e.text = std::string(issue["details"]["text"].str());
    std::string_view diag = issue["diagnostics"].str();
    if (!diag.empty() && diag[0] == '[') e.line = std::stoul(std::string(diag.substr(1)));
    if (auto at = e.text.find("at Line "); at != std::string::npos) {
      e.line = std::stoul(e.text.substr(at + 8));
    }
    if (issue["code"].str() == "not-found" &&
        std::any_of(oo["issue"].array().begin(), oo["issue"].array().end(),
                    [&](const json::Value& o) {
                      return o["code"].str() == "code-invalid" &&
                             StripComments(o["expression"][std::size_t{0}].str()) == e.expression;
                    })) {
      continue;
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Issue> Errors(const IssueList& issues) {
  std::vector<Issue> out;
  for (const Issue& i : issues) {
    if (i.is_error()) out.push_back(i);
  }
  return out;
}

std::string Describe(const std::vector<Issue>& issues) {
  std::string out;
  for (const Issue& i : issues) out += "  " + FormatIssue(i) + "\n";
  return out;
}

struct ResourceCase {
  const char* name;  // manifest test name
  const char* file;
  // Our error paths, in order; the Java expressions must be prefixes of these (indices ignored:
  // for bundle-duplicate-id the Java validator reports both issues at Bundle.entry[0]).
  std::vector<std::string> paths;
  std::vector<std::string> message_fragments;  // one per path
};

TEST(ValidatorCasesTest, ManifestListsTheCasesWeRun) {
  json::Value manifest = ParseFile(kCases / "manifest-subset.json");
  // Every case of the manifest is run by one of the tests below.
  const std::vector<std::string_view> covered = {"synthea",
                                                 "care-plan",
                                                 "us-cond",
                                                 "contained-resource-bad-id",
                                                 "encounter-period",
                                                 "test-ndjson",
                                                 "json-good",
                                                 "json-comma-bad-1",
                                                 "json-comma-bad-2",
                                                 "json-no-quotes-1",
                                                 "json-no-quotes-2",
                                                 "json-comments-1-no",
                                                 "json-comments-2-no",
                                                 "bad-json-close",
                                                 "bad-json-close-2",
                                                 "bad-json-close-3",
                                                 "json-prop-key",
                                                 "bundle-duplicate-id",
                                                 "bundle-id-1",
                                                 "bundle-id-2",
                                                 "bundle-id-3",
                                                 "bundle-id-4",
                                                 "bundle-id-5"};
  EXPECT_EQ(manifest["test-cases"].size(), covered.size());
  for (const json::Value& c : manifest["test-cases"].array()) {
    EXPECT_TRUE(fs::exists(kCases / std::string(c["file"].str()))) << c["file"].str();
    EXPECT_NE(std::find(covered.begin(), covered.end(), c["name"].str()), covered.end())
        << c["name"].str();
  }
}

TEST(ValidatorCasesTest, ResourceCasesMatchJavaValidator) {
  const std::vector<ResourceCase> cases = {
      {"json-good", "json-good.json", {}, {}},
      {"care-plan", "care-plan.json", {}, {}},
      {"us-cond", "us-cond.json", {}, {}},
      {"synthea",
       "synthea.json",
       {"Encounter.status", "Encounter.reasonCode"},
       {"'completed' is not in the required value set "
        "http://hl7.org/fhir/ValueSet/encounter-status",
        "must be a JSON Array, not an object"}},
      {"encounter-period", "encounter-period.json", {"Encounter.period"}, {"per-1"}},
      {"contained-resource-bad-id",
       "contained-resource.json",
       {"Condition.contained[0].id", "Condition.contained[0]"},
       {"too long (65 chars)", "dom-3"}},
      {"bundle-duplicate-id",
       "bundle-duplicate-id.json",
       {"Bundle.entry[0].fullUrl", "Bundle.entry[1].fullUrl"},
       {"absolute URL (not 'Patient/1')", "absolute URL (not 'RelatedPerson/1')"}},
      {"bundle-id-1", "bundle-id-search-1.json", {}, {}},
      {"bundle-id-2",
       "bundle-id-search-2.json",
       {"Bundle.link[1]", "Bundle.link[3]"},
       {"'self' can only occur once", "'first' can only occur once"}},
      {"bundle-id-3",
       "bundle-id-search-3.json",
       {"Bundle.entry[0].resource", "Bundle.entry[0].resource"},
       {"Search results must have ids", "(Immunization expecting [Patient])"}},
      {"bundle-id-4",
       "bundle-id-search-4.json",
       {"Bundle.entry[0].resource", "Bundle.entry[1].resource", "Bundle.entry[1].resource"},
       {"This is not an OperationOutcome (Immunization)", "Search results must have ids",
        "(OperationOutcome expecting [Observation, DocumentReference])"}},
      {"bundle-id-5", "bundle-id-collection.json", {}, {}},
  };
  for (const ResourceCase& c : cases) {
    SCOPED_TRACE(c.name);
    IssueList issues = Validate(ParseFile(kCases / c.file));
    std::vector<Issue> errors = Errors(issues);
    ASSERT_EQ(errors.size(), c.paths.size()) << Describe(errors);
    for (std::size_t i = 0; i < errors.size(); ++i) {
      EXPECT_EQ(errors[i].path, c.paths[i]);
      EXPECT_NE(errors[i].message.find(c.message_fragments[i]), std::string::npos)
          << errors[i].message;
    }
    // Same number of errors as the Java validator, at the same places.
    std::vector<JavaError> java =
        JavaErrors(ParseFile(kCases / "outcomes" / (std::string("R4.") + c.name + "-base.json")));
    EXPECT_EQ(java.size(), errors.size()) << Describe(errors);
    for (const JavaError& j : java) {
      bool found = std::any_of(errors.begin(), errors.end(), [&](const Issue& e) {
        return StripIndices(e.path).rfind(StripIndices(j.expression), 0) == 0;
      });
      EXPECT_TRUE(found) << "Java error at " << j.expression << " (" << j.text
                         << ") has no counterpart:\n"
                         << Describe(errors);
    }
  }
}

TEST(ValidatorCasesTest, SyntheaCaseCodesAreTheRightKind) {
  std::vector<Issue> errors = Errors(Validate(ParseFile(kCases / "synthea.json")));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].code, IssueCode::kCodeInvalid);
  EXPECT_EQ(errors[1].code, IssueCode::kStructure);
}

TEST(ValidatorCasesTest, NotAResource) {
  // Expected inline in the manifest: "This does not appear to be a FHIR resource".
  std::vector<Issue> errors = Errors(Validate(ParseFile(kCases / "json-prop-key.json")));
  ASSERT_EQ(errors.size(), 1u) << Describe(errors);
  EXPECT_EQ(errors[0].severity, Severity::kFatal);
  EXPECT_NE(errors[0].message.find("does not appear to be a FHIR resource"), std::string::npos);
}

TEST(ValidatorCasesTest, JsonSyntaxCasesFailToParseNearTheJavaLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"json-comma-bad-1", "json-comma-bad-1.json"},
      {"json-comma-bad-2", "json-comma-bad-2.json"},
      {"json-no-quotes-1", "json-no-quotes-1.json"},
      {"json-no-quotes-2", "json-no-quotes-2.json"},
      {"json-comments-1-no", "json-comments-1.json"},
      {"json-comments-2-no", "json-comments-2.json"},
      {"bad-json-close", "bad-json-close-1.json"},
      {"bad-json-close-2", "bad-json-close-2.json"},
      {"bad-json-close-3", "bad-json-close-3.json"},
  };
  for (const auto& [name, file] : cases) {
    SCOPED_TRACE(name);
    json::ParseErrorInfo info;
    auto v = json::Parse(ReadFile(kCases / file), {}, &info);
    ASSERT_FALSE(v);
    EXPECT_TRUE(v.error().is(Errc::kParseError));
    std::vector<JavaError> java =
        JavaErrors(ParseFile(kCases / "outcomes" / (std::string("R4.") + name + "-base.json")));
    ASSERT_FALSE(java.empty());
    // We stop at the first problem; the Java parser reports it on the same line, or (for a
    // trailing comma) on the line of the comma where we see the closing bracket on the next one.
    std::size_t java_line = java.front().line;
    EXPECT_GE(info.line, java_line) << v.error().message;
    EXPECT_LE(info.line, java_line + 1) << v.error().message;
  }
}

TEST(ValidatorCasesTest, NdjsonOnlyTheEncounterFailsPer1) {
  std::istringstream in(ReadFile(kCases / "test-ndjson.ndjson"));
  std::string line;
  int n = 0, resources = 0, blank = 0;
  std::vector<std::pair<int, Issue>> errors;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      ++blank;
      continue;
    }
    auto v = json::Parse(line);
    ASSERT_TRUE(v) << "line " << n << ": " << v.error().message;
    ++resources;
    for (const Issue& i : Validate(*v)) {
      if (i.is_error()) errors.emplace_back(n, i);
    }
  }
  EXPECT_EQ(resources, 2);
  EXPECT_EQ(blank, 1);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].first, 3);
  EXPECT_EQ(errors[0].second.path, "Encounter.period");
  EXPECT_EQ(errors[0].second.code, IssueCode::kInvariant);
  EXPECT_NE(errors[0].second.message.find("per-1"), std::string::npos);
  std::vector<JavaError> java = JavaErrors(ParseFile(kCases / "outcomes/R4.test-ndjson-base.json"));
  ASSERT_EQ(java.size(), 1u);
  EXPECT_EQ(java[0].expression, "Encounter.period");
}

// ---------------------------------------------------------------------------------------------
// Sample data: no errors allowed.

TEST(SampleDataValidateTest, SpecR4ExamplesHaveNoErrors) {
  Tally t;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kSharedFhir / "spec-r4-examples")) {
    if (e.path().extension() == ".json" && e.path().filename().string()[0] != '_') {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) ValidateInto(ReadFile(f), f.filename().string(), t);
  EXPECT_EQ(t.resources, 89u);
  EXPECT_TRUE(t.errors.empty()) << Dump(t);
  // The only warning: Bundle-bundle-response.json answers a GET search with an (empty) searchset
  // Bundle that has no self link. Servers accept it; the HL7 validator warns likewise.
  const std::map<std::string, int> expected_warnings = {
      {"Bundle.entry.resource: SearchSet Bundles should have a self link that specifies what the "
       "search was",
       1}};
  EXPECT_EQ(t.warnings, expected_warnings) << Dump(t);
}

TEST(SampleDataValidateTest, SyntheaBulkHasNoErrors) {
  Tally t;
  for (const char* f : {"Patient", "Condition", "Encounter", "Procedure"}) {
    ValidateNdjson(kSharedFhir / "synthea-bulk-10pt" / (std::string(f) + ".000.ndjson"), t);
  }
  EXPECT_EQ(t.resources, 13u + 555u + 1215u + 2056u);
  EXPECT_TRUE(t.errors.empty()) << Dump(t);
  EXPECT_TRUE(t.warnings.empty()) << Dump(t);
}

TEST(SampleDataValidateTest, SyntheaG10HasNoErrors) {
  Tally t;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kSharedFhir / "synthea-g10-2pt")) {
    if (e.path().extension() == ".ndjson") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) ValidateNdjson(f, t);
  EXPECT_EQ(t.resources, 2u + 42u + 189u + 26u + 40u + 26u + 1u);
  EXPECT_TRUE(t.errors.empty()) << Dump(t);
  EXPECT_TRUE(t.warnings.empty()) << Dump(t);
}

}  // namespace
}  // namespace ccm::fhir
