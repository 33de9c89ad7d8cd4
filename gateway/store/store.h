/* The durable store: one SQLite database in WAL mode under the data
 * directory. Every accepted message is committed here before anybody is told
 * it was accepted: its original bytes, its canonical form, the caller, and one
 * delivery row per backend with that delivery's state. One writer thread
 * owns the write connection and commits whatever has queued up in one
 * transaction (group commit), so fsync does not cap throughput. The only
 * folder that includes sqlite3.h. */
#ifndef GW_STORE_STORE_H
#define GW_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* The most backends one message can go to. A delivery configuration with more
 * backends than this is refused at load (naming the limit), so a fan-out is
 * never cut; clinics' notification endpoints are not counted (a notification
 * goes to one clinic). */
#define GW_MAX_BACKENDS 16

/* Delivery states, as stored (numbers are on disk: append only). */
enum gw_dstate {
  GW_DS_QUEUED = 0,    /* waiting for its first or next attempt */
  GW_DS_DELIVERED = 1, /* the backend answered 2xx */
  GW_DS_REJECTED = 2,  /* the backend refused it (4xx): resending as is will not help */
  GW_DS_DEAD = 3,      /* attempts exhausted: dead letter, needs an operator */
  GW_DS_RETRY_REQ = 4, /* an operator asked for a retry (cergw outbox retry) */
};
const char *gw_dstate_name(int s);
int gw_dstate_parse(const char *name); /* -1 when unknown */

/* A time slot the gateway has accepted, for the rules with memory. */
#define GW_OWNKEY_MAX 256

/* An appointment as the rules with memory keep it: its status, start and the slots it holds. */
struct gw_apptfact {
  char status[24];
  int64_t start_ms; /* 0: not stated */
  char slots[512];  /* the identifiers of the slots it holds, each followed by a new line */
};

/* A Schedule, Slot or Appointment a message writes, kept version by version for FHIR reads (read,
 * vread, history, search) of the clinic's own resources. */
struct gw_resfact {
  char rtype[24];
  char id[72];               /* the logical id the request gives (PUT, entry URL), or "" */
  char ident[GW_OWNKEY_MAX]; /* its first identifier, "system|value" with the system normalised, or "" */
  char identvalue[72];       /* that identifier's value */
  char status[24];
  int64_t date_ms; /* Appointment and Slot start, Schedule planning horizon start; 0 none */
  char refs[512];  /* what it references, for search: "\nSchedule/S-1\nPractitioner/1234567\n" */
  int patch;       /* a partial resource (PATCH): merged with the version before */
  int entry;       /* its Bundle entry, -1 for a resource alone */
  uint8_t *body;   /* a PATCH's partial resource (malloc'd); NULL for a whole resource, which the store
                      keeps as its message's canonical form holds it (at |entry|), not as a copy */
  size_t body_len;
  /* results */
  char out_id[72];
  int out_version; /* 0: not kept (a PATCH of a resource never seen) */
};

struct gw_slotfact {
  char ident[128];    /* the slot's business identifier (or id) */
  char schedule[160]; /* practitioner and place: the schedule it belongs to */
  int64_t start_ms, end_ms;
  int free; /* status free */
};

/* One backend's copy of an accepted message. */
struct gw_delivery {
  int64_t id, msg_id;
  char backend[32];
  char rkey[192];  /* ordering key: deliveries with the same key go out in order */
  char path[96];   /* appended to the backend URL */
  char ikey[80];   /* idempotency key sent with every attempt */
  char acting[64]; /* the clinic acting (the caller's RPWDL), stated to the backend */
  char ctype[64];
  uint8_t *payload;
  size_t len;
  int state, attempts, last_status;
  int64_t next_ms, created_ms;
  char last_error[256];
  int held; /* PostgreSQL store: stored without an owner behind an earlier delivery of its resource pending at
               another instance; not scheduled here (an instance claims it when its turn comes) */
};

/* The per-backend result of an accepted message, as answered to the caller. */
struct gw_dresult {
  char backend[32];
  int state;       /* enum gw_dstate */
  int attempts;    /* 0: not tried yet */
  int last_status; /* HTTP status of the last attempt, 0 none */
  char error[256]; /* the backend's error (translated text), or "" */
};

