/* FHIR R4 JSON <-> FHIR XML (the canonical form, a libxml2 document).
 *
 * Both directions follow FHIR's JSON representation rules: repeating
 * elements are arrays, primitive values carry their id and extensions in a
 * "_name" sibling, resources name themselves with "resourceType", element
 * ids and Extension.url are XML attributes, the narrative div is XHTML, and
 * XML elements come out in the order of the model. The model (which elements
 * each type has, their types and cardinality) is data:
 * schemas/fhir/r4-elements.json. */
#ifndef GW_CODEC_FHIR_H
#define GW_CODEC_FHIR_H

#include <stddef.h>

#include "core/buf.h"
#include "core/diag.h"

struct _xmlDoc;
struct gw_fhir_model;

#define GW_FHIR_NS  "http://hl7.org/fhir"
#define GW_XHTML_NS "http://www.w3.org/1999/xhtml"

struct gw_fhir_limits {
  size_t max_bytes;  /* input document */
  size_t max_depth;  /* JSON nesting */
  size_t max_values; /* JSON values in total */
};
extern const struct gw_fhir_limits gw_fhir_default_limits; /* 4 MiB, depth 48, 200,000 values */

/* Loads the element model from |path|. Problems go to |errs|. */
int gw_fhir_model_load(const char *path, struct gw_fhir_model **out, struct gw_buf *errs);
void gw_fhir_model_free(struct gw_fhir_model *m);
/* True when |type| is a resource type the model knows. */
int gw_fhir_model_has_resource(const struct gw_fhir_model *m, const char *type);

/* FHIR JSON text -> FHIR XML document (caller frees with xmlFreeDoc).
 * Unknown elements, wrong JSON types, cardinality and missing required
 * elements are reported to |diag| with FHIRPath locations and rule ids
 * "fhir.*"; any error returns GW_ERR_INVAL and no document. */
int gw_fhir_json_to_xml(const struct gw_fhir_model *m, const char *json, size_t len, const struct gw_fhir_limits *lim,
                        struct _xmlDoc **out, struct gw_diag *diag);

/* FHIR XML document -> FHIR JSON text appended to |out| (|pretty|: indented). */
int gw_fhir_xml_to_json(const struct gw_fhir_model *m, struct _xmlDoc *doc, int pretty, struct gw_buf *out,
                        struct gw_diag *diag);

/* Rewrites every PATCH entry of a transaction Bundle whose resource is a
 * partial resource (the canonical form of a SOAP reschedule or cancellation:
 * only the elements that change) into the body FHIR R4 requires, a FHIRPath
 * Patch Parameters resource (http://hl7.org/fhir/R4/fhirpatch.html): status
 * replaced, other stated elements deleted (if present) and added, meta.tag
 * added; the identifier stays the entry's conditional match. Returns the
 * number of entries rewritten. */
int gw_fhir_patch_as_parameters(const struct gw_fhir_model *m, struct _xmlDoc *doc);

/* A partial resource (what a PATCH states) merged into the version before
 * it, both canonical FHIR XML: each element the partial states replaces the
 * elements of that name, in the model's order; meta.tag is added; identifier
 * and id stay. The merged resource (XML) is appended to |out|. */
int gw_fhir_merge(const struct gw_fhir_model *m, const char *prev, size_t plen, const char *partial, size_t len,
                  struct gw_buf *out);

/* A FHIRPath location into a resource ("Bundle.entry[1].resource.start") as a
 * JSON pointer into its JSON form ("/entry/1/resource/start"). */
void gw_fhir_pointer(const char *fhirpath, char *out, size_t n);
/* Where that location stands in the sender's JSON text: |*line| and |*col|
 * (1-based) of the value (a string's opening quote, a container's bracket),
 * and the pointer in |pointer|.
 * GW_OK, or GW_ERR_NOTFOUND when the text has no such value. */
int gw_fhir_json_locate(const char *json, size_t len, const char *fhirpath, char *pointer, size_t pn, int *line,
                        int *col);

/* The calling thread's XPath context, set to |doc|, with the FHIR namespace as
 * prefix "f". Made once per thread (libxml2 fills every new context with a hash
 * of all XPath functions, a cost not to pay per message); valid until the
 * thread's next call; not to be freed. NULL when out of memory. */
struct _xmlXPathContext *gw_fhir_xpath(struct _xmlDoc *doc);

/* Is |n| the FHIR element |name| (in the FHIR namespace)? For the walks that replace XPath scans. */
struct _xmlNode;
int gw_fhir_is(const struct _xmlNode *n, const char *name);

#endif
