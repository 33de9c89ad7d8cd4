/* The operators' console: access, static pages and the JSON API (console.h, docs/console.md). Requests are
 * answered on the worker's thread: the playground runs the engine as `cergw validate`/`translate` do (a dry
 * run, nothing stored), the outbox reads and acts through the store's own console connection, health reads
 * the dispatcher's counters and the store's latencies. Small and rare requests: an operator's, not a
 * clinic's. */
#include "console/console.h"

#include <errno.h>
#include <fcntl.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/query.h"
#include "core/version.h"
#include "deliver/deliver.h"
#include "msg/engine.h"
#include "store/store.h"
#include "validate/rules.h"

#define MAX_ROWS   500
#define TOKEN_MAX  512
#define HISTORY    360 /* samples of 10 s: the last hour */
#define MAX_QUEUES 64
#define STATIC_MAX (4u << 20)

static struct {
  const struct gw_engine *e;
  struct gw_store *st;
  char root[4096];
  char token[TOKEN_MAX];
  bool has_token;
} C;

/* The charts' history: delivered and failed attempts per queue, every 10 s. */
static struct {
  pthread_mutex_t mu;
  int n, head;
  int64_t at_ms[HISTORY];
  int nq;
  char names[MAX_QUEUES][40];
  long long delivered[HISTORY][MAX_QUEUES], failed[HISTORY][MAX_QUEUES];
} H = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool running, stop;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *sampler(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "cergw-console");
  pthread_mutex_lock(&S.mu);
  while (!S.stop) {
    pthread_mutex_unlock(&S.mu);
    gw_console_sample();
    pthread_mutex_lock(&S.mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    while (!S.stop && pthread_cond_timedwait(&S.cv, &S.mu, &ts) == 0)
      ;
  }
  pthread_mutex_unlock(&S.mu);
  return NULL;
}

void gw_console_stop(void) {
  pthread_mutex_lock(&S.mu);
  bool running = S.running;
  S.stop = true;
  pthread_cond_signal(&S.cv);
  pthread_mutex_unlock(&S.mu);
  if (running)
    pthread_join(S.th, NULL);
  S.running = false;
}

int gw_console_init(const struct gw_conf *c, const struct gw_engine *e, struct gw_store *st, struct gw_buf *errs) {
  C.e = e;
  C.st = st;
  snprintf(C.root, sizeof(C.root), "%s", c->console.root ? c->console.root : "console");
  C.has_token = false;
  if (c->console.token_file && c->console.token_file[0]) {
    struct stat sb;
    int fd = open(c->console.token_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
      gw_buf_printf(errs, "console.token_file %s: %s\n", c->console.token_file, strerror(errno));
      if (fd >= 0)
        close(fd);
      return GW_ERR_CONF;
    }
    if (sb.st_mode & 077) {
      gw_buf_printf(errs, "console.token_file %s: readable by other users (mode %04o): chmod 600 %s\n",
                    c->console.token_file, (unsigned)(sb.st_mode & 07777), c->console.token_file);
      close(fd);
      return GW_ERR_CONF;
    }
    ssize_t n = read(fd, C.token, sizeof(C.token) - 1);
    close(fd);
    while (n > 0 && (C.token[n - 1] == '\n' || C.token[n - 1] == '\r' || C.token[n - 1] == ' '))
      n--;
    if (n < 16) {
      gw_buf_printf(errs, "console.token_file %s: the token must be at least 16 characters\n", c->console.token_file);
      return GW_ERR_CONF;
    }
    C.token[n] = 0;
    C.has_token = true;
  }
  S.stop = false;
  S.running = pthread_create(&S.th, NULL, sampler, NULL) == 0;
  return GW_OK;
}

/* ---- answers ---- */

static void set_body(struct gw_resp *resp, int status, const char *ctype, const uint8_t *body, size_t len) {
  resp->status = status;
  resp->content_type = ctype;
  resp->body = malloc(len ? len : 1);
  if (resp->body && len)
    memcpy(resp->body, body, len);
  resp->body_len = resp->body ? len : 0;
  resp->extra[resp->nextra].name = "cache-control";
  resp->extra[resp->nextra++].value = "no-store";
}

static void send_json(struct gw_resp *resp, int status, yajl_gen g) {
  const unsigned char *buf;
  size_t len;
  yajl_gen_get_buf(g, &buf, &len);
  set_body(resp, status, "application/json", buf, len);
  yajl_gen_free(g);
}

