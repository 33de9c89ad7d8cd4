/* The stages of the message pipeline, in order; see pipe.h. */
#include "pipe/pipe.h"

#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/hl7v2.h"
#include "codec/xml.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "tls/jwt.h"

struct gw_pipe {
  const struct gw_engine *e;
  struct gw_store *st;
};

struct gw_pipe *gw_pipe_new(const struct gw_engine *e, struct gw_store *st) {
  struct gw_pipe *p = gw_calloc(1, sizeof(*p));
  if (p) {
    p->e = e;
    p->st = st;
    if (st) { /* versions of a PATCHed resource merged with the engine's element model; the others
               * read from their message's canonical form */
      gw_store_set_merge(st, gw_engine_merge, (void *)e);
      gw_store_set_extract(st, gw_engine_extract, (void *)e);
    }
  }
  return p;
}

void gw_pipe_free(struct gw_pipe *p) { free(p); }

const struct gw_engine *gw_pipe_engine(const struct gw_pipe *p) { return p->e; }

struct gw_msg *gw_msg_new(void) {
  struct gw_msg *m = gw_calloc(1, sizeof(*m));
  if (m)
    gw_diag_init(&m->diag, 200);
  return m;
}

void gw_msg_free(struct gw_msg *m) {
  if (!m)
    return;
  xmlFreeDoc(m->doc);
  xmlFreeDoc(m->v2);
  gw_diag_cleanup(&m->diag);
  free(m->entries);
  gw_dconf_put(m->conf);
  gw_submit_free(m->s);
  free(m->ans.body);
  free(m);
}

void gw_mask_pesel(char *s) {
  for (char *p = s; *p; p++) {
    size_t n = strspn(p, "0123456789");
    if (n == 11)
      memset(p + 6, '*', 5);
    p += n ? n - 1 : 0;
  }
}

enum gw_step gw_msg_refuse(struct gw_msg *m, int status, const char *code, const char *rule, const char *en,
                           const char *pl) {
  struct gw_issue *is = gw_diag_add(&m->diag, GW_SEV_ERROR, code, rule, en, pl);
  if (is) {
    is->hl7_code = 207;
    is->resendable = status >= 500; /* the gateway's own trouble: the same message may be sent again */
  }
  m->status = status;
  m->rv = GW_ERR_INVAL;
  return GW_STEP_FAIL;
}

/* The audit line: who did what to which resource, and how it ended; joins the access log by conn and stream. */
static void audit(const struct gw_msg *m, const char *outcome, long long msg_id) {
  char ids[200], q1[260], q2[260];
  snprintf(ids, sizeof(ids), "%s", m->ids);
  gw_mask_pesel(ids);
  gw_log(GW_LOG_INFO, "audit", "conn=%llu stream=%d %s op=%s resource=%s outcome=%s msg=%lld",
         (unsigned long long)m->conn_id, (int)m->stream_id, m->who, m->op, gw_log_quote(q1, sizeof(q1), ids),
         gw_log_quote(q2, sizeof(q2), outcome), msg_id);
}

/* ---- the stages ---- */

/* A FHIR read: a clinic (with an RPWDL) reads its own resources; the query must be one the gateway
 * answers exactly (an unknown parameter is refused, not ignored). */
static enum gw_step admit_read(struct gw_pipe *p, struct gw_msg *m) {
  const struct gw_identity *id = m->peer;
  char q[160], why[300];
  snprintf(m->who, sizeof(m->who), "role=%s rpwdl=%s cn=%s", id ? gw_role_name(id->role) : "-",
           id && id->rpwdl[0] ? id->rpwdl : "-", gw_log_quote(q, sizeof(q), id ? id->cn : ""));
  snprintf(m->caller, sizeof(m->caller), "%s", id && id->rpwdl[0] ? id->rpwdl : "-");
  snprintf(m->op, sizeof(m->op), "fhir.%s %s",
           m->rq.search    ? "search"
           : m->rq.history ? "history"
           : m->rq.version ? "vread"
                           : "read",
           m->url_type);
  m->now = time(NULL);
  if (!p->e || !p->st)
    return gw_msg_refuse(m, 503, "transient", "gw.unavailable", "the store is not available",
                         "magazyn jest niedostępny");
  if (!id || id->role != GW_ROLE_CLINIC || !id->rpwdl[0])
    return gw_msg_refuse(m, 403, "forbidden", "gw.role", "only a clinic certificate with an RPWDL number may read",
                         "odczyt jest dostępny tylko dla certyfikatu świadczeniodawcy z numerem RPWDL");
  if (m->rq.search && gw_read_query(m, why, sizeof(why)))
    return gw_msg_refuse(m, 400, "not-supported", "fhir.search-parameter", why, why);
  return GW_STEP_NEXT;
}

