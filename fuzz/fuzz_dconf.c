/* libFuzzer: the delivery configuration (routes, backends, clinics) and
 * route matching with whatever XPath it carries. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "deliver/deliver.h"

static xmlDocPtr doc;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!doc) {
    static const char x[] = "<Bundle xmlns='http://hl7.org/fhir'><entry><resource><Appointment><specialty><coding>"
                            "<code value='1100'/></coding></specialty></Appointment></resource></entry></Bundle>";
    doc = xmlReadMemory(x, (int)sizeof(x) - 1, NULL, NULL, XML_PARSE_NONET);
  }
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = 0;
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  struct gw_dconf *c = NULL;
  if (gw_dconf_parse(text, "fuzz", &c, &errs) == 0) {
    int idx[GW_MAX_BACKENDS];
    char why[128];
    gw_route_match(c, doc, idx, why, sizeof(why));
    gw_dconf_free(c);
  }
  gw_buf_cleanup(&errs);
  free(text);
  return 0;
}
