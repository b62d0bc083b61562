/* store: libpq, PostgreSQL's side of a command. One header, five files by concern:
 *   store.c          the connection, its session settings, transactions, migrations;
 *   store_command.c  bulkstate's own records: command claims, delivery counts, the replies
 *                    and progress a transaction records, cancels;
 *   store_runs.c     selecting runs through filter_sql's statements, locking and loading them
 *                    (and their parent task runs), the related objects of their events;
 *   store_write.c    the decided states, artifacts and run columns, set-based;
 *   store_slots.c    deployment concurrency limits and leases.
 * Every value travels as a parameter, arrays as one array parameter each, so a batch is a
 * fixed number of statements. Only these files include libpq-fe.h; SQLSTATEs are mapped to
 * error codes in one function (store.c). */
#ifndef BS_STORE_H
#define BS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "batch.h"
#include "err.h"
#include "filter_sql.h"
#include "model.h"
#include "orch.h"
#include "slots.h"

typedef struct bs_store bs_store;

/* What the store needs to know: the libpq conninfo and the session's timeouts. */
typedef struct bs_store_conf {
    const char *conninfo;
    int statement_timeout_ms, lock_timeout_ms;
} bs_store_conf;

/* Connects; NULL and err (retriable when the server is unreachable) on failure. conf is
 * copied. */
bs_store *bs_store_new(const bs_store_conf *conf, bs_err *err);
void bs_store_free(bs_store *st); /* NULL is a no-op */
/* Reconnects if the connection was lost (retriable error when it cannot). */
int bs_store_check(bs_store *st, bs_err *err);

/* Applies schemas/prefect.sql unless flow_run already exists (a Prefect database), then
 * schemas/bulkstate.sql, and schemas/recommended.sql when asked; all idempotent.
 * *created_prefect tells whether Prefect's tables were created. */
int bs_store_migrate(bs_store *st, const char *schema_dir, bool recommended, bool *created_prefect,
                     bs_err *err);

int bs_store_begin(bs_store *st, bs_err *err);
int bs_store_commit(bs_store *st, bs_err *err);
void bs_store_rollback(bs_store *st);
/* An outer transaction around several commands (replay --dry-run): until
 * bs_store_outer_rollback, begin/commit/rollback work on a savepoint, and at the end
 * everything is rolled back. */
int bs_store_outer_begin(bs_store *st, bs_err *err);
void bs_store_outer_rollback(bs_store *st);
/* A savepoint inside the command's transaction (one run's write), and going back to it. */
int bs_store_savepoint(bs_store *st, bs_err *err);
void bs_store_rollback_to_savepoint(bs_store *st);

/* ---- bulkstate's records (store_command.c) ---- */

typedef enum { BS_CLAIM_NEW = 0, BS_CLAIM_DONE, BS_CLAIM_CONFLICT } bs_claim;

/* Where a message came from. */
typedef struct bs_source {
    const char *topic;
    int32_t partition;
    int64_t offset;
} bs_source;

/* A command's row: the totals of a done command, and a large command's checkpoint. */
typedef struct bs_progress {
    int matched, counts[4];   /* counts by bs_status */
    int batches, acked_seq;   /* large: batches applied; replies acknowledged before this seq */
    char snapshot_max_id[40]; /* large: "" when nothing matched at the start */
    char snapshot_at[64];     /* large: timestamptz text */
    char last_id[40];         /* large: the lowest id visited so far; "" before the first */
    bool cancel_requested, done, cancelled;
} bs_progress;

/* Claims command_id for body (the identity text, whose SHA-256 tells bodies apart) in the
 * caller's transaction: inserts the row (status 'running'), or finds it and locks it. NEW:
 * to be applied (a large one, max_runs > 0, gets its snapshot of filter now); DONE: applied
 * before; CONFLICT: the id was used for another body. *p is the row's progress. */
int bs_store_claim(bs_store *st, bs_arena *ar, const char *command_id, const char *body,
                   const bs_source *src, int max_runs, const bs_filter *filter, bs_claim *out,
                   bs_progress *p, bs_err *err);

