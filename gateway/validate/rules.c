#include "validate/rules.h"

#include <ctype.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_tree.h>

#include "codec/fhir.h"
#include "core/err.h"
#include "core/file.h"

#define OID_PESEL       "urn:oid:2.16.840.1.113883.3.4424.1.1.616"
#define OID_RPWDL       "urn:oid:2.16.840.1.113883.3.4424.2.3.1"
#define OID_SPECIALTY   "urn:oid:2.16.840.1.113883.3.4424.11.2.4"
#define URGENCY_URL     "http://cergw.pl/fhir/StructureDefinition/urgency"
#define MAX_RULES       32
#define MAX_SPECIALTIES 256

/* Every XPath the rules evaluate, compiled once when the rules load. */
#define XPATHS(X)                                                                                                      \
  X(XP_START_NODE, "f:start")                                                                                          \
  X(XP_END_NODE, "f:end")                                                                                              \
  X(XP_APPOINTMENTS, "/descendant::f:Appointment")                                                                     \
  X(XP_SPECIALTY, "f:specialty")                                                                                       \
  X(XP_IS_PATCH, "count(ancestor::f:entry/f:request/f:method[@value='PATCH']) > 0")                                    \
  X(XP_REACHABLE_IDS, "/descendant::f:Patient[f:telecom/f:value/@value or f:contact/f:telecom/f:value/@value]"         \
                      "/f:identifier[f:system/@value and f:value/@value]")                                             \
  X(XP_PATIENT_IDS, "/descendant::f:Patient/f:identifier[f:system/@value and f:value/@value]")                         \
  X(XP_CONTAINED_CONTACT, "count(f:contained/f:Patient[f:telecom/f:value/@value or "                                   \
                          "f:contact/f:telecom/f:value/@value]) > 0")                                                  \
  X(XP_PARTICIPANT, "f:participant")                                                                                   \
  X(XP_FOLLOWUP,                                                                                                       \
    "string(f:appointmentType/f:coding/f:code[@value='followup' or @value='KONTYNUACJA' or "                           \
    "(@value='FOLLOWUP' and ../f:system/@value='http://terminology.hl7.org/CodeSystem/v2-0276')]/@value)")             \
  X(XP_REFERRAL_OK, "count(f:basedOn[f:identifier/f:value/@value or f:reference/@value]) > 0 and "                     \
                    "count(f:extension[@url='" URGENCY_URL "']/f:valueCode[@value='pilny' or @value='stabilny']) > 0") \
  X(XP_SLOTS, "/descendant::f:Slot")                                                                                   \
  X(XP_SCHEDULE_KEY, "concat(f:schedule/f:reference/@value, '|', f:schedule/f:identifier/f:value/@value)")             \
  X(XP_HORIZONS, "/descendant::f:Schedule/f:planningHorizon")

#define XP_ENUM(id, text) id,
#define XP_TEXT(id, text) text,
enum xp { XPATHS(XP_ENUM) XP__COUNT };
static const char *const xp_text[XP__COUNT] = {XPATHS(XP_TEXT)};

struct rule {
  struct gw_rule_info info;
  char en[256], pl[256];
};

#define MAX_PHRASES 32
struct phrase {
  char id[48], en[128], pl[128];
};

struct gw_rules {
  struct rule rules[MAX_RULES];
  int n;
  struct phrase phrases[MAX_PHRASES];
  int nphrases;
  int horizon_visit, horizon_screening;
  char cardio[16][8];
  int ncardio;
  struct {
    char code[8];
    bool screening;
  } covered[MAX_SPECIALTIES];
  int ncovered;
  xmlXPathCompExprPtr xp[XP__COUNT];
  xmlSchemaPtr profile; /* the CeR profile (profile_xsd), or NULL when rules.json names none */
  char *profile_text;   /* its text, as published at GET /fhir/cer-profile.xsd */
  size_t profile_len;
  unsigned long serial; /* tells this rule set from others in the per-thread cache */
};

/* Per thread, a validation context for the profile of the rule set used last
 * (the XPath context is the thread's shared one: gw_fhir_xpath). */
struct tcache {
  xmlSchemaValidCtxtPtr vc;
  unsigned long vc_serial;
};
static pthread_key_t tcache_key;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;
static atomic_ulong rules_serial;

static void tcache_release(void *p) {
  struct tcache *c = p;
  if (c->vc)
    xmlSchemaFreeValidCtxt(c->vc);
  free(c);
}
static void tcache_key_init(void) { pthread_key_create(&tcache_key, tcache_release); }

static struct tcache *thread_cache(void) {
  pthread_once(&tcache_once, tcache_key_init);
  struct tcache *c = pthread_getspecific(tcache_key);
  if (!c) {
    c = calloc(1, sizeof(*c));
    if (!c)
      return NULL;
    pthread_setspecific(tcache_key, c);
  }
  return c;
}

/* A message template may hold at most two "%s" and no other conversion. */
static bool safe_template(const char *s) {
  int n = 0;
  for (const char *p = strchr(s, '%'); p; p = strchr(p + 2, '%')) {
    if (p[1] != 's' || ++n > 2)
      return false;
  }
  return true;
}

static void profile_load_error(void *ctx, const xmlError *err) {
  gw_buf_printf(ctx, "%s:%d: %s", err->file ? err->file : "profile", err->line, err->message ? err->message : "?\n");
}

/* The CeR profile XSD, |name| relative to the directory of rules.json. It is
 * parsed from memory, so it can neither include nor import anything. */
static int load_profile(struct gw_rules *r, const char *rules_path, const char *name, struct gw_buf *errs) {
  char path[4096];
  const char *slash = strrchr(rules_path, '/');
  if (name[0] == '/' || !slash)
    snprintf(path, sizeof(path), "%s", name);
  else
    snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - rules_path), rules_path, name);
  size_t n;
  char *text = gw_file_read_conf(path, 1 << 20, &n, errs);
  if (!text)
    return GW_ERR_CONF;
  xmlSchemaParserCtxtPtr pc = xmlSchemaNewMemParserCtxt(text, (int)n);
  if (pc) {
    xmlSchemaSetParserStructuredErrors(pc, (xmlStructuredErrorFunc)profile_load_error, errs);
    r->profile = xmlSchemaParse(pc);
    xmlSchemaFreeParserCtxt(pc);
  }
  r->profile_text = text;
  r->profile_len = n;
  if (!r->profile) {
    gw_buf_printf(errs, "%s: the CeR profile does not load\n", path);
    return GW_ERR_CONF;
  }
  return GW_OK;
}

