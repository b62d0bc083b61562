/* timeutil: UUID and timestamp scalars. Pure. */
#include "timeutil.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool bs_uuid_parse(const char *s, bs_uuid *out)
{
    char hex[32];
    size_t n = 0, len;
    if (s == NULL) return false;
    if (strncasecmp(s, "urn:uuid:", 9) == 0) s += 9;
    len = strlen(s);
    if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
        s++;
        len -= 2;
    }
    if (len == 36) {
        for (size_t i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (s[i] != '-') return false;
                continue;
            }
            if (!isxdigit((unsigned char)s[i])) return false;
            hex[n++] = (char)tolower((unsigned char)s[i]);
        }
    } else if (len == 32) {
        for (size_t i = 0; i < 32; i++) {
            if (!isxdigit((unsigned char)s[i])) return false;
            hex[n++] = (char)tolower((unsigned char)s[i]);
        }
    } else {
        return false;
    }
    snprintf(out->s, sizeof out->s, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
    return true;
}

int64_t bs_ts_from_civil(int y, int mon, int d, int h, int mi, int s)
{
    /* days from civil (Howard Hinnant's algorithm) */
    y -= mon <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    const int64_t days = era * 146097 + doe - 719468;
    return days * 86400 + h * 3600 + mi * 60 + s;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

bool bs_ts_parse(const char *s, int64_t *out_us)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, fdig = 0;
    int64_t off = 0;
    if (s == NULL || !digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return false;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi)) return false;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec)) return false;
            if (*p == '.' || *p == ',') {
                p++;
                if (!isdigit((unsigned char)*p)) return false;
                while (isdigit((unsigned char)*p)) {
                    if (fdig < 6) {
                        frac = frac * 10 + (*p - '0');
                        fdig++;
                    }
                    p++;
                }
                while (fdig < 6) {
                    frac *= 10;
                    fdig++;
                }
            }
        }
        if (h > 23 || mi > 59 || sec > 59) return false;
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1, oh, om = 0;
            p++;
            if (!digits(&p, 2, &oh)) return false;
            if (*p == ':') p++;
            if (*p != '\0' && !digits(&p, 2, &om)) return false;
            if (oh > 23 || om > 59) return false;
            off = sign * (oh * 3600 + om * 60);
        }
    } else if (*p != '\0') {
        return false;
    }
    if (*p != '\0') return false;
    *out_us = (bs_ts_from_civil(y, mo, d, h, mi, sec) - off) * 1000000 + frac;
    return true;
}

static void split(int64_t us, int64_t *secs, int *micro)
{
    *secs = us / 1000000;
    int64_t r = us % 1000000;
    if (r < 0) {
        r += 1000000;
        (*secs)--;
    }
    *micro = (int)r;
}

char *bs_ts_format(int64_t us, char *buf, size_t n)
{
    int64_t secs;
    int micro, y, m, d;
    split(us, &secs, &micro);
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    if (micro)
        snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", y, m, d, (int)(rem / 3600),
                 (int)(rem / 60 % 60), (int)(rem % 60), micro);
    else
        snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(rem / 3600),
                 (int)(rem / 60 % 60), (int)(rem % 60));
    return buf;
}

char *bs_ts_format_pg(int64_t us, char *buf, size_t n)
{
    int64_t secs;
    int micro, y, m, d;
    split(us, &secs, &micro);
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, n, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60), micro);
    return buf;
}
