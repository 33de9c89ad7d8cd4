/* The PostgreSQL store (store/pg.c): several gateway instances sharing one database. The same
 * operations as the SQLite store (store.h); what it adds is described at the top of pg.c and in
 * docs/operations.md "Running a cluster". */
#ifndef GW_STORE_PG_H
#define GW_STORE_PG_H

#include <stdint.h>

#include "core/buf.h"
#include "store/store.h"

/* The PostgreSQL schema's version (store_meta 'schema_version'); its own numbering. */
#define GW_PG_SCHEMA_VERSION 1
/* The most writer connections (store.writers) an instance opens. */
#define GW_PG_MAX_WRITERS 16

struct gw_pg_opts {
  const char *conninfo; /* libpq connection string or URI (sslmode=verify-full etc. for TLS) */
  const char *instance; /* this instance's name in the cluster; NULL or "": host-pid-random */
  int64_t lease_ms;     /* silence after which an instance is declared dead (default 10000) */
  int writers;          /* connections writing in parallel: 1 for delivery states, the rest for new messages (4) */
};

/* Opens (and migrates) the PostgreSQL store, registers this instance and starts its writer and
 * heartbeat threads. */
int gw_store_open_pg(const struct gw_pg_opts *o, gw_store_accepted_fn on_accepted, void *ud, struct gw_store **out,
                     struct gw_buf *err);
/* Set through gw_store_use_keyring. */
struct gw_keyring;
void gw_store_pg_use_keyring(const struct gw_keyring *kr);
const struct gw_keyring *gw_store_pg_keyring(void);
/* Prometheus lines of an open PostgreSQL store (claims, takeovers, serialization retries). */
void gw_store_pg_metrics(struct gw_buf *out);
/* A connection to |conninfo| (a libpq string or URI; its own settings win over ours: a 3 s connect timeout,
 * warnings only), named |app| in pg_stat_activity; PQstatus tells whether it is up. libpq's PGconn. */
struct pg_conn;
struct pg_conn *gw_pg_connect_as(const char *conninfo, const char *app);
/* `cergw store|outbox --pg CONNINFO ...`: the operator's commands against a PostgreSQL store. */
int gw_pg_store_cmd(const char *conninfo, int argc, char **argv);
int gw_pg_outbox_cmd(const char *conninfo, int argc, char **argv);
/* `cergw store copy --data DIR --pg CONNINFO`: a SQLite store copied into an empty PostgreSQL store. */
int gw_pg_copy_from_sqlite(const char *dir, const char *conninfo);

#endif
