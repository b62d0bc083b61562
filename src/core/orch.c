/* orch: the pipeline of spec §1.4: select the policy's rules by the original (from, to) pair,
 * run live rules' before hooks in order (a rule that changes the proposal's type silences the
 * later rules and fizzles the earlier ones), apply the global transforms to the final
 * proposal, then run after hooks / cleanups in reverse order. Pure: no I/O, clock or malloc. */
#include "orch.h"

#include <stdio.h>
#include <string.h>

#include "orch_int.h"

const char *bs_status_name(bs_status s)
{
    static const char *const n[] = {"ACCEPT", "REJECT", "WAIT", "ABORT"};
    return n[s];
}

const char *bs_status_details_type(bs_status s)
{
    static const char *const n[] = {"accept_details", "reject_details", "wait_details",
                                    "abort_details"};
    return n[s];
}

bool bs_orch_api_at_least(const octx *c, int64_t v)
{
    return c->in->api_version == 0 || c->in->api_version >= v;
}

int64_t bs_orch_parse_api_version(const char *s)
{
    long a, b, z;
    char tail;
    if (s == NULL || sscanf(s, "%ld.%ld.%ld%c", &a, &b, &z, &tail) != 3 || a < 0 || b < 0 ||
        z < 0 || b > 999 || z > 999)
        return -1;
    return (int64_t)a * 1000000 + b * 1000 + z;
}

/* ---- global transforms (GlobalFlowPolicy), applied to the final proposal ---- */

static void g_unique_timestamp(octx *c)
{
    bs_state *p = &c->d->state;
    const bs_run *r = c->in->run;
    for (bool bumped = true; bumped;) {
        bumped = false;
        for (size_t i = 0; i < r->n_taken_ts; i++)
            if (r->taken_ts[i] == p->timestamp) {
                p->timestamp += 1;
                bumped = true;
            }
    }
}

/* SetStartTime, SetEndTime, IncrementRunTime, SetExpectedStartTime, SetNextScheduledStartTime:
 * shared by flow runs and task runs (Prefect's COMMON_GLOBAL_TRANSFORMS). */
typedef struct run_times {
    int64_t *start, *end, *total, *expected, *next;
} run_times;

static void apply_times(int cur_type, int64_t cur_ts, const bs_state *p, run_times t)
{
    /* SetStartTime */
    if (p->type == BS_RUNNING && *t.start == BS_TS_NULL) *t.start = p->timestamp;
    /* SetEndTime */
    if (bs_state_type_terminal(cur_type) && !bs_state_type_terminal(p->type)) *t.end = BS_TS_NULL;
    if (bs_state_type_terminal(p->type) && *t.end == BS_TS_NULL) {
        if (*t.start == BS_TS_NULL) *t.start = p->timestamp;
        *t.end = p->timestamp;
    }
    /* IncrementRunTime */
    if (cur_type == BS_RUNNING) *t.total += p->timestamp - cur_ts;
    /* SetExpectedStartTime */
    if (*t.expected == BS_TS_NULL)
        *t.expected = p->type == BS_SCHEDULED ? p->details.scheduled_time : p->timestamp;
    /* SetNextScheduledStartTime */
    if (cur_type == BS_SCHEDULED) *t.next = BS_TS_NULL;
    if (p->type == BS_SCHEDULED) *t.next = p->details.scheduled_time;
}

static void g_times(octx *c)
{
    bs_run *r = &c->d->run;
    apply_times(c->cur->type, c->cur->timestamp, &c->d->state,
                (run_times){&r->start_time, &r->end_time, &r->total_run_time_us,
                            &r->expected_start_time, &r->next_scheduled_start_time});
}

static void g_details(octx *c)
{
    bs_state *p = &c->d->state;
    const bs_run *r = c->in->run;
    /* UpdateStateDetails */
    p->details.flow_run_id = r->id;
    /* UpdateSubflowStateDetails */
    if (!bs_uuid_null(&r->parent_task_run_id)) p->details.task_run_id = r->parent_task_run_id;
}

static void g_run_count(octx *c)
{
    const bs_state *p = &c->d->state;
    bs_run *r = &c->d->run;
    bool api_new = bs_orch_api_at_least(c, API_0_8_4);
    /* IncrementFlowRunCount */
    if (p->type == BS_RUNNING && !(api_new && r->policy.resuming)) r->run_count += 1;
    /* RemoveResumingIndicator */
    if (api_new && (p->type == BS_RUNNING || bs_state_type_terminal(p->type)) &&
        r->policy.resuming) {
        r->policy.resuming = false;
        c->d->policy_changed = true;
    }
}

