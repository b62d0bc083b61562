/* prefect: a client of Prefect's server API over HTTP(S) (libcurl): posting events to its
 * event bus (POST {api_url}/events, a JSON array, answered 204) and releasing deployment
 * concurrency leases it holds (v2/concurrency_limits), with Prefect's basic auth
 * (PREFECT_SERVER_API_AUTH_STRING) and its CSRF tokens where the server enables them. One
 * request at a time, bounded by a timeout. Only this file includes curl.h. */
#ifndef BS_PREFECT_H
#define BS_PREFECT_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef struct bs_prefect bs_prefect;

typedef struct bs_prefect_conf {
    const char *api_url;     /* e.g. http://127.0.0.1:4200/api */
    const char *auth_string; /* "user:password" for basic auth; "" or NULL: none */
    int timeout_ms;          /* of one request, connection included */
} bs_prefect_conf;

/* NULL and err when the client cannot be made (a bad URL scheme, libcurl missing TLS). */
bs_prefect *bs_prefect_new(const bs_prefect_conf *conf, bs_err *err);
void bs_prefect_free(bs_prefect *pf); /* NULL is a no-op */

/* Posts a JSON array of events. 0 when Prefect took them (2xx). Otherwise -1 with err:
 * retriable when trying again may help (no answer, 5xx, 408, 429, auth or CSRF refused:
 * fixable by the operator), permanent when Prefect refused these events (another 4xx:
 * err->msg has its answer). */
int bs_prefect_post_events(bs_prefect *pf, const char *json_array, size_t len, bs_err *err);

/* Releases a deployment concurrency lease Prefect's server holds: Prefect decrements its slots
 * and revokes it (so the engine's next renewal fails). *gone: Prefect no longer had it, nothing
 * was released. -1 with err (retriable) when Prefect could not be asked. */
int bs_prefect_release_lease(bs_prefect *pf, const char *lease_id, bool *gone, bs_err *err);

/* Releases what a task run holds on its tags' concurrency limits in Prefect's server (its
 * POST /concurrency_limits/decrement: the task run's leases are found by holder, their slots
 * decremented, the leases revoked), as ReleaseTaskConcurrencySlots does. tags_json: the task
 * run's tags, a JSON array. -1 with err (retriable) when Prefect could not be asked. */
int bs_prefect_release_task_slots(bs_prefect *pf, const char *task_run_id, const char *tags_json,
                                  bs_err *err);

#endif