static void ys(yajl_gen g, const char *s) { yajl_gen_string(g, (const unsigned char *)s, strlen(s)); }
static void yjn(yajl_gen g, const char *s, size_t n) { yajl_gen_string(g, (const unsigned char *)s, n); }
static void kv(yajl_gen g, const char *k, const char *v) {
  ys(g, k);
  ys(g, v ? v : "");
}
static void ki(yajl_gen g, const char *k, long long v) {
  ys(g, k);
  yajl_gen_integer(g, v);
}

static yajl_gen new_gen(void) {
  yajl_gen g = yajl_gen_alloc(NULL);
  if (g)
    yajl_gen_config(g, yajl_gen_validate_utf8, 0);
  return g;
}

static void error_json(struct gw_resp *resp, int status, const char *msg);
/* A generator with its top-level map open, or NULL after answering 503. */
static yajl_gen begin(struct gw_resp *resp) {
  yajl_gen g = new_gen();
  if (!g)
    error_json(resp, 503, "out of memory");
  else
    yajl_gen_map_open(g);
  return g;
}

static void error_json(struct gw_resp *resp, int status, const char *msg) {
  yajl_gen g = new_gen();
  if (!g) {
    gw_resp_set(resp, 503, "application/json", "{\"error\":\"out of memory\"}\n");
    return;
  }
  yajl_gen_map_open(g);
  ki(g, "status", status);
  kv(g, "error", msg);
  yajl_gen_map_close(g);
  send_json(resp, status, g);
}

/* ---- who is asking ---- */

static bool same(const char *a, const char *b) { /* constant time over |b| (the secret) */
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = (unsigned char)(la != lb);
  for (size_t i = 0; i < lb; i++)
    d |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
  return d == 0;
}

/* 0 with who in |out|; else the HTTP status of the refusal and its reason. */
static int who(const struct gw_req *req, char *out, size_t n, const char **why) {
  const struct gw_identity *id = req->peer;
  if (id && id->cn[0]) { /* a verified certificate: an operator's, or nobody's here */
    if (id->role == GW_ROLE_OPERATOR) {
      snprintf(out, n, "operator:%s", id->cn);
      return 0;
    }
    *why = "the console is for operators: this certificate's role is not operator";
    return 403;
  }
  const char *a = req->authorization;
  if (C.has_token && a && !strncasecmp(a, "Bearer ", 7) && same(a + 7, C.token)) {
    snprintf(out, n, "token");
    return 0;
  }
  *why = C.has_token ? "an operator certificate or the console's bearer token is required"
                     : "an operator certificate is required";
  return 401;
}

/* ---- static files ---- */

static const char *ctype_of(const char *name) {
  const char *dot = strrchr(name, '.');
  static const struct {
    const char *ext, *ct;
  } t[] = {{".html", "text/html; charset=utf-8"},
           {".js", "text/javascript; charset=utf-8"},
           {".css", "text/css; charset=utf-8"},
           {".json", "application/json"},
           {".svg", "image/svg+xml"},
           {".png", "image/png"},
           {".txt", "text/plain; charset=utf-8"}};
  for (size_t i = 0; dot && i < sizeof(t) / sizeof(t[0]); i++)
    if (!strcmp(dot, t[i].ext))
      return t[i].ct;
  return "application/octet-stream";
}

