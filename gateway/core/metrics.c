#include "core/metrics.h"

#include <pthread.h>
#include <string.h>

#include "core/err.h"
#include "core/version.h"

#define MAX_SLOTS 64

static struct gw_metrics slots[MAX_SLOTS];
static _Atomic int nslots;

static const char *const hs_names[GW_HS__COUNT] = {
    "ok",      "no_certificate", "unknown_ca", "expired", "revoked", "bad_certificate",
    "no_alpn", "protocol",       "timeout",    "eof"};
static const char *const method_names[GW_M__COUNT] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OTHER"};
static const char *const cut_names[GW_CUT__COUNT] = {"max_connections",   "idle_timeout",      "read_timeout",
                                                     "handshake_timeout", "rapid_reset",       "control_frame_flood",
                                                     "protocol_error",    "shutdown_deadline", "send_stalled"};
/* Status codes tracked one by one; anything else lands in the last slot. */
static const int status_codes[GW_STATUS_SLOTS - 1] = {200, 201, 202, 204, 301, 304, 400, 401, 403, 404, 405, 406,
                                                      408, 409, 412, 413, 415, 422, 429, 431, 500, 502, 503};
/* Upper bounds of the latency histogram, seconds. */
static const double lat_bounds[GW_LAT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                  0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};

const char *gw_hs_reason_name(enum gw_hs_reason r) { return (unsigned)r < GW_HS__COUNT ? hs_names[r] : "unknown"; }

enum gw_method_idx gw_method_idx(const char *m) {
  for (int i = 0; i < GW_M_OTHER; i++)
    if (strcmp(m, method_names[i]) == 0)
      return (enum gw_method_idx)i;
  return GW_M_OTHER;
}

struct gw_metrics *gw_metrics_slot(void) {
  int i = atomic_fetch_add(&nslots, 1);
  if (i >= MAX_SLOTS) {
    atomic_fetch_sub(&nslots, 1);
    return NULL;
  }
  return &slots[i];
}

static int status_slot(int status) {
  for (int i = 0; i < GW_STATUS_SLOTS - 1; i++)
    if (status_codes[i] == status)
      return i;
  return GW_STATUS_SLOTS - 1;
}

void gw_metrics_request(struct gw_metrics *m, const char *method, int status, uint64_t latency_ns) {
  GW_METRIC_INC(m, requests[gw_method_idx(method)][status_slot(status)]);
  double s = (double)latency_ns / 1e9;
  int b = 0;
  while (b < GW_LAT_BUCKETS && s > lat_bounds[b])
    b++;
  GW_METRIC_INC(m, lat_bucket[b]);
  GW_METRIC_ADD(m, lat_sum_us, latency_ns / 1000);
}

#define SUM(field)                                                                                                     \
  ({                                                                                                                   \
    uint64_t s_ = 0;                                                                                                   \
    for (int i_ = 0; i_ < n; i_++)                                                                                     \
      s_ += (uint64_t)atomic_load_explicit(&slots[i_].field, memory_order_relaxed);                                    \
    s_;                                                                                                                \
  })

