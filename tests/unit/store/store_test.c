/* The durable store (group commit, idempotency, rules with memory, state
 * updates, recovery) and the delivery configuration (parsing, errors,
 * routes as XPath). */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../suites.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/health.h"
#include "deliver/deliver.h"
#include "http/write.h"
#include "pipe/pipe.h"
#include "store/store.h"
#include "validate/rules.h"

static char dir[64];

static void rm_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

static int setup(void) {
  snprintf(dir, sizeof(dir), "/tmp/cergw-unit-store.XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void) {
  rm_dir();
  return 0;
}

/* completion: collects results, signals the waiting test */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ndone;
static struct gw_submit *done_list[64];

static void on_done(struct gw_submit *s) {
  pthread_mutex_lock(&mu);
  done_list[ndone++] = s;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

/* the store's accepted hook stands in for the dispatcher: completes at once */
static void on_accepted(void *ud, struct gw_submit *s) {
  (void)ud;
  s->nres = s->nd;
  for (int i = 0; i < s->nd; i++)
    memcpy(s->res[i].backend, s->d[i].backend, sizeof(s->res[i].backend));
  s->done(s);
}

static void wait_done(int n) {
  pthread_mutex_lock(&mu);
  while (ndone < n)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static void reset_done(void) {
  for (int i = 0; i < ndone; i++)
    gw_submit_free(done_list[i]);
  ndone = 0;
}

static struct gw_submit *msg(const char *idem, const char *body) {
  struct gw_submit *s = gw_submit_new();
  snprintf(s->caller, sizeof(s->caller), "000000012345");
  snprintf(s->dialect, sizeof(s->dialect), "fhir-json");
  snprintf(s->op, sizeof(s->op), "test");
  s->idem_key = idem ? strdup(idem) : NULL;
  s->original = (uint8_t *)strdup(body);
  s->original_len = strlen(body);
  s->nd = 2;
  for (int i = 0; i < 2; i++) {
    snprintf(s->d[i].backend, sizeof(s->d[i].backend), "%s", i ? "apkolce" : "p1");
    snprintf(s->d[i].ikey, sizeof(s->d[i].ikey), "k-%s-%d", body, i);
    snprintf(s->d[i].ctype, sizeof(s->d[i].ctype), "text/plain");
    s->d[i].payload = (uint8_t *)strdup(body);
    s->d[i].len = strlen(body);
  }
  s->done = on_done;
  return s;
}

/* |s| books slot |ident| */
static void book(struct gw_submit *s, const char *ident) {
  s->slotrefs = calloc(1, sizeof(*s->slotrefs));
  snprintf(s->slotrefs[0], sizeof(s->slotrefs[0]), "%s", ident);
  s->nslotrefs = 1;
}

/* gw_store_lookup, waited for: the result, the summary, whether the canonical form contains |want| */
static struct {
  int rv, has;
  char summary[256];
  const char *want;
  bool done;
} looked;
static void on_lookup(void *ud, int rv, const char *canonical, const char *summary) {
  (void)ud;
  pthread_mutex_lock(&mu);
  looked.rv = rv;
  looked.has = canonical && looked.want && strstr(canonical, looked.want) != NULL;
  snprintf(looked.summary, sizeof(looked.summary), "%s", summary ? summary : "");
  looked.done = true;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}
static int lookup(struct gw_store *st, const char *rkey, const char *want) {
  looked.done = false;
  looked.want = want;
  gw_store_lookup(st, rkey, on_lookup, NULL);
  pthread_mutex_lock(&mu);
  while (!looked.done)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return looked.rv;
}

static int count_loaded;
static void count_one(void *ud, struct gw_delivery *d) {
  (void)ud;
  count_loaded++;
  gw_delivery_free(d);
}

static void test_commit_dup_recover(void) {
  struct gw_store *st = NULL;
  struct gw_buf err;
  gw_buf_init(&err, 4096);
  CU_ASSERT_EQUAL_FATAL(gw_store_open(dir, on_accepted, NULL, &st, &err), GW_OK);
  reset_done();
  /* many at once: one group commit or a few */
  for (int i = 0; i < 40; i++) {
    char b[32], k[32];
    snprintf(b, sizeof(b), "m%d", i);
    snprintf(k, sizeof(k), "key-%d", i % 30); /* ten repeats */
    gw_store_submit(st, msg(k, b));
  }
  wait_done(40);
  int acc = 0, dup = 0;
  for (int i = 0; i < ndone; i++) {
    acc += done_list[i]->status == GW_SUB_ACCEPTED;
    dup += done_list[i]->status == GW_SUB_DUPLICATE;
    if (done_list[i]->status == GW_SUB_ACCEPTED) {
      CU_ASSERT(done_list[i]->msg_id > 0);
      CU_ASSERT(done_list[i]->d[0].id > 0);
    }
  }
  CU_ASSERT_EQUAL(acc, 30);
  CU_ASSERT_EQUAL(dup, 10);
  /* the first answer is replayed to a repeat */
  int64_t first = done_list[0]->msg_id;
  gw_store_set_answer(st, first, 201, "application/fhir+json", "/fhir/Slot/S-0/_history/1", "W/\"1\"",
                      (const uint8_t *)"{\"ok\":1}", 8);
  reset_done();
  gw_store_submit(st, msg("key-0", "again"));
  wait_done(1);
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_DUPLICATE);
  CU_ASSERT_EQUAL(done_list[0]->msg_id, first);
  CU_ASSERT_EQUAL(done_list[0]->answer_status, 201);
  CU_ASSERT_PTR_NOT_NULL(done_list[0]->answer);
  CU_ASSERT_EQUAL(done_list[0]->nres, 2);
  reset_done();
  /* a delivered one is not loaded again; queued ones are (restart recovery) */
  struct gw_delivery d = {.id = 1, .state = GW_DS_DELIVERED, .attempts = 1, .last_status = 201};
  gw_store_update(st, &d);
  gw_store_close(st);
  st = NULL;
  CU_ASSERT_EQUAL_FATAL(gw_store_open(dir, on_accepted, NULL, &st, &err), GW_OK);
  count_loaded = 0;
  CU_ASSERT_EQUAL(gw_store_load(st, GW_DS_QUEUED, count_one, NULL), 59);
  CU_ASSERT_EQUAL(count_loaded, 59);
  CU_ASSERT_EQUAL(lookup(st, "nothing|Appointment/x", NULL), GW_ERR_NOTFOUND);
  gw_store_close(st);
  gw_buf_cleanup(&err);
}

/* A store in DIR/|name| with the rules with memory of schemas/cer/rules.json. */
static void open_with_rules(const char *name, struct gw_store **st, struct gw_rules **rules, struct gw_buf *err) {
  char sub[96];
  snprintf(sub, sizeof(sub), "%s/%s", dir, name);
  gw_buf_init(err, 4096);
  *st = NULL;
  *rules = NULL;
  CU_ASSERT_EQUAL_FATAL(gw_store_open(sub, on_accepted, NULL, st, err), GW_OK);
  CU_ASSERT_EQUAL_FATAL(gw_rules_load("schemas/cer/rules.json", rules, err), GW_OK);
  gw_store_set_memory(*st, gw_rules_memory, *rules);
}

static void test_memory_rules(void) {
  struct gw_store *st;
  struct gw_rules *rules;
  struct gw_buf err;
  open_with_rules("mem", &st, &rules, &err);
  reset_done();
  struct gw_submit *a = msg(NULL, "slot-a");
  a->slots = calloc(1, sizeof(*a->slots));
  a->nslots = 1;
  *a->slots =
      (struct gw_slotfact){.ident = "S-1", .schedule = "Schedule/1|", .start_ms = 1000, .end_ms = 2000, .free = 1};
  gw_store_submit(st, a);
  wait_done(1);
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_ACCEPTED);
  /* overlapping slot of the same schedule */
  struct gw_submit *b = msg(NULL, "slot-b");
  b->slots = calloc(1, sizeof(*b->slots));
  b->nslots = 1;
  *b->slots =
      (struct gw_slotfact){.ident = "S-2", .schedule = "Schedule/1|", .start_ms = 1500, .end_ms = 2500, .free = 1};
  gw_store_submit(st, b);
  /* the same times in another schedule are fine */
  struct gw_submit *c = msg(NULL, "slot-c");
  c->slots = calloc(1, sizeof(*c->slots));
  c->nslots = 1;
  *c->slots =
      (struct gw_slotfact){.ident = "S-3", .schedule = "Schedule/2|", .start_ms = 1500, .end_ms = 2500, .free = 1};
  gw_store_submit(st, c);
  /* booking a known free slot, then the same slot again */
  struct gw_submit *e = msg(NULL, "appt-1");
  book(e, "S-1");
  gw_store_submit(st, e);
  struct gw_submit *f = msg(NULL, "appt-2");
  book(f, "S-1");
  gw_store_submit(st, f);
  struct gw_submit *g = msg(NULL, "appt-3");
  book(g, "S-404");
  gw_store_submit(st, g);
  wait_done(6);
  CU_ASSERT_EQUAL(done_list[1]->status, GW_SUB_REJECTED);
  CU_ASSERT_STRING_EQUAL(done_list[1]->reject_rule, "cer.slot-overlap-stored");
  CU_ASSERT_EQUAL(done_list[2]->status, GW_SUB_ACCEPTED);
  CU_ASSERT_EQUAL(done_list[3]->status, GW_SUB_ACCEPTED);
  CU_ASSERT_EQUAL(done_list[4]->status, GW_SUB_REJECTED);
  CU_ASSERT_STRING_EQUAL(done_list[4]->reject_rule, "cer.slot-known-free");
  CU_ASSERT_EQUAL(done_list[5]->status, GW_SUB_REJECTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(done_list[5]->reject_en, "not known"));
  CU_ASSERT_PTR_NOT_NULL(strstr(done_list[5]->reject_pl, "nie jest znany bramce")); /* the registry's phrase */
  CU_ASSERT_PTR_NOT_NULL(strstr(done_list[4]->reject_pl, "jest już zajęty"));
  /* a refused message leaves nothing: no message row, no delivery, no slot */
  CU_ASSERT_EQUAL(done_list[1]->msg_id, 0);
  CU_ASSERT_EQUAL(done_list[1]->d[0].id, 0);
  reset_done();
  /* a cancellation frees the slot it names; then it can be booked again */
  struct gw_submit *h = msg(NULL, "cancel-1");
  book(h, "S-1");
  h->slot_release = 1;
  gw_store_submit(st, h);
  struct gw_submit *k = msg(NULL, "appt-4");
  book(k, "S-1");
  gw_store_submit(st, k);
  wait_done(2);
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_ACCEPTED);
  CU_ASSERT_EQUAL(done_list[1]->status, GW_SUB_ACCEPTED);
  reset_done();
  /* the registry answers each dialect: 0357 code 204, a location per dialect */
  const struct gw_rule_info *ri = gw_rules_info(rules, "cer.slot-known-free");
  CU_ASSERT_PTR_NOT_NULL_FATAL(ri);
  CU_ASSERT_EQUAL(ri->hl7_code, 204);
  CU_ASSERT(ri->memory);
  CU_ASSERT_STRING_EQUAL(ri->loc_hl7, "SCH-1");
  CU_ASSERT_STRING_EQUAL(ri->loc_fhir, "Appointment.slot");
  CU_ASSERT_FALSE(gw_rules_info(rules, "cer.identity-match")->resendable);
  gw_store_close(st);
  gw_rules_free(rules);
  gw_buf_cleanup(&err);
}

