/* Allocation for the application core (the message pipeline, the store's
 * queue, the delivery scheduler): plain malloc, with one hook for tests to
 * make the Nth allocation from now fail, so that every failure path can be
 * walked (tests/unit/core/alloc_test.c) — as SQLite's test harness does
 * with its fault-injecting allocator. */
#ifndef GW_CORE_ALLOC_H
#define GW_CORE_ALLOC_H

#include <stddef.h>

void *gw_malloc(size_t n);
void *gw_calloc(size_t n, size_t size);
char *gw_strdup(const char *s);

/* Tests: the |n|th call of the functions above from now (1 = the next) and
 * every later one returns NULL; 0 turns failures off. Process-wide. */
void gw_alloc_fail_after(long n);
/* How many core allocations have been made (tests size their loops with it). */
long gw_alloc_count(void);

#endif