static enum gw_step read(struct gw_pipe *p, struct gw_msg *m) { return gw_read_stage(p, p->st, m); }

/* Who may send what: clinics (with an RPWDL) their messages, P1 its notifications. */
static enum gw_step admit(struct gw_pipe *p, struct gw_msg *m) {
  const struct gw_identity *id = m->peer;
  char q[160];
  snprintf(m->who, sizeof(m->who), "role=%s rpwdl=%s cn=%s", id ? gw_role_name(id->role) : "-",
           id && id->rpwdl[0] ? id->rpwdl : "-", gw_log_quote(q, sizeof(q), id ? id->cn : ""));
  snprintf(m->caller, sizeof(m->caller), "%s", id && id->rpwdl[0] ? id->rpwdl : id ? id->cn : "-");
  m->now = time(NULL);
  if (!p->e || !p->st)
    return gw_msg_refuse(m, 503, "transient", "gw.unavailable", "delivery is not available",
                         "przekazywanie komunikatów jest niedostępne");
  if (m->len == 0)
    return gw_msg_refuse(m, 400, "required", "msg.empty", "the request body is empty", "treść żądania jest pusta");
  bool notify = m->kind == GW_M_NOTIFY;
  if (!id || id->role != (notify ? GW_ROLE_P1 : GW_ROLE_CLINIC) || (!notify && !id->rpwdl[0]))
    return gw_msg_refuse(m, 403, "forbidden", "gw.role",
                         notify ? "notifications are accepted only from P1's certificate"
                                : "only a clinic certificate with an RPWDL number may send messages",
                         notify ? "powiadomienia przyjmowane są tylko z certyfikatu P1"
                                : "komunikaty może wysyłać tylko certyfikat świadczeniodawcy z numerem RPWDL");
  if ((m->idem_header && strlen(m->idem_header) > 200) || (m->if_none_exist && strlen(m->if_none_exist) > 400))
    return gw_msg_refuse(m, 400, "too-long", "http.header-too-long",
                         "Idempotency-Key is limited to 200 characters and If-None-Exist to 400",
                         "Idempotency-Key może mieć do 200 znaków, a If-None-Exist do 400");
  return GW_STEP_NEXT;
}

/* The dialect and the operation's name. */
static enum gw_step detect(struct gw_pipe *p, struct gw_msg *m) {
  (void)p;
  switch (m->kind) {
  case GW_M_HL7:
    m->dialect = GW_D_HL7V2;
    snprintf(m->op, sizeof(m->op), m->mllp ? "hl7.mllp" : "hl7.http");
    return GW_STEP_NEXT;
  case GW_M_SOAP:
    m->dialect = GW_D_SOAP;
    m->soap_version = gw_soap_version((const char *)m->body, m->len);
    snprintf(m->op, sizeof(m->op), "soap.%s", m->soap_op);
    return GW_STEP_NEXT;
  case GW_M_NOTIFY:
  case GW_M_FHIR:
    m->dialect = gw_dialect_detect((const char *)m->body, m->len);
    if (m->kind == GW_M_NOTIFY)
      snprintf(m->op, sizeof(m->op), "notification");
    else
      snprintf(m->op, sizeof(m->op), "fhir.%s%s",
               m->update   ? "update "
               : m->bundle ? "transaction"
                           : "create ",
               m->url_type);
    if (m->dialect != GW_D_FHIR_JSON && m->dialect != GW_D_FHIR_XML)
      return gw_msg_refuse(m, 415, "not-supported", "msg.dialect", "the body must be a FHIR resource in JSON or XML",
                           "treść musi być zasobem FHIR w JSON lub XML");
  }
  return GW_STEP_NEXT;
}