static int db_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  }
  sqlite3_close(db);
  return rc;
}

static int db_int(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *q = NULL;
  int v = -1;
  if (sqlite3_open(path, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK &&
      sqlite3_step(q) == SQLITE_ROW)
    v = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return v;
}

/* Waits (2 s at most) until the store's health has a problem (|problem|) or not. */
static bool wait_health(bool problem) {
  char why[300];
  for (int i = 0; i < 200; i++) {
    if (gw_health_problem(why, sizeof(why)) == problem)
      return true;
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  return false;
}

/* A delivery's state change that the disk refuses is not lost: health says the store cannot commit, the
 * change is written once the disk takes it again, and health recovers by itself (it used to be dropped,
 * leaving the outbox "queued" while the dispatcher had delivered it). */
static void test_updates_survive_a_fault(void) {
  char sub[96], path[128];
  snprintf(sub, sizeof(sub), "%s/fault", dir);
  snprintf(path, sizeof(path), "%s/cergw.db", sub);
  struct gw_store *st = NULL;
  struct gw_buf err;
  gw_buf_init(&err, 4096);
  CU_ASSERT_EQUAL_FATAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_OK);
  reset_done();
  gw_store_submit(st, msg("fault-1", "fault"));
  wait_done(1);
  CU_ASSERT_EQUAL_FATAL(done_list[0]->status, GW_SUB_ACCEPTED);
  struct gw_delivery d = {.id = done_list[0]->d[0].id, .state = GW_DS_DELIVERED, .attempts = 1, .last_status = 200};
  reset_done();
  CU_ASSERT_EQUAL(db_exec(path, "CREATE TRIGGER no_updates BEFORE UPDATE ON deliveries BEGIN"
                                " SELECT RAISE(ABORT, 'database or disk is full'); END"),
                  SQLITE_OK);
  gw_store_update(st, &d);
  CU_ASSERT_TRUE(wait_health(true)); /* degraded, with the reason */
  char why[300] = "";
  CU_ASSERT_TRUE(gw_health_problem(why, sizeof(why)));
  CU_ASSERT_PTR_NOT_NULL(strstr(why, "the store cannot commit"));
  CU_ASSERT_EQUAL(db_exec(path, "DROP TRIGGER no_updates"), SQLITE_OK);
  CU_ASSERT_TRUE(wait_health(false)); /* recovered by itself */
  char q[128];
  snprintf(q, sizeof(q), "SELECT state FROM deliveries WHERE id = %lld", (long long)d.id);
  CU_ASSERT_EQUAL(db_int(path, q), GW_DS_DELIVERED); /* the change was kept and written */
  gw_store_close(st);
  gw_buf_cleanup(&err);
}

/* Ownership as data: the first clinic to write a resource owns it; another clinic's write of it is refused
 * with cer.identity-match naming the owner, and leaves nothing; the owner writes it again. */
static void test_ownership(void) {
  struct gw_store *st;
  struct gw_rules *rules;
  struct gw_buf err;
  open_with_rules("own", &st, &rules, &err);
  static const char *const who[] = {"000000067890", "000000012345", "000000067890"};
  reset_done();
  for (int i = 0; i < 3; i++) {
    char b[32];
    snprintf(b, sizeof(b), "own-%d", i);
    struct gw_submit *s = msg(NULL, b);
    snprintf(s->caller, sizeof(s->caller), "%s", who[i]);
    s->ownkeys = calloc(2, sizeof(*s->ownkeys));
    snprintf(s->ownkeys[0], GW_OWNKEY_MAX, "Appointment|id:B-1");
    snprintf(s->ownkeys[1], GW_OWNKEY_MAX, "Appointment|ident:urn:oid:2.16.840.1.113883.3.4424.2.3.1.67890|B-1");
    s->nownkeys = 2;
    gw_store_submit(st, s);
    wait_done(i + 1);
  }
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_ACCEPTED);
  CU_ASSERT_EQUAL(done_list[1]->status, GW_SUB_REJECTED);
  CU_ASSERT_STRING_EQUAL(done_list[1]->reject_rule, "cer.identity-match");
  CU_ASSERT_PTR_NOT_NULL(strstr(done_list[1]->reject_en, "names clinic 000000067890"));
  CU_ASSERT_EQUAL(done_list[1]->msg_id, 0);
  CU_ASSERT_EQUAL(done_list[2]->status, GW_SUB_ACCEPTED);
  reset_done();
  gw_store_close(st);
  gw_rules_free(rules);
  gw_buf_cleanup(&err);
}

