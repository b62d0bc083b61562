/* The pure middle of a batch (batch.c, slots.c): proposals, decisions run by run with the
 * slot counts moving between them, the slot plan of what was written, result artifacts, and
 * what each reply carries. */
#include "../t.h"
#include "batch.h"
#include "slots.h"

#define S 1000000LL
static const int64_t NOW = 1700000000LL * S;
static const char *const LIM = "66666666-6666-4666-8666-666666666666";
static const char *const DEP = "77777777-7777-4777-8777-777777777777";

static int ids_made;

static int64_t fixed_now(void *ctx)
{
    (void)ctx;
    return NOW;
}

static void counted_id(void *ctx, const char *run, const char *purpose, int64_t now, bool v7,
                       bs_uuid *out)
{
    (void)ctx;
    (void)run;
    (void)purpose;
    (void)now;
    snprintf(out->s, sizeof out->s, "00000000-0000-%c000-8000-%012d", v7 ? '7' : '4', ++ids_made);
}

static const bs_batch_env ENV = {.now_us = fixed_now, .new_id = counted_id};

static void run_in(bs_run *r, const char *id, int state)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id.s, sizeof r->id.s, "%s", id);
    r->expected_start_time = r->next_scheduled_start_time = BS_TS_NULL;
    r->start_time = r->end_time = BS_TS_NULL;
    bs_policy_init(&r->policy);
    r->current.type = state;
    r->current.name = bs_state_type_default_name(state);
    r->current.timestamp = NOW - 5 * S;
    snprintf(r->current.id.s, sizeof r->current.id.s, "%s", "cccccccc-cccc-4ccc-8ccc-cccccccccccc");
    bs_details_init(&r->current.details);
}

static void limited(bs_run *r, int64_t limit)
{
    snprintf(r->deployment_id.s, sizeof r->deployment_id.s, "%s", DEP);
    r->deployment_exists = r->deployment_limited = r->limit_active = true;
    r->deployment_limit = limit;
    snprintf(r->concurrency_limit_id.s, sizeof r->concurrency_limit_id.s, "%s", LIM);
    r->grace_period_s = -1;
}

static bs_command command(int type)
{
    bs_command c;
    memset(&c, 0, sizeof c);
    c.command_id = "cmd-1";
    c.state_type = type;
    c.limit = 50;
    bs_details_init(&c.details);
    return c;
}

