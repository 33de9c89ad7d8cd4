/* The dispatcher: one thread with a curl multi handle. Deliveries arrive
 * from the store right after their commit (and from the database at
 * start-up); each backend has a ready queue, a list waiting for their retry
 * time, an in-flight limit and a circuit breaker. Deliveries that share an
 * ordering key on one backend form a chain and go out one after another. */
#include <curl/curl.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
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
#include "mllp/client.h"
#include "mllp/mllp.h"
#include "msg/engine.h"
#include "tls/tls.h"

#define MAX_BK        GW_MAX_BK_CONF
#define CHAIN_BUCKETS 4096
#define RESP_MAX      (64 * 1024)
#define TICK_MS       20
#define MAX_MLLP_POLL 64 /* MLLP exchanges whose sockets wake the dispatcher; more are stepped each tick */

struct job;

struct dlv {
  struct gw_delivery d;
  struct job *job; /* waiting for this delivery's first outcome, or NULL */
  int res_idx;
  struct bkq *bk;
  struct chain *chain;
  struct dlv *cnext; /* next in its chain */
  struct dlv *qnext; /* ready queue or waiting list */
  CURL *h;
  struct dlv *iprev, *inext; /* in flight */
  struct curl_slist *hdrs;
  struct gw_buf resp;
  int64_t sent_ms;
  struct gw_mllp_call *mc; /* an MLLP exchange in flight (clinics with an mllp:// endpoint) */
  struct dlv *mnext;
};

struct job {
  struct gw_submit *s;
  int outstanding;
  int64_t deadline_ms;
  struct dlv *dl[GW_MAX_BACKENDS];
  struct job *prev, *next;
};

struct chain {
  char *key;
  struct dlv *head, *tail;
  struct chain *next;
};

struct bkq {
  char name[40];
  struct dlv *rhead, *rtail; /* ready */
  struct dlv *waiting;       /* eligible, next_ms in the future */
  int inflight;
  int consecutive_failures;
  int64_t open_until_ms;
  char token[2048];
  int64_t token_exp_ms;
  int64_t token_next_ms; /* after a failed token request: not before this */
  int token_failures;
  /* bounded memory: past memory_queue deliveries wait in the store only ("spilled"); the ones
   * skipped have ids in [cursor, spill_max] and are loaded back in id order as room appears */
  int64_t mem, cap; /* cap: the backend's memory_queue, refreshed from the configuration by pump() */
  bool spilled;
  int64_t cursor, spill_max;
  /* metrics */
  _Atomic int64_t queued, in_flight, delivered, failed, rejected, dead, lat_us_sum, lat_count, breaker_open;
};

struct gw_dispatch {
  struct gw_store *st;
  pthread_t th;
  pthread_mutex_t mu;
  struct gw_submit *inbox; /* accepted submits, under mu */
  bool stop;
  CURLM *multi;
  struct bkq bk[MAX_BK];
  _Atomic int nbk;
  struct chain *chains[CHAIN_BUCKETS];
  struct job *jobs;
  struct dlv *inflight;
  struct dlv *mllp;    /* MLLP exchanges in flight */
  struct gw_tls *mtls; /* the client TLS context for them, built from the snapshot mtls_serial */
  unsigned long mtls_serial;
  EVP_PKEY *key;
  char key_path[512];
  int64_t last_poll_ms;
};

static struct gw_dispatch *the; /* for metrics */

static struct bkq *bk_get(struct gw_dispatch *D, const char *name) {
  int n = atomic_load(&D->nbk);
  for (int i = 0; i < n; i++)
    if (strcmp(D->bk[i].name, name) == 0)
      return &D->bk[i];
  if (n >= MAX_BK)
    return &D->bk[MAX_BK - 1];
  struct bkq *b = &D->bk[n];
  snprintf(b->name, sizeof(b->name), "%s", name);
  struct gw_dconf *c = gw_dconf_get(); /* once per backend; pump() keeps it current */
  const struct gw_backend_conf *bc = c ? gw_dconf_backend(c, name) : NULL;
  b->cap = bc ? bc->memory_queue : 20000;
  gw_dconf_put(c);
  atomic_store(&D->nbk, n + 1);
  return b;
}

/* ---- chains: per-resource ordering ---- */