enum gw_submit_status {
  GW_SUB_ACCEPTED = 0,
  GW_SUB_DUPLICATE, /* the key seen before with the same content: the first answer is replayed */
  GW_SUB_REJECTED,
  GW_SUB_FAILED,
  GW_SUB_MATCHED,
  GW_SUB_CONFLICT,     /* the key seen before with other content: refused, never dropped */
  GW_SUB_PRECONDITION, /* If-Match names another version than the current one: refused, nothing kept */
};

struct gw_submit {
  /* --- filled by the caller, owned by the submit --- */
  char caller[64]; /* certificate identity (RPWDL or CN) */
  char dialect[16];
  char op[48];       /* e.g. "fhir.create", "soap.BookAppointment", "hl7.SIU^S12", "notification" */
  char *idem_key;    /* NULL: none. Scoped by the caller already. */
  char digest[65];   /* SHA-256 of the canonical content (hex): a repeat of the key must carry the same */
  char *match_rkey;  /* conditional create: when a delivery of this ordering key exists, nothing is stored */
  char rtype[32];    /* resource type of the canonical root */
  char rid[96];      /* resource id given by the caller (PUT), or "" */
  uint8_t *original; /* received bytes */
  size_t original_len;
  uint8_t *canonical; /* canonical FHIR XML */
  size_t canonical_len;
  int nd;
  struct gw_delivery d[GW_MAX_BACKENDS]; /* backend, rkey, path, ctype, payload */
  int nslots;
  struct gw_slotfact *slots; /* Slots carried by the message (memory rules) */
  int nslotrefs;
  char (*slotrefs)[128];        /* slots an Appointment books (nslotrefs of them, malloc'd) */
  int slot_release;             /* the Appointment cancels: its slots become free again */
  char appt_key[GW_OWNKEY_MAX]; /* the Appointment the message writes ("Appointment|ident:sys|value"), or "" */
  struct gw_apptfact appt;      /* what the message states of it (slots: those it books) */
  int appt_change;              /* it changes a booking (PATCH, cancellation, no-show): one should exist */
  int appt_unknown;             /* result: appt_change named an appointment the gateway had never seen */
  int nresf;
  struct gw_resfact *resf; /* the resources it writes (malloc'd) */
  int if_match;            /* If-Match: the version the update expects of resf[0], 0 none */
  int nownkeys;
  int npesels;
  char (*pesels)[16];             /* the patients the message names (PESEL), for `cergw outbox find --pesel` (malloc'd);
                                     the store keeps them as keyed hashes */
  char (*ownkeys)[GW_OWNKEY_MAX]; /* the resources the message writes: "Appointment|id:A-1",
                                     "Slot|ident:urn:oid:...|S-1" (ownership, malloc'd) */
  /* --- results, filled by the store (and the dispatcher) --- */
  enum gw_submit_status status;
  int64_t msg_id;
  char reject_rule[48], reject_en[256], reject_pl[256]; /* REJECTED by a memory rule */
  char match_summary[200];                              /* MATCHED: where the existing one went */
  int nres;
  struct gw_dresult res[GW_MAX_BACKENDS];
  uint8_t *answer; /* DUPLICATE: the answer first given, when it was stored */
  size_t answer_len;
  int answer_status;
  char answer_ctype[64];
  char answer_location[200], answer_etag[32]; /* DUPLICATE: its Location and ETag */
  int current_version;                        /* PRECONDITION: the version there is */
  /* --- completion: called exactly once, from a store or dispatcher thread --- */
  void (*done)(struct gw_submit *s);
  void *ud;
  int64_t deadline_ms; /* answer at the latest then (dispatcher) */
  struct gw_submit *next;
};

struct gw_submit *gw_submit_new(void);
void gw_submit_free(struct gw_submit *s);

/* Receives accepted submits right after their commit (their deliveries have
 * ids). The receiver now owns |s| and must call s->done eventually. */
typedef void (*gw_store_accepted_fn)(void *ud, struct gw_submit *s);

struct gw_store;
struct gw_memq;
typedef void (*gw_store_latest_fn)(void *ud, int rv, const char *canonical, const char *summary);
typedef int (*gw_memory_fn)(void *ud, struct gw_memq *q, struct gw_submit *s);

/* A FHIR read of a clinic's own resources: one (id; version 0 the latest), its history, or a search
 * over the latest versions (every criterion optional: "" / 0 means any). */
