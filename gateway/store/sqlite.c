#include "store/cli.h"
#include "store/queue.h"
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/health.h"
#include "core/log.h"
#include "store/pg.h"
#include "tls/seal.h"

#define BATCH_MAX 1024

static const struct gw_store_ops sq_ops;
static const struct gw_memq_ops sq_memq_ops;

/* Items for the writer: a submit, a delivery update, an answer, or a lookup (run after the commit). */

/* The schema, as forward migrations: migrations[v] takes a database of version v
 * to v + 1 (PRAGMA user_version). Version 0 is a new file, or a database
 * written before versions were recorded (commit 9135849 and earlier), whose
 * tables migration 0 leaves as they are. Append only: never edit a migration
 * that has shipped. */
static const char *const migrations[GW_STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: the schema of the first releases */
    "CREATE TABLE IF NOT EXISTS messages("
    " id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, caller TEXT NOT NULL, dialect TEXT NOT NULL,"
    " op TEXT NOT NULL, idem_key TEXT UNIQUE, rtype TEXT, rid TEXT, original BLOB NOT NULL, canonical BLOB,"
    " answer_status INTEGER, answer_ctype TEXT, answer BLOB);"
    "CREATE TABLE IF NOT EXISTS deliveries("
    " id INTEGER PRIMARY KEY, msg_id INTEGER NOT NULL REFERENCES messages(id), backend TEXT NOT NULL,"
    " rkey TEXT NOT NULL, path TEXT NOT NULL, ctype TEXT NOT NULL, payload BLOB NOT NULL,"
    " state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL DEFAULT 0,"
    " last_status INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL,"
    " done_ms INTEGER, ikey TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries(state, id);"
    "CREATE INDEX IF NOT EXISTS deliveries_msg ON deliveries(msg_id);"
    "CREATE TABLE IF NOT EXISTS slots("
    " caller TEXT NOT NULL, ident TEXT NOT NULL, schedule TEXT NOT NULL, start_ms INTEGER NOT NULL,"
    " end_ms INTEGER NOT NULL, free INTEGER NOT NULL, msg_id INTEGER NOT NULL, PRIMARY KEY(caller, ident));"
    "CREATE INDEX IF NOT EXISTS slots_sched ON slots(caller, schedule, start_ms);",
    /* 1 -> 2: the latest message of a resource (conditional create, GetAppointmentStatus) by index, not by
     * scanning every delivery */
    "CREATE INDEX IF NOT EXISTS deliveries_rkey ON deliveries(rkey, id);",
    /* 2 -> 3: which clinic owns each Schedule, Slot and Appointment seen (by logical id and by
     * business identifier with its system normalised) */
    "CREATE TABLE IF NOT EXISTS owners(key TEXT PRIMARY KEY, owner TEXT NOT NULL, msg_id INTEGER NOT NULL);",
    /* 3 -> 4: the digest of each message's canonical content, so that a reused idempotency key with
     * other content is refused rather than taken for a repeat (rows before it have none: repeats) */
    "ALTER TABLE messages ADD COLUMN idem_digest TEXT;",
    /* 4 -> 5: each appointment's last known status, start and the slots it holds, so that a cancellation
     * or a reschedule frees them and a cancellation of an appointment never seen can be told */
    "CREATE TABLE IF NOT EXISTS appointments(caller TEXT NOT NULL, akey TEXT NOT NULL, status TEXT NOT NULL,"
    " start_ms INTEGER NOT NULL, slots TEXT NOT NULL, msg_id INTEGER NOT NULL, PRIMARY KEY(caller, akey));",
    /* 5 -> 6: every version of each Schedule, Slot and Appointment a clinic sent, for FHIR read, vread,
     * history and search; one id per resource whichever way it was written; the Location and ETag of
     * each answer, for replays */
    "CREATE TABLE IF NOT EXISTS resources(clinic TEXT NOT NULL, rtype TEXT NOT NULL, id TEXT NOT NULL,"
    " version INTEGER NOT NULL, msg_id INTEGER NOT NULL, updated_ms INTEGER NOT NULL, ident TEXT NOT NULL,"
    " identvalue TEXT NOT NULL, status TEXT NOT NULL, date_ms INTEGER NOT NULL, refs TEXT NOT NULL,"
    " body BLOB NOT NULL, PRIMARY KEY(clinic, rtype, id, version));"
    "CREATE INDEX IF NOT EXISTS resources_ident ON resources(clinic, rtype, ident);"
    "CREATE INDEX IF NOT EXISTS resources_updated ON resources(clinic, rtype, updated_ms);"
    "ALTER TABLE messages ADD COLUMN answer_meta TEXT;"
    /* and each delivery attempt's outcome, kept after a later success (cergw outbox show) */
    "CREATE TABLE IF NOT EXISTS attempts(delivery_id INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    " at_ms INTEGER NOT NULL, state INTEGER NOT NULL, status INTEGER NOT NULL, answer TEXT NOT NULL,"
    " PRIMARY KEY(delivery_id, attempt, state));",
    /* 6 -> 7: a version that is its message's resource as sent is not copied: an empty body and the
     * Bundle entry (-1: the message is the resource) say where the message's canonical form holds it */
    "ALTER TABLE resources ADD COLUMN entry INTEGER NOT NULL DEFAULT -1;"
    "CREATE INDEX IF NOT EXISTS resources_msg ON resources(msg_id);",
    /* 7 -> 8: every key content was ever sealed under, with a value sealed under it: at start a key
     * missing from store.key_file, or another key under its id, is found before anything is written */
    "CREATE TABLE IF NOT EXISTS seal_keys(id TEXT PRIMARY KEY, check_value BLOB NOT NULL, since_ms INTEGER NOT NULL);",
    /* 8 -> 9: retention finds old messages by age */
    "CREATE INDEX IF NOT EXISTS messages_received ON messages(received_ms);",
    /* 9 -> 10: which messages name a patient, by a keyed hash of the PESEL (a patient's request to know
     * what the gateway holds: cergw outbox find --pesel) */
    "CREATE TABLE IF NOT EXISTS patients(hash TEXT NOT NULL, msg_id INTEGER NOT NULL, PRIMARY KEY(hash, msg_id));"
    "CREATE INDEX IF NOT EXISTS patients_msg ON patients(msg_id);",
    /* 10 -> 11: facts about the store itself (identifiers hashed, the retention in force, the last prune) */
    "CREATE TABLE IF NOT EXISTS store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    /* 11 -> 12: a slot's identifier sealed beside its keyed hash, for the answers that name it */
    "ALTER TABLE slots ADD COLUMN label BLOB;",
};

static int user_version(sqlite3 *db) {
  sqlite3_stmt *q = NULL;
  int v = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    v = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  return v;
}

/* Brings |db| to GW_STORE_SCHEMA_VERSION, each step in its own transaction with its version. */
static int migrate(sqlite3 *db, const char *path, struct gw_buf *err) {
  int v = user_version(db);
  if (v < 0 || v > GW_STORE_SCHEMA_VERSION) {
    gw_buf_printf(err, "%s: schema version %d is %s (this build writes version %d)\n", path, v,
                  v < 0 ? "unreadable" : "newer than this build knows", GW_STORE_SCHEMA_VERSION);
    return GW_ERR_IO;
  }
  int from = v;
  for (; v < GW_STORE_SCHEMA_VERSION; v++) {
    char *msg = NULL, bump[64];
    snprintf(bump, sizeof(bump), "PRAGMA user_version = %d;", v + 1);
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    if (rc == SQLITE_OK)
      rc = sqlite3_exec(db, migrations[v], NULL, NULL, &msg);
    if (rc == SQLITE_OK)
      rc = sqlite3_exec(db, bump, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
      rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
      gw_buf_printf(err, "%s: migration to schema version %d failed: %s\n", path, v + 1,
                    msg ? msg : sqlite3_errstr(rc));
      sqlite3_free(msg);
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      return GW_ERR_IO;
    }
  }
  if (from != GW_STORE_SCHEMA_VERSION)
    gw_log(GW_LOG_INFO, "store_migrated", "path=\"%s\" from_version=%d to_version=%d", path, from,
           GW_STORE_SCHEMA_VERSION);
  return GW_OK;
}

enum stmt {
  S_FIND_IDEM,
  S_INS_MSG,
  S_INS_DEL,
  S_UPD_DEL,
  S_UPD_ANS,
  S_DEL_STATES,
  S_SLOT_OVERLAP,
  S_SLOT_PUT,
  S_SLOT_GET,
  S_SLOT_SETFREE,
  S_OWNER_GET,
  S_OWNER_PUT,
  S_APPT_GET,
  S_APPT_PUT,
  S_PATIENT_PUT,
  S_ATTEMPT_PUT,
  S_RES_BY_IDENT,
  S_RES_BY_ID,
  S_RES_PUT,
  S__COUNT
};

static const char *const stmt_sql[S__COUNT] = {
    [S_FIND_IDEM] = "SELECT id, answer_status, answer_ctype, unseal(answer, id), idem_digest, answer_meta FROM messages"
                    " WHERE idem_key = khash(?1)",
    /* the message's id is known before the row exists (the writer is the only one to insert): it is what
     * the content is sealed with */
    [S_INS_MSG] =
        "WITH n(id) AS (SELECT IFNULL(MAX(id), 0) + 1 FROM messages)"
        " INSERT INTO messages(id, received_ms, caller, dialect, op, idem_key, rtype, rid, original, canonical,"
        " idem_digest) SELECT n.id, ?1, ?2, ?3, ?4, khash(?5), ?6, ?7, seal(?8, n.id), seal(?9, n.id), ?10 FROM n",
    [S_INS_DEL] = "INSERT INTO deliveries(msg_id, backend, rkey, path, ctype, payload, state, created_ms, ikey)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, seal(?6, ?1), 0, ?7, ?8)",
    [S_UPD_DEL] = "UPDATE deliveries SET state = ?2, attempts = ?3, next_ms = ?4, last_status = ?5,"
                  " last_error = seal(?6, msg_id), done_ms = CASE WHEN ?2 IN (1, 2, 3) THEN ?7 ELSE NULL END"
                  " WHERE id = ?1",
    [S_UPD_ANS] = "UPDATE messages SET answer_status = ?2, answer_ctype = ?3, answer = seal(?4, ?1), answer_meta = ?5"
                  " WHERE id = ?1",
    [S_DEL_STATES] = "SELECT backend, state, attempts, last_status, unseal(last_error, msg_id) FROM deliveries"
                     " WHERE msg_id = ?1"
                     " ORDER BY id",
    /* slots are looked up by keyed hashes of their identifier and schedule; the identifier itself, which
     * the overlap rule names in its answer, is kept sealed beside them (label) */
    [S_SLOT_OVERLAP] = "SELECT IFNULL(unseal(label, msg_id), ident), start_ms, end_ms FROM slots WHERE caller = ?1"
                       " AND schedule = khash(?3) AND ident <> khash(?2) AND start_ms < ?5 AND end_ms > ?4 LIMIT 1",
    [S_SLOT_PUT] = "INSERT OR REPLACE INTO slots(caller, ident, schedule, start_ms, end_ms, free, msg_id, label)"
                   " VALUES(?1, khash(?2), khash(?3), ?4, ?5, ?6, ?7, seal(?2, ?7))",
    [S_SLOT_GET] = "SELECT free FROM slots WHERE caller = ?1 AND ident = khash(?2)",
    [S_ATTEMPT_PUT] = "INSERT OR IGNORE INTO attempts(delivery_id, attempt, at_ms, state, status, answer)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, seal(?6, (SELECT msg_id FROM deliveries WHERE id = ?1)))",
    [S_RES_BY_IDENT] = "SELECT id, version, unseal(body, msg_id), msg_id, entry FROM resources WHERE clinic = ?1"
                       " AND rtype = ?2"
                       " AND ident = khash(?3)"
                       " ORDER BY version DESC LIMIT 1",
    [S_RES_BY_ID] = "SELECT id, version, unseal(body, msg_id), msg_id, entry FROM resources WHERE clinic = ?1"
                    " AND rtype = ?2"
                    " AND id = ?3"
                    " ORDER BY version DESC LIMIT 1",
    [S_RES_PUT] =
        "INSERT INTO resources(clinic, rtype, id, version, msg_id, updated_ms, ident, identvalue, status,"
        " date_ms, refs, body, entry) VALUES(?1, ?2, ?3, ?4, ?5, ?6, khash(?7), khash(?8), ?9, ?10, refkeys(?11),"
        " seal(?12, ?5), ?13)",
    [S_APPT_GET] = "SELECT status, start_ms, unseal(slots, msg_id) FROM appointments WHERE caller = ?1"
                   " AND akey = khash(?2)",
    [S_PATIENT_PUT] = "INSERT OR IGNORE INTO patients(hash, msg_id) VALUES(khash(?1), ?2)",
    [S_APPT_PUT] = "INSERT OR REPLACE INTO appointments(caller, akey, status, start_ms, slots, msg_id)"
                   " VALUES(?1, khash(?2), ?3, ?4, seal(?5, ?6), ?6)",
    [S_SLOT_SETFREE] = "UPDATE slots SET free = ?3 WHERE caller = ?1 AND ident = khash(?2)",
    [S_OWNER_GET] = "SELECT owner FROM owners WHERE key = khash(?1)",
    [S_OWNER_PUT] = "INSERT OR IGNORE INTO owners(key, owner, msg_id) VALUES(khash(?1), ?2, ?3)",
};

struct sq_store {
  struct gw_store base; /* first: the interface */
  sqlite3 *w;           /* the writer's connection */
  sqlite3 *r;           /* readers (startup load) */
  sqlite3 *q;           /* lookups from the workers, under qmu */
  pthread_mutex_t qmu;
  sqlite3_stmt *st[S__COUNT];
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct gw_wlist q_items; /* the writer's queue, under mu */
  bool stop;
  bool synced_full; /* the writer connection's current synchronous mode */
  /* retention (gw_store_set_retention), read and written by the writer only after it is set */
  int64_t content_ms, metadata_ms, rejected_ms, prune_every_ms, next_prune_ms;
  char dir[4096];                     /* the data directory (free space) */
  uint64_t max_bytes, min_free_bytes; /* gw_store_set_limits; read by the writer */
};

/* ---- personal data at rest (tls/seal.h) ----
 * The content columns (messages.original, canonical and answer, deliveries.payload and last_error,
 * attempts.answer, resources.body) go in and out through SQL functions registered on every
 * connection: seal(x, msg_id) and unseal(x, msg_id), AES-256-GCM with the row's message id as
 * associated data; what the store looks a patient up by (resources.refs) through refkeys(x) and
 * khash(x), keyed hashes. Without a keyring (store.key_file "", unit tests) they pass values through;
 * a sealed value then does not open, and the statement fails with the key id it needs. */
