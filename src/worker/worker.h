/* worker: the loop. poll → decode → validate → (one transaction: claim the command id, select,
 * lock, orchestrate, write, record the replies) → publish the replies and the completion →
 * wait for the broker's acknowledgements → store the offset. Bad input gets an error
 * completion and a dead-letter copy and the offset moves on; transient failures are retried
 * with capped, jittered exponential backoff while the consumer keeps polling. */
#ifndef BS_WORKER_H
#define BS_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "err.h"

typedef struct bs_worker bs_worker;

/* cfg stays the caller's; a SIGHUP reload changes its reloadable keys in place. With
 * cfg->threads > 1 the worker has that many consumers, each run by a thread of its own in
 * bs_worker_run (each with a copy of cfg). */
bs_worker *bs_worker_new(bs_config *cfg, bs_err *err);
/* Runs until *stop is set; finishes the command in hand, flushes and commits. When *reload is
 * set, reloads config_path (see bs_config_reload) between commands. The other threads start
 * and end with it; a fatal error in one sets *stop and stops them all. Returns 0, or -1 with
 * err on a fatal error (the calling thread's, else the first other thread's that failed). */
int bs_worker_run(bs_worker *w, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload,
                  const char *config_path, bs_err *err);
void bs_worker_free(bs_worker *w); /* NULL is a no-op */

/* bulkstate replay: re-reads a command log (a topic, from an offset or a timestamp, up to its
 * end when the replay starts) outside the consumer group and applies each command as the worker
 * would. Commands already applied are skipped (emit: their stored replies are published again).
 * dry_run: each command's transaction is rolled back. clock_issued_at: the orchestration clock
 * and every generated id come from the command's issued_at and id, so the same log replayed
 * into the same starting database gives byte-identical results. One JSON line per command (and
 * per result when print_results) goes to out. */
typedef struct bs_replay_opts {
    const char *topic;               /* NULL: worker.command_topic */
    int32_t partition;               /* -1: all */
    int64_t from_offset, from_ts_ms; /* from_ts_ms -1: use from_offset */
    bool dry_run, clock_issued_at, emit, print_results;
    FILE *out;
} bs_replay_opts;
int bs_worker_replay(bs_worker *w, const bs_replay_opts *opt, bs_err *err);
/* A worker for bs_worker_replay: no consumer group, no HTTP endpoint. */
bs_worker *bs_worker_new_replay(bs_config *cfg, bs_err *err);

#endif
