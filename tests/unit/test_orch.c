/* Orchestration: the force path (MinimalFlowPolicy), the ported CoreFlowPolicy rules and the
 * global bookkeeping transforms, case by case (orchestration.md §2-§4). */
#include "../t.h"
#include "orch.h"

#define S 1000000LL
static const int64_t NOW = 1700000000LL * S;

typedef struct fixture {
    bs_run run;
    bs_state proposal;
    bs_orch_input in;
    bs_decision d;
} fixture;

static void setup(fixture *f, int cur_type, const char *cur_name, int to_type, bool force)
{
    memset(f, 0, sizeof *f);
    snprintf(f->run.id.s, sizeof f->run.id.s, "%s", "11111111-1111-4111-8111-111111111111");
    f->run.expected_start_time = f->run.next_scheduled_start_time = BS_TS_NULL;
    f->run.start_time = f->run.end_time = BS_TS_NULL;
    bs_policy_init(&f->run.policy);
    f->run.current.type = cur_type;
    f->run.current.name = cur_name;
    f->run.current.timestamp = NOW - 60 * S;
    snprintf(f->run.current.id.s, sizeof f->run.current.id.s, "%s",
             "22222222-2222-4222-8222-222222222222");
    bs_details_init(&f->run.current.details);
    f->proposal.type = to_type;
    f->proposal.name = bs_state_type_default_name(to_type);
    f->proposal.timestamp = NOW;
    snprintf(f->proposal.id.s, sizeof f->proposal.id.s, "%s",
             "33333333-3333-4333-8333-333333333333");
    bs_details_init(&f->proposal.details);
    f->in.run = &f->run;
    f->in.proposal = &f->proposal;
    f->in.force = force;
    f->in.now_us = NOW;
    snprintf(f->in.replacement_id.s, sizeof f->in.replacement_id.s, "%s",
             "44444444-4444-4444-8444-444444444444");
    snprintf(f->in.random_pause_key.s, sizeof f->in.random_pause_key.s, "%s",
             "55555555-5555-4555-8555-555555555555");
}

/* Makes the run a subflow whose parent task run (t, 9999...) is in state `type` (entered 10 s
 * before NOW; no state: no timestamp), with no other times set. */
