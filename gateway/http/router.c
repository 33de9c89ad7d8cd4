#include "http/router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "codec/hl7v2.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/fmt.h"
#include "core/health.h"
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

/* The same refusal as a FHIR OperationOutcome, for paths under /fhir (what FHIR clients expect). */
static void fhir_error(struct gw_resp *resp, int status, const char *message) {
  const char *code = status == 404                                     ? "not-found"
                     : status == 405                                   ? "not-supported"
                     : status == 413 || status == 414 || status == 431 ? "too-long"
                     : status >= 500                                   ? "transient"
                                                                       : "invalid";
  char body[600];
  snprintf(body, sizeof(body),
           "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"%s\","
           "\"diagnostics\":\"%s\"}]}\n",
           code, message);
  if (gw_resp_set(resp, status, "application/fhir+json; charset=utf-8", body)) {
    resp->status = status;
    resp->content_type = NULL;
  }
}

/* What the gateway offers FHIR clients, and nothing more: create/update of Schedule, Slot and Appointment,
 * transaction and batch, $validate; no read or search (the gateway is not CeR's system of record). */
/* One resource type of the CapabilityStatement: exactly what the gateway does with it. */
// clang-format off
#define CS_SP(name, type, doc) "{\"name\":\"" name "\",\"type\":\"" type "\",\"documentation\":\"" doc "\"}"
#define CS_RESOURCE(type, extra_sp)                                                                       \
  "{\"type\":\"" type "\",\"interaction\":[{\"code\":\"create\"},{\"code\":\"update\"},{\"code\":\"read\"},"  \
  "{\"code\":\"vread\"},{\"code\":\"history-instance\"},{\"code\":\"search-type\"}],"                     \
  "\"versioning\":\"versioned-update\",\"readHistory\":true,\"updateCreate\":true,"                          \
  "\"conditionalCreate\":true,\"conditionalUpdate\":true,\"conditionalRead\":\"not-match\",\"searchParam\":["  \
  CS_SP("identifier", "token", "system|value or value") "," CS_SP("status", "token", "the status") ","  \
  extra_sp CS_SP("_id", "token", "the logical id") ","                                                  \
  CS_SP("_lastUpdated", "date", "when the gateway accepted the version") "],\"operation\":[{"           \
  "\"name\":\"validate\",\"definition\":\"http://hl7.org/fhir/OperationDefinition/Resource-validate\"}]}"

static const char capability_statement[] =
  "{\"resourceType\":\"CapabilityStatement\",\"status\":\"active\",\"date\":\"2026-12-07\","
  "\"kind\":\"instance\",\"software\":{\"name\":\"cergw\",\"version\":\"" GW_VERSION "\"},"
  "\"implementation\":{\"description\":\"cergw: clinic gateway to central e-registration (CeR)\"},"
  "\"fhirVersion\":\"4.0.1\",\"format\":[\"application/fhir+json\",\"application/fhir+xml\"],"
  "\"rest\":[{\"mode\":\"server\","
  "\"documentation\":\"Writes are checked, stored durably and delivered to P1 (CeR), SIMP and AP-KOLCE. "
  "Reads serve the calling clinic's own resources as it sent them, every version, each with the delivery "
  "state of the message that wrote it (meta.extension http://cergw.pl/fhir/StructureDefinition/delivery); "
  "P1 is the system of record. JSON or XML by Accept or _format; Prefer return=minimal, If-Match, "
  "If-None-Match and If-None-Exist are honoured.\","
  "\"security\":{\"description\":\"Mutual TLS: the client certificate names the clinic (RPWDL). "
  "A clinic reads and writes only its own resources.\"},"
  "\"resource\":["
    CS_RESOURCE("Schedule", CS_SP("actor", "reference", "Practitioner/NPWZ or a reference") ","
                            CS_SP("date", "date", "planning horizon start") ",") ","
    CS_RESOURCE("Slot", CS_SP("schedule", "reference", "Schedule/id or its identifier value") ","
                        CS_SP("start", "date", "the slot start") ",") ","
    CS_RESOURCE("Appointment", CS_SP("actor", "reference", "Patient/PESEL, Practitioner/NPWZ, Location/...") ","
                               CS_SP("slot", "reference", "Slot/id or its identifier value") ","
                               CS_SP("date", "date", "start") ",")
  "],"
  "\"interaction\":[{\"code\":\"transaction\"},{\"code\":\"batch\"}],"
  "\"operation\":[{\"name\":\"validate\","
  "\"definition\":\"http://hl7.org/fhir/OperationDefinition/Resource-validate\"}]}]}\n";