static unsigned hash(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static void make_ready(struct gw_dispatch *D, struct dlv *v, int64_t now) {
  (void)D;
  struct bkq *b = v->bk;
  v->qnext = NULL;
  if (v->d.next_ms > now) {
    v->qnext = b->waiting;
    b->waiting = v;
    return;
  }
  if (b->rtail)
    b->rtail->qnext = v;
  else
    b->rhead = v;
  b->rtail = v;
}

/* Adds |v| to its chain; returns true when it is the head (may go now). */
static bool chain_add(struct gw_dispatch *D, struct dlv *v) {
  if (!v->d.rkey[0])
    return true;
  char key[256];
  snprintf(key, sizeof(key), "%s\n%s", v->d.backend, v->d.rkey);
  unsigned h = hash(key) % CHAIN_BUCKETS;
  struct chain *c = D->chains[h];
  while (c && strcmp(c->key, key) != 0)
    c = c->next;
  if (!c) {
    c = calloc(1, sizeof(*c));
    if (!c || !(c->key = strdup(key))) {
      free(c);
      return true; /* without memory for a chain it simply goes unordered */
    }
    c->next = D->chains[h];
    D->chains[h] = c;
  }
  v->chain = c;
  if (c->tail) {
    c->tail->cnext = v;
    c->tail = v;
    return false;
  }
  c->head = c->tail = v;
  return true;
}

/* |v| is finished: the next of its chain may go. */
static void chain_done(struct gw_dispatch *D, struct dlv *v, int64_t now) {
  struct chain *c = v->chain;
  if (!c)
    return;
  c->head = v->cnext;
  if (c->head) {
    make_ready(D, c->head, now);
    return;
  }
  unsigned h = hash(c->key) % CHAIN_BUCKETS;
  for (struct chain **pp = &D->chains[h]; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  free(c->key);
  free(c);
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
  r->state = v->d.state;
  r->attempts = v->d.attempts;
  r->last_status = v->d.last_status;
  snprintf(r->error, sizeof(r->error), "%s", v->d.last_error);
  j->dl[v->res_idx] = NULL;
  v->job = NULL;
  if (--j->outstanding == 0)
    job_finish(D, j);
}

static struct dlv *dlv_new(struct gw_dispatch *D, struct gw_delivery *d) {
  struct dlv *v = calloc(1, sizeof(*v));
  if (!v)
    return NULL;
  v->d = *d;
  v->bk = bk_get(D, d->backend);
  gw_buf_init(&v->resp, RESP_MAX);
  return v;
}

static void add_delivery(struct gw_dispatch *D, struct dlv *v, int64_t now) {
  atomic_fetch_add(&v->bk->queued, 1);
  v->bk->mem++;
  if (chain_add(D, v))
    make_ready(D, v, now);
}

/* Leaves delivery |id| of |b| in the store only when memory for that backend is full
 * (or earlier ones already wait there). Returns true when it was left there. */
static bool spill(struct bkq *b, int64_t id) {
  if (!b->spilled && b->mem < b->cap)
    return false;
  if (!b->spilled) {
    b->spilled = true;
    b->cursor = id;
    gw_log(GW_LOG_WARN, "backlog_spilled", "backend=%s in_memory=%lld from_delivery=%lld", b->name, (long long)b->mem,
           (long long)id);
  }
  if (id > b->spill_max)
    b->spill_max = id;
  atomic_fetch_add(&b->queued, 1);
  return true;
}

static void take_submit(struct gw_dispatch *D, struct gw_submit *s, int64_t now) {
  struct job *j = calloc(1, sizeof(*j));
  if (!j) {
    s->done(s);
    return;
  }
  j->s = s;
  j->deadline_ms = s->deadline_ms;
  s->nres = s->nd;
  for (int i = 0; i < s->nd; i++) {
    struct gw_dresult *r = &s->res[i];
    memcpy(r->backend, s->d[i].backend, sizeof(r->backend));
    r->state = GW_DS_QUEUED;
    if (spill(bk_get(D, s->d[i].backend), s->d[i].id)) {
      snprintf(r->error, sizeof(r->error), "%s", "queued in the store behind a backlog");
      continue;
    }
    struct dlv *v = dlv_new(D, &s->d[i]);
    if (!v)
      continue;             /* stays queued in the store: delivered after a restart */
    s->d[i].payload = NULL; /* the dispatcher owns it now */
    v->job = j;
    v->res_idx = i;
    j->dl[i] = v;
    j->outstanding++;
    add_delivery(D, v, now);
  }
  j->next = D->jobs;
  if (D->jobs)
    D->jobs->prev = j;
  D->jobs = j;
  if (j->outstanding == 0) {
    job_finish(D, j);
    return;
  }
  /* a backend whose breaker is open will not be tried soon: say so now rather than at the deadline */
  struct dlv *open[GW_MAX_BACKENDS];
  int nopen = 0;
  for (int i = 0; i < GW_MAX_BACKENDS; i++)
    if (j->dl[i] && j->dl[i]->bk->open_until_ms > now)
      open[nopen++] = j->dl[i];
  for (int i = 0; i < nopen; i++) {
    snprintf(open[i]->d.last_error, sizeof(open[i]->d.last_error), "%s", "backend failing (circuit open)");
    first_outcome(D, open[i]); /* may finish the job: |j| is not used after this */
  }
}

void gw_dispatch_accepted(void *ud, struct gw_submit *s) {
  struct gw_dispatch *D = ud;
  pthread_mutex_lock(&D->mu);
  s->next = D->inbox;
  D->inbox = s;
  pthread_mutex_unlock(&D->mu);
  curl_multi_wakeup(D->multi);
}

/* ---- OAuth2 client_credentials with a private_key_jwt assertion (P1) ---- */

static void b64url(const unsigned char *in, size_t n, char *out, size_t cap) {
  unsigned char tmp[4096];
  if ((n + 2) / 3 * 4 + 1 > sizeof(tmp) || (n + 2) / 3 * 4 + 1 > cap) {
    out[0] = 0;
    return;
  }
  int len = EVP_EncodeBlock(tmp, in, (int)n);
  size_t o = 0;
  for (int i = 0; i < len && tmp[i] != '='; i++)
    out[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
  out[o] = 0;
}

static int make_assertion(struct gw_dispatch *D, const struct gw_backend_conf *bc, char *out, size_t cap) {
  if (!D->key) {
    FILE *f = fopen(D->key_path, "r");
    if (!f)
      return GW_ERR_IO;
    D->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!D->key)
      return GW_ERR_TLS;
  }
  unsigned char rnd[16];
  char jti[33];
  RAND_bytes(rnd, sizeof(rnd));
  for (int i = 0; i < 16; i++)
    snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
  long now = (long)time(NULL);
  char claims[1024], hb[64], cb[1500], input[1600];
  int cl = snprintf(claims, sizeof(claims),
                    "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":\"%s\",\"jti\":\"%s\",\"iat\":%ld,\"exp\":%ld}",
                    bc->client_id, bc->client_id, bc->token_url, jti, now, now + 120);
  static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
  b64url((const unsigned char *)header, sizeof(header) - 1, hb, sizeof(hb));
  b64url((const unsigned char *)claims, (size_t)cl, cb, sizeof(cb));
  int il = snprintf(input, sizeof(input), "%s.%s", hb, cb);
  unsigned char sig[1024];
  size_t sl = sizeof(sig);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, D->key) == 1 &&
           EVP_DigestSign(md, sig, &sl, (const unsigned char *)input, (size_t)il) == 1;
  EVP_MD_CTX_free(md);
  if (!ok)
    return GW_ERR_TLS;
  char sb[1500];
  b64url(sig, sl, sb, sizeof(sb));
  snprintf(out, cap, "%s.%s", input, sb);
  return GW_OK;
}

static size_t collect(char *p, size_t sz, size_t n, void *ud) {
  struct gw_buf *b = ud;
  if (gw_buf_append(b, p, sz * n))
    return 0;
  return sz * n;
}

static void tls_opts(struct gw_dispatch *D, CURL *h, const struct gw_dconf *c, uint32_t timeout_ms) {
  (void)D;
  curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
  curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
  curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 3000 ? timeout_ms : 3000));
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
}

