#include <dirent.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../suites.h"
#include "codec/hl7v2.h"
#include "core/buf.h"
#include "core/err.h"

static const char siu[] = "MSH|^~\\&|SCHApp|Fac^2.16.1^ISO|EHR|Fac2|202109141120||SIU^S12^SIU_S12|MSG1|P|2.5.1\r"
                          "SCH|12345|36996||||Add|EMERGENCY|Normal|60|min\r"
                          "NTE|1||a \\F\\ b \\S\\ c \\E\\ d \\X41\\ \\.br\\ e\r"
                          "PID|1||PAT1^^^H&2.16.840&ISO^MR~9901^^^SSA^SS||Kowalski^Jan\r"
                          "RGS|001|\r";

static xmlDocPtr parse_ok(const char *text, size_t len) {
  struct gw_diag d;
  gw_diag_init(&d, 16);
  xmlDocPtr doc = NULL;
  int rv = gw_hl7_parse(text, len, NULL, &doc, &d);
  if (rv)
    for (size_t i = 0; i < d.n; i++)
      fprintf(stderr, "  %s %s at %s\n", d.items[i].rule, d.items[i].msg_en, d.items[i].location);
  CU_ASSERT_EQUAL(rv, GW_OK);
  gw_diag_cleanup(&d);
  return doc;
}

static void test_parse_structure(void) {
  xmlDocPtr doc = parse_ok(siu, sizeof(siu) - 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
  char *v;
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(doc, "MSH", 9, 2)), "S12");
  free(v);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(doc, "MSH", 4, 2)), "2.16.1");
  free(v);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(doc, "MSH", 2, 0)), "^~\\&");
  free(v);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(doc, "PID", 5, 1)), "Kowalski");
  free(v);
  /* escapes decoded; \.br\ is a line break */
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(doc, "NTE", 3, 1)), "a | b ^ c \\ d A \n e");
  free(v);
  xmlNodePtr root = xmlDocGetRootElement(doc);
  xmlChar *a = xmlGetProp(root, BAD_CAST "structure");
  CU_ASSERT_STRING_EQUAL(a, "SIU_S12");
  xmlFree(a);
  /* repetitions and subcomponents */
  xmlBufferPtr b = xmlBufferCreate();
  xmlNodeDump(b, doc, root, 0, 0);
  const char *x = (const char *)xmlBufferContent(b);
  CU_ASSERT_PTR_NOT_NULL(strstr(x, "<PID.3><PID.3.1>PAT1</PID.3.1><PID.3.4><PID.3.4.1>H</PID.3.4.1>"
                                   "<PID.3.4.2>2.16.840</PID.3.4.2><PID.3.4.3>ISO</PID.3.4.3></PID.3.4>"
                                   "<PID.3.5>MR</PID.3.5></PID.3><PID.3><PID.3.1>9901</PID.3.1>"));
  xmlBufferFree(b);
  xmlFreeDoc(doc);
}

