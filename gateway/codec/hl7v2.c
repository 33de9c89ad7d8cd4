#include "codec/hl7v2.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <libxml/chvalid.h>
#include <libxml/dict.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/xml.h"
#include "core/err.h"

const struct gw_hl7_limits gw_hl7_default_limits = {
    .max_bytes = 1u << 20,
    .max_segments = 2000,
    .max_fields = 256,
    .max_repetitions = 100,
    .max_components = 64,
    .max_subcomponents = 32,
};

struct delims {
  char field, comp, rep, esc, sub;
};

struct pstate {
  const struct gw_hl7_limits *lim;
  struct gw_diag *diag;
  struct delims d;
  xmlDocPtr doc;
  int seg_no; /* 1-based, also the "line" of issues */
  const char *seg_start;
  struct gw_buf tmp; /* decoded text */
  bool failed;
  const char *charset; /* iconv name of the message's character set, NULL for UTF-8 */
  const char *where;   /* the element being decoded ("PID.5.1"), for escape issues */
  struct names *nc;    /* the thread's element names (gw_hl7_limits.thread_names), else NULL */
  char seg[4];         /* the segment being parsed */
};

static struct gw_issue *issue(struct pstate *p, const char *rule, int hl7_code, bool resendable, const char *where,
                              const char *at, const char *fmt_en, const char *fmt_pl, const char *arg) {
  char en[256], pl[256];
  snprintf(en, sizeof(en), fmt_en, arg ? arg : "");
  snprintf(pl, sizeof(pl), fmt_pl, arg ? arg : "");
  struct gw_issue *i = gw_diag_add(p->diag, GW_SEV_ERROR, hl7_code == 207 ? "too-costly" : "structure", rule, en, pl);
  p->failed = true;
  if (!i)
    return NULL;
  i->hl7_code = hl7_code;
  i->resendable = resendable;
  snprintf(i->location, sizeof(i->location), "%s", where ? where : "");
  i->line = p->seg_no;
  i->col = (at && p->seg_start) ? (int)(at - p->seg_start) + 1 : 1;
  return i;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Whether the formatting escape of length |fl| at |q| is one the decoder turns into text (a line
 * break): those cannot pass through the text literally. */
static bool fmt_escape_decoded(const char *q, size_t fl) {
  return (fl == 5 && !memcmp(q + 1, ".br", 3)) || (fl >= 5 && !memcmp(q + 1, ".sp", 3));
}

/* Length of a formatting escape (\H\, \N\, \.br\, \.sp2\, \Zxx\, \Cxxyy\, \Mxxyyzz\)
 * starting at |q| (an escape character) within [q, limit), both escape
 * characters included; 0 when there is none. Its content is short and
 * alphanumeric, so it can never hide a delimiter. */
static size_t fmt_escape_len(const char *q, const char *limit, char esc) {
  const char *end = memchr(q + 1, esc, (size_t)(limit - q - 1));
  if (!end || end == q + 1 || end - q - 1 > 10)
    return 0;
  char c = q[1];
  if (c != 'H' && c != 'N' && c != '.' && c != 'Z' && c != 'C' && c != 'M')
    return 0;
  for (const char *k = q + 2; k < end; k++)
    if (!isalnum((unsigned char)*k) && *k != '+' && *k != '-')
      return 0;
  return (size_t)(end - q + 1);
}

static bool convert(const char *charset, const char *text, size_t len, struct gw_buf *out, size_t *bad);

/* |n| bytes of text in the message's character set, appended to |out| as UTF-8. */
static bool to_utf8(const char *charset, const char *in, size_t n, struct gw_buf *out) {
  size_t bad;
  return charset ? convert(charset, in, n, out, &bad) : gw_buf_append(out, in, n) == 0;
}

static void escape_issue(struct pstate *p, const char *at, const char *seq, size_t n) {
  char where[32], shown[24];
  snprintf(where, sizeof(where), "%s", p->where ? p->where : "");
  char *dot = strchr(where, '.');
  if (dot)
    *dot = '-'; /* PID.5.1 -> PID-5.1 */
  snprintf(shown, sizeof(shown), "%.*s", (int)(n < 20 ? n : 20), seq);
  struct gw_issue *i = issue(p, "hl7.escape", 102, true, where, at,
                             "%s is not a valid escape: \\X must be followed by pairs of hexadecimal digits that "
                             "spell text of the message's character set",
                             "%s nie jest poprawną sekwencją: po \\X muszą następować pary cyfr szesnastkowych "
                             "tworzące tekst w zestawie znaków komunikatu",
                             shown);
  (void)i;
}

/* Decodes HL7 escape sequences of [s, e) into p->tmp (NUL-terminated): the
 * delimiter escapes \F\ \S\ \T\ \R\ \E\; \Xhh..\ (pairs of hexadecimal digits, text
 * in the message's character set; anything else is reported at its field);
 * the line breaks \.br\ and \.sp\ become a new line; other formatting escapes
 * (highlighting \H\ \N\, \Z..\) stay as written, so that text survives a round
 * trip (siu-to-fhir.xsl leaves highlighting out of FHIR's plain text).
 * NULL when out of memory. */
static const char *decode(struct pstate *p, const char *s, const char *e) {
  p->tmp.len = 0;
  const char esc = p->d.esc;
  for (const char *q = s; q < e;) {
    size_t fl = *q == esc ? fmt_escape_len(q, e, esc) : 0;
    if (fl) {
      if (fmt_escape_decoded(q, fl)) {
        gw_buf_append(&p->tmp, "\n", 1);
      } else {
        gw_buf_append(&p->tmp, q, fl); /* kept as written, closing escape character included */
      }
      q += fl;
      continue;
    }
    if (*q == esc) {
      const char *end = memchr(q + 1, esc, (size_t)(e - q - 1));
      if (end && end - q == 2) {
        char r = 0;
        switch (q[1]) {
        case 'F':
          r = p->d.field;
          break;
        case 'S':
          r = p->d.comp;
          break;
        case 'T':
          r = p->d.sub;
          break;
        case 'R':
          r = p->d.rep;
          break;
        case 'E':
          r = p->d.esc;
          break;
        }
        if (r) {
          gw_buf_append(&p->tmp, &r, 1);
          q = end + 1;
          continue;
        }
      } else if (end && q[1] == 'X') {
        struct gw_buf raw;
        gw_buf_init(&raw, 4096);
        bool ok = end - q > 2 && (end - q - 2) % 2 == 0;
        for (const char *h = q + 2; ok && h < end; h += 2) {
          int hi = hexval(h[0]), lo = hexval(h[1]);
          ok = hi >= 0 && lo >= 0 && (hi || lo);
          char byte = (char)(hi * 16 + lo);
          ok = ok && gw_buf_append(&raw, &byte, 1) == 0;
        }
        size_t mark = p->tmp.len;
        ok = ok && to_utf8(p->charset, (const char *)raw.data, raw.len, &p->tmp) && gw_buf_append(&p->tmp, "", 0) == 0;
        ok = ok && xmlCheckUTF8(p->tmp.data + mark) && gw_xml_text_ok(p->tmp.data + mark, p->tmp.len - mark, false);
        gw_buf_cleanup(&raw);
        if (!ok) {
          escape_issue(p, q, q, (size_t)(end - q + 1));
          p->tmp.len = mark;
        }
        q = end + 1;
        continue;
      }
    }
    gw_buf_append(&p->tmp, q, 1);
    q++;
  }
  if (gw_buf_append(&p->tmp, "", 0))
    return NULL;
  return p->tmp.data ? (const char *)p->tmp.data : "";
}

/* "PID.3" from "PID" and 3: an element name, written without snprintf (this runs for every field,
 * component and subcomponent of every message; formatting was a fifth of the parse). */
static void dotted(char *out, size_t n, const char *base, int idx) {
  size_t k = strlen(base);
  char digits[12];
  int d = 0;
  for (unsigned v = (unsigned)idx; d == 0 || v; v /= 10)
    digits[d++] = (char)('0' + v % 10);
  if (k + 1 + (size_t)d + 1 > n) { /* never for the limits in force; keep it a valid string */
    out[0] = 0;
    return;
  }
  memcpy(out, base, k);
  out[k++] = '.';
  while (d)
    out[k++] = digits[--d];
  out[k] = 0;
}

/* Element names ("PID.3.4.2") interned once per thread instead of hashed into a new dictionary per
 * message: the thread's dictionary, shared by the documents parsed on it (each holds a reference),
 * and a direct-mapped cache from (segment, field, component, subcomponent) to the interned name.
 * A hostile stream of new names cannot grow it without bound: past NAMES_MAX names the thread
 * starts a new dictionary (documents still holding the old one keep it alive until freed). Such
 * documents must be freed on the thread that parsed them (gw_hl7_limits.thread_names). */
#define NAMES_BITS 12
#define NAMES_MAX  20000
struct names {
  xmlDictPtr dict;
  uint64_t key[1u << NAMES_BITS];
  const xmlChar *name[1u << NAMES_BITS];
};
static pthread_key_t names_key;
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_release(void *v) {
  struct names *nc = v;
  xmlDictFree(nc->dict);
  free(nc);
}
static void names_key_init(void) { pthread_key_create(&names_key, names_release); }

static struct names *thread_names(void) {
  pthread_once(&names_once, names_key_init);
  struct names *nc = pthread_getspecific(names_key);
  if (nc && xmlDictSize(nc->dict) > NAMES_MAX) {
    xmlDictPtr fresh = xmlDictCreate();
    if (!fresh)
      return NULL;
    xmlDictFree(nc->dict);
    nc->dict = fresh;
    memset(nc->key, 0, sizeof(nc->key));
  }
  if (!nc) {
    if (!(nc = calloc(1, sizeof(*nc))) || !(nc->dict = xmlDictCreate()) || pthread_setspecific(names_key, nc)) {
      if (nc)
        xmlDictFree(nc->dict);
      free(nc);
      return NULL;
    }
  }
  return nc;
}

/* The interned name |text| of element (field |f|, component |c|, subcomponent |sub|) of the current
 * segment; 0 for the levels below. */
static const xmlChar *name_of(struct pstate *p, const char *text, int f, int c, int sub) {
  if (!p->nc || f >= 4096 || c >= 4096 || sub >= 4096)
    return xmlDictLookup(p->doc->dict, BAD_CAST text, -1);
  uint64_t key = (uint64_t)(uint8_t)p->seg[0] << 60 | (uint64_t)(uint8_t)p->seg[1] << 52 |
                 (uint64_t)(uint8_t)p->seg[2] << 44 | (uint64_t)f << 32 | (uint64_t)c << 16 | (uint64_t)sub;
  size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - NAMES_BITS));
  if (p->nc->key[i] == key)
    return p->nc->name[i];
  const xmlChar *n = xmlDictLookup(p->doc->dict, BAD_CAST text, -1);
  if (n) {
    p->nc->key[i] = key;
    p->nc->name[i] = n;
  }
  return n;
}

