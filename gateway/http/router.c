#include "http/router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "codec/hl7v2.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/fmt.h"
#include "core/metrics.h"
#include "core/version.h"
#include "deliver/deliver.h"
#include "http/write.h"
#include "msg/engine.h"
#include "store/store.h"

#include <libxml/tree.h>
#include <stdlib.h>
#include <time.h>

static uint64_t start_ns;
static const struct gw_engine *engine;

void gw_router_set_engine(const struct gw_engine *e) { engine = e; }

void gw_router_init(void) { start_ns = gw_now_ns(); }

static double uptime_s(void) { return (double)(gw_now_ns() - start_ns) / 1e9; }

static void method_not_allowed(struct gw_resp *resp, const char *allow) {
  gw_router_error(resp, 405, "method not allowed on this resource");
  resp->extra[resp->nextra].name = "allow";
  resp->extra[resp->nextra++].value = allow;
}

void gw_router_error(struct gw_resp *resp, int status, const char *message) {
  char body[512];
  /* |message| is one of our own static strings: no escaping needed */
  snprintf(body, sizeof(body), "{\"status\":%d,\"error\":\"%s\",\"message\":\"%s\"}\n", status, gw_http_reason(status),
           message);
  if (gw_resp_set(resp, status, "application/json", body)) {
    resp->status = status;
    resp->content_type = NULL;
  }
}

/* The liveness answer; the cheapest request path, so no printf here. */
static void healthz(struct gw_resp *resp) {
  char body[160];
  uint64_t ms = (gw_now_ns() - start_ns) / 1000000u;
  char frac[4] = {(char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10), (char)('0' + ms % 10), 0};
  struct gw_fmt f;
  gw_fmt_init(&f, body, sizeof(body));
  gw_fmt_str(&f, "{\"status\":\"ok\",\"version\":\"" GW_VERSION "\",\"uptime_seconds\":");
  gw_fmt_u64(&f, ms / 1000);
  gw_fmt_mem(&f, ".", 1);
  gw_fmt_str(&f, frac);
  gw_fmt_str(&f, "}\n");
  if (gw_resp_set(resp, 200, "application/json", body))
    resp->status = 500;
}

static void metrics(struct gw_resp *resp) {
  struct gw_buf b;
  gw_buf_init(&b, 4u << 20);
  if (gw_metrics_render(&b, uptime_s()) || (gw_dispatch_metrics(&b), gw_store_metrics(&b), 0)) {
    gw_buf_cleanup(&b);
    gw_router_error(resp, 500, "metrics exposition failed");
    return;
  }
  resp->status = 200;
  resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp->body = gw_buf_take(&b, &resp->body_len);
}

/* The path without its query string must equal |p|. */
static int path_is(const struct gw_req *req, const char *p) {
  size_t n = strlen(p);
  return strncmp(req->path, p, n) == 0 && (req->path[n] == 0 || req->path[n] == '?');
}

#define CT_FHIR_JSON "application/fhir+json; charset=utf-8"
#define CT_FHIR_XML  "application/fhir+xml; charset=utf-8"
#define CT_HL7       "x-application/hl7-v2+er7; charset=utf-8"

static void take_buf(struct gw_resp *resp, int status, const char *ct, struct gw_buf *b) {
  resp->status = status;
  resp->content_type = ct;
  resp->body = gw_buf_take(b, &resp->body_len);
}

/* The rules about who may act for whom need the caller's clinic. */
static const char *caller_rpwdl(const struct gw_req *req) {
  return (req->peer && req->peer->rpwdl[0]) ? req->peer->rpwdl : NULL;
}

