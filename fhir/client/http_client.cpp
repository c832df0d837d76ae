#include "fhir/client/http_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstring>
#include <ctime>
#include <mutex>

namespace ccm::fhir {
namespace {

// curl_global_init is not thread-safe and must run once per process before any handle exists
// (libcurl: "global constants"); std::call_once makes that true without a global we mutate.
void EnsureCurlInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlHandleDeleter {
  void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

struct Sink {
  HttpResponse* response;
  std::size_t limit;
  bool too_large = false;
  const HttpClient::DataFn* stream = nullptr;  // Stream(): where a 2xx body goes
  long status = 0;                             // of the last status line seen
  bool stopped = false;                        // the stream's receiver said stop
};

std::size_t OnBody(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  std::size_t bytes = size * n;
  if (sink->stream != nullptr && sink->status >= 200 && sink->status < 300) {
    if (!(*sink->stream)(std::string_view(data, bytes))) {
      sink->stopped = true;
      return 0;  // CURLE_WRITE_ERROR
    }
    return bytes;
  }
  if (sink->response->body.size() + bytes > sink->limit) {
    sink->too_large = true;
    return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  sink->response->body.append(data, bytes);
  return bytes;
}

std::size_t OnHeader(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  std::size_t bytes = size * n;
  std::string_view line(data, bytes);
  // A new status line starts a new header block (redirects, 100 Continue): keep only the last.
  if (line.starts_with("HTTP/")) {
    sink->response->headers.clear();
    sink->response->body.clear();  // of a redirect followed
    // "HTTP/1.1 200 OK": the status decides where the body goes (Stream).
    auto space = line.find(' ');
    sink->status = 0;
    if (space != std::string_view::npos && line.size() >= space + 4) {
      long status = 0;
      auto [end, ec] = std::from_chars(line.data() + space + 1, line.data() + space + 4, status);
      if (ec == std::errc() && end == line.data() + space + 4) sink->status = status;
    }
    return bytes;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return bytes;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  // Size the body once when the length is known (a page is often a few hundred KiB); with a
  // Content-Encoding it is the compressed length, a lower bound that still saves most regrowth.
  // Not for a streamed body, which is never held.
  if (name == "content-length" && sink->stream == nullptr) {
    std::size_t length = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
    if (ec == std::errc() && end == value.data() + value.size() && length <= sink->limit) {
      sink->response->body.reserve(length);
    }
  }
  sink->response->headers.emplace_back(std::move(name), std::string(value));
  return bytes;
}

}  // namespace

std::optional<std::string_view> HttpResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

struct HttpClient::Impl {
  std::unique_ptr<CURL, CurlHandleDeleter> curl;
};

HttpClient::HttpClient(HttpOptions options) : options_(std::move(options)) {
  EnsureCurlInit();
  impl_ = std::make_unique<Impl>();
  impl_->curl.reset(curl_easy_init());
}

HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

Result<HttpResponse> HttpClient::Send(const HttpRequest& request) {
  return Perform(request, nullptr, false);
}

Result<HttpResponse> HttpClient::Stream(const HttpRequest& request, const DataFn& on_data,
                                        bool follow_redirects) {
  return Perform(request, &on_data, follow_redirects);
}

Result<HttpResponse> HttpClient::Perform(const HttpRequest& request, const DataFn* on_data,
                                         bool follow_redirects) {
  CURL* c = impl_->curl.get();
  if (c == nullptr) return MakeError(Errc::kInternal, "libcurl could not create a handle");
  // Reset per request but keep the handle: its connection cache makes keep-alive work.
  curl_easy_reset(c);
  HttpResponse response;
  Sink sink{&response, options_.max_response_bytes};
  sink.stream = on_data;
  std::array<char, CURL_ERROR_SIZE> error_buffer{};

  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_buffer.data());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts in threads
  // Read up to 512 KiB per system call (default 16 KiB): search pages are often that large.
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024L);
  // Only HTTP(S): a server-provided next link must never make us read file:// or gopher://.
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, follow_redirects ? 1L : 0L);
  if (follow_redirects) curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  if (options_.compression) {
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // every encoding curl can decode
  }
  curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_bytes);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.low_speed_time.count()));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, options_.tls.verify ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, options_.tls.verify ? 2L : 0L);
  if (!options_.tls.ca_file.empty())
    curl_easy_setopt(c, CURLOPT_CAINFO, options_.tls.ca_file.c_str());
  if (!options_.tls.client_cert.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, options_.tls.client_cert.c_str());
  }
  if (!options_.tls.client_key.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLKEY, options_.tls.client_key.c_str());
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);

  // curl_slist_append returns the list's head, which stays the same after the first append; the
  // owner is re-seated only when the head changes (reset() to the same pointer would free it).
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto append = [&headers](const std::string& line) {
    curl_slist* head = curl_slist_append(headers.get(), line.c_str());
    if (head == nullptr) return false;
    if (head != headers.get()) headers.reset(head);
    return true;
  };
  for (const auto& [k, v] : request.headers) {
    if (!append(fmt::format("{}: {}", k, v))) {
      return MakeError(Errc::kInternal, "out of memory building headers");
    }
  }
  // Without this, curl sends "Expect: 100-continue" for larger bodies and waits for a reply.
  append("Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    if (request.method != "DELETE" || !request.body.empty()) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    }
  }

  CURLcode rc = curl_easy_perform(c);
  std::string where = fmt::format("{} {}", request.method, RedactUrl(request.url));
  if (rc != CURLE_OK) {
    if (sink.stopped) {
      return MakeError(Errc::kIo, fmt::format("{}: stopped by the receiver of the body", where));
    }
    if (sink.too_large) {
      return MakeError(Errc::kIo, fmt::format("{}: response larger than {} bytes; refused", where,
                                              options_.max_response_bytes));
    }
    std::string detail = error_buffer[0] != '\0' ? error_buffer.data() : curl_easy_strerror(rc);
    Errc kind = rc == CURLE_OPERATION_TIMEDOUT ? Errc::kTimeout : Errc::kNetwork;
    return MakeError(kind,
                     fmt::format("{}: {} (curl error {})", where, detail, static_cast<int>(rc)));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

std::string UrlOrigin(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "";
  auto path = url.find_first_of("/?#", scheme_end + 3);
  std::string origin(url.substr(0, path));
  for (char& c : origin) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return origin;
}

std::string RedactUrl(std::string_view url) {
  auto cut = url.find_first_of("?#");
  return std::string(url.substr(0, cut));
}

std::string EncodeQueryValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (unsigned char ch : value) {
    if (std::isalnum(ch) != 0 || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      out += fmt::format("%{:02X}", ch);
    }
  }
  return out;
}

