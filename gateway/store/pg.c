/* The PostgreSQL store: several gateway instances share one database (store.backend "postgresql").
 * The same contract as the SQLite store (store.h) — a writer thread per instance commits what has
 * queued up in one transaction (PostgreSQL's own group commit joins the instances' commits), new
 * messages only after the commit are acknowledged, the rules with memory run inside the transaction —
 * plus what a cluster needs:
 *  - Facts two instances could decide at once (a slot, a schedule's slots, an appointment, a resource's
 *    owner) are locked for the transaction (advisory locks) before they are read; idempotency keys and
 *    resource versions are unique keys. The loser of a unique-key conflict or a deadlock has its whole
 *    batch run again (cergw_store_serialization_retries_total) and then sees the winner's rows.
 *  - Each delivery has an owner, the instance whose dispatcher sends it. Instances beat a heartbeat in
 *    `instances`; an instance that sees another's beat stand still for store.lease_ms, while it could
 *    itself reach the database the whole time, declares it dead (conditionally on the beat it saw) and
 *    any instance then claims its deliveries (FOR UPDATE SKIP LOCKED, under one advisory lock so claims
 *    of one chain are not split). An instance that finds itself declared dead stops at once (fencing):
 *    its deliveries are someone else's now.
 *  - Order per resource across instances: a new delivery whose resource has an earlier delivery still
 *    pending at another instance (or unowned) is stored without an owner ("held") and claimed once the
 *    earlier ones are done, so a cancellation never overtakes its booking.
 * Sealing and keyed hashes are done here in C (tls/seal.h) before values are sent: the database never
 * sees personal data in clear. Results are read in binary; integers are bigint. */
#include <arpa/inet.h>
#include <ctype.h>
#include <endian.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/health.h"
#include "core/log.h"
#include "store/pg.h"
#include "store/queue.h"
#include "store/store.h"
#include "tls/jwt.h"
#include "tls/seal.h"

#define BATCH_MAX   512
#define MAX_RETRIES 50
#define MAX_PEERS   64
#define CLAIM_MAX   1000

/* The PostgreSQL schema, as forward migrations (store_meta 'schema_version'). Append only. */
static const char *const pg_migrations[GW_PG_SCHEMA_VERSION] = {
    /* 0 -> 1: everything the SQLite store keeps at its version 12, plus owners of deliveries and
     * the instances of the cluster */
    "CREATE TABLE IF NOT EXISTS messages(id bigserial PRIMARY KEY, received_ms bigint NOT NULL,"
    " caller text NOT NULL, dialect text NOT NULL, op text NOT NULL, idem_key text UNIQUE, idem_digest text,"
    " rtype text, rid text, original bytea NOT NULL, canonical bytea, answer_status bigint, answer_ctype text,"
    " answer bytea, answer_meta text);"
    "CREATE INDEX IF NOT EXISTS messages_received ON messages(received_ms);"
    "CREATE TABLE IF NOT EXISTS deliveries(id bigserial PRIMARY KEY, msg_id bigint NOT NULL REFERENCES messages(id),"
    " backend text NOT NULL, rkey text NOT NULL, path text NOT NULL, ctype text NOT NULL, payload bytea NOT NULL,"
    " state bigint NOT NULL, attempts bigint NOT NULL DEFAULT 0, next_ms bigint NOT NULL DEFAULT 0,"
    " last_status bigint NOT NULL DEFAULT 0, last_error bytea NOT NULL DEFAULT '', created_ms bigint NOT NULL,"
    " done_ms bigint, ikey text NOT NULL, owner text);"
    "CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(id) WHERE state IN (0, 4);"
    "CREATE INDEX IF NOT EXISTS deliveries_msg ON deliveries(msg_id);"
    "CREATE INDEX IF NOT EXISTS deliveries_rkey ON deliveries(rkey, id);"
    "CREATE TABLE IF NOT EXISTS slots(caller text NOT NULL, ident text NOT NULL, schedule text NOT NULL,"
    " start_ms bigint NOT NULL, end_ms bigint NOT NULL, free bigint NOT NULL, msg_id bigint NOT NULL, label bytea,"
    " PRIMARY KEY(caller, ident));"
    "CREATE INDEX IF NOT EXISTS slots_sched ON slots(caller, schedule, start_ms);"
    "CREATE TABLE IF NOT EXISTS owners(key text PRIMARY KEY, owner text NOT NULL, msg_id bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS appointments(caller text NOT NULL, akey text NOT NULL, status text NOT NULL,"
    " start_ms bigint NOT NULL, slots bytea NOT NULL, msg_id bigint NOT NULL, PRIMARY KEY(caller, akey));"
    "CREATE TABLE IF NOT EXISTS resources(clinic text NOT NULL, rtype text NOT NULL, id text NOT NULL,"
    " version bigint NOT NULL, msg_id bigint NOT NULL, updated_ms bigint NOT NULL, ident text NOT NULL,"
    " identvalue text NOT NULL, status text NOT NULL, date_ms bigint NOT NULL, refs text NOT NULL,"
    " body bytea NOT NULL, entry bigint NOT NULL DEFAULT -1, PRIMARY KEY(clinic, rtype, id, version));"
    "CREATE INDEX IF NOT EXISTS resources_ident ON resources(clinic, rtype, ident);"
    "CREATE INDEX IF NOT EXISTS resources_updated ON resources(clinic, rtype, updated_ms);"
    "CREATE INDEX IF NOT EXISTS resources_msg ON resources(msg_id);"
    "CREATE TABLE IF NOT EXISTS attempts(delivery_id bigint NOT NULL, attempt bigint NOT NULL, at_ms bigint NOT NULL,"
    " state bigint NOT NULL, status bigint NOT NULL, answer bytea NOT NULL, PRIMARY KEY(delivery_id, attempt, state));"
    "CREATE TABLE IF NOT EXISTS seal_keys(id text PRIMARY KEY, check_value bytea NOT NULL, since_ms bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS patients(hash text NOT NULL, msg_id bigint NOT NULL, PRIMARY KEY(hash, msg_id));"
    "CREATE INDEX IF NOT EXISTS patients_msg ON patients(msg_id);"
    "CREATE TABLE IF NOT EXISTS instances(id text PRIMARY KEY, beat bigint NOT NULL, started_ms bigint NOT NULL,"
    " seen_ms bigint NOT NULL, dead boolean NOT NULL DEFAULT false);",
};

/* ---- counters (Prometheus) ---- */
static _Atomic long long pg_errors, pg_retries, pg_claims, pg_takeovers, pg_declared_dead, pg_commits;
static _Atomic int pg_open; /* an open PostgreSQL store: its metrics are printed */

void gw_store_pg_metrics(struct gw_buf *o) {
  if (!atomic_load(&pg_open))
    return;
  gw_buf_printf(o,
                "# TYPE cergw_store_pg_errors_total counter\ncergw_store_pg_errors_total %lld\n"
                "# TYPE cergw_store_serialization_retries_total counter\ncergw_store_serialization_retries_total "
                "%lld\n"
                "# TYPE cergw_store_claims_total counter\ncergw_store_claims_total %lld\n"
                "# TYPE cergw_store_lease_takeovers_total counter\ncergw_store_lease_takeovers_total %lld\n"
                "# TYPE cergw_store_instances_declared_dead_total counter\n"
                "cergw_store_instances_declared_dead_total %lld\n"
                "# TYPE cergw_store_commits_total counter\ncergw_store_commits_total %lld\n",
                (long long)atomic_load(&pg_errors), (long long)atomic_load(&pg_retries),
                (long long)atomic_load(&pg_claims), (long long)atomic_load(&pg_takeovers),
                (long long)atomic_load(&pg_declared_dead), (long long)atomic_load(&pg_commits));
}

/* ---- parameters and results ---- */

#define NPARAM 20
struct pq {
  int n;
  const char *v[NPARAM];
  int l[NPARAM], f[NPARAM];
  char num[NPARAM][24];
};

static void p_text(struct pq *p, const char *s) {
  p->v[p->n] = s;
  p->l[p->n] = 0;
  p->f[p->n] = 0;
  p->n++;
}
static void p_i64(struct pq *p, int64_t x) {
  snprintf(p->num[p->n], sizeof(p->num[0]), "%lld", (long long)x);
  p_text(p, p->num[p->n]);
}
static void p_bin(struct pq *p, const void *b, size_t n) {
  p->v[p->n] = b ? (const char *)b : "";
  p->l[p->n] = (int)n;
  p->f[p->n] = 1;
  p->n++;
}

static int64_t g_i64(const PGresult *r, int row, int col) {
  if (PQgetisnull(r, row, col))
    return 0;
  const char *v = PQgetvalue(r, row, col);
  int n = PQgetlength(r, row, col);
  if (n == 8) {
    uint64_t x;
    memcpy(&x, v, 8);
    return (int64_t)be64toh(x);
  }
  if (n == 4) {
    uint32_t x;
    memcpy(&x, v, 4);
    return (int32_t)ntohl(x);
  }
  if (n == 1)
    return (unsigned char)v[0];
  return 0;
}
static const char *g_str(const PGresult *r, int row, int col) { return PQgetvalue(r, row, col); }

/* Whether a failed statement's SQLSTATE says: run the transaction again (another instance won). */
static bool retryable(const PGresult *r) {
  const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  return s && (!strcmp(s, "40001") || !strcmp(s, "40P01") || !strcmp(s, "23505"));
}

struct pg_store;
/* Runs |sql| with |p| (may be NULL); a result to PQclear, or NULL on failure (logged unless retryable,
 * which sets *|retry|). */
/* Statements are prepared once per connection (planning each of a message's fifteen statements anew cost
 * the database more than running them): each thread keeps the statements its connection has prepared,
 * by the address of their text (string literals), and forgets them when it reconnects. */
#define PCACHE_MAX 96
static __thread struct {
  PGconn *c;
  const char *sql[PCACHE_MAX];
  int n;
} pcache;

/* The name |sql| is prepared under on |c| ("" when the cache is full: run it unprepared); NULL when
 * preparing failed (the failure in |*err|, to PQclear: inside a transaction it aborted it). */
static const char *prepared(PGconn *c, const char *sql, const struct pq *p, char name[32], PGresult **err) {
  name[0] = 0;
  *err = NULL;
  if (pcache.c != c) {
    pcache.c = c;
    pcache.n = 0;
  }
  static _Atomic int threads;
  static __thread int tid;
  if (!tid)
    tid = atomic_fetch_add(&threads, 1) + 1;
  char nm[32]; /* per thread and text: two threads may use one connection one after the other */
  snprintf(nm, sizeof(nm), "q%d_%lx", tid, (unsigned long)(uintptr_t)sql);
  for (int i = 0; i < pcache.n; i++)
    if (pcache.sql[i] == sql) {
      snprintf(name, 32, "%s", nm);
      return name;
    }
  if (pcache.n >= PCACHE_MAX)
    return name;
  PGresult *r = PQprepare(c, nm, sql, p ? p->n : 0, NULL);
  if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
    PQclear(r);
    pcache.sql[pcache.n++] = sql;
    snprintf(name, 32, "%s", nm);
    return name;
  }
  *err = r;
  return NULL;
}

/* |r| when it succeeded; else NULL after PQclear(r), the failure logged unless retryable (*|retry| set). */
static PGresult *checked(PGconn *c, PGresult *r, const char *what, bool *retry) {
  ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK)
    return r;
  if (retry && retryable(r)) {
    *retry = true;
  } else {
    atomic_fetch_add(&pg_errors, 1);
    gw_log(GW_LOG_ERROR, "store_error", "op=%s detail=\"%.200s\"", what,
           r ? PQresultErrorMessage(r) : PQerrorMessage(c));
  }
  PQclear(r);
  return NULL;
}

/* One execution: |sql| prepared (binary results), or with |multi| as it is through PQexec (several
 * commands, text results). */
static PGresult *attempt(PGconn *c, const char *sql, const struct pq *p, bool multi) {
  if (multi)
    return PQexec(c, sql);
  char name[32];
  PGresult *r = NULL; /* when it cannot be prepared: why */
  if (prepared(c, sql, p, name, &r))
    r = name[0] ? PQexecPrepared(c, name, p ? p->n : 0, p ? p->v : NULL, p ? p->l : NULL, p ? p->f : NULL, 1)
                : PQexecParams(c, sql, p ? p->n : 0, NULL, p ? p->v : NULL, p ? p->l : NULL, p ? p->f : NULL, 1);
  return r;
}

/* An execution, and once more on a new session when the first found the connection gone and no
 * transaction was open (a statement of an open transaction is never run again outside it). */
static PGresult *attempt_again(PGconn *c, const char *sql, const struct pq *p, bool multi) {
  bool idle = PQtransactionStatus(c) == PQTRANS_IDLE;
  PGresult *r = attempt(c, sql, p, multi);
  ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK || !idle || PQstatus(c) != CONNECTION_BAD)
    return r;
  PQclear(r);
  PQreset(c);
  if (pcache.c == c)
    pcache.n = 0; /* a new session: nothing prepared in it */
  const char *app = PQstatus(c) == CONNECTION_OK ? PQparameterStatus(c, "application_name") : NULL;
  if (PQstatus(c) == CONNECTION_OK)
    gw_log(GW_LOG_INFO, "store_connected", "app=%s after=connection_lost", app ? app : "-");
  return attempt(c, sql, p, multi);
}

