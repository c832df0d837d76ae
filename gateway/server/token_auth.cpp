#include "gateway/server/token_auth.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <set>

namespace ccm::gateway::server {

Sha256 HashToken(std::string_view text) {
  Sha256 out{};
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::string ToHex(const Sha256& digest) {
  std::string out;
  out.reserve(64);
  for (unsigned char b : digest) out += fmt::format("{:02x}", b);
  return out;
}

Result<TokenAuth> TokenAuth::Make(const std::vector<Entry>& entries) {
  TokenAuth auth;
  std::set<std::string> names;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    Sha256 digest{};
    bool ok = e.sha256_hex.size() == 64;
    for (std::size_t k = 0; ok && k < 32; ++k) {
      unsigned v = 0;
      auto r = std::sscanf(e.sha256_hex.c_str() + 2 * k, "%2x", &v);
      ok = r == 1 && std::isxdigit(static_cast<unsigned char>(e.sha256_hex[2 * k])) &&
           std::isxdigit(static_cast<unsigned char>(e.sha256_hex[2 * k + 1]));
      digest[k] = static_cast<unsigned char>(v);
    }
    if (!ok) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("tokens[{}].sha256: expected the 64 hex digits of the token's "
                                   "SHA-256 (e.g. `printf %s \"$TOKEN\" | sha256sum`), never the "
                                   "token itself",
                                   i));
    }
    if (e.name.empty() || !names.insert(e.name).second) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("tokens[{}].name: each token needs a name of its own (it is "
                                   "who the access log and audit record name)",
                                   i));
    }
    auth.hashes_.push_back(digest);
    auth.names_.push_back(e.name);
  }
  return auth;
}

std::optional<std::string> TokenAuth::Authenticate(std::string_view authorization) const {
  // RFC 6750 §2.1: "Bearer" (case-insensitive scheme) followed by one space and the token.
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) {
      return std::nullopt;
    }
  }
  return AuthenticateToken(authorization.substr(kScheme.size()));
}

std::optional<std::string> TokenAuth::AuthenticateToken(std::string_view token) const {
  Sha256 presented = HashToken(token);
  // Compared with every entry whatever matched, so the time taken does not say which (or
  // whether) one did.
  std::size_t match = hashes_.size();
  for (std::size_t i = 0; i < hashes_.size(); ++i) {
    bool equal = CRYPTO_memcmp(presented.data(), hashes_[i].data(), presented.size()) == 0;
    match = equal ? i : match;
  }
  if (match == hashes_.size()) return std::nullopt;
  return names_[match];
}

}  // namespace ccm::gateway::server