int gw_metrics_render(struct gw_buf *o, double uptime_s) {
  int n = atomic_load(&nslots);
  if (n > MAX_SLOTS)
    n = MAX_SLOTS;
  int rv = 0;
  rv |= gw_buf_printf(o,
                      "# HELP cergw_build_info Build information.\n# TYPE cergw_build_info gauge\n"
                      "cergw_build_info{version=\"%s\"} 1\n",
                      GW_VERSION);
  rv |= gw_buf_printf(o,
                      "# HELP cergw_uptime_seconds Seconds since start.\n# TYPE cergw_uptime_seconds gauge\n"
                      "cergw_uptime_seconds %.3f\n",
                      uptime_s);
  rv |= gw_buf_printf(o,
                      "# HELP cergw_connections_accepted_total TCP connections accepted.\n"
                      "# TYPE cergw_connections_accepted_total counter\ncergw_connections_accepted_total %lu\n",
                      (unsigned long)SUM(conn_accepted));
  rv |= gw_buf_printf(o,
                      "# HELP cergw_connections_open Connections open now.\n"
                      "# TYPE cergw_connections_open gauge\ncergw_connections_open %ld\n",
                      (long)SUM(conn_open));
  rv |= gw_buf_printf(o,
                      "# HELP cergw_connections_protocol_total Connections by negotiated protocol.\n"
                      "# TYPE cergw_connections_protocol_total counter\n"
                      "cergw_connections_protocol_total{protocol=\"http/1.1\"} %lu\n"
                      "cergw_connections_protocol_total{protocol=\"h2\"} %lu\n",
                      (unsigned long)SUM(conn_proto[0]), (unsigned long)SUM(conn_proto[1]));
  rv |= gw_buf_printf(o, "# HELP cergw_connections_cut_total Connections closed by a limit.\n"
                         "# TYPE cergw_connections_cut_total counter\n");
  for (int c = 0; c < GW_CUT__COUNT; c++)
    rv |= gw_buf_printf(o, "cergw_connections_cut_total{reason=\"%s\"} %lu\n", cut_names[c],
                        (unsigned long)SUM(conn_cut[c]));
  rv |= gw_buf_printf(o, "# HELP cergw_tls_handshakes_total TLS handshakes by outcome and reason.\n"
                         "# TYPE cergw_tls_handshakes_total counter\n");
  for (int h = 0; h < GW_HS__COUNT; h++)
    rv |= gw_buf_printf(o, "cergw_tls_handshakes_total{outcome=\"%s\",reason=\"%s\"} %lu\n",
                        h == GW_HS_OK ? "accepted" : "refused", hs_names[h], (unsigned long)SUM(handshakes[h]));
  rv |= gw_buf_printf(o,
                      "# HELP cergw_streams_total HTTP/2 streams and HTTP/1.1 requests started.\n"
                      "# TYPE cergw_streams_total counter\ncergw_streams_total %lu\n"
                      "# HELP cergw_streams_open Streams open now.\n"
                      "# TYPE cergw_streams_open gauge\ncergw_streams_open %ld\n"
                      "# HELP cergw_streams_refused_total HTTP/2 streams refused past the memory budget.\n"
                      "# TYPE cergw_streams_refused_total counter\ncergw_streams_refused_total %lu\n",
                      (unsigned long)SUM(streams_total), (long)SUM(streams_open), (unsigned long)SUM(streams_refused));
  rv |= gw_buf_printf(o, "# HELP cergw_requests_total Requests answered, by method and status.\n"
                         "# TYPE cergw_requests_total counter\n");
  for (int m = 0; m < GW_M__COUNT; m++)
    for (int s = 0; s < GW_STATUS_SLOTS; s++) {
      uint64_t v = SUM(requests[m][s]);
      if (!v)
        continue;
      if (s < GW_STATUS_SLOTS - 1)
        rv |= gw_buf_printf(o, "cergw_requests_total{method=\"%s\",status=\"%d\"} %lu\n", method_names[m],
                            status_codes[s], (unsigned long)v);
      else
        rv |= gw_buf_printf(o, "cergw_requests_total{method=\"%s\",status=\"other\"} %lu\n", method_names[m],
                            (unsigned long)v);
    }
  rv |= gw_buf_printf(o,
                      "# HELP cergw_bytes_received_total Bytes received on TLS connections (plaintext).\n"
                      "# TYPE cergw_bytes_received_total counter\ncergw_bytes_received_total %lu\n"
                      "# HELP cergw_bytes_sent_total Bytes sent on TLS connections (plaintext).\n"
                      "# TYPE cergw_bytes_sent_total counter\ncergw_bytes_sent_total %lu\n",
                      (unsigned long)SUM(bytes_in), (unsigned long)SUM(bytes_out));
  rv |= gw_buf_printf(o, "# HELP cergw_request_duration_seconds Time from request start to response queued.\n"
                         "# TYPE cergw_request_duration_seconds histogram\n");
  uint64_t cum = 0;
  for (int b = 0; b <= GW_LAT_BUCKETS; b++) {
    cum += SUM(lat_bucket[b]);
    if (b < GW_LAT_BUCKETS)
      rv |=
          gw_buf_printf(o, "cergw_request_duration_seconds_bucket{le=\"%g\"} %lu\n", lat_bounds[b], (unsigned long)cum);
    else
      rv |= gw_buf_printf(o, "cergw_request_duration_seconds_bucket{le=\"+Inf\"} %lu\n", (unsigned long)cum);
  }
  rv |= gw_buf_printf(o, "cergw_request_duration_seconds_sum %.6f\ncergw_request_duration_seconds_count %lu\n",
                      (double)SUM(lat_sum_us) / 1e6, (unsigned long)cum);
  return rv ? GW_ERR_TOOBIG : GW_OK;
}
