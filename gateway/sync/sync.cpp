#include "gateway/sync/sync.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <variant>

#include "fhir/bounded_queue.h"
#include "fhir/datetime.h"
#include "fhir/hash.h"
#include "gateway/sync/bulk_sync.h"
#include "gateway/sync/connection.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;
using Params = std::vector<std::pair<std::string, std::string>>;

// A search is read at most this many times when its result changes while it is read (or the
// server returns fewer resources than its Bundle.total says) before the type is left incomplete.
constexpr std::size_t kMaxPasses = 3;
// Patient ids per search of a patient-list scope (servers limit URL length) and per removal check.
constexpr std::size_t kIdsPerSearch = 40;

// What the server's CapabilityStatement says it can do (R4 §2.38: rest.resource[].type,
// .searchParam[].name; rest.searchParam applies to every type; fhirVersion; format).
struct Capabilities {
  bool known = false;  // false: no CapabilityStatement could be read; assume everything
  std::map<std::string, std::set<std::string>, std::less<>> types;  // type -> search params
  std::set<std::string, std::less<>> common_params;
  std::string fhir_version;
  std::vector<std::string> formats;

  bool Supports(std::string_view type) const { return !known || types.contains(type); }
  bool SearchesLastUpdated(std::string_view type) const {
    if (!known) return true;
    auto it = types.find(type);
    if (it == types.end()) return false;
    // Servers that list no parameters for a type usually just did not enumerate them.
    return it->second.empty() || it->second.contains("_lastUpdated") ||
           common_params.contains("_lastUpdated");
  }
};

Capabilities ReadCapabilities(const Value& cs) {
  Capabilities c;
  c.known = true;
  c.fhir_version = std::string(cs["fhirVersion"].str());
  for (const Value& f : cs["format"].array()) c.formats.emplace_back(f.str());
  for (const Value& rest : cs["rest"].array()) {
    if (rest["mode"].str() != "server") continue;
    for (const Value& p : rest["searchParam"].array()) c.common_params.emplace(p["name"].str());
    for (const Value& r : rest["resource"].array()) {
      auto& params = c.types[std::string(r["type"].str())];
      for (const Value& p : r["searchParam"].array()) params.emplace(p["name"].str());
    }
  }
  return c;
}

// Whether a CapabilityStatement.format entry is JSON (R4 §2.38: "json", "xml", "ttl" or a MIME
// type such as "application/fhir+json; fhirVersion=4.0").
bool IsJsonFormat(std::string_view f) {
  std::string lower;
  for (char ch : f) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::string_view v = lower;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  return v == "json" || v == "application/fhir+json" || v == "application/json" ||
         v == "application/json+fhir";
}

// Why a CapabilityStatement rules the source out, or "" when it does not. R4 servers say
// fhirVersion 4.0.0 or 4.0.1 (R4 §2.38, FHIR version list).
std::string CapabilityProblem(const Capabilities& caps, const std::vector<std::string>& needed) {
  if (!caps.fhir_version.empty() && !caps.fhir_version.starts_with("4.0.")) {
    return fmt::format(
        "the server's CapabilityStatement says FHIR {} (fhirVersion), and ccm-gateway reads FHIR "
        "R4 (4.0.1): point baseUrl at the server's R4 endpoint (often a path ending in /R4)",
        caps.fhir_version);
  }
  if (!caps.formats.empty() &&
      std::none_of(caps.formats.begin(), caps.formats.end(), IsJsonFormat)) {
    std::string list;
    for (const auto& f : caps.formats) list += (list.empty() ? "" : ", ") + f;
    return fmt::format(
        "the server's CapabilityStatement offers the formats {} and no JSON; ccm-gateway reads "
        "FHIR JSON (application/fhir+json): use the server's JSON endpoint",
        list);
  }
  if (std::none_of(needed.begin(), needed.end(),
                   [&](const std::string& t) { return caps.types.contains(t); })) {
    std::string want;
    for (const auto& t : needed) want += (want.empty() ? "" : ", ") + t;
    return fmt::format(
        "the server's CapabilityStatement offers none of the types this source pulls ({}){}; "
        "check baseUrl (it must be the FHIR base, e.g. https://ehr.example.org/fhir/R4) and the "
        "server's configuration",
        want, caps.types.empty() ? " (it lists no resource types at all)" : "");
  }
  return "";
}

std::string ScopeFingerprint(const SourceConfig& src, const std::vector<std::string>& ids) {
  if (src.scope == ScopeKind::kAll) return "all";
  std::uint64_t h = Fnv1a64(src.group);
  for (const auto& id : ids) h = Fnv1a64(id + ",", h);
  return fmt::format("{}:{}:{:016x}", src.scope == ScopeKind::kGroup ? "group" : "patients",
                     src.group, h);
}

std::string WholeSeconds(std::chrono::system_clock::time_point t) {
  return fhir::FormatUtc(
      std::chrono::time_point_cast<fhir::Micros>(std::chrono::floor<std::chrono::seconds>(t)));
}

std::chrono::seconds AbsSeconds(std::chrono::system_clock::duration d) {
  return std::chrono::abs(std::chrono::duration_cast<std::chrono::seconds>(d));
}

// Whether an OperationOutcome reports an error, and what it says: "severity code" of each issue
// and its details.coding codes; the server's own text (diagnostics, details.text) only with
// `diagnostics` (logging.serverDiagnostics), since servers echo patient data there.
struct OutcomeSummary {
  bool error = false;  // an issue of severity error or fatal (or none readable)
  std::string text;
};
OutcomeSummary SummarizeOutcome(std::string_view json, bool diagnostics = false) {
  OutcomeSummary out;
  auto oo = fhir::json::Parse(json);
  if (!oo) {
    out.error = true;  // an unreadable OperationOutcome cannot be taken as "all is well"
    out.text = "an OperationOutcome that is not valid JSON";
    return out;
  }
  for (const Value& issue : (*oo)["issue"].array()) {
    std::string_view severity = issue["severity"].str();
    std::string_view code = issue["code"].str();
    // R4 issue-type codes that say the search was not carried out in full, whatever severity a
    // server gives them: the answer is not the whole result.
    bool cut_short = code == "incomplete" || code == "too-costly" || code == "throttled" ||
                     code == "timeout" || code == "transient" || code == "exception";
    out.error =
        out.error || severity == "error" || severity == "fatal" || severity.empty() || cut_short;
    std::string one =
        fmt::format("{} {}", severity.empty() ? "(no severity)" : fhir::SafeCode(severity),
                    fhir::SafeCode(code));
    for (const Value& c : issue["details"]["coding"].array()) {
      one += fmt::format(" [{}|{}]", fhir::SafeCode(c["system"].str()),
                         fhir::SafeCode(c["code"].str()));
    }
    out.text += (out.text.empty() ? "" : "; ") + one;
  }
  if (out.text.empty()) {
    out.error = true;
    out.text = "an OperationOutcome without issues";
  } else if (diagnostics) {
    out.text = fhir::DescribeOperationOutcome(*oo, true);
  }
  return out;
}

// The patient id a resource of a patient-scoped search belongs to ("" when none is readable):
// the `patient` search parameter of these types reads Patient.id, Condition/Encounter/CarePlan
// .subject and Consent.patient (R4 search parameter clinical-patient).
PullMode ModeOf(const TypeSync& t) { return t.full ? PullMode::kFull : PullMode::kIncremental; }

