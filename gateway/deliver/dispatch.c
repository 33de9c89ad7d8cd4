/* The dispatcher: the I/O around the scheduler (sched.c). One thread with a
 * curl multi handle. Deliveries arrive from the store right after their
 * commit (and from the database at start-up) and are handed to the
 * scheduler; what it says may go now is sent — over HTTPS by libcurl, or as
 * an MLLP/TLS exchange whose socket joins libcurl's poll — and each outcome
 * goes back to the scheduler, to the store and to the caller still waiting
 * for its answer. OAuth2 tokens (private_key_jwt) are fetched as one more
 * transfer on the same multi handle: a slow token endpoint holds up only its
 * own backend. The only file that includes curl (besides the simulators). */
#include <curl/curl.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "codec/hl7v2.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "deliver/deliver.h"
#include "deliver/sched.h"
#include "mllp/client.h"
#include "mllp/mllp.h"
#include "tls/jwt.h"
#include "tls/tls.h"

#define RESP_MAX      (64 * 1024)
#define TICK_MS       20
#define MAX_MLLP_POLL 64 /* MLLP exchanges whose sockets wake the dispatcher; more are stepped each tick */

enum xfer_kind { X_DELIVERY, X_TOKEN };
struct xfer { /* what a curl handle's CURLOPT_PRIVATE points at */
  enum xfer_kind kind;
};

struct job;

struct dlv {
  struct gw_sched_item it; /* first: the scheduler's view */
  struct xfer x;
  struct job *job; /* waiting for this delivery's first outcome, or NULL */
  int res_idx;
  CURL *h;
  struct dlv *iprev, *inext; /* HTTPS in flight */
  struct curl_slist *hdrs;
  struct gw_buf resp;
  struct gw_mllp_call *mc; /* an MLLP exchange in flight (clinics with an mllp:// endpoint) */
  struct dlv *mnext;
};

#define DLV(item) ((struct dlv *)(void *)((char *)(item)-offsetof(struct dlv, it)))

/* A backend's OAuth2 state (only backends with a token_url have one). */
struct auth {
  struct xfer x;
  struct gw_sched_bk *bk;
  char token[2048];
  int64_t token_exp_ms;
  CURL *h; /* a token request in flight */
  struct gw_buf body;
  char *form;
  struct auth *next;
};

struct job {
  struct gw_submit *s;
  int outstanding;
  int64_t deadline_ms;
  struct dlv *dl[GW_MAX_BACKENDS];
  struct job *prev, *next;
};

struct gw_dispatch {
  struct gw_store *st;
  pthread_t th;
  pthread_mutex_t mu;
  struct gw_submit *inbox; /* accepted submits, under mu */
  bool stop;
  CURLM *multi;
  struct gw_sched *S;
  struct job *jobs;
  struct dlv *inflight;
  struct dlv *mllp;    /* MLLP exchanges in flight */
  struct auth *auths;  /* every backend's OAuth2 state */
  struct gw_tls *mtls; /* the client TLS context for MLLP, built from the snapshot mtls_serial */
  unsigned long mtls_serial;
  struct gw_jwt_key *key; /* the private_key_jwt signing key, read from the snapshot key_serial */
  unsigned long key_serial;
  int64_t last_poll_ms;
  const struct gw_dconf *conf; /* the snapshot of the current turn (policies of queues made while loading) */
  pthread_mutex_t kmu;         /* deliveries an operator marked dead (the console): not attempted again here */
  int64_t kill[64];
  int nkill;
  CURL *spare[64]; /* easy handles of finished transfers, reset for the next (curl_easy_init and
                      cleanup cost more than a reset; connections live in the multi handle either way) */
  int nspare;
};

static _Atomic(struct gw_dispatch *) the; /* for metrics */

static uint32_t jitter(void *ud) {
  (void)ud;
  return gw_random_u32();
}

static void policy_from(const struct gw_backend_conf *bc, struct gw_sched_policy *p) {
  *p = (struct gw_sched_policy){.enabled = bc && bc->enabled};
  if (bc) {
    p->max_attempts = bc->max_attempts;
    p->backoff_ms = bc->backoff_ms;
    p->max_backoff_ms = bc->max_backoff_ms;
    p->concurrency = bc->concurrency;
    p->breaker_failures = bc->breaker_failures;
    p->breaker_open_ms = bc->breaker_open_ms;
    p->memory_queue = bc->memory_queue;
  } else {
    p->memory_queue = 20000; /* removed from the configuration: its deliveries wait (in the store past this) */
  }
}

/* The queue of backend |name| with the policy of snapshot |c| (NULL: as it is). */
/* Gives |b| the policy of snapshot |c| when it has an older one (|c| NULL: as it is). */
static void refresh(struct gw_sched_bk *b, const struct gw_dconf *c) {
  if (b && c && gw_sched_policy_serial(b) != c->serial) {
    struct gw_sched_policy p;
    policy_from(gw_dconf_backend(c, gw_sched_name(b)), &p);
    gw_sched_set_policy(b, &p, c->serial);
  }
}

