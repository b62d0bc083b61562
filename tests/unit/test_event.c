/* The state-change event, field by field as Prefect's flow_run_state_change_event builds it
 * (prefect/server/models/events.py; its tests: tests/server/orchestration/
 * test_instrumentation_policies.py check the name, resource, related and payload). */
#include "../t.h"
#include "event.h"

#define S 1000000LL
static const int64_t T = 1700000000LL * S; /* 2023-11-14T22:13:20Z */

static const char *get(json_t *o, const char *path)
{
    static char buf[256];
    json_t *v = o;
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    for (char *tok = strtok(p, "/"); tok && v; tok = strtok(NULL, "/"))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(tok)) : json_object_get(v, tok);
    if (v == NULL) return "<missing>";
    if (json_is_null(v)) return "<null>";
    if (json_is_string(v)) return json_string_value(v);
    char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, sizeof buf, "%s", d);
    free(d);
    return buf;
}

int main(void)
{
    bs_state initial;
    memset(&initial, 0, sizeof initial);
    initial.type = BS_RUNNING;
    initial.name = "Running";
    initial.timestamp = T - 60 * S;
    snprintf(initial.id.s, 37, "%s", "22222222-2222-4222-8222-222222222222");
    bs_details_init(&initial.details);

    bs_decision d;
    memset(&d, 0, sizeof d);
    d.write = true;
    d.state.type = BS_COMPLETED;
    d.state.name = "Completed";
    d.state.timestamp = T + 250000; /* .25 s */
    snprintf(d.state.id.s, 37, "%s", "33333333-3333-4333-8333-333333333333");
    bs_details_init(&d.state.details);
    snprintf(d.run.id.s, 37, "%s", "11111111-1111-4111-8111-111111111111");
    d.run.run_count = 1;

    json_t *ctx = json_loads(
        "{\"flow_run\": {\"name\": \"happy-fox\", \"tags\": [\"b\", \"a\"],"
        "  \"created_by\": {\"id\": \"44444444-4444-4444-8444-444444444444\","
        "                   \"type\": \"DEPLOYMENT\", \"display_value\": \"my-dep\"}},"
        " \"flow\": {\"id\": \"f0000000-0000-4000-8000-000000000000\", \"name\": \"etl\","
        "          \"tags\": [\"a\", \"flowtag\"]},"
        " \"deployment\": null, \"work_queue\": {\"id\": \"90000000-0000-4000-8000-000000000000\","
        "  \"name\": \"default\"}, \"work_pool\": {\"id\": "
        "\"80000000-0000-4000-8000-000000000000\","
        "  \"name\": \"pool\", \"type\": \"process\"}, \"task_run\": null}",
        0, NULL);
    CHECK(ctx != NULL);
    json_t *e = bs_event_state_change(&initial, &d, ctx);
    CHECK_STR(get(e, "event"), "prefect.flow-run.Completed");
    CHECK_STR(get(e, "occurred"), "2023-11-14T22:13:20.250000Z");
    CHECK_STR(get(e, "id"), "33333333-3333-4333-8333-333333333333");
    CHECK_STR(get(e, "follows"), "22222222-2222-4222-8222-222222222222"); /* within 5 min */
    CHECK_STR(get(e, "resource/prefect.resource.id"),
              "prefect.flow-run.11111111-1111-4111-8111-111111111111");
    CHECK_STR(get(e, "resource/prefect.resource.name"), "happy-fox");
    CHECK_STR(get(e, "resource/prefect.run-count"), "1");
    CHECK_STR(get(e, "resource/prefect.state-message"), "");
    CHECK_STR(get(e, "resource/prefect.state-name"), "Completed");
    CHECK_STR(get(e, "resource/prefect.state-timestamp"), "2023-11-14T22:13:20.250000+00:00");
    CHECK_STR(get(e, "resource/prefect.state-type"), "COMPLETED");
    /* related: flow, work-queue, work-pool (no deployment, no task run), tags sorted and
     * deduplicated across the run and its flow, then the creator */
    CHECK_INT((int)json_array_size(json_object_get(e, "related")), 7);
    CHECK_STR(get(e, "related/0/prefect.resource.id"),
              "prefect.flow.f0000000-0000-4000-8000-000000000000");
    CHECK_STR(get(e, "related/0/prefect.resource.role"), "flow");
    CHECK_STR(get(e, "related/0/prefect.resource.name"), "etl");
    CHECK_STR(get(e, "related/1/prefect.resource.role"), "work-queue");
    CHECK_STR(get(e, "related/2/prefect.work-pool.type"), "process");
    CHECK_STR(get(e, "related/3/prefect.resource.id"), "prefect.tag.a");
    CHECK_STR(get(e, "related/4/prefect.resource.id"), "prefect.tag.b");
    CHECK_STR(get(e, "related/5/prefect.resource.id"), "prefect.tag.flowtag");
    CHECK_STR(get(e, "related/5/prefect.resource.role"), "tag");
    CHECK_STR(get(e, "related/6/prefect.resource.id"),
              "prefect.deployment.44444444-4444-4444-8444-444444444444");
    CHECK_STR(get(e, "related/6/prefect.resource.role"), "creator");
    CHECK_STR(get(e, "related/6/prefect.resource.name"), "my-dep");
    CHECK_STR(get(e, "payload/intended"), "{\"from\":\"RUNNING\",\"to\":\"COMPLETED\"}");
    CHECK_STR(get(e, "payload/initial_state"), "{\"type\":\"RUNNING\",\"name\":\"Running\"}");
    CHECK_STR(get(e, "payload/validated_state"), "{\"type\":\"COMPLETED\",\"name\":\"Completed\"}");
    json_decref(e);

    /* no initial state; a paused validated state reports pause_reschedule; a message; an
     * initial state long ago is not followed */
    initial.type = BS_NONE;
    d.state.type = BS_PAUSED;
    d.state.name = "Suspended";
    d.state.message = "waiting for input";
    d.state.details.pause_reschedule = true;
    d.state.timestamp = T; /* whole second: no fraction in isoformat */
    e = bs_event_state_change(&initial, &d, ctx);
    CHECK_STR(get(e, "payload/intended/from"), "<null>");
    CHECK_STR(get(e, "payload/initial_state"), "<null>");
    CHECK_STR(get(e, "follows"), "<null>");
    CHECK_STR(get(e, "resource/prefect.state-timestamp"), "2023-11-14T22:13:20+00:00");
    CHECK_STR(get(e, "resource/prefect.state-message"), "waiting for input");
    CHECK_STR(get(e, "payload/validated_state"),
              "{\"type\":\"PAUSED\",\"name\":\"Suspended\",\"message\":\"waiting for input\","
              "\"pause_reschedule\":\"true\"}");
    json_decref(e);
    initial.type = BS_RUNNING;
    initial.timestamp = T - 301 * S;
    e = bs_event_state_change(&initial, &d, ctx);
    CHECK_STR(get(e, "follows"), "<null>");
    json_decref(e);
    json_decref(ctx);

    /* truncated_to: None -> "", long -> head...N additional characters...tail */
    char *t = bs_event_truncated(NULL, 10);
    CHECK_STR(t, "");
    free(t);
    t = bs_event_truncated("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv",
                           10);
    CHECK_STR(t, "01234...58 additional characters...rstuv");
    free(t);
    t = bs_event_truncated("short", 10);
    CHECK_STR(t, "short");
    free(t);
    return t_done();
}
