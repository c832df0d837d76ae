// Result<T>: the value-or-error type for expected failures across ccm-gateway.
//
// Contract
// - Expected failures (bad input, a missing file, a server that said no) are returned as
//   `Result<T>` holding an `Error`; exceptions are reserved for programming errors and are caught
//   once at the process boundary (main, the HTTP handler).
// - `Error::code` is a `boost::system::error_code`, normally in `ccm::error_category()` (see Errc),
// so
//   callers branch on the kind of failure without parsing text; `Error::message` is the human
//   message (what, where, how to fix) and never contains secrets or patient data.
// - `CCM_TRY(expr)` returns early from a function returning Result<...> when `expr` failed;
//   `CCM_TRY_ASSIGN(decl, expr)` does the same and otherwise binds the value.
#pragma once

#include <string>
#include <utility>

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace ccm {

// The failure kinds the rest of the code reasons about (userver-style short taxonomy).
enum class Errc {
  kOk = 0,
  kInvalidArgument,  // a caller or user passed something unusable (bad flag, bad config value)
  kParseError,       // malformed JSON or other syntax
  kInvalidResource,  // well-formed JSON that is not a valid FHIR resource
  kNotFound,         // file, resource or key does not exist
  kIo,               // reading or writing a local file failed
  kNetwork,          // connection-level failure
  kTimeout,
  kClientError,  // 4xx from a server
  kServerError,  // 5xx from a server
  kConflict,     // 409/412, or a concurrent modification
  kUnsupported,  // valid but not something we handle
  kInternal,
};

}  // namespace ccm

template <>
struct boost::system::is_error_code_enum<ccm::Errc> : std::true_type {};

namespace ccm {

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

struct Error {
  boost::system::error_code code;
  std::string message;

  Error() = default;
  Error(boost::system::error_code c, std::string m) : code(c), message(std::move(m)) {}
  Error(Errc e, std::string m) : code(make_error_code(e)), message(std::move(m)) {}

  bool is(Errc e) const noexcept { return code == make_error_code(e); }
};

// Found by ADL when `.value()` is called on a failed Result: converts to an exception at a
// boundary.
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

template <class T>
using Result = boost::system::result<T, Error>;

using Status = boost::system::result<void, Error>;

inline Error MakeError(Errc e, std::string message) { return Error{e, std::move(message)}; }

}  // namespace ccm

#define CCM_CONCAT_INNER(a, b) a##b
#define CCM_CONCAT(a, b) CCM_CONCAT_INNER(a, b)

// Evaluates `expr` (a Result or Status); on failure returns its Error from the enclosing function.
#define CCM_TRY(expr)                                     \
  do {                                                    \
    auto&& ccm_try_result_ = (expr);                      \
    if (!ccm_try_result_) return ccm_try_result_.error(); \
  } while (false)

// `CCM_TRY_ASSIGN(auto x, Parse(s));` binds the value of a successful Result or returns its Error.
#define CCM_TRY_ASSIGN(decl, expr) CCM_TRY_ASSIGN_IMPL(CCM_CONCAT(ccm_try_, __LINE__), decl, expr)
#define CCM_TRY_ASSIGN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                         \
  if (!tmp) return tmp.error();              \
  decl = std::move(*tmp)
