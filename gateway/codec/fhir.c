#include "codec/fhir.h"

#include <libxml/chvalid.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "codec/xml.h"
#include "core/err.h"
#include "core/file.h"

const struct gw_fhir_limits gw_fhir_default_limits = {
    .max_bytes = 4u << 20,
    .max_depth = 48,
    .max_values = 200000,
};

/* ---- the model ---- */

enum jkind { J_STRING, J_NUMBER, J_BOOL };

struct ftype;

struct elem {
  char *name;                 /* without "[x]" */
  char **types;               /* one, or several for a choice */
  char **keys;                /* the JSON key / XML name for each type: "value" + "String" for choices */
  const struct ftype **tdefs; /* each type's definition when it is complex, else NULL */
  int ntypes;
  bool choice, many, attr;
  int min;
};

struct ftype {
  char *name;
  struct elem *elems;
  int n;
  bool resource;
};

struct gw_fhir_model {
  struct ftype *types;
  int n;
  char **prim_names; /* primitive types with a non-string JSON form */
  enum jkind *prim_kinds;
  int nprim;
  const struct ftype *element, *extension; /* looked up once: the converters use them per value */
};

static void choice_name(char *out, size_t n, const char *base, const char *type);

static const struct ftype *find_type(const struct gw_fhir_model *m, const char *name) {
  for (int i = 0; i < m->n; i++)
    if (strcmp(m->types[i].name, name) == 0)
      return &m->types[i];
  return NULL;
}

int gw_fhir_model_has_resource(const struct gw_fhir_model *m, const char *type) {
  const struct ftype *t = find_type(m, type);
  return t && t->resource;
}

static enum jkind prim_kind(const struct gw_fhir_model *m, const char *type) {
  for (int i = 0; i < m->nprim; i++)
    if (strcmp(m->prim_names[i], type) == 0)
      return m->prim_kinds[i];
  return J_STRING;
}

void gw_fhir_model_free(struct gw_fhir_model *m) {
  if (!m)
    return;
  for (int i = 0; i < m->n; i++) {
    for (int j = 0; j < m->types[i].n; j++) {
      struct elem *e = &m->types[i].elems[j];
      free(e->name);
      for (int k = 0; k < e->ntypes; k++) {
        free(e->types[k]);
        if (e->keys)
          free(e->keys[k]);
      }
      free(e->types);
      free(e->keys);
      free(e->tdefs);
    }
    free(m->types[i].elems);
    free(m->types[i].name);
  }
  for (int i = 0; i < m->nprim; i++)
    free(m->prim_names[i]);
  free(m->prim_names);
  free(m->prim_kinds);
  free(m->types);
  free(m);
}

static int load_elem(struct elem *e, yajl_val v) {
  if (!YAJL_IS_ARRAY(v) || v->u.array.len != 4 || !YAJL_IS_STRING(v->u.array.values[0]) ||
      !YAJL_IS_INTEGER(v->u.array.values[2]) || !YAJL_IS_STRING(v->u.array.values[3]))
    return GW_ERR_INVAL;
  const char *name = YAJL_GET_STRING(v->u.array.values[0]);
  size_t nl = strlen(name);
  e->choice = nl > 3 && strcmp(name + nl - 3, "[x]") == 0;
  e->name = strndup(name, e->choice ? nl - 3 : nl);
  e->min = (int)YAJL_GET_INTEGER(v->u.array.values[2]);
  e->many = strcmp(v->u.array.values[3]->u.string, "*") == 0;
  yajl_val t = v->u.array.values[1];
  if (YAJL_IS_STRING(t)) {
    e->types = calloc(1, sizeof(char *));
    if (!e->types)
      return GW_ERR_NOMEM;
    e->types[0] = strdup(t->u.string);
    e->ntypes = 1;
  } else if (YAJL_IS_ARRAY(t) && e->choice) {
    e->types = calloc(t->u.array.len, sizeof(char *));
    if (!e->types)
      return GW_ERR_NOMEM;
    for (size_t i = 0; i < t->u.array.len; i++) {
      if (!YAJL_IS_STRING(t->u.array.values[i]))
        return GW_ERR_INVAL;
      e->types[e->ntypes++] = strdup(t->u.array.values[i]->u.string);
    }
  } else {
    return GW_ERR_INVAL;
  }
  e->attr = e->types[0][0] == '@';
  return e->name ? GW_OK : GW_ERR_NOMEM;
}

int gw_fhir_model_load(const char *path, struct gw_fhir_model **out, struct gw_buf *errs) {
  *out = NULL;
  size_t n;
  char *text = gw_file_read_conf(path, 1 << 20, &n, errs);
  if (!text)
    return GW_ERR_CONF;
  char ebuf[256];
  yajl_val root = yajl_tree_parse(text, ebuf, sizeof(ebuf));
  free(text);
  if (!root || !YAJL_IS_OBJECT(root)) {
    gw_buf_printf(errs, "%s: not a JSON object: %s\n", path, ebuf);
    yajl_tree_free(root);
    return GW_ERR_CONF;
  }
  struct gw_fhir_model *m = calloc(1, sizeof(*m));
  size_t nkeys = root->u.object.len;
  m->types = calloc(nkeys, sizeof(*m->types));
  int rv = (m && m->types) ? GW_OK : GW_ERR_NOMEM;
  yajl_val resources = NULL;
  for (size_t i = 0; rv == GW_OK && i < nkeys; i++) {
    const char *key = root->u.object.keys[i];
    yajl_val v = root->u.object.values[i];
    if (strcmp(key, "_primitive") == 0 && YAJL_IS_OBJECT(v)) {
      m->prim_names = calloc(v->u.object.len + 1, sizeof(char *));
      m->prim_kinds = calloc(v->u.object.len + 1, sizeof(enum jkind));
      for (size_t j = 0; m->prim_names && m->prim_kinds && j < v->u.object.len; j++) {
        const char *k = YAJL_GET_STRING(v->u.object.values[j]);
        m->prim_names[m->nprim] = strdup(v->u.object.keys[j]);
        m->prim_kinds[m->nprim++] = (k && strcmp(k, "boolean") == 0) ? J_BOOL : J_NUMBER;
      }
      continue;
    }
    if (strcmp(key, "_resources") == 0) {
      resources = v;
      continue;
    }
    if (key[0] == '_')
      continue;
    if (!YAJL_IS_ARRAY(v)) {
      gw_buf_printf(errs, "%s: type %s: expected an array of elements\n", path, key);
      rv = GW_ERR_CONF;
      break;
    }
    struct ftype *t = &m->types[m->n++];
    t->name = strdup(key);
    t->elems = calloc(v->u.array.len ? v->u.array.len : 1, sizeof(*t->elems));
    if (!t->name || !t->elems) {
      rv = GW_ERR_NOMEM;
      break;
    }
    for (size_t j = 0; j < v->u.array.len; j++) {
      if (load_elem(&t->elems[t->n++], v->u.array.values[j])) {
        gw_buf_printf(errs, "%s: type %s: element %zu is not [name, type, min, max]\n", path, key, j + 1);
        rv = GW_ERR_CONF;
        break;
      }
    }
  }
  for (size_t i = 0; rv == GW_OK && resources && YAJL_IS_ARRAY(resources) && i < resources->u.array.len; i++) {
    const char *r = YAJL_GET_STRING(resources->u.array.values[i]);
    struct ftype *t = r ? (struct ftype *)find_type(m, r) : NULL;
    if (!t) {
      gw_buf_printf(errs, "%s: resource %s has no element list\n", path, r ? r : "?");
      rv = GW_ERR_CONF;
    } else {
      t->resource = true;
    }
  }
  yajl_tree_free(root);
  /* resolve once what the converters would otherwise look up per element */
  for (int i = 0; rv == GW_OK && i < m->n; i++)
    for (int j = 0; rv == GW_OK && j < m->types[i].n; j++) {
      struct elem *e = &m->types[i].elems[j];
      e->keys = calloc((size_t)e->ntypes, sizeof(char *));
      e->tdefs = calloc((size_t)e->ntypes, sizeof(*e->tdefs));
      if (!e->keys || !e->tdefs) {
        rv = GW_ERR_NOMEM;
        break;
      }
      for (int k = 0; k < e->ntypes; k++) {
        char key[96];
        if (e->choice)
          choice_name(key, sizeof(key), e->name, e->types[k]);
        else
          snprintf(key, sizeof(key), "%s", e->name);
        e->keys[k] = strdup(key);
        e->tdefs[k] = find_type(m, e->types[k]);
        if (!e->keys[k])
          rv = GW_ERR_NOMEM;
      }
    }
  if (rv) {
    gw_fhir_model_free(m);
    return rv;
  }
  m->element = find_type(m, "Element");
  m->extension = find_type(m, "Extension");
  *out = m;
  return GW_OK;
}

