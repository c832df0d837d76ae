// Runs the real build/ccm-gateway binary as a user would.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fhir/json.h"
#include "fhir/validate.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::BinaryPath;
using ccm::testing::SharedData;
using ccm::testing::SourceDir;
using ccm::testing::TempDir;

using RunResult = ccm::testing::GatewayRun;

RunResult RunGateway(const std::string& args) {
  return ccm::testing::RunGatewayBinary(args, /*separate_stderr=*/false);
}

TEST(CliTest, CheckOnBundledSamplesSucceeds) {
  auto s = SourceDir() / "samples";
  RunResult r = RunGateway("check --input " + (s / "synthea-10pt").string() + " " +
                           (s / "synthea-g10-2pt").string() + " " + (s / "activity").string());
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Encounter"), std::string::npos);
  EXPECT_NE(r.out.find(" 0 skipped"), std::string::npos) << r.out;
}

TEST(CliTest, CheckReportsEveryProblemWithFileAndLine) {
  TempDir dir;
  auto outcome = dir / "outcome.json";
  RunResult r = RunGateway("check --input " + (SharedData() / "fhir/validator-cases").string() +
                           " --outcome " + outcome.string());
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("test-ndjson.ndjson:3: Encounter.period"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("json-comma-bad-2.json:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Encounter.status"), std::string::npos) << r.out;
  auto oo = fhir::json::Parse(ccm::testing::ReadFile(outcome));
  ASSERT_TRUE(oo);
  EXPECT_EQ((*oo)["resourceType"].str(), "OperationOutcome");
  EXPECT_GT((*oo)["issue"].size(), 5u);
  EXPECT_FALSE(fhir::Validate(*oo).has_errors());
}

TEST(CliTest, UsageAndFatalErrorsHaveDistinctStatuses) {
  RunResult unknown = RunGateway("check --inptu x");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.out.find("unknown option --inptu"), std::string::npos) << unknown.out;
  RunResult no_input = RunGateway("check");
  EXPECT_EQ(no_input.status, 2);
  EXPECT_NE(no_input.out.find("--input"), std::string::npos);
  RunResult missing = RunGateway("check --input /nonexistent/ccm");
  EXPECT_EQ(missing.status, 3);
  EXPECT_NE(missing.out.find("/nonexistent/ccm: no such file or directory"), std::string::npos);
  RunResult bad_month = RunGateway("generate-activity --input x --month 2026-13 --out y");
  EXPECT_EQ(bad_month.status, 2);
  EXPECT_EQ(RunGateway("nonsense").status, 2);
  EXPECT_EQ(RunGateway("help").status, 0);
}

TEST(CliTest, StrictStopsEarly) {
  RunResult r =
      RunGateway("check --strict --input " + (SharedData() / "fhir/validator-cases").string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("stopped at the first error"), std::string::npos) << r.out;
}

TEST(CliTest, IngestPrintsPerPatientTable) {
  RunResult r = RunGateway("ingest --input " + (SourceDir() / "samples").string());
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Patient/e91975f5-9445-c11f-cabf-c3c6dae161f2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("15 patient(s)"), std::string::npos) << r.out;
}