// clang-format on

static void h_metadata_body(struct gw_resp *resp) {
  if (gw_resp_set(resp, 200, "application/fhir+json; charset=utf-8", capability_statement))
    resp->status = 500;
}

/* The liveness answer; the cheapest request path, so no printf here. */
/* 200 "ok" while the gateway can do its job; 503 "degraded" with the reason while it cannot (the store
 * cannot commit), back to 200 by itself when it can again. */
static const char *store_name; /* "sqlite" or "postgresql": which store /healthz speaks for */
void gw_router_set_store_name(const char *name) { store_name = name; }

static void healthz(struct gw_resp *resp) {
  char body[600], problem[300], q[320];
  uint64_t ms = (gw_now_ns() - start_ns) / 1000000u;
  char frac[4] = {(char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10), (char)('0' + ms % 10), 0};
  bool bad = gw_health_problem(problem, sizeof(problem));
  struct gw_fmt f;
  gw_fmt_init(&f, body, sizeof(body));
  gw_fmt_str(&f, bad ? "{\"status\":\"degraded\",\"reason\":" : "{\"status\":\"ok\"");
  if (bad) { /* as a JSON string */
    size_t o = 0;
    q[o++] = '"';
    for (const char *p = problem; *p && o + 3 < sizeof(q); p++) {
      if (*p == '"' || *p == '\\')
        q[o++] = '\\';
      q[o++] = (unsigned char)*p < 0x20 ? ' ' : *p;
    }
    q[o++] = '"';
    q[o] = 0;
    gw_fmt_str(&f, q);
  }
  if (store_name) {
    gw_fmt_str(&f, ",\"store\":\"");
    gw_fmt_str(&f, store_name);
    gw_fmt_str(&f, "\"");
  }
  gw_fmt_str(&f, ",\"version\":\"" GW_VERSION "\",\"uptime_seconds\":");
  gw_fmt_u64(&f, ms / 1000);
  gw_fmt_mem(&f, ".", 1);
  gw_fmt_str(&f, frac);
  gw_fmt_str(&f, "}\n");
  if (gw_resp_set(resp, bad ? 503 : 200, "application/json", body))
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
  (void)req;
  char stamp[20], ctrl[24];
  gw_hl7_now(stamp, sizeof(stamp));
  gw_hl7_control_id(ctrl, sizeof(ctrl));
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
    else if (n == 17 && !strncmp(to, "soap-notification", 17))
      target = GW_D_SOAP_NOTIFY;
  }
  if (target == GW_D_UNKNOWN) {
    gw_router_error(resp, 400, "give the target dialect: ?to=fhir, fhir-xml, hl7v2, soap or soap-notification");
    return;
  }
  enum gw_dialect from = gw_dialect_detect((const char *)req->body.data, req->body.len);
  struct gw_diag d;
  gw_diag_init(&d, 200);
  xmlDocPtr doc = NULL, v2 = NULL;
  struct gw_buf out, json;
  gw_buf_init(&out, 16u << 20);
  gw_buf_init(&json, 16u << 20);
  struct gw_check chk = {
      .caller_rpwdl = caller_rpwdl(req), .now = time(NULL), .hl7_out = &v2, .json = &json, .json_pretty = 1};
  int rv = gw_engine_check(engine, (const char *)req->body.data, req->body.len, from, &chk, &doc, &d);
  if (rv == GW_OK)
    rv = gw_engine_render_checked(engine, doc, &chk, target, 1, 0, &out, &d);
  gw_buf_cleanup(&json);
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

static char *public_url; /* the gateway's address for clients (configuration public_url), or NULL */

void gw_router_set_public_url(const char *url) {
  free(public_url);
  public_url = url && url[0] ? strdup(url) : NULL;
}

