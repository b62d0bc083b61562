/* Conformance cases of orchestration.md §4 on the pure engine, each named by its id and the
 * Prefect test it comes from: 79 of the 83. Not here: K16 and Z12 (other endpoints:
 * POST /flow_runs/ and /resume), Q08 and Q09 (lease renewal for clients 3.4.11 and newer;
 * commands carry no client version). S04 and P05 are API sequences, replayed here as engine
 * steps. */
#include "../t.h"
#include "orch.h"
#include "slots.h"

#define S 1000000LL
static const int64_t NOW = 1700000000LL * S;
static const char *const DEP = "77777777-7777-4777-8777-777777777777";

typedef struct fx {
    bs_run run;
    bs_state p;
    bs_orch_input in;
    bs_decision d;
} fx;

static fx *given(int cur, const char *cur_name, int to, const char *to_name, bool force)
{
    static fx f;
    memset(&f, 0, sizeof f);
    snprintf(f.run.id.s, sizeof f.run.id.s, "%s", "11111111-1111-4111-8111-111111111111");
    f.run.expected_start_time = f.run.next_scheduled_start_time = BS_TS_NULL;
    f.run.start_time = f.run.end_time = BS_TS_NULL;
    bs_policy_init(&f.run.policy);
    f.run.current.type = cur;
    f.run.current.name = cur_name ? cur_name : bs_state_type_default_name(cur);
    f.run.current.timestamp = NOW - 5 * S;
    bs_details_init(&f.run.current.details);
    f.p.type = to;
    f.p.name = to_name ? to_name : bs_state_type_default_name(to);
    f.p.timestamp = NOW;
    bs_details_init(&f.p.details);
    f.in.run = &f.run;
    f.in.proposal = &f.p;
    f.in.force = force;
    f.in.now_us = NOW;
    snprintf(f.in.replacement_id.s, 37, "%s", "44444444-4444-4444-8444-444444444444");
    snprintf(f.in.random_pause_key.s, 37, "%s", "55555555-5555-4555-8555-555555555555");
    return &f;
}

static void with_deployment(fx *f)
{
    snprintf(f->run.deployment_id.s, 37, "%s", DEP);
    f->run.deployment_exists = true;
}

static bs_decision *when(fx *f)
{
    bs_orch_decide(&f->in, &f->d);
    return &f->d;
}

static const char *const LIM = "66666666-6666-4666-8666-666666666666";

static void with_limit(fx *f, int64_t limit, int64_t active_slots)
{
    with_deployment(f);
    snprintf(f->run.concurrency_limit_id.s, 37, "%s", LIM);
    f->run.deployment_limited = f->run.limit_active = true;
    f->run.deployment_limit = limit;
    f->run.limit_active_slots = active_slots;
    f->run.grace_period_s = -1;
}

/* The caller's part, through the worker's own slot function (slots.c): a decision's slot
 * changes applied to the count of the run's limit. */
static int64_t apply_slots(const bs_decision *d, int64_t active)
{
    bs_limit_view v = {.start = active, .now = active};
    snprintf(v.id.s, sizeof v.id.s, "%s", LIM);
    bs_limit_apply(&v, 1, &d->run, &d->slots);
    return v.now;
}

#define EXPECT(id, d, st, rsn)                                                                     \
    do {                                                                                           \
        if ((d)->status != (st))                                                                   \
            fprintf(stderr, "%s: status %s\n", id, bs_status_name((d)->status));                   \
        CHECK_INT((d)->status, st);                                                                \
        CHECK_STR((d)->reason, rsn);                                                               \
    } while (0)

