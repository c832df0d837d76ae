// Fills a state file for bench/serve-run: the NDJSON resources under DIR... stored as source
// SOURCE's, and every type's pull recorded complete, as a full sync would leave them -- without
// the hours a sync of a 10,000-patient practice from the loopback test server takes. What is
// measured is the HTTP service over the store, not the sync (bench/sync-run measures that).
//
//   serve_store_fill STATE SOURCE IDS_FILE DIR...
//
// Writes the ids of the stored Patients to IDS_FILE, one a line (the load generator's targets).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/store/sqlite_state_store.h"

namespace fs = std::filesystem;
using namespace ccm;
using namespace ccm::gateway;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: serve_store_fill STATE SOURCE IDS_FILE DIR...\n");
    return 2;
  }
  const std::string source = argv[2];
  auto store = OpenSqliteStateStore(argv[1]);
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().message.c_str());
    return 1;
  }
  StateStore& s = **store;
  auto run = s.StartRun(RunKind::kSync);
  if (!run) return 1;
  const std::vector<std::string> types = {"Patient", "Condition",    "Encounter",       "CarePlan",
                                          "Consent", "Practitioner", "PractitionerRole"};
  for (const auto& t : types) {
    if (!s.BeginPull(source, t, *run)) return 1;
  }
  std::ofstream ids(argv[3]);
  std::size_t stored = 0;
  std::vector<std::string> batch;
  auto flush = [&]() -> bool {
    Status st = s.InTransaction([&]() -> Status {
      for (const std::string& line : batch) {
        auto v = fhir::json::Parse(line);
        if (!v) continue;
        std::string type((*v)["resourceType"].str()), id((*v)["id"].str());
        VersionStamp stamp{std::string((*v)["meta"]["versionId"].str()), std::nullopt};
        if (auto t = fhir::FhirDateTime::ParseInstant((*v)["meta"]["lastUpdated"].str())) {
          stamp.last_updated = t->Earliest();
        }
        CCM_TRY(s.Upsert(source, type, id, stamp, line, *run));
        if (type == "Patient") ids << id << "\n";
        ++stored;
      }
      return {};
    });
    batch.clear();
    if (!st) std::fprintf(stderr, "%s\n", st.error().message.c_str());
    return static_cast<bool>(st);
  };
  for (int i = 4; i < argc; ++i) {
    for (const auto& e : fs::recursive_directory_iterator(argv[i])) {
      if (!e.is_regular_file() || e.path().extension() != ".ndjson") continue;
      std::ifstream in(e.path());
      for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        batch.push_back(std::move(line));
        if (batch.size() == 2000 && !flush()) return 1;
      }
    }
  }
  if (!flush()) return 1;
  for (const auto& t : types) {
    if (!s.EndPull(source, t, *run, PullState::kComplete, PullMode::kFull, "")) return 1;
  }
  if (!s.FinishRun(*run, RunStatus::kOk, "{}")) return 1;
  std::printf("stored %zu resources\n", stored);
  return 0;
}