/* A key that deduplicates, with the same content and with other content: the same is a repeat (the first
 * answer), other content is a conflict — refused, never taken for a repeat and dropped. */
static void test_idempotency_digest(void) {
  struct gw_store *st;
  struct gw_rules *rules;
  struct gw_buf err;
  open_with_rules("idem", &st, &rules, &err);
  static const char *const digests[] = {"aaaa", "aaaa", "bbbb"};
  reset_done();
  for (int i = 0; i < 3; i++) {
    struct gw_submit *s = msg("000000012345|msh10|MSG-1", i == 2 ? "other visit" : "visit");
    snprintf(s->digest, sizeof(s->digest), "%s", digests[i]);
    gw_store_submit(st, s);
    wait_done(i + 1);
  }
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_ACCEPTED);
  CU_ASSERT_EQUAL(done_list[1]->status, GW_SUB_DUPLICATE);
  CU_ASSERT_EQUAL(done_list[1]->msg_id, done_list[0]->msg_id);
  CU_ASSERT_EQUAL(done_list[2]->status, GW_SUB_CONFLICT);
  CU_ASSERT_EQUAL(done_list[2]->msg_id, done_list[0]->msg_id); /* names the message that holds the key */
  reset_done();
  count_loaded = 0;
  CU_ASSERT_EQUAL(gw_store_load(st, GW_DS_QUEUED, count_one, NULL), 2); /* only the first message's two */
  gw_store_close(st);
  gw_rules_free(rules);
  gw_buf_cleanup(&err);
}

