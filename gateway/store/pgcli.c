/* The operator's commands against a PostgreSQL store (`cergw store|outbox --pg CONNINFO ...`), and
 * `cergw store copy`: a SQLite data directory moved into PostgreSQL with its queued deliveries. The
 * same commands and output as the SQLite store's (sqlite.c); content opened with the key file given
 * (gw_store_use_keyring). */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "store/cli.h"
#include "store/pg.h"
#include "store/store.h"
#include "tls/seal.h"

/* The keyring gw_store_use_keyring set (the command line's --key or CERGW_STORE_KEY). */
static const struct gw_keyring *cli_keyring(void) { return gw_store_pg_keyring(); }

static PGconn *cli_connect(const char *conninfo) {
  PGconn *c = gw_pg_connect_as(conninfo, "cergw-cli");
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "postgresql: %s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

/* Runs |sql| with text parameters (|n| of them); results in text. NULL after saying why. */
static PGresult *q(PGconn *c, const char *sql, int n, const char *const *v) {
  PGresult *r = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
  ExecStatusType t = PQresultStatus(r);
  if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK)
    return r;
  fprintf(stderr, "postgresql: %s", PQresultErrorMessage(r));
  PQclear(r);
  return NULL;
}

/* A bytea column (text form "\x...") opened with the key of its row |aad|: malloc'd, NUL-terminated. */
static char *opened(const PGresult *r, int row, int col, int64_t aad) {
  size_t n = 0;
  unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
  char *out = NULL;
  if (raw && gw_sealed(raw, n)) {
    struct gw_buf b;
    gw_buf_init(&b, n + 16);
    const struct gw_keyring *kr = cli_keyring();
    if (kr && gw_unseal(kr, aad, raw, n, &b) == GW_OK) {
      gw_buf_append(&b, "", 1);
      size_t len;
      out = (char *)gw_buf_take(&b, &len);
    } else {
      char id[40];
      gw_sealed_key_id(raw, n, id, sizeof(id));
      gw_buf_cleanup(&b);
      size_t m = strlen(id) + 64;
      out = malloc(m);
      if (out)
        snprintf(out, m, "(sealed under key '%s': give --key FILE)", id);
    }
  } else if (raw) {
    out = malloc(n + 1);
    if (out) {
      memcpy(out, raw, n);
      out[n] = 0;
    }
  }
  PQfreemem(raw);
  return out ? out : strdup("");
}

static int usage(void) {
  fprintf(stderr,
          "usage: cergw outbox --pg CONNINFO list [--state S] [--backend NAME] [--clinic RPWDL] [--since DAYS|DATE]\n"
          "                    [--limit N]\n"
          "       cergw outbox --pg CONNINFO show DELIVERY-ID\n"
          "       cergw outbox --pg CONNINFO retry DELIVERY-ID|--all-dead\n"
          "       cergw outbox --pg CONNINFO dead\n"
          "       cergw outbox --pg CONNINFO [--key FILE] find --pesel NNNNNNNNNNN\n"
          "       cergw store --pg CONNINFO init|migrate|status\n"
          "       cergw store --data DIR --pg CONNINFO copy\n");
  return 2;
}

