/* XSLT 1.0 mappings (libxslt): compiled once at start-up from mappings/,
 * run with security preferences that forbid reading or writing files and
 * any network access, so a stylesheet or an input cannot reach outside the
 * documents it is given. A compiled mapping is read-only and shared by all
 * workers. */
#ifndef GW_XFORM_XFORM_H
#define GW_XFORM_XFORM_H

#include "core/buf.h"
#include "core/diag.h"

struct _xmlDoc;
struct gw_xform;

/* Compiles the stylesheet at |path|. Errors (with line numbers) go to |errs|. */
int gw_xform_load(const char *path, struct gw_xform **out, struct gw_buf *errs);
void gw_xform_free(struct gw_xform *x);
const char *gw_xform_name(const struct gw_xform *x);

/* The namespace of the gateway's XPath extension functions for HL7 v2 primitives (cg:comp,
 * cg:instant, cg:e164, cg:phone: xform/hl7fn.c, docs/mappings.md). Registered once, before the
 * first stylesheet compiles. */
#define GW_XFORM_HL7_NS "urn:cergw:xslt:hl7v2"
int gw_xform_register_hl7(void);

/* Runs |x| on |in|. |params| is a NULL-terminated list of name, value pairs
 * of string parameters (quoted for you). On success |*out| is a new document.
 * A transform that fails, terminates with xsl:message terminate="yes", or
 * touches the file system or network adds "xform.failed" to |diag|. */
int gw_xform_apply(const struct gw_xform *x, struct _xmlDoc *in, const char *const *params, struct _xmlDoc **out,
                   struct gw_diag *diag);

#endif
