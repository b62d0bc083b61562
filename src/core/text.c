/* text: see text.h. Pure. */
#include "text.h"

#include <stdio.h>
#include <string.h>

/* The length of the well-formed UTF-8 sequence at p (2..4), or 0 (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *p)
{
    const unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

char *bs_text_escape(const char *s, char *out, size_t n)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t o = 0;
    if (n == 0) return out;
    while (*p) {
        char esc[8];
        const char *piece = esc;
        size_t k;
        if (*p == '\\') {
            piece = "\\\\";
            k = 2;
            p++;
        } else if (*p < 0x20 || *p == 0x7F) {
            k = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p++);
        } else if (*p < 0x80) {
            piece = (const char *)p++;
            k = 1;
        } else if ((k = utf8_len(p)) > 0) {
            piece = (const char *)p;
            p += k;
        } else {
            k = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p++);
        }
        if (o + k >= n) break; /* no room for the whole piece: cut here */
        memcpy(out + o, piece, k);
        o += k;
    }
    out[o] = '\0';
    return out;
}