/* ---- JSON -> XML ---- */

struct jstate {
  const struct gw_fhir_model *m;
  struct gw_diag *diag;
  xmlDocPtr doc;
  xmlNsPtr ns;
  bool failed;
};

static void jerr(struct jstate *s, const char *code, const char *rule, const char *path, const char *en,
                 const char *pl) {
  s->failed = true;
  struct gw_issue *i = gw_diag_add(s->diag, GW_SEV_ERROR, code, rule, en, pl);
  if (i)
    snprintf(i->location, sizeof(i->location), "%s", path);
}

/* The JSON member of |obj| named |key|, or NULL. */
static yajl_val member(yajl_val obj, const char *key) {
  for (size_t i = 0; i < obj->u.object.len; i++)
    if (strcmp(obj->u.object.keys[i], key) == 0)
      return obj->u.object.values[i];
  return NULL;
}

/* "value" + "string" -> "valueString" */
static void choice_name(char *out, size_t n, const char *base, const char *type) {
  snprintf(out, n, "%s%c%s", base, type[0] >= 'a' && type[0] <= 'z' ? type[0] - 32 : type[0], type + 1);
}

static void conv_members(struct jstate *s, const struct ftype *t, yajl_val obj, xmlNodePtr node, const char *path,
                         bool resource);
static xmlNodePtr conv_resource(struct jstate *s, yajl_val obj, xmlNodePtr parent, const char *path);

static void conv_extension_holder(struct jstate *s, yajl_val ext, xmlNodePtr el, const char *path) {
  /* "_name": {"id": "...", "extension": [...]} */
  if (!YAJL_IS_OBJECT(ext)) {
    jerr(s, "structure", "fhir.primitive-extension", path, "a primitive's \"_\" sibling must be an object",
         "element \"_\" wartości prostej musi być obiektem");
    return;
  }
  const struct ftype *element = s->m->element; /* id attribute + extensions */
  if (element)
    conv_members(s, element, ext, el, path, false);
}

static bool json_number_ok(const char *v) {
  /* JSON number grammar */
  const char *p = v;
  if (*p == '-')
    p++;
  if (*p == '0')
    p++;
  else if (*p >= '1' && *p <= '9')
    while (*p >= '0' && *p <= '9')
      p++;
  else
    return false;
  if (*p == '.') {
    p++;
    if (!(*p >= '0' && *p <= '9'))
      return false;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      p++;
    if (!(*p >= '0' && *p <= '9'))
      return false;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  return *p == 0;
}

static void emit_value(struct jstate *s, const char *xmlname, const char *type, const struct ftype *ct, yajl_val v,
                       yajl_val ext, xmlNodePtr parent, const char *path) {
  char msg[256], msgpl[256];
  if (v && YAJL_IS_STRING(v) && !gw_xml_text_ok((const unsigned char *)v->u.string, strlen(v->u.string), true)) {
    /* FHIR strings may hold any Unicode but control characters (tab, CR, LF aside): what XML can carry */
    jerr(s, "value", "fhir.invalid-char", path, "the string holds a control character that FHIR does not allow",
         "tekst zawiera znak sterujący niedozwolony w FHIR");
    return;
  }
  if (type[0] == '@') { /* id or url: an XML attribute */
    if (!YAJL_IS_STRING(v) || !*YAJL_GET_STRING(v)) {
      snprintf(msg, sizeof(msg), "%s must be a non-empty string", path);
      snprintf(msgpl, sizeof(msgpl), "%s musi być niepustym tekstem", path);
      jerr(s, "structure", "fhir.type", path, msg, msgpl);
      return;
    }
    xmlSetProp(parent, BAD_CAST xmlname, BAD_CAST YAJL_GET_STRING(v));
    return;
  }
  if (strcmp(type, "Resource") == 0) {
    xmlNodePtr wrap = xmlNewChild(parent, s->ns, BAD_CAST xmlname, NULL);
    if (!YAJL_IS_OBJECT(v)) {
      jerr(s, "structure", "fhir.type", path, "a resource must be a JSON object", "zasób musi być obiektem JSON");
      return;
    }
    conv_resource(s, v, wrap, path);
    return;
  }
  if (strcmp(type, "xhtml") == 0) {
    if (!YAJL_IS_STRING(v)) {
      jerr(s, "structure", "fhir.type", path, "the narrative div must be a string of XHTML",
           "narracja div musi być tekstem XHTML");
      return;
    }
    const char *x = YAJL_GET_STRING(v);
    xmlDocPtr frag = NULL; /* the same safe parse as every XML input: no DTD, bounded attributes */
    struct gw_diag xd;
    gw_diag_init(&xd, 2);
    gw_xml_parse(x, strlen(x), strlen(x) + 1, &frag, &xd);
    gw_diag_cleanup(&xd);
    xmlNodePtr r = frag ? xmlDocGetRootElement(frag) : NULL;
    if (!r || !xmlStrEqual(r->name, BAD_CAST "div") || !r->ns || !xmlStrEqual(r->ns->href, BAD_CAST GW_XHTML_NS) ||
        frag->intSubset) {
      jerr(s, "structure", "fhir.xhtml", path,
           "the narrative div must be well-formed XHTML: one div element in the XHTML namespace",
           "narracja div musi być poprawnym XHTML: jeden element div w przestrzeni nazw XHTML");
      xmlFreeDoc(frag);
      return;
    }
    xmlNodePtr copy = xmlDocCopyNode(r, s->doc, 1);
    if (copy)
      xmlAddChild(parent, copy);
    xmlFreeDoc(frag);
    return;
  }
  if (ct) {
    if (!YAJL_IS_OBJECT(v)) {
      snprintf(msg, sizeof(msg), "%s must be an object (%s)", path, type);
      snprintf(msgpl, sizeof(msgpl), "%s musi być obiektem (%s)", path, type);
      jerr(s, "structure", "fhir.type", path, msg, msgpl);
      return;
    }
    xmlNodePtr el = xmlNewChild(parent, s->ns, BAD_CAST xmlname, NULL);
    conv_members(s, ct, v, el, path, false);
    return;
  }
  /* a primitive */
  xmlNodePtr el = xmlNewChild(parent, s->ns, BAD_CAST xmlname, NULL);
  if (v && !YAJL_IS_NULL(v)) {
    enum jkind k = prim_kind(s->m, type);
    const char *val = NULL;
    char tmp[8];
    if (k == J_STRING && YAJL_IS_STRING(v))
      val = YAJL_GET_STRING(v);
    else if (k == J_NUMBER && YAJL_IS_NUMBER(v))
      val = v->u.number.r;
    else if (k == J_BOOL && (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)))
      val = strcpy(tmp, YAJL_IS_TRUE(v) ? "true" : "false");
    if (!val || (k == J_STRING && !*val)) {
      snprintf(msg, sizeof(msg), "%s must be a %s%s (FHIR %s)", path,
               k == J_STRING   ? "non-empty string"
               : k == J_NUMBER ? "number"
                               : "boolean",
               k == J_STRING ? "" : " without quotes", type);
      snprintf(msgpl, sizeof(msgpl), "%s musi być %s (FHIR %s)", path,
               k == J_STRING   ? "niepustym tekstem"
               : k == J_NUMBER ? "liczbą"
                               : "wartością logiczną",
               type);
      jerr(s, "structure", "fhir.type", path, msg, msgpl);
      return;
    }
    xmlSetProp(el, BAD_CAST "value", BAD_CAST val);
  } else if (!ext || YAJL_IS_NULL(ext)) {
    jerr(s, "structure", "fhir.null", path, "null is only allowed to align primitive arrays with their \"_\" sibling",
         "null jest dozwolony tylko do wyrównania tablic z elementem \"_\"");
    return;
  }
  if (ext && !YAJL_IS_NULL(ext))
    conv_extension_holder(s, ext, el, path);
  if (!xmlHasProp(el, BAD_CAST "value") && !xmlHasProp(el, BAD_CAST "id") && !el->children)
    jerr(s, "structure", "fhir.empty", path, "an element needs a value, an id or extensions (\"_x\": {} is empty)",
         "element musi mieć wartość, id lub rozszerzenia (\"_x\": {} jest pusty)");
}

