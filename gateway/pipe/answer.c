/* The one place that renders the pipeline's answers, per dialect: FHIR
 * (OperationOutcome, transaction-response), SOAP 1.1/1.2 (Fault, the
 * operation's response), HL7 v2 (ACK; over MLLP always "200", the frame
 * carries the ACK alone). Each dialect is one row of |dialects|. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/hl7v2.h"
#include "core/buf.h"
#include "core/err.h"
#include "pipe/pipe.h"
#include "validate/rules.h"

#define CT_HL7    "x-application/hl7-v2+er7; charset=utf-8"
#define CT_SOAP11 "text/xml; charset=utf-8"
#define CT_SOAP12 "application/soap+xml; charset=utf-8"

static void take(struct gw_answer *a, int status, const char *ct, struct gw_buf *b) {
  free(a->body);
  a->status = status;
  a->ctype = ct;
  a->body = gw_buf_take(b, &a->len);
  gw_buf_cleanup(b);
}

/* ---- the delivery report ---- */

/* Whether |backend| is a system of record (P1), by the kind of the backend the message was routed to;
 * a name the message's routes do not know counts as one (the answer errs on the side of "not accepted"). */
static bool is_record(const struct gw_msg *m, const char *backend) {
  for (int i = 0; i < m->nto; i++)
    if (!strcmp(m->to[i]->name, backend))
      return gw_backend_kind(m->to[i]->kind)->record;
  return true;
}

static bool res_bad(const struct gw_dresult *r) { return r->state == GW_DS_REJECTED || r->state == GW_DS_DEAD; }

/* Overall state, the acceptance table of docs/delivery.md: rejected when a system of record (P1)
 * rejected the message, else queued when any backend has not got it yet, else delivered. A reporting
 * backend's rejection (SIMP, AP-KOLCE) does not undo the acceptance: |*warn| is set and the answer
 * carries it as a warning. */
static int overall(const struct gw_msg *m, const struct gw_submit *s, bool *warn) {
  int st = GW_DS_DELIVERED;
  *warn = false;
  for (int i = 0; i < s->nres; i++) {
    if (res_bad(&s->res[i]) && is_record(m, s->res[i].backend))
      return GW_DS_REJECTED;
    if (res_bad(&s->res[i]))
      *warn = true;
    else if (s->res[i].state != GW_DS_DELIVERED)
      st = GW_DS_QUEUED;
  }
  return st;
}

static const char *state_word(int st) {
  return st == GW_DS_DELIVERED ? "delivered" : st == GW_DS_QUEUED ? "queued" : "rejected";
}

static void res_text(const struct gw_dresult *r, char *out, size_t n) {
  bool bad = r->state == GW_DS_REJECTED || r->state == GW_DS_DEAD;
  if (r->state == GW_DS_DELIVERED)
    snprintf(out, n, "%s: delivered", r->backend);
  else if (bad && r->last_status)
    snprintf(out, n, "%s rejected the message (HTTP %d): %s", r->backend, r->last_status, r->error);
  else if (bad) /* no HTTP status: MLLP, or no answer at all */
    snprintf(out, n, "%s rejected the message: %s", r->backend, r->error);
  else if (r->attempts)
    snprintf(out, n, "%s: queued for retry after attempt %d (%s)", r->backend, r->attempts, r->error);
  else
    snprintf(out, n, "%s: queued, stored durably", r->backend);
}

/* A system of record's rejection: may the clinic fix the message and send it again (AE), or is
 * resending pointless (AR): the appointment does not exist there (404), is another's (403) or
 * conflicts with its state (409, 410). */
static bool rejection_final(const struct gw_dresult *r) {
  return r->last_status == 403 || r->last_status == 404 || r->last_status == 409 || r->last_status == 410;
}

/* The delivery report as a diag: information for delivered/queued; an error for a system of record's
 * rejection, a warning for a reporting backend's (|bad_only|: only those). */
