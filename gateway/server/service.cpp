#include "gateway/server/service.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/app/close_month.h"
#include "gateway/app/evaluate_month.h"
#include "gateway/app/sync_cycle.h"
#include "gateway/app/workflow.h"
#include "gateway/billing/ledger.h"
#include "gateway/ccm/program.h"
#include "gateway/ccm/report.h"
#include "gateway/ccm/worklist.h"
#include "gateway/server/access_audit.h"
#include "gateway/server/token_auth.h"
#include "gateway/server/web_assets.h"
#include "gateway/writeback/billing_outputs.h"

namespace ccm::gateway::server {
namespace {

using fhir::json::Value;

Value Num(std::size_t v) { return Value::Number(static_cast<std::int64_t>(v)); }

// The one table from a workflow's error kind to an HTTP status (gateway/app/workflow.h).
HttpError FromWorkflow(const app::WorkflowError& e) {
  unsigned status = 500;
  switch (e.kind) {
    case app::ErrorKind::kInvalidRequest:
      status = 400;
      break;
    case app::ErrorKind::kInvalidSetup:
      status = 422;
      break;
    case app::ErrorKind::kRefused:
      status = 409;
      break;
    case app::ErrorKind::kFailed:
      status = 500;
      break;
  }
  // The workflow's message is the gateway's own text and holds no patient data (workflow.h).
  return MakeHttpError(status, fmt::format("{}: {}", e.code, e.message));
}

Response TextResponse(unsigned status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

void DefaultLog(std::string_view level, std::string_view event, std::string_view message) {
  Value e = Value::MakeObject();
  e.set("time", Value::String(fhir::NowUtc()));
  e.set("level", Value::String(std::string(level)));
  e.set("event", Value::String(std::string(event)));
  e.set("message", Value::String(std::string(message)));
  std::string line = fhir::json::Serialize(e) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

// A sync run started by this process, as GET /$sync-status/{id} shows it.
struct SyncRun {
  std::int64_t id = 0;
  std::string trigger, source, started_at, finished_at;
  std::string state = "running";  // running, succeeded, problems, failed, stopped
  std::size_t sources_started = 0, types_done = 0, pages = 0, resources = 0;
  std::optional<app::SyncCycleResult> result;
  std::optional<app::WorkflowError> error;
};

Value ToJson(const SyncRun& r) {
  Value v = Value::MakeObject();
  v.set("id", Value::Number(r.id));
  v.set("state", Value::String(r.state));
  v.set("trigger", Value::String(r.trigger));
  if (!r.source.empty()) v.set("source", Value::String(r.source));
  v.set("startedAt", Value::String(r.started_at));
  if (!r.finished_at.empty()) v.set("finishedAt", Value::String(r.finished_at));
  Value progress = Value::MakeObject();
  progress.set("sourcesStarted", Num(r.sources_started));
  progress.set("typesDone", Num(r.types_done));
  progress.set("pages", Num(r.pages));
  progress.set("resources", Num(r.resources));
  v.set("progress", std::move(progress));
  if (r.result) {
    const app::SyncCycleResult& s = *r.result;
    Value result = Value::MakeObject();
    result.set("month", Value::String(s.month.ToString()));
    result.set("pullsOk", Value::Bool(s.pulls_ok));
    result.set("stopped", Value::Bool(s.stopped));
    result.set("pulled", Num(s.pulled));
    result.set("changed", Num(s.changed));
    result.set("stored", Num(s.stored));
    result.set("requests", Num(s.requests));
    result.set("retries", Num(s.retries));
    result.set("notComplete", Num(s.not_complete));
    result.set("reportProblems", Value::Bool(s.report_problems));
    result.set("seconds", Value::Number(fmt::format("{:.3f}", s.seconds)));
    Value sources = Value::MakeArray();
    for (const SourceSync& src : s.sources) {
      Value sv = Value::MakeObject();
      sv.set("name", Value::String(src.name));
      sv.set("ok", Value::Bool(src.ok()));
      if (!src.error.empty()) sv.set("error", Value::String(src.error));
      Value types = Value::MakeArray();
      for (const TypeSync& t : src.types) {
        Value tv = Value::MakeObject();
        tv.set("type", Value::String(t.type));
        tv.set("state", Value::String(std::string(ToCode(t.state))));
        tv.set("resources", Num(t.resources));
        tv.set("changed", Num(t.inserted + t.updated + t.removed + t.rolled_back + t.recovered));
        if (!t.error.empty()) tv.set("error", Value::String(t.error));
        types.push_back(std::move(tv));
      }
      sv.set("types", std::move(types));
      sources.push_back(std::move(sv));
    }
    result.set("sources", std::move(sources));
    v.set("result", std::move(result));
  }
  if (r.error) {
    Value e = Value::MakeObject();
    e.set("code", Value::String(r.error->code));
    e.set("message", Value::String(r.error->message));
    v.set("error", std::move(e));
  }
  return v;
}

std::string SyncLocation(std::int64_t id) { return fmt::format("/$sync-status/{}", id); }

Value Parameter(std::string name, std::string_view value_type, Value value) {
  Value p = Value::MakeObject();
  p.set("name", Value::String(std::move(name)));
  p.set(fmt::format("value{}", value_type), std::move(value));
  return p;
}

Value Money(Cents amount, const std::string& currency) {
  Value m = Value::MakeObject();
  m.set("value", Value::Number(FormatCents(amount)));
  m.set("currency", Value::String(currency));
  return m;
}

// The billing summary as a FHIR Bundle of type `collection` (docs/api.md): first a Parameters
// resource with the month's figures, then the ChargeItems `bill` would write to the EHR for the
// ledger changes, built by the same builder as bill's (MakeChargeItem). `collection`, not
// `searchset`: the entries are the output of an operation, not the matches of a search, so
// `total`, `self` links and search.mode (R4 bundle.html, bdl-1) would say something false.
Value BillingBundle(const app::CloseMonthResult& r, const std::vector<std::string>& warnings,
                    const WriteBackConfig& write_back) {
  auto count = [&r](LedgerAction a) {
    auto it = r.ledger_counts.find(a);
    return it == r.ledger_counts.end() ? std::size_t{0} : it->second;
  };
  Value params = Value::MakeArray();
  params.push_back(Parameter("month", "String", Value::String(r.month.ToString())));
  params.push_back(Parameter("dryRun", "Boolean", Value::Bool(true)));
  params.push_back(Parameter("billable", "UnsignedInt", Num(r.billable)));
  params.push_back(Parameter("expectedPayment", "Money", Money(r.amount, r.currency)));
  Value ledger = Value::MakeObject();
  ledger.set("name", Value::String("ledger"));
  Value parts = Value::MakeArray();
  for (auto [name, n] : std::initializer_list<std::pair<const char*, std::size_t>>{
           {"new", count(LedgerAction::kNew)},
           {"adjusted", count(LedgerAction::kAdjusted)},
           {"voided", count(LedgerAction::kVoided)},
           {"withdrawn", count(LedgerAction::kWithdrawn)},
           {"unchanged", r.ledger.unchanged},
           {"held", r.held()}}) {
    parts.push_back(Parameter(name, "UnsignedInt", Num(n)));
  }
  ledger.set("part", std::move(parts));
  params.push_back(std::move(ledger));
  for (const auto& s : r.incomplete)
    params.push_back(Parameter("incomplete", "String", Value::String(s)));
  for (const auto& s : r.problems)
    params.push_back(Parameter("problem", "String", Value::String(s)));
  for (const auto& s : warnings) params.push_back(Parameter("warning", "String", Value::String(s)));
  Value parameters = Value::MakeObject();
  parameters.set("resourceType", Value::String("Parameters"));
  parameters.set("parameter", std::move(params));

  Value entries = Value::MakeArray();
  auto add = [&entries](Value resource) {
    Value e = Value::MakeObject();
    e.set("resource", std::move(resource));
    entries.push_back(std::move(e));
  };
  add(std::move(parameters));
  for (const LedgerChange& c : r.ledger.changes) {
    // As bill delivers them (writeback/billing_outputs.cpp, DeliverChargeItems): the entry's lines
    // billable; the codes of the revision it supersedes that it no longer bills withdrawn
    // (entered-in-error). A withdrawn entry was never delivered: nothing goes out for it.
    if (c.action == LedgerAction::kWithdrawn) continue;
    std::set<std::string> billed;
    if (c.entry && c.entry->kind != LedgerKind::kVoid) {
      for (const BillingLine& line : LedgerLines(*c.entry)) {
        billed.insert(line.code);
        add(MakeChargeItem(*c.entry, line, "billable", write_back, r.currency));
      }
    }
    if (c.previous) {
      for (const BillingLine& line : LedgerLines(*c.previous)) {
        if (!billed.contains(line.code)) {
          add(MakeChargeItem(*c.previous, line, "entered-in-error", write_back, r.currency));
        }
      }
    }
  }
  Value bundle = Value::MakeObject();
  bundle.set("resourceType", Value::String("Bundle"));
  bundle.set("type", Value::String("collection"));
  bundle.set("timestamp", Value::String(fhir::NowUtc()));
  bundle.set("entry", std::move(entries));
  return bundle;
}

// The routes whose answers hold patient data: each request to them gets an audit record.
constexpr std::string_view kStatusRoute = "/Patient/{id}/$ccm-status";
constexpr std::string_view kBillingRoute = "/$ccm-billing-summary";
constexpr std::string_view kWorklistRoute = "/$ccm-worklist";
constexpr std::string_view kProgramRoute = "/$ccm-program";
constexpr std::string_view kPatientsRoute = "/$ccm-patients";
// Sign-ins and sign-outs of the page (answered by the HTTP server itself, http_server.h).
constexpr std::string_view kLoginRoute = "/$login";
constexpr std::string_view kLogoutRoute = "/$logout";

bool Audited(std::string_view route) {
  return route == kStatusRoute || route == kBillingRoute || route == kWorklistRoute ||
         route == kPatientsRoute || route == kLoginRoute || route == kLogoutRoute;
}

// The routes that answer the current month when none is asked for.
bool MonthDefaults(std::string_view route) {
  return route == kStatusRoute || route == kWorklistRoute || route == kPatientsRoute;
}

// The page's policy: its own files only -- no inline script or style, no other origin, never in
// a frame; forms post only to the gateway.
constexpr std::string_view kPagePolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'";

// One file of the page (gateway/server/web/), served from the binary.
struct WebAsset {
  std::string path;  // "/" for index.html
  std::string content_type;
  std::string_view body;
  std::string etag;  // strong: a hash of the bytes
};

std::vector<WebAsset> MakeWebAssets() {
  std::vector<WebAsset> out;
  for (const EmbeddedFile& f : WebAssetFiles()) {
    WebAsset a;
    // fmt, not "/" + std::string: GCC 12 reports a false -Wrestrict on literal + temporary.
    a.path = f.name == "index.html" ? std::string("/") : fmt::format("/{}", f.name);
    std::string_view name = f.name;
    a.content_type = name.ends_with(".html")  ? "text/html; charset=utf-8"
                     : name.ends_with(".js")  ? "text/javascript; charset=utf-8"
                     : name.ends_with(".css") ? "text/css; charset=utf-8"
                     : name.ends_with(".svg") ? "image/svg+xml"
                                              : "application/octet-stream";
    a.body = f.text;
    a.etag = fmt::format("\"{}\"", ToHex(HashToken(f.text)).substr(0, 32));
    out.push_back(std::move(a));
  }
  return out;
}

// The summary's representation. FHIR's _format overrides Accept (R4 http.html, "Content Types
// and encodings"), so that a link -- which cannot set Accept -- downloads what it names: json,
// application/json and application/fhir+json all mean FHIR JSON (the Bundle); csv and text/csv
// are this operation's own. A _format the gateway cannot produce (xml, ttl, ...) is 406.
enum class BillingFormat { kJson, kCsv, kBundle };
std::optional<HttpError> ReadBillingFormat(const Request& req, BillingFormat& out, bool& download) {
  std::optional<std::string> format = req.Query("_format");
  download = format.has_value();
  if (!format) {
    std::string_view accept = req.Header("accept");
    out = accept.find("text/csv") != std::string_view::npos                ? BillingFormat::kCsv
          : accept.find("application/fhir+json") != std::string_view::npos ? BillingFormat::kBundle
                                                                           : BillingFormat::kJson;
    return std::nullopt;
  }
  std::string f = *format;
  // "application/fhir+json; fhirVersion=4.0" names the same type.
  f = f.substr(0, f.find(';'));
  while (!f.empty() && f.back() == ' ') f.pop_back();
  if (f == "csv" || f == "text/csv") {
    out = BillingFormat::kCsv;
  } else if (f == "json" || f == "application/json" || f == "application/fhir+json" ||
             f == "application/json+fhir") {
    out = BillingFormat::kBundle;
  } else {
    return MakeHttpError(406,
                         "_format: this operation answers csv (text/csv) or json "
                         "(application/fhir+json)");
  }
  return std::nullopt;
}

// "Given Family" of a Patient resource: the official name (else the first), its text when given.
std::string DisplayName(const Value& patient) {
  const Value* names = patient.find("name");
  if (names == nullptr || !names->is_array() || names->array().empty()) return "";
  const Value* chosen = &names->array().front();
  for (const Value& n : names->array()) {
    if (n["use"].str() == "official") {
      chosen = &n;
      break;
    }
  }
  if (!(*chosen)["text"].str().empty()) return std::string((*chosen)["text"].str());
  std::string out;
  for (const Value& g : (*chosen)["given"].array()) {
    if (!out.empty()) out += ' ';
    out += g.str();
  }
  if (!(*chosen)["family"].str().empty()) {
    if (!out.empty()) out += ' ';
    out += (*chosen)["family"].str();
  }
  return out;
}

YearMonth PreviousMonth(YearMonth m) {
  if (m.month == 1) return YearMonth{m.year - 1, 12};
  return YearMonth{m.year, m.month - 1};
}

// The month of a request: ?month=YYYY-MM, or `fallback` when absent (nullopt: required).
std::optional<HttpError> ReadMonth(const Request& req, const std::optional<YearMonth>& fallback,
                                   YearMonth& out) {
  std::optional<std::string> text = req.Query("month");
  if (!text) {
    if (!fallback) return MakeHttpError(400, "the query parameter month=YYYY-MM is required");
    out = *fallback;
    return std::nullopt;
  }
  auto month = YearMonth::Parse(*text);
  if (!month) return MakeHttpError(400, fmt::format("month: {}", month.error().message));
  out = *month;
  return std::nullopt;
}

}  // namespace

struct GatewayService::Impl {
  GatewayConfig config;
  ServiceOptions options;
  Router router;
  Metrics metrics;
  std::vector<std::string> source_names;

  // State-store connections for the handlers (one per concurrent handler, reused).
  std::mutex pool_m;
  std::vector<std::unique_ptr<StateStore>> pool;

  // Evaluations by month, with each record already serialized: a status call copies a string
  // instead of building and serializing a JSON tree per request (docs/benchmarks.md, serve).
  struct EvaluatedMonth {
    app::MonthReport report;
    std::vector<std::string> bodies;  // bodies[i]: records[i] as `evaluate` writes it
  };
  struct CachedMonth {
    std::string stamp;
    std::uint64_t generation = 0;
    std::shared_ptr<const EvaluatedMonth> month;
  };
  std::mutex cache_m;
  std::mutex evaluate_m;  // one evaluation at a time: a burst of calls evaluates once
  std::map<YearMonth, CachedMonth> cache;
  std::atomic<std::uint64_t> generation{0};
  // Billing summaries one at a time: CloseMonth takes the state file's bill lock (flock), which a
  // second summary of this same process would find taken and answer 409 bill-locked. Guards
  // `summaries` too.
  std::mutex billing_m;
  struct BillingSummaryData {
    app::CloseMonthResult result;
    std::vector<std::string> warnings;
  };
  struct SummaryInputs {  // what a dry-run bill reads from the state store, as of one moment
    std::string stamp;    // the sync history (Stamp)
    std::uint64_t generation = 0;
    std::int64_t billing = 0;  // StateStore::BillingVersion
    bool operator==(const SummaryInputs&) const = default;
  };
  struct CachedSummary {
    SummaryInputs key;  // when it was computed
    std::chrono::steady_clock::time_point computed;
    bool read_ehr = false;  // expires after options.billing_summary_max_age
    std::shared_ptr<const BillingSummaryData> data;
  };
  std::map<YearMonth, CachedSummary> summaries;

  // Syncs.
  mutable std::mutex sync_m;
  std::condition_variable sync_cv;                        // a sync ended
  std::map<std::int64_t, std::shared_ptr<SyncRun>> runs;  // the last kKeptRuns
  std::int64_t next_run = 0;
  std::shared_ptr<SyncRun> running;
  std::atomic<bool> stop_sync{false};
  std::thread sync_thread;
  static constexpr std::size_t kKeptRuns = 32;

  std::mutex log_m;

  const std::vector<WebAsset> web = MakeWebAssets();  // before AddRoutes (the constructor's)

  // Salts the patient ids of the access log (ServiceOptions::log_patient_ids): random per process,
  // never written anywhere, so a hash cannot be reversed by trying every record number.
  std::string log_salt;

  // Last: stopped (its queue stored) before the members its writer uses go.
  std::unique_ptr<AccessAudit> audit;

  Impl(GatewayConfig c, ServiceOptions o) : config(std::move(c)), options(std::move(o)) {
    if (!options.log) options.log = DefaultLog;
    if (!options.log_patient_ids) {
      std::random_device random;  // /dev/urandom with libstdc++ on Linux
      for (int i = 0; i < 32; ++i) log_salt.push_back(static_cast<char>(random() & 0xff));
    }
    if (options.audit) {
      AccessAudit::Options ao;
      ao.on_error = [this](std::string_view message) { Log("error", "audit-failed", message); };
      audit = std::make_unique<AccessAudit>(
          [this]() -> Result<std::unique_ptr<StateStore>> {
            auto store = app::OpenStateStore(config);
            if (!store) return MakeError(Errc::kIo, store.error().message);
            return std::move(*store);
          },
          std::move(ao));
    }
    for (const auto& s : config.sync.sources) source_names.push_back(s.name);
    metrics.Declare("ccm_http_requests_total", "HTTP requests answered, by route and status",
                    Metrics::Kind::kCounter);
    metrics.Declare("ccm_http_request_duration_seconds",
                    "Time from reading a request to writing its response",
                    Metrics::Kind::kHistogram,
                    {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
    metrics.Declare("ccm_build_info", "The build serving (always 1)", Metrics::Kind::kGauge);
    metrics.Set("ccm_build_info", {{"version", options.version}, {"commit", options.commit}}, 1);
    metrics.Declare("ccm_sync_runs_total", "Sync cycles run by this process, by trigger and state",
                    Metrics::Kind::kCounter);
    metrics.Declare("ccm_sync_skipped_total",
                    "Scheduled syncs skipped because a sync was still running",
                    Metrics::Kind::kCounter);
    metrics.Add("ccm_sync_skipped_total", {}, 0);
    metrics.Declare("ccm_sync_running", "1 while a sync cycle runs", Metrics::Kind::kGauge);
    metrics.Set("ccm_sync_running", {}, 0);
    metrics.Declare("ccm_sync_last_success_timestamp_seconds",
                    "End of the last sync cycle of this process that succeeded (Unix time)",
                    Metrics::Kind::kGauge);
    // Per source, over the syncs of this process (the store keeps no page or retry counts).
    metrics.Declare("ccm_source_pages_total",
                    "Search result pages stored, by source (this process)",
                    Metrics::Kind::kCounter);
    metrics.Declare("ccm_source_resources_total",
                    "Resources read from the source's searches (this process)",
                    Metrics::Kind::kCounter);
    metrics.Declare("ccm_source_requests_total",
                    "HTTP exchanges with the source, retries included (this process)",
                    Metrics::Kind::kCounter);
    metrics.Declare("ccm_source_retries_total",
                    "HTTP requests to the source retried (this process)", Metrics::Kind::kCounter);
    metrics.Declare("ccm_source_errors_total",
                    "Pulls of a resource type that failed or stayed incomplete, and syncs of the "
                    "source that could not start (this process)",
                    Metrics::Kind::kCounter);
    for (const std::string& source : source_names) {
      for (const char* name :
           {"ccm_source_pages_total", "ccm_source_resources_total", "ccm_source_requests_total",
            "ccm_source_retries_total", "ccm_source_errors_total"}) {
        metrics.Add(name, {{"source", source}}, 0);
      }
    }
    metrics.Declare("ccm_audit_records_total",
                    "Access audit records of this process by outcome (stored, dropped)",
                    Metrics::Kind::kCounter);
    metrics.Declare("ccm_evaluations_total",
                    "Months evaluated from the state store (cache misses), by month",
                    Metrics::Kind::kCounter);
    metrics.Declare("ccm_billing_summaries_computed_total",
                    "Billing summaries computed by a dry-run bill (cache misses), by month",
                    Metrics::Kind::kCounter);
    AddRoutes();
  }

  ~Impl() {
    stop_sync = true;
    if (sync_thread.joinable()) sync_thread.join();
  }

  void Log(std::string_view level, std::string_view event, std::string_view message) {
    std::lock_guard lock(log_m);
    options.log(level, event, message);
  }

  // --- state store -----------------------------------------------------------------------------
  app::WorkflowResult<std::shared_ptr<StateStore>> Store() {
    std::unique_ptr<StateStore> s;
    {
      std::lock_guard lock(pool_m);
      if (!pool.empty()) {
        s = std::move(pool.back());
        pool.pop_back();
      }
    }
    if (!s) {
      auto opened = app::OpenStateStore(config);
      if (!opened) return opened.error();
      s = std::move(*opened);
    }
    return std::shared_ptr<StateStore>(s.release(), [this](StateStore* p) {
      std::lock_guard lock(pool_m);
      pool.emplace_back(p);
    });
  }

  // What identifies the store's resources as of now: the last sync run, and whether it ended.
  static Result<std::string> Stamp(StateStore& store) {
    CCM_TRY_ASSIGN(auto last, store.LastRun(RunKind::kSync));
    if (!last) return std::string("none");
    return fmt::format("{}/{}/{}", last->id, last->finished, ToCode(last->status));
  }

  // What a dry-run bill of a month reads from the state store, as of now: the resources (as the
  // evaluations are keyed) and the ledger, its deliveries and proposals and the write-back audit.
  Result<SummaryInputs> SummaryKey(StateStore& store) {
    CCM_TRY_ASSIGN(std::string stamp, Stamp(store));
    CCM_TRY_ASSIGN(std::int64_t billing, store.BillingVersion());
    return SummaryInputs{std::move(stamp), generation.load(), billing};
  }

  // The month's billing summary (CloseMonth, dry run), from the cache when nothing it read has
  // changed since; `age` is how old the answer is.
  app::WorkflowResult<std::shared_ptr<const BillingSummaryData>> Summary(
      StateStore& store, const YearMonth& month, std::chrono::seconds& age) {
    std::lock_guard one_at_a_time(billing_m);
    auto key = SummaryKey(store);
    if (!key) return app::Fail(app::ErrorKind::kFailed, "state-failed", key.error().message);
    const auto now = std::chrono::steady_clock::now();
    if (auto it = summaries.find(month); it != summaries.end()) {
      const CachedSummary& c = it->second;
      if (c.key == *key && (!c.read_ehr || now - c.computed < options.billing_summary_max_age)) {
        age = std::chrono::duration_cast<std::chrono::seconds>(now - c.computed);
        return c.data;
      }
      summaries.erase(it);
    }
    app::CloseMonthRequest request;
    request.month = month;
    request.dry_run = true;
    auto data = std::make_shared<BillingSummaryData>();
    app::CloseMonthObserver observer;
    observer.on_warning = [&data](const std::string& w) { data->warnings.push_back(w); };
    auto result = app::CloseMonth(config, store, request, observer);
    if (!result) return result.error();
    metrics.Add("ccm_billing_summaries_computed_total", {{"month", month.ToString()}});
    data->result = std::move(*result);
    age = std::chrono::seconds(0);
    const WriteBackConfig& wb = config.write_back;
    const bool read_ehr = (wb.care_plans || wb.charge_items) && wb.target.has_value();
    // Kept only when it is clean (a problem or warning may be gone on the next try), when the
    // store did not change while it ran, and when it may be kept at all.
    auto after = SummaryKey(store);
    if (data->result.ok() && data->warnings.empty() && after && *after == *key &&
        (!read_ehr || options.billing_summary_max_age.count() > 0)) {
      summaries[month] = CachedSummary{*key, now, read_ehr, data};
      while (summaries.size() > 24) summaries.erase(summaries.begin());
    }
    return std::shared_ptr<const BillingSummaryData>(std::move(data));
  }

  // --- evaluation cache --------------------------------------------------------------------------
  app::WorkflowResult<std::shared_ptr<const EvaluatedMonth>> Evaluate(const YearMonth& month) {
    auto store = Store();
    if (!store) return store.error();
    auto stamp = Stamp(**store);
    if (!stamp) return app::Fail(app::ErrorKind::kFailed, "state-failed", stamp.error().message);
    auto cached = [&]() -> std::shared_ptr<const EvaluatedMonth> {
      std::lock_guard lock(cache_m);
      auto it = cache.find(month);
      if (it != cache.end() && it->second.stamp == *stamp &&
          it->second.generation == generation.load()) {
        return it->second.month;
      }
      return nullptr;
    };
    if (auto hit = cached()) return hit;
    std::lock_guard evaluating(evaluate_m);
    if (auto hit = cached()) return hit;  // another request evaluated it meanwhile
    std::uint64_t gen = generation.load();
    auto report = app::EvaluateStoredMonth(**store, month, config.engine, source_names);
    if (!report) return report.error();
    metrics.Add("ccm_evaluations_total", {{"month", month.ToString()}});
    auto evaluated = std::make_shared<EvaluatedMonth>();
    evaluated->report = std::move(*report);
    evaluated->bodies.reserve(evaluated->report.records.size());
    for (const PatientMonth& r : evaluated->report.records) {
      // Exactly the line `evaluate` writes for the patient (ToNdjson), without its newline.
      std::string body;
      fhir::json::SerializeTo(ToJson(r, evaluated->report.engine), body);
      evaluated->bodies.push_back(std::move(body));
    }
    std::shared_ptr<const EvaluatedMonth> shared = std::move(evaluated);
    std::lock_guard lock(cache_m);
    cache[month] = CachedMonth{*stamp, gen, shared};
    while (cache.size() > 24) cache.erase(cache.begin());  // the oldest months go first
    return shared;
  }

  // After a sync of this process: what changed makes every cached month stale; a sync that changed
  // nothing moves the cached months that were current before it to the stamp after it.
  void AfterSync(const std::string& stamp_before, bool changed) {
    if (changed) {
      ++generation;
      return;
    }
    auto store = Store();
    if (!store) return;
    auto stamp = Stamp(**store);
    if (!stamp) return;
    {
      std::lock_guard lock(cache_m);
      for (auto& [month, entry] : cache) {
        if (entry.stamp == stamp_before) entry.stamp = *stamp;
      }
    }
    std::lock_guard lock(billing_m);
    for (auto& [month, entry] : summaries) {
      if (entry.key.stamp == stamp_before) entry.key.stamp = *stamp;
    }
  }

  // --- syncs
  // ---------------------------------------------------------------------------------------
  SyncStart StartSync(std::string source, std::string trigger) {
    std::lock_guard lock(sync_m);
    if (running) return {running->id, false};
    if (sync_thread.joinable()) sync_thread.join();  // the last one has ended
    auto run = std::make_shared<SyncRun>();
    run->id = ++next_run;
    run->trigger = std::move(trigger);
    run->source = std::move(source);
    run->started_at = fhir::NowUtc();
    runs[run->id] = run;
    while (runs.size() > kKeptRuns) runs.erase(runs.begin());
    running = run;
    stop_sync = false;
    metrics.Set("ccm_sync_running", {}, 1);
    sync_thread = std::thread([this, run] { RunSync(run); });
    return {run->id, true};
  }

  void RunSync(const std::shared_ptr<SyncRun>& run) {
    Log("info", "sync-started",
        fmt::format("sync {} started ({}{})", run->id, run->trigger,
                    run->source.empty() ? "" : ", source " + run->source));
    app::SyncCycleRequest request;
    request.source = run->source;
    request.stop = &stop_sync;
    app::SyncCycleObserver observer;
    observer.on_source_start = [this, run](const SourceConfig&) {
      std::lock_guard lock(sync_m);
      ++run->sources_started;
    };
    observer.pulls.on_page = [this, run](const TypeSync&) {
      std::lock_guard lock(sync_m);
      ++run->pages;
    };
    observer.pulls.on_type_done = [this, run](const TypeSync& t) {
      std::lock_guard lock(sync_m);
      ++run->types_done;
      run->resources += t.resources;
    };
    std::string stamp_before;
    app::WorkflowResult<app::SyncCycleResult> result = app::Fail(app::ErrorKind::kFailed, "", "");
    auto store = app::OpenStateStore(config);
    if (!store) {
      result = store.error();
    } else {
      if (auto s = Stamp(**store)) stamp_before = *s;
      result = app::RunSyncCycle(config, **store, request, observer);
    }
    const std::string state = !result                                      ? "failed"
                              : result->stopped                            ? "stopped"
                              : result->outcome() == app::SyncOutcome::kOk ? "succeeded"
                                                                           : "problems";
    // Everything a finished sync changes is in place before its status says it finished, so a
    // client that saw the state (and a test) finds the cache, the metrics and the evaluation
    // current.
    AfterSync(stamp_before, !result || result->changed > 0 || result->stopped);
    if (result) CountSources(*result);
    metrics.Add("ccm_sync_runs_total", {{"trigger", run->trigger}, {"state", state}});
    if (state == "succeeded") {
      metrics.Set("ccm_sync_last_success_timestamp_seconds", {},
                  std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                      .count());
    }
    // Re-evaluate what changed (issue 15: the schedule "re-evaluates what changed"): the current
    // month, so that neither the next status call nor a metrics scrape pays for the evaluation.
    // Part of the sync's run (a POST /$sync meanwhile gets 409); never during shutdown.
    if (!stop_sync && result && result->changed > 0) {
      static_cast<void>(Evaluate(app::CurrentMonth(config.engine)));
    }
    {
      std::lock_guard lock(sync_m);
      run->finished_at = fhir::NowUtc();
      if (!result) {
        run->error = result.error();
      } else {
        run->result = *result;
      }
      run->state = state;
    }
    Log(state == "succeeded" ? "info"
        : state == "failed"  ? "error"
                             : "warning",
        "sync-finished",
        result ? fmt::format("sync {} {}: {} resource(s) pulled, {} changed, {} type(s) not "
                             "complete, {:.1f}s",
                             run->id, state, result->pulled, result->changed, result->not_complete,
                             result->seconds)
               : fmt::format("sync {} failed: {}: {}", run->id, result.error().code,
                             result.error().message));
    {
      std::lock_guard lock(sync_m);
      running.reset();
      metrics.Set("ccm_sync_running", {}, 0);
    }
    sync_cv.notify_all();
  }

  void CountSources(const app::SyncCycleResult& result) {
    for (const SourceSync& src : result.sources) {
      const Metrics::Labels labels{{"source", src.name}};
      std::size_t pages = 0, resources = 0, errors = src.error.empty() ? 0 : 1;
      for (const TypeSync& t : src.types) {
        pages += t.pages;
        resources += t.resources;
        if (t.state == PullState::kFailed || t.state == PullState::kIncomplete) ++errors;
      }
      metrics.Add("ccm_source_pages_total", labels, static_cast<double>(pages));
      metrics.Add("ccm_source_resources_total", labels, static_cast<double>(resources));
      metrics.Add("ccm_source_requests_total", labels, static_cast<double>(src.http.requests));
      metrics.Add("ccm_source_retries_total", labels, static_cast<double>(src.http.retries));
      metrics.Add("ccm_source_errors_total", labels, static_cast<double>(errors));
    }
  }

  bool StopSync(std::chrono::milliseconds bound) {
    stop_sync = true;
    std::unique_lock lock(sync_m);
    bool ended = sync_cv.wait_for(lock, bound, [this] { return running == nullptr; });
    if (ended && sync_thread.joinable()) {
      lock.unlock();
      sync_thread.join();
    }
    return ended;
  }

  // --- routes
  // --------------------------------------------------------------------------------------
  void AddRoutes() {
    // The page's files need no token: they hold no data (the script asks the API for it, with the
    // session cookie, once signed in).
    for (const WebAsset& a : web) {
      router.Add(
          "GET", a.path, [&a](const Request& req) { return WebFile(a, req); },
          /*needs_auth=*/false);
    }
    router.Add(
        "GET", "/healthz",
        [](const Request&) { return TextResponse(200, "{\"status\":\"ok\"}", "application/json"); },
        /*needs_auth=*/false);
    router.Add(
        "GET", "/readyz", [this](const Request&) { return Ready(); }, /*needs_auth=*/false);
    router.Add(
        "GET", "/metadata", [this](const Request&) { return Metadata(); }, /*needs_auth=*/false);
    router.Add("GET", "/metrics", [this](const Request&) { return MetricsText(); });
    router.Add("GET", std::string(kStatusRoute),
               [this](const Request& req) { return PatientStatus(req); });
    router.Add("GET", std::string(kBillingRoute),
               [this](const Request& req) { return BillingSummary(req); });
    router.Add("GET", std::string(kWorklistRoute),
               [this](const Request& req) { return Worklist(req); });
    router.Add("GET", std::string(kProgramRoute),
               [this](const Request& req) { return ProgramSummary(req); });
    router.Add("GET", std::string(kPatientsRoute),
               [this](const Request& req) { return PatientNames(req); });
    router.Add("POST", "/$sync", [this](const Request& req) { return PostSync(req); });
    router.Add("GET", "/$sync-status/{id}", [this](const Request& req) { return SyncStatus(req); });
  }

  Response Ready() {
    auto not_ready = [](std::string why) {
      return ErrorResponse(MakeHttpError(503, fmt::format("not ready: {}", why)));
    };
    auto store = Store();
    if (!store) return not_ready("the state store cannot be opened");
    auto pulls = (*store)->PullStatuses();
    if (!pulls) return not_ready("the state store cannot be read");
    auto now = std::chrono::system_clock::now();
    const auto max_age = 3 * config.sync.interval;
    for (const std::string& source : source_names) {
      bool any = false;
      for (const PullStatus& p : *pulls) {
        if (p.source != source) continue;
        any = true;
        // A pull running now counts as its last attempt: complete unless failing since.
        bool ok = p.state == PullState::kComplete || p.state == PullState::kNotOffered ||
                  (p.state == PullState::kRunning && p.failing_since.empty() &&
                   !p.last_complete_finished.empty());
        if (!ok) {
          return not_ready(
              fmt::format("source {}: the last pull of {} is {}", source, p.type, ToCode(p.state)));
        }
        if (config.sync.interval_set && p.state != PullState::kNotOffered) {
          const std::string& at = p.state == PullState::kRunning || p.finished_at.empty()
                                      ? p.last_complete_finished
                                      : p.finished_at;
          auto t = fhir::FhirDateTime::ParseInstant(at);
          if (!t || now - t->Earliest() > max_age) {
            return not_ready(fmt::format(
                "source {}: {} was last pulled completely at {}, more than 3 x "
                "sync.intervalSeconds ({} s) ago",
                source, p.type, at.empty() ? "(never)" : at, config.sync.interval.count()));
          }
        }
      }
      if (!any) return not_ready(fmt::format("source {} has not been synced yet", source));
    }
    return TextResponse(200, "{\"status\":\"ready\"}", "application/json");
  }

  Response Metadata() const {
    Value cs = Value::MakeObject();
    cs.set("resourceType", Value::String("CapabilityStatement"));
    cs.set("status", Value::String("active"));
    cs.set("date", Value::String(fhir::NowUtc().substr(0, 10)));
    cs.set("kind", Value::String("instance"));
    Value software = Value::MakeObject();
    software.set("name", Value::String("ccm-gateway"));
    software.set("version", Value::String(options.version));
    cs.set("software", std::move(software));
    cs.set("fhirVersion", Value::String("4.0.1"));
    Value formats = Value::MakeArray();
    formats.push_back(Value::String("json"));
    cs.set("format", std::move(formats));
    Value rest = Value::MakeObject();
    rest.set("mode", Value::String("server"));
    Value security = Value::MakeObject();
    security.set("description",
                 Value::String("Authorization: Bearer <token> (or a client certificate with "
                               "mutual TLS, or the care team's page's session cookie from "
                               "POST /$login) on every operation; /metadata, /healthz, /readyz "
                               "and the page's files need none"));
    rest.set("security", std::move(security));
    auto op = [](std::string name, std::string doc) {
      Value o = Value::MakeObject();
      o.set("name", Value::String(std::move(name)));
      o.set("definition", Value::String("https://github.com/ccm-gateway/docs/api.md#" + doc));
      return o;
    };
    Value patient = Value::MakeObject();
    patient.set("type", Value::String("Patient"));
    Value patient_ops = Value::MakeArray();
    patient_ops.push_back(op("ccm-status", "ccm-status"));
    patient.set("operation", std::move(patient_ops));
    Value resources = Value::MakeArray();
    resources.push_back(std::move(patient));
    rest.set("resource", std::move(resources));
    Value ops = Value::MakeArray();
    ops.push_back(op("ccm-billing-summary", "ccm-billing-summary"));
    ops.push_back(op("ccm-worklist", "ccm-worklist"));
    ops.push_back(op("ccm-program", "ccm-program"));
    ops.push_back(op("ccm-patients", "ccm-patients"));
    ops.push_back(op("sync", "sync"));
    rest.set("operation", std::move(ops));
    Value rests = Value::MakeArray();
    rests.push_back(std::move(rest));
    cs.set("rest", std::move(rests));
    return JsonResponse(200, cs);
  }

  Response MetricsText() {
    if (audit) {
      AccessAudit::Counts c = audit->counts();
      metrics.Set("ccm_audit_records_total", {{"outcome", "stored"}},
                  static_cast<double>(c.written));
      metrics.Set("ccm_audit_records_total", {{"outcome", "dropped"}},
                  static_cast<double>(c.dropped));
    }
    std::string text = metrics.Render();
    // Read at scrape time, so that nothing stale lingers: the ledger and the cached month.
    Metrics now;
    now.Declare("ccm_ledger_entries", "Active billing ledger entries by status",
                Metrics::Kind::kGauge);
    now.Declare("ccm_source_types", "Resource types by source and the state of their last pull",
                Metrics::Kind::kGauge);
    now.Declare("ccm_source_last_success_timestamp_seconds",
                "Unix time as of which every resource type of the source was last pulled "
                "completely (the oldest type's last complete pull; any sync, this process or not)",
                Metrics::Kind::kGauge);
    now.Declare("ccm_patients", "Patients of the current month by program and consent",
                Metrics::Kind::kGauge);
    now.Declare("ccm_billable_patient_months", "Billable patient-months of the current month",
                Metrics::Kind::kGauge);
    if (auto store = Store()) {
      if (auto entries = (*store)->LedgerEntries(LedgerQuery{})) {
        std::map<std::string, double> by_status;
        for (const char* s : {"pending", "submitted", "acknowledged"}) by_status[s] = 0;
        for (const LedgerRow& e : *entries) by_status[std::string(ToCode(e.status))] += 1;
        for (const auto& [status, n] : by_status)
          now.Set("ccm_ledger_entries", {{"status", status}}, n);
      }
      if (auto pulls = (*store)->PullStatuses()) {
        // The store's pull records, not this process's syncs: a `ccm-gateway sync` run beside
        // the service counts too, and a restart forgets nothing.
        std::map<std::string, std::optional<fhir::TimePoint>> oldest;  // nullopt: a type never
        for (const PullStatus& p : *pulls) {
          now.Add("ccm_source_types",
                  {{"source", p.source}, {"state", std::string(ToCode(p.state))}});
          if (p.state == PullState::kNotOffered) continue;
          auto [it, first] = oldest.try_emplace(p.source, fhir::TimePoint::max());
          auto t = fhir::FhirDateTime::ParseInstant(p.last_complete_finished);
          if (!t) {
            it->second.reset();
          } else if (it->second) {
            it->second = std::min(*it->second, t->Earliest());
          }
        }
        for (const auto& [source, t] : oldest) {
          if (!t || *t == fhir::TimePoint::max()) continue;
          now.Set("ccm_source_last_success_timestamp_seconds", {{"source", source}},
                  std::chrono::duration<double>(t->time_since_epoch()).count());
        }
      }
    }
    // The current month through the cache: evaluated at most once per change of the store.
    YearMonth month = app::CurrentMonth(config.engine);
    std::shared_ptr<const EvaluatedMonth> evaluated;
    if (auto e = Evaluate(month)) evaluated = *e;
    if (evaluated) {
      const app::MonthReport* report = &evaluated->report;
      for (const PatientMonth& r : report->records) {
        std::string program(ToCode(r.program));
        now.Add("ccm_patients", {{"month", month.ToString()},
                                 {"program", program.empty() ? "none" : program},
                                 {"consent", std::string(ToCode(r.consent))}});
      }
      now.Set("ccm_billable_patient_months", {{"month", month.ToString()}},
              static_cast<double>(report->summary.billable));
    }
    return TextResponse(200, text + now.Render(), "text/plain; version=0.0.4; charset=utf-8");
  }

  Response PatientStatus(const Request& req) {
    YearMonth month;
    if (auto e = ReadMonth(req, app::CurrentMonth(config.engine), month)) return ErrorResponse(*e);
    auto report = Evaluate(month);
    if (!report) return ErrorResponse(FromWorkflow(report.error()));
    const std::string patient = "Patient/" + req.params.at("id");
    const auto& records = (*report)->report.records;
    auto it =
        std::lower_bound(records.begin(), records.end(), patient,
                         [](const PatientMonth& r, const std::string& p) { return r.patient < p; });
    if (it == records.end() || it->patient != patient) {
      // The id is the caller's own text: no need to repeat it.
      return ErrorResponse(
          MakeHttpError(404, fmt::format("no such patient with CCM data in the state store for {}",
                                         month.ToString())));
    }
    return TextResponse(200, (*report)->bodies[static_cast<std::size_t>(it - records.begin())],
                        "application/json");
  }

  // The care team's worklist of a month (default: the current one) from the cached evaluation;
  // built per request, as of now, since its days left and sums depend on the time of the call.
  Response Worklist(const Request& req) {
    YearMonth month;
    if (auto e = ReadMonth(req, app::CurrentMonth(config.engine), month)) return ErrorResponse(*e);
    auto report = Evaluate(month);
    if (!report) return ErrorResponse(FromWorkflow(report.error()));
    const app::MonthReport& r = (*report)->report;
    const auto now = std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now());
    auto list = BuildWorklist(r.records, month, now, r.engine);
    if (!list) return ErrorResponse(MakeHttpError(500, list.error().message));
    return JsonResponse(200, ToJson(*list, r.engine.fee_schedule.currency), "application/json");
  }

  // The month's funnel, revenue and projection (gateway/ccm/program.h): counts, no patient.
  Response ProgramSummary(const Request& req) {
    YearMonth month;
    if (auto e = ReadMonth(req, app::CurrentMonth(config.engine), month)) return ErrorResponse(*e);
    auto report = Evaluate(month);
    if (!report) return ErrorResponse(FromWorkflow(report.error()));
    const app::MonthReport& r = (*report)->report;
    const auto now = std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now());
    auto list = BuildWorklist(r.records, month, now, r.engine);
    if (!list) return ErrorResponse(MakeHttpError(500, list.error().message));
    fhir::json::Value v =
        ToJson(BuildProgram(r.records, *list, config.program), r.engine.fee_schedule.currency);
    auto trend = LedgerTrend(month);
    if (!trend) return ErrorResponse(MakeHttpError(500, "the billing ledger cannot be read"));
    v.set("trend", std::move(*trend));
    return JsonResponse(200, v, "application/json");
  }

  Response BillingSummary(const Request& req) {
    YearMonth month;
    if (auto e = ReadMonth(req, std::nullopt, month)) return ErrorResponse(*e);
    BillingFormat format = BillingFormat::kJson;
    bool download = false;
    if (auto e = ReadBillingFormat(req, format, download)) return ErrorResponse(*e);
    auto store = Store();
    if (!store) return ErrorResponse(FromWorkflow(store.error()));
    std::chrono::seconds age{0};
    auto summary = Summary(**store, month, age);
    if (!summary) return ErrorResponse(FromWorkflow(summary.error()));
    const app::CloseMonthResult& r = (*summary)->result;
    const std::vector<std::string>& warnings = (*summary)->warnings;
    auto lines_of = [](const LedgerRow& row) {
      std::string codes;
      for (const auto& l : LedgerLines(row)) {
        codes += fmt::format("{}{}x{}", codes.empty() ? "" : " ", l.code, l.units);
      }
      return codes;
    };
    // A download (_format) is saved under a name that says what and which month.
    auto attach = [&](Response resp, std::string_view extension) {
      // RFC 9111 §5.1: how long ago the answer was computed (a cached summary).
      resp.headers.emplace_back("Age", std::to_string(age.count()));
      if (download) {
        resp.headers.emplace_back("Content-Disposition",
                                  fmt::format("attachment; filename=\"ccm-billing-summary-{}{}\"",
                                              month.ToString(), extension));
      }
      return resp;
    };
    if (format == BillingFormat::kCsv) {
      std::string csv = "action,patient,month,kind,program,codes,amount\r\n";
      for (const auto& c : r.ledger.changes) {
        const LedgerRow& row = c.entry ? *c.entry : *c.previous;
        csv += fmt::format("{},{},{},{},{},{},{}\r\n", ToCode(c.action), CsvField(row.patient),
                           row.month, ToCode(row.kind), row.program, CsvField(lines_of(row)),
                           FormatCents(row.amount_cents));
      }
      return attach(TextResponse(200, std::move(csv), "text/csv; charset=utf-8"), ".csv");
    }
    auto count = [](const auto& counts, auto key) {
      auto it = counts.find(key);
      return it == counts.end() ? std::size_t{0} : it->second;
    };
    if (format == BillingFormat::kBundle) {
      return attach(JsonResponse(200, BillingBundle(r, warnings, config.write_back)), ".fhir.json");
    }
    Value v = Value::MakeObject();
    v.set("month", Value::String(r.month.ToString()));
    v.set("dryRun", Value::Bool(true));
    v.set("currency", Value::String(r.currency));
    v.set("billable", Num(r.billable));
    v.set("expectedPayment", Value::Number(FormatCents(r.amount)));
    Value ledger = Value::MakeObject();
    ledger.set("new", Num(count(r.ledger_counts, LedgerAction::kNew)));
    ledger.set("adjusted", Num(count(r.ledger_counts, LedgerAction::kAdjusted)));
    ledger.set("voided", Num(count(r.ledger_counts, LedgerAction::kVoided)));
    ledger.set("withdrawn", Num(count(r.ledger_counts, LedgerAction::kWithdrawn)));
    ledger.set("unchanged", Num(r.ledger.unchanged));
    ledger.set("held", Num(r.held()));
    v.set("ledger", std::move(ledger));
    Value plans = Value::MakeObject();
    for (const auto& [k, n] : r.care_plan_counts) plans.set(k, Num(n));
    v.set("carePlans", std::move(plans));
    Value changes = Value::MakeArray();
    for (const auto& c : r.ledger.changes) {
      const LedgerRow& row = c.entry ? *c.entry : *c.previous;
      Value cv = Value::MakeObject();
      cv.set("action", Value::String(std::string(ToCode(c.action))));
      cv.set("patient", Value::String(row.patient));
      cv.set("month", Value::String(row.month));
      cv.set("kind", Value::String(std::string(ToCode(row.kind))));
      if (!row.program.empty()) cv.set("program", Value::String(row.program));
      Value lines = Value::MakeArray();
      for (const auto& l : LedgerLines(row)) lines.push_back(ToJson(l));
      cv.set("lines", std::move(lines));
      cv.set("amount", Value::Number(FormatCents(row.amount_cents)));
      changes.push_back(std::move(cv));
    }
    v.set("changes", std::move(changes));
    auto strings = [](const std::vector<std::string>& list) {
      Value a = Value::MakeArray();
      for (const auto& s : list) a.push_back(Value::String(s));
      return a;
    };
    v.set("incomplete", strings(r.incomplete));
    v.set("problems", strings(r.problems));
    v.set("warnings", strings(warnings));
    return attach(JsonResponse(200, v, "application/json"), ".json");
  }

  // A file of the page, revalidated by its ETag (no-cache: a new build's page is fetched at once).
  static Response WebFile(const WebAsset& a, const Request& req) {
    Response r;
    r.content_type = a.content_type;
    r.headers = {{"Content-Security-Policy", std::string(kPagePolicy)},
                 {"Cache-Control", "no-cache"},
                 {"ETag", a.etag},
                 {"Referrer-Policy", "no-referrer"},
                 {"X-Frame-Options", "DENY"}};
    std::string_view if_none_match = req.Header("if-none-match");
    if (if_none_match == "*" || if_none_match.find(a.etag) != std::string_view::npos) {
      r.status = 304;
      return r;
    }
    r.body = std::string(a.body);
    return r;
  }

  // The names of the month's patients, for the page (signed-in users only: a name is PHI, and
  // every request is audited). From the stored Patient resources of the configured sources.
  Response PatientNames(const Request& req) {
    YearMonth month;
    if (auto e = ReadMonth(req, app::CurrentMonth(config.engine), month)) return ErrorResponse(*e);
    auto report = Evaluate(month);
    if (!report) return ErrorResponse(FromWorkflow(report.error()));
    auto store = Store();
    if (!store) return ErrorResponse(FromWorkflow(store.error()));
    Value patients = Value::MakeArray();
    for (const PatientMonth& r : (*report)->report.records) {
      std::string name;
      const std::string_view id = std::string_view(r.patient).substr(r.patient.find('/') + 1);
      for (const std::string& source : source_names) {
        auto json = (*store)->ResourceJson(source, "Patient", id);
        if (!json) return ErrorResponse(MakeHttpError(500, "the state store cannot be read"));
        if (!*json) continue;
        if (auto parsed = fhir::json::Parse(**json)) name = DisplayName(*parsed);
        if (!name.empty()) break;
      }
      Value p = Value::MakeObject();
      p.set("patient", Value::String(r.patient));
      p.set("name", name.empty() ? Value() : Value::String(name));
      patients.push_back(std::move(p));
    }
    Value v = Value::MakeObject();
    v.set("month", Value::String(month.ToString()));
    v.set("patients", std::move(patients));
    return JsonResponse(200, v, "application/json");
  }

  // The 12 months up to `month` from the billing ledger -- what `bill` recorded, active entries
  // (not superseded, not voids): patients billed and expected payment per month, oldest first,
  // from the first month with an entry ([] when none has one).
  Result<Value> LedgerTrend(const YearMonth& month) {
    auto store = Store();
    if (!store) return MakeError(Errc::kIo, store.error().message);
    std::vector<YearMonth> months = {month};
    while (months.size() < 12) months.push_back(PreviousMonth(months.back()));
    std::reverse(months.begin(), months.end());
    Value trend = Value::MakeArray();
    for (const YearMonth& m : months) {
      CCM_TRY_ASSIGN(auto entries, (*store)->LedgerEntries(LedgerQuery::Active(m.ToString())));
      std::set<std::string> patients;
      Cents billed = 0;
      for (const LedgerRow& e : entries) {
        if (e.kind == LedgerKind::kVoid) continue;
        patients.insert(e.patient);
        billed += e.amount_cents;
      }
      if (patients.empty() && trend.array().empty()) continue;
      Value t = Value::MakeObject();
      t.set("month", Value::String(m.ToString()));
      t.set("patients", Num(patients.size()));
      t.set("billed", Value::Number(FormatCents(billed)));
      trend.push_back(std::move(t));
    }
    return trend;
  }

  Response PostSync(const Request& req) {
    std::string source = req.Query("source").value_or("");
    if (!source.empty() &&
        std::find(source_names.begin(), source_names.end(), source) == source_names.end()) {
      return ErrorResponse(
          MakeHttpError(400, fmt::format("no source named \"{}\" is configured", source)));
    }
    if (source_names.empty()) {
      return ErrorResponse(MakeHttpError(422, "no sources are configured: nothing to sync"));
    }
    SyncStart s = StartSync(std::move(source), "api");
    if (!s.started) {
      Response r = ErrorResponse(
          MakeHttpError(409, fmt::format("a sync is running already: see {}", SyncLocation(s.id))));
      r.headers.emplace_back("Content-Location", SyncLocation(s.id));
      return r;
    }
    Response r = SyncStatusOf(s.id);
    r.status = 202;
    r.headers.emplace_back("Content-Location", SyncLocation(s.id));
    return r;
  }

  Response SyncStatusOf(std::int64_t id) {
    std::lock_guard lock(sync_m);
    auto it = runs.find(id);
    if (it == runs.end()) {
      return ErrorResponse(MakeHttpError(404, "no such sync run (only the last runs are kept)"));
    }
    return JsonResponse(200, ToJson(*it->second), "application/json");
  }

  Response SyncStatus(const Request& req) {
    const std::string& text = req.params.at("id");
    std::int64_t id = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc() || end != text.data() + text.size() || id <= 0) {
      return ErrorResponse(MakeHttpError(404, "no such sync run"));
    }
    return SyncStatusOf(id);
  }
};

GatewayService::GatewayService(GatewayConfig config, ServiceOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options))) {}

