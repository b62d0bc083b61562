/* worker: one command at a time, per the module comment in worker.h. A command's offset is
 * stored only after its transaction committed and every reply and its completion were
 * acknowledged; a crash anywhere before that redelivers the command, which then finds its
 * record 'done' and republishes the stored replies instead of applying anything again. */
#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "codec.h"
#include "event.h"
#include "metrics.h"
#include "ops.h"
#include "command.h"
#include "filter_sql.h"
#include "ids.h"
#include "kafka.h"
#include "log.h"
#include "orch.h"
#include "result.h"
#include "store.h"

typedef struct large_cmd large_cmd;

struct bs_worker {
    bs_config *cfg; /* SIGHUP applies the reloadable keys in place */
    bs_codec *codec;
    bs_store *store;
    bs_consumer *cons;
    bs_producer *prod;
    bs_arena *ar;
    bs_framing framing;
    bs_delivery dv;         /* lives as long as the worker: late delivery reports land here */
    char *known_topics[64]; /* reply topics seen to exist */
    size_t n_known_topics;
    int64_t next_reap_us; /* when the expired-lease reaper runs next */
    bs_metrics m;         /* read by the HTTP thread under its mutex */
    bs_http *http;
    bool ready_sent;                       /* systemd READY=1 */
    int64_t watchdog_us, next_watchdog_us; /* WATCHDOG=1 interval, 0 = no watchdog */
    uint64_t n_commands, n_transitions;    /* for STATUS= */
    /* replay (bulkstate replay): no group, no publishing unless emit, rollback when dry_run,
     * orchestration clock and ids from the command's issued_at when deterministic */
    bool replaying, dry_run, deterministic, emit;
    FILE *out; /* where replay prints its results (JSON lines); NULL: nowhere */
    bool print_results;
    const char *outcome_word; /* what happened to the last command (replay's summary) */
    int last_matched, last_counts[4];
    bs_err last_error;
    const char *last_error_code;
    const char *last_command_id;
    large_cmd *large[16]; /* large commands in progress, one batch each per loop turn */
    size_t nlarge;
    bool kept_msg;        /* handle() kept the message (a large command now runs in batches) */
    bool attempt_cleared; /* the command's transaction cleared the message's delivery count */
};

/* Fault injection for the fault tests: BULKSTATE_FAILPOINT=NAME:N makes the worker SIGKILL
 * itself the Nth time it reaches point NAME (before_commit, after_commit, between_replies,
 * before_offset). Unset, a failpoint costs one comparison. */
static char fp_name[32];
static long fp_nth, fp_seen;

static void failpoint_setup(void)
{
    const char *v = getenv("BULKSTATE_FAILPOINT");
    const char *colon = v ? strchr(v, ':') : NULL;
    if (colon == NULL || (size_t)(colon - v) >= sizeof fp_name) return;
    snprintf(fp_name, sizeof fp_name, "%.*s", (int)(colon - v), v);
    fp_nth = atol(colon + 1);
    bs_log(BS_LOG_WARN, "worker", "failpoint armed: %s at occurrence %ld", fp_name, fp_nth);
}

static void failpoint(const char *name)
{
    if (fp_name[0] == '\0' || strcmp(name, fp_name) != 0 || ++fp_seen != fp_nth) return;
    bs_log(BS_LOG_WARN, "worker", "failpoint %s reached: SIGKILL", name);
    raise(SIGKILL);
}

static void large_free(bs_worker *w, size_t i, bool release);

static void on_stats(const char *json, size_t len, void *ctx)
{
    bs_worker *w = ctx;
    if (bs_metrics_lag_from_stats(&w->m, json, len) < 0)
        bs_log(BS_LOG_DEBUG, "worker", "unreadable librdkafka statistics");
}

typedef struct outcome {
    const char *command_id;
    const char *reply_topic;
    int matched, counts[4];
    bool replayed;
} outcome;

static bs_worker *worker_new(bs_config *cfg, bool replay, bs_err *err)
{
    bs_worker *w = bs_xcalloc(1, sizeof *w);
    w->cfg = cfg;
    bs_metrics_init(&w->m);
    if (!replay && cfg->metrics_listen[0] &&
        (w->http = bs_http_start(cfg->metrics_listen, &w->m, err)) == NULL)
        goto fail;
    w->ar = bs_arena_new();
    w->framing = (bs_framing)bs_framing_parse(cfg->output_framing);
    /* avro-c may allocate what a crafted length asks for: cap each allocation */
    bs_codec_cap_allocations((size_t)cfg->max_message_bytes * 4 + (1u << 20));
    if ((w->codec = bs_codec_new_for(cfg, (size_t)cfg->max_message_bytes, err)) == NULL) goto fail;
    for (int64_t backoff = 200;; backoff = backoff * 2 > 5000 ? 5000 : backoff * 2) {
        w->store = bs_store_new(cfg, err);
        if (w->store != NULL) break;
        if (err->code != BS_ETRANSIENT) goto fail;
        bs_log(BS_LOG_WARN, "worker", "database not reachable, retrying in %lld ms: %s",
               (long long)backoff, err->msg);
        struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000};
        nanosleep(&ts, NULL);
        if (backoff >= 5000) goto fail; /* systemd restarts us; do not spin here forever */
    }
    w->m.db_ok = true;
    if ((w->prod = bs_producer_new(cfg, err)) == NULL) goto fail;
    bs_kafka_set_stats_hook(w->http ? on_stats : NULL, w);
    /* a replay reads the log on its own, outside the consumer group */
    if (!replay && (w->cons = bs_consumer_new(cfg, cfg->command_topic, err)) == NULL) goto fail;
    w->watchdog_us = bs_notify_watchdog_interval_us();
    failpoint_setup();
    return w;
fail:
    bs_worker_free(w);
    return NULL;
}

bs_worker *bs_worker_new(bs_config *cfg, bs_err *err)
{
    return worker_new(cfg, false, err);
}

bs_worker *bs_worker_new_replay(bs_config *cfg, bs_err *err)
{
    return worker_new(cfg, true, err);
}

void bs_worker_free(bs_worker *w)
{
    if (w == NULL) return;
    while (w->nlarge > 0)
        large_free(w, w->nlarge - 1, false);
    bs_consumer_close(w->cons);
    bs_producer_free(w->prod, w->cfg->flush_timeout_ms);
    bs_store_free(w->store);
    bs_codec_free(w->codec);
    bs_arena_free(w->ar);
    bs_http_stop(w->http);
    bs_metrics_destroy(&w->m);
    free(w);
}

/* ---- publishing ----
 * Every reply of a command (its results, then its completion) is keyed by the command id, so
 * they share one partition and a consumer reads them in the order they were produced: results
 * in seq order, then the completion (the idempotent producer keeps that order on retries). */

static int publish(bs_worker *w, const char *topic, const char *key, const unsigned char *buf,
                   size_t len, const char *command_id, const char *seq, bs_err *err)
{
    if (w->replaying && !w->emit) return 0;
    const char *ctype = w->framing == BS_FRAME_JSON ? "application/json" : "avro/binary";
    bs_header h[3] = {
        {"content-type", ctype, strlen(ctype)},
        {"command-id", command_id ? command_id : "", command_id ? strlen(command_id) : 0},
        {"seq", seq, seq ? strlen(seq) : 0}};
    return bs_producer_send(w->prod, topic, key, key ? strlen(key) : 0, buf, len, h, seq ? 3 : 2,
                            &w->dv, err);
}

/* A state-change event: JSON, keyed by the run (Prefect's events are JSON documents). */
static int publish_event(bs_worker *w, const char *run_id, const char *event,
                         const char *command_id, bs_err *err)
{
    if (event == NULL || w->cfg->events_topic[0] == '\0' || (w->replaying && !w->emit)) return 0;
    bs_header h[2] = {{"content-type", "application/json", 16},
                      {"command-id", command_id, strlen(command_id)}};
    return bs_producer_send(w->prod, w->cfg->events_topic, run_id, strlen(run_id),
                            (const unsigned char *)event, strlen(event), h, 2, &w->dv, err);
}

