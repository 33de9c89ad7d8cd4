/* Delivery configuration: backends, routes, clinics' notification endpoints. */
#include <libgen.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "codec/fhir.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "deliver/deliver.h"
#include "deliver/sched.h"
#include "mllp/mllp.h"
#include "msg/engine.h"

/* The embedded defaults: the simulated backends started by `make run`. */
static const char default_conf[] =
    "{\n"
    "  \"answer_deadline_ms\": 2000,\n"
    "  \"client_tls\": {\"cert\": \"certs/dev/gateway-out.pem\", \"key\": \"certs/dev/gateway-out.key\",\n"
    "                 \"ca\": \"certs/dev/ca.pem\"},\n"
    "  \"defaults\": {\"timeout_ms\": 5000, \"max_attempts\": 30, \"backoff_ms\": 200, \"max_backoff_ms\": 60000,\n"
    "               \"concurrency\": 128, \"breaker_failures\": 5, \"breaker_open_ms\": 2000},\n"
    "  \"backends\": {\n"
    "    \"p1\": {\"kind\": \"p1\", \"url\": \"https://127.0.0.1:9441/fhir\",\n"
    "           \"token_url\": \"https://127.0.0.1:9441/oauth2/token\", \"client_id\": \"cergw-dev\"},\n"
    "    \"simp\": {\"kind\": \"simp\", \"url\": \"https://127.0.0.1:9442/simp\"},\n"
    "    \"apkolce\": {\"kind\": \"apkolce\", \"url\": \"https://127.0.0.1:9443/apkolce\"}\n"
    "  },\n"
    "  \"routes\": [\n"
    "    {\"name\": \"cer\", \"match\": \"/f:*\", \"backends\": [\"p1\"]},\n"
    "    {\"name\": \"cardiology-waiting-list\", \"backends\": [\"apkolce\"],\n"
    "     \"match\": \"//f:specialty/f:coding[f:system/@value = "
    "'urn:oid:2.16.840.1.113883.3.4424.11.2.4' and f:code/@value >= 1100 and f:code/@value <= 1105]\"},\n"
    "    {\"name\": \"screening\", \"backends\": [\"simp\"],\n"
    "     \"match\": \"//f:specialty/f:coding[f:system/@value = "
    "'urn:oid:2.16.840.1.113883.3.4424.11.2.4' and (f:code/@value = '7910' or f:code/@value = '7912')]\"}\n"
    "  ],\n"
    "  \"clinics\": {\n"
    "    \"000000012345\": {\"notify\": \"clinic-soap\", \"url\": \"https://127.0.0.1:9444/clinic/000000012345\"},\n"
    "    \"000000067890\": {\"notify\": \"clinic-siu\", \"url\": \"https://127.0.0.1:9444/clinic/000000067890\"},\n"
    "    \"000000011111\": {\"notify\": \"clinic-siu\", \"url\": \"mllp://127.0.0.1:9445\"}\n"
    "  }\n"
    "}\n";

/* Bad XPath in a route is reported as a configuration error, not on stderr. */
static void quiet(void *ud, xmlErrorPtr e) {
  (void)ud;
  (void)e;
}

static const char *str_at(yajl_val v, const char *key) {
  const char *path[] = {key, NULL};
  yajl_val s = yajl_tree_get(v, path, yajl_t_string);
  return s ? YAJL_GET_STRING(s) : NULL;
}

static int num_at(yajl_val v, const char *key, uint32_t *out, struct gw_buf *errs, const char *where) {
  const char *path[] = {key, NULL};
  yajl_val n = yajl_tree_get(v, path, yajl_t_any);
  if (!n)
    return GW_OK;
  if (!YAJL_IS_INTEGER(n) || YAJL_GET_INTEGER(n) < 0 || YAJL_GET_INTEGER(n) > 86400000) {
    gw_buf_printf(errs, "%s.%s: expected a whole number from 0 to 86400000\n", where, key);
    return GW_ERR_CONF;
  }
  *out = (uint32_t)YAJL_GET_INTEGER(n);
  return GW_OK;
}