static void res_diag(const struct gw_msg *m, const struct gw_submit *s, struct gw_diag *d, bool bad_only) {
  for (int i = 0; i < s->nres; i++) {
    const struct gw_dresult *r = &s->res[i];
    char en[400], rule[48];
    bool bad = res_bad(r), record = bad && is_record(m, r->backend);
    if (bad_only && !bad)
      continue;
    res_text(r, en, sizeof(en));
    if (bad && !record)
      snprintf(en + strlen(en), sizeof(en) - strlen(en), "%s",
               "; the message stands accepted, the gateway keeps the report and follows it up (retry or dead "
               "letter for the operator)");
    snprintf(rule, sizeof(rule), "delivery.%s", bad ? "rejected" : state_word(r->state));
    struct gw_issue *is = gw_diag_add(d,
                                      record ? GW_SEV_ERROR
                                      : bad  ? GW_SEV_WARNING
                                             : GW_SEV_INFO,
                                      bad ? "processing" : "informational", rule, en, en);
    if (is) {
      is->hl7_code = bad ? 207 : 0;
      is->resendable = record && !rejection_final(r);
    }
  }
}

/* What the gateway noticed while keeping the message, as warnings: a change (cancellation, reschedule)
 * of an appointment it had never seen — forwarded, since P1 decides, but said (rule
 * cer.appointment-unknown, HL7 204 unknown key identifier). */
static void memory_notes(const struct gw_pipe *p, const struct gw_msg *m, struct gw_diag *d) {
  const struct gw_submit *s = m->s;
  if (!s->appt_unknown || s->status == GW_SUB_DUPLICATE)
    return;
  const struct gw_rules *r = gw_engine_rules(gw_pipe_engine(p));
  const char *id = strrchr(s->appt_key, '|'), *colon = strchr(s->appt_key, ':');
  id = id ? id + 1 : colon ? colon + 1 : s->appt_key;
  char en[256], pl[256];
  gw_rules_text(r, "cer.appointment-unknown", id, NULL, en, sizeof(en), pl, sizeof(pl));
  const struct gw_rule_info *ri = gw_rules_info(r, "cer.appointment-unknown");
  struct gw_issue *is = gw_diag_add(d, GW_SEV_WARNING, ri ? ri->code : "not-found", "cer.appointment-unknown", en, pl);
  if (is) {
    is->hl7_code = ri ? ri->hl7_code : 204;
    is->resendable = false;
    snprintf(is->location, sizeof(is->location), "%s", !ri ? "" : m->kind == GW_M_HL7 ? ri->loc_hl7 : ri->loc_fhir);
  }
}

/* Where a resource now lives: {prefix}{type}/{id}/_history/{version}, with the id and version the store
 * gave the resource of Bundle entry |entry| (-1: a resource alone) — one id per resource whichever way it
 * was written, the version after the last — and its ETag W/"{version}" in |etag|. A resource the store
 * keeps no version of (a PATCH of one never seen, a Patient) gets its id or identifier, version 1. */
static void location(const struct gw_submit *s, char *out, size_t n, char *etag, size_t en, const char *prefix,
                     const char *type, const char *id, int entry) {
  for (int i = 0; i < s->nresf; i++)
    if (s->resf[i].entry == entry && s->resf[i].out_version) {
      snprintf(out, n, "%s%s/%s/_history/%d", prefix, s->resf[i].rtype, s->resf[i].out_id, s->resf[i].out_version);
      snprintf(etag, en, "W/\"%d\"", s->resf[i].out_version);
      return;
    }
  if (id[0])
    snprintf(out, n, "%s%s/%s/_history/1", prefix, type, id);
  else if (entry < 0)
    snprintf(out, n, "%s%s/cergw-%lld/_history/1", prefix, type, (long long)s->msg_id);
  else
    snprintf(out, n, "%s%s/cergw-%lld-%d/_history/1", prefix, type, (long long)s->msg_id, entry);
  snprintf(etag, en, "W/\"1\"");
}

/* ---- FHIR ---- */

static void fhir_refused(const struct gw_pipe *p, struct gw_msg *m, const char *text) {
  (void)text;
  struct gw_buf out;
  gw_buf_init(&out, 8u << 20);
  gw_engine_outcome_json(gw_pipe_engine(p), &m->diag, 1, &out);
  take(&m->ans, m->status ? m->status : m->rv == GW_ERR_NOTFOUND ? 501 : 422, CT_FHIR_JSON, &out);
}