/* The canonical form, checked against the FHIR model, the CeR profile and the CeR rules. */
static enum gw_step canonicalise(struct gw_pipe *p, struct gw_msg *m) {
  char charset[24] = ""; /* the clinic's setting for HL7 v2 without MSH-18 */
  if (m->kind == GW_M_HL7) {
    struct gw_dconf *c = gw_dconf_get();
    const struct gw_backend_conf *bc = c ? gw_dconf_clinic(c, m->caller) : NULL;
    if (bc)
      snprintf(charset, sizeof(charset), "%s", bc->hl7_charset);
    gw_dconf_put(c);
  }
  struct gw_check chk = {.caller_rpwdl = m->kind == GW_M_NOTIFY ? NULL : m->caller,
                         .now = m->now,
                         .hl7_charset = charset[0] ? charset : NULL,
                         .hl7_out = m->kind == GW_M_HL7 ? &m->v2 : NULL};
  m->rv = gw_engine_check(p->e, (const char *)m->body, m->len, m->dialect, &chk, &m->doc, &m->diag);
  if (m->rv == GW_OK && (!m->doc || !xmlDocGetRootElement(m->doc)))
    m->rv = GW_ERR_NOMEM;
  return m->rv == GW_OK ? GW_STEP_NEXT : GW_STEP_FAIL;
}

/* What FHIR REST says about the URL: the resource type, the id of an update. */
static enum gw_step check(struct gw_pipe *p, struct gw_msg *m) {
  (void)p;
  xmlNodePtr root = xmlDocGetRootElement(m->doc);
  const char *rtype = (const char *)root->name;
  if (m->kind == GW_M_FHIR && m->bundle && strcmp(rtype, "Bundle") != 0)
    gw_diag_add(&m->diag, GW_SEV_ERROR, "invalid", "fhir.resource-type",
                "POST /fhir takes a transaction or batch Bundle",
                "POST /fhir przyjmuje Bundle typu transaction lub batch");
  else if (m->kind == GW_M_FHIR && !m->bundle && m->url_type[0] && strcmp(rtype, m->url_type) != 0)
    gw_diag_add(&m->diag, GW_SEV_ERROR, "invalid", "fhir.resource-type", "the resource type does not match the URL",
                "typ zasobu nie zgadza się z adresem");
  if (m->kind == GW_M_FHIR && m->update) { /* PUT: the body's id, when given, must be the URL's */
    char bid[100] = "";
    gw_facts_str(m->doc, root, "string(f:id/@value)", bid, sizeof(bid));
    struct gw_issue *is =
        bid[0] && strcmp(bid, m->rid) != 0
            ? gw_diag_add(&m->diag, GW_SEV_ERROR, "invalid", "fhir.id-mismatch",
                          "the resource's id differs from the id in the URL", "id zasobu różni się od id w adresie")
            : NULL;
    if (is)
      snprintf(is->location, sizeof(is->location), "%s.id", rtype);
  }
  if (gw_diag_has_errors(&m->diag)) {
    m->rv = GW_ERR_INVAL;
    return GW_STEP_FAIL;
  }
  return GW_STEP_NEXT;
}

static void idem(struct gw_submit *s, const char *caller, const char *kind, const char *v) {
  if (!v || !v[0] || s->idem_key)
    return;
  size_t n = strlen(caller) + strlen(kind) + strlen(v) + 3;
  if (n <= 512 && (s->idem_key = gw_malloc(n)))
    snprintf(s->idem_key, n, "%s|%s|%s", caller, kind, v);
}

/* The keys that make a repeat a repeat: the first the message carries (Idempotency-Key, If-None-Exist,
 * MSH-10, WS-Addressing MessageID), scoped by the caller; and a conditional create's resource. */
