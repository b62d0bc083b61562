/* kafka: librdkafka wiring shared by both handles (configuration, logging), the producer
 * (idempotent, a delivery report for every record) and topic creation. The consumer is in
 * kafka_consumer.c. */
#include "kafka_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ids.h"
#include "log.h"

struct bs_producer {
    rd_kafka_t *rk;
};

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    bs_log_level l = level <= 3   ? BS_LOG_ERROR
                     : level <= 4 ? BS_LOG_WARN
                     : level <= 6 ? BS_LOG_INFO
                                  : BS_LOG_DEBUG;
    /* the handle's name tells a worker's consumers apart (one per thread) */
    bs_log(l, "rdkafka", "handle=%s facility=%s msg=\"%s\"", rk ? rd_kafka_name(rk) : "-", fac,
           buf);
}

const char *bs_kafka_prop(const bs_kafka_props *props, const char *key)
{
    for (size_t i = props->n; i-- > 0;)
        if (strcmp(props->keys[i], key) == 0) return props->vals[i];
    return NULL;
}

rd_kafka_conf_t *bs_kafka_conf(const bs_kafka_props *props, bool consumer, bs_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    static const char *const consumer_only[] = {"group.id",
                                                "enable.auto.offset.store",
                                                "enable.auto.commit",
                                                "auto.offset.reset",
                                                "partition.assignment.strategy",
                                                "session.timeout.ms",
                                                "max.poll.interval.ms",
                                                "group.instance.id",
                                                "isolation.level",
                                                "heartbeat.interval.ms",
                                                "fetch.wait.max.ms",
                                                "fetch.min.bytes",
                                                "queued.min.messages",
                                                "queued.max.messages.kbytes"};
    /* our defaults first; the [kafka] section overrides them */
    rd_kafka_conf_set(conf, "socket.nagle.disable", "true", NULL, 0);
    if (consumer) {
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", NULL, 0);
        rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "16384", NULL, 0);
    } else {
        rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
        /* a command's replies are produced within a millisecond: one batch still, and its
         * completion, not awaited when the next message follows (worker.c), leaves soon */
        rd_kafka_conf_set(conf, "linger.ms", "1", NULL, 0);
    }
    for (size_t i = 0; i < props->n; i++) {
        bool skip = false;
        for (size_t j = 0; !consumer && j < sizeof consumer_only / sizeof *consumer_only; j++)
            skip |= strcmp(props->keys[i], consumer_only[j]) == 0;
        if (skip) continue;
        if (rd_kafka_conf_set(conf, props->keys[i], props->vals[i], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            bs_err_fatal(err, BS_EINVAL, "[kafka] %s: %s", props->keys[i], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if (consumer) {
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", NULL, 0);
        rd_kafka_conf_set(conf, "enable.auto.commit", "true", NULL, 0);
    }
    /* no handle of bulkstate creates a topic: a command naming a reply topic that does not
     * exist gets an error, on brokers that allow auto-creation too */
    rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", NULL, 0);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

/* Errors that producing the same record again cannot mend: too large, no such topic, not
 * allowed. */
static bool permanent(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_INVALID_RECORD || e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rm, void *opaque)
{
    (void)rk;
    (void)opaque;
    bs_delivery *dv = rm->_private;
    if (dv == NULL) return;
    dv->pending--;
    if (rm->err) {
        dv->failed++;
        dv->permanent |= permanent(rm->err);
        snprintf(dv->error, sizeof dv->error, "%s", rd_kafka_err2str(rm->err));
    }
}

bs_producer *bs_producer_new(const bs_kafka_props *props, bs_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = bs_kafka_conf(props, false, err);
    if (conf == NULL) return NULL;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    bs_producer *prod = bs_xcalloc(1, sizeof *prod);
    prod->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (prod->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        free(prod);
        bs_err_fatal(err, BS_EKAFKA, "could not create the Kafka producer: %s", errstr);
        return NULL;
    }
    return prod;
}

int bs_producer_send(bs_producer *prod, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t len, const bs_header *hdrs, size_t nhdrs,
                     bs_delivery *dv, bs_err *err)
{
    return bs_producer_send_at(prod, topic, key, key_len, value, len, hdrs, nhdrs, 0, dv, err);
}

int bs_producer_send_at(bs_producer *prod, const char *topic, const void *key, size_t key_len,
                        const void *value, size_t len, const bs_header *hdrs, size_t nhdrs,
                        int64_t timestamp_ms, bs_delivery *dv, bs_err *err)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(nhdrs);
    for (size_t i = 0; i < nhdrs; i++)
        rd_kafka_header_add(h, hdrs[i].name, -1, hdrs[i].value, (ssize_t)hdrs[i].len);
    for (int attempt = 0;; attempt++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            prod->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(timestamp_ms > 0 ? timestamp_ms : 0), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE(dv), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            dv->pending++;
            return 0; /* the headers now belong to the message */
        }
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && attempt < 100) {
            rd_kafka_poll(prod->rk, 100);
            continue;
        }
        rd_kafka_headers_destroy(h);
        if (permanent(e))
            return bs_err_set(err, BS_EKAFKA, "could not produce to \"%s\": %s", topic,
                              rd_kafka_err2str(e));
        return bs_err_retriable(err, BS_EKAFKA, "could not produce to \"%s\": %s", topic,
                                rd_kafka_err2str(e));
    }
}

int bs_producer_wait(bs_producer *prod, bs_delivery *dv, int timeout_ms, bs_err *err)
{
    int64_t deadline = bs_mono_ms() + timeout_ms;
    /* the reports that came meanwhile first: records sent a while ago are often acknowledged
     * already, and then nothing else is flushed with them */
    rd_kafka_poll(prod->rk, 0);
    /* then flush, not poll: a flush sends what is queued at once instead of waiting out
     * linger.ms (the caller waits for these acknowledgements now) */
    while (dv->pending > 0 && bs_mono_ms() < deadline)
        if (rd_kafka_flush(prod->rk, 50) == RD_KAFKA_RESP_ERR_NO_ERROR && dv->pending > 0)
            rd_kafka_poll(prod->rk, 50); /* nothing queued, yet reports due: serve them */
    if (dv->pending > 0) {
        /* the reports still count down into dv later: keep dv alive (it is the worker's) */
        return bs_err_retriable(err, BS_EKAFKA, "%d replies not acknowledged within %d ms",
                                dv->pending, timeout_ms);
    }
    if (dv->failed > 0 && dv->permanent)
        return bs_err_set(err, BS_EKAFKA, "%d replies failed to deliver: %s", dv->failed,
                          dv->error);
    if (dv->failed > 0)
        return bs_err_retriable(err, BS_EKAFKA, "%d replies failed to deliver: %s", dv->failed,
                                dv->error);
    return 0;
}

const char *bs_kafka_version(void)
{
    return rd_kafka_version_str();
}

int bs_kafka_check_prop(const char *key, const char *val, char *why, size_t n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[400];
    rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, key, val, errstr, sizeof errstr);
    rd_kafka_conf_destroy(conf);
    if (r == RD_KAFKA_CONF_OK) return 0;
    snprintf(why, n, "%s: %s", key, errstr);
    return -1;
}