static int bool_at(yajl_val v, const char *key, bool *out) {
  const char *path[] = {key, NULL};
  yajl_val b = yajl_tree_get(v, path, yajl_t_any);
  if (b && YAJL_IS_TRUE(b))
    *out = true;
  else if (b && YAJL_IS_FALSE(b))
    *out = false;
  else if (b)
    return GW_ERR_CONF;
  return GW_OK;
}

static void resolve(char *dst, size_t n, const char *dir, const char *p) {
  if (p[0] == '/' || !dir[0])
    snprintf(dst, n, "%s", p);
  else
    snprintf(dst, n, "%s/%s", dir, p);
}

static int backend_settings(yajl_val v, struct gw_backend_conf *b, struct gw_buf *errs, const char *where) {
  int rv = GW_OK;
  rv |= num_at(v, "timeout_ms", &b->timeout_ms, errs, where);
  rv |= num_at(v, "max_attempts", &b->max_attempts, errs, where);
  rv |= num_at(v, "backoff_ms", &b->backoff_ms, errs, where);
  rv |= num_at(v, "max_backoff_ms", &b->max_backoff_ms, errs, where);
  rv |= num_at(v, "concurrency", &b->concurrency, errs, where);
  rv |= num_at(v, "breaker_failures", &b->breaker_failures, errs, where);
  rv |= num_at(v, "breaker_open_ms", &b->breaker_open_ms, errs, where);
  rv |= num_at(v, "memory_queue", &b->memory_queue, errs, where);
  if (bool_at(v, "enabled", &b->enabled)) {
    gw_buf_printf(errs, "%s.enabled: expected true or false\n", where);
    rv = GW_ERR_CONF;
  }
  if (b->max_attempts == 0)
    b->max_attempts = 1;
  if (b->concurrency == 0)
    b->concurrency = 1;
  if (b->memory_queue == 0)
    b->memory_queue = 1;
  return rv ? GW_ERR_CONF : GW_OK;
}

static int find_backend(const struct gw_dconf *c, const char *name) {
  for (int i = 0; i < c->nb; i++)
    if (strcmp(c->b[i].name, name) == 0)
      return i;
  return -1;
}

static int cmp_clinic(const void *a, const void *b) {
  return strcmp(((const struct gw_backend_conf *)a)->rpwdl, ((const struct gw_backend_conf *)b)->rpwdl);
}

const struct gw_backend_conf *gw_dconf_clinic(const struct gw_dconf *c, const char *rpwdl) {
  struct gw_backend_conf key;
  snprintf(key.rpwdl, sizeof(key.rpwdl), "%s", rpwdl);
  return c->nclinics ? bsearch(&key, c->clinics, (size_t)c->nclinics, sizeof(key), cmp_clinic) : NULL;
}

const struct gw_backend_conf *gw_dconf_backend(const struct gw_dconf *c, const char *name) {
  if (!strncmp(name, "clinic-", 7))
    return gw_dconf_clinic(c, name + 7);
  int i = find_backend(c, name);
  return i < 0 ? NULL : &c->b[i];
}

struct pctx { /* what every part of the parse needs */
  struct gw_dconf *c;
  const char *name, *dir;
  struct gw_backend_conf defaults;
  struct gw_buf *errs;
};

static int parse_tls(struct pctx *p, yajl_val root) {
  const char *tp[] = {"client_tls", NULL};
  yajl_val tls = yajl_tree_get(root, tp, yajl_t_object);
  const char *cert = tls ? str_at(tls, "cert") : NULL, *key = tls ? str_at(tls, "key") : NULL,
             *ca = tls ? str_at(tls, "ca") : NULL;
  if (!cert || !key || !ca) {
    gw_buf_printf(p->errs, "%s: client_tls needs cert, key and ca\n", p->name);
    return GW_ERR_CONF;
  }
  resolve(p->c->cert, sizeof(p->c->cert), p->dir, cert);
  resolve(p->c->key, sizeof(p->c->key), p->dir, key);
  resolve(p->c->ca, sizeof(p->c->ca), p->dir, ca);
  return GW_OK;
}