std::string PatientIdOf(const Value& r) {
  if (r["resourceType"].str() == "Patient") return std::string(r["id"].str());
  for (const char* element : {"subject", "patient"}) {
    std::string_view ref = r[element]["reference"].str();
    auto at = ref.rfind("Patient/");
    if (at == std::string_view::npos || (at > 0 && ref[at - 1] != '/')) continue;
    ref.remove_prefix(at + 8);
    return std::string(ref.substr(0, ref.find('/')));  // drop a trailing /_history/n
  }
  return "";
}

}  // namespace

namespace {

// One pass over one search: what it read, for the completeness checks.
struct Pass {
  std::optional<std::size_t> total;  // Bundle.total of the first page
  std::vector<std::uint64_t> ids;  // hashes of the ids of the resources read (memory: 8 bytes each)
  std::size_t pages = 0;
  std::optional<fhir::TimePoint> newest;  // the newest meta.lastUpdated read

  std::size_t Distinct() {
    std::sort(ids.begin(), ids.end());
    return static_cast<std::size_t>(std::unique(ids.begin(), ids.end()) - ids.begin());
  }
};

// How one search ended.
struct SearchOutcome {
  bool done = false;
  std::string incomplete;  // why it is not provably complete ("" when it is)
  std::optional<std::size_t> total;
  std::size_t distinct = 0, passes = 0;
  std::optional<fhir::TimePoint> newest;
};

// Everything the workers of one source share. Members used by several threads are guarded by
// `mutex` (the store, the observer, the report's warnings).
struct SourceRun {
  const SourceConfig& src;
  StateStore& store;
  const SyncOptions& options;
  const SyncObserver& observer;
  std::shared_ptr<fhir::TokenSource> auth;
  Capabilities caps;
  std::vector<std::string> patient_ids;  // for group/patient scopes, sorted
  std::string fingerprint;
  // The start of the second in which the source's sync began, by the server's clock (its Date):
  // every search is bounded to `_lastUpdated=lt` it, and the cursor moves to it (minus the safety
  // margin). nullopt when the server gave no usable Date: then searches are unbounded and cursors
  // do not move.
  std::optional<std::chrono::system_clock::time_point> bound;
  struct Stored {
    std::optional<SyncCursor> cursor;
    std::size_t rows = 0;
  };
  std::map<std::string, Stored, std::less<>> stored;  // per type to pull, before the run
  std::mutex mutex;
  std::vector<std::string> warnings;

  fhir::FhirClientOptions ClientOptions() const {
    fhir::FhirClientOptions o;
    o.base_url = src.base_url;
    o.http = src.http;
    o.http.user_agent = fmt::format("ccm-gateway/{} (+FHIR R4 CCM sync)", CCM_VERSION);
    o.retry = src.retry;
    // The sync stops at the limit itself (OnPage), to say which setting to raise; the client's
    // own guard stays one page behind.
    o.max_pages = src.max_pages_per_search + 1;
    o.server_diagnostics = src.server_diagnostics;
    return o;
  }

  void Warn(std::string w) {
    std::lock_guard lock(mutex);
    WarnLocked(std::move(w));
  }
  void WarnLocked(std::string w) {
    if (observer.on_warning) observer.on_warning(w);
    warnings.push_back(std::move(w));
  }

  bool InScope(std::string_view type, std::string_view patient) const {
    if (src.scope == ScopeKind::kAll || Unscoped(type)) return true;
    return std::binary_search(patient_ids.begin(), patient_ids.end(), patient);
  }
  static bool Unscoped(std::string_view type) {
    return type == "Practitioner" || type == "PractitionerRole" || type == "Organization";
  }

  // The searches that cover the scope for `type` (several when the patient list is long: servers
  // limit URL length, so ids go in chunks).
  std::vector<Params> Queries(const std::string& type, const std::optional<SyncCursor>& cursor,
                              bool incremental) const {
    // Parameters in the order count, scope, time (servers do not care; logs read better).
    Params when;
    // R4 §3.1.1.4.4.1: on a whole-second value, ge is "at or after that second began" and lt
    // "before it began": the two are exact complements, so consecutive pulls leave no gap.
    if (incremental) when.emplace_back("_lastUpdated", "ge" + cursor->watermark);
    // Nothing changed once the pull has started can enter the result while it is paged.
    if (bound) when.emplace_back("_lastUpdated", "lt" + WholeSeconds(*bound));
    Params count = {{"_count", std::to_string(src.page_size)}};
    auto with = [&](Params p) {
      p.insert(p.begin(), count.begin(), count.end());
      p.insert(p.end(), when.begin(), when.end());
      return p;
    };
    if (src.scope == ScopeKind::kAll || Unscoped(type)) return {with({})};
    std::vector<Params> out;
    for (std::size_t i = 0; i < patient_ids.size(); i += kIdsPerSearch) {
      std::string list;
      for (std::size_t j = i; j < std::min(patient_ids.size(), i + kIdsPerSearch); ++j) {
        if (!list.empty()) list += ',';
        list += type == "Patient" ? patient_ids[j] : "Patient/" + patient_ids[j];
      }
      out.push_back(with({{type == "Patient" ? "_id" : "patient", list}}));
    }
    return out;
  }

  // Stores one type's pages on a thread of its own, so that fetching and scanning the next pages
  // never wait for SQLite, in transactions of about kCommitBytes (or what arrived within
  // kMaxDelay). A commit per 100-resource page rewrote the same half-filled B-tree pages into
  // the WAL again and again, CPU time that on a small machine is taken from the server too
  // (docs/benchmarks.md). Committing later loses nothing: the cursor moves only once every page
  // is stored, so a run that dies with pages still queued pulls them again.
  class PageWriter {
   public:
    struct Item {
      std::string_view id;  // views of `Page::response`, which therefore never moves
      VersionStamp stamp;
      std::string_view json;
    };
    struct Page {
      std::unique_ptr<fhir::FhirResponse> response;
      std::vector<Item> items;
      std::chrono::steady_clock::time_point arrived{};  // set by Add
    };

    PageWriter(SourceRun& run, TypeSync& t)
        : run_(run),
          t_(t),
          queue_(kMaxQueuedBytes, [](const Page& p) { return p.response->bytes; }),
          thread_([this] { Loop(); }) {}
    PageWriter(const PageWriter&) = delete;
    PageWriter& operator=(const PageWriter&) = delete;
    ~PageWriter() { static_cast<void>(Finish()); }

    // Queues a page (blocking while kMaxQueuedBytes wait). An error is the writer's: a store
    // that failed stops the pull.
    Status Add(Page page) {
      page.arrived = std::chrono::steady_clock::now();
      if (queue_.Push(std::move(page))) return {};
      // Closed: by a failed store (error_ was set before the queue was closed), or by Finish().
      if (!error_.empty()) return MakeError(Errc::kIo, error_);
      return MakeError(Errc::kIo, "the store's writer has finished");
    }

    // Stores what is queued and stops the thread; the first store error, if any.
    Status Finish() {
      queue_.Close();
      if (thread_.joinable()) thread_.join();
      if (!error_.empty()) return MakeError(Errc::kIo, error_);
      return {};
    }

