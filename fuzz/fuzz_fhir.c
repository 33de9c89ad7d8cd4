/* libFuzzer target: FHIR JSON -> XML -> JSON. Whatever converts must convert
 * back, and the JSON we write must convert again to the same XML. */
#include <libxml/tree.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/fhir.h"
#include "core/err.h"

static struct gw_fhir_model *model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!model) {
    struct gw_buf errs;
    gw_buf_init(&errs, 4096);
    if (gw_fhir_model_load("schemas/fhir/r4-elements.json", &model, &errs)) {
      fprintf(stderr, "run from the project root: %s\n", errs.data ? (char *)errs.data : "");
      abort();
    }
    gw_buf_cleanup(&errs);
  }
  struct gw_diag d;
  gw_diag_init(&d, 8);
  struct _xmlDoc *doc = NULL;
  if (gw_fhir_json_to_xml(model, (const char *)data, size, NULL, &doc, &d) == GW_OK) {
    struct gw_buf json;
    gw_buf_init(&json, 16u << 20);
    if (gw_fhir_xml_to_json(model, doc, 0, &json, &d) != GW_OK)
      abort();
    struct _xmlDoc *again = NULL;
    if (gw_fhir_json_to_xml(model, (const char *)json.data, json.len, NULL, &again, &d) != GW_OK)
      abort();
    xmlChar *x1, *x2;
    int l1, l2;
    xmlDocDumpMemory(doc, &x1, &l1);
    xmlDocDumpMemory(again, &x2, &l2);
    if (l1 != l2 || memcmp(x1, x2, (size_t)l1) != 0)
      abort();
    xmlFree(x1);
    xmlFree(x2);
    xmlFreeDoc(again);
    gw_buf_cleanup(&json);
    xmlFreeDoc(doc);
  }
  gw_diag_cleanup(&d);
  return 0;
}