static const char *jstr(yajl_val o, const char *key) {
  const char *k[] = {key, NULL};
  yajl_val v = yajl_tree_get(o, k, yajl_t_string);
  return v ? v->u.string : NULL;
}

static int jbool(yajl_val o, const char *key, bool dflt) {
  const char *k[] = {key, NULL};
  yajl_val v = yajl_tree_get(o, k, yajl_t_any);
  return v ? YAJL_IS_TRUE(v) : dflt;
}

/* One registry entry: id, severity, en and pl, and the codes it is answered with in each dialect. */
static int parse_rule(yajl_val o, struct rule *ru, const char *path, size_t i, struct gw_buf *errs) {
  const char *id = jstr(o, "id"), *sev = jstr(o, "severity"), *en = jstr(o, "en"), *pl = jstr(o, "pl");
  const char *code = jstr(o, "code");
  const char *k_hl7[] = {"hl7", NULL}, *k_fhir[] = {"location", "fhir", NULL}, *k_v2[] = {"location", "hl7", NULL},
             *k_soap[] = {"location", "soap", NULL};
  yajl_val hl7 = yajl_tree_get(o, k_hl7, yajl_t_number);
  if (!id || !sev || !en || !pl || !safe_template(en) || !safe_template(pl)) {
    gw_buf_printf(errs, "%s: rule %zu needs id, severity, en and pl (messages with at most two %%s)\n", path, i + 1);
    return GW_ERR_CONF;
  }
  struct gw_rule_info *f = &ru->info;
  snprintf(f->id, sizeof(f->id), "%s", id);
  f->sev = strcmp(sev, "warning") == 0 ? GW_SEV_WARNING : GW_SEV_ERROR;
  snprintf(f->code, sizeof(f->code), "%s", code ? code : "business-rule");
  f->hl7_code = hl7 && YAJL_IS_INTEGER(hl7) ? (int)YAJL_GET_INTEGER(hl7) : 207;
  f->resendable = jbool(o, "resend", true);
  const char *k_http[] = {"http", NULL};
  yajl_val http = yajl_tree_get(o, k_http, yajl_t_number);
  f->http_status = http && YAJL_IS_INTEGER(http) ? (int)YAJL_GET_INTEGER(http) : 422;
  f->memory = jbool(o, "memory", false);
  yajl_val lf = yajl_tree_get(o, k_fhir, yajl_t_string), lv = yajl_tree_get(o, k_v2, yajl_t_string);
  snprintf(f->loc_fhir, sizeof(f->loc_fhir), "%s", lf ? lf->u.string : "");
  snprintf(f->loc_hl7, sizeof(f->loc_hl7), "%s", lv ? lv->u.string : "");
  yajl_val ls = yajl_tree_get(o, k_soap, yajl_t_string);
  snprintf(f->loc_soap, sizeof(f->loc_soap), "%s", ls ? ls->u.string : "");
  snprintf(ru->en, sizeof(ru->en), "%s", en);
  snprintf(ru->pl, sizeof(ru->pl), "%s", pl);
  return GW_OK;
}

int gw_rules_load(const char *path, struct gw_rules **out, struct gw_buf *errs) {
  *out = NULL;
  size_t n;
  char *text = gw_file_read_conf(path, 1 << 18, &n, errs);
  if (!text)
    return GW_ERR_CONF;
  char ebuf[200];
  yajl_val root = yajl_tree_parse(text, ebuf, sizeof(ebuf));
  free(text);
  struct gw_rules *r = calloc(1, sizeof(*r));
  if (r)
    r->serial = atomic_fetch_add(&rules_serial, 1) + 1;
  int rv = (root && YAJL_IS_OBJECT(root) && r) ? GW_OK : GW_ERR_CONF;
  if (rv)
    gw_buf_printf(errs, "%s: not a JSON object: %s\n", path, ebuf);
  const char *p_hv[] = {"horizon_visit_days", NULL}, *p_hs[] = {"horizon_screening_days", NULL};
  const char *p_rules[] = {"rules", NULL}, *p_cardio[] = {"cardiology_first_visit_specialties", NULL};
  const char *p_cov[] = {"covered_specialties", NULL}, *p_xsd[] = {"profile_xsd", NULL};
  yajl_val v;
  if (!rv) {
    r->horizon_visit = (v = yajl_tree_get(root, p_hv, yajl_t_number)) ? (int)YAJL_GET_INTEGER(v) : 40;
    r->horizon_screening = (v = yajl_tree_get(root, p_hs, yajl_t_number)) ? (int)YAJL_GET_INTEGER(v) : 90;
    yajl_val rules = yajl_tree_get(root, p_rules, yajl_t_array);
    for (size_t i = 0; rules && i < rules->u.array.len && rv == GW_OK; i++) {
      if (r->n >= MAX_RULES) {
        gw_buf_printf(errs, "%s: more than %d rules (the registry's limit)\n", path, MAX_RULES);
        rv = GW_ERR_CONF;
        break;
      }
      rv = parse_rule(rules->u.array.values[i], &r->rules[r->n], path, i, errs);
      r->n += rv == GW_OK;
    }
    const char *p_ph[] = {"phrases", NULL};
    yajl_val ph = yajl_tree_get(root, p_ph, yajl_t_object);
    for (size_t i = 0; ph && i < ph->u.object.len && r->nphrases < MAX_PHRASES; i++) {
      const char *k_en[] = {"en", NULL}, *k_pl[] = {"pl", NULL};
      yajl_val en = yajl_tree_get(ph->u.object.values[i], k_en, yajl_t_string);
      yajl_val pl = yajl_tree_get(ph->u.object.values[i], k_pl, yajl_t_string);
      struct phrase *f = &r->phrases[r->nphrases++];
      snprintf(f->id, sizeof(f->id), "%s", ph->u.object.keys[i]);
      snprintf(f->en, sizeof(f->en), "%s", en ? en->u.string : ph->u.object.keys[i]);
      snprintf(f->pl, sizeof(f->pl), "%s", pl ? pl->u.string : f->en);
    }
    yajl_val c = yajl_tree_get(root, p_cardio, yajl_t_array);
    for (size_t i = 0; c && i < c->u.array.len && r->ncardio < 16; i++)
      if (YAJL_IS_STRING(c->u.array.values[i]))
        snprintf(r->cardio[r->ncardio++], sizeof(r->cardio[0]), "%s", c->u.array.values[i]->u.string);
    yajl_val cov = yajl_tree_get(root, p_cov, yajl_t_object);
    for (size_t i = 0; cov && i < cov->u.object.len && r->ncovered < MAX_SPECIALTIES; i++) {
      snprintf(r->covered[r->ncovered].code, sizeof(r->covered[0].code), "%s", cov->u.object.keys[i]);
      r->covered[r->ncovered++].screening =
          YAJL_IS_STRING(cov->u.object.values[i]) && strcmp(cov->u.object.values[i]->u.string, "screening") == 0;
    }
  }
  yajl_val xsd = rv ? NULL : yajl_tree_get(root, p_xsd, yajl_t_string);
  if (xsd && load_profile(r, path, xsd->u.string, errs))
    rv = GW_ERR_CONF;
  yajl_tree_free(root);
  for (int i = 0; rv == GW_OK && i < XP__COUNT; i++) {
    r->xp[i] = xmlXPathCompile(BAD_CAST xp_text[i]);
    if (!r->xp[i]) {
      gw_buf_printf(errs, "rules: XPath %d does not compile\n", i);
      rv = GW_ERR_CONF;
    }
  }
  if (rv) {
    gw_rules_free(r);
    return rv;
  }
  *out = r;
  return GW_OK;
}