/* Gets a token when the cached one is missing or about to expire. Blocking,
 * bounded by the backend's timeout; happens once per token lifetime. */
static int ensure_token(struct gw_dispatch *D, struct bkq *b, const struct gw_backend_conf *bc,
                        const struct gw_dconf *c, int64_t now) {
  if (!bc->token_url[0] || (b->token[0] && now < b->token_exp_ms))
    return GW_OK;
  snprintf(D->key_path, sizeof(D->key_path), "%s", c->key);
  char assertion[4096];
  if (make_assertion(D, bc, assertion, sizeof(assertion))) {
    gw_log(GW_LOG_ERROR, "oauth_failed", "backend=%s reason=\"cannot sign the assertion with %s\"", b->name, c->key);
    return GW_ERR_TLS;
  }
  CURL *h = curl_easy_init();
  if (!h)
    return GW_ERR_NOMEM;
  char form[4400];
  snprintf(form, sizeof(form),
           "grant_type=client_credentials&client_assertion_type="
           "urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type%%3Ajwt-bearer&client_assertion=%s&scope=cer",
           assertion);
  struct gw_buf body;
  gw_buf_init(&body, RESP_MAX);
  tls_opts(D, h, c, bc->timeout_ms);
  curl_easy_setopt(h, CURLOPT_URL, bc->token_url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  CURLcode cc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(h);
  int rv = GW_ERR_PROTO;
  if (cc == CURLE_OK && status == 200 && body.len) {
    char eb[128];
    yajl_val root = yajl_tree_parse((const char *)body.data, eb, sizeof(eb));
    const char *tp[] = {"access_token", NULL}, *ep[] = {"expires_in", NULL};
    yajl_val t = root ? yajl_tree_get(root, tp, yajl_t_string) : NULL;
    yajl_val e = root ? yajl_tree_get(root, ep, yajl_t_number) : NULL;
    const char *tok = t ? YAJL_GET_STRING(t) : NULL;
    if (tok && strlen(tok) < sizeof(b->token)) {
      snprintf(b->token, sizeof(b->token), "%s", tok);
      long ttl = e && YAJL_IS_INTEGER(e) ? (long)YAJL_GET_INTEGER(e) : 60;
      /* renew a little before it runs out */
      b->token_exp_ms = now + (ttl > 60 ? ttl - 30 : ttl / 2) * 1000;
      rv = GW_OK;
      b->token_failures = 0;
      gw_log(GW_LOG_INFO, "oauth_token", "backend=%s expires_in=%ld", b->name, ttl);
    }
    yajl_tree_free(root);
  }
  if (rv)
    gw_log(GW_LOG_WARN, "oauth_failed", "backend=%s status=%ld curl=\"%s\"", b->name, status, curl_easy_strerror(cc));
  gw_buf_cleanup(&body);
  return rv;
}

/* ---- sending ---- */

static void finish(struct gw_dispatch *D, struct dlv *v, int64_t now) {
  struct bkq *b = v->bk;
  atomic_fetch_sub(&b->queued, 1);
  b->mem--;
  if (v->d.state == GW_DS_DELIVERED)
    atomic_fetch_add(&b->delivered, 1);
  else if (v->d.state == GW_DS_REJECTED)
    atomic_fetch_add(&b->rejected, 1);
  else if (v->d.state == GW_DS_DEAD)
    atomic_fetch_add(&b->dead, 1);
  gw_store_update(D->st, &v->d);
  first_outcome(D, v);
  chain_done(D, v, now);
  gw_buf_cleanup(&v->resp);
  free(v->d.payload);
  free(v);
}

static void attempt_failed(struct gw_dispatch *D, struct dlv *v, const struct gw_backend_conf *bc, int64_t now) {
  struct bkq *b = v->bk;
  atomic_fetch_add(&b->failed, 1);
  uint32_t max_attempts = bc ? bc->max_attempts : 30, failures = bc ? bc->breaker_failures : 5;
  if (++b->consecutive_failures >= (int)failures && b->open_until_ms <= now) {
    b->open_until_ms = now + (bc ? bc->breaker_open_ms : 2000);
    atomic_store(&b->breaker_open, 1);
    gw_log(GW_LOG_WARN, "breaker_open", "backend=%s failures=%d open_ms=%u", b->name, b->consecutive_failures,
           bc ? bc->breaker_open_ms : 2000);
  }
  if ((uint32_t)v->d.attempts >= max_attempts) {
    v->d.state = GW_DS_DEAD;
    gw_log(GW_LOG_ERROR, "delivery_dead", "delivery=%lld msg=%lld backend=%s attempts=%d last=\"%s\"",
           (long long)v->d.id, (long long)v->d.msg_id, b->name, v->d.attempts, v->d.last_error);
    finish(D, v, now);
    return;
  }
  /* exponential backoff with jitter: a random point in the upper half of the window */
  uint64_t base = bc ? bc->backoff_ms : 200, cap = bc ? bc->max_backoff_ms : 60000;
  int shift = v->d.attempts - 1 < 20 ? v->d.attempts - 1 : 20;
  uint64_t delay = base << shift;
  if (delay > cap)
    delay = cap;
  unsigned r = 0;
  RAND_bytes((unsigned char *)&r, sizeof(r));
  delay = delay / 2 + (delay / 2 ? r % (delay / 2 + 1) : 0);
  v->d.next_ms = now + (int64_t)delay;
  v->d.state = GW_DS_QUEUED;
  gw_store_update(D->st, &v->d);
  first_outcome(D, v);
  make_ready(D, v, now);
}

static void delivered(struct gw_dispatch *D, struct dlv *v, int64_t now) {
  struct bkq *b = v->bk;
  b->consecutive_failures = 0;
  if (b->open_until_ms) {
    b->open_until_ms = 0;
    atomic_store(&b->breaker_open, 0);
    gw_log(GW_LOG_INFO, "breaker_closed", "backend=%s", b->name);
  }
  atomic_fetch_add(&b->lat_us_sum, (now - (int64_t)v->d.created_ms) * 1000);
  atomic_fetch_add(&b->lat_count, 1);
  v->d.state = GW_DS_DELIVERED;
  v->d.last_error[0] = 0;
  finish(D, v, now);
}

/* The backend refused this message for good; |why| (|n| bytes, its answer) is kept as the error. */
static void rejected(struct gw_dispatch *D, struct dlv *v, const char *why, size_t n, int64_t now) {
  struct bkq *b = v->bk;
  b->consecutive_failures = 0;
  v->d.state = GW_DS_REJECTED;
  if (n > sizeof(v->d.last_error) - 1)
    n = sizeof(v->d.last_error) - 1;
  for (size_t i = 0; i < n; i++) /* one line, printable */
    v->d.last_error[i] = ((unsigned char)why[i] < 0x20) ? ' ' : why[i];
  v->d.last_error[n] = 0;
  gw_log(GW_LOG_WARN, "delivery_rejected", "delivery=%lld msg=%lld backend=%s status=%d", (long long)v->d.id,
         (long long)v->d.msg_id, b->name, v->d.last_status);
  finish(D, v, now);
}

static void mark_sent(struct dlv *v, int64_t now) {
  v->sent_ms = now;
  v->d.attempts++;
  v->bk->inflight++;
  atomic_fetch_add(&v->bk->in_flight, 1);
}

static void mark_back(struct dlv *v) {
  v->bk->inflight--;
  atomic_fetch_sub(&v->bk->in_flight, 1);
}

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
      gw_log(GW_LOG_ERROR, "mllp_tls_failed", "backend=%s reason=\"%s\"", v->bk->name,
             errs.data ? (char *)errs.data : "?");
    }
    gw_buf_cleanup(&errs);
  }
  if (gw_mllp_url(bc->url, host, sizeof(host), port, sizeof(port)) || !D->mtls ||
      !(v->mc = gw_mllp_call_new(D->mtls, host, port, v->d.payload, v->d.len, now + (int64_t)bc->timeout_ms))) {
    v->d.attempts++;
    snprintf(v->d.last_error, sizeof(v->d.last_error), "%s",
             D->mtls ? "cannot start the MLLP exchange" : "no client TLS context (see the log)");
    attempt_failed(D, v, bc, now);
    return;
  }
  mark_sent(v, now);
  v->mnext = D->mllp;
  D->mllp = v;
}