GatewayService::~GatewayService() = default;

const Router& GatewayService::router() const { return impl_->router; }

void GatewayService::OnAccess(const AccessRecord& a) {
  if (impl_->audit && Audited(a.route)) {
    AccessRow row;
    // When the request arrived: the record is made once its response is written.
    row.at = AccessInstant(std::chrono::time_point_cast<fhir::Micros>(
        std::chrono::system_clock::now() - std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::duration<double>(a.seconds))));
    row.principal = a.principal;
    row.method = a.method;
    row.route = a.route;
    if (auto id = a.params.find("id"); id != a.params.end()) {
      // A caller's text: bounded, so that a long path cannot bloat the record (FHIR ids are <= 64).
      row.patient = "Patient/" + id->second.substr(0, 128);
    }
    auto month = std::find_if(a.query.begin(), a.query.end(),
                              [](const auto& q) { return q.first == "month"; });
    if (month == a.query.end()) {
      // $ccm-status, $ccm-worklist and $ccm-patients answer the current month when none is
      // asked for.
      if (MonthDefaults(a.route)) row.month = app::CurrentMonth(impl_->config.engine).ToString();
    } else if (auto m = YearMonth::Parse(month->second)) {
      row.month = m->ToString();
    } else {
      row.month = "(invalid)";
    }
    row.status = static_cast<int>(a.status);
    impl_->audit->Record(std::move(row));
  }
  impl_->metrics.Add(
      "ccm_http_requests_total",
      {{"route", a.route}, {"method", a.method}, {"status", std::to_string(a.status)}});
  impl_->metrics.Observe("ccm_http_request_duration_seconds", {{"route", a.route}}, a.seconds);
  if (!impl_->options.access_log) return;
  // The route's pattern, never the path: the patient id goes in hashed (or as configured).
  Value e = Value::MakeObject();
  e.set("time", Value::String(fhir::NowUtc()));
  e.set("level", Value::String("info"));
  e.set("event", Value::String("access"));
  e.set("method", Value::String(a.method));
  e.set("route", Value::String(a.route));
  e.set("principal", Value::String(a.principal));
  if (auto id = a.params.find("id"); a.route == kStatusRoute && id != a.params.end()) {
    // No PHI in logs (docs/api.md "Logs"): an EHR's patient id may be a medical record number.
    // The salted hash still lets the requests for one patient be told apart and followed.
    std::string reference = "Patient/" + id->second;
    e.set("patient",
          Value::String(impl_->options.log_patient_ids
                            ? reference
                            : "sha256:" +
                                  ToHex(HashToken(impl_->log_salt + reference)).substr(0, 16)));
  }
  e.set("status", Value::Number(static_cast<std::int64_t>(a.status)));
  e.set("seconds", Value::Number(fmt::format("{:.6f}", a.seconds)));
  e.set("bytes", Num(a.bytes_out));
  std::string line = fhir::json::Serialize(e) + "\n";
  std::lock_guard lock(impl_->log_m);
  if (impl_->options.access_sink) {
    impl_->options.access_sink(line);
  } else {
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
}

GatewayService::SyncStart GatewayService::StartSync(std::string source, std::string trigger) {
  return impl_->StartSync(std::move(source), std::move(trigger));
}

GatewayService::SyncStart GatewayService::ScheduledSync() {
  SyncStart s = impl_->StartSync("", "schedule");
  if (!s.started) {
    impl_->metrics.Add("ccm_sync_skipped_total", {});
    impl_->Log("info", "sync-skipped",
               fmt::format("scheduled sync skipped: sync {} is still running", s.id));
  }
  return s;
}

bool GatewayService::SyncRunning() const {
  std::lock_guard lock(impl_->sync_m);
  return impl_->running != nullptr;
}

bool GatewayService::StopSync(std::chrono::milliseconds bound) { return impl_->StopSync(bound); }

bool GatewayService::FlushAudit(std::chrono::milliseconds bound) {
  return !impl_->audit || impl_->audit->Flush(bound);
}

}  // namespace ccm::gateway::server
