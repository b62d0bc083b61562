/* ids: clock and UUID generation (getrandom). */
#define _DEFAULT_SOURCE
#include "ids.h"

#include <stdio.h>
#include <stdlib.h>
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

static void random_bytes(unsigned char *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r <= 0) {
            fputs("bulkstate: getrandom failed\n", stderr);
            abort();
        }
        got += (size_t)r;
    }
}

static void format(const unsigned char b[16], bs_uuid *out)
{
    snprintf(out->s, sizeof out->s,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
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
