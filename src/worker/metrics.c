/* metrics: registry and Prometheus rendering. Names follow Prometheus conventions: counters end
 * in _total, durations are in seconds, label values are escaped. */
#include "metrics.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "model.h"

const char *const bs_phase_names[BS_PHASES] = {"wait",   "count",  "decode",  "claim",
                                               "select", "lock",   "decide",  "write",
                                               "record", "commit", "publish", "ack"};

static void hist_init(bs_hist *h, const double *le, size_t n)
{
    memset(h, 0, sizeof *h);
    h->n = n < BS_HIST_MAX ? n : BS_HIST_MAX;
    memcpy(h->le, le, sizeof(double) * h->n);
}

void bs_metrics_init(bs_metrics *m)
{
    static const double batch[] = {0, 1, 5, 10, 25, 50, 100, 500, 1000};
    static const double secs[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,  0.5,    1,     2.5,  5,     10};
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->threads = 1;
    hist_init(&m->batch, batch, sizeof batch / sizeof batch[0]);
    hist_init(&m->latency, secs, sizeof secs / sizeof secs[0]);
    hist_init(&m->txn, secs, sizeof secs / sizeof secs[0]);
    hist_init(&m->ack, secs, sizeof secs / sizeof secs[0]);
    hist_init(&m->prefect_delay, secs, sizeof secs / sizeof secs[0]);
}

void bs_metrics_destroy(bs_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void bs_metrics_lock(bs_metrics *m)
{
    pthread_mutex_lock(&m->mu);
}

void bs_metrics_unlock(bs_metrics *m)
{
    pthread_mutex_unlock(&m->mu);
}

void bs_metrics_failed(bs_metrics *m, const char *code)
{
    for (size_t i = 0; i < m->nfailed; i++)
        if (strcmp(m->failed[i].code, code) == 0) {
            m->failed[i].n++;
            return;
        }
    size_t i = m->nfailed < 32 ? m->nfailed++ : 31; /* the codes are a fixed, small set */
    snprintf(m->failed[i].code, sizeof m->failed[i].code, "%s", code);
    m->failed[i].n++;
}

void bs_hist_observe(bs_hist *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->le[i])
        i++;
    h->count[i]++;
    h->sum += v;
    h->total++;
}

void bs_metrics_seen(bs_metrics *m, const char *topic, int32_t partition, int64_t ts_ms)
{
    size_t i = 0;
    while (i < m->nseen && (m->seen[i].partition != partition || strcmp(m->seen[i].topic, topic)))
        i++;
    if (i == m->nseen) {
        if (m->nseen == sizeof m->seen / sizeof m->seen[0]) return;
        m->nseen++;
        snprintf(m->seen[i].topic, sizeof m->seen[i].topic, "%s", topic);
        m->seen[i].partition = partition;
    }
    m->seen[i].ts_ms = ts_ms;
}

