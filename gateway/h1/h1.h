/* HTTP/1.1 server glue over http-parser (libhttp-parser, Debian). Does no
 * I/O: bytes go in with gw_h1_recv(); responses are serialised through the
 * write hook. One request at a time: while a request waits for its answer
 * the parser is paused, so pipelined requests are answered in order. */
#ifndef GW_H1_H1_H
#define GW_H1_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/metrics.h"
#include "http/req.h"

struct gw_h1;

struct gw_h1_hooks {
  /* A request is complete or refused early (req->early_status). Answer with
   * gw_h1_respond(), now or later. */
  void (*on_request)(void *ud, struct gw_req *req);
  /* Output bytes to send, in order. Returns 0 or a GW_ERR_*. */
  int (*write)(void *ud, const void *data, size_t len);
};

struct gw_h1 *gw_h1_new(const struct gw_limits *lim, const struct gw_h1_hooks *hooks, void *ud, struct gw_metrics *m);
void gw_h1_free(struct gw_h1 *h);
void gw_h1_set_peer(struct gw_h1 *h, const struct gw_identity *id, const char *addr, uint64_t conn_id);

/* Parses up to |len| bytes; stores in |*consumed| how many were used (fewer
 * when a request is waiting for its answer: feed the rest later). Returns 0,
 * or GW_ERR_PROTO when the input is not HTTP/1.1 (a 400 has been written). */
int gw_h1_recv(struct gw_h1 *h, const uint8_t *data, size_t len, size_t *consumed);

/* Writes the response to the pending request and resumes parsing. Takes
 * ownership of |resp->body|. Returns 0 or a GW_ERR_*. */
int gw_h1_respond(struct gw_h1 *h, struct gw_req *req, struct gw_resp *resp);

/* True when the connection must close once its output is written. */
bool gw_h1_should_close(const struct gw_h1 *h);
/* True while a request is being received or awaits its answer. */
bool gw_h1_busy(const struct gw_h1 *h);
/* The request numbered |ordinal| when it awaits its answer, or NULL. */
struct gw_req *gw_h1_pending(struct gw_h1 *h, int32_t ordinal);
/* True while a complete request awaits its answer (input is not parsed meanwhile). */
bool gw_h1_waiting(const struct gw_h1 *h);
/* Start (ns) of a request whose bytes are still arriving, or 0. */
uint64_t gw_h1_incomplete_since(const struct gw_h1 *h);
/* Graceful stop: close after the current response (or now when idle). */
void gw_h1_shutdown(struct gw_h1 *h);

#endif