/* The WSDL with the service address clients must use: public_url, else the Host the client asked. */
static void wsdl_answer(const struct gw_req *req, struct gw_resp *resp, const char *doc, size_t len) {
  static const char dev[] = "https://localhost:8443/soap";
  char addr[512];
  if (public_url)
    snprintf(addr, sizeof(addr), "%.*s/soap", (int)(strlen(public_url) - (public_url[strlen(public_url) - 1] == '/')),
             public_url);
  else if (req->authority && req->authority[0] && !strpbrk(req->authority, "\"<>&' "))
    snprintf(addr, sizeof(addr), "https://%s/soap", req->authority);
  else
    snprintf(addr, sizeof(addr), "%s", dev);
  struct gw_buf b;
  gw_buf_init(&b, 4u << 20);
  for (const char *p = doc, *end = doc + len; p < end;) {
    const char *hit = memmem(p, (size_t)(end - p), dev, sizeof(dev) - 1);
    size_t n = hit ? (size_t)(hit - p) : (size_t)(end - p);
    gw_buf_append(&b, p, n);
    if (hit)
      gw_buf_append(&b, addr, strlen(addr));
    p += n + (hit ? sizeof(dev) - 1 : 0);
  }
  take_buf(resp, 200, "text/xml; charset=utf-8", &b);
  gw_buf_cleanup(&b);
}

/* GET /soap?wsdl, GET /soap?xsd (any case): the clinic API description. */
static void soap_description(struct gw_req *req, struct gw_resp *resp) {
  const char *q = strchr(req->path, '?');
  size_t len = 0;
  const char *doc = NULL;
  bool wsdl = q && !strcasecmp(q, "?wsdl"); /* .NET and Java toolkits ask for ?WSDL */
  if (wsdl)
    doc = gw_engine_wsdl(engine, &len);
  else if (q && !strcasecmp(q, "?xsd"))
    doc = gw_engine_xsd(engine, &len);
  if (!doc) {
    gw_router_error(resp, 404, "use /soap?wsdl or /soap?xsd");
    return;
  }
  if (wsdl)
    wsdl_answer(req, resp, doc, len);
  else
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

/* A refusal decided by the protocol layer (a limit), in the sender's terms: an ACK over MLLP. */
static void early(struct gw_req *req, struct gw_resp *resp) {
  if (req->proto == GW_PROTO_MLLP) { /* MLLP: the sender understands only an ACK */
    struct gw_diag d;
    gw_diag_init(&d, 2);
    struct gw_issue *is =
        gw_diag_add(&d, GW_SEV_FATAL, "too-costly", "mllp.too-large", "the message exceeds limits.max_body_bytes",
                    "komunikat przekracza limit rozmiaru");
    if (is) {
      is->hl7_code = 207;
      is->resendable = false; /* the same bytes will be refused again: AR */
    }
    /* the network layer hands over the frame's first segment: when it is a readable MSH, the ACK
     * answers that message (MSA-2 its MSH-10, MSH-3..6 swapped) */
    xmlDocPtr v2 = NULL;
    struct gw_diag pd;
    gw_diag_init(&pd, 4);
    if (req->body.len && gw_hl7_parse((const char *)req->body.data, req->body.len, NULL, &v2, &pd) != GW_OK) {
      xmlFreeDoc(v2);
      v2 = NULL;
    }
    gw_diag_cleanup(&pd);
    hl7_ack_answer(req, resp, 200, v2, GW_ERR_TOOBIG, &d, "");
    xmlFreeDoc(v2);
    gw_diag_cleanup(&d);
    return;
  }
  static const struct {
    int status;
    const char *msg;
  } why[] = {{400, "malformed request"},
             {408, "request not received in time"},
             {413, "request body exceeds limits.max_body_bytes"},
             {414, "request target exceeds limits.max_url_bytes"},
             {431, "request header fields exceed limits.max_header_bytes"}};
  const char *msg = "request refused";
  for (size_t i = 0; i < sizeof(why) / sizeof(why[0]); i++)
    if (why[i].status == req->early_status)
      msg = why[i].msg;
  gw_router_error(resp, req->early_status, msg);
}

/* ---- the handlers of the route table: |a| is what the path pattern captured ---- */

struct args {
  char type[64], id[96], vid[16];
};

static void h_metadata(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)req, (void)a;
  h_metadata_body(resp);
}
static void h_healthz(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)req, (void)a;
  healthz(resp);
}
static void h_metrics(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)req, (void)a;
  metrics(resp);
}
static void h_profile(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)req, (void)a;
  size_t len = 0;
  const char *doc = gw_engine_profile_xsd(engine, &len);
  if (!doc)
    gw_router_error(resp, 404, "no CeR profile is configured (profile_xsd in rules.json)");
  else
    schema_answer(resp, doc, len);
}
static void h_fhir_validate(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  fhir_validate(req, resp, a->type[0] ? a->type : NULL);
}
static void h_hl7_validate(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)a;
  hl7_validate(req, resp);
}
static void h_translate(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)a;
  translate(req, resp);
}
/* POST /soap: the operations that deliver go to the pipeline; ValidateMessage and faults are answered here. */
static void h_soap(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)a;
  if (strcmp(req->method, "POST") != 0) {
    soap_description(req, resp);
    return;
  }
  char op[48] = "", mid[256] = "";
  gw_soap_operation((const char *)req->body.data, req->body.len, op, sizeof(op), mid, sizeof(mid));
  if (!gw_write_soap(req, resp, op, mid))
    soap(req, resp);
}
static void h_hl7(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)a;
  gw_write_message(req, resp, GW_M_HL7, NULL, NULL);
}
static void h_notify(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  (void)a;
  gw_write_message(req, resp, GW_M_NOTIFY, NULL, NULL);
}
/* GET /fhir/{type}[/{id}[/_history[/{vid}]]]: search, read, history, vread; anything else writes. */
static void h_fhir_write(struct gw_req *req, struct gw_resp *resp, const struct args *a) {
  if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
    const char *q = strchr(req->path, '?');
    bool history = strstr(req->path, "/_history") != NULL;
    gw_write_read(req, resp, a->type, a->id, a->vid[0] ? atoi(a->vid) : 0, history && !a->vid[0], q ? q + 1 : "");
    return;
  }
  gw_write_message(req, resp, GW_M_FHIR, a->type, a->id);
}

