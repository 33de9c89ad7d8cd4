/* Maps a complete request to its handler. Handlers answer synchronously for
 * now; every answer is JSON (or Prometheus text for /metrics). */
#ifndef GW_HTTP_ROUTER_H
#define GW_HTTP_ROUTER_H

#include <stddef.h>

#include "http/req.h"

/* Records the process start so that /healthz and /metrics report uptime. */
void gw_router_init(void);

/* Gives the router the message engine for the validation and translation
 * endpoints (borrowed; must outlive the server). NULL: those answer 503. */
struct gw_engine;
void gw_router_set_engine(const struct gw_engine *e);

/* The gateway's public address (configuration public_url, e.g. "https://cergw.example.pl"), used as the
 * SOAP service address in the WSDL; NULL: the Host the client asked for. */
void gw_router_set_public_url(const char *url);

/* Fills |resp| for |req|. Never fails: an allocation failure becomes a 500
 * with an empty body. */
void gw_router_handle(struct gw_req *req, struct gw_resp *resp);

/* What the access log writes for |path|: the route's template ("/fhir/Appointment/{id}"), query names
 * with their values masked ("?patient=*&name=*"), and for a path that is not one of ours only its
 * first segment — never an identifier, a PESEL or a name a client put in a URL. */
void gw_router_log_path(const char *path, char *out, size_t n);

/* Builds the JSON error body used for every protocol-level refusal
 * (413, 431, 408, 404, ...): {"status":N,"error":"...","message":"..."}. */
void gw_router_error(struct gw_resp *resp, int status, const char *message);
/* The handler of requests that arrive on the console's listener (console/console.c), set once at start. */
void gw_router_set_console(void (*fn)(struct gw_req *req, struct gw_resp *resp));
/* The store /healthz reports on ("sqlite", "postgresql"; a static string), set once at start. */
void gw_router_set_store_name(const char *name);

#endif
