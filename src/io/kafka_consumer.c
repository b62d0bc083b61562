/* kafka_consumer: the consumer handle. In a group with manual offset store (an offset is
 * stored only when the worker says the command is settled), or assigned without a group (replay
 * and the tools). Rebalances are handled eagerly or cooperatively as the protocol says; offsets
 * are stored per message with a fresh partition list each time (a reused list element caches
 * its partition in librdkafka 2.0.2 and stores on the wrong one). */
#include "kafka_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ids.h"
#include "log.h"

#define HELD_MAX 64 /* partitions held at once (the worker holds at most BS_MAX_LARGE) */

struct bs_consumer {
    rd_kafka_t *rk;
    int assigned; /* partitions currently assigned */
    int joins;    /* assignments received from the group (an empty one included) */
    /* partitions held paused while a large command of theirs runs in batches */
    struct {
        char topic[256];
        int32_t partition;
    } held[HELD_MAX];
    size_t nheld;
    bool paused;
    bs_stats_hook *stats_hook; /* the hook set when this consumer was made, and its context */
    void *stats_ctx;
};

/* The partition's place in the held list; nheld when it is not held. */
static size_t held_index(const bs_consumer *cons, const char *topic, int32_t partition)
{
    size_t i = 0;
    while (i < cons->nheld &&
           !(cons->held[i].partition == partition && strcmp(cons->held[i].topic, topic) == 0))
        i++;
    return i;
}

/* Sets the pause state of each partition of l, explicitly both ways: paused while the consumer
 * is paused or the partition held, fetching otherwise. librdkafka keeps a partition's pause flag
 * in the handle across an unassign, so a partition paused when the group took it away comes
 * back paused when the group gives it back, and resuming only what is assigned at the time
 * would leave it paused for good (assigned, lagging, delivering nothing). */
static void apply_pause(bs_consumer *cons, const rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t *paused = rd_kafka_topic_partition_list_new(l->cnt);
    rd_kafka_topic_partition_list_t *running = rd_kafka_topic_partition_list_new(l->cnt);
    for (int i = 0; i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[i];
        const bool hold = cons->paused || held_index(cons, tp->topic, tp->partition) < cons->nheld;
        rd_kafka_topic_partition_list_add(hold ? paused : running, tp->topic, tp->partition);
    }
    if (paused->cnt) rd_kafka_pause_partitions(cons->rk, paused);
    if (running->cnt) rd_kafka_resume_partitions(cons->rk, running);
    rd_kafka_topic_partition_list_destroy(paused);
    rd_kafka_topic_partition_list_destroy(running);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    bs_consumer *cons = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        bs_log(BS_LOG_INFO, "kafka", "partitions assigned count=%d", parts->cnt);
        cons->joins++;
        if (cooperative) {
            rd_kafka_error_t *ke = rd_kafka_incremental_assign(rk, parts);
            if (ke) rd_kafka_error_destroy(ke);
            cons->assigned += parts->cnt;
        } else {
            rd_kafka_assign(rk, parts);
            cons->assigned = parts->cnt;
        }
        apply_pause(cons, parts);
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* commands are handled one at a time in the poll loop, so nothing is in flight here:
         * commit what was stored, then let the partitions go (not for lost partitions) */
        bs_log(BS_LOG_INFO, "kafka", "partitions revoked count=%d lost=%d", parts->cnt,
               rd_kafka_assignment_lost(rk));
        if (!rd_kafka_assignment_lost(rk)) rd_kafka_commit(rk, NULL, 0);
        if (cooperative) {
            rd_kafka_error_t *ke = rd_kafka_incremental_unassign(rk, parts);
            if (ke) rd_kafka_error_destroy(ke);
            cons->assigned -= parts->cnt;
        } else {
            rd_kafka_assign(rk, NULL);
            cons->assigned = 0;
        }
    } else {
        bs_log(BS_LOG_ERROR, "kafka", "rebalance error: %s", rd_kafka_err2str(e));
        rd_kafka_assign(rk, NULL);
        cons->assigned = 0;
    }
}

static bs_stats_hook *stats_hook;
static void *stats_ctx;

void bs_kafka_set_stats_hook(bs_stats_hook *fn, void *ctx)
{
    stats_hook = fn;
    stats_ctx = ctx;
}

/* Makes the consumer handle; conf is consumed in every case. group: the handle joins a
 * consumer group, so rebalances come to rebalance_cb with the consumer as opaque. */