int bs_metrics_lag_from_stats(bs_metrics *m, int lane, const char *json, size_t len)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    if (root == NULL) return -1;
    bs_lag lag[256];
    size_t n = 0;
    const char *tname, *pname;
    json_t *t, *p;
    json_object_foreach(json_object_get(root, "topics"), tname, t)
    {
        json_object_foreach(json_object_get(t, "partitions"), pname, p)
        {
            json_int_t part = json_integer_value(json_object_get(p, "partition"));
            const char *state = json_string_value(json_object_get(p, "fetch_state"));
            json_t *cl = json_object_get(p, "consumer_lag");
            /* partition -1 is librdkafka's internal UA partition; -1 lag means unknown */
            if (part < 0 || !json_is_integer(cl) || json_integer_value(cl) < 0 || n == 256 ||
                (state && strcmp(state, "none") == 0))
                continue;
            lag[n].lane = lane;
            snprintf(lag[n].topic, sizeof lag[n].topic, "%s", tname);
            lag[n].partition = (int32_t)part;
            lag[n].lag = json_integer_value(cl);
            n++;
        }
    }
    json_decref(root);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const double now_ms = (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6;
    bs_metrics_lock(m);
    for (size_t i = 0; i < n; i++) {
        lag[i].lag_s = 0;
        for (size_t j = 0; lag[i].lag > 0 && j < m->nseen; j++)
            if (m->seen[j].partition == lag[i].partition && m->seen[j].ts_ms > 0 &&
                strcmp(m->seen[j].topic, lag[i].topic) == 0)
                lag[i].lag_s = now_ms > (double)m->seen[j].ts_ms
                                   ? (now_ms - (double)m->seen[j].ts_ms) / 1e3
                                   : 0;
    }
    for (size_t i = 0; i < m->nlag && n < 256; i++) /* the other threads' partitions stay */
        if (m->lag[i].lane != lane) lag[n++] = m->lag[i];
    memcpy(m->lag, lag, sizeof(bs_lag) * n);
    m->nlag = n;
    bs_metrics_unlock(m);
    return 0;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

/* printf onto b; b NULL: nothing (a caller that only counts) */
static void add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    if (b == NULL) return;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < b->cap - b->len) {
            b->len += (size_t)k;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(k > 0 ? k : 64);
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) abort();
    }
}

