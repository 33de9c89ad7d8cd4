#include <dirent.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "../suites.h"
#include "codec/fhir.h"
#include "codec/xml.h"
#include "core/err.h"

static struct gw_fhir_model *model;

static int setup(void) {
  struct gw_buf errs;
  gw_buf_init(&errs, 4096);
  int rv = gw_fhir_model_load("schemas/fhir/r4-elements.json", &model, &errs);
  if (rv)
    fprintf(stderr, "%s", errs.data ? (char *)errs.data : "model load failed\n");
  gw_buf_cleanup(&errs);
  return rv;
}
static int teardown(void) {
  gw_fhir_model_free(model);
  return 0;
}

/* XHTML compared by meaning: both parsed and dumped by libxml2. */
static char *norm_xhtml(const char *s) {
  xmlDocPtr d = xmlReadMemory(s, (int)strlen(s), NULL, "UTF-8", XML_PARSE_NONET | XML_PARSE_NOERROR);
  if (!d)
    return strdup(s);
  xmlBufferPtr b = xmlBufferCreate();
  xmlNodeDump(b, d, xmlDocGetRootElement(d), 0, 0);
  char *r = strdup((const char *)xmlBufferContent(b));
  xmlBufferFree(b);
  xmlFreeDoc(d);
  return r;
}

/* Order-insensitive JSON tree equality; reports the first difference. */
static int json_eq(yajl_val a, yajl_val b, const char *path) {
  if (a->type != b->type) {
    fprintf(stderr, "  differs at %s (type)\n", path);
    return 0;
  }
  char sub[600];
  switch (a->type) {
  case yajl_t_string:
    if (strcmp(a->u.string, b->u.string)) {
      if (strncmp(a->u.string, "<div", 4) == 0) {
        char *x = norm_xhtml(a->u.string), *y = norm_xhtml(b->u.string);
        int same = strcmp(x, y) == 0;
        free(x);
        free(y);
        if (same)
          return 1;
      }
      fprintf(stderr, "  differs at %s: \"%s\" vs \"%s\"\n", path, a->u.string, b->u.string);
      return 0;
    }
    return 1;
  case yajl_t_number:
    if (strcmp(a->u.number.r, b->u.number.r)) {
      fprintf(stderr, "  differs at %s: %s vs %s\n", path, a->u.number.r, b->u.number.r);
      return 0;
    }
    return 1;
  case yajl_t_object:
    if (a->u.object.len != b->u.object.len) {
      fprintf(stderr, "  differs at %s (%zu vs %zu members)\n", path, a->u.object.len, b->u.object.len);
      return 0;
    }
    for (size_t i = 0; i < a->u.object.len; i++) {
      const char *k = a->u.object.keys[i];
      const char *p[] = {k, NULL};
      yajl_val bv = yajl_tree_get(b, p, yajl_t_any);
      snprintf(sub, sizeof(sub), "%s.%s", path, k);
      if (!bv) {
        fprintf(stderr, "  missing %s\n", sub);
        return 0;
      }
      if (!json_eq(a->u.object.values[i], bv, sub))
        return 0;
    }
    return 1;
  case yajl_t_array:
    if (a->u.array.len != b->u.array.len) {
      fprintf(stderr, "  differs at %s (array length)\n", path);
      return 0;
    }
    for (size_t i = 0; i < a->u.array.len; i++) {
      snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
      if (!json_eq(a->u.array.values[i], b->u.array.values[i], sub))
        return 0;
    }
    return 1;
  default:
    return 1;
  }
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  *len = fread(b, 1, (size_t)n, f);
  b[*len] = 0;
  fclose(f);
  return b;
}

static void print_diag(const struct gw_diag *d) {
  for (size_t i = 0; i < d->n; i++)
    fprintf(stderr, "  %s at %s: %s\n", d->items[i].rule, d->items[i].location, d->items[i].msg_en);
}

