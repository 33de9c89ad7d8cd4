/* The store's interface, implementation-neutral: these calls go through the
 * operations of the store that was opened (store/sqlite.c, store/pg.c). The
 * submit and delivery types, the writer's queue items (store/queue.h) and the
 * hooks are shared by every implementation. */
#include "store/store.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "store/queue.h"
#include "tls/seal.h"

static const char *const state_names[] = {"queued", "delivered", "rejected", "dead", "retry-requested"};

const char *gw_dstate_name(int s) {
  return (s >= 0 && s < (int)(sizeof(state_names) / sizeof(state_names[0]))) ? state_names[s] : "unknown";
}

int gw_dstate_parse(const char *name) {
  for (int i = 0; i < (int)(sizeof(state_names) / sizeof(state_names[0])); i++)
    if (strcmp(state_names[i], name) == 0)
      return i;
  return -1;
}

struct gw_submit *gw_submit_new(void) {
  return gw_calloc(1, sizeof(struct gw_submit));
}

void gw_submit_free(struct gw_submit *s) {
  if (!s)
    return;
  free(s->idem_key);
  free(s->match_rkey);
  free(s->original);
  free(s->canonical);
  for (int i = 0; i < s->nd; i++)
    free(s->d[i].payload);
  free(s->slots);
  free(s->slotrefs);
  free(s->ownkeys);
  free(s->pesels);
  for (int i = 0; i < s->nresf; i++)
    free(s->resf[i].body);
  free(s->resf);
  free(s->answer);
  free(s);
}

void gw_delivery_free(struct gw_delivery *d) {
  if (d) {
    free(d->payload);
    free(d);
  }
}

int gw_store_open(const char *dir, gw_store_accepted_fn on_accepted, void *ud, struct gw_store **out,
                  struct gw_buf *err) {
  return gw_store_open_sqlite(dir, on_accepted, ud, out, err);
}

/* The hooks are set at start, before the writer sees a submit that would read them; the lock orders
 * the writes for a thread that reads them later. */
static pthread_mutex_t hooks_mu = PTHREAD_MUTEX_INITIALIZER;

void gw_store_set_accepted(struct gw_store *st, gw_store_accepted_fn fn, void *ud) {
  pthread_mutex_lock(&hooks_mu);
  st->hooks.on_accepted = fn;
  st->hooks.ud = ud;
  pthread_mutex_unlock(&hooks_mu);
}
void gw_store_set_memory(struct gw_store *st, gw_memory_fn fn, void *ud) {
  pthread_mutex_lock(&hooks_mu);
  st->hooks.memory = fn;
  st->hooks.memory_ud = ud;
  pthread_mutex_unlock(&hooks_mu);
}

void gw_store_submit(struct gw_store *st, struct gw_submit *s) {
  struct gw_witem *it = gw_calloc(1, sizeof(*it));
  if (!it) {
    s->status = GW_SUB_FAILED;
    s->done(s);
    return;
  }
  it->kind = W_SUBMIT;
  it->s = s;
  s->status = GW_SUB_ACCEPTED;
  st->ops->enqueue(st, it);
}

void gw_store_update(struct gw_store *st, const struct gw_delivery *d) {
  struct gw_witem *it = gw_calloc(1, sizeof(*it));
  if (!it)
    return; /* the row keeps its older state: at worst one more attempt after a restart */
  it->kind = W_UPDATE;
  it->d.id = d->id;
  it->d.msg_id = d->msg_id;
  it->d.state = d->state;
  it->d.attempts = d->attempts;
  it->d.next_ms = d->next_ms;
  it->d.last_status = d->last_status;
  memcpy(it->d.last_error, d->last_error, sizeof(it->d.last_error));
  st->ops->enqueue(st, it);
}
int gw_store_schema_version(struct gw_store *st) { return st->ops->schema_version(st); }

void gw_store_close(struct gw_store *st) {
  if (st)
    st->ops->close(st);
}