/* A new element |name| (owned by the document's dictionary) appended to |parent|. */
static xmlNodePtr add_named(struct pstate *p, xmlNodePtr parent, const xmlChar *name) {
  xmlNodePtr n = name ? xmlNewDocNodeEatName(p->doc, NULL, (xmlChar *)name, NULL) : NULL;
  if (n)
    xmlAddChild(parent, n);
  return n;
}

static xmlNodePtr add_elem(xmlNodePtr parent, const char *name) {
  return xmlNewChild(parent, NULL, BAD_CAST name, NULL);
}

static void add_text(struct pstate *p, xmlNodePtr parent, const xmlChar *name, const char *s, const char *e) {
  xmlNodePtr n = name ? xmlNewDocNodeEatName(p->doc, NULL, (xmlChar *)name, NULL) : NULL;
  if (!n) {
    p->failed = true;
    return;
  }
  xmlNodePtr t;
  if (!memchr(s, p->d.esc, (size_t)(e - s))) {
    t = xmlNewDocTextLen(p->doc, BAD_CAST s, (int)(e - s)); /* the common case: nothing to decode */
  } else {
    p->where = (const char *)name;
    const char *v = decode(p, s, e);
    if (!v) {
      xmlFreeNode(n);
      p->failed = true;
      return;
    }
    t = *v ? xmlNewDocText(p->doc, BAD_CAST v) : NULL;
  }
  if (t)
    xmlAddChild(n, t);
  xmlAddChild(parent, n);
}