/* An MLLP exchange ended: ACK AA/CA delivered; AE/AR/CE/CR rejected (the clinic refused
 * this message: resending it as is will not help); no ACK at all: another attempt. */
static void mllp_completed(struct gw_dispatch *D, struct dlv *v, enum gw_mllp_call_state st, int64_t now) {
  mark_back(v);
  struct gw_dconf *c = gw_dconf_get();
  const struct gw_backend_conf *bc = c ? gw_dconf_backend(c, v->d.backend) : NULL;
  char code[8] = "";
  xmlDocPtr ack = NULL;
  if (st == GW_MLLP_CALL_DONE) {
    size_t len;
    const char *a = gw_mllp_call_answer(v->mc, &len);
    struct gw_diag d;
    gw_diag_init(&d, 4);
    char *c1 = gw_hl7_parse(a, len, NULL, &ack, &d) == GW_OK ? gw_hl7_get(ack, "MSA", 1, 0) : NULL;
    char *c2 = c1 ? gw_hl7_get(ack, "MSA", 2, 0) : NULL;
    /* an ACK counts only for the message sent: MSA-2 must be its MSH-10 (the delivery key) */
    if (c1 && (!c2 || strcmp(c2, v->d.ikey) != 0))
      snprintf(code, sizeof(code), "?");
    else
      snprintf(code, sizeof(code), "%s", c1 ? c1 : "");
    free(c1);
    free(c2);
    gw_diag_cleanup(&d);
  }
  v->d.last_status = 0;
  if (!strcmp(code, "AA") || !strcmp(code, "CA")) {
    delivered(D, v, now);
  } else if (code[0] == 'A' || code[0] == 'C') {
    char *text = gw_hl7_get(ack, "MSA", 3, 0), *err = gw_hl7_get(ack, "ERR", 8, 0);
    char why[300];
    snprintf(why, sizeof(why), "ACK %s: %s%s%s", code, text ? text : "", err ? " " : "", err ? err : "");
    free(text);
    free(err);
    rejected(D, v, why, strlen(why), now);
  } else {
    snprintf(v->d.last_error, sizeof(v->d.last_error), "%s",
             st == GW_MLLP_CALL_FAILED ? gw_mllp_call_error(v->mc)
             : code[0] == '?'          ? "an ACK for another message (MSA-2 is not this message's MSH-10)"
                                       : "the answer is not an HL7 ACK");
    attempt_failed(D, v, bc, now);
  }
  xmlFreeDoc(ack);
  gw_dconf_put(c);
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

static void start(struct gw_dispatch *D, struct dlv *v, const struct gw_backend_conf *bc, const struct gw_dconf *c,
                  int64_t now) {
  struct bkq *b = v->bk;
  if (!strncmp(bc->url, "mllp://", 7)) {
    mllp_start(D, v, bc, c, now);
    return;
  }
  CURL *h = curl_easy_init();
  if (!h) {
    v->d.attempts++;
    snprintf(v->d.last_error, sizeof(v->d.last_error), "out of memory");
    attempt_failed(D, v, bc, now);
    return;
  }
  char url[512], hdr[2200];
  snprintf(url, sizeof(url), "%s%s", bc->url, v->d.path);
  tls_opts(D, h, c, bc->timeout_ms);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, v->d.payload);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)v->d.len);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &v->resp);
  curl_easy_setopt(h, CURLOPT_PRIVATE, v);
  snprintf(hdr, sizeof(hdr), "content-type: %s", v->d.ctype);
  v->hdrs = curl_slist_append(NULL, hdr);
  snprintf(hdr, sizeof(hdr), "idempotency-key: %s", v->d.ikey);
  v->hdrs = curl_slist_append(v->hdrs, hdr);
  v->hdrs = curl_slist_append(v->hdrs, "expect:");
  if (bc->kind == GW_OUT_P1 && b->token[0]) {
    snprintf(hdr, sizeof(hdr), "authorization: Bearer %s", b->token);
    v->hdrs = curl_slist_append(v->hdrs, hdr);
  }
  if (bc->kind == GW_OUT_CLINIC_SOAP)
    v->hdrs = curl_slist_append(v->hdrs, "soapaction: \"urn:cergw:clinic:v1/AppointmentNotification\"");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, v->hdrs);
  v->h = h;
  v->iprev = NULL;
  v->inext = D->inflight;
  if (D->inflight)
    D->inflight->iprev = v;
  D->inflight = v;
  mark_sent(v, now);
  curl_multi_add_handle(D->multi, h);
}