/* A transaction answers with a transaction-response Bundle, one entry per entry sent. */
static int tx_response(const struct gw_pipe *p, struct gw_msg *m, const struct gw_diag *d, int status,
                       struct gw_buf *out) {
  int n = m->nentries;
  char(*buf)[200] = calloc((size_t)n + 1, sizeof(*buf));
  char(*tags)[32] = calloc((size_t)n + 1, sizeof(*tags));
  const char **locs = calloc((size_t)n + 1, sizeof(*locs)), **etags = calloc((size_t)n + 1, sizeof(*etags));
  int rv = GW_ERR_NOMEM;
  for (int i = 0; buf && tags && locs && etags && i < n; i++) {
    const struct gw_msg_entry *e = &m->entries[i];
    if (!e->type[0])
      snprintf(buf[i], sizeof(buf[i]), "%s", e->url); /* an entry without a resource keeps its request URL */
    else
      location(m->s, buf[i], sizeof(buf[i]), tags[i], sizeof(tags[i]), "", e->type, e->id, i);
    locs[i] = buf[i];
    etags[i] = tags[i];
  }
  if (buf && tags && locs && etags)
    rv = gw_engine_tx_response_json(gw_pipe_engine(p), d, n, locs, etags,
                                    status == 202 ? "202 Accepted" : "201 Created", m->batch, 1, out);
  free(buf);
  free(tags);
  free(locs);
  free(etags);
  return rv;
}

static void fhir_committed(const struct gw_pipe *p, struct gw_msg *m) {
  const struct gw_submit *s = m->s;
  struct gw_diag d;
  gw_diag_init(&d, 32);
  res_diag(m, s, &d, false);
  memory_notes(p, m, &d);
  if (s->status == GW_SUB_DUPLICATE)
    gw_diag_add(&d, GW_SEV_INFO, "informational", "delivery.duplicate",
                "a repeat of an earlier message: nothing was delivered again",
                "powtórzenie wcześniejszego komunikatu: nic nie zostało wysłane ponownie");
  bool warn;
  int st = overall(m, s, &warn);
  int status = st == GW_DS_REJECTED ? 422 : st == GW_DS_QUEUED ? 202 : (m->update ? 200 : 201);
  if (s->status == GW_SUB_DUPLICATE && status != 422)
    status = 200;
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  if (m->bundle && status != 422 && tx_response(p, m, &d, status, &out) == GW_OK)
    status = status == 202 ? 202 : 200;
  else
    gw_engine_outcome_json(gw_pipe_engine(p), &d, 1, &out);
  take(&m->ans, status, CT_FHIR_JSON, &out);
  if (!m->bundle && status != 422) {
    location(s, m->ans.location, sizeof(m->ans.location), m->ans.etag, sizeof(m->ans.etag), "/fhir/", m->s->rtype,
             m->rid, -1);
  }
  gw_diag_cleanup(&d);
}

/* ---- SOAP ---- */

static const char *soap_ctype(const struct gw_msg *m) { return m->soap_version == 12 ? CT_SOAP12 : CT_SOAP11; }

static void soap_refused(const struct gw_pipe *p, struct gw_msg *m, const char *text) {
  (void)p;
  struct gw_buf out;
  gw_buf_init(&out, 8u << 20);
  gw_engine_soap_fault(&m->diag, m->soap_version, text, &out);
  take(&m->ans, m->status ? m->status : m->soap_version == 12 ? 400 : 500, soap_ctype(m), &out);
}

static void soap_committed(const struct gw_pipe *p, struct gw_msg *m) {
  const struct gw_submit *s = m->s;
  bool warn;
  int st = overall(m, s, &warn);
  if (st == GW_DS_REJECTED) {
    res_diag(m, s, &m->diag, false);
    soap_refused(p, m, "a backend rejected the message: see the issues in the detail");
    return;
  }
  struct gw_soap_delivery d[GW_MAX_BACKENDS];
  char txt[GW_MAX_BACKENDS][400];
  for (int i = 0; i < s->nres; i++) {
    res_text(&s->res[i], txt[i], sizeof(txt[i]));
    d[i] = (struct gw_soap_delivery){s->res[i].backend, gw_dstate_name(s->res[i].state), txt[i]};
  }
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  struct gw_diag notes;
  gw_diag_init(&notes, 16);
  if (warn)
    res_diag(m, s, &notes, true);
  memory_notes(p, m, &notes);
  gw_engine_soap_accepted(m->soap_version, m->soap_op, state_word(st), (long long)s->msg_id, s->nres, d, &notes, &out);
  gw_diag_cleanup(&notes);
  take(&m->ans, st == GW_DS_QUEUED ? 202 : 200, soap_ctype(m), &out);
}

/* ---- HL7 v2 ---- */

/* Whether acknowledgment condition |v| (table 0155: AL always, NE never, ER on error, SU on success;
 * empty: AL) asks for an acknowledgment of an outcome that is |ok|. */
