/* worker: the loop. poll → decode → validate → (one transaction: claim the command id, select,
 * lock, orchestrate, write, record the replies) → publish the replies and the completion →
 * wait for the broker's acknowledgements → store the offset. Bad input gets an error
 * completion and a dead-letter copy and the offset moves on; transient failures are retried
 * with capped, jittered exponential backoff while the consumer keeps polling. */
#ifndef BS_WORKER_H
#define BS_WORKER_H

#include <signal.h>

#include "config.h"
#include "err.h"

typedef struct bs_worker bs_worker;

/* cfg stays the caller's; a SIGHUP reload changes its reloadable keys in place. */
bs_worker *bs_worker_new(bs_config *cfg, bs_err *err);
/* Runs until *stop is set; finishes the command in hand, flushes and commits. When *reload is
 * set, reloads config_path (see bs_config_reload) between commands. Returns 0, or -1 with err
 * on a fatal error. */
int bs_worker_run(bs_worker *w, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload,
                  const char *config_path, bs_err *err);
void bs_worker_free(bs_worker *w); /* NULL is a no-op */

#endif
