#include "gateway/server/router.h"

#include <fmt/format.h>

#include <algorithm>

namespace ccm::gateway::server {
namespace {

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 1;  // paths start with '/'
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 §2.1 percent-decoding; `plus_is_space` for query components (application/x-www-
// form-urlencoded, as FHIR search uses them).
std::optional<std::string> Decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> Request::Query(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return std::nullopt;
}

std::string_view Request::Header(std::string_view name) const {
  auto it = headers.find(std::string(name));
  return it == headers.end() ? std::string_view() : std::string_view(it->second);
}

Response ErrorResponse(const HttpError& e) {
  Response r = JsonResponse(e.status, ToOperationOutcome(e));
  return r;
}

Response JsonResponse(unsigned status, const fhir::json::Value& body, std::string content_type) {
  Response r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = fhir::json::Serialize(body);
  return r;
}

void Router::Add(std::string method, std::string pattern, Handler handler, bool needs_auth) {
  routes_.push_back(Route{std::move(method), std::move(pattern), needs_auth, std::move(handler)});
}

Router::Match Router::Find(std::string_view method, std::string_view path) const {
  Match out;
  std::vector<std::string_view> got = Segments(path);
  std::vector<std::string> allowed;
  for (const Route& r : routes_) {
    std::vector<std::string_view> want = Segments(r.pattern);
    if (want.size() != got.size()) continue;
    std::map<std::string, std::string> params;
    bool same = true;
    for (std::size_t i = 0; i < want.size() && same; ++i) {
      std::string_view w = want[i];
      if (w.size() > 2 && w.front() == '{' && w.back() == '}') {
        if (got[i].empty()) {
          same = false;
        } else {
          params.emplace(std::string(w.substr(1, w.size() - 2)), std::string(got[i]));
        }
      } else {
        same = w == got[i];
      }
    }
    if (!same) continue;
    if (r.method != method) {
      if (std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) {
        allowed.push_back(r.method);
      }
      continue;
    }
    out.route = &r;
    out.params = std::move(params);
    return out;
  }
  if (!allowed.empty()) {
    for (const auto& m : allowed) out.allow += (out.allow.empty() ? "" : ", ") + m;
    out.error = MakeHttpError(
        405, fmt::format("{} is not supported on this path (allowed: {})", method, out.allow));
  } else {
    out.error = MakeHttpError(404, "no such endpoint (GET /metadata lists what this service does)");
  }
  return out;
}

std::optional<Target> ParseTarget(std::string_view target) {
  if (target.empty() || target.front() != '/') return std::nullopt;
  std::size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  if (raw_path.find('#') != std::string_view::npos) return std::nullopt;
  Target out;
  // Decoding a path segment must not create new separators: "%2F" inside an id stays in it.
  std::string path;
  for (std::string_view seg : Segments(raw_path)) {
    auto d = Decode(seg, false);
    if (!d || d->find('/') != std::string::npos) return std::nullopt;
    path += '/';
    path += *d;
  }
  out.path = path.empty() ? "/" : path;
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      std::size_t amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      if (pair.empty()) continue;
      std::size_t eq = pair.find('=');
      auto k = Decode(pair.substr(0, eq), true);
      auto v =
          Decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
      if (!k || !v) return std::nullopt;
      out.query.emplace_back(std::move(*k), std::move(*v));
    }
  }
  return out;
}

}  // namespace ccm::gateway::server
