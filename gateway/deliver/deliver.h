/* Delivery: which backends a message goes to (routes, as XPath over the
 * canonical document), and the dispatcher that sends every committed
 * delivery over TLS with the gateway's client certificate (libcurl, HTTP/2
 * where the peer speaks it), with retries, backoff with jitter, a circuit
 * breaker per backend, dead letters, per-resource ordering, and OAuth2
 * private_key_jwt tokens for P1. The only folder that includes curl. */
#ifndef GW_DELIVER_DELIVER_H
#define GW_DELIVER_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "msg/engine.h"
#include "store/store.h"

struct _xmlDoc;

/* Limits of one delivery configuration; a file past any of them is refused
 * at load with a message naming the limit (docs/operations.md). */
#define GW_MAX_ROUTES  32    /* routes */
#define GW_MAX_CLINICS 60000 /* clinics' notification endpoints (each gets its queue on first use) */
/* backends: GW_MAX_BACKENDS (store.h), the most one message can go to */

struct gw_backend_conf {
  char name[40];
  int kind; /* a row of the backend kind table (gw_backend_kind) */
  char url[256];
  char token_url[256]; /* P1: OAuth2 token endpoint */
  char client_id[96];
  char rpwdl[16];       /* clinic notification endpoints: the clinic */
  char hl7_charset[24]; /* clinics: the character set of their HL7 v2 messages without MSH-18 ("" = UTF-8) */
  bool enabled;
  uint32_t timeout_ms, max_attempts, backoff_ms, max_backoff_ms, concurrency, breaker_failures, breaker_open_ms;
  uint32_t memory_queue; /* deliveries held in memory; beyond it they wait in the store only */
};

struct gw_route {
  char name[48];
  char *match; /* XPath 1.0 over canonical FHIR, prefix f: */
  void *xp;    /* compiled */
  bool enabled;
  int nb;
  int backend[GW_MAX_BACKENDS]; /* indexes into gw_dconf.b, each at most once */
};

/* One immutable snapshot of the delivery configuration; SIGHUP swaps it. */
struct gw_dconf {
  int refs;             /* under the holder's lock */
  unsigned long serial; /* one per snapshot loaded: tells a reload from the snapshot before */
  char *path;
  uint32_t answer_deadline_ms;
  char cert[512], key[512], ca[512]; /* the gateway's outbound identity */
  int nb;
  struct gw_backend_conf b[GW_MAX_BACKENDS]; /* the routed backends (P1, SIMP, AP-KOLCE ...) */
  int nclinics;
  struct gw_backend_conf *clinics; /* clinics' notification endpoints, sorted by RPWDL (a map) */
  int nr;
  struct gw_route r[GW_MAX_ROUTES];
};

/* Loads |path| (NULL: the embedded defaults). Relative file names are taken
 * from the current directory for the defaults, else from the file's. */
int gw_dconf_load(const char *path, struct gw_dconf **out, struct gw_buf *errs);
/* Parses |text| (NUL-terminated JSON) named |name| in messages. */
int gw_dconf_parse(const char *text, const char *name, struct gw_dconf **out, struct gw_buf *errs);
void gw_dconf_free(struct gw_dconf *c);
/* The backend called |name|: a routed backend, or "clinic-RPWDL" for a clinic's endpoint. */
const struct gw_backend_conf *gw_dconf_backend(const struct gw_dconf *c, const char *name);
/* The notification endpoint of clinic |rpwdl|, or NULL (binary search). */
const struct gw_backend_conf *gw_dconf_clinic(const struct gw_dconf *c, const char *rpwdl);

/* Current snapshot, with a reference; gw_dconf_put() when done. */
struct gw_dconf *gw_dconf_get(void);
void gw_dconf_put(struct gw_dconf *c);
/* Installs |c| as current (takes ownership); the old one goes when unused. */
void gw_dconf_install(struct gw_dconf *c);

/* The backends of every enabled route that matches |doc|, deduplicated,
 * enabled backends only, into |idx| (room for GW_MAX_BACKENDS); names of the
 * routes that matched go to |why|. Returns how many (0: no route matched),
 * or GW_ERR_NOMEM / GW_ERR_INVAL (a route's XPath failed on this document,
 * logged with the route's name): the message must then not be accepted. */
int gw_route_match(const struct gw_dconf *c, struct _xmlDoc *doc, int *idx, char *why, size_t whylen);

struct gw_dispatch;
/* Starts the dispatcher over |st| (loads pending deliveries from it). */
int gw_dispatch_start(struct gw_store *st, struct gw_dispatch **out);
void gw_dispatch_stop(struct gw_dispatch *d);
/* Each queue's counters now (the console's health page): up to |max|, the number filled. */
struct gw_backend_health {
  char name[40];
  long long queued, in_flight, delivered, failed, rejected, dead, breaker_open;
  double mean_ms; /* mean delivery latency since start */
};
int gw_dispatch_health(struct gw_backend_health *out, int max);
/* An operator marked delivery |id| dead (the store already says so): if this instance holds it queued, it is
 * not attempted again; one being attempted right now finishes that attempt first. */
void gw_dispatch_kill(int64_t id);
/* The store's on_accepted hook: the dispatcher takes |s| and its deliveries. */
void gw_dispatch_accepted(void *ud, struct gw_submit *s);
/* Prometheus lines for every backend. */
void gw_dispatch_metrics(struct gw_buf *out);

#endif
