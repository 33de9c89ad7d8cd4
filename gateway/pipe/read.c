/* FHIR reads of a clinic's own resources: read, vread, _history and search of
 * the Schedules, Slots and Appointments it sent through the gateway, each
 * version with the delivery state of the message that wrote it. The store
 * answers from its thread (gw_store_read); the answer is built here, in FHIR
 * XML, and rendered as JSON or XML as the client asked. */
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/xml.h"
#include "core/err.h"
#include "core/log.h"
#include "core/query.h"
#include "pipe/pipe.h"
#include "validate/rules.h"

#define DELIVERY_EXT "http://cergw.pl/fhir/StructureDefinition/delivery"

static void add_value(xmlNodePtr parent, const char *name, const char *value) {
  xmlNodePtr n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);
  if (n)
    xmlSetProp(n, BAD_CAST "value", BAD_CAST value);
}

static void instant(int64_t ms, char *out, size_t n) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%03dZ", (int)(ms % 1000));
}

/* A stored version as the resource it is: its id, and meta with versionId, lastUpdated, the message it came
 * from (source) and the delivery state of that message per backend (extension). NULL when unreadable. */
static xmlNodePtr resource_of(xmlDocPtr doc, const struct gw_rrow *r) {
  xmlDocPtr one = NULL;
  struct gw_diag d;
  gw_diag_init(&d, 2);
  int rv = gw_xml_parse((const char *)r->body, r->len, r->len + 1, &one, &d);
  gw_diag_cleanup(&d);
  xmlNodePtr root = rv == GW_OK ? xmlDocGetRootElement(one) : NULL;
  xmlNodePtr res = root ? xmlDocCopyNode(root, doc, 1) : NULL;
  xmlFreeDoc(one);
  if (!res)
    return NULL;
  for (xmlNodePtr c = res->children, next; c; c = next) { /* the stored id and meta give way to these */
    next = c->next;
    if (c->type == XML_ELEMENT_NODE && (xmlStrEqual(c->name, BAD_CAST "id") || xmlStrEqual(c->name, BAD_CAST "meta"))) {
      xmlUnlinkNode(c);
      xmlFreeNode(c);
    }
  }
  xmlNodePtr first = res->children;
  xmlNodePtr id = xmlNewDocNode(doc, res->ns, BAD_CAST "id", NULL); /* in the resource's (FHIR) namespace */
  xmlSetProp(id, BAD_CAST "value", BAD_CAST r->id);
  xmlNodePtr meta = xmlNewDocNode(doc, res->ns, BAD_CAST "meta", NULL);
  xmlNodePtr ext = xmlNewChild(meta, NULL, BAD_CAST "extension", NULL);
  xmlSetProp(ext, BAD_CAST "url", BAD_CAST DELIVERY_EXT);
  add_value(ext, "valueString", r->summary[0] ? r->summary : "no backend");
  char v[16], when[40], src[64];
  snprintf(v, sizeof(v), "%d", r->version);
  add_value(meta, "versionId", v);
  instant(r->updated_ms, when, sizeof(when));
  add_value(meta, "lastUpdated", when);
  snprintf(src, sizeof(src), "urn:cergw:message:%lld", (long long)r->msg_id);
  add_value(meta, "source", src);
  if (first) {
    xmlAddPrevSibling(first, id);
    xmlAddPrevSibling(first, meta);
  } else {
    xmlAddChild(res, id);
    xmlAddChild(res, meta);
  }
  xmlReconciliateNs(doc, res);
  return res;
}

static void answer(struct gw_msg *m, int status, xmlDocPtr doc) {
  struct gw_buf out;
  gw_buf_init(&out, 32u << 20);
  int rv = gw_engine_render(gw_pipe_engine(m->pipe), doc, m->want_xml ? GW_D_FHIR_XML : GW_D_FHIR_JSON, 1, 0, &out,
                            &m->diag);
  m->ans.status = rv == GW_OK ? status : 500;
  m->ans.ctype = m->want_xml ? CT_FHIR_XML : CT_FHIR_JSON;
  free(m->ans.body);
  m->ans.body = gw_buf_take(&out, &m->ans.len);
  gw_buf_cleanup(&out);
}

/* The query string of a search, again, with another offset: the link to a page. */
static void page_url(const struct gw_msg *m, int offset, char *out, size_t n) {
  size_t o = (size_t)snprintf(out, n, "%s?", m->url_type);
  const char *q = m->query;
  while (q && *q && o < n) {
    size_t len = strcspn(q, "&");
    if (strncmp(q, "_offset=", 8) && strncmp(q, "_format=", 8) && len)
      o += (size_t)snprintf(out + o, n - o, "%.*s&", (int)len, q);
    q += len + (q[len] == '&');
  }
  if (o < n)
    snprintf(out + o, n - o, "_offset=%d", offset);
}

