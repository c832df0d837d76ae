#include "gateway/sync/bulk_sync.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "fhir/client/bulk_export.h"
#include "fhir/datatypes.h"
#include "fhir/datetime.h"
#include "fhir/hash.h"
#include "gateway/sync/connection.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;

// Resources stored per transaction (about; a batch ends after the line that passes it).
constexpr std::size_t kBatchBytes = std::size_t{1} << 20;

// What the cursors of a bulk source were made for: a change of level, group or filters reads
// everything again (as a changed scope does for searches).
std::string BulkFingerprint(const BulkConfig& b) {
  std::string out = fmt::format("bulk:{}:{}", ToCode(b.level), b.group);
  if (!b.type_filters.empty()) {
    std::uint64_t h = Fnv1a64("");
    for (const auto& [type, filter] : b.type_filters) h = Fnv1a64(filter + "\n", h);
    out += fmt::format(":filters:{:016x}", h);
  }
  return out;
}

// The resource type an OperationOutcome issue of an error file names (its expression or location
// "Condition", "Condition.code", "Condition/123"), or "" when none.
std::string IssueType(const Value& issue) {
  for (const char* key : {"expression", "location"}) {
    for (const Value& e : issue[key].array()) {
      std::string_view text = e.str();
      text = text.substr(0, text.find_first_of("./?["));
      if (fhir::IsResourceType(text)) return std::string(text);
    }
  }
  return "";
}

struct Row {
  std::string id;
  VersionStamp stamp;
  std::string json;
};

// One type's pull: its files, counters (TypeSync) and the first failure. Counters and `error` are
// written under the run's mutex.
struct BulkType {
  TypeSync t;
  std::optional<SyncCursor> cursor;
  std::vector<fhir::BulkFile> files;
  std::string error;
  std::set<std::string> deleted;  // ids the export says were deleted
};

struct BulkRun {
  const SourceConfig& src;
  StateStore& store;
  const SyncOptions& options;
  const SyncObserver& observer;
  std::mutex mutex;  // the store, the observer, the BulkType counters and errors, warnings
  std::vector<std::string> warnings;
  std::map<std::string, std::unique_ptr<BulkType>, std::less<>> types;

  void Warn(std::string w) {
    std::lock_guard lock(mutex);
    if (observer.on_warning) observer.on_warning(w);
    warnings.push_back(std::move(w));
  }
  void Fail(BulkType& bt, std::string why) {
    std::lock_guard lock(mutex);
    if (bt.error.empty()) bt.error = std::move(why);
  }
  bool Failed(BulkType& bt) {
    std::lock_guard lock(mutex);
    return !bt.error.empty();
  }

  // Stores a batch of `bt` in one transaction.
  Status Store(BulkType& bt, std::vector<Row>& rows, std::size_t bytes) {
    std::lock_guard lock(mutex);
    TypeSync& t = bt.t;
    UpsertMode mode = t.full ? UpsertMode::kTrustServer : UpsertMode::kKeepNewest;
    Status s = store.InTransaction([&]() -> Status {
      for (const Row& r : rows) {
        CCM_TRY_ASSIGN(UpsertOutcome o,
                       store.Upsert(src.name, t.type, r.id, r.stamp, r.json, options.run, mode));
        t.Count(o);
      }
      return Status{};
    });
    if (!s) return s;
    t.bytes += bytes;
    rows.clear();
    if (observer.on_page) observer.on_page(t);
    return {};
  }

  bool Stopped() const {
    return options.stop != nullptr && options.stop->load(std::memory_order_relaxed);
  }
};

fhir::BulkExportOptions ClientOptions(const SourceConfig& src, const SyncOptions& options) {
  fhir::BulkExportOptions o;
  o.base_url = src.base_url;
  o.http = src.http;
  o.http.user_agent = fmt::format("ccm-gateway/{} (+FHIR R4 CCM sync)", CCM_VERSION);
  o.retry = src.retry;
  o.max_wait = src.bulk->max_wait;
  o.server_diagnostics = src.server_diagnostics;
  o.stop = options.stop;
  return o;
}