static int list(PGconn *c, int argc, char **argv) {
  struct gw_obx_query oq;
  if (gw_cli_list_args(argc, argv, &oq))
    return usage();
  char st[16], sn[24], lim[16];
  snprintf(st, sizeof(st), "%d", oq.state);
  snprintf(sn, sizeof(sn), "%lld", (long long)oq.since_ms);
  snprintf(lim, sizeof(lim), "%d", oq.limit);
  const char *v[] = {st, lim, oq.backend, oq.clinic, sn};
  PGresult *r = q(c,
                  "SELECT d.id, d.msg_id, m.caller, m.op, CASE WHEN strpos(d.rkey, '|') > 0 THEN substr(d.rkey,"
                  " strpos(d.rkey, '|') + 1) ELSE COALESCE(m.rtype || '/' || m.rid, m.rtype, '-') END, d.backend,"
                  " d.state, d.attempts, d.created_ms, d.last_status, d.last_error, COALESCE(d.owner, '-')"
                  " FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE ($1::bigint < 0 OR d.state = $1::bigint)"
                  " AND ($3 = '' OR d.backend = $3) AND ($4 = '' OR m.caller = $4) AND d.created_ms >= $5::bigint"
                  " ORDER BY d.id DESC LIMIT $2::bigint",
                  5, v);
  if (!r)
    return 2;
  printf("%-7s %-7s %-13s %-26s %-24s %-18s %-16s %-4s %-5s %-4s %-24s %s\n", "ID", "MSG", "CLINIC", "OPERATION",
         "RESOURCE", "BACKEND", "STATE", "TRY", "AGE", "LAST", "OWNER", "LAST ERROR");
  for (int i = 0; i < PQntuples(r); i++) {
    char ago[16], err[120];
    gw_cli_age(atoll(PQgetvalue(r, i, 8)), ago, sizeof(ago));
    char *e = opened(r, i, 10, atoll(PQgetvalue(r, i, 1)));
    gw_cli_one_line((const unsigned char *)e, strlen(e), err, sizeof(err));
    free(e);
    printf("%-7s %-7s %-13s %-26s %-24s %-18s %-16s %-4s %-5s %-4s %-24s %s\n", PQgetvalue(r, i, 0),
           PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
           gw_dstate_name(atoi(PQgetvalue(r, i, 6))), PQgetvalue(r, i, 7), ago, PQgetvalue(r, i, 9),
           PQgetvalue(r, i, 11), err);
  }
  PQclear(r);
  return 0;
}

static int show(PGconn *c, int argc, char **argv) {
  if (argc != 2)
    return usage();
  const char *v[] = {argv[1]};
  PGresult *r = q(c,
                  "SELECT d.id, d.msg_id, d.backend, d.state, d.attempts, d.last_status, d.created_ms, d.last_error,"
                  " m.caller, m.op, d.rkey, d.ctype, d.payload, m.original, d.path, d.ikey, d.done_ms, m.received_ms,"
                  " COALESCE(d.owner, '-') FROM deliveries d JOIN messages m ON m.id = d.msg_id WHERE d.id ="
                  " $1::bigint",
                  1, v);
  if (!r)
    return 2;
  if (!PQntuples(r)) {
    fprintf(stderr, "no delivery %s\n", argv[1]);
    PQclear(r);
    return 1;
  }
  int64_t mid = atoll(PQgetvalue(r, 0, 1));
  char t1[32], t2[32], t3[32] = "-", err[300];
  gw_cli_utc(atoll(PQgetvalue(r, 0, 17)), t1, sizeof(t1));
  gw_cli_utc(atoll(PQgetvalue(r, 0, 6)), t2, sizeof(t2));
  if (!PQgetisnull(r, 0, 16))
    gw_cli_utc(atoll(PQgetvalue(r, 0, 16)), t3, sizeof(t3));
  char *e = opened(r, 0, 7, mid), *payload = opened(r, 0, 12, mid), *orig = opened(r, 0, 13, mid);
  gw_cli_one_line((const unsigned char *)e, strlen(e), err, sizeof(err));
  printf("delivery:        %s\nmessage:         %s (received %s)\nclinic:          %s\noperation:       %s\n"
         "backend:         %s\ntarget path:     %s\nstate:           %s\nattempts:        %s\nlast status:     %s\n"
         "last answer:     %s\ncreated:         %s\nfinished:        %s\nidempotency key: %s\nordering key:    %s\n"
         "content type:    %s\nowner:           %s\n",
         PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), t1, PQgetvalue(r, 0, 8), PQgetvalue(r, 0, 9), PQgetvalue(r, 0, 2),
         PQgetvalue(r, 0, 14), gw_dstate_name(atoi(PQgetvalue(r, 0, 3))), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5), err,
         t2, t3, PQgetvalue(r, 0, 15), PQgetvalue(r, 0, 10), PQgetvalue(r, 0, 11), PQgetvalue(r, 0, 18));
  PGresult *a = q(c,
                  "SELECT attempt, at_ms, state, status, answer FROM attempts WHERE delivery_id = $1::bigint"
                  " ORDER BY at_ms, attempt",
                  1, v);
  printf("--- attempts ---\n");
  for (int i = 0; a && i < PQntuples(a); i++) {
    char t[32], line[200];
    gw_cli_utc(atoll(PQgetvalue(a, i, 1)), t, sizeof(t));
    char *ans = opened(a, i, 4, mid);
    gw_cli_one_line((const unsigned char *)ans, strlen(ans), line, sizeof(line));
    free(ans);
    printf("#%d %s -> %s, status %s%s%s\n", i + 1, t, gw_dstate_name(atoi(PQgetvalue(a, i, 2))), PQgetvalue(a, i, 3),
           line[0] ? ": " : "", line);
  }
  PQclear(a);
  printf("--- payload ---\n");
  gw_cli_print_payload((const unsigned char *)payload, strlen(payload));
  printf("--- original ---\n");
  gw_cli_print_payload((const unsigned char *)orig, strlen(orig));
  free(e);
  free(payload);
  free(orig);
  PQclear(r);
  return 0;
}

