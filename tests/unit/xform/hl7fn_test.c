/* The XPath extension functions for HL7 v2 primitives (xform/hl7fn.c), each through a stylesheet
 * as a mapping calls it: expected values written from HL7 v2 (DTM, XTN) and the E.164 rules of
 * docs/mappings.md, not from the functions' output. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../suites.h"
#include "core/buf.h"
#include "core/diag.h"
#include "xform/xform.h"

/* Each <t> of the input becomes one <r> of the output holding the value of |expr| with <t> as the
 * context node; the results, one per line, are compared with |want|. */
static void run(const char *expr, const char *input, const char *want) {
  char path[] = "/tmp/cergw-hl7fn-XXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fprintf(f,
          "<xsl:stylesheet version='1.0' xmlns:xsl='http://www.w3.org/1999/XSL/Transform' xmlns:cg='%s'>"
          "<xsl:template match='/'><out><xsl:for-each select='//t'><r><xsl:value-of select=\"%s\"/></r>"
          "</xsl:for-each></out></xsl:template></xsl:stylesheet>",
          GW_XFORM_HL7_NS, expr);
  fclose(f);
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  struct gw_xform *x = NULL;
  int rv = gw_xform_load(path, &x, &errs);
  unlink(path);
  CU_ASSERT_EQUAL_FATAL(rv, 0);
  xmlDocPtr in = xmlReadMemory(input, (int)strlen(input), "in.xml", NULL, XML_PARSE_NONET);
  CU_ASSERT_PTR_NOT_NULL_FATAL(in);
  struct gw_diag d;
  gw_diag_init(&d, 8);
  xmlDocPtr out = NULL;
  CU_ASSERT_EQUAL(gw_xform_apply(x, in, NULL, &out, &d), 0);
  struct gw_buf got;
  gw_buf_init(&got, 1 << 16);
  for (xmlNodePtr r = out ? xmlDocGetRootElement(out)->children : NULL; r; r = r->next) {
    xmlChar *v = xmlNodeGetContent(r);
    gw_buf_printf(&got, "%s\n", v ? (const char *)v : "");
    xmlFree(v);
  }
  if (!got.data || strcmp((const char *)got.data, want) != 0)
    fprintf(stderr, "\n%s\n got:\n%s want:\n%s", expr, got.data ? (const char *)got.data : "", want);
  CU_ASSERT_STRING_EQUAL(got.data ? (const char *)got.data : "", want);
  gw_buf_cleanup(&got);
  gw_buf_cleanup(&errs);
  gw_diag_cleanup(&d);
  xmlFreeDoc(out);
  xmlFreeDoc(in);
  gw_xform_free(x);
}

static void test_instant(void) {
  run("cg:instant(., '+01:00')",
      "<m><t>202612030900</t><t>20261203090015+0200</t><t>20261203090000-0500</t><t> 202612030915 </t>"
      "<t>20261203</t><t>2026120309</t><t>abc</t><t>2026-12-03</t><t>2026120309ż5</t><t></t>"
      "<t>202106011200+0215</t></m>",
      "2026-12-03T09:00:00+01:00\n"
      "2026-12-03T09:00:15+02:00\n"
      "2026-12-03T09:00:00-05:00\n"
      "2026-12-03T09:15:00+01:00\n"
      "\n\n\n\n\n\n"
      "2021-06-01T12:00:00+02:15\n");
  /* the offset for a DTM without one is the mapping's parameter */
  run("cg:instant(., 'Z')", "<m><t>202612030900</t></m>", "2026-12-03T09:00:00Z\n");
}

static void test_e164(void) {
  run("cg:e164(.)",
      "<m><t>600 100 200</t><t>0048600100200</t><t>48600100200</t><t>+48 600-100-200</t>"
      "<t>(608)271-9000</t><t></t><t>  </t><t>600.100.200</t><t>60010020</t></m>",
      "+48600100200\n+48600100200\n+48600100200\n+48600100200\n6082719000\n\n\n+48600100200\n60010020\n");
}

