/* metrics: the worker's counters, gauges and histograms, and their Prometheus text rendering.
 * Updated by the worker's threads, read by the HTTP server's thread: every call takes the
 * registry's mutex. No I/O. */
#ifndef BS_METRICS_H
#define BS_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BS_HIST_MAX        16
#define BS_METRICS_THREADS 16 /* worker.threads at most (BS_MAX_THREADS) */

/* Where a command's time goes, from the worker's own clocks: waiting in Kafka (the record's
 * timestamp to the worker taking it: its delivery and any queueing behind earlier commands),
 * counting the delivery (bulkstate.delivery_attempt), then each step of handling it. "ack" is
 * the wait for the broker's acknowledgement of the replies and completion. */
typedef enum bs_phase {
    BS_PH_WAIT,
    BS_PH_COUNT,
    BS_PH_DECODE,
    BS_PH_CLAIM,
    BS_PH_SELECT,
    BS_PH_LOCK,
    BS_PH_DECIDE,
    BS_PH_WRITE,
    BS_PH_RECORD,
    BS_PH_COMMIT,
    BS_PH_PUBLISH,
    BS_PH_ACK,
    BS_PHASES
} bs_phase;
extern const char *const bs_phase_names[BS_PHASES];

typedef struct bs_hist {
    size_t n;
    double le[BS_HIST_MAX]; /* upper bounds, ascending; +Inf is implicit */
    uint64_t count[BS_HIST_MAX + 1];
    double sum;
    uint64_t total;
} bs_hist;

typedef struct bs_lag {
    int lane; /* the worker thread whose consumer reported it */
    char topic[128];
    int32_t partition;
    int64_t lag;
    double lag_s; /* lag > 0: age of the last record consumed from it (the oldest waiting is
                     at most that old); 0 otherwise */
} bs_lag;

/* The timestamp of the last record consumed, per partition. */
typedef struct bs_seen {
    char topic[128];
    int32_t partition;
    int64_t ts_ms;
} bs_seen;

typedef struct bs_metrics {
    pthread_mutex_t mu;
    uint64_t consumed, dlq, retries, reaped_slots;
    uint64_t completed[3]; /* applied, replayed, error */
    struct {
        char code[48];
        uint64_t n;
    } failed[32];
    size_t nfailed;
    uint64_t status[4];          /* results by bs_status */
    uint64_t by_type[10][10];    /* written transitions by (from, to), BS_NONE = 9 */
    bs_hist batch, latency, txn; /* runs per command; seconds; seconds */
    /* seconds a one-batch command waited for the broker's acknowledgement of its replies (its
     * "ack" phase: after its completion was sent, so in no bulkstate.phases header, and before
     * the thread takes the next message) */
    bs_hist ack;
    double phase_s[BS_PHASES]; /* one-batch commands' time, by phase (bs_phase_names) */
    bs_lag lag[256];
    size_t nlag;
    bs_seen seen[256];
    size_t nseen;
    char group[128];        /* the consumer group (label of the lag metrics) */
    int inflight, assigned; /* over the worker's threads */
    int threads;            /* worker.threads */
    int thread_assigned[BS_METRICS_THREADS];
    bool thread_joined[BS_METRICS_THREADS]; /* its consumer has had an assignment */
    int backoff;                            /* threads retrying after a transient failure now */
    bool db_ok;
    uint64_t commands, transitions; /* settled commands, their runs (systemd STATUS=) */
    char db_error[160], backoff_error[160];
    /* delivery of events to Prefect's server ([prefect] api_url; off: prefect_on false) */
    bool prefect_on;
    int64_t outbox_depth, outbox_max; /* undelivered events; the command path waits at max */
    double outbox_oldest_s, outbox_lag_alert_s;
    uint64_t prefect_delivered, prefect_failures, prefect_refused;
    bs_hist prefect_delay; /* seconds from the commit to Prefect's acceptance */
    char prefect_error[160];
} bs_metrics;

void bs_metrics_init(bs_metrics *m);
void bs_metrics_destroy(bs_metrics *m);

void bs_metrics_lock(bs_metrics *m);
void bs_metrics_unlock(bs_metrics *m);
/* With the lock held: */
void bs_metrics_failed(bs_metrics *m, const char *code);
void bs_metrics_seen(bs_metrics *m, const char *topic, int32_t partition, int64_t ts_ms);
void bs_hist_observe(bs_hist *h, double v);
/* Whether every thread's consumer has joined the group (thread_joined). */
bool bs_metrics_all_joined(const bs_metrics *m);

/* Replaces the lag entries of a worker thread (lane) from its consumer's librdkafka statistics
 * JSON (topics.*.partitions.*.consumer_lag of the partitions it has assigned). Returns -1 when
 * the JSON is unreadable. */
int bs_metrics_lag_from_stats(bs_metrics *m, int lane, const char *json, size_t len);

/* The Prometheus text exposition (version 0.0.4) of the registry, malloc'ed. */
char *bs_metrics_render(bs_metrics *m);

/* Readiness: 1 and "ready" when partitions are assigned, PostgreSQL answered last time and no
 * backoff is in progress; else 0 and the reasons, one per line (malloc'ed). */
int bs_metrics_ready(bs_metrics *m, char **body);

#endif
