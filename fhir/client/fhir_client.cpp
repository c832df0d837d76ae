#include "fhir/client/fhir_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

namespace ccm::fhir {
namespace {

std::string AppendParams(std::string url,
                         const std::vector<std::pair<std::string, std::string>>& params) {
  char sep = url.find('?') == std::string::npos ? '?' : '&';
  for (const auto& [k, v] : params) {
    url += sep;
    url += EncodeQueryValue(k);
    url += '=';
    url += EncodeQueryValue(v);
    sep = '&';
  }
  return url;
}

}  // namespace

namespace {

// Code points of UTF-8 text (for "N characters").
std::size_t Characters(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

}  // namespace

// A server's code value, kept only when it looks like one (printable ASCII, no spaces, short):
// a code field is not a place for prose, but a server could put prose there.
std::string_view SafeCode(std::string_view code) {
  if (code.empty() || code.size() > 100) return {};
  for (char c : code) {
    if (c <= ' ' || c > '~') return {};
  }
  return code;
}

std::string DescribeOperationOutcome(const json::Value& v, bool server_diagnostics) {
  if (v["resourceType"].str() != "OperationOutcome") return "";
  std::string out;
  std::size_t withheld = 0;
  for (const json::Value& issue : v["issue"].array()) {
    std::string one =
        fmt::format("{} {}", SafeCode(issue["severity"].str()), SafeCode(issue["code"].str()));
    if (server_diagnostics) {
      std::string_view text = issue["diagnostics"].str();
      if (text.empty()) text = issue["details"]["text"].str();
      if (text.empty()) text = issue["details"]["coding"][0]["display"].str();
      if (!text.empty()) one += fmt::format(": {}", text);
      // Servers sometimes echo whole resources into diagnostics; keep messages readable.
      if (one.size() > 300) {
        one.resize(300);
        one += "...";
      }
    } else {
      // Only what is coded: servers echo patient data into the free text (the search, the
      // resource), and messages end up in logs, problem lines and audit records.
      std::string codes;
      for (const json::Value& c : issue["details"]["coding"].array()) {
        std::string_view system = SafeCode(c["system"].str()), code = SafeCode(c["code"].str());
        if (code.empty()) continue;
        codes += fmt::format("{}{}{}{}", codes.empty() ? "" : ", ", system,
                             system.empty() ? "" : "|", code);
      }
      if (!codes.empty()) one += fmt::format(" [{}]", codes);
      withheld +=
          Characters(issue["diagnostics"].str()) + Characters(issue["details"]["text"].str());
      for (const json::Value& c : issue["details"]["coding"].array()) {
        withheld += Characters(c["display"].str());
      }
    }
    if (!out.empty()) out += "; ";
    out += one;
  }
  if (withheld > 0) {
    out += fmt::format(
        " (server diagnostics withheld, {} characters; set "
        "logging.serverDiagnostics to true to log them)",
        withheld);
  }
  return out;
}

FhirClient::FhirClient(FhirClientOptions options, std::shared_ptr<TokenSource> auth)
    : options_(std::move(options)),
      auth_(auth ? std::move(auth) : std::shared_ptr<TokenSource>(NoAuth())),
      http_(options_.http),
      rng_(std::random_device{}()) {
  while (!options_.base_url.empty() && options_.base_url.back() == '/')
    options_.base_url.pop_back();
}

std::string FhirClient::Absolute(const std::string& url) const {
  if (url.find("://") != std::string::npos) return url;
  if (url.starts_with('/')) return UrlOrigin(options_.base_url) + url;
  return options_.base_url + "/" + url;
}

Result<FhirResponse> FhirClient::Execute(HttpRequest request, bool idempotent, BodyMode mode) {
  request.url = Absolute(request.url);
  bool has_accept = false;
  for (const auto& [k, v] : request.headers) has_accept = has_accept || k == "Accept";
  if (!has_accept) request.headers.emplace_back("Accept", "application/fhir+json");
  std::string where = fmt::format("{} {}", request.method, RedactUrl(request.url));
  std::size_t auth_slot = request.headers.size();
  bool renewed = false;
  Error last;
  for (int attempt = 1; attempt <= std::max(1, options_.retry.max_attempts); ++attempt) {
    std::optional<std::chrono::milliseconds> retry_after;
    Result<std::string> authorization = auth_->Authorization(http_);
    if (!authorization) {
      const Error& e = authorization.error();
      bool transient = e.is(Errc::kNetwork) || e.is(Errc::kTimeout) || e.is(Errc::kServerError);
      if (!transient) return e;
      last = e;
    } else {
      request.headers.resize(auth_slot);
      if (!authorization->empty()) request.headers.emplace_back("Authorization", *authorization);
      ++stats_.requests;
      Result<HttpResponse> sent = http_.Send(request);
      if (!sent) {
        last = sent.error();
        if (!idempotent) return last;
      } else {
        HttpResponse& r = *sent;
        stats_.bytes += r.body.size();
        if (r.status == 401 && auth_->Renewable() && !renewed) {
          // The token may have been revoked or expired early: fetch a new one, once.
          auth_->Invalidate(authorization.value());
          renewed = true;
          --attempt;  // not a failure of the server; does not use up an attempt
          continue;
        }
        FhirResponse out;
        out.status = r.status;
        out.bytes = r.body.size();
        if (auto d = r.Header("date")) out.date = ParseHttpDate(*d);
        if (auto h = r.Header("etag")) out.etag = std::string(*h);
        if (auto h = r.Header("location")) out.location = std::string(*h);
        if (auto h = r.Header("last-modified")) out.last_modified = std::string(*h);
        bool json_body = !r.body.empty();
        if (r.status >= 200 && r.status < 300) {
          std::string invalid;
          if (mode == BodyMode::kBundleScan) {
            Result<ScannedPage> scanned = ScanBundle(r.body);
            if (scanned) {
              out.page = std::move(*scanned);
              out.text = std::move(r.body);
              return out;
            }
            invalid = scanned.error().message;
          } else {
            Result<json::Value> parsed = json_body ? json::Parse(r.body) : Result<json::Value>();
            if (parsed) {
              out.body = std::move(*parsed);
              return out;
            }
            invalid = parsed.error().message;
          }
          // A success with a body that is not JSON: truncated or garbled on the way (proxies do
          // this); the same request usually succeeds again.
          last = MakeError(Errc::kServerError,
                           fmt::format("{}: HTTP {} with a body that is not valid JSON ({})", where,
                                       r.status, invalid));
        } else {
          Result<json::Value> parsed = json_body ? json::Parse(r.body) : Result<json::Value>();
          std::string oo =
              parsed ? DescribeOperationOutcome(*parsed, options_.server_diagnostics) : "";
          Errc kind = r.status == 409 || r.status == 412   ? Errc::kConflict
                      : r.status == 404 || r.status == 410 ? Errc::kNotFound
                      : r.status >= 500 || r.status == 429 ? Errc::kServerError
                                                           : Errc::kClientError;
          last = MakeError(
              kind, fmt::format("{}: HTTP {}{}{}", where, r.status, oo.empty() ? "" : ": ", oo));
          if (!IsRetryableStatus(r.status)) return last;
          if (!idempotent && r.status != 429 && r.status != 503) return last;
          if (auto ra = r.Header("retry-after")) {
            retry_after = ParseRetryAfter(*ra, std::chrono::system_clock::now());
          }
        }
      }
    }
    if (attempt < options_.retry.max_attempts) {
      ++stats_.retries;
      std::this_thread::sleep_for(RetryDelay(options_.retry, attempt + 1, retry_after, rng_));
    }
  }
  return Error(last.code, fmt::format("{} (gave up after {} attempt(s))", last.message,
                                      std::max(1, options_.retry.max_attempts)));
}

Result<json::Value> FhirClient::Read(std::string_view type, std::string_view id) {
  CCM_TRY_ASSIGN(FhirResponse r,
                 Get(fmt::format("{}/{}", EncodeQueryValue(type), EncodeQueryValue(id))));
  return std::move(r.body);
}

Result<FhirResponse> FhirClient::Create(const json::Value& resource,
                                        const std::optional<std::string>& if_none_exist) {
  HttpRequest r{"POST", EncodeQueryValue(resource["resourceType"].str()), {}, {}};
  r.headers.emplace_back("Content-Type", "application/fhir+json");
  // The server returns the stored resource: its id, versionId and lastUpdated.
  r.headers.emplace_back("Prefer", "return=representation");
  if (if_none_exist) r.headers.emplace_back("If-None-Exist", *if_none_exist);
  r.body = json::Serialize(resource);
  // A conditional create finds what a lost first attempt created, so it may be retried.
  return Execute(std::move(r), if_none_exist.has_value());
}

Result<FhirResponse> FhirClient::Update(const json::Value& resource,
                                        const std::optional<std::string>& if_match_version) {
  std::string_view id = resource["id"].str();
  if (id.empty()) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("update of a {} without an id", resource["resourceType"].str()));
  }
  HttpRequest r{
      "PUT",
      fmt::format("{}/{}", EncodeQueryValue(resource["resourceType"].str()), EncodeQueryValue(id)),
      {},
      {}};
  r.headers.emplace_back("Content-Type", "application/fhir+json");
  r.headers.emplace_back("Prefer", "return=representation");
  // R4 §3.1.0.5 (concurrency): a weak ETag of the version read.
  if (if_match_version)
    r.headers.emplace_back("If-Match", fmt::format("W/\"{}\"", *if_match_version));
  r.body = json::Serialize(resource);
  // PUT is idempotent: a retry either applies the same content or meets a 412 whose re-read
  // shows it already applied.
  return Execute(std::move(r), true);
}

