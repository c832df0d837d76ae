// Streaming readers for FHIR resources on disk.
//
// Formats (chosen by file name; `.gz` means gzip-compressed and is read transparently):
// - NDJSON (`.ndjson`, `.jsonl`, as written by Bulk Data $export): one resource per line; blank
//   lines are ignored.
// - JSON (`.json`): a single resource, or a Bundle of any type (searchset, collection, transaction,
//   batch, ...) whose `entry[].resource` are read one at a time.
// - Directories: every file with one of those endings (exactly, in lower case), recursively, in
//   sorted path order, following symbolic links. Everything else found is named with the reason
//   it is not read: as a warning (counted as skipped) when it may hold data -- a data ending in
//   another case (`.NDJSON`: rename it), another compression or an archive (`.bz2`, `.zip`), a
//   dangling symbolic link, a link loop (to itself, or back to a directory being read), a FIFO
//   or device, a directory that cannot be listed (an error) -- and as a note (information) when
//   it does not: hidden files and directories, a Bulk Data client's `log.ndjson`, other endings
//   (README.md). A file or directory reached a second time (through a link, or named twice) is
//   noted and not read again.
// - A file named as an input is read whatever it is (a pipe too): NDJSON or JSON by its ending
//   in any case, else JSON; another compression (`.bz2`) is reported and not read.
//
// Memory does not grow with file size: NDJSON holds one line at a time and a Bundle one entry at a
// time (plus entries seen before the Bundle's `resourceType` when that comes late, which is rare).
//
// Every resource is delivered with its SourceLocation (file, line where it starts, and the entry
// index for Bundles). A malformed line or entry is reported as an Issue and skipped; reading
// continues. So is a JSON object that is not a FHIR resource (ResourceTypeProblem: no
// resourceType, or one that is not an R4 type, such as "patient" or "Encounters"), reported at
// path `resourceType` (`Bundle.entry[2].resource.resourceType`). Only failures that stop a whole
// file (it cannot be opened, a Bundle's JSON is broken part-way through) end that file; they are
// still reported as Issues so the caller sees every problem in one list.
//
// Not thread-safe; use one reader per thread.
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fhir/issues.h"
#include "fhir/json.h"
#include "fhir/result.h"

struct gzFile_s;
struct stat;

namespace ccm::fhir {

struct SourceLocation {
  std::string file;
  std::size_t line = 0;  // 1-based line where the resource starts; 0 when unknown
  std::string pointer;   // inside the file, e.g. "Bundle.entry[3].resource"; "" for NDJSON lines

  // "file:line" (plus " Bundle.entry[3].resource" when inside a Bundle)
  std::string ToString() const;
};

struct ReadOptions {
  // A single NDJSON line longer than this is reported and skipped (guards memory).
  std::size_t max_line_bytes = std::size_t{256} << 20;
  json::ParseOptions parse;
  // NDJSON lines are parsed on this many threads (the callbacks still run on the calling thread,
  // in input order). 1 = everything on the calling thread.
  unsigned threads = 1;
};

// What a reader saw, for the end-of-run summary.
struct ReadCounts {
  std::size_t files = 0;
  std::size_t resources = 0;      // delivered to the callback
  std::size_t skipped = 0;        // lines or entries reported and not delivered
  std::size_t files_skipped = 0;  // files and directories found and not read (see above)
};

class ResourceReader {
 public:
  // Called for each resource read. Return false to stop reading (e.g. --strict after an error).
  using ResourceFn = std::function<bool(json::Value&& resource, const SourceLocation& where)>;
  // Called for each problem found (issue.location is set). Return false to stop reading.
  using IssueFn = std::function<bool(const Issue& issue)>;

  ResourceReader(ResourceFn on_resource, IssueFn on_issue, ReadOptions options = {});

  // For callers that reduce each resource to something small: `prepare` runs on the thread that
  // parsed the resource (a worker when options.threads > 1; it must be thread-safe) and the
  // resource is destroyed there; its result reaches `on_prepared` on the calling thread, in input
  // order. Keeping allocation and release of the parsed tree on one thread is what lets the
  // parallel path scale (freeing another thread's memory serialises on the allocator). With
  // options.threads == 1 everything runs on the calling thread, each resource's prepare right
  // before its on_prepared.
  using PrepareFn = std::function<std::any(json::Value&& resource, const SourceLocation& where)>;
  using PreparedFn = std::function<bool(std::any&& prepared, const SourceLocation& where)>;
  ResourceReader(PrepareFn prepare, PreparedFn on_prepared, IssueFn on_issue,
                 ReadOptions options = {});