static enum gw_step remember(struct gw_pipe *p, struct gw_msg *m) {
  (void)p;
  struct gw_submit *s = m->s = gw_submit_new();
  if (!s)
    return gw_msg_refuse(m, 503, "transient", "gw.no-memory", "out of memory", "brak pamięci");
  snprintf(s->caller, sizeof(s->caller), "%s", m->caller);
  snprintf(s->dialect, sizeof(s->dialect), "%s", gw_dialect_name(m->dialect));
  snprintf(s->op, sizeof(s->op), "%s", m->op);
  snprintf(s->rtype, sizeof(s->rtype), "%s", (const char *)xmlDocGetRootElement(m->doc)->name);
  snprintf(s->rid, sizeof(s->rid), "%s", m->rid);
  idem(s, m->caller, "key", m->idem_header);
  const char *crit = m->if_none_exist;
  if (crit && !strncmp(crit, "identifier=", 11)) { /* matched against what this clinic sent, by the store */
    const char *v = crit + 11, *bar = strchr(v, '|');
    char rkey[200];
    snprintf(rkey, sizeof(rkey), "%s|%s/%.*s", m->caller, s->rtype, (int)strcspn(bar ? bar + 1 : v, "&"),
             bar ? bar + 1 : v);
    if (!(s->match_rkey = gw_strdup(rkey)))
      return gw_msg_refuse(m, 503, "transient", "gw.no-memory", "out of memory", "brak pamięci");
  }
  if (crit) {
    char ine[600];
    snprintf(ine, sizeof(ine), "%s?%s", s->rtype, crit);
    idem(s, m->caller, "if-none-exist", ine);
  }
  if (m->kind == GW_M_HL7 && m->v2) {
    char *msh10 = gw_hl7_get(m->v2, "MSH", 10, 0);
    idem(s, m->caller, "msh10", msh10);
    free(msh10);
  }
  if (m->kind == GW_M_SOAP)
    idem(s, m->caller, "wsa", m->soap_mid);
  return GW_STEP_NEXT;
}

/* Where it goes: the routes of the delivery snapshot in force, or the clinic a notification names. */
static enum gw_step route(struct gw_pipe *p, struct gw_msg *m) {
  (void)p;
  if (!(m->conf = gw_dconf_get()))
    return gw_msg_refuse(m, 503, "transient", "gw.no-configuration", "the delivery configuration is not loaded",
                         "konfiguracja przekazywania nie jest wczytana");
  if (m->kind == GW_M_NOTIFY) {
    char rp[16] = "", en[200];
    gw_facts_payload_rpwdl(m->doc, rp, sizeof(rp));
    const struct gw_backend_conf *bc = rp[0] ? gw_dconf_clinic(m->conf, rp) : NULL;
    if (bc && bc->enabled) {
      m->to[m->nto++] = bc;
      return GW_STEP_NEXT;
    }
    snprintf(en, sizeof(en), "clinic %s has no notification endpoint registered in the configuration",
             rp[0] ? rp : "(none named)");
    gw_diag_add(&m->diag, GW_SEV_ERROR, "not-found", "notify.no-endpoint", en, en);
    m->rv = GW_ERR_INVAL;
    return GW_STEP_FAIL;
  }
  int idx[GW_MAX_BACKENDS];
  int n = gw_route_match(m->conf, m->doc, idx, m->why, sizeof(m->why));
  if (n < 0) /* logged by gw_route_match */
    return gw_msg_refuse(m, 503, "transient", "route.failed",
                         "the message could not be routed: nothing was accepted, send it again",
                         "nie udało się ustalić trasy komunikatu: nic nie zostało przyjęte, wyślij go ponownie");
  for (int i = 0; i < n; i++)
    m->to[m->nto++] = &m->conf->b[idx[i]];
  if (n == 0)
    gw_log(GW_LOG_WARN, "no_route",
           "conn=%llu stream=%d op=%s detail=\"no enabled route matched; stored, delivered nowhere\"",
           (unsigned long long)m->conn_id, (int)m->stream_id, m->op);
  return GW_STEP_NEXT;
}

/* The facts the store and the answer need: slots for the rules with memory, the resource, the entries. */
static enum gw_step facts(struct gw_pipe *p, struct gw_msg *m) {
  (void)p;
  char url[200];
  snprintf(url, sizeof(url), "%s/%s", m->url_type, m->rid);
  if (m->kind != GW_M_NOTIFY) { /* a notification is P1's word about a clinic's resource: no owner to check */
    gw_facts_memory(m->doc, m->s, m->now, &m->late_cancel);
    if (gw_facts_owned(m->doc, m->caller, m->update ? url : NULL, m->s) ||
        gw_facts_resources(m->doc, m->caller, m->update ? m->rid : NULL, m->s))
      return gw_msg_refuse(m, 503, "transient", "gw.no-memory", "out of memory", "brak pamięci");
    m->s->if_match = m->if_match;
  }
  gw_facts_ids(m->doc, m->ids, sizeof(m->ids), m->rkey, sizeof(m->rkey));
  if (gw_facts_pesels(m->doc, m->s))
    return gw_msg_refuse(m, 503, "transient", "gw.no-memory", "out of memory", "brak pamięci");
  if (m->bundle && (m->nentries = gw_facts_entries(m->doc, &m->batch, &m->entries)) < 0)
    return gw_msg_refuse(m, 503, "transient", "gw.no-memory", "out of memory", "brak pamięci");
  return GW_STEP_NEXT;
}