/* The queue of backend |name| with the policy of snapshot |c|. */
static struct gw_sched_bk *queue(struct gw_dispatch *D, const char *name, const struct gw_dconf *c) {
  struct gw_sched_bk *b = gw_sched_backend(D->S, name);
  refresh(b, c);
  return b;
}

/* ---- jobs: answering the caller ---- */

static void job_finish(struct gw_dispatch *D, struct job *j) {
  for (int i = 0; i < GW_MAX_BACKENDS; i++)
    if (j->dl[i])
      j->dl[i]->job = NULL;
  if (j->prev)
    j->prev->next = j->next;
  else
    D->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  struct gw_submit *s = j->s;
  free(j);
  s->done(s);
}

/* The first outcome of |v| (delivered, rejected, or a failed attempt that will be retried). */
static void first_outcome(struct gw_dispatch *D, struct dlv *v) {
  struct job *j = v->job;
  if (!j)
    return;
  struct gw_dresult *r = &j->s->res[v->res_idx];
  r->state = v->it.d.state;
  r->attempts = v->it.d.attempts;
  r->last_status = v->it.d.last_status;
  snprintf(r->error, sizeof(r->error), "%s", v->it.d.last_error);
  j->dl[v->res_idx] = NULL;
  v->job = NULL;
  if (--j->outstanding == 0)
    job_finish(D, j);
}

static struct dlv *dlv_new(struct gw_delivery *d) {
  struct dlv *v = calloc(1, sizeof(*v));
  if (!v)
    return NULL;
  v->it.d = *d;
  d->payload = NULL; /* the delivery owns it now */
  v->x.kind = X_DELIVERY;
  gw_buf_init(&v->resp, RESP_MAX);
  return v;
}

static void free_dlv(struct dlv *v) {
  gw_buf_cleanup(&v->resp);
  free(v->it.d.payload);
  free(v);
}

static void free_item(struct gw_sched_item *it) { free_dlv(DLV(it)); }

/* Tells the job of each delivery of |j| whose backend's breaker is open now, rather than at the deadline. */
static void report_open_breakers(struct gw_dispatch *D, struct job *j, int64_t now) {
  struct dlv *open[GW_MAX_BACKENDS];
  int nopen = 0;
  for (int i = 0; i < GW_MAX_BACKENDS; i++)
    if (j->dl[i] && gw_sched_breaker_open(j->dl[i]->it.bk, now))
      open[nopen++] = j->dl[i];
  for (int i = 0; i < nopen; i++) {
    snprintf(open[i]->it.d.last_error, sizeof(open[i]->it.d.last_error), "%s", "backend failing (circuit open)");
    first_outcome(D, open[i]); /* may finish the job: |j| is not used after this */
  }
}

static void take_submit(struct gw_dispatch *D, struct gw_submit *s, const struct gw_dconf *c, int64_t now) {
  struct job *j = calloc(1, sizeof(*j));
  if (!j) {
    s->done(s); /* answered as queued: the deliveries are in the store and go out after a restart */
    return;
  }
  j->s = s;
  j->deadline_ms = s->deadline_ms;
  s->nres = s->nd;
  for (int i = 0; i < s->nd; i++) {
    struct gw_dresult *r = &s->res[i];
    memcpy(r->backend, s->d[i].backend, sizeof(r->backend));
    r->state = GW_DS_QUEUED;
    struct gw_sched_bk *b = queue(D, s->d[i].backend, c);
    if (s->d[i].held) { /* a cluster: an earlier delivery of its resource is pending at another instance */
      snprintf(r->error, sizeof(r->error), "%s", "queued behind an earlier message of the same resource");
      continue;
    }
    if (!b || gw_sched_spill(b, s->d[i].id)) {
      snprintf(r->error, sizeof(r->error), "%s", "queued in the store behind a backlog");
      continue;
    }
    struct dlv *v = dlv_new(&s->d[i]);
    if (!v)
      continue; /* stays queued in the store: delivered after a restart */
    v->job = j;
    v->res_idx = i;
    j->dl[i] = v;
    j->outstanding++;
    gw_sched_add(D->S, b, &v->it, now);
  }
  j->next = D->jobs;
  if (D->jobs)
    D->jobs->prev = j;
  D->jobs = j;
  if (j->outstanding == 0)
    job_finish(D, j);
  else
    report_open_breakers(D, j, now);
}

void gw_dispatch_accepted(void *ud, struct gw_submit *s) {
  struct gw_dispatch *D = ud;
  pthread_mutex_lock(&D->mu);
  s->next = D->inbox;
  D->inbox = s;
  pthread_mutex_unlock(&D->mu);
  curl_multi_wakeup(D->multi);
}

/* ---- outcomes ---- */

enum outcome { O_DELIVERED, O_REJECTED, O_FAILED };

static void outcome(struct gw_dispatch *D, struct dlv *v, enum outcome o, int64_t now) {
  bool gone = true;
  if (o == O_DELIVERED)
    gw_sched_delivered(D->S, &v->it, now);
  else if (o == O_REJECTED)
    gw_sched_rejected(D->S, &v->it, now);
  else
    gone = gw_sched_failed(D->S, &v->it, now);
  gw_store_update(D->st, &v->it.d);
  first_outcome(D, v);
  if (gone)
    free_dlv(v);
}