Result<std::vector<json::Value>> FhirClient::SearchAll(
    std::string_view type, const std::vector<std::pair<std::string, std::string>>& params) {
  std::vector<json::Value> out;
  CCM_TRY(Search(type, params, [&](json::Value& bundle, const PageInfo&) -> Status {
    if (json::Value* entries = bundle.find("entry"); entries != nullptr && entries->is_array()) {
      for (json::Value& e : *entries->mutable_array()) {
        if (e["search"]["mode"].str() == "include" || e["search"]["mode"].str() == "outcome") {
          continue;
        }
        if (json::Value* res = e.find("resource"); res != nullptr && res->is_object()) {
          out.push_back(std::move(*res));
        }
      }
    }
    return {};
  }));
  return out;
}

Result<json::Value> FhirClient::Capabilities() {
  CCM_TRY_ASSIGN(FhirResponse r, Get("metadata"));
  if (r.body["resourceType"].str() != "CapabilityStatement") {
    return MakeError(Errc::kInvalidResource,
                     fmt::format("GET {}/metadata did not return a CapabilityStatement",
                                 RedactUrl(options_.base_url)));
  }
  return std::move(r.body);
}

Status FhirClient::Search(std::string_view type,
                          const std::vector<std::pair<std::string, std::string>>& params,
                          const PageFn& on_page) {
  return Pages(AppendParams(Absolute(std::string(type)), params), on_page);
}