  // Optional fast path with the prepare constructor: NDJSON lines are not parsed by the reader
  // but handed raw to this function (NUL-terminated at data[size], writable, readable
  // json::kInsituPadding bytes further, on the parsing thread); a value goes to on_prepared, an
  // error is reported as an unreadable line (the message should say what and where, e.g. "invalid
  // JSON: line 1, column 7: ..."). The function must refuse objects that are not resources (as
  // ResourceTypeProblem says) with Errc::kInvalidResource and that text: they are reported at path
  // `resourceType`. Resources in JSON files and Bundles still go through `prepare`.
  // `scratch` is a buffer owned by the calling thread and reused between calls.
  using PrepareLineFn = std::function<Result<std::any>(
      char* data, std::size_t size, const SourceLocation& where, std::string& scratch)>;
  void set_prepare_line(PrepareLineFn f) { prepare_line_ = std::move(f); }

  // Reads a file or a directory. Returns an error only when the path itself cannot be an input
  // (CheckInputPath); per-file problems go to the issue callback. Returns success even when the
  // callbacks asked to stop; check stopped().
  Status Read(const std::filesystem::path& path);

  // Reads NDJSON or JSON text already in memory (used by tests and the HTTP server); `name` is used
  // in locations.
  void ReadNdjsonText(std::string_view text, std::string_view name);
  void ReadJsonText(std::string_view text, std::string_view name);

  const ReadCounts& counts() const noexcept { return counts_; }
  bool stopped() const noexcept { return stopped_; }

 private:
  friend class BundleStreamer;
  struct Ancestor {  // a directory being walked
    std::uint64_t dev, ino;
    std::filesystem::path path;
  };
  void Walk(const std::filesystem::path& dir, std::vector<Ancestor>& ancestors);
  void Visit(const std::filesystem::path& entry, std::vector<Ancestor>& ancestors);
  // Records a file or directory as read; false (with a note) when it was already, by any path.
  bool FirstVisit(const struct stat& st, const std::filesystem::path& path);
  // Names a file or directory that is not read, with the reason.
  void SkipEntry(Severity s, const std::filesystem::path& path, std::string message);
  // `named`: given as an input itself, not found in a directory.
  void ReadFile(const std::filesystem::path& file, bool named);
  void ReadNdjsonFile(const std::filesystem::path& file);
  void ReadJsonFile(const std::filesystem::path& file);
  // Parses (destructively) and hands over one line.
  void NdjsonLine(std::string& line, const std::string& file, std::size_t line_no);
  struct LineOutcome;
  struct LineBatch;
  // data[size] must be writable (it becomes the terminator); the line's bytes are overwritten.
  // `where` names the file; its line is set here (one location per file or block, not one
  // string copy per line).
  LineOutcome ParseLine(char* data, std::size_t size, std::size_t line_no, SourceLocation& where,
                        std::string& scratch) const;
  std::vector<LineOutcome> ParseBatch(LineBatch& batch) const;
  void HandleLine(LineOutcome&& outcome, SourceLocation& where);
  void ReadNdjsonParallel(gzFile_s* gz, const std::string& file);
  void ReportOverlong(const std::string& file, std::size_t line_no);
  void ReportReadFailure(gzFile_s* gz, const std::string& file, std::size_t line_no);
  // Checks the resourceType (ResourceTypeProblem), then hands the resource over.
  void Deliver(json::Value&& resource, SourceLocation where);
  void Hand(json::Value&& resource, const SourceLocation& where);
  void ReportUnreadable(const Error& e, const std::string& file);
  void Report(Severity s, IssueCode c, std::string path, std::string message, std::string location);

  ResourceFn on_resource_;
  PrepareFn prepare_;
  PrepareLineFn prepare_line_;
  PreparedFn on_prepared_;
  IssueFn on_issue_;
  ReadOptions options_;
  ReadCounts counts_;
  bool stopped_ = false;
  std::string scratch_;        // for prepare_line_ on the calling thread
  SourceLocation line_where_;  // of the NDJSON line being read on the calling thread
  // Files and directories read so far (device, inode) -> the path they were read by.
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::string> visited_;
};

// Fails (Errc::kNotFound, Errc::kIo) when `path` cannot be an input: it does not exist, is a
// dangling symbolic link or a link loop, or is a directory that cannot be listed. The message
// starts with the path.
Status CheckInputPath(const std::filesystem::path& path);

// The kind of file `path` names, by its ending.
enum class FileFormat { kNdjson, kJson, kUnknown };
FileFormat FormatOf(const std::filesystem::path& path);

// Why `value` (a JSON object read where a resource belongs) is not a FHIR R4 resource, as the text
// of an issue at `resourceType`: the member is missing (a ccm-gateway report record fed back as
// input is recognised by its `patient` and `month` and said so), not a string, or not an R4
// resource type (with the likely one: "did you mean Patient?"). "" when it is a resource.
std::string ResourceTypeProblem(const json::Value& value);
// The same for a resourceType already read: "" when `type` is an R4 resource type.
std::string ResourceTypeProblem(std::string_view type);

}  // namespace ccm::fhir
