/* The delivery scheduler: queues, chains, backoff, breaker, spill, dead
 * letters. No I/O, no clock of its own: see sched.h. */
#include "deliver/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

#define NAME_BUCKETS  4096
#define CHAIN_BUCKETS 4096

struct gw_sched_chain {
  char *key;
  struct gw_sched_item *head, *tail;
  struct gw_sched_chain *next;
};

struct gw_sched_bk {
  char name[40];
  struct gw_sched_policy pol;
  unsigned long pol_serial;
  struct gw_sched_item *rhead, *rtail; /* ready */
  struct gw_sched_item *waiting;       /* next_ms in the future */
  int inflight;
  int consecutive_failures;
  int64_t open_until_ms; /* breaker: open until then; then half open (one probe) */
  int64_t hold_until_ms; /* a precondition failed: nothing starts before then */
  int hold_failures;
  /* bounded memory: past memory_queue deliveries wait in the store only ("spilled"); the ones
   * skipped have ids in [cursor, spill_max] and are loaded back in id order as room appears */
  int64_t mem;
  bool spilled;
  int64_t cursor, spill_max;
  void *ud;
  struct gw_sched_counters c;
  struct gw_sched_bk *hnext; /* by name */
};

struct gw_sched {
  uint32_t (*rnd)(void *);
  void *rnd_ud;
  struct gw_sched_bk **bk; /* GW_SCHED_MAX_QUEUES slots, allocated once: a scrape may read while one is added */
  _Atomic int nbk;
  struct gw_sched_bk *names[NAME_BUCKETS];
  struct gw_sched_chain *chains[CHAIN_BUCKETS];
};

const struct gw_sched_policy gw_sched_default_policy = {.enabled = true,
                                                        .max_attempts = 30,
                                                        .backoff_ms = 200,
                                                        .max_backoff_ms = 60000,
                                                        .concurrency = 128,
                                                        .breaker_failures = 5,
                                                        .breaker_open_ms = 2000,
                                                        .memory_queue = 20000};