struct gw_rquery {
  char clinic[64], rtype[24], id[72];
  int version;
  int history;
  int search;
  char ident[GW_OWNKEY_MAX]; /* "system|value", normalised */
  char identvalue[72];       /* identifier=value without a system */
  char status[24];
  char ref[140];                  /* "Practitioner/1234567": a reference the resource makes */
  int64_t date_ge, date_lt;       /* its date (start) */
  int64_t updated_ge, updated_lt; /* _lastUpdated */
  int count, offset;
};
struct gw_rrow {
  char id[72];
  int version;
  int64_t updated_ms, msg_id;
  char summary[256]; /* the deliveries of the message that wrote this version: "p1=delivered apkolce=queued" */
  uint8_t *body;     /* canonical FHIR XML of the resource */
  size_t len;
};
/* |rows| (|n| of them, freed after the call) and |total| (searches: how many match in all). */
typedef void (*gw_store_read_fn)(void *ud, int rv, const struct gw_rrow *rows, int n, int total);
/* Merges a partial resource (a PATCH) into the version before it: a new canonical XML in |*out|
 * (malloc'd). GW_OK or an error (then the version is not kept). */
typedef int (*gw_merge_fn)(void *ud, const uint8_t *prev, size_t prev_len, const uint8_t *partial, size_t len,
                           uint8_t **out, size_t *out_len);
/* The resource at |entry| of a message's canonical form (-1: the whole of it), for a version kept as
 * its message holds it (gw_resfact.body NULL): |*out| malloc'd. GW_OK or an error. */
typedef int (*gw_extract_fn)(void *ud, const uint8_t *canonical, size_t len, int entry, uint8_t **out, size_t *out_len);

/* ---- the console's view of the outbox (console/console.c) ---- */
struct gw_obx_row {
  int64_t id, msg_id, created_ms, done_ms;
  char clinic[64], op[48], resource[160], backend[32];
  int state, attempts, last_status;
  char last_error[256];
};
struct gw_obx_query {
  int state; /* -1: any */
  char backend[32], clinic[64], op[48];
  char search[128];           /* an MSH-10, WS-Addressing MessageID or Idempotency-Key (found through the keyed hashes
                                 of each clinic's key), or an appointment or slot identifier (in the ordering key) */
  int64_t since_ms, until_ms; /* created in [since, until); 0: open */
  int64_t msg_id;             /* the deliveries of one message; 0: any */
  int limit;
};
struct gw_obx_attempt {
  int attempt, state, status;
  int64_t at_ms;
  char answer[256];
};
struct gw_obx_detail {
  struct gw_obx_row row;
  char rkey[192], path[96], ctype[64], ikey[80];
  uint8_t *original, *canonical, *payload; /* malloc'd, NUL-terminated ("" when pruned) */
  size_t original_len, canonical_len, payload_len;
  int nattempts;
  struct gw_obx_attempt att[32];
};
struct gw_obx_backend {
  char backend[32];
  long delivered;        /* in the window */
  int64_t p50, p95, p99; /* delivery latency (created -> delivered), ms, over the window */
  char last_error[256];  /* the latest failed attempt's answer ("" none) */
  int64_t last_error_ms;
};
void gw_obx_detail_free(struct gw_obx_detail *d);

/* Every column a store keeps sealed (tls/seal.h), with the column of its row that holds the message id (the
 * associated data); NULL: the message of the row's delivery (attempts). Both stores' rekey walk it. */
struct gw_sealed_column {
  const char *table, *column, *msg_id;
};
extern const struct gw_sealed_column gw_sealed_columns[];
extern const int gw_nsealed_columns;

/* ---- implementations ----
 * A store is a table of operations and the state behind it; the calls below
 * (gw_store_*, gw_memq_*) go through the table, so the pipeline, the
 * dispatcher and the rules are the same over any implementation. SQLite
 * (store/sqlite.c) is the embedded one; another (PostgreSQL, for several
 * instances sharing one store) fills the same two tables, each operation
 * with the same contract as the gw_store_* call of that name below. */
