/* store_write: the decided transitions, set-based: artifacts, states and run columns of the
 * whole batch in a handful of statements whatever its size, then the parent task runs'
 * copies of subflow states (G11) and the tag slots those release. */
#include "store_int.h"

#include <jansson.h>

#include "command.h"

static const char SQL_INSERT_ARTIFACTS[] =
    "INSERT INTO artifact (id, flow_run_id, key, type, description, data) "
    "SELECT u.id, u.fr, u.k, u.t, u.d, u.data::json FROM unnest($1::uuid[], $2::uuid[], "
    "$3::text[], $4::text[], $5::text[], $6::text[]) AS u(id, fr, k, t, d, data)";

static const char SQL_INSERT_STATES[] =
    "INSERT INTO flow_run_state (id, flow_run_id, type, \"timestamp\", name, message, "
    "state_details, result_artifact_id) "
    "SELECT u.id, u.fr, u.t, 'epoch'::timestamptz + u.ts * interval '1 microsecond', u.n, u.m, "
    "u.det, u.art FROM unnest($1::uuid[], $2::uuid[], $3::state_type[], $4::bigint[], "
    "$5::text[], $6::text[], $7::jsonb[], $8::uuid[]) AS u(id, fr, t, ts, n, m, det, art)";

/* clang-format off */
/* One statement for every run of the batch: written runs (u.w) get the new state's mirror
 * columns and their bookkeeping; runs where only empirical_policy changed get just that. */
#define TS(c) "'epoch'::timestamptz + u." c " * interval '1 microsecond'"
static const char SQL_UPDATE_RUNS[] =
    "UPDATE flow_run AS f SET "
    "  state_id = CASE WHEN u.w THEN u.sid ELSE f.state_id END, "
    "  state_type = CASE WHEN u.w THEN u.st ELSE f.state_type END, "
    "  state_name = CASE WHEN u.w THEN u.sn ELSE f.state_name END, "
    "  state_timestamp = CASE WHEN u.w THEN " TS("sts") " ELSE f.state_timestamp END, "
    "  start_time = CASE WHEN u.w THEN " TS("s") " ELSE f.start_time END, "
    "  end_time = CASE WHEN u.w THEN " TS("e") " ELSE f.end_time END, "
    "  expected_start_time = CASE WHEN u.w THEN " TS("x") " ELSE f.expected_start_time END, "
    "  next_scheduled_start_time = CASE WHEN u.w THEN " TS("nx") " "
    "                              ELSE f.next_scheduled_start_time END, "
    "  total_run_time = CASE WHEN u.w THEN u.trt * interval '1 microsecond' "
    "                   ELSE f.total_run_time END, "
    "  run_count = CASE WHEN u.w THEN u.rc ELSE f.run_count END, "
    "  empirical_policy = COALESCE(u.pol, f.empirical_policy), "
    "  updated = now() "
    "FROM unnest($1::uuid[], $2::boolean[], $3::uuid[], $4::state_type[], $5::text[], "
    "            $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], "
    "            $11::bigint[], $12::int[], $13::jsonb[]) "
    "     AS u(id, w, sid, st, sn, sts, s, e, x, nx, trt, rc, pol) "
    "WHERE f.id = u.id";
/* clang-format on */

static const char SQL_INSERT_TASK_ARTIFACTS[] =
    "INSERT INTO artifact (id, task_run_id, flow_run_id, data) "
    "SELECT u.id, u.tr, u.fr, u.data::json FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], "
    "$4::text[]) AS u(id, tr, fr, data)";

static const char SQL_INSERT_TASK_STATES[] =
    "INSERT INTO task_run_state (id, task_run_id, type, \"timestamp\", name, message, "
    "state_details, result_artifact_id) "
    "SELECT u.id, u.tr, u.t, 'epoch'::timestamptz + u.ts * interval '1 microsecond', u.n, u.m, "
    "u.det, u.art FROM unnest($1::uuid[], $2::uuid[], $3::state_type[], $4::bigint[], "
    "$5::text[], $6::text[], $7::jsonb[], $8::uuid[]) AS u(id, tr, t, ts, n, m, det, art)";

/* clang-format off */
static const char SQL_UPDATE_TASKS[] =
    "UPDATE task_run AS t SET state_id = u.sid, state_type = u.st, state_name = u.sn, "
    "  state_timestamp = " TS("sts") ", start_time = " TS("s") ", end_time = " TS("e") ", "
    "  expected_start_time = " TS("x") ", next_scheduled_start_time = " TS("nx") ", "
    "  total_run_time = u.trt * interval '1 microsecond', run_count = u.rc, updated = now() "
    "FROM unnest($1::uuid[], $2::uuid[], $3::state_type[], $4::text[], $5::bigint[], "
    "            $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], "
    "            $11::int[]) AS u(id, sid, st, sn, sts, s, e, x, nx, trt, rc) "
    "WHERE t.id = u.id";

