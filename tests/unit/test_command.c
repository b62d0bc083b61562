/* Command validation as Prefect validates the request (filters-and-schema.md §1): the seed's
 * body, defaults, lax coercions, and one invalid field per case with its path and type. */
#include <jansson.h>
#include <stdlib.h>

#include "../t.h"
#include "command.h"
#include "filter_sql.h"
#include "timeutil.h"

static const int64_t NOW = 1700000000000000LL; /* 2023-11-14T22:13:20Z */
#define BS_TEST_UUID "3c90c3cc-0d44-4b50-8888-8dd25736052a"

static int validate(const char *text, bs_arena *ar, bs_command *cmd, bs_err *err)
{
    json_t *j = json_loads(text, 0, NULL);
    int rc = bs_command_from_json(j, NULL, NOW, NULL, ar, cmd, err);
    json_decref(j);
    return rc;
}

/* The identity of a body (bs_command_identity), through validation as the worker does it. */
static const char *identity(const char *text, bs_arena *ar)
{
    json_t *j = json_loads(text, 0, NULL);
    bs_command cmd;
    bs_err err = {0};
    const char *id = bs_command_from_json(j, NULL, NOW, NULL, ar, &cmd, &err) == 0
                         ? bs_command_identity(ar, j, &cmd)
                         : NULL;
    json_decref(j);
    return id;
}

typedef struct ecase {
    const char *body, *type, *field;
} ecase;

static const ecase ERRORS[] = {
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"issued_at\":9223372036854775807}",
     "datetime_parsing", "issued_at"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"limit\":1e300}",
     "int_parsing_size", "limit"},
    {"{\"command_id\":\"c\"}", "missing", "state"},
    {"{\"command_id\":\"c\",\"state\":null}", "missing", "state"},
    {"{\"command_id\":\"c\",\"state\":{}}", "missing", "state.type"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"cancelled\"}}", "enum", "state.type"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\",\"id\":\"x\"}}", "extra_forbidden",
     "state.id"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"limit\":0}", "greater_than_equal",
     "limit"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"limit\":51}", "less_than_equal",
     "limit"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"limit\":5.5}", "int_from_float",
     "limit"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"force\":2}", "bool_parsing",
     "force"},
    {"{\"state\":{\"type\":\"CANCELLED\"}}", "missing", "command_id"},
    {"{\"command_id\":\"\",\"state\":{\"type\":\"CANCELLED\"}}", "string_too_long", "command_id"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\",\"state_details\":{"
     "\"flow_run_id\":\"x\"}}}",
     "uuid_parsing", "state.state_details.flow_run_id"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\",\"state_details\":{"
     "\"pause_reschedule\":null}}}",
     "bool_type", "state.state_details.pause_reschedule"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"flow_runs\":{\"id\":{\"any_\":"
     "[\"nope\"]}}}",
     "uuid_parsing", "flow_runs.id.any_[0]"},
    {"{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},\"reply_topic\":\"a b\"}",
     "string_pattern_mismatch", "reply_topic"},
};

