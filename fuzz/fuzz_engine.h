/* The engine the engine-level fuzz targets share: loaded once from the
 * project root (mappings/, schemas/), the process aborts when it cannot be. */
#ifndef GW_FUZZ_ENGINE_H
#define GW_FUZZ_ENGINE_H

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/err.h"
#include "msg/engine.h"

static struct gw_engine *fuzz_engine(void) {
  static struct gw_engine *engine;
  if (!engine) {
    xmlInitParser();
    struct gw_buf errs;
    gw_buf_init(&errs, 1 << 16);
    if (gw_engine_new(".", &engine, &errs)) {
      fprintf(stderr, "run from the project root: %s\n", errs.data ? (char *)errs.data : "");
      abort();
    }
    gw_buf_cleanup(&errs);
  }
  return engine;
}

/* A clock inside the seeds' publication horizon: 2026-11-28. */
#define FUZZ_NOW 1795852800

/* The engine's check of |data| as dialect |dl| on that clock: issues to |d| (initialised
 * here, up to 64), the canonical document to |*doc|. */
static int fuzz_check(const uint8_t *data, size_t size, enum gw_dialect dl, struct gw_diag *d, xmlDocPtr *doc) {
  gw_diag_init(d, 64);
  struct gw_check chk = {.now = FUZZ_NOW};
  *doc = NULL;
  return gw_engine_check(fuzz_engine(), (const char *)data, size, dl, &chk, doc, d);
}

#endif
