#include "gateway/server/http_error.h"

namespace ccm::gateway::server {

unsigned StatusFor(Errc e) noexcept {
  switch (e) {
    case Errc::kOk:
      return 200;
    case Errc::kInvalidArgument:
    case Errc::kParseError:
      return 400;
    case Errc::kInvalidResource:
      return 422;  // well-formed but not a valid resource (R4 §3.1.0.4: 422 Unprocessable)
    case Errc::kNotFound:
      return 404;
    case Errc::kConflict:
      return 409;
    case Errc::kUnsupported:
      return 501;
    case Errc::kTimeout:
      return 504;
    case Errc::kNetwork:
    case Errc::kServerError:
    case Errc::kClientError:
      return 502;  // an upstream server (an EHR, a payer) failed or refused us
    case Errc::kIo:
    case Errc::kInternal:
      return 500;
  }
  return 500;
}

std::string_view IssueCodeFor(unsigned status) noexcept {
  switch (status) {
    case 400:
    case 422:
      return "invalid";
    case 401:
    case 403:
      return "security";
    case 404:
      return "not-found";
    case 405:
    case 406:
    case 501:
      return "not-supported";
    case 408:
    case 504:
      return "timeout";
    case 409:
    case 412:
      return "conflict";
    case 413:
    case 431:
      return "too-costly";
    case 429:
      return "throttled";
    case 503:
      return "transient";
    default:
      return status >= 500 ? "exception" : "processing";
  }
}

HttpError MakeHttpError(unsigned status, std::string message) {
  return HttpError{status, std::string(IssueCodeFor(status)), std::move(message)};
}

HttpError FromError(const Error& e) {
  Errc kind = Errc::kInternal;
  if (e.code.category() == error_category()) kind = static_cast<Errc>(e.code.value());
  return MakeHttpError(StatusFor(kind), e.message);
}

fhir::json::Value ToOperationOutcome(const HttpError& e) {
  using fhir::json::Value;
  Value issue = Value::MakeObject();
  issue.set("severity", Value::String(e.status >= 500 ? "fatal" : "error"));
  issue.set("code", Value::String(e.code));
  issue.set("diagnostics", Value::String(e.message));
  Value oo = Value::MakeObject();
  oo.set("resourceType", Value::String("OperationOutcome"));
  oo.set("issue", Value::MakeArray({std::move(issue)}));
  return oo;
}

}  // namespace ccm::gateway::server