/* Which element of |t| does JSON key |key| belong to? Sets |*type| for choices. */
static const struct elem *elem_for_key_k(const struct ftype *t, const char *key, int *kk) {
  for (int i = 0; i < t->n; i++) {
    const struct elem *e = &t->elems[i];
    if (e->name[0] != key[0])
      continue; /* most names differ in their first letter: skip the call */
    if (!e->choice) {
      if (strcmp(e->name, key) == 0) {
        *kk = 0;
        return e;
      }
      continue;
    }
    size_t bl = strlen(e->name);
    if (strncmp(key, e->name, bl) != 0)
      continue;
    for (int k = 0; k < e->ntypes; k++)
      if (strcmp(e->keys[k] + bl, key + bl) == 0) {
        *kk = k;
        return e;
      }
  }
  return NULL;
}

/* "Base.key" or "Base.key[i]" without printf: paths are built for every element. */
static void path_join(char *out, size_t n, const char *base, const char *key, long idx) {
  size_t bl = strlen(base), kl = strlen(key), o = 0;
  if (bl + kl + 24 > n) {
    snprintf(out, n, "%s", base);
    return;
  }
  memcpy(out, base, bl);
  o = bl;
  if (bl)
    out[o++] = '.';
  memcpy(out + o, key, kl);
  o += kl;
  if (idx >= 0) {
    char tmp[24];
    int t = 0;
    do {
      tmp[t++] = (char)('0' + idx % 10);
      idx /= 10;
    } while (idx);
    out[o++] = '[';
    while (t)
      out[o++] = tmp[--t];
    out[o++] = ']';
  }
  out[o] = 0;
}

#define MAX_MEMBERS 512
/* Child elements of one element, in both directions: JSON arrays of one object together
 * may not hold more items than the XML side would accept as children. */
#define MAX_CHILDREN 4096

static void conv_members(struct jstate *s, const struct ftype *t, yajl_val obj, xmlNodePtr node, const char *path,
                         bool resource) {
  char sub[512], msg[300], msgpl[300];
  size_t nk = obj->u.object.len;
  if (nk > MAX_MEMBERS) {
    jerr(s, "too-costly", "fhir.too-complex", path, "an object has too many members", "obiekt ma zbyt wiele pól");
    return;
  }
  size_t items = 0;
  for (size_t i = 0; i < nk; i++) {
    yajl_val v = obj->u.object.values[i];
    items += YAJL_IS_ARRAY(v) ? v->u.array.len : 1;
  }
  if (items > MAX_CHILDREN) {
    jerr(s, "too-costly", "fhir.too-complex", path, "an element has too many children (over 4096 items)",
         "element ma zbyt wiele dzieci (ponad 4096)");
    return;
  }
  /* 1. every key must be known, once; remember which element (and type) it is */
  short eidx[MAX_MEMBERS], kidx[MAX_MEMBERS];
  bool ext[MAX_MEMBERS];
  for (size_t i = 0; i < nk; i++) {
    const char *key = obj->u.object.keys[i];
    eidx[i] = -1;
    for (size_t j = 0; j < i; j++)
      if (strcmp(obj->u.object.keys[j], key) == 0) {
        path_join(sub, sizeof(sub), path, key, -1);
        snprintf(msg, sizeof(msg), "duplicate property \"%s\"", key);
        snprintf(msgpl, sizeof(msgpl), "powtórzona właściwość \"%s\"", key);
        jerr(s, "structure", "fhir.duplicate-property", sub, msg, msgpl);
      }
    if (resource && strcmp(key, "resourceType") == 0)
      continue;
    ext[i] = key[0] == '_';
    int k = 0;
    const struct elem *e = elem_for_key_k(t, ext[i] ? key + 1 : key, &k);
    if (!e || (ext[i] && (e->tdefs[k] || e->attr || !strcmp(e->types[k], "Resource")))) {
      path_join(sub, sizeof(sub), path, key, -1);
      snprintf(msg, sizeof(msg), "unknown element \"%s\" in %s", key, t->name);
      snprintf(msgpl, sizeof(msgpl), "nieznany element \"%s\" w %s", key, t->name);
      jerr(s, "structure", "fhir.unknown-element", sub, msg, msgpl);
      continue;
    }
    eidx[i] = (short)(e - t->elems);
    kidx[i] = (short)k;
  }
  if (s->failed)
    return;
  /* 2. elements in model order */
  for (int i = 0; i < t->n; i++) {
    const struct elem *e = &t->elems[i];
    int found = 0;
    for (int k = 0; k < e->ntypes; k++) {
      yajl_val v = NULL, x = NULL;
      for (size_t j = 0; j < nk; j++)
        if (eidx[j] == i && kidx[j] == k) {
          if (ext[j])
            x = obj->u.object.values[j];
          else
            v = obj->u.object.values[j];
        }
      if (!v && !x)
        continue;
      const char *key = e->keys[k];
      found++;
      path_join(sub, sizeof(sub), path, key, -1);
      if (e->many) {
        if ((v && !YAJL_IS_ARRAY(v)) || (x && !YAJL_IS_ARRAY(x)) || (v && x && v->u.array.len != x->u.array.len)) {
          snprintf(msg, sizeof(msg), "%s repeats: it must be an array (with \"_%s\" of the same length)", sub, key);
          snprintf(msgpl, sizeof(msgpl), "%s jest powtarzalny: musi być tablicą", sub);
          jerr(s, "structure", "fhir.array", sub, msg, msgpl);
          continue;
        }
        size_t len = v ? v->u.array.len : x->u.array.len;
        if (len == 0) {
          snprintf(msg, sizeof(msg), "%s: arrays must not be empty", sub);
          snprintf(msgpl, sizeof(msgpl), "%s: tablica nie może być pusta", sub);
          jerr(s, "structure", "fhir.empty-array", sub, msg, msgpl);
        }
        for (size_t j = 0; j < len && !s->failed; j++) {
          char item[540];
          path_join(item, sizeof(item), path, key, (long)j);
          emit_value(s, key, e->types[k], e->tdefs[k], v ? v->u.array.values[j] : NULL, x ? x->u.array.values[j] : NULL,
                     node, item);
        }
      } else {
        if ((v && YAJL_IS_ARRAY(v)) || (x && YAJL_IS_ARRAY(x))) {
          snprintf(msg, sizeof(msg), "%s does not repeat: it must not be an array", sub);
          snprintf(msgpl, sizeof(msgpl), "%s nie jest powtarzalny: nie może być tablicą", sub);
          jerr(s, "structure", "fhir.not-array", sub, msg, msgpl);
          continue;
        }
        emit_value(s, key, e->types[k], e->tdefs[k], v, x, node, sub);
      }
    }
    if (found > 1) {
      snprintf(sub, sizeof(sub), "%s.%s[x]", path, e->name);
      snprintf(msg, sizeof(msg), "%s: only one type of a choice element may be present", sub);
      snprintf(msgpl, sizeof(msgpl), "%s: dozwolony jest tylko jeden typ elementu wyboru", sub);
      jerr(s, "structure", "fhir.choice", sub, msg, msgpl);
    }
    if (!found && e->min > 0) {
      path_join(sub, sizeof(sub), path, e->name, -1);
      snprintf(msg, sizeof(msg), "%s is required", sub);
      snprintf(msgpl, sizeof(msgpl), "%s jest wymagany", sub);
      jerr(s, "required", "fhir.required", sub, msg, msgpl);
    }
  }
}