/* ReleaseTaskConcurrencySlots, first API: the task runs leave the active_slots (a set) of
 * their tags' limits; every such limit is rewritten, as Prefect's session does. */
static const char SQL_RELEASE_TAG_SLOTS[] =
    "UPDATE concurrency_limit AS c SET updated = now(), active_slots = COALESCE(("
    "  SELECT jsonb_agg(DISTINCT x) FROM jsonb_array_elements(c.active_slots) x "
    "  WHERE jsonb_typeof(x) <> 'string' OR NOT (x #>> '{}') = ANY (ARRAY("
    "    SELECT t.id::text FROM task_run t WHERE t.id = ANY($1::uuid[]) AND t.tags ? c.tag))), "
    "  '[]'::jsonb) "
    "WHERE c.tag IN (SELECT jsonb_array_elements_text(t.tags) FROM task_run t "
    "                WHERE t.id = ANY($1::uuid[]) AND jsonb_typeof(t.tags) = 'array')";
/* ... and the leases its tag limits hold in Prefect's server: released through Prefect's API
 * after the commit (outbox.c), with the task run's tags */
static const char SQL_QUEUE_TASK_RELEASES[] =
    "INSERT INTO bulkstate.prefect_lease_release (task_run_id, tags) "
    "SELECT t.id, t.tags FROM task_run t WHERE t.id = ANY($1::uuid[]) ORDER BY t.id";
/* clang-format on */

/* The parent task runs' copies of the written states (G11). */
static int write_tasks(bs_store *st, bs_arena *ar, const bs_write *w, size_t n, bs_err *err)
{
    size_t nt = 0, na = 0, nr = 0, nv2 = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].d && w[i].d->task_write) nt++;
    if (nt == 0) return 0;
    const char **a[4], **s[8], **u[11], **rel = bs_arena_alloc(ar, sizeof(char *) * nt),
                                        **rel2 = bs_arena_alloc(ar, sizeof(char *) * nt);
    for (int i = 0; i < 4; i++)
        a[i] = bs_arena_alloc(ar, sizeof(char *) * nt);
    for (int i = 0; i < 8; i++)
        s[i] = bs_arena_alloc(ar, sizeof(char *) * nt);
    for (int i = 0; i < 11; i++)
        u[i] = bs_arena_alloc(ar, sizeof(char *) * nt);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const bs_decision *d = w[i].d;
        if (d == NULL || !d->task_write) continue;
        const bs_task_run *t = &d->task;
        const bs_state *ts = &d->task_state;
        const char *fr = bs_uuid_null(&t->flow_run_id) ? NULL : t->flow_run_id.s;
        if (w[i].task_artifact_id) {
            a[0][na] = w[i].task_artifact_id;
            a[1][na] = t->id.s;
            a[2][na] = fr;
            a[3][na] = w[i].artifact_data;
            na++;
        }
        json_t *det = bs_details_to_json(&ts->details);
        char *dt = json_dumps(det, JSON_COMPACT);
        json_decref(det);
        s[0][k] = ts->id.s;
        s[1][k] = t->id.s;
        s[2][k] = bs_state_type_name(ts->type);
        s[3][k] = bs_pg_ts_param(ar, ts->timestamp);
        s[4][k] = ts->name ? ts->name : "";
        s[5][k] = ts->message;
        s[6][k] = bs_arena_strdup(ar, dt);
        s[7][k] = w[i].task_artifact_id;
        free(dt);
        u[0][k] = t->id.s;
        u[1][k] = ts->id.s;
        u[2][k] = bs_state_type_name(ts->type);
        u[3][k] = ts->name ? ts->name : "";
        u[4][k] = bs_pg_ts_param(ar, ts->timestamp);
        u[5][k] = bs_pg_ts_param(ar, t->start_time);
        u[6][k] = bs_pg_ts_param(ar, t->end_time);
        u[7][k] = bs_pg_ts_param(ar, t->expected_start_time);
        u[8][k] = bs_pg_ts_param(ar, t->next_scheduled_start_time);
        u[9][k] = bs_pg_ts_param(ar, t->total_run_time_us);
        u[10][k] = bs_arena_printf(ar, "%" PRId64, t->run_count);
        k++;
        if (d->task_release_v1) rel[nr++] = t->id.s;
        if (d->task_release_v2) rel2[nv2++] = t->id.s;
    }
    const char *p[11];
    if (na > 0) {
        for (int i = 0; i < 4; i++)
            p[i] = bs_pg_array(ar, a[i], na);
        if (bs_pg_exec_ok(st, SQL_INSERT_TASK_ARTIFACTS, 4, p, "write parent task run artifacts",
                          err) < 0)
            return -1;
    }
    for (int i = 0; i < 8; i++)
        p[i] = bs_pg_array(ar, s[i], k);
    if (bs_pg_exec_ok(st, SQL_INSERT_TASK_STATES, 8, p, "write parent task run states", err) < 0)
        return -1;
    for (int i = 0; i < 11; i++)
        p[i] = bs_pg_array(ar, u[i], k);
    if (bs_pg_exec_ok(st, SQL_UPDATE_TASKS, 11, p, "update parent task runs", err) < 0) return -1;
    if (nr > 0) {
        p[0] = bs_pg_array(ar, rel, nr);
        if (bs_pg_exec_ok(st, SQL_RELEASE_TAG_SLOTS, 1, p, "release tag concurrency slots", err) <
            0)
            return -1;
    }
    if (nv2 > 0) {
        p[0] = bs_pg_array(ar, rel2, nv2);
        if (bs_pg_exec_ok(st, SQL_QUEUE_TASK_RELEASES, 1, p, "queue tag lease releases for Prefect",
                          err) < 0)
            return -1;
    }
    return 0;
}

