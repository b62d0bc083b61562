/* Golden tests of the filter compiler: SQL text and parameter lists for Prefect's semantics,
 * corner by corner (filters-and-schema.md §2 and §6). */
#include <jansson.h>

#include "../t.h"
#include "filter.h"
#include "filter_sql.h"

typedef struct gcase {
    const char *json; /* the flow_runs value */
    const char *where;
    const char *params; /* params joined by " | " */
} gcase;

static const gcase CASES[] = {
    {"null", "TRUE", ""},
    {"{}", "TRUE", ""},
    /* one value: plain equality (the same rows; the planner can walk an index in id order) */
    {"{\"id\":{\"any_\":[\"3C90C3CC0D444B5088888DD25736052A\"]}}", "flow_run.id = $1::uuid",
     "3c90c3cc-0d44-4b50-8888-8dd25736052a"},
    /* empty any_ matches nothing; empty not_any_ is ignored */
    {"{\"id\":{\"any_\":[]}}", "flow_run.id = ANY($1::uuid[])", "{}"},
    {"{\"id\":{\"not_any_\":[]}}", "TRUE", ""},
    {"{\"id\":{\"not_any_\":[\"3c90c3cc-0d44-4b50-8888-8dd25736052a\"]}}",
     "flow_run.id <> ALL($1::uuid[])", "{\"3c90c3cc-0d44-4b50-8888-8dd25736052a\"}"},
    {"{\"name\":{\"like_\":\"\"}}", "TRUE", ""},
    {"{\"name\":{\"any_\":[\"a\\\"b\"],\"like_\":\"mar_%\"}}",
     "(flow_run.name = $1::text AND flow_run.name ILIKE '%' || $2 || '%')", "a\"b | mar_%"},
    {"{\"tags\":{\"all_\":[],\"any_\":[\"x\"],\"is_null_\":false}}",
     "(flow_run.tags ?| $1::text[] AND flow_run.tags <> '[]'::jsonb)", "{\"x\"}"},
    {"{\"tags\":{\"operator\":\"or_\",\"all_\":[\"a\",\"b\"],\"is_null_\":true}}",
     "(flow_run.tags ?& $1::text[] OR flow_run.tags = '[]'::jsonb)", "{\"a\",\"b\"}"},
    {"{\"deployment_id\":{\"is_null_\":true}}", "flow_run.deployment_id IS NULL", ""},
    {"{\"work_queue_name\":{\"any_\":[\"q\"],\"is_null_\":false}}",
     "(flow_run.work_queue_name = $1::text AND flow_run.work_queue_name IS NOT NULL)", "q"},
    {"{\"state\":{\"type\":{\"any_\":[\"PENDING\",\"RUNNING\"]}}}",
     "flow_run.state_type = ANY($1::state_type[])", "{\"PENDING\",\"RUNNING\"}"},
    /* both any_ and a non-empty not_any_: one AND-ed group (Prefect 3.9.1, checked by the
     * conformance test; an older reading said the child was dropped) */
    {"{\"state\":{\"type\":{\"any_\":[\"PENDING\"],\"not_any_\":[\"RUNNING\"]}}}",
     "(flow_run.state_type = $1::state_type AND flow_run.state_type <> ALL($2::state_type[]))",
     "PENDING | {\"RUNNING\"}"},
    /* an empty child is dropped; with or_ the other child stands alone */
    {"{\"state\":{\"operator\":\"or_\",\"type\":{},\"name\":{\"any_\":[],\"not_any_\":[\"Late\"]}}"
     "}",
     "(flow_run.state_name = ANY($1::text[]) AND flow_run.state_name <> ALL($2::text[]))",
     "{} | {\"Late\"}"},
    {"{\"state\":{\"type\":{\"any_\":[\"PENDING\"],\"not_any_\":[]},\"name\":{\"not_any_\":"
     "[\"Late\"]}}}",
     "(flow_run.state_type = $1::state_type AND flow_run.state_name <> ALL($2::text[]))",
     "PENDING | {\"Late\"}"},
    /* or_ with a sub-filter that yields TRUE matches everything */
    {"{\"operator\":\"or_\",\"name\":{},\"id\":{\"any_\":[\"3c90c3cc-0d44-4b50-8888-"
     "8dd25736052a\"]}}",
     "TRUE", ""},
    {"{\"operator\":\"or_\",\"deployment_id\":{\"is_null_\":true},\"flow_version\":{\"any_\":"
     "[\"1\"]}}",
     "(flow_run.deployment_id IS NULL OR flow_run.flow_version = $1::text)", "1"},
    {"{\"start_time\":{\"before_\":\"2023-11-07T05:31:56Z\",\"is_null_\":false}}",
     "(COALESCE(flow_run.start_time, flow_run.expected_start_time) <= $1::timestamptz AND "
     "flow_run.start_time IS NOT NULL)",
     "2023-11-07 05:31:56.000000+00"},
    {"{\"end_time\":{\"after_\":\"2023-11-07T07:31:56.25+02:00\"}}",
     "flow_run.end_time >= $1::timestamptz", "2023-11-07 05:31:56.250000+00"},
    {"{\"expected_start_time\":{\"after_\":\"2023-11-07T05:31:56\"},"
     "\"next_scheduled_start_time\":{\"before_\":\"2023-11-08 00:00:00Z\"}}",
     "(flow_run.expected_start_time >= $1::timestamptz AND flow_run.next_scheduled_start_time "
     "<= $2::timestamptz)",
     "2023-11-07 05:31:56.000000+00 | 2023-11-08 00:00:00.000000+00"},
    {"{\"parent_flow_run_id\":{\"any_\":[\"3c90c3cc-0d44-4b50-8888-8dd25736052a\"]}}",
     "flow_run.id IN (SELECT fr.id FROM flow_run fr JOIN task_run tr ON tr.id = "
     "fr.parent_task_run_id WHERE tr.flow_run_id = ANY($1::uuid[]))",
     "{\"3c90c3cc-0d44-4b50-8888-8dd25736052a\"}"},
    {"{\"parent_task_run_id\":{\"is_null_\":false}}", "flow_run.parent_task_run_id IS NOT NULL",
     ""},
    {"{\"idempotency_key\":{\"any_\":[\"k\"],\"not_any_\":[\"j\"]}}",
     "(flow_run.idempotency_key = $1::text AND flow_run.idempotency_key <> ALL($2::text[]))",
     "k | {\"j\"}"},
    {"{\"created_by\":{\"id_\":[\"{3C90C3CC-0D44-4B50-8888-8DD25736052A}\"],\"type_\":"
     "[\"DEPLOYMENT\"]}}",
     "((flow_run.created_by ->> 'id') = $1::text AND (flow_run.created_by ->> 'type') = $2::text)",
     "3c90c3cc-0d44-4b50-8888-8dd25736052a | DEPLOYMENT"},
    {"{\"tags\":{\"any_\":[\"a\"]},\"state\":{\"name\":{\"any_\":[\"Late\"]}}}",
     "(flow_run.tags ?| $1::text[] AND flow_run.state_name = $2::text)", "{\"a\"} | Late"},
};

