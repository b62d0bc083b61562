/* timeutil: parsing and formatting of the scalar types commands carry (UUIDs, ISO-8601
 * timestamps as microseconds since the epoch). Pure: no clock, no I/O. */
#ifndef BS_TIMEUTIL_H
#define BS_TIMEUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Accepts hyphenated or 32 hex digits, optional {braces} or urn:uuid: prefix, any case, as
 * Prefect (Pydantic) does; writes the lower-case hyphenated form. Returns false if invalid. */
bool bs_uuid_parse(const char *s, bs_uuid *out);

/* ISO-8601 date-time ("2023-11-07T05:31:56Z", space separator, fraction, offset; no offset means
 * UTC). Returns false if invalid. */
bool bs_ts_parse(const char *s, int64_t *out_us);
/* Prefect's rendering: "2023-11-07T05:31:56Z", fraction only when non-zero ("...56.5Z" keeps
 * micro precision as ".500000"). buf needs 40 bytes. */
char *bs_ts_format(int64_t us, char *buf, size_t n);
/* PostgreSQL-friendly rendering for parameters: "2023-11-07 05:31:56.000000+00". */
char *bs_ts_format_pg(int64_t us, char *buf, size_t n);
/* Seconds from 1970-01-01 for a civil UTC date-time. */
int64_t bs_ts_from_civil(int y, int mon, int d, int h, int mi, int s);

#endif
