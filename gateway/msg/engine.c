#include "msg/engine.h"

#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/fhir.h"
#include "codec/hl7v2.h"
#include "codec/xml.h"
#include "core/err.h"
#include "core/file.h"
#include "validate/rules.h"
#include "xform/xform.h"

#define MAX_XML_BYTES (4u << 20)

#define SOAP11_NS "http://schemas.xmlsoap.org/soap/envelope/"
#define SOAP12_NS "http://www.w3.org/2003/05/soap-envelope"
#define WSA_NS    "http://www.w3.org/2005/08/addressing"
#define CLINIC_NS "urn:cergw:clinic:v1"

struct gw_engine {
  struct gw_fhir_model *model;
  struct gw_rules *rules;
  struct gw_xform *siu2fhir;
  struct gw_xform *soap2fhir;
  struct gw_xform *fhir2siu;
  struct gw_xform *fhir2soap;    /* notifications to clinics */
  struct gw_xform *fhir2soapreq; /* the request a clinic would send */
  struct gw_xform *outx[16];     /* per backend kind rendered by its own mapping (GW_RENDER_FHIR_JSON, _XML) */
  xmlSchemaPtr soap_schema;
  char *wsdl, *xsd;
  size_t wsdl_len, xsd_len;
};

static void schema_error(void *ctx, const xmlError *e) {
  struct gw_buf *errs = ctx;
  gw_buf_printf(errs, "%s:%d: %s", e->file ? e->file : "schema", e->line, e->message ? e->message : "error\n");
}

const char *gw_dialect_name(enum gw_dialect d) {
  switch (d) {
  case GW_D_FHIR_JSON:
    return "fhir-json";
  case GW_D_FHIR_XML:
    return "fhir-xml";
  case GW_D_SOAP:
    return "soap";
  case GW_D_SOAP_NOTIFY:
    return "soap-notification";
  case GW_D_HL7V2:
    return "hl7v2";
  default:
    return "unknown";
  }
}

enum gw_dialect gw_dialect_detect(const char *t, size_t len) {
  size_t i = 0;
  if (len >= 3 && !memcmp(t, "\xef\xbb\xbf", 3))
    i = 3;
  while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n' || t[i] == 0x0b))
    i++;
  if (i < len && t[i] == '{')
    return GW_D_FHIR_JSON;
  if (len - i >= 4 && !memcmp(t + i, "MSH", 3))
    return GW_D_HL7V2;
  if (i < len && t[i] == '<') {
    /* the root element decides: a SOAP Envelope or a FHIR resource */
    const char *head = t + i;
    size_t n = len - i < 4096 ? len - i : 4096;
    for (size_t k = 0; k + 9 < n; k++)
      if (!memcmp(head + k, "Envelope", 8) && (head[k - 1] == '<' || head[k - 1] == ':'))
        return GW_D_SOAP;
    return GW_D_FHIR_XML;
  }
  return GW_D_UNKNOWN;
}

int gw_engine_new(const char *root, struct gw_engine **out, struct gw_buf *errs) {
  *out = NULL;
  struct gw_engine *e = calloc(1, sizeof(*e));
  if (!e)
    return GW_ERR_NOMEM;
  char path[4096];
  int rv;
  snprintf(path, sizeof(path), "%s/schemas/fhir/r4-elements.json", root);
  if ((rv = gw_fhir_model_load(path, &e->model, errs)))
    goto fail;
  snprintf(path, sizeof(path), "%s/schemas/cer/rules.json", root);
  if ((rv = gw_rules_load(path, &e->rules, errs)))
    goto fail;
  const struct {
    const char *file;
    struct gw_xform **x;
  } maps[] = {{"siu-to-fhir", &e->siu2fhir},
              {"soap-to-fhir", &e->soap2fhir},
              {"fhir-to-siu", &e->fhir2siu},
              {"fhir-to-soap", &e->fhir2soap},
              {"fhir-to-soap-request", &e->fhir2soapreq}};
  for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
    snprintf(path, sizeof(path), "%s/mappings/%s.xsl", root, maps[i].file);
    if ((rv = gw_xform_load(path, maps[i].x, errs)))
      goto fail;
  }
  for (int k = 0; k < gw_backend_kinds() && k < (int)(sizeof(e->outx) / sizeof(e->outx[0])); k++) {
    const struct gw_backend_kind *bk = gw_backend_kind(k);
    if (bk->render != GW_RENDER_FHIR_JSON && bk->render != GW_RENDER_XML)
      continue;
    snprintf(path, sizeof(path), "%s/mappings/%s.xsl", root, bk->mapping);
    if ((rv = gw_xform_load(path, &e->outx[k], errs)))
      goto fail;
  }
  snprintf(path, sizeof(path), "%s/schemas/soap/cergw-clinic.wsdl", root);
  e->wsdl = gw_file_read(path, 1 << 20, &e->wsdl_len, NULL);
  snprintf(path, sizeof(path), "%s/schemas/soap/cergw-clinic.xsd", root);
  e->xsd = gw_file_read(path, 1 << 20, &e->xsd_len, NULL);
  xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(path);
  if (pc) {
    xmlSchemaSetParserStructuredErrors(pc, (xmlStructuredErrorFunc)schema_error, errs);
    e->soap_schema = xmlSchemaParse(pc);
    xmlSchemaFreeParserCtxt(pc);
  }
  if (!e->wsdl || !e->xsd || !e->soap_schema) {
    gw_buf_printf(errs, "%s/schemas/soap: the WSDL or XSD does not load\n", root);
    rv = GW_ERR_CONF;
    goto fail;
  }
  *out = e;
  return GW_OK;
fail:
  gw_engine_free(e);
  return rv;
}

