/* libFuzzer: ownership. Random sequences of writes by two clinics (A and B)
 * to a handful of appointments, each write naming its resource in one of
 * the ways a clinic system can — logical id, a PUT's URL, an identifier
 * whose system is B's or A's RPWDL namespace spelt in any case and with
 * leading zeros, no system at all, a transaction entry's request URL or a
 * conditional URL — through the same facts and rules with memory as the
 * gateway (pipe/facts.c, validate/memory.c) over an in-memory store behind
 * the store's query interface. Invariant: no write by one clinic is ever
 * accepted for a resource the other clinic wrote first; and a refused write
 * records nothing. The model below knows resources by meaning (the number
 * of the RPWDL namespace and the value), not by the gateway's spelling. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "pipe/pipe.h"
#include "store/store.h"
#include "validate/rules.h"

/* ---- an in-memory store behind the query interface ---- */
#define MAXK 512
struct mem {
  struct gw_memq q;
  char key[MAXK][GW_OWNKEY_MAX], owner[MAXK][16];
  int n;
};

static int owner_get(struct gw_memq *q, const char *key, char *owner, size_t n) {
  struct mem *m = (struct mem *)q;
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->key[i], key)) {
      snprintf(owner, n, "%s", m->owner[i]);
      return 1;
    }
  return 0;
}
static int owner_put(struct gw_memq *q, const char *key, const char *owner, int64_t msg_id) {
  (void)msg_id;
  struct mem *m = (struct mem *)q;
  char o[16];
  if (owner_get(q, key, o, sizeof(o)) || m->n >= MAXK)
    return GW_OK;
  snprintf(m->key[m->n], GW_OWNKEY_MAX, "%s", key);
  snprintf(m->owner[m->n++], 16, "%s", owner);
  return GW_OK;
}
static int no_overlap(struct gw_memq *q, const char *c, const struct gw_slotfact *f, char *o, size_t n) {
  (void)q, (void)c, (void)f, (void)o, (void)n;
  return 0;
}
static int slot_state(struct gw_memq *q, const char *c, const char *i) {
  (void)q, (void)c, (void)i;
  return 1;
}
static int slot_put(struct gw_memq *q, const char *c, const struct gw_slotfact *f, int64_t id) {
  (void)q, (void)c, (void)f, (void)id;
  return GW_OK;
}
static int slot_free(struct gw_memq *q, const char *c, const char *i, int f) {
  (void)q, (void)c, (void)i, (void)f;
  return GW_OK;
}
/* appointments: never seen (the lifecycle is not what this target checks) */
static int appt_get(struct gw_memq *q, const char *c, const char *k, struct gw_apptfact *f) {
  (void)q, (void)c, (void)k, (void)f;
  return 0;
}
static int appt_put(struct gw_memq *q, const char *c, const char *k, const struct gw_apptfact *f, int64_t id) {
  (void)q, (void)c, (void)k, (void)f, (void)id;
  return GW_OK;
}
static const struct gw_memq_ops ops = {.slot_overlap = no_overlap,
                                       .slot_state = slot_state,
                                       .slot_put = slot_put,
                                       .slot_set_free = slot_free,
                                       .owner_get = owner_get,
                                       .owner_put = owner_put,
                                       .appt_get = appt_get,
                                       .appt_put = appt_put};

static const char *const clinic[2] = {"000000012345", "000000067890"};

/* The namespace of clinic |c| spelt by |style|: case of the prefix, leading zeros in arcs. */
static void system_of(int c, int style, char *out, size_t n) {
  const char *pre = style & 1 ? "URN:OID:" : "urn:oid:";
  const char *arc = style & 2 ? "2.16.840.1.113883.3.4424.02.3.1." : "2.16.840.1.113883.3.4424.2.3.1.";
  snprintf(out, n, "%s%s%s%s", pre, arc, style & 4 ? "0" : "", clinic[c]);
}

/* What a write names, by meaning: appointment |res| (0..3) by logical id, and by value "V|res" in the
 * namespace of clinic |ns| (-1: no system, so the writer's own). */
struct write {
  int by, res, ns, style, how; /* how: 0 resource only, 1 PUT URL, 2 transaction URL, 3 conditional URL */
  bool with_id;
};

