#include "http/write.h"

#include <ctype.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/fhir.h"
#include "codec/hl7v2.h"
#include "codec/xml.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "deliver/deliver.h"
#include "http/router.h"
#include "msg/engine.h"
#include "store/store.h"
#include "tls/jwt.h"
#include "validate/rules.h"

#define CT_FHIR_JSON  "application/fhir+json; charset=utf-8"
#define CT_HL7        "x-application/hl7-v2+er7; charset=utf-8"
#define CT_SOAP11     "text/xml; charset=utf-8"
#define CT_SOAP12     "application/soap+xml; charset=utf-8"
#define CLINIC_NS     "urn:cergw:clinic:v1"
#define RPWDL_PREFIX  "urn:oid:2.16.840.1.113883.3.4424.2.3.1."
#define LATE_CANCEL_S (48 * 3600)

static const struct gw_engine *engine;
static struct gw_store *store;

void gw_write_init(const struct gw_engine *e, struct gw_store *st) {
  engine = e;
  store = st;
}

enum wkind { K_FHIR, K_SOAP, K_HL7, K_NOTIFY };

/* What the answer needs once the store and the dispatcher are done. */
struct wctx {
  struct gw_reply_token t;
  enum wkind kind;
  int soap_version;
  char soap_op[48];
  char soap_mid[256]; /* WS-Addressing MessageID, "" when absent */
  xmlDocPtr v2;       /* HL7: the request, for the ACK */
  char rtype[32];
  char rid[96];
  bool update, bundle;
  char url_type[32]; /* the resource type the URL names (single resources) */
  bool batch;        /* a batch Bundle (answered with a batch-response), not a transaction */
  int nentries;      /* Bundles: one per entry sent, for the transaction-response */
  struct entry_loc {
    char type[32]; /* the entry's resource type ("" when the entry has no resource) */
    char id[100];  /* its id or first identifier value; "" when it has neither */
    char url[160]; /* request.url, for an entry without a resource */
  } * entries;
  char who[200]; /* audit: identity */
  char ids[200]; /* audit: resource identifiers */
  int stream_id;
};

void gw_mask_pesel(char *s) {
  for (char *p = s; *p; p++) {
    size_t n = strspn(p, "0123456789");
    if (n == 11)
      memset(p + 6, '*', 5);
    p += n ? n - 1 : 0;
  }
}

static void audit(const struct wctx *w, const char *op, const char *outcome, long long msg_id) {
  char ids[200];
  snprintf(ids, sizeof(ids), "%s", w->ids);
  gw_mask_pesel(ids);
  char q1[260], q2[260];
  gw_log(GW_LOG_INFO, "audit", "%s op=%s resource=%s outcome=%s msg=%lld", w->who, op,
         gw_log_quote(q1, sizeof(q1), ids), gw_log_quote(q2, sizeof(q2), outcome), msg_id);
}

/* ---- XPath helpers over the canonical document ---- */

/* The expressions below are fixed strings: each is compiled once, on first use, and shared by
 * every worker (evaluating a compiled expression does not change it). */
#define XCACHE_MAX 64
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

static void xstr(xmlXPathContextPtr x, xmlNodePtr at, const char *expr, char *out, size_t n) {
  out[0] = 0;
  xmlXPathObjectPtr o = xeval(x, at, expr);
  xmlChar *s = o ? xmlXPathCastToString(o) : NULL;
  if (s)
    snprintf(out, n, "%s", (const char *)s);
  xmlFree(s);
  xmlXPathFreeObject(o);
}

static xmlXPathObjectPtr xnodes(xmlXPathContextPtr x, const char *expr) {
  xmlXPathObjectPtr o = xeval(x, (xmlNodePtr)x->doc, expr);
  if (o && o->type != XPATH_NODESET) {
    xmlXPathFreeObject(o);
    return NULL;
  }
  return o;
}

static int64_t instant_ms(const char *s) {
  time_t t;
  return (s[0] && gw_instant_parse(s, &t) == GW_OK) ? (int64_t)t * 1000 : 0;
}

/* The rules with memory need the Slots a message publishes and the Slots an
 * Appointment books or frees; the 48-hour rule needs the cancelled visit's start. */
