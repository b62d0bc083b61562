/* large: commands with max_runs, applied to every matching run in batches, each batch its own
 * transaction through apply.c. The command row is the checkpoint (the snapshot taken when it
 * was claimed, the lowest id visited, the replies acknowledged), so a command resumes where it
 * stood after a crash, a rebalance or a stop. Its partition is held paused while it runs; the
 * loop gives each command in progress one batch per turn, so other partitions keep being
 * served. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "filter_sql.h"
#include "ids.h"
#include "log.h"
#include "settle.h"
#include "text.h"
#include "worker_int.h"

struct large_cmd {
    bs_msg *m;    /* owned: its offset is stored when the command is done */
    bs_arena *ar; /* the command's own memory (the worker's arena is reset per message) */
    bs_command cmd;
    const char *reply_topic;
    bs_progress g;
    int64_t next_try_ms, backoff_ms;
    int failures; /* batches failed in a row */
};

static void large_free(bs_worker *w, size_t i, bool release)
{
    large_cmd *e = w->large[i];
    if (release) bs_consumer_hold(w->cons, e->m->topic, e->m->partition, false);
    bs_msg_free(e->m);
    bs_arena_free(e->ar);
    free(e);
    w->large[i] = w->large[--w->nlarge];
}

static bs_outcome outcome_of(const large_cmd *e, bs_outcome_kind kind)
{
    bs_outcome o = {.kind = kind,
                    .command_id = e->cmd.command_id,
                    .reply_topic = e->reply_topic,
                    .matched = e->g.matched,
                    .batches = e->g.batches,
                    .cancelled = e->g.cancelled};
    memcpy(o.counts, e->g.counts, sizeof o.counts);
    return o;
}

/* The completion of a large command: totals, batches, whether a cancel stopped it. */
static int complete(bs_worker *w, const bs_mode *mode, large_cmd *e, bs_outcome_kind kind,
                    bs_err *err)
{
    const bs_outcome o = outcome_of(e, kind);
    char trace[33];
    if (bs_reply_complete(w, mode, &o, err) < 0) return -1;
    bs_log(BS_LOG_INFO, "worker",
           "command done command_id=%s partition=%" PRId32 " offset=%" PRId64
           " matched=%d accepted=%d rejected=%d waited=%d aborted=%d batches=%d cancelled=%d "
           "replayed=%d trace_id=%s",
           e->cmd.command_id, e->m->partition, e->m->offset, e->g.matched, e->g.counts[BS_ACCEPT],
           e->g.counts[BS_REJECT], e->g.counts[BS_WAIT], e->g.counts[BS_ABORT], e->g.batches,
           e->g.cancelled, kind == BS_OUT_ALREADY, bs_trace_id(e->m->traceparent, trace));
    return 0;
}

/* The replies from seq `from` that the broker has not acknowledged yet, again (a resumed
 * command's, or all of a finished one), then recorded acknowledged. */
static int republish(bs_worker *w, const bs_mode *mode, large_cmd *e, int from, bs_err *err)
{
    bs_replies r;
    if (bs_store_load_replies(w->store, w->ar, e->cmd.command_id, from, true, &r, err) < 0 ||
        bs_reply_publish(w, mode, e->reply_topic, e->cmd.command_id, from, &r, NULL, err) < 0)
        return -1;
    if (r.n > 0 && (bs_reply_wait(w, err) < 0 ||
                    bs_store_acked(w->store, e->cmd.command_id, from + (int)r.n, err) < 0))
        return -1;
    return 0;
}

/* One batch. Returns 0 (progress, more to do), 1 (done: the completion was published) or -1
 * with err. */
