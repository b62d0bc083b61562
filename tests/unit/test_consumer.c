/* The consumer's pause state across rebalances, on librdkafka's mock cluster (in process, no
 * broker): a partition paused when the group takes it away must fetch again when the group gives
 * it back to the same consumer. librdkafka keeps a partition's pause flag in the handle across
 * an unassign, so a consumer that resumes only what it holds now leaves it paused for good: the
 * partition is assigned, its lag grows, and nothing arrives (a worker thread stalled so after a
 * broker restart). Also: a held partition stays paused through the same moves. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../t.h"
#include "ids.h"
#include "kafka.h"

#define TOPIC   "pause.t"
#define WAIT_MS 30000 /* every wait below ends after this, failing its check */

static char *keys[8], *vals[8];
static bs_kafka_props props = {0, keys, vals};

static void prop(const char *k, const char *v)
{
    keys[props.n] = (char *)k;
    vals[props.n] = (char *)v;
    props.n++;
}

/* Polls both consumers (either may be NULL) until each has its wanted partition count. */
static bool settle(bs_consumer *a, int want_a, bs_consumer *b, int want_b)
{
    const int64_t deadline = bs_mono_ms() + WAIT_MS;
    while (bs_mono_ms() < deadline) {
        bs_err err = {0};
        bs_msg_free(bs_consumer_poll(a, 50, &err));
        if (b) bs_msg_free(bs_consumer_poll(b, 50, &err));
        if (bs_consumer_assigned(a) == want_a && (b == NULL || bs_consumer_assigned(b) == want_b))
            return true;
    }
    return false;
}

/* Produces one message to each of the topic's two partitions, tagged with tag. */
static void produce_both(rd_kafka_t *prod, const char *tag)
{
    for (int32_t p = 0; p < 2; p++)
        rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(p),
                          RD_KAFKA_V_VALUE((void *)tag, strlen(tag)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    rd_kafka_flush(prod, WAIT_MS);
}

/* Polls c until it has received tag from each partition in want (bit p: partition p), or for
 * quiet_ms when want is 0 (nothing may arrive); returns the partitions tag came from. */
static int receive(bs_consumer *c, const char *tag, int want, int quiet_ms)
{
    int got = 0;
    const int64_t deadline = bs_mono_ms() + (want ? WAIT_MS : quiet_ms);
    while (bs_mono_ms() < deadline && (want == 0 || (got & want) != want)) {
        bs_err err = {0};
        bs_msg *m = bs_consumer_poll(c, 50, &err);
        if (m && m->len == strlen(tag) && memcmp(m->payload, tag, m->len) == 0)
            got |= 1 << m->partition;
        bs_msg_free(m);
    }
    return got;
}

int main(void)
{
    char errstr[512];
    rd_kafka_conf_t *oc = rd_kafka_conf_new(); /* the mock cluster's owner: never connects */
    rd_kafka_conf_set(oc, "log_level", "3", NULL, 0);
    rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, oc, errstr, sizeof errstr);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 1);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, TOPIC, 2, 1);
    prop("bootstrap.servers", boot);
    prop("group.id", "pause-g");
    prop("session.timeout.ms", "3000");
    prop("heartbeat.interval.ms", "100");
    prop("partition.assignment.strategy", "range,roundrobin"); /* the sample's: eager */
    prop("log_level", "3");

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set(pc, "bootstrap.servers", boot, NULL, 0);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr);
    CHECK(prod != NULL);

    bs_err err = {0};
    bs_consumer *c1 = bs_consumer_new(&props, TOPIC, &err);
    CHECK(c1 != NULL);
    CHECK(settle(c1, 2, NULL, 0));
    produce_both(prod, "first");
    CHECK_INT(receive(c1, "first", 3, 0), 3);

    /* paused (a backoff), c1 loses one partition to c2, resumes what it has, then gets the lost
     * one back when c2 leaves */
    bs_consumer_pause(c1, true);
    bs_consumer *c2 = bs_consumer_new(&props, TOPIC, &err);
    CHECK(c2 != NULL);
    CHECK(settle(c1, 1, c2, 1));
    bs_consumer_pause(c1, false);
    bs_consumer_close(c2);
    CHECK(settle(c1, 2, NULL, 0));
    produce_both(prod, "second");
    CHECK_INT(receive(c1, "second", 3, 0), 3);

    /* a held partition (a large command in batches) stays held across the same moves, and
     * fetches once released */
    bs_consumer_hold(c1, TOPIC, 0, true);
    c2 = bs_consumer_new(&props, TOPIC, &err);
    CHECK(c2 != NULL);
    CHECK(settle(c1, 1, c2, 1));
    bs_consumer_close(c2);
    CHECK(settle(c1, 2, NULL, 0));
    produce_both(prod, "third");
    CHECK_INT(receive(c1, "third", 2, 0), 2);
    CHECK_INT(receive(c1, "third", 0, 2000), 0); /* partition 0 sends nothing while held */
    bs_consumer_hold(c1, TOPIC, 0, false);
    CHECK_INT(receive(c1, "third", 1, 0), 1);

    bs_consumer_close(c1);
    rd_kafka_destroy(prod);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
    return t_done();
}
