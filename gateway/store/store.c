/* The store's interface, implementation-neutral: these calls go through the
 * operations of the store that was opened (store/sqlite.c today; a second
 * implementation fills the same tables). The submit and delivery types and
 * their helpers are shared by every implementation. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

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

void gw_store_set_accepted(struct gw_store *st, gw_store_accepted_fn fn, void *ud) {
  st->ops->set_accepted(st, fn, ud);
}
void gw_store_set_memory(struct gw_store *st, gw_memory_fn fn, void *ud) { st->ops->set_memory(st, fn, ud); }
void gw_store_submit(struct gw_store *st, struct gw_submit *s) { st->ops->submit(st, s); }
void gw_store_update(struct gw_store *st, const struct gw_delivery *d) { st->ops->update(st, d); }
int gw_store_schema_version(struct gw_store *st) { return st->ops->schema_version(st); }

void gw_store_close(struct gw_store *st) {
  if (st)
    st->ops->close(st);
}

void gw_store_read(struct gw_store *st, const struct gw_rquery *q, gw_store_read_fn fn, void *ud) {
  st->ops->read(st, q, fn, ud);
}

void gw_store_set_merge(struct gw_store *st, gw_merge_fn fn, void *ud) { st->ops->set_merge(st, fn, ud); }
void gw_store_set_extract(struct gw_store *st, gw_extract_fn fn, void *ud) { st->ops->set_extract(st, fn, ud); }
void gw_store_set_retention(struct gw_store *st, uint32_t content_days, uint32_t metadata_days, uint32_t every_ms,
                            uint32_t rejected_days) {
  st->ops->set_retention(st, content_days, metadata_days, every_ms, rejected_days);
}
void gw_store_set_limits(struct gw_store *st, uint64_t max_bytes, uint64_t min_free_bytes) {
  st->ops->set_limits(st, max_bytes, min_free_bytes);
}
int gw_store_prune(struct gw_store *st, int64_t now_ms, long *content, long *metadata) {
  return st->ops->prune(st, now_ms, content, metadata);
}

void gw_store_set_answer(struct gw_store *st, int64_t msg_id, int status, const char *ctype, const char *location,
                         const char *etag, const uint8_t *body, size_t len) {
  st->ops->set_answer(st, msg_id, status, ctype, location, etag, body, len);
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
  st->ops->lookup(st, rkey, fn, ud);
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