/* [s, e) is one repetition of field |fname| ("PID.3"). */
static void parse_rep(struct pstate *p, xmlNodePtr seg, const char *fname, int fi, const char *s, const char *e) {
  xmlNodePtr f = add_named(p, seg, name_of(p, fname, fi, 0, 0));
  if (!f) {
    p->failed = true;
    return;
  }
  int ci = 0;
  for (const char *cs = s; cs <= e;) {
    const char *ce = memchr(cs, p->d.comp, (size_t)(e - cs));
    if (!ce)
      ce = e;
    ci++;
    if ((size_t)ci > p->lim->max_components) {
      issue(p, "hl7.too-many-components", 207, false, fname, cs, "more than the allowed components in %s",
            "za dużo składowych w %s", fname);
      return;
    }
    if (ce > cs) {
      char cname[64];
      dotted(cname, sizeof(cname), fname, ci);
      /* subcomponents only when one past the first is non-empty ("a&" is just "a") */
      const char *first_sub_end = memchr(cs, p->d.sub, (size_t)(ce - cs));
      bool has_subs = false;
      for (const char *q = first_sub_end; q && q < ce; q++)
        if (*q != p->d.sub) {
          has_subs = true;
          break;
        }
      const char *vend = (first_sub_end && !has_subs) ? first_sub_end : ce; /* "a&&" is plain "a" */
      if (vend == cs) {
        /* nothing but empty subcomponents: an empty component */
      } else if (has_subs) {
        xmlNodePtr c = add_named(p, f, name_of(p, cname, fi, ci, 0));
        if (!c) {
          p->failed = true;
          return;
        }
        int si = 0;
        for (const char *ss = cs; ss <= ce;) {
          const char *se = memchr(ss, p->d.sub, (size_t)(ce - ss));
          if (!se)
            se = ce;
          si++;
          if ((size_t)si > p->lim->max_subcomponents) {
            issue(p, "hl7.too-many-subcomponents", 207, false, cname, ss, "more than the allowed subcomponents in %s",
                  "za dużo podskładowych w %s", cname);
            return;
          }
          if (se > ss) {
            char sname[80];
            dotted(sname, sizeof(sname), cname, si);
            add_text(p, c, name_of(p, sname, fi, ci, si), ss, se);
          }
          ss = se + 1;
        }
      } else {
        add_text(p, f, name_of(p, cname, fi, ci, 0), cs, vend);
      }
    }
    cs = ce + 1;
  }
}

static void parse_field(struct pstate *p, xmlNodePtr seg, const char *segname, int idx, const char *s, const char *e) {
  size_t only_delims = 0;
  while (s + only_delims < e && (s[only_delims] == p->d.comp || s[only_delims] == p->d.sub))
    only_delims++;
  if (s + only_delims == e)
    return; /* empty ("" or "^^"): implied by the numbering */
  char fname[16];
  dotted(fname, sizeof(fname), segname, idx);
  int ri = 0;
  for (const char *rs = s; rs <= e;) {
    const char *re = memchr(rs, p->d.rep, (size_t)(e - rs));
    if (!re)
      re = e;
    if ((size_t)++ri > p->lim->max_repetitions) {
      issue(p, "hl7.too-many-repetitions", 207, false, fname, rs, "more than the allowed repetitions of %s",
            "za dużo powtórzeń pola %s", fname);
      return;
    }
    parse_rep(p, seg, fname, idx, rs, re);
    rs = re + 1;
  }
}

static bool valid_segname(const char *s, size_t n) {
  if (n < 3 || !isupper((unsigned char)s[0]))
    return false;
  for (int i = 1; i < 3; i++)
    if (!isupper((unsigned char)s[i]) && !isdigit((unsigned char)s[i]))
      return false;
  return true;
}

static void parse_segment(struct pstate *p, xmlNodePtr root, const char *s, const char *e) {
  p->seg_start = s;
  char name[4] = {0};
  if (!valid_segname(s, (size_t)(e - s)) || (e - s > 3 && s[3] != p->d.field)) {
    char shown[16];
    snprintf(shown, sizeof(shown), "%.*s", (int)((e - s) < 8 ? (e - s) : 8), s);
    char where[24];
    snprintf(where, sizeof(where), "segment %d", p->seg_no);
    issue(p, "hl7.segment-name", 100, true, where, s, "segment %s does not start with a valid segment name",
          "segment %s nie zaczyna się poprawną nazwą segmentu", shown);
    return;
  }
  memcpy(name, s, 3);
  memcpy(p->seg, name, 4);
  xmlNodePtr seg = add_elem(root, name);
  if (!seg) {
    p->failed = true;
    return;
  }
  bool msh = strcmp(name, "MSH") == 0;
  const char *fs = s + 3;
  int idx = 0;
  if (msh) {
    char sep[2] = {p->d.field, 0};
    xmlNewTextChild(seg, NULL, BAD_CAST "MSH.1", BAD_CAST sep);
    const char *enc_start = e - s > 4 ? s + 4 : e;
    const char *enc_end = memchr(enc_start, p->d.field, (size_t)(e - enc_start));
    if (!enc_end)
      enc_end = e;
    char *enc = strndup(enc_start, (size_t)(enc_end - enc_start));
    if (enc)
      xmlNewTextChild(seg, NULL, BAD_CAST "MSH.2", BAD_CAST enc);
    free(enc);
    fs = enc_end;
    idx = 2;
  }
  while (fs < e) { /* fs points at a field separator */
    const char *start = fs + 1;
    const char *end = memchr(start, p->d.field, (size_t)(e - start));
    if (!end)
      end = e;
    idx++;
    if ((size_t)idx > p->lim->max_fields) {
      issue(p, "hl7.too-many-fields", 207, false, name, start, "segment %s has more fields than allowed",
            "segment %s ma za dużo pól", name);
      return;
    }
    parse_field(p, seg, name, idx, start, end);
    fs = end;
  }
}

