#include "core/health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char problems[GW_HEALTH__COUNT][256];
static _Atomic int bad; /* a bit per part with a problem: the common "all fine" needs no lock */

void gw_health_set(enum gw_health_part part, const char *problem) {
  int bit = 1 << part;
  if (!problem && !(atomic_load(&bad) & bit))
    return;
  pthread_mutex_lock(&mu);
  if (problem) {
    snprintf(problems[part], sizeof(problems[part]), "%s", problem);
    atomic_fetch_or(&bad, bit);
  } else {
    problems[part][0] = 0;
    atomic_fetch_and(&bad, ~bit);
  }
  pthread_mutex_unlock(&mu);
}

bool gw_health_problem(char *out, size_t n) {
  if (!atomic_load(&bad))
    return false;
  bool found = false;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < GW_HEALTH__COUNT && !found; i++)
    if (problems[i][0]) {
      snprintf(out, n, "%s", problems[i]);
      found = true;
    }
  pthread_mutex_unlock(&mu);
  return found;
}