/* Prefect's GlobalFlowPolicy, in its order: each transform with the hook that implements it.
 * Several transforms share a hook (it runs once, at its first name). SetRunStateType, -Name
 * and -Timestamp have none: the store writes the run's mirror columns from d->state.
 * UpdateSubflowParentTask works after the write (its before hook is a no-op in Prefect), so it
 * runs in the after pass. */
static void g_parent_task(octx *c);

typedef struct global_transform {
    const char *name;
    orch_hook *before; /* NULL: none here */
    orch_hook *after;
} global_transform;

static const global_transform GLOBAL_FLOW_POLICY[] = {
    {"EnsureFlowRunStateTimestampIsUnique", g_unique_timestamp, NULL},
    {"SetRunStateType", NULL, NULL},
    {"SetRunStateName", NULL, NULL},
    {"SetRunStateTimestamp", NULL, NULL},
    {"SetStartTime", g_times, NULL},
    {"SetEndTime", g_times, NULL},
    {"IncrementRunTime", g_times, NULL},
    {"SetExpectedStartTime", g_times, NULL},
    {"SetNextScheduledStartTime", g_times, NULL},
    {"UpdateStateDetails", g_details, NULL},
    {"UpdateSubflowParentTask", NULL, g_parent_task},
    {"UpdateSubflowStateDetails", g_details, NULL},
    {"IncrementFlowRunCount", g_run_count, NULL},
    {"RemoveResumingIndicator", g_run_count, NULL},
};
#define NGLOBAL (sizeof GLOBAL_FLOW_POLICY / sizeof GLOBAL_FLOW_POLICY[0])

/* Runs the before (after: the after) hooks of the global transforms, each hook once. */
static void run_globals(octx *c, bool after)
{
    orch_hook *done[NGLOBAL];
    size_t ndone = 0;
    for (size_t g = 0; g < NGLOBAL; g++) {
        orch_hook *h = after ? GLOBAL_FLOW_POLICY[g].after : GLOBAL_FLOW_POLICY[g].before;
        bool seen = h == NULL;
        for (size_t k = 0; k < ndone && !seen; k++)
            seen = done[k] == h;
        if (seen) continue;
        done[ndone++] = h;
        h(c);
    }
}

/* What G11 cannot do faithfully, checked on the final proposal before anything is written: a
 * reason to refuse the transition, or NULL. */
static const char *parent_task_refusal(const bs_orch_input *in, bs_decision *d)
{
    const bs_run *r = in->run;
    const bs_task_run *t = r->parent_task;
    if (d->state.type == BS_NONE || bs_uuid_null(&r->parent_task_run_id)) return NULL;
    if (d->state.details.deferred == 1) {
        /* Prefect's task-run layer would pick its background-task rule set despite force */
        snprintf(d->reason_buf, sizeof d->reason_buf,
                 "bulkstate does not apply Prefect's background task policy: the state sets "
                 "deferred and flow run %s has parent task run %s",
                 r->id.s, r->parent_task_run_id.s);
        return d->reason_buf;
    }
    if (!in->prefect_leases && t != NULL && t->found && t->tag_v2_limits != NULL &&
        d->state.type != BS_RUNNING && d->state.type != BS_CANCELLING) {
        /* ReleaseTaskConcurrencySlots would release the task run's leases on these limits,
         * which only Prefect's server can do (with [prefect] api_url set, it is asked to) */
        snprintf(d->reason_buf, sizeof d->reason_buf,
                 "bulkstate cannot release tag concurrency leases held in Prefect's server "
                 "memory: parent task run %s of flow run %s has tag limits with slots in use: "
                 "%.80s",
                 r->parent_task_run_id.s, r->id.s, t->tag_v2_limits);
        return d->reason_buf;
    }
    return NULL;
}

/* G11 UpdateSubflowParentTask (after the write): the parent task run gets a copy of the written
 * state (new id, the clock's timestamp, child_flow_run_id = the subflow), set with force: the
 * task-run minimal policy (ReleaseTaskConcurrencySlots) and GlobalTaskPolicy. */
