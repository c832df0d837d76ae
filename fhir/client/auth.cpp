#include "fhir/client/auth.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <mutex>

#include "fhir/json.h"

namespace ccm::fhir {
namespace {

struct BioDeleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
struct EcdsaSigDeleter {
  void operator()(ECDSA_SIG* s) const noexcept { ECDSA_SIG_free(s); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

std::string Base64(std::string_view bytes, bool url) {
  static constexpr std::string_view kStd =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  static constexpr std::string_view kUrl =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string_view table = url ? kUrl : kStd;
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    auto n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
             static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
             static_cast<unsigned char>(bytes[i + 2]);
    out += table[n >> 18 & 63];
    out += table[n >> 12 & 63];
    out += table[n >> 6 & 63];
    out += table[n & 63];
  }
  if (std::size_t rest = bytes.size() - i; rest > 0) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += table[n >> 18 & 63];
    out += table[n >> 12 & 63];
    if (rest == 2) out += table[n >> 6 & 63];
    if (!url) out += rest == 2 ? "=" : "==";  // RFC 7515 §2: base64url has no padding
  }
  return out;
}

std::string FormEncode(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out += '&';
    out += EncodeQueryValue(k);
    out += '=';
    out += EncodeQueryValue(v);
  }
  return out;
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  std::array<char, 256> buf{};
  ERR_error_string_n(e, buf.data(), buf.size());
  return buf.data();
}

Result<Pkey> ReadPrivateKey(std::string_view pem) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return MakeError(Errc::kInternal, "OpenSSL: cannot allocate a buffer");
  // A null passphrase callback: an encrypted key fails instead of prompting on the terminal.
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>("")));
  if (!key) {
    return MakeError(
        Errc::kInvalidArgument,
        fmt::format("the private key is not an unencrypted PEM private key ({})", OpenSslError()));
  }
  return key;
}

Result<std::string> Sign(EVP_PKEY* key, JwtAlgorithm alg, std::string_view input) {
  int type = EVP_PKEY_get_base_id(key);
  if (alg == JwtAlgorithm::kRs384 && type != EVP_PKEY_RSA) {
    return MakeError(Errc::kInvalidArgument, "RS384 needs an RSA private key");
  }
  if (alg == JwtAlgorithm::kEs384) {
    if (type != EVP_PKEY_EC) return MakeError(Errc::kInvalidArgument, "ES384 needs an EC key");
    std::array<char, 64> curve{};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, "group", curve.data(), curve.size(), &len) != 1 ||
        std::string_view(curve.data(), len) != "secp384r1") {
      return MakeError(Errc::kInvalidArgument, "ES384 needs an EC key on the P-384 curve");
    }
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key) != 1) {
    return MakeError(Errc::kInternal, fmt::format("OpenSSL: {}", OpenSslError()));
  }
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  std::size_t sig_len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &sig_len, in, input.size()) != 1) {
    return MakeError(Errc::kInternal, fmt::format("OpenSSL: {}", OpenSslError()));
  }
  std::string sig(sig_len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len, in,
                     input.size()) != 1) {
    return MakeError(Errc::kInternal, fmt::format("OpenSSL: {}", OpenSslError()));
  }
  sig.resize(sig_len);
  if (alg == JwtAlgorithm::kRs384) return sig;
  // JWS ES384 signatures are the raw r || s, 48 bytes each (RFC 7518 §3.4), not OpenSSL's DER.
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter> ecdsa(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!ecdsa) return MakeError(Errc::kInternal, "OpenSSL: unreadable ECDSA signature");
  std::string raw(96, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  if (BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa.get()), out, 48) != 48 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa.get()), out + 48, 48) != 48) {
    return MakeError(Errc::kInternal, "OpenSSL: ECDSA signature does not fit P-384");
  }
  return raw;
}

std::string RandomHex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  return hex;
}

class NoAuthSource final : public TokenSource {
 public:
  Result<std::string> Authorization(HttpClient&) override { return std::string(); }
};

class StaticBearerSource final : public TokenSource {
 public:
  explicit StaticBearerSource(std::string token) : header_("Bearer " + std::move(token)) {}
  Result<std::string> Authorization(HttpClient&) override { return header_; }

 private:
  std::string header_;
};

// The token cache and the token request shared by both OAuth flows; subclasses build the
// request body (and headers) that authenticate the client.
class OAuthSource : public TokenSource {
 public:
  explicit OAuthSource(OAuthClientOptions o) : options_(std::move(o)) {}

