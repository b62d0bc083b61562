/* apply: the pipeline of one batch of at most 50 runs, the same for a one-batch command,
 * every batch of a large command and replay. In the transaction the caller began (and in
 * which it claimed the command): lock the runs and the limits they may touch, decide
 * (batch.c), write the states set-based (encoding the replies meanwhile), write the slot
 * plan, build the events, record both with the command's progress, commit. Then publish. A
 * crash anywhere before the commit leaves nothing; after it, the redelivered command finds
 * its record and its replies are published again from the database. */
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "ids.h"
#include "log.h"
#include "result.h"
#include "worker_int.h"

/* Writes the batch set-based, mw meanwhile; if that fails on the data (not the connection),
 * rewrites it run by run under savepoints so one bad run is an ABORT and the others still
 * apply. *stale: the results changed after mw ran (an ABORT). */
static int write_batch(bs_worker *w, bs_batch *b, const bs_store_meanwhile *mw, bool *stale,
                       bs_err *err)
{
    if (bs_store_savepoint(w->store, err) < 0) return -1;
    if (bs_store_write(w->store, w->ar, b->wr, b->n, mw, err) == 0) return 0;
    if (err->retriable) return -1;
    bs_log(BS_LOG_WARN, "worker", "batch write failed, retrying run by run: %s", err->msg);
    bs_store_rollback_to_savepoint(w->store);
    *stale = true;
    for (size_t i = 0; i < b->n; i++) {
        bs_err rerr = {0};
        if (!b->found[i]) continue;
        if (bs_store_savepoint(w->store, err) < 0) return -1;
        if (bs_store_write(w->store, w->ar, &b->wr[i], 1, NULL, &rerr) == 0) continue;
        if (rerr.retriable) {
            *err = rerr;
            return -1;
        }
        bs_store_rollback_to_savepoint(w->store);
        bs_batch_write_failed(b, i, rerr.msg, w->ar);
    }
    return 0;
}

/* The slot and lease changes of the transitions that were written. */
static int write_slots(bs_worker *w, bs_batch *b, bs_err *err)
{
    const bs_run **runs = bs_arena_alloc(w->ar, sizeof *runs * b->n);
    const bs_slot_ops **ops = bs_arena_alloc(w->ar, sizeof *ops * b->n);
    size_t k = 0;
    bool prefect = false; /* a lease of Prefect's server to release (no limit locked, maybe) */
    for (size_t i = 0; i < b->n; i++)
        if (b->written[i]) {
            runs[k] = &b->runs[i];
            ops[k++] = &b->d[i].slots;
            prefect |= !bs_uuid_null(&b->d[i].slots.prefect_lease);
        }
    if (b->nlimits == 0 && !prefect) return 0; /* the common case: no slot, no statement */
    bs_slot_plan plan;
    bs_slots_plan(w->ar, runs, ops, k, b->limits, b->nlimits, &plan);
    return bs_store_write_slots(w->store, w->ar, &plan, err);
}

/* The result records of the batch, encoded for the reply topic. */
static int encode_replies(bs_worker *w, const bs_batch *b, const bs_apply *a, bs_replies *r,
                          bs_err *err)
{
    const size_t cap = b->n ? b->n : 1;
    r->n = b->n;
    r->replies = bs_arena_alloc(w->ar, sizeof(unsigned char *) * cap);
    r->lens = bs_arena_alloc(w->ar, sizeof(size_t) * cap);
    r->run_ids = b->ids;
    r->events = NULL;
    /* what the broker takes at most, less the reply's key and headers: a larger reply would
     * fail after the commit, on every redelivery; it fails the command here instead */
    const size_t max = bs_producer_max_message_bytes(w->prod),
                 room = max > 2 * strlen(a->cmd->command_id) + 256
                            ? max - 2 * strlen(a->cmd->command_id) - 256
                            : 0;
    for (size_t i = 0; i < b->n; i++) {
        bs_result res;
        bs_batch_result(b, i, a->cmd->command_id, a->first_seq + (int)i, a->total, &res);
        json_t *j = bs_result_to_json(&res);
        unsigned char *buf;
        size_t len;
        int rc = bs_codec_encode(w->codec, BS_SCHEMA_RESULT, j, w->framing, &buf, &len, err);
        json_decref(j);
        if (rc < 0) return -1;
        if (len > room) {
            free(buf);
            bs_err_set(err, BS_EENCODE,
                       "the result of flow run %s is %zu bytes, over the %zu a record may take "
                       "(the producer's message.max.bytes %zu, less key and headers)",
                       b->ids[i], len, room, max);
            snprintf(err->type, sizeof err->type, "%s", "reply_too_large");
            return -1;
        }
        r->replies[i] = bs_arena_alloc(w->ar, len ? len : 1);
        memcpy(r->replies[i], buf, len);
        free(buf);
        r->lens[i] = len;
    }
    return 0;
}