static void test_phone(void) {
  /* XTN: .1 number as written, .2 use, .3 equipment, .5 country, .6 area, .7 local, .12 unformatted */
  run("cg:phone(.)",
      "<m>"
      "<t><t.1>ignored</t.1><t.12>+48 600 100 200</t.12></t>"
      "<t><t.5>+48</t.5><t.6>22</t.6><t.7>123-45-67</t.7></t>"
      "<t><t.6>22</t.6><t.7>1234567</t.7></t>"
      "<t><t.7>600100200</t.7></t>"
      "<t><t.1>(0048) 600-100-200</t.1></t>"
      "<t><t.2>NET</t.2><t.4>jan@example.pl</t.4></t>"
      "</m>",
      "+48600100200\n+48221234567\n+48221234567\n+48600100200\n+48600100200\n\n");
}

static void test_comp(void) {
  /* component 1 is not component 10 or 11, and a component of a component is addressed the same way */
  run("concat(cg:comp(., 1), '/', cg:comp(., 10), '/', cg:comp(cg:comp(., 4), 2), '/', count(cg:comp(., 5)))",
      "<m><t><t.10>ten</t.10><t.1>one</t.1><t.11>eleven</t.11><t.4><t.4.1>ns</t.4.1><t.4.2>1.2.3</t.4.2></t.4></t>"
      "<t><t.11>eleven</t.11></t></m>",
      "one/ten/1.2.3/0\n///0\n");
  /* the first node of a node-set, in document order; nothing for an empty one */
  run("concat(cg:comp(../t, 2), '|', cg:comp(../nothing, 1))", "<m><t><t.2>a</t.2></t><t><t.2>b</t.2></t></m>",
      "a|\na|\n");
}

static void test_minutes(void) {
  /* SCH-9 duration in SCH-10 units (ISO+ / ANSI+ unit codes as clinics write them) */
  run("cg:minutes(string(n), string(u))",
      "<m><t><n>20</n><u>min</u></t><t><n>20</n><u/></t><t><n>90</n><u>s</u></t><t><n>61</n><u>SEC</u></t>"
      "<t><n>1.5</n><u>h</u></t><t><n>2</n><u>hours</u></t><t><n>0</n><u>min</u></t><t><n>-5</n><u>min</u></t>"
      "<t><n>abc</n><u>min</u></t><t><n>20</n><u>d</u></t><t><n> 30 </n><u> M </u></t><t><n>2.5</n><u>m</u></t></m>",
      "20\n20\n2\n2\n90\n120\n0\n0\n0\n0\n30\n3\n");
}

static void test_map_if(void) {
  run("cg:map(string(.), 'Booked=booked Cancelled=cancelled Dc=cancelled', 'none')",
      "<m><t>Booked</t><t>Dc</t><t>booked</t><t></t><t>Cancel</t></m>", "booked\ncancelled\nnone\nnone\nnone\n");
  run("cg:if(. = 'a', 'yes', concat('no:', .))", "<m><t>a</t><t>b</t></m>", "yes\nno:b\n");
  /* a node-set passes through whole */
  run("count(cg:if(true(), ../t, /nothing))", "<m><t/><t/></m>", "2\n2\n");
}

static void test_cx_system(void) {
  /* CX-4 HD: universal id (HD-2) first, else the namespace (HD-1, or the HD written whole) */
  run("cg:cx-system(., 'urn:x:')",
      "<m><t><t.1>1</t.1><t.4><t.4.1>NS</t.4.1><t.4.2> 1.2.3 </t.4.2></t.4></t>"
      "<t><t.1>2</t.1><t.4><t.4.1>NS</t.4.1></t.4></t><t><t.1>3</t.1><t.4>WHOLE</t.4></t><t><t.1>4</t.1></t></m>",
      "urn:oid:1.2.3\nurn:x:NS\nurn:x:WHOLE\nurn:x:\n");
}

int gw_test_hl7fn_suite(void) {
  CU_pSuite s = CU_add_suite("xform/hl7fn", NULL, NULL);
  return !s || GW_ADD(s, test_instant) || GW_ADD(s, test_e164) || GW_ADD(s, test_phone) || GW_ADD(s, test_comp) ||
         GW_ADD(s, test_minutes) || GW_ADD(s, test_map_if) || GW_ADD(s, test_cx_system);
}