static void with_parent(fixture *f, bs_task_run *t, int type)
{
    snprintf(f->run.parent_task_run_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
    memset(t, 0, sizeof *t);
    t->found = true;
    t->id = f->run.parent_task_run_id;
    t->state_type = type;
    t->state_timestamp = type == BS_NONE ? BS_TS_NULL : NOW - 10 * S;
    t->start_time = t->end_time = BS_TS_NULL;
    t->expected_start_time = t->next_scheduled_start_time = BS_TS_NULL;
    f->run.parent_task = t;
}

static void decide(fixture *f)
{
    bs_orch_decide(&f->in, &f->d);
}

int main(void)
{
    fixture f;

    /* force bypasses terminal protection: COMPLETED -> RUNNING is accepted (Prefect test 3) */
    setup(&f, BS_COMPLETED, "Completed", BS_RUNNING, true);
    f.run.start_time = NOW - 120 * S;
    f.run.end_time = NOW - 60 * S;
    f.run.run_count = 1;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(f.d.write);
    CHECK_INT(f.d.state.type, BS_RUNNING);
    CHECK_INT(f.d.run.run_count, 2);
    CHECK_INT(f.d.run.start_time, NOW - 120 * S);
    CHECK_INT(f.d.run.end_time, BS_TS_NULL);
    CHECK_STR(f.d.state.details.flow_run_id.s, f.run.id.s);

    /* the same without force is rejected when the result is persisted */
    setup(&f, BS_COMPLETED, "Completed", BS_RUNNING, false);
    f.run.current.data = "{\"storage_key\":\"k\"}";
    f.run.current.data_truthy = f.run.current.data_persisted = true;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK(!f.d.write);
    CHECK_STR(f.d.reason, "Run is already COMPLETED.");

    /* force: PENDING -> CANCELLED sets start and end time to the state time */
    setup(&f, BS_PENDING, "Pending", BS_CANCELLED, true);
    f.run.expected_start_time = NOW - 300 * S;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_INT(f.d.run.start_time, NOW);
    CHECK_INT(f.d.run.end_time, NOW);
    CHECK_INT(f.d.run.expected_start_time, NOW - 300 * S);
    CHECK_INT(f.d.run.run_count, 0);

    /* core: PENDING and RUNNING -> CANCELLED are accepted (Prefect test 4) */
    setup(&f, BS_RUNNING, "Running", BS_CANCELLED, false);
    f.run.start_time = NOW - 60 * S;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_INT(f.d.run.total_run_time_us, 60 * S); /* IncrementRunTime */
    CHECK_INT(f.d.run.end_time, NOW);

    /* G1: the timestamp is bumped past taken ones, 1 µs at a time */
    setup(&f, BS_PENDING, "Pending", BS_CANCELLED, true);
    int64_t taken[] = {NOW + 1, NOW};
    f.run.taken_ts = taken;
    f.run.n_taken_ts = 2;
    decide(&f);
    CHECK_INT(f.d.state.timestamp, NOW + 2);

    /* #4: cancelling runs only go to CANCELLED */
    setup(&f, BS_CANCELLING, "Cancelling", BS_RUNNING, false);
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason,
              "Cannot transition flows that are cancelling to a state other than Cancelled.");
    CHECK(!f.d.write);

    /* #6: PENDING -> PENDING aborts; a renamed PENDING passes and inherits scheduled_time */
    setup(&f, BS_PENDING, "Pending", BS_PENDING, false);
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK_STR(f.d.reason,
              "This run is in a PENDING state and cannot transition to a PENDING state.");
    setup(&f, BS_PENDING, "Pending", BS_PENDING, false);
    f.proposal.name = "Submitting";
    f.run.current.details.scheduled_time = NOW - 5 * S;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_INT(f.d.state.details.scheduled_time, NOW - 5 * S);

    /* #14: WAIT iff the scheduled time is more than 0.5 s away, rounded */
    static const struct {
        int64_t ahead_us, delay;
        bs_status status;
    } W[] = {{10 * S, 10, BS_WAIT}, {S / 2, 0, BS_ACCEPT}, {S / 2 + 1, 1, BS_WAIT},
             {1600000, 2, BS_WAIT}, {1500000, 1, BS_WAIT}, {-10 * S, 0, BS_ACCEPT}};
    for (size_t i = 0; i < sizeof W / sizeof W[0]; i++) {
        setup(&f, BS_SCHEDULED, "Scheduled", BS_RUNNING, false);
        f.run.current.details.scheduled_time = NOW + W[i].ahead_us;
        decide(&f);
        CHECK_INT(f.d.status, W[i].status);
        if (W[i].status == BS_WAIT) {
            CHECK_INT(f.d.delay_seconds, W[i].delay);
            CHECK_STR(f.d.reason, "Scheduled time is in the future");
            CHECK(!f.d.write);
        } else {
            CHECK_INT(f.d.run.run_count, 1);
        }
    }

    /* #15: retries left -> REJECT into AwaitingRetry, written and bookkept */
    setup(&f, BS_RUNNING, "Running", BS_FAILED, false);
    f.run.run_count = 1;
    f.run.policy.retries = 2;
    f.run.policy.retry_delay = 5;
    f.proposal.message = "boom";
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "Retrying");
    CHECK(f.d.write);
    CHECK_INT(f.d.state.type, BS_SCHEDULED);
    CHECK_STR(f.d.state.name, "AwaitingRetry");
    CHECK_STR(f.d.state.message, "boom");
    CHECK_STR(f.d.state.id.s, "44444444-4444-4444-8444-444444444444");
    CHECK_INT(f.d.state.details.scheduled_time, NOW + 5 * S);
    CHECK_INT(f.d.run.next_scheduled_start_time, NOW + 5 * S);
    CHECK_STR(f.d.run.policy.retry_type, "in_process");
    /* ... and none left -> FAILED accepted */
    setup(&f, BS_RUNNING, "Running", BS_FAILED, false);
    f.run.run_count = 3;
    f.run.policy.retries = 2;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_INT(f.d.state.type, BS_FAILED);

    /* #5 (also with force): a scheduled run without infrastructure is cancelled directly */
    for (int force = 0; force < 2; force++) {
        setup(&f, BS_SCHEDULED, "Scheduled", BS_CANCELLING, force);
        decide(&f);
        CHECK_INT(f.d.status, BS_REJECT);
        CHECK_STR(f.d.reason, "Scheduled flow run has no infrastructure to terminate.");
        CHECK(f.d.write);
        CHECK_INT(f.d.state.type, BS_CANCELLED);
        CHECK_STR(f.d.state.name, "Cancelled");
    }
    setup(&f, BS_SCHEDULED, "Scheduled", BS_CANCELLING, false);
    f.run.has_infrastructure_pid = true;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_INT(f.d.state.type, BS_CANCELLING);

    /* #2: a repeated transition_id */
    setup(&f, BS_RUNNING, "Running", BS_COMPLETED, false);
    snprintf(f.run.current.details.transition_id.s, 37, "%s",
             "66666666-6666-4666-8666-666666666666");
    f.proposal.details.transition_id = f.run.current.details.transition_id;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "This run has already made this state transition.");

    /* #3: terminal runs: reschedule needs a deployment, and clears pause/retry bookkeeping */
    setup(&f, BS_FAILED, "Failed", BS_SCHEDULED, false);
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK_STR(f.d.reason, "Cannot reschedule a run without an associated deployment.");
    setup(&f, BS_FAILED, "Failed", BS_SCHEDULED, false);
    snprintf(f.run.deployment_id.s, 37, "%s", "77777777-7777-4777-8777-777777777777");
    f.run.end_time = NOW - 10 * S;
    f.run.policy.resuming = true;
    f.proposal.details.scheduled_time = NOW + 60 * S;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_STR(f.d.run.policy.retry_type, "reschedule");
    CHECK(!f.d.run.policy.resuming);
    CHECK_INT(f.d.run.end_time, BS_TS_NULL);
    CHECK_INT(f.d.run.next_scheduled_start_time, NOW + 60 * S);
    setup(&f, BS_COMPLETED, "Completed", BS_PAUSED, false);
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK_STR(f.d.reason, "Run is already in terminal state COMPLETED.");

    /* #10: only scheduled runs are marked late */
    setup(&f, BS_PENDING, "Pending", BS_SCHEDULED, false);
    f.proposal.name = "Late";
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "Only scheduled flows can be marked late.");

    /* #11: pausing records the pause key; a second pause with the same key is rejected */
    setup(&f, BS_RUNNING, "Running", BS_PAUSED, false);
    f.proposal.details.pause_key = "k1";
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_INT(f.d.run.policy.n_pause_keys, 1);
    CHECK_STR(f.d.run.policy.pause_keys[0], "k1");
    f.run.policy = f.d.run.policy;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "This pause has already fired.");
    setup(&f, BS_NONE, NULL, BS_PAUSED, false);
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK_STR(f.d.reason, "Cannot pause flows with no state.");

    /* #12: a timed-out pause fails the run; the after hook still marks it resuming */
    setup(&f, BS_PAUSED, "Paused", BS_RUNNING, false);
    f.run.current.details.pause_timeout = NOW - S;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "The flow run pause has timed out and can no longer resume.");
    CHECK_INT(f.d.state.type, BS_FAILED);
    CHECK_STR(f.d.state.message, "The flow was running and never resumed.");
    CHECK(f.d.run.policy.resuming);
    setup(&f, BS_PAUSED, "Paused", BS_PENDING, false);
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "This run cannot transition to the StateType.PENDING state from the "
                          "StateType.PAUSED state.");

    /* #1: the lease id is carried forward */
    setup(&f, BS_RUNNING, "Running", BS_COMPLETED, false);
    snprintf(f.run.current.details.deployment_concurrency_lease_id.s, 37, "%s",
             "88888888-8888-4888-8888-888888888888");
    decide(&f);
    CHECK_STR(f.d.state.details.deployment_concurrency_lease_id.s,
              "88888888-8888-4888-8888-888888888888");
    /* with force too: Prefect's MinimalFlowPolicy starts with the same transform */
    setup(&f, BS_RUNNING, "Running", BS_COMPLETED, true);
    snprintf(f.run.current.details.deployment_concurrency_lease_id.s, 37, "%s",
             "88888888-8888-4888-8888-888888888888");
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_STR(f.d.state.details.deployment_concurrency_lease_id.s,
              "88888888-8888-4888-8888-888888888888");

    /* a run with no state: RUNNING sets start, expected start and run_count */
    setup(&f, BS_NONE, NULL, BS_RUNNING, false);
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_INT(f.d.run.run_count, 1);
    CHECK_INT(f.d.run.start_time, NOW);
    CHECK_INT(f.d.run.expected_start_time, NOW);

    /* subflow (G11): the parent task run gets a copy of the written state through the task-run
     * minimal policy and GlobalTaskPolicy, with or without force */
    bs_task_run task;
    for (int force = 0; force < 2; force++) {
        setup(&f, BS_RUNNING, "Running", BS_COMPLETED, force);
        with_parent(&f, &task, BS_RUNNING);
        snprintf(task.flow_run_id.s, 37, "%s", "77777777-7777-4777-8777-777777777777");
        task.state_timestamp = NOW - 30 * S;
        task.run_count = 1;
        task.start_time = NOW - 30 * S;
        task.expected_start_time = NOW - 40 * S;
        task.has_tags = true;
        snprintf(f.in.task_state_id.s, 37, "%s", "66666666-6666-4666-8666-666666666666");
        f.in.now_us = NOW + 5;
        decide(&f);
        CHECK_INT(f.d.status, BS_ACCEPT);
        CHECK(f.d.write);
        CHECK_STR(f.d.state.details.task_run_id.s, "99999999-9999-4999-8999-999999999999");
        CHECK(f.d.task_write);
        CHECK_INT(f.d.task_state.type, BS_COMPLETED);
        CHECK_STR(f.d.task_state.name, "Completed");
        CHECK_STR(f.d.task_state.id.s, "66666666-6666-4666-8666-666666666666");
        CHECK_INT(f.d.task_state.timestamp, NOW + 5);
        CHECK_STR(f.d.task_state.details.child_flow_run_id.s,
                  "11111111-1111-4111-8111-111111111111");
        CHECK_STR(f.d.task_state.details.flow_run_id.s, "77777777-7777-4777-8777-777777777777");
        CHECK_STR(f.d.task_state.details.task_run_id.s, "99999999-9999-4999-8999-999999999999");
        /* the flow run's own state keeps its own ids */
        CHECK_STR(f.d.state.details.flow_run_id.s, "11111111-1111-4111-8111-111111111111");
        CHECK(bs_uuid_null(&f.d.state.details.child_flow_run_id));
        /* GlobalTaskPolicy: end time, run time from the task's own RUNNING state, no count */
        CHECK_INT(f.d.task.end_time, NOW + 5);
        CHECK_INT(f.d.task.start_time, NOW - 30 * S);
        CHECK_INT(f.d.task.total_run_time_us, 30 * S + 5);
        CHECK_INT(f.d.task.run_count, 1);
        CHECK_INT(f.d.task.expected_start_time, NOW - 40 * S);
        CHECK(f.d.task_release_v1); /* leaving RUNNING with tags */
        CHECK_INT(f.d.run.end_time, NOW);
    }
    /* RUNNING copied onto a task run with no state: count, start and expected start; a RUNNING
     * task keeps its tag slots */
    setup(&f, BS_PENDING, "Pending", BS_RUNNING, true);
    with_parent(&f, &task, BS_NONE);
    task.has_tags = true;
    decide(&f);
    CHECK(f.d.task_write);
    CHECK_INT(f.d.task.run_count, 1);
    CHECK_INT(f.d.task.start_time, NOW);
    CHECK_INT(f.d.task.expected_start_time, NOW);
    CHECK(bs_uuid_null(&f.d.task_state.details.flow_run_id)); /* the task has no flow run */
    CHECK(!f.d.task_release_v1);
    /* a fixed clock (replay) equal to the task's state time moves by one microsecond */
    task.state_type = BS_PENDING;
    task.state_timestamp = NOW;
    decide(&f);
    CHECK_INT(f.d.task_state.timestamp, NOW + 1);
    /* a SCHEDULED copy: next scheduled start from the details */
    setup(&f, BS_FAILED, "Failed", BS_SCHEDULED, true);
    snprintf(f.run.deployment_id.s, 37, "%s", "dddddddd-dddd-4ddd-8ddd-dddddddddddd");
    snprintf(f.run.parent_task_run_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
    task.state_type = BS_FAILED;
    task.end_time = NOW - S;
    task.state_timestamp = NOW - S;
    f.run.parent_task = &task;
    f.proposal.details.scheduled_time = NOW + 60 * S;
    decide(&f);
    CHECK_INT(f.d.task_state.type, BS_SCHEDULED);
    CHECK_INT(f.d.task.next_scheduled_start_time, NOW + 60 * S);
    CHECK_INT(f.d.task.end_time, BS_TS_NULL);
    /* the parent task run is gone: Prefect raises, the bulk endpoint answers ABORT */
    setup(&f, BS_RUNNING, "Running", BS_COMPLETED, false);
    snprintf(f.run.parent_task_run_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
    static const bs_task_run gone = {.found = false};
    f.run.parent_task = &gone;
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK(!f.d.write && !f.d.task_write);
    CHECK_STR(f.d.reason, "Task run with id 99999999-9999-4999-8999-999999999999 not found");
    CHECK_INT(f.d.run.end_time, BS_TS_NULL);
    /* tag limits of the second API: their leases are in Prefect's memory, so leaving RUNNING is
     * refused; entering RUNNING releases nothing and is applied */
    setup(&f, BS_RUNNING, "Running", BS_COMPLETED, true);
    with_parent(&f, &task, BS_RUNNING);
    task.tag_v2_limits = "tag:db,tag:gpu";
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK(!f.d.write && !f.d.task_write);
    CHECK_STR(f.d.reason, "bulkstate cannot release tag concurrency leases held in Prefect's "
                          "server memory: parent task run 99999999-9999-4999-8999-999999999999 "
                          "of flow run 11111111-1111-4111-8111-111111111111 has tag limits "
                          "with slots in use: tag:db,tag:gpu");
    /* ... unless bulkstate talks to Prefect's server ([prefect] api_url): then it is applied,
     * and Prefect is asked to release them after the commit */
    setup(&f, BS_RUNNING, "Running", BS_COMPLETED, true);
    with_parent(&f, &task, BS_RUNNING);
    task.tag_v2_limits = "tag:db,tag:gpu";
    task.has_tags = true;
    f.in.prefect_leases = true;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(f.d.write && f.d.task_write);
    CHECK(f.d.task_release_v1 && f.d.task_release_v2);
    /* entering CANCELLING keeps the slots: nothing to release */
    setup(&f, BS_RUNNING, "Running", BS_CANCELLING, true);
    with_parent(&f, &task, BS_RUNNING);
    task.tag_v2_limits = "tag:db,tag:gpu";
    task.has_tags = true;
    f.in.prefect_leases = true;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(f.d.task_write && !f.d.task_release_v2);
    task.has_tags = false;
    setup(&f, BS_PENDING, "Pending", BS_RUNNING, true);
    snprintf(f.run.parent_task_run_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
    f.run.parent_task = &task;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(f.d.task_write);
    /* deferred details would select Prefect's background task policy: refused */
    setup(&f, BS_PENDING, "Pending", BS_RUNNING, true);
    snprintf(f.run.parent_task_run_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
    f.run.parent_task = &task;
    f.proposal.details.deferred = 1;
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK(!f.d.task_write);
    CHECK_STR(f.d.reason, "bulkstate does not apply Prefect's background task policy: the state "
                          "sets deferred and flow run 11111111-1111-4111-8111-111111111111 has "
                          "parent task run 99999999-9999-4999-8999-999999999999");
    /* no parent: nothing for the task side */
    setup(&f, BS_RUNNING, "Running", BS_COMPLETED, false);
    decide(&f);
    CHECK(f.d.write && !f.d.task_write);
    /* a rule's refusal comes first (nothing would be written anyway) */
    setup(&f, BS_RUNNING, "Running", BS_PAUSED, false);
    snprintf(f.run.parent_task_run_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
    f.proposal.details.pause_reschedule = true;
    decide(&f);
    CHECK_STR(f.d.reason, "Cannot pause subflows.");

    /* MinimalFlowPolicy keeps persisted results */
    setup(&f, BS_COMPLETED, "Completed", BS_COMPLETED, true);
    f.run.current.data = "{\"storage_key\":\"k\"}";
    f.run.current.data_truthy = f.run.current.data_persisted = true;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "Cannot overwrite a COMPLETED state that carries persisted result data "
                          "with one that does not.");

    /* #8: a dangling deployment id and a limit of 0 abort (Prefect's
     * test_secure_flow_concurrency_slots: deployment not found / limit 0) */
    static const char *const DEP = "77777777-7777-4777-8777-777777777777";
    static const char *const LIM = "66666666-6666-4666-8666-666666666666";
    static const char *const LEASE = "88888888-8888-4888-8888-888888888888";
    setup(&f, BS_SCHEDULED, "Scheduled", BS_PENDING, false);
    snprintf(f.run.deployment_id.s, 37, "%s", DEP);
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK_STR(f.d.reason, "Deployment not found.");
    f.run.deployment_exists = true;
    decide(&f); /* a deployment without a limit: nothing to take */
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(!f.d.slots.acquire);
    f.run.deployment_limited = f.run.limit_active = true;
    snprintf(f.run.concurrency_limit_id.s, 37, "%s", LIM);
    f.run.grace_period_s = -1;
    f.run.deployment_limit = 0;
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK_STR(f.d.reason,
              "The deployment concurrency limit is 0. The flow will deadlock if submitted again.");
    /* a free slot: taken under a new lease whose id the PENDING state carries */
    f.run.deployment_limit = 2;
    f.run.limit_active_slots = 1;
    snprintf(f.in.new_lease_id.s, 37, "%s", LEASE);
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(f.d.write && f.d.slots.acquire && !f.d.slots.release);
    CHECK_STR(f.d.slots.lease_id.s, LEASE);
    CHECK_INT(f.d.slots.lease_ttl_s, 300);
    CHECK_STR(f.d.state.details.deployment_concurrency_lease_id.s, LEASE);
    f.run.grace_period_s = 60;
    decide(&f);
    CHECK_INT(f.d.slots.lease_ttl_s, 60);
    /* no slot, ENQUEUE (the default): rescheduled 30 s out as AwaitingConcurrencySlot */
    f.run.limit_active_slots = 2;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.reason, "Deployment concurrency limit reached.");
    CHECK_INT(f.d.state.type, BS_SCHEDULED);
    CHECK_STR(f.d.state.name, "AwaitingConcurrencySlot");
    CHECK_INT(f.d.state.details.scheduled_time, NOW + 30 * S);
    CHECK(!f.d.slots.acquire && bs_uuid_null(&f.d.state.details.deployment_concurrency_lease_id));
    /* an inactive limit never grants a slot */
    f.run.limit_active_slots = 0;
    f.run.limit_active = false;
    decide(&f);
    CHECK_STR(f.d.state.name, "AwaitingConcurrencySlot");
    /* CANCEL_NEW */
    f.run.limit_active = true;
    f.run.limit_active_slots = 2;
    f.run.cancel_new = true;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_INT(f.d.state.type, BS_CANCELLED);
    CHECK_STR(f.d.state.message, "Deployment concurrency limit reached.");
    /* #6 runs first: CANCELLED -> PENDING keeps Prefect's reason */
    setup(&f, BS_CANCELLED, "Cancelled", BS_PENDING, false);
    snprintf(f.run.deployment_id.s, 37, "%s", DEP);
    decide(&f);
    CHECK_STR(f.d.reason,
              "This run is in a CANCELLED state and cannot transition to a PENDING state.");
    /* force skips #8 */
    setup(&f, BS_SCHEDULED, "Scheduled", BS_PENDING, true);
    snprintf(f.run.deployment_id.s, 37, "%s", DEP);
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(!f.d.slots.acquire);
    /* #8 fizzles when #12 turns PAUSED -> PENDING (resume) into something else: the slot it
     * took goes back and the written state carries no lease */
    setup(&f, BS_PAUSED, "Paused", BS_PENDING, false);
    snprintf(f.run.deployment_id.s, 37, "%s", DEP);
    snprintf(f.run.concurrency_limit_id.s, 37, "%s", LIM);
    f.run.deployment_exists = f.run.deployment_limited = f.run.limit_active = true;
    f.run.deployment_limit = 5;
    f.run.grace_period_s = -1;
    f.run.current.details.pause_timeout = NOW - 10 * S; /* expired: #12 fails the run */
    decide(&f);
    CHECK(!f.d.slots.acquire);
    CHECK(f.d.state.type != BS_PENDING);
    CHECK(bs_uuid_null(&f.d.state.details.deployment_concurrency_lease_id));

    /* #17: leaving a slot-holding state releases, with or without force: through the lease
     * when the store has it, else one slot on the deployment's limit */
    for (int force = 0; force < 2; force++) {
        setup(&f, BS_RUNNING, "Running", BS_COMPLETED, force);
        snprintf(f.run.deployment_id.s, 37, "%s", DEP);
        snprintf(f.run.concurrency_limit_id.s, 37, "%s", LIM);
        f.run.deployment_exists = f.run.deployment_limited = f.run.limit_active = true;
        f.run.deployment_limit = 1;
        decide(&f);
        CHECK_INT(f.d.status, BS_ACCEPT);
        CHECK(f.d.slots.release && f.d.slots.release_slots == 1);
        CHECK_STR(f.d.slots.release_limit.s, LIM);
        CHECK(bs_uuid_null(&f.d.slots.revoke));
        snprintf(f.run.current.details.deployment_concurrency_lease_id.s, 37, "%s", LEASE);
        f.run.lease_found = f.run.lease_limit_active = true;
        snprintf(f.run.lease_limit_id.s, 37, "%s", "99999999-9999-4999-8999-999999999999");
        f.run.lease_slots = 1;
        decide(&f);
        CHECK_STR(f.d.slots.release_limit.s, "99999999-9999-4999-8999-999999999999");
        CHECK_STR(f.d.slots.revoke.s, LEASE);
        /* a lease whose limit is gone: Prefect raises, the bulk endpoint answers ABORT */
        f.run.lease_limit_active = false;
        decide(&f);
        CHECK_INT(f.d.status, BS_ABORT);
        CHECK_STR(f.d.reason, "Failed to release concurrency slots for lease "
                              "88888888-8888-4888-8888-888888888888");
        CHECK(!f.d.write && !f.d.slots.release);
        CHECK_INT(f.d.run.end_time, BS_TS_NULL);
        /* unknown lease: falls back to the deployment's limit */
        f.run.lease_found = false;
        decide(&f);
        CHECK_INT(f.d.status, BS_ACCEPT);
        CHECK_STR(f.d.slots.release_limit.s, LIM);
        CHECK(bs_uuid_null(&f.d.slots.revoke));
    }
    /* no active limit row to release on */
    setup(&f, BS_PENDING, "Pending", BS_SCHEDULED, false);
    snprintf(f.run.deployment_id.s, 37, "%s", DEP);
    snprintf(f.run.concurrency_limit_id.s, 37, "%s", LIM);
    f.run.deployment_exists = true;
    decide(&f);
    CHECK_INT(f.d.status, BS_ABORT);
    CHECK_STR(f.d.reason, "Failed to release deployment concurrency slots");
    /* RUNNING -> FAILED turned into AwaitingRetry keeps the slot (in-process retry) */
    setup(&f, BS_RUNNING, "Running", BS_FAILED, false);
    snprintf(f.run.deployment_id.s, 37, "%s", DEP);
    snprintf(f.run.concurrency_limit_id.s, 37, "%s", LIM);
    f.run.deployment_exists = f.run.deployment_limited = f.run.limit_active = true;
    f.run.deployment_limit = 1;
    f.run.policy.retries = 2;
    f.run.run_count = 1;
    decide(&f);
    CHECK_INT(f.d.status, BS_REJECT);
    CHECK_STR(f.d.state.name, "AwaitingRetry");
    CHECK(!f.d.slots.release);
    /* terminal -> SCHEDULED holds no slot */
    setup(&f, BS_FAILED, "Failed", BS_SCHEDULED, false);
    snprintf(f.run.deployment_id.s, 37, "%s", DEP);
    f.run.deployment_exists = f.run.deployment_limited = true;
    f.run.deployment_limit = 1;
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK(!f.d.slots.release);
    /* #9: PENDING -> RUNNING revokes the PENDING state's lease (no client version) */
    setup(&f, BS_PENDING, "Pending", BS_RUNNING, false);
    snprintf(f.run.current.details.deployment_concurrency_lease_id.s, 37, "%s", LEASE);
    decide(&f);
    CHECK_INT(f.d.status, BS_ACCEPT);
    CHECK_STR(f.d.slots.revoke.s, LEASE);
    CHECK(!f.d.slots.release);
    /* PENDING (lease 8888...) -> RUNNING proposing lease 9999...: the core rules carry the
     * PENDING state's lease id on (#7 step 1); the forced path keeps the proposal's own */
    for (int force = 0; force < 2; force++) {
        setup(&f, BS_PENDING, "Pending", BS_RUNNING, force);
        snprintf(f.run.current.details.deployment_concurrency_lease_id.s, 37, "%s",
                 "88888888-8888-4888-8888-888888888888");
        snprintf(f.proposal.details.deployment_concurrency_lease_id.s, 37, "%s",
                 "99999999-9999-4999-8999-999999999999");
        decide(&f);
        CHECK_STR(f.d.state.details.deployment_concurrency_lease_id.s,
                  force ? "99999999-9999-4999-8999-999999999999"
                        : "88888888-8888-4888-8888-888888888888");
    }

    CHECK_INT(bs_orch_parse_api_version("0.8.4"), 8004);
    CHECK_INT(bs_orch_parse_api_version("0.8"), -1);
    CHECK_STR(bs_orch_rule_names(true)[0], "PreserveDeploymentConcurrencyLeaseId");
    CHECK_STR(bs_orch_rule_names(true)[1], "PreventResultDataLoss");
    /* the names come from the table of transforms that runs (orch.c); Prefect's
     * GlobalFlowPolicy, in its order */
    static const char *const prefect_global[] = {
        "EnsureFlowRunStateTimestampIsUnique",
        "SetRunStateType",
        "SetRunStateName",
        "SetRunStateTimestamp",
        "SetStartTime",
        "SetEndTime",
        "IncrementRunTime",
        "SetExpectedStartTime",
        "SetNextScheduledStartTime",
        "UpdateStateDetails",
        "UpdateSubflowParentTask",
        "UpdateSubflowStateDetails",
        "IncrementFlowRunCount",
        "RemoveResumingIndicator",
    };
    const char *const *g = bs_orch_global_names();
    size_t ng = 0;
    while (g[ng] != NULL)
        ng++;
    CHECK_INT(ng, sizeof prefect_global / sizeof prefect_global[0]);
    for (size_t i = 0; i < ng && i < sizeof prefect_global / sizeof prefect_global[0]; i++)
        CHECK_STR(g[i], prefect_global[i]);
    return t_done();
}
