/* orch_rules: the policy rules of CoreFlowPolicy and MinimalFlowPolicy, one function each and
 * one table line each. Reason strings are Prefect's, word for word: clients read them.
 * The deployment-concurrency rules decide on facts and a slot counter the caller loads and
 * return the slot and lease changes (bs_slot_ops) for the caller to write. Pure: no I/O, no clock,
 * no malloc. */
#include <stdio.h>
#include <string.h>

#include "orch_int.h"

/* ---- primitives ---- */

static void reject_none(octx *c, const char *reason)
{
    c->d->state.type = BS_NONE;
    c->d->status = BS_REJECT;
    c->d->reason = reason;
}

static void reject_with(octx *c, int type, const char *name, const char *reason)
{
    bs_state *p = &c->d->state;
    p->id = c->in->replacement_id;
    p->type = type;
    p->name = name;
    p->message = NULL;
    p->data = NULL;
    p->data_truthy = p->data_persisted = false;
    p->timestamp = c->in->now_us;
    bs_details_init(&p->details);
    c->d->status = BS_REJECT;
    c->d->reason = reason;
}

static void abort_with(octx *c, const char *reason)
{
    c->d->state.type = BS_NONE;
    c->d->status = BS_ABORT;
    c->d->reason = reason;
}

static void wait_for(octx *c, int64_t delay, const char *reason)
{
    c->d->state.type = BS_NONE;
    c->d->status = BS_WAIT;
    c->d->delay_seconds = delay;
    c->d->reason = reason;
}

static const char *fmt(octx *c, const char *f, const char *a)
{
    snprintf(c->d->reason_buf, sizeof c->d->reason_buf, f, a);
    return c->d->reason_buf;
}

static bool none(const octx *c)
{
    return c->cur->type == BS_NONE || c->d->state.type == BS_NONE;
}

static bool name_is(const char *name, const char *want)
{
    return name != NULL && strcmp(name, want) == 0;
}

static void clear_pause_and_resume(octx *c)
{
    c->d->run.policy.resuming = false;
    c->d->run.policy.n_pause_keys = 0;
    c->d->policy_changed = true;
}

/* ---- CoreFlowPolicy ---- */

/* #1: carry the deployment concurrency lease id forward */
static void preserve_lease_id(octx *c)
{
    if (none(c)) return;
    if (!bs_uuid_null(&c->cur->details.deployment_concurrency_lease_id) &&
        bs_uuid_null(&c->d->state.details.deployment_concurrency_lease_id))
        c->d->state.details.deployment_concurrency_lease_id =
            c->cur->details.deployment_concurrency_lease_id;
}

/* #2 */
static void prevent_duplicate_transitions(octx *c)
{
    if (none(c)) return;
    const bs_uuid *a = &c->cur->details.transition_id, *b = &c->d->state.details.transition_id;
    if (!bs_uuid_null(a) && !bs_uuid_null(b) && strcmp(a->s, b->s) == 0)
        reject_none(c, "This run has already made this state transition.");
}

/* #3 */
static void handle_terminal_transitions(octx *c)
{
    const bs_state *cur = c->cur;
    bs_state *p = &c->d->state;
    if (none(c)) return;
    if (p->type == BS_CANCELLING || p->type == BS_PAUSED || p->type == BS_CRASHED) {
        abort_with(c,
                   fmt(c, "Run is already in terminal state %s.", bs_state_type_name(cur->type)));
        return;
    }
    bool persisted = cur->data_truthy && cur->data_persisted;
    if (cur->type == BS_COMPLETED && !bs_state_type_terminal(p->type) && persisted) {
        reject_none(c, "Run is already COMPLETED.");
        return;
    }
    if (cur->type == BS_COMPLETED && p->type == BS_COMPLETED && persisted && !p->data_persisted) {
        reject_none(c, "Cannot overwrite a COMPLETED state that carries persisted result data "
                       "with one that does not.");
        return;
    }
    if (p->type == BS_SCHEDULED && bs_uuid_null(&c->in->run->deployment_id)) {
        abort_with(c, "Cannot reschedule a run without an associated deployment.");
        return;
    }
    if (!bs_state_type_terminal(p->type) && bs_orch_api_at_least(c, API_0_8_4)) {
        c->d->saved_policy = c->d->run.policy;
        c->d->policy_saved = true;
        clear_pause_and_resume(c);
        c->d->run.policy.retry_type = p->type == BS_SCHEDULED ? "reschedule" : NULL;
    }
}