static int publish_completion(bs_worker *w, const outcome *o, const char *error_code,
                              const bs_err *cerr, bs_err *err)
{
    bs_completion c = {.command_id = o->command_id,
                       .matched = o->matched,
                       .replayed = o->replayed,
                       .error_code = error_code,
                       .err = cerr,
                       .completed_at_us = bs_now_us()};
    memcpy(c.counts, o->counts, sizeof c.counts);
    json_t *j = bs_completion_to_json(&c);
    unsigned char *buf;
    size_t len;
    int rc = bs_codec_encode(w->codec, BS_SCHEMA_COMPLETED, j, w->framing, &buf, &len, err);
    json_decref(j);
    if (rc < 0) return -1;
    rc = publish(w, o->reply_topic, o->command_id, buf, len, o->command_id, NULL, err);
    free(buf);
    return rc;
}

static int wait_acks(bs_worker *w, bs_err *err)
{
    int rc = bs_producer_wait(w->prod, &w->dv, w->cfg->flush_timeout_ms, err);
    if (w->dv.pending == 0) {
        w->dv.failed = 0;
        w->dv.error[0] = '\0';
    }
    return rc;
}

/* Bad input: an error completion (if a command id is known) and a raw copy to the DLQ. */
static int reject_message(bs_worker *w, const bs_msg *m, const char *command_id,
                          const char *reply_topic, const char *code, const bs_err *cerr,
                          bs_err *err)
{
    char part[16], off[32];
    snprintf(part, sizeof part, "%" PRId32, m->partition);
    snprintf(off, sizeof off, "%" PRId64, m->offset);
    const char *etype = cerr->type[0] ? cerr->type : code;
    if (w->replaying) { /* the worker dead-lettered it when it first came: report only */
        w->outcome_word = "invalid";
        w->last_command_id = command_id;
        w->last_error = *cerr;
        w->last_error_code = code;
        return 0;
    }
    bs_header h[7] = {{"bulkstate.original.topic", m->topic, strlen(m->topic)},
                      {"bulkstate.original.partition", part, strlen(part)},
                      {"bulkstate.original.offset", off, strlen(off)},
                      {"bulkstate.error.code", code, strlen(code)},
                      {"bulkstate.error.type", etype, strlen(etype)},
                      {"bulkstate.error.field", cerr->field, strlen(cerr->field)},
                      {"bulkstate.error.message", cerr->msg, strlen(cerr->msg)}};
    bs_log(BS_LOG_WARN, "worker",
           "command rejected command_id=%s partition=%" PRId32 " offset=%" PRId64
           " code=%s type=%s field=%s error=\"%s\"",
           command_id ? command_id : "-", m->partition, m->offset, code, etype,
           cerr->field[0] ? cerr->field : "-", cerr->msg);
    if (bs_producer_send(w->prod, w->cfg->dlq_topic, m->key, m->key_len, m->payload, m->len, h, 7,
                         &w->dv, err) < 0)
        return -1;
    outcome o = {.command_id = command_id,
                 .reply_topic = reply_topic ? reply_topic : w->cfg->reply_topic};
    if (command_id != NULL && publish_completion(w, &o, code, cerr, err) < 0) return -1;
    if (wait_acks(w, err) < 0) return -1;
    bs_metrics_lock(&w->m);
    w->m.completed[2]++;
    w->m.dlq++;
    bs_metrics_failed(&w->m, code);
    bs_metrics_unlock(&w->m);
    return 0;
}

/* ---- the command ---- */

/* A command's own reply topic must exist: producing to a missing topic would fail only after
 * the delivery timeout, again on every retry, and stall the partition. */
static bool reply_topic_exists(bs_worker *w, const char *topic)
{
    for (size_t i = 0; i < w->n_known_topics; i++)
        if (strcmp(w->known_topics[i], topic) == 0) return true;
    if (!bs_producer_topic_exists(w->prod, topic, 10000)) return false;
    if (w->n_known_topics < sizeof w->known_topics / sizeof w->known_topics[0])
        w->known_topics[w->n_known_topics++] = bs_xstrdup(topic);
    return true;
}

/* The body as identity: nulls dropped, defaults made explicit, issued_at ignored. */
static json_t *normalise(const json_t *j)
{
    if (json_is_object(j)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (!json_is_null(v)) json_object_set_new(o, k, normalise(v));
        }
        return o;
    }
    if (json_is_array(j)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(j); i++)
            json_array_append_new(a, normalise(json_array_get(j, i)));
        return a;
    }
    return json_deep_copy(j);
}

static const char *body_identity(bs_arena *ar, const json_t *body, const bs_command *cmd)
{
    json_t *n = normalise(body);
    json_object_del(n, "issued_at");
    json_object_set_new(n, "force", json_boolean(cmd->force));
    json_object_set_new(n, "limit", json_integer(cmd->limit));
    char *s = json_dumps(n, JSON_COMPACT | JSON_SORT_KEYS);
    const char *out = bs_arena_strdup(ar, s);
    free(s);
    json_decref(n);
    return out;
}

/* Prefect stores non-null data that is not the unpersisted marker as a result artifact;
 * artifact_key/type/description move from the data object to the artifact's columns. */
static void artifact_for(bs_arena *ar, const bs_decision *d, bs_write *wr, const bs_uuid *art_id)
{
    if (!d->write || d->state.data == NULL) return;
    json_t *data = json_loads(d->state.data, JSON_DECODE_ANY, NULL);
    if (data == NULL) return;
    const json_t *t = json_object_get(data, "type");
    if (json_is_object(data) && json_is_string(t) &&
        strcmp(json_string_value(t), "unpersisted") == 0) {
        json_decref(data);
        return;
    }
    wr->artifact_id = bs_arena_strdup(ar, art_id->s);
    if (json_is_object(data)) {
        static const char *const keys[3] = {"artifact_key", "artifact_type",
                                            "artifact_description"};
        const char **dst[3] = {&wr->artifact_key, &wr->artifact_type, &wr->artifact_description};
        for (int i = 0; i < 3; i++) {
            const json_t *v = json_object_get(data, keys[i]);
            if (json_is_string(v)) *dst[i] = bs_arena_strdup(ar, json_string_value(v));
            json_object_del(data, keys[i]);
        }
    }
    char *txt = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    wr->artifact_data = bs_arena_strdup(ar, txt);
    free(txt);
    json_decref(data);
}

typedef struct batch {
    size_t n;
    const char **ids;
    bs_run *runs;
    bool *found;
    bs_decision *d;
    bs_write *wr;
    bs_status *status;
    const char **reason;
    bool *written;
    bool *skip;            /* large commands: the run stopped matching since it was selected */
    bs_limit_view *limits; /* the concurrency limits the batch may touch, locked */
    size_t nlimits;
} batch;

/* A fresh id: random, or, in deterministic replay, derived from the command, the run and
 * the purpose, with the command's clock. */
static void new_id(const bs_worker *w, const bs_command *cmd, const char *run, const char *purpose,
                   int64_t now_us, bool v7, bs_uuid *out)
{
    if (w->deterministic)
        bs_uuid7_derived(out, now_us, cmd->command_id, run, purpose);
    else if (v7)
        bs_uuid7(out);
    else
        bs_uuid4(out);
}

/* The orchestration clock: the worker's, or the command's issued_at in deterministic replay. */
static int64_t command_now(const bs_worker *w, const bs_command *cmd)
{
    return w->deterministic && cmd->issued_at != BS_TS_NULL ? cmd->issued_at : bs_now_us();
}

