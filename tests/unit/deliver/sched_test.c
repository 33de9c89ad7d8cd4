/* The delivery scheduler with simulated time: no sockets, no sleeps. Time is
 * a number the test moves; the jitter comes from a scripted source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../suites.h"
#include "core/alloc.h"
#include "deliver/sched.h"

static uint32_t next_rand; /* what the scripted random source answers */
static uint32_t scripted(void *ud) {
  (void)ud;
  return next_rand;
}

static int freed;
static void count_free(struct gw_sched_item *it) {
  freed++;
  free(it);
}

static struct gw_sched_item *item(int64_t id, const char *rkey) {
  struct gw_sched_item *it = calloc(1, sizeof(*it));
  it->d.id = id;
  it->d.created_ms = 0;
  snprintf(it->d.rkey, sizeof(it->d.rkey), "%s", rkey ? rkey : "");
  return it;
}

static struct gw_sched_policy policy(uint32_t concurrency) {
  return (struct gw_sched_policy){.enabled = true,
                                  .max_attempts = 3,
                                  .backoff_ms = 100,
                                  .max_backoff_ms = 1000,
                                  .concurrency = concurrency,
                                  .breaker_failures = 2,
                                  .breaker_open_ms = 5000,
                                  .memory_queue = 100};
}

/* Deliveries of one resource go out one after another; others do not wait for them. */
static void test_chains(void) {
  struct gw_sched *S = gw_sched_new(scripted, NULL);
  struct gw_sched_bk *b = gw_sched_backend(S, "p1");
  struct gw_sched_policy p = policy(10);
  gw_sched_set_policy(b, &p, 1);
  struct gw_sched_item *a1 = item(1, "A"), *a2 = item(2, "A"), *b1 = item(3, "B"), *a3 = item(4, "A");
  gw_sched_add(S, b, a1, 0);
  gw_sched_add(S, b, a2, 0);
  gw_sched_add(S, b, b1, 0);
  gw_sched_add(S, b, a3, 0);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, 0), a1);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, 0), b1); /* A's second waits for the first */
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 0));
  CU_ASSERT_EQUAL(gw_sched_counters(b)->in_flight, 2);
  CU_ASSERT_EQUAL(gw_sched_counters(b)->queued, 4);
  gw_sched_delivered(S, a1, 10);
  CU_ASSERT_EQUAL(a1->d.state, GW_DS_DELIVERED);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, 10), a2);
  /* a failed attempt keeps its place at the head of the chain: a3 still waits */
  next_rand = 0;
  CU_ASSERT_FALSE(gw_sched_failed(S, a2, 20));
  CU_ASSERT_EQUAL(a2->d.next_ms, 20 + 50); /* first retry: the upper half of 100 ms, jitter 0 */
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 20));
  gw_sched_tick(S, 69);
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 69));
  gw_sched_tick(S, 70);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, 70), a2);
  CU_ASSERT_EQUAL(a2->d.attempts, 2);
  gw_sched_rejected(S, a2, 80);
  CU_ASSERT_EQUAL(a2->d.state, GW_DS_REJECTED);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, 80), a3); /* a rejection ends the delivery: the chain moves on */
  gw_sched_delivered(S, b1, 90);
  gw_sched_delivered(S, a3, 90);
  CU_ASSERT_EQUAL(gw_sched_counters(b)->queued, 0);
  CU_ASSERT_EQUAL(gw_sched_counters(b)->delivered, 3);
  CU_ASSERT_EQUAL(gw_sched_counters(b)->rejected, 1);
  CU_ASSERT_FALSE(gw_sched_busy(b));
  free(a1);
  free(a2);
  free(b1);
  free(a3);
  gw_sched_free(S, count_free);
}