static void handle_terminal_transitions_cleanup(octx *c)
{
    if (c->d->policy_saved) c->d->run.policy = c->d->saved_policy;
}

/* #4 */
static void enforce_cancelling_to_cancelled(octx *c)
{
    if (none(c)) return;
    reject_none(c, "Cannot transition flows that are cancelling to a state other than Cancelled.");
}

/* #5, also in MinimalFlowPolicy */
static void bypass_cancelling_with_no_infra(octx *c)
{
    const bs_state *cur = c->cur;
    if (none(c)) return;
    if ((cur->type == BS_SCHEDULED && !c->in->run->has_infrastructure_pid) ||
        name_is(cur->name, "Resuming"))
        reject_with(c, BS_CANCELLED, "Cancelled",
                    "Scheduled flow run has no infrastructure to terminate.");
    else if (cur->type == BS_PAUSED && cur->details.pause_reschedule)
        reject_with(c, BS_CANCELLED, "Cancelled",
                    "Suspended flow run has no infrastructure to terminate.");
}

/* #6 */
static void prevent_pending_transitions(octx *c)
{
    const bs_state *cur = c->cur;
    bs_state *p = &c->d->state;
    if (none(c)) return;
    if (cur->type == BS_PENDING && p->type == BS_PENDING && !name_is(p->name, "Pending") &&
        !(cur->name && p->name && strcmp(cur->name, p->name) == 0)) {
        p->details.scheduled_time = cur->details.scheduled_time;
        p->details.deployment_concurrency_lease_id = cur->details.deployment_concurrency_lease_id;
        return;
    }
    abort_with(c, fmt(c, "This run is in a %s state and cannot transition to a PENDING state.",
                      bs_state_type_name(cur->type)));
}

/* #7, step 1: the PENDING state's lease id moves on (overwriting the proposal's). Its later
 * steps apply to clients 3.4.11 and newer; commands carry no client version, which Prefect
 * treats as 2.0.0, so they end there. */
static void validate_deployment_concurrency_at_running(octx *c)
{
    if (none(c)) return;
    c->d->state.details.deployment_concurrency_lease_id =
        c->cur->details.deployment_concurrency_lease_id;
}

/* #8: acts when C is none. A free slot is taken under a new lease whose id goes into the
 * proposal; without one the run waits in AwaitingConcurrencySlot or is cancelled, as the
 * deployment's collision strategy says. */
static void secure_flow_concurrency_slots(octx *c)
{
    const bs_run *r = c->in->run;
    bs_decision *d = c->d;
    if (d->state.type == BS_NONE || bs_uuid_null(&r->deployment_id)) return;
    if (!r->deployment_exists) {
        abort_with(c, "Deployment not found.");
        return;
    }
    if (!r->deployment_limited || bs_uuid_null(&r->concurrency_limit_id)) return;
    if (r->deployment_limit == 0) {
        abort_with(c, "The deployment concurrency limit is 0. The flow will deadlock if "
                      "submitted again.");
        return;
    }
    if (r->limit_active && r->limit_active_slots + 1 <= r->deployment_limit) {
        d->slots.acquire = true;
        d->slots.lease_id = c->in->new_lease_id;
        d->slots.lease_ttl_s = r->grace_period_s >= 0   ? r->grace_period_s
                               : c->in->lease_ttl_s > 0 ? c->in->lease_ttl_s
                                                        : 300;
        d->state.details.deployment_concurrency_lease_id = c->in->new_lease_id;
        return;
    }
    static const char reached[] = "Deployment concurrency limit reached.";
    if (r->cancel_new) {
        reject_with(c, BS_CANCELLED, "Cancelled", reached);
        d->state.message = reached;
        return;
    }
    reject_with(c, BS_SCHEDULED, "AwaitingConcurrencySlot", reached);
    d->state.details.scheduled_time =
        c->in->now_us + (c->in->slot_wait_s > 0 ? c->in->slot_wait_s : 30) * 1000000;
}