static xmlNodePtr conv_resource(struct jstate *s, yajl_val obj, xmlNodePtr parent, const char *path) {
  yajl_val rt = member(obj, "resourceType");
  char msg[256], msgpl[256];
  if (!rt || !YAJL_IS_STRING(rt)) {
    jerr(s, "structure", "fhir.resource-type", path, "a resource must have a \"resourceType\" string",
         "zasób musi mieć tekst \"resourceType\"");
    return NULL;
  }
  const char *name = YAJL_GET_STRING(rt);
  const struct ftype *t = find_type(s->m, name);
  if (!t || !t->resource) {
    snprintf(msg, sizeof(msg), "resource type \"%.100s\" is not supported", name);
    snprintf(msgpl, sizeof(msgpl), "typ zasobu \"%.100s\" nie jest obsługiwany", name);
    jerr(s, "not-supported", "fhir.resource-type-unsupported", path[0] ? path : name, msg, msgpl);
    return NULL;
  }
  xmlNodePtr node = xmlNewDocNode(s->doc, NULL, BAD_CAST name, NULL);
  if (!node) {
    s->failed = true;
    return NULL;
  }
  if (parent) {
    xmlAddChild(parent, node);
    xmlSetNs(node, xmlNewNs(node, BAD_CAST GW_FHIR_NS, NULL));
  } else {
    xmlDocSetRootElement(s->doc, node);
    s->ns = xmlNewNs(node, BAD_CAST GW_FHIR_NS, NULL);
    xmlSetNs(node, s->ns);
  }
  xmlNsPtr saved = s->ns;
  s->ns = node->ns;
  char rpath[512];
  snprintf(rpath, sizeof(rpath), "%s%s%s", path, path[0] ? "." : "", name);
  conv_members(s, t, obj, node, path[0] ? rpath : name, true);
  s->ns = saved;
  return node;
}

static pthread_key_t dict_key;
static pthread_once_t dict_once = PTHREAD_ONCE_INIT;

static void dict_release(void *d) { xmlDictFree(d); }
static void dict_key_init(void) { pthread_key_create(&dict_key, dict_release); }

/* The calling thread's name dictionary, with a reference for the new document. */
static xmlDictPtr thread_dict(void) {
  pthread_once(&dict_once, dict_key_init);
  xmlDictPtr d = pthread_getspecific(dict_key);
  if (!d) {
    d = xmlDictCreate();
    if (!d)
      return NULL;
    pthread_setspecific(dict_key, d);
  }
  xmlDictReference(d);
  return d;
}

static pthread_key_t xpath_key;
static pthread_once_t xpath_once = PTHREAD_ONCE_INIT;

static void xpath_release(void *x) { xmlXPathFreeContext(x); }
static void xpath_key_init(void) { pthread_key_create(&xpath_key, xpath_release); }

int gw_fhir_is(const struct _xmlNode *n, const char *name) {
  return n->type == XML_ELEMENT_NODE && n->ns && xmlStrEqual(n->name, BAD_CAST name) &&
         xmlStrEqual(n->ns->href, BAD_CAST GW_FHIR_NS);
}

struct _xmlXPathContext *gw_fhir_xpath(struct _xmlDoc *doc) {
  pthread_once(&xpath_once, xpath_key_init);
  xmlXPathContextPtr x = pthread_getspecific(xpath_key);
  if (!x) {
    x = xmlXPathNewContext(NULL);
    if (!x)
      return NULL;
    if (xmlXPathRegisterNs(x, BAD_CAST "f", BAD_CAST GW_FHIR_NS)) {
      xmlXPathFreeContext(x);
      return NULL;
    }
    pthread_setspecific(xpath_key, x);
  }
  x->doc = doc;
  x->node = NULL;
  return x;
}

/* One pass of yajl's streaming parser builds the JSON tree (yajl_tree's own
 * value layout, so the converter reads it the same way) in an arena, while
 * bounding depth and value count: no second parse, no allocation per value,
 * and one free for the whole tree. */
struct arena {
  char *block; /* current block; the first 8 bytes link to the previous one */
  size_t used, cap;
};

static void *arena_alloc(struct arena *a, size_t n) {
  n = (n + 7) & ~(size_t)7;
  if (!a->block || a->used + n > a->cap) {
    size_t cap = n + 8 > 65536 ? n + 8 : 65536;
    char *b = malloc(cap);
    if (!b)
      return NULL;
    *(char **)b = a->block;
    a->block = b;
    a->used = 8;
    a->cap = cap;
  }
  void *p = a->block + a->used;
  a->used += n;
  return p;
}

static void arena_free(struct arena *a) {
  while (a->block) {
    char *prev = *(char **)a->block;
    free(a->block);
    a->block = prev;
  }
}

struct frame {
  yajl_val v;
  yajl_val *vals;
  const char **keys;
  size_t n, cap;
};

struct builder {
  struct arena a;
  size_t depth, max_depth, values, max_values;
  bool over, nomem;
  struct frame *stack; /* max_depth + 1 frames; their vectors are reused */
  const char *key;
  yajl_val root;
};

static char *arena_str(struct builder *b, const char *s, size_t n) {
  char *p = arena_alloc(&b->a, n + 1);
  if (!p) {
    b->nomem = true;
    return NULL;
  }
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

/* Creates a value of |type| and appends it to the open container (or makes it the root). */
static yajl_val b_new(struct builder *b, yajl_type type) {
  if (++b->values > b->max_values) {
    b->over = true;
    return NULL;
  }
  yajl_val v = arena_alloc(&b->a, sizeof(*v));
  if (!v) {
    b->nomem = true;
    return NULL;
  }
  memset(v, 0, sizeof(*v));
  v->type = type;
  if (b->depth == 0) {
    b->root = v;
    return v;
  }
  struct frame *f = &b->stack[b->depth - 1];
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 16;
    yajl_val *nv = realloc(f->vals, cap * sizeof(*nv));
    const char **nk = nv ? realloc(f->keys, cap * sizeof(*nk)) : NULL;
    if (nv)
      f->vals = nv;
    if (nk)
      f->keys = nk;
    if (!nv || !nk) {
      b->nomem = true;
      return NULL;
    }
    f->cap = cap;
  }
  f->keys[f->n] = b->key;
  f->vals[f->n++] = v;
  return v;
}

