#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long fail_at; /* 0: off; else the allocation number (of count) that starts failing */
static _Atomic long count;

static int failing(void) {
  long n = atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) + 1;
  long f = atomic_load_explicit(&fail_at, memory_order_relaxed);
  return f && n >= f;
}

void *gw_malloc(size_t n) { return failing() ? NULL : malloc(n); }
void *gw_calloc(size_t n, size_t size) { return failing() ? NULL : calloc(n, size); }

char *gw_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = gw_malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

void gw_alloc_fail_after(long n) { atomic_store(&fail_at, n > 0 ? atomic_load(&count) + n : 0); }

long gw_alloc_count(void) { return atomic_load(&count); }
