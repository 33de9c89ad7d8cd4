/* The operators' console (docs/console.md): served on its own listener (console_listen) to an operator
 * certificate, or to a browser holding the console's bearer token (console.token_file); never to a clinic
 * certificate. Static pages from console.root and a JSON API under /console/api/: the playground (the
 * engine of `cergw validate`/`translate`, a dry run), the outbox, the backends' health. Every action is in
 * the audit log with who did it. */
#ifndef GW_CONSOLE_CONSOLE_H
#define GW_CONSOLE_CONSOLE_H

#include "conf/conf.h"
#include "core/buf.h"
#include "http/req.h"

struct gw_engine;
struct gw_store;

/* Reads the token file (mode 0600, else refused) and remembers what the console serves from. GW_OK or an
 * error said in |errs|. */
int gw_console_init(const struct gw_conf *c, const struct gw_engine *e, struct gw_store *st, struct gw_buf *errs);
/* Every request that arrived on the console's listener. */
void gw_console_handle(struct gw_req *req, struct gw_resp *resp);
/* A sample of the backends' counters for the console's charts (a thread of the console takes one every
 * 10 s; the last hour is kept). */
void gw_console_sample(void);
/* Stops that thread. */
void gw_console_stop(void);

#endif
