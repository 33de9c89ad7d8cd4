#include "codec/xml.h"

#include <libxml/chvalid.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"

/* Any DOCTYPE ends the parse at once: FHIR XML and SOAP never carry one, and
 * stopping here means no entity of the internal subset is ever declared. */
static void no_dtd(void *ctx, const xmlChar *name, const xmlChar *ext, const xmlChar *sys) {
  (void)name, (void)ext, (void)sys;
  xmlParserCtxtPtr c = ctx;
  c->_private = (void *)1;
  xmlStopParser(c);
}

static void quiet(void *ctx, const char *msg, ...) { (void)ctx, (void)msg; }

/* Bounds checked before libxml2 sees a byte: libxml2's attribute handling is quadratic in the attributes
 * of one element (300,000 attributes on one element cost minutes), so each element may carry at most
 * GW_XML_MAX_ATTRS and a name at most GW_XML_MAX_NAME bytes. One linear pass over the bytes: tags,
 * quoted values, comments, CDATA and processing instructions. */
#define GW_XML_MAX_ATTRS 256
#define GW_XML_MAX_NAME  1024

struct scan {
  const char *t;
  size_t n, i;
  int line, col0; /* line of t[i]; index where it starts */
};

static void scan_issue(struct gw_diag *d, const struct scan *s, size_t at, const char *rule, const char *en,
                       const char *pl) {
  struct gw_issue *i = gw_diag_add(d, GW_SEV_ERROR, "too-costly", rule, en, pl);
  if (i) {
    i->line = s->line;
    i->col = (int)(at - (size_t)s->col0) + 1;
  }
}

/* Skips to just past |end| (counting lines); false when it never comes. */
static bool skip_to(struct scan *s, const char *end) {
  size_t el = strlen(end);
  for (; s->i + el <= s->n; s->i++) {
    if (s->t[s->i] == '\n') {
      s->line++;
      s->col0 = (int)s->i + 1;
    }
    if (!memcmp(s->t + s->i, end, el)) {
      s->i += el;
      return true;
    }
  }
  s->i = s->n;
  return false;
}

/* A start or end tag from its '<': counts its attributes ('=' outside quotes) and measures its name. */
static int scan_tag(struct scan *s, struct gw_diag *d) {
  size_t start = s->i++, name = 0, attrs = 0;
  while (s->i < s->n && !strchr(" \t\r\n/>", s->t[s->i]))
    s->i++, name++;
  if (name > GW_XML_MAX_NAME) {
    scan_issue(d, s, start, "xml.name-too-long", "an element name is longer than 1,024 bytes",
               "nazwa elementu jest dłuższa niż 1024 bajty");
    return GW_ERR_INVAL;
  }
  for (char q = 0; s->i < s->n; s->i++) {
    char c = s->t[s->i];
    if (c == '\n') {
      s->line++;
      s->col0 = (int)s->i + 1;
    }
    if (q) {
      q = c == q ? 0 : q;
    } else if (c == '"' || c == '\'') {
      q = c;
    } else if (c == '=' && ++attrs > GW_XML_MAX_ATTRS) {
      scan_issue(d, s, start, "xml.too-many-attributes", "an element has more than 256 attributes",
                 "element ma więcej niż 256 atrybutów");
      return GW_ERR_INVAL;
    } else if (c == '>') {
      s->i++;
      return GW_OK;
    }
  }
  return GW_OK; /* unterminated: libxml2 says where */
}

static int prescan(const char *text, size_t len, struct gw_diag *d) {
  struct scan s = {.t = text, .n = len, .line = 1};
  while (s.i < s.n) {
    const char *lt = memchr(s.t + s.i, '<', s.n - s.i);
    for (const char *p = s.t + s.i; p < (lt ? lt : s.t + s.n); p++) /* text: count its lines */
      if (*p == '\n') {
        s.line++;
        s.col0 = (int)(p - s.t) + 1;
      }
    if (!lt)
      break;
    s.i = (size_t)(lt - s.t);
    const char *r = s.t + s.i;
    size_t left = s.n - s.i;
    if (left >= 4 && !memcmp(r, "<!--", 4))
      skip_to(&s, "-->");
    else if (left >= 9 && !memcmp(r, "<![CDATA[", 9))
      skip_to(&s, "]]>");
    else if (left >= 2 && (r[1] == '?' || r[1] == '!'))
      skip_to(&s, ">"); /* a PI, or a DOCTYPE (refused by the parser) */
    else if (scan_tag(&s, d))
      return GW_ERR_INVAL;
  }
  return GW_OK;
}