struct gw_witem;
struct gw_store_ops {
  const char *name;
  void (*close)(struct gw_store *st);
  /* Takes an item for the writer (store/queue.h: a submit, a state change, an answer, a lookup, a read, a
   * prune step), which gw_store_submit, _update, _set_answer, _lookup, _read and _prune make. */
  void (*enqueue)(struct gw_store *st, struct gw_witem *it);
  void (*set_retention)(struct gw_store *st, uint32_t content_days, uint32_t metadata_days, uint32_t every_ms,
                        uint32_t rejected_days);
  void (*set_limits)(struct gw_store *st, uint64_t max_bytes, uint64_t min_free_bytes);
  int (*load)(struct gw_store *st, int state, void (*fn)(void *ud, struct gw_delivery *d), void *ud);
  int (*load_range)(struct gw_store *st, const char *backend, int64_t from, int64_t to, int limit,
                    void (*fn)(void *ud, struct gw_delivery *d), void *ud);
  /* NULL for a store of one instance; see gw_store_claim */
  int (*claim)(struct gw_store *st, void (*fn)(void *ud, struct gw_delivery *d), void *ud);
  int (*schema_version)(struct gw_store *st);
  /* the console (see gw_store_outbox_*) */
  int (*outbox_list)(struct gw_store *st, const struct gw_obx_query *q, struct gw_obx_row *rows, int max,
                     long counts[5]);
  int (*outbox_show)(struct gw_store *st, int64_t id, struct gw_obx_detail *d);
  int (*outbox_act)(struct gw_store *st, int64_t id, const char *action, char *why, size_t n);
  int (*outbox_backends)(struct gw_store *st, int64_t since_ms, struct gw_obx_backend *out, int max);
};
/* The hooks the gateway gives every store (gw_store_set_accepted, _memory, _merge, _extract), read by its
 * writer; set before the first submit. */
struct gw_store_hooks {
  gw_store_accepted_fn on_accepted;
  void *ud;
  gw_memory_fn memory; /* the rules with memory, or NULL */
  void *memory_ud;
  gw_merge_fn merge; /* a PATCH merged into the version before, or NULL */
  void *merge_ud;
  gw_extract_fn extract; /* a version kept as its message holds it, read out of the canonical form */
  void *extract_ud;
};
struct gw_store {
  const struct gw_store_ops *ops; /* an implementation's state follows */
  struct gw_store_hooks hooks;
};
struct gw_memq_ops {
  int (*slot_overlap)(struct gw_memq *q, const char *caller, const struct gw_slotfact *f, char *other, size_t n);
  int (*slot_state)(struct gw_memq *q, const char *caller, const char *ident);
  int (*slot_put)(struct gw_memq *q, const char *caller, const struct gw_slotfact *f, int64_t msg_id);
  int (*slot_set_free)(struct gw_memq *q, const char *caller, const char *ident, int is_free);
  int (*owner_get)(struct gw_memq *q, const char *key, char *owner, size_t n);
  int (*owner_put)(struct gw_memq *q, const char *key, const char *owner, int64_t msg_id);
  int (*appt_get)(struct gw_memq *q, const char *caller, const char *key, struct gw_apptfact *out);
  int (*appt_put)(struct gw_memq *q, const char *caller, const char *key, const struct gw_apptfact *f, int64_t msg_id);
};
struct gw_memq {
  const struct gw_memq_ops *ops;
};

/* The SQLite store in DIR/cergw.db (what gw_store_open opens). */
int gw_store_open_sqlite(const char *dir, gw_store_accepted_fn on_accepted, void *ud, struct gw_store **out,
                         struct gw_buf *err);

/* ---- the rules with memory reach the store only through this ----
 * The store knows nothing of CeR: for each new message, inside the writer's
 * transaction (after the message row is written, so s->msg_id is set), it
 * calls the memory hook, which asks and records facts through these queries.
 * Each returns GW_ERR_IO when the database fails; the submit then fails as a
 * whole (nothing of it is kept) and the caller is told to resend. */
/* A slot of |caller| in |schedule|, other than |ident|, overlapping
 * [start_ms, end_ms): 1 (its identifier in |other|), 0 none, or GW_ERR_IO. */
