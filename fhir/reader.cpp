#include "fhir/reader.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>
#include <sys/stat.h>
#include <zlib.h>

#include "fhir/bounded_queue.h"
#include "fhir/r4_model.h"

namespace ccm::fhir {
namespace fs = std::filesystem;
namespace {

// Newlines in `text`, found with memchr (vectorised in libc): std::count is a byte loop at -O2, and
// on the calling thread of a parallel read it cost about a tenth of that thread's time.
std::size_t CountNewlines(std::string_view text) {
  std::size_t n = 0;
  const char* p = text.data();
  const char* const end = p + text.size();
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
    if (nl == nullptr) break;
    ++n;
    p = static_cast<const char*>(nl) + 1;
  }
  return n;
}

}  // namespace

namespace {

constexpr std::size_t kChunk = std::size_t{1} << 16;

struct GzCloser {
  void operator()(gzFile_s* f) const noexcept { gzclose(f); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

// gzopen reads plain files transparently as well, so one code path serves `.json` and `.json.gz`.
Result<GzHandle> OpenGz(const fs::path& file) {
  GzHandle h(gzopen(file.c_str(), "rb"));
  if (!h) {
    return MakeError(Errc::kIo,
                     fmt::format("cannot open {}: {}", file.string(), std::strerror(errno)));
  }
  gzbuffer(h.get(), kChunk * 2);
  return h;
}

// zlib reports a truncated gzip stream not through gzread's return value (which is just short, then
// 0) but through gzerror() == Z_BUF_ERROR; see zlib.h, gzread.
bool GzFailed(gzFile_s* f) {
  int code = Z_OK;
  gzerror(f, &code);
  return code != Z_OK && code != Z_STREAM_END;
}

// A gzread that returns -1 for truncated input too.
long GzRead(gzFile_s* f, char* buf, std::size_t cap) {
  int n = gzread(f, buf, static_cast<unsigned>(cap));
  if (n < 0 || (n == 0 && GzFailed(f))) return -1;
  return n;
}

std::string GzErrorText(gzFile_s* f) {
  int code = 0;
  const char* msg = gzerror(f, &code);
  if (code == Z_ERRNO) return std::strerror(errno);
  return msg != nullptr ? msg : "read error";
}

// A RapidJSON input stream over chunks from a fill function, counting lines as it goes so that each
// Bundle entry can be located in the file.
class ChunkStream {
 public:
  using Ch = char;
  // fill(buffer, capacity) returns bytes read, 0 at end, or -1 on error.
  using FillFn = std::function<long(char*, std::size_t)>;

  explicit ChunkStream(FillFn fill) : fill_(std::move(fill)), buf_(kChunk) {}

  Ch Peek() {
    if (pos_ == len_ && !Fill()) return '\0';
    return buf_[pos_];
  }
  Ch Take() {
    if (pos_ == len_ && !Fill()) return '\0';
    Ch c = buf_[pos_++];
    ++count_;
    if (c == '\n') {
      ++line_;
      line_start_ = count_;
    }
    return c;
  }
  std::size_t Tell() const { return count_; }
  // Output functions required by the stream concept; the reader never calls them on an input
  // stream.
  Ch* PutBegin() { return nullptr; }
  void Put(Ch) {}
  void Flush() {}
  std::size_t PutEnd(Ch*) { return 0; }

  std::size_t line() const { return line_; }
  std::size_t column() const { return count_ - line_start_ + 1; }
  bool failed() const { return failed_; }

 private:
  bool Fill() {
    if (eof_) return false;
    long n = fill_(buf_.data(), buf_.size());
    if (n <= 0) {
      eof_ = true;
      failed_ = n < 0;
      return false;
    }
    pos_ = 0;
    len_ = static_cast<std::size_t>(n);
    return true;
  }

  FillFn fill_;
  std::vector<char> buf_;
  std::size_t pos_ = 0;
  std::size_t len_ = 0;
  std::size_t count_ = 0;
  std::size_t line_ = 1;
  std::size_t line_start_ = 0;
  bool eof_ = false;
  bool failed_ = false;
};

std::string Loc(std::string_view file, std::size_t line, std::size_t column = 0) {
  if (line == 0) return std::string(file);
  if (column == 0) return fmt::format("{}:{}", file, line);
  return fmt::format("{}:{}:{}", file, line, column);
}

}  // namespace

// Streams a JSON document: the top-level object is built as a DOM, except the elements of a
// top-level `entry` array of a Bundle, which are built and handed on one at a time (see reader.h).
class BundleStreamer {
 public:
  BundleStreamer(ResourceReader& reader, std::string file, ChunkStream& stream)
      : reader_(reader),
        file_(std::move(file)),
        stream_(stream),
        top_(reader.options_.parse.max_depth),
        entry_(reader.options_.parse.max_depth) {}