void gw_engine_free(struct gw_engine *e) {
  if (!e)
    return;
  gw_fhir_model_free(e->model);
  gw_rules_free(e->rules);
  gw_xform_free(e->siu2fhir);
  gw_xform_free(e->soap2fhir);
  gw_xform_free(e->fhir2siu);
  gw_xform_free(e->fhir2soap);
  gw_xform_free(e->fhir2soapreq);
  for (size_t k = 0; k < sizeof(e->outx) / sizeof(e->outx[0]); k++)
    gw_xform_free(e->outx[k]);
  if (e->soap_schema)
    xmlSchemaFree(e->soap_schema);
  free(e->wsdl);
  free(e->xsd);
  free(e);
}

static void unsupported(struct gw_diag *diag, const char *what) {
  char en[200];
  snprintf(en, sizeof(en), "%s input is not supported yet", what);
  struct gw_issue *i = gw_diag_add(diag, GW_SEV_ERROR, "not-supported", "msg.dialect", en,
                                   "ten format wejściowy nie jest jeszcze obsługiwany");
  if (i)
    i->hl7_code = 200;
}

struct vstate {
  struct gw_diag *diag;
};

/* |n|'s path of local names from the element under the SOAP Body (the operation) down, "[k]" where it
 * has siblings of its name before it. */
static void element_path(xmlNodePtr n, char *out, size_t size) {
  xmlNodePtr c[16] = {0};
  int depth = 0;
  for (xmlNodePtr p = n; p && p->type == XML_ELEMENT_NODE && depth < 16; p = p->parent) {
    if (p->parent && p->parent->type == XML_ELEMENT_NODE && xmlStrEqual(p->parent->name, BAD_CAST "Body")) {
      c[depth++] = p;
      break;
    }
    c[depth++] = p;
  }
  size_t o = 0;
  out[0] = 0;
  for (int d = depth - 1; d >= 0 && o < size; d--) {
    int k = 1, same = 0;
    for (xmlNodePtr s = c[d]->parent ? c[d]->parent->children : NULL; s; s = s->next)
      if (s->type == XML_ELEMENT_NODE && xmlStrEqual(s->name, c[d]->name)) {
        same++;
        if (s == c[d])
          k = same;
      }
    int w = same > 1 ? snprintf(out + o, size - o, "%s%s[%d]", o ? "/" : "", (const char *)c[d]->name, k)
                     : snprintf(out + o, size - o, "%s%s", o ? "/" : "", (const char *)c[d]->name);
    o += w > 0 ? (size_t)w : 0;
  }
}

static void schema_issue(void *ctx, const xmlError *err) {
  struct vstate *v = ctx;
  char en[256];
  snprintf(en, sizeof(en), "%s", err->message ? err->message : "does not match the schema");
  char *nl = strchr(en, '\n');
  if (nl)
    *nl = 0;
  char pl[300];
  snprintf(pl, sizeof(pl), "niezgodność ze schematem API: %s", en);
  struct gw_issue *i = gw_diag_add(v->diag, GW_SEV_ERROR, "structure", "soap.schema", en, pl);
  if (i) {
    i->line = err->line;
    xmlNodePtr n = err->node;
    if (n && n->type == XML_ELEMENT_NODE) /* its path from the operation: BookAppointmentRequest/Patient/Pesel */
      element_path(n, i->location, sizeof(i->location));
  }
}

/* The first element of a SOAP 1.1 or 1.2 envelope's Body, or NULL. */
static xmlNodePtr soap_operation_node(xmlDocPtr doc) {
  xmlNodePtr env = xmlDocGetRootElement(doc), body = NULL;
  const char *ns = (env && env->ns) ? (const char *)env->ns->href : "";
  if (!env || !xmlStrEqual(env->name, BAD_CAST "Envelope") || (strcmp(ns, SOAP11_NS) && strcmp(ns, SOAP12_NS)))
    return NULL;
  for (xmlNodePtr c = env->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "Body") && c->ns &&
        xmlStrEqual(c->ns->href, env->ns->href))
      body = c;
  for (xmlNodePtr c = body ? body->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE)
      return c;
  return NULL;
}

int gw_soap_operation(const char *text, size_t len, char *op, size_t opn, char *mid, size_t midn) {
  op[0] = mid[0] = 0;
  xmlDocPtr doc = NULL;
  struct gw_diag d;
  gw_diag_init(&d, 4);
  int rv = gw_xml_parse(text, len, MAX_XML_BYTES, &doc, &d);
  gw_diag_cleanup(&d);
  xmlNodePtr o = rv ? NULL : soap_operation_node(doc);
  if (o) {
    const char *nm = (const char *)o->name;
    size_t l = strlen(nm);
    if (l > 7 && !strcmp(nm + l - 7, "Request"))
      l -= 7;
    snprintf(op, opn, "%.*s", (int)l, nm);
    /* WS-Addressing MessageID: a child of the Header, a sibling of the Body */
    for (xmlNodePtr h = o->parent->parent->children; h; h = h->next)
      if (h->type == XML_ELEMENT_NODE && xmlStrEqual(h->name, BAD_CAST "Header"))
        for (xmlNodePtr c = h->children; c; c = c->next)
          if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST "MessageID") && c->ns &&
              xmlStrEqual(c->ns->href, BAD_CAST WSA_NS)) {
            xmlChar *v = xmlNodeGetContent(c);
            snprintf(mid, midn, "%s", v ? (const char *)v : "");
            xmlFree(v);
          }
  }
  xmlFreeDoc(doc);
  return o ? GW_OK : GW_ERR_INVAL;
}

/* SOAP 1.1 or 1.2 envelope -> the operation element, validated against the
 * clinic API schema -> soap-to-fhir.xsl -> FHIR, checked against the model. */