/* The replies, encoded while the runs' update executes on the server: they depend on the
 * decisions alone, which that statement does not change. */
typedef struct encode_job {
    bs_worker *w;
    const bs_batch *b;
    const bs_apply *a;
    bs_replies *r;
    bool done;
    int rc;
    bs_err err;
} encode_job;

static void encode_meanwhile(void *ctx)
{
    encode_job *j = ctx;
    j->rc = encode_replies(j->w, j->b, j->a, j->r, &j->err);
    j->done = true;
}

/* The state-change event of every written transition (Prefect's InstrumentFlowRunState-
 * Transitions), recorded with the replies and published after them. */
static int build_events(bs_worker *w, const bs_batch *b, const char ***out, bs_err *err)
{
    const char **ids = bs_arena_alloc(w->ar, sizeof *ids * b->n);
    const char **ctx = bs_arena_alloc(w->ar, sizeof *ctx * b->n);
    const char **events = bs_arena_alloc(w->ar, sizeof *events * b->n);
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->written[i]) ids[k++] = b->ids[i];
    if (bs_store_event_context(w->store, w->ar, ids, k, ctx, err) < 0) return -1;
    k = 0;
    for (size_t i = 0; i < b->n; i++) {
        events[i] = NULL;
        if (!b->written[i]) continue;
        char *text = bs_event_json(&b->runs[i].current, &b->d[i].state, b->d[i].run.id.s,
                                   b->d[i].run.run_count, ctx[k++]);
        events[i] = bs_arena_strdup(w->ar, text);
        free(text);
    }
    *out = events;
    return 0;
}

/* For Prefect's outbox: what each written transition's event is built from when it is
 * delivered (outbox.c), kept instead of the event itself (unless an events topic needs it
 * now), so the command's transaction neither loads the related objects nor stores some
 * 1.2 kB per transition. */
typedef struct event_refs {
    const char **state_ids, **prior_ids;
    int64_t *run_counts;
} event_refs;

static event_refs refs_of(bs_worker *w, const bs_batch *b)
{
    event_refs e = {bs_arena_alloc(w->ar, sizeof(char *) * b->n),
                    bs_arena_alloc(w->ar, sizeof(char *) * b->n),
                    bs_arena_alloc(w->ar, sizeof(int64_t) * b->n)};
    for (size_t i = 0; i < b->n; i++) {
        const bs_state *cur = &b->runs[i].current;
        e.state_ids[i] = b->written[i] ? b->d[i].state.id.s : NULL;
        e.prior_ids[i] = b->written[i] && cur->type != BS_NONE ? cur->id.s : NULL;
        e.run_counts[i] = b->written[i] ? b->d[i].run.run_count : 0;
    }
    return e;
}