   private:
    static constexpr std::size_t kCommitBytes = std::size_t{1} << 20;
    static constexpr std::size_t kMaxQueuedBytes = std::size_t{64} << 20;
    static constexpr std::chrono::milliseconds kMaxDelay{100};

    void Loop() {
      std::optional<std::chrono::steady_clock::time_point> started;  // the type's first page
      // A slow server must not keep pages out of the store for long: they are stored once
      // kCommitBytes are queued or the first has waited kMaxDelay.
      for (;;) {
        std::vector<Page> batch = queue_.PopWhenReady(kCommitBytes, kMaxDelay);
        if (batch.empty()) return;  // finished, and everything is stored
        if (!started) started = batch.front().arrived;
        std::size_t bytes = 0;
        for (const Page& page : batch) bytes += page.response->bytes;
        if (Status s = Store(batch, bytes, *started); !s) {
          error_ = s.error().message;
          queue_.Close();  // after error_: Add reads it once its push is refused
          return;
        }
      }
    }

    // `started`: when the type's first page arrived (the clock of the progress figures).
    Status Store(const std::vector<Page>& batch, std::size_t bytes,
                 std::chrono::steady_clock::time_point started) {
      std::lock_guard lock(run_.mutex);
      TypeSync& t = t_;
      auto store_items = [&]() -> Status {
        for (const Page& page : batch) {
          for (const Item& it : page.items) {
            // A full pull reads what the server holds now: its copy wins even when its version
            // is older than the stored one (a restore); an incremental one keeps the newest.
            CCM_TRY_ASSIGN(
                UpsertOutcome o,
                run_.store.Upsert(run_.src.name, t.type, it.id, it.stamp, it.json, run_.options.run,
                                  t.full ? UpsertMode::kTrustServer : UpsertMode::kKeepNewest));
            t.Count(o);
          }
        }
        return {};
      };
      CCM_TRY(run_.store.InTransaction(store_items));
      for (const Page& page : batch) {
        ++t.pages;
        t.resources += page.items.size();
      }
      t.bytes += bytes;
      t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (run_.observer.on_page) run_.observer.on_page(t);
      return {};
    }

    SourceRun& run_;
    TypeSync& t_;  // its counters are written by this thread only until Finish() returns
    BoundedQueue<Page> queue_;
    std::string error_;   // written by the writer thread before it closes queue_
    std::thread thread_;  // last: starts once everything above is initialised
  };

  // One type's pull: Prepare() reads what the store held and starts the type's writer;
  // FetchQuery() reads one of its searches (a type has several when the scope is a patient list,
  // in chunks, or when it is split into _lastUpdated windows) and hands the pages to the writer,
  // on any worker, concurrently; Complete() waits until the writer has stored everything, decides
  // whether the pull is complete, and then removes what the server no longer has and moves the
  // cursor. Workers go on with other searches while a type completes.
  struct TypePull {
    TypeSync t;
    std::vector<Params> queries;
    std::vector<SearchOutcome> outcomes;    // per query, each written by the worker that reads it
    std::atomic<std::size_t> remaining{0};  // searches not finished yet
    std::atomic<std::size_t> rejected{0};   // entries skipped (another type, no id)
    std::optional<SyncCursor> cursor;
    bool incremental = false;
    std::size_t rows_before = 0;
    std::mutex m;       // guards what the searches share below
    std::string error;  // the first failed search's (t.error is set from it in Complete())
    std::optional<std::chrono::steady_clock::time_point> started;
    std::unique_ptr<PageWriter> writer;  // null once finished
  };

  // A pull over every patient is one chain of pages (each page's next link comes with it), so
  // one connection carries a whole type however many are allowed. Split() cuts such a search into
  // windows of meta.lastUpdated (R4 §3.1.1.5.7 _lastUpdated, with the date prefixes lt and ge of
  // §3.1.1.4.4.1): [-, b1), [b1, b2), ..., [bn-1, T), pulled concurrently. The windows partition
  // the time line below the source's bound T, so together they match exactly what the one search
  // matches whatever the bounds are; two probes (_sort=_lastUpdated and -_lastUpdated, _count=1:
  // the earliest and the latest match) only place the bounds evenly in time. Bounds are whole
  // seconds, as the watermark is (servers differ on fractional ones), so resources that all
  // changed within one second stay one search. A resource changed while the windows are read
  // leaves every window (its new lastUpdated is after T) and comes with the next sync.
  bool Splittable(const TypePull& pull) const {
    return src.split_by_last_updated && src.max_concurrency > 1 && pull.queries.size() == 1 &&
           caps.SearchesLastUpdated(pull.t.type);
  }

  void Split(TypePull& pull, fhir::FhirClient& client) {
    const std::string& type = pull.t.type;
    const Params base = pull.queries.front();
    std::optional<std::size_t> total;  // Bundle.total, when the server gives it
    // The lastUpdated of the first match in `sort` order; nullopt when there is none or the
    // probe failed (then the search stays whole; a refusal is worth a warning).
    auto probe = [&](std::string_view sort) -> std::optional<fhir::TimePoint> {
      Params q = {{"_count", "1"}, {"_sort", std::string(sort)}};
      for (const auto& [k, v] : base) {
        if (k != "_count") q.emplace_back(k, v);
      }
      auto bundle = client.SearchFirstPage(type, q);
      if (!bundle) {
        if (bundle.error().is(Errc::kClientError) || bundle.error().is(Errc::kInvalidResource)) {
          Warn(
              fmt::format("{}: {}: the search cannot be split into _lastUpdated windows ({}); "
                          "it is pulled over one connection (set splitByLastUpdated to false to "
                          "skip the attempt)",
                          src.name, type, bundle.error().message));
        }
        return std::nullopt;
      }
      std::string_view t = (*bundle)["total"].number_text();
      std::size_t n = 0;
      if (!t.empty() && std::from_chars(t.data(), t.data() + t.size(), n).ec == std::errc{}) {
        total = n;
      }
      for (const Value& e : (*bundle)["entry"].array()) {
        const Value& r = e["resource"];
        if (r["resourceType"].str() != type) continue;
        auto instant = fhir::FhirDateTime::ParseInstant(r["meta"]["lastUpdated"].str());
        if (instant) return instant->Earliest();
      }
      return std::nullopt;
    };
    auto first = probe("_lastUpdated");
    if (!first) return;
    // Worth splitting only where each window has a few pages to pull.
    constexpr std::size_t kMinPagesPerWindow = 4;
    std::size_t windows = static_cast<std::size_t>(src.max_concurrency);
    if (total) {
      windows = std::min(windows,
                         *total / (kMinPagesPerWindow * static_cast<std::size_t>(src.page_size)));
    }
    if (windows < 2) return;
    auto last = probe("-_lastUpdated");
    if (!last) return;
    // A server that ignores _sort still gives two matches: order them.
    auto lo = std::chrono::floor<std::chrono::seconds>(std::min(*first, *last));
    auto hi = std::chrono::floor<std::chrono::seconds>(std::max(*first, *last));
    // Possible bounds: the whole seconds in (lo, hi].
    auto seconds = static_cast<std::size_t>((hi - lo).count());
    windows = std::min(windows, seconds + 1);
    if (windows < 2) return;
    std::vector<std::string> bounds;
    for (std::size_t i = 1; i < windows; ++i) {
      std::size_t step = windows == seconds + 1 ? i : seconds * i / windows;
      bounds.push_back(WholeSeconds(lo + std::chrono::seconds(step)));
    }
    std::vector<Params> split;
    for (std::size_t i = 0; i < windows; ++i) {
      Params q = {base.front()};  // _count, then the window, then the rest
      if (i > 0) q.emplace_back("_lastUpdated", "ge" + bounds[i - 1]);
      if (i + 1 < windows) q.emplace_back("_lastUpdated", "lt" + bounds[i]);
      q.insert(q.end(), base.begin() + 1, base.end());
      split.push_back(std::move(q));
    }
    pull.queries = std::move(split);
    pull.remaining = pull.queries.size();
  }