static int roundtrip(const char *json, size_t len, const char *name) {
  struct gw_diag d;
  gw_diag_init(&d, 32);
  xmlDocPtr doc = NULL;
  int ok = 0;
  if (gw_fhir_json_to_xml(model, json, len, NULL, &doc, &d) != GW_OK) {
    fprintf(stderr, "%s: JSON -> XML failed\n", name);
    print_diag(&d);
    goto out;
  }
  struct gw_buf back;
  gw_buf_init(&back, 8u << 20);
  if (gw_fhir_xml_to_json(model, doc, 0, &back, &d) != GW_OK) {
    fprintf(stderr, "%s: XML -> JSON failed\n", name);
    print_diag(&d);
    gw_buf_cleanup(&back);
    goto out;
  }
  char e1[128], e2[128];
  yajl_val a = yajl_tree_parse(json, e1, sizeof(e1)), b = yajl_tree_parse((char *)back.data, e2, sizeof(e2));
  ok = a && b && json_eq(a, b, name);
  if (!ok)
    fprintf(stderr, "%s: round trip differs\n", name);
  yajl_tree_free(a);
  yajl_tree_free(b);
  gw_buf_cleanup(&back);
out:
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
  return ok;
}

static void test_roundtrip_inline(void) {
  const char *j =
      "{\"resourceType\":\"Slot\",\"id\":\"s1\",\"schedule\":{\"reference\":\"Schedule/1\"},"
      "\"status\":\"free\",\"start\":\"2026-12-01T09:00:00+01:00\",\"end\":\"2026-12-01T09:30:00+01:00\","
      "\"overbooked\":false,\"specialty\":[{\"coding\":[{\"system\":\"urn:oid:2.16.840.1.113883.3.4424.11.2.4\","
      "\"code\":\"1100\",\"id\":\"c1\"}]}],\"_comment\":{\"extension\":[{\"url\":\"http://x/y\","
      "\"valueDecimal\":1.50}]},\"comment\":\"x\"}";
  CU_ASSERT_TRUE(roundtrip(j, strlen(j), "inline Slot"));
  struct gw_diag d;
  gw_diag_init(&d, 8);
  xmlDocPtr doc = NULL;
  CU_ASSERT_EQUAL_FATAL(gw_fhir_json_to_xml(model, j, strlen(j), NULL, &doc, &d), GW_OK);
  xmlChar *x;
  int n;
  xmlDocDumpMemory(doc, &x, &n);
  /* model order, id as attribute, decimal kept as written, primitive extension */
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)x, "<Slot xmlns=\"http://hl7.org/fhir\"><id value=\"s1\"/><specialty><coding "
                                           "id=\"c1\"><system value=\"urn:oid:2.16.840.1.113883.3.4424.11.2.4\"/><code "
                                           "value=\"1100\"/></coding></specialty><schedule>"));
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)x, "<comment value=\"x\"><extension url=\"http://x/y\"><valueDecimal "
                                           "value=\"1.50\"/></extension></comment></Slot>"));
  xmlFree(x);
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
}

static const char *first_error(const char *json, char *loc, size_t loclen) {
  static char rule[64];
  struct gw_diag d;
  gw_diag_init(&d, 8);
  xmlDocPtr doc = NULL;
  rule[0] = 0;
  if (gw_fhir_json_to_xml(model, json, strlen(json), NULL, &doc, &d) != GW_OK && d.n) {
    snprintf(rule, sizeof(rule), "%s", d.items[0].rule);
    if (loc)
      snprintf(loc, loclen, "%s", d.items[0].location);
  }
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
  return rule;
}