static xmlDocPtr doc_of(const struct write *w, char *url, size_t un) {
  char sys[128] = "", id[32] = "", body[1024];
  if (w->ns >= 0)
    system_of(w->ns, w->style, sys, sizeof(sys));
  if (w->with_id)
    snprintf(id, sizeof(id), "<id value='R-%d'/>", w->res);
  char ident[256];
  snprintf(ident, sizeof(ident), "<identifier>%s%s%s<value value='V%d'/></identifier>", sys[0] ? "<system value='" : "",
           sys, sys[0] ? "'/>" : "", w->res);
  url[0] = 0;
  if (w->how == 1)
    snprintf(url, un, "Appointment/R-%d", w->res);
  if (w->how >= 2) {
    char target[200];
    if (w->how == 2)
      snprintf(target, sizeof(target), "Appointment/R-%d", w->res);
    else
      snprintf(target, sizeof(target), "Appointment?identifier=%s%sV%d", sys, sys[0] ? "|" : "", w->res);
    snprintf(body, sizeof(body),
             "<Bundle xmlns='http://hl7.org/fhir'><type value='transaction'/><entry><resource><Appointment>%s%s"
             "<status value='booked'/></Appointment></resource><request><method value='PUT'/><url value='%s'/>"
             "</request></entry></Bundle>",
             id, ident, target);
  } else {
    snprintf(body, sizeof(body), "<Appointment xmlns='http://hl7.org/fhir'>%s%s<status value='booked'/></Appointment>",
             id, ident);
  }
  return xmlReadMemory(body, (int)strlen(body), NULL, NULL, XML_PARSE_NONET);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct gw_rules *rules;
  if (!rules) {
    struct gw_buf e;
    gw_buf_init(&e, 4096);
    if (gw_rules_load("schemas/cer/rules.json", &rules, &e))
      abort();
    gw_buf_cleanup(&e);
  }
  static struct mem m;
  memset(&m, 0, sizeof(m));
  m.q.ops = &ops;
  /* the model: owner (0, 1; -1 nobody) of each appointment by id, and of each (namespace, value) */
  int by_id[4], by_ident[3][4]; /* namespace: 0 A's, 1 B's, 2 the writer's own (no system) -> per writer */
  int own_scope[2][4];          /* identifiers without a system: scoped by the writer */
  memset(by_id, -1, sizeof(by_id));
  memset(by_ident, -1, sizeof(by_ident));
  memset(own_scope, -1, sizeof(own_scope));
  for (size_t i = 0; i + 1 < size; i += 2) {
    struct write w = {.by = data[i] & 1,
                      .res = (data[i] >> 1) & 3,
                      .ns = ((data[i] >> 3) % 3) - 1,
                      .style = data[i + 1] & 7,
                      .how = (data[i + 1] >> 3) & 3,
                      .with_id = (data[i + 1] >> 5) & 1};
    char url[64];
    xmlDocPtr doc = doc_of(&w, url, sizeof(url));
    if (!doc)
      continue;
    struct gw_submit *s = gw_submit_new();
    snprintf(s->caller, sizeof(s->caller), "%s", clinic[w.by]);
    gw_facts_owned(doc, s->caller, url[0] ? url : NULL, s);
    int rv = gw_rules_memory(rules, &m.q, s);
    /* what the write touches, by meaning */
    bool touches_id = w.with_id || w.how == 1 || w.how == 2;
    int ns = w.ns; /* the identifier's namespace; -1: the writer's own scope */
    int *ident_owner = ns >= 0 ? &by_ident[ns][w.res] : &own_scope[w.by][w.res];
    bool foreign =
        (touches_id && by_id[w.res] >= 0 && by_id[w.res] != w.by) || (*ident_owner >= 0 && *ident_owner != w.by);
    if (foreign && rv == GW_OK)
      abort(); /* a clinic acted on the other's resource */
    if (!foreign && rv != GW_OK)
      abort(); /* a clinic was refused its own (or nobody's) resource */
    if (rv == GW_OK) {
      if (touches_id && by_id[w.res] < 0)
        by_id[w.res] = w.by;
      if (*ident_owner < 0)
        *ident_owner = w.by;
    }
    gw_submit_free(s);
    xmlFreeDoc(doc);
  }
  return 0;
}
