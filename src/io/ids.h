/* ids: the two impure inputs of orchestration: the wall clock and fresh UUIDv7s (Prefect's
 * state ids are UUIDv7). Kept out of the pure core on purpose. */
#ifndef BS_IDS_H
#define BS_IDS_H

#include <stdint.h>

#include "model.h"

int64_t bs_now_us(void);
/* Monotonic milliseconds, for timeouts. */
int64_t bs_mono_ms(void);
/* Monotonic microseconds, for durations. */
int64_t bs_mono_us(void);
/* A UUIDv7 from the current time and the kernel's random source. */
void bs_uuid7(bs_uuid *out);
/* A random UUIDv4. */
void bs_uuid4(bs_uuid *out);
/* A UUIDv7 with the time ts_us and the rest derived from the strings a, b, c (any may be
 * NULL): the same inputs give the same id (deterministic replay). */
void bs_uuid7_derived(bs_uuid *out, int64_t ts_us, const char *a, const char *b, const char *c);

#endif
