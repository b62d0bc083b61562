/* Reply records: the JSON trees codec.c encodes, shaped like their Avro schemas. */
#include "../t.h"
#include "result.h"

int main(void)
{
    bs_state st;
    memset(&st, 0, sizeof st);
    bs_details_init(&st.details);
    snprintf(st.id.s, sizeof st.id.s, "%s", "33333333-3333-4333-8333-333333333333");
    st.type = BS_CANCELLED;
    st.name = "Cancelled";
    st.timestamp = 1700000000123456LL;
    st.data = "{\"a\":1}";
    bs_result r = {.command_id = "c1",
                   .seq = 1,
                   .total = 2,
                   .flow_run_id = "11111111-1111-4111-8111-111111111111",
                   .status = BS_ACCEPT,
                   .state = &st};
    json_t *j = bs_result_to_json(&r);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(strstr(s, "\"details\":{\"delay_seconds\":null,\"reason\":null,\"type\":"
                    "\"accept_details\"}") != NULL);
    CHECK(strstr(s, "\"timestamp\":1700000000123456") != NULL);
    CHECK(strstr(s, "\"data\":\"{\\\"a\\\":1}\"") != NULL);
    CHECK_INT(json_object_size(json_object_get(json_object_get(j, "state"), "state_details")), 18);
    free(s);
    json_decref(j);

    r.status = BS_WAIT;
    r.state = NULL;
    r.reason = "Scheduled time is in the future";
    r.delay_seconds = 7;
    j = bs_result_to_json(&r);
    CHECK(json_is_null(json_object_get(j, "state")));
    CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "details"), "delay_seconds")),
              7);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "details"), "type")),
              "wait_details");
    json_decref(j);

    bs_err err = {0};
    bs_err_input(&err, "uuid_parsing", "flow_runs.id.any_[0]", "input should be a valid UUID");
    bs_completion c = {.command_id = NULL,
                       .error_code = "invalid_command",
                       .err = &err,
                       .completed_at_us = 1700000000123456LL};
    j = bs_completion_to_json(&c);
    json_t *e = json_object_get(j, "error");
    CHECK_STR(json_string_value(json_object_get(e, "field")), "flow_runs.id.any_[0]");
    CHECK_STR(json_string_value(json_object_get(e, "type")), "uuid_parsing");
    CHECK_INT(json_integer_value(json_object_get(j, "completed_at")), 1700000000123LL);
    CHECK(json_is_null(json_object_get(j, "command_id")));
    json_decref(j);
    return t_done();
}
