/* file: whole-file reads. Reads in chunks, so pipes and standard input work too. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"

char *bs_read_file(const char *path, size_t *len, bs_err *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        bs_err_set(err, BS_ESYS, "could not open \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = bs_xmalloc(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) buf = bs_xrealloc(buf, cap *= 2);
    }
    if (f != stdin) fclose(f);
    buf[n] = '\0';
    if (len != NULL) *len = n;
    return buf;
}
