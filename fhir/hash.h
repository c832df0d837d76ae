// FNV-1a, 64 bits: a fingerprint of text that stays the same across builds, platforms and runs
// (std::hash need not). Not cryptographic: for cache keys, scope fingerprints and identifiers
// derived from stable text, never for secrets or anything an adversary chooses to collide.
#pragma once

#include <cstdint>
#include <string_view>

namespace ccm {

inline constexpr std::uint64_t kFnv1aOffset = 0xcbf29ce484222325ULL;

// `h`: the hash so far, to chain pieces (Fnv1a64(b, Fnv1a64(a)) hashes a then b).
constexpr std::uint64_t Fnv1a64(std::string_view s, std::uint64_t h = kFnv1aOffset) noexcept {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

static_assert(Fnv1a64("") == kFnv1aOffset);
static_assert(Fnv1a64("a") == 0xaf63dc4c8601ec8cULL);  // the FNV test vector

}  // namespace ccm