static bool ack_wanted(const char *v, bool ok) {
  if (!v || !*v || !strcmp(v, "AL"))
    return true;
  return (!strcmp(v, "ER") && !ok) || (!strcmp(v, "SU") && ok);
}

/* The ACK of |m|. Original mode (MSH-15 and MSH-16 empty): the application acknowledgment |code|.
 * Enhanced mode: the accept (commit) acknowledgment when MSH-15 asks for it — CA when the message is
 * stored (|code| AA, or the delivery outcome the text reports), CE when refused and worth fixing, CR when
 * not — else the application acknowledgment when MSH-16 asks for it, else none (HTTP 204; nothing on
 * MLLP). */
static void ack(struct gw_msg *m, enum gw_hl7_ack code, const char *text, const struct gw_diag *d, int status,
                bool committed) {
  char *m15 = m->v2 ? gw_hl7_get(m->v2, "MSH", 15, 1) : NULL, *m16 = m->v2 ? gw_hl7_get(m->v2, "MSH", 16, 1) : NULL;
  bool enhanced = (m15 && *m15) || (m16 && *m16);
  if (enhanced) {
    bool ok = committed || code == GW_ACK_AA;
    if (ack_wanted(m15, ok))
      code = committed ? GW_ACK_CA : code == GW_ACK_AR ? GW_ACK_CR : GW_ACK_CE;
    else if (!ack_wanted(m16, code == GW_ACK_AA))
      status = -1;
  }
  free(m15);
  free(m16);
  if (status < 0) {
    struct gw_buf none;
    gw_buf_init(&none, 1);
    take(&m->ans, m->mllp ? 200 : 204, CT_HL7, &none);
    return;
  }
  char stamp[20], ctrl[24];
  gw_hl7_now(stamp, sizeof(stamp));
  gw_hl7_control_id(ctrl, sizeof(ctrl));
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  gw_hl7_ack(m->v2, code, text, d, ctrl, stamp, &out);
  take(&m->ans, m->mllp ? 200 : status, CT_HL7, &out);
}

static void hl7_refused(const struct gw_pipe *p, struct gw_msg *m, const char *text) {
  (void)p;
  ack(m, gw_hl7_ack_code_for(&m->diag), text, &m->diag, m->status ? m->status : 422, false);
}

static void hl7_committed(const struct gw_pipe *p, struct gw_msg *m) {
  (void)p;
  const struct gw_submit *s = m->s;
  char text[400] = "";
  bool warn;
  int st = overall(m, s, &warn);
  /* AA: stored and not rejected by P1 (a reporting backend's rejection is an ERR with severity W);
   * P1's rejection: AE when the clinic can fix and resend, AR when resending cannot help */
  size_t o = (size_t)snprintf(text, sizeof(text), "%s",
                              st == GW_DS_REJECTED            ? "not accepted: "
                              : s->status == GW_SUB_DUPLICATE ? "duplicate of an earlier message, not resent: "
                                                              : "accepted: ");
  for (int i = 0; i < s->nres && o < sizeof(text); i++)
    o += (size_t)snprintf(text + o, sizeof(text) - o, "%s%s=%s", i ? " " : "", s->res[i].backend,
                          gw_dstate_name(s->res[i].state));
  struct gw_diag d;
  gw_diag_init(&d, 32);
  if (st == GW_DS_REJECTED || warn)
    res_diag(m, s, &d, true);
  memory_notes(p, m, &d);
  ack(m, st == GW_DS_REJECTED ? gw_hl7_ack_code_for(&d) : GW_ACK_AA, text, &d, 200, true);
  gw_diag_cleanup(&d);
}

/* ---- by dialect ---- */

struct dialect {
  void (*refused)(const struct gw_pipe *p, struct gw_msg *m, const char *text);
  void (*committed)(const struct gw_pipe *p, struct gw_msg *m);
};

static const struct dialect dialects[] = {
    [GW_M_FHIR] = {fhir_refused, fhir_committed},
    [GW_M_SOAP] = {soap_refused, soap_committed},
    [GW_M_HL7] = {hl7_refused, hl7_committed},
    [GW_M_NOTIFY] = {fhir_refused, fhir_committed},
};

/* The HTTP status the registry gives the first error that has one other than 422 (cer.identity-match: 403). */
static int registry_status(const struct gw_pipe *p, const struct gw_diag *d) {
  const struct gw_rules *r = gw_engine_rules(gw_pipe_engine(p));
  for (size_t i = 0; r && i < d->n; i++) {
    const struct gw_rule_info *ri = d->items[i].severity <= GW_SEV_ERROR ? gw_rules_info(r, d->items[i].rule) : NULL;
    if (ri && ri->http_status != 422)
      return ri->http_status;
  }
  return 0;
}

