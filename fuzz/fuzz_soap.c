/* libFuzzer target: the SOAP path of the engine (safe XML parse, envelope
 * checks, XSD validation, soap-to-fhir.xsl, FHIR model, CeR rules) and the
 * SOAP Fault rendering of whatever issues come out. Run from the project root. */
#include <libxml/tree.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct gw_diag d;
  xmlDocPtr doc;
  int rv = fuzz_check(data, size, GW_D_SOAP, &d, &doc);
  struct gw_buf out;
  gw_buf_init(&out, 8u << 20);
  if (rv != GW_OK && gw_engine_soap_fault(&d, gw_soap_version((const char *)data, size), "rejected", &out) != GW_OK)
    abort();
  gw_buf_cleanup(&out);
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
  return 0;
}