/* Counts one more delivery of src (autocommit) and returns how many have started. */
int bs_store_bump_attempt(bs_store *st, const bs_source *src, int *attempts, bs_err *err);
/* Takes back one count (the delivery ended cleanly without settling: stop, rebalance). */
int bs_store_uncount_attempt(bs_store *st, const bs_source *src, bs_err *err);
/* Forgets the deliveries of a settled message. */
int bs_store_clear_attempt(bs_store *st, const bs_source *src, bs_err *err);

/* What one transaction records: the encoded replies of a batch (seq from first_seq) with
 * their state-change events (events or an entry NULL: none), and the command's progress. */
typedef struct bs_record {
    int first_seq;
    size_t n;
    const char *const *run_ids;
    const bs_status *statuses;
    const unsigned char *const *replies;
    const size_t *lens;
    const char *const *events;
    /* for Prefect's outbox: what each written transition's event is built from at delivery,
     * when events holds no copy (an entry NULL: nothing written) */
    const char *const *state_ids, *const *prior_ids;
    const int64_t *run_counts;
    const bs_progress *progress; /* totals, batches, last_id, cancelled */
    bool done;                   /* the command is finished: status 'done' */
    bool store_run_ids;          /* keep run_ids in the row (one-batch commands) */
    bool outbox;                 /* the events also go to Prefect's outbox (prefect.api_url) */
    const bs_source *delivery;   /* its delivery count is cleared (NULL: none) */
} bs_record;

/* Records rec for command_id in the caller's transaction. A delivery that commits its result
 * is not a failed one, so its count goes in the same statement. */
int bs_store_record(bs_store *st, bs_arena *ar, const char *command_id, const bs_record *rec,
                    bs_err *err);

/* Records (autocommit) that the replies before acked_seq were acknowledged by the broker. */
int bs_store_acked(bs_store *st, const char *command_id, int acked_seq, bs_err *err);
/* Whether a cancel was requested for a large command. */
int bs_store_cancel_requested(bs_store *st, const char *command_id, bool *yes, bs_err *err);
/* A cancel command: flags a running large command; *found is false when there is none. */
int bs_store_request_cancel(bs_store *st, const char *command_id, bool *found, bs_err *err);

/* The recorded replies with seq >= from_seq, in seq order; bytes live in ar (events NULL:
 * not loaded; an entry NULL: none). */
typedef struct bs_replies {
    size_t n;
    unsigned char **replies;
    size_t *lens;
    const char **run_ids;
    const char **events;
} bs_replies;
int bs_store_load_replies(bs_store *st, bs_arena *ar, const char *command_id, int from_seq,
                          bool events, bs_replies *out, bs_err *err);

/* The command's record as a JSON object text (in ar), or NULL when there is none. */
int bs_store_command_json(bs_store *st, bs_arena *ar, const char *command_id, const char **json,
                          bs_err *err);

/* ---- runs (store_runs.c) ---- */

/* Runs the selection statement(s) of bs_filter_select_sql, or any statement of filter_sql
 * that returns ids; ids (lower-case UUID text, in the statement's order) live in ar. */
int bs_store_select(bs_store *st, bs_arena *ar, const bs_sql *sql, const char ***ids, size_t *n,
                    bs_err *err);

/* Locks b's runs (b->ids) FOR UPDATE in id DESC order and loads their facts into b->runs and
 * b->found, and the subflows' parent task runs. taken_since_us: state timestamps of each run
 * at or after it are loaded (for timestamp uniqueness). recheck (NULL: none): b->skip marks
 * the runs that no longer match it. */
int bs_store_lock_runs(bs_store *st, bs_arena *ar, bs_batch *b, int64_t taken_since_us,
                       const bs_filter *recheck, bs_err *err);

/* The related objects of each run's state-change event (event.h's bs_event_context as JSON
 * text, in ar); ctx[i] is NULL when the run is gone. */
int bs_store_event_context(bs_store *st, bs_arena *ar, const char *const *ids, size_t n,
                           const char **ctx, bs_err *err);

/* ---- writes (store_write.c) ---- */

/* Work of the caller's to do while a statement executes on the server, instead of after it. */
typedef struct bs_store_meanwhile {
    void (*fn)(void *ctx);
    void *ctx;
} bs_store_meanwhile;