/* A failure where the store records slot memory is a failed submit, counted and logged — not an
 * acceptance with the memory silently missing (sqlite3_step's result was ignored there). */
static void test_failure_is_not_silent(void) {
  char path[128];
  snprintf(path, sizeof(path), "%s/fail/cergw.db", dir);
  struct gw_store *st;
  struct gw_rules *rules;
  struct gw_buf err;
  open_with_rules("fail", &st, &rules, &err);
  sqlite3 *db = NULL; /* the disk refuses slot rows from now on */
  CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
  CU_ASSERT_EQUAL(
      sqlite3_exec(db,
                   "CREATE TRIGGER no_slots BEFORE INSERT ON slots BEGIN SELECT RAISE(ABORT, 'disk says no');"
                   " END",
                   NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  struct gw_buf m0;
  gw_buf_init(&m0, 4096);
  gw_store_metrics(&m0);
  reset_done();
  struct gw_submit *a = msg("fail-1", "slot-fail");
  a->slots = calloc(1, sizeof(*a->slots));
  a->nslots = 1;
  *a->slots =
      (struct gw_slotfact){.ident = "S-9", .schedule = "Schedule/9|", .start_ms = 1000, .end_ms = 2000, .free = 1};
  gw_store_submit(st, a);
  wait_done(1);
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_FAILED);
  reset_done();
  count_loaded = 0;
  CU_ASSERT_EQUAL(gw_store_load(st, GW_DS_QUEUED, count_one, NULL), 0); /* nothing of it was kept */
  struct gw_buf m1;
  gw_buf_init(&m1, 4096);
  gw_store_metrics(&m1);
  CU_ASSERT(strcmp((char *)m0.data, (char *)m1.data) != 0); /* cergw_store_errors_total moved */
  gw_buf_cleanup(&m0);
  gw_buf_cleanup(&m1);
  gw_store_close(st);
  gw_rules_free(rules);
  gw_buf_cleanup(&err);
}

/* A database written by the main of 2026-12-07 (schema version 0, tests/fixtures/store-v0.sql) is
 * migrated forward at open and keeps its queued deliveries; a newer version than this build knows is
 * refused and left untouched. */
static void test_migration(void) {
  char sub[96], path[128];
  snprintf(sub, sizeof(sub), "%s/v0", dir);
  snprintf(path, sizeof(path), "%s/cergw.db", sub);
  CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0700), 0);
  FILE *f = fopen("tests/fixtures/store-v0.sql", "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  static char sql[1 << 16];
  size_t n = fread(sql, 1, sizeof(sql) - 1, f);
  fclose(f);
  sql[n] = 0;
  sqlite3 *db = NULL;
  CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
  CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  struct gw_store *st = NULL;
  struct gw_buf err;
  gw_buf_init(&err, 4096);
  /* a database file other users can read holds personal data in the open: refused, with the fix */
  chmod(path, 0644);
  CU_ASSERT_EQUAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(err.data && strstr((const char *)err.data, "chmod 600"));
  chmod(path, 0600);
  chmod(sub, 0755); /* and so is a data directory they can list */
  err.len = 0;
  CU_ASSERT_EQUAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(err.data && strstr((const char *)err.data, "chmod 700"));
  chmod(sub, 0700);
  err.len = 0;
  CU_ASSERT_EQUAL_FATAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_OK);
  CU_ASSERT_EQUAL(gw_store_schema_version(st), GW_STORE_SCHEMA_VERSION);
  count_loaded = 0;
  CU_ASSERT_EQUAL(gw_store_load(st, GW_DS_QUEUED, count_one, NULL), 4); /* two messages x (p1, apkolce) */
  CU_ASSERT_EQUAL(lookup(st, "000000012345|Appointment/WIZ-2", "WIZ-2"), GW_OK);
  CU_ASSERT_STRING_EQUAL(looked.summary, "p1=queued apkolce=queued");
  CU_ASSERT(looked.has);
  /* and it takes new messages after the old ones */
  reset_done();
  gw_store_submit(st, msg("after-migration", "m-new"));
  wait_done(1);
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_ACCEPTED);
  CU_ASSERT(done_list[0]->msg_id > 2);
  reset_done();
  gw_store_close(st);
  /* opening again changes nothing */
  CU_ASSERT_EQUAL_FATAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_OK);
  CU_ASSERT_EQUAL(gw_store_load(st, GW_DS_QUEUED, count_one, NULL), 6);
  gw_store_close(st);
  /* a database from a later build is refused, not rewritten */
  CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
  CU_ASSERT_EQUAL(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  err.len = 0;
  CU_ASSERT_EQUAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_ERR_IO);
  CU_ASSERT_PTR_NOT_NULL(err.data && strstr((char *)err.data, "schema version 99 is newer"));
  gw_buf_cleanup(&err);
}

