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

static void g_times(octx *c)
{
    const bs_state *p = &c->d->state, *cur = c->cur;
    bs_run *r = &c->d->run;
    /* SetStartTime */
    if (p->type == BS_RUNNING && r->start_time == BS_TS_NULL) r->start_time = p->timestamp;
    /* SetEndTime */
    if (bs_state_type_terminal(cur->type) && !bs_state_type_terminal(p->type))
        r->end_time = BS_TS_NULL;
    if (bs_state_type_terminal(p->type) && r->end_time == BS_TS_NULL) {
        if (r->start_time == BS_TS_NULL) r->start_time = p->timestamp;
        r->end_time = p->timestamp;
    }
    /* IncrementRunTime */
    if (cur->type == BS_RUNNING) r->total_run_time_us += p->timestamp - cur->timestamp;
    /* SetExpectedStartTime */
    if (r->expected_start_time == BS_TS_NULL)
        r->expected_start_time = p->type == BS_SCHEDULED ? p->details.scheduled_time : p->timestamp;
    /* SetNextScheduledStartTime */
    if (cur->type == BS_SCHEDULED) r->next_scheduled_start_time = BS_TS_NULL;
    if (p->type == BS_SCHEDULED) r->next_scheduled_start_time = p->details.scheduled_time;
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

/* G2-G4 (state_type, state_name, state_timestamp) mirror the written state: the store writes
 * them from d->state. G11 (parent task run state) is not ported, see README. */
static orch_hook *const GLOBAL_FLOW_POLICY[] = {g_unique_timestamp, g_times, g_details,
                                                g_run_count};

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

    /* G11 (UpdateSubflowParentTask) force-sets the parent task run's state through the task-run
     * policy, which is not ported: a subflow's transition is refused rather than written
     * without its parent task's */
    if (d->state.type != BS_NONE && !bs_uuid_null(&in->run->parent_task_run_id)) {
        snprintf(d->reason_buf, sizeof d->reason_buf,
                 "bulkstate does not update a subflow's parent task run yet: flow run %s has "
                 "parent task run %s",
                 in->run->id.s, in->run->parent_task_run_id.s);
        d->reason = d->reason_buf;
        d->status = BS_ABORT;
        d->state.type = BS_NONE; /* earlier live rules fizzle below */
        memset(&d->slots, 0, sizeof d->slots);
    }

    if (d->state.type != BS_NONE) {
        for (size_t g = 0; g < sizeof GLOBAL_FLOW_POLICY / sizeof GLOBAL_FLOW_POLICY[0]; g++)
            GLOBAL_FLOW_POLICY[g](&c);
        d->write = true;
    }

    for (int i = (n < 32 ? n : 32) - 1; i >= 0; i--) {
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
        d->write = d->policy_changed = false;
        d->state.type = BS_NONE;
        d->run = *in->run;
        memset(&d->slots, 0, sizeof d->slots);
    }
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
