/* Reading whole files with a ceiling (configuration, schemas, mappings, CLI inputs). */
#ifndef GW_CORE_FILE_H
#define GW_CORE_FILE_H

#include <stddef.h>

#include "core/buf.h"

/* Reads |path| into a new NUL-terminated buffer (free() it) and stores its
 * length in |*len|. Returns NULL when the file cannot be read or is larger
 * than |max| bytes; |*err| (when not NULL) then says which: "cannot open",
 * "read error", "larger than the limit" or "out of memory". */
char *gw_file_read(const char *path, size_t max, size_t *len, const char **err);

/* The same for files the gateway needs to start: on failure "PATH: why" goes to |errs|. */
char *gw_file_read_conf(const char *path, size_t max, size_t *len, struct gw_buf *errs);

#endif