static void completed(struct gw_dispatch *D, CURL *h, CURLcode cc, int64_t now) {
  struct dlv *v = NULL;
  curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&v);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(D->multi, h);
  curl_easy_cleanup(h);
  curl_slist_free_all(v->hdrs);
  v->h = NULL;
  v->hdrs = NULL;
  if (v->iprev)
    v->iprev->inext = v->inext;
  else
    D->inflight = v->inext;
  if (v->inext)
    v->inext->iprev = v->iprev;
  struct bkq *b = v->bk;
  mark_back(v);
  struct gw_dconf *c = gw_dconf_get();
  const struct gw_backend_conf *bc = c ? gw_dconf_backend(c, v->d.backend) : NULL;
  v->d.last_status = (int)status;
  if (cc == CURLE_OK && status >= 200 && status < 300) {
    delivered(D, v, now);
  } else if (cc == CURLE_OK && status >= 400 && status < 500 && status != 401 && status != 408 && status != 429) {
    /* the backend refuses this message: resending it as is will not help */
    rejected(D, v, (const char *)v->resp.data, v->resp.len, now);
  } else {
    if (status == 401)
      b->token[0] = 0; /* fetch a new token before the next attempt */
    if (cc != CURLE_OK)
      snprintf(v->d.last_error, sizeof(v->d.last_error), "%s", curl_easy_strerror(cc));
    else
      snprintf(v->d.last_error, sizeof(v->d.last_error), "HTTP %ld from the backend", status);
    v->resp.len = 0;
    attempt_failed(D, v, bc, now);
  }
  gw_dconf_put(c);
}