  bool Null() {
    return Scalar([](json::SaxBuilder& b) { return b.Null(); });
  }
  bool Bool(bool v) {
    return Scalar([&](json::SaxBuilder& b) { return b.Bool(v); });
  }
  bool Int(int v) {
    return Scalar([&](json::SaxBuilder& b) { return b.Int(v); });
  }
  bool Uint(unsigned v) {
    return Scalar([&](json::SaxBuilder& b) { return b.Uint(v); });
  }
  bool Int64(std::int64_t v) {
    return Scalar([&](json::SaxBuilder& b) { return b.Int64(v); });
  }
  bool Uint64(std::uint64_t v) {
    return Scalar([&](json::SaxBuilder& b) { return b.Uint64(v); });
  }
  bool Double(double v) {
    return Scalar([&](json::SaxBuilder& b) { return b.Double(v); });
  }
  bool RawNumber(const char* s, unsigned n, bool c) {
    return Scalar([&](json::SaxBuilder& b) { return b.RawNumber(s, n, c); });
  }
  bool String(const char* s, unsigned n, bool c) {
    if (open_ == 1 && top_key_is_type_) resource_type_.assign(s, n);
    bool ok = Scalar([&](json::SaxBuilder& b) { return b.String(s, n, c); });
    if (ok && open_ == 1 && top_key_is_type_ && resource_type_ == "Bundle") FlushPending();
    return ok;
  }
  bool Key(const char* s, unsigned n, bool c) {
    if (open_ == 1) {
      std::string_view key(s, n);
      top_key_is_entry_ = key == "entry";
      top_key_is_type_ = key == "resourceType";
    }
    return Target().Key(s, n, c);
  }
  bool StartObject() {
    if (open_ == 0) is_object_ = true;
    return Open([](json::SaxBuilder& b) { return b.StartObject(); });
  }
  bool EndObject(unsigned n) {
    return Close([&](json::SaxBuilder& b) { return b.EndObject(n); });
  }
  bool StartArray() {
    if (open_ == 1 && top_key_is_entry_) {
      ++open_;
      in_entries_ = true;
      return top_.StartArray();
    }
    return Open([](json::SaxBuilder& b) { return b.StartArray(); });
  }
  bool EndArray(unsigned n) {
    if (in_entries_ && open_ == 2 && entry_.depth() == 0) {
      --open_;
      in_entries_ = false;
      return top_.EndArray(n);
    }
    return Close([&](json::SaxBuilder& b) { return b.EndArray(n); });
  }

  // Called after a successful parse: delivers the single resource, or the pending entries.
  void Finish() {
    if (resource_type_ == "Bundle") {
      FlushPending();
      return;
    }
    json::Value root = top_.Take();
    if (!pending_.empty()) {
      // Not a Bundle after all (e.g. a List, whose `entry` is an ordinary element): put the entries
      // back where they were.
      json::Value* entries = root.find("entry");
      for (Pending& p : pending_) {
        if (entries != nullptr) entries->push_back(std::move(p.value));
      }
      pending_.clear();
    }
    reader_.Deliver(std::move(root), SourceLocation{file_, 1, ""});
  }

  const std::string& builder_error() const {
    return !entry_.error().empty() ? entry_.error() : top_.error();
  }
  bool is_object() const { return is_object_; }
  bool is_bundle() const { return resource_type_ == "Bundle"; }
  std::size_t entries_seen() const { return entry_index_; }
  bool stopped() const { return reader_.stopped(); }

 private:
  struct Pending {
    json::Value value;
    std::size_t index;
    std::size_t line;
  };

  bool InEntry() const { return in_entries_ && open_ >= 2; }
  json::SaxBuilder& Target() { return InEntry() ? entry_ : top_; }

  void NoteEntryStart() {
    if (InEntry() && entry_.depth() == 0) entry_line_ = stream_.line();
  }

  template <class F>
  bool Scalar(F&& f) {
    NoteEntryStart();
    if (open_ == 1) top_key_is_entry_ = false;
    json::SaxBuilder& b = Target();
    if (!f(b)) return false;
    if (InEntry() && entry_.done()) return EntryComplete();
    return true;
  }
  template <class F>
  bool Open(F&& f) {
    NoteEntryStart();
    if (open_ == 1) top_key_is_entry_ = false;
    json::SaxBuilder& b = Target();
    ++open_;
    return f(b);
  }
  template <class F>
  bool Close(F&& f) {
    json::SaxBuilder& b = Target();
    bool in_entry = InEntry();
    --open_;
    if (!f(b)) return false;
    if (in_entry && entry_.done()) return EntryComplete();
    return true;
  }

  bool EntryComplete() {
    Pending p{entry_.Take(), entry_index_++, entry_line_};
    if (resource_type_ == "Bundle") {
      HandleEntry(std::move(p));
    } else if (resource_type_.empty()) {
      pending_.push_back(std::move(p));
    } else {
      return top_.AddValue(std::move(p.value));
    }
    return !reader_.stopped();
  }

  void FlushPending() {
    for (Pending& p : pending_) {
      if (reader_.stopped()) break;
      HandleEntry(std::move(p));
    }
    pending_.clear();
  }