static PGresult *run(PGconn *c, const char *sql, const struct pq *p, const char *what, bool *retry) {
  return checked(c, attempt_again(c, sql, p, false), what, retry);
}

/* Runs a statement whose rows are not needed. GW_OK or GW_ERR_IO. */
static int exec_p(PGconn *c, const char *sql, const struct pq *p, const char *what, bool *retry) {
  /* no parameters: possibly several commands, which only PQexec takes */
  PGresult *r = checked(c, attempt_again(c, sql, p, !p), what, retry);
  bool ok = r != NULL;
  PQclear(r);
  return ok ? GW_OK : GW_ERR_IO;
}

/* ---- sealing (tls/seal.h): done here, before a value leaves the process ---- */
static const struct gw_keyring *pg_keyring;

void gw_store_pg_use_keyring(const struct gw_keyring *kr) { pg_keyring = kr; }
const struct gw_keyring *gw_store_pg_keyring(void) { return pg_keyring; }

/* |in| sealed for row |aad| into |out| (a clear copy without a keyring or when empty). */
static int sealv(int64_t aad, const void *in, size_t n, struct gw_buf *out) {
  gw_buf_init(out, n + GW_SEAL_OVERHEAD + 16);
  if (!pg_keyring || n == 0)
    return gw_buf_append(out, in ? in : "", n);
  return gw_seal(pg_keyring, aad, in, n, out);
}

/* A column opened (|out| malloc'd, NUL-terminated). GW_OK, or an error with the key id said. */
static int unsealv(const PGresult *r, int row, int col, int64_t aad, uint8_t **out, size_t *len) {
  const uint8_t *v = (const uint8_t *)PQgetvalue(r, row, col);
  size_t n = (size_t)PQgetlength(r, row, col);
  *out = NULL;
  *len = 0;
  if (!gw_sealed(v, n)) {
    if (!(*out = malloc(n + 1)))
      return GW_ERR_NOMEM;
    memcpy(*out, v, n);
    (*out)[n] = 0;
    *len = n;
    return GW_OK;
  }
  struct gw_buf b;
  gw_buf_init(&b, n + 16);
  int rv = gw_unseal(pg_keyring, aad, v, n, &b);
  if (rv != GW_OK) {
    char id[40];
    gw_sealed_key_id(v, n, id, sizeof(id));
    gw_log(GW_LOG_ERROR, "store_unseal_failed", "key=%s detail=\"%s\"", id,
           rv == GW_ERR_NOTFOUND ? "store.key_file does not hold this key" : "the value does not open with it");
    gw_buf_cleanup(&b);
    return rv;
  }
  gw_buf_append(&b, "", 1);
  *out = gw_buf_take(&b, len);
  if (*len)
    (*len)--;
  return GW_OK;
}

/* A column opened into a fixed field (truncated, "" when it does not open). */
static void unseal_into(const PGresult *r, int row, int col, int64_t aad, char *out, size_t n) {
  uint8_t *p = NULL;
  size_t len = 0;
  snprintf(out, n, "%s", unsealv(r, row, col, aad, &p, &len) == GW_OK && p ? (const char *)p : "");
  free(p);
}

/* The keyed hash of |s| (|s| itself without a keyring, or when empty). */
static const char *kh(const char *s, char out[65]) {
  if (!pg_keyring || !s || !s[0])
    return s;
  gw_keyed_hash(pg_keyring, s, strlen(s), out);
  return out;
}

/* "\nA\nB\n" -> "\nkh(A)\nkh(B)\n" */

/* ---- connections ---- */

/* Connects with |conninfo| (a libpq connection string or URI; its own settings win over ours). */
struct pg_conn *gw_pg_connect_as(const char *conninfo, const char *app) {
  const char *const kw[] = {"connect_timeout", "application_name", "options", "dbname", NULL};
  const char *const vals[] = {"3", app, "-c client_min_messages=warning", conninfo, NULL};
  return PQconnectdbParams(kw, vals, 1);
}

/* A connection that works, reconnected when the database went away (GW_OK), or GW_ERR_IO. */
static int ensure(PGconn **c, const char *conninfo, const char *app) {
  if (*c && PQstatus(*c) == CONNECTION_OK)
    return GW_OK;
  if (*c) {
    PQreset(*c);
    if (pcache.c == *c)
      pcache.n = 0; /* a new session: nothing prepared in it */
  } else {
    *c = gw_pg_connect_as(conninfo, app);
  }
  if (*c && PQstatus(*c) == CONNECTION_OK) {
    gw_log(GW_LOG_INFO, "store_connected", "app=%s", app);
    return GW_OK;
  }
  return GW_ERR_IO;
}

/* ---- the store ---- */

struct peer {
  char id[96];
  int64_t beat, seen_mono;
};

/* A writer: a thread with its own connection. Writer 0 writes delivery states and answers (in the
 * order the dispatcher gave them) and prunes; the others write new messages, in parallel transactions
 * (facts locked as the rules read them), and run reads and lookups after their commits. */
struct wr {
  PGconn *c;
  bool retry; /* the current batch lost to another transaction: run it again */
  bool upd;   /* writer 0 */
  pthread_t th;
  struct pg_store *st;
};
static __thread struct wr *cur_w; /* the writer this thread is */

struct pg_store {
  struct gw_store base;
  char *conninfo;
  char instance[96];
  int64_t lease_ms, beat_ms;
  struct wr wr[GW_PG_MAX_WRITERS];
  int nwr;
  PGconn *r; /* the dispatcher's (load, claim), under rmu */
  pthread_mutex_t rmu;
  PGconn *h; /* the heartbeat thread's */
  pthread_t hth;
  pthread_mutex_t mu;
  pthread_cond_t cv;       /* the writers of new messages wait on it */
  pthread_cond_t ucv;      /* writer 0 waits on it */
  struct gw_wlist updates; /* delivery states and answers, for writer 0 (under mu) */
  pthread_cond_t hcv;      /* the heartbeat thread waits on it (its own: a signal for the writer never wakes it) */
  struct gw_wlist submits; /* the rest, for the writers of new messages (under mu) */
  bool stop;
  int64_t content_ms, metadata_ms, rejected_ms, prune_every_ms, next_prune_ms;
  uint64_t max_bytes;
  int64_t size_checked_ms;
  uint64_t size_seen;
  /* heartbeat thread */
  struct peer peers[MAX_PEERS];
  int npeers;
};

static const struct gw_store_ops pg_ops;
static const struct gw_memq_ops pg_memq_ops;

/* Takes the cluster-wide migration lock, brings the schema to GW_PG_SCHEMA_VERSION. */
static int pg_migrate(PGconn *c, struct gw_buf *err) {
  PGresult *r = PQexec(c, "SELECT pg_advisory_lock(7011001)");
  bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  if (!ok) {
    gw_buf_printf(err, "postgresql: %s", PQerrorMessage(c));
    return GW_ERR_IO;
  }
  int rv = GW_OK;
  r = PQexec(c, "CREATE TABLE IF NOT EXISTS store_meta(key text PRIMARY KEY, value text NOT NULL)");
  PQclear(r);
  r = PQexec(c, "SELECT value FROM store_meta WHERE key = 'schema_version'");
  int v = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  if (v > GW_PG_SCHEMA_VERSION) {
    gw_buf_printf(err, "postgresql: schema version %d is newer than this build knows (%d)\n", v, GW_PG_SCHEMA_VERSION);
    rv = GW_ERR_IO;
  }
  for (int from = v; rv == GW_OK && v < GW_PG_SCHEMA_VERSION; v++) {
    char bump[160];
    snprintf(bump, sizeof(bump),
             "INSERT INTO store_meta(key, value) VALUES('schema_version', '%d') ON CONFLICT (key) DO UPDATE SET "
             "value = EXCLUDED.value",
             v + 1);
    PGresult *b = PQexec(c, "BEGIN");
    PQclear(b);
    PGresult *m = PQexec(c, pg_migrations[v]);
    bool mok = m && PQresultStatus(m) == PGRES_COMMAND_OK;
    if (!mok)
      gw_buf_printf(err, "postgresql: migration to schema version %d failed: %s", v + 1,
                    m ? PQresultErrorMessage(m) : PQerrorMessage(c));
    PQclear(m);
    if (mok) {
      m = PQexec(c, bump);
      mok = m && PQresultStatus(m) == PGRES_COMMAND_OK;
      PQclear(m);
      m = PQexec(c, "COMMIT");
      mok = mok && m && PQresultStatus(m) == PGRES_COMMAND_OK;
      PQclear(m);
    }
    if (!mok) {
      PQclear(PQexec(c, "ROLLBACK"));
      rv = GW_ERR_IO;
    } else if (v + 1 == GW_PG_SCHEMA_VERSION) {
      gw_log(GW_LOG_INFO, "store_migrated", "backend=postgresql from_version=%d to_version=%d", from,
             GW_PG_SCHEMA_VERSION);
    }
  }
  PQclear(PQexec(c, "SELECT pg_advisory_unlock(7011001)"));
  return rv;
}

/* Every key that sealed rows is in the ring, and is the same key; the current key recorded. */
static int pg_check_keys(PGconn *c, struct gw_buf *err) {
  PGresult *r = run(c, "SELECT id, check_value FROM seal_keys ORDER BY since_ms", NULL, "seal_keys", NULL);
  if (!r) {
    gw_buf_printf(err, "postgresql: %s", PQerrorMessage(c));
    return GW_ERR_IO;
  }
  int rv = GW_OK;
  bool current_seen = false;
  for (int i = 0; rv == GW_OK && i < PQntuples(r); i++) {
    const char *id = g_str(r, i, 0);
    struct gw_buf p;
    gw_buf_init(&p, 4096);
    if (!pg_keyring) {
      gw_buf_printf(err, "postgresql: the store holds content sealed under key '%s'; set store.key_file\n", id);
      rv = GW_ERR_CONF;
    } else if (!gw_keyring_has(pg_keyring, id)) {
      gw_buf_printf(err, "postgresql: content is sealed under key '%s', which store.key_file does not hold\n", id);
      rv = GW_ERR_CONF;
    } else if (gw_unseal(pg_keyring, 0, (const uint8_t *)PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), &p) !=
                   GW_OK ||
               p.len != 15 || memcmp(p.data, "cergw key check", 15) != 0) {
      gw_buf_printf(err, "postgresql: key '%s' in store.key_file is not the key the store's rows were sealed with\n",
                    id);
      rv = GW_ERR_CONF;
    } else if (!strcmp(id, gw_keyring_current(pg_keyring))) {
      current_seen = true;
    }
    gw_buf_cleanup(&p);
  }
  PQclear(r);
  if (rv == GW_OK && pg_keyring && !current_seen) {
    struct gw_buf cv;
    gw_buf_init(&cv, 4096);
    struct pq p = {0};
    p_text(&p, gw_keyring_current(pg_keyring));
    if (gw_seal(pg_keyring, 0, (const uint8_t *)"cergw key check", 15, &cv) == GW_OK) {
      p_bin(&p, cv.data, cv.len);
      p_i64(&p, gw_wall_ms());
      rv = exec_p(c,
                  "INSERT INTO seal_keys(id, check_value, since_ms) VALUES($1, $2, $3::bigint) ON CONFLICT (id) DO "
                  "NOTHING",
                  &p, "seal_keys", NULL);
    } else {
      rv = GW_ERR_IO;
    }
    gw_buf_cleanup(&cv);
  }
  return rv;
}

/* ---- the rules with memory ----
 * Decided inside the writer's transaction (READ COMMITTED). What two instances (or two writers) could
 * decide at once on the same fact is serialized by a transaction-scoped advisory lock on that fact —
 * a schedule's slots, a slot, an appointment, a resource's owner — taken before it is read, so the
 * second transaction reads what the first committed. Two transactions locking in opposite orders
 * deadlock: PostgreSQL cancels one (40P01) and its batch runs again, as after a unique-key conflict. */
struct pg_memq {
  struct gw_memq base;
  struct pg_store *st;
};

/* Takes the advisory lock of fact (|kind|, |a|, |b|) until the transaction ends. GW_OK or GW_ERR_IO. */
static int lock_fact(const char *kind, const char *a, const char *b) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a over kind, a, b */
  const char *parts[] = {kind, "\x1f", a, "\x1f", b ? b : ""};
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
    for (const unsigned char *c = (const unsigned char *)parts[i]; *c; c++)
      h = (h ^ *c) * 1099511628211ull;
  struct pq p = {0};
  p_i64(&p, (int64_t)h);
  return exec_p(cur_w->c, "SELECT pg_advisory_xact_lock($1::bigint)", &p, "lock_fact", &cur_w->retry);
}