/* Backoff doubles up to the cap, jitter in the upper half of the window; attempts exhausted: dead. */
static void test_backoff_and_dead_letters(void) {
  struct gw_sched *S = gw_sched_new(scripted, NULL);
  struct gw_sched_bk *b = gw_sched_backend(S, "simp");
  struct gw_sched_policy p = policy(10);
  p.max_attempts = 5;
  p.breaker_failures = 100;
  gw_sched_set_policy(b, &p, 1);
  struct gw_sched_item *x = item(1, "X"), *y = item(2, "X");
  gw_sched_add(S, b, x, 0);
  gw_sched_add(S, b, y, 0);
  int64_t now = 0;
  /* windows 100, 200, 400, 800: the delay is window/2 + jitter % (window/2 + 1) */
  static const uint32_t jit[] = {7, 1000, 0, 401};
  static const int64_t want[] = {50 + 7, 100 + (1000 % 101), 200, 400 + (401 % 401)};
  for (int i = 0; i < 4; i++) {
    CU_ASSERT_PTR_EQUAL_FATAL(gw_sched_next(S, b, now), x);
    next_rand = jit[i];
    CU_ASSERT_FALSE(gw_sched_failed(S, x, now));
    CU_ASSERT_EQUAL(x->d.next_ms - now, want[i]);
    CU_ASSERT_EQUAL(x->d.state, GW_DS_QUEUED);
    now = x->d.next_ms;
    gw_sched_tick(S, now);
  }
  CU_ASSERT_PTR_EQUAL_FATAL(gw_sched_next(S, b, now), x);
  CU_ASSERT_EQUAL(x->d.attempts, 5);
  CU_ASSERT_TRUE(gw_sched_failed(S, x, now)); /* the fifth attempt was the last: a dead letter */
  CU_ASSERT_EQUAL(x->d.state, GW_DS_DEAD);
  CU_ASSERT_EQUAL(gw_sched_counters(b)->dead, 1);
  CU_ASSERT_EQUAL(gw_sched_counters(b)->failed, 5);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, now), y); /* and the next of its chain goes */
  free(x);
  /* the cap: window 1000 at most */
  p.max_attempts = 100;
  gw_sched_set_policy(b, &p, 2);
  y->d.attempts = 30;
  next_rand = 0;
  CU_ASSERT_FALSE(gw_sched_failed(S, y, now));
  CU_ASSERT_EQUAL(y->d.next_ms - now, 500);
  freed = 0;
  gw_sched_free(S, count_free); /* y waits: the scheduler frees it */
  CU_ASSERT_EQUAL(freed, 1);
}

/* The breaker opens after breaker_failures in a row, lets one probe through when the time is up, and
 * closes on a success; other backends are not affected. */
static void test_breaker(void) {
  struct gw_sched *S = gw_sched_new(scripted, NULL);
  struct gw_sched_bk *b = gw_sched_backend(S, "apkolce"), *other = gw_sched_backend(S, "p1");
  struct gw_sched_policy p = policy(8);
  gw_sched_set_policy(b, &p, 1);
  gw_sched_set_policy(other, &p, 1);
  struct gw_sched_item *it[4];
  for (int i = 0; i < 4; i++)
    gw_sched_add(S, b, it[i] = item(i + 1, NULL), 0);
  struct gw_sched_item *o = item(9, NULL);
  gw_sched_add(S, other, o, 0);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, 0), it[0]);
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, b, 0), it[1]);
  next_rand = 0;
  gw_sched_failed(S, it[0], 100);
  CU_ASSERT_FALSE(gw_sched_breaker_open(b, 100));
  gw_sched_failed(S, it[1], 100);
  CU_ASSERT_TRUE(gw_sched_breaker_open(b, 100));
  CU_ASSERT_EQUAL(gw_sched_counters(b)->breaker_open, 1);
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 4000)); /* open: nothing goes, even what is ready */
  CU_ASSERT_PTR_EQUAL(gw_sched_next(S, other, 4000), o);
  gw_sched_tick(S, 5100);
  struct gw_sched_item *probe = gw_sched_next(S, b, 5100);
  CU_ASSERT_PTR_NOT_NULL_FATAL(probe);
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 5100)); /* half open: one probe at a time */
  gw_sched_delivered(S, probe, 5200);
  CU_ASSERT_FALSE(gw_sched_breaker_open(b, 5200));
  CU_ASSERT_EQUAL(gw_sched_counters(b)->breaker_open, 0);
  int n = 0;
  while (gw_sched_next(S, b, 5200))
    n++;
  CU_ASSERT_EQUAL(n, 3); /* closed: the rest go at once */
  free(probe);
  gw_sched_delivered(S, o, 5200);
  free(o);
  gw_sched_free(S, count_free);
  for (int i = 0; i < 4; i++)
    if (it[i] != probe)
      free(it[i]);
}