  Result<std::string> Authorization(HttpClient& http) override {
    std::lock_guard lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    // Renew `refresh_margin` before expiry, or half-way through a token shorter than twice that
    // (a 60 s margin on a 90 s token would otherwise fetch one for every request).
    auto margin =
        std::min<std::chrono::steady_clock::duration>(options_.refresh_margin, lifetime_ / 2);
    if (!token_.empty() && now + margin < expires_) return "Bearer " + token_;
    CCM_TRY(Discover(http));
    HttpRequest req;
    req.method = "POST";
    req.url = options_.token_url;
    req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                   {"Accept", "application/json"}};
    CCM_TRY(BuildRequest(req));
    CCM_TRY_ASSIGN(HttpResponse resp, http.Send(req));
    std::string where = fmt::format("token endpoint {}", RedactUrl(options_.token_url));
    auto body = json::Parse(resp.body);
    if (resp.status != 200) {
      // RFC 6749 §5.2 error response: `error` is a code (kept when it looks like one);
      // `error_description` is the server's free text, withheld unless asked for, as every
      // server text is (it can echo what it was sent).
      std::string_view error = body ? (*body)["error"].str() : std::string_view();
      std::string_view description = body ? (*body)["error_description"].str() : std::string_view();
      bool code_like = !error.empty() && error.size() <= 64 &&
                       std::all_of(error.begin(), error.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' ||
                                c == '-' || c == '.';
                       });
      std::string detail;
      if (options_.server_diagnostics) {
        detail =
            error.empty() ? "no OAuth error code in the body" : std::string(error.substr(0, 100));
        if (!description.empty()) detail += fmt::format(": {}", description.substr(0, 300));
      } else {
        detail = code_like ? std::string(error) : "no OAuth error code in the body";
        auto characters = [](std::string_view text) {
          return std::count_if(text.begin(), text.end(), [](char c) {
            return (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // UTF-8 code points
          });
        };
        if (auto hidden = characters(description) + (code_like ? 0 : characters(error));
            hidden > 0) {
          detail += fmt::format(
              " (error_description withheld, {} characters; set "
              "logging.serverDiagnostics to true to log it)",
              hidden);
        }
      }
      Errc kind =
          resp.status >= 500 || resp.status == 429 ? Errc::kServerError : Errc::kClientError;
      return MakeError(
          kind, fmt::format("{} refused the client (HTTP {}): {}", where, resp.status, detail));
    }
    if (!body || !(*body)["access_token"].is_string() || (*body)["access_token"].str().empty()) {
      return MakeError(Errc::kServerError,
                       fmt::format("{}: the response has no access_token", where));
    }
    token_ = std::string((*body)["access_token"].str());
    long long lifetime = 300;  // RFC 6749 §5.1: expires_in is RECOMMENDED, not required
    if (std::string_view e = (*body)["expires_in"].number_text(); !e.empty()) {
      lifetime = std::atoll(std::string(e).c_str());
    }
    lifetime_ = std::chrono::seconds(std::max(0LL, lifetime));
    expires_ = now + lifetime_;
    return "Bearer " + token_;
  }

  void Invalidate(const std::string& rejected) override {
    std::lock_guard lock(mutex_);
    if (rejected == "Bearer " + token_) token_.clear();
  }
  bool Renewable() const override { return true; }

 protected:
  virtual Status BuildRequest(HttpRequest& req) = 0;
  const OAuthClientOptions& options() const { return options_; }

 private:
  // SMART App Launch §2.0.7 / Backend Services: the token endpoint is published in
  // <fhir base>/.well-known/smart-configuration.
  Status Discover(HttpClient& http) {
    if (!options_.token_url.empty()) return {};
    std::string url = options_.fhir_base;
    while (!url.empty() && url.back() == '/') url.pop_back();
    url += "/.well-known/smart-configuration";
    HttpRequest req;
    req.url = url;
    req.headers = {{"Accept", "application/json"}};
    CCM_TRY_ASSIGN(HttpResponse resp, http.Send(req));
    auto body = json::Parse(resp.body);
    if (resp.status != 200 || !body || !(*body)["token_endpoint"].is_string()) {
      return MakeError(resp.status >= 500 ? Errc::kServerError : Errc::kClientError,
                       fmt::format("{} (HTTP {}) gives no token_endpoint; set auth.tokenUrl in the "
                                   "source's config",
                                   RedactUrl(url), resp.status));
    }
    options_.token_url = std::string((*body)["token_endpoint"].str());
    return {};
  }

  OAuthClientOptions options_;
  std::mutex mutex_;
  std::string token_;
  std::chrono::steady_clock::time_point expires_{};
  std::chrono::seconds lifetime_{0};
};

