/* The CeR rules with memory: what the gateway accepted earlier decides a new
 * message. They run in the store's writer thread, inside the transaction
 * that would keep the message, and see the database only through the
 * store's narrow query interface (gw_memq_*): the store knows nothing of
 * CeR, and these rules nothing of SQL. Their texts are entries of the one
 * rule registry (schemas/cer/rules.json). */
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "store/store.h"
#include "validate/rules.h"

static int refuse(const struct gw_rules *r, struct gw_submit *s, const char *id, const char *a1, const char *a2) {
  snprintf(s->reject_rule, sizeof(s->reject_rule), "%s", id);
  gw_rules_text(r, id, a1, a2, s->reject_en, sizeof(s->reject_en), s->reject_pl, sizeof(s->reject_pl));
  return GW_ERR_INVAL;
}

/* A clinic acts only on its own resources: every resource the message writes (by logical id, business
 * identifier or request URL) is either nobody's yet or the caller's. */
static int check_owner(const struct gw_rules *r, struct gw_memq *q, struct gw_submit *s) {
  for (int i = 0; i < s->nownkeys; i++) {
    char owner[64] = "";
    int rv = gw_memq_owner_get(q, s->ownkeys[i], owner, sizeof(owner));
    if (rv < 0)
      return rv;
    if (rv > 0 && strcmp(owner, s->caller) != 0)
      return refuse(r, s, "cer.identity-match", owner, s->caller);
  }
  return GW_OK;
}

/* A free slot must not overlap one accepted earlier for the same schedule. */
static int check_overlaps(const struct gw_rules *r, struct gw_memq *q, struct gw_submit *s) {
  for (int i = 0; i < s->nslots; i++) {
    const struct gw_slotfact *f = &s->slots[i];
    if (!f->free || !f->ident[0])
      continue;
    char other[128] = "";
    int rv = gw_memq_slot_overlap(q, s->caller, f, other, sizeof(other));
    if (rv < 0)
      return rv;
    if (rv > 0)
      return refuse(r, s, "cer.slot-overlap-stored", f->ident, other);
  }
  return GW_OK;
}

/* An appointment books slots the gateway knows to be free (a cancellation may name any). */
static int check_booked(const struct gw_rules *r, struct gw_memq *q, struct gw_submit *s) {
  for (int i = 0; i < s->nslotrefs && !s->slot_release; i++) {
    int st = gw_memq_slot_state(q, s->caller, s->slotrefs[i]);
    if (st == GW_ERR_IO)
      return st;
    if (st != 1)
      return refuse(r, s, "cer.slot-known-free", s->slotrefs[i],
                    st == GW_ERR_NOTFOUND ? "@slot.unknown" : "@slot.taken");
  }
  return GW_OK;
}

static int record(struct gw_memq *q, struct gw_submit *s) {
  for (int i = 0; i < s->nownkeys; i++)
    if (gw_memq_owner_put(q, s->ownkeys[i], s->caller, s->msg_id))
      return GW_ERR_IO;
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].ident[0] && gw_memq_slot_put(q, s->caller, &s->slots[i], s->msg_id))
      return GW_ERR_IO;
  for (int i = 0; i < s->nslotrefs; i++)
    if (gw_memq_slot_set_free(q, s->caller, s->slotrefs[i], s->slot_release))
      return GW_ERR_IO;
  return GW_OK;
}

int gw_rules_memory(void *ud, struct gw_memq *q, struct gw_submit *s) {
  const struct gw_rules *r = ud;
  int rv = check_owner(r, q, s);
  if (rv == GW_OK)
    rv = check_overlaps(r, q, s);
  if (rv == GW_OK)
    rv = check_booked(r, q, s);
  if (rv == GW_OK)
    rv = record(q, s);
  return rv;
}
