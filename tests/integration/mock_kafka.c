/* Faults the real broker cannot be made to produce, on librdkafka's mock cluster (3 brokers):
 * the reply topic's leader down at the start (the replies of a command whose acknowledgements
 * are awaited after the next one time out), request errors on Produce (the worker's replies)
 * and OffsetCommit, a partition leader down while commands flow, and the group coordinator
 * down while the group rebalances (one worker leaves, another joins). PostgreSQL is the real one
 * (the services fixture). Afterwards every command has exactly one effect on its runs and a
 * complete set of replies. Prints `fault-test mock-kafka: commands=<N> faults=<K> lost=<L>
 * doubled=<D>`. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "ids.h"
#include "kafka.h"
#include "worker.h"

#define NRUNS 20
/* Kafka protocol ApiKeys (librdkafka keeps its names in a private header) */
#define API_PRODUCE      0
#define API_OFFSETCOMMIT 8
#define NCMDS            240
static const char *const PREFIX = "0196b000-0000-7000-8000-";

static PGconn *pg;
static int want_states[NRUNS];

static long long q1(const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    long long v =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

static long long done(void)
{
    return q1("SELECT count(*) FROM bulkstate.command WHERE command_id LIKE 'mk-%' AND status = "
              "'done'");
}

typedef struct wthread {
    pthread_t t;
    bs_config *cfg;
    volatile sig_atomic_t stop;
    int rc;
} wthread;

static void *worker_main(void *arg)
{
    wthread *wt = arg;
    bs_err err = {0};
    bs_worker *w = bs_worker_new(wt->cfg, &err);
    if (w == NULL) {
        fprintf(stderr, "worker: %s\n", err.msg);
        wt->rc = -1;
        return NULL;
    }
    wt->rc = bs_worker_run(w, &wt->stop, NULL, NULL, &err);
    if (wt->rc < 0) fprintf(stderr, "worker: %s\n", err.msg);
    bs_worker_free(w);
    return NULL;
}

static void start(wthread *wt, bs_config *cfg)
{
    memset(wt, 0, sizeof *wt);
    wt->cfg = cfg;
    pthread_create(&wt->t, NULL, worker_main, wt);
}

static void stop(wthread *wt)
{
    wt->stop = 1;
    pthread_join(wt->t, NULL);
}

/* waits (bounded) until n commands are done */
static int wait_done(long long n, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        if (done() >= n) return 0;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int main(void)
{
    const char *conninfo = getenv("BULKSTATE_POSTGRES_CONNINFO");
    pg = PQconnectdb(conninfo ? conninfo : "");
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "postgres: %s", PQerrorMessage(pg));
        return 1;
    }
    char errstr[512];
    rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr, sizeof errstr);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 3);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, "mk.commands", 3, 3);
    rd_kafka_mock_topic_create(mc, "mk.replies", 3, 3);
    rd_kafka_mock_topic_create(mc, "mk.dlq", 1, 3);

    bs_config *cfg = NULL;
    if (bs_config_load(NULL, stderr, &cfg) != 0) return 1;
    bs_config_set_kafka(cfg, "bootstrap.servers", boot, NULL);
    bs_config_set_kafka(cfg, "group.id", "mk-group", NULL);
    bs_config_set_kafka(cfg, "session.timeout.ms", "6000", NULL);
    bs_config_set_kafka(cfg, "heartbeat.interval.ms", "500", NULL);
    bs_config_set_kafka(cfg, "auto.commit.interval.ms", "200", NULL);
    free(cfg->command_topic);
    cfg->command_topic = strdup("mk.commands");
    free(cfg->reply_topic);
    cfg->reply_topic = strdup("mk.replies");
    free(cfg->dlq_topic);
    cfg->dlq_topic = strdup("mk.dlq");
    free(cfg->output_framing);
    cfg->output_framing = strdup("json");
    cfg->retry_backoff_max_ms = 1000;
    cfg->flush_timeout_ms = 5000;
    cfg->max_attempts = 1000;
    /* replies to a partition whose leader is down fail after 2 s instead of being retried for
     * minutes: the outage of phase 0 fails acknowledgements the worker awaits */
    bs_config_set_kafka(cfg, "message.timeout.ms", "2000", NULL);
    /* one request in flight per broker: the mock cluster checks an idempotent producer's
     * sequence numbers only when it is transactional, so a failed request followed by a later
     * one that succeeds would be taken as persisted (a real broker refuses the later one as out
     * of sequence, and the producer sends both again in order) */
    bs_config_set_kafka(cfg, "max.in.flight.requests.per.connection", "1", NULL);

    /* the runs and the log: forced states (always accepted), 1..4 runs each, seeded */
    char sql[512];
    for (int i = 0; i < NRUNS; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT bulkstate_dev.new_run('%s%012x', 'mk', 'SCHEDULED', '{mk}')", PREFIX, i);
        PQclear(PQexec(pg, sql));
        want_states[i] = 1;
    }
    bs_err err = {0};
    const bs_kafka_props kp = bs_config_kafka_props(cfg);
    bs_producer *prod = bs_producer_new(&kp, &err);
    bs_delivery dv = {0};
    srand(20261128);
    static const char *const types[] = {"PENDING", "RUNNING", "SCHEDULED", "COMPLETED"};
    for (int k = 0; k < NCMDS; k++) {
        json_t *ids = json_array();
        int n = 1 + rand() % 4, picked[NRUNS] = {0};
        while (n > 0) {
            int r = rand() % NRUNS;
            if (picked[r]) continue;
            picked[r] = 1;
            want_states[r]++;
            char id[64];
            snprintf(id, sizeof id, "%s%012x", PREFIX, r);
            json_array_append_new(ids, json_string(id));
            n--;
        }
        char cid[32];
        snprintf(cid, sizeof cid, "mk-%d", k);
        json_t *body = json_pack("{s:s, s:{s:{s:o}}, s:{s:s}, s:b}", "command_id", cid, "flow_runs",
                                 "id", "any_", ids, "state", "type", types[rand() % 4], "force", 1);
        char *text = json_dumps(body, JSON_COMPACT);
        bs_header h[1] = {{"content-type", "application/json", 16}};
        bs_producer_send(prod, "mk.commands", cid, strlen(cid), text, strlen(text), h, 1, &dv,
                         &err);
        free(text);
        json_decref(body);
    }
    if (bs_producer_wait(prod, &dv, 30000, &err) < 0) {
        fprintf(stderr, "could not produce the log: %s\n", err.msg);
        return 1;
    }
    bs_producer_free(prod, 5000);

    int faults = 0;
    wthread w1, w2;
    /* 0. the reply topic's leader is down when the worker starts: the first command's replies
     * time out while the worker handles the next one, after which it awaits them; both go back
     * to be delivered again, and the first one's stored replies are published again once the
     * broker is back */
    for (int p = 0; p < 3; p++) {
        rd_kafka_mock_partition_set_leader(mc, "mk.replies", p, 3);
        rd_kafka_mock_partition_set_leader(mc, "mk.commands", p, 1 + p % 2);
    }
    rd_kafka_mock_partition_set_leader(mc, "mk.dlq", 0, 1);
    rd_kafka_mock_coordinator_set(mc, "group", "mk-group", 1);
    rd_kafka_mock_broker_set_down(mc, 3);
    start(&w1, cfg);
    sleep_ms(4000);
    rd_kafka_mock_broker_set_up(mc, 3);
    faults++;
    /* 1. the worker's replies and offset commits meet request errors */
    rd_kafka_mock_push_request_errors(
        mc, API_PRODUCE, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR__TRANSPORT,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
    rd_kafka_mock_push_request_errors(
        mc, API_OFFSETCOMMIT, 4, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE);
    faults += 2;
    if (wait_done(60, 120) < 0) fprintf(stderr, "phase 1: no progress\n");
    /* 2. a broker (leader of some partitions) goes down for 3 s while commands flow */
    rd_kafka_mock_broker_set_down(mc, 2);
    sleep_ms(3000);
    rd_kafka_mock_broker_set_up(mc, 2);
    faults++;
    if (wait_done(120, 120) < 0) fprintf(stderr, "phase 2: no progress\n");
    /* 3. the group coordinator goes down while the group rebalances: the worker leaves, another
     * joins, the coordinator comes back */
    rd_kafka_mock_coordinator_set(mc, "group", "mk-group", 1);
    rd_kafka_mock_broker_set_down(mc, 1);
    stop(&w1);
    start(&w2, cfg);
    sleep_ms(3000);
    rd_kafka_mock_broker_set_up(mc, 1);
    faults++;
    if (wait_done(NCMDS, 180) < 0) fprintf(stderr, "phase 3: not all commands done\n");
    sleep_ms(1000); /* one more auto-commit round, then a clean stop commits the rest */
    stop(&w2);

    /* effects */
    long long lost = 0, doubled = 0;
    for (int i = 0; i < NRUNS; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM flow_run_state WHERE flow_run_id = '%s%012x'", PREFIX, i);
        long long d = q1(sql) - want_states[i];
        lost += d < 0 ? -d : 0;
        doubled += d > 0 ? d : 0;
    }
    /* replies: read the reply topic on the mock cluster from the beginning */
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    rd_kafka_conf_set(cc, "bootstrap.servers", boot, errstr, sizeof errstr);
    rd_kafka_conf_set(cc, "group.id", "mk-check", errstr, sizeof errstr);
    rd_kafka_conf_set(cc, "enable.partition.eof", "true", errstr, sizeof errstr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof errstr);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3);
    for (int p = 0; p < 3; p++)
        rd_kafka_topic_partition_list_add(parts, "mk.replies", p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    static int completions[NCMDS], results_seen[NCMDS][8], matched[NCMDS];
    int eofs = 0;
    for (int idle = 0; eofs < 3 && idle < 100;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m == NULL) {
            idle++;
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else if (!m->err) {
            json_t *j = json_loadb(m->payload, m->len, 0, NULL);
            const char *id = json_string_value(json_object_get(j, "command_id"));
            int k = id && strncmp(id, "mk-", 3) == 0 ? atoi(id + 3) : -1;
            if (k >= 0 && k < NCMDS) {
                json_t *seq = json_object_get(j, "seq");
                if (json_is_integer(seq) && json_integer_value(seq) < 8) {
                    results_seen[k][json_integer_value(seq)] = 1;
                } else if (json_is_null(json_object_get(j, "error"))) {
                    completions[k] = 1;
                    matched[k] = (int)json_integer_value(json_object_get(j, "matched"));
                }
            }
            json_decref(j);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    int incomplete = 0;
    for (int k = 0; k < NCMDS; k++) {
        int ok = completions[k] && matched[k] > 0;
        for (int s = 0; ok && s < matched[k]; s++)
            ok = results_seen[k][s];
        incomplete += !ok;
        if (!ok)
            fprintf(stderr, "incomplete: mk-%d completion=%d matched=%d\n", k, completions[k],
                    matched[k]);
    }
    const long long ndone = done();
    printf("commands done: %lld of %d; replies complete: %d of %d\n", ndone, NCMDS,
           NCMDS - incomplete, NCMDS);
    printf("fault-test mock-kafka: commands=%d faults=%d lost=%lld doubled=%lld\n", NCMDS, faults,
           lost, doubled);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
    bs_config_free(cfg);
    PQfinish(pg);
    return lost == 0 && doubled == 0 && incomplete == 0 && ndone == NCMDS ? 0 : 1;
}