static bs_consumer *consumer_from_conf(rd_kafka_conf_t *conf, bool group, bs_err *err)
{
    char errstr[512];
    bs_consumer *cons = bs_xcalloc(1, sizeof *cons);
    cons->stats_hook = stats_hook;
    cons->stats_ctx = stats_ctx;
    if (group) {
        rd_kafka_conf_set_opaque(conf, cons);
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    }
    cons->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (cons->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        free(cons);
        bs_err_fatal(err, BS_EKAFKA, "could not create the Kafka consumer: %s", errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(cons->rk);
    return cons;
}

/* librdkafka's statistics, handed to the consumer's hook from its poll (its worker thread) */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    const bs_consumer *cons = opaque;
    if (cons->stats_hook) cons->stats_hook(json, len, cons->stats_ctx);
    return 0; /* librdkafka frees json */
}

bs_consumer *bs_consumer_new(const bs_kafka_props *props, const char *topic, bs_err *err)
{
    if (bs_kafka_prop(props, "group.id") == NULL) {
        bs_err_fatal(err, BS_EINVAL, "[kafka] group.id is required for the worker");
        return NULL;
    }
    rd_kafka_conf_t *conf = bs_kafka_conf(props, true, err);
    if (conf == NULL) return NULL;
    if (stats_hook) {
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
        const char *iv = bs_kafka_prop(props, "statistics.interval.ms");
        char errstr[256];
        if (iv == NULL || strcmp(iv, "0") == 0) /* lag needs statistics: every 5 s */
            rd_kafka_conf_set(conf, "statistics.interval.ms", "5000", errstr, sizeof errstr);
    }
    bs_consumer *cons = consumer_from_conf(conf, true, err);
    if (cons == NULL) return NULL;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(cons->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        bs_err_fatal(err, BS_EKAFKA, "could not subscribe to \"%s\": %s", topic,
                     rd_kafka_err2str(e));
        bs_consumer_close(cons);
        return NULL;
    }
    return cons;
}

bs_consumer *bs_consumer_new_tail(const bs_kafka_props *props, const char *topic, bool beginning,
                                  bs_err *err)
{
    bs_range range;
    return bs_consumer_new_range(props, topic, -1, beginning ? 0 : INT64_MAX, -1, &range, err);
}

bs_consumer *bs_consumer_new_range(const bs_kafka_props *props, const char *topic,
                                   int32_t partition, int64_t from_offset, int64_t from_ts_ms,
                                   bs_range *range, bs_err *err)
{
    rd_kafka_conf_t *conf = bs_kafka_conf(props, true, err);
    if (conf == NULL) return NULL;
    rd_kafka_conf_set(conf, "group.id", "bulkstate-cli", NULL, 0); /* never joins: assign */
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    bs_consumer *cons = consumer_from_conf(conf, false, err);
    if (cons == NULL) return NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(cons->rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(cons->rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
        bs_err_retriable(err, BS_EKAFKA, "topic \"%s\": %s", topic,
                         e ? rd_kafka_err2str(e)
                           : rd_kafka_err2str(md->topic_cnt ? md->topics[0].err : 0));
        if (md) rd_kafka_metadata_destroy(md);
        bs_consumer_close(cons);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    range->n = range->left = 0;
    for (int i = 0; i < md->topics[0].partition_cnt && range->n < BS_RANGE_MAX; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        if (partition >= 0 && p != partition) continue;
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(cons->rk, topic, p, &lo, &hi, 10000)) {
            bs_err_retriable(err, BS_EKAFKA, "could not read the offsets of \"%s\" [%d]", topic, p);
            goto fail;
        }
        range->partition[range->n] = p;
        range->end[range->n] = hi; /* the log as it is now: replay stops there */
        range->n++;
        int64_t start = from_offset < lo ? lo : from_offset > hi ? hi : from_offset;
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
            from_ts_ms >= 0 ? from_ts_ms : start;
    }
    if (range->n == 0) {
        bs_err_set(err, BS_EINVAL, "topic \"%s\" has no partition %d", topic, partition);
        goto fail;
    }
    if (from_ts_ms >= 0 && (e = rd_kafka_offsets_for_times(cons->rk, parts, 10000))) {
        bs_err_retriable(err, BS_EKAFKA, "could not find the offsets for the timestamp: %s",
                         rd_kafka_err2str(e));
        goto fail;
    }
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].offset < 0) /* no message at or after the timestamp */
            parts->elems[i].offset = range->end[i];
        range->start[i] = range->next[i] = parts->elems[i].offset;
        range->left += range->start[i] < range->end[i];
    }
    range->idle_since_ms = bs_mono_ms();
    rd_kafka_metadata_destroy(md);
    rd_kafka_assign(cons->rk, parts);
    cons->assigned = parts->cnt;
    rd_kafka_topic_partition_list_destroy(parts);
    return cons;
fail:
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_destroy(parts);
    bs_consumer_close(cons);
    return NULL;
}

