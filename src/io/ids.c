/* ids: clock and UUID generation (getrandom). */
#define _DEFAULT_SOURCE
#include "ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t bs_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t bs_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t bs_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* n (at most 16) random bytes, from a per-thread pool of the kernel's, filled 256 bytes at
 * a time: one getrandom call per 16 ids instead of one each. bulkstate never forks, so no two
 * processes share a pool. */
static void random_bytes(unsigned char *b, size_t n)
{
    static _Thread_local unsigned char pool[256];
    static _Thread_local size_t left;
    if (left < n) {
        size_t got = 0;
        while (got < sizeof pool) {
            ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
            if (r <= 0) {
                fputs("bulkstate: getrandom failed\n", stderr);
                abort();
            }
            got += (size_t)r;
        }
        left = sizeof pool;
    }
    memcpy(b, pool + sizeof pool - left, n);
    memset(pool + sizeof pool - left, 0, n); /* used once */
    left -= n;
}

static void format(const unsigned char b[16], bs_uuid *out)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out->s;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
}

void bs_uuid7(bs_uuid *out)
{
    unsigned char b[16];
    uint64_t ms = (uint64_t)(bs_now_us() / 1000);
    random_bytes(b, sizeof b);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    format(b, out);
}

void bs_uuid4(bs_uuid *out)
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (unsigned char)(0x40 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    format(b, out);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= 0xff; /* separator: ("ab","c") and ("a","bc") differ */
    h *= 0x100000001b3ULL;
    return h;
}

void bs_uuid7_derived(bs_uuid *out, int64_t ts_us, const char *a, const char *b, const char *c)
{
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        h1 = fnv1a(h1, parts[i] ? parts[i] : "");
        h2 = fnv1a(h2 ^ 0x9e3779b97f4a7c15ULL, parts[i] ? parts[i] : "");
    }
    unsigned char u[16];
    for (int i = 0; i < 8; i++) {
        u[i] = (unsigned char)(h1 >> (56 - 8 * i));
        u[8 + i] = (unsigned char)(h2 >> (56 - 8 * i));
    }
    uint64_t ms = (uint64_t)(ts_us / 1000);
    for (int i = 0; i < 6; i++)
        u[i] = (unsigned char)(ms >> (40 - 8 * i));
    u[6] = (unsigned char)(0x70 | (u[6] & 0x0f));
    u[8] = (unsigned char)(0x80 | (u[8] & 0x3f));
    format(u, out);
}