static const struct gw_keyring *keyring;

void gw_store_use_keyring(const struct gw_keyring *kr) {
  keyring = kr;
  gw_store_pg_use_keyring(kr);
}

static void fn_seal(sqlite3_context *cx, int argc, sqlite3_value **v) {
  (void)argc;
  int n = sqlite3_value_bytes(v[0]);
  if (!keyring || sqlite3_value_type(v[0]) == SQLITE_NULL || n == 0) {
    sqlite3_result_value(cx, v[0]);
    return;
  }
  const void *in = sqlite3_value_blob(v[0]);
  struct gw_buf out;
  gw_buf_init(&out, (size_t)n + GW_SEAL_OVERHEAD);
  if (gw_seal(keyring, sqlite3_value_int64(v[1]), in, (size_t)n, &out) != GW_OK) {
    gw_buf_cleanup(&out);
    sqlite3_result_error(cx, "sealing failed", -1);
    return;
  }
  size_t len = 0;
  uint8_t *sealed = gw_buf_take(&out, &len); /* before |len| is read */
  sqlite3_result_blob(cx, sealed, (int)len, free);
}

static void fn_unseal(sqlite3_context *cx, int argc, sqlite3_value **v) {
  (void)argc;
  int n = sqlite3_value_bytes(v[0]);
  const uint8_t *in = sqlite3_value_blob(v[0]);
  if (sqlite3_value_type(v[0]) == SQLITE_NULL || !gw_sealed(in, (size_t)n)) {
    sqlite3_result_value(cx, v[0]);
    return;
  }
  struct gw_buf out;
  gw_buf_init(&out, (size_t)n);
  int rv = gw_unseal(keyring, sqlite3_value_int64(v[1]), in, (size_t)n, &out);
  if (rv != GW_OK) {
    char id[40], msg[200];
    gw_sealed_key_id(in, (size_t)n, id, sizeof(id));
    snprintf(msg, sizeof(msg),
             rv == GW_ERR_NOTFOUND ? "sealed under key '%s', which store.key_file does not hold"
                                   : "sealed under key '%s' and it does not open with that key (another key of that "
                                     "id, or the row was altered)",
             id);
    gw_buf_cleanup(&out);
    sqlite3_result_error(cx, msg, -1);
    return;
  }
  size_t len = 0;
  uint8_t *p = gw_buf_take(&out, &len);
  sqlite3_result_blob(cx, p ? (void *)p : (void *)"", (int)len, p ? free : SQLITE_TRANSIENT);
}

static void fn_khash(sqlite3_context *cx, int argc, sqlite3_value **v) {
  (void)argc;
  if (!keyring || sqlite3_value_type(v[0]) == SQLITE_NULL || sqlite3_value_bytes(v[0]) == 0) {
    sqlite3_result_value(cx, v[0]);
    return;
  }
  char h[65];
  gw_keyed_hash(keyring, sqlite3_value_blob(v[0]), (size_t)sqlite3_value_bytes(v[0]), h);
  sqlite3_result_text(cx, h, 64, SQLITE_TRANSIENT);
}

/* "\nA\nB\n" -> "\nkhash(A)\nkhash(B)\n": each reference a resource makes, searchable, none in clear */
static void fn_refkeys(sqlite3_context *cx, int argc, sqlite3_value **v) {
  (void)argc;
  if (!keyring || sqlite3_value_type(v[0]) == SQLITE_NULL) {
    sqlite3_result_value(cx, v[0]);
    return;
  }
  struct gw_buf out;
  gw_buf_init(&out, 1 << 16);
  gw_store_refkeys(keyring, (const char *)sqlite3_value_text(v[0]), &out);
  sqlite3_result_text(cx, out.data ? (const char *)out.data : "", (int)out.len, SQLITE_TRANSIENT);
  gw_buf_cleanup(&out);
}

/* The key id a value is sealed under, NULL when it is not sealed (cergw store status). */
static void fn_keyid(sqlite3_context *cx, int argc, sqlite3_value **v) {
  (void)argc;
  char id[40];
  gw_sealed_key_id(sqlite3_value_blob(v[0]), (size_t)sqlite3_value_bytes(v[0]), id, sizeof(id));
  if (id[0])
    sqlite3_result_text(cx, id, -1, SQLITE_TRANSIENT);
  else
    sqlite3_result_null(cx);
}

static int register_seal(sqlite3 *db) {
  static const struct {
    const char *name;
    int n;
    void (*fn)(sqlite3_context *, int, sqlite3_value **);
  } fns[] = {{"seal", 2, fn_seal},
             {"unseal", 2, fn_unseal},
             {"khash", 1, fn_khash},
             {"refkeys", 1, fn_refkeys},
             {"keyid", 1, fn_keyid}};
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) /* not DETERMINISTIC: a seal draws a fresh nonce */
    if (sqlite3_create_function_v2(db, fns[i].name, fns[i].n, SQLITE_UTF8, NULL, fns[i].fn, NULL, NULL, NULL) !=
        SQLITE_OK)
      return GW_ERR_NOMEM;
  return GW_OK;
}

static int open_db(const char *path, sqlite3 **db, struct gw_buf *err) {
  int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    gw_buf_printf(err, "%s: %s\n", path, *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
    return GW_ERR_IO;
  }
  sqlite3_busy_timeout(*db, 10000);
  if (register_seal(*db) != GW_OK) {
    gw_buf_printf(err, "%s: cannot register the sealing functions\n", path);
    return GW_ERR_NOMEM;
  }
  /* WAL, and every commit synced: an acknowledged message survives power loss */
  char *msg = NULL;
  rc = sqlite3_exec(*db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    gw_buf_printf(err, "%s: %s\n", path, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return GW_ERR_IO;
  }
  return GW_OK;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
  if (v)
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(s, i);
}

static int sq_schema_version(struct gw_store *gst) {
  struct sq_store *st = (struct sq_store *)gst;
  pthread_mutex_lock(&st->qmu);
  int v = user_version(st->q);
  pthread_mutex_unlock(&st->qmu);
  return v;
}

/* Every SQLite failure is counted here (cergw_store_errors_total) and logged once where it happens. */
static _Atomic long long store_errors;
static _Atomic long long pruned_content, pruned_messages; /* retention, for the metrics */
static char metrics_path[4096];                           /* the store opened last, for its size */

static int failed_step(sqlite3 *db, const char *what, int rc) {
  atomic_fetch_add(&store_errors, 1);
  gw_log(GW_LOG_ERROR, "store_error", "op=%s detail=\"%s\"", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  return GW_ERR_IO;
}

/* Steps |q| once and resets it: SQLITE_DONE (or a row) is GW_OK, anything else an error. */
static int step_done(sqlite3 *db, sqlite3_stmt *q, const char *what) {
  int rc = sqlite3_step(q);
  sqlite3_reset(q);
  return (rc == SQLITE_DONE || rc == SQLITE_ROW) ? GW_OK : failed_step(db, what, rc);
}

void gw_store_metrics(struct gw_buf *o) {
  gw_store_pg_metrics(o);
  gw_buf_printf(o, "# TYPE cergw_store_errors_total counter\ncergw_store_errors_total %lld\n",
                (long long)atomic_load(&store_errors));
  gw_buf_printf(o,
                "# TYPE cergw_store_pruned_content_total counter\ncergw_store_pruned_content_total %lld\n"
                "# TYPE cergw_store_pruned_messages_total counter\ncergw_store_pruned_messages_total %lld\n",
                (long long)atomic_load(&pruned_content), (long long)atomic_load(&pruned_messages));
  struct stat sb, sw;
  char wal[4200];
  snprintf(wal, sizeof(wal), "%s-wal", metrics_path);
  if (metrics_path[0] && stat(metrics_path, &sb) == 0)
    gw_buf_printf(o, "# TYPE cergw_store_bytes gauge\ncergw_store_bytes %lld\n",
                  (long long)sb.st_size + (stat(wal, &sw) == 0 ? (long long)sw.st_size : 0));
}

static int load_states(struct sq_store *st, struct gw_submit *s) {
  sqlite3_stmt *q = st->st[S_DEL_STATES];
  sqlite3_bind_int64(q, 1, s->msg_id);
  s->nres = 0;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW && s->nres < GW_MAX_BACKENDS) {
    struct gw_dresult *r = &s->res[s->nres++];
    snprintf(r->backend, sizeof(r->backend), "%s", (const char *)sqlite3_column_text(q, 0));
    r->state = sqlite3_column_int(q, 1);
    r->attempts = sqlite3_column_int(q, 2);
    r->last_status = sqlite3_column_int(q, 3);
    snprintf(r->error, sizeof(r->error), "%s", (const char *)sqlite3_column_text(q, 4));
  }
  sqlite3_reset(q);
  return (rc == SQLITE_DONE || rc == SQLITE_ROW) ? GW_OK : failed_step(st->w, "load_states", rc);
}

/* An idempotent repeat: the first message's id, answer and delivery states.
 * Returns 1 found, 0 not, GW_ERR_IO. */
static int find_dup(struct sq_store *st, struct gw_submit *s) {
  if (!s->idem_key)
    return 0;
  sqlite3_stmt *q = st->st[S_FIND_IDEM];
  bind_text(q, 1, s->idem_key);
  int rc = sqlite3_step(q);
  const char *was = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 4) : NULL;
  bool other = was && s->digest[0] && strcmp(was, s->digest) != 0; /* no digest kept: taken as a repeat */
  if (rc == SQLITE_ROW && other) {
    s->msg_id = sqlite3_column_int64(q, 0); /* the message that holds the key */
  } else if (rc == SQLITE_ROW) {
    s->msg_id = sqlite3_column_int64(q, 0);
    if (sqlite3_column_type(q, 3) != SQLITE_NULL) {
      s->answer_status = sqlite3_column_int(q, 1);
      snprintf(s->answer_ctype, sizeof(s->answer_ctype), "%s", (const char *)sqlite3_column_text(q, 2));
      int n = sqlite3_column_bytes(q, 3);
      s->answer = malloc((size_t)n + 1);
      if (s->answer) {
        memcpy(s->answer, sqlite3_column_blob(q, 3), (size_t)n);
        s->answer[n] = 0;
        s->answer_len = (size_t)n;
      }
      const char *meta = (const char *)sqlite3_column_text(q, 5), *tab = meta ? strchr(meta, '\t') : NULL;
      if (tab) {
        snprintf(s->answer_location, sizeof(s->answer_location), "%.*s", (int)(tab - meta), meta);
        snprintf(s->answer_etag, sizeof(s->answer_etag), "%s", tab + 1);
      }
    }
  }
  sqlite3_reset(q);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return failed_step(st->w, "find_idempotency_key", rc);
  if (rc != SQLITE_ROW)
    return 0;
  if (other) {
    s->status = GW_SUB_CONFLICT;
    return 1;
  }
  s->status = GW_SUB_DUPLICATE;
  return load_states(st, s) == GW_OK ? 1 : GW_ERR_IO;
}

/* ---- the narrow query interface of the rules with memory ---- */

struct sq_memq {
  struct gw_memq base; /* first: the interface */
  struct sq_store *st;
};

/* ?1 caller, ?2 ident, ?3 schedule, ?4 start, ?5 end: the slot statements' first parameters */
static void bind_slot(sqlite3_stmt *q, const char *caller, const struct gw_slotfact *f) {
  bind_text(q, 1, caller);
  bind_text(q, 2, f->ident);
  bind_text(q, 3, f->schedule);
  sqlite3_bind_int64(q, 4, f->start_ms);
  sqlite3_bind_int64(q, 5, f->end_ms);
}

/* After a one-row SELECT whose columns were read: resets |q| and answers 1 (a row), 0 (none) or GW_ERR_IO. */
static int row_done(sqlite3 *db, sqlite3_stmt *q, int rc, const char *what) {
  sqlite3_reset(q);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return failed_step(db, what, rc);
  return rc == SQLITE_ROW;
}

static int sq_slot_overlap(struct gw_memq *gm, const char *caller, const struct gw_slotfact *f, char *other, size_t n) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_SLOT_OVERLAP];
  bind_slot(q, caller, f);
  int rc = sqlite3_step(q);
  if (rc == SQLITE_ROW)
    snprintf(other, n, "%s", (const char *)sqlite3_column_text(q, 0));
  return row_done(m->st->w, q, rc, "slot_overlap");
}

static int sq_slot_state(struct gw_memq *gm, const char *caller, const char *ident) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_SLOT_GET];
  bind_text(q, 1, caller);
  bind_text(q, 2, ident);
  int rc = sqlite3_step(q);
  int is_free = rc == SQLITE_ROW ? sqlite3_column_int(q, 0) != 0 : GW_ERR_NOTFOUND;
  sqlite3_reset(q);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return failed_step(m->st->w, "slot_state", rc);
  return is_free;
}

static int sq_slot_put(struct gw_memq *gm, const char *caller, const struct gw_slotfact *f, int64_t msg_id) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_SLOT_PUT];
  bind_slot(q, caller, f);
  sqlite3_bind_int(q, 6, f->free);
  sqlite3_bind_int64(q, 7, msg_id);
  return step_done(m->st->w, q, "slot_put");
}

static int sq_slot_set_free(struct gw_memq *gm, const char *caller, const char *ident, int is_free) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_SLOT_SETFREE];
  bind_text(q, 1, caller);
  bind_text(q, 2, ident);
  sqlite3_bind_int(q, 3, is_free ? 1 : 0);
  return step_done(m->st->w, q, "slot_set_free");
}

static int sq_owner_get(struct gw_memq *gm, const char *key, char *owner, size_t n) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_OWNER_GET];
  bind_text(q, 1, key);
  int rc = sqlite3_step(q);
  if (rc == SQLITE_ROW)
    snprintf(owner, n, "%s", (const char *)sqlite3_column_text(q, 0));
  return row_done(m->st->w, q, rc, "owner_get");
}

static int sq_owner_put(struct gw_memq *gm, const char *key, const char *owner, int64_t msg_id) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_OWNER_PUT];
  bind_text(q, 1, key);
  bind_text(q, 2, owner);
  sqlite3_bind_int64(q, 3, msg_id);
  return step_done(m->st->w, q, "owner_put");
}