static void decide_all(bs_worker *w, const bs_command *cmd, batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (!b->found[i] || (b->skip && b->skip[i])) {
            memset(&b->d[i], 0, sizeof b->d[i]);
            b->wr[i].d = NULL;
            b->written[i] = false;
            b->status[i] = BS_ABORT;
            b->reason[i] = !b->found[i]
                               ? bs_arena_printf(w->ar, "Flow run with id %s not found", b->ids[i])
                               : "Flow run no longer matches the command's filter";
            continue;
        }
        bs_state p;
        memset(&p, 0, sizeof p);
        const int64_t now = command_now(w, cmd);
        new_id(w, cmd, b->ids[i], "state", now, true, &p.id);
        p.type = cmd->state_type;
        p.name = cmd->state_name ? cmd->state_name : bs_state_type_default_name(cmd->state_type);
        p.message = cmd->state_message;
        p.data = cmd->state_data;
        p.data_truthy = cmd->data_truthy;
        p.data_persisted = cmd->data_persisted;
        p.details = cmd->details; /* a fresh copy per run (Prefect shares one: see README) */
        p.timestamp = now;
        bs_orch_input in = {.run = &b->runs[i],
                            .proposal = &p,
                            .force = cmd->force,
                            .api_version = 0,
                            .now_us = p.timestamp,
                            .slot_wait_s = w->cfg->slot_wait_s,
                            .lease_ttl_s = w->cfg->lease_ttl_s};
        new_id(w, cmd, b->ids[i], "replacement", now, true, &in.replacement_id);
        new_id(w, cmd, b->ids[i], "pause-key", now, false, &in.random_pause_key);
        new_id(w, cmd, b->ids[i], "lease", now, false, &in.new_lease_id);
        if (!bs_uuid_null(&b->runs[i].parent_task_run_id)) /* a subflow: G11 copies its state */
            new_id(w, cmd, b->ids[i], "task-state", now, true, &in.task_state_id);
        bs_limit_view *v = bs_limit_find(b->limits, b->nlimits, &b->runs[i].concurrency_limit_id);
        if (v) b->runs[i].limit_active_slots = v->now;
        bs_orch_decide(&in, &b->d[i]);
        bs_limit_apply(b->limits, b->nlimits, &b->runs[i], &b->d[i].slots);
        b->wr[i].d = &b->d[i];
        bs_uuid art;
        new_id(w, cmd, b->ids[i], "artifact", now, true, &art);
        artifact_for(w->ar, &b->d[i], &b->wr[i], &art);
        if (b->d[i].task_write && b->wr[i].artifact_id) {
            new_id(w, cmd, b->ids[i], "task-artifact", now, true, &art);
            b->wr[i].task_artifact_id = bs_arena_strdup(w->ar, art.s);
        }
        b->status[i] = b->d[i].status;
        b->reason[i] = b->d[i].reason ? bs_arena_strdup(w->ar, b->d[i].reason) : NULL;
        b->written[i] = b->d[i].write;
    }
}

/* Writes the batch set-based; if that fails on the data (not the connection), rewrites it
 * run by run under savepoints so one bad run is an ABORT and the others still apply. */
static int write_batch(bs_worker *w, batch *b, bs_err *err)
{
    if (bs_store_savepoint(w->store, err) < 0) return -1;
    if (bs_store_write(w->store, w->ar, b->wr, b->n, err) == 0) return 0;
    if (err->code == BS_ETRANSIENT) return -1;
    bs_log(BS_LOG_WARN, "worker", "batch write failed, retrying run by run: %s", err->msg);
    bs_store_rollback_to_savepoint(w->store);
    for (size_t i = 0; i < b->n; i++) {
        bs_err rerr = {0};
        if (!b->found[i]) continue;
        if (bs_store_savepoint(w->store, err) < 0) return -1;
        if (bs_store_write(w->store, w->ar, &b->wr[i], 1, &rerr) == 0) continue;
        if (rerr.code == BS_ETRANSIENT) {
            *err = rerr;
            return -1;
        }
        bs_store_rollback_to_savepoint(w->store);
        b->status[i] = BS_ABORT;
        b->reason[i] = bs_arena_printf(w->ar, "Error validating state: %s", rerr.msg);
        b->written[i] = false;
    }
    return 0;
}

/* The state-change event of every written transition (Prefect's InstrumentFlowRunState-
 * Transitions), recorded with the replies and published after them. */
static int build_events(bs_worker *w, batch *b, const char ***out, bs_err *err)
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
        json_t *c = ctx[k] ? json_loads(ctx[k], 0, NULL) : NULL;
        k++;
        json_t *e = bs_event_state_change(&b->runs[i].current, &b->d[i], c ? c : json_object());
        json_decref(c);
        char *text = json_dumps(e, JSON_COMPACT);
        json_decref(e);
        events[i] = bs_arena_strdup(w->ar, text);
        free(text);
    }
    *out = events;
    return 0;
}

/* The slot and lease changes of the transitions that were written. */
static int write_slots(bs_worker *w, batch *b, bs_err *err)
{
    if (b->nlimits == 0) return 0;
    const bs_run **runs = bs_arena_alloc(w->ar, sizeof *runs * b->n);
    const bs_slot_ops **ops = bs_arena_alloc(w->ar, sizeof *ops * b->n);
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->written[i]) {
            runs[k] = &b->runs[i];
            ops[k++] = &b->d[i].slots;
        }
    return bs_store_write_slots(w->store, w->ar, runs, ops, k, b->limits, b->nlimits, err);
}

/* The result records of a batch, encoded for the reply topic (seq from first_seq; total -1:
 * not known yet, a large command). Counts go into counts[]. */
static int encode_replies(bs_worker *w, const bs_command *cmd, const batch *b, int first_seq,
                          int total, unsigned char **replies, size_t *lens, int *statuses,
                          int counts[4], bs_err *err)
{
    for (size_t i = 0; i < b->n; i++) {
        /* ACCEPT or REJECT with a replacement: the written state; a rule's REJECT, WAIT or
         * ABORT: the run's unchanged current state; a vanished run or a failed write: none */
        const bs_state *state = NULL;
        if (b->written[i])
            state = &b->d[i].state;
        else if (b->found[i] &&
                 !(b->reason[i] && strncmp(b->reason[i], "Error validating", 16) == 0))
            state = &b->runs[i].current;
        bs_result r = {.command_id = cmd->command_id,
                       .seq = first_seq + (int)i,
                       .total = total,
                       .flow_run_id = b->ids[i],
                       .status = b->status[i],
                       .state = state,
                       .reason = b->reason[i],
                       .delay_seconds = b->found[i] ? b->d[i].delay_seconds : 0};
        json_t *j = bs_result_to_json(&r);
        if (w->out && w->print_results) {
            char *t = json_dumps(j, JSON_COMPACT);
            fprintf(w->out, "%s\n", t);
            free(t);
        }
        unsigned char *buf;
        size_t len;
        int rc = bs_codec_encode(w->codec, BS_SCHEMA_RESULT, j, w->framing, &buf, &len, err);
        json_decref(j);
        if (rc < 0) return -1;
        replies[i] = bs_arena_alloc(w->ar, len ? len : 1);
        memcpy(replies[i], buf, len);
        free(buf);
        lens[i] = len;
        statuses[i] = (int)b->status[i];
        counts[b->status[i]]++;
    }
    return 0;
}