static void read_done(void *ud, int rv, const struct gw_rrow *rows, int n, int total) {
  struct gw_msg *m = ud;
  const struct gw_rquery *q = &m->rq;
  if (rv == GW_ERR_NOTFOUND || (rv == GW_OK && !q->search && !q->history && n == 0)) {
    char en[300], pl[300];
    snprintf(en, sizeof(en), "%s/%s%s is not known to the gateway among the resources clinic %s sent", q->rtype, q->id,
             q->version ? " in that version" : "", m->caller);
    snprintf(pl, sizeof(pl), "%s/%s%s nie jest znany bramce wśród zasobów wysłanych przez poradnię %s", q->rtype, q->id,
             q->version ? " w tej wersji" : "", m->caller);
    gw_diag_add(&m->diag, GW_SEV_ERROR, "not-found", "fhir.not-found", en, pl);
    m->status = 404;
    gw_answer_refused(m->pipe, m);
  } else if (rv != GW_OK) {
    gw_diag_add(&m->diag, GW_SEV_FATAL, "transient", "store.failed", "the store could not be read: try again",
                "nie udało się odczytać magazynu: spróbuj ponownie");
    m->status = 503;
    gw_answer_refused(m->pipe, m);
  } else {
    gw_log(GW_LOG_INFO, "audit", "%s op=%s outcome=answered rows=%d total=%d", m->who, m->op, n, total);
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    if (!q->search && !q->history) { /* read, vread */
      char etag[32];
      snprintf(etag, sizeof(etag), "W/\"%d\"", rows[0].version);
      if (m->if_none_match[0] && !strcmp(m->if_none_match, etag)) {
        m->ans.status = 304; /* the client has this version */
      } else {
        xmlNodePtr res = resource_of(doc, &rows[0]);
        if (res)
          xmlDocSetRootElement(doc, res);
        answer(m, res ? 200 : 500, doc);
      }
      snprintf(m->ans.etag, sizeof(m->ans.etag), "%s", etag);
      snprintf(m->ans.location, sizeof(m->ans.location), "/fhir/%s/%s/_history/%d", q->rtype, rows[0].id,
               rows[0].version);
    } else { /* a searchset, or a history */
      xmlNodePtr b = xmlNewDocNode(doc, NULL, BAD_CAST "Bundle", NULL);
      xmlDocSetRootElement(doc, b);
      xmlSetNs(b, xmlNewNs(b, BAD_CAST "http://hl7.org/fhir", NULL));
      add_value(b, "type", q->history ? "history" : "searchset");
      char num[16], url[600];
      snprintf(num, sizeof(num), "%d", total);
      add_value(b, "total", num);
      xmlNodePtr self = xmlNewChild(b, NULL, BAD_CAST "link", NULL);
      add_value(self, "relation", "self");
      if (q->history)
        snprintf(url, sizeof(url), "%s/%s/_history", q->rtype, q->id);
      else
        page_url(m, q->offset, url, sizeof(url));
      add_value(self, "url", url);
      if (!q->history && q->offset + n < total) {
        xmlNodePtr next = xmlNewChild(b, NULL, BAD_CAST "link", NULL);
        add_value(next, "relation", "next");
        page_url(m, q->offset + n, url, sizeof(url));
        add_value(next, "url", url);
      }
      for (int i = 0; i < n; i++) {
        xmlNodePtr e = xmlNewChild(b, NULL, BAD_CAST "entry", NULL);
        snprintf(url, sizeof(url), "%s/%s", q->rtype, rows[i].id);
        add_value(e, "fullUrl", url);
        xmlNodePtr res = resource_of(doc, &rows[i]);
        if (res)
          xmlAddChild(xmlNewChild(e, NULL, BAD_CAST "resource", NULL), res);
        if (q->history) {
          xmlNodePtr rq = xmlNewChild(e, NULL, BAD_CAST "request", NULL);
          add_value(rq, "method", rows[i].version == 1 ? "POST" : "PUT");
          add_value(rq, "url", url);
          xmlNodePtr rs = xmlNewChild(e, NULL, BAD_CAST "response", NULL);
          add_value(rs, "status", rows[i].version == 1 ? "201" : "200");
          char etag[32];
          snprintf(etag, sizeof(etag), "W/\"%d\"", rows[i].version);
          add_value(rs, "etag", etag);
        } else {
          add_value(xmlNewChild(e, NULL, BAD_CAST "search", NULL), "mode", "match");
        }
      }
      xmlReconciliateNs(doc, b);
      answer(m, 200, doc);
    }
    xmlFreeDoc(doc);
  }
  gw_answer_negotiate(m->pipe, m);
  m->reply(m->reply_ud, &m->ans);
  gw_msg_free(m);
}

