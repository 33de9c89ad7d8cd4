/* XPath extension functions for HL7 v2 primitives that XSLT 1.0 does badly,
 * in the namespace GW_XFORM_HL7_NS (prefix "cg" in mappings/). Each one does
 * what the XSLT it replaced did, character for character (docs/mappings.md):
 *
 *   cg:comp(node, k)      component k of a field or component written in
 *                         cergw's positional XML (the child "<name>.<k>" of
 *                         the first node), or an empty node-set
 *   cg:instant(dtm, tz)   HL7 DTM YYYYMMDDHHMM[SS[.S+]][+/-ZZZZ] as a FHIR
 *                         instant; tz is the offset of a DTM without one;
 *                         "" when the DTM has no time of day
 *   cg:e164(string)       a phone number in E.164 (separators dropped; 00 ->
 *                         +; 9 digits -> +48; 48 and 9 digits -> +48...)
 *   cg:phone(xtn)         an XTN's number in E.164: XTN-12, else country
 *                         (XTN-5) + area (XTN-6) + local number (XTN-7),
 *                         else XTN-1
 *   cg:cx-system(cx, prefix)  a CX's identifier system: "urn:oid:" and its
 *                         assigning authority's OID (CX-4.2), else |prefix|
 *                         and the authority's namespace (CX-4.1)
 *   cg:minutes(n, unit)   a duration (SCH-9/SCH-10, AIS-7/AIS-8) in whole
 *                         minutes: s/sec/seconds rounded up, h/hr/hours and
 *                         m/min/minutes (or none) rounded; 0 for anything else
 *   cg:map(key, table, default)  a table lookup: table is "k1=v1 k2=v2 ...",
 *                         the value of the first entry whose key is |key|,
 *                         else |default|
 *   cg:if(test, then, else)  XPath 1.0 has no conditional expression: |then|
 *                         when test is true, else |else| (both evaluated)
 *
 * They read only the nodes and strings they are given: no file, network or
 * document access, so the security preferences of xform.c still hold. */
#include <libxml/xmlstring.h>
#include <libxml/xpathInternals.h>
#include <libxslt/extensions.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "xform/xform.h"

static bool xml_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* XPath normalize-space() of |s| into |out| (reset first). */
static void normalize(struct gw_buf *out, const xmlChar *s) {
  out->len = 0;
  bool pending = false;
  for (; s && *s; s++) {
    if (xml_space(*s)) {
      pending = out->len > 0;
      continue;
    }
    if (pending)
      gw_buf_append(out, " ", 1);
    pending = false;
    gw_buf_append(out, s, 1);
  }
  gw_buf_append(out, "", 0); /* NUL-terminated even when empty */
}

/* XPath translate(s, drop, '') in place. */
static void drop_chars(struct gw_buf *b, const char *drop) {
  size_t w = 0;
  for (size_t r = 0; r < b->len; r++)
    if (!strchr(drop, b->data[r]))
      b->data[w++] = b->data[r];
  b->len = w;
  if (b->data)
    b->data[w] = 0;
}

static bool all_digits(const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return false;
  return true;
}

/* The E.164 rules of cg:e164 applied to |raw| into |out|. */
static void e164(struct gw_buf *out, const xmlChar *raw) {
  normalize(out, raw);
  drop_chars(out, " -().");
  const uint8_t *d = out->data ? out->data : (const uint8_t *)"";
  size_t n = out->len;
  if (n == 0 || d[0] == '+')
    return;
  if (n >= 2 && d[0] == '0' && d[1] == '0') {
    out->data[0] = '+';
    memmove(out->data + 1, out->data + 2, n - 1); /* with the NUL */
    out->len = n - 1;
    return;
  }
  const char *prefix = NULL;
  if (n == 9 && all_digits(d, n))
    prefix = "+48";
  else if (n == 11 && d[0] == '4' && d[1] == '8' && all_digits(d, n))
    prefix = "+";
  if (!prefix)
    return;
  size_t k = strlen(prefix);
  if (gw_buf_append(out, prefix, k)) /* room for it */
    return;
  memmove(out->data + k, out->data, n);
  memcpy(out->data, prefix, k);
}