static void pump(struct gw_dispatch *D, int64_t now) {
  struct gw_dconf *c = gw_dconf_get();
  if (!c)
    return;
  int n = atomic_load(&D->nbk);
  for (int i = 0; i < n; i++) {
    struct bkq *b = &D->bk[i];
    /* retries whose time has come */
    struct dlv **pp = &b->waiting;
    while (*pp) {
      struct dlv *v = *pp;
      if (v->d.next_ms <= now) {
        *pp = v->qnext;
        v->d.next_ms = 0;
        make_ready(D, v, now);
      } else {
        pp = &v->qnext;
      }
    }
    const struct gw_backend_conf *bc = gw_dconf_backend(c, b->name);
    if (bc)
      b->cap = bc->memory_queue;
    if (!bc || !bc->enabled || !b->rhead)
      continue; /* switched off or removed: deliveries wait in the store */
    int limit = (int)bc->concurrency;
    if (b->open_until_ms) {
      if (now < b->open_until_ms)
        continue;
      limit = 1; /* half open: one probe */
    }
    if (bc->kind == GW_OUT_P1 && now < b->token_next_ms)
      continue; /* the token endpoint failed lately: do not hold the other backends up asking again */
    if (b->inflight < limit && bc->kind == GW_OUT_P1 && ensure_token(D, b, bc, c, now)) {
      /* the request blocks this thread for up to timeout_ms: back off 1 s, 2 s, ... 60 s */
      int shift = b->token_failures < 6 ? b->token_failures : 6;
      b->token_failures++;
      b->token_next_ms = gw_wall_ms() + (1000LL << shift > 60000 ? 60000 : 1000LL << shift);
      b->consecutive_failures++;
      if (b->consecutive_failures >= (int)bc->breaker_failures) {
        b->open_until_ms = now + bc->breaker_open_ms;
        atomic_store(&b->breaker_open, 1);
      }
      continue;
    }
    while (b->inflight < limit && b->rhead) {
      struct dlv *v = b->rhead;
      b->rhead = v->qnext;
      if (!b->rhead)
        b->rtail = NULL;
      v->qnext = NULL;
      start(D, v, bc, c, now);
    }
  }
  gw_dconf_put(c);
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
  int64_t now = gw_wall_ms();
  struct bkq *b = bk_get(D, d->backend);
  if (d->state == GW_DS_RETRY_REQ) {
    if (b->spilled) { /* taken up once the backlog is back in memory */
      gw_delivery_free(d);
      return;
    }
    d->state = GW_DS_QUEUED;
    d->attempts = 0;
    d->next_ms = 0;
    gw_store_update(D->st, d);
  } else if (spill(b, d->id)) { /* start-up recovery of more than fits */
    gw_delivery_free(d);
    return;
  }
  struct dlv *v = dlv_new(D, d);
  if (v) {
    d->payload = NULL;
    add_delivery(D, v, now);
  }
  gw_delivery_free(d);
}

