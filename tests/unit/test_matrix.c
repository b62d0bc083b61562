/* The transition matrix of orchestration.md §3 (CoreFlowPolicy, force=false, no concurrency
 * limits) and §3.1 (MinimalFlowPolicy, force=true): every (current, proposed) pair, the current
 * state set up as the matrix assumes (SCHEDULED due in the past and without infrastructure,
 * blocking pause, no retries, no persisted data, default names). */
#include "../t.h"
#include "orch.h"

enum { A, RN, RC, AB, W }; /* ACCEPT, REJECT to none, REJECT to CANCELLED, ABORT, WAIT */
#define S 1000000LL
static const int64_t NOW = 1700000000LL * S;

/* rows: current none, SCHEDULED .. CANCELLING; columns: proposed SCHEDULED .. CANCELLING.
 * One cell differs from the spec's table, as Prefect 3.9.1 (checked by the differential test)
 * decides it: a blocking PAUSED run may go to CANCELLING. */
static const int CORE_WITH_DEPLOYMENT[10][9] = {
    /* none       */ {A, A, A, A, A, A, A, AB, A},
    /* SCHEDULED  */ {A, A, A, A, A, A, A, RN, RC},
    /* PENDING    */ {A, AB, A, A, A, A, A, RN, A},
    /* RUNNING    */ {A, AB, A, A, A, A, A, A, A},
    /* COMPLETED  */ {A, A, A, A, A, A, AB, AB, AB},
    /* FAILED     */ {A, A, A, A, A, A, AB, AB, AB},
    /* CANCELLED  */ {A, AB, A, A, A, A, AB, AB, AB},
    /* CRASHED    */ {A, A, A, A, A, A, AB, AB, AB},
    /* PAUSED     */ {A, RN, A, A, A, A, A, RN, A},
    /* CANCELLING */ {RN, RN, RN, RN, RN, A, RN, RN, RN},
};

static int outcome(const bs_decision *d)
{
    switch (d->status) {
    case BS_ACCEPT:
        return A;
    case BS_WAIT:
        return W;
    case BS_ABORT:
        return AB;
    case BS_REJECT:
        return d->write && d->state.type == BS_CANCELLED ? RC : RN;
    }
    return -1;
}

static int decide(int cur, int to, bool force, bool deployment, const char *to_name)
{
    bs_run run;
    bs_state p;
    bs_orch_input in;
    static bs_decision d;
    memset(&run, 0, sizeof run);
    memset(&p, 0, sizeof p);
    memset(&in, 0, sizeof in);
    snprintf(run.id.s, sizeof run.id.s, "%s", "11111111-1111-4111-8111-111111111111");
    if (deployment) { /* an existing deployment without a concurrency limit */
        snprintf(run.deployment_id.s, 37, "%s", "77777777-7777-4777-8777-777777777777");
        run.deployment_exists = true;
    }
    run.expected_start_time = run.next_scheduled_start_time = BS_TS_NULL;
    run.start_time = run.end_time = BS_TS_NULL;
    bs_policy_init(&run.policy);
    run.current.type = cur;
    run.current.name = cur == BS_NONE ? NULL : bs_state_type_default_name(cur);
    run.current.timestamp = NOW - 5 * S;
    bs_details_init(&run.current.details);
    if (cur == BS_SCHEDULED) run.current.details.scheduled_time = NOW - 60 * S;
    p.type = to;
    p.name = to_name ? to_name : bs_state_type_default_name(to);
    p.timestamp = NOW;
    bs_details_init(&p.details);
    if (to == BS_SCHEDULED) p.details.scheduled_time = NOW + 60 * S;
    in.run = &run;
    in.proposal = &p;
    in.force = force;
    in.now_us = NOW;
    bs_orch_decide(&in, &d);
    return outcome(&d);
}

int main(void)
{
    static const int rows[10] = {BS_NONE,   BS_SCHEDULED, BS_PENDING, BS_RUNNING, BS_COMPLETED,
                                 BS_FAILED, BS_CANCELLED, BS_CRASHED, BS_PAUSED,  BS_CANCELLING};
    for (int r = 0; r < 10; r++)
        for (int to = 0; to < BS_NTYPES; to++) {
            int got = decide(rows[r], to, false, true, NULL);
            if (got != CORE_WITH_DEPLOYMENT[r][to])
                fprintf(stderr, "core %s -> %s: got %d want %d\n", bs_state_type_name(rows[r]),
                        bs_state_type_name(to), got, CORE_WITH_DEPLOYMENT[r][to]);
            CHECK_INT(got, CORE_WITH_DEPLOYMENT[r][to]);

            /* without a deployment, terminal runs cannot be rescheduled; nothing else moves */
            int want = CORE_WITH_DEPLOYMENT[r][to];
            if (to == BS_SCHEDULED && bs_state_type_terminal(rows[r])) want = AB;
            CHECK_INT(decide(rows[r], to, false, false, NULL), want);

            /* force: everything is accepted but cancelling a SCHEDULED run with no
             * infrastructure, which is cancelled outright */
            want = rows[r] == BS_SCHEDULED && to == BS_CANCELLING ? RC : A;
            CHECK_INT(decide(rows[r], to, true, false, NULL), want);

            /* a proposal named Late: only SCHEDULED runs may be marked late */
            if (to == BS_SCHEDULED) {
                int late = decide(rows[r], to, false, true, "Late");
                int lwant = rows[r] == BS_NONE || rows[r] == BS_SCHEDULED ? A : RN;
                CHECK_INT(late, lwant);
            }
        }
    return t_done();
}