// Downloads one output file of `bt` into the store, in batches.
void PullFile(BulkRun& run, BulkType& bt, const fhir::BulkFile& file, bool with_token,
              fhir::BulkExportClient& client) {
  if (run.Failed(bt)) return;  // the type fails anyway: spare the server
  std::vector<Row> rows;
  std::size_t bytes = 0, rejected = 0;
  std::string stray;
  auto on_line = [&](std::string_view line, const Value& resource) -> Status {
    std::string_view type = resource["resourceType"].str();
    std::string_view id = resource["id"].str();
    // A file holds the type the manifest names, each with an id; anything else is not the data
    // it claims to be.
    if (type != bt.t.type || !fhir::IsValidId(id)) {
      if (stray.empty()) {
        std::string_view code = fhir::SafeCode(type);  // the server's text: only if a code
        stray = type == bt.t.type ? "a resource without a valid id"
                : code.empty()    ? "a line that is not a resource type"
                                  : "a " + std::string(code);
      }
      ++rejected;
      return Status{};
    }
    rows.push_back({std::string(id), StampOfJson(resource), std::string(line)});
    bytes += line.size() + 1;
    if (bytes >= kBatchBytes) {
      CCM_TRY(run.Store(bt, rows, bytes));
      bytes = 0;
    }
    return Status{};
  };
  // A retried file comes again from its first line: what is not stored yet is dropped (what is
  // stored is met again as unchanged).
  auto on_restart = [&] {
    rows.clear();
    bytes = 0;
    rejected = 0;
    stray.clear();
  };
  auto got = client.Download(file, with_token, on_line, on_restart);
  if (got && !rows.empty()) {
    if (Status s = run.Store(bt, rows, bytes); !s) got = s.error();
  }
  if (!got) {
    run.Fail(bt, got.error().message);
    return;
  }
  std::lock_guard lock(run.mutex);
  ++bt.t.pages;
  bt.t.resources += got->lines - rejected;
  bt.t.distinct += got->lines - rejected;
  bt.t.rejected += rejected;
  if (rejected > 0 && bt.error.empty()) {
    bt.error = fmt::format(
        "{} line(s) of a {} file of the export are not a {} with a valid id (e.g. {}); the "
        "export is not the data it claims to be",
        rejected, bt.t.type, bt.t.type, stray);
  }
}

// Reads the error files: issues of severity error or fatal fail the type they name (or every type
// when they name none); warnings are reported. Codes only unless logging.serverDiagnostics.
void ReadErrorFiles(BulkRun& run, const fhir::BulkManifest& manifest, bool with_token,
                    fhir::BulkExportClient& client) {
  std::map<std::string, std::size_t> warnings;  // "severity code" -> how many
  for (const fhir::BulkFile& file : manifest.error) {
    auto on_line = [&](std::string_view, const Value& oo) -> Status {
      if (oo["resourceType"].str() != "OperationOutcome") {
        return MakeError(Errc::kInvalidResource,
                         "an error file of the export holds something other than an "
                         "OperationOutcome");
      }
      for (const Value& issue : oo["issue"].array()) {
        std::string_view severity = issue["severity"].str();
        std::string what =
            fmt::format("{} {}", fhir::SafeCode(severity), fhir::SafeCode(issue["code"].str()));
        if (run.src.server_diagnostics) {
          Value one = Value::MakeObject();
          one.set("resourceType", Value::String("OperationOutcome"));
          Value list = Value::MakeArray();
          list.push_back(issue);
          one.set("issue", std::move(list));
          what = fhir::DescribeOperationOutcome(one, true);
        }
        if (severity != "error" && severity != "fatal") {
          ++warnings[what];
          continue;
        }
        std::string type = IssueType(issue);
        std::string why = fmt::format(
            "the export's error file reports {}{}; the type is not complete", what,
            type.empty() ? " for no particular type (so for every type of the export)" : "");
        if (!type.empty()) {
          if (auto it = run.types.find(type); it != run.types.end()) {
            run.Fail(*it->second, why);
          }
          continue;
        }
        for (auto& [name, bt] : run.types) run.Fail(*bt, why);
      }
      return Status{};
    };
    auto got = client.Download(file, with_token, on_line);
    if (!got) {
      // What failed cannot be known: nothing of this export counts as complete.
      for (auto& [name, bt] : run.types) {
        run.Fail(*bt, fmt::format("an error file of the export could not be read ({}), so what "
                                  "failed is unknown",
                                  got.error().message));
      }
      return;
    }
  }
  for (const auto& [what, n] : warnings) {
    run.Warn(fmt::format("{}: the export's error files report {} issue(s) \"{}\" (not errors)",
                         run.src.name, n, what));
  }
}