static void memory_facts(xmlXPathContextPtr x, struct gw_submit *s, int *late_cancel) {
  xmlXPathObjectPtr o = xnodes(x, "//f:Slot");
  int n = (o && o->nodesetval) ? o->nodesetval->nodeNr : 0;
  if (n > 0 && (s->slots = calloc((size_t)n, sizeof(*s->slots)))) {
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
  o = xnodes(x, "//f:Appointment");
  if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
    xmlNodePtr a = o->nodesetval->nodeTab[0];
    char status[24], start[40];
    xstr(x, a, "string(f:status/@value)", status, sizeof(status));
    xstr(x, a, "string(f:start/@value)", start, sizeof(start));
    s->slot_release = !strcmp(status, "cancelled") || !strcmp(status, "noshow") || !strcmp(status, "entered-in-error");
    int64_t st = instant_ms(start);
    *late_cancel = !strcmp(status, "cancelled") && st && st - (int64_t)time(NULL) * 1000 < LATE_CANCEL_S * 1000LL;
    xmlXPathObjectPtr refs = xeval(x, a, "f:slot");
    int nr = refs && refs->nodesetval ? refs->nodesetval->nodeNr : 0;
    if (nr > 0 && !(s->slotrefs = calloc((size_t)nr, sizeof(*s->slotrefs))))
      nr = 0; /* the caller checks: an Appointment whose slots cannot be held is not accepted */
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

/* ---- answers ---- */

static const char *static_ctype(const char *ct) {
  static const char *const known[] = {CT_FHIR_JSON, CT_HL7, CT_SOAP11, CT_SOAP12};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(known[i], ct) == 0)
      return known[i];
  return "application/octet-stream";
}

static void take(struct gw_resp *r, int status, const char *ct, struct gw_buf *b) {
  r->status = status;
  r->content_type = ct;
  r->body = gw_buf_take(b, &r->body_len);
}

/* Overall state: rejected by any backend, else queued when any is not delivered yet. */
static int overall(const struct gw_submit *s) {
  int st = GW_DS_DELIVERED;
  for (int i = 0; i < s->nres; i++) {
    if (s->res[i].state == GW_DS_REJECTED || s->res[i].state == GW_DS_DEAD)
      return GW_DS_REJECTED;
    if (s->res[i].state != GW_DS_DELIVERED)
      st = GW_DS_QUEUED;
  }
  return st;
}

static void res_text(const struct gw_dresult *r, char *out, size_t n) {
  if (r->state == GW_DS_DELIVERED)
    snprintf(out, n, "%s: delivered", r->backend);
  else if ((r->state == GW_DS_REJECTED || r->state == GW_DS_DEAD) && r->last_status)
    snprintf(out, n, "%s rejected the message (HTTP %d): %s", r->backend, r->last_status, r->error);
  else if (r->state == GW_DS_REJECTED || r->state == GW_DS_DEAD) /* no HTTP status: MLLP, or no answer at all */
    snprintf(out, n, "%s rejected the message: %s", r->backend, r->error);
  else if (r->attempts)
    snprintf(out, n, "%s: queued for retry after attempt %d (%s)", r->backend, r->attempts, r->error);
  else
    snprintf(out, n, "%s: queued, stored durably", r->backend);
}

static const char *state_word(int st) {
  return st == GW_DS_DELIVERED ? "delivered" : st == GW_DS_QUEUED ? "queued" : "rejected";
}

/* The delivery report as a diag: information for delivered/queued, errors for rejections. */
static void res_diag(const struct gw_submit *s, struct gw_diag *d) {
  for (int i = 0; i < s->nres; i++) {
    const struct gw_dresult *r = &s->res[i];
    char en[400], rule[48];
    res_text(r, en, sizeof(en));
    bool bad = r->state == GW_DS_REJECTED || r->state == GW_DS_DEAD;
    snprintf(rule, sizeof(rule), "delivery.%s", bad ? "rejected" : state_word(r->state));
    struct gw_issue *is =
        gw_diag_add(d, bad ? GW_SEV_ERROR : GW_SEV_INFO, bad ? "processing" : "informational", rule, en, en);
    if (is) {
      is->hl7_code = bad ? 207 : 0;
      is->resendable = false;
    }
  }
}

static void wctx_free(struct wctx *w) {
  if (!w)
    return;
  xmlFreeDoc(w->v2);
  free(w->entries);
  free(w);
}

/* Where a resource now lives: {prefix}{type}/{id}/_history/1 with its id (or identifier),
 * else an id the gateway gives it from the message: cergw-{message}, and for entry |entry|
 * of a Bundle cergw-{message}-{entry} (|entry| < 0: a single resource). */
static void location(char *out, size_t n, const char *prefix, const char *type, const char *id, long long msg_id,
                     int entry) {
  if (id[0])
    snprintf(out, n, "%s%s/%s/_history/1", prefix, type, id);
  else if (entry < 0)
    snprintf(out, n, "%s%s/cergw-%lld/_history/1", prefix, type, msg_id);
  else
    snprintf(out, n, "%s%s/cergw-%lld-%d/_history/1", prefix, type, msg_id, entry);
}

/* Entry |i| of a Bundle: where its resource lives; an entry without a resource keeps its request URL. */
static void entry_location(const struct wctx *w, long long msg_id, int i, char *out, size_t n) {
  const struct entry_loc *e = &w->entries[i];
  if (!e->type[0])
    snprintf(out, n, "%s", e->url);
  else
    location(out, n, "", e->type, e->id, msg_id, i);
}

static void fhir_answer(struct wctx *w, const struct gw_submit *s, struct gw_resp *r) {
  struct gw_diag d;
  gw_diag_init(&d, 32);
  res_diag(s, &d);
  if (s->status == GW_SUB_DUPLICATE)
    gw_diag_add(&d, GW_SEV_INFO, "informational", "delivery.duplicate",
                "a repeat of an earlier message: nothing was delivered again",
                "powtórzenie wcześniejszego komunikatu: nic nie zostało wysłane ponownie");
  int st = overall(s);
  int status = st == GW_DS_REJECTED ? 422 : st == GW_DS_QUEUED ? 202 : (w->update ? 200 : 201);
  if (s->status == GW_SUB_DUPLICATE && status != 422)
    status = 200;
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  if (w->bundle && status != 422) {
    /* a transaction answers with a transaction-response Bundle, one entry per entry sent */
    char(*buf)[200] = calloc((size_t)w->nentries + 1, sizeof(*buf));
    const char **locs = calloc((size_t)w->nentries + 1, sizeof(*locs));
    for (int i = 0; buf && locs && i < w->nentries; i++) {
      entry_location(w, (long long)s->msg_id, i, buf[i], sizeof(buf[i]));
      locs[i] = buf[i];
    }
    if (buf && locs)
      gw_engine_tx_response_json(engine, &d, w->nentries, locs, status == 202 ? "202 Accepted" : "201 Created",
                                 w->batch, 1, &out);
    else
      gw_engine_outcome_json(engine, &d, 1, &out);
    free(buf);
    free(locs);
    if (status != 202)
      status = 200;
  } else {
    gw_engine_outcome_json(engine, &d, 1, &out);
  }
  take(r, status, CT_FHIR_JSON, &out);
  if (!w->bundle && status != 422) {
    location(r->location, sizeof(r->location), "/fhir/", w->rtype, w->rid, (long long)s->msg_id, -1);
    snprintf(r->etag, sizeof(r->etag), "W/\"1\"");
  }
  gw_buf_cleanup(&out);
  gw_diag_cleanup(&d);
}

static void soap_answer(struct wctx *w, const struct gw_submit *s, struct gw_resp *r) {
  int st = overall(s);
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  if (st == GW_DS_REJECTED) {
    struct gw_diag d;
    gw_diag_init(&d, 32);
    res_diag(s, &d);
    gw_engine_soap_fault(&d, w->soap_version, "a backend rejected the message: see the issues in the detail", &out);
    gw_diag_cleanup(&d);
    take(r, w->soap_version == 12 ? 400 : 500, w->soap_version == 12 ? CT_SOAP12 : CT_SOAP11, &out);
    return;
  }
  struct gw_soap_delivery d[GW_MAX_BACKENDS];
  char txt[GW_MAX_BACKENDS][400];
  for (int i = 0; i < s->nres; i++) {
    res_text(&s->res[i], txt[i], sizeof(txt[i]));
    d[i] = (struct gw_soap_delivery){s->res[i].backend, gw_dstate_name(s->res[i].state), txt[i]};
  }
  gw_engine_soap_accepted(w->soap_version, w->soap_op, state_word(st), (long long)s->msg_id, s->nres, d, &out);
  take(r, st == GW_DS_QUEUED ? 202 : 200, w->soap_version == 12 ? CT_SOAP12 : CT_SOAP11, &out);
  gw_buf_cleanup(&out);
}

static void ack_stamp(char *stamp, size_t sn, char *ctrl, size_t cn, int id) {
  gw_hl7_now(stamp, sn);
  snprintf(ctrl, cn, "CERGW%s%04d", stamp, id % 10000);
}

static void hl7_answer(struct wctx *w, const struct gw_submit *s, struct gw_resp *r) {
  char stamp[20], ctrl[40], text[400] = "";
  ack_stamp(stamp, sizeof(stamp), ctrl, sizeof(ctrl), w->stream_id);
  int st = overall(s);
  size_t o = (size_t)snprintf(text, sizeof(text), "%s",
                              s->status == GW_SUB_DUPLICATE ? "duplicate of an earlier "
                                                              "message, not resent: "
                                                            : "accepted: ");
  for (int i = 0; i < s->nres && o < sizeof(text); i++)
    o += (size_t)snprintf(text + o, sizeof(text) - o, "%s%s=%s", i ? " " : "", s->res[i].backend,
                          gw_dstate_name(s->res[i].state));
  struct gw_diag d;
  gw_diag_init(&d, 32);
  if (st == GW_DS_REJECTED)
    res_diag(s, &d);
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  gw_hl7_ack(w->v2, st == GW_DS_REJECTED ? GW_ACK_AR : GW_ACK_AA, text, &d, ctrl, stamp, &out);
  take(r, 200, CT_HL7, &out);
  gw_diag_cleanup(&d);
}

/* A rule with memory refused the message, or the store failed. */
static void refusal(struct wctx *w, const struct gw_submit *s, struct gw_resp *r) {
  struct gw_diag d;
  gw_diag_init(&d, 4);
  bool failed = s->status == GW_SUB_FAILED;
  struct gw_issue *is =
      failed ? gw_diag_add(&d, GW_SEV_FATAL, "transient", "store.failed",
                           "the message could not be stored: nothing was accepted, send it again",
                           "nie udało się zapisać komunikatu: nic nie zostało przyjęte, wyślij go ponownie")
             : gw_diag_add(&d, GW_SEV_ERROR, "business-rule", s->reject_rule, s->reject_en, s->reject_pl);
  const struct gw_rule_info *ri = failed ? NULL : gw_rules_info(gw_engine_rules(engine), s->reject_rule);
  if (is) {
    is->hl7_code = ri ? ri->hl7_code : 207;
    is->resendable = ri ? ri->resendable : true;
    snprintf(is->location, sizeof(is->location), "%s", !ri ? "" : w->kind == K_HL7 ? ri->loc_hl7 : ri->loc_fhir);
    if (ri)
      snprintf(is->code, sizeof(is->code), "%s", ri->code);
  }
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  if (w->kind == K_HL7) {
    char stamp[20], ctrl[40];
    ack_stamp(stamp, sizeof(stamp), ctrl, sizeof(ctrl), w->stream_id);
    gw_hl7_ack(w->v2, GW_ACK_AE, failed ? "not stored" : "rejected", &d, ctrl, stamp, &out);
    take(r, 200, CT_HL7, &out);
  } else if (w->kind == K_SOAP) {
    gw_engine_soap_fault(&d, w->soap_version, failed ? "not stored" : "the message breaks a CeR rule", &out);
    take(r, failed ? 503 : (w->soap_version == 12 ? 400 : 500), w->soap_version == 12 ? CT_SOAP12 : CT_SOAP11, &out);
  } else {
    gw_engine_outcome_json(engine, &d, 1, &out);
    take(r, failed ? 503 : 422, CT_FHIR_JSON, &out);
  }
  gw_buf_cleanup(&out);
  gw_diag_cleanup(&d);
}

/* Called once per submit, from the store's or the dispatcher's thread. */
static void submit_done(struct gw_submit *s) {
  struct wctx *w = s->ud;
  struct gw_resp r = {0};
  bool replay = s->status == GW_SUB_DUPLICATE && s->answer;
  if (replay) {
    r.status = s->answer_status;
    r.content_type = static_ctype(s->answer_ctype);
    r.body = s->answer;
    r.body_len = s->answer_len;
    s->answer = NULL;
    r.extra[r.nextra].name = "x-cergw-replay";
    r.extra[r.nextra++].value = "true";
  } else if (s->status == GW_SUB_REJECTED || s->status == GW_SUB_FAILED) {
    refusal(w, s, &r);
  } else if (w->kind == K_SOAP) {
    soap_answer(w, s, &r);
  } else if (w->kind == K_HL7) {
    hl7_answer(w, s, &r);
  } else {
    fhir_answer(w, s, &r);
  }
  if (s->status == GW_SUB_ACCEPTED && r.body)
    gw_store_set_answer(store, s->msg_id, r.status, r.content_type, r.body, r.body_len);
  const char *outcome = s->status == GW_SUB_DUPLICATE  ? "duplicate"
                        : s->status == GW_SUB_REJECTED ? s->reject_rule
                        : s->status == GW_SUB_FAILED   ? "store-failed"
                                                       : state_word(overall(s));
  audit(w, s->op, outcome, (long long)s->msg_id);
  gw_reply_post(&w->t, &r);
  wctx_free(w);
  gw_submit_free(s);
}

/* ---- accepting ---- */

static void idem(struct gw_submit *s, const char *caller, const char *kind, const char *v) {
  if (!v || !v[0] || s->idem_key)
    return;
  size_t n = strlen(caller) + strlen(kind) + strlen(v) + 3;
  if (n > 512)
    return;
  s->idem_key = malloc(n);
  if (s->idem_key)
    snprintf(s->idem_key, n, "%s|%s|%s", caller, kind, v);
}

/* Immediate answers for messages that fail the checks, in the caller's dialect. */
static void invalid(struct wctx *w, struct gw_req *req, struct gw_resp *resp, int rv, const struct gw_diag *d) {
  struct gw_buf out;
  gw_buf_init(&out, 8u << 20);
  if (w->kind == K_HL7) {
    char stamp[20], ctrl[40];
    ack_stamp(stamp, sizeof(stamp), ctrl, sizeof(ctrl), req->stream_id);
    gw_hl7_ack(w->v2, gw_hl7_ack_code_for(d), "invalid: not accepted", d, ctrl, stamp, &out);
    take(resp, req->proto == GW_PROTO_MLLP ? 200 : 422, CT_HL7, &out);
  } else if (w->kind == K_SOAP) {
    gw_engine_soap_fault(d, w->soap_version, "the message was rejected: see the issues in the detail", &out);
    take(resp, w->soap_version == 12 ? 400 : 500, w->soap_version == 12 ? CT_SOAP12 : CT_SOAP11, &out);
  } else {
    gw_engine_outcome_json(engine, d, 1, &out);
    take(resp, rv == GW_ERR_NOTFOUND ? 501 : 422, CT_FHIR_JSON, &out);
  }
  gw_buf_cleanup(&out);
}

static void who(struct wctx *w, const struct gw_req *req) {
  const struct gw_identity *id = req->peer;
  char q[160];
  snprintf(w->who, sizeof(w->who), "role=%s rpwdl=%s cn=%s", id ? gw_role_name(id->role) : "-",
           id && id->rpwdl[0] ? id->rpwdl : "-", gw_log_quote(q, sizeof(q), id ? id->cn : ""));
}

/* The resource identifiers named in the message, for the audit log and the ordering key. */
static void resource_ids(xmlXPathContextPtr x, char *ids, size_t n, char *rkey, size_t rn) {
  rkey[0] = ids[0] = 0;
  xmlXPathObjectPtr o = xnodes(x, "(//f:Appointment | //f:Slot | //f:Schedule)[1]");
  xmlNodePtr r = (o && o->nodesetval && o->nodesetval->nodeNr) ? o->nodesetval->nodeTab[0] : NULL;
  char id[128] = "", pesel[16] = "";
  if (r) {
    xstr(x, r, "string((f:identifier/f:value/@value | f:id/@value)[1])", id, sizeof(id));
    if (id[0]) /* no identifier: no ordering constraint */
      snprintf(rkey, rn, "%s/%s", (const char *)r->name, id);
    xstr(x, r, "string(f:identifier/f:value/@value)", id, sizeof(id));
  }
  xmlXPathFreeObject(o);
  xstr(x, (xmlNodePtr)x->doc,
       "string((//f:identifier[f:system/@value = 'urn:oid:2.16.840.1.113883.3.4424.1.1.616']/f:value/@value)[1])",
       pesel, sizeof(pesel));
  snprintf(ids, n, "%s patient=%s", id, pesel);
}

/* The clinic named by the payload (for notifications): the RPWDL OID suffix. */
static void payload_rpwdl(xmlXPathContextPtr x, char *out, size_t n) {
  xstr(x, (xmlNodePtr)x->doc,
       "substring(substring-after((//f:identifier/f:system/@value[starts-with(., '" RPWDL_PREFIX
       "')])[1], '" RPWDL_PREFIX "'), 1, 12)",
       out, n);
}

/* Checks, routes, renders, and submits |req|. */
static void accept_message(struct gw_req *req, struct gw_resp *resp, struct wctx *w, enum gw_dialect dl,
                           const char *op) {
  const char *body = (const char *)req->body.data;
  struct gw_diag d;
  gw_diag_init(&d, 200);
  xmlDocPtr doc = NULL;
  bool notify = w->kind == K_NOTIFY;
  const char *caller = (req->peer && req->peer->rpwdl[0]) ? req->peer->rpwdl : (req->peer ? req->peer->cn : "-");
  struct gw_check chk = {
      .caller_rpwdl = notify ? NULL : caller, .now = time(NULL), .hl7_out = w->kind == K_HL7 ? &w->v2 : NULL};
  int rv = gw_engine_check(engine, body, req->body.len, dl, &chk, &doc, &d);
  xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
  /* one XPath context for everything read from the canonical document below */
  xmlXPathContextPtr x = doc ? gw_fhir_xpath(doc) : NULL;
  if (rv == GW_OK && root && !x)
    rv = GW_ERR_NOMEM;
  if (rv == GW_OK && root) {
    snprintf(w->rtype, sizeof(w->rtype), "%s", (const char *)root->name);
    if (w->kind == K_FHIR && w->bundle && strcmp(w->rtype, "Bundle") != 0)
      gw_diag_add(&d, GW_SEV_ERROR, "invalid", "fhir.resource-type", "POST /fhir takes a transaction or batch Bundle",
                  "POST /fhir przyjmuje Bundle typu transaction lub batch");
    else if (w->kind == K_FHIR && !w->bundle && w->url_type[0] && strcmp(w->rtype, w->url_type) != 0)
      gw_diag_add(&d, GW_SEV_ERROR, "invalid", "fhir.resource-type", "the resource type does not match the URL",
                  "typ zasobu nie zgadza się z adresem");
    if (w->kind == K_FHIR && w->update) { /* PUT: the body's id, when given, must be the URL's */
      char bid[100] = "";
      xstr(x, root, "string(f:id/@value)", bid, sizeof(bid));
      if (bid[0] && strcmp(bid, w->rid) != 0) {
        struct gw_issue *is =
            gw_diag_add(&d, GW_SEV_ERROR, "invalid", "fhir.id-mismatch",
                        "the resource's id differs from the id in the URL", "id zasobu różni się od id w adresie");
        if (is)
          snprintf(is->location, sizeof(is->location), "%s.id", w->rtype);
      }
    }
    if (gw_diag_has_errors(&d))
      rv = GW_ERR_INVAL;
  }
  if (rv != GW_OK) {
    invalid(w, req, resp, rv, &d);
    audit(w, op, "invalid", 0);
    xmlFreeDoc(doc);
    gw_diag_cleanup(&d);
    return;
  }
  gw_diag_cleanup(&d);

  struct gw_submit *s = gw_submit_new();
  struct gw_dconf *c = gw_dconf_get();
  if (!s || !c) {
    gw_submit_free(s);
    gw_dconf_put(c);
    xmlFreeDoc(doc);
    gw_router_error(resp, 503, "the delivery configuration is not loaded");
    return;
  }
  snprintf(s->caller, sizeof(s->caller), "%s", caller);
  snprintf(s->dialect, sizeof(s->dialect), "%s", gw_dialect_name(dl));
  snprintf(s->op, sizeof(s->op), "%s", op);
  snprintf(s->rtype, sizeof(s->rtype), "%s", w->rtype);
  snprintf(s->rid, sizeof(s->rid), "%s", w->rid);
  /* idempotency: the first key the message carries */
  idem(s, caller, "key", req->idem_key);
  if (req->if_none_exist) {
    /* conditional create: identifier=[system|]value matches what this clinic sent before for that
     * resource (the store remembers each delivery's resource key); a match answers 200 with the
     * existing resource's location and creates nothing. Other criteria count as an idempotency key. */
    const char *crit = req->if_none_exist;
    if (!strncmp(crit, "identifier=", 11)) {
      const char *v = crit + 11, *bar = strchr(v, '|');
      char rkey[200], *canon = NULL, summary[200];
      snprintf(rkey, sizeof(rkey), "%s|%s/%.*s", caller, w->rtype, (int)strcspn(bar ? bar + 1 : v, "&"),
               bar ? bar + 1 : v);
      if (gw_store_latest(store, rkey, &canon, summary, sizeof(summary)) == GW_OK) {
        free(canon);
        char en[300];
        snprintf(en, sizeof(en), "a %s matching %s exists already (%s): nothing was created", w->rtype, crit, summary);
        struct gw_diag dd;
        gw_diag_init(&dd, 2);
        gw_diag_add(&dd, GW_SEV_INFO, "informational", "fhir.conditional-match", en, en);
        struct gw_buf out;
        gw_buf_init(&out, 1 << 20);
        gw_engine_outcome_json(engine, &dd, 1, &out);
        take(resp, 200, CT_FHIR_JSON, &out);
        snprintf(resp->location, sizeof(resp->location), "/fhir/%s", strchr(rkey, '|') + 1);
        gw_buf_cleanup(&out);
        gw_diag_cleanup(&dd);
        audit(w, op, "conditional-match", 0);
        gw_submit_free(s);
        gw_dconf_put(c);
        xmlFreeDoc(doc);
        return;
      }
    }
    char ine[600];
    snprintf(ine, sizeof(ine), "%s?%s", w->rtype, crit);
    idem(s, caller, "if-none-exist", ine);
  }
  if (w->kind == K_HL7 && w->v2) {
    char *msh10 = gw_hl7_get(w->v2, "MSH", 10, 0);
    idem(s, caller, "msh10", msh10);
    free(msh10);
  }
  if (w->kind == K_SOAP)
    idem(s, caller, "wsa", w->soap_mid);
  /* where it goes */
  const struct gw_backend_conf *to[GW_MAX_BACKENDS];
  int nb = 0;
  char why[200] = "";
  if (notify) {
    char rp[16] = "";
    payload_rpwdl(x, rp, sizeof(rp));
    const struct gw_backend_conf *bc = rp[0] ? gw_dconf_clinic(c, rp) : NULL;
    if (!bc || !bc->enabled) {
      struct gw_diag dd;
      gw_diag_init(&dd, 2);
      char en[200];
      snprintf(en, sizeof(en), "clinic %s has no notification endpoint registered in the configuration",
               rp[0] ? rp : "(none named)");
      gw_diag_add(&dd, GW_SEV_ERROR, "not-found", "notify.no-endpoint", en, en);
      invalid(w, req, resp, GW_ERR_INVAL, &dd);
      gw_diag_cleanup(&dd);
      gw_submit_free(s);
      gw_dconf_put(c);
      xmlFreeDoc(doc);
      return;
    }
    to[nb++] = bc;
  } else {
    int idx[GW_MAX_BACKENDS];
    nb = gw_route_match(c, doc, idx, why, sizeof(why));
    for (int i = 0; i < nb; i++)
      to[i] = &c->b[idx[i]];
  }
  if (nb < 0) { /* routing could not be decided: nothing is accepted (logged by gw_route_match) */
    gw_submit_free(s);
    gw_dconf_put(c);
    xmlFreeDoc(doc);
    gw_router_error(resp, 503, "the message could not be routed: nothing was accepted, send it again");
    return;
  }
  int late = 0;
  if (!notify)
    memory_facts(x, s, &late);
  char rkey[192] = "";
  resource_ids(x, w->ids, sizeof(w->ids), rkey, sizeof(rkey));
  if (w->bundle) { /* what each entry is, for the transaction-response (one per entry sent) */
    char btype[16] = "";
    xstr(x, root, "string(f:type/@value)", btype, sizeof(btype));
    w->batch = strcmp(btype, "batch") == 0;
    xmlXPathObjectPtr es = xnodes(x, "/f:Bundle/f:entry");
    int n = es && es->nodesetval ? es->nodesetval->nodeNr : 0;
    w->entries = n ? calloc((size_t)n, sizeof(*w->entries)) : NULL;
    for (int i = 0; w->entries && i < n; i++) {
      xmlNodePtr en = es->nodesetval->nodeTab[i], rn = NULL;
      for (xmlNodePtr k = en->children; k && !rn; k = k->next)
        if (k->type == XML_ELEMENT_NODE && xmlStrEqual(k->name, BAD_CAST "resource"))
          rn = xmlFirstElementChild(k);
      struct entry_loc *el = &w->entries[i];
      if (rn) {
        snprintf(el->type, sizeof(el->type), "%s", (const char *)rn->name);
        xstr(x, rn, "string((f:id/@value | f:identifier/f:value/@value)[1])", el->id, sizeof(el->id));
      } else {
        xstr(x, en, "string(f:request/f:url/@value)", el->url, sizeof(el->url));
      }
      w->nentries = i + 1;
    }
    xmlXPathFreeObject(es);
  }
  char uuid[40];
  gw_random_uuid(uuid);
  struct gw_diag rd;
  gw_diag_init(&rd, 16);
  int rrv = GW_OK;
  for (int i = 0; i < nb && rrv == GW_OK; i++) {
    const struct gw_backend_conf *bc = to[i];
    struct gw_delivery *dv = &s->d[s->nd];
    snprintf(dv->backend, sizeof(dv->backend), "%s", bc->name);
    snprintf(dv->ikey, sizeof(dv->ikey), "%s-%s", uuid, bc->name);
    if (rkey[0])
      snprintf(dv->rkey, sizeof(dv->rkey), "%s|%s", caller, rkey);
    if (gw_backend_kind(bc->kind)->path == GW_PATH_RESOURCE_TYPE && strcmp(w->rtype, "Bundle") != 0)
      snprintf(dv->path, sizeof(dv->path), "/%s", w->rtype);
    struct gw_buf out;
    gw_buf_init(&out, 16u << 20);
    const char *ct = "";
    rrv = gw_engine_outbound(engine, bc->kind, doc, dv->ikey, late, &out, &ct, &rd);
    snprintf(dv->ctype, sizeof(dv->ctype), "%s", ct);
    dv->payload = gw_buf_take(&out, &dv->len);
    gw_buf_cleanup(&out);
    s->nd++;
    if (rrv == GW_OK && !dv->payload)
      rrv = GW_ERR_NOMEM;
  }
  uint32_t deadline = c->answer_deadline_ms;
  gw_dconf_put(c);
  if (rrv != GW_OK) { /* a mapping could not render it for a backend: nothing is accepted */
    if (!rd.n)
      gw_diag_add(&rd, GW_SEV_FATAL, "exception", "xform.failed", "a backend mapping failed",
                  "mapowanie nie powiodło się");
    invalid(w, req, resp, GW_ERR_INVAL, &rd);
    gw_diag_cleanup(&rd);
    gw_submit_free(s);
    xmlFreeDoc(doc);
    return;
  }
  gw_diag_cleanup(&rd);
  if (nb == 0)
    gw_log(GW_LOG_WARN, "no_route", "op=%s detail=\"no enabled route matched; stored, delivered nowhere\"", op);
  s->original = malloc(req->body.len + 1);
  if (s->original) {
    memcpy(s->original, body, req->body.len);
    s->original_len = req->body.len;
  }
  struct gw_buf canon;
  gw_buf_init(&canon, 32u << 20);
  gw_xml_dump(doc, 0, 0, &canon);
  s->canonical = gw_buf_take(&canon, &s->canonical_len);
  gw_buf_cleanup(&canon);
  xmlFreeDoc(doc);
  if (!s->original) {
    gw_submit_free(s);
    gw_router_error(resp, 500, "out of memory");
    return;
  }
  s->deadline_ms = gw_wall_ms() + deadline;
  s->done = submit_done;
  s->ud = w;
  w->t = req->reply;
  w->stream_id = req->stream_id;
  resp->deferred = 1;
  gw_store_submit(store, s);
}

/* The SOAP operations that deliver (the WSDL's clinic port, besides GetAppointmentStatus and ValidateMessage). */
static const char *const soap_ops[] = {"PublishSchedule", "PublishSlots", "BookAppointment", "RescheduleAppointment",
                                       "CancelAppointment"};

/* GetAppointmentStatus: what the gateway last accepted for that appointment, and how far it got. */
static void soap_status(struct gw_req *req, struct gw_resp *resp, struct wctx *w) {
  struct gw_diag d;
  gw_diag_init(&d, 50);
  xmlDocPtr doc = NULL;
  const char *caller = req->peer->rpwdl;
  struct gw_check chk = {.caller_rpwdl = caller, .now = time(NULL)};
  int rv = gw_engine_check(engine, (const char *)req->body.data, req->body.len, GW_D_SOAP, &chk, &doc, &d);
  char id[128] = "", status[64] = "", summary[256] = "";
  if (rv == GW_OK) {
    xmlXPathContextPtr x = gw_fhir_xpath(doc);
    if (x)
      xstr(x, (xmlNodePtr)doc, "string(//f:valueIdentifier/f:value/@value)", id, sizeof(id));
    char rkey[200], *canon = NULL;
    snprintf(rkey, sizeof(rkey), "%s|Appointment/%s", caller, id);
    if (gw_store_latest(store, rkey, &canon, summary, sizeof(summary)) == GW_OK) {
      xmlDocPtr c = NULL;
      if (gw_xml_parse(canon, strlen(canon), strlen(canon) + 1, &c, &d) == GW_OK && (x = gw_fhir_xpath(c))) {
        xstr(x, (xmlNodePtr)c, "string((//f:Appointment)[1]/f:status/@value)", status, sizeof(status));
      }
      xmlFreeDoc(c);
    } else {
      char en[300];
      snprintf(en, sizeof(en), "appointment %s of clinic %s is not known to the gateway", id, caller);
      gw_diag_add(&d, GW_SEV_ERROR, "not-found", "soap.unknown-appointment", en, en);
      rv = GW_ERR_NOTFOUND;
    }
    free(canon);
  }
  xmlFreeDoc(doc);
  if (rv != GW_OK) {
    invalid(w, req, resp, GW_ERR_INVAL, &d);
    gw_diag_cleanup(&d);
    return;
  }
  gw_diag_cleanup(&d);
  char st[400];
  snprintf(st, sizeof(st), "%s (%s)", status[0] ? status : "unknown", summary);
  struct gw_buf b;
  gw_buf_init(&b, 1 << 20);
  gw_engine_soap_status(w->soap_version, id, st, &b);
  take(resp, 200, w->soap_version == 12 ? CT_SOAP12 : CT_SOAP11, &b);
  gw_buf_cleanup(&b);
}

static int path_is(const struct gw_req *req, const char *p) {
  size_t n = strlen(p);
  return strncmp(req->path, p, n) == 0 && (req->path[n] == 0 || req->path[n] == '?');
}

static bool forbidden(struct gw_req *req, struct gw_resp *resp, enum gw_role role, const char *msg) {
  if (req->peer && req->peer->role == role && (role != GW_ROLE_CLINIC || req->peer->rpwdl[0]))
    return false;
  gw_router_error(resp, 403, msg);
  return true;
}

bool gw_write_handle(struct gw_req *req, struct gw_resp *resp) {
  bool post = !strcmp(req->method, "POST"), put = !strcmp(req->method, "PUT");
  enum wkind kind;
  char type[32] = "", id[96] = "";
  bool is_bundle = false, update = false;
  if (path_is(req, "/hl7v2")) {
    kind = K_HL7;
  } else if (path_is(req, "/notifications")) {
    kind = K_NOTIFY;
  } else if (path_is(req, "/soap")) {
    kind = K_SOAP;
  } else if (path_is(req, "/fhir")) {
    kind = K_FHIR;
    is_bundle = true;
  } else if (!strncmp(req->path, "/fhir/", 6) && !strchr(req->path, '$')) {
    kind = K_FHIR;
    const char *t = req->path + 6;
    size_t n = strcspn(t, "/?");
    if (n == 0 || n >= sizeof(type))
      return false;
    memcpy(type, t, n);
    type[n] = 0;
    if (strcmp(type, "Schedule") && strcmp(type, "Slot") && strcmp(type, "Appointment"))
      return false;
    if (t[n] == '/') {
      const char *i = t + n + 1;
      size_t m = strcspn(i, "/?");
      if (m == 0 || m >= sizeof(id) || (i[m] && i[m] != '?'))
        return false;
      memcpy(id, i, m);
      id[m] = 0;
      update = true;
    }
  } else {
    return false;
  }
  if (kind == K_SOAP && !post)
    return false; /* GET /soap?wsdl is the router's */
  /* SOAP: which operation, from one parse; ValidateMessage, faults for what is not an envelope and
   * operations we do not offer are the router's */
  char sop[48] = "", smid[256] = "";
  if (kind == K_SOAP) {
    gw_soap_operation((const char *)req->body.data, req->body.len, sop, sizeof(sop), smid, sizeof(smid));
    bool known = !strcmp(sop, "GetAppointmentStatus");
    for (size_t i = 0; i < sizeof(soap_ops) / sizeof(soap_ops[0]); i++)
      known |= !strcmp(sop, soap_ops[i]);
    if (!known)
      return false;
  }
  if ((update && !put) || (!update && !post)) {
    gw_router_error(resp, 405, update ? "use PUT to update a resource by id" : "use POST to send a message");
    resp->extra[resp->nextra].name = "allow";
    resp->extra[resp->nextra++].value = update ? "PUT" : "POST";
    return true;
  }
  if (!engine || !store) {
    gw_router_error(resp, 503, "delivery is not available");
    return true;
  }
  if (req->body.len == 0) {
    gw_router_error(resp, 400, "the request body is empty");
    return true;
  }
  if (kind == K_NOTIFY
          ? forbidden(req, resp, GW_ROLE_P1, "notifications are accepted only from P1's certificate")
          : forbidden(req, resp, GW_ROLE_CLINIC, "only a clinic certificate with an RPWDL number may send messages"))
    return true;
  if ((req->idem_key && strlen(req->idem_key) > 200) || (req->if_none_exist && strlen(req->if_none_exist) > 400)) {
    gw_router_error(resp, 400, "Idempotency-Key is limited to 200 characters and If-None-Exist to 400");
    return true;
  }
  struct wctx *w = calloc(1, sizeof(*w));
  if (!w) {
    gw_router_error(resp, 500, "out of memory");
    return true;
  }
  w->kind = kind;
  w->bundle = is_bundle;
  w->update = update;
  snprintf(w->url_type, sizeof(w->url_type), "%s", type);
  snprintf(w->rid, sizeof(w->rid), "%s", id);
  who(w, req);
  char op[64];
  enum gw_dialect dl = GW_D_UNKNOWN;
  switch (kind) {
  case K_HL7:
    dl = GW_D_HL7V2;
    snprintf(op, sizeof(op), req->proto == GW_PROTO_MLLP ? "hl7.mllp" : "hl7.http");
    break;
  case K_SOAP:
    w->soap_version = gw_soap_version((const char *)req->body.data, req->body.len);
    dl = GW_D_SOAP;
    snprintf(w->soap_op, sizeof(w->soap_op), "%s", sop);
    snprintf(w->soap_mid, sizeof(w->soap_mid), "%s", smid);
    if (!strcmp(sop, "GetAppointmentStatus")) {
      soap_status(req, resp, w);
      audit(w, "soap.GetAppointmentStatus", "answered", 0);
      wctx_free(w);
      return true;
    }
    snprintf(op, sizeof(op), "soap.%s", w->soap_op);
    break;
  case K_NOTIFY:
    dl = gw_dialect_detect((const char *)req->body.data, req->body.len);
    snprintf(op, sizeof(op), "notification");
    break;
  case K_FHIR:
    dl = gw_dialect_detect((const char *)req->body.data, req->body.len);
    snprintf(op, sizeof(op), "fhir.%s%s", update ? "update " : is_bundle ? "transaction" : "create ", type);
    break;
  }
  if ((kind == K_FHIR || kind == K_NOTIFY) && dl != GW_D_FHIR_JSON && dl != GW_D_FHIR_XML) {
    wctx_free(w);
    gw_router_error(resp, 415, "the body must be a FHIR resource in JSON or XML");
    return true;
  }
  accept_message(req, resp, w, dl, op);
  if (!resp->deferred)
    wctx_free(w);
  return true;
}