/* In-flight limits, a switched-off backend, and a failing precondition (the token endpoint) that holds
 * its backend back 1 s, 2 s, 4 s ... and counts towards its breaker. */
static void test_limits_and_hold(void) {
  struct gw_sched *S = gw_sched_new(scripted, NULL);
  struct gw_sched_bk *b = gw_sched_backend(S, "p1");
  struct gw_sched_policy p = policy(2);
  p.breaker_failures = 3;
  gw_sched_set_policy(b, &p, 1);
  struct gw_sched_item *it[3];
  for (int i = 0; i < 3; i++)
    gw_sched_add(S, b, it[i] = item(i + 1, NULL), 0);
  p.enabled = false;
  gw_sched_set_policy(b, &p, 2);
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 0));
  p.enabled = true;
  gw_sched_set_policy(b, &p, 3);
  gw_sched_precondition_failed(b, 0);
  CU_ASSERT_FALSE(gw_sched_may_send(b, 999));
  CU_ASSERT_TRUE(gw_sched_may_send(b, 1000));
  gw_sched_precondition_failed(b, 1000);
  CU_ASSERT_FALSE(gw_sched_may_send(b, 2999));
  gw_sched_precondition_failed(b, 3000);
  CU_ASSERT_TRUE(gw_sched_breaker_open(b, 3000)); /* the third failure in a row opens the breaker */
  gw_sched_precondition_ok(b);
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 3000)); /* still open */
  struct gw_sched_item *x = gw_sched_next(S, b, 8000);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  gw_sched_delivered(S, x, 8000);
  CU_ASSERT_PTR_NOT_NULL(gw_sched_next(S, b, 8000));
  CU_ASSERT_PTR_NOT_NULL(gw_sched_next(S, b, 8000));
  CU_ASSERT_PTR_NULL(gw_sched_next(S, b, 8000)); /* concurrency 2 */
  gw_sched_free(S, count_free);
  for (int i = 0; i < 3; i++)
    free(it[i]);
}