void gw_rules_free(struct gw_rules *r) {
  if (!r)
    return;
  for (int i = 0; i < XP__COUNT; i++)
    if (r->xp[i])
      xmlXPathFreeCompExpr(r->xp[i]);
  if (r->profile)
    xmlSchemaFree(r->profile);
  free(r->profile_text);
  free(r);
}

const char *gw_rules_profile(const struct gw_rules *r, size_t *len) {
  *len = r->profile_len;
  return r->profile ? r->profile_text : NULL;
}

void gw_system_normalize(const char *in, char *out, size_t n) {
  if (!n)
    return;
  out[0] = 0;
  if (strncasecmp(in, "urn:oid:", 8) != 0) {
    snprintf(out, n, "%s", in);
    return;
  }
  size_t o = (size_t)snprintf(out, n, "urn:oid:");
  for (const char *p = in + 8; *p && o + 1 < n;) {
    size_t digits = strspn(p, "0123456789");
    const char *d = p;
    while (digits > 1 && *d == '0') /* leading zeros of an arc */
      d++, digits--;
    for (size_t i = 0; i < digits && o + 1 < n; i++)
      out[o++] = d[i];
    p = d + digits;
    if (*p && o + 1 < n)
      out[o++] = (char)tolower((unsigned char)*p++);
  }
  out[o < n ? o : n - 1] = 0;
}

void gw_system_clinic(const char *system, char *out, size_t n) {
  char norm[256], prefix[64];
  gw_system_normalize(system, norm, sizeof(norm));
  gw_system_normalize(OID_RPWDL ".", prefix, sizeof(prefix));
  out[0] = 0;
  if (strncmp(norm, prefix, strlen(prefix)) != 0)
    return;
  const char *arc = norm + strlen(prefix);
  size_t len = strspn(arc, "0123456789");
  if (len && len <= 12) /* the RPWDL number with its leading zeros back */
    snprintf(out, n, "%.*s%.*s", (int)(12 - len), "000000000000", (int)len, arc);
}

int gw_pesel_valid(const char *p) {
  static const int w[10] = {1, 3, 7, 9, 1, 3, 7, 9, 1, 3};
  if (strlen(p) != 11 || strspn(p, "0123456789") != 11)
    return 0;
  int sum = 0;
  for (int i = 0; i < 10; i++)
    sum += (p[i] - '0') * w[i];
  if ((10 - sum % 10) % 10 != p[10] - '0')
    return 0;
  int yy = (p[0] - '0') * 10 + (p[1] - '0'), mm = (p[2] - '0') * 10 + (p[3] - '0'),
      dd = (p[4] - '0') * 10 + (p[5] - '0');
  static const int base[5] = {1900, 2000, 2100, 2200, 1800}; /* month + 0, 20, 40, 60, 80 */
  int century = mm / 20, month = mm % 20;
  if (century > 4 || month < 1 || month > 12 || dd < 1)
    return 0;
  int year = base[century] + yy;
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return dd <= mdays[month - 1] + (month == 2 && leap);
}

int gw_instant_parse(const char *s, time_t *out) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!p)
    return GW_ERR_INVAL;
  if (*p == '.') /* fraction of a second: ignored */
    p += 1 + strspn(p + 1, "0123456789");
  long off = 0;
  if (*p == 'Z') {
    p++;
  } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
    /* glibc's strptime reads %z but does not return the offset: read it here */
    int hh = (p[1] - '0') * 10 + (p[2] - '0'), mi = (p[4] - '0') * 10 + (p[5] - '0');
    if (strspn(p + 1, "0123456789") != 2 || strspn(p + 4, "0123456789") != 2 || hh > 14 || mi > 59)
      return GW_ERR_INVAL;
    off = (hh * 3600L + mi * 60L) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return GW_ERR_INVAL;
  }
  if (*p)
    return GW_ERR_INVAL;
  *out = timegm(&tm) - off;
  return GW_OK;
}

/* ---- evaluation ---- */