  // Bundle.entry: resource, plus request (transaction/batch) or response (…-response), R4 §2.36.
  void HandleEntry(Pending p) {
    std::string pointer = fmt::format("Bundle.entry[{}]", p.index);
    std::string loc = Loc(file_, p.line);
    if (!p.value.is_object()) {
      reader_.Report(
          Severity::kError, IssueCode::kStructure, pointer,
          fmt::format("must be an object, found {}; entry skipped", json::KindName(p.value.kind())),
          loc);
      return;
    }
    json::Value* resource = p.value.find("resource");
    if (resource == nullptr) {
      const json::Value& request = p.value["request"];
      std::string_view method = request["method"].str();
      if (request.is_object() && (method == "GET" || method == "HEAD")) {
        reader_.Report(
            Severity::kInformation, IssueCode::kInformational, pointer,
            fmt::format("{} {} is a read request; nothing to ingest", method, request["url"].str()),
            loc);
      } else if (request.is_object()) {
        reader_.Report(
            Severity::kWarning, IssueCode::kNotSupported, pointer,
            fmt::format("{} {} has no resource: file ingest reads resources and does not "
                        "apply this request; apply it on the server instead",
                        request["method"].str(), request["url"].str()),
            loc);
      } else if (!p.value["response"].is_object()) {
        reader_.Report(Severity::kError, IssueCode::kRequired, pointer,
                       "has no resource: add `resource` or remove the entry; entry skipped", loc);
      }
      return;
    }
    if (!resource->is_object()) {
      reader_.Report(Severity::kError, IssueCode::kStructure, pointer + ".resource",
                     fmt::format("must be an object, found {}; entry skipped",
                                 json::KindName(resource->kind())),
                     loc);
      return;
    }
    reader_.Deliver(std::move(*resource), SourceLocation{file_, p.line, pointer + ".resource"});
  }

  ResourceReader& reader_;
  std::string file_;
  ChunkStream& stream_;
  json::SaxBuilder top_;
  json::SaxBuilder entry_;
  std::size_t open_ = 0;  // containers open in the document
  bool is_object_ = false;
  bool in_entries_ = false;
  bool top_key_is_entry_ = false;
  bool top_key_is_type_ = false;
  std::string resource_type_;
  std::size_t entry_index_ = 0;
  std::size_t entry_line_ = 0;
  std::vector<Pending> pending_;
};

std::string SourceLocation::ToString() const {
  std::string out = Loc(file, line);
  if (!pointer.empty()) out += fmt::format(" {}", pointer);
  return out;
}

FileFormat FormatOf(const fs::path& path) {
  std::string name = path.filename().string();
  if (name.ends_with(".gz")) name.resize(name.size() - 3);
  if (name.ends_with(".ndjson") || name.ends_with(".jsonl")) return FileFormat::kNdjson;
  if (name.ends_with(".json")) return FileFormat::kJson;
  return FileFormat::kUnknown;
}

namespace {

constexpr std::string_view kEndingsRead =
    ".ndjson, .jsonl and .json, each also gzip-compressed (.gz)";

std::string Lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  return out;
}

// The data ending of `name` ignoring case (".ndjson.gz"), "" when it has none.
std::string_view DataEndingIgnoringCase(std::string_view lower) {
  for (std::string_view e : {".ndjson.gz", ".jsonl.gz", ".json.gz", ".ndjson", ".jsonl", ".json"}) {
    if (lower.ends_with(e)) return e;
  }
  return {};
}

// Compression and archive endings that are not read (lower case).
std::string_view OtherCompressionEnding(std::string_view lower) {
  for (std::string_view e : {".bz2", ".xz", ".zst", ".zstd", ".lz4", ".lzma", ".lz", ".z", ".br",
                             ".zip", ".7z", ".rar", ".tar", ".tgz", ".tbz", ".tbz2", ".txz"}) {
    if (lower.ends_with(e)) return e;
  }
  return {};
}

struct NotRead {
  Severity severity;
  std::string message;
};

// Why a file found in a directory is not read, or nullopt when it is read. Files that may well
// hold FHIR data (a data ending in another case, another compression) are warnings: data not
// taken in. Others (README.md, a CSV) are notes.
std::optional<NotRead> WhyNotRead(const fs::path& file) {
  std::string name = file.filename().string();
  if (name == "log.ndjson") {
    // The SMART bulk-data client writes its own event log next to the exported files.
    return NotRead{Severity::kInformation, "skipped: a Bulk Data client log, not FHIR resources"};
  }
  if (FormatOf(file) != FileFormat::kUnknown) return std::nullopt;
  std::string lower = Lowercase(name);
  if (std::string_view e = DataEndingIgnoringCase(lower); !e.empty()) {
    std::string renamed = name.substr(0, name.size() - e.size()) + std::string(e);
    return NotRead{Severity::kWarning,
                   fmt::format("not read: endings are case-sensitive; rename it to {} to read it "
                               "(read: {})",
                               renamed, kEndingsRead)};
  }
  if (std::string_view e = OtherCompressionEnding(lower); !e.empty()) {
    bool archive = e == ".zip" || e == ".7z" || e == ".rar" || e.starts_with(".t");
    return NotRead{Severity::kWarning,
                   fmt::format("not read: {} files are not read (read: {}); {}", e, kEndingsRead,
                               archive ? "unpack it into .ndjson or .json files"
                                       : "decompress it, or recompress it with gzip")};
  }
  if (lower.ends_with(".gz")) {
    return NotRead{Severity::kWarning,
                   fmt::format("not read: a .gz file is read when its name says what it holds "
                               "(read: {}); rename it",
                               kEndingsRead)};
  }
  return NotRead{Severity::kInformation,
                 fmt::format("skipped: not a FHIR file by its name (read: {})", kEndingsRead)};
}

std::string_view FileTypeName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

std::string LinkTarget(const fs::path& link) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  return ec ? std::string("?") : target.string();
}

}  // namespace