  // Called with `mutex` held (the writer threads of earlier types may be storing).
  std::unique_ptr<TypePull> Prepare(const std::string& type) {
    auto pull = std::make_unique<TypePull>();
    TypeSync& t = pull->t;
    t.source = src.name;
    t.type = type;
    // What the store held for the type before the run (read up front: while another type's pages
    // are being written, the store is busy).
    const Stored& before = stored.at(type);
    pull->cursor = before.cursor;
    pull->rows_before = before.rows;
    bool can_increment = caps.SearchesLastUpdated(type);
    pull->incremental =
        !options.full && pull->cursor && pull->cursor->scope == fingerprint && can_increment;
    t.full = !pull->incremental;
    if (!can_increment) {
      WarnLocked(fmt::format("{}: the server does not list _lastUpdated for {}; pulling it in full",
                             src.name, type));
    }
    pull->queries = Queries(type, pull->cursor, pull->incremental);
    pull->remaining = pull->queries.size();
    pull->writer = std::make_unique<PageWriter>(*this, t);
    return pull;
  }

  // Checks one page of a search of `type` and keeps what it holds (see sync.h for what fails a
  // type); records into `pass` what the completeness checks need.
  bool Stopped() const {
    return options.stop != nullptr && options.stop->load(std::memory_order_relaxed);
  }
  static Error StopError() {
    return Error(Errc::kConflict,
                 "stopped: the sync was asked to stop (the service is shutting "
                 "down); the next sync resumes from the cursor");
  }

  Status OnPage(TypePull& pull, Pass& pass, fhir::FhirResponse& response,
                const fhir::PageInfo& page, const std::set<std::string, std::less<>>* scope) {
    const std::string& type = pull.t.type;
    if (Stopped()) return StopError();
    if (response.page.entry_not_array) {
      return MakeError(
          Errc::kServerError,
          fmt::format("page {} of the {} search has a Bundle.entry that is not a list; "
                      "not a search result",
                      page.number, type));
    }
    if (page.number >= src.max_pages_per_search && !response.page.next_url.empty()) {
      return MakeError(Errc::kServerError,
                       fmt::format("more than {} pages in one {} search; stopped (raise "
                                   "sources[].maxPagesPerSearch if the server really holds that "
                                   "many)",
                                   src.max_pages_per_search, type));
    }
    if (page.number == 1) pass.total = response.page.total;
    ++pass.pages;
    PageWriter::Page kept{std::make_unique<fhir::FhirResponse>(std::move(response)), {}};
    std::string_view text = kept.response->text;
    const auto& entries = kept.response->page.entries;
    std::size_t rejected = 0;
    std::string stray;  // the first entry type that is not the searched one
    for (const fhir::ScannedEntry& e : entries) {
      if (!e.has_resource) {
        ++rejected;
        continue;
      }
      std::string_view resource = text.substr(e.begin, e.end - e.begin);
      if (e.resource_type == "OperationOutcome" || e.search_mode == "outcome") {
        // R4 §3.1.1.4.1 (search.mode "outcome"): the server's comments on the search. An error
        // or fatal issue means the search was not (fully) done, whatever the HTTP status said.
        OutcomeSummary o = SummarizeOutcome(resource, src.server_diagnostics);
        if (o.error) {
          return MakeError(Errc::kServerError,
                           fmt::format("page {} of the {} search holds an OperationOutcome that "
                                       "reports an error or a result cut short ({}): the server "
                                       "did not answer the search in full, so nothing of it "
                                       "counts as complete",
                                       page.number, type, o.text));
        }
        Warn(fmt::format("{}: {} search page {}: the server notes: {}", src.name, type, page.number,
                         o.text));
        continue;
      }
      if (e.resource_type != type || e.id.empty()) {
        if (stray.empty()) stray = e.resource_type.empty() ? "(no resourceType)" : e.resource_type;
        ++rejected;
        continue;
      }
      // A patient-scoped search answers for its patients only: a server that ignored the
      // `patient` parameter would otherwise pour every patient's records into the store.
      if (scope != nullptr) {
        auto parsed = fhir::json::Parse(resource);
        if (!parsed || !scope->contains(PatientIdOf(*parsed))) {
          if (stray.empty()) stray = "a resource of a patient not searched for";
          ++rejected;
          continue;
        }
      }
      kept.items.push_back({e.id, StampOf(e.version_id, e.last_updated), resource});
      pass.ids.push_back(std::hash<std::string_view>{}(e.id));
      if (const auto& lu = kept.items.back().stamp.last_updated; lu) {
        if (!pass.newest || *lu > *pass.newest) pass.newest = lu;
      }
    }
    if (rejected > 0) {
      pull.rejected += rejected;
      if (rejected == entries.size()) {
        return MakeError(
            Errc::kServerError,
            fmt::format("page {} of the {} search holds {} entr{} and none is a {} with an id{} "
                        "(e.g. {}); a page of something else is not a search result",
                        page.number, type, entries.size(), entries.size() == 1 ? "y" : "ies", type,
                        scope != nullptr ? " of the searched patients" : "", stray));
      }
      Warn(
          fmt::format("{}: {} search page {}: {} of {} entries skipped: not a {} with an id{} "
                      "(e.g. {})",
                      src.name, type, page.number, rejected, entries.size(), type,
                      scope != nullptr ? " of the searched patients" : "", stray));
    }
    return pull.writer->Add(std::move(kept));
  }

  // The number of matches of `q` now (`_summary=count`, R4 §3.1.1.5.8), or nullopt when the
  // server does not say.
  static std::optional<std::size_t> CountNow(std::string_view type, const Params& q,
                                             fhir::FhirClient& client) {
    Params cq;
    for (const auto& [k, v] : q) {
      if (k != "_count") cq.emplace_back(k, v);
    }
    cq.emplace_back("_summary", "count");
    auto bundle = client.SearchFirstPage(type, cq);
    if (!bundle) return std::nullopt;
    for (const Value& e : (*bundle)["entry"].array()) {
      if (e["resource"]["resourceType"].str() == "OperationOutcome" &&
          SummarizeOutcome(fhir::json::Serialize(e["resource"])).error) {
        return std::nullopt;
      }
    }
    std::string_view t = (*bundle)["total"].number_text();
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size()) return std::nullopt;
    return n;
  }

