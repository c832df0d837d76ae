#include "gateway/server/session_store.h"

#include <openssl/rand.h>

#include <algorithm>

namespace ccm::gateway::server {

SessionStore::SessionStore(Options options) : options_(options) {
  options_.max_sessions = std::max<std::size_t>(1, options_.max_sessions);
}

Result<std::string> SessionStore::Create(std::string principal, Clock::time_point now) {
  Sha256 random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    return MakeError(Errc::kInternal, "the random number generator failed: no session made");
  }
  std::string value = ToHex(random);
  std::lock_guard lock(m_);
  if (sessions_.size() >= options_.max_sessions) {
    std::erase_if(sessions_, [now](const auto& s) { return s.second.expires <= now; });
  }
  while (sessions_.size() >= options_.max_sessions) {
    // Full of live sessions: the one that would end first goes. A flood of logins can only end
    // sessions early (each costs a valid token), never grow the memory.
    auto oldest = std::min_element(
        sessions_.begin(), sessions_.end(),
        [](const auto& a, const auto& b) { return a.second.expires < b.second.expires; });
    sessions_.erase(oldest);
  }
  sessions_[HashToken(value)] = Session{std::move(principal), now + options_.lifetime};
  return value;
}

std::optional<std::string> SessionStore::Find(std::string_view cookie_value,
                                              Clock::time_point now) const {
  // Looked up by the hash: the comparison the map makes reveals nothing about the value.
  Sha256 key = HashToken(cookie_value);
  std::lock_guard lock(m_);
  auto it = sessions_.find(key);
  if (it == sessions_.end() || it->second.expires <= now) return std::nullopt;
  return it->second.principal;
}

void SessionStore::Remove(std::string_view cookie_value) {
  Sha256 key = HashToken(cookie_value);
  std::lock_guard lock(m_);
  sessions_.erase(key);
}

std::size_t SessionStore::size() const {
  std::lock_guard lock(m_);
  return sessions_.size();
}

std::optional<std::string_view> CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    std::size_t end = header.find(';');
    std::string_view pair = header.substr(0, end);
    header = end == std::string_view::npos ? std::string_view() : header.substr(end + 1);
    while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
    while (!pair.empty() && (pair.back() == ' ' || pair.back() == '\t')) pair.remove_suffix(1);
    std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
    std::string_view value = pair.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return std::nullopt;
}

}  // namespace ccm::gateway::server