static bool read_delims(struct pstate *p, const char *text, size_t len) {
  if (len < 8 || memcmp(text, "MSH", 3) != 0) {
    p->seg_no = 1;
    issue(p, "hl7.msh-first", 100, false, "MSH", text, "the message must start with an MSH segment%s",
          "komunikat musi zaczynać się segmentem MSH%s", "");
    return false;
  }
  p->d = (struct delims){text[3], text[4], text[5], text[6], text[7]};
  const char all[5] = {p->d.field, p->d.comp, p->d.rep, p->d.esc, p->d.sub};
  for (int i = 0; i < 5; i++) { /* printable ASCII, not a letter or digit: whatever the character set */
    unsigned char c = (unsigned char)all[i];
    if (isalnum(c) || c <= ' ' || c >= 0x7f)
      goto bad;
    for (int j = 0; j < i; j++)
      if (all[i] == all[j])
        goto bad;
  }
  return true;
bad:
  p->seg_no = 1;
  p->seg_start = text;
  issue(p, "hl7.delimiters", 102, false, "MSH-2", text + 3, "MSH-1/MSH-2 do not define five distinct delimiters%s",
        "MSH-1/MSH-2 nie definiują pięciu różnych separatorów%s", "");
  return false;
}

/* 2.3 to 2.8, with or without a minor release ("2.5.1", "2.8.2") */
static bool supported_version(const char *v) {
  if (strncmp(v, "2.", 2) != 0 || v[2] < '3' || v[2] > '8')
    return false;
  if (v[3] == 0)
    return true;
  return v[3] == '.' && v[4] && strspn(v + 4, "0123456789") == strlen(v + 4);
}

static void check_header(struct pstate *p, xmlNodePtr root) {
  p->seg_no = 1;
  p->seg_start = NULL;
  char *type = gw_hl7_get(p->doc, "MSH", 9, 1), *event = gw_hl7_get(p->doc, "MSH", 9, 2);
  char *structure = gw_hl7_get(p->doc, "MSH", 9, 3), *ctrl = gw_hl7_get(p->doc, "MSH", 10, 0);
  char *version = gw_hl7_get(p->doc, "MSH", 12, 1);
  if (!type || !*type)
    issue(p, "hl7.msh9-missing", 101, true, "MSH-9", NULL, "MSH-9 (message type) is missing%s",
          "brak MSH-9 (typ komunikatu)%s", "");
  if (!ctrl || !*ctrl)
    issue(p, "hl7.msh10-missing", 101, true, "MSH-10", NULL, "MSH-10 (message control id) is missing%s",
          "brak MSH-10 (identyfikator komunikatu)%s", "");
  if (!version || !*version) {
    issue(p, "hl7.msh12-missing", 101, true, "MSH-12", NULL, "MSH-12 (version) is missing%s", "brak MSH-12 (wersja)%s",
          "");
  } else {
    if (!supported_version(version))
      issue(p, "hl7.version", 203, false, "MSH-12", NULL, "HL7 version %s is not supported (2.3 to 2.8)",
            "wersja HL7 %s nie jest obsługiwana (2.3 do 2.8)", version);
  }
  if (version)
    xmlSetProp(root, BAD_CAST "version", BAD_CAST version);
  if (type)
    xmlSetProp(root, BAD_CAST "type", BAD_CAST type);
  if (event)
    xmlSetProp(root, BAD_CAST "event", BAD_CAST event);
  if (structure)
    xmlSetProp(root, BAD_CAST "structure", BAD_CAST structure);
  free(type);
  free(event);
  free(structure);
  free(ctrl);
  free(version);
}

/* MSH-18's first repetition's first component, read from the raw bytes (the delimiters are ASCII). */
static void msh18(const char *text, size_t len, char *out, size_t n) {
  out[0] = 0;
  if (len < 8 || memcmp(text, "MSH", 3))
    return;
  char fs = text[3], comp = text[4], rep = text[5], esc = text[6], sub = text[7];
  int field = 1; /* MSH-1 is the separator at position 3 */
  for (size_t i = 3; i < len && text[i] != '\r' && text[i] != '\n'; i++) {
    if (text[i] != fs)
      continue;
    if (++field == 18) {
      size_t j = i + 1, k = 0;
      while (j < len && text[j] != fs && text[j] != comp && text[j] != rep && text[j] != '\r' && text[j] != '\n' &&
             k + 1 < n) {
        if (text[j] == esc && j + 2 < len && text[j + 2] == esc) { /* a delimiter escape, as "UTF\E\8" */
          char c = text[j + 1];
          out[k++] = c == 'F' ? fs : c == 'S' ? comp : c == 'R' ? rep : c == 'T' ? sub : c == 'E' ? esc : c;
          j += 3;
          continue;
        }
        out[k++] = text[j++];
      }
      out[k] = 0;
      return;
    }
  }
}

/* Table 0211 (and WINDOWS-1250) -> an iconv name; NULL for UTF-8 (and ASCII, its subset: an undeclared
 * set or ASCII falls back to |fallback|, the clinic's setting). |*known| false for another name. */
static const char *charset_name(const char *cs, const char *fallback, bool *known) {
  char u[40];
  size_t k = 0;
  for (const char *c = cs; *c && k + 1 < sizeof(u); c++)
    if (*c != ' ' || k)
      u[k++] = (char)toupper((unsigned char)*c);
  while (k && u[k - 1] == ' ')
    k--;
  u[k] = 0;
  *known = true;
  if (!u[0] || !strcmp(u, "ASCII"))
    return fallback && *fallback ? fallback : NULL;
  if (!strcmp(u, "UNICODE UTF-8") || !strcmp(u, "UNICODE") || !strcmp(u, "UTF-8") || !strcmp(u, "UTF8"))
    return NULL;
  if (!strcmp(u, "8859/1"))
    return "ISO-8859-1";
  if (!strcmp(u, "8859/2"))
    return "ISO-8859-2";
  if (!strcmp(u, "8859/15"))
    return "ISO-8859-15";
  if (!strcmp(u, "WINDOWS-1250") || !strcmp(u, "CP1250") || !strcmp(u, "WIN1250"))
    return "WINDOWS-1250";
  *known = false;
  return NULL;
}