  // Reads search `j` of `pull`'s type, again while it cannot be shown complete (up to
  // kMaxPasses); a failure becomes the type's error (the first one wins) and the type's other
  // searches are not started.
  void FetchQuery(TypePull& pull, std::size_t j, fhir::FhirClient& client) {
    const std::string& type = pull.t.type;
    const Params& q = pull.queries[j];
    {
      std::lock_guard lock(pull.m);
      if (pull.error.empty() && Stopped()) pull.error = StopError().message;
      if (!pull.error.empty()) return;
      if (!pull.started) pull.started = std::chrono::steady_clock::now();
    }
    SearchOutcome& out = pull.outcomes[j];
    // The patients a scoped search asked for (`patient=Patient/a,...` or Patient's `_id=a,...`).
    std::optional<std::set<std::string, std::less<>>> scope;
    for (const auto& [k, v] : q) {
      if (k != "patient" && !(k == "_id" && type == "Patient")) continue;
      scope.emplace();
      std::string_view list = v;
      while (!list.empty()) {
        std::string_view one = list.substr(0, list.find(','));
        list.remove_prefix(std::min(list.size(), one.size() + 1));
        if (one.starts_with("Patient/")) one.remove_prefix(8);
        scope->emplace(one);
      }
    }
    for (std::size_t n = 1; n <= kMaxPasses; ++n) {
      Pass pass;
      // Pages are scanned, not parsed into trees: each resource is stored as the exact text the
      // server sent (nothing re-serialised), which is also what makes a pull keep pace with the
      // server (docs/benchmarks.md).
      Status s =
          client.SearchRaw(type, q, [&](fhir::FhirResponse& response, const fhir::PageInfo& page) {
            return OnPage(pull, pass, response, page, scope ? &*scope : nullptr);
          });
      out.passes = n;
      if (!s) {
        // What did arrive is still stored: a later run then finds it unchanged.
        std::lock_guard lock(pull.m);
        if (pull.error.empty()) pull.error = s.error().message;
        return;
      }
      std::size_t read = pass.ids.size();
      out.total = pass.total;
      out.distinct = pass.Distinct();
      bool repeated = out.distinct < read;  // a resource met twice: the result moved
      if (pass.newest && (!out.newest || *pass.newest > *out.newest)) out.newest = pass.newest;
      // The proof (sync.h): a page boundary skips a resource only when the result shifts while
      // it is paged. Below the bound, a resource that leaves the result (deleted, or changed and
      // so moved past the bound) makes the total at the end differ from the one at the first
      // page; one that moves within it is met twice. One page is one answer: nothing to compare.
      if (!bound && pass.pages > 1) {
        // Without the time bound a change during paging can hide an unchanged resource with no
        // trace in the counts: such a search cannot be shown complete, and reading it again
        // would not change that.
        out.incomplete =
            "the server gave no usable clock (Date), so a search of several pages cannot be "
            "shown complete";
        break;
      }
      std::optional<std::size_t> at_end;
      if (pass.pages > 1 && pass.total) at_end = CountNow(type, q, client);
      if (pass.total && at_end && *at_end != *pass.total) {
        out.incomplete = fmt::format(
            "its result changed while it was read (Bundle.total {} at the first page, {} at the "
            "end)",
            *pass.total, *at_end);
      } else if (pass.pages > 1 && repeated) {
        out.incomplete = fmt::format(
            "its result moved while it was read ({} resource(s) met twice)", read - out.distinct);
      } else if (pass.total && out.distinct < *pass.total) {
        out.incomplete = fmt::format(
            "the server said {} match(es) (Bundle.total) and returned {} distinct resource(s)",
            *pass.total, out.distinct);
      } else {
        out.incomplete.clear();
        break;
      }
      if (n < kMaxPasses) {
        Warn(fmt::format("{}: {}: a search is read again: {}", src.name, type, out.incomplete));
      }
    }
    out.done = true;
  }

  // Before a full pull removes what it did not see: for each candidate, the server's own answer
  // by id. What it still has (in scope) is stored, not removed; when it changed before the pull's
  // bound, paging missed it (`recovered`). What it no longer has goes in `gone`, unless that is
  // more than sync.maxDeletePercent of the type (the mass-delete guard).
  Status PlanRemovals(TypePull& pull, std::vector<std::string>& gone) {
    TypeSync& t = pull.t;
    std::vector<std::string> candidates;
    {
      std::lock_guard lock(mutex);
      CCM_TRY_ASSIGN(candidates, store.UnseenIds(src.name, t.type, options.run));
    }
    if (candidates.empty()) return {};
    // Asked by id, without the time bound: the server's present state of each candidate.
    fhir::FhirClient client(ClientOptions(), auth);
    std::set<std::string, std::less<>> present, missed, outside;
    struct Found {
      std::unique_ptr<fhir::FhirResponse> response;
      std::vector<PageWriter::Item> items;
    };
    std::vector<Found> found;
    for (std::size_t i = 0; i < candidates.size(); i += kIdsPerSearch) {
      std::string list;
      for (std::size_t k = i; k < std::min(candidates.size(), i + kIdsPerSearch); ++k) {
        list += (list.empty() ? "" : ",") + candidates[k];
      }
      Status s = client.SearchRaw(
          t.type, {{"_id", list}, {"_count", std::to_string(kIdsPerSearch)}},
          [&](fhir::FhirResponse& response, const fhir::PageInfo& page) -> Status {
            Found f{std::make_unique<fhir::FhirResponse>(std::move(response)), {}};
            std::string_view text = f.response->text;
            for (const fhir::ScannedEntry& e : f.response->page.entries) {
              std::string_view resource = text.substr(e.begin, e.end - e.begin);
              if (e.has_resource &&
                  (e.resource_type == "OperationOutcome" || e.search_mode == "outcome") &&
                  SummarizeOutcome(resource).error) {
                return MakeError(Errc::kServerError,
                                 fmt::format("page {} of the check by id holds an error "
                                             "OperationOutcome",
                                             page.number));
              }
              if (!e.has_resource || e.resource_type != t.type || e.id.empty()) continue;
              if (src.scope != ScopeKind::kAll && !Unscoped(t.type)) {
                auto parsed = fhir::json::Parse(resource);
                if (!parsed || !InScope(t.type, PatientIdOf(*parsed))) {
                  // Its patient left the scope, but the resource exists: it stays as stored
                  // (the record of months already billed), no longer kept current.
                  outside.emplace(e.id);
                  continue;
                }
              }
              present.emplace(e.id);
              f.items.push_back({e.id, StampOf(e.version_id, e.last_updated), resource});
              // Changed at or after the bound: outside this pull's window by design (it comes
              // with the next sync), not a resource that paging missed.
              const auto& lu = f.items.back().stamp.last_updated;
              if (!bound || !lu || *lu < *bound) missed.emplace(e.id);
            }
            found.push_back(std::move(f));
            return Status{};
          });
      if (!s) {
        return Error(s.error().code,
                     fmt::format("before removing {} {} resource(s) the server no longer "
                                 "returned, asking it for them by id failed ({}); nothing was "
                                 "removed",
                                 candidates.size(), t.type, s.error().message));
      }
    }
    for (auto& id : candidates) {
      if (!present.contains(id) && !outside.contains(id)) gone.push_back(std::move(id));
    }
    // The guard counts what the server confirmed gone: candidates that merely changed after the
    // bound (an edit as the pull started) are still there.
    std::size_t rows = std::max<std::size_t>(pull.rows_before, 1);
    if (!options.allow_mass_delete &&
        gone.size() * 100 > rows * static_cast<std::size_t>(options.max_delete_percent)) {
      std::size_t n = gone.size();
      gone.clear();
      return MakeError(
          Errc::kConflict,
          fmt::format("this full pull would remove {} of the {} stored {} resource(s) ({:.1f} %, "
                      "more than sync.maxDeletePercent = {} %); nothing was removed. If the "
                      "server really no longer has them (a scope change, a purge), run the sync "
                      "again with --allow-mass-delete",
                      n, pull.rows_before, t.type,
                      100.0 * static_cast<double>(n) / static_cast<double>(rows),
                      options.max_delete_percent));
    }
    if (present.empty()) return {};
    std::lock_guard lock(mutex);
    auto keep = [&]() -> Status {
      for (const Found& f : found) {
        for (const PageWriter::Item& it : f.items) {
          if (!present.contains(it.id)) continue;
          CCM_TRY_ASSIGN(UpsertOutcome o, store.Upsert(src.name, t.type, it.id, it.stamp, it.json,
                                                       options.run, UpsertMode::kTrustServer));
          if (o == UpsertOutcome::kUpdated) ++t.updated;
          if (o == UpsertOutcome::kRolledBack) ++t.rolled_back;
        }
      }
      return Status{};
    };
    CCM_TRY(store.InTransaction(keep));
    t.recovered = missed.size();
    return {};
  }

