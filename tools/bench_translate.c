/* bench_translate: messages per second through the engine on one thread.
 * Usage: bench_translate MODE SECONDS FILE...   MODE: check (the full
 * validation path: parse, map, model check, CeR rules) | render (check +
 * FHIR JSON output). Files are taken in turn. Prints "RESULT mode=...
 * msgs_per_s=N". The rules' clock is $NOW (a FHIR instant) when set, so that
 * fixed test data stays inside the publication horizon. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/hl7v2.h"
#include "core/err.h"
#include "msg/engine.h"
#include "validate/rules.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
  if (argc < 4) {
    fprintf(stderr, "usage: bench_translate check|render SECONDS FILE...\n");
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
  double secs = atof(argv[2]), t0 = now_s(), t;
  long n = 0, bad = 0;
  struct gw_buf out;
  gw_buf_init(&out, 16u << 20);
  do {
    for (int k = 0; k < 64; k++) {
      struct gw_diag d;
      gw_diag_init(&d, 64);
      xmlDocPtr doc = NULL;
      int fi = (int)(n % nfiles);
      if (outbound) {
        const char *ct;
        out.len = 0;
        gw_engine_outbound(e, GW_OUT_P1, odoc, "k", 0, &out, &ct, &d);
        out.len = 0;
        gw_engine_outbound(e, GW_OUT_APKOLCE, odoc, "k", 0, &out, &ct, &d);
        gw_diag_cleanup(&d);
        n++;
        continue;
      }
      if (gw_engine_check(e, texts[fi], lens[fi], GW_D_UNKNOWN, &chk, &doc, &d) != GW_OK)
        bad++;
      if (render && doc) {
        out.len = 0;
        gw_engine_render(e, doc, GW_D_FHIR_JSON, 0, &out, &d);
      }
      xmlFreeDoc(doc);
      gw_diag_cleanup(&d);
      n++;
    }
    t = now_s() - t0;
  } while (t < secs);
  printf("RESULT mode=%s files=%d msgs=%ld rejected=%ld msgs_per_s=%.0f\n", argv[1], nfiles, n, bad, (double)n / t);
  gw_buf_cleanup(&out);
  xmlFreeDoc(odoc);
  gw_engine_free(e);
  for (int i = 0; i < nfiles; i++)
    free(texts[i]);
  free(texts);
  free(lens);
  return 0;
}