/* POST /fhir/$validate, /fhir/{type}/$validate: always an OperationOutcome. */
static void fhir_validate(struct gw_req *req, struct gw_resp *resp, const char *type) {
  struct gw_diag d;
  gw_diag_init(&d, 200);
  enum gw_dialect dl = gw_dialect_detect((const char *)req->body.data, req->body.len);
  if (dl != GW_D_FHIR_JSON && dl != GW_D_FHIR_XML) {
    gw_diag_add(&d, GW_SEV_FATAL, "structure", "msg.dialect", "the body must be a FHIR resource in JSON or XML",
                "treść musi być zasobem FHIR w JSON lub XML");
  } else {
    struct gw_check chk = {.caller_rpwdl = caller_rpwdl(req), .now = time(NULL)};
    xmlDocPtr doc = NULL;
    gw_engine_check(engine, (const char *)req->body.data, req->body.len, dl, &chk, &doc, &d);
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (type && root && strcmp((const char *)root->name, type) != 0) {
      char en[160];
      snprintf(en, sizeof(en), "the resource is a %s, not a %s", (const char *)root->name, type);
      gw_diag_add(&d, GW_SEV_ERROR, "invalid", "fhir.resource-type", en, en);
    }
    xmlFreeDoc(doc);
  }
  struct gw_buf out;
  gw_buf_init(&out, 8u << 20);
  if (gw_engine_outcome_json(engine, &d, 1, &out))
    gw_router_error(resp, 500, "could not render the OperationOutcome");
  else
    take_buf(resp, 200, CT_FHIR_JSON, &out);
  gw_buf_cleanup(&out);
  gw_diag_cleanup(&d);
}

/* An HL7 ACK for a checked message: AA when valid, AE/AR with one ERR per issue. */
static void hl7_ack_answer(struct gw_req *req, struct gw_resp *resp, int status, xmlDocPtr v2, int rv,
                           const struct gw_diag *d, const char *ok_text) {
  char stamp[20], ctrl[40];
  gw_hl7_now(stamp, sizeof(stamp));
  snprintf(ctrl, sizeof(ctrl), "CERGW%s%04u", stamp, (unsigned)(req->stream_id % 10000));
  struct gw_buf out;
  gw_buf_init(&out, 1 << 20);
  enum gw_hl7_ack code = rv == GW_OK ? GW_ACK_AA : gw_hl7_ack_code_for(d);
  gw_hl7_ack(v2, code, rv == GW_OK ? ok_text : "invalid", d, ctrl, stamp, &out);
  take_buf(resp, status, CT_HL7, &out);
  gw_buf_cleanup(&out);
}

/* POST /hl7v2/$validate: an HL7 ACK, AA when valid, AE/AR with ERR segments when not. */
static void hl7_validate(struct gw_req *req, struct gw_resp *resp) {
  struct gw_diag d;
  gw_diag_init(&d, 200);
  xmlDocPtr v2 = NULL, doc = NULL;
  struct gw_check chk = {.caller_rpwdl = caller_rpwdl(req), .now = time(NULL), .hl7_out = &v2};
  int rv = gw_engine_check(engine, (const char *)req->body.data, req->body.len, GW_D_HL7V2, &chk, &doc, &d);
  hl7_ack_answer(req, resp, 200, v2, rv, &d, "valid (dry run, not forwarded)");
  xmlFreeDoc(doc);
  xmlFreeDoc(v2);
  gw_diag_cleanup(&d);
}

/* POST /$translate?to=fhir|fhir-xml: the translation, or the errors in the caller's dialect. */
static void translate(struct gw_req *req, struct gw_resp *resp) {
  const char *q = strchr(req->path, '?');
  const char *to = q ? strstr(q, "to=") : NULL;
  enum gw_dialect target = GW_D_UNKNOWN;
  if (to) {
    to += 3;
    size_t n = strcspn(to, "&");
    if ((n == 4 && !strncmp(to, "fhir", 4)) || (n == 9 && !strncmp(to, "fhir-json", 9)))
      target = GW_D_FHIR_JSON;
    else if (n == 8 && !strncmp(to, "fhir-xml", 8))
      target = GW_D_FHIR_XML;
    else if (n == 5 && !strncmp(to, "hl7v2", 5))
      target = GW_D_HL7V2;
    else if (n == 4 && !strncmp(to, "soap", 4))
      target = GW_D_SOAP;
  }
  if (target == GW_D_UNKNOWN) {
    gw_router_error(resp, 400, "give the target dialect: ?to=fhir, fhir-xml, hl7v2 or soap");
    return;
  }
  enum gw_dialect from = gw_dialect_detect((const char *)req->body.data, req->body.len);
  struct gw_diag d;
  gw_diag_init(&d, 200);
  xmlDocPtr doc = NULL, v2 = NULL;
  struct gw_check chk = {.caller_rpwdl = caller_rpwdl(req), .now = time(NULL), .hl7_out = &v2};
  int rv = gw_engine_check(engine, (const char *)req->body.data, req->body.len, from, &chk, &doc, &d);
  struct gw_buf out;
  gw_buf_init(&out, 16u << 20);
  if (rv == GW_OK)
    rv = gw_engine_render(engine, doc, target, 1, &out, &d);
  if (rv == GW_OK) {
    take_buf(resp, 200,
             target == GW_D_FHIR_XML ? CT_FHIR_XML
             : target == GW_D_HL7V2  ? CT_HL7
             : target == GW_D_SOAP   ? "text/xml; charset=utf-8"
                                     : CT_FHIR_JSON,
             &out);
  } else if (from == GW_D_HL7V2) {
    hl7_ack_answer(req, resp, 422, v2, rv, &d, "translated"); /* errors for an HL7 sender: an ACK */
  } else {
    out.len = 0;
    gw_engine_outcome_json(engine, &d, 1, &out);
    take_buf(resp, rv == GW_ERR_NOTFOUND ? 501 : 422, CT_FHIR_JSON, &out);
  }
  gw_buf_cleanup(&out);
  xmlFreeDoc(doc);
  xmlFreeDoc(v2);
  gw_diag_cleanup(&d);
}