static int retry(PGconn *c, int argc, char **argv) {
  if (argc != 2)
    return usage();
  bool all = !strcmp(argv[1], "--all-dead");
  const char *v[] = {argv[1]};
  /* a running instance claims these within a second */
  PGresult *r = q(c,
                  all ? "UPDATE deliveries SET state = 4 WHERE state = 3"
                      : "UPDATE deliveries SET state = 4 WHERE id = $1::bigint AND state IN (2, 3)",
                  all ? 0 : 1, v);
  if (!r)
    return 2;
  int n = atoi(PQcmdTuples(r));
  PQclear(r);
  printf("%d deliver%s queued for retry\n", n, n == 1 ? "y" : "ies");
  if (!n && !all) {
    PGresult *s = q(c, "SELECT state FROM deliveries WHERE id = $1::bigint", 1, v);
    if (s && PQntuples(s))
      fprintf(stderr, "delivery %s is %s: only rejected or dead deliveries can be retried\n", argv[1],
              gw_dstate_name(atoi(PQgetvalue(s, 0, 0))));
    else
      fprintf(stderr, "no delivery %s\n", argv[1]);
    PQclear(s);
  } else if (!n) {
    fprintf(stderr, "no dead deliveries\n");
  }
  return n ? 0 : 1;
}

static int find(PGconn *c, int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "--pesel") || strspn(argv[2], "0123456789") != 11 || strlen(argv[2]) != 11) {
    fprintf(stderr, "usage: cergw outbox --pg CONNINFO [--key FILE] find --pesel NNNNNNNNNNN\n");
    return 2;
  }
  char h[65];
  const struct gw_keyring *kr = cli_keyring();
  if (kr)
    gw_keyed_hash(kr, argv[2], 11, h);
  else
    fprintf(stderr, "find: no key file given (--key FILE): only a store kept in clear can be searched\n");
  const char *v[] = {kr ? h : argv[2]};
  PGresult *r =
      q(c,
        "SELECT m.id, m.received_ms, m.caller, m.op, length(m.original) > 0, (SELECT string_agg(d.id || ':' ||"
        " d.backend || '=' || d.state, ' ' ORDER BY d.id) FROM deliveries d WHERE d.msg_id = m.id)"
        " FROM patients p JOIN messages m ON m.id = p.msg_id WHERE p.hash = $1 ORDER BY m.id",
        1, v);
  if (!r)
    return 2;
  printf("%-7s %-20s %-13s %-26s %-8s %s\n", "MSG", "RECEIVED", "CLINIC", "OPERATION", "CONTENT",
         "DELIVERIES (id:backend=state)");
  for (int i = 0; i < PQntuples(r); i++) {
    char t[32];
    gw_cli_utc(atoll(PQgetvalue(r, i, 1)), t, sizeof(t));
    printf("%-7s %-20s %-13s %-26s %-8s %s\n", PQgetvalue(r, i, 0), t, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
           PQgetvalue(r, i, 4)[0] == 't' ? "kept" : "pruned", PQgetvalue(r, i, 5));
  }
  int n = PQntuples(r);
  PQclear(r);
  printf("%d message%s name this patient (content older than the retention period is gone)\n", n, n == 1 ? "" : "s");
  return 0;
}

