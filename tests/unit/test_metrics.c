/* The metrics registry: Prometheus text (names, labels, cumulative buckets), readiness
 * reasons, and consumer lag read from librdkafka's statistics JSON. */
#include "../t.h"
#include "metrics.h"
#include "model.h"

#include <stdlib.h>
#include <time.h>

static int has(const char *text, const char *line)
{
    const char *p = strstr(text, line);
    if (p == NULL) fprintf(stderr, "missing line: %s\n", line);
    return p != NULL;
}

/* Whether text has partition p's bulkstate_consumer_lag line with value v (group bulkstate). */
static int has_lag(const char *text, int p, const char *v)
{
    char line[160];
    snprintf(line, sizeof line,
             "bulkstate_consumer_lag{topic=\"bulkstate.commands\",partition=\"%d\",group=\""
             "bulkstate\"} %s\n",
             p, v);
    return has(text, line);
}

int main(void)
{
    bs_metrics m;
    bs_metrics_init(&m);
    bs_metrics_lock(&m);
    m.consumed = 5;
    m.completed[0] = 3;
    m.completed[2] = 2;
    bs_metrics_failed(&m, "invalid_command");
    bs_metrics_failed(&m, "invalid_command");
    bs_metrics_failed(&m, "bad\"code");
    m.status[0] = 7;
    m.by_type[BS_SCHEDULED][BS_CANCELLED] = 4;
    m.by_type[BS_NONE][BS_PENDING] = 1;
    bs_hist_observe(&m.batch, 0);
    bs_hist_observe(&m.batch, 3);
    bs_hist_observe(&m.batch, 50);
    bs_hist_observe(&m.latency, 0.004);
    bs_hist_observe(&m.latency, 30);
    bs_hist_observe(&m.ack, 0.002);
    bs_hist_observe(&m.ack, 0.3);
    bs_metrics_unlock(&m);
    char *t = bs_metrics_render(&m);
    CHECK(has(t, "# TYPE bulkstate_commands_consumed_total counter\n"));
    CHECK(has(t, "\nbulkstate_commands_consumed_total 5\n"));
    CHECK(has(t, "bulkstate_commands_completed_total{outcome=\"applied\"} 3\n"));
    CHECK(has(t, "bulkstate_commands_completed_total{outcome=\"error\"} 2\n"));
    CHECK(has(t, "bulkstate_commands_failed_total{code=\"invalid_command\"} 2\n"));
    CHECK(has(t, "bulkstate_commands_failed_total{code=\"bad\\\"code\"} 1\n"));
    CHECK(has(t, "bulkstate_transitions_total{status=\"ACCEPT\"} 7\n"));
    CHECK(has(t, "bulkstate_transitions_total{status=\"WAIT\"} 0\n"));
    CHECK(has(t, "bulkstate_state_changes_total{from=\"SCHEDULED\",to=\"CANCELLED\"} 4\n"));
    CHECK(has(t, "bulkstate_state_changes_total{from=\"NONE\",to=\"PENDING\"} 1\n"));
    /* buckets are cumulative and end with +Inf = count */
    CHECK(has(t, "# TYPE bulkstate_command_runs histogram\n"));
    CHECK(has(t, "bulkstate_command_runs_bucket{le=\"0\"} 1\n"));
    CHECK(has(t, "bulkstate_command_runs_bucket{le=\"1\"} 1\n"));
    CHECK(has(t, "bulkstate_command_runs_bucket{le=\"5\"} 2\n"));
    CHECK(has(t, "bulkstate_command_runs_bucket{le=\"50\"} 3\n"));
    CHECK(has(t, "bulkstate_command_runs_bucket{le=\"+Inf\"} 3\n"));
    CHECK(has(t, "bulkstate_command_runs_sum 53.000000\n"));
    CHECK(has(t, "bulkstate_command_runs_count 3\n"));
    CHECK(has(t, "bulkstate_command_latency_seconds_bucket{le=\"0.005\"} 1\n"));
    CHECK(has(t, "bulkstate_command_latency_seconds_bucket{le=\"10\"} 1\n"));
    CHECK(has(t, "bulkstate_command_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
    CHECK(has(t, "# TYPE bulkstate_reply_ack_seconds histogram\n"));
    CHECK(has(t, "bulkstate_reply_ack_seconds_bucket{le=\"0.25\"} 1\n"));
    CHECK(has(t, "bulkstate_reply_ack_seconds_bucket{le=\"0.5\"} 2\n"));
    CHECK(has(t, "bulkstate_ready 0\n"));
    free(t);

    /* readiness: every reason named */
    char *body;
    CHECK_INT(bs_metrics_ready(&m, &body), 0);
    CHECK(strstr(body, "no partitions assigned") != NULL);
    CHECK(strstr(body, "postgresql unreachable: not checked yet") != NULL);
    CHECK(strstr(body, "1 of 1 threads have not joined the consumer group yet") != NULL);
    free(body);
    m.thread_joined[0] = true;
    m.assigned = 3;
    m.db_ok = true;
    m.backoff = 1;
    snprintf(m.backoff_error, sizeof m.backoff_error, "%s", "connection refused");
    CHECK_INT(bs_metrics_ready(&m, &body), 0);
    CHECK_STR(body, "retrying after a transient failure: connection refused\n");
    free(body);
    m.backoff = 0;
    CHECK_INT(bs_metrics_ready(&m, &body), 1);
    CHECK_STR(body, "ready\n");
    free(body);
    /* the partitions of each of the worker's threads */
    m.threads = 2;
    m.thread_assigned[0] = 2;
    m.thread_assigned[1] = 1;
    t = bs_metrics_render(&m);
    CHECK(has(t, "bulkstate_thread_assigned_partitions{thread=\"0\"} 2\n"));
    CHECK(has(t, "bulkstate_thread_assigned_partitions{thread=\"1\"} 1\n"));
    CHECK(strstr(t, "thread=\"2\"") == NULL);
    free(t);
    /* ready once every thread's consumer has joined the group (an empty assignment counts) */
    CHECK_INT(bs_metrics_ready(&m, &body), 0);
    CHECK_STR(body, "1 of 2 threads have not joined the consumer group yet\n");
    free(body);
    m.thread_joined[1] = true;
    CHECK_INT(bs_metrics_ready(&m, &body), 1);
    free(body);

    /* lag from librdkafka statistics: assigned partitions only, the UA partition -1 skipped */
    static const char stats[] =
        "{\"name\": \"c\", \"topics\": {\"bulkstate.commands\": {\"partitions\": {"
        "\"0\": {\"partition\": 0, \"fetch_state\": \"active\", \"consumer_lag\": 12},"
        "\"1\": {\"partition\": 1, \"fetch_state\": \"none\", \"consumer_lag\": -1},"
        "\"2\": {\"partition\": 2, \"fetch_state\": \"active\", \"consumer_lag\": 0},"
        "\"-1\": {\"partition\": -1, \"fetch_state\": \"none\", \"consumer_lag\": -1}}}}}";
    snprintf(m.group, sizeof m.group, "%s", "bulkstate");
    /* the last record consumed from partition 0 was written 3 s ago; partition 2 has no lag */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    bs_metrics_seen(&m, "bulkstate.commands", 0, now_ms - 3000);
    bs_metrics_seen(&m, "bulkstate.commands", 2, now_ms - 9000);
    CHECK_INT(bs_metrics_lag_from_stats(&m, 0, stats, sizeof stats - 1), 0);
    t = bs_metrics_render(&m);
    CHECK(has_lag(t, 0, "12"));
    CHECK(has_lag(t, 2, "0"));
    const char *ls = strstr(t, "bulkstate_consumer_lag_seconds{topic=\"bulkstate.commands\","
                               "partition=\"0\",group=\"bulkstate\"} ");
    CHECK(ls != NULL);
    const double lag_s = ls ? atof(strchr(ls, '}') + 2) : -1;
    CHECK(lag_s >= 3.0 && lag_s < 60.0); /* 3 s, plus however slow this machine is */
    CHECK(has(t, "bulkstate_consumer_lag_seconds{topic=\"bulkstate.commands\",partition=\"2\","
                 "group=\"bulkstate\"} 0.000\n"));
    CHECK(has(t, "bulkstate_build_info{version=\"" BS_VERSION "\",librdkafka=\""));
    CHECK(strstr(t, "partition=\"1\"") == NULL);
    CHECK(strstr(t, "partition=\"-1\"") == NULL);
    CHECK(has(t, "bulkstate_ready 1\n"));
    free(t);
    /* a second thread's consumer reports partition 4: the first thread's entries stay; a
     * report replaces only the entries of the thread it comes from */
    const char stats4[] =
        "{\"topics\": {\"bulkstate.commands\": {\"partitions\": {\"4\": "
        "{\"partition\": 4, \"fetch_state\": \"active\", \"consumer_lag\": 7}}}}}";
    CHECK_INT(bs_metrics_lag_from_stats(&m, 1, stats4, sizeof stats4 - 1), 0);
    CHECK_INT(bs_metrics_lag_from_stats(&m, 0, stats, sizeof stats - 1), 0);
    t = bs_metrics_render(&m);
    CHECK(has_lag(t, 0, "12"));
    CHECK(has_lag(t, 4, "7"));
    free(t);
    CHECK_INT(bs_metrics_lag_from_stats(&m, 1, "{\"topics\": {}}", 14), 0);
    t = bs_metrics_render(&m);
    CHECK(strstr(t, "partition=\"4\"") == NULL);
    CHECK(has_lag(t, 0, "12"));
    free(t);
    CHECK_INT(bs_metrics_lag_from_stats(&m, 0, "{nope", 5), -1);
    bs_metrics_destroy(&m);
    return t_done();
}