int gw_memq_slot_overlap(struct gw_memq *q, const char *caller, const struct gw_slotfact *f, char *other, size_t n);
/* Slot |ident| of |caller|: 1 free, 0 taken, GW_ERR_NOTFOUND unknown, GW_ERR_IO. */
int gw_memq_slot_state(struct gw_memq *q, const char *caller, const char *ident);
/* Records slot |f| of |caller| as published by message |msg_id|. GW_OK or GW_ERR_IO. */
int gw_memq_slot_put(struct gw_memq *q, const char *caller, const struct gw_slotfact *f, int64_t msg_id);
/* Marks slot |ident| of |caller| free (1) or taken (0). GW_OK or GW_ERR_IO. */
int gw_memq_slot_set_free(struct gw_memq *q, const char *caller, const char *ident, int is_free);

/* The clinic that owns resource |key| (as in gw_submit.ownkeys): 1 (into
 * |owner|), 0 nobody yet, or GW_ERR_IO. */
int gw_memq_owner_get(struct gw_memq *q, const char *key, char *owner, size_t n);
/* Records |owner| as the owner of |key| when nobody is. GW_OK or GW_ERR_IO. */
int gw_memq_owner_put(struct gw_memq *q, const char *key, const char *owner, int64_t msg_id);

/* What the gateway last knew of appointment |key| of |caller|: 1 (into |out|),
 * 0 never seen, or GW_ERR_IO. */
int gw_memq_appt_get(struct gw_memq *q, const char *caller, const char *key, struct gw_apptfact *out);
/* Records appointment |key| of |caller| as |f| says, by message |msg_id|. GW_OK or GW_ERR_IO. */
int gw_memq_appt_put(struct gw_memq *q, const char *caller, const char *key, const struct gw_apptfact *f,
                     int64_t msg_id);

/* Decides |s| and records its facts. Returns GW_OK (accept), GW_ERR_INVAL
 * (refused: s->reject_* filled; nothing of |s| is kept) or GW_ERR_IO. */
/* Sets the memory hook (NULL: no rules with memory). Before any submit. */
void gw_store_set_memory(struct gw_store *st, gw_memory_fn fn, void *ud);

/* The schema version this build writes (PRAGMA user_version). A database of
 * an older version is migrated forward at open, in one transaction; a newer
 * one is refused. */
#define GW_STORE_SCHEMA_VERSION 12
/* Prometheus lines of the store (errors counted since start). */
void gw_store_metrics(struct gw_buf *out);

/* The schema version of an open store. */
int gw_store_schema_version(struct gw_store *st);

/* Opens the store of the data directory DIR (the SQLite store: DIR/cergw.db, created when missing, and
 * its writer thread). */
int gw_store_open(const char *dir, gw_store_accepted_fn on_accepted, void *ud, struct gw_store **out,
                  struct gw_buf *err);
/* Sets (or replaces) the hook that receives accepted submits. */
void gw_store_set_accepted(struct gw_store *st, gw_store_accepted_fn fn, void *ud);
/* Commits what is queued, stops the writer and closes. */
void gw_store_close(struct gw_store *st);

/* Queues |s| for the next group commit. Ownership passes to the store. */
void gw_store_submit(struct gw_store *st, struct gw_submit *s);
/* Queues a delivery state change (batched into the next commit). */
void gw_store_update(struct gw_store *st, const struct gw_delivery *d);
/* Queues the answer given for |msg_id| (replayed to idempotent repeats, with its Location and ETag). */
void gw_store_set_answer(struct gw_store *st, int64_t msg_id, int status, const char *ctype, const char *location,
                         const char *etag, const uint8_t *body, size_t len);
/* A FHIR read (see gw_rquery), answered through |fn| from the store's thread, after what is committed. */
void gw_store_read(struct gw_store *st, const struct gw_rquery *q, gw_store_read_fn fn, void *ud);
/* Sets the hook that merges a PATCH into the version before it (NULL: a PATCH keeps no version). */
void gw_store_set_merge(struct gw_store *st, gw_merge_fn fn, void *ud);
/* Retention by policy (store.retention): the content of a message whose every delivery was delivered is
 * dropped |content_days| after it arrived, its metadata after |metadata_days| (0: never); one whose
 * deliveries were each delivered or rejected loses its content after |rejected_days| (0: never) and its
 * metadata with the others; a message with a delivery queued, retried or dead is never pruned. The writer
 * prunes in small steps every |every_ms| (60 s when 0). */