/* The backend refused this message for good; |why| (|n| bytes, its answer) is kept as the error. */
static void rejected(struct gw_dispatch *D, struct dlv *v, const char *why, size_t n, int64_t now) {
  struct gw_delivery *d = &v->it.d;
  if (n > sizeof(d->last_error) - 1)
    n = sizeof(d->last_error) - 1;
  for (size_t i = 0; i < n; i++) /* one line, printable */
    d->last_error[i] = ((unsigned char)why[i] < 0x20) ? ' ' : why[i];
  d->last_error[n] = 0;
  gw_log(GW_LOG_WARN, "delivery_rejected", "delivery=%lld msg=%lld backend=%s status=%d", (long long)d->id,
         (long long)d->msg_id, d->backend, d->last_status);
  outcome(D, v, O_REJECTED, now);
}

static void failed(struct gw_dispatch *D, struct dlv *v, const char *why, int64_t now) {
  snprintf(v->it.d.last_error, sizeof(v->it.d.last_error), "%s", why);
  outcome(D, v, O_FAILED, now);
}

/* ---- HTTPS ---- */

static size_t collect(char *p, size_t sz, size_t n, void *ud) {
  struct gw_buf *b = ud;
  if (gw_buf_append(b, p, sz * n))
    return 0;
  return sz * n;
}

static void tls_opts(CURL *h, const struct gw_dconf *c, uint32_t timeout_ms) {
  curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
  curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
  curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 3000 ? timeout_ms : 3000));
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
}

static struct curl_slist *headers(const struct dlv *v, const struct gw_backend_conf *bc, const struct auth *a) {
  const struct gw_backend_kind *k = gw_backend_kind(bc->kind);
  char hdr[2200];
  snprintf(hdr, sizeof(hdr), "content-type: %s", v->it.d.ctype);
  struct curl_slist *l = curl_slist_append(NULL, hdr);
  snprintf(hdr, sizeof(hdr), "idempotency-key: %s", v->it.d.ikey);
  l = curl_slist_append(l, hdr);
  l = curl_slist_append(l, "expect:");
  if (a && a->token[0]) {
    snprintf(hdr, sizeof(hdr), "authorization: Bearer %s", a->token);
    l = curl_slist_append(l, hdr);
  }
  if (k && k->header)
    l = curl_slist_append(l, k->header);
  if (v->it.d.acting[0] && !k->clinic) { /* who acts: the backend can hold the clinic to its own resources */
    snprintf(hdr, sizeof(hdr), "x-cergw-acting-clinic: %s", v->it.d.acting);
    l = curl_slist_append(l, hdr);
  }
  return l;
}

static void https_start(struct gw_dispatch *D, struct dlv *v, const struct gw_backend_conf *bc,
                        const struct gw_dconf *c, int64_t now) {
  CURL *h = D->nspare ? D->spare[--D->nspare] : curl_easy_init();
  if (!h) {
    failed(D, v, "out of memory", now);
    return;
  }
  char url[512];
  snprintf(url, sizeof(url), "%s%s", bc->url, v->it.d.path);
  tls_opts(h, c, bc->timeout_ms);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, v->it.d.payload);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)v->it.d.len);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &v->resp);
  curl_easy_setopt(h, CURLOPT_PRIVATE, &v->x);
  v->hdrs = headers(v, bc, gw_sched_ud(v->it.bk));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, v->hdrs);
  v->h = h;
  v->iprev = NULL;
  v->inext = D->inflight;
  if (D->inflight)
    D->inflight->iprev = v;
  D->inflight = v;
  curl_multi_add_handle(D->multi, h);
}

static void https_completed(struct gw_dispatch *D, struct dlv *v, CURLcode cc, long status, int64_t now) {
  curl_slist_free_all(v->hdrs);
  v->h = NULL;
  v->hdrs = NULL;
  if (v->iprev)
    v->iprev->inext = v->inext;
  else
    D->inflight = v->inext;
  if (v->inext)
    v->inext->iprev = v->iprev;
  v->it.d.last_status = (int)status;
  if (cc == CURLE_OK && status >= 200 && status < 300) {
    outcome(D, v, O_DELIVERED, now);
  } else if (cc == CURLE_OK && status >= 400 && status < 500 && status != 401 && status != 408 && status != 429) {
    /* the backend refuses this message: resending it as is will not help */
    rejected(D, v, (const char *)v->resp.data, v->resp.len, now);
  } else {
    struct auth *a = gw_sched_ud(v->it.bk);
    if (status == 401 && a)
      a->token[0] = 0; /* fetch a new token before the next attempt */
    char why[256];
    if (cc != CURLE_OK)
      snprintf(why, sizeof(why), "%s", curl_easy_strerror(cc));
    else
      snprintf(why, sizeof(why), "HTTP %ld from the backend", status);
    v->resp.len = 0;
    failed(D, v, why, now);
  }
}

/* ---- OAuth2 client_credentials with a private_key_jwt assertion (P1) ---- */