/* A date parameter: [ge|gt|le|lt|eq]YYYY-MM-DD[Thh:mm:ss+zz:zz] into [from, to) in milliseconds. */
static int date_param(const char *v, int64_t *ge, int64_t *lt) {
  char pre[3] = "eq";
  if (strlen(v) > 2 && v[0] >= 'a' && v[0] <= 'z') {
    memcpy(pre, v, 2);
    v += 2;
  }
  char buf[40];
  time_t t;
  bool day = strlen(v) == 10;
  snprintf(buf, sizeof(buf), day ? "%sT00:00:00Z" : "%s", v);
  if (gw_instant_parse(buf, &t))
    return GW_ERR_INVAL;
  int64_t at = (int64_t)t * 1000, next = at + (day ? 86400000LL : 1000);
  if (!strcmp(pre, "ge") || !strcmp(pre, "gt"))
    *ge = !strcmp(pre, "gt") ? next : at;
  else if (!strcmp(pre, "le") || !strcmp(pre, "lt"))
    *lt = !strcmp(pre, "le") ? next : at;
  else if (!strcmp(pre, "eq")) {
    *ge = at;
    *lt = next;
  } else
    return GW_ERR_INVAL;
  return GW_OK;
}

/* %XX in a query value. */
int gw_read_query(struct gw_msg *m, char *why, size_t wn) {
  struct gw_rquery *q = &m->rq;
  for (const char *p = m->query; p && *p;) {
    size_t len = strcspn(p, "&"), eq = strcspn(p, "=");
    char name[40], val[200];
    snprintf(name, sizeof(name), "%.*s", (int)(eq < len ? eq : len), p);
    gw_url_unescape(eq < len ? p + eq + 1 : "", eq < len ? len - eq - 1 : 0, val, sizeof(val));
    p += len + (p[len] == '&');
    if (!name[0])
      continue;
    if (!strcmp(name, "identifier")) {
      char *bar = strchr(val, '|');
      if (bar && bar > val) {
        *bar = 0;
        char norm[200];
        gw_system_normalize(val, norm, sizeof(norm));
        snprintf(q->ident, sizeof(q->ident), "%s|%s", norm, bar + 1);
      } else {
        snprintf(q->identvalue, sizeof(q->identvalue), "%s", bar ? bar + 1 : val);
      }
    } else if (!strcmp(name, "status")) {
      snprintf(q->status, sizeof(q->status), "%s", val);
    } else if (!strcmp(name, "actor") || !strcmp(name, "schedule") || !strcmp(name, "practitioner") ||
               !strcmp(name, "patient") || !strcmp(name, "slot")) {
      const char *type = !strcmp(name, "schedule")       ? "Schedule/"
                         : !strcmp(name, "practitioner") ? "Practitioner/"
                         : !strcmp(name, "patient")      ? "Patient/"
                         : !strcmp(name, "slot")         ? "Slot/"
                                                         : "";
      snprintf(q->ref, sizeof(q->ref), "%s%s", strchr(val, '/') ? "" : type, val);
    } else if (!strcmp(name, "date") || !strcmp(name, "start")) {
      if (date_param(val, &q->date_ge, &q->date_lt)) {
        snprintf(why, wn, "%s=%s is not a FHIR date search value (as ge2026-12-01)", name, val);
        return GW_ERR_INVAL;
      }
    } else if (!strcmp(name, "_lastUpdated")) {
      if (date_param(val, &q->updated_ge, &q->updated_lt)) {
        snprintf(why, wn, "_lastUpdated=%s is not a FHIR date search value", val);
        return GW_ERR_INVAL;
      }
    } else if (!strcmp(name, "_count")) {
      q->count = atoi(val);
    } else if (!strcmp(name, "_offset")) {
      q->offset = atoi(val);
    } else if (!strcmp(name, "_id")) {
      snprintf(q->id, sizeof(q->id), "%s", val);
    } else if (!strcmp(name, "_format") || !strcmp(name, "_pretty") || !strcmp(name, "_summary")) {
      /* _format read by the router; the others change nothing here */
    } else {
      snprintf(why, wn,
               "search parameter %s is not supported (identifier, status, date, actor, schedule, slot, "
               "_lastUpdated, _id, _count, _offset are)",
               name);
      return GW_ERR_INVAL;
    }
  }
  return GW_OK;
}

enum gw_step gw_read_stage(struct gw_pipe *p, struct gw_store *st, struct gw_msg *m) {
  (void)p;
  snprintf(m->rq.clinic, sizeof(m->rq.clinic), "%s", m->caller);
  snprintf(m->rq.rtype, sizeof(m->rq.rtype), "%s", m->url_type);
  gw_store_read(st, &m->rq, read_done, m);
  return GW_STEP_WAIT;
}
