// Authorization for FHIR requests: none, a static bearer token, OAuth 2.0 client credentials
// with a shared secret (RFC 6749 §4.4), and SMART Backend Services (a private_key_jwt client
// assertion, RFC 7523, signed RS384 or ES384;
// https://hl7.org/fhir/smart-app-launch/backend-services.html).
//
// Contract
// - A TokenSource is shared by every request to one source and is thread-safe. It caches the
//   access token and fetches a new one shortly before expiry (`refresh_margin`) or after
//   Invalidate() (the caller invalidates once when a server answers 401).
// - Secrets (client secret, private key, tokens) are held in memory only; no message, log line or
//   error produced here contains one.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "fhir/client/http_client.h"
#include "fhir/result.h"

namespace ccm::fhir {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // The Authorization header value ("Bearer ..."), or "" for no authorization.
  virtual Result<std::string> Authorization(HttpClient& http) = 0;
  // Forgets the cached token after a server refused `rejected` (the Authorization value sent) with
  // 401; static tokens cannot be renewed and ignore it. When another thread has already replaced
  // that token, nothing happens: several requests refused together renew the token once.
  virtual void Invalidate(const std::string& rejected) { static_cast<void>(rejected); }
  // Whether Invalidate() can produce a different token (worth one retry after a 401).
  virtual bool Renewable() const { return false; }
};

std::unique_ptr<TokenSource> NoAuth();
std::unique_ptr<TokenSource> StaticBearer(std::string token);

struct OAuthClientOptions {
  std::string token_url;  // empty for SMART: discovered from <base>/.well-known/smart-configuration
  std::string fhir_base;  // for discovery
  std::string client_id;
  std::string scope;  // e.g. "system/*.rs"
  std::chrono::seconds refresh_margin{60};
  // Copy the token endpoint's error_description (free text) into error messages; off: only the
  // OAuth error code and how much text was withheld.
  bool server_diagnostics = false;
};

// client_credentials with client_secret_basic.
std::unique_ptr<TokenSource> ClientCredentials(OAuthClientOptions options,
                                               std::string client_secret);

enum class JwtAlgorithm { kRs384, kEs384 };

// SMART Backend Services. `private_key_pem` is an RSA (RS384) or EC P-384 (ES384) private key;
// `key_id` is the `kid` registered with the EHR (its JWKS). Fails when the key does not fit the
// algorithm.
Result<std::unique_ptr<TokenSource>> SmartBackendServices(OAuthClientOptions options,
                                                          std::string_view private_key_pem,
                                                          JwtAlgorithm algorithm,
                                                          std::string key_id);

// Building blocks, exposed for tests.
std::string Base64UrlEncode(std::string_view bytes);
// A signed compact JWS for the client assertion: header {alg, typ: JWT, kid}, claims {iss = sub =
// client_id, aud = token_url, exp = now + 5 min, jti = 128 random bits as hex}.
Result<std::string> MakeClientAssertion(std::string_view private_key_pem, JwtAlgorithm algorithm,
                                        std::string_view key_id, std::string_view client_id,
                                        std::string_view token_url,
                                        std::chrono::system_clock::time_point now);

}  // namespace ccm::fhir