/* The whole of |text| from |charset| to UTF-8 in |out|; false with the offset of the first byte that is
 * not of the set in |*bad|. */
static bool convert(const char *charset, const char *text, size_t len, struct gw_buf *out, size_t *bad) {
  iconv_t cd = iconv_open("UTF-8", charset);
  if (cd == (iconv_t)-1) {
    *bad = 0;
    return false;
  }
  char *ip = (char *)text;
  size_t il = len;
  bool ok = true;
  while (ok && il) {
    char chunk[4096], *op = chunk;
    size_t ol = sizeof(chunk);
    size_t r = iconv(cd, &ip, &il, &op, &ol);
    ok = gw_buf_append(out, chunk, (size_t)(op - chunk)) == 0 && (r != (size_t)-1 || errno == E2BIG);
  }
  iconv_close(cd);
  *bad = (size_t)(ip - text);
  return ok;
}

/* Offset of the first byte of |s| that does not start a valid UTF-8 character (libxml2 decodes), or |len|. */
static size_t first_non_utf8(const char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    int n = (int)(len - i > 4 ? 4 : len - i);
    if ((unsigned char)s[i] < 0x80) {
      i++;
      continue;
    }
    if (xmlGetUTF8Char((const unsigned char *)s + i, &n) < 0 || n <= 0)
      return i;
    i += (size_t)n;
  }
  return len;
}

/* A byte not of the character set: where it is (line = segment, column), what it is, and what to do. */
static void byte_issue(struct pstate *p, const char *text, size_t len, size_t at, const char *charset) {
  int line = 1;
  size_t ls = 0;
  for (size_t i = 0; i < at && i < len; i++)
    if (text[i] == '\r' || text[i] == '\n') {
      if (!(text[i] == '\n' && i && text[i - 1] == '\r'))
        line++;
      ls = i + 1;
    }
  char arg[200];
  snprintf(arg, sizeof(arg), "byte 0x%02X at line %d, column %zu is not %s", at < len ? (unsigned char)text[at] : 0,
           line, at - ls + 1, charset ? charset : "UTF-8");
  p->seg_no = line;
  p->seg_start = NULL;
  struct gw_issue *i =
      issue(p, "hl7.encoding", 102, true, "MSH-18", NULL,
            "%s; declare the character set in MSH-18 (8859/2, UNICODE UTF-8) or ask for the clinic's hl7_charset",
            "%s; podaj zestaw znaków w MSH-18 (8859/2, UNICODE UTF-8) lub poproś o hl7_charset poradni", arg);
  if (i)
    i->col = (int)(at - ls + 1);
}