static int parse_backend(struct pctx *p, const char *bn, yajl_val o) {
  char where[96];
  snprintf(where, sizeof(where), "%s: backends.%s", p->name, bn);
  const char *kind = YAJL_IS_OBJECT(o) ? str_at(o, "kind") : NULL, *url = YAJL_IS_OBJECT(o) ? str_at(o, "url") : NULL;
  const struct gw_backend_kind *k = kind ? gw_backend_kind(gw_outbound_parse(kind)) : NULL;
  if (p->c->nb >= GW_MAX_BACKENDS) {
    gw_buf_printf(p->errs, "%s: more than %d backends (GW_MAX_BACKENDS, the most one message can go to)\n", where,
                  GW_MAX_BACKENDS);
    return GW_ERR_CONF;
  }
  if (strlen(bn) >= sizeof(p->c->b[0].name) - 8 || !strncmp(bn, "clinic-", 7)) {
    gw_buf_printf(p->errs, "%s: a backend's name has at most %zu characters and does not start with \"clinic-\"\n",
                  where, sizeof(p->c->b[0].name) - 9);
    return GW_ERR_CONF;
  }
  if (!k || k->clinic || !url) {
    gw_buf_printf(p->errs, "%s: needs kind (p1, simp or apkolce) and url\n", where);
    return GW_ERR_CONF;
  }
  struct gw_backend_conf *b = &p->c->b[p->c->nb++];
  *b = p->defaults;
  snprintf(b->name, sizeof(b->name), "%s", bn);
  b->kind = gw_outbound_parse(kind);
  snprintf(b->url, sizeof(b->url), "%s", url);
  const char *tu = str_at(o, "token_url"), *cid = str_at(o, "client_id");
  snprintf(b->token_url, sizeof(b->token_url), "%s", tu ? tu : "");
  snprintf(b->client_id, sizeof(b->client_id), "%s", cid ? cid : "cergw");
  return backend_settings(o, b, p->errs, where);
}

static int parse_clinic(struct pctx *p, const char *rp, yajl_val o, struct gw_backend_conf *b) {
  const char *notify = YAJL_IS_OBJECT(o) ? str_at(o, "notify") : NULL,
             *url = YAJL_IS_OBJECT(o) ? str_at(o, "url") : NULL;
  int kind = notify ? gw_outbound_parse(notify) : -1;
  const struct gw_backend_kind *k = gw_backend_kind(kind);
  if (strlen(rp) != 12 || strspn(rp, "0123456789") != 12 || !url || !k || !k->clinic) {
    gw_buf_printf(p->errs,
                  "%s: clinics.%s: the key is the 12-digit RPWDL number; needs notify "
                  "(clinic-soap or clinic-siu) and url\n",
                  p->name, rp);
    return GW_ERR_CONF;
  }
  char mh[256], mp[16];
  bool mllp = !strncmp(url, "mllp://", 7);
  if ((mllp && (k->transport != GW_TRANSPORT_MLLP_OR_HTTPS || gw_mllp_url(url, mh, sizeof(mh), mp, sizeof(mp)))) ||
      (!mllp && strncmp(url, "https://", 8))) {
    gw_buf_printf(p->errs, "%s: clinics.%s: url must be https://… or, for clinic-siu, mllp://HOST:PORT\n", p->name, rp);
    return GW_ERR_CONF;
  }
  const char *cs = str_at(o, "hl7_charset");
  const char *css = !cs                                                            ? ""
                    : !strcasecmp(cs, "windows-1250") || !strcasecmp(cs, "cp1250") ? "WINDOWS-1250"
                    : !strcasecmp(cs, "iso-8859-2")                                ? "ISO-8859-2"
                    : !strcasecmp(cs, "utf-8")                                     ? ""
                                                                                   : NULL;
  if (!css) {
    gw_buf_printf(p->errs, "%s: clinics.%s: hl7_charset is windows-1250, iso-8859-2 or utf-8\n", p->name, rp);
    return GW_ERR_CONF;
  }
  *b = p->defaults;
  snprintf(b->hl7_charset, sizeof(b->hl7_charset), "%s", css);
  snprintf(b->name, sizeof(b->name), "clinic-%s", rp);
  snprintf(b->rpwdl, sizeof(b->rpwdl), "%s", rp);
  b->kind = kind;
  snprintf(b->url, sizeof(b->url), "%s", url);
  return backend_settings(o, b, p->errs, b->name);
}