static int b_null(void *c) { return b_new(c, yajl_t_null) != NULL; }
static int b_bool(void *c, int t) { return b_new(c, t ? yajl_t_true : yajl_t_false) != NULL; }
static int b_num(void *c, const char *s, size_t l) {
  struct builder *b = c;
  yajl_val v = b_new(b, yajl_t_number);
  return v && (v->u.number.r = arena_str(b, s, l)) != NULL;
}
static int b_str(void *c, const unsigned char *s, size_t l) {
  struct builder *b = c;
  yajl_val v = b_new(b, yajl_t_string);
  return v && (v->u.string = arena_str(b, (const char *)s, l)) != NULL;
}
static int b_key(void *c, const unsigned char *s, size_t l) {
  struct builder *b = c;
  return (b->key = arena_str(b, (const char *)s, l)) != NULL;
}
static int b_open(struct builder *b, yajl_type type) {
  yajl_val v = b_new(b, type);
  if (!v)
    return 0;
  if (b->depth >= b->max_depth) {
    b->over = true;
    return 0;
  }
  struct frame *f = &b->stack[b->depth++];
  f->v = v;
  f->n = 0;
  return 1;
}
static int b_open_map(void *c) { return b_open(c, yajl_t_object); }
static int b_open_array(void *c) { return b_open(c, yajl_t_array); }
static int b_close(void *c) {
  struct builder *b = c;
  struct frame *f = &b->stack[--b->depth];
  yajl_val *vals = arena_alloc(&b->a, (f->n ? f->n : 1) * sizeof(*vals));
  if (!vals) {
    b->nomem = true;
    return 0;
  }
  if (f->n) /* an empty container has no vector yet */
    memcpy(vals, f->vals, f->n * sizeof(*vals));
  if (f->v->type == yajl_t_object) {
    const char **keys = arena_alloc(&b->a, (f->n ? f->n : 1) * sizeof(*keys));
    if (!keys) {
      b->nomem = true;
      return 0;
    }
    if (f->n)
      memcpy(keys, f->keys, f->n * sizeof(*keys));
    f->v->u.object.keys = keys;
    f->v->u.object.values = vals;
    f->v->u.object.len = f->n;
  } else {
    f->v->u.array.values = vals;
    f->v->u.array.len = f->n;
  }
  return 1;
}
static const yajl_callbacks build_cb = {b_null,     b_bool, NULL,    NULL,         b_num,  b_str,
                                        b_open_map, b_key,  b_close, b_open_array, b_close};

int gw_fhir_json_to_xml(const struct gw_fhir_model *m, const char *json, size_t len, const struct gw_fhir_limits *lim,
                        struct _xmlDoc **out, struct gw_diag *diag) {
  *out = NULL;
  if (!lim)
    lim = &gw_fhir_default_limits;
  if (len > lim->max_bytes) {
    gw_diag_add(diag, GW_SEV_ERROR, "too-costly", "fhir.too-large", "the document exceeds the size limit",
                "dokument przekracza dopuszczalny rozmiar");
    return GW_ERR_INVAL;
  }
  struct builder b = {.max_depth = lim->max_depth, .max_values = lim->max_values};
  b.stack = calloc(lim->max_depth + 1, sizeof(*b.stack));
  yajl_handle h = b.stack ? yajl_alloc(&build_cb, NULL, &b) : NULL;
  int rv = GW_OK;
  if (!h) {
    rv = GW_ERR_NOMEM;
    goto out;
  }
  yajl_status st = yajl_parse(h, (const unsigned char *)json, len);
  if (st == yajl_status_ok)
    st = yajl_complete_parse(h);
  if (b.nomem) {
    rv = GW_ERR_NOMEM;
  } else if (st != yajl_status_ok) {
    struct gw_issue *i;
    if (b.over) {
      i = gw_diag_add(diag, GW_SEV_ERROR, "too-costly", "fhir.too-complex",
                      "the document is nested too deeply or has too many values",
                      "dokument jest zbyt głęboko zagnieżdżony lub ma zbyt wiele wartości");
    } else {
      unsigned char *e = yajl_get_error(h, 0, (const unsigned char *)json, len);
      char en[256];
      snprintf(en, sizeof(en), "not valid JSON: %s", e ? (char *)e : "syntax error");
      char *nl = strchr(en, '\n');
      if (nl)
        *nl = 0;
      yajl_free_error(h, e);
      i = gw_diag_add(diag, GW_SEV_FATAL, "structure", "fhir.json-syntax", en, "niepoprawny JSON");
    }
    if (i) {
      size_t off = yajl_get_bytes_consumed(h);
      i->line = 1;
      i->col = 1;
      for (size_t k = 0; k < off && k < len; k++) {
        if (json[k] == '\n') {
          i->line++;
          i->col = 1;
        } else {
          i->col++;
        }
      }
    }
    rv = GW_ERR_INVAL;
  } else if (!b.root || !YAJL_IS_OBJECT(b.root)) {
    gw_diag_add(diag, GW_SEV_ERROR, "structure", "fhir.resource-type", "a FHIR document must be a JSON object",
                "dokument FHIR musi być obiektem JSON");
    rv = GW_ERR_INVAL;
  }
  yajl_free(h);
  if (rv)
    goto out;
  yajl_val root = b.root;
  struct jstate s = {.m = m, .diag = diag, .doc = xmlNewDoc(BAD_CAST "1.0")};
  if (!s.doc) {
    rv = GW_ERR_NOMEM;
    goto out;
  }
  /* element and attribute names interned in a dictionary that lives as long as the thread:
   * only model names reach it (unknown keys are refused before any node exists), so it stays small */
  s.doc->dict = thread_dict();
  conv_resource(&s, root, NULL, "");
  if (s.failed) {
    xmlFreeDoc(s.doc);
    rv = GW_ERR_INVAL;
  } else {
    *out = s.doc;
  }
out:
  for (size_t k = 0; b.stack && k <= lim->max_depth; k++) {
    free(b.stack[k].vals);
    free(b.stack[k].keys);
  }
  free(b.stack);
  arena_free(&b.a);
  return rv;
}

/* ---- XML -> JSON ---- */

struct xstate {
  const struct gw_fhir_model *m;
  struct gw_diag *diag;
  yajl_gen g;
  bool failed;
  const xmlNs *fns; /* the document's FHIR namespace, once seen: compared by address after */
};

static void xerr(struct xstate *s, const char *rule, const char *path, const char *en, const char *pl) {
  s->failed = true;
  struct gw_issue *i = gw_diag_add(s->diag, GW_SEV_ERROR, "structure", rule, en, pl);
  if (i)
    snprintf(i->location, sizeof(i->location), "%s", path);
}

#define GEN_STR(g, s) yajl_gen_string((g), (const unsigned char *)(s), strlen(s))

/* An element in the FHIR namespace? (The document does not change while it is converted, so an
 * xmlNs found to be FHIR's stays so.) */
static bool fhir_elem(struct xstate *s, xmlNodePtr n) {
  if (n->type != XML_ELEMENT_NODE || !n->ns)
    return false;
  if (n->ns == s->fns)
    return true;
  if (!xmlStrEqual(n->ns->href, BAD_CAST GW_FHIR_NS))
    return false;
  s->fns = n->ns;
  return true;
}

static void x_resource(struct xstate *s, xmlNodePtr node, const char *path);
static void x_members(struct xstate *s, const struct ftype *t, xmlNodePtr node, const char *path, bool resource);

static bool has_extras(struct xstate *s, xmlNodePtr n) {
  if (xmlHasProp(n, BAD_CAST "id"))
    return true;
  for (xmlNodePtr c = n->children; c; c = c->next)
    if (fhir_elem(s, c))
      return true;
  return false;
}

static void x_primitive_value(struct xstate *s, const char *type, xmlNodePtr n, const char *path) {
  xmlChar *v = xmlGetProp(n, BAD_CAST "value");
  if (!v) {
    yajl_gen_null(s->g);
    return;
  }
  enum jkind k = prim_kind(s->m, type);
  if (k == J_BOOL && (xmlStrEqual(v, BAD_CAST "true") || xmlStrEqual(v, BAD_CAST "false")))
    yajl_gen_bool(s->g, v[0] == 't');
  else if (k == J_NUMBER && json_number_ok((const char *)v))
    yajl_gen_number(s->g, (const char *)v, (size_t)xmlStrlen(v));
  else if (k == J_STRING)
    GEN_STR(s->g, (const char *)v);
  else
    xerr(s, "fhir.type", path, "the value attribute does not match the element's type",
         "atrybut value nie pasuje do typu elementu");
  xmlFree(v);
}