typedef struct ecase {
    const char *json;
    const char *type, *field;
} ecase;

static const ecase ERRORS[] = {
    {"{\"id\":{\"any_\":[\"nope\"]}}", "uuid_parsing", "flow_runs.id.any_[0]"},
    {"{\"id\":{\"any_\":[7]}}", "uuid_type", "flow_runs.id.any_[0]"},
    {"{\"id\":{\"any_\":\"3c90c3cc-0d44-4b50-8888-8dd25736052a\"}}", "list_type",
     "flow_runs.id.any_"},
    {"{\"operator\":\"xor_\"}", "enum", "flow_runs.operator"},
    {"{\"labels\":{}}", "extra_forbidden", "flow_runs.labels"},
    {"{\"id\":{\"operator\":\"and_\"}}", "extra_forbidden", "flow_runs.id.operator"},
    {"{\"flow_version\":{\"not_any_\":[\"x\"]}}", "extra_forbidden",
     "flow_runs.flow_version.not_any_"},
    {"{\"state\":{\"type\":{\"any_\":[\"pending\"]}}}", "enum", "flow_runs.state.type.any_[0]"},
    {"{\"start_time\":{\"before_\":\"yesterday\"}}", "datetime_parsing",
     "flow_runs.start_time.before_"},
    {"{\"expected_start_time\":{\"is_null_\":true}}", "extra_forbidden",
     "flow_runs.expected_start_time.is_null_"},
    {"[1]", "model_type", "flow_runs"},
};

static void join_params(const bs_sql *s, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < s->nparams; i++) {
        if (i) strncat(out, " | ", n - strlen(out) - 1);
        strncat(out, s->params[i], n - strlen(out) - 1);
    }
}

/* The selection statement of a flow_runs filter in JSON (which must be valid). */
static void select_of(bs_arena *ar, const char *json, int limit, bs_sql *sql)
{
    json_t *j = json_loads(json, JSON_DECODE_ANY, NULL);
    bs_filter f;
    bs_err err = {0};
    CHECK_INT(bs_filter_from_json(j, "flow_runs", NULL, ar, &f, &err), 0);
    bs_filter_select_sql(&f, limit, ar, sql);
    json_decref(j);
}

