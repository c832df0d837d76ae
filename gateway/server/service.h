// The gateway's HTTP API (docs/api.md): the routes of `ccm-gateway serve` over the application
// layer (gateway/app/), the background and scheduled syncs, the evaluation cache, the metrics and
// the access log. HTTP handling only: every answer is computed by the same app:: workflow, and
// rendered by the same serializer, as the command that prints it.
//
// Contract
// - Routes: GET /healthz, /readyz, /metadata and the page's files (/, /app.js, /app.css,
//   /favicon.svg; compiled in, with a strict Content-Security-Policy and an ETag) need no token
//   and hold no PHI; GET /metrics, /Patient/{id}/$ccm-status, /$ccm-billing-summary (JSON, CSV
//   or a FHIR Bundle by Accept or _format), /$ccm-worklist, /$ccm-program, /$ccm-patients,
//   /$sync-status/{id} and POST /$sync need a bearer token, a client certificate or the page's
//   session cookie (http_server.h).
// - Handlers run on the HTTP server's worker threads and block there (SQLite, curl). Each opens
//   no more than one state-store connection at a time, taken from a pool (SQLite connections are
//   not shared between threads).
// - Evaluations are cached per month and keyed by the state store's sync history (the last sync
//   run and its end) plus a generation bumped by every sync of this process that changed
//   something, so a status call re-evaluates only after a sync changed the store.
// - Billing summaries are cached the same way, and also keyed by the ledger's BillingVersion;
//   those that read the EHR expire after ServiceOptions::billing_summary_max_age. Only a summary
//   without problems or warnings is kept. A served copy says its age (HTTP Age header).
// - At most one sync runs at a time (POST /$sync, the schedule); it runs on its own thread and can
//   be stopped (StopSync), ending after the page it is storing.
// - Every request for patient data is recorded in the state store's access audit (who, route,
//   patient or month, status); the destructor stores what is still queued.
// - Thread-safe: every public member may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/config/gateway_config.h"
#include "gateway/server/http_server.h"
#include "gateway/server/metrics.h"
#include "gateway/server/router.h"

namespace ccm::gateway::server {

struct ServiceOptions {
  std::string version = "unknown", commit = "unknown";  // build info (metrics, metadata)
  // A JSON log line for the operator (no PHI): level, event, message. Default: stderr.
  std::function<void(std::string_view level, std::string_view event, std::string_view message)> log;
  bool access_log = true;  // one JSON line per request (OnAccess)
  // Where access log lines go (each ends in a newline). Default: stderr.
  std::function<void(std::string_view line)> access_sink;
  // server.logPatientIds: the access line of a request naming a patient carries the patient's
  // reference in clear. Otherwise (the default) a salted SHA-256 prefix of it ("sha256:" and 16
  // hex digits; the salt is random per process, so lines of one process can be matched to each
  // other, never to a patient without the audit trail).
  bool log_patient_ids = false;
  // Every request to a route with patient data ($ccm-status, $ccm-billing-summary, $ccm-worklist,
  // $ccm-patients), and every sign-in and sign-out of the page (POST /$login, /$logout; the
  // token's name, never the token), recorded in the state store (server/access_audit.h),
  // whatever its status: 401s included.
  bool audit = true;
  // server.billingSummaryMaxAgeSeconds: a billing summary is cached per month and keyed like the
  // evaluations plus the state store's BillingVersion (ledger, deliveries, proposals, write-back
  // audit); one that read the EHR (care plans, write targets) is also dropped at this age, since
  // the EHR changes without telling us. 0: never served from the cache.
  std::chrono::seconds billing_summary_max_age{60};
};

class GatewayService {
 public:
  // `config` must have been loaded with its credentials when syncs are to run.
  GatewayService(GatewayConfig config, ServiceOptions options);
  ~GatewayService();  // stops a running sync and waits for it
  GatewayService(const GatewayService&) = delete;
  GatewayService& operator=(const GatewayService&) = delete;

  const Router& router() const;
  // For HttpServerOptions::on_access: the request metrics, the access log line, and the audit
  // record of a request for patient data (queued; never blocks).
  void OnAccess(const AccessRecord& access);
  // Waits until the audit records of the requests answered so far are in the state store. True
  // when they are (or auditing is off) within `bound`.
  bool FlushAudit(std::chrono::milliseconds bound);

  struct SyncStart {
    std::int64_t id = 0;   // the running sync's (this one's, or the one already running)
    bool started = false;  // false: one was running already
  };
  // Starts a sync cycle of `source` ("" all) on a background thread unless one runs. `trigger`:
  // "api" or "schedule" (metrics, status).
  SyncStart StartSync(std::string source, std::string trigger);
  // The schedule's tick (serve.cpp, every sync.intervalSeconds): StartSync("", "schedule"), and
  // when one runs already, a "sync-skipped" log line and ccm_sync_skipped_total -- the schedule
  // never queues a second sync behind a running one.
  SyncStart ScheduledSync();
  bool SyncRunning() const;
  // Asks a running sync to stop and waits up to `bound` for it to end (its current store
  // transaction finishes first). True when no sync runs any more.
  bool StopSync(std::chrono::milliseconds bound);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ccm::gateway::server