static int sq_appt_get(struct gw_memq *gm, const char *caller, const char *key, struct gw_apptfact *out) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_APPT_GET];
  bind_text(q, 1, caller);
  bind_text(q, 2, key);
  int rc = sqlite3_step(q);
  if (rc == SQLITE_ROW) {
    snprintf(out->status, sizeof(out->status), "%s", (const char *)sqlite3_column_text(q, 0));
    out->start_ms = sqlite3_column_int64(q, 1);
    snprintf(out->slots, sizeof(out->slots), "%s", (const char *)sqlite3_column_text(q, 2));
  }
  return row_done(m->st->w, q, rc, "appt_get");
}

static int sq_appt_put(struct gw_memq *gm, const char *caller, const char *key, const struct gw_apptfact *f,
                       int64_t msg_id) {
  struct sq_memq *m = (struct sq_memq *)gm;
  sqlite3_stmt *q = m->st->st[S_APPT_PUT];
  bind_text(q, 1, caller);
  bind_text(q, 2, key);
  bind_text(q, 3, f->status);
  sqlite3_bind_int64(q, 4, f->start_ms);
  bind_text(q, 5, f->slots);
  sqlite3_bind_int64(q, 6, msg_id);
  return step_done(m->st->w, q, "appt_put");
}

static int exec(sqlite3 *db, const char *sql) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    failed_step(db, sql, rc);
  return rc;
}

static int insert_deliveries(struct sq_store *st, struct gw_submit *s, int64_t now) {
  for (int i = 0; i < s->nd; i++) {
    struct gw_delivery *d = &s->d[i];
    sqlite3_stmt *q = st->st[S_INS_DEL];
    sqlite3_bind_int64(q, 1, s->msg_id);
    bind_text(q, 2, d->backend);
    bind_text(q, 3, d->rkey);
    bind_text(q, 4, d->path);
    bind_text(q, 5, d->ctype);
    sqlite3_bind_blob(q, 6, d->payload, (int)d->len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, now);
    bind_text(q, 8, d->ikey);
    if (step_done(st->w, q, "insert_delivery"))
      return GW_ERR_IO;
    d->id = sqlite3_last_insert_rowid(st->w);
    d->msg_id = s->msg_id;
    d->created_ms = now;
    d->state = GW_DS_QUEUED;
  }
  return GW_OK;
}

static void enqueue(struct sq_store *st, struct gw_witem *it);

/* "p1=delivered apkolce=queued" for message |id|, into |summary|. */
static int summarize(sqlite3 *db, int64_t id, char *summary, size_t n) {
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db, "SELECT backend, state FROM deliveries WHERE msg_id = ?1 ORDER BY id", -1, &q, NULL) !=
      SQLITE_OK)
    return failed_step(db, "summary", 0);
  sqlite3_bind_int64(q, 1, id);
  size_t o = 0;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW && o < n)
    o += (size_t)snprintf(summary + o, n - o, "%s%s=%s", o ? " " : "", (const char *)sqlite3_column_text(q, 0),
                          gw_dstate_name(sqlite3_column_int(q, 1)));
  sqlite3_finalize(q);
  return (rc == SQLITE_DONE || rc == SQLITE_ROW) ? GW_OK : failed_step(db, "summary", rc);
}

static int latest(sqlite3 *db, const char *rkey, char **canonical, char *summary, size_t n) {
  *canonical = NULL;
  summary[0] = 0;
  sqlite3_stmt *q = NULL;
  int rv;
  if (sqlite3_prepare_v2(db,
                         "SELECT m.id, unseal(m.canonical, m.id) FROM deliveries d JOIN messages m ON m.id = d.msg_id"
                         " WHERE d.rkey = ?1 ORDER BY d.id DESC LIMIT 1",
                         -1, &q, NULL) != SQLITE_OK) {
    rv = failed_step(db, "latest", 0);
    goto out;
  }
  sqlite3_bind_text(q, 1, rkey, -1, SQLITE_STATIC);
  int rc = sqlite3_step(q);
  if (rc != SQLITE_ROW) {
    rv = rc == SQLITE_DONE ? GW_ERR_NOTFOUND : failed_step(db, "latest", rc);
    goto out;
  }
  int64_t id = sqlite3_column_int64(q, 0);
  int len = sqlite3_column_bytes(q, 1);
  if (!(*canonical = malloc((size_t)len + 1))) {
    rv = GW_ERR_NOMEM;
    goto out;
  }
  memcpy(*canonical, sqlite3_column_blob(q, 1), (size_t)len);
  (*canonical)[len] = 0;
  rv = summarize(db, id, summary, n);
  if (rv) {
    free(*canonical);
    *canonical = NULL;
  }
out:
  sqlite3_finalize(q);
  return rv;
}

/* A version's body from a row (|q| at column |col|: body, then msg_id and entry): its own, or when it
 * has none (stored empty), the resource at its entry of its message's canonical form. |*out| malloc'd,
 * NUL-terminated. GW_OK, GW_ERR_NOTFOUND (the canonical form is gone) or another error. */
static int row_body(struct sq_store *st, sqlite3_stmt *q, int col, uint8_t **out, size_t *len) {
  int n = sqlite3_column_bytes(q, col);
  *out = NULL;
  *len = 0;
  if (n > 0) {
    if (!(*out = malloc((size_t)n + 1)))
      return GW_ERR_NOMEM;
    memcpy(*out, sqlite3_column_blob(q, col), (size_t)n);
    (*out)[n] = 0;
    *len = (size_t)n;
    return GW_OK;
  }
  if (!st->base.hooks.extract)
    return GW_ERR_NOTFOUND;
  int64_t msg_id = sqlite3_column_int64(q, col + 1);
  int entry = sqlite3_column_int(q, col + 2);
  sqlite3_stmt *c = NULL;
  int rv = GW_ERR_NOTFOUND;
  if (sqlite3_prepare_v2(st->w, "SELECT unseal(canonical, id) FROM messages WHERE id = ?1", -1, &c, NULL) != SQLITE_OK)
    return failed_step(st->w, "resource_body", 0);
  sqlite3_bind_int64(c, 1, msg_id);
  if (sqlite3_step(c) == SQLITE_ROW && sqlite3_column_bytes(c, 0) > 0)
    rv = st->base.hooks.extract(st->base.hooks.extract_ud, sqlite3_column_blob(c, 0),
                                (size_t)sqlite3_column_bytes(c, 0), entry, out, len);
  sqlite3_finalize(c);
  return rv;
}

/* The conditions of a search, shared by its count and its page; ?1 clinic, ?2 type. */
#define READ_WHERE                                                                                                     \
  " FROM resources r WHERE r.clinic = ?1 AND r.rtype = ?2"                                                             \
  " AND (?3 = '' OR r.id = ?3) AND (?4 = 0 OR r.version = ?4)"                                                         \
  " AND (?13 = 1 OR r.version = (SELECT MAX(x.version) FROM resources x WHERE x.clinic = r.clinic"                     \
  "  AND x.rtype = r.rtype AND x.id = r.id))"                                                                          \
  " AND (?5 = '' OR r.ident = khash(?5)) AND (?6 = '' OR r.identvalue = khash(?6)) AND (?7 = '' OR r.status = ?7)"     \
  " AND (?8 = '' OR instr(r.refs, char(10) || khash(?8) || char(10)) > 0) AND (?9 = 0 OR r.date_ms >= ?9)"             \
  " AND (?10 = 0 OR r.date_ms < ?10) AND (?11 = 0 OR r.updated_ms >= ?11) AND (?12 = 0 OR r.updated_ms < ?12)"

static void bind_read(sqlite3_stmt *q, const struct gw_rquery *rq) {
  sqlite3_bind_text(q, 1, rq->clinic, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, rq->rtype, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 3, rq->id, -1, SQLITE_STATIC);
  sqlite3_bind_int(q, 4, rq->version);
  sqlite3_bind_text(q, 5, rq->ident, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 6, rq->identvalue, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 7, rq->status, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 8, rq->ref, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 9, rq->date_ge);
  sqlite3_bind_int64(q, 10, rq->date_lt);
  sqlite3_bind_int64(q, 11, rq->updated_ge);
  sqlite3_bind_int64(q, 12, rq->updated_lt);
  sqlite3_bind_int(q, 13, rq->history || rq->version ? 1 : 0);
}

/* Runs a FHIR read on the writer's connection, after the batch committed: a page of rows, newest
 * first (a history: highest version first), with the delivery summary of each row's message. */
static void run_read(struct sq_store *st, struct gw_witem *it) {
  const struct gw_rquery *rq = &it->rq;
  int count = rq->count > 0 && rq->count <= 1000 ? rq->count : 50, total = 0, n = 0, rv = GW_OK;
  struct gw_rrow *rows = calloc((size_t)count, sizeof(*rows));
  sqlite3_stmt *c = NULL, *q = NULL;
  if (!rows) {
    it->read_fn(it->ud, GW_ERR_NOMEM, NULL, 0, 0);
    return;
  }
  if (sqlite3_prepare_v2(st->w, "SELECT COUNT(*)" READ_WHERE, -1, &c, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(
          st->w,
          "SELECT r.id, r.version, r.updated_ms, r.msg_id, unseal(r.body, r.msg_id), r.msg_id, r.entry" READ_WHERE
          " ORDER BY r.updated_ms DESC, r.id, r.version DESC LIMIT ?14 OFFSET ?15",
          -1, &q, NULL) != SQLITE_OK) {
    rv = failed_step(st->w, "read", 0);
    goto out;
  }
  bind_read(c, rq);
  if (sqlite3_step(c) == SQLITE_ROW)
    total = sqlite3_column_int(c, 0);
  bind_read(q, rq);
  sqlite3_bind_int(q, 14, count);
  sqlite3_bind_int(q, 15, rq->offset > 0 ? rq->offset : 0);
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW && n < count) {
    struct gw_rrow *r = &rows[n];
    snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(q, 0));
    r->version = sqlite3_column_int(q, 1);
    r->updated_ms = sqlite3_column_int64(q, 2);
    r->msg_id = sqlite3_column_int64(q, 3);
    if ((rv = row_body(st, q, 4, &r->body, &r->len)) != GW_OK)
      break;
    n++;
  }
  if (rv == GW_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
    rv = failed_step(st->w, "read", rc);
  for (int i = 0; rv == GW_OK && i < n; i++)
    rv = summarize(st->w, rows[i].msg_id, rows[i].summary, sizeof(rows[i].summary));
out:
  sqlite3_finalize(c);
  sqlite3_finalize(q);
  it->read_fn(it->ud, rv == GW_OK && !n && !rq->search ? GW_ERR_NOTFOUND : rv, rows, n, total);
  for (int i = 0; i < n; i++)
    free(rows[i].body);
  free(rows);
}

/* After the commit: the lookups of this batch see everything committed so far. */
static void run_lookup(struct sq_store *st, struct gw_witem *it) {
  char *canon = NULL, summary[256];
  int rv = latest(st->w, (const char *)it->body, &canon, summary, sizeof(summary));
  it->fn(it->ud, rv, canon, summary);
  free(canon);
}

/* The latest version of a resource of |clinic|: by identifier when |ident| is given, else by |id|.
 * 1 (id, version and, when |body| is not NULL, a malloc'd body), 0 none, or GW_ERR_IO. */
static int res_latest(struct sq_store *st, const char *clinic, const struct gw_resfact *r, char *id, size_t idn,
                      int *version, uint8_t **body, size_t *blen) {
  int rv = 0;
  for (int pass = 0; pass < 2 && rv == 0; pass++) {
    const char *key = pass == 0 ? r->ident : r->id;
    if (!key[0])
      continue;
    sqlite3_stmt *q = st->st[pass == 0 ? S_RES_BY_IDENT : S_RES_BY_ID];
    bind_text(q, 1, clinic);
    bind_text(q, 2, r->rtype);
    bind_text(q, 3, key);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
      snprintf(id, idn, "%s", (const char *)sqlite3_column_text(q, 0));
      *version = sqlite3_column_int(q, 1);
      if (body && row_body(st, q, 2, body, blen) != GW_OK)
        *body = NULL; /* nothing to merge into: the version is not kept */
      rv = 1;
    } else if (rc != SQLITE_DONE) {
      rv = failed_step(st->w, "resource_latest", rc);
    }
    sqlite3_reset(q);
  }
  return rv;
}

/* If-Match: the update names the version it expects of its resource; another one refuses it. */
static int check_if_match(struct sq_store *st, struct gw_submit *s) {
  if (!s->if_match || !s->nresf)
    return GW_OK;
  char id[72];
  int version = 0;
  int rv = res_latest(st, s->caller, &s->resf[0], id, sizeof(id), &version, NULL, NULL);
  if (rv < 0)
    return GW_ERR_IO;
  if (version != s->if_match) {
    s->status = GW_SUB_PRECONDITION;
    s->current_version = version;
  }
  return GW_OK;
}

/* Keeps a new version of each resource |s| writes: one id per resource (the one it was first given,
 * found by identifier, else by id), the version after the last, a PATCH merged into the version
 * before it (a PATCH of a resource never seen keeps nothing). */
static int keep_versions(struct sq_store *st, struct gw_submit *s, int64_t now) {
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
    sqlite3_stmt *q = st->st[S_RES_PUT];
    bind_text(q, 1, s->caller);
    bind_text(q, 2, r->rtype);
    bind_text(q, 3, id);
    sqlite3_bind_int(q, 4, version + 1);
    sqlite3_bind_int64(q, 5, s->msg_id);
    sqlite3_bind_int64(q, 6, now);
    bind_text(q, 7, r->ident);
    bind_text(q, 8, r->identvalue);
    bind_text(q, 9, r->status);
    sqlite3_bind_int64(q, 10, r->date_ms);
    bind_text(q, 11, r->refs);
    sqlite3_bind_blob(q, 12, body ? (const void *)body : "", (int)blen, SQLITE_STATIC); /* empty: see entry */
    sqlite3_bind_int(q, 13, r->entry);
    rv = step_done(st->w, q, "keep_version");
    free(merged);
    if (rv != GW_OK)
      return rv;
    snprintf(r->out_id, sizeof(r->out_id), "%s", id);
    r->out_version = version + 1;
  }
  return GW_OK;
}

/* Inserts |s| inside the open transaction. Returns GW_OK (accepted, a
 * duplicate or refused by a rule with memory: see s->status) or GW_ERR_IO. */