int main(void)
{
    bs_arena *ar = bs_arena_new();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        json_error_t jerr;
        json_t *j = json_loads(CASES[i].json, JSON_DECODE_ANY, &jerr);
        bs_filter f;
        bs_err err = {0};
        bs_sql sql;
        char params[2048];
        CHECK(j != NULL);
        int rc = bs_filter_from_json(j, "flow_runs", NULL, ar, &f, &err);
        CHECK_INT(rc, 0);
        if (rc < 0) fprintf(stderr, "case %zu: %s: %s\n", i, err.field, err.msg);
        bs_filter_sql(&f, 1, ar, &sql);
        CHECK_STR(sql.text, CASES[i].where);
        join_params(&sql, params, sizeof params);
        CHECK_STR(params, CASES[i].params);
        json_decref(j);
    }
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++) {
        json_t *j = json_loads(ERRORS[i].json, JSON_DECODE_ANY, NULL);
        bs_filter f;
        bs_err err = {0};
        CHECK_INT(bs_filter_from_json(j, "flow_runs", NULL, ar, &f, &err), -1);
        CHECK_INT(err.code, BS_EINVAL);
        CHECK_STR(err.type, ERRORS[i].type);
        CHECK_STR(err.field, ERRORS[i].field);
        json_decref(j);
    }

    /* the selection statement: Prefect's order, the limit as the last parameter */
    {
        bs_sql sql;
        select_of(ar, "{\"tags\":{\"all_\":[\"a\"]}}", 50, &sql);
        CHECK_STR(sql.text, "SELECT flow_run.id FROM flow_run WHERE flow_run.tags ?& "
                            "$1::text[] ORDER BY flow_run.id DESC LIMIT $2");
        CHECK_INT(sql.nparams, 2);
        CHECK_STR(sql.params[1], "50");
    }
    /* a 10,000-element any_ is one parameter */
    {
        json_t *ids = json_array(), *j = json_object(), *id = json_object();
        for (int i = 0; i < 10000; i++) {
            char u[40];
            snprintf(u, sizeof u, "00000000-0000-4000-8000-%012d", i);
            json_array_append_new(ids, json_string(u));
        }
        json_object_set_new(id, "any_", ids);
        json_object_set_new(j, "id", id);
        bs_filter f;
        bs_err err = {0};
        bs_sql sql;
        CHECK_INT(bs_filter_from_json(j, "flow_runs", NULL, ar, &f, &err), 0);
        bs_filter_sql(&f, 1, ar, &sql);
        CHECK_INT(sql.nparams, 1);
        CHECK_STR(sql.text, "flow_run.id = ANY($1::uuid[])");
        CHECK_INT(strlen(sql.params[0]), 10000 * 39 + 1);
        json_decref(j);
    }
    /* the selection's plan hints: a GIN-able tags term gets the window and the sparse plan */
    static const struct {
        const char *json;
        bool gin;
    } HINTS[] = {
        {"{\"tags\":{\"all_\":[\"a\"]},\"state\":{\"type\":{\"any_\":[\"COMPLETED\"]}}}", true},
        {"{\"tags\":{\"any_\":[\"a\",\"b\"]}}", true},
        {"{\"tags\":{\"all_\":[]}}", false},       /* no term */
        {"{\"tags\":{\"is_null_\":true}}", false}, /* not GIN-able */
        {"{\"tags\":{\"operator\":\"or_\",\"all_\":[\"a\"],\"is_null_\":true}}", false},
        {"{\"operator\":\"or_\",\"tags\":{\"all_\":[\"a\"]},\"flow_version\":{\"any_\":"
         "[\"1\"]}}",
         false}, /* OR with a branch the GIN index cannot answer */
        {"{\"tags\":{\"all_\":[\"a\"]},\"id\":{\"any_\":[\"3c90c3cc-0d44-4b50-8888-"
         "8dd25736052a\"]}}",
         false}, /* ids named: primary key lookups */
        {"{\"deployment_id\":{\"any_\":[\"3c90c3cc-0d44-4b50-8888-8dd25736052a\"]}}", false},
        {"null", false},
    };
    for (size_t i = 0; i < sizeof HINTS / sizeof HINTS[0]; i++) {
        bs_sql sql;
        select_of(ar, HINTS[i].json, 50, &sql);
        CHECK_INT(sql.limit, 50);
        CHECK_INT(sql.window != NULL, HINTS[i].gin);
        CHECK_INT(sql.sparse != NULL, HINTS[i].gin);
    }
    {
        bs_sql sql;
        select_of(ar, "{\"tags\":{\"all_\":[\"a\"]}}", 7, &sql);
        CHECK_STR(sql.window, "SELECT flow_run.id FROM (SELECT * FROM flow_run ORDER BY "
                              "flow_run.id DESC LIMIT 1000) AS flow_run WHERE flow_run.tags ?& "
                              "$1::text[] ORDER BY flow_run.id DESC LIMIT $2");
        CHECK_STR(sql.sparse, "WITH m AS MATERIALIZED (SELECT flow_run.id FROM flow_run WHERE "
                              "flow_run.tags ?& $1::text[]) SELECT m.id FROM m ORDER BY m.id "
                              "DESC LIMIT $2");
        CHECK_STR(sql.params[1], "7");
    }
    bs_arena_free(ar);
    return t_done();
}
