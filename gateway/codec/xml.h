/* Safe XML parsing for untrusted input (SOAP envelopes, FHIR XML, HL7 v2
 * XML): no DTD at all (a DOCTYPE stops the parser before any entity is
 * declared), no entity substitution, no network, no file access, bounded
 * size and depth (libxml2's default 256 levels), and errors with line and
 * column. */
#ifndef GW_CODEC_XML_H
#define GW_CODEC_XML_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/diag.h"

struct _xmlDoc;
struct _xmlNode;

/* Parses |len| bytes (at most |max_bytes|). On success |*out| is a new
 * document (free with xmlFreeDoc). Problems go to |diag| as "xml.*" rules:
 * xml.too-large, xml.too-many-attributes (more than 256 on one element),
 * xml.name-too-long (over 1,024 bytes), xml.dtd-forbidden, xml.syntax — the
 * first three found by one linear pass before libxml2 parses (its attribute
 * handling is quadratic in one element's attributes). Returns 0 or
 * GW_ERR_INVAL. */
int gw_xml_parse(const char *text, size_t len, size_t max_bytes, struct _xmlDoc **out, struct gw_diag *diag);

/* True when |n| bytes at |s| are UTF-8 of code points XML can carry (no
 * control characters but tab, and CR/LF only when |newlines|). */
#include <stdbool.h>
bool gw_xml_text_ok(const unsigned char *s, size_t n, bool newlines);

/* Serialises |doc| (no XML declaration when |decl| is 0) to |out|. */
struct gw_buf;
int gw_xml_dump(struct _xmlDoc *doc, int decl, int pretty, struct gw_buf *out);

/* Element |n| (and its subtree) written as a document of its own, its namespaces declared on it, no
 * XML declaration: |*out| malloc'd and NUL-terminated. GW_OK or GW_ERR_NOMEM. */
int gw_xml_node_alone(struct _xmlNode *n, uint8_t **out, size_t *len);

#endif
