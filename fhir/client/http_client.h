// A small blocking HTTP(S) client on libcurl, for talking to FHIR servers and OAuth token
// endpoints.
//
// Contract
// - One HttpClient owns one curl easy handle (and with it a connection cache: keep-alive to the
//   same server is reused). It is not thread-safe; give each thread its own.
// - `Send` performs exactly one exchange; it never retries (RetryPolicy below is for callers that
//   know which requests are safe to repeat). Connection failures and timeouts are errors
//   (Errc::kNetwork, Errc::kTimeout); any HTTP status, 4xx and 5xx included, is a response.
// - Responses are decoded (gzip/deflate are accepted and unpacked by curl). A body larger than
//   `max_response_bytes` fails the exchange rather than exhausting memory.
// - Error messages name the method and the URL without its query (which may carry patient
//   identifiers) and never the request headers (which carry credentials).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fhir/result.h"

namespace ccm::fhir {

struct TlsOptions {
  bool verify = true;       // peer certificate and host name (never turn off in production)
  std::string ca_file;      // PEM bundle to trust instead of the system store
  std::string client_cert;  // PEM client certificate for mutual TLS
  std::string client_key;   // its PEM private key
};

struct HttpOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds total_timeout{120'000};  // whole exchange; 0 = none
  // Abort when fewer than `low_speed_bytes` per second arrive for `low_speed_time`.
  long low_speed_bytes = 1;
  std::chrono::seconds low_speed_time{30};
  std::string user_agent = "ccm-gateway";
  // Ask for gzip/deflate/br/zstd bodies (decoded here). Saves bandwidth to remote servers; on a
  // fast local link the server's compression can cost more than it saves.
  bool compression = true;
  TlsOptions tls;
  std::size_t max_response_bytes = std::size_t{1} << 30;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  long status = 0;
  // Header names lower-cased; a repeated header appears once per occurrence.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first value of header `name` (lower-case), if any.
  std::optional<std::string_view> Header(std::string_view name) const;
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;

  Result<HttpResponse> Send(const HttpRequest& request);

  // Receives a body as it arrives; false stops the exchange (Stream then fails with Errc::kIo).
  using DataFn = std::function<bool(std::string_view chunk)>;
  // Like Send, but the body of a 2xx answer goes to `on_data` piece by piece (decoded) instead of
  // into the response, so memory does not grow with it; any other status keeps its body in the
  // response (up to max_response_bytes) for the error message. With `follow_redirects` up to 5
  // redirects are followed; libcurl (>= 7.58) does not forward an Authorization header to another
  // host or port.
  Result<HttpResponse> Stream(const HttpRequest& request, const DataFn& on_data,
                              bool follow_redirects = false);
  const HttpOptions& options() const noexcept { return options_; }

 private:
  Result<HttpResponse> Perform(const HttpRequest& request, const DataFn* on_data,
                               bool follow_redirects);
  struct Impl;
  HttpOptions options_;
  std::unique_ptr<Impl> impl_;
};

// The URL with its query and fragment removed, for messages and logs.
std::string RedactUrl(std::string_view url);

// scheme://authority of an absolute URL, lower-cased (RFC 3986 §6.2.2.1: scheme and host compare
// case-insensitively): "https://ehr.example.org:8443". "" when `url` is not absolute.
std::string UrlOrigin(std::string_view url);

// Percent-encodes a query value (RFC 3986 unreserved characters stay; '+' becomes %2B).
std::string EncodeQueryValue(std::string_view value);

// When to try an exchange again (connection errors, 429, 500, 502, 503, 504).
struct RetryPolicy {
  int max_attempts = 5;  // including the first
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30'000};
  // A Retry-After longer than this is cut to it (a server asking for an hour would stall a sync).
  std::chrono::milliseconds max_retry_after{120'000};
};

bool IsRetryableStatus(long status) noexcept;

// Parses a Retry-After value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to `now`.
// nullopt when unreadable; a date in the past gives zero.
std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now);

// The wait before attempt `attempt` (2 = first retry): exponential backoff with full jitter
// (uniform in [0, min(max_backoff, initial * 2^(attempt-2))]), or the server's Retry-After when
// given (capped at max_retry_after), whichever is longer.
std::chrono::milliseconds RetryDelay(const RetryPolicy& policy, int attempt,
                                     std::optional<std::chrono::milliseconds> retry_after,
                                     std::mt19937_64& rng);

// Parses an HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT"); the obsolete forms are not
// accepted.
std::optional<std::chrono::system_clock::time_point> ParseHttpDate(std::string_view value);

}  // namespace ccm::fhir