int main(void)
{
    fx *f;
    bs_decision *d;

    /* K02 test_rule_sets_scheduled_time / test_rule_sets_expected_start_time_from_scheduled */
    f = given(BS_NONE, NULL, BS_SCHEDULED, NULL, false);
    f->p.details.scheduled_time = NOW + 42 * S;
    d = when(f);
    EXPECT("K02", d, BS_ACCEPT, NULL);
    CHECK_INT(d->run.next_scheduled_start_time, NOW + 42 * S);
    CHECK_INT(d->run.expected_start_time, NOW + 42 * S);
    CHECK_INT(d->run.start_time, BS_TS_NULL);

    /* K03 test_scheduled_time_copied_from_scheduled_to_pending (core), forced: not copied */
    for (int force = 0; force < 2; force++) {
        f = given(BS_SCHEDULED, NULL, BS_PENDING, NULL, force);
        f->run.current.details.scheduled_time = NOW + 42 * S;
        f->run.next_scheduled_start_time = NOW + 42 * S;
        d = when(f);
        EXPECT("K03", d, BS_ACCEPT, NULL);
        CHECK_INT(d->run.next_scheduled_start_time, BS_TS_NULL);
        CHECK_INT(d->state.details.scheduled_time, force ? BS_TS_NULL : NOW + 42 * S);
    }

    /* K05 test_rule_increments_run_count */
    f = given(BS_PENDING, NULL, BS_RUNNING, NULL, false);
    f->run.run_count = 41;
    d = when(f);
    CHECK_INT(d->run.run_count, 42);

    /* K06 test_rule_updates_run_time_after_running / ..._sets_end_time_when_run_ends */
    f = given(BS_RUNNING, NULL, BS_COMPLETED, NULL, false);
    f->run.current.timestamp = NOW - 42 * S;
    f->run.start_time = NOW - 42 * S;
    d = when(f);
    CHECK_INT(d->run.total_run_time_us, 42 * S);
    CHECK_INT(d->run.end_time, NOW);

    /* K07 test_rule_doesnt_update_run_time_when_not_running */
    f = given(BS_PENDING, NULL, BS_COMPLETED, NULL, false);
    d = when(f);
    CHECK_INT(d->run.total_run_time_us, 0);
    CHECK_INT(d->run.start_time, NOW);
    CHECK_INT(d->run.end_time, NOW);

    /* K09 test_rule_unsets_end_time_when_forced_out_of_terminal_state */
    static const int terminal[] = {BS_COMPLETED, BS_FAILED, BS_CANCELLED, BS_CRASHED};
    for (int i = 0; i < 4; i++)
        for (int force = 0; force < 2; force++) {
            f = given(terminal[i], NULL, BS_RUNNING, NULL, force);
            f->run.end_time = NOW - S;
            d = when(f);
            EXPECT("K09", d, BS_ACCEPT, NULL);
            CHECK_INT(d->run.end_time, BS_TS_NULL);
            CHECK_INT(d->run.run_count, 1);
        }

    /* K10 test_rule_does_not_modify_end_time_when_transitioning_from_final_to_final */
    f = given(BS_COMPLETED, NULL, BS_FAILED, NULL, false);
    f->run.end_time = NOW - 7 * S;
    d = when(f);
    CHECK_INT(d->run.end_time, NOW - 7 * S);

    /* K14 test_update_subflow_parent_task, test_child_flow_run_states_include_parent_task_run_id:
     * a subflow RUNNING -> FAILED, its parent task run RUNNING */
    {
        static bs_task_run parent;
        memset(&parent, 0, sizeof parent);
        parent.found = true;
        snprintf(parent.id.s, 37, "%s", "88888888-8888-4888-8888-888888888888");
        parent.state_type = BS_RUNNING;
        parent.state_timestamp = NOW - 10 * S;
        parent.start_time = parent.expected_start_time = NOW - 10 * S;
        parent.end_time = parent.next_scheduled_start_time = BS_TS_NULL;
        parent.run_count = 1;
        f = given(BS_RUNNING, NULL, BS_FAILED, NULL, false);
        f->run.parent_task_run_id = parent.id;
        f->run.parent_task = &parent;
        d = when(f);
        EXPECT("K14", d, BS_ACCEPT, NULL);
        CHECK_STR(d->state.details.task_run_id.s, parent.id.s);
        CHECK(d->task_write);
        CHECK_INT(d->task_state.type, BS_FAILED);
        CHECK_STR(d->task_state.details.child_flow_run_id.s, f->run.id.s);
        CHECK_INT(d->task.end_time, NOW);
        CHECK_INT(d->task.total_run_time_us, 10 * S);
    }

    /* K15 test_running_resuming_flow_does_not_increment_run_count */
    f = given(BS_PENDING, NULL, BS_RUNNING, NULL, false);
    f->run.run_count = 42;
    f->run.policy.resuming = true;
    d = when(f);
    CHECK_INT(d->run.run_count, 42);
    CHECK(!d->run.policy.resuming);

    /* S02 test_running_before_scheduled_start_time_is_delayed (PENDING carries the time) */
    f = given(BS_PENDING, NULL, BS_RUNNING, NULL, false);
    f->run.current.details.scheduled_time = NOW + 300 * S;
    d = when(f);
    EXPECT("S02", d, BS_WAIT, "Scheduled time is in the future");
    CHECK_INT(d->delay_seconds, 300);
    CHECK(!d->write);

    /* S03 test_scheduling_rule_does_not_fire_against_other_state_types */
    for (int i = 0; i < 4; i++) {
        f = given(BS_SCHEDULED, NULL, terminal[i], NULL, false);
        f->run.current.details.scheduled_time = NOW + 300 * S;
        EXPECT("S03", when(f), BS_ACCEPT, NULL);
    }

    /* S05 test_set_flow_run_state_force_skips_orchestration */
    f = given(BS_SCHEDULED, NULL, BS_RUNNING, NULL, true);
    f->run.current.details.scheduled_time = NOW + 30 * 86400 * S;
    EXPECT("S05", when(f), BS_ACCEPT, NULL);

    /* R02 test_stops_retrying_eventually / test_clears_retry_type_on_exhausted_retries */
    f = given(BS_RUNNING, NULL, BS_FAILED, NULL, false);
    f->run.policy.retries = 1;
    f->run.run_count = 2;
    f->run.policy.retry_type = "in_process";
    d = when(f);
    EXPECT("R02", d, BS_ACCEPT, NULL);
    CHECK(d->run.policy.retry_type == NULL);
    CHECK_INT(d->run.end_time, NOW);

    /* R05 test_can_manual_retry_with_arbitrary_state_name */
    f = given(BS_FAILED, NULL, BS_SCHEDULED, "FooBar", false);
    with_deployment(f);
    f->run.run_count = 2;
    f->p.details.scheduled_time = NOW;
    d = when(f);
    EXPECT("R05", d, BS_ACCEPT, NULL);
    CHECK_INT(d->run.run_count, 2);
    CHECK_STR(d->run.policy.retry_type, "reschedule");

    /* R06 test_cannot_manual_retry_without_deployment */
    f = given(BS_FAILED, NULL, BS_SCHEDULED, "AwaitingRetry", false);
    f->run.policy.retries = 1;
    d = when(f);
    EXPECT("R06", d, BS_ABORT, "Cannot reschedule a run without an associated deployment.");
    CHECK(!d->write);

    /* R08 test_manual_retry_updates_retry_type: terminal -> terminal leaves retry_type */
    f = given(BS_FAILED, NULL, BS_FAILED, "AwaitingRetry", false);
    with_deployment(f);
    d = when(f);
    EXPECT("R08", d, BS_ACCEPT, NULL);
    CHECK(d->run.policy.retry_type == NULL);

    /* T01/T02 test_transitions_from_terminal_states_to_crashed/_cancelling_are_aborted */
    static const char *const treason[] = {
        "Run is already in terminal state COMPLETED.", "Run is already in terminal state FAILED.",
        "Run is already in terminal state CANCELLED.", "Run is already in terminal state CRASHED."};
    for (int i = 0; i < 4; i++) {
        EXPECT("T01", when(given(terminal[i], NULL, BS_CRASHED, NULL, false)), BS_ABORT,
               treason[i]);
        EXPECT("T02", when(given(terminal[i], NULL, BS_CANCELLING, NULL, false)), BS_ABORT,
               treason[i]);
    }

    /* T03 ...allowed_without_persisted_result; T04 ...rejected_with_persisted_result */
    static const int t34[] = {BS_PENDING, BS_RUNNING, BS_SCHEDULED};
    for (int i = 0; i < 3; i++) {
        f = given(BS_COMPLETED, NULL, t34[i], NULL, false);
        with_deployment(f);
        EXPECT("T03", when(f), BS_ACCEPT, NULL);
        f = given(BS_COMPLETED, NULL, t34[i], NULL, false);
        f->run.current.data = "{\"storage_key\": \"k\"}";
        f->run.current.data_truthy = f->run.current.data_persisted = true;
        EXPECT("T04", when(f), BS_REJECT, "Run is already COMPLETED.");
    }

    /* T06/T07/T08/T09 data-loss guard, with force */
    f = given(BS_COMPLETED, NULL, BS_COMPLETED, NULL, true);
    f->run.current.data_truthy = f->run.current.data_persisted = true;
    f->p.data = "{\"storage_key\": \"other\"}";
    f->p.data_truthy = f->p.data_persisted = true;
    EXPECT("T06", when(f), BS_ACCEPT, NULL);
    f = given(BS_COMPLETED, NULL, BS_COMPLETED, NULL, true);
    f->run.current.data = "1";
    f->run.current.data_truthy = true; /* a scalar is never "persisted" */
    EXPECT("T07", when(f), BS_ACCEPT, NULL);
    f = given(BS_COMPLETED, NULL, BS_COMPLETED, NULL, false);
    f->run.current.data_truthy = f->run.current.data_persisted = true;
    f->p.data = "1";
    f->p.data_truthy = true;
    EXPECT("T08", when(f), BS_REJECT,
           "Cannot overwrite a COMPLETED state that carries persisted result data with one "
           "that does not.");
    f = given(BS_COMPLETED, NULL, BS_COMPLETED, NULL, false);
    f->run.current.data = "{\"type\": \"unpersisted\"}";
    f->run.current.data_truthy = true;
    EXPECT("T09", when(f), BS_ACCEPT, NULL);

    /* T10: CANCELLED -> PENDING aborts and #3's policy edits are undone (fizzle cleanup) */
    f = given(BS_CANCELLED, NULL, BS_PENDING, NULL, false);
    f->run.policy.resuming = true;
    f->run.policy.retry_type = "in_process";
    d = when(f);
    EXPECT("T10", d, BS_ABORT,
           "This run is in a CANCELLED state and cannot transition to a PENDING state.");
    CHECK(d->run.policy.resuming);
    CHECK_STR(d->run.policy.retry_type, "in_process");

    /* L02 (full pipeline): terminal with deployment -> Late; L03: cancelling -> Late */
    f = given(BS_COMPLETED, NULL, BS_SCHEDULED, "Late", false);
    with_deployment(f);
    EXPECT("L02", when(f), BS_REJECT, "Only scheduled flows can be marked late.");
    EXPECT("L03", when(given(BS_CANCELLING, NULL, BS_SCHEDULED, "Late", false)), BS_REJECT,
           "Cannot transition flows that are cancelling to a state other than Cancelled.");
    /* L04 test_scheduled_to_late_transition_is_accepted; L05 ..._already_late_... */
    EXPECT("L04", when(given(BS_SCHEDULED, NULL, BS_SCHEDULED, "Late", false)), BS_ACCEPT, NULL);
    EXPECT("L05", when(given(BS_SCHEDULED, "Late", BS_SCHEDULED, "Late", false)), BS_REJECT,
           "This flow run is already marked late.");

    /* P01 test_banned_transitions_are_aborted; P02 (full): cancelling */
    EXPECT("P01", when(given(BS_RUNNING, NULL, BS_PENDING, NULL, false)), BS_ABORT,
           "This run is in a RUNNING state and cannot transition to a PENDING state.");
    EXPECT("P02", when(given(BS_CANCELLING, NULL, BS_PENDING, NULL, false)), BS_REJECT,
           "Cannot transition flows that are cancelling to a state other than Cancelled.");
    /* P04 test_pending_back_to_pending_is_aborted */
    EXPECT("P04", when(given(BS_PENDING, "Submitting", BS_PENDING, "Pending", false)), BS_ABORT,
           "This run is in a PENDING state and cannot transition to a PENDING state.");

    /* Z02: a pause without a key records a fresh one */
    d = when(given(BS_RUNNING, NULL, BS_PAUSED, NULL, false));
    CHECK_INT(d->run.policy.n_pause_keys, 1);
    CHECK_STR(d->run.policy.pause_keys[0], "55555555-5555-4555-8555-555555555555");
    /* Z04 test_can_not_nonblocking_pause_flows_with_deployments_with_reschedule_flag */
    f = given(BS_RUNNING, NULL, BS_PAUSED, "Suspended", false);
    f->p.details.pause_reschedule = true;
    EXPECT("Z04", when(f), BS_ABORT, "Cannot suspend flows without a deployment.");
    /* Z05 ..._with_deployments_with_reschedule_flag */
    f = given(BS_RUNNING, NULL, BS_PAUSED, NULL, false);
    f->p.details.pause_reschedule = true;
    with_deployment(f);
    EXPECT("Z05", when(f), BS_ACCEPT, NULL);
    /* Z06: subflows cannot be suspended */
    f = given(BS_RUNNING, NULL, BS_PAUSED, NULL, false);
    f->p.details.pause_reschedule = true;
    with_deployment(f);
    snprintf(f->run.parent_task_run_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
    EXPECT("Z06", when(f), BS_ABORT, "Cannot pause subflows.");
    /* Z08 test_cannot_leave_nonblocking_pausing_state_without_a_deployment */
    f = given(BS_PAUSED, NULL, BS_RUNNING, NULL, false);
    f->run.current.details.pause_reschedule = true;
    f->run.current.details.pause_timeout = NOW + 300 * S;
    EXPECT("Z08", when(f), BS_REJECT, "Cannot reschedule a running flow run without a deployment.");
    /* Z09 test_can_leave_blocking_pausing_state_without_a_deployment */
    f = given(BS_PAUSED, NULL, BS_RUNNING, NULL, false);
    f->run.current.details.pause_timeout = NOW + 300 * S;
    d = when(f);
    EXPECT("Z09", d, BS_ACCEPT, NULL);
    CHECK(d->run.policy.resuming);
    CHECK_INT(d->run.run_count, 1);

    /* X02 test_does_not_block_cancelled_to_other_states */
    EXPECT("X02", when(given(BS_CANCELLED, NULL, BS_RUNNING, NULL, false)), BS_ACCEPT, NULL);
    /* X05 test_rejects_cancelling_resuming_flow_and_sets_to_cancelled */
    f = given(BS_SCHEDULED, "Resuming", BS_CANCELLING, NULL, false);
    f->run.has_infrastructure_pid = true;
    d = when(f);
    EXPECT("X05", d, BS_REJECT, "Scheduled flow run has no infrastructure to terminate.");
    CHECK_INT(d->state.type, BS_CANCELLED);
    /* X06 test_rejects_cancelling_suspended_flow_and_sets_to_cancelled */
    f = given(BS_PAUSED, NULL, BS_CANCELLING, NULL, false);
    f->run.current.details.pause_reschedule = true;
    d = when(f);
    EXPECT("X06", d, BS_REJECT, "Suspended flow run has no infrastructure to terminate.");
    CHECK_INT(d->state.type, BS_CANCELLED);
    CHECK_INT(d->run.end_time, NOW);
    /* X07: a blocking pause may be cancelled (Prefect 3.9.1, differential test) */
    EXPECT("X07", when(given(BS_PAUSED, NULL, BS_CANCELLING, NULL, false)), BS_ACCEPT, NULL);
    /* X08 test_allows_all_other_transitions */
    static const int x08[] = {BS_NONE, BS_PENDING, BS_RUNNING};
    for (int i = 0; i < 3; i++)
        EXPECT("X08", when(given(x08[i], NULL, BS_CANCELLING, NULL, false)), BS_ACCEPT, NULL);

    /* D02 test_no_transition_ids / test_different_transition_ids */
    f = given(BS_PENDING, NULL, BS_RUNNING, NULL, false);
    snprintf(f->run.current.details.transition_id.s, 37, "%s",
             "66666666-6666-4666-8666-666666666666");
    snprintf(f->p.details.transition_id.s, 37, "%s", "67777777-6666-4666-8666-666666666666");
    EXPECT("D02", when(f), BS_ACCEPT, NULL);

    /* ---- the rest of §4, one block per case ---- */

    /* D01 test_pending_to_pending_same_transition_id */
    f = given(BS_PENDING, NULL, BS_PENDING, "Test State", false);
    snprintf(f->run.current.details.transition_id.s, 37, "%s",
             "3c90c3cc-0d44-4b50-8888-8dd25736052a");
    f->p.details.transition_id = f->run.current.details.transition_id;
    d = when(f);
    EXPECT("D01", d, BS_REJECT, "This run has already made this state transition.");
    CHECK(!d->write);

    /* K01 test_create_flow_run_state_succeeds: no state -> RUNNING */
    f = given(BS_NONE, NULL, BS_RUNNING, NULL, false);
    d = when(f);
    EXPECT("K01", d, BS_ACCEPT, NULL);
    CHECK_STR(d->state.name, "Running");
    CHECK_STR(d->state.details.flow_run_id.s, f->run.id.s);
    CHECK_INT(d->run.start_time, NOW);
    CHECK_INT(d->run.expected_start_time, NOW);
    CHECK_INT(d->run.run_count, 1);

    /* K04 test_rule_sets_expected_start_time_from_non_scheduled */
    static const int k04[] = {BS_PENDING, BS_RUNNING, BS_COMPLETED};
    for (int i = 0; i < 3; i++) {
        d = when(given(BS_NONE, NULL, k04[i], NULL, false));
        EXPECT("K04", d, BS_ACCEPT, NULL);
        CHECK_INT(d->run.expected_start_time, NOW);
    }

    /* K08 test_run_details_are_set_when_entering_final_state_without_running */
    f = given(BS_PENDING, NULL, BS_FAILED, NULL, true);
    d = when(f);
    EXPECT("K08", d, BS_ACCEPT, NULL);
    CHECK_INT(d->run.start_time, NOW);
    CHECK_INT(d->run.end_time, NOW);

    /* K11 test_run_details_are_updated_entering_running: SCHEDULED -> RUNNING at dt, then
     * RUNNING again (forced) at dt2 */
    f = given(BS_SCHEDULED, NULL, BS_RUNNING, NULL, true);
    f->run.current.details.scheduled_time = NOW - 5 * S;
    d = when(f);
    EXPECT("K11", d, BS_ACCEPT, NULL);
    {
        bs_run after = d->run;
        after.current = d->state;
        f->run = after;
        f->p.timestamp = f->in.now_us = NOW + 7 * S;
        d = when(f);
        EXPECT("K11", d, BS_ACCEPT, NULL);
        CHECK_INT(d->run.start_time, NOW);
        CHECK_INT(d->run.run_count, 2);
        CHECK_INT(d->run.total_run_time_us, 7 * S);
    }

    /* K12 test_repeated_duplicate_server_timestamps_are_made_unique (MinimalFlowPolicy):
     * Pending, Running, Completed all at X on a run without state */
    {
        static const int types[] = {BS_PENDING, BS_RUNNING, BS_COMPLETED};
        int64_t taken[3];
        bs_run run;
        f = given(BS_NONE, NULL, BS_PENDING, NULL, true);
        run = f->run;
        for (int i = 0; i < 3; i++) {
            f = given(BS_NONE, NULL, types[i], NULL, true);
            f->run = run;
            f->run.taken_ts = taken;
            f->run.n_taken_ts = (size_t)i;
            d = when(f);
            EXPECT("K12", d, BS_ACCEPT, NULL);
            CHECK_INT(d->state.timestamp, NOW + i);
            taken[i] = d->state.timestamp;
            run = d->run;
            run.current = d->state;
        }
        CHECK_INT(run.start_time, NOW + 1);
        CHECK_INT(run.end_time, NOW + 2);
        CHECK_INT(run.total_run_time_us, 1);
    }
    /* K13 test_backdated_collision_uses_nearest_available_timestamp: X, X+10 s, then X */
    {
        static const int64_t at[] = {NOW, NOW + 10 * S, NOW};
        static const int64_t want[] = {NOW, NOW + 10 * S, NOW + 1};
        int64_t taken[3];
        bs_run run;
        f = given(BS_NONE, NULL, BS_PENDING, NULL, true);
        run = f->run;
        for (int i = 0; i < 3; i++) {
            f = given(BS_NONE, NULL, BS_PENDING, NULL, true);
            f->run = run;
            f->run.taken_ts = taken;
            f->run.n_taken_ts = (size_t)i;
            f->p.timestamp = at[i];
            d = when(f);
            EXPECT("K13", d, BS_ACCEPT, NULL);
            CHECK_INT(d->state.timestamp, want[i]);
            taken[i] = d->state.timestamp;
            run = d->run;
            run.current = d->state;
        }
        CHECK_INT(run.current.timestamp, NOW + 1); /* the last written state is the run's */
    }

    /* L01 test_reject_marking_states_other_than_scheduled_as_late */
    static const int l01[] = {BS_RUNNING, BS_PENDING};
    for (int i = 0; i < 2; i++)
        EXPECT("L01", when(given(l01[i], NULL, BS_SCHEDULED, "Late", false)), BS_REJECT,
               "Only scheduled flows can be marked late.");

    /* P03 test_pending_to_pending_with_different_name_is_accepted / ..._preserves_state_details */
    static const char *const p03[][2] = {{"Pending", "Submitting"},
                                         {"Submitting", "InfrastructurePending"},
                                         {"Pending", "InfrastructurePending"}};
    for (int i = 0; i < 3; i++) {
        f = given(BS_PENDING, p03[i][0], BS_PENDING, p03[i][1], false);
        f->run.current.details.scheduled_time = NOW - 30 * S;
        snprintf(f->run.current.details.deployment_concurrency_lease_id.s, 37, "%s",
                 "a0000000-0000-4000-8000-000000000003");
        d = when(f);
        EXPECT("P03", d, BS_ACCEPT, NULL);
        CHECK_INT(d->state.details.scheduled_time, NOW - 30 * S);
        CHECK_STR(d->state.details.deployment_concurrency_lease_id.s,
                  "a0000000-0000-4000-8000-000000000003");
    }

    /* R01 test_retries: retries 1, run_count 1 */
    f = given(BS_RUNNING, NULL, BS_FAILED, NULL, false);
    f->run.policy.retries = 1;
    f->run.run_count = 1;
    f->run.start_time = NOW - 10 * S;
    d = when(f);
    EXPECT("R01", d, BS_REJECT, "Retrying");
    CHECK_INT(d->state.type, BS_SCHEDULED);
    CHECK_STR(d->state.name, "AwaitingRetry");
    CHECK_INT(d->state.details.scheduled_time, NOW);
    CHECK_STR(d->run.policy.retry_type, "in_process");
    CHECK_INT(d->run.next_scheduled_start_time, NOW);
    CHECK_INT(d->run.end_time, BS_TS_NULL);
    /* R03 test_sets_retry_type: retries 3, run_count 2 */
    f = given(BS_RUNNING, NULL, BS_FAILED, NULL, false);
    f->run.policy.retries = 3;
    f->run.run_count = 2;
    d = when(f);
    EXPECT("R03", d, BS_REJECT, "Retrying");
    CHECK_STR(d->run.policy.retry_type, "in_process");
    /* R04: retry_delay 10, the proposal's message and data carried over */
    f = given(BS_RUNNING, NULL, BS_FAILED, NULL, false);
    f->run.policy.retries = 2;
    f->run.policy.retry_delay = 10;
    f->run.run_count = 1;
    f->p.message = "m";
    f->p.data = "{\"d\":1}";
    d = when(f);
    EXPECT("R04", d, BS_REJECT, "Retrying");
    CHECK_STR(d->state.name, "AwaitingRetry");
    CHECK_INT(d->state.details.scheduled_time, NOW + 10 * S);
    CHECK_STR(d->state.message, "m");
    CHECK_STR(d->state.data, "{\"d\":1}");
    /* R07 test_manual_flow_run_retries_succeed_even_if_exceeding_retries_setting */
    f = given(BS_FAILED, NULL, BS_SCHEDULED, "AwaitingRetry", false);
    with_deployment(f);
    f->run.policy.retries = 2;
    f->run.run_count = 3;
    d = when(f);
    EXPECT("R07", d, BS_ACCEPT, NULL);
    CHECK_INT(d->run.run_count, 3);

    /* S01 test_running_after_scheduled_start_time_is_not_delayed */
    static const int s01[] = {BS_SCHEDULED, BS_PENDING};
    for (int i = 0; i < 2; i++) {
        f = given(s01[i], NULL, BS_RUNNING, NULL, false);
        f->run.current.details.scheduled_time = NOW - 300 * S;
        EXPECT("S01", when(f), BS_ACCEPT, NULL);
    }
    /* S06: 0.5 s ahead is not waited for; 0.6 s is, rounded up to 1 s */
    f = given(BS_SCHEDULED, NULL, BS_RUNNING, NULL, false);
    f->run.current.details.scheduled_time = NOW + S / 2;
    EXPECT("S06", when(f), BS_ACCEPT, NULL);
    f->run.current.details.scheduled_time = NOW + 6 * S / 10;
    d = when(f);
    CHECK_INT(d->status, BS_WAIT);
    CHECK_INT(d->delay_seconds, 1);

    /* T05 test_rejects_completed_to_completed_when_result_data_is_lost, core and force */
    for (int force = 0; force < 2; force++) {
        f = given(BS_COMPLETED, NULL, BS_COMPLETED, NULL, force);
        f->run.current.data = "{\"storage_key\":\"k\"}";
        f->run.current.data_truthy = f->run.current.data_persisted = true;
        d = when(f);
        EXPECT("T05", d, BS_REJECT,
               "Cannot overwrite a COMPLETED state that carries persisted result data with one "
               "that does not.");
        CHECK(!d->write);
    }

    /* X01 test_rejects_cancelling_to_anything_but_cancelled */
    for (int t = 0; t < BS_NTYPES; t++) {
        if (t == BS_CANCELLED) continue;
        d = when(given(BS_CANCELLING, NULL, t, NULL, false));
        EXPECT("X01", d, BS_REJECT,
               "Cannot transition flows that are cancelling to a state other than Cancelled.");
        CHECK(!d->write);
    }
    /* X03 test_rejects_cancelling_scheduled_flow_and_sets_to_cancelled, core and force */
    for (int force = 0; force < 2; force++) {
        d = when(given(BS_SCHEDULED, NULL, BS_CANCELLING, NULL, force));
        EXPECT("X03", d, BS_REJECT, "Scheduled flow run has no infrastructure to terminate.");
        CHECK_INT(d->state.type, BS_CANCELLED);
        CHECK_STR(d->state.name, "Cancelled");
        CHECK_INT(d->run.end_time, NOW);
    }
    /* X04 test_accepts_cancelling_flow_run_with_pid */
    f = given(BS_SCHEDULED, NULL, BS_CANCELLING, NULL, false);
    f->run.has_infrastructure_pid = true;
    EXPECT("X04", when(f), BS_ACCEPT, NULL);
    /* X09 ..._allows_cancelling_when_timeout_schedule_fails: RUNNING -> CANCELLING (the
     * cancellation timeout check Prefect schedules afterwards is its HTTP layer's) */
    EXPECT("X09", when(given(BS_RUNNING, NULL, BS_CANCELLING, NULL, false)), BS_ACCEPT, NULL);

    /* Z01 test_updates_pause_key_tracker */
    f = given(BS_RUNNING, NULL, BS_PAUSED, NULL, false);
    f->p.details.pause_key = "hello";
    f->p.details.pause_timeout = NOW + 1000 * S;
    d = when(f);
    EXPECT("Z01", d, BS_ACCEPT, NULL);
    CHECK(d->run.policy.n_pause_keys == 1 && strcmp(d->run.policy.pause_keys[0], "hello") == 0);
    /* Z03 test_does_not_permit_repeat_pauses */
    f = given(BS_RUNNING, NULL, BS_PAUSED, NULL, false);
    f->p.details.pause_key = "hello";
    f->run.policy.pause_keys[0] = "hello";
    f->run.policy.n_pause_keys = 1;
    d = when(f);
    EXPECT("Z03", d, BS_REJECT, "This pause has already fired.");
    CHECK(!d->write);
    /* Z07 test_can_only_pause_running_flows, every current type */
    for (int t = 0; t <= BS_NONE; t++) {
        f = given(t, NULL, BS_PAUSED, NULL, false);
        with_deployment(f);
        d = when(f);
        if (t == BS_NONE)
            EXPECT("Z07", d, BS_ABORT, "Cannot pause flows with no state.");
        else if (t == BS_SCHEDULED || t == BS_PENDING || t == BS_PAUSED)
            EXPECT("Z07", d, BS_REJECT, "Cannot pause flows that are not currently running.");
        else if (t == BS_RUNNING)
            EXPECT("Z07", d, BS_ACCEPT, NULL);
        else if (t == BS_CANCELLING)
            EXPECT("Z07", d, BS_REJECT,
                   "Cannot transition flows that are cancelling to a state other than Cancelled.");
        else {
            char want[64];
            snprintf(want, sizeof want, "Run is already in terminal state %s.",
                     bs_state_type_name(t));
            EXPECT("Z07", d, BS_ABORT, want);
        }
    }
    /* Z10 test_transitions_out_of_pausing_states_are_restricted. Prefect 3.9.1 lets a
     * CANCELLING proposal leave a pause (the spec's table predates it; Prefect wins). */
    for (int t = 0; t < BS_NTYPES; t++) {
        f = given(BS_PAUSED, NULL, t, NULL, false);
        with_deployment(f);
        d = when(f);
        if (t == BS_PENDING)
            EXPECT("Z10", d, BS_REJECT,
                   "This run cannot transition to the StateType.PENDING state from the "
                   "StateType.PAUSED state.");
        else if (t == BS_PAUSED)
            EXPECT("Z10", d, BS_REJECT, "Cannot pause flows that are not currently running.");
        else
            EXPECT("Z10", d, BS_ACCEPT, NULL);
    }
    /* Z11 test_cannot_leave_pausing_state_if_pause_has_timed_out */
    f = given(BS_PAUSED, NULL, BS_RUNNING, NULL, false);
    with_deployment(f);
    f->run.current.details.pause_timeout = NOW - 300 * S;
    d = when(f);
    EXPECT("Z11", d, BS_REJECT, "The flow run pause has timed out and can no longer resume.");
    CHECK_INT(d->state.type, BS_FAILED);
    CHECK_STR(d->state.message, "The flow was running and never resumed.");
    CHECK_INT(d->run.end_time, NOW);

    /* S04 test_flow_run_receives_wait_until_scheduled_start_time, as engine steps: no state ->
     * SCHEDULED (now + 1 day) -> PENDING -> RUNNING waits about a day */
    {
        f = given(BS_NONE, NULL, BS_SCHEDULED, NULL, false);
        f->p.details.scheduled_time = NOW + 86400 * S;
        d = when(f);
        EXPECT("S04", d, BS_ACCEPT, NULL);
        bs_run run = d->run;
        run.current = d->state;
        f = given(BS_NONE, NULL, BS_PENDING, NULL, false);
        f->run = run;
        d = when(f);
        EXPECT("S04", d, BS_ACCEPT, NULL);
        CHECK_INT(d->state.details.scheduled_time, NOW + 86400 * S); /* CopyScheduledTime */
        run = d->run;
        run.current = d->state;
        f = given(BS_NONE, NULL, BS_RUNNING, NULL, false);
        f->run = run;
        d = when(f);
        CHECK_INT(d->status, BS_WAIT);
        CHECK_INT(d->delay_seconds, 86400);
    }
    /* P05 test_setting_flow_run_state_twice_aborts, as engine steps: no state -> PENDING, then
     * PENDING again */
    {
        f = given(BS_NONE, NULL, BS_PENDING, NULL, false);
        d = when(f);
        EXPECT("P05", d, BS_ACCEPT, NULL);
        bs_run run = d->run;
        run.current = d->state;
        f = given(BS_NONE, NULL, BS_PENDING, NULL, false);
        f->run = run;
        EXPECT("P05", when(f), BS_ABORT,
               "This run is in a PENDING state and cannot transition to a PENDING state.");
    }

    /* Q01 test_secure_concurrency_slots: limit 2, three runs SCHEDULED -> PENDING in turn */
    {
        int64_t active = 0;
        static const char *const leases[] = {"a0000000-0000-4000-8000-000000000001",
                                             "a0000000-0000-4000-8000-000000000002",
                                             "a0000000-0000-4000-8000-000000000003"};
        for (int i = 0; i < 3; i++) {
            f = given(BS_SCHEDULED, NULL, BS_PENDING, NULL, false);
            with_limit(f, 2, active);
            snprintf(f->in.new_lease_id.s, 37, "%s", leases[i]);
            d = when(f);
            active = apply_slots(d, active);
            if (i < 2) {
                EXPECT("Q01", d, BS_ACCEPT, NULL);
                CHECK_STR(d->state.details.deployment_concurrency_lease_id.s, leases[i]);
                CHECK_STR(d->slots.lease_id.s, leases[i]);
            } else {
                EXPECT("Q01", d, BS_REJECT, "Deployment concurrency limit reached.");
                CHECK_STR(d->state.name, "AwaitingConcurrencySlot");
                CHECK_INT(d->state.details.scheduled_time, NOW + 30 * S);
            }
        }
        CHECK_INT(active, 2);
    }
    /* Q02 test_cancel_new_collision_strategy */
    f = given(BS_SCHEDULED, NULL, BS_PENDING, NULL, false);
    with_limit(f, 1, 1);
    f->run.cancel_new = true;
    d = when(f);
    EXPECT("Q02", d, BS_REJECT, "Deployment concurrency limit reached.");
    CHECK_INT(d->state.type, BS_CANCELLED);
    CHECK_STR(d->state.message, "Deployment concurrency limit reached.");
    /* Q03 test_zero_concurrency_limit */
    f = given(BS_SCHEDULED, NULL, BS_PENDING, NULL, false);
    with_limit(f, 0, 0);
    d = when(f);
    EXPECT("Q03", d, BS_ABORT,
           "The deployment concurrency limit is 0. The flow will deadlock if submitted again.");
    /* Q04 test_release_concurrency_slots: RUNNING -> COMPLETED and CANCELLING -> CANCELLED free
     * the slot; RUNNING -> CANCELLING keeps it */
    static const int q04[][3] = {{BS_RUNNING, BS_COMPLETED, 0},
                                 {BS_CANCELLING, BS_CANCELLED, 0},
                                 {BS_RUNNING, BS_CANCELLING, 1}};
    for (size_t i = 0; i < sizeof q04 / sizeof q04[0]; i++) {
        f = given(q04[i][0], NULL, q04[i][1], NULL, false);
        with_limit(f, 1, 1);
        d = when(f);
        EXPECT("Q04", d, BS_ACCEPT, NULL);
        CHECK_INT(apply_slots(d, 1), q04[i][2]);
    }
    /* Q05 ..._uses_deployment_concurrency_orchestration_for_certain_client_versions, client
     * none: a run with no state takes a slot */
    f = given(BS_NONE, NULL, BS_PENDING, NULL, false);
    with_limit(f, 42, 0);
    d = when(f);
    EXPECT("Q05", d, BS_ACCEPT, NULL);
    CHECK_INT(apply_slots(d, 0), 1);
    /* Q06 ..._clears_deployment_concurrency_lease_id_for_old_client_versions, client none:
     * PENDING then RUNNING leaves no active lease (revoked, slot kept) */
    f = given(BS_PENDING, NULL, BS_RUNNING, NULL, false);
    with_limit(f, 42, 1);
    snprintf(f->run.current.details.deployment_concurrency_lease_id.s, 37, "%s",
             "a0000000-0000-4000-8000-000000000001");
    f->run.lease_found = true;
    d = when(f);
    EXPECT("Q06", d, BS_ACCEPT, NULL);
    CHECK_STR(d->slots.revoke.s, "a0000000-0000-4000-8000-000000000001");
    CHECK_INT(apply_slots(d, 1), 1);
    /* Q07 test_uses_custom_grace_period_when_configured: 720 / setting default 300 / 123 */
    static const int64_t q07[][3] = {{720, 0, 720}, {-1, 0, 300}, {-1, 123, 123}};
    for (size_t i = 0; i < 3; i++) {
        f = given(BS_SCHEDULED, NULL, BS_PENDING, NULL, false);
        with_limit(f, 2, 0);
        f->run.grace_period_s = q07[i][0];
        f->in.lease_ttl_s = q07[i][1];
        d = when(f);
        EXPECT("Q07", d, BS_ACCEPT, NULL);
        CHECK_INT(d->slots.lease_ttl_s, q07[i][2]);
    }
    /* Q10 test_lease_id_copied_when_proposed_is_null: PENDING -> PENDING "Submitting" */
    f = given(BS_PENDING, NULL, BS_PENDING, "Submitting", false);
    snprintf(f->run.current.details.deployment_concurrency_lease_id.s, 37, "%s",
             "a0000000-0000-4000-8000-000000000009");
    d = when(f);
    EXPECT("Q10", d, BS_ACCEPT, NULL);
    CHECK_STR(d->state.details.deployment_concurrency_lease_id.s,
              "a0000000-0000-4000-8000-000000000009");

    return t_done();
}
