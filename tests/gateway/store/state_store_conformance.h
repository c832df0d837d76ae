// The conformance suite of the state store (gateway/store/state_store.h): what every backend must
// do, whatever keeps the data. A backend joins with one line in its own test file, e.g.
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StateStoreConformance,
//                            ::testing::Values(StoreBackend{"sqlite", OpenSqliteIn}),
//                            BackendName);
//
// The cases are in state_store_conformance_test.cpp; what is particular to one backend (files,
// migrations, journal modes) stays in that backend's own tests.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gateway/store/state_store.h"
#include "test_util.h"

namespace ccm::gateway::store_testing {

struct StoreBackend {
  std::string name;
  // Opens the store kept under `dir` (an empty directory the first time). Opening it again with
  // the same `dir` gives back the same data: that is how the suite checks durability.
  std::function<Result<std::unique_ptr<StateStore>>(const std::filesystem::path& dir)> open;
};

inline std::string BackendName(const ::testing::TestParamInfo<StoreBackend>& info) {
  return info.param.name;
}

class StateStoreConformance : public ::testing::TestWithParam<StoreBackend> {
 protected:
  // The store under this test's directory, opened (again) by the backend; fails the test and
  // returns nullptr when it cannot be opened.
  std::unique_ptr<StateStore> Open() {
    auto store = GetParam().open(dir_.path());
    if (!store) {
      ADD_FAILURE() << GetParam().name << ": " << store.error().message;
      return nullptr;
    }
    return std::move(*store);
  }
  ccm::testing::TempDir dir_;
};

inline VersionStamp Stamp(std::string v, std::string lu = "") {
  VersionStamp s;
  s.version_id = std::move(v);
  if (!lu.empty()) s.last_updated = fhir::FhirDateTime::ParseInstant(lu)->Earliest();
  return s;
}

// "source|Type/id|json" of every stored resource (of `source` when given), sorted: the store
// promises no order.
inline std::vector<std::string> AllResources(StateStore& store, std::string_view source = "") {
  std::vector<std::string> out;
  auto each = [&](auto src, auto type, auto id, auto json) {
    out.push_back(fmt::format("{}|{}/{}|{}", src, type, id, json));
    return true;
  };
  auto s = source.empty() ? store.ForEachResource(each) : store.ForEachResourceOf(source, each);
  EXPECT_TRUE(s) << s.error().message;
  std::sort(out.begin(), out.end());
  return out;
}

// A plain CCM charge for `patient` in 2026-10.
inline LedgerRow PlainEntry(std::string patient, std::string month = "2026-10") {
  LedgerRow r;
  r.patient = std::move(patient);
  r.month = std::move(month);
  r.family = "care-management";
  r.kind = LedgerKind::kCharge;
  r.program = "CCM";
  r.lines_json = R"([{"code":"99490","units":1,"amount":60.49,"encounters":[]}])";
  r.amount_cents = 6049;
  r.evidence_json = "{}";
  r.fingerprint = "fp";
  r.run = 1;
  return r;
}

}  // namespace ccm::gateway::store_testing
