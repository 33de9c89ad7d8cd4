/* HL7 v2 ER7 (pipe-delimited) <-> XML, and ACK messages.
 *
 * The XML form is positional, the way HL7 v2 XML tools without per-version
 * data-type tables name things (docs/hl7v2-xml.md):
 *
 *   <HL7Message version="2.8" type="SIU" event="S12" structure="SIU_S12">
 *     <MSH><MSH.1>|</MSH.1><MSH.2>^~\&amp;</MSH.2><MSH.3><MSH.3.1>SCHApp</MSH.3.1></MSH.3>...</MSH>
 *     <PID><PID.3><PID.3.1>123</PID.3.1><PID.3.4><PID.3.4.1>A</PID.3.4.1>...</PID.3.4></PID.3>
 *          <PID.3><PID.3.1>456</PID.3.1></PID.3> ...            (a repetition repeats the field element)
 *
 * Every present field has at least its .1 component element; a component
 * holding subcomponents has .1, .2, ... children; empty trailing positions
 * are omitted and empty inner ones are implied by the numbering. Escape
 * sequences are decoded into text and re-encoded on output.
 *
 * Uses libxml2 for the document; the only folder (with xform/ and
 * validate/) that does. */
#ifndef GW_CODEC_HL7V2_H
#define GW_CODEC_HL7V2_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/buf.h"
#include "core/diag.h"

struct _xmlDoc;

struct gw_hl7_limits {
  size_t max_bytes; /* whole message */
  size_t max_segments;
  size_t max_fields;        /* per segment */
  size_t max_repetitions;   /* per field */
  size_t max_components;    /* per repetition */
  size_t max_subcomponents; /* per component */
  /* The character set of a message whose MSH-18 names none (or ASCII): an
   * iconv name such as "WINDOWS-1250" (Polish systems send it undeclared; a
   * per-clinic setting), or NULL for UTF-8. */
  const char *charset;
  /* Element names from the calling thread's dictionary (faster for a stream of messages); the
   * document must then be freed on the same thread (gw_engine_check keeps it there). */
  bool thread_names;
};

/* Defaults: 1 MiB, 2,000 segments, 256 fields, 100 repetitions, 64
 * components, 32 subcomponents. */
extern const struct gw_hl7_limits gw_hl7_default_limits;

/* Parses ER7 |text| (CR, LF or CRLF segment terminators; delimiters from
 * MSH-1/MSH-2; versions 2.3 to 2.8). The character set is MSH-18's (table
 * 0211: ASCII, 8859/1, 8859/2, 8859/15, UNICODE UTF-8; and, seen in Polish
 * software, WINDOWS-1250), else |lim->charset|, else UTF-8; text in another
 * set is converted to UTF-8 with iconv, \Xhh..\ escapes too. A byte that is
 * not of the set is reported at its line (segment) and column. On success |*out| is a new document the
 * caller frees with xmlFreeDoc(). Problems go to |diag| with rule ids
 * "hl7.*", HL7 table 0357 codes and locations like "PID-3.4"; any error
 * returns GW_ERR_INVAL and no document. */
int gw_hl7_parse(const char *text, size_t len, const struct gw_hl7_limits *lim, struct _xmlDoc **out,
                 struct gw_diag *diag);

/* For an ACK to a message that did not parse: a document of its MSH segment
 * alone, read with every byte outside printable ASCII taken as "?", so that
 * MSA-2 echoes MSH-10 and MSH-3..6 and the version come back. NULL when even
 * that does not parse. */
struct _xmlDoc *gw_hl7_parse_header(const char *text, size_t len);

/* A copy of |doc|'s root (with its attributes) and MSH segment in a document of its own: what an
 * ACK reads, free to travel to another thread. NULL when out of memory or |doc| is NULL. */
struct _xmlDoc *gw_hl7_header_copy(struct _xmlDoc *doc);

/* Serialises a document of the form above back to ER7 (CR terminators),
 * appending to |out|; a message with text beyond ASCII and no MSH-18 gets
 * MSH-18 "UNICODE UTF-8" (added to |doc|). Returns 0, GW_ERR_INVAL for a document that is not an
 * HL7 v2 XML message, or GW_ERR_TOOBIG. */
int gw_hl7_serialize(struct _xmlDoc *doc, struct gw_buf *out);

/* |t| as an HL7 DTM with its UTC offset, YYYYMMDDHHMMSS+0000 (|n| >= 20). */
void gw_hl7_dtm(time_t t, char *out, size_t n);

/* The current time as an HL7 DTM in UTC, YYYYMMDDHHMMSS (|n| >= 15). */
void gw_hl7_now(char *out, size_t n);

/* A control id for a message the gateway writes (an ACK's MSH-10): "CG",
 * the Unix time and a process-wide counter, 20 characters (MSH-10's length
 * in v2.5), unique within the process whatever the connection (|n| >= 21). */
void gw_hl7_control_id(char *out, size_t n);

/* Acknowledgment codes (MSA-1, table 0008): application accept, error,
 * reject; and the commit (accept) acknowledgments of enhanced mode. */
enum gw_hl7_ack { GW_ACK_AA, GW_ACK_AE, GW_ACK_AR, GW_ACK_CA, GW_ACK_CE, GW_ACK_CR };

/* Builds an ACK to |msg| (may be NULL when the message could not be parsed:
 * then a minimal MSH is used) with MSA-1 |code|, MSA-3 |text|, and one ERR
 * segment per error/warning issue in |diag| (ERR-2 location, ERR-3 code from
 * table 0357, ERR-4 severity, ERR-8 message). |control_id| becomes MSH-10,
 * |now| (YYYYMMDDHHMMSS) MSH-7. Appends ER7 to |out|. */
int gw_hl7_ack(struct _xmlDoc *msg, enum gw_hl7_ack code, const char *text, const struct gw_diag *diag,
               const char *control_id, const char *now, struct gw_buf *out);

/* Picks AE or AR for a failed message: AR when any error says the message
 * must not be resent as is (unsupported type, event or version, duplicate),
 * AE otherwise. */
enum gw_hl7_ack gw_hl7_ack_code_for(const struct gw_diag *diag);

/* Reads a field/component value from a parsed message: |seg| "MSH",
 * |field| 9, |comp| 2 (0 = whole first component). Returns a malloc'd string
 * or NULL. */
char *gw_hl7_get(struct _xmlDoc *doc, const char *seg, int field, int comp);

#endif