static void test_roundtrip(void) {
  xmlDocPtr doc = parse_ok(siu, sizeof(siu) - 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
  struct gw_buf out;
  gw_buf_init(&out, 1 << 20);
  CU_ASSERT_EQUAL(gw_hl7_serialize(doc, &out), GW_OK);
  /* trailing empty fields are not kept ("RGS|001|" -> "RGS|001"); \X41\ comes back as A */
  const char *expect = "MSH|^~\\&|SCHApp|Fac^2.16.1^ISO|EHR|Fac2|202109141120||SIU^S12^SIU_S12|MSG1|P|2.5.1\r"
                       "SCH|12345|36996||||Add|EMERGENCY|Normal|60|min\r"
                       "NTE|1||a \\F\\ b \\S\\ c \\E\\ d A \\.br\\ e\r"
                       "PID|1||PAT1^^^H&2.16.840&ISO^MR~9901^^^SSA^SS||Kowalski^Jan\r"
                       "RGS|001\r";
  CU_ASSERT_STRING_EQUAL((char *)out.data, expect);
  gw_buf_cleanup(&out);
  xmlFreeDoc(doc);
}

static void test_line_endings_and_delimiters(void) {
  const char lf[] = "MSH#:+%*#A#B#C#D#20240101##SIU:S15#X1#P#2.3\nSCH#1:a*b+c\r\nRGS#1\n";
  xmlDocPtr doc = parse_ok(lf, sizeof(lf) - 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
  char *v = gw_hl7_get(doc, "SCH", 1, 2);
  CU_ASSERT_STRING_EQUAL(v, "a");
  free(v);
  struct gw_buf out;
  gw_buf_init(&out, 1 << 20);
  CU_ASSERT_EQUAL(gw_hl7_serialize(doc, &out), GW_OK);
  CU_ASSERT_STRING_EQUAL((char *)out.data, "MSH#:+%*#A#B#C#D#20240101##SIU:S15#X1#P#2.3\rSCH#1:a*b+c\rRGS#1\r");
  gw_buf_cleanup(&out);
  xmlFreeDoc(doc);
}

static int first_rule(const char *text, char *rule, size_t n, int *code, int *line) {
  struct gw_diag d;
  gw_diag_init(&d, 16);
  xmlDocPtr doc = NULL;
  int rv = gw_hl7_parse(text, strlen(text), NULL, &doc, &d);
  snprintf(rule, n, "%s", d.n ? d.items[0].rule : "");
  *code = d.n ? d.items[0].hl7_code : 0;
  *line = d.n ? d.items[0].line : 0;
  gw_diag_cleanup(&d);
  xmlFreeDoc(doc);
  return rv;
}

static void test_errors(void) {
  char rule[64];
  int code, line;
  CU_ASSERT_EQUAL(first_rule("PID|1\r", rule, sizeof(rule), &code, &line), GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.msh-first");
  CU_ASSERT_EQUAL(first_rule("MSH|^~\\&|A|B|C|D|2024||SIU^S12|1|P|2.9\r", rule, sizeof(rule), &code, &line),
                  GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.version");
  CU_ASSERT_EQUAL(code, 203);
  CU_ASSERT_EQUAL(first_rule("MSH|^~\\&|A|B|C|D|2024||SIU^S12||P|2.5\r", rule, sizeof(rule), &code, &line),
                  GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.msh10-missing");
  CU_ASSERT_EQUAL(code, 101);
  CU_ASSERT_EQUAL(
      first_rule("MSH|^~\\&|A|B|C|D|2024||SIU^S12|1|P|2.5\rSCH|1\rpid|x\r", rule, sizeof(rule), &code, &line),
      GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.segment-name");
  CU_ASSERT_EQUAL(line, 3);
  CU_ASSERT_EQUAL(first_rule("MSH|^^\\&|A\r", rule, sizeof(rule), &code, &line), GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.delimiters");
  CU_ASSERT_EQUAL(first_rule("MSH|^~\\&|A|\xff\xfe|C\r", rule, sizeof(rule), &code, &line), GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.encoding");
  /* control characters cannot be carried in XML */
  CU_ASSERT_EQUAL(
      first_rule("MSH|^~\\&|A|B|C|D|2024||SIU^S12|1|P|2.5\rNTE|1||a\x01b\r", rule, sizeof(rule), &code, &line),
      GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.encoding");
  /* \Xhh\ giving invalid UTF-8 is refused at its field (HL7: the hex digits spell text of the
   * message's character set) */
  CU_ASSERT_EQUAL(first_rule("MSH|^~\\&|A|B|C|D|2024||SIU^S12|1|P|2.5\rNTE|1||x \\X4bbbbE20\\ c\r", rule, sizeof(rule),
                             &code, &line),
                  GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(rule, "hl7.escape");
  CU_ASSERT_EQUAL(line, 2);
  /* regression found by libFuzzer: a formatting escape cannot swallow a delimiter escape after it */
  const char *tricky = "MSH|^~\\&|A|B|C|D|2024||SIU^S12|1|P|2.5\rNTE|1||x \\.br\\S\\ c\r";
  xmlDocPtr doc2 = parse_ok(tricky, strlen(tricky));
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc2);
  char *v = gw_hl7_get(doc2, "NTE", 3, 1);
  CU_ASSERT_STRING_EQUAL(v, "x \nS\\ c"); /* escapes do not overlap */
  free(v);
  struct gw_buf er7;
  gw_buf_init(&er7, 1 << 16);
  CU_ASSERT_EQUAL(gw_hl7_serialize(doc2, &er7), GW_OK);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)er7.data, "NTE|1||x \\.br\\S\\E\\ c\r")); /* the break as \.br\ */
  gw_buf_cleanup(&er7);
  xmlFreeDoc(doc2);
  /* limits */
  struct gw_hl7_limits lim = gw_hl7_default_limits;
  lim.max_repetitions = 2;
  struct gw_diag d;
  gw_diag_init(&d, 4);
  xmlDocPtr doc = NULL;
  const char *reps = "MSH|^~\\&|A|B|C|D|2024||SIU^S12|1|P|2.5\rPID|1||a~b~c\r";
  CU_ASSERT_EQUAL(gw_hl7_parse(reps, strlen(reps), &lim, &doc, &d), GW_ERR_INVAL);
  CU_ASSERT_STRING_EQUAL(d.items[0].rule, "hl7.too-many-repetitions");
  CU_ASSERT_PTR_NULL(doc);
  gw_diag_cleanup(&d);
}

static void test_ack(void) {
  xmlDocPtr doc = parse_ok(siu, sizeof(siu) - 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
  struct gw_buf out;
  gw_buf_init(&out, 1 << 16);
  CU_ASSERT_EQUAL(gw_hl7_ack(doc, GW_ACK_AA, NULL, NULL, "ACK1", "20261122103000", &out), GW_OK);
  CU_ASSERT_STRING_EQUAL((char *)out.data, "MSH|^~\\&|EHR|Fac2|SCHApp|Fac|20261122103000||ACK^S12^ACK|ACK1|P|2.5.1\r"
                                           "MSA|AA|MSG1\r");
  out.len = 0;
  struct gw_diag d;
  gw_diag_init(&d, 4);
  struct gw_issue *i = gw_diag_add(&d, GW_SEV_ERROR, "required", "cer.contact-present", "no contact", "brak");
  snprintf(i->location, sizeof(i->location), "PID-13.1");
  i->hl7_code = 101;
  CU_ASSERT_EQUAL(gw_hl7_ack_code_for(&d), GW_ACK_AE);
  CU_ASSERT_EQUAL(gw_hl7_ack(doc, GW_ACK_AE, "rejected", &d, "ACK2", "20261122103000", &out), GW_OK);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)out.data, "MSA|AE|MSG1|rejected\r"
                                                  "ERR||PID^1^13^^1|101^Required field missing^HL70357|E||||"
                                                  "cer.contact-present: no contact\r"));
  i->resendable = false;
  CU_ASSERT_EQUAL(gw_hl7_ack_code_for(&d), GW_ACK_AR);
  /* the ACK parses as HL7 itself */
  xmlDocPtr ack = parse_ok((char *)out.data, out.len);
  CU_ASSERT_PTR_NOT_NULL(ack);
  xmlFreeDoc(ack);
  gw_diag_cleanup(&d);
  gw_buf_cleanup(&out);
  xmlFreeDoc(doc);
}

/* Every SIU sample and ACK of the shared corpus parses, and ER7 -> XML -> ER7
 * -> XML gives the same XML (serialisation is stable). */
static void test_corpus(void) {
  const char *dir = "../shared/corpus/hl7v2-siu";
  DIR *dh = opendir(dir);
  if (!dh) {
    fprintf(stderr, "\n  [skip] %s not found: corpus round trip not run\n", dir);
    return;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dh))) {
    size_t l = strlen(e->d_name);
    if (l < 5 || strcmp(e->d_name + l - 4, ".hl7"))
      continue;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    xmlDocPtr d1 = parse_ok(text, len);
    if (!d1) {
      fprintf(stderr, "  %s does not parse\n", e->d_name);
      continue;
    }
    struct gw_buf er7;
    gw_buf_init(&er7, 1 << 20);
    CU_ASSERT_EQUAL(gw_hl7_serialize(d1, &er7), GW_OK);
    xmlDocPtr d2 = parse_ok((char *)er7.data, er7.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d2);
    xmlChar *x1, *x2;
    int l1, l2;
    xmlDocDumpMemory(d1, &x1, &l1);
    xmlDocDumpMemory(d2, &x2, &l2);
    CU_ASSERT_STRING_EQUAL(x1, x2);
    xmlFree(x1);
    xmlFree(x2);
    xmlFreeDoc(d1);
    xmlFreeDoc(d2);
    gw_buf_cleanup(&er7);
    n++;
  }
  closedir(dh);
  CU_ASSERT(n >= 11);
}

static int cmp_id(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* The gateway's control ids (an ACK's MSH-10) never repeat within a process, whichever connection or
 * stream asks (they were the time and stream_id % 10000: two connections' first ACKs collided), and fit
 * MSH-10's 20 characters. */
static void test_control_ids(void) {
  enum { N = 5000 };
  static char ids[N][24];
  for (int i = 0; i < N; i++) {
    gw_hl7_control_id(ids[i], sizeof(ids[i]));
    CU_ASSERT_EQUAL(strlen(ids[i]), 20);
  }
  qsort(ids, N, sizeof(ids[0]), cmp_id);
  int dup = 0;
  for (int i = 1; i < N; i++)
    dup += strcmp(ids[i], ids[i - 1]) == 0;
  CU_ASSERT_EQUAL(dup, 0);
}

/* Names from the thread's dictionary: a stream of messages with new segment and field names (a
 * hostile sender's) does not grow it without bound: it is replaced past its cap, while documents
 * parsed before keep theirs and stay whole; names read the same as with a dictionary per document. */
static void test_thread_names(void) {
  struct gw_hl7_limits lim = gw_hl7_default_limits;
  lim.thread_names = true;
  struct gw_buf msg;
  gw_buf_init(&msg, 1 << 20);
  xmlDocPtr first = NULL, last = NULL;
  for (int i = 0; i < 400; i++) { /* 400 x 100 field names, twice the cap */
    msg.len = 0;
    gw_buf_printf(&msg, "MSH|^~\\&|A|B|C|D|20261203||SIU^S12|M%d|P|2.5\rZ%c%c", i, 'A' + i % 26, 'A' + i / 26);
    for (int f = 1; f <= 100; f++)
      gw_buf_printf(&msg, "|v%d^c%d", f, f);
    gw_buf_printf(&msg, "\r");
    struct gw_diag d;
    gw_diag_init(&d, 16);
    xmlDocPtr doc = NULL;
    CU_ASSERT_EQUAL(gw_hl7_parse((const char *)msg.data, msg.len, &lim, &doc, &d), GW_OK);
    gw_diag_cleanup(&d);
    if (!first)
      first = doc;
    else if (i == 399)
      last = doc;
    else
      xmlFreeDoc(doc);
  }
  CU_ASSERT_TRUE(xmlDictSize(last->dict) < 30000);
  CU_ASSERT_PTR_NOT_EQUAL(first->dict, last->dict); /* replaced on the way */
  char *v;
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(first, "ZAA", 100, 2)), "c100");
  free(v);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(last, "ZJP", 7, 1)), "v7");
  free(v);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(last, "MSH", 10, 0)), "M399");
  free(v);
  /* the header copy stands on its own */
  xmlDocPtr h = gw_hl7_header_copy(last);
  xmlFreeDoc(last);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(h, "MSH", 10, 0)), "M399");
  free(v);
  CU_ASSERT_PTR_NULL(gw_hl7_get(h, "ZJP", 7, 1));
  xmlFreeDoc(h);
  xmlFreeDoc(first);
  gw_buf_cleanup(&msg);
}

