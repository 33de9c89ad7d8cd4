/* libFuzzer target: FHIR JSON through the whole check a clinic's FHIR message
 * gets (JSON -> canonical XML with the model, the CeR profile XSD, the CeR
 * rules), the OperationOutcome of whatever issues come out, and for an
 * accepted document the P1 rendering (fhir-to-p1.xsl + FHIR JSON). Run from
 * the project root. */
#include <libxml/tree.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct gw_diag d;
  xmlDocPtr doc;
  int rv = fuzz_check(data, size, GW_D_FHIR_JSON, &d, &doc);
  struct gw_buf out;
  gw_buf_init(&out, 8u << 20);
  if (rv != GW_OK && gw_engine_outcome_json(fuzz_engine(), &d, 0, &out) != GW_OK)
    abort(); /* every refusal must be answerable */
  if (rv == GW_OK && doc) {
    const char *ct;
    out.len = 0;
    gw_engine_outbound(fuzz_engine(), GW_OUT_P1, doc, "fuzz", 0, "000000012345", &out, &ct, &d);
  }
  gw_buf_cleanup(&out);
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
  return 0;
}