/* The signing key of snapshot |c|: read again whenever the snapshot changes (SIGHUP). */
static struct gw_jwt_key *signing_key(struct gw_dispatch *D, const struct gw_dconf *c) {
  if (D->key && D->key_serial == c->serial)
    return D->key;
  struct gw_buf errs;
  gw_buf_init(&errs, 1024);
  struct gw_jwt_key *k = gw_jwt_key_private(c->key, &errs);
  if (k) {
    gw_jwt_key_free(D->key);
    D->key = k;
    D->key_serial = c->serial;
    gw_log(GW_LOG_INFO, "oauth_key_loaded", "key=%s snapshot=%lu", c->key, c->serial);
  } else {
    char q[300];
    gw_log(GW_LOG_ERROR, "oauth_key_failed", "key=%s reason=%s", c->key,
           gw_log_quote(q, sizeof(q), errs.data ? (const char *)errs.data : "?"));
  }
  gw_buf_cleanup(&errs);
  return k ? k : (D->key_serial == c->serial ? D->key : NULL);
}

static struct auth *auth_of(struct gw_dispatch *D, struct gw_sched_bk *b) {
  struct auth *a = gw_sched_ud(b);
  if (!a && (a = calloc(1, sizeof(*a)))) {
    a->x.kind = X_TOKEN;
    a->bk = b;
    gw_buf_init(&a->body, RESP_MAX);
    a->next = D->auths;
    D->auths = a;
    gw_sched_set_ud(b, a);
  }
  return a;
}

