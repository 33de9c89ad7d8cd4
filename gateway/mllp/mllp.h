/* MLLP framing (HL7 v2 over TCP): <VT> message <FS><CR>. No I/O: the network
 * layer keeps the received bytes and asks for the next complete frame. */
#ifndef GW_MLLP_MLLP_H
#define GW_MLLP_MLLP_H

#include <stddef.h>
#include <stdint.h>

#define GW_MLLP_SB 0x0b
#define GW_MLLP_EB 0x1c
#define GW_MLLP_CR 0x0d

enum gw_mllp_result {
  GW_MLLP_FRAME = 0, /* a frame: message at [*start, *start + *len), *consumed bytes used */
  GW_MLLP_MORE,      /* no complete frame yet (*consumed: leading line ends that may be dropped) */
  GW_MLLP_BAD,       /* bytes outside a frame that are not line ends: not MLLP */
};

/* Finds the first frame in |buf|. CR and LF between frames are tolerated. */
enum gw_mllp_result gw_mllp_next(const uint8_t *buf, size_t len, size_t *start, size_t *mlen, size_t *consumed);

/* Splits "mllp://HOST:PORT" (a bracketed IPv6 host allowed). Returns 0 or -1. */
int gw_mllp_url(const char *url, char *host, size_t hn, char *port, size_t pn);

#endif