// Reads the deleted files (transaction Bundles of DELETE entries, IG v2.0.0 manifest `deleted`).
void ReadDeletedFiles(BulkRun& run, const fhir::BulkManifest& manifest, bool with_token,
                      fhir::BulkExportClient& client) {
  for (const fhir::BulkFile& file : manifest.deleted) {
    auto on_line = [&](std::string_view, const Value& bundle) -> Status {
      if (bundle["resourceType"].str() != "Bundle") {
        return MakeError(Errc::kInvalidResource,
                         "a deleted file of the export holds something other than a Bundle");
      }
      for (const Value& e : bundle["entry"].array()) {
        if (e["request"]["method"].str() != "DELETE") continue;
        std::string_view url = e["request"]["url"].str();
        auto slash = url.find('/');
        if (slash == std::string_view::npos) continue;
        std::string_view type = url.substr(0, slash), id = url.substr(slash + 1);
        id = id.substr(0, id.find('/'));
        auto it = run.types.find(type);
        if (it == run.types.end() || !fhir::IsValidId(id)) continue;
        std::lock_guard lock(run.mutex);
        it->second->deleted.emplace(id);
      }
      return Status{};
    };
    auto got = client.Download(file, with_token, on_line);
    if (!got) {
      for (auto& [name, bt] : run.types) {
        run.Fail(*bt, fmt::format("a deleted file of the export could not be read ({}); what "
                                  "was deleted is unknown",
                                  got.error().message));
      }
      return;
    }
  }
}

}  // namespace