/* A message that does not parse still gets an ACK that echoes it: its MSH alone, bytes outside
 * printable ASCII read as '?'. */
static void test_parse_header(void) {
  static const char bad[] = "MSH|^~\\&|GABINET|PORADNIA|CERGW|NFZ|20261203||SIU^S12|MSG-9|P|2.5.1\rPID|1||\xa3\r";
  struct gw_diag d;
  gw_diag_init(&d, 8);
  xmlDocPtr doc = NULL;
  CU_ASSERT_EQUAL(gw_hl7_parse(bad, sizeof(bad) - 1, NULL, &doc, &d), GW_ERR_INVAL);
  CU_ASSERT_PTR_NULL(doc);
  gw_diag_cleanup(&d);
  xmlDocPtr h = gw_hl7_parse_header(bad, sizeof(bad) - 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  char *v;
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(h, "MSH", 10, 0)), "MSG-9");
  free(v);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(h, "MSH", 5, 1)), "CERGW");
  free(v);
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(h, "MSH", 9, 2)), "S12");
  free(v);
  xmlFreeDoc(h);
  static const char latin[] = "MSH|^~\\&|\xa3ODZ|P|C|D|20261203||SIU^S12|MSG-10|P|2.5.1\r";
  CU_ASSERT_PTR_NOT_NULL_FATAL((h = gw_hl7_parse_header(latin, sizeof(latin) - 1)));
  CU_ASSERT_STRING_EQUAL((v = gw_hl7_get(h, "MSH", 3, 1)), "?ODZ");
  free(v);
  xmlFreeDoc(h);
}

int gw_test_hl7v2_suite(void) {
  CU_pSuite s = CU_add_suite("codec/hl7v2", NULL, NULL);
  return !s || GW_ADD(s, test_parse_structure) || GW_ADD(s, test_roundtrip) ||
         GW_ADD(s, test_line_endings_and_delimiters) || GW_ADD(s, test_errors) || GW_ADD(s, test_ack) ||
         GW_ADD(s, test_corpus) || GW_ADD(s, test_control_ids) || GW_ADD(s, test_thread_names) ||
         GW_ADD(s, test_parse_header);
}