static void x_extras(struct xstate *s, xmlNodePtr n, const char *path) {
  yajl_gen_map_open(s->g);
  xmlChar *id = xmlGetProp(n, BAD_CAST "id");
  if (id) {
    GEN_STR(s->g, "id");
    GEN_STR(s->g, (const char *)id);
    xmlFree(id);
  }
  const struct ftype *ext = s->m->extension;
  bool open = false;
  for (xmlNodePtr c = n->children; c; c = c->next) {
    if (!fhir_elem(s, c))
      continue;
    if (!xmlStrEqual(c->name, BAD_CAST "extension")) {
      xerr(s, "fhir.unknown-element", path, "a primitive element may only hold extensions",
           "element prosty może zawierać tylko rozszerzenia");
      continue;
    }
    if (!open) {
      GEN_STR(s->g, "extension");
      yajl_gen_array_open(s->g);
      open = true;
    }
    yajl_gen_map_open(s->g);
    x_members(s, ext, c, path, false);
    yajl_gen_map_close(s->g);
  }
  if (open)
    yajl_gen_array_close(s->g);
  yajl_gen_map_close(s->g);
}

/* |ct|: the type's definition when it is complex (the element's tdefs), else NULL */
static void x_value(struct xstate *s, const char *type, const struct ftype *ct, xmlNodePtr c, const char *path) {
  if (strcmp(type, "Resource") == 0) {
    xmlNodePtr r = NULL;
    for (xmlNodePtr k = c->children; k; k = k->next)
      if (fhir_elem(s, k)) {
        r = k;
        break;
      }
    if (!r) {
      xerr(s, "fhir.resource-type", path, "a resource element must contain a resource", "brak zasobu");
      yajl_gen_null(s->g);
      return;
    }
    x_resource(s, r, path);
    return;
  }
  if (strcmp(type, "xhtml") == 0) {
    xmlBufferPtr b = xmlBufferCreate();
    if (!b) {
      s->failed = true;
      return;
    }
    xmlNodeDump(b, c->doc, c, 0, 0);
    GEN_STR(s->g, (const char *)xmlBufferContent(b));
    xmlBufferFree(b);
    return;
  }
  if (ct) {
    yajl_gen_map_open(s->g);
    x_members(s, ct, c, path, false);
    yajl_gen_map_close(s->g);
    return;
  }
  x_primitive_value(s, type, c, path);
}

struct kid {
  xmlNodePtr n;
  short e, k;
  int at;
};

static int kid_cmp(const void *a, const void *b) {
  const struct kid *x = a, *y = b;
  if (x->e != y->e)
    return x->e < y->e ? -1 : 1;
  if (x->k != y->k)
    return x->k < y->k ? -1 : 1;
  return x->at < y->at ? -1 : x->at > y->at;
}

/* The children sorted by (element, type), in document order within each; nothing to do when they
 * already stand in model order, as FHIR XML writes them. false: out of memory. */
static bool sort_kids(xmlNodePtr *kv, short *ei, short *ki, int nk) {
  int j = 1;
  while (j < nk && (ei[j - 1] < ei[j] || (ei[j - 1] == ei[j] && ki[j - 1] <= ki[j])))
    j++;
  if (j >= nk)
    return true;
  struct kid *v = malloc((size_t)nk * sizeof(*v));
  if (!v)
    return false;
  for (int i = 0; i < nk; i++)
    v[i] = (struct kid){kv[i], ei[i], ki[i], i};
  qsort(v, (size_t)nk, sizeof(*v), kid_cmp);
  for (int i = 0; i < nk; i++)
    kv[i] = v[i].n, ei[i] = v[i].e, ki[i] = v[i].k;
  free(v);
  return true;
}

static void x_members(struct xstate *s, const struct ftype *t, xmlNodePtr node, const char *path, bool resource) {
  char sub[512];
  /* 1. which element (and type) each child is; unknown children are errors */
  xmlNodePtr kids[256], *kv = kids;
  short *ei, *ki, eibuf[256], kibuf[256];
  ei = eibuf;
  ki = kibuf;
  int nk = 0, cap = 256;
  for (xmlNodePtr c = node->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE)
      continue;
    if (nk == cap) {
      if (cap >= MAX_CHILDREN) {
        xerr(s, "fhir.too-complex", path, "an element has too many children", "element ma zbyt wiele dzieci");
        goto out;
      }
      cap *= 2;
      xmlNodePtr *nkv = malloc((size_t)cap * sizeof(*nkv));
      short *nei = malloc((size_t)cap * sizeof(short)), *nki = malloc((size_t)cap * sizeof(short));
      if (!nkv || !nei || !nki) {
        free(nkv), free(nei), free(nki);
        s->failed = true;
        goto out;
      }
      memcpy(nkv, kv, (size_t)nk * sizeof(*nkv));
      memcpy(nei, ei, (size_t)nk * sizeof(short));
      memcpy(nki, ki, (size_t)nk * sizeof(short));
      if (kv != kids)
        free(kv), free(ei), free(ki);
      kv = nkv, ei = nei, ki = nki;
    }
    int k = 0;
    const struct elem *e = (c->ns && (fhir_elem(s, c) || xmlStrEqual(c->name, BAD_CAST "div")))
                               ? elem_for_key_k(t, (const char *)c->name, &k)
                               : NULL;
    if (!e || e->attr || (!fhir_elem(s, c) && strcmp(e->types[k], "xhtml"))) {
      path_join(sub, sizeof(sub), path, (const char *)c->name, -1);
      char en[300];
      snprintf(en, sizeof(en), "unknown element \"%s\" in %s", (const char *)c->name, t->name);
      xerr(s, "fhir.unknown-element", sub, en, "nieznany element");
      continue;
    }
    kv[nk] = c;
    ei[nk] = (short)(e - t->elems);
    ki[nk++] = (short)k;
  }
  /* 2. model order: the children sorted by (element, type), stably, then each run written once
   * (a walk of the model's elements, not a scan of the children for each of them) */
  if (!sort_kids(kv, ei, ki, nk)) {
    s->failed = true;
    goto out;
  }
  int g = 0;
  for (int i = 0; i < t->n && !s->failed; i++) {
    const struct elem *e = &t->elems[i];
    if (e->attr) {
      if (resource)
        continue;
      xmlChar *a = xmlGetProp(node, BAD_CAST e->name);
      if (a) {
        GEN_STR(s->g, e->name);
        GEN_STR(s->g, (const char *)a);
        xmlFree(a);
      }
      continue;
    }
    while (g < nk && ei[g] == i) {
      int k = ki[g], from = g;
      while (g < nk && ei[g] == i && ki[g] == k)
        g++;
      const char *key = e->keys[k], *type = e->types[k];
      bool prim = !e->tdefs[k] && strcmp(type, "Resource") && strcmp(type, "xhtml");
      int count = g - from, extras = 0, values = 0;
      if (prim)
        for (int j = from; j < g; j++) {
          extras += has_extras(s, kv[j]);
          values += xmlHasProp(kv[j], BAD_CAST "value") != NULL;
        }
      path_join(sub, sizeof(sub), path, key, -1);
      if (count > 1 && !e->many) {
        char en[600];
        snprintf(en, sizeof(en), "%s does not repeat but occurs %d times", sub, count);
        xerr(s, "fhir.cardinality", sub, en, "element niepowtarzalny występuje wielokrotnie");
        goto out;
      }
      if (!prim || values) {
        GEN_STR(s->g, key);
        if (e->many)
          yajl_gen_array_open(s->g);
        long n = 0;
        for (int j = from; j < g; j++) {
          char item[540];
          path_join(item, sizeof(item), path, key, e->many ? n++ : -1);
          x_value(s, type, e->tdefs[k], kv[j], item);
        }
        if (e->many)
          yajl_gen_array_close(s->g);
      }
      if (prim && extras) { /* the "_key" sibling of primitives with ids or extensions */
        char ukey[100];
        ukey[0] = '_';
        snprintf(ukey + 1, sizeof(ukey) - 1, "%s", key);
        GEN_STR(s->g, ukey);
        if (e->many)
          yajl_gen_array_open(s->g);
        for (int j = from; j < g; j++) {
          if (has_extras(s, kv[j]))
            x_extras(s, kv[j], sub);
          else
            yajl_gen_null(s->g);
        }
        if (e->many)
          yajl_gen_array_close(s->g);
      }
    }
  }