#define CT_SOAP11 "text/xml; charset=utf-8"
#define CT_SOAP12 "application/soap+xml; charset=utf-8"

static void schema_answer(struct gw_resp *resp, const char *doc, size_t len);

/* GET /soap?wsdl, GET /soap?xsd: the clinic API description. */
static void soap_description(struct gw_req *req, struct gw_resp *resp) {
  const char *q = strchr(req->path, '?');
  size_t len = 0;
  const char *doc = NULL;
  if (q && !strcmp(q, "?wsdl"))
    doc = gw_engine_wsdl(engine, &len);
  else if (q && !strcmp(q, "?xsd"))
    doc = gw_engine_xsd(engine, &len);
  if (!doc) {
    gw_router_error(resp, 404, "use /soap?wsdl or /soap?xsd");
    return;
  }
  schema_answer(resp, doc, len);
}

/* 200 with a copy of a schema document the engine holds. */
static void schema_answer(struct gw_resp *resp, const char *doc, size_t len) {
  resp->body = malloc(len + 1);
  if (!resp->body) {
    gw_router_error(resp, 500, "out of memory");
    return;
  }
  memcpy(resp->body, doc, len);
  resp->body_len = len;
  resp->status = 200;
  resp->content_type = "text/xml; charset=utf-8";
}

/* POST /soap for what write.c leaves here: ValidateMessage (a dry run), and
 * anything that is not one of the clinic port's operations (a Fault). */
static void soap(struct gw_req *req, struct gw_resp *resp) {
  const char *body = (const char *)req->body.data;
  int version = gw_soap_version(body, req->body.len);
  const char *ct = version == 12 ? CT_SOAP12 : CT_SOAP11;
  struct gw_diag d;
  gw_diag_init(&d, 200);
  struct gw_check chk = {.caller_rpwdl = caller_rpwdl(req), .now = time(NULL)};
  xmlDocPtr doc = NULL;
  int rv = gw_engine_check(engine, body, req->body.len, GW_D_SOAP, &chk, &doc, &d);
  xmlFreeDoc(doc);
  bool validate_op = strstr(body, "ValidateMessageRequest") != NULL;
  struct gw_buf out;
  gw_buf_init(&out, 8u << 20);
  bool fatal = false;
  for (size_t k = 0; k < d.n; k++)
    fatal |= d.items[k].severity == GW_SEV_FATAL || !strcmp(d.items[k].rule, "soap.envelope");
  if (validate_op && !fatal) {
    gw_engine_soap_validate_response(&d, rv == GW_OK, version, &out);
    take_buf(resp, 200, ct, &out);
  } else if (rv != GW_OK) {
    gw_engine_soap_fault(&d, version, "the message was rejected: see the issues in the detail", &out);
    /* SOAP 1.1 carries every fault with 500; SOAP 1.2 a Sender fault with 400 */
    take_buf(resp, version == 12 ? 400 : 500, ct, &out);
  } else {
    struct gw_diag none;
    gw_diag_init(&none, 1);
    gw_engine_soap_fault(&none, version, "this operation is not offered on the clinic port: nothing was accepted",
                         &out);
    gw_diag_cleanup(&none);
    take_buf(resp, version == 12 ? 400 : 500, ct, &out);
  }
  gw_buf_cleanup(&out);
  gw_diag_cleanup(&d);
}

