/* handle: one message, from its bytes to a settled outcome. Decode and validate (bad input is
 * rejected with an error completion and a dead-letter copy), check the reply topic, then one
 * of: a cancel of a large command, the start of a large command, or a one-batch command
 * applied through apply.c. The outcome comes back in bs_outcome; what the loop does with a
 * failure is decided by settle.h from the error's flags. */
#include <inttypes.h>
#include <string.h>

#include "command.h"
#include "filter_sql.h"
#include "ids.h"
#include "log.h"
#include "settle.h"
#include "text.h"
#include "worker_int.h"

/* ---- the clock and ids of a command ---- */

typedef struct env_ctx {
    const bs_command *cmd;
    bool deterministic;
} env_ctx;

static int64_t env_now(void *ctx)
{
    const env_ctx *c = ctx;
    return c->deterministic && c->cmd->issued_at != BS_TS_NULL ? c->cmd->issued_at : bs_now_us();
}

/* A fresh id: random, or, in deterministic replay, derived from the command, the run and the
 * purpose, with the command's clock. */
static void env_id(void *ctx, const char *run, const char *purpose, int64_t now_us, bool v7,
                   bs_uuid *out)
{
    const env_ctx *c = ctx;
    if (c->deterministic)
        bs_uuid7_derived(out, now_us, c->cmd->command_id, run, purpose);
    else if (v7)
        bs_uuid7(out);
    else
        bs_uuid4(out);
}

bs_batch_env bs_handle_env(bs_worker *w, const bs_mode *mode, const bs_command *cmd)
{
    env_ctx *c = bs_arena_alloc(w->ar, sizeof *c);
    c->cmd = cmd;
    c->deterministic = mode->deterministic;
    return (bs_batch_env){.now_us = env_now,
                          .new_id = env_id,
                          .ctx = c,
                          .slot_wait_s = w->cfg->slot_wait_s,
                          .lease_ttl_s = w->cfg->lease_ttl_s,
                          .prefect_leases = w->cfg->prefect_api_url[0] != '\0'};
}

/* ---- outcomes ---- */

/* Bad input: the outcome says so, and (outside replay) the error records go out. */
static int reject(bs_worker *w, const bs_mode *mode, const bs_msg *m, bs_outcome *o,
                  const char *command_id, const char *reply_topic, const char *code,
                  const bs_err *why, bs_err *err)
{
    w->ph.on = false; /* an error completion: no phases */
    o->kind = BS_OUT_REJECTED;
    o->command_id = command_id;
    o->reply_topic = reply_topic;
    o->matched = o->batches = 0;
    o->cancelled = o->unacked = false;
    memset(o->counts, 0, sizeof o->counts);
    o->error_code = code;
    o->error = *why;
    return mode->dead_letter ? bs_reply_reject(w, mode, m, o, err) : 0;
}

int bs_handle_conflict(const bs_command *cmd, bs_err *err)
{
    bs_err_input(err, "command_id_reused", "command_id",
                 "command_id \"%s\" was already used for a different command", cmd->command_id);
    err->code = BS_ECONFLICT;
    return -1;
}

/* A one-batch command (Prefect's meaning of limit): claimed, applied and recorded in one
 * transaction, or found done and its stored replies published again. */
static int run_one(bs_worker *w, const bs_mode *mode, const bs_msg *m, const bs_command *cmd,
                   const char *identity, bs_outcome *o, bs_err *err)
{
    const bs_source src = {m->topic, m->partition, m->offset};
    bs_claim claim;
    bs_progress g;
    if (bs_store_check(w->store, err) < 0 || bs_store_begin(w->store, err) < 0) return -1;
    if (bs_store_claim(w->store, w->ar, cmd->command_id, identity, &src, 0, NULL, &claim, &g, err) <
        0)
        goto rollback;
    bs_phase_mark(w, BS_PH_CLAIM);
    if (claim == BS_CLAIM_CONFLICT) {
        bs_store_rollback(w->store);
        return bs_handle_conflict(cmd, err);
    }
    if (claim == BS_CLAIM_DONE) { /* redelivered, or replayed: its replies, again */
        bs_replies r;
        if (bs_store_load_replies(w->store, w->ar, cmd->command_id, 0, true, &r, err) < 0)
            goto rollback;
        bs_store_rollback(w->store);
        o->kind = BS_OUT_ALREADY;
        o->matched = g.matched;
        memcpy(o->counts, g.counts, sizeof o->counts);
        return bs_reply_publish(w, mode, o->reply_topic, cmd->command_id, 0, &r, NULL, err);
    }
    bs_sql sql;
    const char **ids;
    size_t n;
    bs_filter_select_sql(&cmd->filter, cmd->limit, w->ar, &sql);
    if (bs_store_select(w->store, w->ar, &sql, &ids, &n, err) < 0) goto rollback;
    bs_phase_mark(w, BS_PH_SELECT);
    const bs_apply a = {.cmd = cmd,
                        .reply_topic = o->reply_topic,
                        .src = &src,
                        .first_seq = 0,
                        .total = (int)n,
                        .progress = &g,
                        .finish = true};
    if (bs_apply_batch(w, mode, &a, ids, n, err) < 0) return -1;
    o->kind = BS_OUT_APPLIED;
    o->matched = g.matched;
    memcpy(o->counts, g.counts, sizeof o->counts);
    return 0;
rollback:
    bs_store_rollback(w->store);
    return -1;
}