struct ev {
  const struct gw_rules *r;
  const struct gw_rules_ctx *ctx;
  struct gw_diag *diag;
  xmlXPathContextPtr x;
  bool failed;
};

static const struct rule *rule_by_id(const struct gw_rules *r, const char *id) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->rules[i].info.id, id) == 0)
      return &r->rules[i];
  return NULL;
}

const struct gw_rule_info *gw_rules_info(const struct gw_rules *r, const char *id) {
  const struct rule *ru = r ? rule_by_id(r, id) : NULL;
  return ru ? &ru->info : NULL;
}

/* An argument "@name" is phrase |name| of the registry, in the language asked. */
static const char *arg(const struct gw_rules *r, const char *a, bool pl) {
  if (!a)
    return "";
  for (int i = 0; a[0] == '@' && i < r->nphrases; i++)
    if (strcmp(r->phrases[i].id, a + 1) == 0)
      return pl ? r->phrases[i].pl : r->phrases[i].en;
  return a;
}

int gw_rules_text(const struct gw_rules *r, const char *id, const char *a1, const char *a2, char *en, size_t enn,
                  char *pl, size_t pln) {
  const struct rule *ru = r ? rule_by_id(r, id) : NULL;
  if (!ru) {
    snprintf(en, enn, "%s", id);
    snprintf(pl, pln, "%s", id);
    return GW_ERR_NOTFOUND;
  }
  snprintf(en, enn, ru->en, arg(r, a1, false), arg(r, a2, false));
  snprintf(pl, pln, ru->pl, arg(r, a1, true), arg(r, a2, true));
  return GW_OK;
}

/* FHIRPath-like location of |n|: Bundle.entry[1].resource.participant[0] */
static void fhirpath(xmlNodePtr n, char *out, size_t len) {
  char parts[24][64];
  int k = 0;
  for (xmlNodePtr c = n; c && c->type == XML_ELEMENT_NODE && k < 24; c = c->parent) {
    xmlNodePtr parent = c->parent;
    bool in_resource_wrapper =
        parent && parent->type == XML_ELEMENT_NODE &&
        (xmlStrEqual(parent->name, BAD_CAST "resource") || xmlStrEqual(parent->name, BAD_CAST "contained") ||
         xmlStrEqual(parent->name, BAD_CAST "outcome"));
    if (in_resource_wrapper)
      continue; /* the resource type is not a FHIRPath step inside a container */
    int idx = 0, same = 0;
    if (parent && parent->type == XML_ELEMENT_NODE) {
      for (xmlNodePtr s = parent->children; s; s = s->next)
        if (s->type == XML_ELEMENT_NODE && xmlStrEqual(s->name, c->name)) {
          if (s == c)
            idx = same;
          same++;
        }
    }
    static const char *const repeating[] = {"entry",     "participant", "identifier",  "telecom",
                                            "coding",    "specialty",   "serviceType", "basedOn",
                                            "extension", "name",        NULL};
    bool rep = same > 1;
    for (int i = 0; !rep && repeating[i]; i++)
      rep = xmlStrEqual(c->name, BAD_CAST repeating[i]);
    if (rep && parent && parent->type == XML_ELEMENT_NODE)
      snprintf(parts[k++], sizeof(parts[0]), "%s[%d]", (const char *)c->name, idx);
    else
      snprintf(parts[k++], sizeof(parts[0]), "%s", (const char *)c->name);
  }
  size_t o = 0;
  out[0] = 0;
  for (int i = k - 1; i >= 0 && o < len; i--)
    o += (size_t)snprintf(out + o, len - o, "%s%s", i == k - 1 ? "" : ".", parts[i]);
}

static struct gw_issue *report(struct ev *e, const char *id, xmlNodePtr at, const char *a1, const char *a2) {
  const struct rule *ru = rule_by_id(e->r, id);
  if (!ru || ru->info.memory)
    return NULL; /* a rule not listed in rules.json is switched off */
  char en[512], pl[512];
  gw_rules_text(e->r, id, a1, a2, en, sizeof(en), pl, sizeof(pl));
  struct gw_issue *i = gw_diag_add(e->diag, ru->info.sev, ru->info.code, ru->info.id, en, pl);
  if (ru->info.sev <= GW_SEV_ERROR)
    e->failed = true;
  if (i && at) {
    fhirpath(at, i->location, sizeof(i->location));
    i->line = (e->ctx->xml_lines && xmlGetLineNo(at) > 0) ? (int)xmlGetLineNo(at) : 0;
  }
  if (i) {
    i->hl7_code = ru->info.hl7_code;
    i->resendable = ru->info.resendable;
  }
  return i;
}

static xmlXPathObjectPtr q(struct ev *e, enum xp expr, xmlNodePtr ctx) {
  e->x->node = ctx;
  return xmlXPathCompiledEval(e->r->xp[expr], e->x);
}

static int nodes(xmlXPathObjectPtr o) { return (o && o->nodesetval) ? o->nodesetval->nodeNr : 0; }

/* Has |n| a FHIR child |name| whose @value is |value|? */
static bool has_child_value(xmlNodePtr n, const char *name, const char *value) {
  for (xmlNodePtr c = n->children; c; c = c->next)
    if (gw_fhir_is(c, name)) {
      xmlChar *v = xmlGetProp(c, BAD_CAST "value");
      bool eq = v && xmlStrEqual(v, BAD_CAST value);
      xmlFree(v);
      if (eq)
        return true;
    }
  return false;
}

/* The @value of |n|'s first FHIR child |name| (malloc'd), NULL when none has one. */
static char *first_child_value(xmlNodePtr n, const char *name) {
  for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
    if (gw_fhir_is(c, name)) {
      xmlChar *v = xmlGetProp(c, BAD_CAST "value");
      if (v) {
        char *r = strdup((const char *)v);
        xmlFree(v);
        return r;
      }
    }
  return NULL;
}

/* string(f:|name|/@value) of |ctx| without an XPath evaluation (each costs thousands of
 * instructions in setting up alone): the first value of a FHIR child |name|, "" when none has one. */