/* purge --older-than DAYS: finished messages older than that, as the SQLite store's purge (a message with a
 * delivery queued or retry-requested, a slot it published, or a resource version read out of it stays). */
static int purge(PGconn *c, int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "--older-than") || atol(argv[2]) < 0)
    return usage();
  char cut[24];
  snprintf(cut, sizeof(cut), "%lld", (long long)(gw_wall_ms() - (int64_t)atol(argv[2]) * 86400000));
  const char *v[] = {cut};
  PGresult *r = q(c, "BEGIN", 0, NULL);
  PQclear(r);
  PGresult *d = r ? q(c,
                      "DELETE FROM deliveries WHERE msg_id IN (SELECT m.id FROM messages m WHERE m.received_ms <"
                      " $1::bigint AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.state IN (0,"
                      " 4)))",
                      1, v)
                  : NULL;
  PGresult *m = d ? q(c,
                      "DELETE FROM messages WHERE received_ms < $1::bigint AND NOT EXISTS (SELECT 1 FROM deliveries d"
                      " WHERE d.msg_id = messages.id) AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.msg_id ="
                      " messages.id) AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.msg_id = messages.id AND"
                      " length(r.body) = 0)",
                      1, v)
                  : NULL;
  PGresult *a = m ? q(c, "DELETE FROM attempts WHERE delivery_id NOT IN (SELECT id FROM deliveries)", 0, NULL) : NULL;
  PGresult *pa = a ? q(c, "DELETE FROM patients WHERE msg_id NOT IN (SELECT id FROM messages)", 0, NULL) : NULL;
  PGresult *done = pa ? q(c, "COMMIT", 0, NULL) : NULL;
  int rv = 0;
  if (!done) {
    fprintf(stderr, "purge failed, nothing removed\n");
    PQclear(PQexec(c, "ROLLBACK"));
    rv = 2;
  } else {
    printf("purged %s messages and %s finished deliveries older than %s days\n", PQcmdTuples(m), PQcmdTuples(d),
           argv[2]);
  }
  PQclear(d);
  PQclear(m);
  PQclear(a);
  PQclear(pa);
  PQclear(done);
  return rv;
}

int gw_pg_outbox_cmd(const char *conninfo, int argc, char **argv) {
  if (argc < 1)
    return usage();
  PGconn *c = cli_connect(conninfo);
  if (!c)
    return 2;
  int rv;
  if (!strcmp(argv[0], "list") || !strcmp(argv[0], "dead"))
    rv = list(c, argc, argv);
  else if (!strcmp(argv[0], "show"))
    rv = show(c, argc, argv);
  else if (!strcmp(argv[0], "retry"))
    rv = retry(c, argc, argv);
  else if (!strcmp(argv[0], "find"))
    rv = find(c, argc, argv);
  else if (!strcmp(argv[0], "purge"))
    rv = purge(c, argc, argv);
  else
    rv = usage();
  PQfinish(c);
  return rv;
}