static const char *const dconf_text =
    "{\"client_tls\": {\"cert\": \"c.pem\", \"key\": \"k.pem\", \"ca\": \"ca.pem\"},\n"
    " \"backends\": {\"p1\": {\"kind\": \"p1\", \"url\": \"https://x/fhir\"},\n"
    "              \"k\": {\"kind\": \"apkolce\", \"url\": \"https://y\", \"enabled\": false}},\n"
    " \"routes\": [{\"name\": \"all\", \"match\": \"/f:*\", \"backends\": [\"p1\"]},\n"
    "            {\"name\": \"card\", \"match\": \"//f:code[@value = '1100']\", \"backends\": [\"p1\", \"k\"]}]}\n";

static int write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(text, f);
  return fclose(f);
}

static void test_dconf_and_routes(void) {
  struct gw_dconf *c = NULL;
  struct gw_buf err;
  gw_buf_init(&err, 8192);
  /* the embedded defaults */
  CU_ASSERT_EQUAL_FATAL(gw_dconf_load(NULL, &c, &err), GW_OK);
  CU_ASSERT_PTR_NOT_NULL(gw_dconf_backend(c, "p1"));
  CU_ASSERT_PTR_NOT_NULL(gw_dconf_backend(c, "simp"));
  CU_ASSERT_PTR_NOT_NULL(gw_dconf_clinic(c, "000000012345"));
  CU_ASSERT_EQUAL(c->nr, 3);
  gw_dconf_free(c);
  char path[128];
  snprintf(path, sizeof(path), "%s/d.json", dir);
  CU_ASSERT_EQUAL_FATAL(write_file(path, dconf_text), 0);
  CU_ASSERT_EQUAL_FATAL(gw_dconf_load(path, &c, &err), GW_OK);
  CU_ASSERT_PTR_NOT_NULL(strstr(c->cert, "/c.pem")); /* relative to the file */
  static const char appt[] = "<Appointment xmlns='http://hl7.org/fhir'><specialty><coding><code value='1100'/>"
                             "</coding></specialty></Appointment>";
  xmlDocPtr doc = xmlReadMemory(appt, (int)sizeof(appt) - 1, NULL, NULL, XML_PARSE_NONET);
  int idx[GW_MAX_BACKENDS];
  char why[64];
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
  int n = gw_route_match(c, doc, idx, why, sizeof(why));
  CU_ASSERT_EQUAL(n, 1); /* p1 once; k matched but is switched off */
  CU_ASSERT_STRING_EQUAL(c->b[idx[0]].name, "p1");
  CU_ASSERT_STRING_EQUAL(why, "all,card");
  xmlFreeDoc(doc);
  gw_dconf_free(c);
  /* errors: unknown backend, bad XPath, bad kind */
  CU_ASSERT_EQUAL(write_file(path, "{\"client_tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\"},"
                                   " \"backends\": {\"x\": {\"kind\": \"fax\", \"url\": \"u\"}},"
                                   " \"routes\": [{\"name\": \"r\", \"match\": \"//[\", \"backends\": [\"nope\"]}]}"),
                  0);
  err.len = 0;
  CU_ASSERT_EQUAL(gw_dconf_load(path, &c, &err), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)err.data, "backends.x: needs kind"));
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)err.data, "not a valid XPath"));
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)err.data, "unknown backend \"nope\""));
  err.len = 0;
  CU_ASSERT_EQUAL(write_file(path, "{\"routes\": ["), 0);
  CU_ASSERT_EQUAL(gw_dconf_load(path, &c, &err), GW_ERR_CONF);
  /* clinics: an MLLP endpoint is for SIU clinics only, and must name a host and a port */