static int run_command(bs_worker *w, const bs_msg *m, const bs_command *cmd, const char *body,
                       outcome *o, bs_err *err)
{
    bs_source src = {m->topic, m->partition, m->offset};
    bs_claim claim;
    bs_command_record rec = {0};

    const int64_t txn_start = bs_mono_us();
    if (bs_store_check(w->store, err) < 0 || bs_store_begin(w->store, err) < 0) return -1;
    if (bs_store_claim(w->store, cmd->command_id, body, &src, &claim, &rec, err) < 0) goto rollback;
    if (claim == BS_CLAIM_CONFLICT) {
        bs_store_rollback(w->store);
        bs_err_input(err, "command_id_reused", "command_id",
                     "command_id \"%s\" was already used for a different command", cmd->command_id);
        return -1;
    }
    if (claim == BS_CLAIM_DONE) {
        unsigned char **replies;
        size_t *lens, n;
        const char **run_ids, **events;
        if (bs_store_load_replies(w->store, w->ar, cmd->command_id, &replies, &lens, &run_ids,
                                  &events, &n, err) < 0)
            goto rollback;
        bs_store_rollback(w->store);
        w->outcome_word = "already_applied";
        for (size_t i = 0; i < n; i++) {
            char seq[16];
            snprintf(seq, sizeof seq, "%zu", i);
            if (publish(w, o->reply_topic, cmd->command_id, replies[i], lens[i], cmd->command_id,
                        seq, err) < 0)
                return -1;
            json_t *j = NULL;
            bool is_result;
            bs_err derr = {0};
            if (w->out && w->print_results &&
                bs_codec_decode_reply(w->codec, replies[i], lens[i], w->framing == BS_FRAME_JSON,
                                      &j, &is_result, &derr) == 0) {
                char *t = json_dumps(j, JSON_COMPACT);
                fprintf(w->out, "%s\n", t);
                free(t);
            }
            json_decref(j);
        }
        for (size_t i = 0; i < n; i++)
            if (publish_event(w, run_ids[i], events[i], cmd->command_id, err) < 0) return -1;
        o->matched = rec.matched;
        memcpy(o->counts, rec.counts, sizeof o->counts);
        o->replayed = true;
        return 0;
    }

    bs_sql sql;
    batch b = {0};
    bs_filter_select_sql(&cmd->filter, cmd->limit, w->ar, &sql);
    if (bs_store_select(w->store, w->ar, &sql, &b.ids, &b.n, err) < 0) goto rollback;
    size_t cap = b.n ? b.n : 1;
    b.runs = bs_arena_alloc(w->ar, sizeof *b.runs * cap);
    b.found = bs_arena_alloc(w->ar, sizeof *b.found * cap);
    b.d = bs_arena_alloc(w->ar, sizeof *b.d * cap);
    b.wr = bs_arena_alloc(w->ar, sizeof *b.wr * cap);
    b.status = bs_arena_alloc(w->ar, sizeof *b.status * cap);
    b.reason = bs_arena_alloc(w->ar, sizeof *b.reason * cap);
    b.written = bs_arena_alloc(w->ar, sizeof *b.written * cap);
    int64_t t0 = command_now(w, cmd);
    if (b.n > 0 &&
        (bs_store_lock_runs(w->store, w->ar, b.ids, b.n, t0 - 1000000, b.runs, b.found, err) < 0 ||
         bs_store_lock_limits(w->store, w->ar, b.runs, b.found, b.n, &b.limits, &b.nlimits, err) <
             0))
        goto rollback;
    decide_all(w, cmd, &b);
    if (b.n > 0 && (write_batch(w, &b, err) < 0 || write_slots(w, &b, err) < 0)) goto rollback;

    /* encode the replies now: they are recorded in the same transaction */
    unsigned char **replies = bs_arena_alloc(w->ar, sizeof(unsigned char *) * cap);
    size_t *lens = bs_arena_alloc(w->ar, sizeof(size_t) * cap);
    int *statuses = bs_arena_alloc(w->ar, sizeof(int) * cap);
    if (encode_replies(w, cmd, &b, 0, (int)b.n, replies, lens, statuses, o->counts, err) < 0)
        goto rollback;
    const char **events = NULL;
    if (w->cfg->events_topic[0] && b.n > 0 && build_events(w, &b, &events, err) < 0) goto rollback;
    o->matched = (int)b.n;
    rec.matched = o->matched;
    memcpy(rec.counts, o->counts, sizeof rec.counts);
    if (bs_store_finish(w->store, w->ar, cmd->command_id, &src, b.ids, statuses,
                        (const unsigned char *const *)replies, lens, events, b.n, &rec, err) < 0)
        goto rollback;
    failpoint("before_commit");
    if (bs_store_commit(w->store, err) < 0) return -1;
    if (w->dry_run) { /* replay --dry-run: kept in the outer transaction, rolled back at the end */
        w->outcome_word = "dry_run";
        return 0;
    }
    failpoint("after_commit");
    w->attempt_cleared = true;
    w->outcome_word = "applied";
    bs_metrics_lock(&w->m);
    bs_hist_observe(&w->m.txn, (double)(bs_mono_us() - txn_start) / 1e6);
    bs_hist_observe(&w->m.batch, (double)b.n);
    for (size_t i = 0; i < b.n; i++) {
        w->m.status[b.status[i]]++;
        if (b.written[i]) w->m.by_type[b.runs[i].current.type][b.d[i].state.type]++;
    }
    bs_metrics_unlock(&w->m);

    for (size_t i = 0; i < b.n; i++) {
        char seq[16];
        snprintf(seq, sizeof seq, "%zu", i);
        if (publish(w, o->reply_topic, cmd->command_id, replies[i], lens[i], cmd->command_id, seq,
                    err) < 0)
            return -1;
        if (i == 0) failpoint("between_replies");
    }
    for (size_t i = 0; events && i < b.n; i++)
        if (publish_event(w, b.ids[i], events[i], cmd->command_id, err) < 0) return -1;
    return 0;
rollback:
    bs_store_rollback(w->store);
    return -1;
}

/* ---- large commands (max_runs): every matching run, in batches, one transaction each ---- */

typedef struct large_cmd {
    bs_msg *m;    /* owned: its offset is stored when the command is done */
    bs_arena *ar; /* the command's own memory (the worker's arena is reset per message) */
    bs_command cmd;
    const char *reply_topic;
    bs_large lg;
    int64_t next_try_ms, backoff_ms;
} large_cmd;

static void large_free(bs_worker *w, size_t i, bool release)
{
    large_cmd *e = w->large[i];
    if (release) bs_consumer_hold(w->cons, e->m->topic, e->m->partition, false);
    bs_msg_free(e->m);
    bs_arena_free(e->ar);
    free(e);
    w->large[i] = w->large[--w->nlarge];
}

/* The completion of a large command: totals, batches, whether a cancel stopped it. */
static int large_complete(bs_worker *w, large_cmd *e, bool replayed, bs_err *err)
{
    bs_completion c = {.command_id = e->cmd.command_id,
                       .matched = e->lg.matched,
                       .replayed = replayed,
                       .batches = e->lg.batches,
                       .cancelled = e->lg.cancelled,
                       .completed_at_us = bs_now_us()};
    memcpy(c.counts, e->lg.counts, sizeof c.counts);
    json_t *j = bs_completion_to_json(&c);
    unsigned char *buf;
    size_t len;
    int rc = bs_codec_encode(w->codec, BS_SCHEMA_COMPLETED, j, w->framing, &buf, &len, err);
    json_decref(j);
    if (rc < 0) return -1;
    rc = publish(w, e->reply_topic, e->cmd.command_id, buf, len, e->cmd.command_id, NULL, err);
    free(buf);
    if (rc < 0 || wait_acks(w, err) < 0) return -1;
    bs_log(BS_LOG_INFO, "worker",
           "command done command_id=%s partition=%" PRId32 " offset=%" PRId64
           " matched=%d accepted=%d rejected=%d waited=%d aborted=%d batches=%d cancelled=%d "
           "replayed=%d",
           e->cmd.command_id, e->m->partition, e->m->offset, e->lg.matched, e->lg.counts[BS_ACCEPT],
           e->lg.counts[BS_REJECT], e->lg.counts[BS_WAIT], e->lg.counts[BS_ABORT], e->lg.batches,
           e->lg.cancelled, replayed);
    return 0;
}

