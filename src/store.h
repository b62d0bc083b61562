/* store: libpq. Connects, migrates, and runs the statements of one command inside one
 * transaction: claim the command id, select the matching runs, lock and load them in
 * Prefect's order, write the decided states set-based, record the replies. Only this file
 * includes libpq-fe.h. SQLSTATEs are mapped to error codes in one function (store_code). */
#ifndef BS_STORE_H
#define BS_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "config.h"
#include "err.h"
#include "filter_sql.h"
#include "model.h"
#include "orch.h"

typedef struct bs_store bs_store;

/* Connects; NULL and err (BS_ETRANSIENT when the server is unreachable) on failure. */
bs_store *bs_store_new(const bs_config *cfg, bs_err *err);
void bs_store_free(bs_store *st); /* NULL is a no-op */
/* Reconnects if the connection was lost. */
int bs_store_check(bs_store *st, bs_err *err);

/* Applies schemas/prefect.sql unless flow_run already exists (a Prefect database), then
 * schemas/bulkstate.sql, and schemas/recommended.sql when asked; all idempotent.
 * *created_prefect tells whether Prefect's tables were created. */
int bs_store_migrate(bs_store *st, const char *schema_dir, bool recommended, bool *created_prefect,
                     bs_err *err);

int bs_store_begin(bs_store *st, bs_err *err);
int bs_store_commit(bs_store *st, bs_err *err);
void bs_store_rollback(bs_store *st);
int bs_store_savepoint(bs_store *st, bs_err *err);
/* An outer transaction around several commands (replay --dry-run): until
 * bs_store_outer_rollback, begin/commit/rollback work on a savepoint, and at the end
 * everything is rolled back. */
int bs_store_outer_begin(bs_store *st, bs_err *err);
void bs_store_outer_rollback(bs_store *st);
void bs_store_rollback_to_savepoint(bs_store *st);

typedef enum { BS_CLAIM_NEW = 0, BS_CLAIM_DONE, BS_CLAIM_CONFLICT } bs_claim;

typedef struct bs_source {
    const char *topic;
    int32_t partition;
    int64_t offset;
} bs_source;

typedef struct bs_command_record {
    int matched;
    int counts[4];
} bs_command_record;

/* Inserts the command row (status 'running') or finds the existing one. body is the
 * normalised command text whose SHA-256 identifies the body. BS_CLAIM_DONE fills rec. */
int bs_store_claim(bs_store *st, const char *command_id, const char *body, const bs_source *src,
                   bs_claim *out, bs_command_record *rec, bs_err *err);

/* Counts one more delivery of src (autocommit) and returns how many have started. */
int bs_store_bump_attempt(bs_store *st, const bs_source *src, int *attempts, bs_err *err);
/* Takes back one count (the delivery ended cleanly without settling: stop, rebalance). */
int bs_store_uncount_attempt(bs_store *st, const bs_source *src, bs_err *err);
/* Forgets the deliveries of a settled message. */
int bs_store_clear_attempt(bs_store *st, const bs_source *src, bs_err *err);

/* Runs the selection statement; ids (lower-case UUID text, Prefect's order) live in ar. */
int bs_store_select(bs_store *st, bs_arena *ar, const bs_sql *sql, const char ***ids, size_t *n,
                    bs_err *err);

/* Locks the runs FOR UPDATE in id DESC order and loads their facts. runs[i] belongs to
 * ids[i]; found[i] is false when the run no longer exists. taken_since_us: state timestamps
 * of each run at or after it are loaded (for timestamp uniqueness). */
int bs_store_lock_runs(bs_store *st, bs_arena *ar, const char *const *ids, size_t n,
                       int64_t taken_since_us, bs_run *runs, bool *found, bs_err *err);

/* A concurrency_limit_v2 row locked for the batch: its active slots at lock time (decayed)
 * and as the batch's decisions so far leave them. */
typedef struct bs_limit_view {
    bs_uuid id;
    int64_t start, now;
    bool touched;
} bs_limit_view;

/* Locks (after the runs) the limits the loaded runs may take or free slots on. No statement
 * when none has one. */
int bs_store_lock_limits(bs_store *st, bs_arena *ar, const bs_run *runs, const bool *found,
                         size_t n, bs_limit_view **views, size_t *nv, bs_err *err);
bs_limit_view *bs_limit_find(bs_limit_view *views, size_t nv, const bs_uuid *id);
/* Applies one decision's slot changes to the views (Prefect's floor at 0 included). */
void bs_limit_apply(bs_limit_view *views, size_t nv, const bs_run *run, const bs_slot_ops *ops);
/* Writes the slot changes of the transitions that were written, in order: leases revoked and
 * created, and each touched limit's final count (recomputed from the lock-time counts). */
int bs_store_write_slots(bs_store *st, bs_arena *ar, const bs_run *const *runs,
                         const bs_slot_ops *const *ops, size_t n, bs_limit_view *views, size_t nv,
                         bs_err *err);