/* `cergw store --pg CONNINFO status`: schema, messages, deliveries per state and owner, instances. */
static int status(PGconn *c) {
  static const char *const sql[] = {
      "SELECT 'schema version: ' || COALESCE((SELECT value FROM store_meta WHERE key = 'schema_version'), '0')",
      "SELECT 'database size:  ' || pg_size_pretty(pg_database_size(current_database()))",
      "SELECT 'messages:       ' || COUNT(*) FROM messages",
      "SELECT 'deliveries:     ' || COALESCE(string_agg(n || ' ' || s, ', ' ORDER BY s), 'none') FROM (SELECT"
      " CASE state WHEN 0 THEN 'queued' WHEN 1 THEN 'delivered' WHEN 2 THEN 'rejected' WHEN 3 THEN 'dead' ELSE"
      " 'retry-requested' END AS s, COUNT(*) AS n FROM deliveries GROUP BY state) x",
      "SELECT 'pending by owner: ' || COALESCE(string_agg(o || ' ' || n, ', '), 'none') FROM (SELECT"
      " COALESCE(owner, '(held, unowned)') AS o, COUNT(*) AS n FROM deliveries WHERE state IN (0, 4) GROUP BY"
      " owner) x",
      "SELECT 'instance ' || id || ': ' || CASE WHEN dead THEN 'dead' ELSE 'alive' END || ', beat ' || beat ||"
      " ', last seen ' || to_char(to_timestamp(seen_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
      " FROM instances ORDER BY id",
      "SELECT 'sealing keys:    ' || COALESCE(string_agg(id || ' (since ' || to_char(to_timestamp(since_ms / 1000.0) AT"
      " TIME ZONE 'UTC', 'YYYY-MM-DD') || ')', ', ' ORDER BY since_ms), '(none: content in clear)') FROM seal_keys",
      /* the key each message's content is sealed under ("CGS1", the key id's length, the key id) */
      "SELECT 'messages by key: ' || COALESCE(string_agg(k || ' ' || n, ' ' ORDER BY k), '-') FROM (SELECT CASE WHEN"
      " length(original) > 5 AND substring(original from 1 for 4) = '\\x43475331'::bytea THEN"
      " convert_from(substring(original from 6 for get_byte(original, 4)), 'UTF8') WHEN length(original) = 0 THEN"
      " '(pruned)' ELSE '(clear)' END AS k, COUNT(*) AS n FROM messages GROUP BY 1) x",
  };
  for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
    PGresult *r = q(c, sql[i], 0, NULL);
    if (!r)
      return 2;
    for (int k = 0; k < PQntuples(r); k++)
      printf("%s\n", PQgetvalue(r, k, 0));
    PQclear(r);
  }
  return 0;
}

/* ---- rekey: every value sealed under another key than the current one sealed again under it ----
 * In batches of 200 rows, each its own short transaction, beside running instances: a row is rewritten only
 * if it still holds the value read (a state update in between leaves it for the next round), and the rounds
 * go on until no row holds a value under another key. Then the keys no row uses are forgotten. */