void gw_store_read(struct gw_store *st, const struct gw_rquery *q, gw_store_read_fn fn, void *ud) {
  struct gw_witem *it = gw_calloc(1, sizeof(*it));
  if (!it) {
    fn(ud, GW_ERR_NOMEM, NULL, 0, 0);
    return;
  }
  it->kind = W_READ;
  it->rq = *q;
  it->read_fn = fn;
  it->ud = ud;
  st->ops->enqueue(st, it);
}

void gw_store_set_merge(struct gw_store *st, gw_merge_fn fn, void *ud) {
  pthread_mutex_lock(&hooks_mu);
  st->hooks.merge = fn;
  st->hooks.merge_ud = ud;
  pthread_mutex_unlock(&hooks_mu);
}
void gw_store_set_extract(struct gw_store *st, gw_extract_fn fn, void *ud) {
  pthread_mutex_lock(&hooks_mu);
  st->hooks.extract = fn;
  st->hooks.extract_ud = ud;
  pthread_mutex_unlock(&hooks_mu);
}
void gw_store_set_retention(struct gw_store *st, uint32_t content_days, uint32_t metadata_days, uint32_t every_ms,
                            uint32_t rejected_days) {
  st->ops->set_retention(st, content_days, metadata_days, every_ms, rejected_days);
}
void gw_store_set_limits(struct gw_store *st, uint64_t max_bytes, uint64_t min_free_bytes) {
  st->ops->set_limits(st, max_bytes, min_free_bytes);
}
int gw_store_prune(struct gw_store *st, int64_t now_ms, long *content, long *metadata) {
  struct gw_prune_wait pw = {.now = now_ms};
  struct gw_witem *it = gw_calloc(1, sizeof(*it));
  if (!it)
    return GW_ERR_NOMEM;
  pthread_mutex_init(&pw.mu, NULL);
  pthread_cond_init(&pw.cv, NULL);
  it->kind = W_PRUNE;
  it->pw = &pw;
  st->ops->enqueue(st, it);
  pthread_mutex_lock(&pw.mu);
  while (!pw.done)
    pthread_cond_wait(&pw.cv, &pw.mu);
  pthread_mutex_unlock(&pw.mu);
  pthread_mutex_destroy(&pw.mu);
  pthread_cond_destroy(&pw.cv);
  *content = pw.content;
  *metadata = pw.metadata;
  return pw.rv;
}

void gw_prune_done(struct gw_witem *it, int rv) {
  struct gw_prune_wait *pw = it->pw;
  pthread_mutex_lock(&pw->mu);
  pw->rv = rv;
  pw->done = true;
  pthread_cond_signal(&pw->cv);
  pthread_mutex_unlock(&pw->mu);
}

void gw_witem_free(struct gw_witem *it) {
  if (it) {
    free(it->body);
    free(it);
  }
}

void gw_timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_cond_timedwait(cv, mu, &ts);
}

void gw_store_set_answer(struct gw_store *st, int64_t msg_id, int status, const char *ctype, const char *location,
                         const char *etag, const uint8_t *body, size_t len) {
  struct gw_witem *it = gw_calloc(1, sizeof(*it));
  if (!it || !(it->body = gw_malloc(len ? len : 1))) {
    free(it);
    return;
  }
  it->kind = W_ANSWER;
  snprintf(it->meta, sizeof(it->meta), "%s\t%s", location ? location : "", etag ? etag : "");
  it->msg_id = msg_id;
  it->status = status;
  snprintf(it->ctype, sizeof(it->ctype), "%s", ctype ? ctype : "");
  memcpy(it->body, body, len);
  it->len = len;
  st->ops->enqueue(st, it);
}

int gw_store_load(struct gw_store *st, int state, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  return st->ops->load(st, state, fn, ud);
}

int gw_store_load_range(struct gw_store *st, const char *backend, int64_t from, int64_t to, int limit,
                        void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  return st->ops->load_range(st, backend, from, to, limit, fn, ud);
}