/* The one route table: path pattern ({type}: a CeR resource type, {any}: one segment, {id}: an id), the
 * methods it takes, and whether it needs the message engine and a body. */
enum { M_GET = 1, M_POST = 2, M_PUT = 4 };
typedef void (*handler_fn)(struct gw_req *req, struct gw_resp *resp, const struct args *a);
static const struct route {
  const char *pattern;
  int methods;
  bool engine, body;
  handler_fn fn;
  const char *allow;
} routes[] = {
    {"/healthz", M_GET, false, false, h_healthz, "GET, HEAD"},
    {"/metrics", M_GET, false, false, h_metrics, "GET, HEAD"},
    {"/fhir/cer-profile.xsd", M_GET, true, false, h_profile, "GET, HEAD"},
    {"/fhir/metadata", M_GET, false, false, h_metadata, "GET, HEAD"},
    {"/fhir/$validate", M_POST, true, true, h_fhir_validate, "POST"},
    {"/fhir/{any}/$validate", M_POST, true, true, h_fhir_validate, "POST"},
    {"/hl7v2/$validate", M_POST, true, true, h_hl7_validate, "POST"},
    {"/$translate", M_POST, true, true, h_translate, "POST"},
    {"/soap", M_GET | M_POST, true, true, h_soap, "GET, POST"},
    {"/hl7v2", M_POST, false, false, h_hl7, "POST"},
    {"/notifications", M_POST, false, false, h_notify, "POST"},
    {"/fhir", M_POST, false, false, h_fhir_write, "POST"},
    {"/fhir/{type}", M_GET | M_POST, false, false, h_fhir_write, "GET, HEAD, POST"},
    {"/fhir/{type}/{id}", M_GET | M_PUT, false, false, h_fhir_write, "GET, HEAD, PUT"},
    {"/fhir/{type}/{id}/_history", M_GET, false, false, h_fhir_write, "GET, HEAD"},
    {"/fhir/{type}/{id}/_history/{vid}", M_GET, false, false, h_fhir_write, "GET, HEAD"},
};

/* One path segment of at most |cap| - 1 bytes from |*p| into |out|; advances |*p|. */
static bool segment(const char **p, char *out, size_t cap) {
  size_t n = strcspn(*p, "/?");
  if (n == 0 || n >= cap)
    return false;
  memcpy(out, *p, n);
  out[n] = 0;
  *p += n;
  return true;
}

