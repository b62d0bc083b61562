/* outbox: the thread that delivers committed state-change events to Prefect's server
 * ([prefect] api_url), see outbox.c. */
#ifndef BS_OUTBOX_H
#define BS_OUTBOX_H

#include <stdbool.h>

#include "config.h"
#include "err.h"
#include "metrics.h"
#include "prefect.h"
#include "store.h"

typedef struct bs_outbox bs_outbox;

/* Starts the delivery thread (its own connection to cfg's database); m gets its gauges and
 * counters. NULL and err when it cannot start (a bad api_url, no thread). */
bs_outbox *bs_outbox_start(const bs_config *cfg, bs_metrics *m, bs_err *err);
/* Whether the outbox holds prefect.outbox_max events or more: commands wait. NULL: false. */
bool bs_outbox_full(const bs_outbox *ob);
/* Stops the thread (within a second, or the request in flight's timeout) and frees. NULL is a
 * no-op. */
void bs_outbox_stop(bs_outbox *ob);

#endif