/* Past memory_queue deliveries stay in the store; they come back, oldest first, when half the room is free. */
static void test_spill_and_refill(void) {
  struct gw_sched *S = gw_sched_new(scripted, NULL);
  struct gw_sched_bk *b = gw_sched_backend(S, "apkolce");
  struct gw_sched_policy p = policy(10);
  p.memory_queue = 4;
  gw_sched_set_policy(b, &p, 1);
  struct gw_sched_item *it[4];
  for (int i = 0; i < 4; i++) {
    CU_ASSERT_FALSE(gw_sched_spill(b, i + 1));
    gw_sched_add(S, b, it[i] = item(i + 1, NULL), 0);
  }
  for (int id = 5; id <= 9; id++)
    CU_ASSERT_TRUE(gw_sched_spill(b, id));
  CU_ASSERT_TRUE(gw_sched_spilled(b));
  CU_ASSERT_EQUAL(gw_sched_counters(b)->queued, 9);
  int64_t from, to;
  int room;
  CU_ASSERT_FALSE(gw_sched_refill(b, &from, &to, &room)); /* full */
  for (int i = 0; i < 2; i++) {
    gw_sched_delivered(S, gw_sched_next(S, b, 0), 0);
    free(it[i]);
  }
  CU_ASSERT_TRUE_FATAL(gw_sched_refill(b, &from, &to, &room));
  CU_ASSERT_EQUAL(from, 5);
  CU_ASSERT_EQUAL(to, 9);
  CU_ASSERT_EQUAL(room, 2);
  struct gw_sched_item *back[2];
  for (int id = 5; id <= 6; id++) { /* what the store gives back */
    gw_sched_refilled_one(b, id);
    gw_sched_add(S, b, back[id - 5] = item(id, NULL), 0);
  }
  CU_ASSERT_FALSE(gw_sched_refill_done(b, 2, 2)); /* as many as room: maybe more */
  CU_ASSERT_TRUE(gw_sched_spilled(b));
  CU_ASSERT_EQUAL(gw_sched_counters(b)->queued, 7);
  CU_ASSERT_FALSE(gw_sched_refill(b, &from, &to, &room));
  /* the rest */
  while (gw_sched_counters(b)->in_flight < 4) {
    struct gw_sched_item *x = gw_sched_next(S, b, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  }
  freed = 0;
  gw_sched_free(S, count_free); /* items in flight are the caller's: none freed here */
  CU_ASSERT_EQUAL(freed, 0);
  free(it[2]);
  free(it[3]);
  free(back[0]);
  free(back[1]);
}

/* Queues come into being on first use: ten thousand clinics' endpoints, each found again by name. */
static void test_many_queues(void) {
  struct gw_sched *S = gw_sched_new(scripted, NULL);
  for (int i = 0; i < 10000; i++) {
    char name[32];
    snprintf(name, sizeof(name), "clinic-%012d", i);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gw_sched_backend(S, name));
  }
  CU_ASSERT_EQUAL(gw_sched_nbackends(S), 10000);
  CU_ASSERT_PTR_EQUAL(gw_sched_backend(S, "clinic-000000004711"), gw_sched_backend_at(S, 4711));
  CU_ASSERT_STRING_EQUAL(gw_sched_name(gw_sched_backend_at(S, 9999)), "clinic-000000009999");
  gw_sched_free(S, count_free);
}

/* Every allocation of the scheduler failing in turn: no crash, and every delivery given to it is either
 * sent exactly once or handed back at the end (never lost); a chain without memory goes unordered. */
static void test_allocation_failures(void) {
  long base = gw_alloc_count();
  struct gw_sched *S0 = gw_sched_new(scripted, NULL);
  gw_sched_backend(S0, "p1");
  gw_sched_free(S0, count_free);
  long per_run = gw_alloc_count() - base + 8; /* the scheduler, its queue, a few chains */
  for (long k = 1; k <= per_run; k++) {
    gw_alloc_fail_after(k);
    struct gw_sched *S = gw_sched_new(scripted, NULL);
    struct gw_sched_bk *b = S ? gw_sched_backend(S, "p1") : NULL;
    if (!S || !b) {
      gw_alloc_fail_after(0);
      gw_sched_free(S, count_free);
      continue; /* the dispatcher then leaves the delivery in the store (tested end to end) */
    }
    int sent = 0;
    freed = 0;
    for (int i = 0; i < 6; i++)
      gw_sched_add(S, b, item(i + 1, i % 2 ? "R1" : "R2"), 0);
    struct gw_sched_item *x;
    while ((x = gw_sched_next(S, b, 0))) {
      sent++;
      gw_sched_delivered(S, x, 0);
      free(x);
    }
    gw_alloc_fail_after(0);
    gw_sched_free(S, count_free);
    CU_ASSERT_EQUAL(sent + freed, 6);
    CU_ASSERT_EQUAL(sent, 6);
  }
  gw_alloc_fail_after(0);
}

int gw_test_sched_suite(void) {
  CU_pSuite s = CU_add_suite("sched", NULL, NULL);
  if (!s)
    return -1;
  return GW_ADD(s, test_chains) || GW_ADD(s, test_backoff_and_dead_letters) || GW_ADD(s, test_breaker) ||
         GW_ADD(s, test_limits_and_hold) || GW_ADD(s, test_spill_and_refill) || GW_ADD(s, test_many_queues) ||
         GW_ADD(s, test_allocation_failures);
}