/* Whether the path (without its query) matches |pattern|; captures go to |a|. */
static bool match(const char *pattern, const char *path, struct args *a) {
  memset(a, 0, sizeof(*a));
  const char *p = path, *q = pattern;
  while (*q) {
    if (*q == '{') {
      const char *end = strchr(q, '}');
      bool type = !strncmp(q, "{type}", 6), id = !strncmp(q, "{id}", 4), vid = !strncmp(q, "{vid}", 5);
      char tmp[96];
      char *dst = id ? a->id : type ? a->type : vid ? a->vid : tmp;
      size_t cap = id ? sizeof(a->id) : type ? sizeof(a->type) : vid ? sizeof(a->vid) : sizeof(tmp);
      if (!segment(&p, dst, cap))
        return false;
      if (!id && !type && !vid)
        snprintf(a->type, sizeof(a->type), "%s", tmp);
      if (type && strcmp(a->type, "Schedule") && strcmp(a->type, "Slot") && strcmp(a->type, "Appointment"))
        return false;
      q = end + 1;
    } else if (*p++ != *q++) {
      return false;
    }
  }
  return *p == 0 || *p == '?' || (*p == '/' && (p[1] == 0 || p[1] == '?')); /* a trailing slash is the same */
}

void gw_router_log_path(const char *path, char *out, size_t n) {
  struct args a;
  const struct route *r = NULL;
  for (size_t i = 0; path && path[0] == '/' && i < sizeof(routes) / sizeof(routes[0]) && !r; i++)
    if (match(routes[i].pattern, path, &a))
      r = &routes[i];
  size_t o = 0;
  if (!r) { /* not ours: its first segment when that is one of ours ("/fhir/..."), else nothing of it */
    size_t seg = path && path[0] == '/' ? 1 + strcspn(path + 1, "/?") : 0;
    bool known = false;
    for (size_t i = 0; seg && i < sizeof(routes) / sizeof(routes[0]) && !known; i++)
      known = !strncmp(routes[i].pattern, path, seg) && strchr("/", routes[i].pattern[seg]);
    if (known)
      snprintf(out, n, "%.*s%s", (int)seg, path, path[seg] ? "/..." : "");
    else
      snprintf(out, n, "%s", seg ? "/..." : "-");
    return;
  }
  for (const char *q = r->pattern; *q && o + 1 < n; q++) { /* the pattern, with {type} filled in */
    if (!strncmp(q, "{type}", 6) || !strncmp(q, "{any}", 5)) {
      o += (size_t)snprintf(out + o, n - o, "%s", !strncmp(q, "{type}", 6) ? a.type : "{any}");
      q += (q[1] == 't' ? 5 : 4);
    } else {
      out[o++] = *q;
    }
  }
  out[o < n ? o : n - 1] = 0;
  for (const char *q = strchr(path, '?'); q && o + 1 < n; q = strchr(q + 1, '&')) { /* names kept, values masked */
    size_t name = strcspn(q + 1, "=&");
    o += (size_t)snprintf(out + o, n - o, "%c%.*s%s", *q, (int)name, q + 1, q[1 + name] == '=' ? "=*" : "");
  }
}

static void (*console_fn)(struct gw_req *req, struct gw_resp *resp);
void gw_router_set_console(void (*fn)(struct gw_req *req, struct gw_resp *resp)) { console_fn = fn; }

void gw_router_handle(struct gw_req *req, struct gw_resp *resp) {
  if (req->early_status) {
    early(req, resp);
    return;
  }
  if (req->console) { /* the console's listener serves the console only, and the console only there */
    if (console_fn)
      console_fn(req, resp);
    else
      gw_router_error(resp, 404, "the console is not running");
    return;
  }
  if (!req->path || req->path[0] != '/') {
    gw_router_error(resp, 400, "request target must be an absolute path");
    return;
  }
  int m = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD") ? M_GET
          : !strcmp(req->method, "POST")                              ? M_POST
          : !strcmp(req->method, "PUT")                               ? M_PUT
                                                                      : 0;
  struct args a;
  const struct route *r = NULL;
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && !r; i++)
    if (match(routes[i].pattern, req->path, &a))
      r = &routes[i];
  /* under /fhir every refusal is an OperationOutcome */
  void (*error)(struct gw_resp *, int, const char *) =
      !strncmp(req->path, "/fhir", 5) && (!req->path[5] || strchr("/?", req->path[5])) ? fhir_error : gw_router_error;
  if (!r) {
    error(resp, 404, "no such resource");
  } else if (!(r->methods & m)) {
    error(resp, 405, "method not allowed on this resource");
    resp->extra[resp->nextra].name = "allow";
    resp->extra[resp->nextra++].value = r->allow;
  } else if (r->engine && !engine) {
    error(resp, 503, "validation and translation are not loaded");
  } else if (r->body && m == M_POST && req->body.len == 0) {
    error(resp, 400, "the request body is empty");
  } else {
    r->fn(req, resp, &a);
  }
}
