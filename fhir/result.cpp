#include "fhir/result.h"

#include <stdexcept>

namespace ccm {
namespace {

// boost::system::error_category has a protected non-virtual destructor by design.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "ccm"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kOk:
        return "ok";
      case Errc::kInvalidArgument:
        return "invalid argument";
      case Errc::kParseError:
        return "parse error";
      case Errc::kInvalidResource:
        return "invalid resource";
      case Errc::kNotFound:
        return "not found";
      case Errc::kIo:
        return "i/o error";
      case Errc::kNetwork:
        return "network error";
      case Errc::kTimeout:
        return "timeout";
      case Errc::kClientError:
        return "client error";
      case Errc::kServerError:
        return "server error";
      case Errc::kConflict:
        return "conflict";
      case Errc::kUnsupported:
        return "unsupported";
      case Errc::kInternal:
        return "internal error";
    }
    return "unknown ccm error";
  }
};
#pragma GCC diagnostic pop

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;  // immutable after construction
  return category;
}

void throw_exception_from_error(const Error& e, const boost::source_location&) {
  throw std::runtime_error(e.message.empty() ? e.code.message() : e.message);
}

}  // namespace ccm