int gw_hl7_parse(const char *text, size_t len, const struct gw_hl7_limits *lim, struct _xmlDoc **out,
                 struct gw_diag *diag) {
  *out = NULL;
  struct pstate p = {.lim = lim ? lim : &gw_hl7_default_limits, .diag = diag};
  if (len > p.lim->max_bytes) {
    p.seg_no = 1;
    issue(&p, "hl7.too-large", 207, false, "", NULL, "the message exceeds the size limit%s",
          "komunikat przekracza dopuszczalny rozmiar%s", "");
    return GW_ERR_INVAL;
  }
  /* the character set: MSH-18, else the clinic's setting, else UTF-8; other sets are converted */
  char cs[40];
  msh18(text, len, cs, sizeof(cs));
  bool known = true;
  p.charset = charset_name(cs, p.lim->charset, &known);
  if (!known) {
    p.seg_no = 1;
    issue(&p, "hl7.charset", 103, false, "MSH-18", NULL,
          "character set %s is not one the gateway reads (ASCII, 8859/1, 8859/2, 8859/15, UNICODE UTF-8)",
          "zestaw znaków %s nie jest obsługiwany (ASCII, 8859/1, 8859/2, 8859/15, UNICODE UTF-8)", cs);
    return GW_ERR_INVAL;
  }
  struct gw_buf conv;
  gw_buf_init(&conv, 4 * len + 16);
  if (p.charset) {
    size_t bad = 0;
    if (!convert(p.charset, text, len, &conv, &bad)) {
      byte_issue(&p, text, len, bad, p.charset);
      gw_buf_cleanup(&conv);
      return GW_ERR_INVAL;
    }
    text = (const char *)conv.data;
    len = conv.len;
  }
  /* the whole text must be UTF-8 without NUL bytes before any of it reaches XML: one pass for the
   * common case, and the checks below, which say what is wrong where, only when it fails */
  if (gw_xml_text_ok((const unsigned char *)text, len, true))
    goto clean;
  char *copy = malloc(len + 1);
  if (!copy) {
    gw_buf_cleanup(&conv);
    return GW_ERR_NOMEM;
  }
  memcpy(copy, text ? text : "", len);
  copy[len] = 0;
  size_t bad_at = first_non_utf8(copy, len);
  if (bad_at < len) {
    free(copy);
    byte_issue(&p, text, len, bad_at, NULL);
    gw_buf_cleanup(&conv);
    return GW_ERR_INVAL;
  }
  bool text_ok = !memchr(text, 0, len);
  /* control characters cannot travel in XML: only segment terminators and tabs are allowed */
  for (size_t i = 0; text_ok && i < len; i++) {
    unsigned char ch = (unsigned char)text[i];
    if (ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t')
      text_ok = false;
  }
  if (text_ok) {
    /* and no code point that XML forbids (U+FFFE, U+FFFF, surrogates) */
    for (const char *q = copy; text_ok && *q;) {
      const char *nl = q + strcspn(q, "\r\n");
      text_ok = gw_xml_text_ok((const unsigned char *)q, (size_t)(nl - q), false);
      q = *nl ? nl + 1 : nl;
    }
  }
  if (!text_ok) {
    free(copy);
    p.seg_no = 1;
    issue(&p, "hl7.encoding", 102, true, "", NULL, "the message is not text: it holds control characters%s",
          "komunikat nie jest tekstem: zawiera znaki sterujące%s", "");
    gw_buf_cleanup(&conv);
    return GW_ERR_INVAL;
  }
  free(copy);
clean:
  if (!read_delims(&p, text, len)) {
    gw_buf_cleanup(&conv);
    return GW_ERR_INVAL;
  }
  gw_buf_init(&p.tmp, len + 16);
  p.doc = xmlNewDoc(BAD_CAST "1.0");
  if (p.doc && p.lim->thread_names && (p.nc = thread_names()) && xmlDictReference(p.nc->dict) == 0)
    p.doc->dict = p.nc->dict; /* the thread's names: no hashing of names seen before */
  else if (p.doc)
    p.nc = NULL, p.doc->dict = xmlDictCreate(); /* element names are interned, not copied per node */
  xmlNodePtr root = p.doc ? xmlNewDocNode(p.doc, NULL, BAD_CAST "HL7Message", NULL) : NULL;
  if (!root) {
    xmlFreeDoc(p.doc);
    gw_buf_cleanup(&p.tmp);
    gw_buf_cleanup(&conv);
    return GW_ERR_NOMEM;
  }
  xmlDocSetRootElement(p.doc, root);
  const char *s = text, *end = text + len;
  while (s < end && !p.failed) {
    const char *e = s;
    while (e < end && *e != '\r' && *e != '\n')
      e++;
    if (e > s) {
      if ((size_t)++p.seg_no > p.lim->max_segments) {
        issue(&p, "hl7.too-many-segments", 207, false, "", s, "the message has more segments than allowed%s",
              "komunikat ma za dużo segmentów%s", "");
        break;
      }
      parse_segment(&p, root, s, e);
    }
    s = e + 1;
  }
  if (!p.failed)
    check_header(&p, root);
  gw_buf_cleanup(&p.tmp);
  gw_buf_cleanup(&conv);
  if (p.failed || gw_diag_has_errors(diag)) {
    xmlFreeDoc(p.doc);
    return GW_ERR_INVAL;
  }
  *out = p.doc;
  return GW_OK;
}

struct _xmlDoc *gw_hl7_parse_header(const char *text, size_t len) {
  size_t n = 0;
  while (n < len && text[n] != '\r' && text[n] != '\n')
    n++;
  char *h = malloc(n + 1);
  if (!h)
    return NULL;
  for (size_t i = 0; i < n; i++)
    h[i] = ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e) ? '?' : text[i];
  h[n] = 0;
  struct gw_diag d;
  gw_diag_init(&d, 8);
  struct pstate p = {.lim = &gw_hl7_default_limits, .diag = &d};
  xmlNodePtr root = NULL;
  if (read_delims(&p, h, n) && (p.doc = xmlNewDoc(BAD_CAST "1.0")) && (p.doc->dict = xmlDictCreate()) &&
      (root = xmlNewDocNode(p.doc, NULL, BAD_CAST "HL7Message", NULL))) {
    xmlDocSetRootElement(p.doc, root);
    gw_buf_init(&p.tmp, n + 16);
    p.seg_no = 1;
    parse_segment(&p, root, h, h + n); /* the MSH alone, no judgement of what it says */
    gw_buf_cleanup(&p.tmp);
  }
  if (p.failed || !root) {
    xmlFreeDoc(p.doc);
    p.doc = NULL;
  }
  gw_diag_cleanup(&d);
  free(h);
  return p.doc;
}

struct _xmlDoc *gw_hl7_header_copy(struct _xmlDoc *doc) {
  xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
  if (!root)
    return NULL;
  xmlDocPtr copy = xmlNewDoc(BAD_CAST "1.0");
  xmlNodePtr r = copy ? xmlDocCopyNode(root, copy, 2) : NULL; /* the element and its attributes */
  if (!r) {
    xmlFreeDoc(copy);
    return NULL;
  }
  xmlDocSetRootElement(copy, r);
  for (xmlNodePtr seg = root->children; seg; seg = seg->next)
    if (seg->type == XML_ELEMENT_NODE && xmlStrEqual(seg->name, BAD_CAST "MSH")) {
      xmlNodePtr m = xmlDocCopyNode(seg, copy, 1);
      if (!m || !xmlAddChild(r, m)) {
        xmlFreeNode(m);
        xmlFreeDoc(copy);
        return NULL;
      }
      break;
    }
  return copy;
}

/* ---- ER7 output ---- */

struct sstate {
  struct delims d;
  struct gw_buf *out;
  int rv;
};

static void put(struct sstate *s, const void *p, size_t n) {
  if (!s->rv)
    s->rv = gw_buf_append(s->out, p, n);
}

static void put_escaped(struct sstate *s, const char *v) {
  for (const char *q = v; *q; q++) {
    char c = *q, code = 0;
    if (c == s->d.field)
      code = 'F';
    else if (c == s->d.comp)
      code = 'S';
    else if (c == s->d.sub)
      code = 'T';
    else if (c == s->d.rep)
      code = 'R';
    else if (c == s->d.esc && fmt_escape_len(q, q + strlen(q), s->d.esc) &&
             !fmt_escape_decoded(q, fmt_escape_len(q, q + strlen(q), s->d.esc))) {
      size_t fl = fmt_escape_len(q, q + strlen(q), s->d.esc); /* copy the whole sequence through */
      put(s, q, fl);
      q += fl - 1;
      continue;
    } else if (c == s->d.esc)
      code = 'E';
    else if (c == '\r' || c == '\n') { /* a line break (CR LF once) is \.br\ */
      if (c == '\r' && q[1] == '\n')
        q++;
      char br[6] = {s->d.esc, '.', 'b', 'r', s->d.esc, 0};
      put(s, br, 5);
      continue;
    }
    if (code) {
      char e3[3] = {s->d.esc, code, s->d.esc};
      put(s, e3, 3);
    } else {
      put(s, &c, 1);
    }
  }
}