static int token_request(struct gw_dispatch *D, struct auth *a, const struct gw_backend_conf *bc,
                         const struct gw_dconf *c) {
  struct gw_jwt_key *k = signing_key(D, c);
  unsigned char rnd[16];
  char jti[33], claims[1024], assertion[4096];
  if (!k || gw_random_bytes(rnd, sizeof(rnd)))
    return GW_ERR_TLS;
  for (int i = 0; i < 16; i++)
    snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
  long now = (long)time(NULL);
  snprintf(claims, sizeof(claims),
           "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":\"%s\",\"jti\":\"%s\",\"iat\":%ld,\"exp\":%ld}", bc->client_id,
           bc->client_id, bc->token_url, jti, now, now + 120);
  if (gw_jwt_sign(k, claims, assertion, sizeof(assertion)))
    return GW_ERR_TLS;
  size_t n = strlen(assertion) + 200;
  if (!(a->form = malloc(n)) || !(a->h = curl_easy_init())) {
    free(a->form);
    a->form = NULL;
    return GW_ERR_NOMEM;
  }
  snprintf(a->form, n,
           "grant_type=client_credentials&client_assertion_type="
           "urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type%%3Ajwt-bearer&client_assertion=%s&scope=cer",
           assertion);
  a->body.len = 0;
  tls_opts(a->h, c, bc->timeout_ms);
  curl_easy_setopt(a->h, CURLOPT_URL, bc->token_url);
  curl_easy_setopt(a->h, CURLOPT_POSTFIELDS, a->form);
  curl_easy_setopt(a->h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(a->h, CURLOPT_WRITEDATA, &a->body);
  curl_easy_setopt(a->h, CURLOPT_PRIVATE, &a->x);
  curl_multi_add_handle(D->multi, a->h);
  return GW_OK;
}

/* Whether |b| has a valid token; when not, asks for one (once at a time) and says false. */
static bool have_token(struct gw_dispatch *D, struct gw_sched_bk *b, const struct gw_backend_conf *bc,
                       const struct gw_dconf *c, int64_t now) {
  struct auth *a = auth_of(D, b);
  if (!a)
    return false;
  if (a->token[0] && now < a->token_exp_ms)
    return true;
  if (a->h)
    return false; /* asked already: the answer arrives through the multi handle */
  if (token_request(D, a, bc, c)) {
    gw_log(GW_LOG_ERROR, "oauth_failed", "backend=%s reason=\"cannot sign the assertion with %s\"", gw_sched_name(b),
           c->key);
    gw_sched_precondition_failed(b, now);
  }
  return false;
}

/* The token endpoint answered (or not): a token, or backoff 1 s, 2 s, ... 60 s for this backend only. */
static void token_completed(struct auth *a, CURLcode cc, long status, int64_t now) {
  free(a->form);
  a->form = NULL;
  a->h = NULL;
  int ok = 0;
  long ttl = 60;
  if (cc == CURLE_OK && status == 200 && a->body.len && !gw_buf_append(&a->body, "", 1)) {
    char eb[128];
    yajl_val root = yajl_tree_parse((const char *)a->body.data, eb, sizeof(eb));
    const char *tp[] = {"access_token", NULL}, *ep[] = {"expires_in", NULL};
    yajl_val t = root ? yajl_tree_get(root, tp, yajl_t_string) : NULL;
    yajl_val e = root ? yajl_tree_get(root, ep, yajl_t_number) : NULL;
    const char *tok = t ? YAJL_GET_STRING(t) : NULL;
    if (tok && strlen(tok) < sizeof(a->token)) {
      snprintf(a->token, sizeof(a->token), "%s", tok);
      ttl = e && YAJL_IS_INTEGER(e) ? (long)YAJL_GET_INTEGER(e) : 60;
      a->token_exp_ms = now + (ttl > 60 ? ttl - 30 : ttl / 2) * 1000; /* renew a little before it runs out */
      ok = 1;
    }
    yajl_tree_free(root);
  }
  a->body.len = 0;
  if (ok) {
    gw_sched_precondition_ok(a->bk);
    gw_log(GW_LOG_INFO, "oauth_token", "backend=%s expires_in=%ld", gw_sched_name(a->bk), ttl);
    return;
  }
  gw_sched_precondition_failed(a->bk, now);
  gw_log(GW_LOG_WARN, "oauth_failed", "backend=%s status=%ld curl=\"%s\"", gw_sched_name(a->bk), status,
         curl_easy_strerror(cc));
}

/* ---- MLLP ---- */

/* An SIU to a clinic's MLLP endpoint (mllp://HOST:PORT): over TLS with the gateway's
 * client certificate, one frame out, one ACK back. */
static void mllp_start(struct gw_dispatch *D, struct dlv *v, const struct gw_backend_conf *bc, const struct gw_dconf *c,
                       int64_t now) {
  char host[256], port[16];
  if (!D->mtls || D->mtls_serial != c->serial) { /* first use, or a reload (SIGHUP): read the files again */
    struct gw_buf errs;
    gw_buf_init(&errs, 4096);
    struct gw_tls *t = gw_tls_client_new(c->cert, c->key, c->ca, &errs);
    if (t) {
      gw_tls_free(D->mtls);
      D->mtls = t;
      D->mtls_serial = c->serial;
    } else {
      gw_log(GW_LOG_ERROR, "mllp_tls_failed", "backend=%s reason=\"%s\"", v->it.d.backend,
             errs.data ? (char *)errs.data : "?");
    }
    gw_buf_cleanup(&errs);
  }
  if (gw_mllp_url(bc->url, host, sizeof(host), port, sizeof(port)) || !D->mtls ||
      !(v->mc = gw_mllp_call_new(D->mtls, host, port, v->it.d.payload, v->it.d.len, now + (int64_t)bc->timeout_ms))) {
    failed(D, v, D->mtls ? "cannot start the MLLP exchange" : "no client TLS context (see the log)", now);
    return;
  }
  v->mnext = D->mllp;
  D->mllp = v;
}

/* The ACK code of an MLLP answer for |v|: "AA".."CR", "?" for an ACK of another
 * message (MSA-2 is not this message's MSH-10, the delivery key), "" for no ACK. */
static void ack_code(const struct dlv *v, xmlDocPtr *ack, char *code, size_t n) {
  size_t len;
  const char *a = gw_mllp_call_answer(v->mc, &len);
  struct gw_diag d;
  gw_diag_init(&d, 4);
  char *c1 = gw_hl7_parse(a, len, NULL, ack, &d) == GW_OK ? gw_hl7_get(*ack, "MSA", 1, 0) : NULL;
  char *c2 = c1 ? gw_hl7_get(*ack, "MSA", 2, 0) : NULL;
  snprintf(code, n, "%s", (c1 && (!c2 || strcmp(c2, v->it.d.ikey) != 0)) ? "?" : c1 ? c1 : "");
  free(c1);
  free(c2);
  gw_diag_cleanup(&d);
}

/* An MLLP exchange ended: ACK AA/CA delivered; AE/AR/CE/CR rejected (the clinic refused
 * this message: resending it as is will not help); no ACK at all: another attempt. */
static void mllp_completed(struct gw_dispatch *D, struct dlv *v, enum gw_mllp_call_state st, int64_t now) {
  char code[8] = "";
  xmlDocPtr ack = NULL;
  if (st == GW_MLLP_CALL_DONE)
    ack_code(v, &ack, code, sizeof(code));
  v->it.d.last_status = 0;
  if (!strcmp(code, "AA") || !strcmp(code, "CA")) {
    outcome(D, v, O_DELIVERED, now);
  } else if (code[0] == 'A' || code[0] == 'C') {
    char *text = gw_hl7_get(ack, "MSA", 3, 0), *err = gw_hl7_get(ack, "ERR", 8, 0);
    char why[300];
    snprintf(why, sizeof(why), "ACK %s: %s%s%s", code, text ? text : "", err ? " " : "", err ? err : "");
    free(text);
    free(err);
    rejected(D, v, why, strlen(why), now);
  } else {
    failed(D, v,
           st == GW_MLLP_CALL_FAILED ? gw_mllp_call_error(v->mc)
           : code[0] == '?'          ? "an ACK for another message (MSA-2 is not this message's MSH-10)"
                                     : "the answer is not an HL7 ACK",
           now);
  }
  xmlFreeDoc(ack);
}

/* Steps every MLLP exchange; fills |fds| (at most |cap|) with the sockets to wait on. */
static int mllp_pump(struct gw_dispatch *D, int64_t now, struct curl_waitfd *fds, int cap) {
  int n = 0;
  for (struct dlv **pp = &D->mllp; *pp;) {
    struct dlv *v = *pp;
    enum gw_mllp_call_state st = gw_mllp_call_step(v->mc, now);
    if (st == GW_MLLP_CALL_PENDING) {
      short ev;
      int fd = gw_mllp_call_fd(v->mc, &ev);
      if (fd >= 0 && n < cap)
        fds[n++] = (struct curl_waitfd){.fd = fd, .events = ev, .revents = 0};
      pp = &v->mnext;
      continue;
    }
    *pp = v->mnext; /* out of the list, then its outcome (which may free it) */
    struct gw_mllp_call *mc = v->mc;
    mllp_completed(D, v, st, now);
    gw_mllp_call_free(mc);
  }
  return n;
}

/* ---- the loop ---- */

static void start(struct gw_dispatch *D, struct dlv *v, const struct gw_backend_conf *bc, const struct gw_dconf *c,
                  int64_t now) {
  const struct gw_backend_kind *k = gw_backend_kind(bc->kind);
  if (k && k->transport == GW_TRANSPORT_MLLP_OR_HTTPS && !strncmp(bc->url, "mllp://", 7))
    mllp_start(D, v, bc, c, now);
  else
    https_start(D, v, bc, c, now);
}

/* Starts what the scheduler lets go now, backend by backend. */
/* Whether an operator marked delivery |id| dead (consumed: it is answered once). */
static bool killed(struct gw_dispatch *D, int64_t id) {
  bool hit = false;
  pthread_mutex_lock(&D->kmu);
  for (int i = 0; i < D->nkill && !hit; i++)
    if (D->kill[i] == id) {
      D->kill[i] = D->kill[--D->nkill];
      hit = true;
    }
  pthread_mutex_unlock(&D->kmu);
  return hit;
}

void gw_dispatch_kill(int64_t id) {
  struct gw_dispatch *D = atomic_load(&the);
  if (!D)
    return;
  pthread_mutex_lock(&D->kmu);
  if (D->nkill == (int)(sizeof(D->kill) / sizeof(D->kill[0])))
    memmove(D->kill, D->kill + 1, sizeof(D->kill) - sizeof(D->kill[0])); /* the oldest forgotten */
  else
    D->nkill++;
  D->kill[D->nkill - 1] = id;
  pthread_mutex_unlock(&D->kmu);
}

/* An operator marked it dead: no attempt; it leaves its queue (its chain moves on) as a dead letter. */
static void operator_dead(struct gw_dispatch *D, struct dlv *v, int64_t now) {
  gw_sched_rejected(D->S, &v->it, now);
  v->it.d.state = GW_DS_DEAD;
  snprintf(v->it.d.last_error, sizeof(v->it.d.last_error), "%s", "marked dead by an operator (console)");
  gw_log(GW_LOG_WARN, "delivery_dead",
         "delivery=%lld msg=%lld backend=%s attempts=%d last=\"marked dead by an operator\"", (long long)v->it.d.id,
         (long long)v->it.d.msg_id, v->it.d.backend, v->it.d.attempts);
  gw_store_update(D->st, &v->it.d);
  first_outcome(D, v);
  free_dlv(v);
}

static void pump(struct gw_dispatch *D, const struct gw_dconf *c, int64_t now) {
  gw_sched_tick(D->S, now);
  int n = gw_sched_nbackends(D->S);
  for (int i = 0; i < n; i++) {
    struct gw_sched_bk *b = gw_sched_backend_at(D->S, i);
    if (!gw_sched_busy(b))
      continue;
    refresh(b, c); /* the policy of this snapshot */
    if (!gw_sched_may_send(b, now))
      continue;
    const struct gw_backend_conf *bc = gw_dconf_backend(c, gw_sched_name(b));
    if (!bc || (bc->token_url[0] && !have_token(D, b, bc, c, now)))
      continue;
    struct gw_sched_item *it;
    while ((it = gw_sched_next(D->S, b, now))) {
      if (D->nkill && killed(D, DLV(it)->it.d.id))
        operator_dead(D, DLV(it), now);
      else
        start(D, DLV(it), bc, c, now);
    }
  }
}

static void completed(struct gw_dispatch *D, CURL *h, CURLcode cc, int64_t now) {
  struct xfer *x = NULL;
  curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&x);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(D->multi, h);
  if (x->kind != X_TOKEN && D->nspare < (int)(sizeof(D->spare) / sizeof(D->spare[0]))) {
    curl_easy_reset(h);
    D->spare[D->nspare++] = h;
  } else {
    curl_easy_cleanup(h);
  }
  if (x->kind == X_TOKEN)
    token_completed((struct auth *)(void *)((char *)x - offsetof(struct auth, x)), cc, status, now);
  else
    https_completed(D, (struct dlv *)(void *)((char *)x - offsetof(struct dlv, x)), cc, status, now);
}