/* SOAP -> canonical FHIR; the parsed request is kept in |*keep| (when not NULL) for locations. */
static int soap_to_fhir(const struct gw_engine *e, const char *text, size_t len, xmlDocPtr *out, xmlDocPtr *keep,
                        struct gw_diag *diag) {
  xmlDocPtr doc = NULL;
  int rv = gw_xml_parse(text, len, MAX_XML_BYTES, &doc, diag);
  if (rv)
    return rv;
  xmlNodePtr op = soap_operation_node(doc);
  if (!op || !op->ns || !xmlStrEqual(op->ns->href, BAD_CAST CLINIC_NS)) {
    struct gw_issue *i = gw_diag_add(diag, GW_SEV_FATAL, "structure", "soap.envelope",
                                     "not a SOAP 1.1/1.2 envelope whose Body holds a cergw clinic API operation",
                                     "to nie jest koperta SOAP 1.1/1.2 z operacją API cergw w Body");
    if (i && op)
      i->line = (int)xmlGetLineNo(op);
    xmlFreeDoc(doc);
    return GW_ERR_INVAL;
  }
  xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(e->soap_schema);
  if (!vc) {
    xmlFreeDoc(doc);
    return GW_ERR_NOMEM;
  }
  struct vstate vs = {diag};
  xmlSchemaSetValidStructuredErrors(vc, (xmlStructuredErrorFunc)schema_issue, &vs);
  int sv = xmlSchemaValidateOneElement(vc, op);
  xmlSchemaFreeValidCtxt(vc);
  if (sv != 0) {
    if (!gw_diag_has_errors(diag))
      gw_diag_add(diag, GW_SEV_ERROR, "structure", "soap.schema", "the operation does not match the schema",
                  "operacja nie jest zgodna ze schematem");
    xmlFreeDoc(doc);
    return GW_ERR_INVAL;
  }
  rv = gw_xform_apply(e->soap2fhir, doc, NULL, out, diag);
  if (keep)
    *keep = doc;
  else
    xmlFreeDoc(doc);
  if (rv == GW_OK) {
    struct gw_buf sink;
    gw_buf_init(&sink, 16u << 20);
    rv = gw_fhir_xml_to_json(e->model, *out, 0, &sink, diag);
    gw_buf_cleanup(&sink);
  }
  return rv;
}

int gw_soap_version(const char *text, size_t len) {
  size_t n = len < 4096 ? len : 4096;
  for (size_t i = 0; i + sizeof(SOAP12_NS) - 1 <= n; i++)
    if (!memcmp(text + i, SOAP12_NS, sizeof(SOAP12_NS) - 1))
      return 12;
  return 11;
}

const char *gw_engine_wsdl(const struct gw_engine *e, size_t *len) {
  *len = e->wsdl_len;
  return e->wsdl;
}

const char *gw_engine_xsd(const struct gw_engine *e, size_t *len) {
  *len = e->xsd_len;
  return e->xsd;
}

const struct gw_rules *gw_engine_rules(const struct gw_engine *e) { return e->rules; }

const char *gw_engine_profile_xsd(const struct gw_engine *e, size_t *len) { return gw_rules_profile(e->rules, len); }

/* c:Issues with one c:Issue per diagnostic, under |parent|. */
static void soap_issues(xmlNodePtr parent, xmlNsPtr c, const struct gw_diag *diag) {
  xmlNodePtr issues = xmlNewChild(parent, c, BAD_CAST "Issues", NULL);
  for (size_t k = 0; k < diag->n; k++) {
    const struct gw_issue *i = &diag->items[k];
    xmlNodePtr is = xmlNewChild(issues, c, BAD_CAST "Issue", NULL);
    xmlNewTextChild(is, c, BAD_CAST "Severity", BAD_CAST gw_severity_name(i->severity));
    xmlNewTextChild(is, c, BAD_CAST "Rule", BAD_CAST i->rule);
    if (i->location[0])
      xmlNewTextChild(is, c, BAD_CAST "Location", BAD_CAST i->location);
    char num[16];
    if (i->line) {
      snprintf(num, sizeof(num), "%d", i->line);
      xmlNewTextChild(is, c, BAD_CAST "Line", BAD_CAST num);
    }
    if (i->line && i->col > 0) {
      snprintf(num, sizeof(num), "%d", i->col);
      xmlNewTextChild(is, c, BAD_CAST "Column", BAD_CAST num);
    }
    xmlNodePtr m = xmlNewTextChild(is, c, BAD_CAST "Message", BAD_CAST i->msg_en);
    xmlSetProp(m, BAD_CAST "lang", BAD_CAST "en");
    m = xmlNewTextChild(is, c, BAD_CAST "Message", BAD_CAST i->msg_pl);
    xmlSetProp(m, BAD_CAST "lang", BAD_CAST "pl");
  }
}

static xmlDocPtr soap_envelope(int version, xmlNodePtr *body, xmlNsPtr *env) {
  xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
  xmlNodePtr e = xmlNewDocNode(doc, NULL, BAD_CAST "Envelope", NULL);
  xmlDocSetRootElement(doc, e);
  *env = xmlNewNs(e, BAD_CAST(version == 12 ? SOAP12_NS : SOAP11_NS), BAD_CAST "soap");
  xmlSetNs(e, *env);
  *body = xmlNewChild(e, *env, BAD_CAST "Body", NULL);
  return doc;
}

