/* batch: see batch.h. Pure. */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void bs_batch_alloc(bs_batch *b, bs_arena *ar, size_t n)
{
    const size_t cap = n ? n : 1;
    b->n = n;
    b->runs = bs_arena_alloc(ar, sizeof *b->runs * cap);
    b->found = bs_arena_alloc(ar, sizeof *b->found * cap);
    b->skip = bs_arena_alloc(ar, sizeof *b->skip * cap);
    b->d = bs_arena_alloc(ar, sizeof *b->d * cap);
    b->wr = bs_arena_alloc(ar, sizeof *b->wr * cap);
    b->status = bs_arena_alloc(ar, sizeof *b->status * cap);
    b->reason = bs_arena_alloc(ar, sizeof *b->reason * cap);
    b->written = bs_arena_alloc(ar, sizeof *b->written * cap);
    b->write_failed = bs_arena_alloc(ar, sizeof *b->write_failed * cap);
    b->limits = NULL;
    b->nlimits = 0;
}

void bs_batch_artifact(bs_arena *ar, const bs_decision *d, bs_write *wr, const bs_uuid *art_id)
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

/* The proposal of cmd for one run, at now. */
static void proposal(const bs_command *cmd, const bs_uuid *id, int64_t now, bs_state *p)
{
    memset(p, 0, sizeof *p);
    p->id = *id;
    p->type = cmd->state_type;
    p->name = cmd->state_name ? cmd->state_name : bs_state_type_default_name(cmd->state_type);
    p->message = cmd->state_message;
    p->data = cmd->state_data;
    p->data_truthy = cmd->data_truthy;
    p->data_persisted = cmd->data_persisted;
    p->details = cmd->details; /* a fresh copy per run (Prefect shares one: see docs) */
    p->timestamp = now;
}

static void decide_one(bs_batch *b, size_t i, const bs_command *cmd, const bs_batch_env *env,
                       bs_arena *ar)
{
    const char *run = b->ids[i];
    const int64_t now = env->now_us(env->ctx);
    bs_uuid state_id;
    env->new_id(env->ctx, run, "state", now, true, &state_id);
    bs_state p;
    proposal(cmd, &state_id, now, &p);
    bs_orch_input in = {.run = &b->runs[i],
                        .proposal = &p,
                        .force = cmd->force,
                        .api_version = 0,
                        .now_us = now,
                        .slot_wait_s = env->slot_wait_s,
                        .lease_ttl_s = env->lease_ttl_s,
                        .prefect_leases = env->prefect_leases};
    env->new_id(env->ctx, run, "replacement", now, true, &in.replacement_id);
    env->new_id(env->ctx, run, "pause-key", now, false, &in.random_pause_key);
    env->new_id(env->ctx, run, "lease", now, false, &in.new_lease_id);
    if (!bs_uuid_null(&b->runs[i].parent_task_run_id)) /* a subflow: G11 copies its state */
        env->new_id(env->ctx, run, "task-state", now, true, &in.task_state_id);
    bs_limit_view *v = bs_limit_find(b->limits, b->nlimits, &b->runs[i].concurrency_limit_id);
    if (v) b->runs[i].limit_active_slots = v->now;
    bs_decision *d = &b->d[i];
    bs_orch_decide(&in, d);
    bs_limit_apply(b->limits, b->nlimits, &b->runs[i], &d->slots);
    b->wr[i].d = d;
    bs_uuid art;
    env->new_id(env->ctx, run, "artifact", now, true, &art);
    bs_batch_artifact(ar, d, &b->wr[i], &art);
    if (d->task_write && b->wr[i].artifact_id) {
        env->new_id(env->ctx, run, "task-artifact", now, true, &art);
        b->wr[i].task_artifact_id = bs_arena_strdup(ar, art.s);
    }
    b->status[i] = d->status;
    b->reason[i] = d->reason ? bs_arena_strdup(ar, d->reason) : NULL;
    b->written[i] = d->write;
}

void bs_batch_decide(bs_batch *b, const bs_command *cmd, const bs_batch_env *env, bs_arena *ar)
{
    for (size_t i = 0; i < b->n; i++) {
        b->write_failed[i] = false;
        if (b->found[i] && !b->skip[i]) {
            decide_one(b, i, cmd, env, ar);
            continue;
        }
        memset(&b->d[i], 0, sizeof b->d[i]);
        b->wr[i].d = NULL;
        b->written[i] = false;
        b->status[i] = BS_ABORT;
        b->reason[i] = !b->found[i]
                           ? bs_arena_printf(ar, "Flow run with id %s not found", b->ids[i])
                           : "Flow run no longer matches the command's filter";
    }
}

void bs_batch_write_failed(bs_batch *b, size_t i, const char *why, bs_arena *ar)
{
    b->status[i] = BS_ABORT;
    b->reason[i] = bs_arena_printf(ar, "Error validating state: %s", why);
    b->written[i] = false;
    b->write_failed[i] = true;
}

void bs_batch_result(const bs_batch *b, size_t i, const char *command_id, int seq, int total,
                     bs_result *r)
{
    const bs_state *state = NULL;
    if (b->written[i])
        state = &b->d[i].state;
    else if (b->found[i] && !b->write_failed[i])
        state = &b->runs[i].current;
    *r = (bs_result){.command_id = command_id,
                     .seq = seq,
                     .total = total,
                     .flow_run_id = b->ids[i],
                     .status = b->status[i],
                     .state = state,
                     .reason = b->reason[i],
                     .delay_seconds = b->found[i] ? b->d[i].delay_seconds : 0};
}

void bs_batch_count(const bs_batch *b, int counts[4])
{
    for (size_t i = 0; i < b->n; i++)
        counts[b->status[i]]++;
}
