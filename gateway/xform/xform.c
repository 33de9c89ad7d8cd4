#include "xform/xform.h"

#include <libexslt/exslt.h>
#include <libxml/tree.h>
#include <libxslt/security.h>
#include <libxslt/transform.h>
#include <libxslt/variables.h>
#include <libxslt/xsltInternals.h>
#include <libxslt/xsltutils.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

struct gw_xform {
  xsltStylesheetPtr sheet;
  char *name;
};

static xsltSecurityPrefsPtr prefs;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Forbid every file and network operation, for stylesheets and inputs alike. */
static void init_once(void) {
  exsltRegisterAll();
  if (gw_xform_register_hl7() != 0)
    return;
  prefs = xsltNewSecurityPrefs();
  if (!prefs)
    return;
  xsltSetSecurityPrefs(prefs, XSLT_SECPREF_READ_FILE, xsltSecurityForbid);
  xsltSetSecurityPrefs(prefs, XSLT_SECPREF_WRITE_FILE, xsltSecurityForbid);
  xsltSetSecurityPrefs(prefs, XSLT_SECPREF_CREATE_DIRECTORY, xsltSecurityForbid);
  xsltSetSecurityPrefs(prefs, XSLT_SECPREF_READ_NETWORK, xsltSecurityForbid);
  xsltSetSecurityPrefs(prefs, XSLT_SECPREF_WRITE_NETWORK, xsltSecurityForbid);
  /* not the default: loading our own stylesheets (and their imports) must read files */
}

struct collector {
  struct gw_buf *buf;
};

static void collect(void *ctx, const char *msg, ...) {
  struct collector *c = ctx;
  if (!c || !c->buf)
    return;
  char line[512];
  va_list ap;
  va_start(ap, msg);
  vsnprintf(line, sizeof(line), msg, ap);
  va_end(ap);
  gw_buf_append(c->buf, line, strlen(line));
}

int gw_xform_load(const char *path, struct gw_xform **out, struct gw_buf *errs) {
  pthread_once(&once, init_once);
  *out = NULL;
  if (!prefs)
    return GW_ERR_NOMEM;
  struct collector c = {errs};
  xsltSetGenericErrorFunc(&c, collect);
  xmlSetGenericErrorFunc(&c, collect);
  xsltStylesheetPtr s = xsltParseStylesheetFile(BAD_CAST path);
  xsltSetGenericErrorFunc(NULL, NULL);
  xmlSetGenericErrorFunc(NULL, NULL);
  if (!s || s->errors) {
    if (s)
      xsltFreeStylesheet(s);
    gw_buf_printf(errs, "%s: the mapping does not compile\n", path);
    return GW_ERR_CONF;
  }
  struct gw_xform *x = calloc(1, sizeof(*x));
  const char *slash = strrchr(path, '/');
  if (!x || !(x->name = strdup(slash ? slash + 1 : path))) {
    free(x);
    xsltFreeStylesheet(s);
    return GW_ERR_NOMEM;
  }
  x->sheet = s;
  *out = x;
  return GW_OK;
}

void gw_xform_free(struct gw_xform *x) {
  if (!x)
    return;
  xsltFreeStylesheet(x->sheet);
  free(x->name);
  free(x);
}

const char *gw_xform_name(const struct gw_xform *x) { return x->name; }

int gw_xform_apply(const struct gw_xform *x, struct _xmlDoc *in, const char *const *params, struct _xmlDoc **out,
                   struct gw_diag *diag) {
  *out = NULL;
  xsltTransformContextPtr t = xsltNewTransformContext(x->sheet, in);
  if (!t)
    return GW_ERR_NOMEM;
  struct gw_buf msgs;
  gw_buf_init(&msgs, 4096);
  struct collector c = {&msgs};
  xsltSetCtxtSecurityPrefs(prefs, t);
  xsltSetTransformErrorFunc(t, &c, collect);
  int rv = GW_OK;
  if (params && xsltQuoteUserParams(t, (const char **)params) != 0)
    rv = GW_ERR_INVAL;
  xmlDocPtr res = rv ? NULL : xsltApplyStylesheetUser(x->sheet, in, NULL, NULL, NULL, t);
  if (!res || t->state == XSLT_STATE_ERROR || t->state == XSLT_STATE_STOPPED) {
    char en[256];
    size_t l = msgs.len;
    while (l && (msgs.data[l - 1] == '\n' || msgs.data[l - 1] == ' '))
      l--;
    snprintf(en, sizeof(en), "mapping %s failed: %.*s", x->name, (int)(l > 200 ? 200 : l),
             msgs.data ? (char *)msgs.data : "no output");
    struct gw_issue *i = gw_diag_add(diag, GW_SEV_ERROR, "processing", "xform.failed", en, en);
    if (i)
      snprintf(i->location, sizeof(i->location), "%s", x->name);
    xmlFreeDoc(res);
    rv = GW_ERR_INVAL;
  } else {
    *out = res;
  }
  xsltFreeTransformContext(t);
  gw_buf_cleanup(&msgs);
  return rv;
}