void gw_answer_refused(const struct gw_pipe *p, struct gw_msg *m) {
  if (!m->status && m->kind != GW_M_SOAP && !(m->kind == GW_M_HL7 && m->mllp))
    m->status = registry_status(p, &m->diag);
  const char *text =
      m->kind == GW_M_SOAP ? "the message was rejected: see the issues in the detail" : "invalid: not accepted";
  dialects[m->kind].refused(p, m, text);
}

/* A rule with memory refused the message, or the store failed: nothing was accepted. */
static void store_refused(const struct gw_pipe *p, struct gw_msg *m) {
  const struct gw_submit *s = m->s;
  bool failed = s->status == GW_SUB_FAILED;
  const struct gw_rule_info *ri = failed ? NULL : gw_rules_info(gw_engine_rules(gw_pipe_engine(p)), s->reject_rule);
  struct gw_issue *is =
      failed && s->reject_en[0] /* the store said why (full) */
          ? gw_diag_add(&m->diag, GW_SEV_FATAL, "transient", "store.full", s->reject_en, s->reject_pl)
          : failed ? gw_diag_add(&m->diag, GW_SEV_FATAL, "transient", "store.failed",
                                 "the message could not be stored: nothing was accepted, send it again",
                                 "nie udało się zapisać komunikatu: nic nie zostało przyjęte, wyślij go ponownie")
                   : gw_diag_add(&m->diag, GW_SEV_ERROR, ri ? ri->code : "business-rule", s->reject_rule, s->reject_en,
                                 s->reject_pl);
  if (is) {
    is->hl7_code = ri ? ri->hl7_code : 207;
    is->resendable = ri ? ri->resendable : true;
    snprintf(is->location, sizeof(is->location), "%s", !ri ? "" : m->kind == GW_M_HL7 ? ri->loc_hl7 : ri->loc_fhir);
  }
  if (m->kind == GW_M_HL7) { /* AE: fix and resend; AR: must not be resent as is (acting for another clinic) */
    ack(m, gw_hl7_ack_code_for(&m->diag), failed ? "not stored" : "rejected", &m->diag, 200, false);
    return;
  }
  m->status = failed ? 503 : (ri && m->kind != GW_M_SOAP) ? ri->http_status : 0;
  dialects[m->kind].refused(p, m, failed ? "not stored" : "the message breaks a CeR rule");
}

/* The idempotency key (MSH-10, Idempotency-Key, WS-Addressing MessageID) was used before for other
 * content: refused — never taken for a repeat and dropped. FHIR 422 (as the Idempotency-Key draft
 * says), SOAP Fault, HL7 AR with ERR-3 205 (duplicate key identifier) at MSH-10. */
static void conflict(const struct gw_pipe *p, struct gw_msg *m) {
  char en[300], pl[300];
  snprintf(en, sizeof(en),
           "this message's key (MSH-10, Idempotency-Key or MessageID) was used for another message (number %lld) "
           "with other content: nothing was accepted; send it with a new key",
           (long long)m->s->msg_id);
  snprintf(pl, sizeof(pl),
           "klucz komunikatu (MSH-10, Idempotency-Key lub MessageID) użyto już dla innego komunikatu (nr %lld) o innej "
           "treści: nic nie przyjęto; wyślij go z nowym kluczem",
           (long long)m->s->msg_id);
  struct gw_issue *is = gw_diag_add(&m->diag, GW_SEV_ERROR, "conflict", "idempotency.key-reused", en, pl);
  if (is) {
    is->hl7_code = 205;
    is->resendable = false;
    snprintf(is->location, sizeof(is->location), "%s", m->kind == GW_M_HL7 ? "MSH-10" : "");
  }
  m->status = m->kind == GW_M_HL7 ? 200 : 0;
  dialects[m->kind].refused(p, m, "the message's key was used before for other content");
}

