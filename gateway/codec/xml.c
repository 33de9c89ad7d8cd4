#include "codec/xml.h"

#include <libxml/chvalid.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

int gw_xml_parse(const char *text, size_t len, size_t max_bytes, struct _xmlDoc **out, struct gw_diag *diag) {
  *out = NULL;
  if (len > max_bytes || len > INT32_MAX) {
    gw_diag_add(diag, GW_SEV_ERROR, "too-costly", "xml.too-large", "the XML document exceeds the size limit",
                "dokument XML przekracza dopuszczalny rozmiar");
    return GW_ERR_INVAL;
  }
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