static int pg_slot_overlap(struct gw_memq *gm, const char *caller, const struct gw_slotfact *f, char *other, size_t n) {
  (void)gm;
  if (lock_fact("schedule", caller, f->schedule) != GW_OK)
    return GW_ERR_IO;
  char h1[65], h2[65];
  struct pq p = {0};
  p_text(&p, caller);
  p_text(&p, kh(f->ident, h1));
  p_text(&p, kh(f->schedule, h2));
  p_i64(&p, f->start_ms);
  p_i64(&p, f->end_ms);
  PGresult *r = run(cur_w->c,
                    "SELECT label, ident, msg_id FROM slots WHERE caller = $1 AND schedule = $3 AND ident <> $2"
                    " AND start_ms < $5::bigint AND end_ms > $4::bigint LIMIT 1",
                    &p, "slot_overlap", &cur_w->retry);
  if (!r)
    return GW_ERR_IO;
  int found = PQntuples(r) > 0;
  if (found) {
    if (PQgetisnull(r, 0, 0))
      snprintf(other, n, "%s", g_str(r, 0, 1));
    else
      unseal_into(r, 0, 0, g_i64(r, 0, 2), other, n);
  }
  PQclear(r);
  return found;
}

static int pg_slot_state(struct gw_memq *gm, const char *caller, const char *ident) {
  (void)gm;
  if (lock_fact("slot", caller, ident) != GW_OK)
    return GW_ERR_IO;
  char h[65];
  struct pq p = {0};
  p_text(&p, caller);
  p_text(&p, kh(ident, h));
  PGresult *r =
      run(cur_w->c, "SELECT free FROM slots WHERE caller = $1 AND ident = $2", &p, "slot_state", &cur_w->retry);
  if (!r)
    return GW_ERR_IO;
  int v = PQntuples(r) ? g_i64(r, 0, 0) != 0 : GW_ERR_NOTFOUND;
  PQclear(r);
  return v;
}

static int pg_slot_put(struct gw_memq *gm, const char *caller, const struct gw_slotfact *f, int64_t msg_id) {
  (void)gm;
  char h1[65], h2[65];
  struct gw_buf label;
  sealv(msg_id, f->ident, strlen(f->ident), &label);
  struct pq p = {0};
  p_text(&p, caller);
  p_text(&p, kh(f->ident, h1));
  p_text(&p, kh(f->schedule, h2));
  p_i64(&p, f->start_ms);
  p_i64(&p, f->end_ms);
  p_i64(&p, f->free);
  p_i64(&p, msg_id);
  p_bin(&p, label.data, label.len);
  int rv = exec_p(cur_w->c,
                  "INSERT INTO slots(caller, ident, schedule, start_ms, end_ms, free, msg_id, label)"
                  " VALUES($1, $2, $3, $4::bigint, $5::bigint, $6::bigint, $7::bigint, $8) ON CONFLICT (caller, ident)"
                  " DO UPDATE SET schedule = EXCLUDED.schedule, start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms,"
                  " free = EXCLUDED.free, msg_id = EXCLUDED.msg_id, label = EXCLUDED.label",
                  &p, "slot_put", &cur_w->retry);
  gw_buf_cleanup(&label);
  return rv;
}

static int pg_slot_set_free(struct gw_memq *gm, const char *caller, const char *ident, int is_free) {
  (void)gm;
  char h[65];
  struct pq p = {0};
  p_text(&p, caller);
  p_text(&p, kh(ident, h));
  p_i64(&p, is_free ? 1 : 0);
  return exec_p(cur_w->c, "UPDATE slots SET free = $3::bigint WHERE caller = $1 AND ident = $2", &p, "slot_set_free",
                &cur_w->retry);
}

static int pg_owner_get(struct gw_memq *gm, const char *key, char *owner, size_t n) {
  (void)gm;
  if (lock_fact("owner", key, NULL) != GW_OK)
    return GW_ERR_IO;
  char h[65];
  struct pq p = {0};
  p_text(&p, kh(key, h));
  PGresult *r = run(cur_w->c, "SELECT owner FROM owners WHERE key = $1", &p, "owner_get", &cur_w->retry);
  if (!r)
    return GW_ERR_IO;
  int found = PQntuples(r) > 0;
  if (found)
    snprintf(owner, n, "%s", g_str(r, 0, 0));
  PQclear(r);
  return found;
}

static int pg_owner_put(struct gw_memq *gm, const char *key, const char *owner, int64_t msg_id) {
  (void)gm;
  char h[65];
  struct pq p = {0};
  p_text(&p, kh(key, h));
  p_text(&p, owner);
  p_i64(&p, msg_id);
  return exec_p(cur_w->c,
                "INSERT INTO owners(key, owner, msg_id) VALUES($1, $2, $3::bigint) ON CONFLICT (key) DO NOTHING", &p,
                "owner_put", &cur_w->retry);
}

static int pg_appt_get(struct gw_memq *gm, const char *caller, const char *key, struct gw_apptfact *out) {
  (void)gm;
  if (lock_fact("appointment", caller, key) != GW_OK)
    return GW_ERR_IO;
  char h[65];
  struct pq p = {0};
  p_text(&p, caller);
  p_text(&p, kh(key, h));
  PGresult *r =
      run(cur_w->c, "SELECT status, start_ms, slots, msg_id FROM appointments WHERE caller = $1 AND akey = $2", &p,
          "appt_get", &cur_w->retry);
  if (!r)
    return GW_ERR_IO;
  int found = PQntuples(r) > 0;
  if (found) {
    snprintf(out->status, sizeof(out->status), "%s", g_str(r, 0, 0));
    out->start_ms = g_i64(r, 0, 1);
    unseal_into(r, 0, 2, g_i64(r, 0, 3), out->slots, sizeof(out->slots));
  }
  PQclear(r);
  return found;
}

static int pg_appt_put(struct gw_memq *gm, const char *caller, const char *key, const struct gw_apptfact *f,
                       int64_t msg_id) {
  (void)gm;
  char h[65];
  struct gw_buf slots;
  sealv(msg_id, f->slots, strlen(f->slots), &slots);
  struct pq p = {0};
  p_text(&p, caller);
  p_text(&p, kh(key, h));
  p_text(&p, f->status);
  p_i64(&p, f->start_ms);
  p_bin(&p, slots.data, slots.len);
  p_i64(&p, msg_id);
  int rv = exec_p(cur_w->c,
                  "INSERT INTO appointments(caller, akey, status, start_ms, slots, msg_id) VALUES($1, $2, $3,"
                  " $4::bigint, $5, $6::bigint) ON CONFLICT (caller, akey) DO UPDATE SET status = EXCLUDED.status,"
                  " start_ms = EXCLUDED.start_ms, slots = EXCLUDED.slots, msg_id = EXCLUDED.msg_id",
                  &p, "appt_put", &cur_w->retry);
  gw_buf_cleanup(&slots);
  return rv;
}

/* ---- submits ---- */

static int load_states(struct gw_submit *s) {
  struct pq p = {0};
  p_i64(&p, s->msg_id);
  PGresult *r = run(cur_w->c,
                    "SELECT backend, state, attempts, last_status, last_error FROM deliveries WHERE msg_id = $1::bigint"
                    " ORDER BY id",
                    &p, "load_states", &cur_w->retry);
  if (!r)
    return GW_ERR_IO;
  s->nres = 0;
  for (int i = 0; i < PQntuples(r) && s->nres < GW_MAX_BACKENDS; i++) {
    struct gw_dresult *d = &s->res[s->nres++];
    snprintf(d->backend, sizeof(d->backend), "%s", g_str(r, i, 0));
    d->state = (int)g_i64(r, i, 1);
    d->attempts = (int)g_i64(r, i, 2);
    d->last_status = (int)g_i64(r, i, 3);
    unseal_into(r, i, 4, s->msg_id, d->error, sizeof(d->error));
  }
  PQclear(r);
  return GW_OK;
}

/* An idempotent repeat (1), none (0) or GW_ERR_IO. */
static int find_dup(struct gw_submit *s) {
  if (!s->idem_key)
    return 0;
  char h[65];
  struct pq p = {0};
  p_text(&p, kh(s->idem_key, h));
  PGresult *r = run(cur_w->c,
                    "SELECT id, answer_status, answer_ctype, answer, idem_digest, answer_meta, answer IS NULL FROM"
                    " messages WHERE idem_key = $1",
                    &p, "find_idempotency_key", &cur_w->retry);
  if (!r)
    return GW_ERR_IO;
  if (!PQntuples(r)) {
    PQclear(r);
    return 0;
  }
  s->msg_id = g_i64(r, 0, 0);
  const char *was = PQgetisnull(r, 0, 4) ? NULL : g_str(r, 0, 4);
  if (was && s->digest[0] && strcmp(was, s->digest) != 0) {
    PQclear(r);
    s->status = GW_SUB_CONFLICT;
    return 1;
  }
  if (!g_i64(r, 0, 6)) {
    s->answer_status = (int)g_i64(r, 0, 1);
    snprintf(s->answer_ctype, sizeof(s->answer_ctype), "%s", g_str(r, 0, 2));
    free(s->answer);
    s->answer = NULL;
    if (unsealv(r, 0, 3, s->msg_id, &s->answer, &s->answer_len) != GW_OK)
      s->answer_len = 0;
    const char *meta = g_str(r, 0, 5), *tab = strchr(meta, '\t');
    if (tab) {
      snprintf(s->answer_location, sizeof(s->answer_location), "%.*s", (int)(tab - meta), meta);
      snprintf(s->answer_etag, sizeof(s->answer_etag), "%s", tab + 1);
    }
  }
  PQclear(r);
  s->status = GW_SUB_DUPLICATE;
  return load_states(s) == GW_OK ? 1 : GW_ERR_IO;
}

/* "p1=delivered apkolce=queued" for message |id|. */
static int summarize(PGconn *c, int64_t id, char *summary, size_t n, bool *retry) {
  struct pq p = {0};
  p_i64(&p, id);
  PGresult *r =
      run(c, "SELECT backend, state FROM deliveries WHERE msg_id = $1::bigint ORDER BY id", &p, "summary", retry);
  if (!r)
    return GW_ERR_IO;
  size_t o = 0;
  summary[0] = 0;
  for (int i = 0; i < PQntuples(r) && o < n; i++)
    o += (size_t)snprintf(summary + o, n - o, "%s%s=%s", o ? " " : "", g_str(r, i, 0),
                          gw_dstate_name((int)g_i64(r, i, 1)));
  PQclear(r);
  return GW_OK;
}

static int latest(PGconn *c, const char *rkey, char **canonical, char *summary, size_t n, bool *retry) {
  *canonical = NULL;
  summary[0] = 0;
  struct pq p = {0};
  p_text(&p, rkey);
  PGresult *r = run(c,
                    "SELECT m.id, m.canonical FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE d.rkey = $1"
                    " ORDER BY d.id DESC LIMIT 1",
                    &p, "latest", retry);
  if (!r)
    return GW_ERR_IO;
  if (!PQntuples(r)) {
    PQclear(r);
    return GW_ERR_NOTFOUND;
  }
  int64_t id = g_i64(r, 0, 0);
  size_t len;
  int rv = unsealv(r, 0, 1, id, (uint8_t **)canonical, &len);
  PQclear(r);
  if (rv == GW_OK)
    rv = summarize(c, id, summary, n, retry);
  if (rv) {
    free(*canonical);
    *canonical = NULL;
  }
  return rv;
}

/* A version's body: its own, or the resource at its entry of its message's canonical form. */
static int row_body(struct pg_store *st, const PGresult *r, int row, int col, uint8_t **out, size_t *len) {
  int64_t msg_id = g_i64(r, row, col + 1);
  if (PQgetlength(r, row, col) > 0)
    return unsealv(r, row, col, msg_id, out, len);
  *out = NULL;
  *len = 0;
  if (!st->base.hooks.extract)
    return GW_ERR_NOTFOUND;
  struct pq p = {0};
  p_i64(&p, msg_id);
  PGresult *c =
      run(cur_w->c, "SELECT canonical FROM messages WHERE id = $1::bigint", &p, "resource_body", &cur_w->retry);
  if (!c)
    return GW_ERR_IO;
  int rv = GW_ERR_NOTFOUND;
  if (PQntuples(c) && PQgetlength(c, 0, 0) > 0) {
    uint8_t *canon = NULL;
    size_t clen = 0;
    rv = unsealv(c, 0, 0, msg_id, &canon, &clen);
    if (rv == GW_OK)
      rv = st->base.hooks.extract(st->base.hooks.extract_ud, canon, clen, (int)g_i64(r, row, col + 2), out, len);
    free(canon);
  }
  PQclear(c);
  return rv;
}

static int res_latest(struct pg_store *st, const char *clinic, const struct gw_resfact *rf, char *id, size_t idn,
                      int *version, uint8_t **body, size_t *blen) {
  for (int pass = 0; pass < 2; pass++) {
    const char *key = pass == 0 ? rf->ident : rf->id;
    if (!key[0])
      continue;
    char h[65];
    struct pq p = {0};
    p_text(&p, clinic);
    p_text(&p, rf->rtype);
    p_text(&p, pass == 0 ? kh(key, h) : key);
    PGresult *r =
        run(cur_w->c,
            pass == 0 ? "SELECT id, version, body, msg_id, entry FROM resources WHERE clinic = $1 AND rtype = $2"
                        " AND ident = $3 ORDER BY version DESC LIMIT 1"
                      : "SELECT id, version, body, msg_id, entry FROM resources WHERE clinic = $1 AND rtype = $2"
                        " AND id = $3 ORDER BY version DESC LIMIT 1",
            &p, "resource_latest", &cur_w->retry);
    if (!r)
      return GW_ERR_IO;
    if (PQntuples(r)) {
      snprintf(id, idn, "%s", g_str(r, 0, 0));
      *version = (int)g_i64(r, 0, 1);
      if (body && row_body(st, r, 0, 2, body, blen) != GW_OK)
        *body = NULL;
      PQclear(r);
      return 1;
    }
    PQclear(r);
  }
  return 0;
}