int gw_engine_soap_fault(const struct gw_diag *diag, int version, const char *reason, struct gw_buf *out) {
  xmlNodePtr body;
  xmlNsPtr env;
  xmlDocPtr doc = soap_envelope(version, &body, &env);
  xmlNodePtr f = xmlNewChild(body, env, BAD_CAST "Fault", NULL);
  xmlNsPtr c = xmlNewNs(f, BAD_CAST CLINIC_NS, BAD_CAST "c");
  bool client = false;
  for (size_t k = 0; k < diag->n; k++)
    client |= diag->items[k].severity <= GW_SEV_ERROR;
  if (version == 12) {
    xmlNodePtr code = xmlNewChild(f, env, BAD_CAST "Code", NULL);
    xmlNewTextChild(code, env, BAD_CAST "Value", BAD_CAST(client ? "soap:Sender" : "soap:Receiver"));
    xmlNodePtr r = xmlNewChild(f, env, BAD_CAST "Reason", NULL);
    xmlNodePtr t = xmlNewTextChild(r, env, BAD_CAST "Text", BAD_CAST reason);
    xmlNodeSetLang(t, BAD_CAST "en");
    xmlNodePtr d = xmlNewChild(f, env, BAD_CAST "Detail", NULL);
    soap_issues(d, c, diag);
  } else {
    /* SOAP 1.1: faultcode, faultstring and detail are unqualified (xmlNewChild would inherit soap:) */
    xmlNodePtr fc = xmlNewDocNode(doc, NULL, BAD_CAST "faultcode", BAD_CAST(client ? "soap:Client" : "soap:Server"));
    xmlNodePtr fs = xmlNewDocNode(doc, NULL, BAD_CAST "faultstring", NULL);
    xmlNodeAddContent(fs, BAD_CAST reason);
    xmlNodePtr d = xmlNewDocNode(doc, NULL, BAD_CAST "detail", NULL);
    xmlAddChild(f, fc);
    xmlAddChild(f, fs);
    xmlAddChild(f, d);
    soap_issues(d, c, diag);
  }
  int rv = gw_xml_dump(doc, 1, 1, out);
  xmlFreeDoc(doc);
  return rv;
}

int gw_engine_soap_accepted(int version, const char *op, const char *status, long long msg_id, int n,
                            const struct gw_soap_delivery *d, const struct gw_diag *notes, struct gw_buf *out) {
  xmlNodePtr body;
  xmlNsPtr env;
  xmlDocPtr doc = soap_envelope(version, &body, &env);
  char name[80], num[32];
  snprintf(name, sizeof(name), "%sResponse", op);
  xmlNsPtr c = xmlNewNs(xmlDocGetRootElement(doc), BAD_CAST CLINIC_NS, BAD_CAST "c");
  xmlNodePtr r = xmlNewChild(body, c, BAD_CAST name, NULL);
  xmlNewTextChild(r, c, BAD_CAST "Status", BAD_CAST status);
  snprintf(num, sizeof(num), "%lld", msg_id);
  xmlNewTextChild(r, c, BAD_CAST "MessageId", BAD_CAST num);
  for (int i = 0; i < n; i++) {
    xmlNodePtr dn = xmlNewChild(r, c, BAD_CAST "Delivery", NULL);
    xmlNewTextChild(dn, c, BAD_CAST "Backend", BAD_CAST d[i].backend);
    xmlNewTextChild(dn, c, BAD_CAST "State", BAD_CAST d[i].state);
    xmlNewTextChild(dn, c, BAD_CAST "Detail", BAD_CAST d[i].detail);
  }
  if (notes && notes->n)
    soap_issues(r, c, notes);
  int rv = gw_xml_dump(doc, 1, 0, out);
  xmlFreeDoc(doc);
  return rv;
}

int gw_engine_soap_status(int version, const char *id, const char *status, struct gw_buf *out) {
  xmlNodePtr body;
  xmlNsPtr env;
  xmlDocPtr doc = soap_envelope(version, &body, &env);
  xmlNsPtr c = xmlNewNs(xmlDocGetRootElement(doc), BAD_CAST CLINIC_NS, BAD_CAST "c");
  xmlNodePtr r = xmlNewChild(body, c, BAD_CAST "GetAppointmentStatusResponse", NULL);
  xmlNewTextChild(r, c, BAD_CAST "AppointmentId", BAD_CAST id);
  xmlNewTextChild(r, c, BAD_CAST "Status", BAD_CAST status);
  int rv = gw_xml_dump(doc, 1, 0, out);
  xmlFreeDoc(doc);
  return rv;
}

int gw_engine_soap_validate_response(const struct gw_diag *diag, int valid, int version, struct gw_buf *out) {
  xmlNodePtr body;
  xmlNsPtr env;
  xmlDocPtr doc = soap_envelope(version, &body, &env);
  xmlNodePtr r = xmlNewChild(body, NULL, BAD_CAST "ValidateMessageResponse", NULL);
  xmlNsPtr c = xmlNewNs(r, BAD_CAST CLINIC_NS, BAD_CAST "c");
  xmlSetNs(r, c);
  xmlNewTextChild(r, c, BAD_CAST "Valid", BAD_CAST(valid ? "true" : "false"));
  if (diag->n)
    soap_issues(r, c, diag);
  int rv = gw_xml_dump(doc, 1, 1, out);
  xmlFreeDoc(doc);
  return rv;
}

/* An HL7 sender fixes fields, not FHIRPaths: point rule issues at the field
 * that siu-to-fhir.xsl read the value from (docs/mappings.md). */
/* The canonical location of an issue, kept as a secondary detail: " (FHIR Bundle.entry[1]...)". */
static void keep_canonical(struct gw_issue *is, const char *fhirpath) {
  size_t l = strlen(is->msg_en);
  if (fhirpath[0] && l + strlen(fhirpath) + 8 < sizeof(is->msg_en))
    snprintf(is->msg_en + l, sizeof(is->msg_en) - l, " (FHIR %s)", fhirpath);
}

/* Rule issues of an HL7 v2 message point at the field the rule is about (the registry's location.hl7). */
static void hl7_locations(const struct gw_engine *e, struct gw_diag *diag, size_t from) {
  for (size_t i = from; i < diag->n; i++) {
    const struct gw_rule_info *ri = gw_rules_info(e->rules, diag->items[i].rule);
    if (!ri || !ri->loc_hl7[0])
      continue;
    char fhirpath[128];
    snprintf(fhirpath, sizeof(fhirpath), "%s", diag->items[i].location);
    snprintf(diag->items[i].location, sizeof(diag->items[i].location), "%s", ri->loc_hl7);
    keep_canonical(&diag->items[i], fhirpath);
  }
}

/* The element under |parent| named |name| (local name), the |nth| such (1-based). */
static xmlNodePtr child_named(xmlNodePtr parent, const char *name, int nth) {
  for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name) && --nth == 0)
      return c;
  return NULL;
}