SourceSync SyncBulkSource(const SourceConfig& source, const std::vector<std::string>& types,
                          StateStore& store, const SyncOptions& options,
                          const SyncObserver& observer) {
  SourceSync out;
  out.name = source.name;
  const BulkConfig& bulk = *source.bulk;
  for (const auto& t : types) static_cast<void>(store.BeginPull(source.name, t, options.run));
  fhir::ClientStats stats;
  auto fail_source = [&](std::string why) {
    out.error = fmt::format("{}: {}", source.name, why);
    out.http = stats;
    for (const auto& t : types) {
      static_cast<void>(store.EndPull(source.name, t, options.run, PullState::kFailed,
                                      PullMode::kIncremental, why));
    }
    return out;
  };
  auto auth = MakeTokenSource(source);
  if (!auth) return fail_source(fmt::format("auth: {}", auth.error().message));

  BulkRun run{source, store, options, observer, {}, {}, {}};
  std::string fingerprint = BulkFingerprint(bulk);
  // _since: the oldest cursor, when every type has one made for this export (IG v2.0.0: the next
  // export asks _since the previous transactionTime). A type whose cursor is newer reads a little
  // again, met as unchanged.
  bool incremental = !options.full;
  std::optional<std::pair<fhir::TimePoint, std::string>> since;
  for (const auto& type : types) {
    auto bt = std::make_unique<BulkType>();
    bt->t.source = source.name;
    bt->t.type = type;
    auto cursor = store.GetCursor(source.name, type);
    if (!cursor) return fail_source(fmt::format("state store: {}", cursor.error().message));
    bt->cursor = *cursor;
    std::optional<fhir::TimePoint> at;
    if (*cursor && (*cursor)->scope == fingerprint) {
      if (auto parsed = fhir::FhirDateTime::ParseInstant((*cursor)->watermark)) {
        at = parsed->Earliest();
      }
    }
    if (!at) {
      incremental = false;
    } else if (!since || *at < since->first) {
      since.emplace(*at, (*cursor)->watermark);
    }
    run.types.emplace(type, std::move(bt));
  }
  for (auto& [name, bt] : run.types) bt->t.full = !incremental;

  fhir::BulkExportRequest request;
  request.level = bulk.level;
  if (bulk.level == fhir::BulkLevel::kGroup) request.group_id = bulk.group.substr(6);
  request.types = types;
  if (incremental && since) request.since = since->second;
  for (const auto& [type, filter] : bulk.type_filters) request.type_filters.push_back(filter);

  fhir::BulkExportClient client(ClientOptions(source, options), *auth);
  auto add_stats = [&stats](const fhir::ClientStats& s) {
    stats.requests += s.requests;
    stats.retries += s.retries;
    stats.bytes += s.bytes;
  };
  auto started = std::chrono::steady_clock::now();
  // An export this source's last sync started and did not finish with (killed, stopped) is
  // resumed when it was asked the same: the server need not prepare it twice (IG v2.0.0: the
  // status URL stays valid until the files expire or the client deletes it).
  const std::string kickoff = fhir::BulkKickOffUrl(source.base_url, request);
  auto pending = store.GetPendingExport(source.name);
  if (!pending) return fail_source(fmt::format("state store: {}", pending.error().message));
  std::optional<std::string> resumed;
  if (*pending && (*pending)->request == kickoff) resumed = (*pending)->status_url;
  auto forget_export = [&] {
    std::lock_guard lock(run.mutex);
    if (Status s = store.ClearPendingExport(source.name); !s) {
      run.Warn(
          fmt::format("{}: the finished export could not be forgotten in the state store "
                      "({}); the next sync may poll it once more",
                      source.name, s.error().message));
    }
  };
  auto kick_off = [&]() -> Result<std::string> {
    CCM_TRY_ASSIGN(std::string url, client.KickOff(request));
    if (Status s = store.SetPendingExport(source.name, {url, kickoff, fhir::NowUtc()}); !s) {
      run.Warn(
          fmt::format("{}: the export's status URL could not be kept in the state store "
                      "({}); a sync killed now starts a new export",
                      source.name, s.error().message));
    }
    return url;
  };
  auto on_progress = [&](std::string_view progress) {
    std::lock_guard lock(run.mutex);
    if (observer.on_progress) {
      observer.on_progress(fmt::format("{}: export in progress: {}", source.name, progress));
    }
  };
  Result<std::string> status_url = resumed ? Result<std::string>(*resumed) : kick_off();
  if (!status_url) {
    add_stats(client.stats());
    const Error& e = status_url.error();
    if (e.is(Errc::kUnsupported)) {
      return fail_source(fmt::format(
          "{}. This server cannot be pulled with Bulk Data: remove `bulk` from source \"{}\" to "
          "pull it with FHIR searches instead (or check baseUrl and bulk.level)",
          e.message, source.name));
    }
    return fail_source(e.message);
  }
  if (resumed && observer.on_progress) {
    std::lock_guard lock(run.mutex);
    observer.on_progress(fmt::format("{}: resuming the export the last sync started at {}",
                                     source.name, (*pending)->started_at));
  }
  auto manifest = client.AwaitManifest(*status_url, on_progress);
  if (!manifest && resumed && manifest.error().is(Errc::kNotFound)) {
    // The server no longer knows it (expired, deleted): a new export, once.
    forget_export();
    status_url = kick_off();
    if (!status_url) {
      add_stats(client.stats());
      return fail_source(status_url.error().message);
    }
    manifest = client.AwaitManifest(*status_url, on_progress);
  }
  if (!manifest) {
    if (run.Stopped()) {
      // Asked to stop (SIGTERM): kept, so that the next sync resumes this export.
      add_stats(client.stats());
      return fail_source(manifest.error().message + "; the next sync resumes this export");
    }
    // Given up (or refused): the server need not go on preparing files nobody fetches.
    static_cast<void>(client.Delete(*status_url));
    forget_export();
    add_stats(client.stats());
    return fail_source(manifest.error().message);
  }
  bool with_token = manifest->requires_access_token;

  // A transactionTime ahead of our clock (or before the _since asked) would make the next _since
  // skip what changes in between: such a cursor is not stored.
  std::string implausible;
  auto now = std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now());
  if (manifest->transaction_instant > now + options.max_clock_skew) {
    implausible = fmt::format(
        "the export's transactionTime ({}) is ahead of our clock by more than "
        "sync.maxClockSkewSeconds ({} s)",
        manifest->transaction_time, options.max_clock_skew.count());
  } else if (request.since && manifest->transaction_instant < since->first) {
    implausible = fmt::format("the export's transactionTime ({}) is before the _since asked ({})",
                              manifest->transaction_time, *request.since);
  }

  std::vector<std::pair<BulkType*, const fhir::BulkFile*>> work;
  std::map<std::string, std::size_t> unasked;
  for (const fhir::BulkFile& f : manifest->output) {
    auto it = run.types.find(f.type);
    if (it == run.types.end()) {
      ++unasked[f.type];
      continue;
    }
    it->second->files.push_back(f);
  }
  for (auto& [name, bt] : run.types) {
    for (const auto& f : bt->files) work.emplace_back(bt.get(), &f);
  }
  for (const auto& [type, n] : unasked) {
    run.Warn(fmt::format("{}: the export holds {} file(s) of {}, which was not asked for; not read",
                         source.name, n, type));
  }
  ReadErrorFiles(run, *manifest, with_token, client);
  ReadDeletedFiles(run, *manifest, with_token, client);

  // The files, bulk.parallelDownloads at a time; each worker has its own connection.
  std::size_t workers =
      std::min<std::size_t>(static_cast<std::size_t>(bulk.parallel_downloads), work.size());
  std::atomic<std::size_t> next{0};
  std::mutex stats_mutex;
  auto worker = [&] {
    fhir::BulkExportClient c(ClientOptions(source, options), *auth);
    for (std::size_t k = next++; k < work.size(); k = next++) {
      PullFile(run, *work[k].first, *work[k].second, with_token, c);
    }
    std::lock_guard lock(stats_mutex);
    add_stats(c.stats());
  };
  {
    std::vector<std::jthread> threads;
    for (std::size_t i = 0; i < workers; ++i) threads.emplace_back(worker);
  }

  // Each type: complete only with every file in and nothing against it.
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  for (const auto& type : types) {
    BulkType& bt = *run.types.at(type);
    TypeSync& t = bt.t;
    t.searches = 1;
    t.passes = 1;
    t.seconds = seconds;
    PullMode mode = t.full ? PullMode::kFull : PullMode::kIncremental;
    auto end = [&](PullState state, std::string why) {
      t.state = state;
      t.error = std::move(why);
      std::lock_guard lock(run.mutex);
      if (Status s = store.EndPull(source.name, type, options.run, state, mode, t.error); !s) {
        t.error += fmt::format(" (and recording it failed: {})", s.error().message);
      }
    };
    if (run.Stopped() && bt.error.empty()) {
      bt.error = "stopped: the sync was asked to stop; the next sync starts a new export";
    }
    if (!bt.error.empty()) {
      end(PullState::kFailed,
          fmt::format("{}; what arrived is stored, the cursor stays and nothing is removed",
                      bt.error));
    } else if (!implausible.empty()) {
      end(PullState::kIncomplete,
          fmt::format("{}; what arrived is stored, the cursor stays", implausible));
    } else {
      std::size_t removed = 0;
      std::lock_guard lock(run.mutex);
      Status s = store.InTransaction([&]() -> Status {
        for (const auto& id : bt.deleted) {
          CCM_TRY_ASSIGN(bool existed, store.RemoveResource(source.name, type, id));
          removed += existed ? 1 : 0;
        }
        CCM_TRY(store.SetCursor(source.name, type,
                                SyncCursor{manifest->transaction_time, fingerprint}));
        return store.EndPull(source.name, type, options.run, PullState::kComplete, mode, "");
      });
      if (s) {
        t.state = PullState::kComplete;
        t.removed = removed;
        t.watermark = manifest->transaction_time;
      } else {
        t.state = PullState::kFailed;
        t.error = s.error().message;
        static_cast<void>(
            store.EndPull(source.name, type, options.run, PullState::kFailed, mode, t.error));
      }
    }
    std::lock_guard lock(run.mutex);
    if (observer.on_type_done) observer.on_type_done(t);
  }
  // IG v2.0.0 "Delete a Bulk Data Request": the files are no longer needed. A type that failed
  // is pulled by the next sync's own export (its cursor stayed).
  if (Status s = client.Delete(*status_url); !s) {
    run.Warn(fmt::format("{}: the finished export could not be deleted on the server ({})",
                         source.name, s.error().message));
  }
  forget_export();
  add_stats(client.stats());
  for (const auto& type : types) out.types.push_back(std::move(run.types.at(type)->t));
  out.warnings = std::move(run.warnings);
  out.http = stats;
  return out;
}

}  // namespace ccm::gateway