Result<json::Value> FhirClient::SearchFirstPage(
    std::string_view type, const std::vector<std::pair<std::string, std::string>>& params) {
  CCM_TRY_ASSIGN(FhirResponse r, Get(AppendParams(Absolute(std::string(type)), params)));
  if (r.body["resourceType"].str() != "Bundle") {
    return MakeError(Errc::kInvalidResource, fmt::format("search {} at {} did not return a Bundle",
                                                         type, RedactUrl(options_.base_url)));
  }
  return std::move(r.body);
}

Status FhirClient::History(std::string_view type, std::string_view id,
                           std::optional<std::string> since, const PageFn& on_page) {
  std::string url = Absolute(std::string(type));
  if (!id.empty()) {
    url += '/';
    url += EncodeQueryValue(id);
  }
  url += "/_history";
  std::vector<std::pair<std::string, std::string>> params;
  if (since) params.emplace_back("_since", *since);
  return Pages(AppendParams(url, params), on_page);
}

Status FhirClient::Pages(std::string url, const PageFn& on_page) {
  return PagesImpl(
      std::move(url), BodyMode::kJson,
      [&on_page](FhirResponse& r, const PageInfo& info) { return on_page(r.body, info); });
}

Status FhirClient::SearchRaw(std::string_view type,
                             const std::vector<std::pair<std::string, std::string>>& params,
                             const RawPageFn& on_page) {
  return PagesImpl(AppendParams(Absolute(std::string(type)), params), BodyMode::kBundleScan,
                   on_page);
}

