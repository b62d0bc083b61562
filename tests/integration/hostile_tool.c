/* Helper of the hostile-producer test (hostile_producer.py), so the generator needs no Kafka
 * or Avro library of its own:
 *   hostile_tool encode              JSON command per stdin line -> hex of its Avro
 *                                    single-object encoding per stdout line ("-" when the
 *                                    command has no Avro form)
 *   hostile_tool produce TOPIC FILE  produces FILE's records, RATE a second (env HOSTILE_RATE,
 *                                    0: at once), each record: u32 flags (1 = pace before it),
 *                                    u32 partition (0xffffffff: by key), u32 nheaders, then
 *                                    per header u32+name, u32+value, then u32+key, u32+value
 *                                    (lengths big-endian); prints "produced N" when all are
 *                                    acknowledged.
 * Kafka settings come from the environment as the worker's do (BULKSTATE_KAFKA_*). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "config.h"

static int encode(bs_config *cfg)
{
    bs_err err = {0};
    const bs_codec_conf cc = bs_config_codec_conf(cfg, 1u << 24);
    bs_codec *cd = bs_codec_new(&cc, &err);
    if (cd == NULL) {
        fprintf(stderr, "codec: %s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        json_t *body = json_loads(line, 0, NULL), *j = body ? bs_codec_body_to_command(body) : NULL;
        json_decref(body);
        unsigned char *buf = NULL;
        size_t len = 0;
        memset(&err, 0, sizeof err);
        if (j == NULL || bs_codec_encode(cd, BS_SCHEMA_COMMAND, j, BS_FRAME_SINGLE_OBJECT, &buf,
                                         &len, &err) < 0) {
            puts("-");
        } else {
            for (size_t i = 0; i < len; i++)
                printf("%02x", buf[i]);
            putchar('\n');
        }
        free(buf);
        json_decref(j);
    }
    free(line);
    bs_codec_free(cd);
    return 0;
}

static int rd(FILE *f, void *buf, size_t n)
{
    return n == 0 || fread(buf, 1, n, f) == n ? 0 : -1;
}

static char *rd_blob(FILE *f, uint32_t *len)
{
    uint32_t be;
    if (rd(f, &be, 4) < 0) return NULL;
    *len = ntohl(be);
    char *p = malloc(*len + 1);
    if (p == NULL || rd(f, p, *len) < 0) {
        free(p);
        return NULL;
    }
    p[*len] = '\0';
    return p;
}

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    int *failed = opaque;
    if (m->err) {
        (*failed)++;
        fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

static int produce(bs_config *cfg, const char *topic, const char *path)
{
    char errstr[512];
    int failed = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka_keys[i], "group.id") &&
            strcmp(cfg->kafka_keys[i], "enable.auto.commit"))
            rd_kafka_conf_set(conf, cfg->kafka_keys[i], cfg->kafka_vals[i], NULL, 0);
    rd_kafka_conf_set(conf, "message.max.bytes", "1100000", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "1", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_conf_set_opaque(conf, &failed);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    FILE *f = fopen(path, "rb");
    if (rk == NULL || f == NULL) {
        fprintf(stderr, "produce: %s\n", rk ? path : errstr);
        return 1;
    }
    const char *r = getenv("HOSTILE_RATE");
    const double rate = r ? atof(r) : 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long n = 0, paced = 0;
    for (;;) {
        uint32_t hdr[3];
        if (rd(f, hdr, sizeof hdr) < 0) break;
        const uint32_t flags = ntohl(hdr[0]), part = ntohl(hdr[1]), nh = ntohl(hdr[2]);
        rd_kafka_headers_t *h = rd_kafka_headers_new(nh);
        for (uint32_t i = 0; i < nh; i++) {
            uint32_t nl, vl;
            char *name = rd_blob(f, &nl), *val = name ? rd_blob(f, &vl) : NULL;
            if (val == NULL) return fprintf(stderr, "produce: truncated file\n"), 1;
            rd_kafka_header_add(h, name, nl, val, vl);
            free(name);
            free(val);
        }
        uint32_t kl, vl;
        char *key = rd_blob(f, &kl), *val = key ? rd_blob(f, &vl) : NULL;
        if (val == NULL) return fprintf(stderr, "produce: truncated file\n"), 1;
        if ((flags & 1) && rate > 0) { /* the schedule: record `paced` is due at paced/rate */
            struct timespec due = t0;
            double at = paced++ / rate;
            due.tv_sec += (time_t)at;
            due.tv_nsec += (long)((at - (double)(time_t)at) * 1e9);
            if (due.tv_nsec >= 1000000000L) {
                due.tv_sec++;
                due.tv_nsec -= 1000000000L;
            }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) != 0) {
            }
        }
        const int32_t pid = part == 0xffffffffu ? (int32_t)RD_KAFKA_PARTITION_UA : (int32_t)part;
        for (int tries = 0;; tries++) { /* ends: queued, or 100 tries of a full queue */
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(pid), RD_KAFKA_V_KEY(key, kl),
                RD_KAFKA_V_VALUE(val, vl), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries == 100) {
                fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
                rd_kafka_headers_destroy(h);
                failed++;
                break;
            }
            rd_kafka_poll(rk, 100);
        }
        rd_kafka_poll(rk, 0);
        free(key);
        free(val);
        n++;
    }
    fclose(f);
    rd_kafka_flush(rk, 60000);
    printf("produced %ld\n", n - failed);
    rd_kafka_destroy(rk);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    bs_config *cfg = NULL;
    if (bs_config_load(getenv("BULKSTATE_CONFIG"), stderr, &cfg) != 0) return 78;
    int rc = 64;
    if (argc == 2 && strcmp(argv[1], "encode") == 0)
        rc = encode(cfg);
    else if (argc == 4 && strcmp(argv[1], "produce") == 0)
        rc = produce(cfg, argv[2], argv[3]);
    else
        fprintf(stderr, "usage: hostile_tool encode | produce TOPIC FILE\n");
    bs_config_free(cfg);
    return rc;
}
