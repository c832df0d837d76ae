// Browser sessions of the gateway's service: the page (GET /) exchanges an API token for a session
// cookie (POST /$login, docs/api.md "Browser sessions"), so that the token is typed once and
// never kept by the page's script.
//
// Contract
// - Create() makes a session for a principal (the token's name) and returns its cookie value: 256
//   bits from OpenSSL's CSPRNG as 64 lower-case hex digits. Errc::kInternal when the CSPRNG fails.
// - Only the SHA-256 of a cookie value is kept (the map's key): the store never holds a value that
//   would open a session, so nothing in it (a core dump, a debugger) can be replayed.
// - A session lives `lifetime` from its creation (absolute, not sliding: the cookie's Max-Age says
//   the same to the browser). Find() of an expired or unknown value is nullopt; Remove() ends one.
// - Bounded: at most `max_sessions`; creating one more first drops the expired ones, then the one
//   closest to its end (the oldest).
// - Thread-safe. Time is a parameter (steady clock), so expiry is testable without waiting.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "fhir/result.h"
#include "gateway/server/token_auth.h"

namespace ccm::gateway::server {

class SessionStore {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::chrono::seconds lifetime{480 * 60};  // server.sessionMinutes
    std::size_t max_sessions = 10'000;
  };
  explicit SessionStore(Options options);

  // The new session's cookie value.
  Result<std::string> Create(std::string principal, Clock::time_point now);
  // The principal of the live session `cookie_value` opens, or nullopt.
  std::optional<std::string> Find(std::string_view cookie_value, Clock::time_point now) const;
  // Ends the session (nothing when there is none).
  void Remove(std::string_view cookie_value);

  std::chrono::seconds lifetime() const noexcept { return options_.lifetime; }
  std::size_t size() const;

 private:
  struct Session {
    std::string principal;
    Clock::time_point expires;
  };
  Options options_;
  mutable std::mutex m_;
  std::map<Sha256, Session> sessions_;
};

// The value of cookie `name` in a Cookie request header (RFC 6265 §5.4: "a=b; c=d"), or nullopt.
std::optional<std::string_view> CookieValue(std::string_view cookie_header, std::string_view name);

}  // namespace ccm::gateway::server
