/* libFuzzer target: HL7 v2 ER7 parser. Whatever parses must serialise, and
 * the serialisation must parse again to the same XML (a stable round trip). */
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/hl7v2.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct gw_diag d;
  gw_diag_init(&d, 8);
  struct _xmlDoc *doc = NULL;
  if (gw_hl7_parse((const char *)data, size, NULL, &doc, &d) == GW_OK) {
    struct gw_buf er7;
    gw_buf_init(&er7, 4u << 20);
    if (gw_hl7_serialize(doc, &er7) != GW_OK)
      abort();
    struct gw_diag d2;
    gw_diag_init(&d2, 8);
    struct _xmlDoc *again = NULL;
    if (gw_hl7_parse((const char *)er7.data, er7.len, NULL, &again, &d2) != GW_OK)
      abort(); /* our own output must parse */
    xmlChar *x1, *x2;
    int l1, l2;
    xmlDocDumpMemory(doc, &x1, &l1);
    xmlDocDumpMemory(again, &x2, &l2);
    if (l1 != l2 || memcmp(x1, x2, (size_t)l1) != 0)
      abort();
    xmlFree(x1);
    xmlFree(x2);
    struct gw_buf ack;
    gw_buf_init(&ack, 1 << 20);
    gw_hl7_ack(doc, GW_ACK_AA, "ok", NULL, "1", "20260101000000", &ack);
    gw_buf_cleanup(&ack);
    xmlFreeDoc(again);
    gw_diag_cleanup(&d2);
    gw_buf_cleanup(&er7);
    xmlFreeDoc(doc);
  } else {
    struct gw_buf ack;
    gw_buf_init(&ack, 1 << 20);
    gw_hl7_ack(NULL, gw_hl7_ack_code_for(&d), "rejected", &d, "1", "20260101000000", &ack);
    gw_buf_cleanup(&ack);
  }
  gw_diag_cleanup(&d);
  return 0;
}