static int keep_versions(struct pg_store *st, struct gw_submit *s, int64_t now) {
  for (int i = 0; i < s->nresf; i++) {
    struct gw_resfact *r = &s->resf[i];
    char id[72] = "";
    int version = 0;
    uint8_t *prev = NULL, *merged = NULL;
    size_t plen = 0;
    int rv = res_latest(st, s->caller, r, id, sizeof(id), &version, r->patch ? &prev : NULL, &plen);
    if (rv < 0)
      return GW_ERR_IO;
    if (!rv)
      gw_store_new_id(r, s->msg_id, i, id, sizeof(id));
    const uint8_t *body;
    size_t blen;
    if (gw_store_version_body(&st->base.hooks, r, prev, plen, &body, &blen, &merged) != GW_OK)
      continue; /* a PATCH with nothing to merge into: no version kept */
    char h1[65], h2[65];
    struct gw_buf refs;
    gw_buf_init(&refs, 1 << 16);
    gw_store_refkeys(pg_keyring, r->refs, &refs);
    gw_buf_append(&refs, "", 1);
    struct gw_buf sealed;
    sealv(s->msg_id, body, body ? blen : 0, &sealed);
    struct pq p = {0};
    p_text(&p, s->caller);
    p_text(&p, r->rtype);
    p_text(&p, id);
    p_i64(&p, version + 1);
    p_i64(&p, s->msg_id);
    p_i64(&p, now);
    p_text(&p, kh(r->ident, h1));
    p_text(&p, kh(r->identvalue, h2));
    p_text(&p, r->status);
    p_i64(&p, r->date_ms);
    p_text(&p, refs.data ? (const char *)refs.data : "");
    p_bin(&p, sealed.data, sealed.len);
    p_i64(&p, r->entry);
    rv = exec_p(cur_w->c,
                "INSERT INTO resources(clinic, rtype, id, version, msg_id, updated_ms, ident, identvalue, status,"
                " date_ms, refs, body, entry) VALUES($1, $2, $3, $4::bigint, $5::bigint, $6::bigint, $7, $8, $9,"
                " $10::bigint, $11, $12, $13::bigint)",
                &p, "keep_version", &cur_w->retry);
    gw_buf_cleanup(&sealed);
    gw_buf_cleanup(&refs);
    free(merged);
    if (rv != GW_OK)
      return rv;
    snprintf(r->out_id, sizeof(r->out_id), "%s", id);
    r->out_version = version + 1;
  }
  return GW_OK;
}

/* Delivery |d| of message |s|: owned by this instance, unless its resource has an earlier delivery
 * to the same backend still pending elsewhere (then held: claimed after that one). */
static int insert_deliveries(struct pg_store *st, struct gw_submit *s, int64_t now) {
  for (int i = 0; i < s->nd; i++) {
    struct gw_delivery *d = &s->d[i];
    struct gw_buf sealed;
    sealv(s->msg_id, d->payload, d->len, &sealed);
    struct pq p = {0};
    p_i64(&p, s->msg_id);
    p_text(&p, d->backend);
    p_text(&p, d->rkey);
    p_text(&p, d->path);
    p_text(&p, d->ctype);
    p_bin(&p, sealed.data, sealed.len);
    p_i64(&p, now);
    p_text(&p, d->ikey);
    p_text(&p, st->instance);
    PGresult *r = run(cur_w->c,
                      "INSERT INTO deliveries(msg_id, backend, rkey, path, ctype, payload, state, created_ms, ikey,"
                      " owner) SELECT $1::bigint, $2, $3, $4, $5, $6, 0, $7::bigint, $8,"
                      " CASE WHEN EXISTS (SELECT 1 FROM deliveries e WHERE e.rkey = $3 AND e.backend = $2"
                      "  AND e.state IN (0, 4) AND e.owner IS DISTINCT FROM $9) THEN NULL ELSE $9 END"
                      " RETURNING id, owner IS NULL",
                      &p, "insert_delivery", &cur_w->retry);
    gw_buf_cleanup(&sealed);
    if (!r)
      return GW_ERR_IO;
    d->id = g_i64(r, 0, 0);
    d->held = (int)g_i64(r, 0, 1);
    PQclear(r);
    d->msg_id = s->msg_id;
    d->created_ms = now;
    d->state = GW_DS_QUEUED;
  }
  return GW_OK;
}

static int savepoint(const char *sql) { return exec_p(cur_w->c, sql, NULL, sql, &cur_w->retry); }

/* Inserts |s| inside the open transaction (see the SQLite store's insert_submit). */
static int insert_submit(struct pg_store *st, struct gw_submit *s, int64_t now) {
  if (s->match_rkey) {
    char *canon = NULL;
    int rv = latest(cur_w->c, s->match_rkey, &canon, s->match_summary, sizeof(s->match_summary), &cur_w->retry);
    free(canon);
    if (rv == GW_OK) {
      s->status = GW_SUB_MATCHED;
      return GW_OK;
    }
    if (rv != GW_ERR_NOTFOUND)
      return GW_ERR_IO;
  }
  int dup = find_dup(s);
  if (dup)
    return dup > 0 ? GW_OK : GW_ERR_IO;
  if (s->if_match && s->nresf) {
    char id[72];
    int version = 0;
    if (res_latest(st, s->caller, &s->resf[0], id, sizeof(id), &version, NULL, NULL) < 0)
      return GW_ERR_IO;
    if (version != s->if_match) {
      s->status = GW_SUB_PRECONDITION;
      s->current_version = version;
      return GW_OK;
    }
  }
  if (savepoint("SAVEPOINT sub") != GW_OK)
    return GW_ERR_IO;
  PGresult *r = run(cur_w->c, "SELECT nextval('messages_id_seq')", NULL, "message_id", &cur_w->retry);
  if (!r)
    return GW_ERR_IO;
  s->msg_id = g_i64(r, 0, 0);
  PQclear(r);
  char h[65];
  struct gw_buf orig, canon;
  sealv(s->msg_id, s->original, s->original_len, &orig);
  sealv(s->msg_id, s->canonical, s->canonical_len, &canon);
  struct pq p = {0};
  p_i64(&p, s->msg_id);
  p_i64(&p, now);
  p_text(&p, s->caller);
  p_text(&p, s->dialect);
  p_text(&p, s->op);
  p_text(&p, s->idem_key ? kh(s->idem_key, h) : NULL);
  p_text(&p, s->rtype);
  p_text(&p, s->rid[0] ? s->rid : NULL);
  p_bin(&p, orig.data, orig.len);
  p_bin(&p, canon.data, canon.len);
  p_text(&p, s->digest[0] ? s->digest : NULL);
  int rv =
      exec_p(cur_w->c,
             "INSERT INTO messages(id, received_ms, caller, dialect, op, idem_key, rtype, rid, original, canonical,"
             " idem_digest) VALUES($1::bigint, $2::bigint, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
             &p, "insert_message", &cur_w->retry);
  gw_buf_cleanup(&orig);
  gw_buf_cleanup(&canon);
  if (rv == GW_OK)
    rv = insert_deliveries(st, s, now);
  for (int i = 0; rv == GW_OK && i < s->npesels; i++) {
    struct pq q = {0};
    p_text(&q, kh(s->pesels[i], h));
    p_i64(&q, s->msg_id);
    rv = exec_p(cur_w->c, "INSERT INTO patients(hash, msg_id) VALUES($1, $2::bigint) ON CONFLICT DO NOTHING", &q,
                "patient_index", &cur_w->retry);
  }
  if (rv == GW_OK && st->base.hooks.memory) {
    struct pg_memq m = {.base = {.ops = &pg_memq_ops}, .st = st};
    rv = st->base.hooks.memory(st->base.hooks.memory_ud, &m.base, s);
  }
  if (rv == GW_OK)
    rv = keep_versions(st, s, now);
  if (rv != GW_OK) {
    if (cur_w->retry)
      return GW_ERR_IO; /* the whole batch runs again */
    if (savepoint("ROLLBACK TO SAVEPOINT sub") != GW_OK || savepoint("RELEASE SAVEPOINT sub") != GW_OK)
      return GW_ERR_IO;
    if (rv == GW_ERR_INVAL) {
      s->status = GW_SUB_REJECTED;
      s->msg_id = 0;
      for (int i = 0; i < s->nd; i++)
        s->d[i].id = 0;
      return GW_OK;
    }
    return GW_ERR_IO;
  }
  if (savepoint("RELEASE SAVEPOINT sub") != GW_OK)
    return GW_ERR_IO;
  s->status = GW_SUB_ACCEPTED;
  return GW_OK;
}

static int apply_update(const struct gw_witem *it, int64_t now) {
  if (it->kind == W_UPDATE) {
    struct gw_buf err;
    sealv(it->d.msg_id, it->d.last_error, strlen(it->d.last_error), &err);
    struct pq p = {0};
    p_i64(&p, it->d.id);
    p_i64(&p, it->d.state);
    p_i64(&p, it->d.attempts);
    p_i64(&p, it->d.next_ms);
    p_i64(&p, it->d.last_status);
    p_bin(&p, err.data, err.len);
    p_i64(&p, now);
    int rv = exec_p(cur_w->c,
                    "UPDATE deliveries SET state = $2::bigint, attempts = $3::bigint, next_ms = $4::bigint,"
                    " last_status = $5::bigint, last_error = $6, done_ms = CASE WHEN $2::bigint IN (1, 2, 3) THEN"
                    " $7::bigint ELSE NULL END WHERE id = $1::bigint",
                    &p, "update_delivery", &cur_w->retry);
    if (rv == GW_OK && it->d.attempts > 0) {
      struct pq a = {0};
      p_i64(&a, it->d.id);
      p_i64(&a, it->d.attempts);
      p_i64(&a, now);
      p_i64(&a, it->d.state);
      p_i64(&a, it->d.last_status);
      p_bin(&a, err.data, err.len);
      rv = exec_p(cur_w->c,
                  "INSERT INTO attempts(delivery_id, attempt, at_ms, state, status, answer) VALUES($1::bigint,"
                  " $2::bigint, $3::bigint, $4::bigint, $5::bigint, $6) ON CONFLICT DO NOTHING",
                  &a, "keep_attempt", &cur_w->retry);
    }
    gw_buf_cleanup(&err);
    return rv;
  }
  struct gw_buf body;
  sealv(it->msg_id, it->body, it->len, &body);
  struct pq p = {0};
  p_i64(&p, it->msg_id);
  p_i64(&p, it->status);
  p_text(&p, it->ctype);
  p_bin(&p, body.data, body.len);
  p_text(&p, it->meta);
  int rv = exec_p(cur_w->c,
                  "UPDATE messages SET answer_status = $2::bigint, answer_ctype = $3, answer = $4, answer_meta = $5"
                  " WHERE id = $1::bigint",
                  &p, "store_answer", &cur_w->retry);
  gw_buf_cleanup(&body);
  return rv;
}

/* Past store.max_bytes (the database's size, read at most every 5 s): new messages are refused. */
static bool store_full(struct pg_store *st, char *why, size_t n) {
  if (!st->max_bytes)
    return false;
  int64_t now = gw_wall_ms();
  if (now - st->size_checked_ms > 5000) {
    PGresult *r = run(cur_w->c, "SELECT pg_database_size(current_database())", NULL, "database_size", NULL);
    if (r) {
      st->size_seen = (uint64_t)g_i64(r, 0, 0);
      st->size_checked_ms = now;
      PQclear(r);
    }
  }
  if (st->size_seen <= st->max_bytes)
    return false;
  snprintf(why, n, "the store is full (%llu bytes of store.max_bytes %llu): nothing was accepted; send it again later",
           (unsigned long long)st->size_seen, (unsigned long long)st->max_bytes);
  return true;
}

/* Clears what a run of the batch wrote into its submits, before it runs again. */
static void reset_batch(struct gw_witem *batch) {
  for (struct gw_witem *it = batch; it; it = it->next) {
    if (it->kind != W_SUBMIT)
      continue;
    struct gw_submit *s = it->s;
    s->status = GW_SUB_ACCEPTED;
    s->msg_id = 0;
    s->appt_unknown = 0;
    s->reject_rule[0] = s->reject_en[0] = s->reject_pl[0] = s->match_summary[0] = 0;
    s->nres = 0;
    free(s->answer);
    s->answer = NULL;
    s->answer_len = 0;
    for (int i = 0; i < s->nd; i++)
      s->d[i].id = 0, s->d[i].held = 0;
    for (int i = 0; i < s->nresf; i++)
      s->resf[i].out_id[0] = 0, s->resf[i].out_version = 0;
  }
}