/* #8 fizzled (a later rule changed the proposal): the slot it took goes back. */
static void secure_flow_concurrency_slots_cleanup(octx *c)
{
    if (!c->d->slots.acquire) return;
    c->d->slots.acquire = false;
    if (c->d->state.type != BS_NONE)
        bs_uuid_clear(&c->d->state.details.deployment_concurrency_lease_id);
}

/* #9: commands carry no client version, which Prefect treats as older than 3.4.11: the
 * PENDING state's lease is revoked (the slot stays taken until #17 frees it). */
static void remove_lease_for_old_clients(octx *c)
{
    if (c->cur->type == BS_NONE) return;
    if (!bs_uuid_null(&c->cur->details.deployment_concurrency_lease_id))
        c->d->slots.revoke = c->cur->details.deployment_concurrency_lease_id;
}

static bool holds_slot(int type)
{
    return type == BS_PENDING || type == BS_RUNNING || type == BS_CANCELLING;
}

static void release(octx *c, const bs_uuid *limit, int64_t n)
{
    c->d->slots.release = true;
    c->d->slots.release_limit = *limit;
    c->d->slots.release_slots = n;
}

/* #17 (universal, both policies): leaving PENDING/RUNNING/CANCELLING frees the slot, through
 * the run's lease when the store has it; a lease Prefect's server holds through its API when
 * bulkstate talks to it (in.prefect_leases); else by one on the deployment's limit. A release
 * that finds no active limit row fails the transition, as Prefect's raises. */
static void release_flow_concurrency_slots(octx *c)
{
    const bs_run *r = c->in->run;
    bs_decision *d = c->d;
    const bs_state *p = &d->state;
    if (p->type == BS_NONE || !holds_slot(c->cur->type) || holds_slot(p->type)) return;
    if (p->type == BS_SCHEDULED && d->status == BS_REJECT && name_is(p->name, "AwaitingRetry"))
        return; /* an in-process retry keeps its slot */
    if (bs_uuid_null(&r->deployment_id)) return;
    const bs_uuid *lease = &c->cur->details.deployment_concurrency_lease_id;
    const bool fallback = r->deployment_exists && !bs_uuid_null(&r->concurrency_limit_id);
    if (!bs_uuid_null(lease)) {
        if (r->lease_found) {
            if (!r->lease_limit_active) goto lease_failed;
            release(c, &r->lease_limit_id, r->lease_slots);
            d->slots.revoke = *lease;
        } else if (c->in->prefect_leases) {
            if (fallback && !r->limit_active) goto lease_failed;
            d->slots.prefect_lease = *lease;
            if (fallback) d->slots.prefect_fallback_limit = r->concurrency_limit_id;
        } else if (fallback) {
            if (!r->limit_active) goto lease_failed;
            release(c, &r->concurrency_limit_id, 1);
        }
        return;
    lease_failed:
        snprintf(d->msg_buf, sizeof d->msg_buf, "Failed to release concurrency slots for lease %s",
                 lease->s);
        d->error = d->msg_buf;
        return;
    }
    if (!fallback) return;
    if (!r->limit_active) {
        d->error = "Failed to release deployment concurrency slots";
        return;
    }
    release(c, &r->concurrency_limit_id, 1);
}