/* Index after the last dot of an element name like "PID.3.4" (0 when absent). */
static int last_index(const xmlChar *name) {
  const char *dot = strrchr((const char *)name, '.');
  return dot ? atoi(dot + 1) : 0;
}

static void put_text_of(struct sstate *s, xmlNodePtr n) {
  xmlChar *v = xmlNodeGetContent(n);
  if (v) {
    put_escaped(s, (const char *)v);
    xmlFree(v);
  }
}

/* Writes the children of |parent| (components or subcomponents) joined by |sep|. */
static void put_positional(struct sstate *s, xmlNodePtr parent, char sep, bool deeper) {
  int at = 1;
  for (xmlNodePtr c = parent->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE)
      continue;
    int idx = last_index(c->name);
    if (idx < at)
      continue; /* out of order or malformed: ignore */
    for (; at < idx; at++)
      put(s, &sep, 1);
    bool has_children = false;
    for (xmlNodePtr g = c->children; g; g = g->next)
      has_children |= g->type == XML_ELEMENT_NODE;
    if (deeper && has_children)
      put_positional(s, c, s->d.sub, false);
    else
      put_text_of(s, c);
  }
}

static void put_segment(struct sstate *s, xmlNodePtr seg) {
  put(s, seg->name, strlen((const char *)seg->name));
  bool msh = xmlStrEqual(seg->name, BAD_CAST "MSH");
  int at = msh ? 2 : 0; /* last field index written */
  xmlNodePtr prev_field = NULL;
  for (xmlNodePtr f = seg->children; f; f = f->next) {
    if (f->type != XML_ELEMENT_NODE)
      continue;
    int idx = last_index(f->name);
    if (msh && idx <= 2) {
      if (idx == 1)
        put(s, &s->d.field, 1);
      else if (idx == 2) {
        xmlChar *v = xmlNodeGetContent(f);
        if (v) {
          put(s, v, (size_t)xmlStrlen(v));
          xmlFree(v);
        }
      }
      continue;
    }
    if (idx == at && prev_field && xmlStrEqual(prev_field->name, f->name)) {
      put(s, &s->d.rep, 1); /* another repetition of the same field */
    } else {
      if (idx <= at)
        continue;
      for (; at < idx; at++)
        put(s, &s->d.field, 1);
    }
    put_positional(s, f, s->d.comp, true);
    prev_field = f;
  }
  put(s, "\r", 1);
}

/* What the gateway writes is UTF-8: a message that is not plain ASCII says so
 * in MSH-18 (table 0211 "UNICODE UTF-8"), in place of any other set the
 * message it came from declared (its text was converted when it was read). */
static void declare_charset(xmlNodePtr root) {
  xmlNodePtr msh = NULL;
  for (xmlNodePtr n = root->children; n && !msh; n = n->next)
    if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST "MSH"))
      msh = n;
  if (!msh)
    return;
  xmlChar *all = xmlNodeGetContent(root);
  bool ascii = true;
  for (const xmlChar *c = all; c && *c && ascii; c++)
    ascii = *c < 0x80;
  xmlFree(all);
  if (ascii)
    return; /* any declared set reads ASCII the same */
  xmlNodePtr after = NULL;
  for (xmlNodePtr f = msh->children, next; f; f = next) {
    next = f->next;
    if (f->type != XML_ELEMENT_NODE)
      continue;
    int idx = last_index(f->name);
    if (idx == 18) { /* every repetition goes: the text is UTF-8 now */
      xmlUnlinkNode(f);
      xmlFreeNode(f);
      continue;
    }
    if (idx > 18 && !after)
      after = f;
  }
  xmlNodePtr f = xmlNewDocNode(root->doc, NULL, BAD_CAST "MSH.18", NULL);
  if (!f)
    return;
  xmlNewChild(f, NULL, BAD_CAST "MSH.18.1", BAD_CAST "UNICODE UTF-8");
  if (after)
    xmlAddPrevSibling(after, f);
  else
    xmlAddChild(msh, f);
}

int gw_hl7_serialize(struct _xmlDoc *doc, struct gw_buf *out) {
  xmlNodePtr root = xmlDocGetRootElement(doc);
  if (!root || !xmlStrEqual(root->name, BAD_CAST "HL7Message"))
    return GW_ERR_INVAL;
  declare_charset(root);
  struct sstate s = {.d = {'|', '^', '~', '\\', '&'}, .out = out};
  char *f1 = gw_hl7_get(doc, "MSH", 1, 0), *f2 = gw_hl7_get(doc, "MSH", 2, 0);
  if (f1 && strlen(f1) == 1)
    s.d.field = f1[0];
  if (f2 && strlen(f2) >= 4) {
    s.d.comp = f2[0];
    s.d.rep = f2[1];
    s.d.esc = f2[2];
    s.d.sub = f2[3];
  }
  free(f1);
  free(f2);
  for (xmlNodePtr seg = root->children; seg && !s.rv; seg = seg->next)
    if (seg->type == XML_ELEMENT_NODE)
      put_segment(&s, seg);
  return s.rv;
}

char *gw_hl7_get(struct _xmlDoc *doc, const char *segname, int field, int comp) {
  xmlNodePtr root = xmlDocGetRootElement(doc);
  if (!root)
    return NULL;
  char fname[16], cname[24];
  snprintf(fname, sizeof(fname), "%s.%d", segname, field);
  snprintf(cname, sizeof(cname), "%s.%d.%d", segname, field, comp ? comp : 1);
  for (xmlNodePtr seg = root->children; seg; seg = seg->next) {
    if (seg->type != XML_ELEMENT_NODE || !xmlStrEqual(seg->name, BAD_CAST segname))
      continue;
    for (xmlNodePtr f = seg->children; f; f = f->next) {
      if (f->type != XML_ELEMENT_NODE || !xmlStrEqual(f->name, BAD_CAST fname))
        continue;
      if (field <= 2 && !strcmp(segname, "MSH")) {
        xmlChar *v = xmlNodeGetContent(f);
        char *r = v ? strdup((const char *)v) : NULL;
        xmlFree(v);
        return r;
      }
      for (xmlNodePtr c = f->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST cname)) {
          /* a component with subcomponents: its first subcomponent */
          xmlNodePtr v = c;
          for (xmlNodePtr g = c->children; g; g = g->next)
            if (g->type == XML_ELEMENT_NODE) {
              v = g;
              break;
            }
          xmlChar *t = xmlNodeGetContent(v);
          char *r = t ? strdup((const char *)t) : NULL;
          xmlFree(t);
          return r;
        }
      }
      return strdup("");
    }
    return NULL;
  }
  return NULL;
}

