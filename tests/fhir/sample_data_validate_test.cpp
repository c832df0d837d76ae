// Validates the shared sample data: the official R4 examples and two Synthea exports must produce no
// errors. Warnings are allowed but every distinct one is listed here and checked, so that a change in
// what the validator reports is noticed.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fhir/json.h"
#include "fhir/validate.h"

namespace ccm::fhir {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(CCM_SHARED_DATA) / "fhir";

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

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

TEST(SampleDataValidateTest, SpecR4ExamplesHaveNoErrors) {
  Tally t;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kData / "spec-r4-examples")) {
    if (e.path().extension() == ".json" && e.path().filename().string()[0] != '_') {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) ValidateInto(ReadFile(f), f.filename().string(), t);
  EXPECT_EQ(t.resources, 89u);
  EXPECT_TRUE(t.errors.empty()) << Dump(t);
  std::cout << Dump(t);
}

TEST(SampleDataValidateTest, SyntheaBulkHasNoErrors) {
  Tally t;
  for (const char* f : {"Patient", "Condition", "Encounter", "Procedure"}) {
    ValidateNdjson(kData / "synthea-bulk-10pt" / (std::string(f) + ".000.ndjson"), t);
  }
  EXPECT_EQ(t.resources, 13u + 555u + 1215u + 2056u);
  EXPECT_TRUE(t.errors.empty()) << Dump(t);
  std::cout << Dump(t);
}

TEST(SampleDataValidateTest, SyntheaG10HasNoErrors) {
  Tally t;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kData / "synthea-g10-2pt")) {
    if (e.path().extension() == ".ndjson") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) ValidateNdjson(f, t);
  EXPECT_EQ(t.resources, 2u + 42u + 189u + 26u + 40u + 26u + 1u);
  EXPECT_TRUE(t.errors.empty()) << Dump(t);
  std::cout << Dump(t);
}

}  // namespace
}  // namespace ccm::fhir
