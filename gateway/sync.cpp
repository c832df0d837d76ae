#include "gateway/sync.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "fhir/datetime.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;
using Params = std::vector<std::pair<std::string, std::string>>;

// What the server's CapabilityStatement says it can do (R4 §2.38: rest.resource[].type,
// .searchParam[].name; rest.searchParam applies to every type).
struct Capabilities {
  bool known = false;  // false: no usable CapabilityStatement; assume everything
  std::map<std::string, std::set<std::string>, std::less<>> types;  // type -> search params
  std::set<std::string, std::less<>> common_params;

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
  for (const Value& rest : cs["rest"].array()) {
    if (rest["mode"].str() != "server") continue;
    c.known = true;
    for (const Value& p : rest["searchParam"].array()) c.common_params.emplace(p["name"].str());
    for (const Value& r : rest["resource"].array()) {
      auto& params = c.types[std::string(r["type"].str())];
      for (const Value& p : r["searchParam"].array()) params.emplace(p["name"].str());
    }
  }
  return c;
}

// FNV-1a: a fingerprint that stays the same across builds and platforms (std::hash need not).
std::uint64_t Fnv1a(std::string_view s, std::uint64_t h = 14695981039346656037ULL) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string ScopeFingerprint(const SourceConfig& src, const std::vector<std::string>& ids) {
  if (src.scope == ScopeKind::kAll) return "all";
  std::uint64_t h = Fnv1a(src.group);
  for (const auto& id : ids) h = Fnv1a(id + ",", h);
  return fmt::format("{}:{}:{:016x}", src.scope == ScopeKind::kGroup ? "group" : "patients",
                     src.group, h);
}

std::string WholeSeconds(std::chrono::system_clock::time_point t) {
  return fhir::FormatUtc(
      std::chrono::time_point_cast<fhir::Micros>(std::chrono::floor<std::chrono::seconds>(t)));
}

Result<std::shared_ptr<fhir::TokenSource>> MakeTokenSource(const SourceConfig& src) {
  const AuthConfig& a = src.auth;
  fhir::OAuthClientOptions o;
  o.token_url = a.token_url;
  o.fhir_base = src.base_url;
  o.client_id = a.client_id;
  o.scope = a.scope;
  switch (a.kind) {
    case AuthKind::kNone:
      return std::shared_ptr<fhir::TokenSource>(fhir::NoAuth());
    case AuthKind::kBearer:
      return std::shared_ptr<fhir::TokenSource>(fhir::StaticBearer(a.token));
    case AuthKind::kClientCredentials:
      return std::shared_ptr<fhir::TokenSource>(fhir::ClientCredentials(o, a.client_secret));
    case AuthKind::kSmartBackendServices: {
      auto s = fhir::SmartBackendServices(o, a.private_key_pem, a.algorithm, a.key_id);
      if (!s) return s.error();
      return std::shared_ptr<fhir::TokenSource>(std::move(*s));
    }
  }
  return MakeError(Errc::kInternal, "unknown auth kind");
}

}  // namespace

Result<std::unique_ptr<fhir::FhirClient>> MakeFhirClient(const SourceConfig& source,
                                                         std::string_view purpose) {
  CCM_TRY_ASSIGN(auto auth, MakeTokenSource(source));
  fhir::FhirClientOptions o;
  o.base_url = source.base_url;
  o.http = source.http;
  o.http.user_agent = fmt::format("ccm-gateway/{} (+FHIR R4 CCM {})", CCM_VERSION, purpose);
  o.retry = source.retry;
  o.server_diagnostics = source.server_diagnostics;
  return std::make_unique<fhir::FhirClient>(std::move(o), std::move(auth));
}

namespace {

// Everything the workers of one source share. Members used by several threads are guarded by
// `mutex` (the store, the observer, the report's warnings).
struct SourceRun {
  const SourceConfig& src;
  StateStore& store;
  const SyncOptions& options;
  const SyncObserver& observer;
  std::shared_ptr<fhir::TokenSource> auth;
  Capabilities caps;
  std::vector<std::string> patient_ids;  // for group/patient scopes
  std::string fingerprint;
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
    o.server_diagnostics = src.server_diagnostics;
    return o;
  }

  void Warn(std::string w) {
    std::lock_guard lock(mutex);
    if (observer.on_warning) observer.on_warning(w);
    warnings.push_back(std::move(w));
  }

