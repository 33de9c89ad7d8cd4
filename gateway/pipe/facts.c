/* What the pipeline reads from the canonical document: the facts of the
 * rules with memory, the resource a message is about, the clinic a
 * notification names, and a Bundle's entries. XPath expressions are fixed
 * strings, compiled once on first use and shared by every thread
 * (evaluating a compiled expression does not change it); each thread
 * evaluates them in its own context (gw_fhir_xpath). */
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/fhir.h"
#include "codec/xml.h"
#include "core/alloc.h"
#include "core/err.h"
#include "pipe/pipe.h"
#include "validate/rules.h"

#define RPWDL_PREFIX  "urn:oid:2.16.840.1.113883.3.4424.2.3.1."
#define PESEL_SYSTEM  "urn:oid:2.16.840.1.113883.3.4424.1.1.616"
#define LATE_CANCEL_S (48 * 3600)
#define XCACHE_MAX    64

static struct {
  const char *src;
  xmlXPathCompExprPtr comp;
} xcache[XCACHE_MAX];
static _Atomic int xcache_n;
static pthread_mutex_t xcache_mu = PTHREAD_MUTEX_INITIALIZER;

static xmlXPathCompExprPtr compiled(const char *expr) {
  int n = atomic_load_explicit(&xcache_n, memory_order_acquire);
  for (int i = 0; i < n; i++)
    if (xcache[i].src == expr || strcmp(xcache[i].src, expr) == 0)
      return xcache[i].comp;
  pthread_mutex_lock(&xcache_mu);
  xmlXPathCompExprPtr c = NULL;
  n = atomic_load(&xcache_n);
  for (int i = 0; i < n && !c; i++)
    if (strcmp(xcache[i].src, expr) == 0)
      c = xcache[i].comp;
  if (!c && n < XCACHE_MAX && (c = xmlXPathCompile(BAD_CAST expr))) {
    xcache[n].src = expr;
    xcache[n].comp = c;
    atomic_store_explicit(&xcache_n, n + 1, memory_order_release);
  }
  pthread_mutex_unlock(&xcache_mu);
  return c;
}

static xmlXPathObjectPtr xeval(xmlXPathContextPtr x, xmlNodePtr at, const char *expr) {
  x->node = at;
  xmlXPathCompExprPtr c = compiled(expr);
  return c ? xmlXPathCompiledEval(c, x) : xmlXPathEvalExpression(BAD_CAST expr, x);
}

/* The first @value (in document order) at the end of |steps| (n of them: "..", "f:name" or
 * "f:name[1]") from |at|, walked without XPath; NULL when there is none. */
static xmlChar *walk_value(xmlNodePtr at, const char *const *steps, int n) {
  if (!at)
    return NULL;
  if (n == 0)
    return at->type == XML_ELEMENT_NODE ? xmlGetProp(at, BAD_CAST "value") : NULL;
  if (strcmp(steps[0], "..") == 0)
    return walk_value(at->parent, steps + 1, n - 1);
  const char *name = steps[0] + 2; /* after "f:" */
  size_t len = strcspn(name, "[");
  bool first_only = name[len] == '[';
  for (xmlNodePtr c = at->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || !c->ns || strncmp((const char *)c->name, name, len) != 0 || c->name[len] ||
        !xmlStrEqual(c->ns->href, BAD_CAST GW_FHIR_NS))
      continue;
    xmlChar *v = walk_value(c, steps + 1, n - 1);
    if (v || first_only)
      return v;
  }
  return NULL;
}

/* string(STEP/.../@value) for steps of the forms walk_value takes: the value into |out| without
 * an XPath evaluation (each costs thousands of instructions in setting up alone). false: |expr|
 * is of another form. */
