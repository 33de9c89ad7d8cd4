/* libFuzzer: MLLP framing over arbitrary bytes, frame after frame, as the
 * network layer consumes them. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "mllp/mllp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    size_t st, ml, used;
    enum gw_mllp_result r = gw_mllp_next(data + off, size - off, &st, &ml, &used);
    assert(used <= size - off);
    if (r == GW_MLLP_BAD)
      break;
    if (r == GW_MLLP_MORE)
      break;
    assert(st >= 1 && st + ml + 2 <= used && data[off + st - 1] == GW_MLLP_SB);
    off += used;
  }
  return 0;
}