/* The clinics map: every clinic's endpoint, sorted by RPWDL, each RPWDL once. */
static int parse_clinics(struct pctx *p, yajl_val cv) {
  size_t n = cv ? YAJL_GET_OBJECT(cv)->len : 0;
  if (n > GW_MAX_CLINICS) {
    gw_buf_printf(p->errs, "%s: clinics: %zu clinics, more than %d (GW_MAX_CLINICS)\n", p->name, n, GW_MAX_CLINICS);
    return GW_ERR_CONF;
  }
  if (n && !(p->c->clinics = calloc(n, sizeof(*p->c->clinics))))
    return GW_ERR_NOMEM;
  int rv = GW_OK;
  for (size_t i = 0; i < n; i++)
    if (parse_clinic(p, YAJL_GET_OBJECT(cv)->keys[i], YAJL_GET_OBJECT(cv)->values[i], &p->c->clinics[p->c->nclinics]) ==
        GW_OK)
      p->c->nclinics++;
    else
      rv = GW_ERR_CONF;
  if (p->c->nclinics > 1)
    qsort(p->c->clinics, (size_t)p->c->nclinics, sizeof(*p->c->clinics), cmp_clinic);
  for (int i = 1; i < p->c->nclinics; i++)
    if (!strcmp(p->c->clinics[i].rpwdl, p->c->clinics[i - 1].rpwdl)) {
      gw_buf_printf(p->errs, "%s: clinics.%s: listed twice\n", p->name, p->c->clinics[i].rpwdl);
      rv = GW_ERR_CONF;
    }
  return rv;
}

static int compile_match(struct gw_route *r) {
  xmlXPathContextPtr x = xmlXPathNewContext(NULL);
  if (x) {
    xmlXPathRegisterNs(x, BAD_CAST "f", BAD_CAST GW_FHIR_NS);
    x->error = quiet;
  }
  r->xp = (x && r->match) ? xmlXPathCtxtCompile(x, BAD_CAST r->match) : NULL;
  xmlXPathFreeContext(x);
  return r->xp ? GW_OK : GW_ERR_CONF;
}

