#include "gateway/sync/connection.h"

#include <fmt/format.h>

namespace ccm::gateway {

Result<std::shared_ptr<fhir::TokenSource>> MakeTokenSource(const SourceConfig& src) {
  const AuthConfig& a = src.auth;
  fhir::OAuthClientOptions o;
  o.token_url = a.token_url;
  o.fhir_base = src.base_url;
  o.client_id = a.client_id;
  o.scope = a.scope;
  o.server_diagnostics = src.server_diagnostics;
  switch (a.kind) {
    case AuthKind::kNone:
      return std::shared_ptr<fhir::TokenSource>(fhir::NoAuth());
    case AuthKind::kBearer:
      return std::shared_ptr<fhir::TokenSource>(fhir::StaticBearer(a.token));
    case AuthKind::kClientCredentials:
      return std::shared_ptr<fhir::TokenSource>(fhir::ClientCredentials(o, a.client_secret));
    case AuthKind::kSmartBackendServices: {
      auto s = fhir::SmartBackendServices(o, a.private_key_pem, a.algorithm, a.key_id);
      if (!s) return s.error();
      return std::shared_ptr<fhir::TokenSource>(std::move(*s));
    }
  }
  return MakeError(Errc::kInternal, "unknown auth kind");
}

Result<std::unique_ptr<fhir::FhirClient>> MakeFhirClient(const SourceConfig& source,
                                                         std::string_view purpose) {
  CCM_TRY_ASSIGN(auto auth, MakeTokenSource(source));
  fhir::FhirClientOptions o;
  o.base_url = source.base_url;
  o.http = source.http;
  o.http.user_agent = fmt::format("ccm-gateway/{} (+FHIR R4 CCM {})", CCM_VERSION, purpose);
  o.retry = source.retry;
  o.max_pages = source.max_pages_per_search;
  o.server_diagnostics = source.server_diagnostics;
  return std::make_unique<fhir::FhirClient>(std::move(o), std::move(auth));
}

}  // namespace ccm::gateway