static int rekey(PGconn *c, const struct gw_keyring *kr) {
  const char *cur = gw_keyring_current(kr);
  long total = 0;
  for (int k = 0; k < gw_nsealed_columns; k++) {
    const struct gw_sealed_column *sc = &gw_sealed_columns[k];
    char sel[1024], upd[512], col[64], aad[96];
    snprintf(col, sizeof(col), "t.%s", sc->column);
    if (sc->msg_id)
      snprintf(aad, sizeof(aad), "t.%s", sc->msg_id);
    else
      snprintf(aad, sizeof(aad), "%s", "(SELECT d.msg_id FROM deliveries d WHERE d.id = t.delivery_id)");
    /* sealed ("CGS1", the key id's length, the key id) under another key than $1 */
    snprintf(sel, sizeof(sel),
             "SELECT t.ctid, %s, %s FROM %s t WHERE length(%s) > 5 AND substring(%s from 1 for 4) ="
             " '\\x43475331'::bytea AND substring(%s from 6 for get_byte(%s, 4)) <> convert_to($1, 'UTF8') LIMIT 200",
             aad, col, sc->table, col, col, col, col);
    snprintf(upd, sizeof(upd), "UPDATE %s SET %s = $1 WHERE ctid = $2::tid AND %s = $3", sc->table, sc->column,
             sc->column);
    for (;;) {
      const char *v[] = {cur};
      PGresult *r = q(c, sel, 1, v);
      if (!r)
        return 2;
      int n = PQntuples(r);
      if (!n) {
        PQclear(r);
        break;
      }
      PQclear(q(c, "BEGIN", 0, NULL));
      int done = 0;
      for (int i = 0; i < n; i++) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 2), &len);
        struct gw_buf open, again;
        gw_buf_init(&open, len + 16);
        gw_buf_init(&again, len + GW_SEAL_OVERHEAD + 16);
        int64_t msg = atoll(PQgetvalue(r, i, 1));
        int rv = raw ? gw_unseal(kr, msg, raw, len, &open) : GW_ERR_NOMEM;
        if (rv == GW_OK)
          rv = gw_seal(kr, msg, open.data ? open.data : (const uint8_t *)"", open.len, &again);
        if (rv == GW_OK) {
          const char *uv[] = {(const char *)again.data, PQgetvalue(r, i, 0), (const char *)raw};
          int ul[] = {(int)again.len, 0, (int)len}, uf[] = {1, 0, 1};
          PGresult *u = PQexecParams(c, upd, 3, NULL, uv, ul, uf, 0);
          done += PQresultStatus(u) == PGRES_COMMAND_OK ? atoi(PQcmdTuples(u)) : 0;
          PQclear(u);
        } else {
          char id[40];
          gw_sealed_key_id(raw, len, id, sizeof(id));
          fprintf(stderr,
                  "rekey: %s.%s: a value sealed under key '%s' does not open with store.key_file: nothing "
                  "forgotten\n",
                  sc->table, sc->column, id);
        }
        PQfreemem(raw);
        gw_buf_cleanup(&open);
        gw_buf_cleanup(&again);
        if (rv != GW_OK) {
          PQclear(PQexec(c, "ROLLBACK"));
          PQclear(r);
          return 2;
        }
      }
      PQclear(q(c, "COMMIT", 0, NULL));
      PQclear(r);
      total += done;
      if (!done)
        usleep(50000); /* every row of the batch changed meanwhile: the next round reads them again */
    }
  }
  /* the keys no row uses any more */
  long forgotten = 0;
  PGresult *ks = q(c, "SELECT id FROM seal_keys WHERE id <> $1", 1, (const char *[]){cur});
  for (int i = 0; ks && i < PQntuples(ks); i++) {
    const char *id = PQgetvalue(ks, i, 0);
    bool used = false;
    for (int k = 0; k < gw_nsealed_columns && !used; k++) {
      char sql[512], col[64];
      snprintf(col, sizeof(col), "t.%s", gw_sealed_columns[k].column);
      snprintf(sql, sizeof(sql),
               "SELECT 1 FROM %s t WHERE length(%s) > 5 AND substring(%s from 6 for get_byte(%s, 4)) = convert_to($1,"
               " 'UTF8') LIMIT 1",
               gw_sealed_columns[k].table, col, col, col);
      PGresult *u = q(c, sql, 1, (const char *[]){id});
      used = !u || PQntuples(u) > 0;
      PQclear(u);
    }
    if (!used) {
      PQclear(q(c, "DELETE FROM seal_keys WHERE id = $1", 1, (const char *[]){id}));
      forgotten++;
    }
  }
  PQclear(ks);
  printf("rekey: %ld values sealed again under key '%s'; %ld key(s) no row uses forgotten\n", total, cur, forgotten);
  return 0;
}