static void expire_jobs(struct gw_dispatch *D, int64_t now) {
  struct job *j = D->jobs, *next;
  for (; j; j = next) {
    next = j->next;
    if (j->deadline_ms <= now)
      job_finish(D, j);
  }
}

static void load_one(void *ud, struct gw_delivery *d) {
  struct gw_dispatch *D = ud;
  struct gw_sched_bk *b = queue(D, d->backend, D->conf);
  if (d->state == GW_DS_RETRY_REQ && b && gw_sched_spilled(b)) {
    gw_delivery_free(d); /* taken up once the backlog is back in memory (it stays retry-requested) */
    return;
  }
  if (d->state == GW_DS_RETRY_REQ) {
    d->state = GW_DS_QUEUED;
    d->attempts = 0;
    d->next_ms = 0;
    gw_store_update(D->st, d);
  }
  struct dlv *v = (b && !gw_sched_spill(b, d->id)) ? dlv_new(d) : NULL;
  if (v)
    gw_sched_add(D->S, b, &v->it, gw_wall_ms());
  gw_delivery_free(d); /* not taken: it waits in the store (spilled, or after a restart) */
}

static void refill_one(void *ud, struct gw_delivery *d) {
  struct gw_dispatch *D = ud;
  struct gw_sched_bk *b = queue(D, d->backend, D->conf);
  gw_sched_refilled_one(b, d->id);
  struct dlv *v = dlv_new(d);
  if (v)
    gw_sched_add(D->S, b, &v->it, gw_wall_ms());
  gw_delivery_free(d);
}