  // Records the outcome of a type that is not complete (under `mutex`).
  TypeSync EndUnfinished(TypePull& pull, PullState state) {
    TypeSync& t = pull.t;
    t.state = state;
    std::lock_guard lock(mutex);
    if (Status s = store.EndPull(src.name, t.type, options.run, state, ModeOf(t), t.error); !s) {
      t.error += fmt::format(" (and recording it failed: {})", s.error().message);
    }
    return std::move(t);
  }

  TypeSync Complete(TypePull& pull) {
    TypeSync& t = pull.t;
    t.error = pull.error;  // every search has returned: no lock needed
    if (pull.writer) {
      Status written = pull.writer->Finish();
      pull.writer.reset();
      if (!written && t.error.empty()) t.error = written.error().message;
    }
    t.rejected = pull.rejected;
    t.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                      pull.started.value_or(std::chrono::steady_clock::now()))
            .count();
    if (!t.error.empty()) return EndUnfinished(pull, PullState::kFailed);
    std::string incomplete;
    std::optional<fhir::TimePoint> newest;
    bool totals = true;
    std::size_t total = 0;
    for (std::size_t j = 0; j < pull.outcomes.size(); ++j) {
      const SearchOutcome& o = pull.outcomes[j];
      t.passes += o.passes;
      t.distinct += o.distinct;
      totals = totals && o.total.has_value();
      total += o.total.value_or(0);
      if (o.newest && (!newest || *o.newest > *newest)) newest = o.newest;
      if (!o.incomplete.empty() && incomplete.empty()) {
        incomplete = pull.outcomes.size() == 1 ? o.incomplete
                                               : fmt::format("search {} of {}: {}", j + 1,
                                                             pull.outcomes.size(), o.incomplete);
      }
    }
    if (totals && !pull.outcomes.empty()) t.total = total;
    if (!incomplete.empty()) {
      t.error = fmt::format(
          "incomplete after {} read(s): {}; what arrived is stored, the cursor stays and nothing "
          "is removed",
          kMaxPasses, incomplete);
      return EndUnfinished(pull, PullState::kIncomplete);
    }
    // A resource changed at or after the bound means the server did not apply `_lastUpdated=lt`:
    // the premise of the completeness proof is gone.
    if (bound && newest && *newest >= *bound) {
      t.error = fmt::format(
          "the server returned a {} last updated at {}, at or after the pull's bound ({}): it "
          "did not apply _lastUpdated=lt, so the pull cannot be shown complete; what arrived is "
          "stored, the cursor stays and nothing is removed",
          t.type, fhir::FormatUtc(*newest), WholeSeconds(*bound));
      return EndUnfinished(pull, PullState::kIncomplete);
    }
    // The cursor: the server's clock at the start, minus the safety margin (only a believable
    // clock becomes a bound, SetBound).
    std::optional<std::string> watermark;
    if (bound) {
      std::string w = WholeSeconds(*bound - src.safety_margin);
      if (pull.incremental && pull.cursor->watermark > w) w = pull.cursor->watermark;
      watermark = w;
    }
    std::vector<std::string> gone;
    if (t.full && pull.rows_before > 0) {
      if (Status s = PlanRemovals(pull, gone); !s) {
        t.error = s.error().message;
        return EndUnfinished(pull, PullState::kFailed);
      }
      if (t.recovered > 0) {
        t.error = fmt::format(
            "paging missed {} {} resource(s) the server still has (found when asked for them by "
            "id, and now stored); the cursor stays and nothing is removed, so the next sync reads "
            "the type again",
            t.recovered, t.type);
        return EndUnfinished(pull, PullState::kIncomplete);
      }
    }
    std::lock_guard lock(mutex);
    std::size_t removed = 0;
    auto finish = [&]() -> Status {
      for (const auto& id : gone) {
        CCM_TRY_ASSIGN(bool existed, store.RemoveResource(src.name, t.type, id));
        removed += existed ? 1 : 0;
      }
      if (watermark)
        CCM_TRY(store.SetCursor(src.name, t.type, SyncCursor{*watermark, fingerprint}));
      return store.EndPull(src.name, t.type, options.run, PullState::kComplete, ModeOf(t), "");
    };
    if (Status s = store.InTransaction(finish); !s) {
      t.error = s.error().message;
      t.state = PullState::kFailed;
      static_cast<void>(
          store.EndPull(src.name, t.type, options.run, PullState::kFailed, ModeOf(t), t.error));
      return std::move(t);
    }
    t.removed = removed;
    t.state = PullState::kComplete;
    if (watermark) t.watermark = *watermark;
    return std::move(t);
  }
};

}  // namespace

void TypeSync::Count(UpsertOutcome o) {
  switch (o) {
    case UpsertOutcome::kInserted:
      ++inserted;
      break;
    case UpsertOutcome::kUpdated:
      ++updated;
      break;
    case UpsertOutcome::kUnchanged:
      ++unchanged;
      break;
    case UpsertOutcome::kOlder:
      ++older;
      break;
    case UpsertOutcome::kRolledBack:
      ++rolled_back;
      break;
  }
}

bool SourceSync::ok() const {
  return error.empty() && std::all_of(types.begin(), types.end(), [](const TypeSync& t) {
           return t.state == PullState::kComplete || t.state == PullState::kNotOffered;
         });
}

