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
#endif