std::string ResourceTypeProblem(std::string_view type) {
  if (r4::IsResourceType(type)) return {};
  // Quoted as written, but not without bound: it is input.
  std::string shown(type.substr(0, 64));
  if (type.size() > 64) shown += "...";
  std::string_view suggestion = r4::SuggestResourceType(type);
  if (suggestion.empty()) {
    return fmt::format(
        "\"{}\" is not an R4 resource type; use a type of the R4 specification, "
        "spelled as there (e.g. Patient, Encounter)",
        shown);
  }
  bool case_only = Lowercase(type) == Lowercase(suggestion);
  return fmt::format("\"{}\" is not an R4 resource type{}; did you mean {}?", shown,
                     case_only ? " (type names are case-sensitive)" : "", suggestion);
}

std::string ResourceTypeProblem(const json::Value& value) {
  const json::Value* type = value.find("resourceType");
  if (type == nullptr) {
    // `evaluate` and `sync` write one record per patient-month, {"patient": "Patient/..",
    // "month": "YYYY-MM", ...} (docs/ccm-rules.md): a report fed back as input is said so.
    if (value["patient"].is_string() && value["month"].is_string()) {
      return "missing: this looks like a ccm-gateway report record (it has patient and month), "
             "not a FHIR resource; give the FHIR input, not a report of evaluate or sync";
    }
    return "missing: not a FHIR resource; a resource names its type, e.g. "
           "\"resourceType\": \"Patient\"";
  }
  if (!type->is_string()) {
    return fmt::format("expected a string naming an R4 resource type, found {}",
                       json::KindName(type->kind()));
  }
  return ResourceTypeProblem(type->str());
}

Status CheckInputPath(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    struct stat link {};
    bool is_link = ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode);
    if (err == ENOENT && is_link) {
      return MakeError(Errc::kNotFound,
                       fmt::format("{}: dangling symbolic link (its target {} does not exist)",
                                   path.string(), LinkTarget(path)));
    }
    if (err == ENOENT || err == ENOTDIR) {
      return MakeError(Errc::kNotFound,
                       fmt::format("{}: no such file or directory", path.string()));
    }
    if (err == ELOOP) {
      return MakeError(Errc::kIo, fmt::format("{}: symbolic link loop (the link leads back to "
                                              "itself)",
                                              path.string()));
    }
    return MakeError(Errc::kIo, fmt::format("{}: {}", path.string(), std::strerror(err)));
  }
  if (S_ISDIR(st.st_mode)) {
    std::error_code ec;
    fs::directory_iterator it(path, ec);
    if (ec) {
      return MakeError(Errc::kIo,
                       fmt::format("{}: cannot list directory: {}", path.string(), ec.message()));
    }
  }
  return {};
}

ResourceReader::ResourceReader(ResourceFn on_resource, IssueFn on_issue, ReadOptions options)
    : on_resource_(std::move(on_resource)), on_issue_(std::move(on_issue)), options_(options) {}

ResourceReader::ResourceReader(PrepareFn prepare, PreparedFn on_prepared, IssueFn on_issue,
                               ReadOptions options)
    : prepare_(std::move(prepare)),
      on_prepared_(std::move(on_prepared)),
      on_issue_(std::move(on_issue)),
      options_(options) {}

void ResourceReader::Deliver(json::Value&& resource, SourceLocation where) {
  if (std::string problem = ResourceTypeProblem(resource); !problem.empty()) {
    return Report(Severity::kError, IssueCode::kInvalid,
                  where.pointer.empty() ? "resourceType" : where.pointer + ".resourceType",
                  fmt::format("{}; {} skipped", problem, where.pointer.empty() ? "file" : "entry"),
                  Loc(where.file, where.line));
  }
  Hand(std::move(resource), where);
}

void ResourceReader::Hand(json::Value&& resource, const SourceLocation& where) {
  ++counts_.resources;
  bool go = prepare_ ? on_prepared_(prepare_(std::move(resource), where), where)
                     : on_resource_(std::move(resource), where);
  if (!go) stopped_ = true;
}

void ResourceReader::Report(Severity s, IssueCode c, std::string path, std::string message,
                            std::string location) {
  Issue issue{s, c, std::move(path), std::move(message), std::move(location)};
  // Reader warnings are requests it does not apply (see HandleEntry): data not taken in, so they
  // count as skipped like errors do; information notes do not.
  if (s != Severity::kInformation) ++counts_.skipped;
  if (!on_issue_(issue)) stopped_ = true;
}

Status ResourceReader::Read(const fs::path& path) {
  CCM_TRY(CheckInputPath(path));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return CheckInputPath(path);  // vanished since
  if (!S_ISDIR(st.st_mode)) {
    // A file named on the command line is read whatever its type (a pipe such as <(zcat ...)
    // is fine); only its ending decides the format.
    if (!FirstVisit(st, path)) return {};
    ReadFile(path, /*named=*/true);
    return {};
  }
  if (!FirstVisit(st, path)) return {};
  std::vector<Ancestor> ancestors{
      {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), path}};
  Walk(path, ancestors);
  return {};
}

