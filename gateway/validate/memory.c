/* The CeR rules with memory: what the gateway accepted earlier decides a new
 * message. They run in the store's writer thread, inside the transaction
 * that would keep the message, and see the database only through the
 * store's narrow query interface (gw_memq_*): the store knows nothing of
 * CeR, and these rules nothing of SQL. Their texts are entries of the one
 * rule registry (schemas/cer/rules.json). */
#include <stdbool.h>
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

/* Whether |slot| is one of the new-line separated |list|. */
static bool holds(const char *list, const char *slot) {
  size_t n = strlen(slot);
  for (const char *p = list; n && (p = strstr(p, slot)) != NULL; p += n)
    if ((p == list || p[-1] == '\n') && p[n] == '\n')
      return true;
  return false;
}

/* An appointment books slots the gateway knows to be free, or that it already holds itself (a
 * reschedule to the same slot, to correct its end); a cancellation may name any. */
static int check_booked(const struct gw_rules *r, struct gw_memq *q, struct gw_submit *s, const struct gw_apptfact *was,
                        bool known) {
  for (int i = 0; i < s->nslotrefs && !s->slot_release; i++) {
    if (known && holds(was->slots, s->slotrefs[i]))
      continue;
    int st = gw_memq_slot_state(q, s->caller, s->slotrefs[i]);
    if (st == GW_ERR_IO)
      return st;
    if (st != 1)
      return refuse(r, s, "cer.slot-known-free", s->slotrefs[i],
                    st == GW_ERR_NOTFOUND ? "@slot.unknown" : "@slot.taken");
  }
  return GW_OK;
}

/* Marks each slot of the new-line separated |list| free, except those in |keep|. */
static int free_slots(struct gw_memq *q, const char *caller, const char *list, const char *keep) {
  char slot[128];
  for (const char *p = list; *p;) {
    size_t n = strcspn(p, "\n");
    snprintf(slot, sizeof(slot), "%.*s", (int)n, p);
    if (slot[0] && !holds(keep, slot) && gw_memq_slot_set_free(q, caller, slot, 1))
      return GW_ERR_IO;
    p += n + (p[n] == '\n');
  }
  return GW_OK;
}

/* The slot and appointment lifecycle: booked (its slots taken) -> rescheduled (the old slots freed, the
 * new taken; the same slot may be kept) -> cancelled or entered in error (its slots freed) or a no-show
 * (kept: the time was used). The appointment row keeps its status, start and the slots it holds. */
static int record(struct gw_memq *q, struct gw_submit *s, const struct gw_apptfact *was, bool known) {
  for (int i = 0; i < s->nownkeys; i++)
    if (gw_memq_owner_put(q, s->ownkeys[i], s->caller, s->msg_id))
      return GW_ERR_IO;
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].ident[0] && gw_memq_slot_put(q, s->caller, &s->slots[i], s->msg_id))
      return GW_ERR_IO;
  for (int i = 0; i < s->nslotrefs; i++)
    if (gw_memq_slot_set_free(q, s->caller, s->slotrefs[i], s->slot_release))
      return GW_ERR_IO;
  if (!s->appt_key[0])
    return GW_OK;
  struct gw_apptfact now = s->appt;
  if (known && s->slot_release) { /* cancelled: everything it held is free again */
    if (free_slots(q, s->caller, was->slots, ""))
      return GW_ERR_IO;
    now.slots[0] = 0;
  } else if (known && s->nslotrefs) { /* rescheduled to other slots: the old ones not kept are freed */
    if (free_slots(q, s->caller, was->slots, now.slots))
      return GW_ERR_IO;
  } else if (known) { /* nothing said of slots (a reschedule by time, a no-show): it keeps what it held */
    snprintf(now.slots, sizeof(now.slots), "%s", was->slots);
  }
  if (s->slot_release)
    now.slots[0] = 0;
  if (!now.start_ms && known)
    now.start_ms = was->start_ms;
  return gw_memq_appt_put(q, s->caller, s->appt_key, &now, s->msg_id);
}

int gw_rules_memory(void *ud, struct gw_memq *q, struct gw_submit *s) {
  const struct gw_rules *r = ud;
  struct gw_apptfact was = {{0}, 0, {0}};
  int known = s->appt_key[0] ? gw_memq_appt_get(q, s->caller, s->appt_key, &was) : 0;
  if (known < 0)
    return known;
  /* a change of a booking the gateway never saw (booked elsewhere, before the gateway, or a wrong id):
   * forwarded, since P1 decides, and the answer says so */
  s->appt_unknown = s->appt_change && !known;
  int rv = check_owner(r, q, s);
  if (rv == GW_OK)
    rv = check_overlaps(r, q, s);
  if (rv == GW_OK)
    rv = check_booked(r, q, s, &was, known > 0);
  if (rv == GW_OK)
    rv = record(q, s, &was, known > 0);
  return rv;
}