/* #10 */
static void ensure_only_scheduled_marked_late(octx *c)
{
    if (none(c) || !name_is(c->d->state.name, "Late")) return;
    if (c->cur->type != BS_SCHEDULED)
        reject_none(c, "Only scheduled flows can be marked late.");
    else if (name_is(c->cur->name, "Late"))
        reject_none(c, "This flow run is already marked late.");
}

/* #11: acts when C is none */
static void handle_pausing(octx *c)
{
    bs_state *p = &c->d->state;
    const bs_run *r = c->in->run;
    const char *verb = name_is(p->name, "Suspended") ? "suspend" : "pause";
    if (p->type == BS_NONE) return;
    if (c->cur->type == BS_NONE) {
        abort_with(c, fmt(c, "Cannot %s flows with no state.", verb));
        return;
    }
    if (c->cur->type != BS_RUNNING) {
        reject_none(c, fmt(c, "Cannot %s flows that are not currently running.", verb));
        return;
    }
    const char *key = p->details.pause_key ? p->details.pause_key : c->in->random_pause_key.s;
    for (size_t i = 0; i < r->policy.n_pause_keys; i++)
        if (strcmp(r->policy.pause_keys[i], key) == 0) {
            reject_none(c, fmt(c, "This %s has already fired.", verb));
            return;
        }
    if (p->details.pause_reschedule && !bs_uuid_null(&r->parent_task_run_id)) {
        abort_with(c, fmt(c, "Cannot %s subflows.", verb));
        return;
    }
    if (p->details.pause_reschedule && bs_uuid_null(&r->deployment_id)) {
        abort_with(c, fmt(c, "Cannot %s flows without a deployment.", verb));
        return;
    }
    c->d->pause_key = key;
}

static void handle_pausing_after(octx *c)
{
    bs_policy *pol = &c->d->run.policy;
    if (c->d->pause_key == NULL || pol->n_pause_keys >= BS_MAX_PAUSE_KEYS) return;
    pol->pause_keys[pol->n_pause_keys++] = c->d->pause_key;
    c->d->policy_changed = true;
}

/* #12, as Prefect 3.9.1 has it: CANCELLING may leave any pause (a blocking pause keeps its
 * process alive, so cancellation must reach it even after the deadline) */
static void handle_resuming(octx *c)
{
    const bs_state *cur = c->cur;
    bs_state *p = &c->d->state;
    if (none(c)) return;
    if (!(p->type == BS_RUNNING || p->type == BS_SCHEDULED || p->type == BS_CANCELLING ||
          bs_state_type_terminal(p->type))) {
        /* Prefect renders the enum member (Python >= 3.11) */
        snprintf(c->d->reason_buf, sizeof c->d->reason_buf,
                 "This run cannot transition to the StateType.%s state from the StateType.%s "
                 "state.",
                 bs_state_type_name(p->type), bs_state_type_name(cur->type));
        reject_none(c, c->d->reason_buf);
        return;
    }
    /* the proposal's name, lower-cased, or its type when it has none */
    const char *src = p->name && *p->name ? p->name : bs_state_type_name(p->type);
    size_t i = 0;
    for (; src[i] && i + 1 < sizeof c->d->name_buf; i++)
        c->d->name_buf[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32 : src[i]);
    c->d->name_buf[i] = '\0';
    const char *name = c->d->name_buf;
    const char *verb = name_is(p->name, "Suspended") ? "suspend" : "pause";
    if (cur->details.pause_reschedule && bs_uuid_null(&c->in->run->deployment_id)) {
        reject_none(c, fmt(c, "Cannot reschedule a %s flow run without a deployment.", name));
        return;
    }
    if (p->type == BS_CANCELLING) return;
    if (cur->details.pause_timeout != BS_TS_NULL && cur->details.pause_timeout < c->in->now_us) {
        snprintf(c->d->msg_buf, sizeof c->d->msg_buf, "The flow was %s and never resumed.", name);
        reject_with(c, BS_FAILED, "Failed",
                    fmt(c, "The flow run %s has timed out and can no longer resume.", verb));
        c->d->state.message = c->d->msg_buf;
    }
}