bool ResourceReader::FirstVisit(const struct stat& st, const fs::path& path) {
  auto [it, added] = visited_.try_emplace(
      {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)},
      path.string());
  if (added) return true;
  SkipEntry(Severity::kInformation, path,
            fmt::format("skipped: the same {} as {}, already read",
                        S_ISDIR(st.st_mode) ? "directory" : "file", it->second));
  return false;
}

void ResourceReader::SkipEntry(Severity s, const fs::path& path, std::string message) {
  ++counts_.files_skipped;
  Report(s, s == Severity::kInformation ? IssueCode::kInformational : IssueCode::kNotSupported, "",
         std::move(message), path.string());
}

// Directories are read depth first with the entries of each sorted by name, which is sorted path
// order. Symbolic links are followed (a directory reached twice, or a link back to a directory
// being read, is named and not read again), so that no walk loops.
void ResourceReader::Walk(const fs::path& dir, std::vector<Ancestor>& ancestors) {
  std::vector<fs::path> entries;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    ++counts_.files_skipped;
    Report(Severity::kError, IssueCode::kIncomplete, "",
           fmt::format("cannot list directory: {}; nothing in it was read", ec.message()),
           dir.string());
    return;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    entries.push_back(it->path());
  }
  if (ec) {
    Report(Severity::kError, IssueCode::kIncomplete, "",
           fmt::format("listing stopped early: {}; files after it were not read", ec.message()),
           dir.string());
  }
  std::sort(entries.begin(), entries.end());
  for (const fs::path& p : entries) {
    if (stopped_) return;
    Visit(p, ancestors);
  }
}

void ResourceReader::Visit(const fs::path& p, std::vector<Ancestor>& ancestors) {
  struct stat link {};
  if (::lstat(p.c_str(), &link) != 0) {
    return SkipEntry(Severity::kWarning, p,
                     fmt::format("not read: {} (it changed while the directory was read)",
                                 std::strerror(errno)));
  }
  bool is_link = S_ISLNK(link.st_mode);
  if (p.filename().string().starts_with(".")) {
    // Hidden files and folders (.git, editor swap files) are never input.
    return SkipEntry(Severity::kInformation, p,
                     S_ISDIR(link.st_mode) ? "skipped: a hidden directory (never read)"
                                           : "skipped: a hidden file (never read)");
  }
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    int err = errno;
    if (is_link && err == ENOENT) {
      return SkipEntry(Severity::kWarning, p,
                       fmt::format("not read: a dangling symbolic link (its target {} does not "
                                   "exist)",
                                   LinkTarget(p)));
    }
    if (err == ELOOP) {
      return SkipEntry(Severity::kWarning, p,
                       "not read: a symbolic link loop (the link leads back to itself)");
    }
    return SkipEntry(Severity::kWarning, p, fmt::format("not read: {}", std::strerror(err)));
  }
  if (S_ISDIR(st.st_mode)) {
    for (const Ancestor& a : ancestors) {
      if (a.dev == static_cast<std::uint64_t>(st.st_dev) &&
          a.ino == static_cast<std::uint64_t>(st.st_ino)) {
        return SkipEntry(Severity::kWarning, p,
                         fmt::format("not read: a symbolic link loop (it leads back to {}, which "
                                     "is being read)",
                                     a.path.string()));
      }
    }
    if (!FirstVisit(st, p)) return;
    ancestors.push_back(
        {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), p});
    Walk(p, ancestors);
    ancestors.pop_back();
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    return SkipEntry(Severity::kWarning, p,
                     fmt::format("not read: {} (in a directory only regular files are read; name "
                                 "it as an input to read it)",
                                 FileTypeName(st.st_mode)));
  }
  if (std::optional<NotRead> why = WhyNotRead(p)) {
    return SkipEntry(why->severity, p, std::move(why->message));
  }
  if (!FirstVisit(st, p)) return;
  ReadFile(p, /*named=*/false);
}

void ResourceReader::ReadFile(const fs::path& file, bool named) {
  FileFormat format = FormatOf(file);
  if (file.filename() == "log.ndjson") {
    return SkipEntry(Severity::kInformation, file,
                     "skipped: a Bulk Data client log, not FHIR resources");
  }
  if (named && format == FileFormat::kUnknown) {
    // Named on the command line: its ending in any case says the format; other compressions
    // cannot be read; anything else is tried as JSON (a pipe, a file without ending).
    std::string lower = Lowercase(file.filename().string());
    std::string_view data = DataEndingIgnoringCase(lower);
    if (!data.empty()) {
      format =
          data.starts_with(".json.") || data == ".json" ? FileFormat::kJson : FileFormat::kNdjson;
    } else if (std::string_view e = OtherCompressionEnding(lower); !e.empty()) {
      ++counts_.files_skipped;
      return Report(Severity::kError, IssueCode::kNotSupported, "",
                    fmt::format("{} files are not read (read: {}); decompress it, or recompress "
                                "it with gzip; file skipped",
                                e, kEndingsRead),
                    file.string());
    } else {
      format = FileFormat::kJson;
    }
  }
  ++counts_.files;
  if (format == FileFormat::kNdjson) {
    ReadNdjsonFile(file);
  } else {
    ReadJsonFile(file);
  }
}

