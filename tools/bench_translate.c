/* bench_translate: messages per second through the engine on one thread.
 * Usage: bench_translate MODE SECONDS FILE...   MODE: check (the full
 * validation path: parse, map, model check, CeR rules) | render (check +
 * FHIR JSON output) | outbound (P1 and AP-KOLCE renderings of one checked
 * message). Files are taken in turn. Prints "RESULT mode=... msgs_per_s=N".
 * The rules' clock is $NOW (a FHIR instant) when set, so that fixed test data
 * stays inside the publication horizon.
 *
 * bench_translate xslt-floor SECONDS FILE.hl7: what libxslt itself costs,
 * in process, on the message's HL7 XML: siu-to-fhir.xsl beside a stylesheet
 * that writes the very same Bundle literally (no XPath, no logic: the cost
 * of building the output tree) and a trivial one (the cost of a transform).
 * Prints "RESULT mode=xslt-floor trivial_per_s=.. literal_per_s=..
 * mapping_per_s=..".
 *
 * bench_translate count N FILE...: exactly N rounds over the files (check and
 * FHIR JSON rendering of each), for instruction counts under callgrind: the
 * difference between two N divided by the messages is the cost of one
 * (bench/instructions.sh). */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec/hl7v2.h"
#include "core/err.h"
#include "core/file.h"
#include "msg/engine.h"
#include "validate/rules.h"
#include "xform/xform.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Transforms per second of |x| on |in| for |secs|. */
static double xform_rate(const struct gw_xform *x, xmlDocPtr in, double secs) {
  long n = 0;
  double t0 = now_s(), t;
  do {
    for (int k = 0; k < 64; k++, n++) {
      struct gw_diag d;
      gw_diag_init(&d, 8);
      xmlDocPtr out = NULL;
      if (gw_xform_apply(x, in, NULL, &out, &d))
        n = -1000000000L;
      xmlFreeDoc(out);
      gw_diag_cleanup(&d);
    }
    t = now_s() - t0;
  } while (t < secs);
  return n < 0 ? 0 : (double)n / t;
}

static struct gw_xform *xform_from_text(const char *path, const char *text, struct gw_buf *errs) {
  FILE *f = fopen(path, "w");
  if (!f)
    return NULL;
  fputs(text, f);
  fclose(f);
  struct gw_xform *x = NULL;
  gw_xform_load(path, &x, errs);
  remove(path);
  return x;
}

