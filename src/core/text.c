/* text: see text.h. Pure. */
#include "text.h"

#include <stdbool.h>
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

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

char *bs_trace_id(const char *tp, char out[33])
{
    /* version 00 has exactly 55 characters; later versions may append "-..." after them */
    if (tp == NULL || strlen(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' ||
        (tp[55] != '\0' && tp[55] != '-') || !all_hex(tp, 2) || !all_hex(tp + 3, 32) ||
        !all_hex(tp + 36, 16) || !all_hex(tp + 53, 2) || strncmp(tp, "ff", 2) == 0 ||
        strspn(tp + 3, "0") >= 32 || (strncmp(tp, "00", 2) == 0 && tp[55] != '\0')) {
        snprintf(out, 33, "-");
        return out;
    }
    memcpy(out, tp + 3, 32);
    out[32] = '\0';
    return out;
}