/* The child of |n| named "<n's name>.<k>". */
static xmlNodePtr component(xmlNodePtr n, int k) {
  if (!n || n->type != XML_ELEMENT_NODE || k < 1)
    return NULL;
  size_t len = strlen((const char *)n->name);
  char digits[12];
  int d = 0;
  for (unsigned v = (unsigned)k; d == 0 || v; v /= 10)
    digits[d++] = (char)('0' + v % 10);
  for (xmlNodePtr c = n->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || strncmp((const char *)c->name, (const char *)n->name, len) != 0 ||
        c->name[len] != '.')
      continue;
    const xmlChar *q = c->name + len + 1;
    int i = d;
    while (i > 0 && *q == (xmlChar)digits[i - 1])
      q++, i--;
    if (i == 0 && *q == 0)
      return c;
  }
  return NULL;
}

/* The first node (in document order) of the node-set on top of the stack, popped. */
static xmlNodePtr pop_first_node(xmlXPathParserContextPtr ctxt) {
  xmlNodeSetPtr ns = xmlXPathPopNodeSet(ctxt);
  if (!ns)
    return NULL;
  xmlNodePtr n = NULL;
  if (ns->nodeNr > 0) {
    if (ns->nodeNr > 1)
      xmlXPathNodeSetSort(ns);
    n = ns->nodeTab[0];
  }
  xmlXPathFreeNodeSet(ns);
  return n;
}

static void fn_comp(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(2); /* libxml2: the count and the stack */
  double k = xmlXPathPopNumber(ctxt);
  if (xmlXPathCheckError(ctxt))
    return;
  if (!xmlXPathStackIsNodeSet(ctxt)) {
    xmlXPathSetTypeError(ctxt);
    return;
  }
  xmlNodePtr n = pop_first_node(ctxt);
  xmlNodePtr c = k >= 1 && k <= 1000 && (double)(int)k == k ? component(n, (int)k) : NULL;
  valuePush(ctxt, xmlXPathNewNodeSet(c));
}

/* The string value of component |k| of |n| ("" when absent). */
static xmlChar *comp_string(xmlNodePtr n, int k) {
  xmlNodePtr c = component(n, k);
  return c ? xmlNodeGetContent(c) : xmlStrdup(BAD_CAST "");
}

static void push_buf(xmlXPathParserContextPtr ctxt, struct gw_buf *b) {
  valuePush(ctxt, xmlXPathNewString(b->data ? b->data : BAD_CAST ""));
  gw_buf_cleanup(b);
}

static void fn_e164(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(1); /* libxml2: the count and the stack */
  xmlChar *s = xmlXPathPopString(ctxt);
  struct gw_buf b;
  gw_buf_init(&b, 4096);
  e164(&b, s);
  xmlFree(s);
  push_buf(ctxt, &b);
}

static void fn_phone(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(1); /* libxml2: the count and the stack */
  if (!xmlXPathStackIsNodeSet(ctxt)) {
    xmlXPathSetTypeError(ctxt);
    return;
  }
  xmlNodePtr x = pop_first_node(ctxt);
  struct gw_buf b, country;
  gw_buf_init(&b, 4096);
  gw_buf_init(&country, 4096);
  xmlChar *c12 = comp_string(x, 12), *c7 = comp_string(x, 7), *c5 = comp_string(x, 5);
  normalize(&b, c12);
  bool has12 = b.len > 0;
  normalize(&country, c5);
  drop_chars(&country, "+");
  normalize(&b, c7);
  bool has7 = b.len > 0;
  if (has12) {
    e164(&b, c12);
  } else if (has7) {
    xmlChar *c6 = comp_string(x, 6);
    xmlChar *area = xmlStrcat(c6, c7);
    if (country.len) { /* concat('+', country, translate(concat(XTN-6, XTN-7), ' -().', '')) */
      struct gw_buf a;
      gw_buf_init(&a, 4096);
      gw_buf_append(&a, area ? area : BAD_CAST "", (size_t)xmlStrlen(area));
      drop_chars(&a, " -().");
      b.len = 0;
      gw_buf_append(&b, "+", 1);
      gw_buf_append(&b, country.data, country.len);
      gw_buf_append(&b, a.data ? a.data : BAD_CAST "", a.len);
      gw_buf_cleanup(&a);
    } else {
      e164(&b, area);
    }
    xmlFree(area);
  } else {
    xmlChar *c1 = comp_string(x, 1);
    e164(&b, c1);
    xmlFree(c1);
  }
  xmlFree(c12);
  xmlFree(c7);
  xmlFree(c5);
  gw_buf_cleanup(&country);
  push_buf(ctxt, &b);
}

