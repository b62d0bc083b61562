/* ops: what operators reach the worker through: the HTTP endpoint (/metrics, /healthz,
 * /readyz; libmicrohttpd, its own thread) and systemd's notify protocol (libsystemd's
 * sd_notify: READY, WATCHDOG, STATUS, STOPPING; a no-op without $NOTIFY_SOCKET). */
#ifndef BS_OPS_H
#define BS_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "metrics.h"

typedef struct bs_http bs_http;

/* Listens on listen ("HOST:PORT", port 0 picks one) and serves m. NULL and err on failure. */
bs_http *bs_http_start(const char *listen, bs_metrics *m, bs_err *err);
void bs_http_stop(bs_http *h); /* NULL is a no-op */

/* sd_notify(3) with one line of state ("READY=1", "STATUS=...", ...). */
void bs_notify(const char *state);
/* The interval at which WATCHDOG=1 must be sent (half of WatchdogSec), 0 when no watchdog. */
int64_t bs_notify_watchdog_interval_us(void);

#endif