/* A payload per backend, rendered now by its mapping (so a later mapping change does not alter what was
 * accepted); a mapping that fails refuses the whole message. */
static enum gw_step render(struct gw_pipe *p, struct gw_msg *m) {
  char uuid[40];
  gw_random_uuid(uuid);
  struct gw_submit *s = m->s;
  const char *acting = m->kind == GW_M_NOTIFY ? "" : m->caller; /* the clinic of the certificate */
  for (int i = 0; i < m->nto; i++) {
    const struct gw_backend_conf *bc = m->to[i];
    struct gw_delivery *dv = &s->d[s->nd++];
    snprintf(dv->backend, sizeof(dv->backend), "%s", bc->name);
    snprintf(dv->ikey, sizeof(dv->ikey), "%s-%s", uuid, bc->name);
    snprintf(dv->acting, sizeof(dv->acting), "%s", m->caller);
    if (m->rkey[0])
      snprintf(dv->rkey, sizeof(dv->rkey), "%s|%s", m->caller, m->rkey);
    if (gw_backend_kind(bc->kind)->path == GW_PATH_RESOURCE_TYPE && strcmp(s->rtype, "Bundle") != 0)
      snprintf(dv->path, sizeof(dv->path), "/%s", s->rtype);
    struct gw_buf out;
    gw_buf_init(&out, 16u << 20);
    const char *ct = "";
    int rv = gw_engine_outbound(p->e, bc->kind, m->doc, dv->ikey, m->late_cancel, acting, &out, &ct, &m->diag);
    snprintf(dv->ctype, sizeof(dv->ctype), "%s", ct);
    dv->payload = gw_buf_take(&out, &dv->len);
    gw_buf_cleanup(&out);
    if (rv == GW_OK && !dv->payload)
      rv = GW_ERR_NOMEM;
    if (rv != GW_OK) {
      if (!m->diag.n)
        gw_diag_add(&m->diag, GW_SEV_FATAL, "exception", "xform.failed", "a backend mapping failed",
                    "mapowanie nie powiodło się");
      m->rv = GW_ERR_INVAL;
      return GW_STEP_FAIL;
    }
  }
  return GW_STEP_NEXT;
}

static void committed(struct gw_submit *s);

/* To the store: committed (or found a repeat, or refused by a rule with memory) by the writer thread,
 * then delivered; the answer comes when every backend has a first outcome or the deadline passes. */
static enum gw_step commit(struct gw_pipe *p, struct gw_msg *m) {
  struct gw_submit *s = m->s;
  struct gw_buf canon;
  gw_buf_init(&canon, 32u << 20);
  gw_xml_dump(m->doc, 0, 0, &canon);
  s->canonical = gw_buf_take(&canon, &s->canonical_len);
  gw_buf_cleanup(&canon);
  if (s->canonical && s->idem_key) /* what a repeat of the key must carry */
    gw_sha256_hex(s->canonical, s->canonical_len, s->digest);
  if ((s->original = gw_malloc(m->len + 1)))
    memcpy(s->original, m->body, m->len);
  s->original_len = m->len;
  if (!s->original || !s->canonical)
    return gw_msg_refuse(m, 503, "transient", "gw.no-memory", "out of memory: nothing was accepted", "brak pamięci");
  s->deadline_ms = gw_wall_ms() + m->conf->answer_deadline_ms;
  gw_dconf_put(m->conf);
  m->conf = NULL;
  xmlFreeDoc(m->doc); /* the canonical form is in the submit now */
  m->doc = NULL;
  m->body = NULL; /* borrowed no longer */
  m->peer = NULL;
  s->done = committed;
  s->ud = m;
  m->s = NULL; /* the store owns it until committed() */
  gw_store_submit(p->st, s);
  return GW_STEP_WAIT;
}