static int insert_submit(struct sq_store *st, struct gw_submit *s, int64_t now) {
  if (s->match_rkey) { /* conditional create: decided in the same transaction as the insert */
    char *canon = NULL;
    int rv = latest(st->w, s->match_rkey, &canon, s->match_summary, sizeof(s->match_summary));
    free(canon);
    if (rv == GW_OK) {
      s->status = GW_SUB_MATCHED;
      return GW_OK;
    }
    if (rv != GW_ERR_NOTFOUND)
      return GW_ERR_IO;
  }
  int dup = find_dup(st, s);
  if (dup)
    return dup > 0 ? GW_OK : GW_ERR_IO;
  if (check_if_match(st, s) != GW_OK)
    return GW_ERR_IO;
  if (s->status == GW_SUB_PRECONDITION)
    return GW_OK;
  if (exec(st->w, "SAVEPOINT sub") != SQLITE_OK)
    return GW_ERR_IO;
  sqlite3_stmt *q = st->st[S_INS_MSG];
  sqlite3_bind_int64(q, 1, now);
  bind_text(q, 2, s->caller);
  bind_text(q, 3, s->dialect);
  bind_text(q, 4, s->op);
  bind_text(q, 5, s->idem_key);
  bind_text(q, 6, s->rtype);
  bind_text(q, 7, s->rid[0] ? s->rid : NULL);
  sqlite3_bind_blob(q, 8, s->original, (int)s->original_len, SQLITE_STATIC);
  sqlite3_bind_blob(q, 9, s->canonical, (int)s->canonical_len, SQLITE_STATIC);
  bind_text(q, 10, s->digest[0] ? s->digest : NULL);
  int rv = step_done(st->w, q, "insert_message");
  if (rv == GW_OK) {
    s->msg_id = sqlite3_last_insert_rowid(st->w);
    rv = insert_deliveries(st, s, now);
  }
  for (int i = 0; rv == GW_OK && i < s->npesels; i++) {
    sqlite3_stmt *p = st->st[S_PATIENT_PUT];
    bind_text(p, 1, s->pesels[i]);
    sqlite3_bind_int64(p, 2, s->msg_id);
    rv = step_done(st->w, p, "patient_index");
  }
  if (rv == GW_OK && st->base.hooks.memory) {
    struct sq_memq m = {.base = {.ops = &sq_memq_ops}, .st = st};
    rv = st->base.hooks.memory(st->base.hooks.memory_ud, &m.base, s);
  }
  if (rv == GW_OK)
    rv = keep_versions(st, s, now);
  if (rv != GW_OK) { /* refused by a rule with memory, or the database failed: nothing of it is kept */
    exec(st->w, "ROLLBACK TO sub");
    exec(st->w, "RELEASE sub");
    if (rv == GW_ERR_INVAL) {
      s->status = GW_SUB_REJECTED;
      s->msg_id = 0;
      for (int i = 0; i < s->nd; i++)
        s->d[i].id = 0;
      return GW_OK;
    }
    return GW_ERR_IO;
  }
  if (exec(st->w, "RELEASE sub") != SQLITE_OK)
    return GW_ERR_IO;
  s->status = GW_SUB_ACCEPTED;
  return GW_OK;
}

static int apply_update(struct sq_store *st, const struct gw_witem *it, int64_t now) {
  sqlite3_stmt *q;
  if (it->kind == W_UPDATE) {
    q = st->st[S_UPD_DEL];
    sqlite3_bind_int64(q, 1, it->d.id);
    sqlite3_bind_int(q, 2, it->d.state);
    sqlite3_bind_int(q, 3, it->d.attempts);
    sqlite3_bind_int64(q, 4, it->d.next_ms);
    sqlite3_bind_int(q, 5, it->d.last_status);
    bind_text(q, 6, it->d.last_error);
    sqlite3_bind_int64(q, 7, now);
    if (it->d.attempts > 0) { /* the attempt this state follows, once */
      sqlite3_stmt *a = st->st[S_ATTEMPT_PUT];
      sqlite3_bind_int64(a, 1, it->d.id);
      sqlite3_bind_int(a, 2, it->d.attempts);
      sqlite3_bind_int64(a, 3, now);
      sqlite3_bind_int(a, 4, it->d.state);
      sqlite3_bind_int(a, 5, it->d.last_status);
      bind_text(a, 6, it->d.last_error);
      if (step_done(st->w, a, "keep_attempt") != GW_OK)
        return GW_ERR_IO;
    }
  } else {
    q = st->st[S_UPD_ANS];
    sqlite3_bind_int64(q, 1, it->msg_id);
    sqlite3_bind_int(q, 2, it->status);
    bind_text(q, 3, it->ctype);
    sqlite3_bind_blob(q, 4, it->body, (int)it->len, SQLITE_STATIC);
    bind_text(q, 5, it->meta);
  }
  return step_done(st->w, q, it->kind == W_UPDATE ? "update_delivery" : "store_answer");
}

/* The next batch (at most BATCH_MAX items), or NULL when stopping with nothing queued. After a failed
 * batch it waits a little first, so a full disk is not hammered. */
/* ---- retention ----
 * Content (original, canonical form, answer, payloads, errors, attempt answers, resource versions) of a
 * message whose every delivery was delivered goes after content_days; the message's metadata after
 * metadata_days, unless a slot or a resource version still names it. A message with a delivery queued,
 * being retried, rejected or dead is never pruned: it waits for an operator. Small steps (PRUNE_STEP
 * messages, one short transaction), between batches, so the writer is never held for long. */
#define PRUNE_STEP 16
#define PRUNE_DONE "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = messages.id AND d.state <> 1)"
/* ?2: messages whose deliveries were each delivered or rejected, older than this, go too (0: never) */
#define PRUNE_REJECTED                                                                                                 \
  "(?2 > 0 AND received_ms < ?2 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = messages.id"               \
  " AND d.state NOT IN (1, 2)))"

/* Full: past store.max_bytes (database and write-ahead log), or less than store.min_free_bytes left on
 * its file system. New messages are then refused (503, the reason said) before the disk is full, so what
 * was acknowledged and the state of its deliveries can always be written. */
static bool store_full(struct sq_store *st, char *why, size_t n) {
  char p[4200];
  struct stat sb;
  uint64_t size = 0;
  snprintf(p, sizeof(p), "%s/cergw.db", st->dir);
  if (stat(p, &sb) == 0)
    size += (uint64_t)sb.st_size;
  snprintf(p, sizeof(p), "%s/cergw.db-wal", st->dir);
  if (stat(p, &sb) == 0)
    size += (uint64_t)sb.st_size;
  if (st->max_bytes && size > st->max_bytes) {
    snprintf(why, n,
             "the store is full (%llu bytes of store.max_bytes %llu): nothing was accepted; send it again "
             "later",
             (unsigned long long)size, (unsigned long long)st->max_bytes);
    return true;
  }
  struct statvfs vs;
  if (st->min_free_bytes && statvfs(st->dir, &vs) == 0 &&
      (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize < st->min_free_bytes) {
    snprintf(why, n,
             "the store's disk is nearly full (%llu bytes free, store.min_free_bytes %llu): nothing was "
             "accepted; send it again later",
             (unsigned long long)vs.f_bavail * (unsigned long long)vs.f_frsize, (unsigned long long)st->min_free_bytes);
    return true;
  }
  return false;
}

static void sq_set_limits(struct gw_store *gst, uint64_t max_bytes, uint64_t min_free_bytes) {
  struct sq_store *st = (struct sq_store *)gst;
  pthread_mutex_lock(&st->mu);
  st->max_bytes = max_bytes;
  st->min_free_bytes = min_free_bytes;
  pthread_mutex_unlock(&st->mu);
}

/* Runs |n| statements of a prune step (?1 the cut-off time); |*changes|: the rows the third one
 * (the choice of messages) picked. */
static int prune_sql(struct sq_store *st, const char *const *sql, size_t n, int64_t cut, int64_t cut_rejected,
                     long *changes) {
  for (size_t i = 0; i < n; i++) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->w, sql[i], -1, &q, NULL) != SQLITE_OK)
      return failed_step(st->w, "prune", 0);
    sqlite3_bind_int64(q, 1, cut);
    if (sqlite3_bind_parameter_count(q) >= 2)
      sqlite3_bind_int64(q, 2, cut_rejected);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
      return failed_step(st->w, "prune", rc);
    if (i == 2)
      *changes = sqlite3_changes(st->w);
  }
  return GW_OK;
}

static int prune_step(struct sq_store *st, int64_t now, long *content, long *metadata) {
  *content = *metadata = 0;
  uint64_t t0 = gw_now_ns();
  if (!st->content_ms && !st->metadata_ms)
    return GW_OK;
  if (st->synced_full) { /* a prune lost to a power cut is done again: no fsync of its own to wait for */
    exec(st->w, "PRAGMA synchronous=NORMAL");
    st->synced_full = false;
  }
  if (exec(st->w, "BEGIN IMMEDIATE") != SQLITE_OK)
    return GW_ERR_IO;
  int rv = GW_OK;
  if (st->content_ms) {
    /* the ids first (a small temporary table), then each table once */
    static const char *const content_sql[] = {
        "CREATE TEMP TABLE IF NOT EXISTS prune_ids(id INTEGER PRIMARY KEY)",
        "DELETE FROM prune_ids",
        "INSERT INTO prune_ids SELECT id FROM messages WHERE (length(original) > 0 OR"
        " length(canonical) > 0 OR answer IS NOT NULL) AND ((received_ms < ?1 AND " PRUNE_DONE ") OR " PRUNE_REJECTED
        ") ORDER BY received_ms LIMIT 16",
        "UPDATE messages SET original = X'', canonical = X'', answer = NULL WHERE id IN prune_ids",
        "UPDATE deliveries SET payload = X'', last_error = '' WHERE msg_id IN prune_ids",
        "UPDATE attempts SET answer = '' WHERE delivery_id IN (SELECT id FROM deliveries WHERE msg_id IN prune_ids)",
        "DELETE FROM resources WHERE msg_id IN prune_ids",
    };
    rv = prune_sql(st, content_sql, sizeof(content_sql) / sizeof(content_sql[0]), now - st->content_ms,
                   st->rejected_ms ? now - st->rejected_ms : 0, content);
  }
  if (rv == GW_OK && st->metadata_ms) {
    static const char *const meta_sql[] = {
        "CREATE TEMP TABLE IF NOT EXISTS prune_ids(id INTEGER PRIMARY KEY)",
        "DELETE FROM prune_ids",
        "INSERT INTO prune_ids SELECT id FROM messages WHERE ((received_ms < ?1 AND " PRUNE_DONE ") OR " PRUNE_REJECTED
        ")"
        " AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.msg_id = messages.id)"
        " AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.msg_id = messages.id) ORDER BY received_ms LIMIT 16",
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE msg_id IN prune_ids)",
        "DELETE FROM deliveries WHERE msg_id IN prune_ids",
        "DELETE FROM patients WHERE msg_id IN prune_ids",
        "DELETE FROM messages WHERE id IN prune_ids",
    };
    rv = prune_sql(st, meta_sql, sizeof(meta_sql) / sizeof(meta_sql[0]), now - st->metadata_ms,
                   st->rejected_ms ? now - st->metadata_ms : 0, metadata);
  }
  if (rv == GW_OK) { /* for cergw store status: the policy in force and when it last ran */
    char v[200];
    snprintf(v, sizeof(v), "%lld %lld %lld %lld %lld", (long long)now, (long long)(st->content_ms / 86400000),
             (long long)(st->metadata_ms / 86400000), (long long)(st->rejected_ms / 86400000),
             (long long)st->prune_every_ms);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->w, "INSERT OR REPLACE INTO store_meta(key, value) VALUES('retention', ?1)", -1, &q,
                           NULL) == SQLITE_OK) {
      sqlite3_bind_text(q, 1, v, -1, SQLITE_STATIC);
      if (sqlite3_step(q) != SQLITE_DONE)
        rv = failed_step(st->w, "prune", 0);
    }
    sqlite3_finalize(q);
  }
  if (rv == GW_OK && exec(st->w, "COMMIT") == SQLITE_OK) {
    atomic_fetch_add(&pruned_content, *content);
    atomic_fetch_add(&pruned_messages, *metadata);
    if (*content || *metadata) {
      exec(st->w, "PRAGMA incremental_vacuum(256)"); /* the space back, a little at a time */
      gw_log(GW_LOG_INFO, "store_pruned", "content=%ld metadata=%ld dur_us=%lld", *content, *metadata,
             (long long)((gw_now_ns() - t0) / 1000));
    }
    return GW_OK;
  }
  if (!sqlite3_get_autocommit(st->w))
    exec(st->w, "ROLLBACK");
  return rv != GW_OK ? rv : GW_ERR_IO;
}

/* Between batches: a prune step when one is due; while the last one found a full step's worth (a
 * backlog), the next 50 ms later (some 1,300 messages a second, more than the gateway takes in, with the
 * writer free for the batches between), else at the next period. */
static void maybe_prune(struct sq_store *st, int64_t now) {
  if (!st->prune_every_ms || now < st->next_prune_ms)
    return;
  long c = 0, m = 0;
  int rv = prune_step(st, now, &c, &m);
  st->next_prune_ms = now + (rv == GW_OK && (c == PRUNE_STEP || m == PRUNE_STEP) ? 20 : st->prune_every_ms);
}

static struct gw_witem *take_batch(struct sq_store *st, bool pause, int *n) {
  pthread_mutex_lock(&st->mu);
  if (pause && !st->stop)
    gw_timed_wait(&st->cv, &st->mu, 200);
  while (!st->q_items.head && !st->stop) {
    if (!st->prune_every_ms) {
      pthread_cond_wait(&st->cv, &st->mu);
      continue;
    }
    int64_t wait = st->next_prune_ms - gw_wall_ms();
    if (wait <= 0)
      break; /* idle, and a prune step is due */
    gw_timed_wait(&st->cv, &st->mu, wait);
  }
  struct gw_witem *batch = gw_wlist_take(&st->q_items, BATCH_MAX, n);
  pthread_mutex_unlock(&st->mu);
  return batch;
}

/* One transaction for the batch. Returns SQLITE_OK when it committed; an update that could not be
 * written is marked (it->failed) to be tried again. */