#define TLS "\"client_tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\"}, "
  CU_ASSERT_EQUAL(write_file(path, "{" TLS "\"clinics\": {\"000000011111\": {\"notify\": \"clinic-siu\", "
                                   "\"url\": \"mllp://127.0.0.1:2576\"}}}"),
                  0);
  CU_ASSERT_EQUAL_FATAL(gw_dconf_load(path, &c, &err), GW_OK);
  CU_ASSERT_STRING_EQUAL(gw_dconf_clinic(c, "000000011111")->url, "mllp://127.0.0.1:2576");
  gw_dconf_free(c);
  static const char *const bad[] = {
      "{" TLS "\"clinics\": {\"000000011111\": {\"notify\": \"clinic-soap\", \"url\": \"mllp://127.0.0.1:2576\"}}}",
      "{" TLS "\"clinics\": {\"000000011111\": {\"notify\": \"clinic-siu\", \"url\": \"mllp://127.0.0.1\"}}}",
      "{" TLS "\"clinics\": {\"000000011111\": {\"notify\": \"clinic-siu\", \"url\": \"http://127.0.0.1:80/x\"}}}"};
#undef TLS
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err.len = 0;
    CU_ASSERT_EQUAL(write_file(path, bad[i]), 0);
    CU_ASSERT_EQUAL(gw_dconf_load(path, &c, &err), GW_ERR_CONF);
    CU_ASSERT_PTR_NOT_NULL(err.data && strstr((char *)err.data, "mllp://HOST:PORT"));
  }
  gw_buf_cleanup(&err);
}

/* A delivery file of |nclinics| clinics (RPWDL 1..n), two backends and a route. */
static char *many_clinics(int nclinics) {
  size_t cap = (size_t)nclinics * 120 + 4096, o = 0;
  char *t = malloc(cap);
  o += (size_t)snprintf(t + o, cap - o,
                        "{\"client_tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\"},\n"
                        " \"backends\": {\"p1\": {\"kind\": \"p1\", \"url\": \"https://p1/fhir\"},"
                        " \"k\": {\"kind\": \"apkolce\", \"url\": \"https://k\"}},\n"
                        " \"routes\": [{\"name\": \"all\", \"match\": \"/f:*\", \"backends\": [\"p1\", \"k\"]}],\n"
                        " \"clinics\": {");
  for (int i = 0; i < nclinics; i++)
    o += (size_t)snprintf(t + o, cap - o, "%s\"%012d\": {\"notify\": \"%s\", \"url\": \"%s://c%d:%d\"}", i ? ",\n" : "",
                          i + 1, i % 2 ? "clinic-siu" : "clinic-soap", i % 4 == 1 ? "mllp" : "https", i,
                          1000 + i % 50000);
  snprintf(t + o, cap - o, "}}\n");
  return t;
}

/* 10,000 clinics load, are found, and do not count against the backends; the caps that remain refuse
 * a configuration with a message that names them. */
