// A FHIR R4 REST client (https://hl7.org/fhir/R4/http.html): read, search with paging, history,
// capabilities, and plain requests for writes, with retries and authorization.
//
// Contract
// - One FhirClient per thread (it owns an HttpClient); the TokenSource may be shared. Search
//   fetches the next page on a helper thread while the caller handles the current one (the client
//   is then busy: do not call it from the page callback).
// - Every exchange is retried per RetryPolicy on connection errors, timeouts, 429, 500, 502, 503
//   and 504 (honouring Retry-After), and on a 2xx whose body is not JSON (a truncated or garbled
//   page). Other 4xx are not retried. A 401 invalidates a renewable token and is retried once.
//   A request marked non-idempotent (a POST without If-None-Exist) is not retried after a
//   connection error, a timeout, 500, 502 or 504, since the server may have applied it; only
//   after 429 and 503, which say it was not processed.
// - Errors name the interaction and the URL without its query, the HTTP status and, when the
//   error body is an OperationOutcome, its issues' severity and code and details.coding
//   system|code values; the servers' free text (diagnostics, details.text) only with
//   FhirClientOptions::server_diagnostics (servers echo patient data there). Never secrets.
// - Search follows Bundle.link[relation=next] exactly as the server gives it, and refuses a next
//   link that leaves the server (a different scheme, host or port would receive our token) or
//   that returns to a page already read (a paging loop).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "fhir/bundle_scan.h"
#include "fhir/client/auth.h"
#include "fhir/client/http_client.h"
#include "fhir/json.h"
#include "fhir/result.h"

namespace ccm::fhir {

struct FhirClientOptions {
  std::string base_url;  // e.g. "https://ehr.example.org/fhir/R4" (no trailing slash needed)
  HttpOptions http;
  RetryPolicy retry;
  std::size_t max_pages = 1'000'000;  // per search, a last guard against endless paging
  // Copy the server's free text (OperationOutcome diagnostics, details.text) into error messages
  // (truncated). Off: only codes, and a note of how much was withheld (DescribeOperationOutcome).
  bool server_diagnostics = false;
};

// What Execute does with a 2xx body.
enum class BodyMode {
  kJson,        // parse into `body` (the lossless DOM)
  kBundleScan,  // keep the text in `text` and scan it as a Bundle into `page` (no tree built)
};

struct FhirResponse {
  long status = 0;
  json::Value body;  // null when the body was empty (or with BodyMode::kBundleScan)
  std::string text;  // BodyMode::kBundleScan: the body as received
  ScannedPage page;  // BodyMode::kBundleScan: entries as spans of `text`
  std::optional<std::chrono::system_clock::time_point> date;  // the server's Date header
  std::string etag, location, last_modified;
  std::size_t bytes = 0;  // body size as received (after decoding)
};

// Counters for progress lines and the run summary.
struct ClientStats {
  std::size_t requests = 0;  // exchanges attempted, retries included
  std::size_t retries = 0;
  std::size_t bytes = 0;
};

struct PageInfo {
  std::size_t number = 0;  // 1-based
  const FhirResponse* response = nullptr;
};

class FhirClient {
 public:
  FhirClient(FhirClientOptions options, std::shared_ptr<TokenSource> auth);

  // Any request; `url` absolute or relative to the base. `idempotent` false stops retries after a
  // connection error (the request may have been applied).
  Result<FhirResponse> Execute(HttpRequest request, bool idempotent,
                               BodyMode mode = BodyMode::kJson);

  Result<FhirResponse> Get(const std::string& url) { return Execute({"GET", url, {}, {}}, true); }
  Result<json::Value> Read(std::string_view type, std::string_view id);
  Result<json::Value> Capabilities();

  // Writes (https://hl7.org/fhir/R4/http.html#create, #update, #cread, #concurrency).
  // Create POSTs `resource` to its type. With `if_none_exist` (a search query such as
  // "identifier=sys|val") the create is conditional: an existing match is returned instead (200),
  // which also makes the request safe to retry.
  Result<FhirResponse> Create(const json::Value& resource,
                              const std::optional<std::string>& if_none_exist = std::nullopt);
  // Update PUTs `resource` to its type/id. With `if_match_version` the server refuses (412,
  // Errc::kConflict) when the stored version is no longer that one.
  Result<FhirResponse> Update(const json::Value& resource,
                              const std::optional<std::string>& if_match_version = std::nullopt);
  // Every resource a search matches (all pages; for small result sets such as an identifier).
  Result<std::vector<json::Value>> SearchAll(
      std::string_view type, const std::vector<std::pair<std::string, std::string>>& params);

  // The first page of a search only (one request; no next link followed), e.g. a probe with
  // `_count=1` or `_summary=count`.
  Result<json::Value> SearchFirstPage(
      std::string_view type, const std::vector<std::pair<std::string, std::string>>& params);
  // Called once per page with the searchset/history Bundle; an error stops the search and is
  // returned.
  using PageFn = std::function<Status(json::Value& bundle, const PageInfo& page)>;
  // `params` are unencoded name/value pairs (values are percent-encoded here).
  Status Search(std::string_view type,
                const std::vector<std::pair<std::string, std::string>>& params,
                const PageFn& on_page);
  // Type-level history (`Type/_history?_since=`), or instance history when `id` is not empty.
  Status History(std::string_view type, std::string_view id, std::optional<std::string> since,
                 const PageFn& on_page);
  // Follows next links from `first_url` (already built).
  Status Pages(std::string first_url, const PageFn& on_page);

  // The same search without building trees: each page arrives as its text with the entries'
  // resources as spans of it (BodyMode::kBundleScan). For bulk pulls that store what the server
  // sent. `response.text` may be moved from.
  using RawPageFn = std::function<Status(FhirResponse& response, const PageInfo& page)>;
  Status SearchRaw(std::string_view type,
                   const std::vector<std::pair<std::string, std::string>>& params,
                   const RawPageFn& on_page);

  const ClientStats& stats() const noexcept { return stats_; }
  const std::string& base_url() const noexcept { return options_.base_url; }

 private:
  std::string Absolute(const std::string& url) const;
  Status PagesImpl(std::string url, BodyMode mode, const RawPageFn& on_page);
  FhirClientOptions options_;
  std::shared_ptr<TokenSource> auth_;
  HttpClient http_;
  std::mt19937_64 rng_;
  ClientStats stats_;
};

// The issues of an OperationOutcome, or "" when `v` is none. With `server_diagnostics`: "error
// processing: <diagnostics>; ..." (each issue's text truncated to 300 characters). Without: the
// coded parts only, "error processing [system|code]; warning invalid (server diagnostics withheld,
// 57 characters; set logging.serverDiagnostics to true to log them)" -- servers echo patient data
// into the text.
std::string DescribeOperationOutcome(const json::Value& v, bool server_diagnostics);

// A code value from a server (an issue code, a coding's system or code), kept only when it looks
// like one -- printable ASCII, no spaces, at most 100 characters -- else "": a code field is no
// place for prose, but a server could put prose (and patient data) there.
std::string_view SafeCode(std::string_view code);

}  // namespace ccm::fhir
