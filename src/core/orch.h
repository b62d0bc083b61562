/* orch: Prefect's flow-run orchestration as a pure function. Given a run's facts, a proposed
 * state, force and the clock, it returns the status (ACCEPT/REJECT/WAIT/ABORT), the state to
 * write (if any) and the run's new bookkeeping columns. No I/O, no clock reads, no malloc:
 * everything it needs comes in through bs_orch_input. */
#ifndef BS_ORCH_H
#define BS_ORCH_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

typedef enum { BS_ACCEPT = 0, BS_REJECT, BS_WAIT, BS_ABORT } bs_status;

/* "ACCEPT" etc. */
const char *bs_status_name(bs_status s);
/* "accept_details" etc. */
const char *bs_status_details_type(bs_status s);

typedef struct bs_orch_input {
    const bs_run *run; /* facts, with run->current the current state (type BS_NONE if none) */
    const bs_state *proposal; /* id, timestamp, type, name (defaulted), details filled */
    bool force;               /* true: MinimalFlowPolicy instead of CoreFlowPolicy */
    int64_t api_version;      /* major*1000000 + minor*1000 + patch; 0 = header absent */
    int64_t now_us;           /* the clock, read by the caller */
    bs_uuid replacement_id;   /* id for a state a rule substitutes (REJECT with a state) */
    bs_uuid random_pause_key; /* used when a PAUSED proposal carries no pause_key */
    bs_uuid new_lease_id;     /* id for a lease rule #8 creates */
    bs_uuid task_state_id;    /* id for the parent task run's copy of the state (G11) */
    int64_t slot_wait_s;      /* Prefect's concurrency_slot_wait_seconds (0: its default, 30) */
    int64_t lease_ttl_s; /* Prefect's initial_deployment_lease_duration (0: its default, 300) */
    bool prefect_leases; /* a lease Prefect's server holds is released through its API */
} bs_orch_input;

/* What a decision does to deployment concurrency slots and bulkstate's lease store; applied
 * by the caller in the same transaction, only when the decision's state is written. */
typedef struct bs_slot_ops {
    bool acquire;        /* one slot taken on run.concurrency_limit_id ... */
    bs_uuid lease_id;    /* ... held by this new lease */
    int64_t lease_ttl_s; /* its time to live */
    bool release;        /* release_slots freed on release_limit (floored at 0) */
    bs_uuid release_limit;
    int64_t release_slots;
    bs_uuid revoke; /* a lease to delete from the store; "" when none */
    /* a lease Prefect's server holds (not in bulkstate's store), released through its API
     * after the commit: Prefect decrements its slots and revokes it; when Prefect no longer
     * has it, one slot is freed on prefect_fallback_limit ("" when none). "" when none. */
    bs_uuid prefect_lease;
    bs_uuid prefect_fallback_limit;
} bs_slot_ops;

typedef struct bs_decision {
    bs_status status;
    const char *reason; /* NULL or points into reason_buf / a literal */
    int64_t delay_seconds;
    bool write;          /* a state row is to be written: state below */
    bs_state state;      /* the proposal as it ends (a replacement after REJECT with a state) */
    bs_run run;          /* the run's columns after the transition (written only when write) */
    bool policy_changed; /* empirical_policy changed (persist even when nothing is written) */
    bs_slot_ops slots;
    /* G11: a subflow's parent task run gets a copy of the written state (task_write), through
     * the task-run minimal policy and GlobalTaskPolicy: task holds its new columns. */
    bool task_write;
    bs_state task_state;
    bs_task_run task;
    bool task_release_v1; /* remove the task run from its tags' concurrency_limit.active_slots */
    /* its tag limits' leases, held in Prefect's server memory: released through Prefect's API
     * after the commit (prefect_leases only) */
    bool task_release_v2;
    /* rule scratch */
    char reason_buf[256];
    char name_buf[96];
    char msg_buf[160];
    bs_policy saved_policy;
    bool policy_saved;
    const char *pause_key;
    const char *error; /* an after hook failed as Prefect's raises: the run ends in ABORT */
} bs_decision;

/* Runs the policy and the global transforms. d is fully overwritten. */
void bs_orch_decide(const bs_orch_input *in, bs_decision *d);

/* Names of the rules that run for force=false / force=true, NULL-terminated (README, tests). */
const char *const *bs_orch_rule_names(bool force);

/* Names of the 14 GlobalFlowPolicy transforms, in Prefect's order, NULL-terminated. */
const char *const *bs_orch_global_names(void);

/* Parses "x.y.z" (integers) into the api_version encoding; returns -1 when malformed. */
int64_t bs_orch_parse_api_version(const char *s);

#endif
