/* Delivery as a scheduler without I/O: which delivery goes out next, and
 * what happens after each outcome. Per backend: a ready queue, a list of
 * deliveries waiting for their retry time, an in-flight limit, a circuit
 * breaker and a hold (e.g. while the backend's token endpoint fails);
 * deliveries of one backend that share an ordering key form a chain and go
 * out one after another; past a backend's memory_queue deliveries stay in the
 * store only ("spilled") and come back in id order as room appears; attempts
 * exhausted make a dead letter. Driven only by calls with the current time
 * and a random source, so it is tested with simulated time (no sleeps, no
 * sockets); the dispatcher (dispatch.c) does the I/O around it. One thread
 * drives it; the counters are atomics that a metrics scrape may read from
 * any thread. */
#ifndef GW_DELIVER_SCHED_H
#define GW_DELIVER_SCHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* Queues per scheduler (backends plus clinics' notification endpoints,
 * created on first use). A delivery for a queue past this stays in the
 * store, with a log line; the delivery configuration refuses more clinics
 * than GW_MAX_CLINICS (deliver.h) so that a valid configuration never gets
 * there. */
#define GW_SCHED_MAX_QUEUES 65536

struct gw_sched;
struct gw_sched_bk;
struct gw_sched_chain;

/* A delivery as the scheduler holds it; the dispatcher embeds it first in
 * its own struct. */
struct gw_sched_item {
  struct gw_delivery d;
  struct gw_sched_bk *bk;
  struct gw_sched_chain *chain;
  struct gw_sched_item *cnext; /* next in its chain */
  struct gw_sched_item *qnext; /* ready queue or waiting list */
};

/* A backend's delivery policy, from the configuration snapshot in force. */
struct gw_sched_policy {
  bool enabled;
  uint32_t max_attempts, backoff_ms, max_backoff_ms, concurrency, breaker_failures, breaker_open_ms, memory_queue;
};

/* The policy of a backend whose configuration says nothing else (the
 * delivery configuration's defaults start from it). */
extern const struct gw_sched_policy gw_sched_default_policy;

/* Counters per backend (Prometheus: cergw_backend_*). */
struct gw_sched_counters {
  _Atomic int64_t queued, in_flight, delivered, failed, rejected, dead, lat_us_sum, lat_count, breaker_open;
};

/* |rnd| gives uniformly distributed 32-bit numbers (the backoff jitter). */
struct gw_sched *gw_sched_new(uint32_t (*rnd)(void *ud), void *rnd_ud);
/* Frees the scheduler; every item still queued, waiting or chained goes to
 * |free_item|. Items in flight are the caller's, and must still exist
 * during this call (a chain's head may be one): free them after it. */
void gw_sched_free(struct gw_sched *S, void (*free_item)(struct gw_sched_item *it));

/* The queue named |name|, created on first use with the default policy
 * (enabled, the defaults of the configuration format). NULL past
 * GW_SCHED_MAX_QUEUES or without memory. */
struct gw_sched_bk *gw_sched_backend(struct gw_sched *S, const char *name);
int gw_sched_nbackends(const struct gw_sched *S);
struct gw_sched_bk *gw_sched_backend_at(const struct gw_sched *S, int i);
const char *gw_sched_name(const struct gw_sched_bk *b);
struct gw_sched_counters *gw_sched_counters(struct gw_sched_bk *b);
/* The policy in force; |serial| tells the caller whether it must refresh it. */
void gw_sched_set_policy(struct gw_sched_bk *b, const struct gw_sched_policy *p, unsigned long serial);
unsigned long gw_sched_policy_serial(const struct gw_sched_bk *b);
/* The dispatcher's own per-queue data (transport state), or NULL. */
void *gw_sched_ud(const struct gw_sched_bk *b);
void gw_sched_set_ud(struct gw_sched_bk *b, void *ud);

/* Delivery |id| of |b| stays in the store only (memory for |b| is full, or
 * earlier ones already wait there): returns true, and it is counted as
 * queued; gw_sched_refill says when to load it back. */
bool gw_sched_spill(struct gw_sched_bk *b, int64_t id);
/* Whether deliveries of |b| wait in the store only (a backlog past memory_queue). */
bool gw_sched_spilled(const struct gw_sched_bk *b);
/* Takes |it| (it->d filled; it->bk set by this call): ready now, waiting
 * for it->d.next_ms, or behind earlier deliveries of its chain. */
void gw_sched_add(struct gw_sched *S, struct gw_sched_bk *b, struct gw_sched_item *it, int64_t now);

/* Moves deliveries whose retry time has come to the ready queues. */
void gw_sched_tick(struct gw_sched *S, int64_t now);
/* Whether |b| has anything queued in memory (ready or waiting). */
bool gw_sched_busy(const struct gw_sched_bk *b);
/* The next delivery of |b| to send now, or NULL (disabled, nothing ready,
 * in-flight limit reached, breaker open or held). The item is then in
 * flight: its attempt is counted; report its outcome with one of the three
 * calls below. */
struct gw_sched_item *gw_sched_next(struct gw_sched *S, struct gw_sched_bk *b, int64_t now);
/* Outcomes. After delivered/rejected, and after failed returns true (dead
 * letter), |it| has left the scheduler (its chain moved on): the caller
 * records its state and frees it. After failed returns false it waits for
 * it->d.next_ms (backoff with jitter) and stays the scheduler's. */
void gw_sched_delivered(struct gw_sched *S, struct gw_sched_item *it, int64_t now);
void gw_sched_rejected(struct gw_sched *S, struct gw_sched_item *it, int64_t now);
bool gw_sched_failed(struct gw_sched *S, struct gw_sched_item *it, int64_t now);

/* A precondition of sending to |b| failed (its token endpoint refused or
 * did not answer): no delivery of |b| starts for 1 s, 2 s, 4 s ... 60 s, and
 * it counts towards the breaker. Cleared by gw_sched_precondition_ok. */
void gw_sched_precondition_failed(struct gw_sched_bk *b, int64_t now);
void gw_sched_precondition_ok(struct gw_sched_bk *b);
/* Whether sending to |b| is possible now, ignoring whether anything is ready
 * (enabled, breaker closed or half-open, not held). */
bool gw_sched_may_send(const struct gw_sched_bk *b, int64_t now);
bool gw_sched_breaker_open(const struct gw_sched_bk *b, int64_t now);

/* Spilled deliveries to load back now: true with the id range and how many
 * fit (half of memory_queue is free). Each one loaded goes to gw_sched_add
 * after gw_sched_refilled_one; gw_sched_refill_done says how many came. */
bool gw_sched_refill(const struct gw_sched_bk *b, int64_t *from, int64_t *to, int *room);
void gw_sched_refilled_one(struct gw_sched_bk *b, int64_t id);
/* Returns true when the backlog is all back in memory. */
bool gw_sched_refill_done(struct gw_sched_bk *b, int got, int room);

#endif
