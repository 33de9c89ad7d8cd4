#include "msg/engine.h"

#include <libxml/tree.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/fhir.h"
#include "codec/hl7v2.h"
#include "codec/xml.h"
#include "core/err.h"
#include "validate/rules.h"
#include "xform/xform.h"

#define MAX_XML_BYTES (4u << 20)

struct gw_engine {
  struct gw_fhir_model *model;
  struct gw_rules *rules;
  struct gw_xform *siu2fhir;
};

const char *gw_dialect_name(enum gw_dialect d) {
  switch (d) {
  case GW_D_FHIR_JSON:
    return "fhir-json";
  case GW_D_FHIR_XML:
    return "fhir-xml";
  case GW_D_SOAP:
    return "soap";
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
  snprintf(path, sizeof(path), "%s/mappings/siu-to-fhir.xsl", root);
  if ((rv = gw_xform_load(path, &e->siu2fhir, errs)))
    goto fail;
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

int gw_engine_check(const struct gw_engine *e, const char *text, size_t len, enum gw_dialect d,
                    const struct gw_check *chk, struct _xmlDoc **out, struct gw_diag *diag) {
  *out = NULL;
  if (d == GW_D_UNKNOWN)
    d = gw_dialect_detect(text, len);
  xmlDocPtr fhir = NULL;
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
      rv = gw_fhir_xml_to_json(e->model, doc, 0, &sink, diag);
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
    rv = gw_hl7_parse(text + skip, end - skip, NULL, &v2, diag);
    if (rv == GW_OK) {
      rv = gw_xform_apply(e->siu2fhir, v2, NULL, &fhir, diag);
      xmlFreeDoc(v2);
      if (rv == GW_OK) {
        /* the mapping's output must satisfy the FHIR model too */
        struct gw_buf sink;
        gw_buf_init(&sink, 16u << 20);
        rv = gw_fhir_xml_to_json(e->model, fhir, 0, &sink, diag);
        gw_buf_cleanup(&sink);
      }
    }
    break;
  }
  case GW_D_SOAP:
    unsupported(diag, "SOAP");
    return GW_ERR_NOTFOUND;
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
    return rv ? rv : GW_ERR_INVAL;
  }
  struct gw_rules_ctx rc = {.caller_rpwdl = chk ? chk->caller_rpwdl : NULL,
                            .now = chk ? chk->now : time(NULL),
                            .xml_lines = d == GW_D_FHIR_XML};
  rv = gw_rules_check(e->rules, fhir, &rc, diag);
  *out = fhir;
  return rv;
}

int gw_engine_render(const struct gw_engine *e, struct _xmlDoc *fhir, enum gw_dialect to, int pretty,
                     struct gw_buf *out, struct gw_diag *diag) {
  if (to == GW_D_FHIR_JSON)
    return gw_fhir_xml_to_json(e->model, fhir, pretty, out, diag);
  if (to == GW_D_FHIR_XML)
    return gw_xml_dump(fhir, 1, pretty, out);
  unsupported(diag, to == GW_D_HL7V2 ? "HL7 v2 output" : "SOAP output");
  return GW_ERR_NOTFOUND;
}

static void add_text(xmlNodePtr parent, const char *name, const char *value) {
  xmlNodePtr n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);
  xmlSetProp(n, BAD_CAST "value", BAD_CAST value);
}

int gw_engine_outcome_json(const struct gw_engine *e, const struct gw_diag *diag, int pretty, struct gw_buf *out) {
  xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
  xmlNodePtr oo = xmlNewDocNode(doc, NULL, BAD_CAST "OperationOutcome", NULL);
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
      add_text(is, hl7 ? "location" : "expression", i->location);
    }
  }
  struct gw_diag d2;
  gw_diag_init(&d2, 4);
  int rv = gw_fhir_xml_to_json(e->model, doc, pretty, out, &d2);
  gw_diag_cleanup(&d2);
  xmlFreeDoc(doc);
  return rv;
}