/* Frees the slots of leases that expired while their run stayed PENDING and deletes expired
 * leases (its own transaction; call between commands). */
int bs_store_reap_leases(bs_store *st, bs_arena *ar, int *leases, int *slots, bs_err *err);

/* One decided transition. The artifact fields are set when the written state carries data
 * that Prefect stores as a result artifact. */
typedef struct bs_write {
    const bs_decision *d;
    const char *artifact_id; /* NULL: none */
    const char *artifact_data, *artifact_key, *artifact_type, *artifact_description;
    const char *task_artifact_id; /* the parent task run's copy of the data (G11); NULL: none */
} bs_write;

/* Writes the states, artifacts and run columns of n decisions (those with d->write or
 * d->policy_changed), and the parent task runs' copies (d->task_write), set-based: a handful
 * of statements whatever n is. */
int bs_store_write(bs_store *st, bs_arena *ar, const bs_write *w, size_t n, bs_err *err);

/* Records the encoded replies (and the state-change events, NULL entries or events NULL: none)
 * and marks the command done. The delivery count of src (bs_store_bump_attempt) is cleared in
 * the same statement: a delivery that commits its result is not a failed one. */
int bs_store_finish(bs_store *st, bs_arena *ar, const char *command_id, const bs_source *src,
                    const char *const *run_ids, const int *statuses,
                    const unsigned char *const *replies, const size_t *reply_lens,
                    const char *const *events, size_t n, const bs_command_record *rec, bs_err *err);

/* The related objects of each run's state-change event (event.h's bs_event_context as JSON
 * text, in ar); ctx[i] is NULL when the run is gone. */
int bs_store_event_context(bs_store *st, bs_arena *ar, const char *const *ids, size_t n,
                           const char **ctx, bs_err *err);

/* Large commands (max_runs): each batch is its own transaction; the command row is the
 * checkpoint. */
typedef struct bs_large {
    char snapshot_max_id[40]; /* "" when nothing matched at the start */
    char snapshot_at[64];     /* timestamptz text */
    char last_id[40];         /* the lowest id visited so far; "" before the first batch */
    int batches, acked_seq, matched, counts[4];
    bool cancel_requested, done, cancelled;
} bs_large;

/* Claims a large command in its own transaction: a new one gets its snapshot (the highest id
 * matching the filter now, and the time), an existing one its progress. CONFLICT: another body
 * under that id; DONE: finished earlier. */
int bs_store_large_claim(bs_store *st, bs_arena *ar, const char *command_id, const char *body,
                         const bs_source *src, int max_runs, const bs_filter *filter, bs_claim *out,
                         bs_large *lg, bs_err *err);
/* The next batch (in the caller's transaction): matching runs below the last visited id, at or
 * below the snapshot's id and created by its time, Prefect's order, at most limit. */
int bs_store_large_select(bs_store *st, bs_arena *ar, const bs_filter *filter, const bs_large *lg,
                          int limit, const char ***ids, size_t *n, bs_err *err);
/* Which of the locked runs still match the filter (match[i] for ids[i]). */
int bs_store_still_matching(bs_store *st, bs_arena *ar, const bs_filter *filter,
                            const char *const *ids, size_t n, bool *match, bs_err *err);
/* Records a batch's replies (seq from first_seq) and the progress in lg; finish marks the
 * command done (lg->cancelled says whether a cancel stopped it). */
int bs_store_large_record(bs_store *st, bs_arena *ar, const char *command_id, int first_seq,
                          const char *const *run_ids, const int *statuses,
                          const unsigned char *const *replies, const size_t *reply_lens,
                          const char *const *events, size_t n, const bs_large *lg, bool finish,
                          bs_err *err);
/* Records (autocommit) that the replies before acked_seq were acknowledged by the broker. */
int bs_store_large_acked(bs_store *st, const char *command_id, int acked_seq, bs_err *err);
int bs_store_large_cancel_requested(bs_store *st, const char *command_id, bool *yes, bs_err *err);
/* A cancel command: flags a running large command; *found is false when there is none. */
int bs_store_request_cancel(bs_store *st, const char *command_id, bool *found, bs_err *err);
/* The stored replies with seq >= from_seq, in seq order (events NULL: not loaded). */
int bs_store_load_replies_from(bs_store *st, bs_arena *ar, const char *command_id, int from_seq,
                               unsigned char ***replies, size_t **lens, const char ***run_ids,
                               const char ***events, size_t *n, bs_err *err);

/* The command's record as a JSON object text (in ar), or NULL when there is none. */
int bs_store_command_json(bs_store *st, bs_arena *ar, const char *command_id, const char **json,
                          bs_err *err);

/* Loads the stored replies of a done command, in seq order (bytes live in ar), and their
 * events when events is not NULL (NULL entries: none). */
int bs_store_load_replies(bs_store *st, bs_arena *ar, const char *command_id,
                          unsigned char ***replies, size_t **lens, const char ***run_ids,
                          const char ***events, size_t *n, bs_err *err);

#endif