/* A conditional create that matched what this clinic sent before: nothing was created. */
static void matched(const struct gw_pipe *p, struct gw_msg *m) {
  char en[400];
  snprintf(en, sizeof(en), "a %s matching %s exists already (%s): nothing was created", m->s->rtype,
           m->if_none_exist ? m->if_none_exist : "the criteria", m->s->match_summary);
  gw_diag_add(&m->diag, GW_SEV_INFO, "informational", "fhir.conditional-match", en, en);
  struct gw_buf out;
  gw_buf_init(&out, 1u << 20);
  gw_engine_outcome_json(gw_pipe_engine(p), &m->diag, 1, &out);
  take(&m->ans, 200, CT_FHIR_JSON, &out);
  const char *bar = strchr(m->s->match_rkey, '|');
  snprintf(m->ans.location, sizeof(m->ans.location), "/fhir/%s", bar ? bar + 1 : m->s->match_rkey);
}

void gw_answer_committed(const struct gw_pipe *p, struct gw_msg *m) {
  struct gw_submit *s = m->s;
  if (s->status == GW_SUB_DUPLICATE && s->answer) { /* the answer first given, as it was */
    free(m->ans.body);
    m->ans = (struct gw_answer){.status = s->answer_status, .body = s->answer, .len = s->answer_len, .replay = true};
    snprintf(m->ans.location, sizeof(m->ans.location), "%s", s->answer_location); /* as first given */
    snprintf(m->ans.etag, sizeof(m->ans.etag), "%s", s->answer_etag);
    m->ans.ctype = !strcmp(s->answer_ctype, CT_FHIR_JSON) ? CT_FHIR_JSON
                   : !strcmp(s->answer_ctype, CT_HL7)     ? CT_HL7
                   : !strcmp(s->answer_ctype, CT_SOAP11)  ? CT_SOAP11
                   : !strcmp(s->answer_ctype, CT_SOAP12)  ? CT_SOAP12
                                                          : "application/octet-stream";
    s->answer = NULL;
  } else if (s->status == GW_SUB_REJECTED || s->status == GW_SUB_FAILED) {
    store_refused(p, m);
  } else if (s->status == GW_SUB_MATCHED) {
    matched(p, m);
  } else if (s->status == GW_SUB_CONFLICT) {
    conflict(p, m);
  } else if (s->status == GW_SUB_PRECONDITION) {
    char en[200], pl[200];
    snprintf(en, sizeof(en), "If-Match names version %d, but the current version is %d: nothing was changed",
             s->if_match, s->current_version);
    snprintf(pl, sizeof(pl), "If-Match wskazuje wersję %d, a bieżąca wersja to %d: nic nie zmieniono", s->if_match,
             s->current_version);
    gw_diag_add(&m->diag, GW_SEV_ERROR, "conflict", "fhir.version-conflict", en, pl);
    m->status = 412;
    dialects[m->kind].refused(p, m, "version conflict");
  } else {
    dialects[m->kind].committed(p, m);
  }
}

void gw_answer_negotiate(const struct gw_pipe *p, struct gw_msg *m) {
  struct gw_answer *a = &m->ans;
  if (m->kind != GW_M_FHIR || !a->body || !a->ctype || strcmp(a->ctype, CT_FHIR_JSON))
    return;
  if (m->prefer == 1 && a->status >= 200 && a->status < 300 && !m->read) { /* Prefer: return=minimal */
    free(a->body);
    a->body = NULL;
    a->len = 0;
    return;
  }
  if (!m->want_xml)
    return;
  struct gw_buf out;
  gw_buf_init(&out, 32u << 20);
  if (gw_engine_json_as_xml(gw_pipe_engine(p), a->body, a->len, &out) == GW_OK) {
    free(a->body);
    a->body = gw_buf_take(&out, &a->len);
    a->ctype = CT_FHIR_XML;
  }
  gw_buf_cleanup(&out);
}

void gw_answer_status(const struct gw_pipe *p, struct gw_msg *m, const char *id, const char *status) {
  (void)p;
  struct gw_buf b;
  gw_buf_init(&b, 1 << 20);
  gw_engine_soap_status(m->soap_version, id, status, &b);
  take(&m->ans, 200, soap_ctype(m), &b);
}

const char *gw_answer_outcome(const struct gw_msg *m) {
  const struct gw_submit *s = m->s;
  bool warn;
  if (!s)
    return "invalid";
  return s->status == GW_SUB_DUPLICATE      ? "duplicate"
         : s->status == GW_SUB_REJECTED     ? s->reject_rule
         : s->status == GW_SUB_FAILED       ? "store-failed"
         : s->status == GW_SUB_MATCHED      ? "conditional-match"
         : s->status == GW_SUB_CONFLICT     ? "idempotency-key-reused"
         : s->status == GW_SUB_PRECONDITION ? "version-conflict"
                                            : state_word(overall(m, s, &warn));
}