/* Republishes the stored replies from seq `from` (a resumed command's unacknowledged ones, or
 * all of a finished one), then records them acknowledged. */
static int large_republish(bs_worker *w, large_cmd *e, int from, bs_err *err)
{
    unsigned char **replies;
    size_t *lens, n;
    const char **run_ids, **events;
    if (bs_store_load_replies_from(w->store, w->ar, e->cmd.command_id, from, &replies, &lens,
                                   &run_ids, &events, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char seq[16];
        snprintf(seq, sizeof seq, "%zu", (size_t)from + i);
        if (publish(w, e->reply_topic, e->cmd.command_id, replies[i], lens[i], e->cmd.command_id,
                    seq, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (publish_event(w, run_ids[i], events[i], e->cmd.command_id, err) < 0) return -1;
    if (n > 0 && (wait_acks(w, err) < 0 ||
                  bs_store_large_acked(w->store, e->cmd.command_id, from + (int)n, err) < 0))
        return -1;
    return 0;
}

/* One batch of a large command. Returns 0 (progress, more to do), 1 (done: the completion was
 * published) or -1 with err. */
static int large_step(bs_worker *w, large_cmd *e, bs_err *err)
{
    const bs_command *cmd = &e->cmd;
    bs_large lg = e->lg;
    bool cancel = false, finish = false;
    batch b = {0};
    if (bs_store_check(w->store, err) < 0 || bs_store_begin(w->store, err) < 0) return -1;
    if (bs_store_large_cancel_requested(w->store, cmd->command_id, &cancel, err) < 0) goto rollback;
    int remaining = cmd->max_runs - lg.matched;
    if (cancel || remaining <= 0) {
        finish = true;
    } else {
        int limit = cmd->limit < remaining ? cmd->limit : remaining;
        if (bs_store_large_select(w->store, w->ar, &cmd->filter, &lg, limit, &b.ids, &b.n, err) < 0)
            goto rollback;
        finish = b.n == 0;
    }
    lg.cancelled = cancel;
    if (finish) {
        if (bs_store_large_record(w->store, w->ar, cmd->command_id, 0, NULL, NULL, NULL, NULL, NULL,
                                  0, &lg, true, err) < 0 ||
            bs_store_commit(w->store, err) < 0)
            goto rollback;
        e->lg = lg;
        if (large_complete(w, e, false, err) < 0) return -1;
        return 1;
    }
    size_t cap = b.n;
    b.runs = bs_arena_alloc(w->ar, sizeof *b.runs * cap);
    b.found = bs_arena_alloc(w->ar, sizeof *b.found * cap);
    b.skip = bs_arena_alloc(w->ar, sizeof *b.skip * cap);
    b.d = bs_arena_alloc(w->ar, sizeof *b.d * cap);
    b.wr = bs_arena_alloc(w->ar, sizeof *b.wr * cap);
    b.status = bs_arena_alloc(w->ar, sizeof *b.status * cap);
    b.reason = bs_arena_alloc(w->ar, sizeof *b.reason * cap);
    b.written = bs_arena_alloc(w->ar, sizeof *b.written * cap);
    bool *match = bs_arena_alloc(w->ar, sizeof *match * cap);
    int64_t t0 = bs_now_us();
    if (bs_store_lock_runs(w->store, w->ar, b.ids, b.n, t0 - 1000000, b.runs, b.found, err) < 0 ||
        bs_store_still_matching(w->store, w->ar, &cmd->filter, b.ids, b.n, match, err) < 0 ||
        bs_store_lock_limits(w->store, w->ar, b.runs, b.found, b.n, &b.limits, &b.nlimits, err) < 0)
        goto rollback;
    for (size_t i = 0; i < b.n; i++)
        b.skip[i] = b.found[i] && !match[i]; /* changed since it was selected: not transitioned */
    decide_all(w, cmd, &b);
    if (write_batch(w, &b, err) < 0 || write_slots(w, &b, err) < 0) goto rollback;
    unsigned char **replies = bs_arena_alloc(w->ar, sizeof(unsigned char *) * cap);
    size_t *lens = bs_arena_alloc(w->ar, sizeof(size_t) * cap);
    int *statuses = bs_arena_alloc(w->ar, sizeof(int) * cap);
    const int first_seq = lg.matched;
    if (encode_replies(w, cmd, &b, first_seq, -1, replies, lens, statuses, lg.counts, err) < 0)
        goto rollback;
    const char **events = NULL;
    if (w->cfg->events_topic[0] && build_events(w, &b, &events, err) < 0) goto rollback;
    lg.matched += (int)b.n;
    lg.batches++;
    snprintf(lg.last_id, sizeof lg.last_id, "%s", b.ids[b.n - 1]); /* the lowest: id DESC */
    if (bs_store_large_record(w->store, w->ar, cmd->command_id, first_seq, b.ids, statuses,
                              (const unsigned char *const *)replies, lens, events, b.n, &lg, false,
                              err) < 0)
        goto rollback;
    failpoint("batch_before_commit");
    if (bs_store_commit(w->store, err) < 0) return -1;
    e->lg = lg;
    failpoint("batch_after_commit");
    bs_metrics_lock(&w->m);
    bs_hist_observe(&w->m.batch, (double)b.n);
    for (size_t i = 0; i < b.n; i++) {
        w->m.status[b.status[i]]++;
        if (b.written[i]) w->m.by_type[b.runs[i].current.type][b.d[i].state.type]++;
    }
    bs_metrics_unlock(&w->m);
    for (size_t i = 0; i < b.n; i++) {
        char seq[16];
        snprintf(seq, sizeof seq, "%zu", (size_t)first_seq + i);
        if (publish(w, e->reply_topic, cmd->command_id, replies[i], lens[i], cmd->command_id, seq,
                    err) < 0)
            return -1;
    }
    for (size_t i = 0; events && i < b.n; i++)
        if (publish_event(w, b.ids[i], events[i], cmd->command_id, err) < 0) return -1;
    if (wait_acks(w, err) < 0 ||
        bs_store_large_acked(w->store, cmd->command_id, lg.matched, err) < 0)
        return -1;
    e->lg.acked_seq = lg.matched;
    /* progress was made: this delivery is not a poison candidate */
    bs_source src = {e->m->topic, e->m->partition, e->m->offset};
    bs_err aerr = {0};
    if (bs_store_clear_attempt(w->store, &src, &aerr) < 0)
        bs_log(BS_LOG_WARN, "worker", "%s", aerr.msg);
    return 0;
rollback:
    bs_store_rollback(w->store);
    return -1;
}

/* A large command arrives (or comes back after a crash): claimed with its snapshot, or resumed
 * from its checkpoint. Returns 1 when it now runs in batches (its partition is held; the
 * message is kept), 0 when it was settled here (finished earlier: replies republished), -1. */
static int large_start(bs_worker *w, bs_msg *m, const char *identity, const char *reply_topic,
                       int64_t issued_at, bs_err *err)
{
    large_cmd *e = bs_xcalloc(1, sizeof *e);
    e->ar = bs_arena_new();
    e->m = m;
    json_t *body = json_loads(identity, 0, NULL);
    bs_err cerr = {0};
    int rc =
        body ? bs_command_from_json(body, m->command_id, bs_now_us(), e->ar, &e->cmd, &cerr) : -1;
    json_decref(body);
    if (rc < 0) { /* validated once already: cannot happen */
        bs_err_set(err, BS_EFATAL, "large command: %s", cerr.msg);
        goto fail;
    }
    e->reply_topic = bs_arena_strdup(e->ar, reply_topic);
    e->cmd.issued_at = issued_at; /* the identity leaves it out */
    bs_source src = {m->topic, m->partition, m->offset};
    bs_claim claim;
    if (bs_store_check(w->store, err) < 0 ||
        bs_store_large_claim(w->store, w->ar, e->cmd.command_id, identity, &src, e->cmd.max_runs,
                             &e->cmd.filter, &claim, &e->lg, err) < 0)
        goto fail;
    if (claim == BS_CLAIM_CONFLICT) {
        bs_err_input(err, "command_id_reused", "command_id",
                     "command_id \"%s\" was already used for a different command",
                     e->cmd.command_id);
        goto fail;
    }
    if (claim == BS_CLAIM_DONE) { /* redelivered after it finished: its replies, again */
        if (large_republish(w, e, 0, err) < 0 || large_complete(w, e, true, err) < 0) goto fail;
        if (w->replaying) w->outcome_word = "already_applied";
        e->m = NULL; /* the caller frees the message */
        bs_arena_free(e->ar);
        free(e);
        return 0;
    }
    /* resumed: first the replies whose acknowledgement was not recorded */
    if (e->lg.acked_seq < e->lg.matched && large_republish(w, e, e->lg.acked_seq, err) < 0)
        goto fail;
    if (e->lg.batches > 0)
        bs_log(BS_LOG_INFO, "worker", "resuming command_id=%s batches=%d matched=%d",
               e->cmd.command_id, e->lg.batches, e->lg.matched);
    if (w->replaying) { /* replay: every batch now, in order (no consumer group to serve) */
        int step;
        while ((step = large_step(w, e, err)) == 0)
            bs_arena_reset(w->ar);
        w->last_command_id = bs_arena_strdup(w->ar, e->cmd.command_id);
        if (step == 1) {
            w->outcome_word = w->dry_run ? "dry_run" : "applied";
            w->last_matched = e->lg.matched;
            memcpy(w->last_counts, e->lg.counts, sizeof e->lg.counts);
        }
        e->m = NULL;
        bs_arena_free(e->ar);
        free(e);
        return step < 0 ? -1 : 0;
    }
    if (w->nlarge == sizeof w->large / sizeof w->large[0]) {
        bs_err_set(err, BS_ETRANSIENT, "too many large commands in progress");
        goto fail;
    }
    bs_consumer_hold(w->cons, m->topic, m->partition, true);
    w->large[w->nlarge++] = e;
    return 1;
fail:
    e->m = NULL;
    bs_arena_free(e->ar);
    free(e);
    return -1;
}

/* One batch of each large command in progress (round robin with the poll loop, so other
 * partitions keep being served). */
static void large_run(bs_worker *w, volatile sig_atomic_t *stop)
{
    for (size_t i = 0; i < w->nlarge && !*stop;) {
        large_cmd *e = w->large[i];
        if (!bs_consumer_owns(w->cons, e->m)) { /* revoked: the new owner resumes it */
            bs_log(BS_LOG_INFO, "worker",
                   "partition revoked during command_id=%s after %d batches: left to the new "
                   "owner",
                   e->cmd.command_id, e->lg.batches);
            large_free(w, i, true);
            continue;
        }
        if (bs_mono_ms() < e->next_try_ms) {
            i++;
            continue;
        }
        bs_err err = {0};
        int rc = large_step(w, e, &err);
        bs_arena_reset(w->ar);
        if (rc == 1) {
            bs_err serr = {0};
            if (bs_consumer_store(w->cons, e->m, &serr) < 0)
                bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
            bs_source src = {e->m->topic, e->m->partition, e->m->offset};
            if (bs_store_clear_attempt(w->store, &src, &serr) < 0)
                bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
            bs_metrics_lock(&w->m);
            w->m.completed[0]++;
            bs_metrics_unlock(&w->m);
            w->n_commands++;
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
            e->backoff_ms = 0;
            e->next_try_ms = bs_mono_ms() + w->cfg->batch_pause_ms;
        }
        i++;
    }
}

/* Returns 0 when the message is settled (its offset may be stored), -1 with err otherwise. */
static int handle(bs_worker *w, const bs_msg *m, bs_err *err)
{
    int64_t t0 = bs_mono_ms();
    json_t *body = NULL;
    bs_err cerr = {0};
    bs_command cmd;
    int rc;

    if (bs_codec_decode(w->codec, BS_SCHEMA_COMMAND, m->payload, m->len, m->json, &body, &cerr) < 0)
        return reject_message(w, m, m->command_id, NULL, "bad_message", &cerr, err);
    if (bs_command_from_json(body, m->command_id, bs_now_us(), w->ar, &cmd, &cerr) < 0) {
        const char *id = bs_command_id_peek(body, w->ar);
        if (id == NULL && m->command_id) id = m->command_id;
        json_t *rt = json_is_object(body) ? json_object_get(body, "reply_topic") : NULL;
        const char *topic = NULL;
        if (json_is_string(rt) && strcmp(cerr.field, "reply_topic") != 0)
            topic = bs_arena_strdup(w->ar, json_string_value(rt));
        json_decref(body);
        return reject_message(w, m, id, topic, "invalid_command", &cerr, err);
    }
    /* deterministic replay: defaults that depend on the clock (a SCHEDULED state's time) come
     * from issued_at too */
    if (w->deterministic && cmd.issued_at != BS_TS_NULL &&
        bs_command_from_json(body, m->command_id, cmd.issued_at, w->ar, &cmd, &cerr) < 0) {
        json_decref(body);
        return reject_message(w, m, cmd.command_id, NULL, "invalid_command", &cerr, err);
    }
    const char *identity = body_identity(w->ar, body, &cmd);
    json_decref(body);

    outcome o = {.command_id = cmd.command_id,
                 .reply_topic = cmd.reply_topic ? cmd.reply_topic : w->cfg->reply_topic};
    if (cmd.reply_topic != NULL && !reply_topic_exists(w, cmd.reply_topic)) {
        bs_err_input(&cerr, "topic_not_found", "reply_topic", "reply topic \"%s\" does not exist",
                     cmd.reply_topic);
        return reject_message(w, m, cmd.command_id, NULL, "invalid_command", &cerr, err);
    }
    if (cmd.cancel_command_id != NULL) {
        bool found = false;
        if (bs_store_check(w->store, err) < 0 ||
            bs_store_request_cancel(w->store, cmd.cancel_command_id, &found, err) < 0)
            return -1;
        if (!found) {
            bs_err_input(&cerr, "not_running", "cancel_command_id",
                         "command \"%s\" is not a large command in progress (unknown or finished)",
                         cmd.cancel_command_id);
            return reject_message(w, m, cmd.command_id, o.reply_topic, "cancel_failed", &cerr, err);
        }
        if (publish_completion(w, &o, NULL, NULL, err) < 0 || wait_acks(w, err) < 0) return -1;
        bs_log(BS_LOG_INFO, "worker", "cancel requested command_id=%s by=%s", cmd.cancel_command_id,
               cmd.command_id);
        return 0;
    }
    if (cmd.max_runs > 0) {
        rc = large_start(w, (bs_msg *)m, identity, o.reply_topic, cmd.issued_at, err);
        if (rc == 1) {
            w->kept_msg = true;
            return 0;
        }
        if (rc < 0 && err->code != BS_ETRANSIENT) {
            bs_err rerr = *err;
            memset(err, 0, sizeof *err);
            return reject_message(w, m, cmd.command_id, o.reply_topic,
                                  rerr.code == BS_EINVAL ? "command_id_reused" : "internal_error",
                                  &rerr, err);
        }
        return rc;
    }
    rc = run_command(w, m, &cmd, identity, &o, err);
    if (rc < 0 && err->code == BS_EINVAL) { /* the command id was reused for another body */
        bs_err rerr = *err;
        memset(err, 0, sizeof *err);
        return reject_message(w, m, cmd.command_id, o.reply_topic, "command_id_reused", &rerr, err);
    }
    if (rc < 0 && err->code == BS_EFATAL) {
        /* not the connection: something about this command. Record it and move on. */
        bs_err ferr = *err;
        memset(err, 0, sizeof *err);
        return reject_message(w, m, cmd.command_id, o.reply_topic, "internal_error", &ferr, err);
    }
    if (rc < 0) return -1;
    if (publish_completion(w, &o, NULL, NULL, err) < 0 || wait_acks(w, err) < 0) return -1;
    w->last_matched = o.matched;
    memcpy(w->last_counts, o.counts, sizeof o.counts);
    w->last_command_id = cmd.command_id;
    bs_metrics_lock(&w->m);
    w->m.completed[o.replayed ? 1 : 0]++;
    bs_metrics_unlock(&w->m);
    w->n_commands++;
    if (!o.replayed) w->n_transitions += (uint64_t)o.matched;
    bs_log(BS_LOG_INFO, "worker",
           "command done command_id=%s partition=%" PRId32 " offset=%" PRId64
           " matched=%d accepted=%d rejected=%d waited=%d aborted=%d replayed=%d ms=%lld",
           cmd.command_id, m->partition, m->offset, o.matched, o.counts[BS_ACCEPT],
           o.counts[BS_REJECT], o.counts[BS_WAIT], o.counts[BS_ABORT], o.replayed,
           (long long)(bs_mono_ms() - t0));
    return 0;
}

int bs_worker_replay(bs_worker *w, const bs_replay_opts *opt, bs_err *err)
{
    w->replaying = true;
    w->dry_run = opt->dry_run;
    w->deterministic = opt->clock_issued_at;
    w->emit = opt->emit;
    w->out = opt->out;
    w->print_results = opt->print_results;
    const char *topic = opt->topic ? opt->topic : w->cfg->command_topic;
    bs_range range;
    bs_consumer *c = bs_consumer_new_range(w->cfg, topic, opt->partition, opt->from_offset,
                                           opt->from_ts_ms, &range, err);
    if (c == NULL) return -1;
    /* a dry run is cumulative: each command sees the ones before it, then all is rolled back */
    if (w->dry_run && bs_store_outer_begin(w->store, err) < 0) {
        bs_consumer_close(c);
        return -1;
    }
    int64_t next[BS_RANGE_MAX];
    size_t left = 0;
    for (size_t i = 0; i < range.n; i++) {
        next[i] = range.start[i];
        left += next[i] < range.end[i];
    }
    int totals[4] = {0}; /* applied or evaluated, already applied, invalid, failed */
    int64_t idle_since = bs_mono_ms();
    int rc = 0;
    while (left > 0) {
        bs_err perr = {0};
        bs_msg *m = bs_consumer_poll(c, 200, &perr);
        if (m == NULL) {
            if (bs_mono_ms() - idle_since > 30000) {
                bs_err_set(err, BS_ETRANSIENT, "no message for 30 s before the end of the log");
                rc = -1;
                break;
            }
            continue;
        }
        idle_since = bs_mono_ms();
        size_t k = 0;
        while (k < range.n && range.partition[k] != m->partition)
            k++;
        if (k == range.n || m->offset >= range.end[k] || m->offset < next[k]) {
            bs_msg_free(m);
            continue;
        }
        next[k] = m->offset + 1;
        if (next[k] >= range.end[k]) left--;
        w->outcome_word = NULL;
        w->last_matched = 0;
        memset(w->last_counts, 0, sizeof w->last_counts);
        memset(&w->last_error, 0, sizeof w->last_error);
        w->last_error_code = NULL;
        w->last_command_id = m->command_id;
        bs_err herr = {0};
        int hrc = handle(w, m, &herr);
        json_t *line = json_object();
        json_object_set_new(line, "partition", json_integer(m->partition));
        json_object_set_new(line, "offset", json_integer(m->offset));
        json_object_set_new(line, "command_id",
                            w->last_command_id ? json_string(w->last_command_id) : json_null());
        if (hrc < 0) {
            json_object_set_new(line, "outcome", json_string("failed"));
            json_object_set_new(line, "error", json_string(herr.msg));
            totals[3]++;
        } else {
            const char *what = w->outcome_word ? w->outcome_word : "applied";
            json_object_set_new(line, "outcome", json_string(what));
            totals[strcmp(what, "already_applied") == 0 ? 1
                   : strcmp(what, "invalid") == 0       ? 2
                                                        : 0]++;
            if (w->last_error_code) {
                json_t *e = json_object();
                json_object_set_new(e, "code", json_string(w->last_error_code));
                json_object_set_new(e, "type", json_string(w->last_error.type));
                json_object_set_new(e, "field", json_string(w->last_error.field));
                json_object_set_new(e, "message", json_string(w->last_error.msg));
                json_object_set_new(line, "error", e);
            } else {
                static const char *const K[4] = {"accepted", "rejected", "waited", "aborted"};
                json_object_set_new(line, "matched", json_integer(w->last_matched));
                for (int i = 0; i < 4; i++)
                    json_object_set_new(line, K[i], json_integer(w->last_counts[i]));
            }
        }
        char *t = json_dumps(line, JSON_COMPACT);
        if (w->out) fprintf(w->out, "%s\n", t);
        free(t);
        json_decref(line);
        bs_msg_free(m);
        bs_arena_reset(w->ar);
        if (hrc < 0) { /* a transient failure: stop here; rerun from this offset */
            *err = herr;
            rc = -1;
            break;
        }
    }
    if (w->dry_run) bs_store_outer_rollback(w->store);
    if (w->out) fflush(w->out);
    fprintf(stderr, "replay of %s: %d %s, %d already applied (skipped), %d invalid, %d failed\n",
            topic, totals[0], w->dry_run ? "evaluated (dry run, rolled back)" : "applied",
            totals[1], totals[2], totals[3]);
    bs_consumer_close(c);
    return rc;
}

static int64_t jitter(int64_t ms)
{
    return ms / 2 + (int64_t)(rand() % (int)(ms / 2 + 1));
}

/* Between commands, every lease_reap_interval_ms: expired deployment-concurrency leases give
 * their slots back (a failure is logged and retried at the next interval). */
static void reap_leases(bs_worker *w)
{
    int64_t now = bs_now_us();
    if (now < w->next_reap_us) return;
    w->next_reap_us = now + (int64_t)w->cfg->lease_reap_interval_ms * 1000;
    bs_err err = {0};
    int leases, slots;
    if (bs_store_check(w->store, &err) < 0 ||
        bs_store_reap_leases(w->store, w->ar, &leases, &slots, &err) < 0)
        bs_log(BS_LOG_WARN, "worker", "lease reaper: %s", err.msg);
    else if (leases > 0) {
        bs_log(BS_LOG_INFO, "worker", "lease reaper: expired_leases=%d slots_freed=%d", leases,
               slots);
        bs_metrics_lock(&w->m);
        w->m.reaped_slots += (uint64_t)slots;
        bs_metrics_unlock(&w->m);
    }
    bs_arena_reset(w->ar);
}

/* systemd: READY=1 once partitions are assigned and PostgreSQL answered; WATCHDOG=1 from the
 * loop; STATUS= a one-line summary. All no-ops outside systemd. */
static void notify(bs_worker *w)
{
    int assigned = bs_consumer_assigned(w->cons);
    bs_metrics_lock(&w->m);
    w->m.assigned = assigned;
    bool db_ok = w->m.db_ok;
    bs_metrics_unlock(&w->m);
    if (!w->ready_sent && assigned > 0 && db_ok) {
        char msg[160];
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=ready: %d partitions assigned", assigned);
        bs_notify(msg);
        w->ready_sent = true;
        bs_log(BS_LOG_INFO, "worker", "ready partitions=%d", assigned);
    }
    int64_t now = bs_mono_us();
    if (w->watchdog_us > 0 && now >= w->next_watchdog_us) {
        bs_notify("WATCHDOG=1");
        w->next_watchdog_us = now + w->watchdog_us;
    }
}

static void notify_status(bs_worker *w)
{
    char msg[200];
    snprintf(msg, sizeof msg, "STATUS=%" PRIu64 " commands, %" PRIu64 " runs; %d partitions",
             w->n_commands, w->n_transitions, bs_consumer_assigned(w->cons));
    bs_notify(msg);
}

/* SIGHUP: the reloadable keys are applied; a config that does not load is not, and the log
 * says why. */
static void reload(bs_worker *w, const char *path)
{
    char *errs = NULL, *changes = NULL;
    size_t errs_len = 0, changes_len = 0;
    FILE *ef = open_memstream(&errs, &errs_len), *cf = open_memstream(&changes, &changes_len);
    int rc = bs_config_reload(w->cfg, path, ef, cf);
    fclose(ef);
    fclose(cf);
    for (char *line = strtok(changes, "\n"); line; line = strtok(NULL, "\n"))
        bs_log(BS_LOG_INFO, "worker", "reload: %s", line);
    if (rc < 0) {
        for (char *p = errs; p && *p; p++)
            if (*p == '\n' && p[1]) *p = ';';
        bs_log(BS_LOG_ERROR, "worker", "reload failed, keeping the running configuration: %s",
               errs ? errs : "");
    } else {
        bs_log_setup((bs_log_level)bs_log_level_parse(w->cfg->log_level),
                     strcmp(w->cfg->log_format, "json") == 0);
        bs_log(BS_LOG_INFO, "worker", "reloaded %s: %d key%s applied",
               path ? path : "(environment)", rc, rc == 1 ? "" : "s");
    }
    free(errs);
    free(changes);
}

int bs_worker_run(bs_worker *w, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload_flag,
                  const char *config_path, bs_err *err)
{
    bs_log(BS_LOG_INFO, "worker", "started topic=%s group=%s reply_topic=%s framing=%s",
           w->cfg->command_topic, bs_config_get_kafka(w->cfg, "group.id"), w->cfg->reply_topic,
           bs_framing_name(w->framing));
    srand((unsigned)bs_now_us());
    while (!*stop) {
        bs_err perr = {0};
        if (reload_flag && *reload_flag) {
            *reload_flag = 0;
            reload(w, config_path);
        }
        /* large commands in progress: one batch each, then a short poll for other partitions */
        large_run(w, stop);
        bs_msg *m = bs_consumer_poll(w->cons, w->nlarge ? 10 : w->cfg->poll_timeout_ms, &perr);
        bs_producer_poll(w->prod);
        notify(w);
        reap_leases(w);
        if (m == NULL) {
            if (perr.code == BS_EFATAL) {
                *err = perr;
                return -1;
            }
            continue;
        }
        int64_t backoff = w->cfg->retry_backoff_initial_ms;
        const int64_t taken_us = bs_mono_us();
        bool counted = false; /* this delivery was counted in bulkstate.delivery_attempt */
        bs_metrics_lock(&w->m);
        w->m.consumed++;
        w->m.inflight = (int)w->nlarge + 1;
        bs_metrics_unlock(&w->m);
        bs_source src = {m->topic, m->partition, m->offset};
        for (;;) {
            bs_err herr = {0};
            int attempts = 0, rc = -1;
            if (!counted && bs_store_bump_attempt(w->store, &src, &attempts, &herr) == 0) {
                counted = true;
                if (attempts > w->cfg->max_attempts) {
                    bs_err poison = {0};
                    bs_err_input(&poison, "poison_message", "",
                                 "delivery %d of this message: the previous %d ended without a "
                                 "result (worker crash, kill or timeout)",
                                 attempts, attempts - 1);
                    rc =
                        reject_message(w, m, m->command_id, NULL, "poison_message", &poison, &herr);
                } else {
                    rc = handle(w, m, &herr);
                }
            } else if (counted) {
                rc = handle(w, m, &herr);
            }
            if (rc == 0 && w->kept_msg) break; /* a large command: settled when its last batch is */
            if (rc == 0) {
                bs_metrics_lock(&w->m);
                bs_hist_observe(&w->m.latency, (double)(bs_mono_us() - taken_us) / 1e6);
                w->m.db_ok = true;
                bs_metrics_unlock(&w->m);
                notify_status(w);
                failpoint("before_offset");
                bs_err serr = {0};
                if (bs_consumer_store(w->cons, m, &serr) < 0)
                    bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
                if (!w->attempt_cleared && bs_store_clear_attempt(w->store, &src, &serr) < 0)
                    bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
                break;
            }
            if (herr.code == BS_EFATAL) {
                bs_msg_free(m);
                bs_arena_reset(w->ar);
                *err = herr;
                return -1;
            }
            /* a statement timeout is a failed delivery, not an outage: count it again */
            if (strcmp(herr.type, "statement_timeout") == 0) counted = false;
            /* transient: pause, keep polling (group membership), retry the same message */
            int64_t delay = jitter(backoff);
            bs_log(BS_LOG_WARN, "worker",
                   "transient failure partition=%" PRId32 " offset=%" PRId64
                   " retry_in_ms=%lld error=\"%s\"",
                   m->partition, m->offset, (long long)delay, herr.msg);
            bs_arena_reset(w->ar);
            bs_err dberr = {0};
            bool db_ok = bs_store_check(w->store, &dberr) == 0;
            bs_metrics_lock(&w->m);
            w->m.retries++;
            w->m.backoff = true;
            w->m.db_ok = db_ok;
            snprintf(w->m.db_error, sizeof w->m.db_error, "%s", dberr.msg);
            snprintf(w->m.backoff_error, sizeof w->m.backoff_error, "%s", herr.msg);
            bs_metrics_unlock(&w->m);
            bs_consumer_pause(w->cons, true);
            int64_t until = bs_mono_ms() + delay;
            while (!*stop && bs_mono_ms() < until) {
                bs_msg *other = bs_consumer_poll(w->cons, 100, &herr);
                if (other != NULL) /* paused: none expected; never skip one */
                    bs_consumer_rewind(w->cons, other);
                bs_msg_free(other);
                bs_producer_poll(w->prod);
                notify(w);
            }
            bs_consumer_pause(w->cons, false);
            bs_metrics_lock(&w->m);
            w->m.backoff = false;
            bs_metrics_unlock(&w->m);
            if (*stop || !bs_consumer_owns(w->cons, m)) {
                /* not settled: redelivered to whoever owns the partition. A clean stop or a
                 * rebalance is not a failed delivery: uncount it */
                bs_err uerr = {0};
                if (counted && bs_store_uncount_attempt(w->store, &src, &uerr) < 0)
                    bs_log(BS_LOG_WARN, "worker", "%s", uerr.msg);
                break;
            }
            backoff = backoff * 2 > w->cfg->retry_backoff_max_ms ? w->cfg->retry_backoff_max_ms
                                                                 : backoff * 2;
        }
        if (!w->kept_msg) bs_msg_free(m);
        w->kept_msg = false;
        w->attempt_cleared = false;
        bs_arena_reset(w->ar);
        bs_metrics_lock(&w->m);
        w->m.inflight = (int)w->nlarge; /* large commands still in progress */
        bs_metrics_unlock(&w->m);
    }
    while (w->nlarge > 0) { /* stopped between two batches: the checkpoint is in the database */
        bs_log(BS_LOG_INFO, "worker", "stopping during command_id=%s after %d batches",
               w->large[w->nlarge - 1]->cmd.command_id, w->large[w->nlarge - 1]->lg.batches);
        large_free(w, w->nlarge - 1, true);
    }
    bs_notify("STOPPING=1");
    bs_log(BS_LOG_INFO, "worker", "stopping");
    return 0;
}
