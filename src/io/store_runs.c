/* store_runs: reading Prefect's runs. The selection statements come from filter_sql; the
 * runs are locked FOR UPDATE in Prefect's order (id DESC) and loaded with everything the
 * rules read (state, deployment and its limit, the lease of the current state, state
 * timestamps, parent task runs), then the related objects of their events. */
#include "store_int.h"

#include <jansson.h>

#include "command.h"

int bs_store_select(bs_store *st, bs_arena *ar, const bs_sql *sql, const char ***ids, size_t *n,
                    bs_err *err)
{
    PGresult *res = NULL;
    const char *text = sql->text;
    if (sql->window != NULL) { /* the newest runs first: enough matches there are the answer */
        res = bs_pg_exec(st, sql->window, (int)sql->nparams, sql->params);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            return bs_pg_fail(st, res, err, "select the flow runs");
        const int k = PQntuples(res);
        if (k < sql->limit) {
            PQclear(res);
            res = NULL;
            if (k < BS_SELECT_DENSE) text = sql->sparse; /* few matches: read them all */
        }
    }
    if (res == NULL) res = bs_pg_exec(st, text, (int)sql->nparams, sql->params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "select the flow runs");
    *ids = bs_pg_col_strings(res, ar, n);
    PQclear(res);
    return 0;
}

/* clang-format off */
#define UUID_RE "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
/* Timestamps come back as microseconds since the epoch (bigint), so no text parsing. The
 * deployment and its concurrency limit come with the run: the rules need to know whether the
 * deployment exists and whether it is limited. */
static const char SQL_LOCK[] =
    "SELECT fr.id, fr.deployment_id, fr.parent_task_run_id, "
    "  COALESCE(fr.infrastructure_pid, '') <> '', fr.run_count, "
    "  " BS_PG_US("fr.expected_start_time") ", " BS_PG_US("fr.next_scheduled_start_time") ", "
    "  " BS_PG_US("fr.start_time") ", " BS_PG_US("fr.end_time") ", " BS_PG_US("fr.total_run_time") ", "
    "  fr.empirical_policy::text, "
    "  " BS_PG_STATE_COLS("s") ", "
    "  COALESCE(NULLIF(s.data, 'null'::jsonb), a.data::jsonb)::text, "
    "  ARRAY(SELECT " BS_PG_US("x.timestamp") " FROM flow_run_state x "
    "        WHERE x.flow_run_id = fr.id "
    "          AND x.timestamp >= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'), "
    "  d.id IS NOT NULL, cl.id IS NOT NULL, COALESCE(cl.\"limit\", 0), "
    "  d.concurrency_limit_id, COALESCE(cl.active, false), "
    "  COALESCE(d.concurrency_options->>'collision_strategy', '') = 'CANCEL_NEW', "
    "  CASE WHEN jsonb_typeof(d.concurrency_options->'grace_period_seconds') = 'number' "
    "       THEN (d.concurrency_options->>'grace_period_seconds')::numeric::bigint ELSE -1 END, "
    "  ls.id IS NOT NULL, ls.limit_id, COALESCE(ls.slots, 1), COALESCE(lcl.active, false) "
    "FROM flow_run fr "
    "LEFT JOIN flow_run_state s ON s.id = fr.state_id "
    "LEFT JOIN artifact a ON a.id = s.result_artifact_id "
    "LEFT JOIN deployment d ON d.id = fr.deployment_id "
    "LEFT JOIN concurrency_limit_v2 cl ON cl.id = d.concurrency_limit_id "
    "LEFT JOIN bulkstate.deployment_lease ls ON ls.id = CASE "
    "  WHEN s.state_details->>'deployment_concurrency_lease_id' ~* '" UUID_RE "' "
    "  THEN (s.state_details->>'deployment_concurrency_lease_id')::uuid END "
    "LEFT JOIN concurrency_limit_v2 lcl ON lcl.id = ls.limit_id "
    "WHERE fr.id = ANY($1::uuid[]) ORDER BY fr.id DESC FOR UPDATE OF fr";
/* clang-format on */