static int xslt_floor(double secs, const char *file) {
  size_t len;
  char *text = gw_file_read(file, 1 << 20, &len, NULL);
  struct gw_diag d;
  gw_diag_init(&d, 8);
  xmlDocPtr v2 = NULL, out = NULL;
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  struct gw_xform *map = NULL, *lit = NULL, *triv = NULL;
  const char *root = getenv("CERGW_HOME") ? getenv("CERGW_HOME") : ".";
  char path[4096];
  snprintf(path, sizeof(path), "%s/mappings/siu-to-fhir.xsl", root);
  int rv = 2;
  if (!text || gw_hl7_parse(text, len, NULL, &v2, &d) || gw_xform_load(path, &map, &errs) ||
      gw_xform_apply(map, v2, NULL, &out, &d))
    goto done;
  /* the mapping's output for this message, as the body of a stylesheet's only template */
  xmlBufferPtr b = xmlBufferCreate();
  xmlNodeDump(b, out, xmlDocGetRootElement(out), 0, 0);
  const char *body = (const char *)xmlBufferContent(b);
  struct gw_buf xsl;
  gw_buf_init(&xsl, 1 << 20);
  gw_buf_printf(&xsl,
                "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
                "<xsl:template match=\"/\">%s</xsl:template></xsl:stylesheet>",
                body);
  bool braces = strchr(body, '{') || strchr(body, '}'); /* would be read as attribute value templates */
  xmlBufferFree(b);
  char tmp[] = "/tmp/cergw-floor-XXXXXX";
  int fd = mkstemp(tmp);
  if (fd < 0)
    goto done;
  close(fd);
  lit = braces ? NULL : xform_from_text(tmp, (const char *)xsl.data, &errs);
  gw_buf_cleanup(&xsl);
  triv = xform_from_text(tmp,
                         "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" "
                         "xmlns=\"http://hl7.org/fhir\"><xsl:template match=\"/\"><Bundle><type "
                         "value=\"transaction\"/></Bundle></xsl:template></xsl:stylesheet>",
                         &errs);
  if (!triv)
    goto done;
  double r_triv = xform_rate(triv, v2, secs), r_lit = lit ? xform_rate(lit, v2, secs) : 0,
         r_map = xform_rate(map, v2, secs);
  printf("RESULT mode=xslt-floor trivial_per_s=%.0f literal_per_s=%.0f mapping_per_s=%.0f\n", r_triv, r_lit, r_map);
  rv = 0;
done:
  if (rv)
    fprintf(stderr, "xslt-floor: %s cannot be mapped\n%s", file, errs.data ? (char *)errs.data : "");
  gw_xform_free(map);
  gw_xform_free(lit);
  gw_xform_free(triv);
  xmlFreeDoc(v2);
  xmlFreeDoc(out);
  gw_diag_cleanup(&d);
  gw_buf_cleanup(&errs);
  free(text);
  return rv;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "dump-hl7xml") == 0) { /* the XML that xsltproc gets as the reference */
    FILE *f = fopen(argv[2], "rb");
    if (!f)
      return 2;
    static char t[1 << 20];
    size_t l = fread(t, 1, sizeof(t), f);
    fclose(f);
    struct gw_diag d;
    gw_diag_init(&d, 8);
    xmlDocPtr doc = NULL;
    if (gw_hl7_parse(t, l, NULL, &doc, &d))
      return 1;
    xmlDocDump(stdout, doc);
    xmlFreeDoc(doc);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "xslt-floor") == 0)
    return xslt_floor(atof(argv[2]), argv[3]);
  if (argc < 4) {
    fprintf(stderr, "usage: bench_translate check|render|outbound SECONDS FILE...\n"
                    "       bench_translate count ROUNDS FILE...\n"
                    "       bench_translate xslt-floor SECONDS FILE.hl7\n");
    return 2;
  }
  xmlInitParser();
  int nfiles = argc - 3;
  char **texts = calloc((size_t)nfiles, sizeof(char *));
  size_t *lens = calloc((size_t)nfiles, sizeof(size_t));
  for (int i = 0; i < nfiles; i++) {
    FILE *f = fopen(argv[3 + i], "rb");
    if (!f)
      return 2;
    texts[i] = malloc(1 << 22);
    lens[i] = fread(texts[i], 1, (1 << 22) - 1, f);
    fclose(f);
  }
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  struct gw_engine *e;
  const char *root = getenv("CERGW_HOME") ? getenv("CERGW_HOME") : ".";
  if (gw_engine_new(root, &e, &errs)) {
    fprintf(stderr, "%s", errs.data ? (char *)errs.data : "");
    return 2;
  }
  struct gw_check chk = {.now = time(NULL)};
  if (getenv("NOW"))
    gw_instant_parse(getenv("NOW"), &chk.now);
  int render = strcmp(argv[1], "render") == 0;
  /* outbound: one checked document rendered for P1 and AP-KOLCE over and over */
  int outbound = strcmp(argv[1], "outbound") == 0;
  xmlDocPtr odoc = NULL;
  if (outbound) {
    struct gw_diag d;
    gw_diag_init(&d, 64);
    gw_engine_check(e, texts[0], lens[0], GW_D_UNKNOWN, &chk, &odoc, &d);
    gw_diag_cleanup(&d);
    if (!odoc)
      return 2;
  }
  long rounds = !strcmp(argv[1], "count") ? atol(argv[2]) : -1; /* exactly this many rounds */
  if (rounds >= 0)
    render = 1;
  double secs = atof(argv[2]), t0 = now_s(), t;
  long n = 0, bad = 0;
  struct gw_buf out, json;
  gw_buf_init(&out, 16u << 20);
  gw_buf_init(&json, 16u << 20);
  if (render)
    chk.json = &json;
  do {
    for (int k = 0; k < (rounds >= 0 ? nfiles : 64); k++) {
      struct gw_diag d;
      gw_diag_init(&d, 64);
      xmlDocPtr doc = NULL;
      int fi = (int)(n % nfiles);
      if (outbound) {
        const char *ct;
        out.len = 0;
        gw_engine_outbound(e, GW_OUT_P1, odoc, "k", 0, "000000012345", &out, &ct, &d);
        out.len = 0;
        gw_engine_outbound(e, GW_OUT_APKOLCE, odoc, "k", 0, "000000012345", &out, &ct, &d);
        gw_diag_cleanup(&d);
        n++;
        continue;
      }
      if (gw_engine_check(e, texts[fi], lens[fi], GW_D_UNKNOWN, &chk, &doc, &d) != GW_OK)
        bad++;
      if (render && doc) { /* the check's own JSON when it wrote one (one conversion, not two) */
        out.len = 0;
        gw_engine_render_checked(e, doc, &chk, GW_D_FHIR_JSON, 0, 0, &out, &d);
      }
      xmlFreeDoc(doc);
      gw_diag_cleanup(&d);
      n++;
    }
    t = now_s() - t0;
  } while (rounds >= 0 ? n < rounds * nfiles : t < secs);
  printf("RESULT mode=%s files=%d msgs=%ld rejected=%ld msgs_per_s=%.0f\n", argv[1], nfiles, n, bad, (double)n / t);
  gw_buf_cleanup(&out);
  gw_buf_cleanup(&json);
  xmlFreeDoc(odoc);
  gw_engine_free(e);
  for (int i = 0; i < nfiles; i++)
    free(texts[i]);
  free(texts);
  free(lens);
  return 0;
}