/* One transaction for the batch, run again while another instance wins a conflict. GW_OK when it
 * committed. */
static int write_batch(struct pg_store *st, struct gw_witem *batch, int n, int64_t now) {
  bool has_submit = false;
  for (struct gw_witem *it = batch; it && !has_submit; it = it->next)
    has_submit = it->kind == W_SUBMIT;
  if (ensure(&cur_w->c, st->conninfo, "cergw-store") != GW_OK) {
    gw_log(GW_LOG_ERROR, "store_commit_failed", "detail=\"%.200s\" items=%d", PQerrorMessage(cur_w->c), n);
    return GW_ERR_IO;
  }
  char full[256];
  if (has_submit && store_full(st, full, sizeof(full))) {
    for (struct gw_witem *it = batch; it; it = it->next)
      if (it->kind == W_SUBMIT) {
        it->s->status = GW_SUB_FAILED;
        snprintf(it->s->reject_en, sizeof(it->s->reject_en), "%s", full);
        snprintf(it->s->reject_pl, sizeof(it->s->reject_pl), "%s", full);
        it->kind = W_FULL;
      }
    has_submit = false;
  }
  for (int attempt = 0;; attempt++) {
    cur_w->retry = false;
    int rv = exec_p(cur_w->c, has_submit ? "BEGIN" : "BEGIN; SET LOCAL synchronous_commit = off", NULL, "begin", NULL);
    for (struct gw_witem *it = batch; it && rv == GW_OK; it = it->next) {
      if (it->kind == W_SUBMIT) {
        if (insert_submit(st, it->s, now) != GW_OK)
          rv = GW_ERR_IO; /* a failed statement aborts the transaction: the batch fails as a whole */
      } else if (it->kind == W_UPDATE || it->kind == W_ANSWER) {
        rv = apply_update(it, now);
      }
    }
    if (rv == GW_OK)
      rv = exec_p(cur_w->c, "COMMIT", NULL, "commit", &cur_w->retry);
    if (rv == GW_OK) {
      atomic_fetch_add(&pg_commits, 1);
      return GW_OK;
    }
    PQclear(PQexec(cur_w->c, "ROLLBACK"));
    if (!cur_w->retry || attempt >= MAX_RETRIES) {
      gw_log(GW_LOG_ERROR, "store_commit_failed", "detail=\"%.200s\" items=%d attempts=%d", PQerrorMessage(cur_w->c), n,
             attempt + 1);
      return GW_ERR_IO;
    }
    atomic_fetch_add(&pg_retries, 1);
    reset_batch(batch);
    usleep((useconds_t)(200 + (gw_random_u32() % 2000u) * (unsigned)(attempt < 8 ? attempt + 1 : 8)));
  }
}

static void run_lookup(struct gw_witem *it) {
  char *canon = NULL, summary[256];
  int rv = latest(cur_w->c, (const char *)it->body, &canon, summary, sizeof(summary), NULL);
  it->fn(it->ud, rv, canon, summary);
  free(canon);
}

static void run_read(struct pg_store *st, struct gw_witem *it) {
  const struct gw_rquery *rq = &it->rq;
  int count = rq->count > 0 && rq->count <= 1000 ? rq->count : 50, total = 0, n = 0, rv = GW_OK;
  struct gw_rrow *rows = calloc((size_t)count, sizeof(*rows));
  if (!rows) {
    it->read_fn(it->ud, GW_ERR_NOMEM, NULL, 0, 0);
    return;
  }
  char h1[65], h2[65], h3[65];
  struct pq p = {0};
  p_text(&p, rq->clinic);
  p_text(&p, rq->rtype);
  p_text(&p, rq->id);
  p_i64(&p, rq->version);
  p_text(&p, rq->ident[0] ? kh(rq->ident, h1) : "");
  p_text(&p, rq->identvalue[0] ? kh(rq->identvalue, h2) : "");
  p_text(&p, rq->status);
  p_text(&p, rq->ref[0] ? kh(rq->ref, h3) : "");
  p_i64(&p, rq->date_ge);
  p_i64(&p, rq->date_lt);
  p_i64(&p, rq->updated_ge);
  p_i64(&p, rq->updated_lt);
  p_i64(&p, rq->history || rq->version ? 1 : 0);
  p_i64(&p, count);
  p_i64(&p, rq->offset > 0 ? rq->offset : 0);
#define PG_READ_WHERE                                                                                                  \
  " FROM resources r WHERE r.clinic = $1 AND r.rtype = $2 AND ($3 = '' OR r.id = $3)"                                  \
  " AND ($4::bigint = 0 OR r.version = $4::bigint)"                                                                    \
  " AND ($13::bigint = 1 OR r.version = (SELECT MAX(x.version) FROM resources x WHERE x.clinic = r.clinic"             \
  "  AND x.rtype = r.rtype AND x.id = r.id))"                                                                          \
  " AND ($5 = '' OR r.ident = $5) AND ($6 = '' OR r.identvalue = $6) AND ($7 = '' OR r.status = $7)"                   \
  " AND ($8 = '' OR strpos(r.refs, E'\\n' || $8 || E'\\n') > 0) AND ($9::bigint = 0 OR r.date_ms >= $9::bigint)"       \
  " AND ($10::bigint = 0 OR r.date_ms < $10::bigint) AND ($11::bigint = 0 OR r.updated_ms >= $11::bigint)"             \
  " AND ($12::bigint = 0 OR r.updated_ms < $12::bigint)"
  PGresult *c = run(cur_w->c, "SELECT COUNT(*), $14::bigint + $15::bigint" PG_READ_WHERE, &p, "read", NULL);
  PGresult *q = c ? run(cur_w->c,
                        "SELECT r.id, r.version, r.updated_ms, r.msg_id, r.body, r.msg_id, r.entry" PG_READ_WHERE
                        " ORDER BY r.updated_ms DESC, r.id, r.version DESC LIMIT $14::bigint OFFSET $15::bigint",
                        &p, "read", NULL)
                  : NULL;
  if (!c || !q) {
    rv = GW_ERR_IO;
  } else {
    total = (int)g_i64(c, 0, 0);
    for (int i = 0; i < PQntuples(q) && n < count; i++) {
      struct gw_rrow *r = &rows[n];
      snprintf(r->id, sizeof(r->id), "%s", g_str(q, i, 0));
      r->version = (int)g_i64(q, i, 1);
      r->updated_ms = g_i64(q, i, 2);
      r->msg_id = g_i64(q, i, 3);
      if ((rv = row_body(st, q, i, 4, &r->body, &r->len)) != GW_OK)
        break;
      n++;
    }
  }
  PQclear(c);
  PQclear(q);
  for (int i = 0; rv == GW_OK && i < n; i++)
    rv = summarize(cur_w->c, rows[i].msg_id, rows[i].summary, sizeof(rows[i].summary), NULL);
  it->read_fn(it->ud, rv == GW_OK && !n && !rq->search ? GW_ERR_NOTFOUND : rv, rows, n, total);
  for (int i = 0; i < n; i++)
    free(rows[i].body);
  free(rows);
}

/* ---- retention (as the SQLite store's: small steps between batches) ---- */
#define PRUNE_STEP    16
#define PG_PRUNE_DONE "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = messages.id AND d.state <> 1)"
#define PG_PRUNE_REJECTED                                                                                              \
  "($2::bigint > 0 AND received_ms < $2::bigint AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id ="           \
  " messages.id AND d.state NOT IN (1, 2)))"

static int prune_sql(const char *const *sql, size_t n, int64_t cut, int64_t cut_rejected, long *changes) {
  for (size_t i = 0; i < n; i++) {
    struct pq p = {0};
    p_i64(&p, cut);
    if (strstr(sql[i], "$2"))
      p_i64(&p, cut_rejected);
    if (!strstr(sql[i], "$1"))
      p.n = 0;
    PGresult *r = run(cur_w->c, sql[i], &p, "prune", NULL);
    if (!r)
      return GW_ERR_IO;
    if (i == 1)
      *changes = atol(PQcmdTuples(r));
    PQclear(r);
  }
  return GW_OK;
}