static void test_dconf_many_clinics(void) {
  struct gw_buf err;
  gw_buf_init(&err, 1 << 16);
  char *t = many_clinics(10000);
  struct gw_dconf *c = NULL;
  CU_ASSERT_EQUAL_FATAL(gw_dconf_parse(t, "many", &c, &err), GW_OK);
  CU_ASSERT_EQUAL(c->nclinics, 10000);
  CU_ASSERT_EQUAL(c->nb, 2);
  for (int i = 1; i <= 10000; i += 37) {
    char rp[16], name[32];
    snprintf(rp, sizeof(rp), "%012d", i);
    snprintf(name, sizeof(name), "clinic-%s", rp);
    const struct gw_backend_conf *b = gw_dconf_clinic(c, rp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_STRING_EQUAL(b->rpwdl, rp);
    CU_ASSERT_PTR_EQUAL(gw_dconf_backend(c, name), b);
  }
  CU_ASSERT_STRING_EQUAL(gw_dconf_clinic(c, "000000010000")->url, "https://c9999:10999"); /* the last one */
  CU_ASSERT_PTR_NULL(gw_dconf_clinic(c, "000000010001"));
  /* routing still goes to the two backends */
  static const char appt[] = "<Appointment xmlns='http://hl7.org/fhir'/>";
  xmlDocPtr doc = xmlReadMemory(appt, (int)sizeof(appt) - 1, NULL, NULL, XML_PARSE_NONET);
  int idx[GW_MAX_BACKENDS];
  char why[64];
  CU_ASSERT_EQUAL(gw_route_match(c, doc, idx, why, sizeof(why)), 2);
  gw_dconf_free(c);
  free(t);
  /* a clinic listed twice */
  err.len = 0;
  CU_ASSERT_EQUAL(gw_dconf_parse("{\"client_tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\"}, \"clinics\": {"
                                 "\"000000011111\": {\"notify\": \"clinic-siu\", \"url\": \"https://a\"},"
                                 "\"000000011111\": {\"notify\": \"clinic-siu\", \"url\": \"https://b\"}}}",
                                 "dup", &c, &err),
                  GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(err.data && strstr((char *)err.data, "clinics.000000011111: listed twice"));
  /* more backends than one message can go to: refused, naming the limit */
  size_t cap = 8192, o = 0;
  char *b = malloc(cap);
  o += (size_t)snprintf(b + o, cap - o,
                        "{\"client_tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\"}, \"backends\": {");
  for (int i = 0; i <= GW_MAX_BACKENDS; i++)
    o += (size_t)snprintf(b + o, cap - o, "%s\"b%d\": {\"kind\": \"simp\", \"url\": \"https://s%d\"}", i ? "," : "", i,
                          i);
  snprintf(b + o, cap - o, "}}");
  err.len = 0;
  CU_ASSERT_EQUAL(gw_dconf_parse(b, "wide", &c, &err), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(err.data && strstr((char *)err.data, "GW_MAX_BACKENDS"));
  free(b);
  /* a route's expression that fails on a message is an error, not "no match" */
  err.len = 0;
  CU_ASSERT_EQUAL_FATAL(gw_dconf_parse("{\"client_tls\": {\"cert\": \"c\", \"key\": \"k\", \"ca\": \"a\"},"
                                       " \"backends\": {\"p1\": {\"kind\": \"p1\", \"url\": \"https://p\"}},"
                                       " \"routes\": [{\"name\": \"odd\", \"match\": \"nosuchfunction(1)\","
                                       " \"backends\": [\"p1\", \"p1\"]}]}",
                                       "odd", &c, &err),
                        GW_OK);
  CU_ASSERT_EQUAL(c->r[0].nb, 1); /* a backend named twice in a route counts once */
  CU_ASSERT(gw_route_match(c, doc, idx, why, sizeof(why)) < 0);
  gw_dconf_free(c);
  xmlFreeDoc(doc);
  gw_buf_cleanup(&err);
}

static void test_mask_pesel(void) {
  char s[] = "WIZ-1 patient=85010112345 tel 600100200 nr 123456789012";
  gw_mask_pesel(s);
  CU_ASSERT_STRING_EQUAL(s, "WIZ-1 patient=850101***** tel 600100200 nr 123456789012");
}

/* Retention, as a property over random ages and delivery states: after pruning as of |now|, a message
 * with a delivery queued, dead or with a retry asked keeps everything; one whose deliveries were all
 * delivered keeps its content while younger than content_days (7), loses it after; one with rejected
 * ones too after rejected_days (30); either is gone after metadata_days (90); nothing younger is
 * touched. */
static void test_retention_property(void) {
  char sub[96], path[128];
  snprintf(sub, sizeof(sub), "%s/retention", dir);
  snprintf(path, sizeof(path), "%s/cergw.db", sub);
  struct gw_store *st = NULL;
  struct gw_buf err;
  gw_buf_init(&err, 4096);
  CU_ASSERT_EQUAL_FATAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_OK);
  enum { N = 120 };
  reset_done();
  for (int i = 0; i < N; i += 30) { /* done_list holds 64 */
    for (int k = i; k < i + 30; k++) {
      char key[32], body[64];
      snprintf(key, sizeof(key), "ret-%d", k);
      snprintf(body, sizeof(body), "PESEL 85010112345 message %d", k);
      gw_store_submit(st, msg(key, body));
    }
    wait_done(30);
    reset_done();
  }
  gw_store_close(st);
  /* random ages (0 to 120 days) and states, written behind the store's back */
  const int64_t day = 86400000, now = gw_wall_ms();
  int age[N + 1], state[N + 1][2];
  srand(20261207);
  sqlite3 *db = NULL;
  CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
  for (int id = 1; id <= N; id++) {
    age[id] = rand() % 121;
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE messages SET received_ms = %lld WHERE id = %d", (long long)(now - age[id] * day),
             id);
    CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    for (int k = 0; k < 2; k++) {
      state[id][k] = rand() % 3 ? GW_DS_DELIVERED : rand() % 5; /* mostly delivered, else any state */
      snprintf(sql, sizeof(sql),
               "UPDATE deliveries SET state = %d WHERE id = (SELECT id FROM deliveries WHERE msg_id = %d ORDER BY id "
               "LIMIT 1 OFFSET %d)",
               state[id][k], id, k);
      CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
  }
  sqlite3_close(db);
  CU_ASSERT_EQUAL_FATAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_OK);
  gw_store_set_retention(st, 7, 90, 3600000, 30); /* and rejected ones after 30 days */
  long c = 0, m = 0, tc = 0, tm = 0;
  do { /* steps until nothing is left to prune */
    CU_ASSERT_EQUAL_FATAL(gw_store_prune(st, now, &c, &m), GW_OK);
    tc += c, tm += m;
  } while (c || m);
  gw_store_close(st);
  CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
  int expect_content = 0, expect_meta = 0, rejected_kept = 0, rejected_pruned = 0;
  for (int id = 1; id <= N; id++) {
    bool done = state[id][0] == GW_DS_DELIVERED && state[id][1] == GW_DS_DELIVERED;
    bool settled = (state[id][0] == GW_DS_DELIVERED || state[id][0] == GW_DS_REJECTED) &&
                   (state[id][1] == GW_DS_DELIVERED || state[id][1] == GW_DS_REJECTED);
    bool content_gone = (done && age[id] > 7) || (settled && age[id] > 30), gone = settled && age[id] > 90;
    rejected_kept += settled && !done && age[id] > 7 && age[id] <= 30;
    rejected_pruned += settled && !done && age[id] > 30;
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT length(original), (SELECT COUNT(*) FROM deliveries WHERE msg_id = %d AND length(payload) > 0)"
             " FROM messages WHERE id = %d",
             id, id);
    sqlite3_stmt *q = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    int rc = sqlite3_step(q);
    if (!content_gone) { /* untouched: waiting for an operator (queued, dead, retry asked), or young */
      CU_ASSERT_EQUAL(rc, SQLITE_ROW);
      CU_ASSERT_TRUE(rc == SQLITE_ROW && sqlite3_column_int(q, 0) > 0 && sqlite3_column_int(q, 1) == 2);
    } else if (!gone) { /* content gone, metadata kept */
      CU_ASSERT_EQUAL(rc, SQLITE_ROW);
      CU_ASSERT_TRUE(rc == SQLITE_ROW && sqlite3_column_int(q, 0) == 0 && sqlite3_column_int(q, 1) == 0);
      expect_content++;
    } else { /* gone */
      CU_ASSERT_EQUAL(rc, SQLITE_DONE);
      expect_meta++;
    }
    sqlite3_finalize(q);
  }
  /* the draw covers every case: a rejected one young enough to stay, and one old enough to go */
  CU_ASSERT_TRUE(expect_content > 0 && expect_meta > 0 && rejected_kept > 0 && rejected_pruned > 0);
  CU_ASSERT_EQUAL(tm, expect_meta);
  CU_ASSERT_EQUAL(tc, expect_content + expect_meta); /* the oldest lost their content first, then went */
  sqlite3_close(db);
  gw_buf_cleanup(&err);
}