/* ---- ACK ---- */

enum gw_hl7_ack gw_hl7_ack_code_for(const struct gw_diag *diag) {
  for (size_t i = 0; i < diag->n; i++)
    if (diag->items[i].severity <= GW_SEV_ERROR && !diag->items[i].resendable)
      return GW_ACK_AR;
  return GW_ACK_AE;
}

/* Appends |v| escaped for ER7 with the standard delimiters. */
static void put_value(struct sstate *s, const char *v) { put_escaped(s, v ? v : ""); }

/* "PID-3.4.1" or "segment 4" -> ERR-2 "PID^1^3^^4^1" (segment^sequence^field^rep^comp^sub),
 * trailing empty components left out. */
static void put_location(struct sstate *s, const char *loc) {
  char seg[4] = {0};
  int field = 0, comp = 0, sub = 0;
  if (strlen(loc) >= 3 && valid_segname(loc, 3)) {
    memcpy(seg, loc, 3);
    sscanf(loc + 3, "%*[-.]%d.%d.%d", &field, &comp, &sub);
  }
  if (!seg[0])
    return;
  char b[64];
  int n = snprintf(b, sizeof(b), "%s^1", seg);
  if (field)
    n += snprintf(b + n, sizeof(b) - (size_t)n, "^%d", field);
  if (comp)
    n += snprintf(b + n, sizeof(b) - (size_t)n, "^^%d", comp);
  if (comp && sub)
    snprintf(b + n, sizeof(b) - (size_t)n, "^%d", sub);
  put(s, b, strlen(b));
}

static const char *hl7_code_text(int code) {
  switch (code) {
  case 0:
    return "Message accepted";
  case 100:
    return "Segment sequence error";
  case 101:
    return "Required field missing";
  case 102:
    return "Data type error";
  case 103:
    return "Table value not found";
  case 200:
    return "Unsupported message type";
  case 201:
    return "Unsupported event code";
  case 203:
    return "Unsupported version id";
  case 204:
    return "Unknown key identifier";
  case 205:
    return "Duplicate key identifier";
  case 207:
    return "Application internal error";
  }
  return "Application error";
}

int gw_hl7_ack(struct _xmlDoc *msg, enum gw_hl7_ack code, const char *text, const struct gw_diag *diag,
               const char *control_id, const char *now, struct gw_buf *out) {
  struct sstate s = {.d = {'|', '^', '~', '\\', '&'}, .out = out};
  char *f[13] = {0};
  static const int want[] = {3, 4, 5, 6, 10, 11, 12};
  for (size_t i = 0; msg && i < sizeof(want) / sizeof(want[0]); i++)
    f[want[i]] = gw_hl7_get(msg, "MSH", want[i], 1);
  char *event = msg ? gw_hl7_get(msg, "MSH", 9, 2) : NULL;
  put(&s, "MSH|^~\\&|", 9);
  /* the ACK goes back: our receiving application/facility become the sender */
  put_value(&s, f[5]);
  put(&s, "|", 1);
  put_value(&s, f[6]);
  put(&s, "|", 1);
  put_value(&s, f[3]);
  put(&s, "|", 1);
  put_value(&s, f[4]);
  put(&s, "|", 1);
  put_value(&s, now);
  put(&s, "||ACK^", 6);
  put_value(&s, event);
  put(&s, "^ACK|", 5);
  put_value(&s, control_id);
  put(&s, "|", 1);
  put_value(&s, f[11] && *f[11] ? f[11] : "P");
  put(&s, "|", 1);
  put_value(&s, f[12] && *f[12] ? f[12] : "2.8");
  put(&s, "\rMSA|", 5);
  static const char *const codes[] = {"AA", "AE", "AR", "CA", "CE", "CR"};
  put(&s, codes[code], 2);
  put(&s, "|", 1);
  put_value(&s, f[10]);
  if (text && *text) {
    put(&s, "|", 1);
    put_value(&s, text);
  }
  put(&s, "\r", 1);
  for (size_t i = 0; diag && i < diag->n; i++) {
    const struct gw_issue *is = &diag->items[i];
    if (is->severity > GW_SEV_WARNING)
      continue;
    put(&s, "ERR||", 5);
    put_location(&s, is->location);
    char c[16];
    snprintf(c, sizeof(c), "|%d^", is->hl7_code ? is->hl7_code : 207);
    put(&s, c, strlen(c));
    put_value(&s, hl7_code_text(is->hl7_code ? is->hl7_code : 207));
    put(&s, "^HL70357|", 9);
    put(&s, is->severity <= GW_SEV_ERROR ? "E" : "W", 1);
    put(&s, "||||", 4);
    put_value(&s, is->rule);
    put(&s, ": ", 2);
    put_value(&s, is->msg_en);
    if (is->location[0] && !valid_segname(is->location, strlen(is->location))) {
      put(&s, " [", 2); /* a FHIRPath into the translated message */
      put_value(&s, is->location);
      put(&s, "]", 1);
    }
    put(&s, "\r", 1);
  }
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
    free(f[i]);
  free(event);
  return s.rv;
}

void gw_hl7_control_id(char *out, size_t n) {
  static _Atomic unsigned long counter;
  unsigned long c = atomic_fetch_add(&counter, 1) % 100000000UL;
  snprintf(out, n, "CG%010lld%08lu", (long long)time(NULL) % 10000000000LL, c);
}

void gw_hl7_dtm(time_t t, char *out, size_t n) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y%m%d%H%M%S+0000", &tm);
}

void gw_hl7_now(char *out, size_t n) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y%m%d%H%M%S", &tm);
}