static int write_batch(struct sq_store *st, struct gw_witem *batch, int n, int64_t now) {
  /* A batch with new messages is synced to disk before anybody hears of them. A batch of
   * delivery-state changes and stored answers only is not: losing one to a power cut means a
   * delivery is attempted again with the same idempotency key, or an answer is rebuilt from
   * the states; the next synced commit makes them durable anyway. */
  bool has_submit = false;
  for (struct gw_witem *it = batch; it && !has_submit; it = it->next)
    has_submit = it->kind == W_SUBMIT;
  char full[256];
  if (has_submit && store_full(st, full, sizeof(full))) { /* new messages refused, state changes still written */
    for (struct gw_witem *it = batch; it; it = it->next)
      if (it->kind == W_SUBMIT && it->s->status == GW_SUB_ACCEPTED) {
        it->s->status = GW_SUB_FAILED;
        snprintf(it->s->reject_en, sizeof(it->s->reject_en), "%s", full);
        snprintf(it->s->reject_pl, sizeof(it->s->reject_pl), "%s", full);
        it->kind = W_FULL;
      }
    has_submit = false;
  }
  if (has_submit != st->synced_full) {
    exec(st->w, has_submit ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    st->synced_full = has_submit;
  }
  int rc = exec(st->w, "BEGIN IMMEDIATE");
  for (struct gw_witem *it = batch; it && rc == SQLITE_OK; it = it->next) {
    if (it->kind == W_FULL)
      continue;
    if (it->kind == W_SUBMIT && insert_submit(st, it->s, now) != GW_OK)
      it->s->status = GW_SUB_FAILED; /* logged where it failed; the others of the batch stand */
    else if (it->kind == W_UPDATE || it->kind == W_ANSWER)
      it->failed = apply_update(st, it, now) != GW_OK; /* counted and logged; tried again */
    if (sqlite3_get_autocommit(st->w))
      rc = SQLITE_ABORT; /* SQLite rolled the whole transaction back (disk full, I/O): the batch failed */
  }
  if (rc == SQLITE_OK)
    rc = exec(st->w, "COMMIT");
  if (rc != SQLITE_OK) {
    atomic_fetch_add(&store_errors, 1);
    gw_log(GW_LOG_ERROR, "store_commit_failed", "detail=\"%s\" items=%d", sqlite3_errmsg(st->w), n);
    if (!sqlite3_get_autocommit(st->w))
      exec(st->w, "ROLLBACK");
  }
  return rc;
}

static void fin_lookup(void *impl, struct gw_witem *it) { run_lookup(impl, it); }
static void fin_read(void *impl, struct gw_witem *it) { run_read(impl, it); }
static int fin_prune(void *impl, int64_t now, long *content, long *metadata) {
  return prune_step(impl, now, content, metadata);
}

/* After the commit: who waits hears of it (only now, with the data on disk); state changes and answers
 * that were not written go back to the queue, so the store and the dispatcher's view agree after any
 * fault. Returns whether anything failed. */
static bool finish_batch(struct sq_store *st, struct gw_witem *batch, int rc) {
  struct gw_wlist retry = {0};
  char full[256]; /* new messages refused: the store is full */
  pthread_mutex_lock(&st->mu);
  bool stopping = st->stop; /* stopping: what is not written now is lost */
  pthread_mutex_unlock(&st->mu);
  const struct gw_finish f = {.st = &st->base, .impl = st, .lookup = fin_lookup, .read = fin_read, .prune = fin_prune};
  bool failed = gw_store_finish(&f, batch, rc == SQLITE_OK, stopping, &retry, full, sizeof(full));
  pthread_mutex_lock(&st->mu);
  gw_wlist_requeue(&st->q_items, &retry);
  pthread_mutex_unlock(&st->mu);
  char why[300];
  snprintf(why, sizeof(why), "the store cannot commit: %s", sqlite3_errmsg(st->w));
  gw_health_set(GW_HEALTH_STORE, failed ? why : full[0] ? full : NULL);
  return failed;
}

static void *writer_main(void *arg) {
  struct sq_store *st = arg;
  pthread_setname_np(pthread_self(), "cergw-store");
  bool failed = false;
  for (;;) {
    int n;
    struct gw_witem *batch = take_batch(st, failed, &n);
    if (!batch) {
      pthread_mutex_lock(&st->mu);
      bool stop = st->stop;
      pthread_mutex_unlock(&st->mu);
      if (stop)
        break;
      maybe_prune(st, gw_wall_ms());
      continue;
    }
    int rc = write_batch(st, batch, n, gw_wall_ms());
    failed = finish_batch(st, batch, rc);
    maybe_prune(st, gw_wall_ms());
  }
  return NULL;
}

static void enqueue(struct sq_store *st, struct gw_witem *it) {
  pthread_mutex_lock(&st->mu);
  gw_wlist_push(&st->q_items, it);
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

static void sq_set_retention(struct gw_store *gst, uint32_t content_days, uint32_t metadata_days, uint32_t every_ms,
                             uint32_t rejected_days) {
  struct sq_store *st = (struct sq_store *)gst;
  pthread_mutex_lock(&st->mu);
  st->rejected_ms = (int64_t)rejected_days * 86400000;
  st->content_ms = (int64_t)content_days * 86400000;
  st->metadata_ms = (int64_t)metadata_days * 86400000;
  st->prune_every_ms = (content_days || metadata_days) ? (every_ms ? every_ms : 60000) : 0;
  st->next_prune_ms = gw_wall_ms() + st->prune_every_ms;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

static struct gw_delivery *row_delivery(sqlite3_stmt *q) {
  struct gw_delivery *d = calloc(1, sizeof(*d));
  if (!d)
    return NULL;
  d->id = sqlite3_column_int64(q, 0);
  d->msg_id = sqlite3_column_int64(q, 1);
  snprintf(d->backend, sizeof(d->backend), "%s", (const char *)sqlite3_column_text(q, 2));
  snprintf(d->rkey, sizeof(d->rkey), "%s", (const char *)sqlite3_column_text(q, 3));
  snprintf(d->path, sizeof(d->path), "%s", (const char *)sqlite3_column_text(q, 4));
  snprintf(d->ctype, sizeof(d->ctype), "%s", (const char *)sqlite3_column_text(q, 5));
  int n = sqlite3_column_bytes(q, 6);
  d->payload = malloc((size_t)n + 1);
  if (!d->payload) {
    free(d);
    return NULL;
  }
  memcpy(d->payload, sqlite3_column_blob(q, 6), (size_t)n);
  d->payload[n] = 0;
  d->len = (size_t)n;
  d->state = sqlite3_column_int(q, 7);
  d->attempts = sqlite3_column_int(q, 8);
  d->next_ms = sqlite3_column_int64(q, 9);
  d->last_status = sqlite3_column_int(q, 10);
  snprintf(d->last_error, sizeof(d->last_error), "%s", (const char *)sqlite3_column_text(q, 11));
  d->created_ms = sqlite3_column_int64(q, 12);
  snprintf(d->ikey, sizeof(d->ikey), "%s", (const char *)sqlite3_column_text(q, 13));
  snprintf(d->acting, sizeof(d->acting), "%s", (const char *)sqlite3_column_text(q, 14));
  return d;
}

#define DELIVERY_COLS                                                                                                  \
  "d.id, d.msg_id, d.backend, d.rkey, d.path, d.ctype, unseal(d.payload, d.msg_id), d.state, d.attempts, d.next_ms, "  \
  "d.last_status, unseal(d.last_error, d.msg_id), d.created_ms, d.ikey, m.caller"
#define DELIVERY_FROM " FROM deliveries d JOIN messages m ON m.id = d.msg_id"

/* Hands every row of |q| (prepared and bound) to |fn| as a delivery, then finalizes |q|. */
static int each_delivery(sqlite3 *db, sqlite3_stmt *q, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  int n = 0, rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    struct gw_delivery *d = row_delivery(q);
    if (!d) { /* out of memory: stop here; the rest stays queued in the store */
      rc = SQLITE_NOMEM;
      break;
    }
    fn(ud, d);
    n++;
  }
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE)
    return n ? n : failed_step(db, "load_deliveries", rc);
  return n;
}

static int sq_load(struct gw_store *gst, int state, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  struct sq_store *st = (struct sq_store *)gst;
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(st->r, "SELECT " DELIVERY_COLS DELIVERY_FROM " WHERE d.state = ?1 ORDER BY d.id", -1, &q,
                         NULL) != SQLITE_OK)
    return failed_step(st->r, "load_deliveries", 0);
  sqlite3_bind_int(q, 1, state);
  return each_delivery(st->r, q, fn, ud);
}

static int sq_load_range(struct gw_store *gst, const char *backend, int64_t from, int64_t to, int limit,
                         void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  struct sq_store *st = (struct sq_store *)gst;
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(st->r,
                         "SELECT " DELIVERY_COLS DELIVERY_FROM
                         " WHERE d.backend = ?1 AND d.state = 0 AND d.id BETWEEN ?2"
                         " AND ?3 ORDER BY d.id LIMIT ?4",
                         -1, &q, NULL) != SQLITE_OK)
    return failed_step(st->r, "load_range", 0);
  sqlite3_bind_text(q, 1, backend, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 2, from);
  sqlite3_bind_int64(q, 3, to);
  sqlite3_bind_int(q, 4, limit);
  return each_delivery(st->r, q, fn, ud);
}

/* The data directory 0700 and the database files 0600: a store others can read is refused, with the
 * fix (personal data at rest, docs/operations.md). */
static int make_dir(const char *dir, struct gw_buf *err) {
  if (mkdir(dir, 0700) && errno != EEXIST) {
    gw_buf_printf(err, "%s: %s\n", dir, strerror(errno));
    return GW_ERR_IO;
  }
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    gw_buf_printf(err, "%s: not a directory\n", dir);
    return GW_ERR_IO;
  }
  if (sb.st_mode & 077) {
    gw_buf_printf(err,
                  "%s: the data directory is open to other users (mode %04o) and holds personal data: "
                  "chmod 700 %s\n",
                  dir, (unsigned)(sb.st_mode & 07777), dir);
    return GW_ERR_CONF;
  }
  static const char *const files[] = {"cergw.db", "cergw.db-wal", "cergw.db-shm", "cergw.db-journal"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
    if (stat(p, &sb) == 0 && (sb.st_mode & 077)) {
      gw_buf_printf(err, "%s: readable by other users (mode %04o): chmod 600 %s/cergw.db*\n", p,
                    (unsigned)(sb.st_mode & 07777), dir);
      return GW_ERR_CONF;
    }
  }
  return GW_OK;
}

/* The identifiers the store looks things up by (idempotency keys, business identifiers, ownership and
 * appointment keys) are kept as keyed hashes once a keyring is in use: a store written in clear before
 * is converted once, in one transaction (store_meta records it). */
static int hash_identifiers(sqlite3 *db, const char *path, struct gw_buf *err) {
  static const char sql[] =
      "CREATE TABLE IF NOT EXISTS store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "BEGIN IMMEDIATE;"
      "UPDATE messages SET idem_key = khash(idem_key) WHERE idem_key IS NOT NULL AND NOT EXISTS"
      " (SELECT 1 FROM store_meta WHERE key = 'identifiers');"
      "UPDATE resources SET ident = khash(ident), identvalue = khash(identvalue) WHERE NOT EXISTS"
      " (SELECT 1 FROM store_meta WHERE key = 'identifiers');"
      "UPDATE owners SET key = khash(key) WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = 'identifiers');"
      "UPDATE appointments SET akey = khash(akey), slots = seal(slots, msg_id) WHERE NOT EXISTS"
      " (SELECT 1 FROM store_meta WHERE key = 'identifiers');"
      "UPDATE slots SET label = seal(ident, msg_id), ident = khash(ident), schedule = khash(schedule) WHERE NOT EXISTS"
      " (SELECT 1 FROM store_meta WHERE key = 'identifiers');"
      "INSERT OR IGNORE INTO store_meta(key, value) VALUES('identifiers', 'keyed hashes');"
      "COMMIT;";
  sqlite3_stmt *q = NULL;
  bool done = sqlite3_prepare_v2(db, "SELECT 1 FROM store_meta WHERE key = 'identifiers'", -1, &q, NULL) == SQLITE_OK &&
              sqlite3_step(q) == SQLITE_ROW;
  sqlite3_finalize(q);
  if (done)
    return GW_OK; /* converted before: no pass over the tables at every start */
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    gw_buf_printf(err, "%s: cannot convert the identifiers to keyed hashes: %s\n", path, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return GW_ERR_IO;
  }
  return GW_OK;
}

/* Every key that sealed rows must be in the ring, and be the same key (its check value opens);
 * the current key is recorded before it seals anything. Without a ring, a store with sealed rows
 * is refused. Nothing is written before this passes. */
static int check_keys(sqlite3 *db, const char *path, struct gw_buf *err) {
  sqlite3_stmt *q = NULL;
  int rv = GW_OK;
  bool current_seen = false;
  if (sqlite3_prepare_v2(db, "SELECT id, check_value FROM seal_keys ORDER BY since_ms", -1, &q, NULL) != SQLITE_OK) {
    gw_buf_printf(err, "%s: %s\n", path, sqlite3_errmsg(db));
    return GW_ERR_IO;
  }
  while (rv == GW_OK && sqlite3_step(q) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(q, 0);
    struct gw_buf p;
    gw_buf_init(&p, 4096);
    if (!keyring) {
      gw_buf_printf(err,
                    "%s: the store holds content sealed under key '%s'; set store.key_file to the key file "
                    "that holds it\n",
                    path, id);
      rv = GW_ERR_CONF;
    } else if (!gw_keyring_has(keyring, id)) {
      gw_buf_printf(err,
                    "%s: content is sealed under key '%s', which store.key_file does not hold: put its line "
                    "back (a key is dropped only after `cergw store rekey` has re-sealed its rows)\n",
                    path, id);
      rv = GW_ERR_CONF;
    } else if (gw_unseal(keyring, 0, sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1), &p) != GW_OK ||
               p.len != 15 || memcmp(p.data, "cergw key check", 15) != 0) {
      gw_buf_printf(err,
                    "%s: key '%s' in store.key_file is not the key the store's rows were sealed with; "
                    "nothing was written\n",
                    path, id);
      rv = GW_ERR_CONF;
    } else if (!strcmp(id, gw_keyring_current(keyring))) {
      current_seen = true;
    }
    gw_buf_cleanup(&p);
  }
  sqlite3_finalize(q);
  if (rv == GW_OK && keyring)
    rv = hash_identifiers(db, path, err);
  if (rv == GW_OK && keyring && !current_seen) {
    struct gw_buf c;
    gw_buf_init(&c, 4096);
    sqlite3_stmt *ins = NULL;
    if (gw_seal(keyring, 0, (const uint8_t *)"cergw key check", 15, &c) != GW_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO seal_keys(id, check_value, since_ms) VALUES(?1, ?2, ?3)", -1, &ins, NULL) !=
            SQLITE_OK) {
      rv = GW_ERR_IO;
    } else {
      sqlite3_bind_text(ins, 1, gw_keyring_current(keyring), -1, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 2, c.data, (int)c.len, SQLITE_STATIC);
      sqlite3_bind_int64(ins, 3, gw_wall_ms());
      if (sqlite3_step(ins) != SQLITE_DONE)
        rv = GW_ERR_IO;
    }
    if (rv != GW_OK)
      gw_buf_printf(err, "%s: cannot record the sealing key: %s\n", path, sqlite3_errmsg(db));
    sqlite3_finalize(ins);
    gw_buf_cleanup(&c);
  }
  return rv;
}

