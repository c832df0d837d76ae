// The HTTP building blocks that need no server: Retry-After, HTTP dates, backoff, encoding, and
// the SMART client assertion (signed here, verified with OpenSSL's public-key API).
#include "fhir/client/http_client.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <gtest/gtest.h>

#include "fhir/client/auth.h"
#include "fhir/client/fhir_client.h"
#include "fhir/json.h"

namespace ccm::fhir {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::system_clock;

system_clock::time_point At(int y, unsigned m, unsigned d, int hh, int mm, int ss) {
  return std::chrono::sys_days(std::chrono::year_month_day(
             std::chrono::year(y), std::chrono::month(m), std::chrono::day(d))) +
         std::chrono::hours(hh) + std::chrono::minutes(mm) + seconds(ss);
}

TEST(HttpDateTest, ParsesImfFixdate) {
  auto t = ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, At(1994, 11, 6, 8, 49, 37));
  EXPECT_FALSE(ParseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"));  // RFC 850: obsolete
  EXPECT_FALSE(ParseHttpDate("Sun, 31 Feb 1994 08:49:37 GMT"));
  EXPECT_FALSE(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 UTC"));
  EXPECT_FALSE(ParseHttpDate(""));
}

TEST(RetryAfterTest, SecondsAndDates) {
  auto now = At(2026, 11, 23, 10, 0, 0);
  EXPECT_EQ(ParseRetryAfter("120", now), milliseconds(120'000));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), milliseconds(0));
  EXPECT_EQ(ParseRetryAfter("Mon, 23 Nov 2026 10:00:30 GMT", now), milliseconds(30'000));
  EXPECT_EQ(ParseRetryAfter("Mon, 23 Nov 2026 09:00:00 GMT", now), milliseconds(0));  // past
  EXPECT_FALSE(ParseRetryAfter("soon", now));
  EXPECT_FALSE(ParseRetryAfter("-5", now));
  // An absurd number is capped rather than overflowing.
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", now), milliseconds(86'400'000));
}

TEST(RetryDelayTest, ExponentialWithJitterAndRetryAfterCap) {
  RetryPolicy p;
  p.initial_backoff = milliseconds(100);
  p.max_backoff = milliseconds(1000);
  p.max_retry_after = milliseconds(5000);
  std::mt19937_64 rng(42);
  for (int attempt = 2; attempt <= 8; ++attempt) {
    long long cap = std::min(1000LL, 100LL << (attempt - 2));
    milliseconds max_seen{0};
    for (int i = 0; i < 200; ++i) {
      milliseconds d = RetryDelay(p, attempt, std::nullopt, rng);
      EXPECT_GE(d.count(), 0);
      EXPECT_LE(d.count(), cap) << "attempt " << attempt;
      max_seen = std::max(max_seen, d);
    }
    EXPECT_GT(max_seen.count(), cap / 2) << "jitter spreads over the whole range";
  }
  // Retry-After wins when longer, and is capped.
  EXPECT_GE(RetryDelay(p, 2, milliseconds(3000), rng), milliseconds(3000));
  EXPECT_EQ(RetryDelay(p, 2, milliseconds(60'000), rng), milliseconds(5000));
}

TEST(RetryTest, RetryableStatuses) {
  for (long s : {429L, 500L, 502L, 503L, 504L}) EXPECT_TRUE(IsRetryableStatus(s)) << s;
  for (long s : {200L, 400L, 401L, 403L, 404L, 409L, 412L, 422L, 501L}) {
    EXPECT_FALSE(IsRetryableStatus(s)) << s;
  }
}

TEST(UrlTest, EncodingAndRedaction) {
  EXPECT_EQ(EncodeQueryValue("gt2026-11-22T13:53:28+01:00"), "gt2026-11-22T13%3A53%3A28%2B01%3A00");
  EXPECT_EQ(EncodeQueryValue("Patient/a,Patient/b"), "Patient%2Fa%2CPatient%2Fb");
  EXPECT_EQ(EncodeQueryValue("a b&c=d~_.-"), "a%20b%26c%3Dd~_.-");
  EXPECT_EQ(RedactUrl("https://ehr.example/fhir/Patient?name=Smith#x"),
            "https://ehr.example/fhir/Patient");
}

TEST(OperationOutcomeTest, DescribesIssues) {
  auto oo = json::Parse(R"({"resourceType":"OperationOutcome","issue":[
    {"severity":"error","code":"invalid","diagnostics":"bad _count"},
    {"severity":"warning","code":"processing","details":{"text":"slow"}}]})");
  ASSERT_TRUE(oo);
  EXPECT_EQ(DescribeOperationOutcome(*oo, true),
            "error invalid: bad _count; warning processing: slow");
  EXPECT_EQ(DescribeOperationOutcome(*oo, false),
            "error invalid; warning processing (server diagnostics withheld, 14 characters; set "
            "logging.serverDiagnostics to true to log them)");
  auto coded = json::Parse(R"({"resourceType":"OperationOutcome","issue":[
    {"severity":"error","code":"not-found","details":{"coding":[
      {"system":"http://terminology.hl7.org/CodeSystem/operation-outcome","code":"MSG_NO_MATCH"},
      {"code":"x y"}]}}]})");
  ASSERT_TRUE(coded);
  EXPECT_EQ(DescribeOperationOutcome(*coded, false),
            "error not-found "
            "[http://terminology.hl7.org/CodeSystem/operation-outcome|MSG_NO_MATCH]");
  EXPECT_EQ(DescribeOperationOutcome(json::Value::MakeObject(), false), "");
}

// --- JWT client assertions ---------------------------------------------------------------------

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey Generate(bool ec) {
  EVP_PKEY* key = ec ? EVP_EC_gen("P-384") : EVP_RSA_gen(2048);
  return Pkey(key);
}

std::string PrivatePem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return pem;
}

std::string Base64UrlDecode(std::string_view in) {
  std::string b64(in);
  for (char& c : b64) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (b64.size() % 4 != 0) b64 += '=';
  std::string out(b64.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  out.resize(static_cast<std::size_t>(std::max(0, n)));
  while (!b64.empty() && b64.back() == '=') {  // DecodeBlock keeps padding bytes
    b64.pop_back();
    out.pop_back();
  }
  return out;
}

bool Verify(EVP_PKEY* key, bool ec, std::string_view input, std::string sig) {
  if (ec) {
    // JOSE r||s back to DER for OpenSSL.
    if (sig.size() != 96) return false;
    ECDSA_SIG* s = ECDSA_SIG_new();
    ECDSA_SIG_set0(s, BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 48, nullptr),
                   BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 48, 48, nullptr));
    unsigned char* der = nullptr;
    int len = i2d_ECDSA_SIG(s, &der);
    sig.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    ECDSA_SIG_free(s);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha384(), nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

class ClientAssertionTest : public ::testing::TestWithParam<bool> {};

TEST_P(ClientAssertionTest, SignedAssertionVerifiesWithThePublicKey) {
  bool ec = GetParam();
  Pkey key = Generate(ec);
  ASSERT_TRUE(key);
  auto now = At(2026, 11, 23, 10, 0, 0);
  auto jwt =
      MakeClientAssertion(PrivatePem(key.get()), ec ? JwtAlgorithm::kEs384 : JwtAlgorithm::kRs384,
                          "key-1", "client-7", "https://auth.example/token", now);
  ASSERT_TRUE(jwt) << jwt.error().message;
  auto dot1 = jwt->find('.');
  auto dot2 = jwt->find('.', dot1 + 1);
  ASSERT_NE(dot2, std::string::npos);
  auto header = json::Parse(Base64UrlDecode(jwt->substr(0, dot1)));
  auto claims = json::Parse(Base64UrlDecode(jwt->substr(dot1 + 1, dot2 - dot1 - 1)));
  ASSERT_TRUE(header && claims);
  EXPECT_EQ((*header)["alg"].str(), ec ? "ES384" : "RS384");
  EXPECT_EQ((*header)["typ"].str(), "JWT");
  EXPECT_EQ((*header)["kid"].str(), "key-1");
  EXPECT_EQ((*claims)["iss"].str(), "client-7");
  EXPECT_EQ((*claims)["sub"].str(), "client-7");
  EXPECT_EQ((*claims)["aud"].str(), "https://auth.example/token");
  auto epoch = std::chrono::duration_cast<seconds>(now.time_since_epoch()).count();
  EXPECT_EQ((*claims)["exp"].number_text(), std::to_string(epoch + 300));
  EXPECT_EQ((*claims)["jti"].str().size(), 32u);
  EXPECT_EQ(jwt->find('='), std::string::npos) << "base64url without padding";
  EXPECT_TRUE(Verify(key.get(), ec, jwt->substr(0, dot2), Base64UrlDecode(jwt->substr(dot2 + 1))));
  // Tampering breaks it.
  std::string tampered = jwt->substr(0, dot2);
  tampered[dot1 + 2] = tampered[dot1 + 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(Verify(key.get(), ec, tampered, Base64UrlDecode(jwt->substr(dot2 + 1))));
  // A fresh jti every time.
  auto again =
      MakeClientAssertion(PrivatePem(key.get()), ec ? JwtAlgorithm::kEs384 : JwtAlgorithm::kRs384,
                          "key-1", "client-7", "https://auth.example/token", now);
  ASSERT_TRUE(again);
  EXPECT_NE(*again, *jwt);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, ClientAssertionTest, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "ES384" : "RS384"; });

TEST(ClientAssertionTest, WrongKeyTypeOrGarbageIsAClearError) {
  Pkey rsa = Generate(false);
  auto e = MakeClientAssertion(PrivatePem(rsa.get()), JwtAlgorithm::kEs384, "k", "c", "u",
                               system_clock::now());
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("ES384 needs an EC key"), std::string::npos);
  Pkey p256(EVP_EC_gen("P-256"));
  e = MakeClientAssertion(PrivatePem(p256.get()), JwtAlgorithm::kEs384, "k", "c", "u",
                          system_clock::now());
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("P-384"), std::string::npos);
  e = MakeClientAssertion("not a key", JwtAlgorithm::kRs384, "k", "c", "u", system_clock::now());
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("not an unencrypted PEM private key"), std::string::npos);
  EXPECT_EQ(e.error().message.find("not a key"), std::string::npos) << "no secret in messages";
}

TEST(Base64UrlTest, KnownVectors) {
  // RFC 4648 §10 vectors, base64url alphabet and no padding.
  EXPECT_EQ(Base64UrlEncode(""), "");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(Base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(Base64UrlEncode("foob"), "Zm9vYg");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
}

}  // namespace
}  // namespace ccm::fhir