/* XPath substring(s, start, len) with 1-based |start| in characters, appended to |b|. */
static void sub_append(struct gw_buf *b, const xmlChar *s, int start, int len) {
  xmlChar *p = xmlUTF8Strsub(s, start - 1, len);
  if (p) {
    gw_buf_append(b, p, (size_t)xmlStrlen(p));
    xmlFree(p);
  }
}

static void fn_instant(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(2); /* libxml2: the count and the stack */
  xmlChar *deftz = xmlXPathPopString(ctxt);
  xmlChar *dtm = xmlXPathPopString(ctxt);
  struct gw_buf d, out;
  gw_buf_init(&d, 4096);
  gw_buf_init(&out, 4096);
  normalize(&d, dtm);
  const xmlChar *s = d.data ? d.data : BAD_CAST "";
  int chars = xmlUTF8Strlen(s);
  /* the offset starts at the first '+', else at the first '-' after the date (character 9 on) */
  int tzpos = 0;
  const xmlChar *plus = xmlStrchr(s, '+');
  if (plus) {
    tzpos = chars - xmlUTF8Strlen(plus) + 1;
  } else if (chars > 8) {
    const xmlChar *after = xmlUTF8Strpos(s, 8);
    const xmlChar *minus = after ? xmlStrchr(after, '-') : NULL;
    if (minus)
      tzpos = chars - xmlUTF8Strlen(minus) + 1;
  }
  xmlChar *base = tzpos > 0 ? xmlUTF8Strsub(s, 0, tzpos - 1) : xmlStrdup(s);
  int blen = base ? xmlUTF8Strlen(base) : 0;
  bool digits12 = blen >= 12 && all_digits(base, 12);
  if (digits12) {
    static const struct {
      int at, n;
      const char *after;
    } parts[] = {{1, 4, "-"}, {5, 2, "-"}, {7, 2, "T"}, {9, 2, ":"}, {11, 2, ":"}};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
      sub_append(&out, base, parts[i].at, parts[i].n);
      gw_buf_append(&out, parts[i].after, 1);
    }
    if (blen >= 14)
      sub_append(&out, base, 13, 2);
    else
      gw_buf_append(&out, "00", 2);
    if (tzpos > 0) {
      sub_append(&out, s, tzpos, 3);
      gw_buf_append(&out, ":", 1);
      sub_append(&out, s, tzpos + 3, 2);
    } else if (deftz) {
      gw_buf_append(&out, deftz, (size_t)xmlStrlen(deftz));
    }
  }
  gw_buf_append(&out, "", 0);
  xmlFree(base);
  xmlFree(dtm);
  xmlFree(deftz);
  gw_buf_cleanup(&d);
  push_buf(ctxt, &out);
}

static void fn_cx_system(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(2); /* libxml2: the count and the stack */
  xmlChar *prefix = xmlXPathPopString(ctxt);
  if (!xmlXPathStackIsNodeSet(ctxt)) {
    xmlFree(prefix);
    xmlXPathSetTypeError(ctxt);
    return;
  }
  xmlNodePtr hd = component(pop_first_node(ctxt), 4);
  struct gw_buf out, t;
  gw_buf_init(&out, 4096);
  gw_buf_init(&t, 4096);
  xmlChar *oid = comp_string(hd, 2);
  normalize(&t, oid);
  if (t.len) {
    gw_buf_append(&out, "urn:oid:", 8);
    gw_buf_append(&out, t.data, t.len);
  } else { /* the HD written whole (its text) or its namespace (HD-1) */
    xmlChar *ns = NULL;
    for (xmlNodePtr c = hd ? hd->children : NULL; c && !ns; c = c->next)
      if (c->type == XML_TEXT_NODE)
        ns = xmlNodeGetContent(c);
    xmlChar *ns1 = comp_string(hd, 1);
    ns = xmlStrcat(ns, ns1);
    normalize(&t, ns);
    gw_buf_append(&out, prefix, (size_t)xmlStrlen(prefix));
    gw_buf_append(&out, t.data ? t.data : BAD_CAST "", t.len);
    xmlFree(ns);
    xmlFree(ns1);
  }
  xmlFree(oid);
  xmlFree(prefix);
  gw_buf_cleanup(&t);
  push_buf(ctxt, &out);
}