long bs_kafka_conf_long(const char *key, const char *val)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char buf[64];
    size_t n = sizeof buf;
    long v = -1;
    if ((val == NULL || rd_kafka_conf_set(conf, key, val, NULL, 0) == RD_KAFKA_CONF_OK) &&
        rd_kafka_conf_get(conf, key, buf, &n) == RD_KAFKA_CONF_OK)
        v = strtol(buf, NULL, 10);
    rd_kafka_conf_destroy(conf);
    return v;
}

int bs_topic_pattern_compile(const char *pattern, regex_t *re, char *why, size_t n)
{
    char *anchored = bs_xmalloc(strlen(pattern) + 5);
    sprintf(anchored, "^(%s)$", pattern);
    int rc = regcomp(re, anchored, REG_EXTENDED | REG_NOSUB);
    free(anchored);
    if (rc == 0) return 0;
    regerror(rc, re, why, n);
    return -1;
}

bool bs_topic_pattern_match(const regex_t *re, const char *topic)
{
    return regexec(re, topic, 0, NULL, 0) == 0;
}

size_t bs_producer_max_message_bytes(bs_producer *prod)
{
    char buf[32];
    size_t n = sizeof buf;
    if (rd_kafka_conf_get(rd_kafka_conf(prod->rk), "message.max.bytes", buf, &n) !=
        RD_KAFKA_CONF_OK)
        return 1000000; /* librdkafka's default */
    return (size_t)strtoull(buf, NULL, 10);
}