int main(void)
{
    bs_arena *ar = bs_arena_new();
    bs_command cmd;
    bs_err err = {0};

    /* The seed's body as published: its state has no type, which Prefect rejects. */
    FILE *fp = fopen("tests/data/seed_body.json", "r");
    CHECK(fp != NULL);
    json_t *seed = fp ? json_loadf(fp, 0, NULL) : NULL;
    if (fp) fclose(fp);
    CHECK(seed != NULL);
    CHECK_INT(bs_command_from_json(seed, "seed-1", NOW, NULL, ar, &cmd, &err), -1);
    CHECK_STR(err.type, "missing");
    CHECK_STR(err.field, "state.type");

    /* With a type it is valid: every filter field of the seed compiles. */
    json_object_set_new(json_object_get(seed, "state"), "type", json_string("CANCELLED"));
    CHECK_INT(bs_command_from_json(seed, "seed-1", NOW, NULL, ar, &cmd, &err), 0);
    CHECK_STR(cmd.command_id, "seed-1");
    CHECK_STR(cmd.state_name, "<string>");
    CHECK_STR(cmd.state_data, "\"<unknown>\"");
    CHECK(cmd.data_truthy);
    CHECK(!cmd.data_persisted);
    CHECK_INT(cmd.limit, 50);
    CHECK(!cmd.force);
    CHECK_STR(cmd.details.flow_run_id.s, "3c90c3cc-0d44-4b50-8888-8dd25736052a");
    CHECK_STR(cmd.details.run_input_keyset, "{}");
    CHECK_INT(cmd.details.deferred, 0);
    CHECK_INT(cmd.details.refresh_cache, 1);
    for (int i = 0; i < BS_F_COUNT; i++)
        CHECK(cmd.filter.f[i].present);
    bs_sql sql;
    bs_filter_select_sql(&cmd.filter, cmd.limit, ar, &sql);
    CHECK(strstr(sql.text, "flow_run.state_type = ANY(") != NULL);  /* any_: [] kept: no match */
    CHECK(strstr(sql.text, "flow_run.state_name <> ALL(") != NULL); /* any_ + not_any_: both */
    CHECK(strstr(sql.text, "(flow_run.created_by ->> 'type') = ANY(") != NULL);
    json_decref(seed);

    /* Defaults and lax coercions */
    CHECK_INT(validate("{\"command_id\":\"c2\",\"state\":{\"type\":\"SCHEDULED\"},\"limit\":\"5\","
                       "\"force\":\"yes\",\"sort\":\"ignored\",\"issued_at\":1700000000000}",
                       ar, &cmd, &err),
              0);
    CHECK_INT(cmd.limit, 5);
    CHECK(cmd.force);
    CHECK(!cmd.filter.present);
    CHECK(cmd.state_name == NULL);
    CHECK_INT(cmd.details.scheduled_time, NOW); /* SCHEDULED without scheduled_time: now */
    CHECK_INT(cmd.issued_at, 1700000000000000LL);
    CHECK_INT(validate("{\"command_id\":\"c3\",\"state\":{\"type\":\"COMPLETED\",\"data\":{"
                       "\"type\":\"unpersisted\"}},\"limit\":5.0,\"force\":\"off\"}",
                       ar, &cmd, &err),
              0);
    CHECK_INT(cmd.limit, 5);
    CHECK(!cmd.force);
    CHECK(cmd.data_truthy);
    CHECK(!cmd.data_persisted);

    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++) {
        memset(&err, 0, sizeof err);
        CHECK_INT(validate(ERRORS[i].body, ar, &cmd, &err), -1);
        CHECK_INT(err.code, BS_EINVAL);
        CHECK_STR(err.type, ERRORS[i].type);
        CHECK_STR(err.field, ERRORS[i].field);
    }

    /* Scalars */
    bs_uuid u;
    CHECK(bs_uuid_parse("urn:uuid:3C90C3CC-0D44-4B50-8888-8DD25736052A", &u));
    CHECK_STR(u.s, "3c90c3cc-0d44-4b50-8888-8dd25736052a");
    CHECK(!bs_uuid_parse("3c90c3cc-0d44-4b50-8888-8dd25736052", &u));
    int64_t ts;
    char buf[48];
    CHECK(bs_ts_parse("2023-11-07T05:31:56Z", &ts));
    CHECK_STR(bs_ts_format(ts, buf, sizeof buf), "2023-11-07T05:31:56Z");
    CHECK(bs_ts_parse("2024-02-29T23:59:59.1234567-01:30", &ts));
    CHECK_STR(bs_ts_format(ts, buf, sizeof buf), "2024-03-01T01:29:59.123456Z");
    CHECK(!bs_ts_parse("2023-02-29T00:00:00Z", &ts));
    CHECK(!bs_ts_parse("2023-11-07T25:00:00Z", &ts));
    CHECK(bs_ts_parse("1969-12-31T23:59:59.5Z", &ts));
    CHECK_INT(ts, -500000);
    CHECK_STR(bs_ts_format(ts, buf, sizeof buf), "1969-12-31T23:59:59.500000Z");

    /* identity: nulls, issued_at and key order do not count; force and limit are explicit */
    const char *a = identity("{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},"
                             "\"flow_runs\":{\"tags\":{\"all_\":[\"x\"]}}}",
                             ar);
    CHECK_STR(a, "{\"command_id\":\"c\",\"flow_runs\":{\"tags\":{\"all_\":[\"x\"]}},"
                 "\"force\":false,\"limit\":50,\"state\":{\"type\":\"CANCELLED\"}}");
    CHECK_STR(identity("{\"flow_runs\":{\"tags\":{\"all_\":[\"x\"],\"is_null_\":null}},"
                       "\"issued_at\":\"2026-01-01T00:00:00Z\",\"force\":false,\"limit\":50,"
                       "\"state\":{\"message\":null,\"type\":\"CANCELLED\"},\"command_id\":\"c\"}",
                       ar),
              a);
    /* another state, another limit: another body */
    CHECK(strcmp(identity("{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLING\"},"
                          "\"flow_runs\":{\"tags\":{\"all_\":[\"x\"]}}}",
                          ar),
                 a) != 0);
    CHECK(strcmp(identity("{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},"
                          "\"flow_runs\":{\"tags\":{\"all_\":[\"x\"]}},\"limit\":5}",
                          ar),
                 a) != 0);

    /* caps: each size a message controls is bounded, at the limit accepted, above it rejected
     * naming the field and the config key */
    const bs_caps caps = {.list_items = 3, .string_bytes = 20, .pattern_bytes = 4, .max_runs = 9};
    static const struct {
        const char *body, *field, *key;
        bool ok;
    } CAPS[] = {
        {"\"flow_runs\":{\"tags\":{\"any_\":[\"a\",\"b\",\"c\"]}}", "", "", true},
        {"\"flow_runs\":{\"tags\":{\"any_\":[\"a\",\"b\",\"c\",\"d\"]}}", "flow_runs.tags.any_",
         "limits.max_list_items", false},
        {"\"flow_runs\":{\"id\":{\"not_any_\":[\"" BS_TEST_UUID "\",\"" BS_TEST_UUID
         "\",\"" BS_TEST_UUID "\",\"" BS_TEST_UUID "\"]}}",
         "flow_runs.id.not_any_", "limits.max_list_items", false},
        {"\"flow_runs\":{\"name\":{\"like_\":\"abcd\"}}", "", "", true},
        {"\"flow_runs\":{\"name\":{\"like_\":\"abcde\"}}", "flow_runs.name.like_",
         "limits.max_pattern_bytes", false},
        {"\"flow_runs\":{\"name\":{\"any_\":[\"abcdefghijklmnopqrst\"]}}", "", "", true},
        {"\"flow_runs\":{\"name\":{\"any_\":[\"abcdefghijklmnopqrstu\"]}}",
         "flow_runs.name.any_[0]", "limits.max_string_bytes", false},
        {"\"flow_runs\":{\"state\":{\"name\":{\"not_any_\":[\"abcdefghijklmnopqrstu\"]}}}",
         "flow_runs.state.name.not_any_[0]", "limits.max_string_bytes", false},
        {"\"flow_runs\":{\"created_by\":{\"type_\":[\"abcdefghijklmnopqrstu\"]}}",
         "flow_runs.created_by.type_[0]", "limits.max_string_bytes", false},
        {"\"max_runs\":9", "", "", true},
        {"\"max_runs\":10", "max_runs", "limits.max_runs", false},
    };
    for (size_t i = 0; i < sizeof CAPS / sizeof CAPS[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\"},%s}",
                 CAPS[i].body);
        json_t *j = json_loads(text, 0, NULL);
        CHECK(j != NULL);
        memset(&err, 0, sizeof err);
        int rc = bs_command_from_json(j, NULL, NOW, &caps, ar, &cmd, &err);
        json_decref(j);
        CHECK_INT(rc, CAPS[i].ok ? 0 : -1);
        if (CAPS[i].ok) continue;
        CHECK_STR(err.field, CAPS[i].field);
        CHECK(strstr(err.msg, CAPS[i].key) != NULL);
    }
    memset(&err, 0, sizeof err);
    CHECK_INT(validate("{\"command_id\":\"c\",\"state\":{\"type\":\"CANCELLED\",\"name\":\""
                       "abcdefghijklmnopqrstu\"}}",
                       ar, &cmd, &err),
              0); /* the defaults: 21 bytes are fine */
    json_t *named = json_pack("{s:s,s:{s:s,s:s}}", "command_id", "c", "state", "type", "CANCELLED",
                              "name", "abcdefghijklmnopqrstu");
    CHECK_INT(bs_command_from_json(named, NULL, NOW, &caps, ar, &cmd, &err), -1);
    CHECK_STR(err.field, "state.name");
    json_decref(named);

    bs_arena_free(ar);
    return t_done();
}
