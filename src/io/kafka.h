/* kafka: the two librdkafka handles. The consumer is in a group with manual offset store (an
 * offset is stored only when the worker says the command is settled); the producer is
 * idempotent and reports every delivery. Only this file includes rdkafka.h. */
#ifndef BS_KAFKA_H
#define BS_KAFKA_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* librdkafka properties, passed verbatim to rd_kafka_conf_set (the [kafka] section). A later
 * entry of a key wins. The arrays stay the caller's. */
typedef struct bs_kafka_props {
    size_t n;
    char *const *keys, *const *vals;
} bs_kafka_props;

typedef struct bs_consumer bs_consumer;
typedef struct bs_producer bs_producer;

typedef struct bs_header {
    const char *name;
    const void *value;
    size_t len;
} bs_header;

#define BS_MSG_MAX_HEADERS 64  /* a message's headers kept (for its dead letter) at most */
#define BS_TRACE_MAX       512 /* longest traceparent / tracestate value carried on */

typedef struct bs_msg {
    char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* the record's timestamp; -1 when it has none */
    const void *key;
    size_t key_len;
    const void *payload;
    size_t len;
    bool json;        /* header content-type: application/json */
    char *command_id; /* header command-id, or NULL */
    /* W3C trace context headers (NULL when absent, or not printable ASCII of at most
     * BS_TRACE_MAX bytes) */
    char *traceparent, *tracestate;
    size_t nheaders; /* every header, as received (values point into the message) */
    bs_header headers[BS_MSG_MAX_HEADERS];
    void *rkmessage; /* the librdkafka message, owned */
} bs_msg;

/* Delivery accounting for a group of produced messages. */
typedef struct bs_delivery {
    int pending, failed;
    bool permanent; /* a failure that producing again cannot mend (too large, no topic) */
    char error[256];
} bs_delivery;

/* Creates the consumer and subscribes to topic (props must name group.id). */
bs_consumer *bs_consumer_new(const bs_kafka_props *props, const char *topic, bs_err *err);

/* The part of a topic a replay reads: per partition, where it starts and the end offset when
 * the replay began (messages produced later are not read). */
#define BS_RANGE_MAX 256
typedef struct bs_range {
    size_t n;
    int32_t partition[BS_RANGE_MAX];
    int64_t start[BS_RANGE_MAX], end[BS_RANGE_MAX];
    int64_t next[BS_RANGE_MAX]; /* bs_range_next's progress */
    size_t left;                /* partitions not read to their end yet */
    int64_t idle_since_ms;
} bs_range;

/* A consumer assigned (no group) to topic's partitions (partition -1: all), from from_offset
 * (clamped to the log's start and end), or from the first message at or after from_ts_ms when that
 * is
 * >= 0. range says where it starts and ends. */
bs_consumer *bs_consumer_new_range(const bs_kafka_props *props, const char *topic,
                                   int32_t partition, int64_t from_offset, int64_t from_ts_ms,
                                   bs_range *range, bs_err *err);

/* The next message of the range, in each partition's order, skipping what lies outside it;
 * NULL at its end (err untouched), or after 30 s without a message before it (err set,
 * retriable). */
bs_msg *bs_range_next(bs_consumer *cons, bs_range *range, bs_err *err);

/* A function that receives librdkafka's statistics JSON (consumer lag), called from the
 * consumer's poll. Set before bs_consumer_new, which keeps fn and ctx for the consumer it
 * makes; statistics.interval.ms 0 then becomes 5000. */
typedef void bs_stats_hook(const char *json, size_t len, void *ctx);
void bs_kafka_set_stats_hook(bs_stats_hook *fn, void *ctx);
/* A consumer with no group, assigned to every partition of topic at its current end (for
 * `bulkstate send`, which waits for replies), or at its start when beginning. */
bs_consumer *bs_consumer_new_tail(const bs_kafka_props *props, const char *topic, bool beginning,
                                  bs_err *err);