bs_msg *bs_range_next(bs_consumer *cons, bs_range *range, bs_err *err)
{
    while (range->left > 0) { /* ends at the range's end, or after 30 s without a message */
        bs_err perr = {0};
        bs_msg *m = bs_consumer_poll(cons, 200, &perr);
        if (m == NULL) {
            if (bs_mono_ms() - range->idle_since_ms > 30000) {
                bs_err_retriable(err, BS_EKAFKA, "no message for 30 s before the end of the log");
                return NULL;
            }
            continue;
        }
        range->idle_since_ms = bs_mono_ms();
        size_t k = 0;
        while (k < range->n && range->partition[k] != m->partition)
            k++;
        if (k == range->n || m->offset >= range->end[k] || m->offset < range->next[k]) {
            bs_msg_free(m);
            continue;
        }
        range->next[k] = m->offset + 1;
        if (range->next[k] >= range->end[k]) range->left--;
        return m;
    }
    return NULL;
}

/* A trace-context header's value, when it is printable ASCII of a sane length (it is copied
 * onto every record the command produces, and logged). */
static char *trace_value(const rd_kafka_headers_t *hdrs, const char *name)
{
    const void *v;
    size_t n;
    if (rd_kafka_header_get_last(hdrs, name, &v, &n) != 0 || v == NULL || n == 0 ||
        n > BS_TRACE_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)v)[i] < 0x20 || ((const unsigned char *)v)[i] > 0x7e)
            return NULL;
    char *s = bs_xmalloc(n + 1);
    memcpy(s, v, n);
    s[n] = '\0';
    return s;
}

bs_msg *bs_consumer_poll(bs_consumer *cons, int timeout_ms, bs_err *err)
{
    rd_kafka_message_t *rm = rd_kafka_consumer_poll(cons->rk, timeout_ms);
    if (rm == NULL) return NULL;
    if (rm->err) {
        if (rm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            bool fatal = rm->err == RD_KAFKA_RESP_ERR__FATAL;
            bs_log(fatal ? BS_LOG_ERROR : BS_LOG_WARN, "kafka", "consumer error: %s",
                   rd_kafka_message_errstr(rm));
            if (fatal)
                bs_err_fatal(err, BS_EKAFKA, "fatal consumer error: %s",
                             rd_kafka_message_errstr(rm));
        }
        rd_kafka_message_destroy(rm);
        return NULL;
    }
    bs_msg *m = bs_xcalloc(1, sizeof *m);
    m->topic = bs_xstrdup(rd_kafka_topic_name(rm->rkt));
    m->partition = rm->partition;
    m->offset = rm->offset;
    m->key = rm->key;
    m->key_len = rm->key_len;
    m->payload = rm->payload ? rm->payload : "";
    m->len = rm->len;
    m->rkmessage = rm;
    rd_kafka_timestamp_type_t tst;
    m->timestamp_ms = rd_kafka_message_timestamp(rm, &tst);
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(rm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const void *v;
        size_t n;
        const char *name;
        for (size_t i = 0; m->nheaders < BS_MSG_MAX_HEADERS &&
                           rd_kafka_header_get_all(hdrs, i, &name, &v, &n) == 0;
             i++)
            m->headers[m->nheaders++] = (bs_header){name, v ? v : "", v ? n : 0};
        m->traceparent = trace_value(hdrs, "traceparent");
        m->tracestate = trace_value(hdrs, "tracestate");
        if (rd_kafka_header_get_last(hdrs, "content-type", &v, &n) == 0 && v && n >= 16 &&
            strncmp(v, "application/json", 16) == 0)
            m->json = true;
        if (rd_kafka_header_get_last(hdrs, "command-id", &v, &n) == 0 && v && n > 0 && n <= 200 &&
            memchr(v, '\0', n) == NULL) {
            m->command_id = bs_xmalloc(n + 1);
            memcpy(m->command_id, v, n);
            m->command_id[n] = '\0';
        }
    }
    return m;
}

void bs_msg_free(bs_msg *m)
{
    if (m == NULL) return;
    rd_kafka_message_destroy(m->rkmessage);
    free(m->topic);
    free(m->command_id);
    free(m->traceparent);
    free(m->tracestate);
    free(m);
}

int bs_consumer_store(bs_consumer *cons, const bs_msg *m, bs_err *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, m->topic, m->partition)->offset = m->offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(cons->rk, l);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && l->elems[0].err) e = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return bs_err_retriable(err, BS_EKAFKA, "could not store offset %lld of %s [%d]: %s",
                                (long long)m->offset + 1, m->topic, m->partition,
                                rd_kafka_err2str(e));
    return 0;
}

