/* slots: deployment concurrency slot arithmetic across one batch. The batch locks the limits
 * its runs may touch, each decision moves the counts (so the next run of the batch sees them),
 * and after the writes the counts are recomputed from the lock-time values over the
 * transitions that were actually written (a run whose write failed gives its change back).
 * Pure: the store locks the rows before and writes the plan after. */
#ifndef BS_SLOTS_H
#define BS_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "model.h"
#include "orch.h"

/* A concurrency_limit_v2 row locked for the batch: its active slots at lock time (decayed)
 * and as the batch's decisions so far leave them. */
typedef struct bs_limit_view {
    bs_uuid id;
    int64_t start, now;
    bool touched;
} bs_limit_view;

/* The view of limit id, or NULL when the batch did not lock it. */
bs_limit_view *bs_limit_find(bs_limit_view *views, size_t nv, const bs_uuid *id);
/* Applies one decision's slot changes to the views (Prefect's floor at 0 included). */
void bs_limit_apply(bs_limit_view *views, size_t nv, const bs_run *run, const bs_slot_ops *ops);

/* What the written transitions do to slots and leases, ready for the store: leases created
 * (id, limit, run, ttl), leases revoked, each touched limit's final count, and the leases of
 * Prefect's server to release through its API. Arrays live in the arena. */
typedef struct bs_slot_plan {
    size_t ncreate;
    const char **create_id, **create_limit, **create_run;
    int64_t *create_ttl_s;
    size_t nrevoke;
    const char **revoke_id;
    size_t nupdate;
    const char **update_id;
    int64_t *update_active;
    size_t nprefect; /* leases Prefect's server holds, released through its API after commit */
    const char **prefect_lease, **prefect_fallback_limit; /* fallback NULL: none */
} bs_slot_plan;

/* Recomputes the views from their lock-time counts over the n written transitions (runs[i]
 * with ops[i], in batch order) and fills plan. */
void bs_slots_plan(bs_arena *ar, const bs_run *const *runs, const bs_slot_ops *const *ops, size_t n,
                   bs_limit_view *views, size_t nv, bs_slot_plan *plan);

#endif
