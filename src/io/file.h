/* file: reading a whole file (or standard input) into memory, for the schema files, the SQL
 * scripts and the bodies `send` reads. */
#ifndef BS_FILE_H
#define BS_FILE_H

#include <stddef.h>

#include "err.h"

/* Reads path ("-" = standard input) into a NUL-terminated malloc'd buffer (the caller frees);
 * *len (may be NULL) gets its size. NULL and err (BS_ESYS) when it cannot be opened. */
char *bs_read_file(const char *path, size_t *len, bs_err *err);

#endif
