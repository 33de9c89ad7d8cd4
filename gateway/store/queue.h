/* What the stores (store/sqlite.c, store/pg.c) share, internal to store/: the items their writer threads
 * take from their queues, which gw_store_submit, _update, _set_answer, _lookup, _read and _prune make in
 * store.c and hand to the store's enqueue operation; and the helpers both writers use. */
#ifndef GW_STORE_QUEUE_H
#define GW_STORE_QUEUE_H

#include <pthread.h>
#include <stdbool.h>

#include "core/buf.h"
#include "store/store.h"

enum gw_witem_kind { W_SUBMIT, W_UPDATE, W_ANSWER, W_LOOKUP, W_READ, W_PRUNE, W_FULL /* a submit refused: full */ };

struct gw_prune_wait { /* W_PRUNE: gw_store_prune waits on it */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int rv;
  int64_t now;
  long content, metadata;
};

struct gw_witem {
  enum gw_witem_kind kind;
  struct gw_witem *next;
  struct gw_submit *s;  /* W_SUBMIT */
  struct gw_delivery d; /* W_UPDATE: id, msg_id, state, attempts, next_ms, last_status, last_error */
  int64_t msg_id;       /* W_ANSWER */
  int status;
  char ctype[64];
  uint8_t *body; /* W_ANSWER: the answer; W_LOOKUP: the ordering key */
  size_t len;
  gw_store_latest_fn fn; /* W_LOOKUP */
  struct gw_rquery rq;   /* W_READ */
  gw_store_read_fn read_fn;
  char meta[240]; /* W_ANSWER: "location\tetag" */
  void *ud;
  bool failed;              /* W_UPDATE, W_ANSWER: not written by the last batch */
  struct gw_prune_wait *pw; /* W_PRUNE */
};

struct gw_keyring;
/* The references a resource makes ("\nA\nB\n", as the facts write them) as keyed hashes, each on its
 * line ("\nkh(A)\nkh(B)\n"; "" for none), appended to |out|; without a keyring |s| itself. */
void gw_store_refkeys(const struct gw_keyring *kr, const char *s, struct gw_buf *out);
/* The id a resource the store never saw is kept under: the id the request gives, else its identifier's
 * value, when either is a FHIR id, else one made of its message and entry ("cergw-MSG-I"). */
void gw_store_new_id(const struct gw_resfact *r, int64_t msg_id, int i, char *id, size_t n);
/* The body of a new version of |r|: its own (a whole resource), or, for a PATCH, |prev| (the version before,
 * freed here) merged with it through the store's merge hook into |*merged| (malloc'd). GW_OK with |*body|
 * and |*len| set, or an error: nothing to merge into, and no version is kept. */
int gw_store_version_body(const struct gw_store_hooks *h, const struct gw_resfact *r, uint8_t *prev, size_t plen,
                          const uint8_t **body, size_t *len, uint8_t **merged);

/* A writer's queue (its store's lock held around each call). */
struct gw_wlist {
  struct gw_witem *head, *tail;
};
void gw_wlist_push(struct gw_wlist *l, struct gw_witem *it);
/* Up to |max| items from the head, linked in order (|*n| of them), or NULL. */
struct gw_witem *gw_wlist_take(struct gw_wlist *l, int max, int *n);
/* Puts the items of |front| (in order) back before those of |l|; |front| is emptied. */
void gw_wlist_requeue(struct gw_wlist *l, struct gw_wlist *front);

/* After a batch's commit (|committed|) or its failure: lookups, reads and prune steps run (through the
 * store's callbacks on |impl|), who waits for a submit hears of it (accepted ones go to the on_accepted
 * hook, only now), state changes and answers not written go to |retry| (unless |stopping|), and the
 * reason a submit was refused for a full store goes to |full|. Frees what is done. Returns whether
 * anything failed. */
struct gw_finish {
  struct gw_store *st;
  void *impl;
  void (*lookup)(void *impl, struct gw_witem *it);
  void (*read)(void *impl, struct gw_witem *it);
  int (*prune)(void *impl, int64_t now, long *content, long *metadata);
};
bool gw_store_finish(const struct gw_finish *f, struct gw_witem *batch, bool committed, bool stopping,
                     struct gw_wlist *retry, char *full, size_t n);

/* Frees an item the writer is done with. */
void gw_witem_free(struct gw_witem *it);
/* A W_PRUNE item's step is done: its waiter hears |rv| (the counts are in it->pw). */
void gw_prune_done(struct gw_witem *it, int rv);
/* Waits on |cv| (with |mu| held) for at most |ms| milliseconds. */
void gw_timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms);

#endif