int main(void)
{
    bs_arena *ar = bs_arena_new();

    /* found, vanished and no-longer-matching runs */
    {
        const char *ids[3] = {"33333333-3333-4333-8333-333333333333",
                              "22222222-2222-4222-8222-222222222222",
                              "11111111-1111-4111-8111-111111111111"};
        bs_batch b = {.ids = ids};
        bs_batch_alloc(&b, ar, 3);
        run_in(&b.runs[0], ids[0], BS_RUNNING);
        b.found[0] = true;
        b.found[1] = false;
        run_in(&b.runs[2], ids[2], BS_RUNNING);
        b.found[2] = true;
        b.skip[2] = true;
        bs_command c = command(BS_CANCELLED);
        bs_batch_decide(&b, &c, &ENV, ar);
        CHECK_INT(b.status[0], BS_ACCEPT);
        CHECK(b.written[0]);
        CHECK_INT(b.d[0].state.type, BS_CANCELLED);
        CHECK_INT(b.d[0].state.timestamp, NOW);
        CHECK_STR(b.d[0].state.name, "Cancelled");
        CHECK(b.wr[0].d == &b.d[0]);
        CHECK_INT(b.status[1], BS_ABORT);
        CHECK_STR(b.reason[1], "Flow run with id 22222222-2222-4222-8222-222222222222 not found");
        CHECK(!b.written[1] && b.wr[1].d == NULL);
        CHECK_INT(b.status[2], BS_ABORT);
        CHECK_STR(b.reason[2], "Flow run no longer matches the command's filter");
        int counts[4] = {0};
        bs_batch_count(&b, counts);
        CHECK_INT(counts[BS_ACCEPT], 1);
        CHECK_INT(counts[BS_ABORT], 2);
        /* replies: the written state, no state for a vanished run */
        bs_result r;
        bs_batch_result(&b, 0, "cmd-1", 7, 3, &r);
        CHECK(r.state == &b.d[0].state);
        CHECK_INT(r.seq, 7);
        CHECK_INT(r.total, 3);
        CHECK_STR(r.flow_run_id, ids[0]);
        bs_batch_result(&b, 1, "cmd-1", 8, 3, &r);
        CHECK(r.state == NULL);
        /* a skipped run still exists: its reply shows its unchanged state */
        bs_batch_result(&b, 2, "cmd-1", 9, 3, &r);
        CHECK(r.state == &b.runs[2].current);
        /* a write refused on its data: ABORT, no state in the reply */
        bs_batch_write_failed(&b, 0, "value too long", ar);
        CHECK_INT(b.status[0], BS_ABORT);
        CHECK(!b.written[0]);
        CHECK_STR(b.reason[0], "Error validating state: value too long");
        bs_batch_result(&b, 0, "cmd-1", 7, 3, &r);
        CHECK(r.state == NULL);
        /* a rule's ABORT leaves the run's current state in the reply */
        run_in(&b.runs[0], ids[0], BS_PENDING);
        c = command(BS_PENDING);
        bs_batch_decide(&b, &c, &ENV, ar);
        CHECK_INT(b.status[0], BS_ABORT);
        CHECK(!b.write_failed[0]);
        CHECK(!b.written[0]);
        bs_batch_result(&b, 0, "cmd-1", 0, 3, &r);
        CHECK(r.state == &b.runs[0].current);
    }

    /* a deployment limit of 1: the first run takes the slot, the second waits for one; the
     * slot plan of what was written, then of what is left when the first write fails */
    {
        const char *ids[2] = {"bbbbbbbb-0000-4000-8000-000000000002",
                              "bbbbbbbb-0000-4000-8000-000000000001"};
        bs_batch b = {.ids = ids};
        bs_batch_alloc(&b, ar, 2);
        bs_limit_view views[1] = {{.start = 0, .now = 0}};
        snprintf(views[0].id.s, sizeof views[0].id.s, "%s", LIM);
        b.limits = views;
        b.nlimits = 1;
        for (int i = 0; i < 2; i++) {
            run_in(&b.runs[i], ids[i], BS_SCHEDULED);
            limited(&b.runs[i], 1);
            b.found[i] = true;
        }
        bs_command c = command(BS_PENDING);
        bs_batch_decide(&b, &c, &ENV, ar);
        CHECK_INT(b.status[0], BS_ACCEPT);
        CHECK(b.d[0].slots.acquire);
        CHECK_INT(b.status[1], BS_REJECT);
        CHECK_STR(b.reason[1], "Deployment concurrency limit reached.");
        CHECK_INT(views[0].now, 1);
        const bs_run *runs[2];
        const bs_slot_ops *ops[2];
        size_t k = 0;
        for (size_t i = 0; i < 2; i++)
            if (b.written[i]) {
                runs[k] = &b.runs[i];
                ops[k++] = &b.d[i].slots;
            }
        CHECK_INT(k, 2); /* the REJECT writes its AwaitingConcurrencySlot replacement */
        bs_slot_plan plan;
        bs_slots_plan(ar, runs, ops, k, views, 1, &plan);
        CHECK_INT(plan.ncreate, 1);
        CHECK_STR(plan.create_id[0], b.d[0].slots.lease_id.s);
        CHECK_STR(plan.create_limit[0], LIM);
        CHECK_STR(plan.create_run[0], ids[0]);
        CHECK_INT(plan.create_ttl_s[0], b.d[0].slots.lease_ttl_s);
        CHECK_INT(plan.nrevoke, 0);
        CHECK_INT(plan.nupdate, 1);
        CHECK_STR(plan.update_id[0], LIM);
        CHECK_INT(plan.update_active[0], 1);
        /* the first write failed: its slot is not taken, the limit is not touched */
        bs_slots_plan(ar, runs + 1, ops + 1, 1, views, 1, &plan);
        CHECK_INT(plan.ncreate, 0);
        CHECK_INT(plan.nupdate, 0);
        CHECK_INT(views[0].now, 0);
    }

    /* a lease Prefect's server holds (not in bulkstate's store): with Prefect's API, released
     * through it after the commit (no slot freed here), the deployment's limit as fallback */
    {
        const char *ids[1] = {"eeeeeeee-0000-4000-8000-000000000001"};
        bs_batch b = {.ids = ids};
        bs_batch_alloc(&b, ar, 1);
        bs_limit_view views[1] = {{.start = 1, .now = 1}};
        snprintf(views[0].id.s, sizeof views[0].id.s, "%s", LIM);
        b.limits = views;
        b.nlimits = 1;
        run_in(&b.runs[0], ids[0], BS_RUNNING);
        limited(&b.runs[0], 1);
        snprintf(b.runs[0].current.details.deployment_concurrency_lease_id.s, 37, "%s",
                 "ffffffff-0000-4000-8000-000000000001");
        b.found[0] = true;
        bs_command c = command(BS_COMPLETED);
        for (int api = 0; api < 2; api++) {
            bs_batch_env env = ENV;
            env.prefect_leases = api;
            bs_batch_decide(&b, &c, &env, ar);
            CHECK_INT(b.status[0], BS_ACCEPT);
            const bs_run *runs[1] = {&b.runs[0]};
            const bs_slot_ops *ops[1] = {&b.d[0].slots};
            bs_slot_plan plan;
            bs_slots_plan(ar, runs, ops, 1, views, 1, &plan);
            CHECK_INT(plan.nprefect, api ? 1 : 0);
            CHECK_INT(plan.nupdate, api ? 0 : 1); /* without the API: one slot freed here */
            if (api) {
                CHECK_STR(plan.prefect_lease[0], "ffffffff-0000-4000-8000-000000000001");
                CHECK_STR(plan.prefect_fallback_limit[0], LIM);
            } else {
                CHECK_INT(plan.update_active[0], 0);
            }
        }
    }

    /* releases are floored at 0, and a limit the batch did not lock is left alone */
    {
        bs_limit_view v = {.start = 1, .now = 1};
        snprintf(v.id.s, sizeof v.id.s, "%s", LIM);
        bs_run r;
        run_in(&r, "dddddddd-0000-4000-8000-000000000001", BS_RUNNING);
        bs_slot_ops ops = {.release = true, .release_slots = 3};
        snprintf(ops.release_limit.s, sizeof ops.release_limit.s, "%s", LIM);
        bs_limit_apply(&v, 1, &r, &ops);
        CHECK_INT(v.now, 0);
        CHECK(v.touched);
        bs_limit_view other = {.start = 5, .now = 5};
        snprintf(other.id.s, sizeof other.id.s, "%s", DEP);
        bs_limit_apply(&other, 1, &r, &ops);
        CHECK_INT(other.now, 5);
        CHECK(!other.touched);
        CHECK(bs_limit_find(&other, 1, &ops.release_limit) == NULL);
    }

    /* result artifacts: keys move to columns; none for null data or the unpersisted marker */
    {
        bs_uuid art;
        snprintf(art.s, sizeof art.s, "%s", "aaaaaaaa-aaaa-7aaa-8aaa-aaaaaaaaaaaa");
        bs_decision d;
        memset(&d, 0, sizeof d);
        d.write = true;
        d.state.data = "{\"artifact_key\":\"k\",\"artifact_type\":\"result\",\"x\":1}";
        bs_write wr = {0};
        bs_batch_artifact(ar, &d, &wr, &art);
        CHECK_STR(wr.artifact_id, art.s);
        CHECK_STR(wr.artifact_key, "k");
        CHECK_STR(wr.artifact_type, "result");
        CHECK_STR(wr.artifact_description, NULL);
        CHECK_STR(wr.artifact_data, "{\"x\":1}");
        memset(&wr, 0, sizeof wr);
        d.state.data = "{\"type\":\"unpersisted\"}";
        bs_batch_artifact(ar, &d, &wr, &art);
        CHECK_STR(wr.artifact_id, NULL);
        d.state.data = NULL;
        bs_batch_artifact(ar, &d, &wr, &art);
        CHECK_STR(wr.artifact_id, NULL);
        d.state.data = "42";
        bs_batch_artifact(ar, &d, &wr, &art);
        CHECK_STR(wr.artifact_data, "42");
        memset(&wr, 0, sizeof wr);
        d.write = false; /* nothing written, no artifact */
        bs_batch_artifact(ar, &d, &wr, &art);
        CHECK_STR(wr.artifact_id, NULL);
    }
    bs_arena_free(ar);
    return t_done();
}
