#include "fhir/client/bulk_export.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <thread>

#include "fhir/datatypes.h"

namespace ccm::fhir {
namespace {

using std::chrono::milliseconds;

// An absolute http(s) URL with a host and nothing unprintable in it.
bool IsHttpUrl(std::string_view url) {
  std::string origin = UrlOrigin(url);
  bool scheme = origin.starts_with("https://") || origin.starts_with("http://");
  if (!scheme || origin.size() <= origin.find("://") + 3) return false;
  return std::all_of(url.begin(), url.end(), [](char c) { return c > ' ' && c <= '~'; });
}

// `url` made absolute against `base` (a status URL may come as a path).
std::string Absolute(std::string_view base, std::string_view url) {
  if (url.find("://") != std::string_view::npos) return std::string(url);
  if (url.starts_with('/')) return UrlOrigin(base) + std::string(url);
  std::string out(base);
  if (!out.ends_with('/')) out += '/';
  return out + std::string(url);
}

// A server's header text for logs: printable ASCII, at most 100 characters, else "".
std::string SafeHeaderText(std::string_view text) {
  if (text.size() > 100) text = text.substr(0, 100);
  for (char c : text) {
    if (c < ' ' || c > '~') return "";
  }
  return std::string(text);
}

// IG v2.0.0 "Response - Error Status": a server that can still finish marks the failure of one
// exchange with an OperationOutcome whose issue.code is "transient".
bool TransientOutcome(const json::Value& oo) {
  if (oo["resourceType"].str() != "OperationOutcome") return false;
  for (const json::Value& issue : oo["issue"].array()) {
    if (issue["code"].str() == "transient") return true;
  }
  return false;
}

bool IsTransient(const Error& e) { return e.is(Errc::kNetwork) || e.is(Errc::kTimeout); }

milliseconds Backoff(const RetryPolicy& retry, int n) {
  long long ms = std::max<long long>(1, retry.initial_backoff.count());
  for (int i = 1; i < n && ms < retry.max_backoff.count(); ++i) ms *= 2;
  return milliseconds(std::min<long long>(ms, std::max<long long>(1, retry.max_backoff.count())));
}

// The items of manifest array `key` (absent: none, when `optional`).
Result<std::vector<BulkFile>> Items(const json::Value& m, std::string_view key, bool optional,
                                    std::string_view fixed_type) {
  std::vector<BulkFile> out;
  const json::Value* list = m.find(key);
  if (list == nullptr || list->is_null()) {
    if (optional) return out;
    return MakeError(Errc::kInvalidResource,
                     fmt::format("the export manifest has no `{}` array", key));
  }
  if (!list->is_array()) {
    return MakeError(Errc::kInvalidResource,
                     fmt::format("the export manifest's `{}` is not an array", key));
  }
  for (std::size_t i = 0; i < list->size(); ++i) {
    const json::Value& item = (*list)[i];
    auto bad = [&](std::string_view why) {
      return MakeError(Errc::kInvalidResource,
                       fmt::format("the export manifest's {}[{}] {}", key, i, why));
    };
    if (!item.is_object()) return bad("is not an object");
    BulkFile f;
    f.type = std::string(item["type"].str());
    f.url = std::string(item["url"].str());
    if (!IsResourceType(f.type) || f.type == "Resource" || f.type == "DomainResource") {
      return bad("has no valid resource `type`");
    }
    if (!fixed_type.empty() && f.type != fixed_type) {
      return bad(fmt::format("has type {} where the IG says {}", f.type, fixed_type));
    }
    if (!IsHttpUrl(f.url)) return bad("has no absolute http(s) `url`");
    if (const json::Value* count = item.find("count"); count != nullptr) {
      std::string_view text = count->number_text();
      std::size_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        return bad("has a `count` that is not a non-negative integer");
      }
      f.count = n;
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

Result<BulkManifest> ParseBulkManifest(const json::Value& m) {
  if (!m.is_object()) {
    return MakeError(Errc::kInvalidResource, "the export manifest is not a JSON object");
  }
  BulkManifest out;
  // transactionTime (1..1 instant) becomes the next _since: without it nothing may be concluded.
  const json::Value& tt = m["transactionTime"];
  if (!tt.is_string()) {
    return MakeError(Errc::kInvalidResource,
                     "the export manifest has no transactionTime; its files cannot be dated, so "
                     "nothing of it is used");
  }
  auto instant = FhirDateTime::ParseInstant(tt.str());
  if (!instant) {
    return MakeError(Errc::kInvalidResource,
                     "the export manifest's transactionTime is not a FHIR instant");
  }
  out.transaction_time = std::string(tt.str());
  out.transaction_instant = instant->Earliest();
  // request: required in v1/v2, deprecated (0..1) since; a string when present.
  if (const json::Value* r = m.find("request"); r != nullptr && !r->is_null()) {
    if (!r->is_string()) {
      return MakeError(Errc::kInvalidResource, "the export manifest's request is not a string");
    }
    out.request = std::string(r->str());
  }
  // requiresAccessToken (1..1 boolean) decides where our token goes: no guessing.
  const json::Value& token = m["requiresAccessToken"];
  if (!token.is_bool()) {
    return MakeError(Errc::kInvalidResource,
                     "the export manifest has no boolean requiresAccessToken");
  }
  out.requires_access_token = token.as_bool();
  CCM_TRY_ASSIGN(out.output, Items(m, "output", false, ""));
  // error: required in v1/v2, but servers omit it when empty.
  CCM_TRY_ASSIGN(out.error, Items(m, "error", true, "OperationOutcome"));
  CCM_TRY_ASSIGN(out.deleted, Items(m, "deleted", true, "Bundle"));
  return out;
}

std::string BulkKickOffUrl(std::string_view base_url, const BulkExportRequest& request) {
  std::string url(base_url);
  while (url.ends_with('/')) url.pop_back();
  switch (request.level) {
    case BulkLevel::kSystem:
      url += "/$export";
      break;
    case BulkLevel::kPatient:
      url += "/Patient/$export";
      break;
    case BulkLevel::kGroup:
      url += fmt::format("/Group/{}/$export", EncodeQueryValue(request.group_id));
      break;
  }
  // IG v2.0.0 "Query Parameters": ndjson is the one format every server supports.
  url += "?_outputFormat=" + EncodeQueryValue("application/fhir+ndjson");
  if (!request.types.empty()) {
    std::string types;
    for (const auto& t : request.types) types += (types.empty() ? "" : ",") + t;
    url += "&_type=" + EncodeQueryValue(types);
  }
  if (request.since) url += "&_since=" + EncodeQueryValue(*request.since);
  for (const auto& f : request.type_filters) url += "&_typeFilter=" + EncodeQueryValue(f);
  return url;
}

BulkExportClient::BulkExportClient(BulkExportOptions options, std::shared_ptr<TokenSource> auth)
    : options_(std::move(options)),
      auth_(auth ? std::move(auth) : std::shared_ptr<TokenSource>(NoAuth())),
      http_(options_.http),
      download_([&] {
        HttpOptions o = options_.http;
        // A large file takes as long as it takes; a stalled one still ends (low-speed limit).
        o.total_timeout = milliseconds(0);
        return o;
      }()),
      rng_(std::random_device{}()) {}

bool BulkExportClient::Stopped() const {
  return options_.stop != nullptr && options_.stop->load(std::memory_order_relaxed);
}

Status BulkExportClient::Wait(milliseconds delay) {
  // In slices, so that a stop request is noticed within a fifth of a second.
  auto until = std::chrono::steady_clock::now() + delay;
  while (std::chrono::steady_clock::now() < until) {
    if (Stopped()) return MakeError(Errc::kConflict, "stopped: the sync was asked to stop");
    auto left = until - std::chrono::steady_clock::now();
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(200)));
  }
  if (Stopped()) return MakeError(Errc::kConflict, "stopped: the sync was asked to stop");
  return {};
}

std::string BulkExportClient::Describe(const HttpResponse& r) const {
  auto parsed = json::Parse(r.body);
  std::string oo = parsed ? DescribeOperationOutcome(*parsed, options_.server_diagnostics) : "";
  return fmt::format("HTTP {}{}{}", r.status, oo.empty() ? "" : ": ", oo);
}

Result<HttpResponse> BulkExportClient::Exchange(HttpClient& http, HttpRequest request,
                                                bool with_token, const HttpClient::DataFn* stream) {
  std::size_t auth_slot = request.headers.size();
  for (int renew = 0;; ++renew) {
    std::string authorization;
    if (with_token) {
      CCM_TRY_ASSIGN(authorization, auth_->Authorization(http_));
      request.headers.resize(auth_slot);
      if (!authorization.empty()) request.headers.emplace_back("Authorization", authorization);
    }
    ++stats_.requests;
    Result<HttpResponse> r =
        stream != nullptr ? http.Stream(request, *stream, true) : http.Send(request);
    if (r) stats_.bytes += r->body.size();
    // A token revoked or expired early: a new one, once.
    if (r && r->status == 401 && with_token && renew == 0 && auth_->Renewable()) {
      auth_->Invalidate(authorization);
      continue;
    }
    return r;
  }
}

Result<std::string> BulkExportClient::KickOff(const BulkExportRequest& request) {
  deadline_ = std::chrono::steady_clock::now() + options_.max_wait;
  std::string url = BulkKickOffUrl(options_.base_url, request);
  std::string where = fmt::format("Bulk Data kick-off GET {}", RedactUrl(url));
  int failures = 0;
  for (;;) {
    if (Stopped()) return MakeError(Errc::kConflict, "stopped: the sync was asked to stop");
    HttpRequest r{"GET", url, {}, {}};
    // IG v2.0.0 "Headers": Accept for the OperationOutcome of a refusal, Prefer is required.
    r.headers = {{"Accept", "application/fhir+json"}, {"Prefer", "respond-async"}};
    Result<HttpResponse> sent = Exchange(http_, std::move(r), true);
    std::optional<milliseconds> retry_after;
    Error last;
    if (!sent) {
      if (!IsTransient(sent.error())) return sent.error();
      last = sent.error();
      ++failures;
    } else if (sent->status == 202) {
      auto location = sent->Header("content-location");
      if (!location || location->empty()) {
        return MakeError(Errc::kServerError,
                         fmt::format("{}: 202 without a Content-Location (the status URL)", where));
      }
      std::string status_url = Absolute(options_.base_url, *location);
      if (!IsHttpUrl(status_url)) {
        return MakeError(Errc::kServerError,
                         fmt::format("{}: the Content-Location is not an http(s) URL", where));
      }
      if (UrlOrigin(status_url) != UrlOrigin(options_.base_url)) {
        return MakeError(Errc::kServerError,
                         fmt::format("{}: the status URL is on another server ({}); not polled, "
                                     "so that our credentials stay with this one",
                                     where, UrlOrigin(status_url)));
      }
      return status_url;
    } else if (sent->status == 404 || sent->status == 405 || sent->status == 501) {
      return MakeError(Errc::kUnsupported,
                       fmt::format("{}: {}; the server does not offer Bulk Data $export at this "
                                   "level (no such operation)",
                                   where, Describe(*sent)));
    } else if (sent->status == 429) {
      // IG v2.0.0: an export of the same client may already be running. Waited out within
      // max_wait; it does not count as a failure.
      if (auto ra = sent->Header("retry-after")) {
        retry_after = ParseRetryAfter(*ra, std::chrono::system_clock::now());
      }
      if (!retry_after) retry_after = Backoff(options_.retry, 1);
      last = MakeError(Errc::kServerError, fmt::format("{}: {}", where, Describe(*sent)));
    } else if (sent->status >= 500) {
      last = MakeError(Errc::kServerError, fmt::format("{}: {}", where, Describe(*sent)));
      if (auto ra = sent->Header("retry-after")) {
        retry_after = ParseRetryAfter(*ra, std::chrono::system_clock::now());
      }
      ++failures;
    } else {
      Errc kind =
          sent->status >= 200 && sent->status < 300 ? Errc::kUnsupported : Errc::kClientError;
      return MakeError(
          kind, fmt::format(
                    "{}: {}{}", where, Describe(*sent),
                    sent->status < 300 ? " instead of 202 Accepted (an asynchronous export)" : ""));
    }
    if (failures >= std::max(1, options_.retry.max_attempts)) {
      return Error(last.code,
                   fmt::format("{} (gave up after {} attempt(s))", last.message, failures));
    }
    milliseconds delay = RetryDelay(options_.retry, failures + 1, retry_after, rng_);
    ++stats_.retries;
    if (std::chrono::steady_clock::now() + delay > *deadline_) {
      return MakeError(Errc::kTimeout,
                       fmt::format("{}: no export could be started within the wait limit ({})",
                                   where, last.message));
    }
    CCM_TRY(Wait(delay));
  }
}

Result<BulkManifest> BulkExportClient::AwaitManifest(
    const std::string& status_url, const std::function<void(std::string_view)>& on_progress) {
  auto deadline = deadline_.value_or(std::chrono::steady_clock::now() + options_.max_wait);
  std::string where = fmt::format("Bulk Data status GET {}", RedactUrl(status_url));
  int failures = 0, polls = 0;
  for (;;) {
    if (Stopped()) return MakeError(Errc::kConflict, "stopped: the sync was asked to stop");
    HttpRequest r{"GET", status_url, {{"Accept", "application/json"}}, {}};
    Result<HttpResponse> sent = Exchange(http_, std::move(r), true);
    ++polls;
    std::optional<milliseconds> retry_after;
    milliseconds delay{0};
    Error last;
    bool failed = false;
    if (!sent) {
      if (!IsTransient(sent.error())) return sent.error();
      last = sent.error();
      failed = true;
    } else {
      HttpResponse& h = *sent;
      if (auto ra = h.Header("retry-after")) {
        retry_after = ParseRetryAfter(*ra, std::chrono::system_clock::now());
      }
      if (h.status == 200) {
        auto body = json::Parse(h.body);
        if (!body) {
          // A truncated or garbled body: the same poll usually answers in full.
          last = MakeError(Errc::kServerError,
                           fmt::format("{}: HTTP 200 with a manifest that is not JSON", where));
          failed = true;
        } else {
          auto manifest = ParseBulkManifest(*body);
          if (!manifest) {
            return Error(manifest.error().code,
                         fmt::format("{}: {}", where, manifest.error().message));
          }
          return manifest;
        }
      } else if (h.status == 202 || h.status == 429) {
        // In progress (202), or polled too often (429): neither is a failure.
        failures = 0;
        if (h.status == 202 && on_progress) {
          if (auto p = h.Header("x-progress")) {
            if (std::string text = SafeHeaderText(*p); !text.empty()) on_progress(text);
          }
        }
        delay = retry_after ? std::clamp(*retry_after, options_.retry.initial_backoff,
                                         std::max(options_.retry.initial_backoff,
                                                  options_.retry.max_retry_after))
                            : Backoff(options_.retry, polls);
      } else if (h.status == 404 || h.status == 410) {
        return MakeError(Errc::kNotFound,
                         fmt::format("{}: {}; the export is gone (deleted or expired by the "
                                     "server)",
                                     where, Describe(h)));
      } else {
        auto oo = json::Parse(h.body);
        bool transient = h.status >= 500 || (oo && TransientOutcome(*oo));
        last = MakeError(h.status >= 500 ? Errc::kServerError : Errc::kClientError,
                         fmt::format("{}: {}", where, Describe(h)));
        // IG v2.0.0: a 4xx/5xx ends the export unless marked transient. A 5xx without that mark
        // is still tried again a few times: proxies and busy servers answer 5xx for a moment.
        if (!transient) {
          return Error(last.code, fmt::format("{}; the export failed", last.message));
        }
        failed = true;
      }
    }
    if (failed) {
      ++failures;
      if (failures >= std::max(1, options_.retry.max_attempts)) {
        return Error(last.code, fmt::format("{} (gave up after {} attempt(s) in a row)",
                                            last.message, failures));
      }
      delay = RetryDelay(options_.retry, failures + 1, retry_after, rng_);
      ++stats_.retries;
    }
    if (std::chrono::steady_clock::now() + delay > deadline) {
      return MakeError(
          Errc::kTimeout,
          fmt::format("{}: the export did not finish within the wait limit ({} "
                      "min, {} poll(s))",
                      where,
                      std::chrono::duration_cast<std::chrono::minutes>(options_.max_wait).count(),
                      polls));
    }
    CCM_TRY(Wait(delay));
  }
}

Result<BulkExportClient::Downloaded> BulkExportClient::Download(
    const BulkFile& file, bool with_token, const LineFn& on_line,
    const std::function<void()>& on_restart) {
  std::string where = fmt::format("Bulk Data file GET {}", RedactUrl(file.url));
  if (with_token && UrlOrigin(file.url) != UrlOrigin(options_.base_url)) {
    return MakeError(Errc::kServerError,
                     fmt::format("{}: the manifest asks for our access token on another server "
                                 "({}); not downloaded, so that the token stays with this one",
                                 where, UrlOrigin(file.url)));
  }
  Downloaded out;
  Error last;
  for (int attempt = 1; attempt <= std::max(1, options_.retry.max_attempts); ++attempt) {
    if (Stopped()) return MakeError(Errc::kConflict, "stopped: the sync was asked to stop");
    if (attempt > 1 && on_restart) on_restart();
    out.attempts = attempt;
    std::string partial;  // the line being received (bounded by max_line_bytes)
    std::size_t lines = 0;
    std::optional<Error> line_error;    // the file's content is broken: retried
    std::optional<Error> caller_error;  // the caller refused: returned as it is
    auto take_line = [&](std::string_view line) -> bool {
      while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) return true;  // blank
      if (line.size() > options_.max_line_bytes) {
        line_error = MakeError(Errc::kIo, fmt::format("{}: a line longer than {} bytes", where,
                                                      options_.max_line_bytes));
        return false;
      }
      auto v = json::Parse(line);
      if (!v || !(*v)["resourceType"].is_string()) {
        line_error =
            MakeError(Errc::kParseError, fmt::format("{}: line {} is not a FHIR resource in JSON{}",
                                                     where, lines + 1, v ? "" : " (invalid JSON)"));
        return false;
      }
      ++lines;
      if (Status s = on_line(line, *v); !s) {
        caller_error = s.error();
        return false;
      }
      return true;
    };
    HttpClient::DataFn on_data = [&](std::string_view chunk) -> bool {
      out.bytes += chunk.size();
      while (!chunk.empty()) {
        auto nl = chunk.find('\n');
        if (nl == std::string_view::npos) {
          if (partial.size() + chunk.size() > options_.max_line_bytes) {
            line_error = MakeError(Errc::kIo, fmt::format("{}: a line longer than {} bytes", where,
                                                          options_.max_line_bytes));
            return false;
          }
          partial.append(chunk);
          return true;
        }
        bool ok = true;
        if (partial.empty()) {
          ok = take_line(chunk.substr(0, nl));
        } else {
          partial.append(chunk.substr(0, nl));
          ok = take_line(partial);
          partial.clear();
        }
        if (!ok) return false;
        chunk.remove_prefix(nl + 1);
      }
      return true;
    };
    // IG v2.0.0 "File Request": Accept application/fhir+ndjson.
    HttpRequest r{"GET", file.url, {{"Accept", "application/fhir+ndjson"}}, {}};
    Result<HttpResponse> sent = Exchange(download_, std::move(r), with_token, &on_data);
    if (caller_error) return *caller_error;
    std::optional<milliseconds> retry_after;
    if (line_error) {
      last = *line_error;
    } else if (!sent) {
      last = Error(sent.error().code, sent.error().message);
    } else if (sent->status >= 200 && sent->status < 300) {
      // The last line may end without a newline.
      if (!partial.empty() && !take_line(partial)) {
        if (caller_error) return *caller_error;
        last = *line_error;
      } else if (file.count && lines != *file.count) {
        last = MakeError(Errc::kServerError,
                         fmt::format("{}: {} resource(s) where the manifest says {} (count)", where,
                                     lines, *file.count));
      } else {
        out.lines = lines;
        return out;
      }
    } else {
      last = MakeError(sent->status >= 500 || sent->status == 429   ? Errc::kServerError
                       : sent->status == 404 || sent->status == 410 ? Errc::kNotFound
                                                                    : Errc::kClientError,
                       fmt::format("{}: {}", where, Describe(*sent)));
      if (!IsRetryableStatus(sent->status)) return last;
      if (auto ra = sent->Header("retry-after")) {
        retry_after = ParseRetryAfter(*ra, std::chrono::system_clock::now());
      }
    }
    if (attempt < options_.retry.max_attempts) {
      ++stats_.retries;
      CCM_TRY(Wait(RetryDelay(options_.retry, attempt + 1, retry_after, rng_)));
    }
  }
  return Error(last.code,
               fmt::format("{} (gave up after {} attempt(s))", last.message, out.attempts));
}

Status BulkExportClient::Delete(const std::string& status_url) {
  std::string where = fmt::format("Bulk Data DELETE {}", RedactUrl(status_url));
  Error last;
  for (int attempt = 1; attempt <= std::max(1, options_.retry.max_attempts); ++attempt) {
    Result<HttpResponse> sent = Exchange(
        http_, HttpRequest{"DELETE", status_url, {{"Accept", "application/fhir+json"}}, {}}, true);
    if (sent && ((sent->status >= 200 && sent->status < 300) || sent->status == 404)) return {};
    if (sent && !IsRetryableStatus(sent->status)) {
      return MakeError(Errc::kClientError, fmt::format("{}: {}", where, Describe(*sent)));
    }
    last = sent ? MakeError(Errc::kServerError, fmt::format("{}: {}", where, Describe(*sent)))
                : sent.error();
    if (attempt < options_.retry.max_attempts && !Stopped()) {
      std::this_thread::sleep_for(RetryDelay(options_.retry, attempt + 1, std::nullopt, rng_));
    }
  }
  return last;
}

}  // namespace ccm::fhir