void ResourceReader::ReportUnreadable(const Error& e, const std::string& file) {
  Report(Severity::kError, IssueCode::kNotFound, "", e.message + "; file skipped", file);
}

// One NDJSON line, parsed (possibly on a worker thread) and waiting to be handed over in order.
struct ResourceReader::LineOutcome {
  std::size_t line_no = 0;
  std::optional<json::Value> value;  // a resource object, or nullopt
  std::any prepared;                 // with a PrepareFn: its result (may be empty)
  bool is_prepared = false;
  bool too_long = false;  // longer than ReadOptions::max_line_bytes
  bool blank = false;
  bool not_a_resource = false;  // an object without an R4 resourceType (`error` says why)
  std::string error;            // why there is no value (unless blank)
  std::size_t column = 0;
};

// Lines of one file handed to a worker: `text` holds them separated by '\n'.
struct ResourceReader::LineBatch {
  std::string text;      // longer than `size` (recycled buffers keep their length)
  std::size_t size = 0;  // the lines: text[0, size), text[size] writable, padding after it
  std::size_t first_line = 0;
  const std::string* file = nullptr;
};

ResourceReader::LineOutcome ResourceReader::ParseLine(char* data, std::size_t size,
                                                      std::size_t line_no, SourceLocation& where,
                                                      std::string& scratch) const {
  LineOutcome out;
  out.line_no = line_no;
  where.line = line_no;
  if (size > options_.max_line_bytes) {  // the parallel path finds these only here
    out.too_long = true;
    return out;
  }
  if (size > 0 && data[size - 1] == '\r') --size;
  std::string_view line(data, size);
  if (line.find_first_not_of(" \t") == std::string_view::npos) {  // blank lines are allowed
    out.blank = true;
    return out;
  }
  data[size] = '\0';  // the in-situ parsers need a terminator; the line is ours to overwrite
  if (prepare_line_) {
    Result<std::any> prepared = prepare_line_(data, size, where, scratch);
    if (prepared) {
      out.prepared = std::move(*prepared);
      out.is_prepared = true;
    } else {
      out.error = fmt::format("{}; line skipped", prepared.error().message);
      if (prepared.error().is(Errc::kInvalidResource)) out.not_a_resource = true;
    }
    return out;
  }
  json::ParseErrorInfo info;
  Result<json::Value> v = json::ParseInsitu(data, size, options_.parse, &info);
  if (!v) {
    out.error = fmt::format("invalid JSON: {}; line skipped", info.message);
    out.column = info.column;
  } else if (!v->is_object()) {
    out.error = fmt::format("expected a FHIR resource (a JSON object), found {}; line skipped",
                            json::KindName(v->kind()));
  } else if (std::string problem = ResourceTypeProblem(*v); !problem.empty()) {
    out.error = fmt::format("{}; line skipped", problem);
    out.not_a_resource = true;
  } else if (prepare_) {
    out.prepared = prepare_(std::move(*v), where);
    out.is_prepared = true;  // the tree is released here, on the thread that allocated it
  } else {
    out.value = std::move(*v);
  }
  return out;
}

std::vector<ResourceReader::LineOutcome> ResourceReader::ParseBatch(LineBatch& batch) const {
  std::vector<LineOutcome> out;
  std::string scratch;
  char* p = batch.text.data();
  char* const end = p + batch.size;
  std::size_t line_no = batch.first_line;
  SourceLocation where{*batch.file, 0, ""};
  while (p < end) {
    char* nl = static_cast<char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    char* line_end = nl != nullptr ? nl : end;  // `end` is the string's own terminator
    out.push_back(ParseLine(p, static_cast<std::size_t>(line_end - p), line_no++, where, scratch));
    if (nl == nullptr) break;
    p = nl + 1;
  }
  return out;
}

void ResourceReader::HandleLine(LineOutcome&& o, SourceLocation& where) {
  const std::string& file = where.file;
  where.line = o.line_no;
  if (o.blank) return;
  if (o.too_long) return ReportOverlong(file, o.line_no);
  if (o.is_prepared) {
    ++counts_.resources;
    if (!on_prepared_(std::move(o.prepared), where)) stopped_ = true;
    return;
  }
  if (o.not_a_resource) {
    return Report(Severity::kError, IssueCode::kInvalid, "resourceType", std::move(o.error),
                  Loc(file, o.line_no));
  }
  if (!o.value) {
    Report(Severity::kError, IssueCode::kStructure, "", std::move(o.error),
           Loc(file, o.line_no, o.column));
    return;
  }
  Hand(std::move(*o.value), where);
}

void ResourceReader::NdjsonLine(std::string& line, const std::string& file, std::size_t line_no) {
  line.reserve(line.size() + json::kInsituPadding);
  if (line_where_.file != file) line_where_.file = file;
  HandleLine(ParseLine(line.data(), line.size(), line_no, line_where_, scratch_), line_where_);
}