/* Leaving a blocking pause for a SCHEDULED state starts a new attempt from the top: the pause
 * bookkeeping is reset. Any other exit marks the run as resuming. The state considered is the
 * one written, or the current one when nothing is. */
static void handle_resuming_after(octx *c)
{
    bs_policy *pol = &c->d->run.policy;
    int validated = c->d->write ? c->d->state.type : c->cur->type;
    if (!c->cur->details.pause_reschedule && validated == BS_SCHEDULED &&
        bs_orch_api_at_least(c, API_0_8_4)) {
        pol->resuming = false;
        pol->n_pause_keys = 0;
        pol->retry_type = "reschedule";
    } else {
        pol->resuming = true;
    }
    c->d->policy_changed = true;
}

/* #13 */
static void copy_scheduled_time(octx *c)
{
    if (none(c)) return;
    if (c->d->state.details.scheduled_time == BS_TS_NULL)
        c->d->state.details.scheduled_time = c->cur->details.scheduled_time;
}

/* #14 */
static void wait_for_scheduled_time(octx *c)
{
    if (none(c) || c->cur->details.scheduled_time == BS_TS_NULL) return;
    int64_t d = c->cur->details.scheduled_time - c->in->now_us;
    int64_t secs = d / 1000000, rem = d % 1000000;
    if (rem < 0) {
        rem += 1000000;
        secs -= 1;
    }
    int64_t delay = secs + (rem > 500000 ? 1 : 0);
    if (delay > 0) wait_for(c, delay, "Scheduled time is in the future");
}

/* #15 */
static void retry_failed_flows(octx *c)
{
    bs_policy *pol = &c->d->run.policy;
    const bs_state proposal = c->d->state;
    if (none(c)) return;
    int64_t retries = pol->retries, delay = pol->retry_delay;
    if (retries <= 0 && pol->max_retries != 0) retries = pol->max_retries;
    if (delay <= 0 && pol->retry_delay_seconds != 0) delay = (int64_t)pol->retry_delay_seconds;
    if (retries < 0 || c->in->run->run_count > retries) {
        if (pol->retry_type != NULL) {
            pol->retry_type = NULL;
            c->d->policy_changed = true;
        }
        return;
    }
    if (bs_orch_api_at_least(c, API_0_8_4)) {
        clear_pause_and_resume(c);
        pol->retry_type = "in_process";
    }
    reject_with(c, BS_SCHEDULED, "AwaitingRetry", "Retrying");
    c->d->state.details.scheduled_time = c->in->now_us + (delay > 0 ? delay : 0) * 1000000;
    c->d->state.message = proposal.message;
    c->d->state.data = proposal.data;
    c->d->state.data_truthy = proposal.data_truthy;
    c->d->state.data_persisted = proposal.data_persisted;
}

/* MinimalFlowPolicy: PreventResultDataLoss */
static void prevent_result_data_loss(octx *c)
{
    const bs_state *cur = c->cur;
    if (none(c)) return;
    if (cur->type == BS_COMPLETED && c->d->state.type == BS_COMPLETED && cur->data_truthy &&
        cur->data_persisted && !c->d->state.data_persisted)
        reject_none(c, "Cannot overwrite a COMPLETED state that carries persisted result data "
                       "with one that does not.");
}

#define FROM_TO(f, t) f, t, false

