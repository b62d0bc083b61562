/* text: making untrusted text safe to print. Pure. */
#ifndef BS_TEXT_H
#define BS_TEXT_H

#include <stddef.h>

/* Copies s (NULL: "") into out (n bytes, always NUL-terminated, cut at a whole escape) with
 * every control character (C0 and DEL, newlines included) and every byte that is not part of
 * well-formed UTF-8 written as \xNN, and a backslash as \\. The result cannot start a line,
 * move a terminal's cursor or make a JSON encoder fail. 4 * strlen(s) + 1 bytes always
 * suffice. Returns out. */
char *bs_text_escape(const char *s, char *out, size_t n);

/* The trace id of a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>"), into out (33 bytes), or
 * "-" when tp is NULL or not of that form. Returns out. */
char *bs_trace_id(const char *tp, char out[33]);

#endif