int gw_store_open_sqlite(const char *dir, gw_store_accepted_fn on_accepted, void *ud, struct gw_store **out,
                         struct gw_buf *err) {
  *out = NULL;
  int mrv = make_dir(dir, err);
  if (mrv)
    return mrv;
  char path[4096];
  snprintf(path, sizeof(path), "%s/cergw.db", dir);
  struct sq_store *st = calloc(1, sizeof(*st));
  if (!st)
    return GW_ERR_NOMEM;
  st->base.hooks.on_accepted = on_accepted;
  st->base.hooks.ud = ud;
  snprintf(st->dir, sizeof(st->dir), "%s", dir);
  st->min_free_bytes = 64u << 20;
  pthread_mutex_init(&st->mu, NULL);
  pthread_cond_init(&st->cv, NULL);
  snprintf(metrics_path, sizeof(metrics_path), "%s", path);
  /* created 0600 before SQLite opens it: its WAL and shared-memory files take the same mode */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd >= 0)
    close(fd);
  int rv = open_db(path, &st->w, err);
  if (!rv) /* pruned space goes back to the file system (effective for a database made from now on) */
    exec(st->w, "PRAGMA auto_vacuum=INCREMENTAL");
  if (!rv)
    rv = migrate(st->w, path, err);
  if (!rv)
    rv = check_keys(st->w, path, err);
  for (int i = 0; !rv && i < S__COUNT; i++)
    if (sqlite3_prepare_v3(st->w, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->st[i], NULL) != SQLITE_OK) {
      gw_buf_printf(err, "%s: %s\n", path, sqlite3_errmsg(st->w));
      rv = GW_ERR_IO;
    }
  if (!rv)
    rv = open_db(path, &st->r, err);
  if (!rv)
    rv = open_db(path, &st->q, err);
  pthread_mutex_init(&st->qmu, NULL);
  st->synced_full = true; /* open_db sets synchronous=FULL */
  if (!rv && pthread_create(&st->th, NULL, writer_main, st))
    rv = GW_ERR_IO;
  if (rv) {
    for (int i = 0; i < S__COUNT; i++)
      sqlite3_finalize(st->st[i]);
    sqlite3_close(st->w);
    sqlite3_close(st->r);
    sqlite3_close(st->q);
    free(st);
    return rv;
  }
  st->base.ops = &sq_ops;
  *out = &st->base;
  return GW_OK;
}

static void sq_close(struct gw_store *gst) {
  struct sq_store *st = (struct sq_store *)gst;
  if (!st)
    return;
  pthread_mutex_lock(&st->mu);
  st->stop = true;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
  pthread_join(st->th, NULL);
  for (int i = 0; i < S__COUNT; i++)
    sqlite3_finalize(st->st[i]);
  sqlite3_close(st->w);
  sqlite3_close(st->r);
  sqlite3_close(st->q);
  pthread_mutex_destroy(&st->qmu);
  pthread_mutex_destroy(&st->mu);
  pthread_cond_destroy(&st->cv);
  free(st);
}

/* ---- the console's view (console/console.c), on the lookup connection ---- */

#define OBX_RESOURCE                                                                                                   \
  "CASE WHEN instr(d.rkey, '|') > 0 THEN substr(d.rkey, instr(d.rkey, '|') + 1)"                                       \
  " ELSE COALESCE(m.rtype || '/' || m.rid, m.rtype, '-') END"
#define OBX_COLS                                                                                                       \
  "d.id, d.msg_id, d.created_ms, IFNULL(d.done_ms, 0), m.caller, m.op, " OBX_RESOURCE                                  \
  ", d.backend, d.state, d.attempts, d.last_status, unseal(d.last_error, d.msg_id)"
/* the search: an idempotency key of any clinic (MSH-10, MessageID, Idempotency-Key), or a resource identifier */
#define OBX_WHERE                                                                                                      \
  " FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE (?1 < 0 OR d.state = ?1) AND (?2 = '' OR"               \
  " d.backend = ?2) AND (?3 = '' OR m.caller = ?3) AND (?4 = '' OR m.op = ?4) AND (?5 = 0 OR d.created_ms >= ?5)"      \
  " AND (?6 = 0 OR d.created_ms < ?6) AND (?7 = '' OR instr(d.rkey, ?7) > 0 OR m.idem_key IN (SELECT khash(c.caller"   \
  " || k.kind || ?7) FROM (SELECT DISTINCT caller FROM messages) c, (SELECT '|msh10|' AS kind UNION ALL SELECT"        \
  " '|wsa|' UNION ALL SELECT '|key|') k)) AND (?9 = 0 OR d.msg_id = ?9)"

static void obx_row(sqlite3_stmt *q, struct gw_obx_row *r) {
  memset(r, 0, sizeof(*r));
  r->id = sqlite3_column_int64(q, 0);
  r->msg_id = sqlite3_column_int64(q, 1);
  r->created_ms = sqlite3_column_int64(q, 2);
  r->done_ms = sqlite3_column_int64(q, 3);
  snprintf(r->clinic, sizeof(r->clinic), "%s", (const char *)sqlite3_column_text(q, 4));
  snprintf(r->op, sizeof(r->op), "%s", (const char *)sqlite3_column_text(q, 5));
  snprintf(r->resource, sizeof(r->resource), "%s", (const char *)sqlite3_column_text(q, 6));
  snprintf(r->backend, sizeof(r->backend), "%s", (const char *)sqlite3_column_text(q, 7));
  r->state = sqlite3_column_int(q, 8);
  r->attempts = sqlite3_column_int(q, 9);
  r->last_status = sqlite3_column_int(q, 10);
  const unsigned char *e = sqlite3_column_text(q, 11);
  snprintf(r->last_error, sizeof(r->last_error), "%s", e ? (const char *)e : "");
}

static int sq_outbox_list(struct gw_store *gst, const struct gw_obx_query *oq, struct gw_obx_row *rows, int max,
                          long counts[5]) {
  struct sq_store *st = (struct sq_store *)gst;
  sqlite3_stmt *q = NULL, *c = NULL;
  int n = 0, rv = GW_OK;
  pthread_mutex_lock(&st->qmu);
  if (sqlite3_prepare_v2(st->q, "SELECT " OBX_COLS OBX_WHERE " ORDER BY d.id DESC LIMIT ?8", -1, &q, NULL) !=
          SQLITE_OK ||
      sqlite3_prepare_v2(st->q, "SELECT state, COUNT(*) FROM deliveries GROUP BY state", -1, &c, NULL) != SQLITE_OK) {
    rv = failed_step(st->q, "outbox_list", 0);
  } else {
    sqlite3_bind_int(q, 1, oq->state);
    sqlite3_bind_text(q, 2, oq->backend, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, oq->clinic, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, oq->op, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, oq->since_ms);
    sqlite3_bind_int64(q, 6, oq->until_ms);
    sqlite3_bind_text(q, 7, oq->search, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 8, oq->limit > 0 && oq->limit < max ? oq->limit : max);
    sqlite3_bind_int64(q, 9, oq->msg_id);
    while (n < max && sqlite3_step(q) == SQLITE_ROW)
      obx_row(q, &rows[n++]);
    for (int i = 0; i < 5; i++)
      counts[i] = 0;
    while (sqlite3_step(c) == SQLITE_ROW)
      if (sqlite3_column_int(c, 0) >= 0 && sqlite3_column_int(c, 0) < 5)
        counts[sqlite3_column_int(c, 0)] = (long)sqlite3_column_int64(c, 1);
  }
  sqlite3_finalize(q);
  sqlite3_finalize(c);
  pthread_mutex_unlock(&st->qmu);
  return rv ? rv : n;
}

/* A column's bytes, malloc'd and NUL-terminated. */
static uint8_t *col_dup(sqlite3_stmt *q, int col, size_t *len) {
  int n = sqlite3_column_bytes(q, col);
  uint8_t *p = malloc((size_t)n + 1);
  if (p) {
    if (n)
      memcpy(p, sqlite3_column_blob(q, col), (size_t)n);
    p[n] = 0;
  }
  *len = p ? (size_t)n : 0;
  return p;
}

static int sq_outbox_show(struct gw_store *gst, int64_t id, struct gw_obx_detail *d) {
  struct sq_store *st = (struct sq_store *)gst;
  memset(d, 0, sizeof(*d));
  sqlite3_stmt *q = NULL, *a = NULL;
  int rv = GW_ERR_NOTFOUND;
  pthread_mutex_lock(&st->qmu);
  if (sqlite3_prepare_v2(st->q,
                         "SELECT " OBX_COLS ", d.rkey, d.path, d.ctype, d.ikey, unseal(m.original, m.id),"
                         " unseal(m.canonical, m.id), unseal(d.payload, d.msg_id)"
                         " FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE d.id = ?1",
                         -1, &q, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(st->q,
                         "SELECT a.attempt, a.at_ms, a.state, a.status, unseal(a.answer, d.msg_id) FROM attempts a JOIN"
                         " deliveries d ON d.id = a.delivery_id WHERE a.delivery_id = ?1 ORDER BY a.at_ms, a.rowid",
                         -1, &a, NULL) != SQLITE_OK) {
    rv = failed_step(st->q, "outbox_show", 0);
  } else {
    sqlite3_bind_int64(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
      obx_row(q, &d->row);
      snprintf(d->rkey, sizeof(d->rkey), "%s", (const char *)sqlite3_column_text(q, 12));
      snprintf(d->path, sizeof(d->path), "%s", (const char *)sqlite3_column_text(q, 13));
      snprintf(d->ctype, sizeof(d->ctype), "%s", (const char *)sqlite3_column_text(q, 14));
      snprintf(d->ikey, sizeof(d->ikey), "%s", (const char *)sqlite3_column_text(q, 15));
      d->original = col_dup(q, 16, &d->original_len);
      d->canonical = col_dup(q, 17, &d->canonical_len);
      d->payload = col_dup(q, 18, &d->payload_len);
      sqlite3_bind_int64(a, 1, id);
      while (d->nattempts < (int)(sizeof(d->att) / sizeof(d->att[0])) && sqlite3_step(a) == SQLITE_ROW) {
        struct gw_obx_attempt *t = &d->att[d->nattempts++];
        t->attempt = sqlite3_column_int(a, 0);
        t->at_ms = sqlite3_column_int64(a, 1);
        t->state = sqlite3_column_int(a, 2);
        t->status = sqlite3_column_int(a, 3);
        const unsigned char *ans = sqlite3_column_text(a, 4);
        snprintf(t->answer, sizeof(t->answer), "%s", ans ? (const char *)ans : "");
      }
      rv = d->original && d->canonical && d->payload ? GW_OK : GW_ERR_NOMEM;
    } else if (rc != SQLITE_DONE) {
      rv = failed_step(st->q, "outbox_show", rc);
    }
  }
  sqlite3_finalize(q);
  sqlite3_finalize(a);
  pthread_mutex_unlock(&st->qmu);
  if (rv != GW_OK)
    gw_obx_detail_free(d);
  return rv;
}

static int sq_outbox_act(struct gw_store *gst, int64_t id, const char *action, char *why, size_t n) {
  struct sq_store *st = (struct sq_store *)gst;
  static const char *const retry[] = {"UPDATE deliveries SET state = 4 WHERE id = ?1 AND state IN (2, 3)"};
  static const char *const dead[] = {"UPDATE deliveries SET state = 3, last_error = seal('marked dead by an operator"
                                     " (console)', msg_id), done_ms = ?2 WHERE id = ?1 AND state IN (0, 2, 4)"};
  /* purge: the deliveries of a finished message (none of them queued or being retried) and the message */
  static const char *const purge[] = {
      "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE msg_id = (SELECT msg_id FROM"
      " deliveries WHERE id = ?1)) AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.msg_id = (SELECT msg_id FROM"
      " deliveries WHERE id = ?1) AND x.state IN (0, 4))",
      "DELETE FROM patients WHERE msg_id = (SELECT msg_id FROM deliveries WHERE id = ?1) AND NOT EXISTS (SELECT 1"
      " FROM deliveries x WHERE x.msg_id = patients.msg_id AND x.state IN (0, 4))",
      "DELETE FROM deliveries WHERE msg_id = (SELECT msg_id FROM deliveries WHERE id = ?1) AND NOT EXISTS (SELECT 1"
      " FROM deliveries x WHERE x.msg_id = deliveries.msg_id AND x.state IN (0, 4))",
      /* the message itself, unless a slot or a resource version still names it (as cergw outbox purge) */
      "DELETE FROM messages WHERE id NOT IN (SELECT msg_id FROM deliveries) AND NOT EXISTS (SELECT 1 FROM slots s"
      " WHERE s.msg_id = messages.id) AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.msg_id = messages.id) AND"
      " id = ?2",
  };
  bool is_retry = !strcmp(action, "retry"), is_dead = !strcmp(action, "dead");
  if (!is_retry && !is_dead && strcmp(action, "purge")) {
    snprintf(why, n, "unknown action '%s'", action);
    return GW_ERR_INVAL;
  }
  pthread_mutex_lock(&st->qmu);
  int64_t msg = 0;
  int state = -1, rv = GW_OK, changed = 0;
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(st->q, "SELECT msg_id, state FROM deliveries WHERE id = ?1", -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, id);
    if (sqlite3_step(q) == SQLITE_ROW) {
      msg = sqlite3_column_int64(q, 0);
      state = sqlite3_column_int(q, 1);
    }
  }
  sqlite3_finalize(q);
  if (state < 0) {
    snprintf(why, n, "no delivery %lld", (long long)id);
    rv = GW_ERR_NOTFOUND;
  } else if (exec(st->q, "BEGIN IMMEDIATE") != SQLITE_OK) {
    rv = GW_ERR_IO;
  } else {
    const char *const *sql = is_retry ? retry : is_dead ? dead : purge;
    size_t k = is_retry || is_dead ? 1 : sizeof(purge) / sizeof(purge[0]);
    for (size_t i = 0; i < k && rv == GW_OK; i++) {
      q = NULL;
      if (sqlite3_prepare_v2(st->q, sql[i], -1, &q, NULL) != SQLITE_OK) {
        rv = failed_step(st->q, "outbox_act", 0);
        break;
      }
      sqlite3_bind_int64(q, 1, id);
      if (sqlite3_bind_parameter_count(q) >= 2)
        sqlite3_bind_int64(q, 2, is_dead ? gw_wall_ms() : msg);
      if (sqlite3_step(q) != SQLITE_DONE)
        rv = failed_step(st->q, "outbox_act", 0);
      changed += sqlite3_changes(st->q);
      sqlite3_finalize(q);
    }
    exec(st->q, rv == GW_OK ? "COMMIT" : "ROLLBACK");
    if (rv == GW_OK && !changed) {
      snprintf(why, n,
               is_retry  ? "delivery %lld is %s: only rejected or dead deliveries can be retried"
               : is_dead ? "delivery %lld is %s: only queued, rejected or retry-requested deliveries can be marked dead"
                         : "delivery %lld is %s: a message with a delivery queued or being retried is not purged",
               (long long)id, gw_dstate_name(state));
      rv = GW_ERR_INVAL;
    }
  }
  pthread_mutex_unlock(&st->qmu);
  return rv;
}