void ResourceReader::ReadNdjsonText(std::string_view text, std::string_view name) {
  std::string file(name);
  std::size_t line_no = 0;
  std::string line;
  while (!text.empty() && !stopped_) {
    std::size_t nl = text.find('\n');
    line.assign(text.substr(0, nl));
    ++line_no;
    NdjsonLine(line, file, line_no);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

void ResourceReader::ReadNdjsonFile(const fs::path& path) {
  std::string file = path.string();
  Result<GzHandle> h = OpenGz(path);
  if (!h) return ReportUnreadable(h.error(), file);
  if (options_.threads > 1) return ReadNdjsonParallel(h->get(), file);
  std::vector<char> buf(kChunk);
  std::string line;
  std::size_t line_no = 0;
  bool overlong = false;
  auto finish_line = [&] {
    ++line_no;
    if (overlong) {
      ReportOverlong(file, line_no);
    } else {
      NdjsonLine(line, file, line_no);
    }
    line.clear();
    overlong = false;
  };
  long n = 0;
  while (!stopped_ && (n = GzRead(h->get(), buf.data(), buf.size())) > 0) {
    std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
    while (!chunk.empty() && !stopped_) {
      std::size_t nl = chunk.find('\n');
      std::string_view part = chunk.substr(0, nl);
      if (!overlong) {
        if (line.size() + part.size() > options_.max_line_bytes) {
          overlong = true;
          line.clear();
          line.shrink_to_fit();
        } else {
          line.append(part);
        }
      }
      if (nl == std::string_view::npos) break;
      finish_line();
      chunk.remove_prefix(nl + 1);
    }
  }
  if (n < 0) return ReportReadFailure(h->get(), file, line_no);
  if (!stopped_ && (!line.empty() || overlong)) finish_line();  // last line without a newline
}

void ResourceReader::ReportOverlong(const std::string& file, std::size_t line_no) {
  Report(Severity::kError, IssueCode::kTooLong, "",
         fmt::format("line longer than {} bytes; line skipped (raise the limit or split the file)",
                     options_.max_line_bytes),
         Loc(file, line_no));
}

void ResourceReader::ReportReadFailure(gzFile_s* gz, const std::string& file, std::size_t line_no) {
  Report(Severity::kError, IssueCode::kIncomplete, "",
         fmt::format("read failed after line {}: {}; the rest of the file was not read", line_no,
                     GzErrorText(gz)),
         Loc(file, line_no + 1));
}

// The file is read in blocks of whole lines; each block is parsed by a std::async task and at most
// `threads` blocks are in flight. Outcomes are handed to the callbacks on this thread in input
// order, so callers see exactly what the single-threaded path shows them. Block buffers are
// recycled (a fresh megabyte per block cost more in page faults than the parse saved).
void ResourceReader::ReadNdjsonParallel(gzFile_s* gz, const std::string& file) {
  constexpr std::size_t kBlock = std::size_t{1} << 20;
  std::vector<std::string> free_blocks;
  // Persistent workers for the whole file: a thread per block churned the allocator (every new
  // thread grew and trimmed a fresh malloc arena) and made two threads slower than one.
  using Task = std::packaged_task<std::vector<LineOutcome>()>;
  // At most threads + 1 blocks are in flight (submit below), so a push never waits.
  BoundedQueue<Task> queue(options_.threads + 1);
  struct CloseQueue {  // stops the workers, also on early return (declared after them: runs first)
    BoundedQueue<Task>& queue;
    ~CloseQueue() { queue.Close(); }
  };
  std::vector<std::jthread> workers;
  // threads - 1 workers: this thread is the last one, parsing queued blocks while it waits.
  for (unsigned i = 1; i < options_.threads; ++i) {
    workers.emplace_back([&queue] {
      while (std::optional<Task> task = queue.Pop()) (*task)();
    });
  }
  CloseQueue close_queue{queue};
  struct Pending {
    std::future<std::vector<LineOutcome>> outcomes;
    std::shared_ptr<LineBatch> batch;
  };
  std::deque<Pending> in_flight;
  SourceLocation where{file, 0, ""};
  auto hand_over_oldest = [&] {
    auto& oldest = in_flight.front().outcomes;
    while (oldest.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      std::optional<Task> task = queue.TryPop();
      if (!task) {
        oldest.wait();
        break;
      }
      (*task)();
    }
    std::vector<LineOutcome> done = oldest.get();
    free_blocks.push_back(std::move(in_flight.front().batch->text));
    in_flight.pop_front();
    for (LineOutcome& o : done) {
      if (stopped_) break;
      HandleLine(std::move(o), where);
    }
  };
  auto drain = [&] {
    while (!in_flight.empty()) hand_over_oldest();
  };
  auto submit = [&](std::shared_ptr<LineBatch> batch) {
    if (in_flight.size() > options_.threads) hand_over_oldest();
    batch->file = &file;
    Task task([this, batch] { return ParseBatch(*batch); });
    in_flight.push_back(Pending{task.get_future(), batch});
    queue.Push(std::move(task));
  };

  std::string carry;        // the start of a line that continues in the next read
  bool skipping = false;    // inside an overlong line, discarding up to its newline
  std::size_t line_no = 0;  // lines handed out so far
  bool eof = false;
  while (!eof && !stopped_) {
    // A block buffer keeps its full length from one use to the next: shrinking and growing a
    // std::string again zero-fills it, a memset of every block on this thread.
    std::string text;
    if (!free_blocks.empty()) {
      text = std::move(free_blocks.back());
      free_blocks.pop_back();
    }
    std::size_t want = std::max(kBlock, carry.size() * 2);
    if (text.size() < want + json::kInsituPadding + 1) text.resize(want + json::kInsituPadding + 1);
    std::memcpy(text.data(), carry.data(), carry.size());
    std::size_t size = carry.size();
    carry.clear();
    long n = GzRead(gz, text.data() + size, want - size);
    if (n < 0) {
      drain();
      return ReportReadFailure(gz, file, line_no);
    }
    eof = n == 0;
    size += static_cast<std::size_t>(n);
    if (skipping) {
      const void* nl = std::memchr(text.data(), '\n', size);
      if (nl == nullptr) {
        free_blocks.push_back(std::move(text));
        continue;
      }
      std::size_t skip = static_cast<std::size_t>(static_cast<const char*>(nl) - text.data()) + 1;
      std::memmove(text.data(), text.data() + skip, size - skip);
      size -= skip;
      skipping = false;
    }
    std::size_t last_nl = std::string_view(text.data(), size).rfind('\n');
    if (!eof) {
      if (last_nl == std::string::npos) {
        // No complete line yet: keep reading, unless the line is already too long.
        if (size > options_.max_line_bytes) {
          drain();
          ReportOverlong(file, ++line_no);
          skipping = true;
        } else {
          carry.assign(text.data(), size);
        }
        free_blocks.push_back(std::move(text));
        continue;
      }
      carry.assign(text.data() + last_nl + 1, size - last_nl - 1);
      size = last_nl + 1;
    }
    if (size == 0) {
      free_blocks.push_back(std::move(text));
      continue;
    }
    auto batch = std::make_shared<LineBatch>();
    batch->first_line = line_no + 1;
    line_no += CountNewlines(std::string_view(text.data(), size));
    if (eof && text[size - 1] != '\n') ++line_no;  // last line without a newline
    text[size] = '\0';  // see ParseInsitu: the last line ends at a terminator
    batch->size = size;
    batch->text = std::move(text);
    submit(std::move(batch));
  }
  drain();
}

namespace {

void RunJson(BundleStreamer& streamer, ChunkStream& stream, const std::string& file,
             const std::function<void(Severity, IssueCode, std::string, std::string)>& report) {
  rapidjson::Reader r;
  constexpr unsigned kFlags = rapidjson::kParseNumbersAsStringsFlag |
                              rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseIterativeFlag;
  // Skip a UTF-8 byte order mark (written by some Windows editors).
  if (stream.Peek() == '\xEF') {
    stream.Take();
    if (stream.Peek() == '\xBB') stream.Take();
    if (stream.Peek() == '\xBF') stream.Take();
  }
  rapidjson::ParseResult ok = r.Parse<kFlags>(stream, streamer);
  if (streamer.stopped()) return;
  if (stream.failed()) {
    report(Severity::kError, IssueCode::kIncomplete, Loc(file, stream.line(), stream.column()),
           "read failed (truncated or corrupt file); the rest of the file was not read");
    return;
  }
  if (!ok) {
    std::string what = streamer.builder_error().empty() ? rapidjson::GetParseError_En(ok.Code())
                                                        : streamer.builder_error();
    if (ok.Code() == rapidjson::kParseErrorDocumentEmpty)
      what = "empty file: expected a JSON object";
    std::string tail = streamer.is_bundle() || streamer.entries_seen() > 0
                           ? fmt::format(
                                 "; {} Bundle entries before this point were read, the rest "
                                 "of the file was not",
                                 streamer.entries_seen())
                           : "; file skipped";
    report(Severity::kError, IssueCode::kStructure, Loc(file, stream.line(), stream.column()),
           fmt::format("invalid JSON: {}{}", what, tail));
    return;
  }
  if (!streamer.is_object()) {
    report(Severity::kError, IssueCode::kStructure, Loc(file, 1),
           "expected a FHIR resource or Bundle (a JSON object) at the top level; file skipped");
    return;
  }
  streamer.Finish();
}

}  // namespace

void ResourceReader::ReadJsonFile(const fs::path& path) {
  std::string file = path.string();
  Result<GzHandle> h = OpenGz(path);
  if (!h) return ReportUnreadable(h.error(), file);
  gzFile_s* g = h->get();
  ChunkStream stream([g](char* buf, std::size_t cap) { return GzRead(g, buf, cap); });
  BundleStreamer streamer(*this, file, stream);
  RunJson(streamer, stream, file, [&](Severity s, IssueCode c, std::string loc, std::string msg) {
    if (c == IssueCode::kIncomplete) msg = fmt::format("{}: {}", msg, GzErrorText(g));
    Report(s, c, "", std::move(msg), std::move(loc));
  });
}

void ResourceReader::ReadJsonText(std::string_view text, std::string_view name) {
  std::string file(name);
  ChunkStream stream([&text](char* buf, std::size_t cap) -> long {
    std::size_t n = std::min(cap, text.size());
    std::copy_n(text.data(), n, buf);
    text.remove_prefix(n);
    return static_cast<long>(n);
  });
  BundleStreamer streamer(*this, file, stream);
  RunJson(streamer, stream, file, [&](Severity s, IssueCode c, std::string loc, std::string msg) {
    Report(s, c, "", std::move(msg), std::move(loc));
  });
}

}  // namespace ccm::fhir