/* Called once per submit, from the store's or the dispatcher's thread. */
static void committed(struct gw_submit *s) {
  struct gw_msg *m = s->ud;
  m->s = s;
  gw_answer_committed(m->pipe, m);
  if (s->status == GW_SUB_ACCEPTED && m->ans.body)
    gw_store_set_answer(m->pipe->st, s->msg_id, m->ans.status, m->ans.ctype, m->ans.location, m->ans.etag, m->ans.body,
                        m->ans.len);
  audit(m, gw_answer_outcome(m), (long long)s->msg_id);
  gw_answer_negotiate(m->pipe, m);
  m->reply(m->reply_ud, &m->ans);
  gw_msg_free(m);
}

/* ---- GetAppointmentStatus: what the gateway last accepted for an appointment, and how far it got ---- */

static void status_found(void *ud, int rv, const char *canonical, const char *summary) {
  struct gw_msg *m = ud;
  char status[64] = "", st[400], en[300];
  xmlDocPtr c = NULL;
  if (rv == GW_OK && gw_xml_parse(canonical, strlen(canonical), strlen(canonical) + 1, &c, &m->diag) == GW_OK)
    gw_facts_str(c, NULL, "string((//f:Appointment)[1]/f:status/@value)", status, sizeof(status));
  xmlFreeDoc(c);
  if (rv == GW_OK) {
    snprintf(st, sizeof(st), "%s (%s)", status[0] ? status : "unknown", summary);
    gw_answer_status(m->pipe, m, m->rid, st);
  } else {
    snprintf(en, sizeof(en), "appointment %s of clinic %s is not known to the gateway", m->rid, m->caller);
    gw_diag_add(&m->diag, GW_SEV_ERROR, "not-found", "soap.unknown-appointment", en, en);
    m->rv = GW_ERR_INVAL;
    gw_answer_refused(m->pipe, m);
  }
  audit(m, rv == GW_OK ? "answered" : "unknown", 0);
  m->reply(m->reply_ud, &m->ans);
  gw_msg_free(m);
}

static enum gw_step lookup_status(struct gw_pipe *p, struct gw_msg *m) {
  char rkey[200];
  gw_facts_str(m->doc, NULL, "string(//f:valueIdentifier/f:value/@value)", m->rid, sizeof(m->rid));
  snprintf(rkey, sizeof(rkey), "%s|Appointment/%s", m->caller, m->rid);
  m->body = NULL;
  m->peer = NULL;
  gw_store_lookup(p->st, rkey, status_found, m);
  return GW_STEP_WAIT;
}

/* ---- running ---- */

typedef enum gw_step (*stage_fn)(struct gw_pipe *p, struct gw_msg *m);

static const struct stage {
  const char *name;
  stage_fn fn;
} write_stages[] = {{"detect", detect}, {"admit", admit},       {"canonicalise", canonicalise},
                    {"check", check},   {"remember", remember}, {"route", route},
                    {"facts", facts},   {"render", render},     {"commit", commit},
                    {NULL, NULL}},
  status_stages[] = {{"detect", detect},
                     {"admit", admit},
                     {"canonicalise", canonicalise},
                     {"lookup", lookup_status},
                     {NULL, NULL}},
  read_stages[] = {{"admit", admit_read}, {"read", read}, {NULL, NULL}};

bool gw_pipe_run(struct gw_pipe *p, struct gw_msg *m) {
  m->pipe = p;
  const struct stage *st = m->read                                                               ? read_stages
                           : m->kind == GW_M_SOAP && !strcmp(m->soap_op, "GetAppointmentStatus") ? status_stages
                                                                                                 : write_stages;
  for (; st->fn; st++) {
    enum gw_step r = st->fn(p, m);
    if (r == GW_STEP_WAIT)
      return false;
    if (r == GW_STEP_ANSWER)
      break;
    if (r == GW_STEP_FAIL) {
      gw_answer_refused(p, m);
      audit(m, m->status >= 500 ? "unavailable" : "invalid", 0);
      break;
    }
  }
  gw_answer_negotiate(p, m);
  return true;
}