static int step(bs_worker *w, const bs_mode *mode, large_cmd *e, bs_err *err)
{
    const bs_command *cmd = &e->cmd;
    const bs_source src = {e->m->topic, e->m->partition, e->m->offset};
    bool cancel = false;
    const char **ids = NULL;
    size_t n = 0;
    if (bs_store_check(w->store, err) < 0 || bs_store_begin(w->store, err) < 0) return -1;
    if (bs_store_cancel_requested(w->store, cmd->command_id, &cancel, err) < 0) goto rollback;
    const int remaining = cmd->max_runs - e->g.matched;
    if (!cancel && remaining > 0 && e->g.snapshot_max_id[0] != '\0') {
        bs_sql sql;
        bs_filter_batch_sql(&cmd->filter, e->g.snapshot_max_id, e->g.snapshot_at,
                            cmd->limit < remaining ? cmd->limit : remaining,
                            e->g.last_id[0] ? e->g.last_id : NULL, w->ar, &sql);
        if (bs_store_select(w->store, w->ar, &sql, &ids, &n, err) < 0) goto rollback;
    }
    bs_progress g = e->g;
    g.cancelled = cancel;
    const bs_apply a = {.cmd = cmd,
                        .reply_topic = e->reply_topic,
                        .src = &src,
                        .recheck = &cmd->filter,
                        .first_seq = g.matched,
                        .total = -1,
                        .progress = &g,
                        .finish = n == 0};
    if (bs_apply_batch(w, mode, &a, ids, n, err) < 0) return -1;
    e->g = g;
    if (n == 0) return complete(w, mode, e, BS_OUT_APPLIED, err) < 0 ? -1 : 1;
    if (bs_reply_wait(w, err) < 0 ||
        bs_store_acked(w->store, cmd->command_id, e->g.matched, err) < 0)
        return -1;
    e->g.acked_seq = e->g.matched;
    return 0;
rollback:
    bs_store_rollback(w->store);
    return -1;
}

int bs_large_start(bs_worker *w, const bs_mode *mode, bs_msg *m, const bs_command *cmd,
                   const char *identity, bs_outcome *o, bs_err *err)
{
    large_cmd *e = bs_xcalloc(1, sizeof *e);
    e->ar = bs_arena_new();
    e->m = m;
    /* the command outlives the worker's per-message arena: validated again into its own */
    json_t *body = json_loads(identity, 0, NULL);
    bs_err cerr = {0};
    int rc = body ? bs_command_from_json(body, m->command_id, bs_now_us(), &w->cfg->caps, e->ar,
                                         &e->cmd, &cerr)
                  : -1;
    json_decref(body);
    if (rc < 0) { /* validated once already: cannot happen */
        bs_err_set(err, BS_EINTERNAL, "large command: %s", cerr.msg);
        goto fail;
    }
    e->reply_topic = bs_arena_strdup(e->ar, o->reply_topic);
    e->cmd.issued_at = cmd->issued_at; /* the identity leaves it out */
    const bs_source src = {m->topic, m->partition, m->offset};
    bs_claim claim;
    if (bs_store_check(w->store, err) < 0 || bs_store_begin(w->store, err) < 0) goto fail;
    if (bs_store_claim(w->store, w->ar, e->cmd.command_id, identity, &src, e->cmd.max_runs,
                       &e->cmd.filter, &claim, &e->g, err) < 0) {
        bs_store_rollback(w->store);
        goto fail;
    }
    if (claim == BS_CLAIM_CONFLICT) {
        bs_store_rollback(w->store);
        bs_handle_conflict(&e->cmd, err);
        goto fail;
    }
    if (bs_store_commit(w->store, err) < 0) goto fail;
    if (claim == BS_CLAIM_DONE) { /* redelivered after it finished: its replies, again */
        if (republish(w, mode, e, 0, err) < 0 || complete(w, mode, e, BS_OUT_ALREADY, err) < 0)
            goto fail;
        *o = outcome_of(e, BS_OUT_ALREADY);
        goto settled;
    }
    /* resumed: first the replies whose acknowledgement was not recorded */
    if (e->g.acked_seq < e->g.matched && republish(w, mode, e, e->g.acked_seq, err) < 0) goto fail;
    if (e->g.batches > 0)
        bs_log(BS_LOG_INFO, "worker", "resuming command_id=%s batches=%d matched=%d",
               e->cmd.command_id, e->g.batches, e->g.matched);
    if (mode->inline_large) { /* replay: every batch now, in order (no consumer group) */
        int s;
        while ((s = step(w, mode, e, err)) == 0)
            bs_arena_reset(w->ar);
        if (s < 0) goto fail;
        *o = outcome_of(e, BS_OUT_APPLIED);
        goto settled;
    }
    if (w->nlarge == BS_MAX_LARGE) {
        bs_err_retriable(err, BS_EINTERNAL, "too many large commands in progress");
        goto fail;
    }
    bs_consumer_hold(w->cons, m->topic, m->partition, true);
    w->large[w->nlarge++] = e;
    *o = outcome_of(e, BS_OUT_RUNNING);
    o->command_id = bs_arena_strdup(w->ar, e->cmd.command_id);
    return 0;
settled: /* the caller keeps the message; the command's memory goes */
    o->command_id = bs_arena_strdup(w->ar, e->cmd.command_id);
    o->reply_topic = bs_arena_strdup(w->ar, e->reply_topic);
    bs_arena_free(e->ar);
    free(e);
    return 0;
fail:
    bs_arena_free(e->ar);
    free(e);
    return -1;
}