static void head(sbuf *b, const char *name, const char *type, const char *help)
{
    add(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* label values: backslash, double quote and newline escaped */
static const char *esc(const char *s, char *buf, size_t n)
{
    size_t o = 0;
    for (; *s && o + 3 < n; s++) {
        if (*s == '\\' || *s == '"') buf[o++] = '\\';
        if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
            continue;
        }
        buf[o++] = *s;
    }
    buf[o] = '\0';
    return buf;
}

static void hist(sbuf *b, const char *name, const char *help, const bs_hist *h)
{
    head(b, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n; i++) {
        cum += h->count[i];
        add(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, h->le[i], cum);
    }
    cum += h->count[h->n];
    add(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name, cum,
        name, h->sum, name, h->total);
}

static int joined(const bs_metrics *m)
{
    int n = 0;
    for (int i = 0; i < m->threads && i < BS_METRICS_THREADS; i++)
        n += m->thread_joined[i];
    return n;
}

bool bs_metrics_all_joined(const bs_metrics *m)
{
    return joined(m) == m->threads;
}

/* Why the worker is not ready, one line each, into b (NULL: only counted; the lock held);
 * returns how many. */
static int reasons(const bs_metrics *m, sbuf *b)
{
    int n = 0;
    if (!bs_metrics_all_joined(m))
        n++, add(b, "%d of %d threads have not joined the consumer group yet\n",
                 m->threads - joined(m), m->threads);
    if (m->assigned <= 0) n++, add(b, "no partitions assigned\n");
    if (!m->db_ok)
        n++, add(b, "postgresql unreachable: %s\n",
                 m->db_error[0] ? m->db_error : "not checked yet");
    if (m->backoff) n++, add(b, "retrying after a transient failure: %s\n", m->backoff_error);
    if (m->prefect_on && m->outbox_depth >= m->outbox_max)
        n++, add(b, "prefect events: the outbox is full (%" PRId64 " undelivered), commands wait\n",
                 m->outbox_depth);
    if (m->prefect_on && m->outbox_oldest_s > m->outbox_lag_alert_s)
        n++, add(b, "prefect events: the oldest undelivered is %.0f s old: %s\n",
                 m->outbox_oldest_s, m->prefect_error[0] ? m->prefect_error : "no error seen");
    return n;
}

char *bs_metrics_render(bs_metrics *m)
{
    static const char *const STATUS[] = {"ACCEPT", "REJECT", "WAIT", "ABORT"};
    static const char *const OUTCOME[] = {"applied", "replayed", "error"};
    sbuf b = {malloc(4096), 0, 4096};
    if (b.p == NULL) abort();
    char e[300];
    bs_metrics_lock(m);
    head(&b, "bulkstate_commands_consumed_total", "counter",
         "Command messages taken from the command topic (redeliveries included).");
    add(&b, "bulkstate_commands_consumed_total %" PRIu64 "\n", m->consumed);
    head(&b, "bulkstate_commands_completed_total", "counter",
         "Commands settled, by outcome: applied, replayed (a redelivered command id: stored "
         "results republished) or error (an error completion or dead-letter record).");
    for (int i = 0; i < 3; i++)
        add(&b, "bulkstate_commands_completed_total{outcome=\"%s\"} %" PRIu64 "\n", OUTCOME[i],
            m->completed[i]);
    head(&b, "bulkstate_command_phase_seconds_total", "counter",
         "Time one-batch commands spent, by phase: wait (in Kafka, queueing included), "
         "count (the delivery count), decode, claim, select, lock, decide, write, record, "
         "commit, publish, ack.");
    for (int i = 0; i < BS_PHASES; i++)
        add(&b, "bulkstate_command_phase_seconds_total{phase=\"%s\"} %.6f\n", bs_phase_names[i],
            m->phase_s[i]);
    head(&b, "bulkstate_commands_failed_total", "counter",
         "Commands answered with an error completion or dead-lettered, by error code.");
    for (size_t i = 0; i < m->nfailed; i++)
        add(&b, "bulkstate_commands_failed_total{code=\"%s\"} %" PRIu64 "\n",
            esc(m->failed[i].code, e, sizeof e), m->failed[i].n);
    head(&b, "bulkstate_transitions_total", "counter", "Per-run orchestration results, by status.");
    for (int i = 0; i < 4; i++)
        add(&b, "bulkstate_transitions_total{status=\"%s\"} %" PRIu64 "\n", STATUS[i],
            m->status[i]);
    head(&b, "bulkstate_state_changes_total", "counter",
         "States written, by the run's previous state type and the new one.");
    for (int f = 0; f < 10; f++)
        for (int t = 0; t < 10; t++)
            if (m->by_type[f][t])
                add(&b, "bulkstate_state_changes_total{from=\"%s\",to=\"%s\"} %" PRIu64 "\n",
                    bs_state_type_name(f), bs_state_type_name(t), m->by_type[f][t]);
    hist(&b, "bulkstate_command_runs", "Runs matched per command.", &m->batch);
    hist(&b, "bulkstate_command_latency_seconds",
         "From taking a command off the topic to the broker's acknowledgement of its completion.",
         &m->latency);
    hist(&b, "bulkstate_db_transaction_seconds",
         "Duration of a command's PostgreSQL transaction (begin to commit).", &m->txn);
    hist(&b, "bulkstate_reply_ack_seconds",
         "A one-batch command's wait for the broker's acknowledgement of its replies and "
         "completion (its ack phase; the thread takes no message meanwhile).",
         &m->ack);
    head(&b, "bulkstate_dead_letters_total", "counter",
         "Records written to the dead-letter topic.");
    add(&b, "bulkstate_dead_letters_total %" PRIu64 "\n", m->dlq);
    head(&b, "bulkstate_retries_total", "counter",
         "Transient failures retried with backoff (broker or PostgreSQL unavailable, "
         "serialization failure, deadlock, timeout).");
    add(&b, "bulkstate_retries_total %" PRIu64 "\n", m->retries);
    head(&b, "bulkstate_lease_slots_reaped_total", "counter",
         "Deployment concurrency slots freed by the expired-lease reaper.");
    add(&b, "bulkstate_lease_slots_reaped_total %" PRIu64 "\n", m->reaped_slots);
    char g[300];
    esc(m->group, g, sizeof g);
    head(&b, "bulkstate_consumer_lag", "gauge",
         "Messages between the committed offset and the end of each assigned partition "
         "(librdkafka statistics).");
    for (size_t i = 0; i < m->nlag; i++)
        add(&b,
            "bulkstate_consumer_lag{topic=\"%s\",partition=\"%" PRId32 "\",group=\"%s\"} %" PRId64
            "\n",
            esc(m->lag[i].topic, e, sizeof e), m->lag[i].partition, g, m->lag[i].lag);
    head(&b, "bulkstate_consumer_lag_seconds", "gauge",
         "With a lag: the age of the last record consumed from the partition, which the oldest "
         "waiting record does not exceed; 0 without one.");
    for (size_t i = 0; i < m->nlag; i++)
        add(&b,
            "bulkstate_consumer_lag_seconds{topic=\"%s\",partition=\"%" PRId32
            "\",group=\"%s\"} %.3f\n",
            esc(m->lag[i].topic, e, sizeof e), m->lag[i].partition, g, m->lag[i].lag_s);
    head(&b, "bulkstate_build_info", "gauge", "The running build: version and librdkafka's.");
    add(&b, "bulkstate_build_info{version=\"%s\",librdkafka=\"%s\"} 1\n", BS_VERSION,
        bs_kafka_version());
    head(&b, "bulkstate_inflight_commands", "gauge", "Commands being processed now.");
    add(&b, "bulkstate_inflight_commands %d\n", m->inflight);
    head(&b, "bulkstate_assigned_partitions", "gauge", "Partitions assigned to this worker.");
    add(&b, "bulkstate_assigned_partitions %d\n", m->assigned);
    head(&b, "bulkstate_thread_assigned_partitions", "gauge",
         "Partitions assigned to each of the worker's threads (worker.threads).");
    for (int i = 0; i < m->threads && i < BS_METRICS_THREADS; i++)
        add(&b, "bulkstate_thread_assigned_partitions{thread=\"%d\"} %d\n", i,
            m->thread_assigned[i]);
    if (m->prefect_on) {
        head(&b, "bulkstate_prefect_outbox_events", "gauge",
             "State-change events committed and not yet accepted by Prefect's server.");
        add(&b, "bulkstate_prefect_outbox_events %" PRId64 "\n", m->outbox_depth);
        head(&b, "bulkstate_prefect_delivery_lag_seconds", "gauge",
             "Age of the oldest event waiting for Prefect's server (0 when none waits).");
        add(&b, "bulkstate_prefect_delivery_lag_seconds %.3f\n", m->outbox_oldest_s);
        head(&b, "bulkstate_prefect_events_delivered_total", "counter",
             "Events Prefect's server accepted.");
        add(&b, "bulkstate_prefect_events_delivered_total %" PRIu64 "\n", m->prefect_delivered);
        head(&b, "bulkstate_prefect_delivery_failures_total", "counter",
             "Deliveries to Prefect's server that failed and are retried.");
        add(&b, "bulkstate_prefect_delivery_failures_total %" PRIu64 "\n", m->prefect_failures);
        head(&b, "bulkstate_prefect_events_refused_total", "counter",
             "Events Prefect's server refused (set aside in bulkstate.prefect_outbox_refused).");
        add(&b, "bulkstate_prefect_events_refused_total %" PRIu64 "\n", m->prefect_refused);
        hist(&b, "bulkstate_prefect_event_delay_seconds",
             "From the commit of a state to Prefect's acceptance of its event.", &m->prefect_delay);
    }
    head(&b, "bulkstate_ready", "gauge", "1 when /readyz answers 200.");
    add(&b, "bulkstate_ready %d\n", reasons(m, NULL) == 0);
    bs_metrics_unlock(m);
    return b.p;
}

int bs_metrics_ready(bs_metrics *m, char **body)
{
    sbuf b = {malloc(256), 0, 256};
    if (b.p == NULL) abort();
    b.p[0] = '\0';
    bs_metrics_lock(m);
    int ready = reasons(m, &b) == 0;
    bs_metrics_unlock(m);
    if (ready) add(&b, "ready\n");
    *body = b.p;
    return ready;
}