/* Rule issues of a SOAP request point at the element the clinic sent (the registry's location.soap,
 * under the operation; in PublishSlots under the Slot of the Bundle entry), with its line: the path as
 * far as the request has it (a missing Contact points at its Patient). */
static void soap_locations(const struct gw_engine *e, xmlDocPtr soap, struct gw_diag *diag, size_t from) {
  xmlNodePtr op = soap_operation_node(soap);
  for (size_t i = from; op && i < diag->n; i++) {
    struct gw_issue *is = &diag->items[i];
    const struct gw_rule_info *ri = gw_rules_info(e->rules, is->rule);
    if (!ri || !ri->loc_soap[0])
      continue;
    xmlNodePtr at = op;
    char path[128];
    int w = snprintf(path, sizeof(path), "%s", (const char *)op->name);
    const char *entry = strstr(is->location, "entry[");
    if (xmlStrEqual(op->name, BAD_CAST "PublishSlotsRequest") && entry) {
      int k = atoi(entry + 6) + 1;
      xmlNodePtr slot = child_named(op, "Slot", k);
      if (slot) {
        at = slot;
        w += snprintf(path + w, sizeof(path) - (size_t)w, "/Slot[%d]", k);
      }
    }
    char rel[48];
    snprintf(rel, sizeof(rel), "%s", ri->loc_soap);
    for (char *save = NULL, *part = strtok_r(rel, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
      xmlNodePtr c = child_named(at, part, 1);
      if (!c)
        break;
      at = c;
      if (w > 0 && (size_t)w < sizeof(path))
        w += snprintf(path + w, sizeof(path) - (size_t)w, "/%s", part);
    }
    char fhirpath[128];
    snprintf(fhirpath, sizeof(fhirpath), "%s", is->location);
    snprintf(is->location, sizeof(is->location), "%s", path);
    is->line = (int)xmlGetLineNo(at);
    is->col = 0;
    keep_canonical(is, fhirpath);
  }
}

/* Rule issues of a FHIR JSON message keep their FHIRPath (the sender's own terms) and gain the line and
 * column of the value in the text sent, and its JSON pointer. */
static void json_locations(const char *text, size_t len, struct gw_diag *diag, size_t from) {
  for (size_t i = from; i < diag->n; i++) {
    struct gw_issue *is = &diag->items[i];
    char ptr[160];
    int line, col;
    if (is->line || !is->location[0] || gw_fhir_json_locate(text, len, is->location, ptr, sizeof(ptr), &line, &col))
      continue;
    is->line = line;
    is->col = col;
    size_t l = strlen(is->msg_en);
    if (l + strlen(ptr) + 8 < sizeof(is->msg_en))
      snprintf(is->msg_en + l, sizeof(is->msg_en) - l, " (JSON %s)", ptr);
  }
}

/* The gateway takes SIU scheduling messages, events S12-S17 and S26 (table 0003): anything else is
 * refused at MSH-9 with table 0357's 200 (unsupported message type) or 201 (unsupported event code),
 * not to be resent as is (AR), instead of failing later in the mapping. */
static int hl7_supported(xmlDocPtr v2, struct gw_diag *diag) {
  static const char *const events[] = {"S12", "S13", "S14", "S15", "S16", "S17", "S26"};
  char *type = gw_hl7_get(v2, "MSH", 9, 1), *ev = gw_hl7_get(v2, "MSH", 9, 2);
  bool siu = type && !strcmp(type, "SIU"), known = false;
  for (size_t i = 0; siu && ev && i < sizeof(events) / sizeof(events[0]); i++)
    known |= !strcmp(ev, events[i]);
  struct gw_issue *is = NULL;
  char en[200], pl[200];
  if (!siu) {
    snprintf(en, sizeof(en), "message type %s is not supported: the gateway takes SIU (scheduling) messages",
             type && *type ? type : "(none)");
    snprintf(pl, sizeof(pl), "typ komunikatu %s nie jest obsługiwany: bramka przyjmuje komunikaty SIU",
             type && *type ? type : "(brak)");
    is = gw_diag_add(diag, GW_SEV_ERROR, "not-supported", "hl7.unsupported-message-type", en, pl);
  } else if (!known) {
    snprintf(en, sizeof(en), "event %s of SIU is not supported: S12-S17 and S26 are", ev && *ev ? ev : "(none)");
    snprintf(pl, sizeof(pl), "zdarzenie %s komunikatu SIU nie jest obsługiwane: obsługiwane są S12-S17 i S26",
             ev && *ev ? ev : "(brak)");
    is = gw_diag_add(diag, GW_SEV_ERROR, "not-supported", "hl7.unsupported-event", en, pl);
  }
  if (is) {
    is->hl7_code = siu ? 201 : 200;
    is->resendable = false;
    snprintf(is->location, sizeof(is->location), "MSH-9.%d", siu ? 2 : 1);
  }
  free(type);
  free(ev);
  return siu && known ? GW_OK : GW_ERR_INVAL;
}

/* Does the canonical Bundle |doc| hold a PATCH entry (written out as FHIRPath Patch)? */
static bool has_patch_entry(xmlDocPtr doc) {
  xmlNodePtr root = xmlDocGetRootElement(doc);
  if (!root || !xmlStrEqual(root->name, BAD_CAST "Bundle"))
    return false;
  for (xmlNodePtr en = xmlFirstElementChild(root); en; en = xmlNextElementSibling(en)) {
    if (!xmlStrEqual(en->name, BAD_CAST "entry"))
      continue;
    for (xmlNodePtr rq = xmlFirstElementChild(en); rq; rq = xmlNextElementSibling(rq)) {
      if (!xmlStrEqual(rq->name, BAD_CAST "request"))
        continue;
      for (xmlNodePtr m = xmlFirstElementChild(rq); m; m = xmlNextElementSibling(m))
        if (xmlStrEqual(m->name, BAD_CAST "method")) {
          xmlChar *v = xmlGetProp(m, BAD_CAST "value");
          bool patch = v && xmlStrEqual(v, BAD_CAST "PATCH");
          xmlFree(v);
          if (patch)
            return true;
        }
    }
  }
  return false;
}

int gw_engine_check(const struct gw_engine *e, const char *text, size_t len, enum gw_dialect d,
                    const struct gw_check *chk, struct _xmlDoc **out, struct gw_diag *diag) {
  *out = NULL;
  struct gw_buf *json = chk ? chk->json : NULL; /* the model check's output, kept when asked for */
  int pretty = chk ? chk->json_pretty : 0;
  if (json)
    json->len = 0;
  if (d == GW_D_UNKNOWN)
    d = gw_dialect_detect(text, len);
  xmlDocPtr fhir = NULL, soap = NULL;
  int rv = GW_OK;
  switch (d) {
  case GW_D_FHIR_JSON:
    rv = gw_fhir_json_to_xml(e->model, text, len, NULL, &fhir, diag);
    break;
  case GW_D_FHIR_XML: {
    xmlDocPtr doc = NULL;
    rv = gw_xml_parse(text, len, MAX_XML_BYTES, &doc, diag);
    if (rv == GW_OK) {
      /* structural check against the model: FHIR XML must convert to FHIR JSON */
      struct gw_buf sink;
      gw_buf_init(&sink, 16u << 20);
      rv = gw_fhir_xml_to_json(e->model, doc, pretty, json ? json : &sink, diag);
      gw_buf_cleanup(&sink);
      if (rv)
        xmlFreeDoc(doc);
      else
        fhir = doc;
    }
    break;
  }
  case GW_D_HL7V2: {
    size_t skip = 0;
    while (skip < len && (text[skip] == 0x0b || text[skip] == ' ' || text[skip] == '\r' || text[skip] == '\n'))
      skip++;
    size_t end = len;
    while (end > skip && (text[end - 1] == 0x1c || text[end - 1] == '\r' || text[end - 1] == '\n'))
      end--; /* MLLP frame end and trailing terminators */
    xmlDocPtr v2 = NULL;
    struct gw_hl7_limits lim = gw_hl7_default_limits;
    lim.charset = chk ? chk->hl7_charset : NULL;
    lim.thread_names = true; /* |v2| is freed here, on this thread; only a copy of its header leaves */
    rv = gw_hl7_parse(text + skip, end - skip, &lim, &v2, diag);
    if (rv == GW_OK)
      rv = hl7_supported(v2, diag);
    if (chk && chk->hl7_out) /* the ACK answers this message (MSA-2, MSH-3..6, the version) */
      *chk->hl7_out = v2 ? gw_hl7_header_copy(v2) : gw_hl7_parse_header(text + skip, end - skip);
    if (rv == GW_OK) {
      rv = gw_xform_apply(e->siu2fhir, v2, NULL, &fhir, diag);
      xmlFreeDoc(v2);
      v2 = NULL;
      if (rv == GW_OK) {
        /* the mapping's output must satisfy the FHIR model too */
        struct gw_buf sink;
        gw_buf_init(&sink, 16u << 20);
        rv = gw_fhir_xml_to_json(e->model, fhir, pretty, json ? json : &sink, diag);
        gw_buf_cleanup(&sink);
      }
    }
    xmlFreeDoc(v2); /* not handed over */
    break;
  }
  case GW_D_SOAP:
    rv = soap_to_fhir(e, text, len, &fhir, &soap, diag);
    break;
  default: {
    struct gw_issue *i =
        gw_diag_add(diag, GW_SEV_FATAL, "structure", "msg.dialect", "not FHIR JSON, FHIR XML, SOAP or HL7 v2 (ER7)",
                    "to nie jest FHIR JSON, FHIR XML, SOAP ani HL7 v2 (ER7)");
    if (i)
      i->line = i->col = 1;
    return GW_ERR_INVAL;
  }
  }
  if (rv || !fhir) {
    xmlFreeDoc(fhir);
    xmlFreeDoc(soap);
    if (json)
      json->len = 0;
    return rv ? rv : GW_ERR_INVAL;
  }
  if (json && json->len && has_patch_entry(fhir))
    json->len = 0; /* written out, a PATCH entry carries its FHIRPath Patch instead */
  size_t first_rule_issue = diag->n;
  struct gw_rules_ctx rc = {.caller_rpwdl = chk ? chk->caller_rpwdl : NULL,
                            .now = chk ? chk->now : time(NULL),
                            .xml_lines = d == GW_D_FHIR_XML};
  rv = gw_rules_check(e->rules, fhir, &rc, diag);
  if (d == GW_D_HL7V2)
    hl7_locations(e, diag, first_rule_issue);
  else if (d == GW_D_SOAP && soap)
    soap_locations(e, soap, diag, first_rule_issue);
  else if (d == GW_D_FHIR_JSON)
    json_locations(text, len, diag, first_rule_issue);
  xmlFreeDoc(soap);
  *out = fhir;
  return rv;
}

/* FHIR -> SIU (ER7). MSH-7 is |now| in UTC (the current time when 0); MSH-10
 * is |control_id|, or CERGW and that time when NULL. */
static int render_siu(const struct gw_engine *e, xmlDocPtr fhir, const char *control_id, time_t now, struct gw_buf *out,
                      struct gw_diag *diag) {
  char stamp[24], ctrl[40];
  gw_hl7_dtm(now ? now : time(NULL), stamp, sizeof(stamp));
  snprintf(ctrl, sizeof(ctrl), "CERGW%.14s", stamp);
  const char *params[] = {"control_id", control_id ? control_id : ctrl, "now", stamp, NULL};
  xmlDocPtr v2 = NULL;
  int rv = gw_xform_apply(e->fhir2siu, fhir, params, &v2, diag);
  if (rv == GW_OK)
    rv = gw_hl7_serialize(v2, out);
  xmlFreeDoc(v2);
  return rv;
}

/* The canonical form keeps a PATCH entry's partial resource (what the rules
 * and the memory read); FHIR written out carries the FHIRPath Patch instead:
 * a copy of |doc| so rewritten, or NULL when |doc| has no such entry. */
static xmlDocPtr with_patch_bodies(const struct gw_engine *e, xmlDocPtr doc) {
  xmlDocPtr copy = has_patch_entry(doc) ? xmlCopyDoc(doc, 1) : NULL;
  if (copy)
    gw_fhir_patch_as_parameters(e->model, copy);
  return copy;
}

int gw_engine_render(const struct gw_engine *e, struct _xmlDoc *fhir, enum gw_dialect to, int pretty, time_t now,
                     struct gw_buf *out, struct gw_diag *diag) {
  if (to == GW_D_FHIR_JSON || to == GW_D_FHIR_XML) {
    xmlDocPtr patched = with_patch_bodies(e, fhir);
    xmlDocPtr doc = patched ? patched : fhir;
    int rv =
        to == GW_D_FHIR_JSON ? gw_fhir_xml_to_json(e->model, doc, pretty, out, diag) : gw_xml_dump(doc, 1, pretty, out);
    xmlFreeDoc(patched);
    return rv;
  }
  if (to == GW_D_HL7V2)
    return render_siu(e, fhir, NULL, now, out, diag);
  if (to == GW_D_SOAP || to == GW_D_SOAP_NOTIFY) {
    /* the request a clinic would send (cergw translate), or the notification to a clinic */
    const char *params[] = {"soap_version", "11", "source", "IKP", NULL};
    xmlDocPtr env = NULL;
    int rv = gw_xform_apply(to == GW_D_SOAP ? e->fhir2soapreq : e->fhir2soap, fhir, params, &env, diag);
    if (rv == GW_OK) {
      /* what we send must satisfy our own published schema */
      xmlNodePtr body = xmlDocGetRootElement(env) ? xmlFirstElementChild(xmlDocGetRootElement(env)) : NULL;
      xmlNodePtr op = body ? xmlFirstElementChild(body) : NULL;
      xmlSchemaValidCtxtPtr vc = op ? xmlSchemaNewValidCtxt(e->soap_schema) : NULL;
      struct vstate vs = {diag};
      if (vc)
        xmlSchemaSetValidStructuredErrors(vc, (xmlStructuredErrorFunc)schema_issue, &vs);
      if (!vc || xmlSchemaValidateOneElement(vc, op) != 0)
        rv = GW_ERR_INVAL;
      if (vc)
        xmlSchemaFreeValidCtxt(vc);
      if (rv == GW_OK)
        rv = gw_xml_dump(env, 1, pretty, out);
    }
    xmlFreeDoc(env);
    return rv;
  }
  unsupported(diag, "this output");
  return GW_ERR_NOTFOUND;
}

int gw_engine_render_checked(const struct gw_engine *e, struct _xmlDoc *fhir, struct gw_check *chk, enum gw_dialect to,
                             int pretty, time_t now, struct gw_buf *out, struct gw_diag *diag) {
  struct gw_buf *json = chk ? chk->json : NULL;
  if (to != GW_D_FHIR_JSON || !json || !json->len || chk->json_pretty != pretty)
    return gw_engine_render(e, fhir, to, pretty, now, out, diag);
  if (out->len == 0) { /* handed over whole */
    struct gw_buf t = *out;
    *out = *json;
    *json = t;
    return GW_OK;
  }
  return gw_buf_append(out, json->data, json->len);
}

int gw_engine_json_as_xml(const struct gw_engine *e, const uint8_t *json, size_t len, struct gw_buf *out) {
  struct gw_diag d;
  gw_diag_init(&d, 4);
  xmlDocPtr doc = NULL;
  int rv = gw_fhir_json_to_xml(e->model, (const char *)json, len, NULL, &doc, &d);
  if (rv == GW_OK)
    rv = gw_xml_dump(doc, 1, 1, out);
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
  return rv;
}

int gw_engine_extract(void *ud, const uint8_t *canonical, size_t len, int entry, uint8_t **out, size_t *out_len) {
  (void)ud;
  *out = NULL;
  *out_len = 0;
  struct gw_diag d;
  gw_diag_init(&d, 4);
  xmlDocPtr doc = NULL;
  int rv = gw_xml_parse((const char *)canonical, len, len + 1, &doc, &d);
  gw_diag_cleanup(&d);
  if (rv != GW_OK)
    return GW_ERR_INVAL;
  xmlNodePtr root = xmlDocGetRootElement(doc), res = entry < 0 ? root : NULL;
  int k = 0;
  for (xmlNodePtr en = root && entry >= 0 ? xmlFirstElementChild(root) : NULL; en && !res;
       en = xmlNextElementSibling(en)) {
    if (!xmlStrEqual(en->name, BAD_CAST "entry") || k++ != entry)
      continue;
    for (xmlNodePtr r = xmlFirstElementChild(en); r && !res; r = xmlNextElementSibling(r))
      if (xmlStrEqual(r->name, BAD_CAST "resource"))
        res = xmlFirstElementChild(r);
    break;
  }
  rv = res ? gw_xml_node_alone(res, out, out_len) : GW_ERR_NOTFOUND;
  xmlFreeDoc(doc);
  return rv;
}

int gw_engine_merge(void *ud, const uint8_t *prev, size_t plen, const uint8_t *partial, size_t len, uint8_t **out,
                    size_t *out_len) {
  const struct gw_engine *e = ud;
  struct gw_buf b;
  gw_buf_init(&b, 16u << 20);
  int rv = gw_fhir_merge(e->model, (const char *)prev, plen, (const char *)partial, len, &b);
  *out = rv == GW_OK ? gw_buf_take(&b, out_len) : NULL;
  gw_buf_cleanup(&b);
  return *out ? GW_OK : rv ? rv : GW_ERR_NOMEM;
}

static void add_text(xmlNodePtr parent, const char *name, const char *value) {
  xmlNodePtr n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);
  xmlSetProp(n, BAD_CAST "value", BAD_CAST value);
}