static int parse_route(struct pctx *p, size_t i, yajl_val o) {
  const char *rn = YAJL_IS_OBJECT(o) ? str_at(o, "name") : NULL, *m = YAJL_IS_OBJECT(o) ? str_at(o, "match") : NULL;
  const char *bk[] = {"backends", NULL};
  yajl_val arr = YAJL_IS_OBJECT(o) ? yajl_tree_get(o, bk, yajl_t_array) : NULL;
  if (p->c->nr >= GW_MAX_ROUTES) {
    gw_buf_printf(p->errs, "%s: routes[%zu]: more than %d routes (GW_MAX_ROUTES)\n", p->name, i, GW_MAX_ROUTES);
    return GW_ERR_CONF;
  }
  if (!rn || !m || !arr) {
    gw_buf_printf(p->errs, "%s: routes[%zu]: needs name, match (XPath) and backends\n", p->name, i);
    return GW_ERR_CONF;
  }
  struct gw_route *r = &p->c->r[p->c->nr++];
  snprintf(r->name, sizeof(r->name), "%s", rn);
  r->enabled = true;
  int rv = bool_at(o, "enabled", &r->enabled);
  r->match = strdup(m);
  if (compile_match(r)) {
    gw_buf_printf(p->errs, "%s: routes[%zu] (%s): match is not a valid XPath 1.0 expression\n", p->name, i, rn);
    rv = GW_ERR_CONF;
  }
  for (size_t k = 0; k < YAJL_GET_ARRAY(arr)->len; k++) {
    const char *bn = YAJL_GET_STRING(YAJL_GET_ARRAY(arr)->values[k]);
    int bi = bn ? find_backend(p->c, bn) : -1;
    bool dup = false;
    for (int j = 0; j < r->nb; j++)
      dup |= r->backend[j] == bi;
    if (bi < 0) {
      gw_buf_printf(p->errs, "%s: routes[%zu] (%s): unknown backend \"%s\"\n", p->name, i, rn, bn ? bn : "?");
      rv = GW_ERR_CONF;
    } else if (!dup) { /* at most every backend once: r->nb <= nb <= GW_MAX_BACKENDS */
      r->backend[r->nb++] = bi;
    }
  }
  return rv ? GW_ERR_CONF : GW_OK;
}

static int parse_root(struct pctx *p, yajl_val root) {
  int rv = num_at(root, "answer_deadline_ms", &p->c->answer_deadline_ms, p->errs, p->name);
  if (parse_tls(p, root))
    return GW_ERR_CONF;
  const char *dp[] = {"defaults", NULL}, *bp[] = {"backends", NULL}, *cp[] = {"clinics", NULL};
  const char *rpth[] = {"routes", NULL};
  yajl_val dv = yajl_tree_get(root, dp, yajl_t_object);
  if (dv)
    rv |= backend_settings(dv, &p->defaults, p->errs, "defaults");
  yajl_val bv = yajl_tree_get(root, bp, yajl_t_object);
  for (size_t i = 0; bv && i < YAJL_GET_OBJECT(bv)->len; i++)
    rv |= parse_backend(p, YAJL_GET_OBJECT(bv)->keys[i], YAJL_GET_OBJECT(bv)->values[i]);
  rv |= parse_clinics(p, yajl_tree_get(root, cp, yajl_t_object));
  yajl_val ra = yajl_tree_get(root, rpth, yajl_t_array);
  for (size_t i = 0; ra && i < YAJL_GET_ARRAY(ra)->len; i++)
    rv |= parse_route(p, i, YAJL_GET_ARRAY(ra)->values[i]);
  return rv ? GW_ERR_CONF : GW_OK;
}

static int parse(struct gw_dconf *c, const char *name, const char *text, const char *dir, struct gw_buf *errs) {
  char ebuf[512];
  yajl_val root = yajl_tree_parse(text, ebuf, sizeof(ebuf));
  if (!root) {
    gw_buf_printf(errs, "%s: %s\n", name, ebuf);
    return GW_ERR_CONF;
  }
  const struct gw_sched_policy *d = &gw_sched_default_policy;
  struct pctx p = {.c = c,
                   .name = name,
                   .dir = dir,
                   .errs = errs,
                   .defaults = {.enabled = d->enabled,
                                .timeout_ms = 5000,
                                .max_attempts = d->max_attempts,
                                .backoff_ms = d->backoff_ms,
                                .max_backoff_ms = d->max_backoff_ms,
                                .concurrency = d->concurrency,
                                .breaker_failures = d->breaker_failures,
                                .breaker_open_ms = d->breaker_open_ms,
                                .memory_queue = d->memory_queue}};
  c->answer_deadline_ms = 2000;
  int rv = GW_ERR_CONF;
  if (!YAJL_IS_OBJECT(root))
    gw_buf_printf(errs, "%s: the top level must be an object\n", name);
  else
    rv = parse_root(&p, root);
  yajl_tree_free(root);
  return rv;
}