TEST(CliTest, CheckAndIngestNameWhatIsNotAResource) {
  TempDir dir;
  ccm::testing::WriteFile(dir / "in" / "x.ndjson",
                          "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n"
                          "{\"resourceType\":\"patient\",\"id\":\"b\"}\n"
                          "{\"patient\":\"Patient/a\",\"month\":\"2026-10\"}\n");
  std::string in = (dir / "in").string();
  for (const char* command : {"check", "ingest"}) {
    RunResult r = RunGateway(std::string(command) + " --input " + in);
    EXPECT_EQ(r.status, 1) << command << "\n" << r.out;
    EXPECT_NE(r.out.find(in + "/x.ndjson:2: resourceType: \"patient\" is not an R4 resource type "
                              "(type names are case-sensitive); did you mean Patient?"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find(in + "/x.ndjson:3: resourceType: missing: this looks like a ccm-gateway "
                              "report record"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("1 resource(s) read, 2 skipped"), std::string::npos) << r.out;
  }
}

// The binary names every file and directory it does not read; what may hold data makes the exit
// status 1, notes (a README) do not. Link loops end.
TEST(CliTest, CheckAndEvaluateNameEveryFileTheyDoNotRead) {
  namespace fs = std::filesystem;
  TempDir dir;
  std::string patient = "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n";
  ccm::testing::WriteFile(dir / "ok" / "Patient.ndjson", patient);
  ccm::testing::WriteFile(dir / "ok" / "README.md", "notes\n");
  RunResult ok = RunGateway("check --input " + (dir / "ok").string());
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_NE(ok.out.find((dir / "ok" / "README.md").string() +
                        ": information: skipped: not a FHIR file by its name"),
            std::string::npos)
      << ok.out;

  ccm::testing::WriteFile(dir / "in" / "Patient.ndjson", patient);
  ccm::testing::WriteFile(dir / "in" / "Encounter.NDJSON", patient);
  ccm::testing::WriteFile(dir / "in" / "Condition.ndjson.bz2", "BZh9");
  fs::create_symlink("loop", dir / "in" / "loop");
  fs::create_directory_symlink(".", dir / "in" / "back");
  std::string in = (dir / "in").string();
  for (const std::string& command :
       {"check --input " + in, "evaluate --month 2026-10 --format csv --input " + in}) {
    RunResult r = RunGateway(command);
    EXPECT_EQ(r.status, 1) << command << "\n" << r.out;
    for (const std::string& line : {
             in + "/Encounter.NDJSON: warning: not read: endings are case-sensitive; rename it to "
                  "Encounter.ndjson to read it",
             in + "/Condition.ndjson.bz2: warning: not read: .bz2 files are not read",
             in + "/loop: warning: not read: a symbolic link loop",
             in + "/back: warning: not read: a symbolic link loop (it leads back to " + in,
         }) {
      EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
    }
  }
}

// Runs a shell command line (the binary with a shell around it: limits, redirections); `out` has
// what it writes to stderr, and to stdout unless the command line sends that elsewhere.
RunResult RunShell(const std::string& command) {
  RunResult r;
  std::FILE* p = ::popen(("exec 2>&1; " + command).c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::vector<std::string> DirectoryNames(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// An output that is one of the inputs, by any path, is refused before anything is read or
// written.
TEST(CliTest, AnOutputNamingAnInputIsRefusedBeforeAnythingIsWritten) {
  namespace fs = std::filesystem;
  TempDir dir;
  std::string data =
      ccm::testing::ReadFile(SourceDir() / "samples" / "activity" / "Encounter.ccm.ndjson");
  ccm::testing::WriteFile(dir / "in" / "Encounter.ndjson", data);
  fs::create_symlink(dir / "in" / "Encounter.ndjson", dir / "link.ndjson");
  fs::create_hard_link(dir / "in" / "Encounter.ndjson", dir / "hard.ndjson");
  std::string in = (dir / "in").string(), file = (dir / "in" / "Encounter.ndjson").string();
  const std::string evaluate = "evaluate --month 2026-10 --input ";
  struct Case {
    std::string args, expected;
  };
  const Case cases[] = {
      {evaluate + file + " --out " + file, "this is the input"},
      {evaluate + file + " --out " + in + "/../in/./Encounter.ndjson", "this is the input"},
      {evaluate + (dir / "link.ndjson").string() + " --out " + file, "this is the input"},
      {evaluate + file + " --out " + (dir / "link.ndjson").string(), "this is the input"},
      {evaluate + file + " --out " + (dir / "hard.ndjson").string(), "this is the input"},
      {evaluate + in + " --out " + in + "/report.ndjson", "inside the input directory"},
      {"check --input " + file + " --outcome " + (dir / "link.ndjson").string(),
       "this is the input"},
      {"check --input " + in + " --outcome " + in + "/outcome.json", "inside the input directory"},
  };
  for (const Case& c : cases) {
    RunResult r = RunGateway(c.args);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.expected), std::string::npos) << c.args << "\n" << r.out;
    EXPECT_EQ(r.out.find("evaluated "), std::string::npos) << "nothing was read: " << r.out;
    EXPECT_EQ(ccm::testing::ReadFile(dir / "in" / "Encounter.ndjson"), data);
    EXPECT_EQ(DirectoryNames(dir / "in"), std::vector<std::string>{"Encounter.ndjson"});
  }
  // A report beside the input, not among it, is fine.
  RunResult fine = RunGateway(evaluate + in + " --out " + (dir / "report.ndjson").string());
  EXPECT_EQ(fine.status, 0) << fine.out;
}

// Write errors on stdout and on every output file are fatal (exit 3) with the OS reason, and an
// output file is either the complete new one or the old one, never a part.
TEST(CliTest, WriteErrorsAreFatalWithTheReasonAndLeaveNoPartialFile) {
  TempDir dir;
  std::string samples = (SourceDir() / "samples").string();
  std::string binary = BinaryPath().string();
  for (const std::string& args : {"evaluate --month 2026-10 --format ndjson --input " + samples,
                                  "check --input " + samples, "ingest --input " + samples}) {
    RunResult r = RunShell(binary + " " + args + " >/dev/full");
    EXPECT_EQ(r.status, 3) << args << "\n" << r.out;
    EXPECT_NE(r.out.find("stdout: No space left on device"), std::string::npos) << r.out;
  }
  RunResult dev = RunGateway("evaluate --month 2026-10 --input " + samples + " --out /dev/full");
  EXPECT_EQ(dev.status, 3) << dev.out;
  EXPECT_NE(dev.out.find("/dev/full: write failed: No space left on device"), std::string::npos)
      << dev.out;
  RunResult dev2 = RunGateway("check --input " + samples + " --outcome /dev/full");
  EXPECT_EQ(dev2.status, 3) << dev2.out;
  EXPECT_NE(dev2.out.find("No space left on device"), std::string::npos) << dev2.out;

  // A file that cannot grow past 1 KiB (ulimit -f; SIGXFSZ ignored, so write() fails with
  // EFBIG): the old file stays as it was and no temporary file is left behind.
  ccm::testing::WriteFile(dir / "out" / "report.ndjson", "old report\n");
  ccm::testing::WriteFile(dir / "out" / "outcome.json", "old outcome\n");
  for (const std::string& args :
       {"evaluate --month 2026-10 --input " + samples + " --out " +
            (dir / "out" / "report.ndjson").string(),
        "check --input " + SharedData().string() + "/fhir/validator-cases --outcome " +
            (dir / "out" / "outcome.json").string()}) {
    RunResult r = RunShell("trap '' XFSZ; ulimit -f 2; exec " + binary + " " + args);
    EXPECT_EQ(r.status, 3) << args << "\n" << r.out;
    EXPECT_NE(r.out.find("write failed (nothing was replaced): File too large"), std::string::npos)
        << r.out;
  }
  EXPECT_EQ(ccm::testing::ReadFile(dir / "out" / "report.ndjson"), "old report\n");
  EXPECT_EQ(ccm::testing::ReadFile(dir / "out" / "outcome.json"), "old outcome\n");
  EXPECT_EQ(DirectoryNames(dir / "out"),
            (std::vector<std::string>{"outcome.json", "report.ndjson"}));
  // A directory that does not exist.
  RunResult missing = RunGateway("check --input " + samples + " --outcome " +
                                 (dir / "nowhere" / "o.json").string());
  EXPECT_EQ(missing.status, 3) << missing.out;
  EXPECT_NE(missing.out.find("cannot create it: No such file or directory"), std::string::npos)
      << missing.out;
}

}  // namespace
}  // namespace ccm::gateway
