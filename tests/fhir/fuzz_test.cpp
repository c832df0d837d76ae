// Fuzz-style robustness: truncated and mutated versions of the samples go through the parser, the
// reader, the validator and the typed views. Nothing may crash, hang or trip ASan/UBSan; every
// failure must come back as an Error or an Issue. Deterministic (fixed seed) so a failure is
// reproducible.
#include <gtest/gtest.h>

#include <cstdint>

#include "fhir/json.h"
#include "fhir/reader.h"
#include "fhir/resources.h"
#include "fhir/validate.h"
#include "test_util.h"

namespace ccm::fhir {
namespace {

using ccm::testing::ReadFile;
using ccm::testing::SharedData;

class Rng {
 public:
  explicit Rng(std::uint64_t s) : s_(s) {}
  std::uint64_t Next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_;
  }
  std::size_t Below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(Next() % n); }

 private:
  std::uint64_t s_;
};

// Everything downstream of a successful parse; returns the number of issues to keep the work live.
std::size_t Exercise(const json::Value& v) {
  IssueList issues = Validate(v);
  std::string out = json::Serialize(v);
  (void)ToOperationOutcome(issues);
  return issues.size() + out.size();
}

std::string Mutate(std::string s, Rng& rng) {
  static constexpr std::string_view kTokens[] = {"{",    "}",  "[",       "]",      ",",     ":",
                                                 "\"",   "\\", "null",    "-",      "1e999", "\xff",
                                                 "\xc3", "0",  "\"_x\":", "{\"a\":"};
  int edits = 1 + static_cast<int>(rng.Below(4));
  for (int i = 0; i < edits && !s.empty(); ++i) {
    std::size_t pos = rng.Below(s.size());
    switch (rng.Below(4)) {
      case 0:
        s.erase(pos, 1 + rng.Below(8));
        break;
      case 1:
        s.insert(pos, kTokens[rng.Below(std::size(kTokens))]);
        break;
      case 2:
        s[pos] = static_cast<char>(rng.Next() & 0xff);
        break;
      default: {
        // Swap a value's type by splicing in another part of the same text.
        std::size_t from = rng.Below(s.size());
        s.insert(pos, s.substr(from, rng.Below(40)));
      }
    }
  }
  return s;
}

TEST(FuzzTest, TruncatedAndMutatedNdjsonLinesNeverCrash) {
  std::vector<std::string> lines;
  for (const char* f :
       {"fhir/synthea-bulk-10pt/Patient.000.ndjson", "fhir/synthea-g10-2pt/Encounter.ndjson",
        "fhir/synthea-g10-2pt/CarePlan.ndjson", "fhir/synthea-g10-2pt/Condition.ndjson"}) {
    std::string text = ReadFile(SharedData() / f);
    for (std::size_t p = 0, nl; p < text.size(); p = nl + 1) {
      nl = text.find('\n', p);
      if (nl == std::string::npos) nl = text.size();
      if (lines.size() < 400) lines.push_back(text.substr(p, nl - p));
    }
  }
  ASSERT_GT(lines.size(), 100u);
  Rng rng(20261123);
  std::size_t parsed = 0, rejected = 0, work = 0;
  for (int round = 0; round < 6000; ++round) {
    const std::string& base = lines[rng.Below(lines.size())];
    std::string input = round % 3 == 0 ? base.substr(0, rng.Below(base.size())) : Mutate(base, rng);
    auto v = json::Parse(input);
    if (!v) {
      ++rejected;
      EXPECT_FALSE(v.error().message.empty());
      continue;
    }
    ++parsed;
    work += Exercise(*v);
  }
  EXPECT_GT(parsed, 100u);  // the mutations must reach the validator, not only the parser
  EXPECT_GT(rejected, 100u);
  EXPECT_GT(work, 0u);
}

TEST(FuzzTest, MutatedBundlesThroughTheStreamingReaderNeverCrash) {
  std::vector<std::string> docs;
  for (const char* f :
       {"fhir/spec-r4-examples/Bundle-bundle-transaction.json",
        "fhir/spec-r4-examples/Bundle-bundle-example.json",
        "fhir/spec-r4-examples/Bundle-bundle-response.json",
        "fhir/spec-r4-examples/CarePlan-f201.json", "fhir/spec-r4-examples/Claim-760151.json"}) {
    docs.push_back(ReadFile(SharedData() / f));
  }
  Rng rng(42);
  std::size_t resources = 0, issues = 0;
  for (int round = 0; round < 1500; ++round) {
    const std::string& base = docs[rng.Below(docs.size())];
    std::string input = round % 4 == 0 ? base.substr(0, rng.Below(base.size())) : Mutate(base, rng);
    ResourceReader reader(
        [&](json::Value&& r, const SourceLocation&) {
          ++resources;
          Exercise(r);
          return true;
        },
        [&](const Issue& i) {
          ++issues;
          EXPECT_FALSE(i.message.empty());
          EXPECT_FALSE(i.location.empty());
          return true;
        });
    if (round % 2 == 0) {
      reader.ReadJsonText(input, "fuzz.json");
    } else {
      reader.ReadNdjsonText(input, "fuzz.ndjson");
    }
  }
  EXPECT_GT(resources, 100u);
  EXPECT_GT(issues, 100u);
}

template <class View>
std::size_t ReadWithEveryShape(const char* example) {
  // Every top-level element of the example replaced by each JSON kind in turn, then read through
  // the typed view and the validator.
  static constexpr const char* kKinds[] = {
      "null", "true", "0",      "-1.50",          "\"x\"",
      "[]",   "{}",   "[1,{}]", "{\"a\":[null]}", "[{\"reference\":7}]"};
  auto doc = json::Parse(ReadFile(SharedData() / "fhir/spec-r4-examples" / example));
  EXPECT_TRUE(doc) << example;
  if (!doc) return 0;
  std::size_t reads = 0;
  for (const json::Member& m : doc->object()) {
    for (const char* k : kKinds) {
      json::Value v = *doc;
      v.set(m.key, json::Parse(k).value());
      IssueList issues;
      View view = View::Read(v, issues);
      (void)view;
      Exercise(v);
      ++reads;
    }
  }
  return reads;
}

TEST(FuzzTest, TypedViewsSurviveWrongShapes) {
  std::size_t reads = 0;
  reads += ReadWithEveryShape<EncounterView>("Encounter-f201.json");
  reads += ReadWithEveryShape<ConditionView>("Condition-f201.json");
  reads += ReadWithEveryShape<CarePlanView>("CarePlan-f201.json");
  reads += ReadWithEveryShape<ConsentView>("Consent-consent-example-notTime.json");
  reads += ReadWithEveryShape<PatientView>("Patient-pat2.json");
  reads += ReadWithEveryShape<ClaimView>("Claim-760151.json");
  reads += ReadWithEveryShape<ChargeItemView>("ChargeItem-example.json");
  reads += ReadWithEveryShape<BundleView>("Bundle-bundle-transaction.json");
  EXPECT_GT(reads, 500u);
}

}  // namespace
}  // namespace ccm::fhir
