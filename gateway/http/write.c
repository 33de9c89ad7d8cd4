#include "http/write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "http/router.h"

static struct gw_pipe *pipeline;

void gw_write_init(const struct gw_engine *e, struct gw_store *st) {
  gw_pipe_free(pipeline);
  pipeline = gw_pipe_new(e, st);
}

void gw_write_cleanup(void) {
  gw_pipe_free(pipeline);
  pipeline = NULL;
}

/* The SOAP operations the pipeline takes (the WSDL's clinic port, besides ValidateMessage). */
static const char *const soap_ops[] = {"PublishSchedule",       "PublishSlots",      "BookAppointment",
                                       "RescheduleAppointment", "CancelAppointment", "GetAppointmentStatus"};

static void to_resp(struct gw_answer *a, struct gw_resp *r) {
  r->status = a->status;
  r->content_type = a->ctype;
  r->body = a->body;
  r->body_len = a->len;
  a->body = NULL;
  snprintf(r->location, sizeof(r->location), "%s", a->location);
  snprintf(r->etag, sizeof(r->etag), "%s", a->etag);
  if (a->replay) {
    r->extra[r->nextra].name = "x-cergw-replay";
    r->extra[r->nextra++].value = "true";
  }
}

/* A later answer, from the store's or the dispatcher's thread, to the connection's worker. */
static void reply_later(void *ud, struct gw_answer *a) {
  struct gw_reply_token *t = ud;
  struct gw_resp r = {0};
  to_resp(a, &r);
  gw_reply_post(t, &r);
  free(t);
}

/* What a FHIR client asks with headers: If-Match (W/"3" or "3"), If-None-Match, Accept or _format (JSON or
 * XML), Prefer return=. */
static void fhir_headers(const struct gw_req *req, struct gw_msg *m) {
  const char *im = req->if_match;
  if (im) {
    im += !strncmp(im, "W/", 2) ? 2 : 0;
    im += *im == '"';
    m->if_match = atoi(im) > 0 ? atoi(im) : -1; /* -1: matches no version */
  }
  snprintf(m->if_none_match, sizeof(m->if_none_match), "%s", req->if_none_match ? req->if_none_match : "");
  const char *q = req->path ? strchr(req->path, '?') : NULL, *f = q ? strstr(q, "_format=") : NULL;
  if (f) /* _format wins over Accept, as FHIR says */
    m->want_xml = !strncmp(f + 8, "xml", 3) || strstr(f + 8, "fhir%2Bxml") || !strncmp(f + 8, "application/xml", 15) ||
                  !strncmp(f + 8, "application/fhir+xml", 20) || !strncmp(f + 8, "text/xml", 8);
  else if (req->accept)
    m->want_xml = (strstr(req->accept, "fhir+xml") || strstr(req->accept, "application/xml") ||
                   strstr(req->accept, "text/xml")) &&
                  !strstr(req->accept, "json");
  const char *pr = req->prefer ? strstr(req->prefer, "return=") : NULL;
  m->prefer = !pr                                        ? 0
              : !strncmp(pr + 7, "minimal", 7)           ? 1
              : !strncmp(pr + 7, "representation", 14)   ? 2
              : !strncmp(pr + 7, "OperationOutcome", 16) ? 3
                                                         : 0;
}

static void run(struct gw_req *req, struct gw_resp *resp, struct gw_msg *m) {
  struct gw_reply_token *t = gw_malloc(sizeof(*t));
  if (!m || !t || !pipeline) {
    gw_msg_free(m);
    free(t);
    gw_router_error(resp, 503, "out of memory: nothing was accepted");
    return;
  }
  *t = req->reply;
  m->body = req->body.data;
  m->len = req->body.len;
  m->peer = req->peer;
  m->idem_header = req->idem_key;
  m->if_none_exist = req->if_none_exist;
  fhir_headers(req, m);
  m->conn_id = req->conn_id;
  m->stream_id = req->stream_id;
  m->mllp = req->proto == GW_PROTO_MLLP;
  m->reply = reply_later;
  m->reply_ud = t;
  if (gw_pipe_run(pipeline, m)) { /* answered now */
    to_resp(&m->ans, resp);
    gw_msg_free(m);
    free(t);
    return;
  }
  resp->deferred = 1; /* the pipeline owns |m| and answers through |t| */
}

void gw_write_message(struct gw_req *req, struct gw_resp *resp, enum gw_mkind kind, const char *type, const char *id) {
  struct gw_msg *m = gw_msg_new();
  if (m) {
    m->kind = kind;
    m->bundle = kind == GW_M_FHIR && (!type || !type[0]);
    m->update = kind == GW_M_FHIR && id && id[0];
    snprintf(m->url_type, sizeof(m->url_type), "%s", type ? type : "");
    snprintf(m->rid, sizeof(m->rid), "%s", id ? id : "");
  }
  run(req, resp, m);
}

void gw_write_read(struct gw_req *req, struct gw_resp *resp, const char *type, const char *id, int vid, bool history,
                   const char *query) {
  struct gw_msg *m = gw_msg_new();
  if (m) {
    m->kind = GW_M_FHIR;
    m->read = true;
    snprintf(m->url_type, sizeof(m->url_type), "%s", type ? type : "");
    snprintf(m->rid, sizeof(m->rid), "%s", id ? id : "");
    snprintf(m->query, sizeof(m->query), "%s", query ? query : "");
    snprintf(m->rq.id, sizeof(m->rq.id), "%s", id ? id : "");
    m->rq.version = vid;
    m->rq.history = history;
    m->rq.search = !id || !id[0];
  }
  run(req, resp, m);
}

bool gw_write_soap(struct gw_req *req, struct gw_resp *resp, const char *op, const char *mid) {
  bool known = false;
  for (size_t i = 0; i < sizeof(soap_ops) / sizeof(soap_ops[0]); i++)
    known |= !strcmp(op, soap_ops[i]);
  if (!known)
    return false;
  struct gw_msg *m = gw_msg_new();
  if (m) {
    m->kind = GW_M_SOAP;
    snprintf(m->soap_op, sizeof(m->soap_op), "%s", op);
    snprintf(m->soap_mid, sizeof(m->soap_mid), "%s", mid);
  }
  run(req, resp, m);
  return true;
}
