// Bearer-token authentication of the gateway's service (HIPAA §164.312(d), person or entity
// authentication).
//
// Contract
// - The gateway never holds a token in its config: each accepted token is configured as the hex
//   SHA-256 of its text plus a name (`server.tokens`); a presented token is hashed and compared
//   with every configured hash in constant time (no early exit, no length leak), so timing says
//   nothing about how close a guess was.
// - Authenticate() takes the Authorization header value and returns the token's name, or nullopt
//   (missing, not "Bearer <token>", or unknown). AuthenticateToken() takes the token itself (the
//   login form's, POST /$login) and compares it the same way.
// - Thread-safe after construction (read-only).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/result.h"

namespace ccm::gateway::server {

using Sha256 = std::array<unsigned char, 32>;

// SHA-256 of `text`.
Sha256 HashToken(std::string_view text);
// Lower-case hex of a digest.
std::string ToHex(const Sha256& digest);

class TokenAuth {
 public:
  struct Entry {
    std::string sha256_hex;  // 64 hex digits
    std::string name;        // who: "care-team-portal", "ehr-integration"
  };
  // Errc::kInvalidArgument naming the entry when a hash is not 64 hex digits or a name is empty
  // or repeated.
  static Result<TokenAuth> Make(const std::vector<Entry>& entries);

  std::optional<std::string> Authenticate(std::string_view authorization) const;
  std::optional<std::string> AuthenticateToken(std::string_view token) const;
  bool empty() const noexcept { return hashes_.empty(); }

 private:
  std::vector<Sha256> hashes_;
  std::vector<std::string> names_;
};

}  // namespace ccm::gateway::server
