/* batch: the pure middle of applying one batch of at most 50 runs. After the store has locked
 * and loaded the runs (and the limits they may touch), bs_batch_decide builds each run's
 * proposal, runs the orchestration, moves the slot counts and prepares what the store writes
 * (states, result artifacts); bs_batch_result says what each run's reply carries. No clock
 * and no randomness of its own: both come in through bs_batch_env. No I/O. */
#ifndef BS_BATCH_H
#define BS_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "model.h"
#include "orch.h"
#include "result.h"
#include "slots.h"

/* One decided transition as the store writes it. The artifact fields are set when the
 * written state carries data that Prefect stores as a result artifact. */
typedef struct bs_write {
    const bs_decision *d;    /* NULL: nothing to write for this run */
    const char *artifact_id; /* NULL: none */
    const char *artifact_data, *artifact_key, *artifact_type, *artifact_description;
    const char *task_artifact_id; /* the parent task run's copy of the data (G11); NULL: none */
} bs_write;

typedef struct bs_batch {
    size_t n;
    const char **ids; /* the selected runs, Prefect's order (id DESC) */
    /* loaded by the store */
    bs_run *runs;          /* runs[i] is valid when found[i] */
    bool *found;           /* false: the run no longer exists */
    bool *skip;            /* large commands: the run stopped matching since it was selected */
    bs_limit_view *limits; /* the concurrency limits the batch may touch, locked */
    size_t nlimits;
    /* decided */
    bs_decision *d;
    bs_write *wr;
    bs_status *status;
    const char **reason;
    bool *written;      /* the run's new state is (still) to be written */
    bool *write_failed; /* its write failed on the data: ABORT, no state in the reply */
} bs_batch;

/* The clock and the id source of a batch: the worker's, or (deterministic replay) derived
 * from the command. purpose names what the id is for ("state", "lease", ...); v7 asks for a
 * time-ordered UUIDv7 rather than a v4. */
typedef struct bs_batch_env {
    int64_t (*now_us)(void *ctx);
    void (*new_id)(void *ctx, const char *run_id, const char *purpose, int64_t now_us, bool v7,
                   bs_uuid *out);
    void *ctx;
    int64_t slot_wait_s, lease_ttl_s; /* Prefect's settings (0: its defaults) */
    bool prefect_leases; /* leases Prefect's server holds are released through its API */
} bs_batch_env;

/* Allocates the arrays of a batch of n runs (ids set by the caller) in ar, zeroed. */
void bs_batch_alloc(bs_batch *b, bs_arena *ar, size_t n);

/* Decides every run of b for cmd. Runs not found, or skipped, are ABORTed with Prefect's
 * reason; the others go through bs_orch_decide with the limit views moved run by run. */
void bs_batch_decide(bs_batch *b, const bs_command *cmd, const bs_batch_env *env, bs_arena *ar);

/* Run i's write failed on its data (a constraint, say): its transition is not written and it
 * is reported as ABORT with the reason. */
void bs_batch_write_failed(bs_batch *b, size_t i, const char *why, bs_arena *ar);

/* The reply record of run i (seq, total -1 when not known yet): the written state, or for a
 * rule's REJECT/WAIT/ABORT the run's unchanged current state, or none (a vanished run, a
 * failed write). Points into b. */
void bs_batch_result(const bs_batch *b, size_t i, const char *command_id, int seq, int total,
                     bs_result *r);

/* Counts of b's statuses, added to counts[] (by bs_status). */
void bs_batch_count(const bs_batch *b, int counts[4]);

/* The result artifact Prefect stores for a written state's data: none for null data or the
 * unpersisted marker; artifact_key/type/description move from the data object to the
 * artifact's columns. Sets wr's artifact fields (id art_id) when there is one. */
void bs_batch_artifact(bs_arena *ar, const bs_decision *d, bs_write *wr, const bs_uuid *art_id);

#endif