static int prune_step(struct pg_store *st, int64_t now, long *content, long *metadata) {
  *content = *metadata = 0;
  if (!st->content_ms && !st->metadata_ms)
    return GW_OK;
  if (ensure(&cur_w->c, st->conninfo, "cergw-store") != GW_OK)
    return GW_ERR_IO;
  if (exec_p(cur_w->c, "BEGIN; SET LOCAL synchronous_commit = off", NULL, "prune", NULL) != GW_OK)
    return GW_ERR_IO;
  int rv = exec_p(cur_w->c, "CREATE TEMP TABLE IF NOT EXISTS prune_ids(id bigint PRIMARY KEY) ON COMMIT DELETE ROWS",
                  NULL, "prune", NULL);
  if (rv == GW_OK && st->content_ms) {
    static const char *const content_sql[] = {
        "DELETE FROM prune_ids",
        "INSERT INTO prune_ids SELECT id FROM messages WHERE (length(original) > 0 OR length(canonical) > 0 OR answer"
        " IS NOT NULL) AND ((received_ms < $1::bigint AND " PG_PRUNE_DONE ") OR " PG_PRUNE_REJECTED
        ") ORDER BY received_ms LIMIT 16 FOR UPDATE SKIP LOCKED",
        "UPDATE messages SET original = '', canonical = '', answer = NULL WHERE id IN (SELECT id FROM prune_ids)",
        "UPDATE deliveries SET payload = '', last_error = '' WHERE msg_id IN (SELECT id FROM prune_ids)",
        "UPDATE attempts SET answer = '' WHERE delivery_id IN (SELECT id FROM deliveries WHERE msg_id IN (SELECT id"
        " FROM prune_ids))",
        "DELETE FROM resources WHERE msg_id IN (SELECT id FROM prune_ids)",
    };
    rv = prune_sql(content_sql, sizeof(content_sql) / sizeof(content_sql[0]), now - st->content_ms,
                   st->rejected_ms ? now - st->rejected_ms : 0, content);
  }
  if (rv == GW_OK && st->metadata_ms) {
    static const char *const meta_sql[] = {
        "DELETE FROM prune_ids",
        "INSERT INTO prune_ids SELECT id FROM messages WHERE ((received_ms < $1::bigint AND " PG_PRUNE_DONE
        ") OR " PG_PRUNE_REJECTED ") AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.msg_id = messages.id)"
        " AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.msg_id = messages.id) ORDER BY received_ms LIMIT 16"
        " FOR UPDATE SKIP LOCKED",
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE msg_id IN (SELECT id FROM"
        " prune_ids))",
        "DELETE FROM deliveries WHERE msg_id IN (SELECT id FROM prune_ids)",
        "DELETE FROM patients WHERE msg_id IN (SELECT id FROM prune_ids)",
        "DELETE FROM messages WHERE id IN (SELECT id FROM prune_ids)",
    };
    rv = prune_sql(meta_sql, sizeof(meta_sql) / sizeof(meta_sql[0]), now - st->metadata_ms,
                   st->rejected_ms ? now - st->metadata_ms : 0, metadata);
  }
  if (rv == GW_OK) {
    char v[200];
    snprintf(v, sizeof(v), "%lld %lld %lld %lld %lld", (long long)now, (long long)(st->content_ms / 86400000),
             (long long)(st->metadata_ms / 86400000), (long long)(st->rejected_ms / 86400000),
             (long long)st->prune_every_ms);
    struct pq p = {0};
    p_text(&p, v);
    rv = exec_p(cur_w->c,
                "INSERT INTO store_meta(key, value) VALUES('retention', $1) ON CONFLICT (key) DO UPDATE SET value ="
                " EXCLUDED.value",
                &p, "prune", NULL);
  }
  if (rv == GW_OK)
    rv = exec_p(cur_w->c, "COMMIT", NULL, "prune", NULL);
  if (rv != GW_OK) {
    PQclear(PQexec(cur_w->c, "ROLLBACK"));
    return rv;
  }
  if (*content || *metadata)
    gw_log(GW_LOG_INFO, "store_pruned", "content=%ld metadata=%ld", *content, *metadata);
  return GW_OK;
}

static void maybe_prune(struct pg_store *st, int64_t now) {
  if (!st->prune_every_ms || now < st->next_prune_ms)
    return;
  long c = 0, m = 0;
  int rv = prune_step(st, now, &c, &m);
  st->next_prune_ms = now + (rv == GW_OK && (c == PRUNE_STEP || m == PRUNE_STEP) ? 20 : st->prune_every_ms);
}

/* ---- the writer threads ---- */

/* Delivery states and answers go to writer 0, in order; everything else to the writers of new messages. */
static void enqueue(struct pg_store *st, struct gw_witem *it) {
  bool upd = it->kind == W_UPDATE || it->kind == W_ANSWER;
  pthread_mutex_lock(&st->mu);
  gw_wlist_push(upd ? &st->updates : &st->submits, it);
  pthread_cond_signal(upd ? &st->ucv : &st->cv);
  pthread_mutex_unlock(&st->mu);
}

static struct gw_witem *take_batch(struct pg_store *st, struct wr *w, bool pause, int *n) {
  struct gw_wlist *l = w->upd ? &st->updates : &st->submits;
  pthread_cond_t *cv = w->upd ? &st->ucv : &st->cv;
  pthread_mutex_lock(&st->mu);
  if (pause && !st->stop)
    gw_timed_wait(cv, &st->mu, 200);
  while (!l->head && !st->stop) {
    if (!w->upd || !st->prune_every_ms) {
      pthread_cond_wait(cv, &st->mu);
      continue;
    }
    int64_t wait = st->next_prune_ms - gw_wall_ms();
    if (wait <= 0)
      break; /* idle, and a prune step is due */
    gw_timed_wait(cv, &st->mu, wait);
  }
  struct gw_witem *batch = gw_wlist_take(l, BATCH_MAX, n);
  pthread_mutex_unlock(&st->mu);
  return batch;
}

static void fin_lookup(void *impl, struct gw_witem *it) {
  (void)impl;
  run_lookup(it);
}
static void fin_read(void *impl, struct gw_witem *it) { run_read(impl, it); }
static int fin_prune(void *impl, int64_t now, long *content, long *metadata) {
  return prune_step(impl, now, content, metadata);
}

/* After the commit (see gw_store_finish): delivery states and answers not written go back to the head of
 * writer 0's queue, in order. */
static bool finish_batch(struct pg_store *st, struct gw_witem *batch, int rc) {
  struct gw_wlist retry = {0};
  char full[256];
  pthread_mutex_lock(&st->mu);
  bool stopping = st->stop;
  pthread_mutex_unlock(&st->mu);
  const struct gw_finish f = {.st = &st->base, .impl = st, .lookup = fin_lookup, .read = fin_read, .prune = fin_prune};
  bool failed = gw_store_finish(&f, batch, rc == GW_OK, stopping, &retry, full, sizeof(full));
  pthread_mutex_lock(&st->mu);
  gw_wlist_requeue(&st->updates, &retry);
  pthread_mutex_unlock(&st->mu);
  char why[300];
  snprintf(why, sizeof(why), "the store cannot commit (PostgreSQL): %.200s", PQerrorMessage(cur_w->c));
  for (char *p = why; *p; p++)
    if (*p == '\n')
      *p = ' ';
  gw_health_set(GW_HEALTH_STORE, failed ? why : full[0] ? full : NULL);
  return failed;
}

static void *writer_main(void *arg) {
  struct wr *w = arg;
  struct pg_store *st = w->st;
  cur_w = w;
  pthread_setname_np(pthread_self(), w->upd ? "cergw-store" : "cergw-storew");
  bool failed = false;
  for (;;) {
    int n;
    struct gw_witem *batch = take_batch(st, w, failed, &n);
    if (!batch) {
      pthread_mutex_lock(&st->mu);
      bool stop = st->stop;
      pthread_mutex_unlock(&st->mu);
      if (stop)
        break;
      if (w->upd)
        maybe_prune(st, gw_wall_ms());
      continue;
    }
    int rc = write_batch(st, batch, n, gw_wall_ms());
    failed = finish_batch(st, batch, rc);
    if (w->upd)
      maybe_prune(st, gw_wall_ms());
  }
  return NULL;
}

/* ---- heartbeat: who is alive ---- */

/* One beat, then a look at the others: a peer whose beat stood still for lease_ms of this instance's
 * own continuous view is declared dead (only if its beat is still the one seen). */
static void beat_once(struct pg_store *st) {
  if (ensure(&st->h, st->conninfo, "cergw-lease") != GW_OK) {
    st->npeers = 0; /* what was seen before the outage says nothing about who is alive now */
    gw_health_set(GW_HEALTH_STORE_LINK, "the store (PostgreSQL) cannot be reached");
    return;
  }
  struct pq p = {0};
  p_text(&p, st->instance);
  p_i64(&p, gw_wall_ms());
  PGresult *r = run(st->h,
                    "UPDATE instances SET beat = beat + 1, seen_ms = $2::bigint WHERE id = $1 AND NOT dead"
                    " RETURNING beat",
                    &p, "heartbeat", NULL);
  if (!r) {
    st->npeers = 0;
    gw_health_set(GW_HEALTH_STORE_LINK, "the store (PostgreSQL) cannot be reached");
    return;
  }
  gw_health_set(GW_HEALTH_STORE_LINK, NULL);
  int mine = PQntuples(r);
  PQclear(r);
  if (!mine) {
    /* fencing: another instance declared this one dead and owns its deliveries now */
    gw_log(GW_LOG_ERROR, "instance_fenced",
           "instance=%s detail=\"declared dead by another instance (no heartbeat for store.lease_ms); its "
           "deliveries were taken over; stopping so that they are not sent twice\"",
           st->instance);
    gw_log_flush();
    _exit(75);
  }
  struct pq q = {0};
  p_text(&q, st->instance);
  r = run(st->h, "SELECT id, beat FROM instances WHERE NOT dead AND id <> $1", &q, "heartbeat", NULL);
  if (!r) {
    st->npeers = 0;
    return;
  }
  int64_t mono = (int64_t)gw_now_ms();
  struct peer next[MAX_PEERS];
  int nn = 0;
  for (int i = 0; i < PQntuples(r) && nn < MAX_PEERS; i++) {
    struct peer *pp = &next[nn++];
    snprintf(pp->id, sizeof(pp->id), "%s", g_str(r, i, 0));
    pp->beat = g_i64(r, i, 1);
    pp->seen_mono = mono;
    for (int k = 0; k < st->npeers; k++)
      if (!strcmp(st->peers[k].id, pp->id) && st->peers[k].beat == pp->beat)
        pp->seen_mono = st->peers[k].seen_mono; /* unchanged since then */
    if (mono - pp->seen_mono >= st->lease_ms) {
      struct pq d = {0};
      p_text(&d, pp->id);
      p_i64(&d, pp->beat);
      PGresult *x = run(st->h, "UPDATE instances SET dead = true WHERE id = $1 AND beat = $2::bigint AND NOT dead", &d,
                        "declare_dead", NULL);
      if (x && atoi(PQcmdTuples(x)) == 1) {
        atomic_fetch_add(&pg_declared_dead, 1);
        gw_log(GW_LOG_WARN, "instance_declared_dead", "instance=%s silent_ms=%lld", pp->id,
               (long long)(mono - pp->seen_mono));
      }
      PQclear(x);
      nn--;
    }
  }
  PQclear(r);
  memcpy(st->peers, next, sizeof(next[0]) * (size_t)nn);
  st->npeers = nn;
  /* dead instances that own nothing any more are forgotten after a day */
  struct pq old = {0};
  p_i64(&old, gw_wall_ms() - 86400000);
  PQclear(run(st->h,
              "DELETE FROM instances i WHERE dead AND seen_ms < $1::bigint AND NOT EXISTS (SELECT 1 FROM deliveries d"
              " WHERE d.owner = i.id AND d.state IN (0, 4))",
              &old, "heartbeat", NULL));
}

static void *heartbeat_main(void *arg) {
  struct pg_store *st = arg;
  pthread_setname_np(pthread_self(), "cergw-lease");
  pthread_mutex_lock(&st->mu);
  while (!st->stop) {
    pthread_mutex_unlock(&st->mu);
    beat_once(st);
    pthread_mutex_lock(&st->mu);
    if (!st->stop)
      gw_timed_wait(&st->hcv, &st->mu, st->beat_ms);
  }
  pthread_mutex_unlock(&st->mu);
  return NULL;
}

/* ---- deliveries for the dispatcher ---- */

static struct gw_delivery *row_delivery(const PGresult *r, int i) {
  struct gw_delivery *d = calloc(1, sizeof(*d));
  if (!d)
    return NULL;
  d->id = g_i64(r, i, 0);
  d->msg_id = g_i64(r, i, 1);
  snprintf(d->backend, sizeof(d->backend), "%s", g_str(r, i, 2));
  snprintf(d->rkey, sizeof(d->rkey), "%s", g_str(r, i, 3));
  snprintf(d->path, sizeof(d->path), "%s", g_str(r, i, 4));
  snprintf(d->ctype, sizeof(d->ctype), "%s", g_str(r, i, 5));
  if (unsealv(r, i, 6, d->msg_id, &d->payload, &d->len) != GW_OK) {
    free(d);
    return NULL;
  }
  d->state = (int)g_i64(r, i, 7);
  d->attempts = (int)g_i64(r, i, 8);
  d->next_ms = g_i64(r, i, 9);
  d->last_status = (int)g_i64(r, i, 10);
  unseal_into(r, i, 11, d->msg_id, d->last_error, sizeof(d->last_error));
  d->created_ms = g_i64(r, i, 12);
  snprintf(d->ikey, sizeof(d->ikey), "%s", g_str(r, i, 13));
  snprintf(d->acting, sizeof(d->acting), "%s", g_str(r, i, 14));
  return d;
}

#define PG_DELIVERY_COLS                                                                                               \
  "d.id, d.msg_id, d.backend, d.rkey, d.path, d.ctype, d.payload, d.state, d.attempts, d.next_ms, d.last_status,"      \
  " d.last_error, d.created_ms, d.ikey, m.caller"
#define PG_DELIVERY_FROM " FROM deliveries d JOIN messages m ON m.id = d.msg_id"

static int each_delivery(PGresult *r, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  int n = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    struct gw_delivery *d = row_delivery(r, i);
    if (!d)
      continue; /* stays in the store (logged) */
    fn(ud, d);
    n++;
  }
  PQclear(r);
  return n;
}

/* Claims for this instance, in one short transaction under the cluster's claim lock: the deliveries
 * in |state| that nobody alive owns (a dead instance's, held ones whose turn came), each only when no
 * earlier delivery of its resource to its backend is pending at another live instance; retry requests
 * become queued. The claimed rows go to |fn|, in id order. */
static int claim(struct pg_store *st, int state, bool mine_too, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  pthread_mutex_lock(&st->rmu);
  if (ensure(&st->r, st->conninfo, "cergw-dispatch") != GW_OK) {
    pthread_mutex_unlock(&st->rmu);
    return GW_ERR_IO;
  }
  struct pq p = {0};
  p_text(&p, st->instance);
  p_i64(&p, state);
  p_i64(&p, mine_too ? 1 : 0);
  p_i64(&p, CLAIM_MAX);
  PGresult *ids = NULL, *rows = NULL;
  if (exec_p(st->r, "BEGIN; SELECT pg_advisory_xact_lock(7011002)", NULL, "claim", NULL) == GW_OK)
    ids = run(st->r,
              "WITH c AS (SELECT d.id, d.owner FROM deliveries d WHERE d.state = $2::bigint"
              "  AND (d.owner IS NULL OR ($3::bigint = 1 AND d.owner = $1) OR ($2::bigint = 4)"
              "   OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = d.owner AND NOT i.dead))"
              "  AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.rkey = d.rkey AND e.backend = d.backend"
              "   AND e.id < d.id AND e.state IN (0, 4) AND e.owner IS NOT NULL AND e.owner <> $1"
              "   AND EXISTS (SELECT 1 FROM instances i WHERE i.id = e.owner AND NOT i.dead))"
              "  ORDER BY d.id LIMIT $4::bigint FOR UPDATE OF d SKIP LOCKED)"
              " UPDATE deliveries x SET owner = $1, state = 0 FROM c WHERE x.id = c.id"
              " RETURNING x.id, c.owner IS NOT NULL AND c.owner <> $1",
              &p, "claim", NULL);
  long takeovers = 0;
  char *list = NULL;
  if (ids && PQntuples(ids)) {
    struct gw_buf b;
    gw_buf_init(&b, (size_t)PQntuples(ids) * 24 + 8);
    gw_buf_append(&b, "{", 1);
    for (int i = 0; i < PQntuples(ids); i++) {
      gw_buf_printf(&b, "%s%lld", i ? "," : "", (long long)g_i64(ids, i, 0));
      takeovers += g_i64(ids, i, 1);
    }
    gw_buf_append(&b, "}", 2);
    size_t len;
    list = (char *)gw_buf_take(&b, &len);
    struct pq q = {0};
    p_text(&q, list);
    rows = run(st->r, "SELECT " PG_DELIVERY_COLS PG_DELIVERY_FROM " WHERE d.id = ANY($1::bigint[]) ORDER BY d.id", &q,
               "claim", NULL);
  }
  int rv = ids && (!list || rows) ? exec_p(st->r, "COMMIT", NULL, "claim", NULL) : GW_ERR_IO;
  if (rv != GW_OK)
    PQclear(PQexec(st->r, "ROLLBACK"));
  PQclear(ids);
  free(list);
  pthread_mutex_unlock(&st->rmu);
  if (rv != GW_OK) {
    PQclear(rows);
    return GW_ERR_IO;
  }
  if (!rows)
    return 0;
  int n = PQntuples(rows);
  atomic_fetch_add(&pg_claims, n);
  atomic_fetch_add(&pg_takeovers, takeovers);
  if (takeovers)
    gw_log(GW_LOG_WARN, "deliveries_taken_over", "instance=%s deliveries=%ld", st->instance, takeovers);
  return each_delivery(rows, fn, ud);
}