static int sq_outbox_backends(struct gw_store *gst, int64_t since_ms, struct gw_obx_backend *out, int max) {
  struct sq_store *st = (struct sq_store *)gst;
  sqlite3_stmt *b = NULL, *p = NULL, *e = NULL;
  int n = 0, rv = GW_OK;
  pthread_mutex_lock(&st->qmu);
  if (sqlite3_prepare_v2(st->q,
                         "SELECT backend, COUNT(*) FROM deliveries WHERE state = 1 AND done_ms >= ?1 GROUP BY backend"
                         " UNION SELECT DISTINCT backend, 0 FROM deliveries WHERE state <> 1 AND created_ms >= ?1"
                         " AND backend NOT IN (SELECT backend FROM deliveries WHERE state = 1 AND done_ms >= ?1)",
                         -1, &b, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(st->q,
                         "SELECT done_ms - created_ms FROM deliveries WHERE backend = ?1 AND state = 1 AND done_ms >="
                         " ?2 ORDER BY 1 LIMIT 1 OFFSET ?3",
                         -1, &p, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(st->q,
                         "SELECT unseal(a.answer, d.msg_id), a.at_ms FROM attempts a JOIN deliveries d ON d.id ="
                         " a.delivery_id WHERE d.backend = ?1 AND a.state <> 1 AND a.answer <> '' ORDER BY a.at_ms DESC"
                         " LIMIT 1",
                         -1, &e, NULL) != SQLITE_OK) {
    rv = failed_step(st->q, "outbox_backends", 0);
  } else {
    sqlite3_bind_int64(b, 1, since_ms);
    while (n < max && sqlite3_step(b) == SQLITE_ROW) {
      struct gw_obx_backend *o = &out[n++];
      memset(o, 0, sizeof(*o));
      snprintf(o->backend, sizeof(o->backend), "%s", (const char *)sqlite3_column_text(b, 0));
      o->delivered = (long)sqlite3_column_int64(b, 1);
      int64_t *pct[] = {&o->p50, &o->p95, &o->p99};
      static const int per[] = {50, 95, 99};
      for (int k = 0; k < 3 && o->delivered > 0; k++) {
        sqlite3_reset(p);
        sqlite3_bind_text(p, 1, o->backend, -1, SQLITE_STATIC);
        sqlite3_bind_int64(p, 2, since_ms);
        sqlite3_bind_int64(p, 3, (o->delivered * per[k] + 99) / 100 - 1);
        if (sqlite3_step(p) == SQLITE_ROW)
          *pct[k] = sqlite3_column_int64(p, 0);
      }
      sqlite3_reset(e);
      sqlite3_bind_text(e, 1, o->backend, -1, SQLITE_STATIC);
      if (sqlite3_step(e) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(e, 0);
        snprintf(o->last_error, sizeof(o->last_error), "%s", t ? (const char *)t : "");
        o->last_error_ms = sqlite3_column_int64(e, 1);
      }
    }
  }
  sqlite3_finalize(b);
  sqlite3_finalize(p);
  sqlite3_finalize(e);
  pthread_mutex_unlock(&st->qmu);
  return rv ? rv : n;
}

static void sq_enqueue(struct gw_store *gst, struct gw_witem *it) { enqueue((struct sq_store *)gst, it); }

static const struct gw_store_ops sq_ops = {.name = "sqlite",
                                           .close = sq_close,
                                           .enqueue = sq_enqueue,
                                           .set_retention = sq_set_retention,
                                           .set_limits = sq_set_limits,
                                           .load = sq_load,
                                           .load_range = sq_load_range,
                                           .schema_version = sq_schema_version,
                                           .outbox_list = sq_outbox_list,
                                           .outbox_show = sq_outbox_show,
                                           .outbox_act = sq_outbox_act,
                                           .outbox_backends = sq_outbox_backends};

static const struct gw_memq_ops sq_memq_ops = {.slot_overlap = sq_slot_overlap,
                                               .slot_state = sq_slot_state,
                                               .slot_put = sq_slot_put,
                                               .slot_set_free = sq_slot_set_free,
                                               .owner_get = sq_owner_get,
                                               .owner_put = sq_owner_put,
                                               .appt_get = sq_appt_get,
                                               .appt_put = sq_appt_put};

/* ---- cergw outbox ---- */

static int outbox_usage(void) {
  fprintf(stderr, "usage: cergw outbox [--data DIR] list [--state queued|delivered|rejected|dead] [--backend NAME]\n"
                  "                    [--clinic RPWDL] [--since DAYS|YYYY-MM-DD] [--limit N]\n"
                  "       cergw outbox [--data DIR] show DELIVERY-ID\n"
                  "       cergw outbox [--data DIR] retry DELIVERY-ID|--all-dead\n"
                  "       cergw outbox [--data DIR] dead\n"
                  "       cergw outbox [--data DIR] [--key FILE] find --pesel NNNNNNNNNNN\n"
                  "       cergw outbox [--data DIR] purge --older-than DAYS\n");
  return 2;
}

/* An outbox command's database error, on stderr; returns the exit status. */
static int outbox_failed(const char *path, sqlite3 *db) {
  fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
  return 2;
}

/* Prepares |sql| into |*q| (NULL on failure, said on stderr). */
static int prep(sqlite3 *db, const char *sql, int len, sqlite3_stmt **q, const char **tail) {
  int rc = sqlite3_prepare_v2(db, sql, len, q, tail);
  if (rc != SQLITE_OK)
    fprintf(stderr, "cergw outbox: %s\n", sqlite3_errmsg(db));
  return rc;
}

/* cergw outbox list [--state S] [--backend B] [--clinic RPWDL] [--since DAYS|ISO-DATE] [--limit N] */
static int outbox_list(sqlite3 *db, const char *path, int argc, char **argv) {
  struct gw_obx_query oq;
  if (gw_cli_list_args(argc, argv, &oq))
    return outbox_usage();
  sqlite3_stmt *q = NULL;
  if (prep(db,
           "SELECT d.id, d.msg_id, m.caller, m.op, CASE WHEN instr(d.rkey, '|') > 0 THEN substr(d.rkey, instr(d.rkey, "
           "'|') + 1)"
           " ELSE COALESCE(m.rtype || '/' || m.rid, m.rtype, '-') END, d.backend,"
           " d.state, d.attempts, d.created_ms, d.last_status, unseal(d.last_error, d.msg_id) FROM deliveries d"
           " JOIN messages m ON m.id = d.msg_id WHERE (?1 < 0 OR d.state = ?1) AND (?3 = '' OR d.backend = ?3)"
           " AND (?4 = '' OR m.caller = ?4) AND d.created_ms >= ?5 ORDER BY d.id DESC LIMIT ?2",
           -1, &q, NULL) != SQLITE_OK)
    return 2;
  sqlite3_bind_int(q, 1, oq.state);
  sqlite3_bind_int64(q, 2, oq.limit);
  sqlite3_bind_text(q, 3, oq.backend, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 4, oq.clinic, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 5, oq.since_ms);
  printf("%-7s %-7s %-13s %-26s %-24s %-18s %-16s %-4s %-5s %-4s %s\n", "ID", "MSG", "CLINIC", "OPERATION", "RESOURCE",
         "BACKEND", "STATE", "TRY", "AGE", "LAST", "LAST ERROR");
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    char ago[16], err[120];
    gw_cli_age(sqlite3_column_int64(q, 8), ago, sizeof(ago));
    gw_cli_one_line(sqlite3_column_text(q, 10), sqlite3_column_bytes(q, 10), err, sizeof(err));
    printf("%-7lld %-7lld %-13s %-26s %-24s %-18s %-16s %-4d %-5s %-4d %s\n", (long long)sqlite3_column_int64(q, 0),
           (long long)sqlite3_column_int64(q, 1), (const char *)sqlite3_column_text(q, 2),
           (const char *)sqlite3_column_text(q, 3), (const char *)sqlite3_column_text(q, 4),
           (const char *)sqlite3_column_text(q, 5), gw_dstate_name(sqlite3_column_int(q, 6)), sqlite3_column_int(q, 7),
           ago, sqlite3_column_int(q, 9), err);
  }
  int rv = rc == SQLITE_DONE ? 0 : outbox_failed(path, db);
  sqlite3_finalize(q);
  return rv;
}

/* cergw outbox show ID: every field labelled, the attempts one by one, the payload and the original. */
static int outbox_show(sqlite3 *db, const char *path, int argc, char **argv) {
  sqlite3_stmt *q = NULL;
  if (argc != 2)
    return outbox_usage();
  if (prep(db,
           "SELECT d.id, d.msg_id, d.backend, d.state, d.attempts, d.last_status, d.created_ms,"
           " unseal(d.last_error, d.msg_id), m.caller, m.op, m.idem_key, d.rkey, d.ctype, unseal(d.payload, d.msg_id),"
           " unseal(m.original, m.id), d.path, d.ikey, d.next_ms,"
           " d.done_ms, m.received_ms, CASE WHEN instr(d.rkey, '|') > 0 THEN substr(d.rkey, instr(d.rkey, '|') + 1)"
           " ELSE COALESCE(m.rtype || '/' || m.rid, m.rtype, '-') END"
           " FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE d.id = ?1",
           -1, &q, NULL) != SQLITE_OK)
    return 2;
  sqlite3_bind_int64(q, 1, strtoll(argv[1], NULL, 10));
  int rc = sqlite3_step(q), rv = 0;
  if (rc == SQLITE_ROW) {
    char t1[32], t2[32], t3[32], err[300];
    gw_cli_utc(sqlite3_column_int64(q, 19), t1, sizeof(t1));
    gw_cli_utc(sqlite3_column_int64(q, 6), t2, sizeof(t2));
    if (sqlite3_column_type(q, 18) != SQLITE_NULL)
      gw_cli_utc(sqlite3_column_int64(q, 18), t3, sizeof(t3));
    else
      snprintf(t3, sizeof(t3), "-");
    gw_cli_one_line(sqlite3_column_text(q, 7), sqlite3_column_bytes(q, 7), err, sizeof(err));
    printf("delivery:        %lld\nmessage:         %lld (received %s)\nclinic:          %s\noperation:       %s\n"
           "resource:        %s\nbackend:         %s\ntarget path:     %s\nstate:           %s\nattempts:        %d\n"
           "last status:     %d\nlast answer:     %s\ncreated:         %s\nfinished:        %s\n"
           "idempotency key: %s (the message's: %s)\nordering key:    %s\ncontent type:    %s\n",
           (long long)sqlite3_column_int64(q, 0), (long long)sqlite3_column_int64(q, 1), t1,
           (const char *)sqlite3_column_text(q, 8), (const char *)sqlite3_column_text(q, 9),
           (const char *)sqlite3_column_text(q, 20), (const char *)sqlite3_column_text(q, 2),
           (const char *)sqlite3_column_text(q, 15), gw_dstate_name(sqlite3_column_int(q, 3)), sqlite3_column_int(q, 4),
           sqlite3_column_int(q, 5), err[0] ? err : "-", t2, t3, (const char *)sqlite3_column_text(q, 16),
           sqlite3_column_text(q, 10) ? (const char *)sqlite3_column_text(q, 10) : "-",
           (const char *)sqlite3_column_text(q, 11), (const char *)sqlite3_column_text(q, 12));
    sqlite3_stmt *a = NULL;
    if (prep(db,
             "SELECT a.attempt, a.at_ms, a.state, a.status, unseal(a.answer, d.msg_id) FROM attempts a"
             " JOIN deliveries d ON d.id = a.delivery_id WHERE a.delivery_id = ?1 ORDER BY a.at_ms, a.rowid",
             -1, &a, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(a, 1, sqlite3_column_int64(q, 0));
      printf("--- attempts ---\n");
      for (int k = 1; sqlite3_step(a) == SQLITE_ROW; k++) {
        char at[32], ans[200];
        gw_cli_utc(sqlite3_column_int64(a, 1), at, sizeof(at));
        gw_cli_one_line(sqlite3_column_text(a, 4), sqlite3_column_bytes(a, 4), ans, sizeof(ans));
        printf("#%d %s -> %s, status %d%s%s\n", k, at, gw_dstate_name(sqlite3_column_int(a, 2)),
               sqlite3_column_int(a, 3), ans[0] ? ": " : "", ans);
      }
    }
    sqlite3_finalize(a);
    printf("--- payload ---\n");
    gw_cli_print_payload(sqlite3_column_blob(q, 13), sqlite3_column_bytes(q, 13));
    printf("--- original ---\n");
    gw_cli_print_payload(sqlite3_column_blob(q, 14), sqlite3_column_bytes(q, 14));
  } else if (rc == SQLITE_DONE) {
    fprintf(stderr, "no delivery %s\n", argv[1]);
    rv = 1;
  } else {
    rv = outbox_failed(path, db);
  }
  sqlite3_finalize(q);
  return rv;
}

/* Why delivery |id| was not queued for retry: unknown, or in a state a retry does not apply to. */
static void retry_why(sqlite3 *db, const char *id) {
  sqlite3_stmt *q = NULL;
  int state = -1;
  if (prep(db, "SELECT state FROM deliveries WHERE id = ?1", -1, &q, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, strtoll(id, NULL, 10));
    if (sqlite3_step(q) == SQLITE_ROW)
      state = sqlite3_column_int(q, 0);
  }
  sqlite3_finalize(q);
  if (state < 0)
    fprintf(stderr, "no delivery %s\n", id);
  else
    fprintf(stderr, "delivery %s is %s: only rejected or dead deliveries can be retried\n", id, gw_dstate_name(state));
}

static int outbox_retry(sqlite3 *db, const char *path, int argc, char **argv) {
  if (argc != 2)
    return outbox_usage();
  sqlite3_stmt *q = NULL;
  bool all = !strcmp(argv[1], "--all-dead");
  /* the running gateway picks these up within a second */
  if (prep(db,
           all ? "UPDATE deliveries SET state = 4 WHERE state = 3"
               : "UPDATE deliveries SET state = 4 WHERE id = ?1 AND state IN (2, 3)",
           -1, &q, NULL) != SQLITE_OK)
    return 2;
  if (!all)
    sqlite3_bind_int64(q, 1, strtoll(argv[1], NULL, 10));
  int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE)
    return outbox_failed(path, db);
  int n = sqlite3_changes(db);
  printf("%d deliver%s queued for retry\n", n, n == 1 ? "y" : "ies");
  if (!n && !all)
    retry_why(db, argv[1]);
  else if (!n)
    fprintf(stderr, "no dead deliveries\n");
  return n ? 0 : 1;
}

static int exec_cut(sqlite3 *db, const char *sql, int64_t cut, int *changed) {
  sqlite3_stmt *q = NULL;
  if (prep(db, sql, -1, &q, NULL) != SQLITE_OK)
    return 0;
  sqlite3_bind_int64(q, 1, cut);
  int ok = sqlite3_step(q) == SQLITE_DONE;
  *changed = sqlite3_changes(db);
  sqlite3_finalize(q);
  return ok;
}

/* `find --pesel N`: the messages that name a patient, through the keyed hash the store keeps (a patient's
 * request to know what the gateway holds about them); `show` opens one delivery's content. */
static int outbox_find(sqlite3 *db, const char *path, int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "--pesel") || strspn(argv[2], "0123456789") != 11 || strlen(argv[2]) != 11) {
    fprintf(stderr, "usage: cergw outbox [--data DIR] [--key FILE] find --pesel NNNNNNNNNNN\n");
    return 2;
  }
  if (!keyring)
    fprintf(stderr, "find: no key file given (--key FILE): only a store kept in clear can be searched\n");
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT m.id, m.received_ms, m.caller, m.op, length(m.original) > 0,"
                         " (SELECT group_concat(d.id || ':' || d.backend || '=' || d.state, ' ') FROM deliveries d"
                         " WHERE d.msg_id = m.id) FROM patients p JOIN messages m ON m.id = p.msg_id"
                         " WHERE p.hash = khash(?1) ORDER BY m.id",
                         -1, &q, NULL) != SQLITE_OK)
    return outbox_failed(path, db);
  sqlite3_bind_text(q, 1, argv[2], -1, SQLITE_STATIC);
  printf("%-7s %-20s %-13s %-26s %-8s %s\n", "MSG", "RECEIVED", "CLINIC", "OPERATION", "CONTENT",
         "DELIVERIES (id:backend=state)");
  int rc, n = 0;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    char t[32];
    gw_cli_utc(sqlite3_column_int64(q, 1), t, sizeof(t));
    printf("%-7lld %-20s %-13s %-26s %-8s %s\n", (long long)sqlite3_column_int64(q, 0), t,
           (const char *)sqlite3_column_text(q, 2), (const char *)sqlite3_column_text(q, 3),
           sqlite3_column_int(q, 4) ? "kept" : "pruned",
           sqlite3_column_text(q, 5) ? (const char *)sqlite3_column_text(q, 5) : "-");
    n++;
  }
  int rv = rc == SQLITE_DONE ? 0 : outbox_failed(path, db);
  sqlite3_finalize(q);
  if (rv == 0)
    printf("%d message%s name this patient (content older than the retention period is gone)\n", n, n == 1 ? "" : "s");
  return rv;
}