int gw_xml_parse(const char *text, size_t len, size_t max_bytes, struct _xmlDoc **out, struct gw_diag *diag) {
  *out = NULL;
  if (len > max_bytes || len > INT32_MAX) {
    gw_diag_add(diag, GW_SEV_ERROR, "too-costly", "xml.too-large", "the XML document exceeds the size limit",
                "dokument XML przekracza dopuszczalny rozmiar");
    return GW_ERR_INVAL;
  }
  if (prescan(text, len, diag))
    return GW_ERR_INVAL;
  xmlParserCtxtPtr c = xmlCreateMemoryParserCtxt(text, (int)len);
  if (!c)
    return GW_ERR_NOMEM;
  c->sax->internalSubset = no_dtd;
  c->sax->externalSubset = no_dtd;
  c->sax->error = quiet;
  c->sax->warning = quiet;
  c->sax->serror = NULL;
  xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
  c->replaceEntities = 0;
  c->loadsubset = 0;
  xmlParseDocument(c);
  bool dtd = c->_private != NULL;
  int rv = GW_OK;
  if (dtd) {
    struct gw_issue *i = gw_diag_add(diag, GW_SEV_ERROR, "security", "xml.dtd-forbidden",
                                     "a DOCTYPE (DTD) is not allowed in messages", "DOCTYPE (DTD) jest niedozwolony");
    if (i) {
      i->line = c->input ? c->input->line : 0;
      i->col = c->input ? c->input->col : 0;
    }
    rv = GW_ERR_INVAL;
  } else if (!c->wellFormed || !c->myDoc) {
    const xmlError *e = xmlCtxtGetLastError(c);
    char en[256];
    snprintf(en, sizeof(en), "not well-formed XML: %s", e && e->message ? e->message : "syntax error");
    char *nl = strchr(en, '\n');
    if (nl)
      *nl = 0;
    struct gw_issue *i = gw_diag_add(diag, GW_SEV_FATAL, "structure", "xml.syntax", en, "niepoprawny XML");
    if (i && e) {
      i->line = e->line;
      i->col = e->int2;
    }
    rv = GW_ERR_INVAL;
  }
  if (rv == GW_OK)
    *out = c->myDoc;
  else
    xmlFreeDoc(c->myDoc);
  c->myDoc = NULL;
  xmlFreeParserCtxt(c);
  return rv;
}

bool gw_xml_text_ok(const unsigned char *s, size_t n, bool newlines) {
  while (n) {
    if (s[0] < 0x80) { /* ASCII, most of any text: XML allows tab, the line ends and 0x20 on */
      if (s[0] < 0x20 && s[0] != '\t' && (!newlines || (s[0] != '\r' && s[0] != '\n')))
        return false;
      s++, n--;
      continue;
    }
    int len = (int)(n > 4 ? 4 : n);
    if (s[0] >= 0x80 && (s[0] < 0xC2 || s[0] > 0xF4))
      return false; /* not a UTF-8 lead byte (xmlGetUTF8Char does not check) */
    int c = xmlGetUTF8Char(s, &len);
    if (c < 0 || !xmlIsCharQ(c) || (!newlines && (c == '\r' || c == '\n')))
      return false;
    s += len;
    n -= (size_t)len;
  }
  return true;
}

int gw_xml_node_alone(struct _xmlNode *n, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  xmlDocPtr one = xmlNewDoc(BAD_CAST "1.0");
  xmlNodePtr copy = one ? xmlDocCopyNode(n, one, 1) : NULL;
  if (copy)
    xmlDocSetRootElement(one, copy);
  xmlBufferPtr b = copy ? xmlBufferCreate() : NULL;
  int rv = GW_ERR_NOMEM;
  if (b && xmlNodeDump(b, one, copy, 0, 0) >= 0 && (*out = gw_malloc((size_t)xmlBufferLength(b) + 1))) {
    memcpy(*out, xmlBufferContent(b), (size_t)xmlBufferLength(b));
    (*out)[xmlBufferLength(b)] = 0;
    *len = (size_t)xmlBufferLength(b);
    rv = GW_OK;
  }
  xmlBufferFree(b);
  xmlFreeDoc(one);
  return rv;
}

static int buf_write(void *ctx, const char *data, int len) { return gw_buf_append(ctx, data, (size_t)len) ? -1 : len; }

int gw_xml_dump(struct _xmlDoc *doc, int decl, int pretty, struct gw_buf *out) {
  int opts = (decl ? 0 : XML_SAVE_NO_DECL) | (pretty ? XML_SAVE_FORMAT : 0);
  xmlSaveCtxtPtr s = xmlSaveToIO(buf_write, NULL, out, "UTF-8", opts);
  if (!s)
    return GW_ERR_NOMEM;
  long r = xmlSaveDoc(s, doc);
  int c = xmlSaveClose(s);
  return (r < 0 || c < 0) ? GW_ERR_TOOBIG : GW_OK;
}
