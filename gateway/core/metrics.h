/* Process metrics, Prometheus text exposition.
 *
 * Each worker owns one struct gw_metrics slot and updates it with relaxed
 * atomics (no sharing, no contention); a scrape sums all slots. */
#ifndef GW_CORE_METRICS_H
#define GW_CORE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/buf.h"

enum gw_hs_reason {
  GW_HS_OK = 0,
  GW_HS_NO_CERT,    /* client sent no certificate */
  GW_HS_UNKNOWN_CA, /* chain does not lead to a configured CA */
  GW_HS_EXPIRED,    /* certificate expired or not yet valid */
  GW_HS_REVOKED,    /* listed in the CRL */
  GW_HS_BAD_CERT,   /* any other verification failure */
  GW_HS_NO_ALPN,    /* client offered no protocol we speak */
  GW_HS_PROTOCOL,   /* TLS protocol error, unsupported version or cipher, garbage */
  GW_HS_TIMEOUT,    /* handshake did not finish in time */
  GW_HS_EOF,        /* peer closed during the handshake */
  GW_HS__COUNT
};
const char *gw_hs_reason_name(enum gw_hs_reason r);

enum gw_method_idx { GW_M_GET, GW_M_HEAD, GW_M_POST, GW_M_PUT, GW_M_DELETE, GW_M_OTHER, GW_M__COUNT };
enum gw_method_idx gw_method_idx(const char *method);

/* Reasons a connection was cut by a limit. */
enum gw_cut_reason {
  GW_CUT_MAX_CONNECTIONS = 0,
  GW_CUT_IDLE,
  GW_CUT_READ_TIMEOUT,
  GW_CUT_HANDSHAKE_TIMEOUT,
  GW_CUT_RAPID_RESET,
  GW_CUT_CONTROL_FLOOD,
  GW_CUT_PROTOCOL_ERROR,
  GW_CUT_SHUTDOWN_DEADLINE,
  GW_CUT_SEND_STALLED, /* output pending, no progress for limits.send_timeout_ms: a peer that does not read */
  GW_CUT__COUNT
};

#define GW_STATUS_SLOTS 24
#define GW_LAT_BUCKETS  14

struct gw_metrics {
  _Atomic uint64_t conn_accepted;
  _Atomic int64_t conn_open;
  _Atomic uint64_t conn_proto[2]; /* [0] http/1.1, [1] h2 */
  _Atomic uint64_t conn_cut[GW_CUT__COUNT];
  _Atomic uint64_t handshakes[GW_HS__COUNT];
  _Atomic uint64_t streams_total;
  _Atomic uint64_t streams_refused; /* HTTP/2 streams refused past the memory budget */
  _Atomic int64_t streams_open;
  _Atomic uint64_t requests[GW_M__COUNT][GW_STATUS_SLOTS];
  _Atomic uint64_t bytes_in;
  _Atomic uint64_t bytes_out;
  _Atomic uint64_t lat_bucket[GW_LAT_BUCKETS + 1];
  _Atomic uint64_t lat_sum_us;
};

#define GW_METRIC_ADD(m, field, n) atomic_fetch_add_explicit(&(m)->field, (n), memory_order_relaxed)
#define GW_METRIC_INC(m, field)    GW_METRIC_ADD(m, field, 1)

/* Returns a zeroed slot that lives for the whole process, or NULL when all
 * slots are taken. Thread-safe. */
struct gw_metrics *gw_metrics_slot(void);

/* Records one finished request. */
void gw_metrics_request(struct gw_metrics *m, const char *method, int status, uint64_t latency_ns);

/* Appends the Prometheus text exposition of all slots to |out|, followed by
 * the process-level gauges given. Returns 0 or a GW_ERR_*. */
int gw_metrics_render(struct gw_buf *out, double uptime_s);

#endif