Status FhirClient::PagesImpl(std::string url, BodyMode mode, const RawPageFn& on_page) {
  // A pipeline: a fetcher thread requests page n + 1 as soon as page n has arrived and its next
  // link is known, while the caller handles the pages in order. The server thus never waits for
  // the caller between pages (it did with one page fetched ahead: the caller's work on page n
  // came before the request for page n + 2). Still one request at a time on this client's
  // connection; the caller must not use the client in `on_page`.
  struct Fetched {
    Result<FhirResponse> response;
    bool last = false;
  };
  constexpr std::size_t kAhead = 4;  // pages fetched but not yet handled, at most
  // The state the two threads share. Its destructor stops and joins the fetcher, on every way
  // out of this function (an exception from `on_page` included).
  struct Pipeline {
    std::mutex m;
    std::condition_variable cv;
    std::deque<Fetched> ready;
    bool cancelled = false;
    std::thread fetcher;
    Pipeline() = default;
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;
    ~Pipeline() {
      {
        std::lock_guard lock(m);
        cancelled = true;
      }
      cv.notify_all();
      if (fetcher.joinable()) fetcher.join();
    }
  } pipe;
  std::mutex& m = pipe.m;
  std::condition_variable& cv = pipe.cv;
  std::deque<Fetched>& ready = pipe.ready;
  bool& cancelled = pipe.cancelled;

  auto fetch_all = [&, first = url]() {
    std::string origin = UrlOrigin(Absolute(options_.base_url));
    std::set<std::string> seen{first};
    std::string at = first;
    for (std::size_t n = 1;; ++n) {
      Fetched f{Execute({"GET", at, {}, {}}, true, mode), false};
      std::string next;
      if (f.response) {
        FhirResponse& r = *f.response;
        std::string_view type = mode == BodyMode::kJson ? r.body["resourceType"].str()
                                                        : std::string_view(r.page.resource_type);
        if (type != "Bundle") {
          f.response = MakeError(Errc::kInvalidResource,
                                 fmt::format("GET {}: page {} is not a Bundle", RedactUrl(at), n));
        } else if (mode == BodyMode::kJson) {
          for (const json::Value& link : r.body["link"].array()) {
            if (link["relation"].str() == "next") next = std::string(link["url"].str());
          }
        } else {
          next = r.page.next_url;
        }
      }
      if (f.response && !next.empty()) {
        FhirResponse& r = *f.response;
        std::size_t entries =
            mode == BodyMode::kJson ? r.body["entry"].size() : r.page.entries.size();
        if (entries == 0) {
          // Bounded work: a page with nothing on it that still points further would let a broken
          // (or hostile) server keep a client paging for ever.
          f.response = MakeError(Errc::kServerError,
                                 fmt::format("GET {}: page {} has no entries but links a next "
                                             "page; stopped (the server's paging does not end)",
                                             RedactUrl(at), n));
        }
      }
      if (f.response && !next.empty()) {
        next = Absolute(next);
        if (UrlOrigin(next) != origin) {
          f.response = MakeError(
              Errc::kServerError,
              fmt::format("GET {}: page {} links to another server ({}); not followed, so that "
                          "our credentials stay with this one",
                          RedactUrl(at), n, UrlOrigin(next)));
        } else if (seen.contains(next)) {
          f.response = MakeError(Errc::kServerError,
                                 fmt::format("GET {}: page {}'s next link returns to a page "
                                             "already read (a paging loop in the server); stopped",
                                             RedactUrl(at), n));
        } else if (n + 1 > options_.max_pages) {
          f.response = MakeError(
              Errc::kServerError,
              fmt::format("{}: more than {} pages in one search; stopped (the page limit)",
                          RedactUrl(at), options_.max_pages));
        }
      }
      f.last = !f.response || next.empty();
      bool last = f.last;
      {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return ready.size() < kAhead || cancelled; });
        if (cancelled) return;
        ready.push_back(std::move(f));
      }
      cv.notify_all();
      if (last) return;
      seen.insert(next);
      at = std::move(next);
    }
  };
  // Exceptions (allocation failure) end the pipeline as an error instead of std::terminate.
  // The thread owns the fetch lambda: `pipe`, declared before it, is destroyed (and joins) after
  // every other local. Everything it refers to outlives the join.
  pipe.fetcher = std::thread([fetch_all = std::move(fetch_all), &pipe]() mutable {
    try {
      fetch_all();
    } catch (const std::exception& e) {
      {
        std::lock_guard lock(pipe.m);
        pipe.ready.push_back(
            {MakeError(Errc::kInternal, fmt::format("paging failed: {}", e.what())), true});
      }
      pipe.cv.notify_all();
    }
  });
  for (std::size_t n = 1;; ++n) {
    Fetched f;
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return !ready.empty(); });
      f = std::move(ready.front());
      ready.pop_front();
    }
    cv.notify_all();
    if (!f.response) return f.response.error();
    PageInfo info{n, &*f.response};
    if (Status handled = on_page(*f.response, info); !handled) return handled;
    if (f.last) return {};
  }
}

}  // namespace ccm::fhir