struct retry_relay {
  void (*fn)(void *ud, struct gw_delivery *d);
  void *ud;
};
static void as_retry(void *ud, struct gw_delivery *d) {
  struct retry_relay *r = ud;
  d->state = GW_DS_RETRY_REQ;
  r->fn(r->ud, d);
}

static int pg_load(struct gw_store *gst, int state, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  struct pg_store *st = (struct pg_store *)gst;
  if (state == GW_DS_RETRY_REQ) {
    struct retry_relay rr = {fn, ud};
    return claim(st, GW_DS_RETRY_REQ, false, as_retry, &rr);
  }
  if (state == GW_DS_QUEUED)
    return claim(st, GW_DS_QUEUED, true, fn, ud); /* at start: this instance's own, and what nobody owns */
  pthread_mutex_lock(&st->rmu);
  struct pq p = {0};
  p_i64(&p, state);
  PGresult *r =
      ensure(&st->r, st->conninfo, "cergw-dispatch") == GW_OK
          ? run(st->r, "SELECT " PG_DELIVERY_COLS PG_DELIVERY_FROM " WHERE d.state = $1::bigint ORDER BY d.id", &p,
                "load_deliveries", NULL)
          : NULL;
  pthread_mutex_unlock(&st->rmu);
  return r ? each_delivery(r, fn, ud) : GW_ERR_IO;
}

static int pg_claim(struct gw_store *gst, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  return claim((struct pg_store *)gst, GW_DS_QUEUED, false, fn, ud);
}

static int pg_load_range(struct gw_store *gst, const char *backend, int64_t from, int64_t to, int limit,
                         void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  struct pg_store *st = (struct pg_store *)gst;
  struct pq p = {0};
  p_text(&p, backend);
  p_i64(&p, from);
  p_i64(&p, to);
  p_i64(&p, limit);
  p_text(&p, st->instance);
  pthread_mutex_lock(&st->rmu);
  PGresult *r = ensure(&st->r, st->conninfo, "cergw-dispatch") == GW_OK
                    ? run(st->r,
                          "SELECT " PG_DELIVERY_COLS PG_DELIVERY_FROM
                          " WHERE d.backend = $1 AND d.state = 0 AND d.owner = $5 AND d.id BETWEEN $2::bigint AND"
                          " $3::bigint ORDER BY d.id LIMIT $4::bigint",
                          &p, "load_range", NULL)
                    : NULL;
  pthread_mutex_unlock(&st->rmu);
  return r ? each_delivery(r, fn, ud) : GW_ERR_IO;
}

/* ---- the console's view (console/console.c), on the dispatcher's connection ---- */

#define PG_OBX_COLS                                                                                                    \
  "d.id, d.msg_id, d.created_ms, COALESCE(d.done_ms, 0), m.caller, m.op, CASE WHEN strpos(d.rkey, '|') > 0 THEN"       \
  " substr(d.rkey, strpos(d.rkey, '|') + 1) ELSE COALESCE(m.rtype || '/' || m.rid, m.rtype, '-') END, d.backend,"      \
  " d.state, d.attempts, d.last_status, d.last_error"

static void pg_obx_row(const PGresult *r, int i, struct gw_obx_row *o) {
  memset(o, 0, sizeof(*o));
  o->id = g_i64(r, i, 0);
  o->msg_id = g_i64(r, i, 1);
  o->created_ms = g_i64(r, i, 2);
  o->done_ms = g_i64(r, i, 3);
  snprintf(o->clinic, sizeof(o->clinic), "%s", g_str(r, i, 4));
  snprintf(o->op, sizeof(o->op), "%s", g_str(r, i, 5));
  snprintf(o->resource, sizeof(o->resource), "%s", g_str(r, i, 6));
  snprintf(o->backend, sizeof(o->backend), "%s", g_str(r, i, 7));
  o->state = (int)g_i64(r, i, 8);
  o->attempts = (int)g_i64(r, i, 9);
  o->last_status = (int)g_i64(r, i, 10);
  unseal_into(r, i, 11, o->msg_id, o->last_error, sizeof(o->last_error));
}

/* The keyed hashes of |search| as every clinic's MSH-10, MessageID and Idempotency-Key: "{h1,h2,...}". */
static char *idem_candidates(struct pg_store *st, const char *search) {
  struct gw_buf b;
  gw_buf_init(&b, 1 << 20);
  gw_buf_append(&b, "{", 1);
  PGresult *c = search[0] ? run(st->r, "SELECT DISTINCT caller FROM messages", NULL, "outbox_list", NULL) : NULL;
  int k = 0;
  for (int i = 0; c && i < PQntuples(c); i++) {
    static const char *const kinds[] = {"msh10", "wsa", "key"};
    for (int j = 0; j < 3; j++) {
      char key[GW_OWNKEY_MAX + 160], h[65];
      snprintf(key, sizeof(key), "%s|%s|%s", g_str(c, i, 0), kinds[j], search);
      const char *v = kh(key, h);
      if (strpbrk(v, "{},\"\\ ")) /* in clear and not an array element as it stands: not a candidate */
        continue;
      gw_buf_printf(&b, "%s%s", k++ ? "," : "", v);
    }
  }
  PQclear(c);
  gw_buf_append(&b, "}", 2);
  size_t len;
  return (char *)gw_buf_take(&b, &len);
}

static int pg_outbox_list(struct gw_store *gst, const struct gw_obx_query *oq, struct gw_obx_row *rows, int max,
                          long counts[5]) {
  struct pg_store *st = (struct pg_store *)gst;
  pthread_mutex_lock(&st->rmu);
  if (ensure(&st->r, st->conninfo, "cergw-dispatch") != GW_OK) {
    pthread_mutex_unlock(&st->rmu);
    return GW_ERR_IO;
  }
  char *cand = idem_candidates(st, oq->search);
  struct pq p = {0};
  p_i64(&p, oq->state);
  p_text(&p, oq->backend);
  p_text(&p, oq->clinic);
  p_text(&p, oq->op);
  p_i64(&p, oq->since_ms);
  p_i64(&p, oq->until_ms);
  p_text(&p, oq->search);
  p_i64(&p, oq->limit > 0 && oq->limit < max ? oq->limit : max);
  p_text(&p, cand ? cand : "{}");
  p_i64(&p, oq->msg_id);
  PGresult *r =
      run(st->r,
          "SELECT " PG_OBX_COLS " FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE ($1::bigint < 0"
          " OR d.state = $1::bigint) AND ($2 = '' OR d.backend = $2) AND ($3 = '' OR m.caller = $3) AND ($4 ="
          " '' OR m.op = $4) AND ($5::bigint = 0 OR d.created_ms >= $5::bigint) AND ($6::bigint = 0 OR"
          " d.created_ms < $6::bigint) AND ($7 = '' OR strpos(d.rkey, $7) > 0 OR m.idem_key = ANY($9::text[]))"
          " AND ($10::bigint = 0 OR d.msg_id = $10::bigint)"
          " ORDER BY d.id DESC LIMIT $8::bigint",
          &p, "outbox_list", NULL);
  PGresult *c = run(st->r, "SELECT state, COUNT(*) FROM deliveries GROUP BY state", NULL, "outbox_list", NULL);
  pthread_mutex_unlock(&st->rmu);
  free(cand);
  int n = 0;
  for (int i = 0; r && i < PQntuples(r) && n < max; i++)
    pg_obx_row(r, i, &rows[n++]);
  for (int i = 0; i < 5; i++)
    counts[i] = 0;
  for (int i = 0; c && i < PQntuples(c); i++)
    if (g_i64(c, i, 0) >= 0 && g_i64(c, i, 0) < 5)
      counts[g_i64(c, i, 0)] = (long)g_i64(c, i, 1);
  int rv = r && c ? n : GW_ERR_IO;
  PQclear(r);
  PQclear(c);
  return rv;
}

static int pg_outbox_show(struct gw_store *gst, int64_t id, struct gw_obx_detail *d) {
  struct pg_store *st = (struct pg_store *)gst;
  memset(d, 0, sizeof(*d));
  struct pq p = {0};
  p_i64(&p, id);
  pthread_mutex_lock(&st->rmu);
  PGresult *r = NULL, *a = NULL;
  if (ensure(&st->r, st->conninfo, "cergw-dispatch") == GW_OK) {
    r = run(st->r,
            "SELECT " PG_OBX_COLS ", d.rkey, d.path, d.ctype, d.ikey, m.original, COALESCE(m.canonical, ''), d.payload"
            " FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE d.id = $1::bigint",
            &p, "outbox_show", NULL);
    a = run(st->r,
            "SELECT attempt, at_ms, state, status, answer FROM attempts WHERE delivery_id = $1::bigint ORDER BY at_ms,"
            " attempt",
            &p, "outbox_show", NULL);
  }
  pthread_mutex_unlock(&st->rmu);
  int rv = !r || !a ? GW_ERR_IO : !PQntuples(r) ? GW_ERR_NOTFOUND : GW_OK;
  if (rv == GW_OK) {
    pg_obx_row(r, 0, &d->row);
    snprintf(d->rkey, sizeof(d->rkey), "%s", g_str(r, 0, 12));
    snprintf(d->path, sizeof(d->path), "%s", g_str(r, 0, 13));
    snprintf(d->ctype, sizeof(d->ctype), "%s", g_str(r, 0, 14));
    snprintf(d->ikey, sizeof(d->ikey), "%s", g_str(r, 0, 15));
    int64_t mid = d->row.msg_id;
    if (unsealv(r, 0, 16, mid, &d->original, &d->original_len) != GW_OK ||
        unsealv(r, 0, 17, mid, &d->canonical, &d->canonical_len) != GW_OK ||
        unsealv(r, 0, 18, mid, &d->payload, &d->payload_len) != GW_OK)
      rv = GW_ERR_IO;
    for (int i = 0; a && i < PQntuples(a) && d->nattempts < (int)(sizeof(d->att) / sizeof(d->att[0])); i++) {
      struct gw_obx_attempt *t = &d->att[d->nattempts++];
      t->attempt = (int)g_i64(a, i, 0);
      t->at_ms = g_i64(a, i, 1);
      t->state = (int)g_i64(a, i, 2);
      t->status = (int)g_i64(a, i, 3);
      unseal_into(a, i, 4, mid, t->answer, sizeof(t->answer));
    }
  }
  PQclear(r);
  PQclear(a);
  if (rv != GW_OK)
    gw_obx_detail_free(d);
  return rv;
}

static int pg_outbox_act(struct gw_store *gst, int64_t id, const char *action, char *why, size_t n) {
  struct pg_store *st = (struct pg_store *)gst;
  bool is_retry = !strcmp(action, "retry"), is_dead = !strcmp(action, "dead");
  if (!is_retry && !is_dead && strcmp(action, "purge")) {
    snprintf(why, n, "unknown action '%s'", action);
    return GW_ERR_INVAL;
  }
  struct pq p = {0};
  p_i64(&p, id);
  pthread_mutex_lock(&st->rmu);
  int rv = ensure(&st->r, st->conninfo, "cergw-dispatch");
  PGresult *s0 =
      rv == GW_OK ? run(st->r, "SELECT state FROM deliveries WHERE id = $1::bigint", &p, "outbox_act", NULL) : NULL;
  int state = s0 && PQntuples(s0) ? (int)g_i64(s0, 0, 0) : -1;
  PQclear(s0);
  long changed = 0;
  if (rv == GW_OK && state >= 0) {
    if (is_dead) {
      static const char why_dead[] = "marked dead by an operator (console)";
      int64_t mid = 0;
      PGresult *m = run(st->r, "SELECT msg_id FROM deliveries WHERE id = $1::bigint", &p, "outbox_act", NULL);
      if (m && PQntuples(m))
        mid = g_i64(m, 0, 0);
      PQclear(m);
      struct gw_buf sealed;
      sealv(mid, why_dead, sizeof(why_dead) - 1, &sealed);
      struct pq dq = {0};
      p_i64(&dq, id);
      p_bin(&dq, sealed.data, sealed.len);
      p_i64(&dq, gw_wall_ms());
      PGresult *r = run(st->r,
                        "UPDATE deliveries SET state = 3, last_error = $2, done_ms = $3::bigint WHERE id = $1::bigint"
                        " AND state IN (0, 2, 4)",
                        &dq, "outbox_act", NULL);
      gw_buf_cleanup(&sealed);
      changed = r ? atol(PQcmdTuples(r)) : 0;
      rv = r ? GW_OK : GW_ERR_IO;
      PQclear(r);
    } else if (is_retry) {
      PGresult *r = run(st->r, "UPDATE deliveries SET state = 4 WHERE id = $1::bigint AND state IN (2, 3)", &p,
                        "outbox_act", NULL);
      changed = r ? atol(PQcmdTuples(r)) : 0;
      rv = r ? GW_OK : GW_ERR_IO;
      PQclear(r);
    } else if ((rv = exec_p(st->r, "BEGIN", NULL, "outbox_act", NULL)) == GW_OK) {
      static const char *const purge[] = {
          "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE msg_id = (SELECT msg_id FROM"
          " deliveries WHERE id = $1::bigint)) AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.msg_id = (SELECT"
          " msg_id FROM deliveries WHERE id = $1::bigint) AND x.state IN (0, 4))",
          "DELETE FROM patients WHERE msg_id = (SELECT msg_id FROM deliveries WHERE id = $1::bigint) AND NOT EXISTS"
          " (SELECT 1 FROM deliveries x WHERE x.msg_id = patients.msg_id AND x.state IN (0, 4))",
          "WITH gone AS (DELETE FROM deliveries WHERE msg_id = (SELECT msg_id FROM deliveries WHERE id = $1::bigint)"
          " AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.msg_id = deliveries.msg_id AND x.state IN (0, 4))"
          " RETURNING msg_id) DELETE FROM messages WHERE id IN (SELECT msg_id FROM gone) AND NOT EXISTS (SELECT 1"
          " FROM slots s WHERE s.msg_id = messages.id) AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.msg_id ="
          " messages.id)",
      };
      for (size_t i = 0; i < sizeof(purge) / sizeof(purge[0]) && rv == GW_OK; i++) {
        PGresult *r = run(st->r, purge[i], &p, "outbox_act", NULL);
        rv = r ? GW_OK : GW_ERR_IO;
        changed += r ? atol(PQcmdTuples(r)) : 0;
        PQclear(r);
      }
      /* the deliveries went even when the message stays (a slot or a version names it) */
      PGresult *left = rv == GW_OK
                           ? run(st->r, "SELECT COUNT(*) FROM deliveries WHERE id = $1::bigint", &p, "outbox_act", NULL)
                           : NULL;
      if (left && !g_i64(left, 0, 0))
        changed = changed ? changed : 1;
      else if (left)
        changed = 0;
      PQclear(left);
      exec_p(st->r, rv == GW_OK ? "COMMIT" : "ROLLBACK", NULL, "outbox_act", NULL);
    }
  }
  pthread_mutex_unlock(&st->rmu);
  if (rv != GW_OK)
    return rv;
  if (state < 0) {
    snprintf(why, n, "no delivery %lld", (long long)id);
    return GW_ERR_NOTFOUND;
  }
  if (!changed) {
    snprintf(why, n,
             is_retry  ? "delivery %lld is %s: only rejected or dead deliveries can be retried"
             : is_dead ? "delivery %lld is %s: only queued, rejected or retry-requested deliveries can be marked dead"
                       : "delivery %lld is %s: a message with a delivery queued or being retried is not purged",
             (long long)id, gw_dstate_name(state));
    return GW_ERR_INVAL;
  }
  return GW_OK;
}