void bs_consumer_rewind(bs_consumer *cons, const bs_msg *m)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, m->topic, m->partition)->offset = m->offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(cons->rk, l, 5000);
    if (e) {
        bs_log(BS_LOG_WARN, "kafka", "could not rewind %s [%d] to %lld: %s", m->topic, m->partition,
               (long long)m->offset, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

bool bs_consumer_owns(bs_consumer *cons, const bs_msg *m)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    bool owns = false;
    if (rd_kafka_assignment(cons->rk, &a) == 0 && a) {
        owns = rd_kafka_topic_partition_list_find(a, m->topic, m->partition) != NULL;
        rd_kafka_topic_partition_list_destroy(a);
    }
    return owns;
}

void bs_consumer_pause(bs_consumer *cons, bool pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    cons->paused = pause;
    if (rd_kafka_assignment(cons->rk, &a) == 0 && a) {
        apply_pause(cons, a);
        rd_kafka_topic_partition_list_destroy(a);
    }
}

void bs_consumer_hold(bs_consumer *cons, const char *topic, int32_t partition, bool hold)
{
    const size_t i = held_index(cons, topic, partition);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    if (hold && i == HELD_MAX) { /* not recorded: paused all the same, resumed on release */
        bs_log(BS_LOG_ERROR, "kafka", "more than %d partitions held: %s [%d] not recorded",
               HELD_MAX, topic, partition);
        rd_kafka_pause_partitions(cons->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    if (hold && i == cons->nheld) {
        snprintf(cons->held[i].topic, sizeof cons->held[i].topic, "%s", topic);
        cons->held[i].partition = partition;
        cons->nheld++;
    } else if (!hold && i < cons->nheld) {
        cons->held[i] = cons->held[--cons->nheld];
    }
    apply_pause(cons, l);
    rd_kafka_topic_partition_list_destroy(l);
}

int bs_consumer_assigned(const bs_consumer *cons)
{
    return cons->assigned;
}

bool bs_consumer_joined(const bs_consumer *cons)
{
    return cons->joins > 0;
}

/* How long leaving the group may take at shutdown. rd_kafka_consumer_close() waits for the
 * group coordinator without bound: a worker told to stop while the coordinator is unreachable
 * must still exit (offsets it could not commit are redelivered and found applied). */
#define CLOSE_TIMEOUT_MS 10000

void bs_consumer_close(bs_consumer *cons)
{
    if (cons == NULL) return;
    /* the final commit, bounded: a synchronous rd_kafka_commit() waits for an unreachable
     * coordinator without end */
    rd_kafka_queue_t *q = rd_kafka_queue_new(cons->rk);
    rd_kafka_resp_err_t e = rd_kafka_commit_queue(cons->rk, NULL, q, NULL, NULL);
    const int64_t commit_deadline = bs_mono_us() + (int64_t)CLOSE_TIMEOUT_MS * 1000 / 2;
    bool committed = e != RD_KAFKA_RESP_ERR_NO_ERROR; /* an error at once: nothing to wait for */
    while (!committed && bs_mono_us() < commit_deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
        if (ev == NULL) continue;
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
            e = rd_kafka_event_error(ev);
            committed = true;
        }
        rd_kafka_event_destroy(ev);
    }
    if (!committed)
        bs_log(BS_LOG_WARN, "kafka", "final commit failed: no answer within %d ms",
               CLOSE_TIMEOUT_MS / 2);
    else if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        bs_log(BS_LOG_WARN, "kafka", "final commit failed: %s", rd_kafka_err2str(e));
    rd_kafka_error_t *err = rd_kafka_consumer_close_queue(cons->rk, q);
    bool closed = false;
    if (err != NULL) {
        bs_log(BS_LOG_WARN, "kafka", "leaving the group failed: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    } else {
        /* served as events: a revocation goes to rebalance_cb (by librdkafka, or here when it
         * comes out as an event); anything else (a fetched message, an error) is dropped.
         * rd_kafka_queue_poll_callback() would assert on a message. */
        const int64_t deadline = bs_mono_us() + (int64_t)CLOSE_TIMEOUT_MS * 1000;
        while (!(closed = rd_kafka_consumer_closed(cons->rk)) && bs_mono_us() < deadline) {
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
            if (ev == NULL) continue;
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) /* not served by the cb */
                rebalance_cb(cons->rk, rd_kafka_event_error(ev),
                             rd_kafka_event_topic_partition_list(ev), cons);
            rd_kafka_event_destroy(ev);
        }
        if (!closed)
            bs_log(BS_LOG_WARN, "kafka",
                   "could not leave the consumer group within %d ms (coordinator unreachable?): "
                   "closing anyway; the group reassigns the partitions after the session "
                   "timeout",
                   CLOSE_TIMEOUT_MS);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy_flags(cons->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    free(cons);
}