static char *child_value(xmlNodePtr ctx, const char *name) {
  char *v = first_child_value(ctx, name);
  return v ? v : strdup("");
}

static char *str(struct ev *e, enum xp expr, xmlNodePtr ctx) {
  xmlXPathObjectPtr o = q(e, expr, ctx);
  xmlChar *s = o ? xmlXPathCastToString(o) : NULL;
  xmlXPathFreeObject(o);
  char *r = s ? strdup((const char *)s) : NULL;
  xmlFree(s);
  return r;
}

/* Every PESEL in the message, whatever resource or repetition carries it; one
 * wrong number is reported once, where it first stands (the Patient's
 * identifier, not again at each reference to it). */

/* A PESEL identifier, wherever it stands (a resource's, a participant's, an assigner's): system
 * the PESEL OID, or type NNPOL (f:identifier[f:system/@value=PESEL or f:type/f:coding[f:code/@value=
 * 'NNPOL']]), found by one walk of the tree in document order instead of an XPath scan. */
static bool pesel_identifier(xmlNodePtr n) {
  if (!gw_fhir_is(n, "identifier"))
    return false;
  if (has_child_value(n, "system", OID_PESEL))
    return true;
  for (xmlNodePtr t = n->children; t; t = t->next)
    if (gw_fhir_is(t, "type"))
      for (xmlNodePtr c = t->children; c; c = c->next)
        if (gw_fhir_is(c, "coding") && has_child_value(c, "code", "NNPOL"))
          return true;
  return false;
}

/* string(f:specialty/f:coding[f:system/@value=SPECIALTY OID]/f:code/@value) of |res|, by walking */
static char *specialty_code(xmlNodePtr res) {
  for (xmlNodePtr sp = res->children; sp; sp = sp->next)
    if (gw_fhir_is(sp, "specialty"))
      for (xmlNodePtr c = sp->children; c; c = c->next)
        if (gw_fhir_is(c, "coding") && has_child_value(c, "system", OID_SPECIALTY)) {
          char *v = first_child_value(c, "code");
          if (v)
            return v;
        }
  return strdup("");
}

/* string(f:participant/f:actor[f:type/@value='Patient' or starts-with(f:reference/@value,'Patient/')]
 *        /f:identifier/f:|part|/@value) of appointment |a|, by walking: the first in document order */
static char *patient_actor_value(xmlNodePtr a, const char *part) {
  for (xmlNodePtr p = a->children; p; p = p->next) {
    if (!gw_fhir_is(p, "participant"))
      continue;
    for (xmlNodePtr act = p->children; act; act = act->next) {
      if (!gw_fhir_is(act, "actor"))
        continue;
      bool patient = has_child_value(act, "type", "Patient");
      for (xmlNodePtr r = act->children; r && !patient; r = r->next)
        if (gw_fhir_is(r, "reference")) {
          xmlChar *v = xmlGetProp(r, BAD_CAST "value");
          patient = v && strncmp((const char *)v, "Patient/", 8) == 0;
          xmlFree(v);
        }
      if (!patient)
        continue;
      for (xmlNodePtr id = act->children; id; id = id->next)
        if (gw_fhir_is(id, "identifier")) {
          char *v = first_child_value(id, part);
          if (v)
            return v;
        }
    }
  }
  return strdup("");
}

enum { MAX_BAD_PESEL = 64 }; /* distinct wrong numbers reported; more adds nothing for the sender */
struct pesels {
  xmlChar *bad[MAX_BAD_PESEL];
  int nbad;
};

static void pesel_walk(struct ev *e, xmlNodePtr n, struct pesels *p) {
  for (; n && p->nbad < MAX_BAD_PESEL; n = n->next) {
    if (n->type != XML_ELEMENT_NODE)
      continue;
    if (pesel_identifier(n))
      for (xmlNodePtr v = n->children; v && p->nbad < MAX_BAD_PESEL; v = v->next) {
        if (!gw_fhir_is(v, "value"))
          continue;
        xmlChar *val = xmlGetProp(v, BAD_CAST "value");
        bool seen = !val || gw_pesel_valid((const char *)val);
        for (int k = 0; k < p->nbad && !seen; k++)
          seen = xmlStrEqual(val, p->bad[k]);
        if (seen) {
          xmlFree(val);
          continue;
        }
        report(e, "cer.pesel", v, (const char *)val, NULL);
        p->bad[p->nbad++] = val;
      }
    pesel_walk(e, n->children, p);
  }
}

static void check_pesel(struct ev *e) {
  struct pesels p = {.nbad = 0};
  pesel_walk(e, xmlDocGetRootElement(e->x->doc), &p);
  for (int k = 0; k < p.nbad; k++)
    xmlFree(p.bad[k]);
}

static bool is_booking(const char *status) {
  return status && (!strcmp(status, "booked") || !strcmp(status, "pending") || !strcmp(status, "arrived") ||
                    !strcmp(status, "checked-in") || !strcmp(status, "proposed"));
}

static const char *specialty_of(xmlNodePtr res, char *buf, size_t n) {
  char *s = specialty_code(res);
  snprintf(buf, n, "%s", s ? s : "");
  free(s);
  return buf;
}

static int covered_kind(const struct gw_rules *r, const char *code) { /* -1 not covered, 0 visit, 1 screening */
  for (int i = 0; i < r->ncovered; i++)
    if (!strcmp(r->covered[i].code, code))
      return r->covered[i].screening;
  return -1;
}

/* The poradnia code of |res| into |buf|; reports cer.specialty-covered, at
 * the specialty element, when configuration does not cover it. */
static void checked_specialty(struct ev *e, xmlNodePtr res, char *buf, size_t n) {
  specialty_of(res, buf, n);
  if (!*buf || covered_kind(e->r, buf) >= 0)
    return;
  xmlXPathObjectPtr s = q(e, XP_SPECIALTY, res);
  report(e, "cer.specialty-covered", nodes(s) ? s->nodesetval->nodeTab[0] : res, buf, NULL);
  xmlXPathFreeObject(s);
}

