/* slots: see slots.h. Pure. */
#include "slots.h"

#include <string.h>

bs_limit_view *bs_limit_find(bs_limit_view *views, size_t nv, const bs_uuid *id)
{
    for (size_t i = 0; i < nv; i++)
        if (strcmp(views[i].id.s, id->s) == 0) return &views[i];
    return NULL;
}

void bs_limit_apply(bs_limit_view *views, size_t nv, const bs_run *run, const bs_slot_ops *ops)
{
    bs_limit_view *v;
    if (ops->acquire && (v = bs_limit_find(views, nv, &run->concurrency_limit_id)) != NULL) {
        v->now += 1;
        v->touched = true;
    }
    if (ops->release && (v = bs_limit_find(views, nv, &ops->release_limit)) != NULL) {
        v->now = v->now > ops->release_slots ? v->now - ops->release_slots : 0;
        v->touched = true;
    }
}

void bs_slots_plan(bs_arena *ar, const bs_run *const *runs, const bs_slot_ops *const *ops, size_t n,
                   bs_limit_view *views, size_t nv, bs_slot_plan *plan)
{
    const size_t cap = n ? n : 1, vcap = nv ? nv : 1;
    memset(plan, 0, sizeof *plan);
    plan->create_id = bs_arena_alloc(ar, sizeof(char *) * cap);
    plan->create_limit = bs_arena_alloc(ar, sizeof(char *) * cap);
    plan->create_run = bs_arena_alloc(ar, sizeof(char *) * cap);
    plan->create_ttl_s = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    plan->revoke_id = bs_arena_alloc(ar, sizeof(char *) * cap);
    plan->update_id = bs_arena_alloc(ar, sizeof(char *) * vcap);
    plan->update_active = bs_arena_alloc(ar, sizeof(int64_t) * vcap);
    plan->prefect_lease = bs_arena_alloc(ar, sizeof(char *) * cap);
    plan->prefect_fallback_limit = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (size_t i = 0; i < nv; i++) {
        views[i].now = views[i].start;
        views[i].touched = false;
    }
    for (size_t i = 0; i < n; i++) {
        bs_limit_apply(views, nv, runs[i], ops[i]);
        if (ops[i]->acquire) {
            const size_t k = plan->ncreate++;
            plan->create_id[k] = ops[i]->lease_id.s;
            plan->create_limit[k] = runs[i]->concurrency_limit_id.s;
            plan->create_run[k] = runs[i]->id.s;
            plan->create_ttl_s[k] = ops[i]->lease_ttl_s;
        }
        if (!bs_uuid_null(&ops[i]->revoke)) plan->revoke_id[plan->nrevoke++] = ops[i]->revoke.s;
        if (!bs_uuid_null(&ops[i]->prefect_lease)) {
            const size_t k = plan->nprefect++;
            plan->prefect_lease[k] = ops[i]->prefect_lease.s;
            plan->prefect_fallback_limit[k] = bs_uuid_null(&ops[i]->prefect_fallback_limit)
                                                  ? NULL
                                                  : ops[i]->prefect_fallback_limit.s;
        }
    }
    for (size_t i = 0; i < nv; i++)
        if (views[i].touched) {
            plan->update_id[plan->nupdate] = views[i].id.s;
            plan->update_active[plan->nupdate++] = views[i].now;
        }
}