int gw_store_outbox_list(struct gw_store *st, const struct gw_obx_query *q, struct gw_obx_row *rows, int max,
                         long counts[5]) {
  return st->ops->outbox_list(st, q, rows, max, counts);
}
int gw_store_outbox_show(struct gw_store *st, int64_t id, struct gw_obx_detail *d) {
  return st->ops->outbox_show(st, id, d);
}
int gw_store_outbox_act(struct gw_store *st, int64_t id, const char *action, char *why, size_t n) {
  return st->ops->outbox_act(st, id, action, why, n);
}
int gw_store_outbox_backends(struct gw_store *st, int64_t since_ms, struct gw_obx_backend *out, int max) {
  return st->ops->outbox_backends(st, since_ms, out, max);
}
const struct gw_sealed_column gw_sealed_columns[] = {
    {"messages", "original", "id"},      {"messages", "canonical", "id"},        {"messages", "answer", "id"},
    {"deliveries", "payload", "msg_id"}, {"deliveries", "last_error", "msg_id"}, {"resources", "body", "msg_id"},
    {"attempts", "answer", NULL},        {"slots", "label", "msg_id"},           {"appointments", "slots", "msg_id"},
};
const int gw_nsealed_columns = (int)(sizeof(gw_sealed_columns) / sizeof(gw_sealed_columns[0]));

void gw_obx_detail_free(struct gw_obx_detail *d) {
  free(d->original);
  free(d->canonical);
  free(d->payload);
  d->original = d->canonical = d->payload = NULL;
}

int gw_store_claim(struct gw_store *st, void (*fn)(void *ud, struct gw_delivery *d), void *ud) {
  return st->ops->claim ? st->ops->claim(st, fn, ud) : 0;
}
void gw_store_lookup(struct gw_store *st, const char *rkey, gw_store_latest_fn fn, void *ud) {
  struct gw_witem *it = gw_calloc(1, sizeof(*it));
  if (!it || !(it->body = (uint8_t *)gw_strdup(rkey))) {
    free(it);
    fn(ud, GW_ERR_NOMEM, NULL, "");
    return;
  }
  it->kind = W_LOOKUP;
  it->fn = fn;
  it->ud = ud;
  st->ops->enqueue(st, it);
}

int gw_memq_slot_overlap(struct gw_memq *q, const char *caller, const struct gw_slotfact *f, char *other, size_t n) {
  return q->ops->slot_overlap(q, caller, f, other, n);
}

int gw_memq_slot_state(struct gw_memq *q, const char *caller, const char *ident) {
  return q->ops->slot_state(q, caller, ident);
}

int gw_memq_slot_put(struct gw_memq *q, const char *caller, const struct gw_slotfact *f, int64_t msg_id) {
  return q->ops->slot_put(q, caller, f, msg_id);
}

int gw_memq_slot_set_free(struct gw_memq *q, const char *caller, const char *ident, int is_free) {
  return q->ops->slot_set_free(q, caller, ident, is_free);
}

int gw_memq_owner_get(struct gw_memq *q, const char *key, char *owner, size_t n) {
  return q->ops->owner_get(q, key, owner, n);
}

int gw_memq_owner_put(struct gw_memq *q, const char *key, const char *owner, int64_t msg_id) {
  return q->ops->owner_put(q, key, owner, msg_id);
}

int gw_memq_appt_get(struct gw_memq *q, const char *caller, const char *key, struct gw_apptfact *out) {
  return q->ops->appt_get(q, caller, key, out);
}

int gw_memq_appt_put(struct gw_memq *q, const char *caller, const char *key, const struct gw_apptfact *f,
                     int64_t msg_id) {
  return q->ops->appt_put(q, caller, key, f, msg_id);
}

void gw_store_refkeys(const struct gw_keyring *kr, const char *s, struct gw_buf *out) {
  if (!kr) {
    gw_buf_append(out, s, strlen(s));
    return;
  }
  size_t start = out->len;
  gw_buf_append(out, "\n", 1); /* "\n" alone: none */
  for (const char *p = s; p && *p;) {
    size_t n = strcspn(p, "\n");
    if (n) {
      char h[65];
      gw_keyed_hash(kr, p, n, h);
      gw_buf_append(out, h, 64);
      gw_buf_append(out, "\n", 1);
    }
    p += n + (p[n] == '\n');
  }
  if (out->len == start + 1)
    out->len = start; /* as the facts write no reference: "" */
}