static void check_times(struct ev *e, xmlNodePtr res, const char *kind_status, bool future_rules, const char *spec) {
  char *start = child_value(res, "start"), *end = child_value(res, "end");
  xmlXPathObjectPtr sn = q(e, XP_START_NODE, res), en = q(e, XP_END_NODE, res);
  xmlNodePtr snode = nodes(sn) ? sn->nodesetval->nodeTab[0] : res, enode = nodes(en) ? en->nodesetval->nodeTab[0] : res;
  time_t ts = 0, te = 0;
  bool have_s = start && *start && gw_instant_parse(start, &ts) == GW_OK;
  bool have_e = end && *end && gw_instant_parse(end, &te) == GW_OK;
  if (start && *start && !have_s)
    report(e, "cer.time-format", snode, start, NULL);
  if (end && *end && !have_e)
    report(e, "cer.time-format", enode, end, NULL);
  if (have_s && have_e && te <= ts)
    report(e, "cer.end-after-start", enode, end, NULL);
  if (have_s && future_rules && is_booking(kind_status)) {
    if (ts < e->ctx->now - 300)
      report(e, "cer.not-past", snode, start, NULL);
    int kind = spec && *spec ? covered_kind(e->r, spec) : 0;
    int days = kind == 1 ? e->r->horizon_screening : e->r->horizon_visit;
    if (ts > e->ctx->now + (time_t)days * 86400) {
      char d[16];
      snprintf(d, sizeof(d), "%d", days);
      report(e, "cer.horizon", snode, start, d);
    }
  }
  xmlXPathFreeObject(sn);
  xmlXPathFreeObject(en);
  free(start);
  free(end);
}

/* "system|value" of every identifier of a Patient with a phone or e-mail (own or a contact
 * person's) anywhere in the document, sorted: one pass for the whole message, then one
 * binary search per appointment (a search of the document per appointment made a Bundle
 * of thousands of appointments cost seconds). */
struct keyset {
  char **k;
  int n;
};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The identifiers ("system|value", sorted) of the Patients of the message: with a contact
 * (XP_REACHABLE_IDS), or all of them (XP_PATIENT_IDS). */
static void reachable_patients(struct ev *e, struct keyset *ks, enum xp which) {
  ks->k = NULL;
  ks->n = 0;
  xmlXPathObjectPtr o = q(e, which, NULL);
  if (nodes(o) && (ks->k = calloc((size_t)nodes(o), sizeof(char *)))) {
    for (int i = 0; i < nodes(o); i++) {
      char *sys = child_value(o->nodesetval->nodeTab[i], "system"),
           *val = child_value(o->nodesetval->nodeTab[i], "value");
      if (sys && val && asprintf(&ks->k[ks->n], "%s|%s", sys, val) >= 0)
        ks->n++;
      free(sys);
      free(val);
    }
    qsort(ks->k, (size_t)ks->n, sizeof(char *), cmp_str);
  }
  xmlXPathFreeObject(o);
}

static bool keyset_has(const struct keyset *ks, const char *sys, const char *val) {
  char *key = NULL;
  if (!ks->n || asprintf(&key, "%s|%s", sys ? sys : "", val ? val : "") < 0)
    return false;
  bool found = bsearch(&key, ks->k, (size_t)ks->n, sizeof(char *), cmp_str) != NULL;
  free(key);
  return found;
}

static void check_appointments(struct ev *e) {
  xmlXPathObjectPtr o = q(e, XP_APPOINTMENTS, NULL);
  struct keyset reach = {NULL, 0}, known = {NULL, 0};
  if (nodes(o)) {
    reachable_patients(e, &reach, XP_REACHABLE_IDS);
    reachable_patients(e, &known, XP_PATIENT_IDS);
  }
  for (int i = 0; i < nodes(o); i++) {
    xmlNodePtr a = o->nodesetval->nodeTab[i];
    char *status = child_value(a, "status");
    char spec[16];
    checked_specialty(e, a, spec, sizeof(spec));
    check_times(e, a, status, true, spec);
    /* a PATCH of a known booking (reschedule) re-sends neither patient nor referral */
    xmlXPathObjectPtr patch = q(e, XP_IS_PATCH, a);
    bool is_patch = patch && xmlXPathCastToBoolean(patch);
    xmlXPathFreeObject(patch);
    if (!is_patch) { /* 1..* in R4; the partial Appointment of a PATCH states only what changes */
      xmlXPathObjectPtr p = q(e, XP_PARTICIPANT, a);
      if (!nodes(p))
        report(e, "cer.participant-present", a, NULL, NULL);
      xmlXPathFreeObject(p);
    }
    if (is_booking(status) && !is_patch) {
      /* 1. contact: the patient's own telecom, or a contact person's, in this message */
      char *sys = patient_actor_value(a, "system"), *val = patient_actor_value(a, "value");
      xmlXPathObjectPtr c = q(e, XP_CONTAINED_CONTACT, a);
      bool reachable = keyset_has(&reach, sys, val) || (c && xmlXPathCastToBoolean(c));
      xmlXPathFreeObject(c);
      if (!reachable) {
        xmlXPathObjectPtr p = q(e, XP_PARTICIPANT, a);
        xmlNodePtr at = nodes(p) ? p->nodesetval->nodeTab[0] : a;
        if (reach.n > 0 && val && *val && !keyset_has(&known, sys, val)) {
          /* the message describes a reachable patient, but another one, and none by this identifier */
          const char *bar = strchr(reach.k[0], '|');
          report(e, "cer.patient-match", at, val, bar ? bar + 1 : reach.k[0]);
        } else {
          report(e, "cer.contact-present", at, NULL, NULL);
        }
        xmlXPathFreeObject(p);
      }
      free(sys);
      free(val);
      /* 2. first cardiology visits: e-referral and urgency */
      bool cardio = false;
      for (int k = 0; k < e->r->ncardio; k++)
        cardio |= *spec && !strcmp(spec, e->r->cardio[k]);
      char *followup = str(e, XP_FOLLOWUP, a);
      if (cardio && !(followup && *followup)) {
        xmlXPathObjectPtr ok = q(e, XP_REFERRAL_OK, a);
        if (!ok || !xmlXPathCastToBoolean(ok))
          report(e, "cer.cardiology-referral", a, spec, NULL);
        xmlXPathFreeObject(ok);
      }
      free(followup);
    }
    free(status);
  }
  for (int i = 0; i < reach.n; i++)
    free(reach.k[i]);
  free(reach.k);
  for (int i = 0; i < known.n; i++)
    free(known.k[i]);
  free(known.k);
  xmlXPathFreeObject(o);
}