namespace {

// The server's clock from a response's Date header, if it is believable (within `skew` of
// ours), as the start of its whole second; else why not.
std::variant<std::chrono::system_clock::time_point, std::string> ClockOf(
    const fhir::FhirResponse& response, std::chrono::seconds skew) {
  if (!response.date) return std::string("the server sends no Date header");
  auto ours = std::chrono::system_clock::now();
  if (AbsSeconds(*response.date - ours) > skew) {
    return fmt::format(
        "the server's clock (Date: {}) is {} s from ours ({}), more than "
        "sync.maxClockSkewSeconds ({} s)",
        WholeSeconds(*response.date), AbsSeconds(*response.date - ours).count(), WholeSeconds(ours),
        skew.count());
  }
  // The Date has whole seconds and the pull starts somewhere within that second: a change later
  // in the same second may come after the page that would hold it was read, so the pull answers
  // for what changed before the second began (the next sync reads from there on).
  return std::chrono::floor<std::chrono::seconds>(*response.date);
}

// The source's bound: from the CapabilityStatement's answer, else (a cached or clockless
// metadata answer) from a one-resource search, which no cache should serve.
void SetBound(SourceRun& run, fhir::FhirClient& client, const fhir::FhirResponse* metadata,
              std::string_view probe_type) {
  std::string why = "the CapabilityStatement could not be read";
  if (metadata != nullptr) {
    auto clock = ClockOf(*metadata, run.options.max_clock_skew);
    if (auto* t = std::get_if<std::chrono::system_clock::time_point>(&clock)) {
      run.bound = *t;
      return;
    }
    why = std::get<std::string>(clock);
  }
  if (auto probe = client.Get(fmt::format("{}?_count=1", fhir::EncodeQueryValue(probe_type)));
      probe) {
    auto clock = ClockOf(*probe, run.options.max_clock_skew);
    if (auto* t = std::get_if<std::chrono::system_clock::time_point>(&clock)) {
      run.bound = *t;
      return;
    }
    why = std::get<std::string>(clock);
  }
  run.Warn(fmt::format(
      "{}: {}; without a believable server clock searches are not time-bounded, searches of "
      "several pages cannot be shown complete (bill will refuse) and cursors do not move (check "
      "NTP on both machines)",
      run.src.name, why));
}

// Group.member.entity (R4 §8.14) that are Patients and members now: not `inactive`, and within
// `period` when one is given. An inactive Group (Group.active = false) is no panel to pull.
Status ReadGroupMembers(fhir::FhirClient& client, SourceRun& run) {
  const SourceConfig& source = run.src;
  std::string id = source.group.substr(6);
  auto group = client.Read("Group", id);
  if (!group) {
    return MakeError(group.error().code.value() == 0 ? Errc::kInternal : Errc::kServerError,
                     fmt::format("scope: cannot read {}: {}", source.group, group.error().message));
  }
  if ((*group)["resourceType"].str() != "Group") {
    return MakeError(Errc::kInvalidResource,
                     fmt::format("scope: {} answered with a {}, not a Group", source.group,
                                 (*group)["resourceType"].str()));
  }
  if (const Value* active = group->find("active"); active != nullptr && !active->as_bool()) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("scope: {} is inactive (Group.active = false), so its members "
                                 "are not a panel to sync; nothing was pulled or removed. "
                                 "Activate the group, or change sources[].scope",
                                 source.group));
  }
  auto now = std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now());
  std::size_t outside = 0, listed = 0;
  const auto& members = (*group)["member"].array();
  for (std::size_t i = 0; i < members.size(); ++i) {
    const Value& m = members[i];
    // A member we cannot read is a scope we cannot know: the source fails rather than pulling
    // (and keeping current) a panel with someone missing.
    auto unreadable = [&](std::string_view why) {
      return MakeError(Errc::kInvalidResource,
                       fmt::format("scope: {}.member[{}] {}; the gateway cannot tell who is in "
                                   "the panel, so nothing was pulled or removed (fix the Group in "
                                   "the EHR, or scope the source by patients)",
                                   source.group, i, why));
    };
    ++listed;
    if (m["inactive"].as_bool()) continue;
    std::string_view text = m["entity"]["reference"].str();
    if (text.empty()) return unreadable("has no literal entity.reference");
    auto ref = fhir::ParseReferenceString(text);
    if (!ref || (ref->kind != fhir::ReferenceKind::kRelative &&
                 ref->kind != fhir::ReferenceKind::kAbsolute)) {
      return unreadable("has an entity.reference that is not a relative or absolute URL");
    }
    if (ref->type != "Patient") continue;  // a Practitioner, a Device: not a panel member
    if (!fhir::IsValidId(ref->id)) return unreadable("has a Patient reference whose id is invalid");
    if (ref->kind == fhir::ReferenceKind::kAbsolute &&
        !text.starts_with(
            std::string_view(source.base_url)
                .substr(0, source.base_url.size() - (source.base_url.ends_with('/') ? 1 : 0)))) {
      return unreadable("names a Patient on another server");
    }
    if (const Value* period = m.find("period"); period != nullptr) {
      auto start = fhir::FhirDateTime::Parse((*period)["start"].str());
      auto end = fhir::FhirDateTime::Parse((*period)["end"].str());
      bool has_start = !(*period)["start"].str().empty(), has_end = !(*period)["end"].str().empty();
      if ((has_start && !start) || (has_end && !end)) return unreadable("has an unreadable period");
      // Both ends inclusive at their precision (R4 §2.24.0.9 Period).
      if ((has_start && now < start->Earliest()) || (has_end && now >= end->LatestExclusive())) {
        ++outside;
        continue;
      }
    }
    run.patient_ids.push_back(ref->id);
  }
  // Group.quantity counts the members; a Group that says more than it lists was cut short.
  if (std::string_view q = (*group)["quantity"].number_text(); !q.empty()) {
    std::size_t quantity = 0;
    auto [end, ec] = std::from_chars(q.data(), q.data() + q.size(), quantity);
    if (ec == std::errc() && end == q.data() + q.size() && quantity > listed) {
      return MakeError(Errc::kInvalidResource,
                       fmt::format("scope: {} says it has {} members (Group.quantity) and lists "
                                   "{}; the panel cannot be known from it, so nothing was pulled "
                                   "or removed",
                                   source.group, quantity, listed));
    }
  }
  if (outside > 0) {
    run.Warn(
        fmt::format("{}: {}: {} member(s) whose member.period does not cover today are not "
                    "pulled (what is stored of them is kept)",
                    source.name, source.group, outside));
  }
  return {};
}

}  // namespace