out:
  if (kv != kids) {
    free(kv);
    free(ei);
    free(ki);
  }
}

static void x_resource(struct xstate *s, xmlNodePtr node, const char *path) {
  const struct ftype *t = fhir_elem(s, node) ? find_type(s->m, (const char *)node->name) : NULL;
  if (!t || !t->resource) {
    char en[256];
    snprintf(en, sizeof(en), "resource type \"%.100s\" is not supported", (const char *)node->name);
    xerr(s, "fhir.resource-type-unsupported", path, en, "typ zasobu nie jest obsługiwany");
    yajl_gen_null(s->g);
    return;
  }
  char rpath[512];
  snprintf(rpath, sizeof(rpath), "%s%s%s", path, path[0] ? "." : "", t->name);
  yajl_gen_map_open(s->g);
  GEN_STR(s->g, "resourceType");
  GEN_STR(s->g, t->name);
  x_members(s, t, node, rpath, true);
  yajl_gen_map_close(s->g);
}

static void gen_print(void *ctx, const char *str, size_t len) {
  struct gw_buf *b = ctx;
  gw_buf_append(b, str, len);
}

int gw_fhir_xml_to_json(const struct gw_fhir_model *m, struct _xmlDoc *doc, int pretty, struct gw_buf *out,
                        struct gw_diag *diag) {
  xmlNodePtr root = xmlDocGetRootElement(doc);
  if (!root)
    return GW_ERR_INVAL;
  struct xstate s = {.m = m, .diag = diag, .g = yajl_gen_alloc(NULL)};
  if (!s.g)
    return GW_ERR_NOMEM;
  yajl_gen_config(s.g, yajl_gen_print_callback, gen_print, out);
  yajl_gen_config(s.g, yajl_gen_validate_utf8, 1);
  if (pretty) {
    yajl_gen_config(s.g, yajl_gen_beautify, 1);
    yajl_gen_config(s.g, yajl_gen_indent_string, "  ");
  }
  x_resource(&s, root, "");
  yajl_gen_free(s.g);
  return s.failed ? GW_ERR_INVAL : GW_OK;
}

/* ---- PATCH entries as FHIRPath Patch ---- */

static xmlNodePtr fp_part(xmlNodePtr op, const char *name) {
  xmlNodePtr part = xmlNewChild(op, NULL, BAD_CAST "part", NULL);
  xmlNodePtr n = part ? xmlNewChild(part, NULL, BAD_CAST "name", NULL) : NULL;
  if (n)
    xmlSetProp(n, BAD_CAST "value", BAD_CAST name);
  return part;
}

static void fp_string_part(xmlNodePtr op, const char *name, const char *vtype, const char *value) {
  xmlNodePtr part = fp_part(op, name);
  xmlNodePtr v = part ? xmlNewChild(part, NULL, BAD_CAST vtype, NULL) : NULL;
  if (v)
    xmlSetProp(v, BAD_CAST "value", BAD_CAST value);
}

/* One operation: |type| on |path|; for "add" the property |name|; |value|
 * (an element of the partial resource, moved) as value[x] of |vtype|. */
static void fp_operation(xmlNodePtr params, const char *type, const char *path, const char *name, const char *vtype,
                         xmlNodePtr value) {
  xmlNodePtr p = xmlNewChild(params, NULL, BAD_CAST "parameter", NULL);
  xmlNodePtr n = p ? xmlNewChild(p, NULL, BAD_CAST "name", NULL) : NULL;
  if (!n)
    return;
  xmlSetProp(n, BAD_CAST "value", BAD_CAST "operation");
  fp_string_part(p, "type", "valueCode", type);
  fp_string_part(p, "path", "valueString", path);
  if (name)
    fp_string_part(p, "name", "valueString", name);
  if (!value)
    return;
  xmlNodePtr part = fp_part(p, "value");
  char vname[64];
  choice_name(vname, sizeof(vname), "value", vtype);
  xmlNodePtr v = part ? xmlNewChild(part, NULL, BAD_CAST vname, NULL) : NULL;
  if (!v)
    return;
  xmlChar *attr = xmlGetProp(value, BAD_CAST "value");
  if (attr) /* a primitive */
    xmlSetProp(v, BAD_CAST "value", attr);
  xmlFree(attr);
  for (xmlNodePtr c = value->children, next; c; c = next) { /* a complex value: its elements move */
    next = c->next;
    xmlUnlinkNode(c);
    xmlAddChild(v, c);
  }
}

/* The element definition |name| of resource type |t|, NULL when unknown. */
static const struct elem *model_elem(const struct ftype *t, const char *name) {
  for (int i = 0; t && i < t->n; i++)
    if (!t->elems[i].choice && strcmp(t->elems[i].name, name) == 0)
      return &t->elems[i];
  return NULL;
}

/* A partial resource -> the operations that set what it states: status with
 * replace (it always exists), each other stated element with delete (a no-op
 * when absent) then add, meta.tag added; identifier is the entry's match key
 * and is not patched. */
static xmlNodePtr fp_from_partial(const struct gw_fhir_model *m, xmlDocPtr doc, xmlNodePtr res) {
  const char *type = (const char *)res->name;
  const struct ftype *t = find_type(m, type);
  xmlNodePtr params = xmlNewDocNode(doc, NULL, BAD_CAST "Parameters", NULL);
  if (!params || !t)
    return params;
  xmlSetNs(params, res->ns);
  char path[128];
  for (xmlNodePtr c = res->children, next; c; c = next) {
    next = c->next;
    if (c->type != XML_ELEMENT_NODE)
      continue;
    const char *name = (const char *)c->name;
    if (!strcmp(name, "identifier") || !strcmp(name, "id"))
      continue;
    if (!strcmp(name, "meta")) {
      snprintf(path, sizeof(path), "%s.meta", type);
      for (xmlNodePtr g = c->children, gn; g; g = gn) {
        gn = g->next;
        if (g->type == XML_ELEMENT_NODE && xmlStrEqual(g->name, BAD_CAST "tag"))
          fp_operation(params, "add", path, "tag", "Coding", g);
      }
      continue;
    }
    const struct elem *e = model_elem(t, name);
    if (!e || e->ntypes != 1)
      continue;
    snprintf(path, sizeof(path), "%s.%s", type, name);
    if (!strcmp(name, "status")) {
      fp_operation(params, "replace", path, NULL, e->types[0], c);
      continue;
    }
    bool first = !(c->prev && xmlStrEqual(c->prev->name, c->name));
    if (first) /* a repeating element is cleared once, then each repetition added */
      fp_operation(params, "delete", path, NULL, NULL, NULL);
    fp_operation(params, "add", type, name, e->types[0], c);
  }
  return params;
}

int gw_fhir_patch_as_parameters(const struct gw_fhir_model *m, struct _xmlDoc *doc) {
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  xmlXPathObjectPtr o = x ? xmlXPathEvalExpression(BAD_CAST "/f:Bundle/f:entry[f:request/f:method/@value='PATCH']"
                                                            "/f:resource/*[not(self::f:Parameters or self::f:Binary)]",
                                                   x)
                          : NULL;
  int n = 0;
  for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
    xmlNodePtr res = o->nodesetval->nodeTab[i];
    xmlNodePtr params = fp_from_partial(m, doc, res);
    if (!params)
      continue;
    xmlReplaceNode(res, params);
    xmlFreeNode(res);
    n++;
  }
  xmlXPathFreeObject(o);
  return n;
}

/* ---- where a FHIRPath location stands in the sender's JSON ---- */

struct locate {
  yajl_handle h;
  const char *target; /* "/entry/1/resource/participant/0" */
  struct {
    bool array;
    long index;
    char key[96];
  } st[64];
  int depth; /* frames in st */
  size_t found;
  bool done;
};