static void refill_one(void *ud, struct gw_delivery *d) {
  struct gw_dispatch *D = ud;
  struct bkq *b = bk_get(D, d->backend);
  b->cursor = d->id + 1;
  atomic_fetch_sub(&b->queued, 1); /* counted when it was spilled */
  struct dlv *v = dlv_new(D, d);
  if (v) {
    d->payload = NULL;
    add_delivery(D, v, gw_wall_ms());
  }
  gw_delivery_free(d);
}

/* Brings spilled deliveries back, oldest first, when half the room is free. */
static void refill(struct gw_dispatch *D) {
  int n = atomic_load(&D->nbk);
  for (int i = 0; i < n; i++) {
    struct bkq *b = &D->bk[i];
    if (!b->spilled || b->mem > b->cap / 2)
      continue;
    int room = (int)(b->cap - b->mem);
    int got = gw_store_load_range(D->st, b->name, b->cursor, b->spill_max, room, refill_one, D);
    if (got >= 0 && got < room) { /* everything up to spill_max is back */
      b->spilled = false;
      gw_log(GW_LOG_INFO, "backlog_back_in_memory", "backend=%s in_memory=%lld", b->name, (long long)b->mem);
    }
  }
}

static void *dispatch_main(void *arg) {
  struct gw_dispatch *D = arg;
  gw_log_buffer_thread(1);
  for (;;) {
    pthread_mutex_lock(&D->mu);
    struct gw_submit *in = D->inbox;
    D->inbox = NULL;
    bool stop = D->stop;
    pthread_mutex_unlock(&D->mu);
    int64_t now = gw_wall_ms();
    /* the inbox is newest first: reverse it to keep the commit order */
    struct gw_submit *rev = NULL;
    while (in) {
      struct gw_submit *n = in->next;
      in->next = rev;
      rev = in;
      in = n;
    }
    while (rev) {
      struct gw_submit *n = rev->next;
      take_submit(D, rev, now);
      rev = n;
    }
    if (stop)
      break;
    if (now - D->last_poll_ms >= 1000) { /* operators' retry requests (cergw outbox retry) */
      D->last_poll_ms = now;
      gw_store_load(D->st, GW_DS_RETRY_REQ, load_one, D);
    }
    refill(D);
    pump(D, now);
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
    gw_log_flush();
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
  D->multi = curl_multi_init();
  if (!D->multi) {
    free(D);
    return GW_ERR_NOMEM;
  }
  curl_multi_setopt(D->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(D->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
  int n = gw_store_load(st, GW_DS_QUEUED, load_one, D);
  if (n > 0)
    gw_log(GW_LOG_INFO, "outbox_recovered", "deliveries=%d", n);
  gw_store_load(st, GW_DS_RETRY_REQ, load_one, D);
  if (pthread_create(&D->th, NULL, dispatch_main, D)) {
    curl_multi_cleanup(D->multi);
    free(D);
    return GW_ERR_IO;
  }
  the = D;
  *out = D;
  return GW_OK;
}

static void free_dlv(struct dlv *v) {
  gw_buf_cleanup(&v->resp);
  free(v->d.payload);
  free(v);
}

void gw_dispatch_stop(struct gw_dispatch *D) {
  if (!D)
    return;
  pthread_mutex_lock(&D->mu);
  D->stop = true;
  pthread_mutex_unlock(&D->mu);
  curl_multi_wakeup(D->multi);
  pthread_join(D->th, NULL);
  the = NULL;
  /* in-flight and queued deliveries stay queued in the store */
  int n = atomic_load(&D->nbk);
  for (int i = 0; i < n; i++) {
    struct bkq *b = &D->bk[i];
    for (struct dlv *v = b->rhead, *nx; v; v = nx) {
      nx = v->qnext;
      free_dlv(v);
    }
    for (struct dlv *v = b->waiting, *nx; v; v = nx) {
      nx = v->qnext;
      free_dlv(v);
    }
  }
  for (int i = 0; i < CHAIN_BUCKETS; i++)
    for (struct chain *c = D->chains[i], *nx; c; c = nx) {
      nx = c->next;
      for (struct dlv *v = c->head ? c->head->cnext : NULL, *vn; v; v = vn) {
        vn = v->cnext; /* members behind the head are in no queue */
        free_dlv(v);
      }
      free(c->key);
      free(c);
    }
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
  gw_tls_free(D->mtls);
  curl_multi_cleanup(D->multi);
  EVP_PKEY_free(D->key);
  pthread_mutex_destroy(&D->mu);
  free(D);
}

void gw_dispatch_metrics(struct gw_buf *o) {
  struct gw_dispatch *D = the;
  if (!D)
    return;
  int n = atomic_load(&D->nbk);
  static const char *const names[] = {"queued",         "in_flight",  "delivered_total", "failed_attempts_total",
                                      "rejected_total", "dead_total", "breaker_open"};
  for (int k = 0; k < 7; k++) {
    gw_buf_printf(o, "# TYPE cergw_backend_%s %s\n", names[k], strstr(names[k], "_total") ? "counter" : "gauge");
    for (int i = 0; i < n; i++) {
      struct bkq *b = &D->bk[i];
      _Atomic int64_t *vals[] = {&b->queued,   &b->in_flight, &b->delivered,   &b->failed,
                                 &b->rejected, &b->dead,      &b->breaker_open};
      gw_buf_printf(o, "cergw_backend_%s{backend=\"%s\"} %lld\n", names[k], b->name, (long long)atomic_load(vals[k]));
    }
  }
  gw_buf_printf(o, "# TYPE cergw_backend_delivery_seconds summary\n");
  for (int i = 0; i < n; i++) {
    struct bkq *b = &D->bk[i];
    gw_buf_printf(o, "cergw_backend_delivery_seconds_sum{backend=\"%s\"} %.6f\n", b->name,
                  (double)atomic_load(&b->lat_us_sum) / 1e6);
    gw_buf_printf(o, "cergw_backend_delivery_seconds_count{backend=\"%s\"} %lld\n", b->name,
                  (long long)atomic_load(&b->lat_count));
  }
}