static void g_parent_task(octx *c)
{
    const bs_run *r = c->in->run;
    bs_decision *d = c->d;
    if (bs_uuid_null(&r->parent_task_run_id)) return;
    const bs_task_run *t = r->parent_task;
    if (t == NULL || !t->found) {
        /* Prefect raises; its bulk endpoint answers the error */
        snprintf(d->msg_buf, sizeof d->msg_buf, "Task run with id %s not found",
                 r->parent_task_run_id.s);
        d->error = d->msg_buf;
        return;
    }
    bs_state *ts = &d->task_state;
    *ts = d->state;
    ts->id = c->in->task_state_id;
    ts->timestamp = c->in->now_us;
    /* (task_run_id, timestamp) is unique: with a fixed clock (replay) two copies could meet */
    if (t->state_type != BS_NONE && ts->timestamp == t->state_timestamp) ts->timestamp += 1;
    ts->details.child_flow_run_id = r->id;
    /* UpdateStateDetails for a task run */
    ts->details.flow_run_id = t->flow_run_id;
    ts->details.task_run_id = t->id;
    d->task = *t;
    apply_times(t->state_type, t->state_timestamp, ts,
                (run_times){&d->task.start_time, &d->task.end_time, &d->task.total_run_time_us,
                            &d->task.expected_start_time, &d->task.next_scheduled_start_time});
    /* IncrementTaskRunCount */
    if (ts->type == BS_RUNNING) d->task.run_count += 1;
    /* ReleaseTaskConcurrencySlots (after): leaving RUNNING/CANCELLING frees its tag slots */
    d->task_release_v1 = ts->type != BS_RUNNING && ts->type != BS_CANCELLING && t->has_tags;
    d->task_release_v2 = d->task_release_v1 && t->tag_v2_limits != NULL && c->in->prefect_leases;
    d->task_write = true;
}

void bs_orch_decide(const bs_orch_input *in, bs_decision *d)
{
    const orch_rule *rules = in->force ? BS_MINIMAL_FLOW_POLICY : BS_CORE_FLOW_POLICY;
    const int n = in->force ? BS_MINIMAL_FLOW_POLICY_LEN : BS_CORE_FLOW_POLICY_LEN;
    bool selected[32] = {0}, live[32] = {0};
    int remembered_to[32];
    octx c = {.in = in, .cur = &in->run->current, .d = d};

    memset(d, 0, sizeof *d);
    d->status = BS_ACCEPT;
    d->state = *in->proposal;
    d->run = *in->run;

    const int from = in->run->current.type, to = in->proposal->type;
    for (int i = 0; i < n && i < 32; i++) {
        const orch_rule *r = &rules[i];
        selected[i] = r->universal || ((r->from & M(from)) && (r->to & M(to)));
        remembered_to[i] = to;
        if (!selected[i]) continue;
        if (r->universal) {
            if (r->before) r->before(&c);
            continue;
        }
        if (d->state.type != remembered_to[i])
            continue; /* an earlier rule changed the proposal: this one is skipped */
        live[i] = true;
        if (r->before) r->before(&c);
        remembered_to[i] = d->state.type;
    }

    const char *refusal = parent_task_refusal(in, d);
    if (refusal != NULL) {
        d->reason = refusal;
        d->status = BS_ABORT;
        d->state.type = BS_NONE; /* earlier live rules fizzle below */
        memset(&d->slots, 0, sizeof d->slots);
    }

    if (d->state.type != BS_NONE) {
        run_globals(&c, false);
        d->write = true;
        run_globals(&c, true); /* the global transforms' after hooks run before the rules' */
    }

    for (int i = (n < 32 ? n : 32) - 1; i >= 0 && d->error == NULL; i--) {
        const orch_rule *r = &rules[i];
        if (!selected[i]) continue;
        if (r->universal) {
            if (r->after) r->after(&c);
            continue;
        }
        if (!live[i] || !(r->to & M(remembered_to[i]))) continue;
        if (remembered_to[i] != d->state.type) {
            if (r->cleanup) r->cleanup(&c); /* fizzled: a later rule changed the proposal */
        } else if (r->after) {
            r->after(&c);
        }
        if (d->error) break;
    }
    if (d->error) { /* Prefect's bulk endpoint answers a raised error with ABORT, rolled back */
        d->status = BS_ABORT;
        d->reason = d->error;
        d->write = d->policy_changed = d->task_write = d->task_release_v1 = d->task_release_v2 =
            false;
        d->state.type = BS_NONE;
        d->run = *in->run;
        memset(&d->slots, 0, sizeof d->slots);
    }
}

const char *const *bs_orch_global_names(void)
{
    static const char *names[NGLOBAL + 1];
    for (size_t g = 0; g < NGLOBAL; g++)
        names[g] = GLOBAL_FLOW_POLICY[g].name;
    names[NGLOBAL] = NULL;
    return names;
}

const char *const *bs_orch_rule_names(bool force)
{
    static const char *core[40], *minimal[16];
    const char **out = force ? minimal : core;
    const orch_rule *rules = force ? BS_MINIMAL_FLOW_POLICY : BS_CORE_FLOW_POLICY;
    int n = force ? BS_MINIMAL_FLOW_POLICY_LEN : BS_CORE_FLOW_POLICY_LEN;
    for (int i = 0; i < n; i++)
        out[i] = rules[i].name;
    out[n] = NULL;
    return out;
}