void gw_store_set_retention(struct gw_store *st, uint32_t content_days, uint32_t metadata_days, uint32_t every_ms,
                            uint32_t rejected_days);
/* New messages are refused (GW_SUB_FAILED, the reason in reject_en) once the store passes |max_bytes|
 * (0: no limit) or its file system has less than |min_free_bytes| free (default 64 MiB). */
void gw_store_set_limits(struct gw_store *st, uint64_t max_bytes, uint64_t min_free_bytes);
/* One prune step now, as of |now_ms|, waiting for it: how many messages lost their content and how many
 * were removed. GW_OK or an error. */
int gw_store_prune(struct gw_store *st, int64_t now_ms, long *content, long *metadata);

/* The keys the SQLite store seals content and hashes identifiers with (tls/seal.h), for every
 * connection opened from now on, process-wide; NULL: stored in clear. Set before gw_store_open. */
struct gw_keyring;
void gw_store_use_keyring(const struct gw_keyring *kr);
/* Versions kept without a body of their own are read through |fn| (the engine's gw_engine_extract). */
void gw_store_set_extract(struct gw_store *st, gw_extract_fn fn, void *ud);

/* Loads deliveries in |state| (ordered by id) for the dispatcher; each is
 * handed to |fn|, which owns it. Synchronous, on a reader connection. */
int gw_store_load(struct gw_store *st, int state, void (*fn)(void *ud, struct gw_delivery *d), void *ud);

/* Loads up to |limit| queued deliveries of |backend| with ids in [from, to],
 * in id order (the dispatcher's refill after a backlog spilled to disk). */
int gw_store_load_range(struct gw_store *st, const char *backend, int64_t from, int64_t to, int limit,
                        void (*fn)(void *ud, struct gw_delivery *d), void *ud);

/* The latest accepted message that carried resource |rkey| (as in
 * gw_delivery.rkey), looked up by the writer thread after its next commit
 * (never on the caller's thread): |fn| gets GW_OK with its canonical form
 * and a summary of its deliveries ("p1=delivered apkolce=queued"),
 * GW_ERR_NOTFOUND or GW_ERR_IO, from the writer thread. */
void gw_store_lookup(struct gw_store *st, const char *rkey, gw_store_latest_fn fn, void *ud);

/* A store shared by several instances (PostgreSQL): claims for this instance the deliveries nobody
 * alive owns (a dead instance's, and held ones whose turn came), each to |fn| in id order; the number
 * claimed, or an error. 0 for a store of one instance. The dispatcher calls it every second. */
int gw_store_claim(struct gw_store *st, void (*fn)(void *ud, struct gw_delivery *d), void *ud);

/* The console's reads and actions, on a connection of their own (never the writer's). List: up to |max|
 * rows newest first and |counts| (deliveries per state, all of them); the number of rows or an error. Show:
 * one delivery with its message's content opened and its attempts; GW_OK, GW_ERR_NOTFOUND or an error.
 * Act: "retry" (a rejected or dead delivery queued again, as cergw outbox retry), "dead" (a queued, rejected or
 * retry-requested delivery made a dead letter: the dispatcher is told by the caller) or "purge" (the message of
 * a finished delivery removed, as cergw outbox purge); GW_OK, or GW_ERR_INVAL with why in |why|. Backends:
 * per backend, deliveries delivered since |since_ms| with latency percentiles and the last error. */
int gw_store_outbox_list(struct gw_store *st, const struct gw_obx_query *q, struct gw_obx_row *rows, int max,
                         long counts[5]);
int gw_store_outbox_show(struct gw_store *st, int64_t id, struct gw_obx_detail *d);
int gw_store_outbox_act(struct gw_store *st, int64_t id, const char *action, char *why, size_t n);
int gw_store_outbox_backends(struct gw_store *st, int64_t since_ms, struct gw_obx_backend *out, int max);

/* Frees a delivery from gw_store_load. */
void gw_delivery_free(struct gw_delivery *d);

/* ---- the operator's view (cergw outbox): opens the database directly ---- */
int gw_outbox_cmd(const char *dir, int argc, char **argv);
/* `cergw store status`: the store's size, messages and deliveries per state, the oldest content,
 * and the keys its content is sealed under (opens the database read-only). 0, 1 or 2. */
int gw_store_cmd(const char *dir, int argc, char **argv);

#endif