static unsigned hash(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

struct gw_sched *gw_sched_new(uint32_t (*rnd)(void *ud), void *rnd_ud) {
  struct gw_sched *S = gw_calloc(1, sizeof(*S));
  if (S && !(S->bk = gw_calloc(GW_SCHED_MAX_QUEUES, sizeof(*S->bk)))) {
    free(S);
    return NULL;
  }
  if (S) {
    S->rnd = rnd;
    S->rnd_ud = rnd_ud;
  }
  return S;
}

static void free_list(struct gw_sched_item *it, void (*free_item)(struct gw_sched_item *)) {
  while (it) {
    struct gw_sched_item *n = it->qnext;
    free_item(it);
    it = n;
  }
}

void gw_sched_free(struct gw_sched *S, void (*free_item)(struct gw_sched_item *it)) {
  if (!S)
    return;
  for (int i = 0; i < CHAIN_BUCKETS; i++) /* first the members behind each head: they are in no queue */
    for (struct gw_sched_chain *c = S->chains[i], *nx; c; c = nx) {
      nx = c->next;
      for (struct gw_sched_item *it = c->head ? c->head->cnext : NULL, *in; it; it = in) {
        in = it->cnext;
        free_item(it);
      }
      free(c->key);
      free(c);
    }
  int n = atomic_load(&S->nbk);
  for (int i = 0; i < n; i++) { /* then the queues (the heads among them) */
    free_list(S->bk[i]->rhead, free_item);
    free_list(S->bk[i]->waiting, free_item);
    free(S->bk[i]);
  }
  free(S->bk);
  free(S);
}

struct gw_sched_bk *gw_sched_backend(struct gw_sched *S, const char *name) {
  unsigned h = hash(name) % NAME_BUCKETS;
  for (struct gw_sched_bk *b = S->names[h]; b; b = b->hnext)
    if (strcmp(b->name, name) == 0)
      return b;
  int n = atomic_load(&S->nbk);
  struct gw_sched_bk *b = n < GW_SCHED_MAX_QUEUES ? gw_calloc(1, sizeof(*b)) : NULL;
  if (!b) {
    gw_log(GW_LOG_ERROR, "queue_refused", "backend=%s reason=\"%s\"", name,
           n < GW_SCHED_MAX_QUEUES ? "out of memory" : "more than GW_SCHED_MAX_QUEUES (65536) queues");
    return NULL;
  }
  snprintf(b->name, sizeof(b->name), "%s", name);
  b->pol = gw_sched_default_policy;
  b->hnext = S->names[h];
  S->names[h] = b;
  S->bk[n] = b;
  atomic_store(&S->nbk, n + 1);
  return b;
}

int gw_sched_nbackends(const struct gw_sched *S) { return atomic_load(&((struct gw_sched *)S)->nbk); }
struct gw_sched_bk *gw_sched_backend_at(const struct gw_sched *S, int i) {
  return S->bk[i];
}
const char *gw_sched_name(const struct gw_sched_bk *b) { return b->name; }
struct gw_sched_counters *gw_sched_counters(struct gw_sched_bk *b) {
  return &b->c;
}
unsigned long gw_sched_policy_serial(const struct gw_sched_bk *b) { return b->pol_serial; }
void *gw_sched_ud(const struct gw_sched_bk *b) { return b->ud; }
void gw_sched_set_ud(struct gw_sched_bk *b, void *ud) { b->ud = ud; }

void gw_sched_set_policy(struct gw_sched_bk *b, const struct gw_sched_policy *p, unsigned long serial) {
  b->pol = *p;
  if (!b->pol.max_attempts)
    b->pol.max_attempts = 1;
  if (!b->pol.concurrency)
    b->pol.concurrency = 1;
  if (!b->pol.memory_queue)
    b->pol.memory_queue = 1;
  b->pol_serial = serial;
}

/* ---- queues and chains ---- */

static void make_ready(struct gw_sched_item *it, int64_t now) {
  struct gw_sched_bk *b = it->bk;
  it->qnext = NULL;
  if (it->d.next_ms > now) {
    it->qnext = b->waiting;
    b->waiting = it;
    return;
  }
  if (b->rtail)
    b->rtail->qnext = it;
  else
    b->rhead = it;
  b->rtail = it;
}

/* Adds |it| to its chain; returns true when it is the head (may go now). */
static bool chain_add(struct gw_sched *S, struct gw_sched_item *it) {
  if (!it->d.rkey[0])
    return true;
  char key[256];
  snprintf(key, sizeof(key), "%s\n%s", it->bk->name, it->d.rkey);
  unsigned h = hash(key) % CHAIN_BUCKETS;
  struct gw_sched_chain *c = S->chains[h];
  while (c && strcmp(c->key, key) != 0)
    c = c->next;
  if (!c) {
    c = gw_calloc(1, sizeof(*c));
    if (!c || !(c->key = gw_strdup(key))) {
      free(c);
      return true; /* without memory for a chain it simply goes unordered */
    }
    c->next = S->chains[h];
    S->chains[h] = c;
  }
  it->chain = c;
  if (c->tail) {
    c->tail->cnext = it;
    c->tail = it;
    return false;
  }
  c->head = c->tail = it;
  return true;
}

/* |it| is finished: the next of its chain may go. */
static void chain_done(struct gw_sched *S, struct gw_sched_item *it, int64_t now) {
  struct gw_sched_chain *c = it->chain;
  if (!c)
    return;
  it->chain = NULL;
  c->head = it->cnext;
  if (c->head) {
    make_ready(c->head, now);
    return;
  }
  unsigned h = hash(c->key) % CHAIN_BUCKETS;
  for (struct gw_sched_chain **pp = &S->chains[h]; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  free(c->key);
  free(c);
}

bool gw_sched_spill(struct gw_sched_bk *b, int64_t id) {
  if (!b->spilled && b->mem < (int64_t)b->pol.memory_queue)
    return false;
  if (!b->spilled) {
    b->spilled = true;
    b->cursor = id;
    gw_log(GW_LOG_WARN, "backlog_spilled", "backend=%s in_memory=%lld from_delivery=%lld", b->name, (long long)b->mem,
           (long long)id);
  }
  if (id > b->spill_max)
    b->spill_max = id;
  atomic_fetch_add(&b->c.queued, 1);
  return true;
}

bool gw_sched_spilled(const struct gw_sched_bk *b) { return b->spilled; }

void gw_sched_add(struct gw_sched *S, struct gw_sched_bk *b, struct gw_sched_item *it, int64_t now) {
  it->bk = b;
  it->chain = NULL;
  it->cnext = it->qnext = NULL;
  atomic_fetch_add(&b->c.queued, 1);
  b->mem++;
  if (chain_add(S, it))
    make_ready(it, now);
}

void gw_sched_tick(struct gw_sched *S, int64_t now) {
  int n = atomic_load(&S->nbk);
  for (int i = 0; i < n; i++) {
    struct gw_sched_item **pp = &S->bk[i]->waiting;
    while (*pp) {
      struct gw_sched_item *it = *pp;
      if (it->d.next_ms <= now) {
        *pp = it->qnext;
        it->d.next_ms = 0;
        make_ready(it, now);
      } else {
        pp = &it->qnext;
      }
    }
  }
}

bool gw_sched_busy(const struct gw_sched_bk *b) { return b->rhead || b->waiting; }

bool gw_sched_breaker_open(const struct gw_sched_bk *b, int64_t now) { return b->open_until_ms > now; }

bool gw_sched_may_send(const struct gw_sched_bk *b, int64_t now) {
  return b->pol.enabled && now >= b->open_until_ms && now >= b->hold_until_ms;
}

struct gw_sched_item *gw_sched_next(struct gw_sched *S, struct gw_sched_bk *b, int64_t now) {
  (void)S;
  if (!b->rhead || !gw_sched_may_send(b, now))
    return NULL;
  int limit = b->open_until_ms ? 1 : (int)b->pol.concurrency; /* half open: one probe */
  if (b->inflight >= limit)
    return NULL;
  struct gw_sched_item *it = b->rhead;
  b->rhead = it->qnext;
  if (!b->rhead)
    b->rtail = NULL;
  it->qnext = NULL;
  it->d.attempts++;
  b->inflight++;
  atomic_fetch_add(&b->c.in_flight, 1);
  return it;
}

/* ---- outcomes ---- */

static void back(struct gw_sched_item *it) {
  it->bk->inflight--;
  atomic_fetch_sub(&it->bk->c.in_flight, 1);
}

static void finish(struct gw_sched *S, struct gw_sched_item *it, int64_t now) {
  struct gw_sched_bk *b = it->bk;
  atomic_fetch_sub(&b->c.queued, 1);
  b->mem--;
  if (it->d.state == GW_DS_DELIVERED)
    atomic_fetch_add(&b->c.delivered, 1);
  else if (it->d.state == GW_DS_REJECTED)
    atomic_fetch_add(&b->c.rejected, 1);
  else if (it->d.state == GW_DS_DEAD)
    atomic_fetch_add(&b->c.dead, 1);
  chain_done(S, it, now);
}

static void close_breaker(struct gw_sched_bk *b) {
  b->consecutive_failures = 0;
  if (b->open_until_ms) {
    b->open_until_ms = 0;
    atomic_store(&b->c.breaker_open, 0);
    gw_log(GW_LOG_INFO, "breaker_closed", "backend=%s", b->name);
  }
}

void gw_sched_delivered(struct gw_sched *S, struct gw_sched_item *it, int64_t now) {
  struct gw_sched_bk *b = it->bk;
  back(it);
  close_breaker(b);
  atomic_fetch_add(&b->c.lat_us_sum, (now - it->d.created_ms) * 1000);
  atomic_fetch_add(&b->c.lat_count, 1);
  it->d.state = GW_DS_DELIVERED;
  it->d.last_error[0] = 0;
  finish(S, it, now);
}

void gw_sched_rejected(struct gw_sched *S, struct gw_sched_item *it, int64_t now) {
  back(it);
  it->bk->consecutive_failures = 0; /* the backend answered: it is up */
  it->d.state = GW_DS_REJECTED;
  finish(S, it, now);
}

static void count_failure(struct gw_sched_bk *b, int64_t now) {
  if (++b->consecutive_failures >= (int)b->pol.breaker_failures && b->open_until_ms <= now) {
    b->open_until_ms = now + b->pol.breaker_open_ms;
    atomic_store(&b->c.breaker_open, 1);
    gw_log(GW_LOG_WARN, "breaker_open", "backend=%s failures=%d open_ms=%u", b->name, b->consecutive_failures,
           b->pol.breaker_open_ms);
  }
}

/* Exponential backoff with jitter: a random point in the upper half of the window. */
static int64_t backoff(struct gw_sched *S, const struct gw_sched_bk *b, int attempts) {
  int shift = attempts - 1 < 20 ? (attempts > 0 ? attempts - 1 : 0) : 20;
  uint64_t delay = (uint64_t)b->pol.backoff_ms << shift;
  if (delay > b->pol.max_backoff_ms)
    delay = b->pol.max_backoff_ms;
  uint32_t r = S->rnd ? S->rnd(S->rnd_ud) : 0;
  return (int64_t)(delay / 2 + (delay / 2 ? r % (delay / 2 + 1) : 0));
}

bool gw_sched_failed(struct gw_sched *S, struct gw_sched_item *it, int64_t now) {
  struct gw_sched_bk *b = it->bk;
  back(it);
  atomic_fetch_add(&b->c.failed, 1);
  count_failure(b, now);
  if ((uint32_t)it->d.attempts >= b->pol.max_attempts) {
    it->d.state = GW_DS_DEAD;
    char last[sizeof(it->d.last_error)], q[sizeof(last) + 16];
    snprintf(last, sizeof(last), "%s", it->d.last_error);
    gw_log_mask(last); /* what a backend said may echo the payload */
    gw_log(GW_LOG_ERROR, "delivery_dead", "delivery=%lld msg=%lld backend=%s attempts=%d last=%s", (long long)it->d.id,
           (long long)it->d.msg_id, b->name, it->d.attempts, gw_log_quote(q, sizeof(q), last));
    finish(S, it, now);
    return true;
  }
  it->d.next_ms = now + backoff(S, b, it->d.attempts);
  it->d.state = GW_DS_QUEUED;
  make_ready(it, now);
  return false;
}

void gw_sched_precondition_failed(struct gw_sched_bk *b, int64_t now) {
  int shift = b->hold_failures < 6 ? b->hold_failures : 6;
  b->hold_failures++;
  b->hold_until_ms = now + (1000LL << shift > 60000 ? 60000 : 1000LL << shift);
  count_failure(b, now);
}

void gw_sched_precondition_ok(struct gw_sched_bk *b) {
  b->hold_failures = 0;
  b->hold_until_ms = 0;
}

/* ---- the backlog kept in the store ---- */

bool gw_sched_refill(const struct gw_sched_bk *b, int64_t *from, int64_t *to, int *room) {
  if (!b->spilled || b->mem > (int64_t)b->pol.memory_queue / 2)
    return false;
  *from = b->cursor;
  *to = b->spill_max;
  *room = (int)((int64_t)b->pol.memory_queue - b->mem);
  return true;
}

void gw_sched_refilled_one(struct gw_sched_bk *b, int64_t id) {
  b->cursor = id + 1;
  atomic_fetch_sub(&b->c.queued, 1); /* counted when it was spilled; gw_sched_add counts it again */
}

bool gw_sched_refill_done(struct gw_sched_bk *b, int got, int room) {
  if (got < 0 || got >= room)
    return false;
  b->spilled = false; /* everything up to spill_max is back */
  gw_log(GW_LOG_INFO, "backlog_back_in_memory", "backend=%s in_memory=%lld", b->name, (long long)b->mem);
  return true;
}