static void test_errors(void) {
  char loc[200];
  CU_ASSERT_STRING_EQUAL(
      first_error("{\"resourceType\":\"Slot\",\"schedule\":{\"reference\":\"S/1\"},\"status\":\"free\","
                  "\"start\":\"a\",\"end\":\"b\",\"bogus\":1}",
                  loc, sizeof(loc)),
      "fhir.unknown-element");
  CU_ASSERT_STRING_EQUAL(loc, "Slot.bogus");
  CU_ASSERT_STRING_EQUAL(
      first_error("{\"resourceType\":\"Slot\",\"status\":\"free\",\"start\":\"a\",\"end\":\"b\"}", loc, sizeof(loc)),
      "fhir.required");
  CU_ASSERT_STRING_EQUAL(loc, "Slot.schedule");
  CU_ASSERT_STRING_EQUAL(first_error("{\"resourceType\":\"Appointment\",\"status\":\"booked\",\"participant\":"
                                     "{\"status\":\"accepted\"}}",
                                     loc, sizeof(loc)),
                         "fhir.array");
  CU_ASSERT_STRING_EQUAL(first_error("{\"resourceType\":\"Appointment\",\"status\":\"booked\",\"participant\":"
                                     "[{\"status\":\"accepted\"}],\"minutesDuration\":\"15\"}",
                                     loc, sizeof(loc)),
                         "fhir.type");
  CU_ASSERT_STRING_EQUAL(loc, "Appointment.minutesDuration");
  CU_ASSERT_STRING_EQUAL(first_error("{\"resourceType\":\"MessageHeader\"}", NULL, 0),
                         "fhir.resource-type-unsupported");
  /* empty containers (a regression: the tree builder copied from a NULL vector) */
  CU_ASSERT_STRING_EQUAL(first_error("{\"resourceType\":\"Slot\",\"identifier\":[],\"meta\":{}}", loc, sizeof(loc)),
                         "fhir.empty-array");
  CU_ASSERT_STRING_EQUAL(loc, "Slot.identifier");
  CU_ASSERT_STRING_EQUAL(first_error("{\"status\":\"x\"}", NULL, 0), "fhir.resource-type");
  CU_ASSERT_STRING_EQUAL(first_error("{\"resourceType\":\"Slot\",", NULL, 0), "fhir.json-syntax");
  CU_ASSERT_STRING_EQUAL(first_error("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", NULL, 0),
                         "fhir.too-complex");
  CU_ASSERT_STRING_EQUAL(first_error("{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":"
                                     "\"<div>no namespace</div>\"}}",
                                     loc, sizeof(loc)),
                         "fhir.xhtml");
  CU_ASSERT_STRING_EQUAL(first_error("{\"resourceType\":\"Patient\",\"deceasedBoolean\":true,"
                                     "\"deceasedDateTime\":\"2020\"}",
                                     NULL, 0),
                         "fhir.choice");
  /* more children than the XML side takes (4,096): refused on the way in, so validate and the gateway agree */
  struct gw_buf big;
  gw_buf_init(&big, 1 << 20);
  gw_buf_printf(&big, "{\"resourceType\":\"Schedule\",\"actor\":[{\"display\":\"a\"}],\"identifier\":[");
  for (int i = 0; i < 4100; i++)
    gw_buf_printf(&big, "%s{\"value\":\"%d\"}", i ? "," : "", i);
  gw_buf_printf(&big, "]}");
  CU_ASSERT_STRING_EQUAL(first_error((const char *)big.data, loc, sizeof(loc)), "fhir.too-complex");
  CU_ASSERT_STRING_EQUAL(loc, "Schedule");
  gw_buf_cleanup(&big);
}