/* Past store.max_bytes a new message is refused with the reason (503 upstream), nothing of it kept; an
 * operator's room (no limit) takes the next one. */
static void test_store_full(void) {
  char sub[96];
  snprintf(sub, sizeof(sub), "%s/full", dir);
  struct gw_store *st = NULL;
  struct gw_buf err;
  gw_buf_init(&err, 4096);
  CU_ASSERT_EQUAL_FATAL(gw_store_open(sub, on_accepted, NULL, &st, &err), GW_OK);
  reset_done();
  gw_store_set_limits(st, 1, 0);
  gw_store_submit(st, msg("full-1", "PESEL 85010112345"));
  wait_done(1);
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_FAILED);
  CU_ASSERT_PTR_NOT_NULL(strstr(done_list[0]->reject_en, "the store is full"));
  CU_ASSERT_EQUAL(done_list[0]->msg_id, 0);
  reset_done();
  gw_store_set_limits(st, 0, 0);
  gw_store_submit(st, msg("full-2", "PESEL 85010112345"));
  wait_done(1);
  CU_ASSERT_EQUAL(done_list[0]->status, GW_SUB_ACCEPTED);
  reset_done();
  gw_store_close(st);
  gw_buf_cleanup(&err);
}

int gw_test_store_suite(void) {
  CU_pSuite s = CU_add_suite("store", setup, teardown);
  if (!s)
    return -1;
  return GW_ADD(s, test_commit_dup_recover) || GW_ADD(s, test_memory_rules) || GW_ADD(s, test_migration) ||
         GW_ADD(s, test_failure_is_not_silent) || GW_ADD(s, test_ownership) || GW_ADD(s, test_idempotency_digest) ||
         GW_ADD(s, test_updates_survive_a_fault) || GW_ADD(s, test_dconf_and_routes) ||
         GW_ADD(s, test_dconf_many_clinics) || GW_ADD(s, test_mask_pesel) || GW_ADD(s, test_retention_property) ||
         GW_ADD(s, test_store_full);
}