/* Brings spilled deliveries back, oldest first, when half the room is free. */
static void refill(struct gw_dispatch *D) {
  int n = gw_sched_nbackends(D->S);
  for (int i = 0; i < n; i++) {
    struct gw_sched_bk *b = gw_sched_backend_at(D->S, i);
    int64_t from, to;
    int room;
    if (!gw_sched_refill(b, &from, &to, &room))
      continue;
    int got = gw_store_load_range(D->st, gw_sched_name(b), from, to, room, refill_one, D);
    gw_sched_refill_done(b, got, room);
  }
}

/* Takes the submits committed since the last turn, in commit order. */
static bool take_inbox(struct gw_dispatch *D, const struct gw_dconf *c, int64_t now) {
  pthread_mutex_lock(&D->mu);
  struct gw_submit *in = D->inbox;
  D->inbox = NULL;
  bool stop = D->stop;
  pthread_mutex_unlock(&D->mu);
  struct gw_submit *rev = NULL; /* the inbox is newest first */
  while (in) {
    struct gw_submit *n = in->next;
    in->next = rev;
    rev = in;
    in = n;
  }
  while (rev) {
    struct gw_submit *n = rev->next;
    take_submit(D, rev, c, now);
    rev = n;
  }
  return stop;
}

static void turn(struct gw_dispatch *D, const struct gw_dconf *c, int64_t now) {
  if (now - D->last_poll_ms >= 1000) { /* operators' retry requests (cergw outbox retry) */
    D->last_poll_ms = now;
    gw_store_load(D->st, GW_DS_RETRY_REQ, load_one, D);
    gw_store_claim(D->st, load_one, D); /* a cluster: a dead instance's deliveries, held ones whose turn came */
  }
  refill(D);
  if (c)
    pump(D, c, now);
  int running = 0;
  curl_multi_perform(D->multi, &running);
  CURLMsg *m;
  int left;
  now = gw_wall_ms();
  while ((m = curl_multi_info_read(D->multi, &left)))
    if (m->msg == CURLMSG_DONE)
      completed(D, m->easy_handle, m->data.result, now);
  struct curl_waitfd fds[MAX_MLLP_POLL];
  int nfds = mllp_pump(D, now, fds, MAX_MLLP_POLL);
  expire_jobs(D, now);
  curl_multi_poll(D->multi, fds, (unsigned)nfds, TICK_MS, NULL);
}

