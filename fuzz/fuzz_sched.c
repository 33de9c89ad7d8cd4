/* libFuzzer: the delivery scheduler driven by an arbitrary sequence of
 * events (adds, sends, outcomes, time passing, failing preconditions,
 * policy changes). Invariants checked on every step: deliveries of one
 * ordering key go out in the order they were added, never two at once; a
 * delivery is never handed out twice at the same time; every delivery added
 * ends delivered, rejected, dead, or handed back when the scheduler is
 * freed — none is lost. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/sched.h"

#define MAXI 256
static uint32_t rnd_state;
static uint32_t rnd(void *ud) {
  (void)ud;
  return rnd_state = rnd_state * 1103515245u + 12345u;
}

static int handed_back;
static void back(struct gw_sched_item *it) {
  handed_back++;
  free(it);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct gw_sched *S = gw_sched_new(rnd, NULL);
  if (!S)
    return 0;
  struct gw_sched_bk *bk[2] = {gw_sched_backend(S, "p1"), gw_sched_backend(S, "apkolce")};
  struct gw_sched_item *flying[MAXI];
  int nfly = 0, added = 0, ended = 0;
  int64_t now = 0, next_id = 1;
  int64_t done_upto[2][4] = {{0}}; /* per backend and key: the id last finished (ids of one key rise) */
  rnd_state = 1;
  handed_back = 0;
  for (size_t i = 0; i < size; i++) {
    uint8_t op = data[i] >> 4, arg = data[i] & 15;
    struct gw_sched_bk *b = bk[arg & 1];
    if (op <= 2 && added < MAXI) { /* add */
      struct gw_sched_item *it = calloc(1, sizeof(*it));
      it->d.id = next_id++;
      snprintf(it->d.rkey, sizeof(it->d.rkey), "%s", (arg >> 1) & 3 ? "" : "K");
      if ((arg >> 1) & 1)
        snprintf(it->d.rkey, sizeof(it->d.rkey), "K%d", (arg >> 2) & 3);
      if (gw_sched_spill(b, it->d.id)) {
        free(it); /* in the store only: not this test's concern */
        continue;
      }
      gw_sched_add(S, b, it, now);
      added++;
    } else if (op <= 5) { /* send what may go */
      struct gw_sched_item *it;
      while (nfly < MAXI && (it = gw_sched_next(S, b, now))) {
        for (int k = 0; k < nfly; k++)
          if (flying[k] == it || (it->d.rkey[0] && flying[k]->bk == it->bk && !strcmp(flying[k]->d.rkey, it->d.rkey)))
            abort(); /* handed out twice, or two of one key at once */
        flying[nfly++] = it;
      }
    } else if (op <= 10 && nfly) { /* an outcome for one in flight */
      int k = arg % nfly;
      struct gw_sched_item *it = flying[k];
      flying[k] = flying[--nfly];
      int bi = it->bk == bk[1];
      int key = it->d.rkey[0] == 'K' && it->d.rkey[1] ? (it->d.rkey[1] - '0') & 3 : -1;
      bool gone = true;
      if (op <= 7)
        gw_sched_delivered(S, it, now);
      else if (op == 8)
        gw_sched_rejected(S, it, now);
      else
        gone = gw_sched_failed(S, it, now);
      if (gone) {
        if (key >= 0 && it->d.id < done_upto[bi][key])
          abort(); /* one key's deliveries finished out of order */
        if (key >= 0)
          done_upto[bi][key] = it->d.id;
        ended++;
        free(it);
      }
    } else if (op <= 12) {
      now += (int64_t)arg * 97;
      gw_sched_tick(S, now);
    } else if (op == 13) {
      gw_sched_precondition_failed(b, now);
    } else if (op == 14) {
      gw_sched_precondition_ok(b);
    } else {
      struct gw_sched_policy p = {.enabled = arg != 15,
                                  .max_attempts = 1 + arg % 4,
                                  .backoff_ms = 10,
                                  .max_backoff_ms = 200,
                                  .concurrency = 1 + arg % 3,
                                  .breaker_failures = 1 + arg % 5,
                                  .breaker_open_ms = 300,
                                  .memory_queue = 4 + arg};
      gw_sched_set_policy(b, &p, (unsigned long)i + 1);
    }
  }
  int in_flight = nfly;
  gw_sched_free(S, back);
  for (int k = 0; k < nfly; k++) /* in flight at the end: the caller's, freed after the scheduler */
    free(flying[k]);
  if (ended + handed_back + in_flight != added)
    abort(); /* a delivery was lost */
  return 0;
}