  // The searches that cover the scope for `type` (several when the patient list is long: servers
  // limit URL length, so ids go in chunks).
  std::vector<Params> Queries(const std::string& type, const std::optional<SyncCursor>& cursor,
                              bool incremental) const {
    Params base = {{"_count", std::to_string(src.page_size)}};
    if (incremental) base.emplace_back("_lastUpdated", "gt" + cursor->watermark);
    bool unscoped = src.scope == ScopeKind::kAll || type == "Practitioner" ||
                    type == "PractitionerRole" || type == "Organization";
    if (unscoped) return {base};
    std::vector<Params> out;
    constexpr std::size_t kChunk = 40;
    for (std::size_t i = 0; i < patient_ids.size(); i += kChunk) {
      std::string list;
      for (std::size_t j = i; j < std::min(patient_ids.size(), i + kChunk); ++j) {
        if (!list.empty()) list += ',';
        list += type == "Patient" ? patient_ids[j] : "Patient/" + patient_ids[j];
      }
      Params p = base;
      p.emplace_back(type == "Patient" ? "_id" : "patient", list);
      out.push_back(std::move(p));
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
    };

    PageWriter(SourceRun& run, TypeSync& t) : run_(run), t_(t), thread_([this] { Loop(); }) {}
    PageWriter(const PageWriter&) = delete;
    PageWriter& operator=(const PageWriter&) = delete;
    ~PageWriter() { static_cast<void>(Finish()); }

    // Queues a page (blocking while kMaxQueuedBytes wait). An error is the writer's: a store
    // that failed stops the pull.
    Status Add(Page page) {
      std::unique_lock lock(m_);
      space_.wait(lock, [&] { return queued_bytes_ < kMaxQueuedBytes || !error_.empty(); });
      if (!error_.empty()) return MakeError(Errc::kIo, error_);
      if (queue_.empty()) first_queued_ = std::chrono::steady_clock::now();
      if (!started_) started_ = first_queued_;
      queued_bytes_ += page.response->bytes;
      queue_.push_back(std::move(page));
      ready_.notify_one();
      return {};
    }

    // Stores what is queued and stops the thread; the first store error, if any.
    Status Finish() {
      {
        std::lock_guard lock(m_);
        finishing_ = true;
      }
      ready_.notify_one();
      if (thread_.joinable()) thread_.join();
      if (!error_.empty()) return MakeError(Errc::kIo, error_);
      return {};
    }

   private:
    static constexpr std::size_t kCommitBytes = std::size_t{1} << 20;
    static constexpr std::size_t kMaxQueuedBytes = std::size_t{64} << 20;
    static constexpr std::chrono::milliseconds kMaxDelay{100};

    void Loop() {
      for (;;) {
        std::deque<Page> batch;
        std::size_t bytes = 0;
        std::chrono::steady_clock::time_point started;
        {
          std::unique_lock lock(m_);
          // A slow server must not keep pages out of the store for long: they are stored once
          // kCommitBytes are queued or the first has waited kMaxDelay.
          while (!finishing_ && queued_bytes_ < kCommitBytes) {
            if (queue_.empty()) {
              ready_.wait(lock);
            } else if (ready_.wait_until(lock, first_queued_ + kMaxDelay) ==
                       std::cv_status::timeout) {
              break;
            }
          }
          if (queue_.empty()) {
            if (finishing_) return;
            continue;
          }
          batch.swap(queue_);
          bytes = queued_bytes_;
          queued_bytes_ = 0;
          started = *started_;
        }
        space_.notify_all();
        if (Status s = Store(batch, bytes, started); !s) {
          std::lock_guard lock(m_);
          error_ = s.error().message;
          space_.notify_all();
          return;
        }
      }
    }

    // `started`: when the type's first page arrived (the clock of the progress figures).
    Status Store(const std::deque<Page>& batch, std::size_t bytes,
                 std::chrono::steady_clock::time_point started) {
      std::lock_guard lock(run_.mutex);
      TypeSync& t = t_;
      auto store_items = [&]() -> Status {
        for (const Page& page : batch) {
          for (const Item& it : page.items) {
            CCM_TRY_ASSIGN(UpsertOutcome o, run_.store.Upsert(run_.src.name, t.type, it.id,
                                                              it.stamp, it.json, run_.options.run));
            switch (o) {
              case UpsertOutcome::kInserted:
                ++t.inserted;
                break;
              case UpsertOutcome::kUpdated:
                ++t.updated;
                break;
              case UpsertOutcome::kUnchanged:
                ++t.unchanged;
                break;
              case UpsertOutcome::kOlder:
                ++t.older;
                break;
            }
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
    std::mutex m_;
    std::condition_variable ready_, space_;
    std::deque<Page> queue_;
    std::size_t queued_bytes_ = 0;
    std::chrono::steady_clock::time_point first_queued_;
    std::optional<std::chrono::steady_clock::time_point> started_;  // at the first page
    bool finishing_ = false;
    std::string error_;
    std::thread thread_;  // last: starts once everything above is initialised
  };

  // One type's pull: Prepare() reads what the store held and starts the type's writer;
  // FetchQuery() requests every page of one of its searches (a type has several when the scope is
  // a patient list, in chunks) and hands them to the writer, on any worker, concurrently;
  // Complete() waits until the writer has stored everything and then moves the cursor. Workers go
  // on with other searches while a type completes, so the server is not left idle while the last
  // pages of a type are written.
  struct TypePull {
    TypeSync t;
    std::vector<Params> queries;
    std::atomic<std::size_t> remaining{0};  // searches not finished yet
    std::optional<SyncCursor> cursor;
    bool incremental = false;
    bool had_rows = true;
    std::mutex m;       // guards what the searches share below
    std::string error;  // the first failed search's (t.error is set from it in Complete())
    std::optional<std::chrono::steady_clock::time_point> started;
    // The server's Date at the first page of each search: the earliest is the watermark's base.
    std::optional<std::chrono::system_clock::time_point> server_start;
    std::unique_ptr<PageWriter> writer;  // null once finished
  };

  // A pull over every patient is one chain of pages (each page's next link comes with it), so
  // one connection carries a whole type however many are allowed. Split() cuts such a search into
  // windows of meta.lastUpdated (R4 §3.1.1.5.7 _lastUpdated, with the date prefixes lt and ge of
  // §3.1.1.4.4.1): [-, b1), [b1, b2), ..., [bn-1, -), pulled concurrently. The windows partition
  // the time line, so together they match exactly what the one search matches whatever the bounds
  // are; two probes (_sort=_lastUpdated and -_lastUpdated, _count=1: the earliest and the latest
  // match) only place the bounds evenly in time. Bounds are whole seconds, as the watermark is
  // (servers differ on fractional ones), so resources that all changed within one second stay one
  // search. A resource changed while the windows are being pulled may be seen in two windows (one
  // version wins) or, moved from a window not yet read into the last one already read, in none:
  // the next incremental run pulls it, since its new lastUpdated is after this run's watermark.
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
      Params q;
      for (const auto& [k, v] : base) q.emplace_back(k, k == "_count" ? "1" : v);
      q.emplace_back("_sort", sort);
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
      Params q = base;
      if (i > 0) q.emplace_back("_lastUpdated", "ge" + bounds[i - 1]);
      if (i + 1 < windows) q.emplace_back("_lastUpdated", "lt" + bounds[i]);
      split.push_back(std::move(q));
    }
    pull.queries = std::move(split);
    pull.remaining = pull.queries.size();
  }

  std::unique_ptr<TypePull> Prepare(const std::string& type) {
    auto pull = std::make_unique<TypePull>();
    TypeSync& t = pull->t;
    t.source = src.name;
    t.type = type;
    // What the store held for the type before the run (read up front: while another type's pages
    // are being written, the store is busy).
    const Stored& before = stored.at(type);
    pull->cursor = before.cursor;
    bool can_increment = caps.SearchesLastUpdated(type);
    pull->incremental =
        !options.full && pull->cursor && pull->cursor->scope == fingerprint && can_increment;
    t.full = !pull->incremental;
    // After a full pull, what this run did not see is deleted: a scan of every stored row of the
    // type (through the WAL, for what was just written). On a first pull there is nothing to
    // delete, and the scan is skipped.
    pull->had_rows = before.rows > 0;
    if (!can_increment) {
      Warn(fmt::format("{}: the server does not list _lastUpdated for {}; pulling it in full",
                       src.name, type));
    }
    pull->queries = Queries(type, pull->cursor, pull->incremental);
    pull->remaining = pull->queries.size();
    pull->writer = std::make_unique<PageWriter>(*this, t);
    return pull;
  }

  // Pulls search `q` of `pull`'s type; a failure becomes the type's error (the first one wins)
  // and the type's other searches are not started.
  void FetchQuery(TypePull& pull, const Params& q, fhir::FhirClient& client) {
    const std::string& type = pull.t.type;
    {
      std::lock_guard lock(pull.m);
      if (!pull.error.empty()) return;
      if (!pull.started) pull.started = std::chrono::steady_clock::now();
    }
    PageWriter& writer = *pull.writer;
    bool first_page = true;
    // Pages are scanned, not parsed into trees: each resource is stored as the exact text the
    // server sent (nothing re-serialised), which is also what makes a pull keep pace with the
    // server (docs/benchmarks.md).
    auto on_page = [&](fhir::FhirResponse& response, const fhir::PageInfo& page) -> Status {
      if (first_page) {
        first_page = false;
        auto date = response.date.value_or(std::chrono::system_clock::now());
        std::lock_guard lock(pull.m);
        if (!pull.server_start || date < *pull.server_start) pull.server_start = date;
      }
      PageWriter::Page kept{std::make_unique<fhir::FhirResponse>(std::move(response)), {}};
      std::string_view text = kept.response->text;
      for (const fhir::ScannedEntry& e : kept.response->page.entries) {
        if (!e.has_resource) continue;
        std::string_view resource = text.substr(e.begin, e.end - e.begin);
        if (e.search_mode == "outcome" || e.resource_type == "OperationOutcome") {
          auto oo = fhir::json::Parse(resource);
          std::string what = oo ? fhir::DescribeOperationOutcome(*oo, false) : "";
          if (!what.empty()) Warn(fmt::format("{}: {} search: {}", src.name, type, what));
          continue;
        }
        if (e.resource_type != type) continue;  // _include'd or stray entries
        if (e.id.empty()) {
          Warn(fmt::format("{}: {} search page {} has an entry without id; skipped", src.name, type,
                           page.number));
          continue;
        }
        kept.items.push_back({e.id, StampOf(e.version_id, e.last_updated), resource});
      }
      return writer.Add(std::move(kept));
    };
    if (Status s = client.SearchRaw(type, q, on_page); !s) {
      // What did arrive is still stored: a later run then finds it unchanged.
      std::lock_guard lock(pull.m);
      if (pull.error.empty()) pull.error = s.error().message;
    }
  }

  TypeSync Complete(TypePull& pull) {
    TypeSync& t = pull.t;
    t.error = pull.error;  // every search has returned: no lock needed
    if (pull.writer) {
      Status written = pull.writer->Finish();
      pull.writer.reset();
      if (!written && t.error.empty()) t.error = written.error().message;
    }
    if (!t.error.empty()) return std::move(t);
    // Every page is stored: move the cursor (and, after a full pull, drop what the server no
    // longer has) in one transaction.
    auto start = pull.server_start.value_or(std::chrono::system_clock::now());
    std::string watermark = WholeSeconds(start - src.safety_margin);
    if (pull.incremental && pull.cursor->watermark > watermark) {
      watermark = pull.cursor->watermark;
    }
    std::lock_guard lock(mutex);
    auto finish = [&]() -> Status {
      if (t.full && pull.had_rows) {
        CCM_TRY_ASSIGN(t.removed, store.RemoveUnseen(src.name, t.type, options.run));
      }
      return store.SetCursor(src.name, t.type, SyncCursor{watermark, fingerprint});
    };
    if (Status s = store.InTransaction(finish); !s) {
      t.error = s.error().message;
      return std::move(t);
    }
    t.watermark = watermark;
    t.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                      pull.started.value_or(std::chrono::steady_clock::now()))
            .count();
    return std::move(t);
  }
};

}  // namespace

