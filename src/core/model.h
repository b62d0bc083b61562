/* model: the plain data the pure core works on: state types, states with their details, the
 * run's facts, a validated command. Strings are owned by the per-message arena. No I/O here. */
#ifndef BS_MODEL_H
#define BS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filter.h"

typedef enum {
    BS_SCHEDULED = 0,
    BS_PENDING,
    BS_RUNNING,
    BS_COMPLETED,
    BS_FAILED,
    BS_CANCELLED,
    BS_CRASHED,
    BS_PAUSED,
    BS_CANCELLING,
    BS_NONE /* the run has no state, or the proposal was withdrawn */
} bs_state_type;

#define BS_NTYPES  9
#define BS_TS_NULL INT64_MIN /* a NULL timestamp (microseconds since the epoch otherwise) */

/* "SCHEDULED" etc.; "NONE" for BS_NONE. */
const char *bs_state_type_name(int type);
/* Parses the exact upper-case name; returns -1 when unknown. */
int bs_state_type_parse(const char *s);
/* "Scheduled" etc.: Prefect's default state name. */
const char *bs_state_type_default_name(int type);
bool bs_state_type_terminal(int type);

typedef struct bs_uuid {
    char s[37]; /* lower-case hyphenated, "" = null */
} bs_uuid;

static inline bool bs_uuid_null(const bs_uuid *u)
{
    return u->s[0] == '\0';
}

static inline void bs_uuid_clear(bs_uuid *u)
{
    u->s[0] = '\0';
}

/* Prefect's StateDetails: 18 keys. Tri-state booleans use -1 for null. */
typedef struct bs_details {
    bs_uuid flow_run_id, task_run_id, child_flow_run_id;
    int64_t scheduled_time;
    const char *cache_key;
    int64_t cache_expiration;
    int8_t deferred;
    bool untrackable_result;
    int64_t pause_timeout;
    bool pause_reschedule;
    const char *pause_key;
    const char *run_input_keyset; /* JSON object text, NULL = null */
    int8_t refresh_cache, retriable;
    bs_uuid transition_id, task_parameters_id;
    const char *traceparent;
    bs_uuid deployment_concurrency_lease_id;
} bs_details;

/* The defaults of a fresh StateDetails (deferred=false, everything else null/false). */
void bs_details_init(bs_details *d);

typedef struct bs_state {
    bs_uuid id;
    int type; /* bs_state_type; BS_NONE for "no state" */
    const char *name, *message;
    const char *data;    /* JSON text, NULL = null */
    bool data_truthy;    /* data is not null, {}, [], 0, "", false */
    bool data_persisted; /* data is an object whose "type" is not "unpersisted" */
    int64_t timestamp;
    bs_details details;
} bs_state;

#define BS_MAX_PAUSE_KEYS 64

/* flow_run.empirical_policy (FlowRunPolicy). -1 stands for null in the nullable ints. */
typedef struct bs_policy {
    int64_t max_retries;
    double retry_delay_seconds;
    int64_t retries;     /* -1 = null */
    int64_t retry_delay; /* seconds, -1 = null */
    size_t n_pause_keys;
    const char *pause_keys[BS_MAX_PAUSE_KEYS];
    bool resuming;
    const char *retry_type; /* NULL, "in_process", "reschedule" */
} bs_policy;

void bs_policy_init(bs_policy *p);

/* The facts of one flow run the rules read and the columns the transforms write. */
/* A subflow's parent task run: what UpdateSubflowParentTask (G11) and the task-run minimal
 * policy read when the subflow's state is copied onto it. */
typedef struct bs_task_run {
    bool found; /* the row exists */
    bs_uuid id;
    bs_uuid flow_run_id; /* "" when NULL */
    int state_type;      /* its current state's type; BS_NONE when it has none */
    int64_t state_timestamp;
    int64_t run_count;
    int64_t expected_start_time, next_scheduled_start_time, start_time, end_time;
    int64_t total_run_time_us;
    bool has_tags; /* tags non-empty: tag concurrency limits of the first API may hold it */
    /* concurrency_limit_v2 rows named "tag:<tag>" for its tags with slots in use,
     * comma-separated (NULL: none): their leases live in Prefect's server memory, out of
     * bulkstate's reach; with no slot in use there is no lease to release */
    const char *tag_v2_limits;
} bs_task_run;

typedef struct bs_run {
    bs_uuid id;
    bs_uuid deployment_id;      /* "" when NULL */
    bs_uuid parent_task_run_id; /* "" when NULL */
    bool has_infrastructure_pid;
    bool deployment_exists;   /* deployment_id names a row of deployment */
    bool deployment_limited;  /* that deployment has a concurrency limit (concurrency_limit_v2) */
    int64_t deployment_limit; /* the limit's value */
    /* Deployment concurrency (rules #8, #9, #17). The slot counter is the caller's view of
     * concurrency_limit_v2.active_slots at this point of the batch (rows locked, decay applied,
     * earlier runs' slot changes included). */
    bs_uuid concurrency_limit_id; /* deployment.concurrency_limit_id; "" when none */
    bool limit_active;            /* that row exists and is active */
    int64_t limit_active_slots;
    bool cancel_new;        /* concurrency_options collision_strategy CANCEL_NEW (else ENQUEUE) */
    int64_t grace_period_s; /* concurrency_options.grace_period_seconds; -1 when unset */
    /* The lease named by the current state's deployment_concurrency_lease_id, when bulkstate's
     * lease store (bulkstate.deployment_lease) holds it. */
    bool lease_found;
    bs_uuid lease_limit_id;
    int64_t lease_slots;
    bool lease_limit_active;
    int64_t run_count;
    int64_t expected_start_time, next_scheduled_start_time, start_time, end_time;
    int64_t total_run_time_us;
    bs_policy policy;
    bs_state current; /* type BS_NONE when the run has no state */
    /* timestamps of this run's states at or after the proposal time (for G1 uniqueness) */
    const int64_t *taken_ts;
    size_t n_taken_ts;
    const bs_task_run *parent_task; /* loaded when parent_task_run_id is set; NULL otherwise */
} bs_run;

/* A validated bulk-set-state command. */
typedef struct bs_command {
    const char *command_id;
    bs_filter filter;
    int state_type;
    const char *state_name; /* NULL = default from the type */
    const char *state_message;
    const char *state_data; /* JSON text or NULL */
    bool data_truthy, data_persisted;
    bs_details details;
    bool force;
    int limit;
    const char *reply_topic; /* NULL = configured default */
    int64_t issued_at;       /* BS_TS_NULL when absent */
    int max_runs;            /* 0: one batch (Prefect's meaning); else every match up to this */
    const char *cancel_command_id; /* a cancel command: the command it stops */
} bs_command;

#endif