static void fn_minutes(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(2); /* libxml2: the count and the stack */
  xmlChar *unit = xmlXPathPopString(ctxt);
  xmlChar *num = xmlXPathPopString(ctxt);
  struct gw_buf u, n;
  gw_buf_init(&u, 4096);
  gw_buf_init(&n, 4096);
  normalize(&u, unit);
  normalize(&n, num);
  for (size_t i = 0; i < u.len; i++)
    if (u.data[i] >= 'A' && u.data[i] <= 'Z')
      u.data[i] = (uint8_t)(u.data[i] - 'A' + 'a');
  double v = xmlXPathStringEvalNumber(n.data ? n.data : BAD_CAST ""), r = 0;
  const char *w = u.data ? (const char *)u.data : "";
  if (!(v > 0)) /* NaN too */
    r = 0;
  else if (!strcmp(w, "s") || !strcmp(w, "sec") || !strcmp(w, "seconds"))
    r = ceil(v / 60);
  else if (!strcmp(w, "h") || !strcmp(w, "hr") || !strcmp(w, "hours"))
    r = floor(v * 60 + 0.5); /* XPath round() */
  else if (!w[0] || !strcmp(w, "m") || !strcmp(w, "min") || !strcmp(w, "minutes"))
    r = floor(v + 0.5);
  gw_buf_cleanup(&u);
  gw_buf_cleanup(&n);
  xmlFree(unit);
  xmlFree(num);
  valuePush(ctxt, xmlXPathNewFloat(r));
}

static void fn_map(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(3); /* libxml2: the count and the stack */
  xmlChar *def = xmlXPathPopString(ctxt);
  xmlChar *table = xmlXPathPopString(ctxt);
  xmlChar *key = xmlXPathPopString(ctxt);
  size_t kl = key ? (size_t)xmlStrlen(key) : 0;
  const xmlChar *hit = NULL;
  size_t hl = 0;
  for (const xmlChar *e = table; e && *e && !hit;) {
    while (*e == ' ')
      e++;
    const xmlChar *end = e;
    while (*end && *end != ' ')
      end++;
    const xmlChar *eq = memchr(e, '=', (size_t)(end - e));
    if (eq && (size_t)(eq - e) == kl && memcmp(e, key, kl) == 0)
      hit = eq + 1, hl = (size_t)(end - eq - 1);
    e = end;
  }
  valuePush(ctxt, hit ? xmlXPathWrapString(xmlStrndup(hit, (int)hl)) : xmlXPathNewString(def ? def : BAD_CAST ""));
  xmlFree(def);
  xmlFree(table);
  xmlFree(key);
}

static void fn_if(xmlXPathParserContextPtr ctxt, int nargs) {
  CHECK_ARITY(3); /* libxml2: the count and the stack */
  xmlXPathObjectPtr no = valuePop(ctxt), yes = valuePop(ctxt);
  int test = xmlXPathPopBoolean(ctxt);
  valuePush(ctxt, test ? yes : no);
  xmlXPathFreeObject(test ? no : yes);
}

int gw_xform_register_hl7(void) {
  static const struct {
    const char *name;
    xmlXPathFunction fn;
  } fns[] = {{"comp", fn_comp},       {"e164", fn_e164},           {"phone", fn_phone}, {"instant", fn_instant},
             {"minutes", fn_minutes}, {"cx-system", fn_cx_system}, {"map", fn_map},     {"if", fn_if}};
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
    if (xsltRegisterExtModuleFunction(BAD_CAST fns[i].name, BAD_CAST GW_XFORM_HL7_NS, fns[i].fn) != 0)
      return -1;
  return 0;
}