void bs_producer_poll(bs_producer *prod)
{
    rd_kafka_poll(prod->rk, 0);
}

bool bs_producer_topic_exists(bs_producer *prod, const char *topic, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(prod->rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(prod->rk, 0, t, &md, timeout_ms);
    bool ok = e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
              md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0;
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return ok;
}

void bs_producer_free(bs_producer *prod, int flush_timeout_ms)
{
    if (prod == NULL) return;
    if (rd_kafka_flush(prod->rk, flush_timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        bs_log(BS_LOG_WARN, "kafka", "%d messages still unacknowledged at shutdown",
               rd_kafka_outq_len(prod->rk));
    rd_kafka_destroy(prod->rk);
    free(prod);
}

int bs_kafka_create_topics(const bs_kafka_props *props, const char *const *names, size_t n,
                           int partitions, int replication_factor, const char *const *configs,
                           size_t nconfigs, bs_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = bs_kafka_conf(props, false, err);
    if (conf == NULL) return -1;
    rd_kafka_conf_set(conf, "enable.idempotence", "false", NULL, 0); /* admin only */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return bs_err_fatal(err, BS_EKAFKA, "could not create a Kafka client: %s", errstr);
    }
    rd_kafka_NewTopic_t **nt = bs_xcalloc(n ? n : 1, sizeof *nt);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        nt[i] =
            rd_kafka_NewTopic_new(names[i], partitions, replication_factor, errstr, sizeof errstr);
        if (nt[i] == NULL) {
            rc = bs_err_set(err, BS_EKAFKA, "topic \"%s\": %s", names[i], errstr);
            goto out;
        }
        for (size_t c = 0; c < nconfigs; c++) {
            char kv[256];
            char *eq;
            snprintf(kv, sizeof kv, "%s", configs[c]);
            if ((eq = strchr(kv, '=')) == NULL || eq == kv) {
                rc = bs_err_set(err, BS_EINVAL, "topic config \"%s\" is not KEY=VALUE", configs[c]);
                goto out;
            }
            *eq = '\0';
            if (rd_kafka_NewTopic_set_config(nt[i], kv, eq + 1) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = bs_err_set(err, BS_EINVAL, "topic config \"%s\" refused", configs[c]);
                goto out;
            }
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, 15000, errstr, sizeof errstr);
    rd_kafka_CreateTopics(rk, nt, n, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (res == NULL) {
        rc = bs_err_retriable(err, BS_EKAFKA, "no answer to CreateTopics: %s",
                              ev ? rd_kafka_event_error_string(ev) : "timed out");
    } else if (rd_kafka_event_error(ev)) {
        rc = bs_err_retriable(err, BS_EKAFKA, "CreateTopics failed: %s",
                              rd_kafka_event_error_string(ev));
    } else {
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && rc == 0)
                rc = bs_err_set(err, BS_EKAFKA, "could not create topic \"%s\": %s",
                                rd_kafka_topic_result_name(tr[i]),
                                rd_kafka_topic_result_error_string(tr[i]));
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
out:
    for (size_t i = 0; i < n; i++)
        if (nt[i]) rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    rd_kafka_destroy(rk);
    return rc;
}