/* A cancel command: flags the large command it names; its completion says it was accepted. */
static int cancel(bs_worker *w, const bs_mode *mode, const bs_msg *m, const bs_command *cmd,
                  bs_outcome *o, bs_err *err)
{
    bool found = false;
    if (bs_store_check(w->store, err) < 0 ||
        bs_store_request_cancel(w->store, cmd->cancel_command_id, &found, err) < 0)
        return -1;
    if (!found) {
        bs_err why;
        bs_err_input(&why, "not_running", "cancel_command_id",
                     "command \"%s\" is not a large command in progress (unknown or finished)",
                     cmd->cancel_command_id);
        return reject(w, mode, m, o, cmd->command_id, o->reply_topic, "cancel_failed", &why, err);
    }
    o->kind = BS_OUT_CANCEL;
    if (bs_reply_complete(w, mode, o, err) < 0) return -1;
    bs_log(BS_LOG_INFO, "worker", "cancel requested command_id=%s by=%s", cmd->cancel_command_id,
           cmd->command_id);
    return 0;
}

/* What is known of a message that is not a valid command. */
typedef struct bad_input {
    const char *code, *command_id, *reply_topic;
    bs_err why;
} bad_input;

static int bad(bad_input *bi, const char *code, const char *command_id, const char *reply_topic)
{
    bi->code = code;
    bi->command_id = command_id;
    bi->reply_topic = reply_topic;
    return -1;
}

/* Decodes and validates m into cmd and its identity; -1 and bi for bad input. */
static int decode(bs_worker *w, const bs_mode *mode, const bs_msg *m, bs_command *cmd,
                  const char **identity, bad_input *bi)
{
    json_t *body = NULL;
    if (bs_codec_decode(w->codec, BS_SCHEMA_COMMAND, m->payload, m->len, m->json, &body, &bi->why) <
        0)
        return bad(bi, "bad_message", m->command_id, NULL);
    if (bs_command_from_json(body, m->command_id, bs_now_us(), &w->cfg->caps, w->ar, cmd,
                             &bi->why) < 0) {
        const char *id = bs_command_id_peek(body, w->ar);
        json_t *rt = json_is_object(body) ? json_object_get(body, "reply_topic") : NULL;
        const char *topic = NULL;
        bs_err ignored;
        /* the error goes to the command's own reply topic when that one may be used */
        if (json_is_string(rt) && strcmp(bi->why.field, "reply_topic") != 0 &&
            bs_reply_topic_check(w, json_string_value(rt), &ignored) == 0)
            topic = bs_arena_strdup(w->ar, json_string_value(rt));
        json_decref(body);
        return bad(bi, "invalid_command", id ? id : m->command_id, topic);
    }
    /* deterministic replay: defaults that depend on the clock (a SCHEDULED state's time) come
     * from issued_at too */
    if (mode->deterministic && cmd->issued_at != BS_TS_NULL &&
        bs_command_from_json(body, m->command_id, cmd->issued_at, &w->cfg->caps, w->ar, cmd,
                             &bi->why) < 0) {
        json_decref(body);
        return bad(bi, "invalid_command", cmd->command_id, NULL);
    }
    *identity = bs_command_identity(w->ar, body, cmd);
    json_decref(body);
    return 0;
}

void bs_phase_mark(bs_worker *w, bs_phase p)
{
    if (!w->ph.on) return;
    const int64_t now = bs_mono_us();
    w->ph.us[p] += now - w->ph.last_us;
    w->ph.last_us = now;
}