int bs_store_write(bs_store *st, bs_arena *ar, const bs_write *w, size_t n,
                   const bs_store_meanwhile *mw, bs_err *err)
{
    const size_t cap = n ? n : 1;
    const char **a[6], **s[8], **u[13];
    for (int i = 0; i < 6; i++)
        a[i] = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (int i = 0; i < 8; i++)
        s[i] = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (int i = 0; i < 13; i++)
        u[i] = bs_arena_alloc(ar, sizeof(char *) * cap);
    size_t na = 0, ns = 0, nu = 0;
    for (size_t i = 0; i < n; i++) {
        const bs_decision *d = w[i].d;
        if (d == NULL || (!d->write && !d->policy_changed)) continue;
        if (d->write && w[i].artifact_id) {
            a[0][na] = w[i].artifact_id;
            a[1][na] = d->run.id.s;
            a[2][na] = w[i].artifact_key;
            a[3][na] = w[i].artifact_type;
            a[4][na] = w[i].artifact_description;
            a[5][na] = w[i].artifact_data;
            na++;
        }
        if (d->write) {
            json_t *det = bs_details_to_json(&d->state.details);
            char *dt = json_dumps(det, JSON_COMPACT);
            json_decref(det);
            s[0][ns] = d->state.id.s;
            s[1][ns] = d->run.id.s;
            s[2][ns] = bs_state_type_name(d->state.type);
            s[3][ns] = bs_pg_ts_param(ar, d->state.timestamp);
            s[4][ns] = d->state.name ? d->state.name : "";
            s[5][ns] = d->state.message;
            s[6][ns] = bs_arena_strdup(ar, dt);
            s[7][ns] = w[i].artifact_id;
            free(dt);
            ns++;
        }
        u[0][nu] = d->run.id.s;
        u[1][nu] = d->write ? "t" : "f";
        u[2][nu] = d->write ? d->state.id.s : NULL;
        u[3][nu] = d->write ? bs_state_type_name(d->state.type) : NULL;
        u[4][nu] = d->write ? (d->state.name ? d->state.name : "") : NULL;
        u[5][nu] = d->write ? bs_pg_ts_param(ar, d->state.timestamp) : NULL;
        u[6][nu] = bs_pg_ts_param(ar, d->run.start_time);
        u[7][nu] = bs_pg_ts_param(ar, d->run.end_time);
        u[8][nu] = bs_pg_ts_param(ar, d->run.expected_start_time);
        u[9][nu] = bs_pg_ts_param(ar, d->run.next_scheduled_start_time);
        u[10][nu] = bs_pg_ts_param(ar, d->run.total_run_time_us);
        u[11][nu] = bs_arena_printf(ar, "%" PRId64, d->run.run_count);
        if (d->policy_changed) {
            json_t *pol = bs_policy_to_json(&d->run.policy);
            char *pt = json_dumps(pol, JSON_COMPACT);
            json_decref(pol);
            u[12][nu] = bs_arena_strdup(ar, pt);
            free(pt);
        } else {
            u[12][nu] = NULL;
        }
        nu++;
    }
    const char *p[13];
    if (na > 0) {
        for (int i = 0; i < 6; i++)
            p[i] = bs_pg_array(ar, a[i], na);
        if (bs_pg_exec_ok(st, SQL_INSERT_ARTIFACTS, 6, p, "write result artifacts", err) < 0)
            return -1;
    }
    if (ns > 0) {
        for (int i = 0; i < 8; i++)
            p[i] = bs_pg_array(ar, s[i], ns);
        if (bs_pg_exec_prepared_ok(st, SQL_INSERT_STATES, 8, p, "write flow run states", err) < 0)
            return -1;
    }
    if (nu > 0) {
        for (int i = 0; i < 13; i++)
            p[i] = bs_pg_array(ar, u[i], nu);
        if (bs_pg_exec_prepared_meanwhile_ok(st, SQL_UPDATE_RUNS, 13, p, mw, "update flow runs",
                                             err) < 0)
            return -1;
    } else if (mw != NULL) {
        mw->fn(mw->ctx);
    }
    return write_tasks(st, ar, w, n, err);
}