static int pg_outbox_backends(struct gw_store *gst, int64_t since_ms, struct gw_obx_backend *out, int max) {
  struct pg_store *st = (struct pg_store *)gst;
  struct pq p = {0};
  p_i64(&p, since_ms);
  pthread_mutex_lock(&st->rmu);
  PGresult *r = ensure(&st->r, st->conninfo, "cergw-dispatch") == GW_OK
                    ? run(st->r,
                          "SELECT b.backend, COUNT(d.id), COALESCE(percentile_disc(0.5) WITHIN GROUP (ORDER BY"
                          " d.done_ms - d.created_ms), 0), COALESCE(percentile_disc(0.95) WITHIN GROUP (ORDER BY"
                          " d.done_ms - d.created_ms), 0), COALESCE(percentile_disc(0.99) WITHIN GROUP (ORDER BY"
                          " d.done_ms - d.created_ms), 0), (SELECT a.answer FROM attempts a JOIN deliveries x ON x.id"
                          " = a.delivery_id WHERE x.backend = b.backend AND a.state <> 1 AND a.answer <> '' ORDER BY"
                          " a.at_ms DESC LIMIT 1), (SELECT a.at_ms FROM attempts a JOIN deliveries x ON x.id ="
                          " a.delivery_id WHERE x.backend = b.backend AND a.state <> 1 AND a.answer <> '' ORDER BY"
                          " a.at_ms DESC LIMIT 1), (SELECT x.msg_id FROM attempts a JOIN deliveries x ON x.id ="
                          " a.delivery_id WHERE x.backend = b.backend AND a.state <> 1 AND a.answer <> '' ORDER BY"
                          " a.at_ms DESC LIMIT 1) FROM (SELECT DISTINCT backend FROM deliveries WHERE created_ms >="
                          " $1::bigint OR done_ms >= $1::bigint) b LEFT JOIN deliveries d ON d.backend = b.backend AND"
                          " d.state = 1 AND d.done_ms >= $1::bigint GROUP BY b.backend ORDER BY b.backend",
                          &p, "outbox_backends", NULL)
                    : NULL;
  pthread_mutex_unlock(&st->rmu);
  if (!r)
    return GW_ERR_IO;
  int n = 0;
  for (int i = 0; i < PQntuples(r) && n < max; i++) {
    struct gw_obx_backend *o = &out[n++];
    memset(o, 0, sizeof(*o));
    snprintf(o->backend, sizeof(o->backend), "%s", g_str(r, i, 0));
    o->delivered = (long)g_i64(r, i, 1);
    o->p50 = g_i64(r, i, 2);
    o->p95 = g_i64(r, i, 3);
    o->p99 = g_i64(r, i, 4);
    if (!PQgetisnull(r, i, 5))
      unseal_into(r, i, 5, g_i64(r, i, 7), o->last_error, sizeof(o->last_error));
    o->last_error_ms = g_i64(r, i, 6);
  }
  PQclear(r);
  return n;
}

/* ---- the interface ---- */

static void pg_set_retention(struct gw_store *gst, uint32_t content_days, uint32_t metadata_days, uint32_t every_ms,
                             uint32_t rejected_days) {
  struct pg_store *st = (struct pg_store *)gst;
  pthread_mutex_lock(&st->mu);
  st->rejected_ms = (int64_t)rejected_days * 86400000;
  st->content_ms = (int64_t)content_days * 86400000;
  st->metadata_ms = (int64_t)metadata_days * 86400000;
  st->prune_every_ms = (content_days || metadata_days) ? (every_ms ? every_ms : 60000) : 0;
  st->next_prune_ms = gw_wall_ms() + st->prune_every_ms;
  pthread_cond_broadcast(&st->cv);
  pthread_mutex_unlock(&st->mu);
}
static void pg_set_limits(struct gw_store *gst, uint64_t max_bytes, uint64_t min_free_bytes) {
  (void)min_free_bytes; /* the database's disk is the database server's: PostgreSQL refuses writes itself */
  struct pg_store *st = (struct pg_store *)gst;
  pthread_mutex_lock(&st->mu);
  st->max_bytes = max_bytes;
  pthread_mutex_unlock(&st->mu);
}

static int pg_schema_version(struct gw_store *gst) {
  (void)gst;
  return GW_PG_SCHEMA_VERSION;
}

static void pg_close(struct gw_store *gst) {
  struct pg_store *st = (struct pg_store *)gst;
  if (!st)
    return;
  pthread_mutex_lock(&st->mu);
  st->stop = true;
  pthread_cond_broadcast(&st->cv);
  pthread_cond_broadcast(&st->ucv);
  pthread_cond_broadcast(&st->hcv);
  pthread_mutex_unlock(&st->mu);
  for (int i = 0; i < st->nwr; i++)
    pthread_join(st->wr[i].th, NULL);
  pthread_join(st->hth, NULL);
  /* a clean stop: what this instance owns is free for the others at once */
  if (ensure(&st->h, st->conninfo, "cergw-lease") == GW_OK) {
    struct pq p = {0};
    p_text(&p, st->instance);
    exec_p(st->h, "UPDATE instances SET dead = true WHERE id = $1", &p, "instance_stop", NULL);
  }
  for (int i = 0; i < st->nwr; i++)
    PQfinish(st->wr[i].c);
  PQfinish(st->r);
  PQfinish(st->h);
  pthread_mutex_destroy(&st->rmu);
  pthread_mutex_destroy(&st->mu);
  pthread_cond_destroy(&st->cv);
  pthread_cond_destroy(&st->ucv);
  pthread_cond_destroy(&st->hcv);
  free(st->conninfo);
  free(st);
  atomic_store(&pg_open, 0);
}

static int gw_pg_connect(const char *conninfo, PGconn **out, struct gw_buf *err) {
  *out = gw_pg_connect_as(conninfo, "cergw");
  if (PQstatus(*out) != CONNECTION_OK) {
    gw_buf_printf(err, "postgresql: %s", PQerrorMessage(*out));
    PQfinish(*out);
    *out = NULL;
    return GW_ERR_IO;
  }
  return GW_OK;
}

int gw_store_open_pg(const struct gw_pg_opts *o, gw_store_accepted_fn on_accepted, void *ud, struct gw_store **out,
                     struct gw_buf *err) {
  *out = NULL;
  struct pg_store *st = calloc(1, sizeof(*st));
  if (!st || !(st->conninfo = strdup(o->conninfo))) {
    free(st);
    return GW_ERR_NOMEM;
  }
  st->base.hooks.on_accepted = on_accepted;
  st->base.hooks.ud = ud;
  st->lease_ms = o->lease_ms ? o->lease_ms : 10000;
  st->beat_ms = st->lease_ms / 5 > 0 ? st->lease_ms / 5 : 1;
  if (o->instance && o->instance[0]) {
    snprintf(st->instance, sizeof(st->instance), "%s", o->instance);
  } else {
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(st->instance, sizeof(st->instance), "%s-%d-%08x", host, (int)getpid(), gw_random_u32());
  }
  pthread_mutex_init(&st->mu, NULL);
  pthread_mutex_init(&st->rmu, NULL);
  pthread_cond_init(&st->cv, NULL);
  pthread_cond_init(&st->ucv, NULL);
  pthread_cond_init(&st->hcv, NULL);
  st->nwr = o->writers > 0 && o->writers <= GW_PG_MAX_WRITERS ? o->writers : 4;
  struct wr *w0 = &st->wr[0];
  int rv = gw_pg_connect(st->conninfo, &w0->c, err);
  if (!rv)
    rv = pg_migrate(w0->c, err);
  if (!rv)
    rv = pg_check_keys(w0->c, err);
  if (!rv) {
    struct pq p = {0};
    p_text(&p, st->instance);
    p_i64(&p, gw_wall_ms());
    rv =
        exec_p(w0->c,
               "INSERT INTO instances(id, beat, started_ms, seen_ms, dead) VALUES($1, 0, $2::bigint, $2::bigint, false)"
               " ON CONFLICT (id) DO UPDATE SET dead = false, beat = instances.beat + 1, started_ms = $2::bigint,"
               " seen_ms = $2::bigint",
               &p, "instance_start", NULL);
    if (rv)
      gw_buf_printf(err, "postgresql: cannot register instance %s: %s", st->instance, PQerrorMessage(w0->c));
  }
  for (int i = 1; !rv && i < st->nwr; i++)
    rv = gw_pg_connect(st->conninfo, &st->wr[i].c, err);
  if (!rv)
    rv = gw_pg_connect(st->conninfo, &st->r, err);
  if (!rv)
    rv = gw_pg_connect(st->conninfo, &st->h, err);
  int started = 0;
  for (; !rv && started < st->nwr; started++) {
    struct wr *w = &st->wr[started];
    w->st = st;
    w->upd = started == 0;
    if (pthread_create(&w->th, NULL, writer_main, w))
      rv = GW_ERR_IO;
  }
  if (!rv && pthread_create(&st->hth, NULL, heartbeat_main, st))
    rv = GW_ERR_IO;
  if (rv) {
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_broadcast(&st->cv);
    pthread_cond_broadcast(&st->ucv);
    pthread_mutex_unlock(&st->mu);
    for (int i = 0; i < started - (rv ? 1 : 0); i++)
      pthread_join(st->wr[i].th, NULL);
    for (int i = 0; i < st->nwr; i++)
      PQfinish(st->wr[i].c);
    PQfinish(st->r);
    PQfinish(st->h);
    free(st->conninfo);
    free(st);
    return rv;
  }
  gw_log(GW_LOG_INFO, "store_open", "backend=postgresql instance=%s lease_ms=%lld", st->instance,
         (long long)st->lease_ms);
  atomic_store(&pg_open, 1);
  st->base.ops = &pg_ops;
  *out = &st->base;
  return GW_OK;
}

static void pg_enqueue(struct gw_store *gst, struct gw_witem *it) { enqueue((struct pg_store *)gst, it); }

static const struct gw_store_ops pg_ops = {.name = "postgresql",
                                           .close = pg_close,
                                           .enqueue = pg_enqueue,
                                           .set_retention = pg_set_retention,
                                           .set_limits = pg_set_limits,
                                           .load = pg_load,
                                           .load_range = pg_load_range,
                                           .claim = pg_claim,
                                           .schema_version = pg_schema_version,
                                           .outbox_list = pg_outbox_list,
                                           .outbox_show = pg_outbox_show,
                                           .outbox_act = pg_outbox_act,
                                           .outbox_backends = pg_outbox_backends};

static const struct gw_memq_ops pg_memq_ops = {.slot_overlap = pg_slot_overlap,
                                               .slot_state = pg_slot_state,
                                               .slot_put = pg_slot_put,
                                               .slot_set_free = pg_slot_set_free,
                                               .owner_get = pg_owner_get,
                                               .owner_put = pg_owner_put,
                                               .appt_get = pg_appt_get,
                                               .appt_put = pg_appt_put};