/* A value starts: its pointer is the frames' keys and indexes. */
static int loc_value(struct locate *l) {
  if (l->done || l->depth <= 0)
    return 1;
  if (l->st[l->depth - 1].array)
    l->st[l->depth - 1].index++;
  char ptr[512];
  size_t o = 0;
  for (int i = 0; i < l->depth && o < sizeof(ptr); i++) {
    int w = l->st[i].array ? snprintf(ptr + o, sizeof(ptr) - o, "/%ld", l->st[i].index)
                           : snprintf(ptr + o, sizeof(ptr) - o, "/%s", l->st[i].key);
    o += w > 0 ? (size_t)w : 0;
  }
  if (o < sizeof(ptr) && !strcmp(ptr, l->target)) {
    l->found = yajl_get_bytes_consumed(l->h);
    l->done = true;
  }
  return 1;
}
static int loc_scalar(void *c) { return loc_value(c); }
static int loc_bool(void *c, int b) {
  (void)b;
  return loc_value(c);
}
static int loc_num(void *c, const char *s, size_t n) {
  (void)s;
  (void)n;
  return loc_value(c);
}
static int loc_str(void *c, const unsigned char *s, size_t n) {
  (void)s;
  (void)n;
  return loc_value(c);
}
static int loc_open(struct locate *l, bool array) {
  if (l->depth > 0)
    loc_value(l);
  if (l->depth >= (int)(sizeof(l->st) / sizeof(l->st[0])))
    return 0;
  l->st[l->depth].array = array;
  l->st[l->depth].index = -1;
  l->st[l->depth].key[0] = 0;
  l->depth++;
  return 1;
}
static int loc_open_map(void *c) { return loc_open(c, false); }
static int loc_open_array(void *c) { return loc_open(c, true); }
static int loc_close(void *c) {
  struct locate *l = c;
  l->depth--;
  return 1;
}
static int loc_key(void *c, const unsigned char *s, size_t n) {
  struct locate *l = c;
  snprintf(l->st[l->depth - 1].key, sizeof(l->st[0].key), "%.*s", (int)n, (const char *)s);
  return 1;
}
static const yajl_callbacks locate_cb = {loc_scalar,   loc_bool, NULL,      NULL,           loc_num,  loc_str,
                                         loc_open_map, loc_key,  loc_close, loc_open_array, loc_close};

void gw_fhir_pointer(const char *fhirpath, char *out, size_t n) {
  const char *p = strchr(fhirpath, '.'); /* the resource type names the document itself */
  size_t o = 0;
  out[0] = 0;
  while (p && *p && o + 1 < n) {
    if (*p == '.' || *p == '[') {
      out[o++] = '/';
      p++;
      continue;
    }
    if (*p == ']') {
      p++;
      continue;
    }
    out[o++] = *p++;
  }
  out[o < n ? o : n - 1] = 0;
}

int gw_fhir_json_locate(const char *json, size_t len, const char *fhirpath, char *pointer, size_t pn, int *line,
                        int *col) {
  *line = *col = 0;
  gw_fhir_pointer(fhirpath, pointer, pn);
  if (!pointer[0])
    return GW_ERR_NOTFOUND;
  struct locate *l = calloc(1, sizeof(*l));
  if (!l)
    return GW_ERR_NOMEM;
  l->target = pointer;
  l->h = yajl_alloc(&locate_cb, NULL, l);
  if (l->h) {
    yajl_parse(l->h, (const unsigned char *)json, len);
    yajl_free(l->h);
  }
  int rv = GW_ERR_NOTFOUND;
  if (l->done) {
    /* back from the end of the token to its start: the key of a member, the bracket of a container */
    size_t at = l->found ? l->found - 1 : 0;
    while (at > 0 && (json[at] == ' ' || json[at] == '\n' || json[at] == '\r' || json[at] == '\t' || json[at] == ','))
      at--;
    if (at > 0 && json[at] == '"') /* a string: its opening quote */
      for (at--; at > 0 && !(json[at] == '"' && json[at - 1] != '\\');)
        at--;
    int ln = 1;
    size_t ls = 0;
    for (size_t i = 0; i < at && i < len; i++)
      if (json[i] == '\n') {
        ln++;
        ls = i + 1;
      }
    *line = ln;
    *col = (int)(at - ls) + 1;
    rv = GW_OK;
  }
  free(l);
  return rv;
}

/* ---- a PATCH's partial resource merged into the version before ---- */

/* The position of element |name| in type |t|'s model (choices by their base name), or a large number. */
static int model_pos(const struct ftype *t, const char *name) {
  for (int i = 0; t && i < t->n; i++) {
    const struct elem *e = &t->elems[i];
    if (!strcmp(e->name, name))
      return i;
    for (int k = 0; e->choice && k < e->ntypes; k++)
      if (!strcmp(e->keys[k], name))
        return i;
  }
  return 1 << 20;
}

int gw_fhir_merge(const struct gw_fhir_model *m, const char *prev, size_t plen, const char *partial, size_t len,
                  struct gw_buf *out) {
  xmlDocPtr a = NULL, b = NULL;
  struct gw_diag d;
  gw_diag_init(&d, 4);
  int rv = gw_xml_parse(prev, plen, plen + 1, &a, &d);
  if (rv == GW_OK)
    rv = gw_xml_parse(partial, len, len + 1, &b, &d);
  gw_diag_cleanup(&d);
  xmlNodePtr ra = a ? xmlDocGetRootElement(a) : NULL, rb = b ? xmlDocGetRootElement(b) : NULL;
  const struct ftype *t = ra ? find_type(m, (const char *)ra->name) : NULL;
  if (rv == GW_OK && (!t || !rb || !xmlStrEqual(ra->name, rb->name)))
    rv = GW_ERR_INVAL;
  for (xmlNodePtr c = rv == GW_OK ? rb->children : NULL, next; c; c = next) {
    next = c->next;
    if (c->type != XML_ELEMENT_NODE || xmlStrEqual(c->name, BAD_CAST "identifier") ||
        xmlStrEqual(c->name, BAD_CAST "id"))
      continue;
    bool first = !(c->prev && c->prev->type == XML_ELEMENT_NODE && xmlStrEqual(c->prev->name, c->name));
    bool meta = xmlStrEqual(c->name, BAD_CAST "meta");
    if (first && !meta) /* what the partial states replaces what was there */
      for (xmlNodePtr o = ra->children, on; o; o = on) {
        on = o->next;
        if (o->type == XML_ELEMENT_NODE && xmlStrEqual(o->name, c->name)) {
          xmlUnlinkNode(o);
          xmlFreeNode(o);
        }
      }
    int pos = model_pos(t, (const char *)c->name);
    xmlNodePtr before = NULL, existing_meta = NULL;
    for (xmlNodePtr o = ra->children; o && !before; o = o->next) {
      if (o->type != XML_ELEMENT_NODE)
        continue;
      if (meta && xmlStrEqual(o->name, BAD_CAST "meta"))
        existing_meta = o;
      if (model_pos(t, (const char *)o->name) > pos)
        before = o;
    }
    /* copies into |a| (its strings belong to its own dictionary), never nodes moved between documents */
    if (meta && existing_meta) { /* meta.tag added to what is there */
      for (xmlNodePtr g = c->children; g; g = g->next)
        if (g->type == XML_ELEMENT_NODE && xmlStrEqual(g->name, BAD_CAST "tag"))
          xmlAddChild(existing_meta, xmlDocCopyNode(g, a, 1));
    } else {
      xmlNodePtr copy = xmlDocCopyNode(c, a, 1);
      if (copy && before)
        xmlAddPrevSibling(before, copy);
      else if (copy)
        xmlAddChild(ra, copy);
    }
  }
  if (rv == GW_OK)
    rv = gw_xml_dump(a, 0, 0, out);
  xmlFreeDoc(a);
  xmlFreeDoc(b);
  return rv;
}