/* An OperationOutcome for |diag|: the document's root when |parent| is NULL, else its child. */
static void outcome_node(xmlDocPtr doc, xmlNodePtr parent, const struct gw_diag *diag) {
  xmlNodePtr oo = xmlNewDocNode(doc, NULL, BAD_CAST "OperationOutcome", NULL);
  if (parent)
    xmlAddChild(parent, oo);
  else
    xmlDocSetRootElement(doc, oo);
  xmlSetNs(oo, xmlNewNs(oo, BAD_CAST GW_FHIR_NS, NULL));
  size_t n = diag->n;
  for (size_t k = 0; k < n || (k == 0 && n == 0); k++) {
    xmlNodePtr is = xmlNewChild(oo, NULL, BAD_CAST "issue", NULL);
    if (n == 0) {
      add_text(is, "severity", "information");
      add_text(is, "code", "informational");
      add_text(is, "diagnostics", "no issues: the message is valid");
      break;
    }
    const struct gw_issue *i = &diag->items[k];
    add_text(is, "severity", gw_severity_name(i->severity));
    add_text(is, "code", i->code);
    xmlNodePtr det = xmlNewChild(is, NULL, BAD_CAST "details", NULL);
    xmlNodePtr cod = xmlNewChild(det, NULL, BAD_CAST "coding", NULL);
    add_text(cod, "system", "http://cergw.pl/fhir/CodeSystem/rules");
    add_text(cod, "code", i->rule);
    add_text(det, "text", i->msg_pl);
    char diagtxt[400];
    if (i->line)
      snprintf(diagtxt, sizeof(diagtxt), "%s (line %d, column %d)", i->msg_en, i->line, i->col);
    else
      snprintf(diagtxt, sizeof(diagtxt), "%s", i->msg_en);
    add_text(is, "diagnostics", diagtxt);
    if (i->location[0]) {
      /* HL7 v2 positions ("PID-3.4") are locations; everything else is FHIRPath */
      bool hl7 = strlen(i->location) > 3 && i->location[3] == '-' && i->location[0] >= 'A' && i->location[0] <= 'Z';
      bool soap = strchr(i->location, '/') != NULL; /* a SOAP element path */
      add_text(is, hl7 || soap ? "location" : "expression", i->location);
    }
  }
}