/* The clocks start: the wait in Kafka is the record's timestamp to now. */
static void phases_start(bs_worker *w, const bs_msg *m)
{
    memset(&w->ph, 0, sizeof w->ph);
    w->ph.on = true;
    w->ph.last_us = bs_mono_us();
    /* the delivery count came between the two; it is the worker's, not Kafka's */
    const int64_t wait =
        m->timestamp_ms > 0 ? bs_now_us() - m->timestamp_ms * 1000 - w->count_us : 0;
    w->ph.us[BS_PH_WAIT] = wait > 0 ? wait : 0;
    w->ph.us[BS_PH_COUNT] = w->count_us;
    w->count_us = 0;
}

/* acked: the acknowledgement was awaited (else settle_unacked observes it) */
static void phases_observe(bs_worker *w, bool acked)
{
    if (!w->ph.on) return;
    for (int i = 0; i < BS_PHASES; i++)
        w->m->phase_s[i] += (double)w->ph.us[i] / 1e6;
    if (acked) bs_hist_observe(&w->m->ack, (double)w->ph.us[BS_PH_ACK] / 1e6);
    w->ph.on = false;
}

int bs_handle(bs_worker *w, const bs_mode *mode, bs_msg *m, bs_outcome *o, bs_err *err)
{
    const int64_t t0 = bs_mono_ms();
    phases_start(w, m);
    char trace[33];
    bs_command cmd;
    const char *identity = NULL;
    bad_input bi = {0};
    memset(o, 0, sizeof *o);
    const int dec = decode(w, mode, m, &cmd, &identity, &bi);
    bs_phase_mark(w, BS_PH_DECODE);
    if (dec < 0) return reject(w, mode, m, o, bi.command_id, bi.reply_topic, bi.code, &bi.why, err);
    o->command_id = cmd.command_id;
    o->reply_topic = cmd.reply_topic ? cmd.reply_topic : w->cfg->reply_topic;
    bs_err why;
    if (cmd.reply_topic != NULL && bs_reply_topic_check(w, cmd.reply_topic, &why) < 0)
        return reject(w, mode, m, o, cmd.command_id, NULL, "invalid_command", &why, err);
    bs_phase_mark(w, BS_PH_DECODE);
    /* a cancel and a large command complete on their own (and have no phases: a large
     * command's batches interleave with other commands) */
    const bool completes_itself = cmd.cancel_command_id || cmd.max_runs > 0;
    if (completes_itself) w->ph.on = false;
    int rc = cmd.cancel_command_id ? cancel(w, mode, m, &cmd, o, err)
             : cmd.max_runs > 0    ? bs_large_start(w, mode, m, &cmd, identity, o, err)
                                   : run_one(w, mode, m, &cmd, identity, o, err);
    if (rc == 0 && !completes_itself) {
        /* the worker awaits an applied command's acknowledgements while it handles the next */
        o->unacked = mode->defer_ack && o->kind == BS_OUT_APPLIED;
        rc = bs_reply_complete(w, mode, o, err);
        if (rc < 0) o->unacked = false;
    }
    if (rc < 0 && o->kind != BS_OUT_REJECTED &&
        bs_settle_decide(err, false, false) == BS_SETTLE_REJECT) {
        /* about this command (a reused id, a statement it makes fail, replies the broker
         * refuses for good, even after the commit): record it, move on */
        why = *err;
        memset(err, 0, sizeof *err);
        return reject(w, mode, m, o, cmd.command_id, o->reply_topic, bs_settle_reject_code(&why),
                      &why, err);
    }
    if (rc < 0) w->ph.on = false;
    if (rc < 0 || completes_itself) return rc;
    bs_metrics_lock(w->m);
    phases_observe(w, !o->unacked);
    w->m->completed[o->kind == BS_OUT_ALREADY ? 1 : 0]++;
    w->m->commands++;
    if (o->kind == BS_OUT_APPLIED) w->m->transitions += (uint64_t)o->matched;
    bs_metrics_unlock(w->m);
    bs_log(BS_LOG_INFO, "worker",
           "command done command_id=%s partition=%" PRId32 " offset=%" PRId64
           " matched=%d accepted=%d rejected=%d waited=%d aborted=%d replayed=%d ms=%lld "
           "trace_id=%s",
           cmd.command_id, m->partition, m->offset, o->matched, o->counts[BS_ACCEPT],
           o->counts[BS_REJECT], o->counts[BS_WAIT], o->counts[BS_ABORT], o->kind == BS_OUT_ALREADY,
           (long long)(bs_mono_ms() - t0), bs_trace_id(m->traceparent, trace));
    return 0;
}
