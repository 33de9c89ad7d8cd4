/* What /healthz tells: whether the gateway can do its job. A component
 * reports a problem when it cannot (the store cannot commit) and clears it
 * when it can again, so health recovers by itself. Thread-safe. */
#ifndef GW_CORE_HEALTH_H
#define GW_CORE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

/* STORE: the store's writer cannot commit; STORE_LINK: a shared store (PostgreSQL) cannot be reached
 * by this instance's heartbeat, so it cannot take writes nor keep its deliveries. */
enum gw_health_part { GW_HEALTH_STORE = 0, GW_HEALTH_STORE_LINK, GW_HEALTH__COUNT };

/* |problem| NULL: |part| is fine again. */
void gw_health_set(enum gw_health_part part, const char *problem);
/* false when healthy; else true with the first problem in |out|. */
bool gw_health_problem(char *out, size_t n);

#endif