/* Renders a document the engine built itself (always valid FHIR) as JSON, and frees it. */
static int answer_json(const struct gw_engine *e, xmlDocPtr doc, int pretty, struct gw_buf *out) {
  struct gw_diag d2;
  gw_diag_init(&d2, 4);
  int rv = gw_fhir_xml_to_json(e->model, doc, pretty, out, &d2);
  gw_diag_cleanup(&d2);
  xmlFreeDoc(doc);
  return rv;
}

int gw_engine_outcome_json(const struct gw_engine *e, const struct gw_diag *diag, int pretty, struct gw_buf *out) {
  xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
  outcome_node(doc, NULL, diag);
  return answer_json(e, doc, pretty, out);
}

int gw_engine_outbound(const struct gw_engine *e, int kind, struct _xmlDoc *fhir, const char *key, int late_cancel,
                       const char *acting, struct gw_buf *out, const char **ctype, struct gw_diag *diag) {
  const struct gw_backend_kind *k = gw_backend_kind(kind);
  if (!k) {
    unsupported(diag, "this backend");
    return GW_ERR_NOTFOUND;
  }
  *ctype = k->ctype;
  if (k->render == GW_RENDER_SOAP_NOTIFICATION)
    return gw_engine_render(e, fhir, GW_D_SOAP_NOTIFY, 0, 0, out, diag);
  if (k->render == GW_RENDER_SIU) /* MSH-10 is the delivery's key: unique per message, the same on every attempt */
    return render_siu(e, fhir, key && *key ? key : NULL, 0, out, diag);
  const char *params[] = {"message_key",   key ? key : "",       "late_cancel", late_cancel ? "1" : "0",
                          "acting_clinic", acting ? acting : "", NULL};
  xmlDocPtr res = NULL;
  int rv = gw_xform_apply(e->outx[kind], fhir, params, &res, diag);
  if (rv == GW_OK && k->render == GW_RENDER_FHIR_JSON)
    gw_fhir_patch_as_parameters(e->model, res); /* a reschedule or cancellation as FHIRPath Patch */
  if (rv == GW_OK)
    rv = k->render == GW_RENDER_FHIR_JSON ? gw_fhir_xml_to_json(e->model, res, 0, out, diag)
                                          : gw_xml_dump(res, 1, 0, out);
  xmlFreeDoc(res);
  return rv;
}

int gw_engine_tx_response_json(const struct gw_engine *e, const struct gw_diag *diag, int n,
                               const char *const *locations, const char *const *etags, const char *status, int batch,
                               int pretty, struct gw_buf *out) {
  xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
  xmlNodePtr b = xmlNewDocNode(doc, NULL, BAD_CAST "Bundle", NULL);
  xmlDocSetRootElement(doc, b);
  xmlSetNs(b, xmlNewNs(b, BAD_CAST GW_FHIR_NS, NULL));
  add_text(b, "type", batch ? "batch-response" : "transaction-response");
  for (int i = 0; i < n; i++) {
    xmlNodePtr r = xmlNewChild(xmlNewChild(b, NULL, BAD_CAST "entry", NULL), NULL, BAD_CAST "response", NULL);
    add_text(r, "status", status);
    if (locations[i] && locations[i][0]) {
      add_text(r, "location", locations[i]);
      add_text(r, "etag", etags && etags[i] && etags[i][0] ? etags[i] : "W/\"1\"");
    }
    if (i == 0) /* the delivery report once, with the first entry */
      outcome_node(doc, xmlNewChild(r, NULL, BAD_CAST "outcome", NULL), diag);
  }
  return answer_json(e, doc, pretty, out);
}