static int outbox_purge(sqlite3 *db, const char *path, int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "--older-than"))
    return outbox_usage();
  long days = strtol(argv[2], NULL, 10);
  int64_t cut = gw_wall_ms() - (int64_t)days * 86400000;
  int nd = 0, nm = 0;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return outbox_failed(path, db);
  int ok =
      exec_cut(db,
               "DELETE FROM deliveries WHERE msg_id IN (SELECT m.id FROM messages m WHERE m.received_ms < ?1"
               " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.state IN (0, 4)))",
               cut, &nd) &&
      exec_cut(db,
               "DELETE FROM messages WHERE received_ms < ?1 AND NOT EXISTS"
               " (SELECT 1 FROM deliveries d WHERE d.msg_id = messages.id)"
               " AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.msg_id = messages.id)"
               /* a version of a resource read out of the message's canonical form keeps it */
               " AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.msg_id = messages.id AND length(r.body) = 0)",
               cut, &nm) &&
      exec_cut(db, "DELETE FROM attempts WHERE delivery_id NOT IN (SELECT id FROM deliveries) AND ?1 > 0", cut,
               &(int){0}) &&
      exec_cut(db, "DELETE FROM patients WHERE msg_id NOT IN (SELECT id FROM messages) AND ?1 > 0", cut, &(int){0});
  if (!ok || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    fprintf(stderr, "%s: purge failed, nothing removed: %s\n", path, sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return 2;
  }
  printf("purged %d messages and %d finished deliveries older than %ld days\n", nm, nd, days);
  return 0;
}

/* The database for a command line tool (|flags|: read-only or read-write), sealed content readable
 * with the keyring given (gw_store_use_keyring); NULL after saying why. */
static sqlite3 *open_cli(const char *path, int flags) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 10000);
  register_seal(db);
  return db;
}

int gw_outbox_cmd(const char *dir, int argc, char **argv) {
  static const struct {
    const char *name;
    int (*fn)(sqlite3 *db, const char *path, int argc, char **argv);
  } cmds[] = {{"list", outbox_list},   {"dead", outbox_list}, {"show", outbox_show},
              {"retry", outbox_retry}, {"find", outbox_find}, {"purge", outbox_purge}};
  int (*fn)(sqlite3 *, const char *, int, char **) = NULL;
  for (size_t i = 0; argc >= 1 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (!strcmp(argv[0], cmds[i].name))
      fn = cmds[i].fn;
  if (!fn)
    return outbox_usage();
  char path[4096];
  snprintf(path, sizeof(path), "%s/cergw.db", dir);
  sqlite3 *db = open_cli(path, SQLITE_OPEN_READWRITE);
  if (!db)
    return 2;
  int rv = fn(db, path, argc, argv);
  sqlite3_close(db);
  return rv;
}

/* ---- cergw store status ---- */

static long long one_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *q = NULL;
  long long v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return v;
}

/* `cergw store rekey`: every sealed column re-sealed under the current key (and content written in clear,
 * before sealing was on, sealed), a few hundred rows per short transaction so that a running gateway
 * waits milliseconds at most; then the keys no row uses any more are forgotten (seal_keys), and their
 * lines may leave the key file. */
static int store_rekey(const char *path) {
  if (!keyring) {
    fprintf(stderr, "rekey: give the key file (--key FILE or CERGW_STORE_KEY)\n");
    return 2;
  }
  sqlite3 *db = open_cli(path, SQLITE_OPEN_READWRITE);
  if (!db)
    return 2;
  struct gw_buf err;
  gw_buf_init(&err, 4096);
  if (check_keys(db, path, &err) != GW_OK) { /* every key in use is in the file, and the current one recorded */
    fprintf(stderr, "%s", err.data ? (const char *)err.data : "rekey: the keys do not match the store\n");
    gw_buf_cleanup(&err);
    sqlite3_close(db);
    return 2;
  }
  gw_buf_cleanup(&err);
  const char *cur = gw_keyring_current(keyring);
  long long total = 0;
  int rv = 0;
  for (int i = 0; rv == 0 && i < gw_nsealed_columns; i++) {
    const struct gw_sealed_column *c = &gw_sealed_columns[i];
    const char *aad = c->msg_id ? c->msg_id : "(SELECT d.msg_id FROM deliveries d WHERE d.id = attempts.delivery_id)";
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "UPDATE %s SET %s = seal(unseal(%s, %s), %s) WHERE rowid IN (SELECT rowid FROM %s WHERE length(%s) > 0"
             " AND IFNULL(keyid(%s), '') <> ?1 LIMIT 256)",
             c->table, c->column, c->column, aad, aad, c->table, c->column, c->column);
    for (;;) {
      sqlite3_stmt *q = NULL;
      if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
          sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
        rv = outbox_failed(path, db);
        break;
      }
      sqlite3_bind_text(q, 1, cur, -1, SQLITE_STATIC);
      int rc = sqlite3_step(q);
      int n = sqlite3_changes(db);
      sqlite3_finalize(q);
      if (rc != SQLITE_DONE || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rv = outbox_failed(path, db); /* a row that does not open: nothing of this step written */
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        break;
      }
      total += n;
      if (n == 0)
        break;
    }
  }
  if (rv == 0) { /* keys no row is sealed under any more */
    static const char forget[] =
        "DELETE FROM seal_keys WHERE id <> ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE keyid(original) = "
        "seal_keys.id"
        " OR keyid(canonical) = seal_keys.id OR keyid(answer) = seal_keys.id) AND NOT EXISTS (SELECT 1 FROM deliveries"
        " WHERE keyid(payload) = seal_keys.id OR keyid(last_error) = seal_keys.id) AND NOT EXISTS (SELECT 1 FROM"
        " resources WHERE keyid(body) = seal_keys.id) AND NOT EXISTS (SELECT 1 FROM attempts WHERE keyid(answer) ="
        " seal_keys.id) AND NOT EXISTS (SELECT 1 FROM slots WHERE keyid(label) = seal_keys.id) AND NOT EXISTS"
        " (SELECT 1 FROM appointments WHERE keyid(slots) = seal_keys.id)";
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, forget, -1, &q, NULL) == SQLITE_OK) {
      sqlite3_bind_text(q, 1, cur, -1, SQLITE_STATIC);
      if (sqlite3_step(q) != SQLITE_DONE)
        rv = outbox_failed(path, db);
    }
    sqlite3_finalize(q);
  }
  if (rv == 0)
    printf("re-sealed %lld values under key %s; keys still in use are listed by `cergw store status`\n", total, cur);
  sqlite3_close(db);
  return rv;
}

int gw_store_cmd(const char *dir, int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[0], "hash")) { /* what the store keeps for an identifier: to find its row */
    for (int i = 1; i < argc; i++) {
      char h[65];
      if (keyring)
        gw_keyed_hash(keyring, argv[i], strlen(argv[i]), h);
      printf("%s\n", keyring ? h : argv[i]);
    }
    return 0;
  }
  if (argc == 1 && !strcmp(argv[0], "rekey")) {
    char p[4096];
    snprintf(p, sizeof(p), "%s/cergw.db", dir);
    return store_rekey(p);
  }
  if (argc != 1 || strcmp(argv[0], "status")) {
    fprintf(stderr, "usage: cergw store [--data DIR] [--key FILE] status | rekey | hash VALUE... | keygen FILE [ID]\n");
    return 2;
  }
  char path[4096], wal[4200];
  snprintf(path, sizeof(path), "%s/cergw.db", dir);
  snprintf(wal, sizeof(wal), "%s-wal", path);
  struct stat sb, sw;
  if (stat(path, &sb) != 0) {
    fprintf(stderr, "%s: %s\n", path, strerror(errno));
    return 2;
  }
  sqlite3 *db = open_cli(path, SQLITE_OPEN_READONLY);
  if (!db)
    return 2;
  long long walsz = stat(wal, &sw) == 0 ? (long long)sw.st_size : 0;
  printf("store:           %s (%lld bytes, write-ahead log %lld bytes, mode %04o)\n", path, (long long)sb.st_size,
         walsz, (unsigned)(sb.st_mode & 07777));
  printf("schema version:  %d\n", user_version(db));
  printf("messages:        %lld\n", one_int(db, "SELECT COUNT(*) FROM messages"));
  long long oldest = one_int(db, "SELECT IFNULL(MIN(received_ms), 0) FROM messages WHERE length(original) > 0");
  char t[32] = "-";
  if (oldest > 0)
    gw_cli_utc(oldest, t, sizeof(t));
  printf("oldest content:  %s\n", t);
  sqlite3_stmt *q = NULL;
  printf("deliveries:     ");
  if (sqlite3_prepare_v2(db, "SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state", -1, &q, NULL) ==
      SQLITE_OK)
    while (sqlite3_step(q) == SQLITE_ROW)
      printf(" %s %lld", gw_dstate_name(sqlite3_column_int(q, 0)), (long long)sqlite3_column_int64(q, 1));
  sqlite3_finalize(q);
  printf("\nresource versions: %lld\n", one_int(db, "SELECT COUNT(*) FROM resources"));
  printf("sealing keys:   ");
  if (sqlite3_prepare_v2(db, "SELECT id, since_ms FROM seal_keys ORDER BY since_ms", -1, &q, NULL) == SQLITE_OK)
    while (sqlite3_step(q) == SQLITE_ROW) {
      gw_cli_utc(sqlite3_column_int64(q, 1), t, sizeof(t));
      printf(" %s (since %s)", (const char *)sqlite3_column_text(q, 0), t);
    }
  sqlite3_finalize(q);
  printf("\nmessages by key: ");
  if (sqlite3_prepare_v2(db, "SELECT IFNULL(keyid(original), '(clear)'), COUNT(*) FROM messages GROUP BY 1", -1, &q,
                         NULL) == SQLITE_OK)
    while (sqlite3_step(q) == SQLITE_ROW)
      printf(" %s %lld", (const char *)sqlite3_column_text(q, 0), (long long)sqlite3_column_int64(q, 1));
  sqlite3_finalize(q);
  printf("\nthis key file:   %s\n", keyring ? gw_keyring_current(keyring) : "(none given: --key FILE)");
  if (sqlite3_prepare_v2(db, "SELECT value FROM store_meta WHERE key = 'retention'", -1, &q, NULL) == SQLITE_OK &&
      sqlite3_step(q) == SQLITE_ROW) {
    long long last = 0, cd = 0, md = 0, rd = 0, every = 0;
    sscanf((const char *)sqlite3_column_text(q, 0), "%lld %lld %lld %lld %lld", &last, &cd, &md, &rd, &every);
    char t1[32], t2[32];
    gw_cli_utc(last, t1, sizeof(t1));
    gw_cli_utc(last + every, t2, sizeof(t2));
    printf("retention:       content %lld days (rejected: %lld, 0 = kept), metadata %lld days; last prune %s, "
           "next %s\n",
           cd, rd, md, t1, t2);
  } else {
    printf("retention:       no prune has run yet\n");
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  return 0;
}