/* A batch failed for good (replies the broker refuses, a statement the command makes fail),
 * or max_attempts times in a row: the command ends here with an error completion and a dead
 * letter (its batches so far stay applied and recorded), and its partition moves on. */
static bool give_up(bs_worker *w, large_cmd *e, const bs_err *why)
{
    static const bs_mode worker_mode = {.publish = true, .dead_letter = true};
    bs_outcome o = outcome_of(e, BS_OUT_REJECTED);
    o.error_code = bs_settle_reject_code(why);
    o.error = *why;
    bs_err err = {0};
    const bs_msg *waiting = w->cur;
    w->cur = e->m;
    bs_log(BS_LOG_WARN, "worker", "large command given up command_id=%s batches=%d error=\"%s\"",
           e->cmd.command_id, e->g.batches, why->msg);
    const int rc = bs_reply_reject(w, &worker_mode, e->m, &o, &err);
    w->cur = waiting;
    if (rc < 0) {
        /* not even the dead letter: the command stays held (its partition must not move past
         * it) and is tried again after the backoff */
        bs_log(BS_LOG_ERROR, "worker", "large command not settled command_id=%s error=\"%s\"",
               e->cmd.command_id, err.msg);
        return false;
    }
    bs_err serr = {0};
    if (bs_consumer_store(w->cons, e->m, &serr) < 0) bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
    return true;
}

void bs_large_run(bs_worker *w, volatile sig_atomic_t *stop)
{
    static const bs_mode worker_mode = {.publish = true, .dead_letter = true};
    for (size_t i = 0; i < w->nlarge && !*stop;) {
        large_cmd *e = w->large[i];
        if (!bs_consumer_owns(w->cons, e->m)) { /* revoked: the new owner resumes it */
            bs_log(BS_LOG_INFO, "worker",
                   "partition revoked during command_id=%s after %d batches: left to the new "
                   "owner",
                   e->cmd.command_id, e->g.batches);
            large_free(w, i, true);
            continue;
        }
        if (bs_mono_ms() < e->next_try_ms) {
            i++;
            continue;
        }
        bs_err err = {0};
        const bs_msg *waiting = w->cur;
        w->cur = e->m;
        int rc = step(w, &worker_mode, e, &err);
        w->cur = waiting;
        bs_arena_reset(w->ar);
        if (rc == 1) {
            bs_err serr = {0};
            if (bs_consumer_store(w->cons, e->m, &serr) < 0)
                bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
            bs_metrics_lock(w->m);
            w->m->completed[0]++;
            w->m->commands++;
            bs_metrics_unlock(w->m);
            large_free(w, i, true);
            continue;
        }
        if (rc < 0 && (!err.retriable || ++e->failures >= w->cfg->max_attempts) &&
            give_up(w, e, &err)) {
            large_free(w, i, true);
            continue;
        }
        if (rc < 0) {
            e->backoff_ms = e->backoff_ms ? e->backoff_ms * 2 : w->cfg->retry_backoff_initial_ms;
            if (e->backoff_ms > w->cfg->retry_backoff_max_ms)
                e->backoff_ms = w->cfg->retry_backoff_max_ms;
            bs_log(BS_LOG_WARN, "worker",
                   "batch failed command_id=%s retry_in_ms=%lld error=\"%s\"", e->cmd.command_id,
                   (long long)e->backoff_ms, err.msg);
            e->next_try_ms = bs_mono_ms() + e->backoff_ms;
        } else {
            e->failures = 0;
            e->backoff_ms = 0;
            e->next_try_ms = bs_mono_ms() + w->cfg->batch_pause_ms;
        }
        i++;
    }
}

void bs_large_drop(bs_worker *w, const bs_msg *m)
{
    for (size_t i = 0; i < w->nlarge; i++)
        if (w->large[i]->m == m) {
            large_free(w, i, true);
            return;
        }
}

void bs_large_release_all(bs_worker *w, const char *why)
{
    while (w->nlarge > 0) { /* between two batches: the checkpoint is in the database */
        large_cmd *e = w->large[w->nlarge - 1];
        if (why)
            bs_log(BS_LOG_INFO, "worker", "%s during command_id=%s after %d batches", why,
                   e->cmd.command_id, e->g.batches);
        large_free(w, w->nlarge - 1, why != NULL);
    }
}
