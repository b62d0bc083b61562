/* Fresh ids (ids.c): the text form, the version and variant bits, the time prefix of a
 * UUIDv7, no repeats across the random pool's refills, and derived ids' determinism. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../t.h"
#include "ids.h"

static int shaped(const bs_uuid *u, char version)
{
    if (strlen(u->s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        const char c = u->s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return u->s[14] == version && strchr("89ab", u->s[19]) != NULL;
}

static int by_text(const void *a, const void *b)
{
    return strcmp(((const bs_uuid *)a)->s, ((const bs_uuid *)b)->s);
}

int main(void)
{
    enum { N = 5000 }; /* some 300 refills of the pool */
    bs_uuid *ids = malloc(sizeof *ids * 2 * N);
    int bad = 0;
    const int64_t before_ms = bs_now_us() / 1000;
    for (int i = 0; i < N; i++) {
        bs_uuid7(&ids[i]);
        bs_uuid4(&ids[N + i]);
        bad += !shaped(&ids[i], '7') + !shaped(&ids[N + i], '4');
    }
    const int64_t after_ms = bs_now_us() / 1000;
    CHECK_INT(bad, 0);
    /* a UUIDv7 starts with its milliseconds since the epoch, big-endian */
    char hex[13];
    memcpy(hex, ids[0].s, 8);
    memcpy(hex + 8, ids[0].s + 9, 4);
    hex[12] = '\0';
    const int64_t ms = strtoll(hex, NULL, 16);
    CHECK(ms >= before_ms && ms <= after_ms);
    qsort(ids, 2 * N, sizeof *ids, by_text);
    int repeats = 0;
    for (int i = 1; i < 2 * N; i++)
        repeats += strcmp(ids[i - 1].s, ids[i].s) == 0;
    CHECK_INT(repeats, 0);
    free(ids);

    bs_uuid a, b, c;
    bs_uuid7_derived(&a, 1700000000123456, "cmd", "run", "state");
    bs_uuid7_derived(&b, 1700000000123456, "cmd", "run", "state");
    bs_uuid7_derived(&c, 1700000000123456, "cm", "drun", "state");
    CHECK_STR(a.s, b.s);
    CHECK(strcmp(a.s, c.s) != 0);
    CHECK(shaped(&a, '7'));
    CHECK(strncmp(a.s, "018bcfe5-687b", 13) == 0); /* 1700000000123 ms */
    return t_done();
}