static void *dispatch_main(void *arg) {
  struct gw_dispatch *D = arg;
  pthread_setname_np(pthread_self(), "cergw-dispatch");
  gw_log_buffer_thread(1);
  for (;;) {
    struct gw_dconf *c = gw_dconf_get(); /* one snapshot per turn */
    D->conf = c;
    int64_t now = gw_wall_ms();
    bool stop = take_inbox(D, c, now);
    if (!stop)
      turn(D, c, now);
    D->conf = NULL;
    gw_dconf_put(c);
    gw_log_flush();
    if (stop)
      break;
  }
  /* stopping: answer whoever still waits (their messages are safe in the store) */
  while (D->jobs)
    job_finish(D, D->jobs);
  gw_log_buffer_thread(0);
  return NULL;
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int gw_dispatch_start(struct gw_store *st, struct gw_dispatch **out) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, curl_init_once);
  struct gw_dispatch *D = calloc(1, sizeof(*D));
  if (!D)
    return GW_ERR_NOMEM;
  D->st = st;
  pthread_mutex_init(&D->mu, NULL);
  pthread_mutex_init(&D->kmu, NULL);
  D->multi = curl_multi_init();
  D->S = gw_sched_new(jitter, NULL);
  if (!D->multi || !D->S) {
    curl_multi_cleanup(D->multi);
    gw_sched_free(D->S, free_item);
    free(D);
    return GW_ERR_NOMEM;
  }
  curl_multi_setopt(D->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(D->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
  struct gw_dconf *c = gw_dconf_get();
  D->conf = c;
  int n = gw_store_load(st, GW_DS_QUEUED, load_one, D);
  if (n > 0)
    gw_log(GW_LOG_INFO, "outbox_recovered", "deliveries=%d", n);
  gw_store_load(st, GW_DS_RETRY_REQ, load_one, D);
  D->conf = NULL;
  gw_dconf_put(c);
  if (pthread_create(&D->th, NULL, dispatch_main, D)) {
    curl_multi_cleanup(D->multi);
    gw_sched_free(D->S, free_item);
    free(D);
    return GW_ERR_IO;
  }
  atomic_store(&the, D);
  *out = D;
  return GW_OK;
}

void gw_dispatch_stop(struct gw_dispatch *D) {
  if (!D)
    return;
  pthread_mutex_lock(&D->mu);
  D->stop = true;
  pthread_mutex_unlock(&D->mu);
  curl_multi_wakeup(D->multi);
  pthread_join(D->th, NULL);
  atomic_store(&the, NULL);
  /* in-flight and queued deliveries stay queued in the store; the scheduler first (a chain's head may
   * be in flight), then what is in flight */
  gw_sched_free(D->S, free_item);
  for (struct dlv *v = D->inflight, *nx; v; v = nx) {
    nx = v->inext;
    curl_multi_remove_handle(D->multi, v->h);
    curl_easy_cleanup(v->h);
    curl_slist_free_all(v->hdrs);
    free_dlv(v);
  }
  for (struct dlv *v = D->mllp, *nx; v; v = nx) {
    nx = v->mnext;
    gw_mllp_call_free(v->mc);
    free_dlv(v);
  }
  for (struct auth *a = D->auths, *nx; a; a = nx) {
    nx = a->next;
    if (a->h) {
      curl_multi_remove_handle(D->multi, a->h);
      curl_easy_cleanup(a->h);
    }
    free(a->form);
    gw_buf_cleanup(&a->body);
    free(a);
  }
  while (D->nspare)
    curl_easy_cleanup(D->spare[--D->nspare]);
  gw_tls_free(D->mtls);
  gw_jwt_key_free(D->key);
  curl_multi_cleanup(D->multi);
  pthread_mutex_destroy(&D->mu);
  pthread_mutex_destroy(&D->kmu);
  free(D);
}

int gw_dispatch_health(struct gw_backend_health *out, int max) {
  struct gw_dispatch *D = atomic_load(&the);
  if (!D)
    return 0;
  int n = gw_sched_nbackends(D->S), k = 0;
  for (int i = 0; i < n && k < max; i++) {
    struct gw_sched_bk *b = gw_sched_backend_at(D->S, i);
    struct gw_sched_counters *c = gw_sched_counters(b);
    struct gw_backend_health *h = &out[k++];
    snprintf(h->name, sizeof(h->name), "%s", gw_sched_name(b));
    h->queued = atomic_load(&c->queued);
    h->in_flight = atomic_load(&c->in_flight);
    h->delivered = atomic_load(&c->delivered);
    h->failed = atomic_load(&c->failed);
    h->rejected = atomic_load(&c->rejected);
    h->dead = atomic_load(&c->dead);
    h->breaker_open = atomic_load(&c->breaker_open);
    long long cnt = atomic_load(&c->lat_count);
    h->mean_ms = cnt ? (double)atomic_load(&c->lat_us_sum) / (double)cnt / 1000.0 : 0;
  }
  return k;
}

void gw_dispatch_metrics(struct gw_buf *o) {
  struct gw_dispatch *D = atomic_load(&the);
  if (!D)
    return;
  int n = gw_sched_nbackends(D->S);
  static const char *const names[] = {"queued",         "in_flight",  "delivered_total", "failed_attempts_total",
                                      "rejected_total", "dead_total", "breaker_open"};
  for (int k = 0; k < 7; k++) {
    gw_buf_printf(o, "# TYPE cergw_backend_%s %s\n", names[k], strstr(names[k], "_total") ? "counter" : "gauge");
    for (int i = 0; i < n; i++) {
      struct gw_sched_bk *b = gw_sched_backend_at(D->S, i);
      struct gw_sched_counters *c = gw_sched_counters(b);
      _Atomic int64_t *vals[] = {&c->queued,   &c->in_flight, &c->delivered,   &c->failed,
                                 &c->rejected, &c->dead,      &c->breaker_open};
      gw_buf_printf(o, "cergw_backend_%s{backend=\"%s\"} %lld\n", names[k], gw_sched_name(b),
                    (long long)atomic_load(vals[k]));
    }
  }
  gw_buf_printf(o, "# TYPE cergw_backend_delivery_seconds summary\n");
  for (int i = 0; i < n; i++) {
    struct gw_sched_bk *b = gw_sched_backend_at(D->S, i);
    struct gw_sched_counters *c = gw_sched_counters(b);
    gw_buf_printf(o, "cergw_backend_delivery_seconds_sum{backend=\"%s\"} %.6f\n", gw_sched_name(b),
                  (double)atomic_load(&c->lat_us_sum) / 1e6);
    gw_buf_printf(o, "cergw_backend_delivery_seconds_count{backend=\"%s\"} %lld\n", gw_sched_name(b),
                  (long long)atomic_load(&c->lat_count));
  }
}