bool IsRetryableStatus(long status) noexcept {
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

std::optional<std::chrono::system_clock::time_point> ParseHttpDate(std::string_view v) {
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 §5.6.7), exactly 29 characters.
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.size() != 29 || v[3] != ',' || v.substr(26) != "GMT") return std::nullopt;
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto num = [&](std::size_t pos, std::size_t len, int& out) {
    auto [p, ec] = std::from_chars(v.data() + pos, v.data() + pos + len, out);
    return ec == std::errc() && p == v.data() + pos + len;
  };
  int day = 0, year = 0, hh = 0, mm = 0, ss = 0;
  if (!num(5, 2, day) || !num(12, 4, year) || !num(17, 2, hh) || !num(20, 2, mm) ||
      !num(23, 2, ss) || v[19] != ':' || v[22] != ':') {
    return std::nullopt;
  }
  auto month = std::find(kMonths.begin(), kMonths.end(), v.substr(8, 3));
  if (month == kMonths.end() || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
    return std::nullopt;
  }
  std::chrono::year_month_day ymd{
      std::chrono::year(year),
      std::chrono::month(static_cast<unsigned>(month - kMonths.begin() + 1)),
      std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days(ymd) + std::chrono::hours(hh) + std::chrono::minutes(mm) +
         std::chrono::seconds(ss);
}

std::optional<std::chrono::milliseconds> ParseRetryAfter(
    std::string_view value, std::chrono::system_clock::time_point now) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (!value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    long long seconds = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc()) return std::chrono::milliseconds(std::chrono::hours(24));  // huge
    return std::chrono::milliseconds(std::min<long long>(seconds, 86'400) * 1000);
  }
  auto when = ParseHttpDate(value);
  if (!when) return std::nullopt;
  if (*when <= now) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(*when - now);
}

std::chrono::milliseconds RetryDelay(const RetryPolicy& policy, int attempt,
                                     std::optional<std::chrono::milliseconds> retry_after,
                                     std::mt19937_64& rng) {
  // Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): spreads the retries of
  // many clients that failed together instead of having them return in lockstep.
  long long cap = policy.initial_backoff.count();
  for (int i = 2; i < attempt && cap < policy.max_backoff.count(); ++i) cap *= 2;
  cap = std::min(cap, static_cast<long long>(policy.max_backoff.count()));
  std::uniform_int_distribution<long long> dist(0, std::max(0LL, cap));
  std::chrono::milliseconds delay(dist(rng));
  if (retry_after) delay = std::max(delay, std::min(*retry_after, policy.max_retry_after));
  return delay;
}

}  // namespace ccm::fhir
