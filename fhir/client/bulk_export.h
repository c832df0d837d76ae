// A FHIR Bulk Data Access client (https://hl7.org/fhir/uv/bulkdata/STU2/export.html, IG v2.0.0;
// what v1 and v3 servers send is accepted): kick-off, status polling, the manifest, streamed NDJSON
// downloads and the DELETE that ends an export. Generic: it knows nothing of what is exported or
// where it goes.
//
// Contract
// - One BulkExportClient per thread (it owns its HTTP connections); the TokenSource may be shared.
// - Nothing the server sends is trusted. ParseBulkManifest refuses a manifest without a valid
//   transactionTime or requiresAccessToken, and any output/error/deleted item without a valid type
//   or an absolute http(s) url, or with a count that is not a non-negative integer: a broken
//   manifest is an error, never an empty export. Download() checks every line is a JSON object
//   with a resourceType and that the lines number the item's `count` when it has one.
// - The access token goes with the kick-off, the polls and the DELETE; with a file download only
//   when the manifest says requiresAccessToken = true, and then only to the FHIR server's own
//   origin (a file elsewhere is refused rather than handed our token). Redirects of downloads are
//   followed; libcurl keeps Authorization from other hosts.
// - Waits: a Retry-After (seconds or HTTP-date) is honoured but capped at
//   retry.max_retry_after and never shorter than retry.initial_backoff; without one, polls back off
//   exponentially from retry.initial_backoff to retry.max_backoff. Transient failures (connection
//   errors, timeouts, 5xx, an OperationOutcome with code "transient") are retried up to
//   retry.max_attempts times in a row; a 429 on kick-off (an export already running) is waited out.
//   Everything from kick-off to the manifest ends at max_wait (Errc::kTimeout).
// - Downloads are streamed: each line goes to the caller as it arrives, so memory is bounded by
//   the longest line (max_line_bytes), not by the file. A failed attempt (transfer error, a bad
//   line, a wrong count, 5xx) is retried up to retry.max_attempts times; on_restart tells the
//   caller that the lines of the attempt so far will come again.
// - Errors name the step and the URL without its query (which may carry identifiers); the server's
//   free text only with server_diagnostics (DescribeOperationOutcome). Never secrets.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/client/auth.h"
#include "fhir/client/fhir_client.h"
#include "fhir/client/http_client.h"
#include "fhir/datetime.h"
#include "fhir/json.h"
#include "fhir/result.h"

namespace ccm::fhir {

enum class BulkLevel {
  kSystem,   // [base]/$export
  kPatient,  // [base]/Patient/$export
  kGroup,    // [base]/Group/[id]/$export
};

struct BulkExportOptions {
  std::string base_url;  // the FHIR base
  HttpOptions http;      // downloads use it without a total timeout (the low-speed limit stays)
  RetryPolicy retry;
  std::chrono::milliseconds max_wait{std::chrono::minutes(240)};
  std::size_t max_line_bytes = std::size_t{64} << 20;
  bool server_diagnostics = false;
  // Set by another thread to stop: checked between exchanges and while waiting.
  const std::atomic<bool>* stop = nullptr;
};

struct BulkExportRequest {
  BulkLevel level = BulkLevel::kSystem;
  std::string group_id;                   // kGroup: the Group's id (without "Group/")
  std::vector<std::string> types;         // _type (empty: the server's choice)
  std::optional<std::string> since;       // _since: the previous export's transactionTime
  std::vector<std::string> type_filters;  // _typeFilter values, e.g. "Encounter?date=ge2026-01-01"
};

struct BulkFile {
  std::string type;  // resource type of its lines
  std::string url;
  std::optional<std::size_t> count;  // resources in it, when the server says
};

struct BulkManifest {
  std::string transaction_time;  // as the server wrote it (the next _since)
  TimePoint transaction_instant;
  std::string request;  // the kick-off URL as the server echoes it ("" when absent: deprecated)
  bool requires_access_token = true;
  std::vector<BulkFile> output, error, deleted;
};

// Validates a complete-status body (IG v2.0.0 "Response - Complete Status"). Errc::kInvalidResource
// naming the field when something required is missing or wrong.
Result<BulkManifest> ParseBulkManifest(const json::Value& manifest);

// The kick-off URL for `request` under `base_url` (parameters percent-encoded).
std::string BulkKickOffUrl(std::string_view base_url, const BulkExportRequest& request);

class BulkExportClient {
 public:
  BulkExportClient(BulkExportOptions options, std::shared_ptr<TokenSource> auth);

  // Starts an export; returns the absolute status URL (Content-Location of the 202).
  // Errc::kUnsupported when the server has no $export there (404, 405, 501), Errc::kClientError for
  // another refusal.
  Result<std::string> KickOff(const BulkExportRequest& request);

  // Polls `status_url` until the manifest; `on_progress` gets each X-Progress (printable ASCII
  // only, at most 100 characters). The max_wait deadline runs from KickOff (or from this call).
  Result<BulkManifest> AwaitManifest(const std::string& status_url,
                                     const std::function<void(std::string_view)>& on_progress = {});

  struct Downloaded {
    std::size_t lines = 0;  // of the attempt that succeeded
    std::size_t bytes = 0;  // every attempt's
    int attempts = 0;
  };
  // `line` is the exact text of one NDJSON line (without the newline), `resource` its parse.
  using LineFn = std::function<Status(std::string_view line, const json::Value& resource)>;
  // Downloads `file` line by line (see the contract). An error from `on_line` ends the download
  // at once and is returned as it is (not retried).
  Result<Downloaded> Download(const BulkFile& file, bool with_token, const LineFn& on_line,
                              const std::function<void()>& on_restart = {});

  // DELETE of the status URL: the export is done with (or cancelled). A 404 counts as done.
  Status Delete(const std::string& status_url);

  const ClientStats& stats() const noexcept { return stats_; }

 private:
  Result<HttpResponse> Exchange(HttpClient& http, HttpRequest request, bool with_token,
                                const HttpClient::DataFn* stream = nullptr);
  Status Wait(std::chrono::milliseconds delay);
  bool Stopped() const;
  std::string Describe(const HttpResponse& response) const;

  BulkExportOptions options_;
  std::shared_ptr<TokenSource> auth_;
  HttpClient http_;      // kick-off, polls, DELETE
  HttpClient download_;  // files: no total timeout
  std::mt19937_64 rng_;
  ClientStats stats_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
};

}  // namespace ccm::fhir