static void test_corpus_roundtrip(void) {
  const char *dir = "../shared/corpus/fhir-r4-examples";
  DIR *dh = opendir(dir);
  if (!dh) {
    fprintf(stderr, "\n  [skip] %s not found: FHIR round trip not run\n", dir);
    return;
  }
  int n = 0, ok = 0;
  struct dirent *e;
  while ((e = readdir(dh))) {
    size_t l = strlen(e->d_name);
    if (l < 6 || strcmp(e->d_name + l - 5, ".json") || !strcmp(e->d_name, "package.json"))
      continue;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    size_t len;
    char *j = slurp(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    n++;
    ok += roundtrip(j, len, e->d_name);
    free(j);
  }
  closedir(dh);
  CU_ASSERT_EQUAL(ok, n);
  CU_ASSERT(n >= 14);
}

/* Every JSONTestSuite file is answered: must-accept JSON never fails as a
 * syntax error, must-reject JSON always does; nothing crashes or hangs. */
static void test_jsontestsuite(void) {
  const char *dir = "../shared/corpus/jsontestsuite/test_parsing";
  DIR *dh = opendir(dir);
  if (!dh) {
    fprintf(stderr, "\n  [skip] %s not found: hostile JSON not run\n", dir);
    return;
  }
  int n = 0, wrong = 0;
  struct dirent *e;
  while ((e = readdir(dh))) {
    if (e->d_name[0] != 'y' && e->d_name[0] != 'n' && e->d_name[0] != 'i')
      continue;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    size_t len;
    char *j = slurp(path, &len);
    if (!j)
      continue;
    struct gw_diag d;
    gw_diag_init(&d, 8);
    xmlDocPtr doc = NULL;
    int rv = gw_fhir_json_to_xml(model, j, len, NULL, &doc, &d);
    int syntax = d.n && (!strcmp(d.items[0].rule, "fhir.json-syntax"));
    if (e->d_name[0] == 'y' && syntax) {
      fprintf(stderr, "  %s: valid JSON reported as a syntax error\n", e->d_name);
      wrong++;
    }
    if (e->d_name[0] == 'n' && (rv == GW_OK || !d.n)) {
      fprintf(stderr, "  %s: invalid JSON accepted\n", e->d_name);
      wrong++;
    }
    xmlFreeDoc(doc);
    gw_diag_cleanup(&d);
    free(j);
    n++;
  }
  closedir(dh);
  CU_ASSERT(n >= 300);
  CU_ASSERT_EQUAL(wrong, 0);
}

/* XML bounds checked before libxml2 parses: attributes per element (libxml2 is quadratic in them), name
 * length; '=' inside quoted values, comments and CDATA does not count. */
static void test_xml_attribute_bounds(void) {
  struct gw_buf b;
  gw_buf_init(&b, 1 << 24);
  for (int n = 256; n <= 257; n++) {
    b.len = 0;
    gw_buf_printf(&b, "<Slot xmlns='http://hl7.org/fhir'>\n<!-- a=b c=d -->\n<x");
    for (int i = 0; i < n; i++)
      gw_buf_printf(&b, " a%d='v=%d>'", i, i);
    gw_buf_printf(&b, "/><![CDATA[ e=f g=h ]]></Slot>");
    struct gw_diag d;
    gw_diag_init(&d, 4);
    xmlDocPtr doc = NULL;
    int rv = gw_xml_parse((const char *)b.data, b.len, b.len + 1, &doc, &d);
    if (n == 256) {
      CU_ASSERT_EQUAL(rv, GW_OK);
    } else {
      CU_ASSERT_EQUAL(rv, GW_ERR_INVAL);
      CU_ASSERT_EQUAL_FATAL(d.n, 1);
      CU_ASSERT_STRING_EQUAL(d.items[0].rule, "xml.too-many-attributes");
      CU_ASSERT_EQUAL(d.items[0].line, 3); /* where the element starts */
      CU_ASSERT_EQUAL(d.items[0].col, 1);
    }
    xmlFreeDoc(doc);
    gw_diag_cleanup(&d);
  }
  /* 300,000 attributes on one element, the attack: refused by the pre-scan, libxml2 never sees it */
  b.len = 0;
  gw_buf_printf(&b, "<Slot xmlns='http://hl7.org/fhir'><x");
  for (int i = 0; i < 300000; i++)
    gw_buf_printf(&b, " a%d='1'", i);
  gw_buf_printf(&b, "/></Slot>");
  struct gw_diag d;
  gw_diag_init(&d, 4);
  xmlDocPtr doc = NULL;
  CU_ASSERT_EQUAL(gw_xml_parse((const char *)b.data, b.len, b.len + 1, &doc, &d), GW_ERR_INVAL);
  CU_ASSERT(d.n == 1 && !strcmp(d.items[0].rule, "xml.too-many-attributes"));
  gw_diag_cleanup(&d);
  /* a name past 1,024 bytes */
  b.len = 0;
  gw_buf_printf(&b, "<");
  for (int i = 0; i < 1100; i++)
    gw_buf_printf(&b, "n");
  gw_buf_printf(&b, "/>");
  gw_diag_init(&d, 4);
  CU_ASSERT_EQUAL(gw_xml_parse((const char *)b.data, b.len, b.len + 1, &doc, &d), GW_ERR_INVAL);
  CU_ASSERT(d.n == 1 && !strcmp(d.items[0].rule, "xml.name-too-long"));
  gw_diag_cleanup(&d);
  gw_buf_cleanup(&b);
}

int gw_test_fhir_suite(void) {
  CU_pSuite s = CU_add_suite("codec/fhir", setup, teardown);
  return !s || GW_ADD(s, test_roundtrip_inline) || GW_ADD(s, test_errors) || GW_ADD(s, test_corpus_roundtrip) ||
         GW_ADD(s, test_jsontestsuite) || GW_ADD(s, test_xml_attribute_bounds);
}