static int path_prefix(const struct gw_req *req, const char *p) { return strncmp(req->path, p, strlen(p)) == 0; }

void gw_router_handle(struct gw_req *req, struct gw_resp *resp) {
  int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
  if (req->early_status && req->proto == GW_PROTO_MLLP) { /* MLLP: the sender understands only an ACK */
    struct gw_diag d;
    gw_diag_init(&d, 2);
    struct gw_issue *is =
        gw_diag_add(&d, GW_SEV_FATAL, "too-costly", "mllp.too-large", "the message exceeds limits.max_body_bytes",
                    "komunikat przekracza limit rozmiaru");
    if (is) {
      is->hl7_code = 207;
      is->resendable = false; /* the same bytes will be refused again: AR */
    }
    hl7_ack_answer(req, resp, 200, NULL, GW_ERR_TOOBIG, &d, "");
    gw_diag_cleanup(&d);
    return;
  }
  if (req->early_status) {
    const char *msg = "request refused";
    switch (req->early_status) {
    case 400:
      msg = "malformed request";
      break;
    case 408:
      msg = "request not received in time";
      break;
    case 413:
      msg = "request body exceeds limits.max_body_bytes";
      break;
    case 414:
      msg = "request target exceeds limits.max_url_bytes";
      break;
    case 431:
      msg = "request header fields exceed limits.max_header_bytes";
      break;
    }
    gw_router_error(resp, req->early_status, msg);
    return;
  }
  if (!req->path || req->path[0] != '/') {
    gw_router_error(resp, 400, "request target must be an absolute path");
    return;
  }
  if (path_is(req, "/healthz")) {
    if (get)
      healthz(resp);
    else
      method_not_allowed(resp, "GET, HEAD");
    return;
  }
  if (path_is(req, "/metrics")) {
    if (get)
      metrics(resp);
    else
      method_not_allowed(resp, "GET, HEAD");
    return;
  }
  if (path_is(req, "/fhir/cer-profile.xsd")) { /* the CeR profile the gateway checks against */
    size_t len = 0;
    const char *doc = engine ? gw_engine_profile_xsd(engine, &len) : NULL;
    if (!get)
      method_not_allowed(resp, "GET, HEAD");
    else if (!doc)
      gw_router_error(resp, 404, "no CeR profile is configured (profile_xsd in rules.json)");
    else
      schema_answer(resp, doc, len);
    return;
  }
  if (gw_write_handle(req, resp))
    return;
  if (path_is(req, "/soap")) {
    if (!engine) {
      gw_router_error(resp, 503, "validation and translation are not loaded");
      return;
    }
    if (get)
      soap_description(req, resp);
    else if (strcmp(req->method, "POST") == 0 && req->body.len)
      soap(req, resp);
    else if (strcmp(req->method, "POST") == 0)
      gw_router_error(resp, 400, "the request body is empty");
    else
      method_not_allowed(resp, "GET, POST");
    return;
  }
  bool tool = path_is(req, "/fhir/$validate") || path_is(req, "/hl7v2/$validate") || path_is(req, "/$translate") ||
              (path_prefix(req, "/fhir/") && strstr(req->path, "/$validate"));
  if (tool) {
    if (strcmp(req->method, "POST") != 0) {
      method_not_allowed(resp, "POST");
      return;
    }
    if (!engine) {
      gw_router_error(resp, 503, "validation and translation are not loaded");
      return;
    }
    if (req->body.len == 0) {
      gw_router_error(resp, 400, "the request body is empty");
      return;
    }
    if (path_is(req, "/fhir/$validate"))
      fhir_validate(req, resp, NULL);
    else if (path_is(req, "/hl7v2/$validate"))
      hl7_validate(req, resp);
    else if (path_is(req, "/$translate"))
      translate(req, resp);
    else {
      char type[64];
      const char *t = req->path + strlen("/fhir/");
      size_t n = strcspn(t, "/");
      if (n == 0 || n >= sizeof(type) || strncmp(t + n, "/$validate", 10) != 0 || (t[n + 10] && t[n + 10] != '?')) {
        gw_router_error(resp, 404, "no such resource");
        return;
      }
      memcpy(type, t, n);
      type[n] = 0;
      fhir_validate(req, resp, type);
    }
    return;
  }
  gw_router_error(resp, 404, "no such resource");
}