static bool simple_value(xmlNodePtr at, const char *expr, char *out, size_t n) {
  static const char head[] = "string(", tail[] = "/@value)";
  size_t len = strlen(expr);
  if (len <= sizeof(head) + sizeof(tail) || strncmp(expr, head, sizeof(head) - 1) != 0 ||
      strcmp(expr + len - (sizeof(tail) - 1), tail) != 0)
    return false;
  char path[160];
  size_t plen = len - (sizeof(head) - 1) - (sizeof(tail) - 1);
  if (plen >= sizeof(path))
    return false;
  memcpy(path, expr + sizeof(head) - 1, plen);
  path[plen] = 0;
  if (path[0] == '/' || strstr(path, "//"))
    return false; /* from the root, or any descendant: XPath's */
  const char *steps[8];
  int ns = 0;
  for (char *save = NULL, *t = strtok_r(path, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
    if (ns == 8)
      return false;
    steps[ns++] = t;
    if (strcmp(t, "..") == 0)
      continue;
    if (strncmp(t, "f:", 2) != 0)
      return false;
    size_t k = strspn(t + 2, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    if (k == 0 || (t[2 + k] && strcmp(t + 2 + k, "[1]") != 0))
      return false; /* a name, or a name and [1]: nothing else */
  }
  xmlChar *v = walk_value(at, steps, ns);
  snprintf(out, n, "%s", v ? (const char *)v : "");
  xmlFree(v);
  return true;
}

static void xstr(xmlXPathContextPtr x, xmlNodePtr at, const char *expr, char *out, size_t n) {
  out[0] = 0;
  if (simple_value(at, expr, out, n))
    return;
  xmlXPathObjectPtr o = xeval(x, at, expr);
  xmlChar *s = o ? xmlXPathCastToString(o) : NULL;
  if (s)
    snprintf(out, n, "%s", (const char *)s);
  xmlFree(s);
  xmlXPathFreeObject(o);
}

static xmlXPathObjectPtr xnodes(xmlXPathContextPtr x, xmlNodePtr at, const char *expr) {
  xmlXPathObjectPtr o = xeval(x, at, expr);
  if (o && (o->type != XPATH_NODESET || !o->nodesetval)) {
    xmlXPathFreeObject(o);
    return NULL;
  }
  return o;
}

void gw_facts_str(xmlDocPtr doc, void *at, const char *expr, char *out, size_t n) {
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  out[0] = 0;
  if (x)
    xstr(x, at ? at : (xmlNodePtr)doc, expr, out, n);
}

static int64_t instant_ms(const char *s) {
  time_t t;
  return (s[0] && gw_instant_parse(s, &t) == GW_OK) ? (int64_t)t * 1000 : 0;
}

/* The Slots a message publishes. */
static void slot_facts(xmlXPathContextPtr x, struct gw_submit *s) {
  xmlXPathObjectPtr o = xnodes(x, (xmlNodePtr)x->doc, "//f:Slot");
  int n = o ? o->nodesetval->nodeNr : 0;
  if (n > 0 && (s->slots = gw_calloc((size_t)n, sizeof(*s->slots)))) {
    for (int i = 0; i < n; i++) {
      xmlNodePtr sl = o->nodesetval->nodeTab[i];
      struct gw_slotfact *f = &s->slots[s->nslots];
      char st[40], en[40], status[24];
      xstr(x, sl, "string((f:identifier/f:value/@value | f:id/@value)[1])", f->ident, sizeof(f->ident));
      xstr(x, sl, "concat(f:schedule/f:reference/@value, '|', f:schedule/f:identifier/f:value/@value)", f->schedule,
           sizeof(f->schedule));
      xstr(x, sl, "string(f:start/@value)", st, sizeof(st));
      xstr(x, sl, "string(f:end/@value)", en, sizeof(en));
      xstr(x, sl, "string(f:status/@value)", status, sizeof(status));
      f->start_ms = instant_ms(st);
      f->end_ms = instant_ms(en);
      f->free = strcmp(status, "free") == 0;
      if (f->ident[0] && f->start_ms && f->end_ms)
        s->nslots++;
    }
  }
  xmlXPathFreeObject(o);
}

/* The Slots the first Appointment books or frees; the 48-hour rule needs the cancelled visit's start. */
static void appointment_facts(xmlXPathContextPtr x, struct gw_submit *s, time_t now, int *late_cancel) {
  xmlXPathObjectPtr o = xnodes(x, (xmlNodePtr)x->doc, "//f:Appointment");
  if (o && o->nodesetval->nodeNr > 0) {
    xmlNodePtr a = o->nodesetval->nodeTab[0];
    char status[24], start[40];
    xstr(x, a, "string(f:status/@value)", status, sizeof(status));
    xstr(x, a, "string(f:start/@value)", start, sizeof(start));
    /* a cancellation or an entry in error frees the slots; a no-show does not (its time was used), nor a
     * cancellation for which the clinic withdraws the slot: a reason of R4's appointment-cancellation-reason
     * on the provider's or the facility's side (prov, prov-*, maint) or the gateway's slot-withdrawn */
    char withdrawn[8];
    xstr(x, a,
         "string(count(f:cancelationReason/f:coding[starts-with(f:code/@value, 'prov') or f:code/@value = 'maint' or "
         "f:code/@value = 'slot-withdrawn']) > 0)",
         withdrawn, sizeof(withdrawn));
    s->slot_release =
        (!strcmp(status, "cancelled") && strcmp(withdrawn, "true")) || !strcmp(status, "entered-in-error");
    int64_t st = instant_ms(start);
    snprintf(s->appt.status, sizeof(s->appt.status), "%s", status);
    s->appt.start_ms = st;
    char patch[8];
    xstr(x, a, "string(ancestor::f:entry/f:request/f:method/@value)", patch, sizeof(patch));
    s->appt_change = !strcmp(patch, "PATCH") || s->slot_release || !strcmp(status, "cancelled") ||
                     !strcmp(status, "noshow") || !strcmp(status, "fulfilled") || !strcmp(status, "checked-in") ||
                     !strcmp(status, "arrived");
    *late_cancel = !strcmp(status, "cancelled") && st && st - (int64_t)now * 1000 < LATE_CANCEL_S * 1000LL;
    xmlXPathObjectPtr refs = xnodes(x, a, "f:slot");
    int nr = refs ? refs->nodesetval->nodeNr : 0;
    if (nr > 0 && !(s->slotrefs = gw_calloc((size_t)nr, sizeof(*s->slotrefs))))
      nr = 0;
    for (int i = 0; i < nr; i++) {
      char id[128];
      xstr(x, refs->nodesetval->nodeTab[i],
           "concat(f:identifier/f:value/@value, substring-after(f:reference/@value, 'Slot/'))", id, sizeof(id));
      if (id[0])
        snprintf(s->slotrefs[s->nslotrefs++], sizeof(s->slotrefs[0]), "%s", id);
    }
    xmlXPathFreeObject(refs);
  }
  xmlXPathFreeObject(o);
}

void gw_facts_memory(xmlDocPtr doc, struct gw_submit *s, time_t now, int *late_cancel) {
  *late_cancel = 0;
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  if (!x)
    return;
  slot_facts(x, s);
  appointment_facts(x, s, now, late_cancel);
}

/* //f:identifier[f:system/@value = PESEL]/f:value, in document order, by one walk of the tree (this runs
 * for every message: no XPath scan of every element) */
static void pesel_walk(xmlNodePtr n, struct gw_submit *s, int max) {
  for (; n && s->npesels < max; n = n->next) {
    if (n->type != XML_ELEMENT_NODE)
      continue;
    bool pesel = false;
    if (gw_fhir_is(n, "identifier"))
      for (xmlNodePtr c = n->children; c && !pesel; c = c->next)
        if (gw_fhir_is(c, "system")) {
          xmlChar *v = xmlGetProp(c, BAD_CAST "value");
          pesel = v && xmlStrEqual(v, BAD_CAST PESEL_SYSTEM);
          xmlFree(v);
        }
    for (xmlNodePtr c = pesel ? n->children : NULL; c && s->npesels < max; c = c->next) {
      if (!gw_fhir_is(c, "value"))
        continue;
      xmlChar *v = xmlGetProp(c, BAD_CAST "value");
      bool seen = !v || !*v || xmlStrlen(v) >= (int)sizeof(s->pesels[0]);
      for (int k = 0; k < s->npesels && !seen; k++)
        seen = !strcmp(s->pesels[k], (const char *)v);
      if (!seen)
        snprintf(s->pesels[s->npesels++], sizeof(s->pesels[0]), "%s", (const char *)v);
      xmlFree(v);
    }
    pesel_walk(n->children, s, max);
  }
}

int gw_facts_pesels(xmlDocPtr doc, struct gw_submit *s) {
  enum { MAX_PESELS = 16 };
  if (!(s->pesels = gw_calloc(MAX_PESELS, sizeof(*s->pesels))))
    return GW_ERR_NOMEM;
  pesel_walk(xmlDocGetRootElement(doc), s, MAX_PESELS);
  return GW_OK;
}

void gw_facts_ids(xmlDocPtr doc, char *ids, size_t n, char *rkey, size_t rn) {
  rkey[0] = ids[0] = 0;
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  if (!x)
    return;
  xmlXPathObjectPtr o = xnodes(x, (xmlNodePtr)doc, "(//f:Appointment | //f:Slot | //f:Schedule)[1]");
  xmlNodePtr r = (o && o->nodesetval->nodeNr) ? o->nodesetval->nodeTab[0] : NULL;
  char id[128] = "", pesel[16] = "";
  if (r) {
    xstr(x, r, "string((f:identifier/f:value/@value | f:id/@value)[1])", id, sizeof(id));
    if (id[0]) /* no identifier: no ordering constraint */
      snprintf(rkey, rn, "%s/%s", (const char *)r->name, id);
    xstr(x, r, "string(f:identifier/f:value/@value)", id, sizeof(id));
  }
  xmlXPathFreeObject(o);
  xstr(x, (xmlNodePtr)doc, "string((//f:identifier[f:system/@value = '" PESEL_SYSTEM "']/f:value/@value)[1])", pesel,
       sizeof(pesel));
  snprintf(ids, n, "%s patient=%s", id, pesel);
}

void gw_facts_payload_rpwdl(xmlDocPtr doc, char *out, size_t n) {
  gw_facts_str(doc, NULL,
               "substring(substring-after((//f:identifier/f:system/@value[starts-with(., '" RPWDL_PREFIX
               "')])[1], '" RPWDL_PREFIX "'), 1, 12)",
               out, n);
}

int gw_facts_entries(xmlDocPtr doc, bool *batch, struct gw_msg_entry **out) {
  *out = NULL;
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  if (!x)
    return GW_ERR_NOMEM;
  char btype[16] = "";
  xstr(x, (xmlNodePtr)doc, "string(/f:Bundle/f:type/@value)", btype, sizeof(btype));
  *batch = strcmp(btype, "batch") == 0;
  xmlXPathObjectPtr es = xnodes(x, (xmlNodePtr)doc, "/f:Bundle/f:entry");
  int n = es ? es->nodesetval->nodeNr : 0;
  struct gw_msg_entry *e = n ? gw_calloc((size_t)n, sizeof(*e)) : NULL;
  for (int i = 0; e && i < n; i++) {
    xmlNodePtr en = es->nodesetval->nodeTab[i], rn = NULL;
    for (xmlNodePtr k = en->children; k && !rn; k = k->next)
      if (k->type == XML_ELEMENT_NODE && xmlStrEqual(k->name, BAD_CAST "resource"))
        rn = xmlFirstElementChild(k);
    if (rn) {
      snprintf(e[i].type, sizeof(e[i].type), "%s", (const char *)rn->name);
      xstr(x, rn, "string((f:id/@value | f:identifier/f:value/@value)[1])", e[i].id, sizeof(e[i].id));
    } else {
      xstr(x, en, "string(f:request/f:url/@value)", e[i].url, sizeof(e[i].url));
    }
  }
  xmlXPathFreeObject(es);
  if (n && !e)
    return GW_ERR_NOMEM;
  *out = e;
  return n;
}

/* ---- ownership: the resources a message writes ---- */

static void add_key(struct gw_submit *s, int cap, const char *rtype, const char *kind, const char *a, const char *b) {
  if (s->nownkeys >= cap || !a[0])
    return;
  char key[GW_OWNKEY_MAX];
  snprintf(key, sizeof(key), "%s|%s:%s%s%s", rtype, kind, a, b ? "|" : "", b ? b : "");
  for (int i = 0; i < s->nownkeys; i++)
    if (!strcmp(s->ownkeys[i], key))
      return;
  snprintf(s->ownkeys[s->nownkeys++], GW_OWNKEY_MAX, "%s", key);
}

/* An identifier's key: its system normalised, or — without a system — the caller's own scope. */
static void key_system(const char *caller, const char *sys, char *out, size_t n) {
  if (sys[0])
    gw_system_normalize(sys, out, n);
  else
    snprintf(out, n, "clinic:%s", caller);
}

static void add_ident(struct gw_submit *s, int cap, const char *rtype, const char *caller, const char *sys,
                      const char *value) {
  char norm[200];
  key_system(caller, sys, norm, sizeof(norm));
  if (value[0])
    add_key(s, cap, rtype, "ident", norm, value);
}

/* A request URL of a Schedule, Slot or Appointment: its type in |type|, and 'i' with the id in |val|
 * ("Appointment/B-1"), or 'k' with the identifier's system (maybe "") in |sys| and value in |val|
 * ("Appointment?identifier=[sys|]value"); 0 for anything else. */
static int parse_url(const char *url, char *type, size_t tn, char *sys, size_t sn, char *val, size_t vn) {
  size_t n = strcspn(url, "/?");
  if (n == 0 || n >= tn)
    return 0;
  snprintf(type, tn, "%.*s", (int)n, url);
  if (strcmp(type, "Schedule") && strcmp(type, "Slot") && strcmp(type, "Appointment"))
    return 0;
  sys[0] = 0;
  if (url[n] == '/') {
    snprintf(val, vn, "%.*s", (int)strcspn(url + n + 1, "/?"), url + n + 1);
    return 'i';
  }
  if (url[n] != '?' || strncmp(url + n + 1, "identifier=", 11))
    return 0;
  const char *v = url + n + 12, *bar = memchr(v, '|', strcspn(v, "&"));
  if (bar)
    snprintf(sys, sn, "%.*s", (int)(bar - v), v);
  snprintf(val, vn, "%.*s", (int)strcspn(bar ? bar + 1 : v, "&"), bar ? bar + 1 : v);
  return 'k';
}

/* A request URL of a Bundle entry or of a PUT: "Appointment/B-1" or "Appointment?identifier=[sys|]value". */
void gw_facts_url(struct gw_submit *s, int cap, const char *caller, const char *url) {
  char type[40], sys[200], val[200];
  int kind = parse_url(url, type, sizeof(type), sys, sizeof(sys), val, sizeof(val));
  if (kind == 'i')
    add_key(s, cap, type, "id", val, NULL);
  else if (kind == 'k')
    add_ident(s, cap, type, caller, sys, val);
}

int gw_facts_owned(xmlDocPtr doc, const char *caller, const char *url, struct gw_submit *s) {
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  if (!x)
    return GW_ERR_NOMEM;
  xmlXPathObjectPtr r = xnodes(x, (xmlNodePtr)doc, "//f:Schedule | //f:Slot | //f:Appointment");
  xmlXPathObjectPtr u = xnodes(x, (xmlNodePtr)doc, "/f:Bundle/f:entry/f:request/f:url/@value");
  int nr = r ? r->nodesetval->nodeNr : 0, nu = u ? u->nodesetval->nodeNr : 0;
  int cap = 4 * nr + nu + 2; /* an id and identifiers per resource (more are rare: capped at 3), the URLs, a PUT's */
  if (!(s->ownkeys = gw_calloc((size_t)cap, sizeof(*s->ownkeys)))) {
    xmlXPathFreeObject(r);
    xmlXPathFreeObject(u);
    return GW_ERR_NOMEM;
  }
  for (int i = 0; i < nr; i++) {
    xmlNodePtr res = r->nodesetval->nodeTab[i];
    const char *rtype = (const char *)res->name;
    char id[128], sys[200], val[128];
    xstr(x, res, "string(f:id/@value)", id, sizeof(id));
    add_key(s, cap, rtype, "id", id, NULL);
    xmlXPathObjectPtr ids = xnodes(x, res, "f:identifier");
    for (int k = 0; ids && k < ids->nodesetval->nodeNr && k < 3; k++) {
      xstr(x, ids->nodesetval->nodeTab[k], "string(f:system/@value)", sys, sizeof(sys));
      xstr(x, ids->nodesetval->nodeTab[k], "string(f:value/@value)", val, sizeof(val));
      add_ident(s, cap, rtype, caller, sys, val);
    }
    xmlXPathFreeObject(ids);
  }
  for (int i = 0; i < nu; i++) {
    xmlChar *v = xmlNodeGetContent(u->nodesetval->nodeTab[i]);
    if (v)
      gw_facts_url(s, cap, caller, (const char *)v);
    xmlFree(v);
  }
  if (url)
    gw_facts_url(s, cap, caller, url);
  xmlXPathFreeObject(r);
  xmlXPathFreeObject(u);
  /* the appointment the memory follows: by business identifier, else by logical id */
  for (int pass = 0; pass < 2 && !s->appt_key[0]; pass++)
    for (int i = 0; i < s->nownkeys && !s->appt_key[0]; i++)
      if (!strncmp(s->ownkeys[i], pass ? "Appointment|id:" : "Appointment|ident:", pass ? 15 : 18))
        snprintf(s->appt_key, sizeof(s->appt_key), "%s", s->ownkeys[i]);
  size_t o = 0;
  for (int i = 0; i < s->nslotrefs; i++) {
    int w = snprintf(s->appt.slots + o, sizeof(s->appt.slots) - o, "%s\n", s->slotrefs[i]);
    if (w < 0 || (size_t)w >= sizeof(s->appt.slots) - o)
      break;
    o += (size_t)w;
  }
  return GW_OK;
}

/* ---- versions: the Schedules, Slots and Appointments a message writes, for FHIR reads ---- */

/* The references a resource makes, for search: "\nType/value\n" for each reference by literal
 * reference or by business identifier (Slot.schedule, Appointment.participant.actor and .slot,
 * Schedule.actor). */
static void refs_of(xmlXPathContextPtr x, xmlNodePtr r, char *out, size_t n) {
  xmlXPathObjectPtr o = xnodes(x, r, "f:schedule | f:participant/f:actor | f:actor | f:slot");
  size_t w = 0;
  out[0] = 0;
  for (int i = 0; o && i < o->nodesetval->nodeNr && w + 2 < n; i++) {
    xmlNodePtr ref = o->nodesetval->nodeTab[i];
    char lit[140], type[32], val[100];
    xstr(x, ref, "string(f:reference/@value)", lit, sizeof(lit));
    xstr(x, ref, "string(f:type/@value)", type, sizeof(type));
    xstr(x, ref, "string(f:identifier/f:value/@value)", val, sizeof(val));
    if (!type[0]) /* Slot.schedule and Appointment.slot name their type by the element */
      snprintf(type, sizeof(type), "%s", xmlStrEqual(ref->name, BAD_CAST "schedule") ? "Schedule" : "Slot");
    int k = 0;
    if (lit[0] && lit[0] != '#')
      k = snprintf(out + w, n - w, "%s%s\n", w ? "" : "\n", lit);
    if (k >= 0 && w + (size_t)k < n)
      w += (size_t)k;
    if (val[0] && w + 2 < n && (k = snprintf(out + w, n - w, "%s%s/%s\n", w ? "" : "\n", type, val)) >= 0 &&
        w + (size_t)k < n)
      w += (size_t)k;
  }
  xmlXPathFreeObject(o);
}

int gw_facts_resources(xmlDocPtr doc, const char *caller, const char *url_id, struct gw_submit *s) {
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  if (!x)
    return GW_ERR_NOMEM;
  xmlXPathObjectPtr o = xnodes(x, (xmlNodePtr)doc,
                               "/f:Schedule | /f:Slot | /f:Appointment | /f:Bundle/f:entry/f:resource/f:Schedule | "
                               "/f:Bundle/f:entry/f:resource/f:Slot | /f:Bundle/f:entry/f:resource/f:Appointment");
  int n = o ? o->nodesetval->nodeNr : 0;
  if (n && !(s->resf = gw_calloc((size_t)n, sizeof(*s->resf)))) {
    xmlXPathFreeObject(o);
    return GW_ERR_NOMEM;
  }
  for (int i = 0; i < n; i++) {
    xmlNodePtr r = o->nodesetval->nodeTab[i];
    struct gw_resfact *f = &s->resf[s->nresf];
    snprintf(f->rtype, sizeof(f->rtype), "%s", (const char *)r->name);
    char url[200], sys[200], usys[200], uval[200], utype[40], pos[16], method[8];
    xstr(x, r, "string(f:id/@value)", f->id, sizeof(f->id));
    xstr(x, r, "string(../../f:request/f:url/@value)", url, sizeof(url));
    xstr(x, r, "string(../../f:request/f:method/@value)", method, sizeof(method));
    int kind = parse_url(url, utype, sizeof(utype), usys, sizeof(usys), uval, sizeof(uval));
    if (kind && strcmp(utype, f->rtype))
      kind = 0;
    if (!f->id[0] && kind == 'i')
      snprintf(f->id, sizeof(f->id), "%s", uval); /* "Appointment/A-1" */
    if (!f->id[0] && r->parent == (xmlNodePtr)doc && url_id && url_id[0])
      snprintf(f->id, sizeof(f->id), "%s", url_id); /* PUT /fhir/Appointment/A-1 */
    xstr(x, r, "string(f:identifier[1]/f:system/@value)", sys, sizeof(sys));
    xstr(x, r, "string(f:identifier[1]/f:value/@value)", f->identvalue, sizeof(f->identvalue));
    if (!f->identvalue[0] && kind == 'k') { /* a PATCH's conditional URL */
      snprintf(sys, sizeof(sys), "%s", usys);
      snprintf(f->identvalue, sizeof(f->identvalue), "%s", uval);
    }
    if (f->identvalue[0]) {
      char norm[200];
      key_system(caller, sys, norm, sizeof(norm));
      snprintf(f->ident, sizeof(f->ident), "%s|%s", norm, f->identvalue);
    }
    xstr(x, r, "string(f:status/@value)", f->status, sizeof(f->status));
    char date[40];
    xstr(x, r, "string((f:start/@value | f:planningHorizon/f:start/@value)[1])", date, sizeof(date));
    f->date_ms = instant_ms(date);
    refs_of(x, r, f->refs, sizeof(f->refs));
    f->patch = !strcmp(method, "PATCH");
    xstr(x, r, "string(count(../../preceding-sibling::f:entry))", pos, sizeof(pos));
    f->entry = r->parent == (xmlNodePtr)doc ? -1 : atoi(pos);
    /* a PATCH's partial resource, which the store merges into the version before it; a whole
     * resource is kept as its message's canonical form holds it (at entry f->entry), not copied */
    if (f->patch && gw_xml_node_alone(r, &f->body, &f->body_len) != GW_OK)
      continue;
    s->nresf++;
  }
  xmlXPathFreeObject(o);
  return GW_OK;
}
