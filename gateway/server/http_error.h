// HTTP errors of the gateway's service as FHIR OperationOutcomes (R4 §3.1.0.4, "OperationOutcome"
// for errors), and the one table from the gateway's error kinds (Errc) to HTTP statuses.
//
// Contract
// - Every error response of the service has a FHIR OperationOutcome body (application/fhir+json)
//   whose single issue carries the severity, an issue-type code (R4 ValueSet issue-type) and the
//   message; the message is the gateway's own text, never a server's or a patient's.
// - StatusFor(Errc) is the only place that maps an internal failure to a status.
#pragma once

#include <string>
#include <string_view>

#include "fhir/json.h"
#include "fhir/result.h"

namespace ccm::gateway::server {

struct HttpError {
  unsigned status = 500;
  std::string code = "exception";  // R4 issue-type: invalid, security, not-found, ...
  std::string message;
};

// The HTTP status an error of kind `e` becomes (e.g. kInvalidArgument -> 400, kNotFound -> 404,
// kConflict -> 409, kTimeout -> 504, kNetwork/kServerError (an upstream server) -> 502, kIo and
// kInternal -> 500).
unsigned StatusFor(Errc e) noexcept;
// The R4 issue-type code for a status (400 invalid, 401/403 security, 404 not-found, 405/406/501
// not-supported, 408 timeout, 409 conflict, 413/431 too-costly, 429 throttled, 5xx exception).
std::string_view IssueCodeFor(unsigned status) noexcept;

// From an Error (its kind decides the status; its message is kept).
HttpError FromError(const Error& e);
HttpError MakeHttpError(unsigned status, std::string message);

// The OperationOutcome body of an error.
fhir::json::Value ToOperationOutcome(const HttpError& e);

}  // namespace ccm::gateway::server