/* NULL on timeout. Consumer errors are logged; fatal ones set err and return NULL. */
bs_msg *bs_consumer_poll(bs_consumer *cons, int timeout_ms, bs_err *err);
void bs_msg_free(bs_msg *m); /* NULL is a no-op */
/* Stores offset+1 of m for the next commit. */
int bs_consumer_store(bs_consumer *cons, const bs_msg *m, bs_err *err);
/* Seeks m's partition back to m, so m is consumed again. */
void bs_consumer_rewind(bs_consumer *cons, const bs_msg *m);
/* Whether m's partition is still assigned to this consumer. */
bool bs_consumer_owns(bs_consumer *cons, const bs_msg *m);
/* Pauses (or resumes) every assigned partition; held partitions stay paused. */
void bs_consumer_pause(bs_consumer *cons, bool pause);
/* Holds one partition paused (a large command of it runs in batches), or releases it. */
void bs_consumer_hold(bs_consumer *cons, const char *topic, int32_t partition, bool hold);
int bs_consumer_assigned(const bs_consumer *cons);
/* Whether the group has given this consumer an assignment yet (an empty one counts). */
bool bs_consumer_joined(const bs_consumer *cons);
/* Commits stored offsets, leaves the group, destroys. NULL is a no-op. */
void bs_consumer_close(bs_consumer *cons);

bs_producer *bs_producer_new(const bs_kafka_props *props, bs_err *err);
/* Queues one message; dv->pending counts it until its delivery report. A record too large or
 * for a topic that does not exist fails at once, permanently. */
int bs_producer_send(bs_producer *prod, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t len, const bs_header *hdrs, size_t nhdrs,
                     bs_delivery *dv, bs_err *err);
/* The same, with the record's timestamp (ms since the epoch; 0: now). */
int bs_producer_send_at(bs_producer *prod, const char *topic, const void *key, size_t key_len,
                        const void *value, size_t len, const bs_header *hdrs, size_t nhdrs,
                        int64_t timestamp_ms, bs_delivery *dv, bs_err *err);
/* Serves delivery reports until dv has none pending or timeout; -1 on timeout or a failed
 * delivery: retriable, or permanent when producing again cannot mend it (dv->permanent). */
int bs_producer_wait(bs_producer *prod, bs_delivery *dv, int timeout_ms, bs_err *err);
void bs_producer_poll(bs_producer *prod);
/* The largest record the producer sends (its message.max.bytes), key and headers included. */
size_t bs_producer_max_message_bytes(bs_producer *prod);
/* Whether the broker knows topic (a metadata request; no auto-creation). */
bool bs_producer_topic_exists(bs_producer *prod, const char *topic, int timeout_ms);
/* Flushes (bounded) and destroys. NULL is a no-op. */
void bs_producer_free(bs_producer *prod, int flush_timeout_ms);

/* librdkafka's version ("2.0.2"). */
const char *bs_kafka_version(void);

/* Room a dead-letter copy needs above the message itself (its key and headers). */
#define BS_DLQ_HEADROOM 16384

/* Whether librdkafka takes key = val: 0, or -1 with its reason ("key: ...") in why. */
int bs_kafka_check_prop(const char *key, const char *val, char *why, size_t n);
/* An integer property's value: val when not NULL, else librdkafka's default; -1 if unreadable. */
long bs_kafka_conf_long(const char *key, const char *val);
/* Compiles a topic pattern (POSIX extended, matched against the whole name): 0, or -1 with the
 * reason in why. */
int bs_topic_pattern_compile(const char *pattern, regex_t *re, char *why, size_t n);
bool bs_topic_pattern_match(const regex_t *re, const char *topic);

/* Creates the topics (an existing topic is fine, and keeps its configs), each with the topic
 * configs given as "key=value". */
int bs_kafka_create_topics(const bs_kafka_props *props, const char *const *names, size_t n,
                           int partitions, int replication_factor, const char *const *configs,
                           size_t nconfigs, bs_err *err);

#endif