int gw_pg_store_cmd(const char *conninfo, int argc, char **argv) {
  if (argc != 1)
    return usage();
  if (!strcmp(argv[0], "rekey")) {
    const struct gw_keyring *kr = cli_keyring();
    if (!kr) {
      fprintf(stderr, "rekey: give the key file (--key FILE or CERGW_STORE_KEY) whose last key seals\n");
      return 2;
    }
    /* the current key recorded (opening checks every key the store knows is in the file) */
    if (gw_pg_store_cmd(conninfo, 1, (char *[]){"init"}) != 0)
      return 2;
    PGconn *c = cli_connect(conninfo);
    if (!c)
      return 2;
    int rv = rekey(c, kr);
    PQfinish(c);
    return rv;
  }
  if (!strcmp(argv[0], "init") || !strcmp(argv[0], "migrate")) {
    /* opening the store migrates it (under the cluster's migration lock) and checks the keys */
    struct gw_store *st = NULL;
    struct gw_buf err;
    gw_buf_init(&err, 4096);
    struct gw_pg_opts o = {.conninfo = conninfo, .instance = "cergw-cli-migrate"};
    int rv = gw_store_open_pg(&o, NULL, NULL, &st, &err);
    if (rv) {
      fprintf(stderr, "%s", err.len ? (const char *)err.data : "cannot open the store\n");
      gw_buf_cleanup(&err);
      return 2;
    }
    gw_store_close(st);
    gw_buf_cleanup(&err);
    PGconn *c = cli_connect(conninfo);
    if (c)
      PQclear(q(c, "DELETE FROM instances WHERE id = 'cergw-cli-migrate'", 0, NULL));
    PQfinish(c);
    printf("postgresql store at schema version %d\n", GW_PG_SCHEMA_VERSION);
    return 0;
  }
  if (!strcmp(argv[0], "status")) {
    PGconn *c = cli_connect(conninfo);
    if (!c)
      return 2;
    int rv = status(c);
    PQfinish(c);
    return rv;
  }
  return usage();
}

/* ---- cergw store copy: SQLite -> PostgreSQL ----
 * Rows are copied as they are: sealed values stay sealed (the message ids, their associated data, are
 * kept) and keyed hashes stay valid under the same key file. Queued deliveries are copied without an
 * owner: the first instance to start claims them. One transaction; an empty target only. */
struct table {
  const char *name, *cols;
  const char *bytea; /* the columns that are bytea in PostgreSQL, ",a,b," */
};
static const struct table tables[] = {
    {"messages",
     "id, received_ms, caller, dialect, op, idem_key, idem_digest, rtype, rid, original, canonical, answer_status,"
     " answer_ctype, answer, answer_meta",
     ",original,canonical,answer,"},
    {"deliveries",
     "id, msg_id, backend, rkey, path, ctype, payload, state, attempts, next_ms, last_status, last_error, created_ms,"
     " done_ms, ikey",
     ",payload,last_error,"},
    {"attempts", "delivery_id, attempt, at_ms, state, status, answer", ",answer,"},
    {"slots", "caller, ident, schedule, start_ms, end_ms, free, msg_id, label", ",label,"},
    {"owners", "key, owner, msg_id", ","},
    {"appointments", "caller, akey, status, start_ms, slots, msg_id", ",slots,"},
    {"resources",
     "clinic, rtype, id, version, msg_id, updated_ms, ident, identvalue, status, date_ms, refs, body, entry", ",body,"},
    {"seal_keys", "id, check_value, since_ms", ",check_value,"},
    {"patients", "hash, msg_id", ","},
};

static int copy_table(sqlite3 *db, PGconn *c, const struct table *t, long *rows) {
  char sql[1024], ins[2048], names[32][32];
  snprintf(sql, sizeof(sql), "SELECT %s FROM %s", t->cols, t->name);
  int ncol = 0;
  for (const char *p = t->cols; *p && ncol < 32;) {
    size_t n = strcspn(p, ",");
    char *dst = names[ncol++];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 31; i++)
      if (p[i] != ' ')
        dst[k++] = p[i];
    dst[k] = 0;
    p += n + (p[n] == ',');
  }
  size_t o = (size_t)snprintf(ins, sizeof(ins), "INSERT INTO %s(%s) VALUES(", t->name, t->cols);
  for (int i = 0; i < ncol; i++)
    o += (size_t)snprintf(ins + o, sizeof(ins) - o, "%s$%d", i ? ", " : "", i + 1);
  snprintf(ins + o, sizeof(ins) - o, ") ON CONFLICT DO NOTHING"); /* the sealing key opening the store recorded */
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
    fprintf(stderr, "copy: %s: %s\n", t->name, sqlite3_errmsg(db));
    return 2;
  }
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const char *v[32];
    int l[32], f[32];
    char num[32][24];
    for (int i = 0; i < ncol; i++) {
      char key[40];
      snprintf(key, sizeof(key), ",%s,", names[i]);
      bool bin = strstr(t->bytea, key) != NULL;
      int type = sqlite3_column_type(s, i);
      f[i] = 0;
      l[i] = 0;
      if (type == SQLITE_NULL) {
        v[i] = NULL;
      } else if (bin) {
        v[i] = sqlite3_column_blob(s, i);
        l[i] = sqlite3_column_bytes(s, i);
        f[i] = 1;
        if (!v[i])
          v[i] = "";
      } else if (type == SQLITE_INTEGER) {
        snprintf(num[i], sizeof(num[i]), "%lld", (long long)sqlite3_column_int64(s, i));
        v[i] = num[i];
      } else {
        v[i] = (const char *)sqlite3_column_text(s, i);
      }
    }
    PGresult *r = PQexecParams(c, ins, ncol, NULL, v, l, f, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
      fprintf(stderr, "copy: %s: %s", t->name, PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
      sqlite3_finalize(s);
      return 2;
    }
    (*rows)++;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "copy: %s: %s\n", t->name, sqlite3_errmsg(db));
    return 2;
  }
  return 0;
}