/* Slots of one schedule, sorted by start: overlaps are found by a sweep, not by
 * comparing every pair (a message of thousands of slots stays linear-logarithmic). */
struct slot_at {
  int i; /* document order */
  time_t s, t;
  const char *sched;
};

static int cmp_slot(const void *a, const void *b) {
  const struct slot_at *x = a, *y = b;
  int c = strcmp(x->sched, y->sched);
  if (c)
    return c;
  return x->s < y->s ? -1 : x->s > y->s ? 1 : x->i - y->i;
}

static int cmp_pair(const void *a, const void *b) {
  const int *x = a, *y = b; /* {earlier, later} in document order: by the later, then the earlier */
  return x[1] != y[1] ? x[1] - y[1] : x[0] - y[0];
}

static void check_slots(struct ev *e) {
  xmlXPathObjectPtr o = q(e, XP_SLOTS, NULL);
  int n = nodes(o), m = 0;
  struct slot_at *at = calloc((size_t)n + 1, sizeof(*at));
  char **sched = calloc((size_t)n + 1, sizeof(char *));
  for (int i = 0; at && sched && i < n; i++) {
    xmlNodePtr sl = o->nodesetval->nodeTab[i];
    char spec[16];
    checked_specialty(e, sl, spec, sizeof(spec));
    char *status = child_value(sl, "status");
    check_times(e, sl, status && (!strcmp(status, "free") || !strcmp(status, "busy")) ? "booked" : status, true, spec);
    free(status);
    char *st = child_value(sl, "start"), *en = child_value(sl, "end");
    time_t a = 0, b = 0;
    sched[i] = str(e, XP_SCHEDULE_KEY, sl);
    if (st && en && !gw_instant_parse(st, &a) && !gw_instant_parse(en, &b) && a && sched[i])
      at[m++] = (struct slot_at){.i = i, .s = a, .t = b, .sched = sched[i]};
    free(st);
    free(en);
  }
  /* pairs {earlier, later} that overlap, as many as the issue list can still take */
  size_t room = e->diag->max > e->diag->n ? e->diag->max - e->diag->n : 0, np = 0;
  int(*pairs)[2] = at && room ? calloc(room, sizeof(*pairs)) : NULL;
  if (pairs)
    qsort(at, (size_t)m, sizeof(*at), cmp_slot);
  for (int k = 0; pairs && k < m && np < room; k++)
    for (int j = k + 1; j < m && np < room && !strcmp(at[j].sched, at[k].sched) && at[j].s < at[k].t; j++)
      if (at[k].s < at[j].t) {
        pairs[np][0] = at[k].i < at[j].i ? at[k].i : at[j].i;
        pairs[np++][1] = at[k].i < at[j].i ? at[j].i : at[k].i;
      }
  if (pairs)
    qsort(pairs, np, sizeof(*pairs), cmp_pair);
  for (size_t k = 0; k < np; k++) {
    char other[64];
    snprintf(other, sizeof(other), "Slot %d and %d", pairs[k][0], pairs[k][1]);
    report(e, "cer.slot-overlap", o->nodesetval->nodeTab[pairs[k][1]], other, NULL);
  }
  free(pairs);
  for (int i = 0; sched && i < n; i++)
    free(sched[i]);
  free(sched);
  free(at);
  xmlXPathFreeObject(o);
  /* schedules: planning horizon end after start */
  o = q(e, XP_HORIZONS, NULL);
  for (int i = 0; i < nodes(o); i++)
    check_times(e, o->nodesetval->nodeTab[i], NULL, false, NULL);
  xmlXPathFreeObject(o);
}

/* One node of the identity check: an RPWDL identifier's value (the clinic is the part before the first
 * dot), or an identifier system under some clinic's RPWDL OID. */
static void identity_node(struct ev *e, xmlNodePtr n, bool is_system) {
  xmlChar *v = xmlGetProp(n, BAD_CAST "value");
  char clinic[32] = "";
  if (v && is_system)
    gw_system_clinic((const char *)v, clinic, sizeof(clinic));
  else if (v)
    snprintf(clinic, sizeof(clinic), "%.*s", (int)strcspn((const char *)v, "."), (const char *)v);
  if (v && *clinic && strcmp(clinic, e->ctx->caller_rpwdl))
    report(e, "cer.identity-match", n, clinic, e->ctx->caller_rpwdl);
  xmlFree(v);
}

/* In document order: f:value of f:identifier[f:system/@value = RPWDL OID], and f:system whose value
 * starts with "urn:oid:" in any case, by one walk of the tree (no XPath scan of every element). */
static void identity_walk(struct ev *e, xmlNodePtr n) {
  for (; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE)
      continue;
    if (gw_fhir_is(n, "value") && n->parent && gw_fhir_is(n->parent, "identifier") &&
        has_child_value(n->parent, "system", OID_RPWDL)) {
      identity_node(e, n, false);
    } else if (gw_fhir_is(n, "system")) {
      xmlChar *v = xmlGetProp(n, BAD_CAST "value");
      bool oid = v && strncasecmp((const char *)v, "urn:oid:", 8) == 0;
      xmlFree(v);
      if (oid)
        identity_node(e, n, true);
    }
    identity_walk(e, n->children);
  }
}

static void check_identity(struct ev *e) {
  if (!e->ctx->caller_rpwdl || !*e->ctx->caller_rpwdl)
    return;
  /* RPWDL identifiers, and identifier systems scoped under a clinic's RPWDL OID in any spelling
   * (upper case, leading zeros in an arc) */
  identity_walk(e, xmlDocGetRootElement(e->x->doc));
}