/* A new snapshot from |text|; relative file names are taken from |dir| ("" = as given). */
static int build(const char *text, const char *name, const char *dir, const char *path, struct gw_dconf **out,
                 struct gw_buf *errs) {
  *out = NULL;
  struct gw_dconf *c = calloc(1, sizeof(*c));
  if (!c)
    return GW_ERR_NOMEM;
  static atomic_ulong serials;
  c->refs = 1;
  c->serial = atomic_fetch_add(&serials, 1) + 1;
  c->path = path ? strdup(path) : NULL;
  int rv = parse(c, name, text, dir, errs);
  if (rv) {
    gw_dconf_free(c);
    return rv;
  }
  *out = c;
  return GW_OK;
}

int gw_dconf_parse(const char *text, const char *name, struct gw_dconf **out, struct gw_buf *errs) {
  return build(text, name, "", NULL, out, errs);
}

int gw_dconf_load(const char *path, struct gw_dconf **out, struct gw_buf *errs) {
  *out = NULL;
  if (!path)
    return build(default_conf, "embedded delivery defaults", "", NULL, out, errs);
  size_t n;
  char *text = gw_file_read_conf(path, 1u << 20, &n, errs);
  if (!text)
    return GW_ERR_CONF;
  char tmp[1024];
  snprintf(tmp, sizeof(tmp), "%s", path);
  int rv = build(text, path, dirname(tmp), path, out, errs);
  free(text);
  return rv;
}

void gw_dconf_free(struct gw_dconf *c) {
  if (!c)
    return;
  for (int i = 0; i < c->nr; i++) {
    free(c->r[i].match);
    xmlXPathFreeCompExpr(c->r[i].xp);
  }
  free(c->clinics);
  free(c->path);
  free(c);
}

int gw_route_match(const struct gw_dconf *c, xmlDocPtr doc, int *idx, char *why, size_t whylen) {
  int n = 0;
  size_t wl = 0;
  if (whylen)
    why[0] = 0;
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  if (!x)
    return GW_ERR_NOMEM;
  for (int i = 0; i < c->nr; i++) {
    const struct gw_route *r = &c->r[i];
    if (!r->enabled)
      continue;
    x->node = (xmlNodePtr)doc;
    xmlXPathObjectPtr o = xmlXPathCompiledEval(r->xp, x);
    if (!o) { /* not "no match": a route that cannot be decided must not silently drop a backend */
      gw_log(GW_LOG_ERROR, "route_failed", "route=%s detail=\"the match expression failed on this message\"", r->name);
      return GW_ERR_INVAL;
    }
    int hit = xmlXPathCastToBoolean(o);
    xmlXPathFreeObject(o);
    if (!hit)
      continue;
    if (wl < whylen)
      wl += (size_t)snprintf(why + wl, whylen - wl, "%s%s", wl ? "," : "", r->name);
    for (int k = 0; k < r->nb; k++) {
      int b = r->backend[k];
      bool seen = !c->b[b].enabled;
      for (int j = 0; j < n; j++)
        seen |= idx[j] == b;
      if (!seen) /* each backend once, and there are at most GW_MAX_BACKENDS */
        idx[n++] = b;
    }
  }
  return n;
}

static pthread_mutex_t cur_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gw_dconf *cur;

struct gw_dconf *gw_dconf_get(void) {
  pthread_mutex_lock(&cur_mu);
  struct gw_dconf *c = cur;
  if (c)
    c->refs++;
  pthread_mutex_unlock(&cur_mu);
  return c;
}

void gw_dconf_put(struct gw_dconf *c) {
  if (!c)
    return;
  pthread_mutex_lock(&cur_mu);
  int left = --c->refs;
  pthread_mutex_unlock(&cur_mu);
  if (left == 0)
    gw_dconf_free(c);
}

void gw_dconf_install(struct gw_dconf *c) {
  pthread_mutex_lock(&cur_mu);
  struct gw_dconf *old = cur;
  cur = c;
  pthread_mutex_unlock(&cur_mu);
  gw_dconf_put(old);
}