const orch_rule BS_CORE_FLOW_POLICY[] = {
    {"PreserveDeploymentConcurrencyLeaseId", M_ALL, M_ALL, true, preserve_lease_id, NULL, NULL},
    {"PreventDuplicateTransitions", FROM_TO(M_ALL, M_ALL), prevent_duplicate_transitions, NULL,
     NULL},
    {"HandleFlowTerminalStateTransitions", FROM_TO(M_TERMINAL, M_ALL), handle_terminal_transitions,
     NULL, handle_terminal_transitions_cleanup},
    {"EnforceCancellingToCancelledTransition", FROM_TO(M(BS_CANCELLING), M_ALL & ~M(BS_CANCELLED)),
     enforce_cancelling_to_cancelled, NULL, NULL},
    {"BypassCancellingFlowRunsWithNoInfra",
     FROM_TO(M(BS_SCHEDULED) | M(BS_PAUSED), M(BS_CANCELLING)), bypass_cancelling_with_no_infra,
     NULL, NULL},
    {"PreventPendingTransitions",
     FROM_TO(M(BS_PENDING) | M(BS_CANCELLING) | M(BS_RUNNING) | M(BS_CANCELLED), M(BS_PENDING)),
     prevent_pending_transitions, NULL, NULL},
    {"ValidateDeploymentConcurrencyAtRunning", FROM_TO(M(BS_PENDING), M(BS_RUNNING)),
     validate_deployment_concurrency_at_running, NULL, NULL},
    {"SecureFlowConcurrencySlots",
     FROM_TO(M_ALL & ~(M(BS_PENDING) | M(BS_RUNNING) | M(BS_CANCELLING)), M(BS_PENDING)),
     secure_flow_concurrency_slots, NULL, secure_flow_concurrency_slots_cleanup},
    {"RemoveDeploymentConcurrencyLeaseForOldClientVersions",
     FROM_TO(M(BS_PENDING), M(BS_RUNNING) | M(BS_CANCELLING)), NULL, remove_lease_for_old_clients,
     NULL},
    {"EnsureOnlyScheduledFlowsMarkedLate", FROM_TO(M_ALL, M(BS_SCHEDULED)),
     ensure_only_scheduled_marked_late, NULL, NULL},
    {"HandlePausingFlows", FROM_TO(M_ALL, M(BS_PAUSED)), handle_pausing, handle_pausing_after,
     NULL},
    {"HandleResumingPausedFlows", FROM_TO(M(BS_PAUSED), M_ALL), handle_resuming,
     handle_resuming_after, NULL},
    {"CopyScheduledTime", FROM_TO(M(BS_SCHEDULED), M(BS_PENDING)), copy_scheduled_time, NULL, NULL},
    {"WaitForScheduledTime", FROM_TO(M(BS_SCHEDULED) | M(BS_PENDING), M(BS_RUNNING)),
     wait_for_scheduled_time, NULL, NULL},
    {"RetryFailedFlows", FROM_TO(M(BS_RUNNING), M(BS_FAILED)), retry_failed_flows, NULL, NULL},
    {"ReleaseFlowConcurrencySlots", M_ALL, M_ALL, true, NULL, release_flow_concurrency_slots, NULL},
};
const int BS_CORE_FLOW_POLICY_LEN = sizeof BS_CORE_FLOW_POLICY / sizeof BS_CORE_FLOW_POLICY[0];

const orch_rule BS_MINIMAL_FLOW_POLICY[] = {
    {"PreserveDeploymentConcurrencyLeaseId", M_ALL, M_ALL, true, preserve_lease_id, NULL, NULL},
    {"PreventResultDataLoss", FROM_TO(M_TERMINAL, M_TERMINAL), prevent_result_data_loss, NULL,
     NULL},
    {"BypassCancellingFlowRunsWithNoInfra",
     FROM_TO(M(BS_SCHEDULED) | M(BS_PAUSED), M(BS_CANCELLING)), bypass_cancelling_with_no_infra,
     NULL, NULL},
    {"ReleaseFlowConcurrencySlots", M_ALL, M_ALL, true, NULL, release_flow_concurrency_slots, NULL},
};
const int BS_MINIMAL_FLOW_POLICY_LEN =
    sizeof BS_MINIMAL_FLOW_POLICY / sizeof BS_MINIMAL_FLOW_POLICY[0];