static void fhir_id(const char *s, char *out, size_t n) {
  size_t k = strlen(s);
  bool ok = k > 0 && k <= 64;
  for (size_t i = 0; ok && i < k; i++)
    ok = isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.';
  snprintf(out, n, "%s", ok ? s : "");
}

void gw_store_new_id(const struct gw_resfact *r, int64_t msg_id, int i, char *id, size_t n) {
  fhir_id(r->id, id, n);
  if (!id[0])
    fhir_id(r->identvalue, id, n);
  if (!id[0])
    snprintf(id, n, "cergw-%lld-%d", (long long)msg_id, i);
}

int gw_store_version_body(const struct gw_store_hooks *h, const struct gw_resfact *r, uint8_t *prev, size_t plen,
                          const uint8_t **body, size_t *len, uint8_t **merged) {
  *merged = NULL;
  *body = r->body;
  *len = r->body_len;
  if (!r->patch)
    return GW_OK;
  size_t mlen = 0;
  int m = prev && h->merge ? h->merge(h->merge_ud, prev, plen, r->body, r->body_len, merged, &mlen) : GW_ERR_NOTFOUND;
  free(prev);
  if (m != GW_OK) {
    free(*merged);
    *merged = NULL;
    return m;
  }
  *body = *merged;
  *len = mlen;
  return GW_OK;
}

void gw_wlist_push(struct gw_wlist *l, struct gw_witem *it) {
  it->next = NULL;
  if (l->tail)
    l->tail->next = it;
  else
    l->head = it;
  l->tail = it;
}

struct gw_witem *gw_wlist_take(struct gw_wlist *l, int max, int *n) {
  struct gw_witem *batch = l->head, *last = batch;
  *n = batch ? 1 : 0;
  while (last && last->next && *n < max) {
    last = last->next;
    (*n)++;
  }
  if (last) {
    l->head = last->next;
    if (!l->head)
      l->tail = NULL;
    last->next = NULL;
  }
  return batch;
}

void gw_wlist_requeue(struct gw_wlist *l, struct gw_wlist *front) {
  if (!front->head)
    return;
  front->tail->next = l->head;
  l->head = front->head;
  if (!l->tail)
    l->tail = front->tail;
  front->head = front->tail = NULL;
}

bool gw_store_finish(const struct gw_finish *f, struct gw_witem *batch, bool committed, bool stopping,
                     struct gw_wlist *retry, char *full, size_t n) {
  bool failed = !committed;
  full[0] = 0;
  for (struct gw_witem *it = batch, *next; it; it = next) {
    next = it->next;
    it->next = NULL;
    if (it->kind == W_LOOKUP)
      f->lookup(f->impl, it);
    if (it->kind == W_READ)
      f->read(f->impl, it);
    if (it->kind == W_PRUNE)
      gw_prune_done(it, f->prune(f->impl, it->pw->now, &it->pw->content, &it->pw->metadata));
    if (it->kind == W_SUBMIT || it->kind == W_FULL) {
      struct gw_submit *s = it->s;
      if (!committed && it->kind == W_SUBMIT) {
        s->status = GW_SUB_FAILED;
        s->msg_id = 0;
      }
      if (it->kind == W_FULL)
        snprintf(full, n, "%s", s->reject_en);
      else
        failed |= s->status == GW_SUB_FAILED;
      if (s->status == GW_SUB_ACCEPTED && f->st->hooks.on_accepted)
        f->st->hooks.on_accepted(f->st->hooks.ud, s);
      else
        s->done(s);
    } else if ((it->kind == W_UPDATE || it->kind == W_ANSWER) && (!committed || it->failed) && !stopping) {
      failed = true;
      it->failed = false;
      gw_wlist_push(retry, it); /* tried again, in order */
      continue;
    }
    gw_witem_free(it);
  }
  return failed;
}