bool SourceSync::ok() const {
  return error.empty() &&
         std::all_of(types.begin(), types.end(), [](const TypeSync& t) { return t.error.empty(); });
}

std::vector<std::string> DefaultResourceTypes(const EngineConfig& engine) {
  std::vector<std::string> t = {"Patient", "Condition", "Encounter", "CarePlan", "Consent"};
  if (!engine.practice.billing_practitioner_npis.empty() ||
      !engine.practice.billing_practitioner_refs.empty()) {
    t.emplace_back("Practitioner");
    t.emplace_back("PractitionerRole");
  }
  return t;
}

SourceSync SyncSource(const SourceConfig& source, const EngineConfig& engine, StateStore& store,
                      const SyncOptions& options, const SyncObserver& observer) {
  SourceSync out;
  out.name = source.name;
  auto auth = MakeTokenSource(source);
  if (!auth) {
    out.error = fmt::format("{}: auth: {}", source.name, auth.error().message);
    return out;
  }
  SourceRun run{source, store, options, observer, std::move(*auth), {}, {}, {}, {}, {}, {}};
  fhir::FhirClient client(run.ClientOptions(), run.auth);

  // The CapabilityStatement, once per source and run: which types exist and whether they can be
  // searched by _lastUpdated. A server without one is assumed to support everything (and a
  // failing search then says so).
  auto cs = client.Capabilities();
  if (!cs) {
    const Error& e = cs.error();
    if (e.is(Errc::kNetwork) || e.is(Errc::kTimeout) || e.is(Errc::kServerError)) {
      out.error = fmt::format("{}: cannot reach the server: {}", source.name, e.message);
      out.http = client.stats();
      return out;
    }
    run.Warn(
        fmt::format("{}: no usable CapabilityStatement ({}); assuming every type and "
                    "_lastUpdated are supported",
                    source.name, e.message));
  } else {
    run.caps = ReadCapabilities(*cs);
  }

  if (source.scope == ScopeKind::kGroup) {
    // Group.member.entity (R4 §8.14): Patient references; others (Practitioner groups) ignored.
    std::string id = source.group.substr(6);
    auto group = client.Read("Group", id);
    if (!group) {
      out.error = fmt::format("{}: scope: cannot read {}: {}", source.name, source.group,
                              group.error().message);
      out.http = client.stats();
      return out;
    }
    for (const Value& m : (*group)["member"].array()) {
      if (m["inactive"].as_bool()) continue;
      std::string_view ref = m["entity"]["reference"].str();
      if (ref.starts_with("Patient/")) run.patient_ids.emplace_back(ref.substr(8));
    }
  } else if (source.scope == ScopeKind::kPatients) {
    run.patient_ids = source.patients;
  }
  std::sort(run.patient_ids.begin(), run.patient_ids.end());
  run.patient_ids.erase(std::unique(run.patient_ids.begin(), run.patient_ids.end()),
                        run.patient_ids.end());
  run.fingerprint = ScopeFingerprint(source, run.patient_ids);

  std::vector<std::string> types =
      source.resource_types.empty() ? DefaultResourceTypes(engine) : source.resource_types;
  std::vector<std::string> todo;
  for (const auto& t : types) {
    if (run.caps.Supports(t)) {
      todo.push_back(t);
    } else {
      run.Warn(
          fmt::format("{}: the server does not offer {}; not pulled{}", source.name, t,
                      t == "Consent" ? " (no consent can be found, so nothing is billed)" : ""));
    }
  }

  for (const auto& t : todo) {
    auto cursor = store.GetCursor(source.name, t);
    auto rows = store.CountResources(source.name, t);
    if (!cursor || !rows) {
      out.error = fmt::format("{}: state store: {}", source.name,
                              (!cursor ? cursor.error() : rows.error()).message);
      out.http = client.stats();
      return out;
    }
    run.stored[t] = SourceRun::Stored{*cursor, *rows};
  }

  std::vector<TypeSync> results(todo.size());
  std::vector<std::shared_ptr<SourceRun::TypePull>> pulls;
  std::vector<std::size_t> to_split;  // pulls whose one search may be cut into windows
  std::size_t searches_before = 0;
  for (std::size_t i = 0; i < todo.size(); ++i) {
    pulls.push_back(run.Prepare(todo[i]));
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
      run.FetchQuery(*pulls[i], pulls[i]->queries[j], c);
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
  out.warnings = std::move(run.warnings);
  out.http = stats;
  return out;
}

Result<CollectReport> CollectFactsFromStore(StateStore& store, const EngineConfig& config,
                                            FactStore& facts) {
  CollectReport report;
  std::string buffer, scratch;
  // Size the index once (growing a large table rehashes every entry each time).
  CCM_TRY_ASSIGN(std::size_t stored, store.CountResources("", ""));
  facts.Reserve(stored);
  auto each = [&](std::string_view source, std::string_view type, std::string_view id,
                  std::string_view json) {
    std::string key = fmt::format("{}/{}", type, id);
    // (source, type, id) is the store's primary key: a key met twice comes from two sources.
    if (facts.Find(key) != nullptr) {
      report.read_issues.Add(
          fhir::Severity::kWarning, fhir::IssueCode::kDuplicate, "",
          fmt::format("{} is held by source \"{}\" and at least one other; the newer version is "
                      "used. Sources must not share resource ids (give each EHR its own gateway "
                      "state, or scope them apart)",
                      key, source));
    }
    // The extraction parses in place and reads a little past the end (SIMD): give it a padded,
    // writable, NUL-terminated copy.
    buffer.assign(json);
    buffer.append(fhir::json::kInsituPadding + 1, '\0');
    fhir::SourceLocation where{fmt::format("{}:{}", source, key), 0, ""};
    Result<Extracted> e = ExtractFactFromLine(buffer.data(), json.size(), where, config, &scratch);
    ++report.read.resources;
    if (!e) {
      ++report.read.skipped;
      report.read_issues.Add(fhir::Severity::kError, fhir::IssueCode::kStructure, "",
                             e.error().message, where.ToString());
      return true;
    }
    facts.Add(std::move(*e));
    return true;
  };
  CCM_TRY(store.ForEachResource("", each));
  return report;
}

}  // namespace ccm::gateway
