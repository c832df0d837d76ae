// Requests, responses and the route table of the gateway's HTTP service, independent of the HTTP
// library: handlers see only these types, so they are plain functions, testable without a socket.
//
// Contract
// - A route is a method and a path pattern of literal segments and `{name}` captures
//   ("/Patient/{id}/$ccm-status"); captures match one whole, non-empty, percent-decoded segment.
// - Match() gives the route and its captures; a path no route has is 404, a path some route has
//   under another method is 405 with the allowed methods.
// - Routes are added before the service starts and never after: Match() is then safe from any
//   thread.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/server/http_error.h"

namespace ccm::gateway::server {

struct Request {
  std::string method;                                      // "GET", "POST", ...
  std::string path;                                        // percent-decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  std::map<std::string, std::string> headers;              // names lower-case
  std::string body;
  std::map<std::string, std::string> params;  // the route's captures
  std::string principal;  // who is calling: the token's or the client certificate's name

  // The first value of a query parameter.
  std::optional<std::string> Query(std::string_view name) const;
  // A header value, "" when absent (`name` lower-case).
  std::string_view Header(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/fhir+json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// An OperationOutcome response for `e`.
Response ErrorResponse(const HttpError& e);
// A JSON response.
Response JsonResponse(unsigned status, const fhir::json::Value& body,
                      std::string content_type = "application/fhir+json");

using Handler = std::function<Response(const Request&)>;

struct Route {
  std::string method;
  std::string pattern;  // as added; also the route's name in logs and metrics
  bool needs_auth = true;
  Handler handler;
};

class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler, bool needs_auth = true);

  struct Match {
    const Route* route = nullptr;  // null: see error
    std::map<std::string, std::string> params;
    std::optional<HttpError> error;  // 404, or 405 with `allow`
    std::string allow;               // "GET, POST" for a 405
  };
  Match Find(std::string_view method, std::string_view path) const;

  const std::vector<Route>& routes() const noexcept { return routes_; }

 private:
  std::vector<Route> routes_;
};

// Splits a request target ("/a/b%20c?x=1&y") into a decoded path and query; nullopt when the
// target is not an origin-form path or has bad percent-encoding.
struct Target {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
};
std::optional<Target> ParseTarget(std::string_view target);

}  // namespace ccm::gateway::server