/* run_count, expected_start_time, next_scheduled_start_time, start_time, end_time and
 * total_run_time from columns c..c+5: the bookkeeping flow runs and task runs share. */
static void col_bookkeeping(const PGresult *res, int r, int c, int64_t *run_count,
                            int64_t *expected, int64_t *next, int64_t *start, int64_t *end,
                            int64_t *total)
{
    *run_count = strtoll(PQgetvalue(res, r, c), NULL, 10);
    *expected = bs_pg_col_ts(res, r, c + 1);
    *next = bs_pg_col_ts(res, r, c + 2);
    *start = bs_pg_col_ts(res, r, c + 3);
    *end = bs_pg_col_ts(res, r, c + 4);
    *total = bs_pg_col_ts(res, r, c + 5);
    if (*total == BS_TS_NULL) *total = 0;
}

void bs_pg_col_state(const PGresult *res, int r, int c, bs_arena *ar, bs_state *s)
{
    memset(s, 0, sizeof *s);
    bs_details_init(&s->details);
    s->type = BS_NONE;
    if (PQgetisnull(res, r, c)) return;
    bs_pg_col_uuid(res, r, c, &s->id);
    s->type = bs_state_type_parse(PQgetvalue(res, r, c + 1));
    s->name = bs_pg_col_str(res, r, c + 2, ar);
    s->message = bs_pg_col_str(res, r, c + 3, ar);
    s->timestamp = bs_pg_col_ts(res, r, c + 4);
    json_t *det = json_loads(PQgetvalue(res, r, c + 5), 0, NULL);
    bs_details_from_json(det, false, "state_details", ar, &s->details, NULL);
    json_decref(det);
}

static void load_row(const PGresult *res, int r, bs_arena *ar, bs_run *run)
{
    memset(run, 0, sizeof *run);
    bs_pg_col_uuid(res, r, 0, &run->id);
    bs_pg_col_uuid(res, r, 1, &run->deployment_id);
    bs_pg_col_uuid(res, r, 2, &run->parent_task_run_id);
    run->has_infrastructure_pid = bs_pg_col_bool(res, r, 3);
    run->deployment_exists = bs_pg_col_bool(res, r, 19);
    run->deployment_limited = bs_pg_col_bool(res, r, 20);
    run->deployment_limit = strtoll(PQgetvalue(res, r, 21), NULL, 10);
    bs_pg_col_uuid(res, r, 22, &run->concurrency_limit_id);
    run->limit_active = bs_pg_col_bool(res, r, 23);
    run->cancel_new = bs_pg_col_bool(res, r, 24);
    run->grace_period_s = strtoll(PQgetvalue(res, r, 25), NULL, 10);
    run->lease_found = bs_pg_col_bool(res, r, 26);
    bs_pg_col_uuid(res, r, 27, &run->lease_limit_id);
    run->lease_slots = strtoll(PQgetvalue(res, r, 28), NULL, 10);
    run->lease_limit_active = bs_pg_col_bool(res, r, 29);
    col_bookkeeping(res, r, 4, &run->run_count, &run->expected_start_time,
                    &run->next_scheduled_start_time, &run->start_time, &run->end_time,
                    &run->total_run_time_us);
    json_t *pol = json_loads(PQgetvalue(res, r, 10), 0, NULL);
    bs_policy_from_json(pol, ar, &run->policy);
    json_decref(pol);

    bs_state *cur = &run->current;
    bs_pg_col_state(res, r, 11, ar, cur);
    if (cur->type != BS_NONE) {
        cur->data = bs_pg_col_str(res, r, 17, ar);
        if (cur->data) {
            json_t *d = json_loads(cur->data, JSON_DECODE_ANY, NULL);
            bs_data_flags(d, &cur->data_truthy, &cur->data_persisted);
            json_decref(d);
        }
    }
    /* "{1,2,3}" */
    const char *arr = PQgetvalue(res, r, 18);
    size_t cap = 1;
    for (const char *p = arr; *p; p++)
        cap += *p == ',';
    int64_t *taken = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    size_t n = 0;
    for (const char *p = arr + 1; *p && *p != '}';) {
        char *end;
        taken[n++] = strtoll(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p != '}') break;
    }
    run->taken_ts = taken;
    run->n_taken_ts = n;
}