static void serve_static(const char *name, struct gw_resp *resp) {
  if (!name[0])
    name = "index.html";
  bool ok = strlen(name) < 64 && name[0] != '.';
  for (const char *p = name; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_';
  if (!ok || strstr(name, "..")) {
    error_json(resp, 404, "no such page");
    return;
  }
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", C.root, name);
  size_t len = 0;
  const char *err = NULL;
  char *data = gw_file_read(path, STATIC_MAX, &len, &err);
  if (!data) {
    error_json(resp, 404, "no such page");
    return;
  }
  set_body(resp, 200, ctype_of(name), (const uint8_t *)data, len);
  resp->extra[resp->nextra].name = "content-security-policy";
  resp->extra[resp->nextra++].value = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";
  free(data);
}

/* ---- the playground ---- */

static void issues_json(yajl_gen g, const struct gw_diag *d) {
  ys(g, "issues");
  yajl_gen_array_open(g);
  for (size_t i = 0; i < d->n; i++) {
    const struct gw_issue *it = &d->items[i];
    yajl_gen_map_open(g);
    kv(g, "severity", gw_severity_name(it->severity));
    kv(g, "rule", it->rule);
    kv(g, "code", it->code);
    kv(g, "en", it->msg_en);
    kv(g, "pl", it->msg_pl);
    kv(g, "location", it->location);
    ki(g, "line", it->line);
    ki(g, "col", it->col);
    yajl_gen_map_close(g);
  }
  yajl_gen_array_close(g);
  ki(g, "dropped", (long long)d->dropped);
}

static void playground(struct gw_req *req, struct gw_resp *resp, const char *who_s) {
  char v[64];
  time_t now = time(NULL);
  if (gw_query_param(req->path, "now", v, sizeof(v))[0] && gw_instant_parse(v, &now)) {
    error_json(resp, 400, "now: expected a FHIR instant such as 2026-12-01T08:00:00+01:00");
    return;
  }
  const char *text = req->body.data ? (const char *)req->body.data : "";
  size_t len = req->body.len;
  uint64_t t0 = gw_now_ns();
  enum gw_dialect dia = gw_dialect_detect(text, len);
  struct gw_diag d;
  gw_diag_init(&d, 200);
  struct gw_buf json;
  gw_buf_init(&json, 16u << 20);
  struct gw_check chk = {.caller_rpwdl = NULL, .now = now, .json = &json, .json_pretty = 1};
  xmlDocPtr doc = NULL;
  int rv = gw_engine_check(C.e, text, len, GW_D_UNKNOWN, &chk, &doc, &d);
  yajl_gen g = begin(resp);
  if (!g) {
    gw_diag_cleanup(&d);
    gw_buf_cleanup(&json);
    xmlFreeDoc(doc);
    return;
  }
  kv(g, "dialect", gw_dialect_name(dia));
  ys(g, "valid");
  yajl_gen_bool(g, rv == GW_OK);
  char nowtxt[32];
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(nowtxt, sizeof(nowtxt), "%Y-%m-%dT%H:%M:%SZ", &tm);
  kv(g, "now", nowtxt);
  issues_json(g, &d);
  /* the translations, each on its own (one failing does not hide the others) */
  ys(g, "translations");
  yajl_gen_map_open(g);
  static const struct {
    const char *name;
    enum gw_dialect to;
  } targets[] = {
      {"fhir-json", GW_D_FHIR_JSON}, {"fhir-xml", GW_D_FHIR_XML}, {"hl7v2", GW_D_HL7V2}, {"soap", GW_D_SOAP}};
  for (size_t i = 0; doc && i < sizeof(targets) / sizeof(targets[0]); i++) {
    struct gw_buf out;
    gw_buf_init(&out, 16u << 20);
    struct gw_diag td;
    gw_diag_init(&td, 20);
    int trv = targets[i].to == GW_D_FHIR_JSON && json.len
                  ? gw_buf_append(&out, json.data, json.len)
                  : gw_engine_render(C.e, doc, targets[i].to, 1, now, &out, &td);
    ys(g, targets[i].name);
    yajl_gen_map_open(g);
    ys(g, "ok");
    yajl_gen_bool(g, trv == GW_OK);
    if (trv == GW_OK) {
      ys(g, "text");
      yjn(g, out.data ? (const char *)out.data : "", out.len);
    } else {
      kv(g, "error", td.n ? td.items[0].msg_en : "this message has no translation into that dialect");
    }
    yajl_gen_map_close(g);
    gw_buf_cleanup(&out);
    gw_diag_cleanup(&td);
  }
  yajl_gen_map_close(g);
  /* where it would go, and what each backend would receive */
  ys(g, "route");
  yajl_gen_map_open(g);
  struct gw_dconf *conf = doc && rv == GW_OK ? gw_dconf_get() : NULL;
  int idx[GW_MAX_BACKENDS], n = 0;
  char why[512] = "";
  if (conf)
    n = gw_route_match(conf, doc, idx, why, sizeof(why));
  kv(g, "why", !doc || rv != GW_OK ? "not routed: the message is not valid" : why);
  ys(g, "payloads");
  yajl_gen_array_open(g);
  for (int i = 0; conf && i < n; i++) {
    const struct gw_backend_conf *bc = &conf->b[idx[i]];
    struct gw_buf out;
    gw_buf_init(&out, 16u << 20);
    struct gw_diag od;
    gw_diag_init(&od, 20);
    const char *ct = "";
    int orv = gw_engine_outbound(C.e, bc->kind, doc, "console-dry-run", 0, "", &out, &ct, &od);
    yajl_gen_map_open(g);
    kv(g, "backend", bc->name);
    kv(g, "kind", gw_outbound_name(bc->kind));
    kv(g, "url", bc->url);
    kv(g, "content_type", ct);
    ys(g, "body");
    yjn(g, orv == GW_OK && out.data ? (const char *)out.data : "", orv == GW_OK ? out.len : 0);
    if (orv != GW_OK)
      kv(g, "error", od.n ? od.items[0].msg_en : "the mapping failed");
    yajl_gen_map_close(g);
    gw_buf_cleanup(&out);
    gw_diag_cleanup(&od);
  }
  yajl_gen_array_close(g);
  yajl_gen_map_close(g);
  ki(g, "elapsed_us", (long long)((gw_now_ns() - t0) / 1000));
  yajl_gen_map_close(g);
  if (conf)
    gw_dconf_put(conf);
  gw_log(GW_LOG_INFO, "console_audit", "who=\"%s\" action=check dialect=%s bytes=%zu valid=%d issues=%zu", who_s,
         gw_dialect_name(dia), len, rv == GW_OK, d.n);
  gw_diag_cleanup(&d);
  gw_buf_cleanup(&json);
  xmlFreeDoc(doc);
  send_json(resp, 200, g);
}

/* ---- the outbox ---- */

static void row_json(yajl_gen g, const struct gw_obx_row *r) {
  ki(g, "id", r->id);
  ki(g, "msg", r->msg_id);
  ki(g, "created_ms", r->created_ms);
  ki(g, "done_ms", r->done_ms);
  kv(g, "clinic", r->clinic);
  kv(g, "op", r->op);
  kv(g, "resource", r->resource);
  kv(g, "backend", r->backend);
  kv(g, "state", gw_dstate_name(r->state));
  ki(g, "attempts", r->attempts);
  ki(g, "last_status", r->last_status);
  kv(g, "last_error", r->last_error);
}

static void outbox_list(struct gw_req *req, struct gw_resp *resp) {
  struct gw_obx_query q = {.state = -1, .limit = 100};
  char v[160];
  if (gw_query_param(req->path, "state", v, sizeof(v))[0] && (q.state = gw_dstate_parse(v)) < 0) {
    error_json(resp, 400, "state: queued, delivered, rejected, dead or retry-requested");
    return;
  }
  snprintf(q.backend, sizeof(q.backend), "%s", gw_query_param(req->path, "backend", v, sizeof(v)));
  snprintf(q.clinic, sizeof(q.clinic), "%s", gw_query_param(req->path, "clinic", v, sizeof(v)));
  snprintf(q.op, sizeof(q.op), "%s", gw_query_param(req->path, "op", v, sizeof(v)));
  snprintf(q.search, sizeof(q.search), "%s", gw_query_param(req->path, "q", v, sizeof(v)));
  if (gw_query_param(req->path, "msg", v, sizeof(v))[0])
    q.msg_id = atoll(v);
  if (gw_query_param(req->path, "since_min", v, sizeof(v))[0])
    q.since_ms = gw_wall_ms() - atoll(v) * 60000;
  if (gw_query_param(req->path, "limit", v, sizeof(v))[0])
    q.limit = atoi(v) > 0 && atoi(v) <= MAX_ROWS ? atoi(v) : 100;
  struct gw_obx_row *rows = calloc(MAX_ROWS, sizeof(*rows));
  long counts[5] = {0};
  int n = rows ? gw_store_outbox_list(C.st, &q, rows, MAX_ROWS, counts) : GW_ERR_NOMEM;
  if (n < 0) {
    free(rows);
    error_json(resp, 503, "the store cannot be read now");
    return;
  }
  yajl_gen g = begin(resp);
  if (!g) {
    free(rows);
    return;
  }
  ys(g, "counts");
  yajl_gen_map_open(g);
  for (int i = 0; i < 5; i++)
    ki(g, gw_dstate_name(i), counts[i]);
  yajl_gen_map_close(g);
  ys(g, "rows");
  yajl_gen_array_open(g);
  for (int i = 0; i < n; i++) {
    yajl_gen_map_open(g);
    row_json(g, &rows[i]);
    yajl_gen_map_close(g);
  }
  yajl_gen_array_close(g);
  yajl_gen_map_close(g);
  free(rows);
  send_json(resp, 200, g);
}

static void outbox_show(int64_t id, struct gw_resp *resp, const char *who_s) {
  struct gw_obx_detail *d = calloc(1, sizeof(*d));
  int rv = d ? gw_store_outbox_show(C.st, id, d) : GW_ERR_NOMEM;
  if (rv != GW_OK) {
    free(d);
    error_json(resp, rv == GW_ERR_NOTFOUND ? 404 : 503,
               rv == GW_ERR_NOTFOUND ? "no such delivery" : "the store cannot be read now");
    return;
  }
  yajl_gen g = begin(resp);
  if (!g) {
    gw_obx_detail_free(d);
    free(d);
    return;
  }
  row_json(g, &d->row);
  kv(g, "ordering_key", d->rkey);
  kv(g, "path", d->path);
  kv(g, "content_type", d->ctype);
  kv(g, "idempotency_key", d->ikey);
  ys(g, "original");
  yjn(g, (const char *)d->original, d->original_len);
  ys(g, "canonical");
  yjn(g, (const char *)d->canonical, d->canonical_len);
  ys(g, "payload");
  yjn(g, (const char *)d->payload, d->payload_len);
  ys(g, "attempts_history");
  yajl_gen_array_open(g);
  for (int i = 0; i < d->nattempts; i++) {
    yajl_gen_map_open(g);
    ki(g, "attempt", d->att[i].attempt);
    ki(g, "at_ms", d->att[i].at_ms);
    kv(g, "state", gw_dstate_name(d->att[i].state));
    ki(g, "status", d->att[i].status);
    kv(g, "answer", d->att[i].answer);
    yajl_gen_map_close(g);
  }
  yajl_gen_array_close(g);
  yajl_gen_map_close(g);
  gw_log(GW_LOG_INFO, "console_audit", "who=\"%s\" action=show delivery=%lld", who_s, (long long)id);
  gw_obx_detail_free(d);
  free(d);
  send_json(resp, 200, g);
}

static void outbox_act(int64_t id, const char *action, struct gw_resp *resp, const char *who_s) {
  char why[300] = "";
  int rv = gw_store_outbox_act(C.st, id, action, why, sizeof(why));
  gw_log(GW_LOG_INFO, "console_audit", "who=\"%s\" action=%s delivery=%lld outcome=%s", who_s, action, (long long)id,
         rv == GW_OK ? "done" : "refused");
  if (rv != GW_OK) {
    error_json(resp, rv == GW_ERR_NOTFOUND ? 404 : rv == GW_ERR_INVAL ? 409 : 503, why[0] ? why : "the store failed");
    return;
  }
  if (!strcmp(action, "dead"))
    gw_dispatch_kill(id); /* this instance stops attempting it */
  yajl_gen g = begin(resp);
  if (!g)
    return;
  ki(g, "id", id);
  kv(g, "action", action);
  kv(g, "outcome",
     !strcmp(action, "retry")  ? "queued for retry: a running instance sends it within a second"
     : !strcmp(action, "dead") ? "marked dead: not attempted again"
                               : "purged");
  yajl_gen_map_close(g);
  send_json(resp, 200, g);
}

/* ---- health ---- */

void gw_console_sample(void) {
  struct gw_backend_health h[MAX_QUEUES];
  int n = gw_dispatch_health(h, MAX_QUEUES);
  pthread_mutex_lock(&H.mu);
  int slot = H.head;
  H.at_ms[slot] = gw_wall_ms();
  for (int q = 0; q < MAX_QUEUES; q++)
    H.delivered[slot][q] = H.failed[slot][q] = -1;
  for (int i = 0; i < n; i++) {
    int q = 0;
    while (q < H.nq && strcmp(H.names[q], h[i].name))
      q++;
    if (q == H.nq && H.nq < MAX_QUEUES)
      snprintf(H.names[H.nq++], sizeof(H.names[0]), "%s", h[i].name);
    if (q < MAX_QUEUES) {
      H.delivered[slot][q] = h[i].delivered;
      H.failed[slot][q] = h[i].failed;
    }
  }
  H.head = (H.head + 1) % HISTORY;
  if (H.n < HISTORY)
    H.n++;
  pthread_mutex_unlock(&H.mu);
}

static void health(struct gw_resp *resp) {
  pthread_mutex_lock(&H.mu);
  int64_t last = H.n ? H.at_ms[(H.head - 1 + HISTORY) % HISTORY] : 0;
  pthread_mutex_unlock(&H.mu);
  if (gw_wall_ms() - last >= 2000) /* the charts end now, not at the last 10 s tick */
    gw_console_sample();
  struct gw_backend_health h[MAX_QUEUES];
  int n = gw_dispatch_health(h, MAX_QUEUES);
  struct gw_obx_backend lat[MAX_QUEUES];
  int nl = gw_store_outbox_backends(C.st, gw_wall_ms() - 3600000, lat, MAX_QUEUES);
  yajl_gen g = begin(resp);
  if (!g)
    return;
  kv(g, "version", GW_VERSION);
  ki(g, "now_ms", gw_wall_ms());
  ys(g, "backends");
  yajl_gen_array_open(g);
  for (int i = 0; i < n; i++) {
    yajl_gen_map_open(g);
    kv(g, "name", h[i].name);
    kv(g, "breaker", h[i].breaker_open ? "open" : "closed");
    ki(g, "queued", h[i].queued);
    ki(g, "in_flight", h[i].in_flight);
    ki(g, "delivered", h[i].delivered);
    ki(g, "failed_attempts", h[i].failed);
    ki(g, "rejected", h[i].rejected);
    ki(g, "dead", h[i].dead);
    ys(g, "mean_ms");
    yajl_gen_double(g, h[i].mean_ms);
    for (int k = 0; k < nl; k++)
      if (!strcmp(lat[k].backend, h[i].name)) {
        ki(g, "hour_delivered", lat[k].delivered);
        ki(g, "p50_ms", lat[k].p50);
        ki(g, "p95_ms", lat[k].p95);
        ki(g, "p99_ms", lat[k].p99);
        kv(g, "last_error", lat[k].last_error);
        ki(g, "last_error_ms", lat[k].last_error_ms);
      }
    yajl_gen_map_close(g);
  }
  yajl_gen_array_close(g);
  /* throughput over the last hour: deliveries and failed attempts per 10 s, per queue */
  ys(g, "history");
  yajl_gen_map_open(g);
  pthread_mutex_lock(&H.mu);
  ys(g, "at_ms");
  yajl_gen_array_open(g);
  for (int k = 0; k < H.n; k++)
    yajl_gen_integer(g, H.at_ms[(H.head - H.n + k + HISTORY) % HISTORY]);
  yajl_gen_array_close(g);
  ys(g, "queues");
  yajl_gen_map_open(g);
  for (int q = 0; q < H.nq; q++) {
    ys(g, H.names[q]);
    yajl_gen_map_open(g);
    for (int kind = 0; kind < 2; kind++) {
      ys(g, kind ? "failed" : "delivered");
      yajl_gen_array_open(g);
      for (int k = 1; k < H.n; k++) { /* differences between consecutive samples */
        int a = (H.head - H.n + k - 1 + HISTORY) % HISTORY, b = (H.head - H.n + k + HISTORY) % HISTORY;
        long long x = kind ? H.failed[a][q] : H.delivered[a][q], y = kind ? H.failed[b][q] : H.delivered[b][q];
        yajl_gen_integer(g, x >= 0 && y >= x ? y - x : 0);
      }
      yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
  }
  yajl_gen_map_close(g);
  pthread_mutex_unlock(&H.mu);
  yajl_gen_map_close(g);
  /* the configuration in force, read-only */
  struct gw_dconf *conf = gw_dconf_get();
  ys(g, "configuration");
  yajl_gen_map_open(g);
  if (conf) {
    ki(g, "answer_deadline_ms", conf->answer_deadline_ms);
    ys(g, "backends");
    yajl_gen_array_open(g);
    for (int i = 0; i < conf->nb; i++) {
      const struct gw_backend_conf *b = &conf->b[i];
      yajl_gen_map_open(g);
      kv(g, "name", b->name);
      kv(g, "kind", gw_outbound_name(b->kind));
      kv(g, "url", b->url);
      ys(g, "enabled");
      yajl_gen_bool(g, b->enabled);
      ki(g, "max_attempts", b->max_attempts);
      ki(g, "concurrency", b->concurrency);
      ki(g, "timeout_ms", b->timeout_ms);
      yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    ys(g, "routes");
    yajl_gen_array_open(g);
    for (int i = 0; i < conf->nr; i++) {
      const struct gw_route *r = &conf->r[i];
      yajl_gen_map_open(g);
      kv(g, "name", r->name);
      kv(g, "match", r->match);
      ys(g, "enabled");
      yajl_gen_bool(g, r->enabled);
      ys(g, "backends");
      yajl_gen_array_open(g);
      for (int k = 0; k < r->nb; k++)
        ys(g, conf->b[r->backend[k]].name);
      yajl_gen_array_close(g);
      yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    ys(g, "clinics");
    yajl_gen_array_open(g);
    for (int i = 0; i < conf->nclinics; i++) {
      yajl_gen_map_open(g);
      kv(g, "rpwdl", conf->clinics[i].rpwdl);
      kv(g, "notify", gw_outbound_name(conf->clinics[i].kind));
      kv(g, "url", conf->clinics[i].url);
      yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    gw_dconf_put(conf);
  }
  yajl_gen_map_close(g);
  yajl_gen_map_close(g);
  send_json(resp, 200, g);
}

/* ---- the router of the console's listener ---- */

void gw_console_handle(struct gw_req *req, struct gw_resp *resp) {
  char who_s[200];
  const char *why = "";
  int refused = who(req, who_s, sizeof(who_s), &why);
  const char *path = req->path ? req->path : "/";
  bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"), post = !strcmp(req->method, "POST");
  bool api = !strncmp(path, "/console/api/", 13);
  /* the pages hold no data: a browser without a certificate gets them (to ask for the token); a certificate
   * that is not an operator's gets nothing at all */
  if (refused == 403 || (refused && api)) {
    gw_log(GW_LOG_WARN, "console_refused", "peer=%s cn=\"%s\" role=%s path=\"%.80s\" reason=\"%s\"",
           req->peer_addr ? req->peer_addr : "-", req->peer ? req->peer->cn : "",
           req->peer ? gw_role_name(req->peer->role) : "-", path, why);
    error_json(resp, refused, why);
    if (refused == 401) {
      resp->extra[resp->nextra].name = "www-authenticate";
      resp->extra[resp->nextra++].value = "Bearer realm=\"cergw console\"";
    }
    return;
  }
  if (get && (!strcmp(path, "/") || !strcmp(path, "/console"))) {
    gw_resp_set(resp, 302, "text/plain", "/console/\n");
    snprintf(resp->location, sizeof(resp->location), "/console/");
    return;
  }
  if (!api) {
    if (get && !strncmp(path, "/console/", 9)) {
      char name[80];
      snprintf(name, sizeof(name), "%.*s", (int)strcspn(path + 9, "?#"), path + 9);
      serve_static(name, resp);
    } else {
      error_json(resp, 404, "no such page");
    }
    return;
  }
  const char *ep = path + 13;
  size_t eplen = strcspn(ep, "?");
  if (get && eplen == 6 && !strncmp(ep, "whoami", 6)) {
    yajl_gen g = begin(resp);
    if (!g)
      return;
    kv(g, "who", who_s);
    kv(g, "version", GW_VERSION);
    yajl_gen_map_close(g);
    send_json(resp, 200, g);
  } else if (post && eplen == 5 && !strncmp(ep, "check", 5)) {
    playground(req, resp, who_s);
  } else if (get && eplen == 6 && !strncmp(ep, "health", 6)) {
    health(resp);
  } else if (get && eplen == 6 && !strncmp(ep, "outbox", 6)) {
    outbox_list(req, resp);
  } else if (!strncmp(ep, "outbox/", 7)) {
    char *end = NULL;
    long long id = strtoll(ep + 7, &end, 10);
    if (id <= 0 || !end) {
      error_json(resp, 404, "no such delivery");
    } else if (get && (end - ep) == (long)eplen) {
      outbox_show(id, resp, who_s);
    } else if (post && (!strncmp(end, "/retry", 6) || !strncmp(end, "/purge", 6)) && (end + 6 - ep) == (long)eplen) {
      char action[8];
      snprintf(action, sizeof(action), "%.5s", end + 1);
      outbox_act(id, action, resp, who_s);
    } else if (post && !strncmp(end, "/dead", 5) && (end + 5 - ep) == (long)eplen) {
      outbox_act(id, "dead", resp, who_s);
    } else {
      error_json(resp, 405, "GET a delivery, or POST its /retry, /dead or /purge");
    }
  } else {
    error_json(resp, 404, "no such API");
  }
}