/* ---- the CeR profile ---- */

struct pstate {
  struct ev *e;
  const void *last_node; /* libxml2 may report one bad value twice (facet, then type): keep the first */
};

static void profile_issue(void *ctx, const xmlError *err) {
  struct pstate *ps = ctx;
  xmlNodePtr at = err->node;
  if (at && at == ps->last_node)
    return;
  ps->last_node = at;
  /* libxml2's message without the FHIR namespace in every element name, on one line */
  char msg[256];
  size_t o = 0;
  static const char ns[] = "{" GW_FHIR_NS "}";
  for (const char *p = err->message ? err->message : "does not match"; *p && o + 1 < sizeof(msg); p++) {
    if (strncmp(p, ns, sizeof(ns) - 1) == 0) {
      p += sizeof(ns) - 2;
      continue;
    }
    if (*p != '\n')
      msg[o++] = *p;
  }
  msg[o] = 0;
  char *pat = strstr(msg, " by the pattern '");
  if (pat) /* the FHIR regular expressions are long: name what failed, not the whole pattern */
    snprintf(pat, sizeof(msg) - (size_t)(pat - msg), " as the lexical form of its FHIR type.");
  bool missing = strstr(msg, "Missing child") != NULL;
  struct gw_issue *i = report(ps->e, "cer.profile", at && at->type == XML_ELEMENT_NODE ? at : NULL, msg, NULL);
  if (!i)
    return;
  switch (err->code) {
  case XML_SCHEMAV_CVC_ENUMERATION_VALID: /* a code outside its value set */
    snprintf(i->code, sizeof(i->code), "code-invalid");
    i->hl7_code = 103; /* table value not found */
    break;
  case XML_SCHEMAV_ELEMENT_CONTENT:
    snprintf(i->code, sizeof(i->code), missing ? "required" : "structure");
    i->hl7_code = missing ? 101 : 100;
    break;
  case XML_SCHEMAV_CVC_COMPLEX_TYPE_2_4: /* a required element is missing */
  case XML_SCHEMAV_CVC_COMPLEX_TYPE_4:   /* a required attribute is missing */
    snprintf(i->code, sizeof(i->code), "required");
    i->hl7_code = 101;
    break;
  case XML_SCHEMAV_CVC_PATTERN_VALID:
  case XML_SCHEMAV_CVC_MINLENGTH_VALID:
  case XML_SCHEMAV_CVC_MAXLENGTH_VALID:
  case XML_SCHEMAV_CVC_DATATYPE_VALID_1_2_1:
  case XML_SCHEMAV_CVC_ATTRIBUTE_3:
    snprintf(i->code, sizeof(i->code), "value");
    i->hl7_code = 102; /* data type error */
    break;
  default:
    snprintf(i->code, sizeof(i->code), "structure");
    i->hl7_code = 100;
    break;
  }
}

static bool is_cer_resource(xmlNodePtr n) {
  return n->type == XML_ELEMENT_NODE && n->ns && xmlStrEqual(n->ns->href, BAD_CAST GW_FHIR_NS) &&
         (xmlStrEqual(n->name, BAD_CAST "Appointment") || xmlStrEqual(n->name, BAD_CAST "Slot") ||
          xmlStrEqual(n->name, BAD_CAST "Schedule"));
}

/* Every Schedule, Slot and Appointment against the CeR profile XSD: the
 * outermost ones (the profile checks what they contain), found by one walk
 * of the document in document order without recursion. */
static int check_profile(struct ev *e, struct tcache *tc, xmlDocPtr doc) {
  if (!e->r->profile)
    return GW_OK;
  if (tc->vc && tc->vc_serial != e->r->serial) { /* made for another rule set's profile */
    xmlSchemaFreeValidCtxt(tc->vc);
    tc->vc = NULL;
  }
  xmlSchemaValidCtxtPtr vc = tc->vc;
  struct pstate ps = {.e = e};
  xmlNodePtr root = xmlDocGetRootElement(doc);
  for (xmlNodePtr n = root; n;) {
    bool descend = true;
    if (is_cer_resource(n)) {
      descend = false;
      if (!vc) {
        if (!(vc = tc->vc = xmlSchemaNewValidCtxt(e->r->profile)))
          return GW_ERR_NOMEM;
        tc->vc_serial = e->r->serial;
      }
      xmlSchemaSetValidStructuredErrors(vc, (xmlStructuredErrorFunc)profile_issue, &ps);
      size_t before = e->diag->n + e->diag->dropped;
      if (xmlSchemaValidateOneElement(vc, n) != 0 && e->diag->n + e->diag->dropped == before)
        report(e, "cer.profile", n, "the resource could not be checked", NULL); /* no reason came through */
    }
    /* next element in document order, never leaving the root */
    xmlNodePtr c = descend ? n->children : NULL;
    while (c && c->type != XML_ELEMENT_NODE)
      c = c->next;
    if (c) {
      n = c;
      continue;
    }
    for (;;) {
      if (n == root) {
        n = NULL;
        break;
      }
      xmlNodePtr s = n->next;
      while (s && s->type != XML_ELEMENT_NODE)
        s = s->next;
      if (s) {
        n = s;
        break;
      }
      n = n->parent;
    }
  }
  if (vc)
    xmlSchemaSetValidStructuredErrors(vc, NULL, NULL); /* |ps| lives on this stack frame only */
  return GW_OK;
}

int gw_rules_check(const struct gw_rules *r, struct _xmlDoc *fhir, const struct gw_rules_ctx *ctx,
                   struct gw_diag *diag) {
  struct tcache *tc = thread_cache();
  struct ev e = {.r = r, .ctx = ctx, .diag = diag, .x = gw_fhir_xpath(fhir)};
  if (!tc || !e.x)
    return GW_ERR_NOMEM;
  int rv = check_profile(&e, tc, fhir);
  if (rv == GW_OK) {
    check_pesel(&e);
    check_appointments(&e);
    check_slots(&e);
    check_identity(&e);
  }
  return rv ? rv : e.failed ? GW_ERR_INVAL : GW_OK;
}