/* clang-format off */
/* Subflows' parent task runs (G11), locked after the flow runs, in id order. */
static const char SQL_LOCK_TASKS[] =
    "SELECT t.id, t.flow_run_id, s.type, " BS_PG_US("s.timestamp") ", t.run_count, "
    "  " BS_PG_US("t.expected_start_time") ", " BS_PG_US("t.next_scheduled_start_time") ", "
    "  " BS_PG_US("t.start_time") ", " BS_PG_US("t.end_time") ", " BS_PG_US("t.total_run_time") ", "
    "  jsonb_typeof(t.tags) = 'array' AND jsonb_array_length(t.tags) > 0, "
    "  (SELECT string_agg(l.name, ',' ORDER BY l.name) FROM concurrency_limit_v2 l "
    "   WHERE jsonb_typeof(t.tags) = 'array' AND l.active_slots > 0 "
    "     AND l.name IN (SELECT 'tag:' || x FROM jsonb_array_elements_text(t.tags) x)) "
    "FROM task_run t LEFT JOIN task_run_state s ON s.id = t.state_id "
    "WHERE t.id = ANY($1::uuid[]) ORDER BY t.id FOR UPDATE OF t";
/* clang-format on */

static int lock_parent_tasks(bs_store *st, bs_arena *ar, bs_run *runs, const bool *found, size_t n,
                             bs_err *err)
{
    const char **ids = bs_arena_alloc(ar, sizeof *ids * (n ? n : 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (found[i] && !bs_uuid_null(&runs[i].parent_task_run_id))
            ids[k++] = runs[i].parent_task_run_id.s;
    if (k == 0) return 0;
    const char *p[1] = {bs_pg_array(ar, ids, k)};
    PGresult *res = bs_pg_exec_prepared(st, SQL_LOCK_TASKS, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "lock the parent task runs");
    const int rows = PQntuples(res);
    bs_task_run *tasks = bs_arena_alloc(ar, sizeof *tasks * (rows ? (size_t)rows : 1));
    for (int r = 0; r < rows; r++) {
        bs_task_run *t = &tasks[r];
        memset(t, 0, sizeof *t);
        t->found = true;
        bs_pg_col_uuid(res, r, 0, &t->id);
        bs_pg_col_uuid(res, r, 1, &t->flow_run_id);
        t->state_type =
            PQgetisnull(res, r, 2) ? BS_NONE : bs_state_type_parse(PQgetvalue(res, r, 2));
        t->state_timestamp = bs_pg_col_ts(res, r, 3);
        col_bookkeeping(res, r, 4, &t->run_count, &t->expected_start_time,
                        &t->next_scheduled_start_time, &t->start_time, &t->end_time,
                        &t->total_run_time_us);
        t->has_tags = bs_pg_col_bool(res, r, 10);
        t->tag_v2_limits = bs_pg_col_str(res, r, 11, ar);
    }
    PQclear(res);
    for (size_t i = 0; i < n; i++) {
        if (!found[i] || bs_uuid_null(&runs[i].parent_task_run_id)) continue;
        static const bs_task_run missing = {.found = false};
        runs[i].parent_task = &missing;
        for (int r = 0; r < rows; r++)
            if (strcmp(tasks[r].id.s, runs[i].parent_task_run_id.s) == 0) {
                runs[i].parent_task = &tasks[r];
                break;
            }
    }
    return 0;
}

/* b->skip[i]: the locked run i no longer matches filter (a large command's batch, selected
 * before it was locked). */
static int recheck(bs_store *st, bs_arena *ar, bs_batch *b, const bs_filter *filter, bs_err *err)
{
    bs_sql sql;
    bs_filter_recheck_sql(filter, bs_pg_array(ar, b->ids, b->n), ar, &sql);
    PGresult *res = bs_pg_exec(st, sql.text, (int)sql.nparams, sql.params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "check the batch still matches");
    for (size_t i = 0; i < b->n; i++) {
        bool match = false;
        for (int r = 0; r < PQntuples(res) && !match; r++)
            match = strcmp(b->ids[i], PQgetvalue(res, r, 0)) == 0;
        b->skip[i] = b->found[i] && !match; /* changed since it was selected: not transitioned */
    }
    PQclear(res);
    return 0;
}

int bs_store_lock_runs(bs_store *st, bs_arena *ar, bs_batch *b, int64_t taken_since_us,
                       const bs_filter *filter, bs_err *err)
{
    if (b->n == 0) return 0;
    char since[32];
    snprintf(since, sizeof since, "%" PRId64, taken_since_us);
    const char *p[2] = {bs_pg_array(ar, b->ids, b->n), since};
    PGresult *res = bs_pg_exec_prepared(st, SQL_LOCK, 2, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "lock the flow runs");
    int rows = PQntuples(res), r = 0;
    /* both lists are in id DESC order: merge */
    for (size_t i = 0; i < b->n; i++) {
        b->found[i] = r < rows && strcmp(PQgetvalue(res, r, 0), b->ids[i]) == 0;
        if (b->found[i]) load_row(res, r++, ar, &b->runs[i]);
    }
    PQclear(res);
    if (filter != NULL && recheck(st, ar, b, filter, err) < 0) return -1;
    return lock_parent_tasks(st, ar, b->runs, b->found, b->n, err);
}

/* clang-format off */
/* What a run's state-change event names besides the run: Prefect's related resources. */
static const char SQL_EVENT_CONTEXT[] =
    "SELECT fr.id::text, json_build_object("
    "  'flow_run', json_build_object('name', fr.name, 'tags', fr.tags, 'created_by', fr.created_by), "
    "  'flow', CASE WHEN f.id IS NOT NULL THEN "
    "    json_build_object('id', f.id, 'name', f.name, 'tags', f.tags) END, "
    "  'deployment', CASE WHEN d.id IS NOT NULL THEN "
    "    json_build_object('id', d.id, 'name', d.name, 'tags', d.tags) END, "
    "  'work_queue', CASE WHEN wq.id IS NOT NULL THEN "
    "    json_build_object('id', wq.id, 'name', wq.name) END, "
    "  'work_pool', CASE WHEN wp.id IS NOT NULL THEN "
    "    json_build_object('id', wp.id, 'name', wp.name, 'type', wp.type) END, "
    "  'task_run', CASE WHEN tr.id IS NOT NULL THEN "
    "    json_build_object('id', tr.id, 'name', tr.name, 'tags', tr.tags) END)::text "
    "FROM flow_run fr "
    "LEFT JOIN flow f ON f.id = fr.flow_id "
    "LEFT JOIN deployment d ON d.id = fr.deployment_id "
    "LEFT JOIN work_queue wq ON wq.id = fr.work_queue_id "
    "LEFT JOIN work_pool wp ON wp.id = wq.work_pool_id "
    "LEFT JOIN task_run tr ON tr.id = fr.parent_task_run_id "
    "WHERE fr.id = ANY($1::uuid[])";
/* clang-format on */

int bs_store_event_context(bs_store *st, bs_arena *ar, const char *const *ids, size_t n,
                           const char **ctx, bs_err *err)
{
    for (size_t i = 0; i < n; i++)
        ctx[i] = NULL;
    if (n == 0) return 0;
    const char *p[1] = {bs_pg_array(ar, ids, n)};
    PGresult *res = bs_pg_exec_prepared(st, SQL_EVENT_CONTEXT, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "load the runs' related resources");
    for (int r = 0; r < PQntuples(res); r++) { /* a run named twice gets its row twice */
        const char *c = NULL;
        for (size_t i = 0; i < n; i++)
            if (ctx[i] == NULL && strcmp(ids[i], PQgetvalue(res, r, 0)) == 0)
                ctx[i] = c ? c : (c = bs_arena_strdup(ar, PQgetvalue(res, r, 1)));
    }
    PQclear(res);
    return 0;
}