SourceSync SyncSource(const SourceConfig& source, const EngineConfig& engine, StateStore& store,
                      const SyncOptions& options, const SyncObserver& observer) {
  std::vector<std::string> types = SourceResourceTypes(source, engine);
  if (source.bulk) return SyncBulkSource(source, types, store, options, observer);
  SourceSync out;
  out.name = source.name;
  for (const auto& t : types) static_cast<void>(store.BeginPull(source.name, t, options.run));
  // A source that fails as a whole fails each of its types, so that bill sees why.
  auto fail_source = [&](std::string why, const fhir::FhirClient* client) {
    out.error = fmt::format("{}: {}", source.name, why);
    if (client != nullptr) out.http = client->stats();
    for (const auto& t : types) {
      static_cast<void>(store.EndPull(source.name, t, options.run, PullState::kFailed,
                                      PullMode::kIncremental, why));
    }
    return out;
  };
  auto auth = MakeTokenSource(source);
  if (!auth) return fail_source(fmt::format("auth: {}", auth.error().message), nullptr);
  SourceRun run{source, store, options, observer, std::move(*auth), {}, {}, {}, {}, {}, {}, {}};
  fhir::FhirClient client(run.ClientOptions(), run.auth);

  // The CapabilityStatement, once per source and run: which types exist, whether they can be
  // searched by _lastUpdated, and (its Date header) the server's clock that bounds the searches.
  auto metadata = client.Get("metadata");
  if (!metadata) {
    const Error& e = metadata.error();
    if (e.is(Errc::kNetwork) || e.is(Errc::kTimeout) || e.is(Errc::kServerError)) {
      return fail_source(fmt::format("cannot reach the server: {}", e.message), &client);
    }
    run.Warn(fmt::format(
        "{}: no usable CapabilityStatement ({}); assuming every type and _lastUpdated are "
        "supported",
        source.name, e.message));
    SetBound(run, client, nullptr, types.front());
  } else if (metadata->body["resourceType"].str() != "CapabilityStatement") {
    return fail_source(
        fmt::format("GET {}/metadata answered with {} instead of a CapabilityStatement; check "
                    "baseUrl (it must be the FHIR base)",
                    fhir::RedactUrl(source.base_url),
                    metadata->body["resourceType"].str().empty()
                        ? std::string("something that is not a FHIR resource")
                        : "a " + std::string(metadata->body["resourceType"].str())),
        &client);
  } else {
    run.caps = ReadCapabilities(metadata->body);
    if (std::string problem = CapabilityProblem(run.caps, types); !problem.empty()) {
      return fail_source(problem, &client);
    }
    if (run.caps.fhir_version.empty()) {
      run.Warn(fmt::format("{}: the CapabilityStatement states no fhirVersion; assuming R4",
                           source.name));
    }
    SetBound(run, client, &*metadata, types.front());
  }

  if (source.scope == ScopeKind::kGroup) {
    if (Status s = ReadGroupMembers(client, run); !s)
      return fail_source(s.error().message, &client);
  } else if (source.scope == ScopeKind::kPatients) {
    run.patient_ids = source.patients;
  }
  std::sort(run.patient_ids.begin(), run.patient_ids.end());
  run.patient_ids.erase(std::unique(run.patient_ids.begin(), run.patient_ids.end()),
                        run.patient_ids.end());
  run.fingerprint = ScopeFingerprint(source, run.patient_ids);

  std::vector<std::string> todo;
  std::vector<TypeSync> not_offered;
  for (const auto& t : types) {
    if (run.caps.Supports(t)) {
      todo.push_back(t);
      continue;
    }
    // A type the server stops offering while the store holds it (an upgrade, a misconfigured
    // endpoint) is not "nothing to pull": what is stored would go stale unnoticed.
    auto rows = store.CountResources(source.name, t);
    auto cursor = store.GetCursor(source.name, t);
    bool held = (rows && *rows > 0) || (cursor && *cursor);
    TypeSync ts;
    ts.source = source.name;
    ts.type = t;
    if (held) {
      ts.state = PullState::kFailed;
      ts.error = fmt::format(
          "the server's CapabilityStatement no longer offers {}, of which {} resource(s) are "
          "stored from earlier syncs; they are kept but no longer current. Check the server (or "
          "its baseUrl); if it really dropped {}, remove it from sources[].resourceTypes",
          t, rows ? *rows : 0, t);
    } else {
      ts.state = PullState::kNotOffered;
      ts.error =
          fmt::format("the server's CapabilityStatement does not offer {}; not pulled{}", t,
                      t == "Consent" ? " (no consent can be found, so nothing is billed)" : "");
    }
    run.Warn(fmt::format("{}: {}", source.name, ts.error));
    static_cast<void>(
        store.EndPull(source.name, t, options.run, ts.state, PullMode::kFull, ts.error));
    if (ts.state == PullState::kNotOffered) {
      ts.error.clear();
    } else if (observer.on_type_done) {
      observer.on_type_done(ts);
    }
    not_offered.push_back(std::move(ts));
  }

  for (const auto& t : todo) {
    auto cursor = store.GetCursor(source.name, t);
    auto rows = store.CountResources(source.name, t);
    if (!cursor || !rows) {
      return fail_source(
          fmt::format("state store: {}", (!cursor ? cursor.error() : rows.error()).message),
          &client);
    }
    run.stored[t] = SourceRun::Stored{*cursor, *rows};
  }

  std::vector<TypeSync> results(todo.size());
  std::vector<std::shared_ptr<SourceRun::TypePull>> pulls;
  std::vector<std::size_t> to_split;  // pulls whose one search may be cut into windows
  std::size_t searches_before = 0;
  for (std::size_t i = 0; i < todo.size(); ++i) {
    {
      std::lock_guard lock(run.mutex);  // writer threads of earlier types may be storing
      pulls.push_back(run.Prepare(todo[i]));
    }
    if (run.Splittable(*pulls[i])) to_split.push_back(i);
    searches_before += pulls[i]->queries.size();
  }
  auto complete = [&run, &results, &observer, &pulls](std::size_t i) {
    results[i] = run.Complete(*pulls[i]);
    std::lock_guard lock(run.mutex);
    if (observer.on_type_done) observer.on_type_done(results[i]);
  };
  // The searches of every type, in type order (listed once every split is planned): workers take
  // them one by one, so a type's patient chunks or time windows are pulled concurrently.
  std::vector<std::pair<std::size_t, std::size_t>> searches;
  auto list_searches = [&] {
    for (std::size_t i = 0; i < todo.size(); ++i) {
      pulls[i]->t.searches = pulls[i]->queries.size();
      pulls[i]->outcomes.resize(pulls[i]->queries.size());
      for (std::size_t j = 0; j < pulls[i]->queries.size(); ++j) searches.emplace_back(i, j);
    }
    for (std::size_t i = 0; i < todo.size(); ++i) {
      if (pulls[i]->queries.empty()) complete(i);  // e.g. an empty patient list
    }
  };
  // Connections: as many as allowed, unless fewer searches are certain.
  std::size_t n = static_cast<std::size_t>(source.max_concurrency);
  if (to_split.empty()) n = std::max<std::size_t>(1, std::min(n, searches_before));
  std::atomic<std::size_t> next_split{0}, next{0};
  std::latch planned(static_cast<std::ptrdiff_t>(n));
  std::once_flag listed;
  std::mutex stats_mutex;
  fhir::ClientStats stats = client.stats();
  auto worker = [&] {
    fhir::FhirClient c(run.ClientOptions(), run.auth);
    // First the probes that split searches (on every connection at once), then the searches.
    for (std::size_t k = next_split++; k < to_split.size(); k = next_split++) {
      run.Split(*pulls[to_split[k]], c);
    }
    planned.arrive_and_wait();
    std::call_once(listed, list_searches);
    std::future<void> completing;  // of the last type this worker finished
    for (std::size_t k = next++; k < searches.size(); k = next++) {
      auto [i, j] = searches[k];
      run.FetchQuery(*pulls[i], j, c);
      if (--pulls[i]->remaining == 0) {
        if (completing.valid()) completing.get();
        completing = std::async(std::launch::async, complete, i);
      }
    }
    if (completing.valid()) completing.get();
    std::lock_guard lock(stats_mutex);
    stats.requests += c.stats().requests;
    stats.retries += c.stats().retries;
    stats.bytes += c.stats().bytes;
  };
  if (n == 1) {
    worker();
  } else {
    std::vector<std::jthread> threads;
    for (std::size_t i = 0; i < n; ++i) threads.emplace_back(worker);
  }
  out.types = std::move(results);
  for (auto& t : not_offered) out.types.push_back(std::move(t));
  out.warnings = std::move(run.warnings);
  out.http = stats;
  return out;
}

}  // namespace ccm::gateway