int gw_pg_copy_from_sqlite(const char *dir, const char *conninfo) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/cergw.db", dir);
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "copy: %s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return 2;
  }
  sqlite3_stmt *v = NULL;
  int version = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &v, NULL) == SQLITE_OK && sqlite3_step(v) == SQLITE_ROW)
    version = sqlite3_column_int(v, 0);
  sqlite3_finalize(v);
  if (version != GW_STORE_SCHEMA_VERSION) {
    fprintf(stderr,
            "copy: %s is at schema version %d; start this build's gateway on it once (it migrates to %d), then "
            "copy\n",
            path, version, GW_STORE_SCHEMA_VERSION);
    sqlite3_close(db);
    return 2;
  }
  if (gw_pg_store_cmd(conninfo, 1, (char *[]){"init"}) != 0) {
    sqlite3_close(db);
    return 2;
  }
  PGconn *c = cli_connect(conninfo);
  if (!c) {
    sqlite3_close(db);
    return 2;
  }
  int rv = 0;
  PGresult *r = q(c, "SELECT COUNT(*) FROM messages", 0, NULL);
  if (!r || atol(PQgetvalue(r, 0, 0)) > 0) {
    fprintf(stderr, "copy: the PostgreSQL store is not empty (it holds messages): nothing copied\n");
    rv = 2;
  }
  PQclear(r);
  long counts[sizeof(tables) / sizeof(tables[0])] = {0};
  bool began = false;
  if (!rv) {
    PQclear(q(c, "BEGIN", 0, NULL));
    began = true;
  }
  for (size_t i = 0; !rv && i < sizeof(tables) / sizeof(tables[0]); i++)
    rv = copy_table(db, c, &tables[i], &counts[i]);
  if (!rv) {
    r = q(c,
          "SELECT setval('messages_id_seq', GREATEST((SELECT MAX(id) FROM messages), 1)),"
          " setval('deliveries_id_seq', GREATEST((SELECT MAX(id) FROM deliveries), 1))",
          0, NULL);
    if (!r)
      rv = 2;
    PQclear(r);
  }
  if (!rv) {
    r = q(c, "COMMIT", 0, NULL);
    if (!r)
      rv = 2;
    PQclear(r);
  } else if (began) {
    PQclear(PQexec(c, "ROLLBACK"));
  }
  if (!rv) {
    r = q(c, "SELECT COUNT(*) FROM deliveries WHERE state IN (0, 4)", 0, NULL);
    printf("copied %s/cergw.db into PostgreSQL:", dir);
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
      printf(" %s %ld%s", tables[i].name, counts[i], i + 1 < sizeof(tables) / sizeof(tables[0]) ? "," : "\n");
    printf("%s deliveries still to send, unowned: the first instance started on PostgreSQL claims them\n",
           r ? PQgetvalue(r, 0, 0) : "?");
    PQclear(r);
  }
  PQfinish(c);
  sqlite3_close(db);
  return rv;
}