static void observe(bs_worker *w, const bs_batch *b, int64_t txn_start_us)
{
    bs_metrics_lock(w->m);
    bs_hist_observe(&w->m->txn, (double)(bs_mono_us() - txn_start_us) / 1e6);
    bs_hist_observe(&w->m->batch, (double)b->n);
    for (size_t i = 0; i < b->n; i++) {
        w->m->status[b->status[i]]++;
        if (b->written[i]) w->m->by_type[b->runs[i].current.type][b->d[i].state.type]++;
    }
    bs_metrics_unlock(w->m);
}

int bs_apply_batch(bs_worker *w, const bs_mode *mode, const bs_apply *a, const char **ids, size_t n,
                   bs_err *err)
{
    const int64_t txn_start = bs_mono_us();
    const bool large = a->cmd->max_runs > 0;
    bs_batch b = {.ids = ids};
    bs_batch_alloc(&b, w->ar, n);
    bs_batch_env env = bs_handle_env(w, mode, a->cmd);
    const int64_t t0 = env.now_us(env.ctx);
    if (n > 0 && (bs_store_lock_runs(w->store, w->ar, &b, t0 - 1000000, a->recheck, err) < 0 ||
                  bs_store_lock_limits(w->store, w->ar, &b, err) < 0))
        goto rollback;
    bs_phase_mark(w, BS_PH_LOCK);
    bs_batch_decide(&b, a->cmd, &env, w->ar);
    bs_phase_mark(w, BS_PH_DECIDE);
    /* the replies are recorded in the same transaction; encoded during the write, or after
     * it when there is none or a run's result changed in it */
    bs_replies r;
    encode_job job = {.w = w, .b = &b, .a = a, .r = &r};
    const bs_store_meanwhile mw = {encode_meanwhile, &job};
    bool stale = false;
    if (n > 0 && (write_batch(w, &b, &mw, &stale, err) < 0 || write_slots(w, &b, err) < 0))
        goto rollback;
    if (!job.done || stale) encode_meanwhile(&job);
    bs_phase_mark(w, BS_PH_WRITE);
    if (job.rc < 0) {
        *err = job.err;
        goto rollback;
    }
    const bool to_prefect = w->cfg->prefect_api_url[0] != '\0'; /* a replay's too */
    const bool to_topic = w->cfg->events_topic[0] != '\0';
    if (to_topic && n > 0 && build_events(w, &b, &r.events, err) < 0) goto rollback;
    const event_refs refs = to_prefect && n > 0 ? refs_of(w, &b) : (event_refs){0};
    bs_progress g = *a->progress; /* the caller's copy changes only once this commits */
    g.matched += (int)n;
    bs_batch_count(&b, g.counts);
    if (n > 0) g.batches++;
    if (large && n > 0) snprintf(g.last_id, sizeof g.last_id, "%s", ids[n - 1]); /* the lowest */
    const bs_record rec = {.first_seq = a->first_seq,
                           .n = n,
                           .run_ids = ids,
                           .statuses = b.status,
                           .replies = (const unsigned char *const *)r.replies,
                           .lens = r.lens,
                           .events = r.events,
                           .state_ids = refs.state_ids,
                           .prior_ids = refs.prior_ids,
                           .run_counts = refs.run_counts,
                           .progress = &g,
                           .done = a->finish,
                           .store_run_ids = !large,
                           .outbox = to_prefect,
                           .delivery = a->src};
    if (bs_store_record(w->store, w->ar, a->cmd->command_id, &rec, err) < 0) goto rollback;
    bs_phase_mark(w, BS_PH_RECORD);
    bs_failpoint(large ? "batch_before_commit" : "before_commit");
    if (bs_store_commit(w->store, err) < 0) return -1;
    bs_phase_mark(w, BS_PH_COMMIT);
    *a->progress = g;
    bs_failpoint(large ? "batch_after_commit" : "after_commit");
    if (!mode->dry_run && (n > 0 || !large)) observe(w, &b, txn_start);
    return bs_reply_publish(w, mode, a->reply_topic, a->cmd->command_id, a->first_seq, &r,
                            large ? NULL : "between_replies", err);
rollback:
    bs_store_rollback(w->store);
    return -1;
}