/* Writes the states, artifacts and run columns of n decisions (those with d->write or
 * d->policy_changed), and the parent task runs' copies (d->task_write), set-based: a handful
 * of statements whatever n is. mw (may be NULL) is called once: while the runs' update (the
 * longest of them) executes on the server, or when no run is updated, after the states; not
 * at all when a statement before it fails. */
int bs_store_write(bs_store *st, bs_arena *ar, const bs_write *w, size_t n,
                   const bs_store_meanwhile *mw, bs_err *err);

/* ---- Prefect's outbox (store_outbox.c) ---- */

/* Undelivered events, oldest first: outbox row seq, then the command_result row (result_seq;
 * -1: an event the outbox row carries itself, as rows written before batches did). event NULL:
 * to be built from validated (the state written), initial (the run's before it; BS_NONE: none)
 * and run_count, with the run's related objects (bs_store_event_context). */
typedef struct bs_outbox_rows {
    size_t n;
    int64_t *seq;
    int *result_seq;
    int64_t *created_us;
    const char **flow_run_id, **event;
    int64_t *run_count;
    bs_state *validated, *initial;
} bs_outbox_rows;
int bs_store_outbox_take(bs_store *st, bs_arena *ar, int limit, bs_outbox_rows *out, bs_err *err);
/* Rows [from, to) of r delivered: an outbox row goes once all its events have, otherwise it
 * moves past the ones delivered. */
int bs_store_outbox_done(bs_store *st, bs_arena *ar, const bs_outbox_rows *r, size_t from,
                         size_t to, bs_err *err);
/* Moves event i of r, which Prefect refused, to bulkstate.prefect_outbox_refused with the
 * answer, in one transaction with its bs_store_outbox_done. */
int bs_store_outbox_refuse(bs_store *st, bs_arena *ar, const bs_outbox_rows *r, size_t i,
                           const char *answer, bs_err *err);
/* Leases of Prefect's server to release (bulkstate.prefect_lease_release), oldest first. */
typedef struct bs_lease_releases {
    size_t n;
    int64_t *seq;
    const char **lease_id, **fallback_limit; /* a deployment lease (NULL: a task run's); fallback
                                                NULL: none */
    const char **task_run_id, **tags;        /* a task run's tag-limit leases: its tags, JSON */
} bs_lease_releases;
int bs_store_lease_releases_take(bs_store *st, bs_arena *ar, int limit, bs_lease_releases *out,
                                 bs_err *err);
/* A release done: its row goes; fallback (NULL: none): Prefect no longer had the lease, so one
 * slot is freed on that limit (floored at 0), in the same transaction. */
int bs_store_lease_release_done(bs_store *st, bs_arena *ar, int64_t seq, const char *fallback,
                                bs_err *err);
/* How many events and lease releases wait, and how old the oldest is (0 when none). */
int bs_store_outbox_depth(bs_store *st, int64_t *depth, double *oldest_s, bs_err *err);
/* This session's advisory lock of the outbox (one deliverer at a time, per database): *got
 * says whether it is held. */
int bs_store_outbox_lead(bs_store *st, bool *got, bs_err *err);
/* LISTENs for commits that wrote events; bs_store_wait_notify waits for one (1), the timeout
 * (0) or a lost connection (-1 with err). */
int bs_store_outbox_listen(bs_store *st, bs_err *err);
int bs_store_wait_notify(bs_store *st, int timeout_ms, bs_err *err);

/* ---- slots (store_slots.c) ---- */

/* Locks (after the runs) the limits b's loaded runs may take or free slots on, into
 * b->limits. No statement when none has one. */
int bs_store_lock_limits(bs_store *st, bs_arena *ar, bs_batch *b, bs_err *err);
/* Writes a slot plan (slots.h): leases revoked and created, limits' final counts. */
int bs_store_write_slots(bs_store *st, bs_arena *ar, const bs_slot_plan *plan, bs_err *err);
/* Frees the slots of leases that expired while their run stayed PENDING and deletes expired
 * leases (its own transaction; call between commands). */
int bs_store_reap_leases(bs_store *st, bs_arena *ar, int *leases, int *slots, bs_err *err);

#endif
