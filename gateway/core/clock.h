#ifndef GW_CORE_CLOCK_H
#define GW_CORE_CLOCK_H
#include <stdint.h>
#include <time.h>

/* Monotonic time in nanoseconds. */
static inline uint64_t gw_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t gw_now_ms(void) { return gw_now_ns() / 1000000u; }

/* Wall-clock time in milliseconds since the epoch: what is stored (received,
 * next attempt, answer deadlines), so it stays meaningful across restarts. */
static inline int64_t gw_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
#endif