class ClientCredentialsSource final : public OAuthSource {
 public:
  ClientCredentialsSource(OAuthClientOptions o, std::string secret)
      : OAuthSource(std::move(o)), secret_(std::move(secret)) {}

 private:
  Status BuildRequest(HttpRequest& req) override {
    // client_secret_basic (RFC 6749 §2.3.1): both parts form-encoded, then Base64.
    std::string credentials =
        EncodeQueryValue(options().client_id) + ":" + EncodeQueryValue(secret_);
    req.headers.emplace_back("Authorization", "Basic " + Base64(credentials, false));
    req.body = options().scope.empty()
                   ? FormEncode({{"grant_type", "client_credentials"}})
                   : FormEncode({{"grant_type", "client_credentials"}, {"scope", options().scope}});
    return {};
  }
  std::string secret_;
};

class SmartBackendSource final : public OAuthSource {
 public:
  SmartBackendSource(OAuthClientOptions o, std::string pem, JwtAlgorithm alg, std::string kid)
      : OAuthSource(std::move(o)), pem_(std::move(pem)), alg_(alg), kid_(std::move(kid)) {}

 private:
  Status BuildRequest(HttpRequest& req) override {
    // A fresh assertion (new jti, exp) per token request: servers reject a replayed jti.
    CCM_TRY_ASSIGN(std::string jwt,
                   MakeClientAssertion(pem_, alg_, kid_, options().client_id, options().token_url,
                                       std::chrono::system_clock::now()));
    req.body = FormEncode(
        {{"grant_type", "client_credentials"},
         {"scope", options().scope},
         {"client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
         {"client_assertion", jwt}});
    return {};
  }
  std::string pem_;
  JwtAlgorithm alg_;
  std::string kid_;
};

}  // namespace

std::string Base64UrlEncode(std::string_view bytes) { return Base64(bytes, true); }

std::unique_ptr<TokenSource> NoAuth() { return std::make_unique<NoAuthSource>(); }
std::unique_ptr<TokenSource> StaticBearer(std::string token) {
  return std::make_unique<StaticBearerSource>(std::move(token));
}
std::unique_ptr<TokenSource> ClientCredentials(OAuthClientOptions options,
                                               std::string client_secret) {
  return std::make_unique<ClientCredentialsSource>(std::move(options), std::move(client_secret));
}

Result<std::unique_ptr<TokenSource>> SmartBackendServices(OAuthClientOptions options,
                                                          std::string_view private_key_pem,
                                                          JwtAlgorithm algorithm,
                                                          std::string key_id) {
  // Sign once now so that a wrong key is a configuration error at start-up, not at first use.
  CCM_TRY(MakeClientAssertion(private_key_pem, algorithm, key_id, options.client_id, "check",
                              std::chrono::system_clock::now()));
  return std::unique_ptr<TokenSource>(std::make_unique<SmartBackendSource>(
      std::move(options), std::string(private_key_pem), algorithm, std::move(key_id)));
}

Result<std::string> MakeClientAssertion(std::string_view private_key_pem, JwtAlgorithm algorithm,
                                        std::string_view key_id, std::string_view client_id,
                                        std::string_view token_url,
                                        std::chrono::system_clock::time_point now) {
  CCM_TRY_ASSIGN(Pkey key, ReadPrivateKey(private_key_pem));
  using json::Value;
  Value header = Value::MakeObject();
  header.set("alg", Value::String(algorithm == JwtAlgorithm::kRs384 ? "RS384" : "ES384"));
  header.set("typ", Value::String("JWT"));
  header.set("kid", Value::String(std::string(key_id)));
  auto exp = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() +
             300;  // Backend Services: "no more than five minutes in the future"
  Value claims = Value::MakeObject();
  claims.set("iss", Value::String(std::string(client_id)));
  claims.set("sub", Value::String(std::string(client_id)));
  claims.set("aud", Value::String(std::string(token_url)));
  claims.set("exp", Value::Number(static_cast<std::int64_t>(exp)));
  claims.set("jti", Value::String(RandomHex(16)));
  std::string input =
      Base64UrlEncode(json::Serialize(header)) + "." + Base64UrlEncode(json::Serialize(claims));
  CCM_TRY_ASSIGN(std::string sig, Sign(key.get(), algorithm, input));
  return input + "." + Base64UrlEncode(sig);
}

}  // namespace ccm::fhir
