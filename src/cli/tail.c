/* tail: prints the results and completions on the reply topic as they arrive (or from the
 * start), human-readable or as JSON lines. Reads only; joins no consumer group. */
#include "tail.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "print.h"
#include "codec.h"
#include "ids.h"
#include "kafka.h"

int bs_tail_main(const bs_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"from-beginning", no_argument, NULL, 'b'},
                                         {"max", required_argument, NULL, 'm'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"topic", required_argument, NULL, 'T'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool beginning = false, as_json = false;
    long max = -1, timeout_s = -1;
    const char *topic = cfg->reply_topic;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "bm:t:T:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            beginning = true;
            break;
        case 'm':
            max = atol(optarg);
            break;
        case 't':
            timeout_s = atol(optarg);
            break;
        case 'T':
            topic = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: bulkstate tail [--from-beginning] [--max N] [--timeout SECONDS] "
                    "[--topic T] [--json]\n"
                    "Prints the results and completions on the reply topic (default: new ones,\n"
                    "until interrupted). exit status: 0, 64 usage, 69 Kafka unavailable\n");
            return c == 'h' ? 0 : 64;
        }
    }
    bs_err err = {0};
    const bs_codec_conf cc = bs_config_codec_conf(cfg, BS_CLI_MAX_MESSAGE_BYTES);
    bs_codec *cd = bs_codec_new(&cc, &err);
    if (cd == NULL) {
        fprintf(stderr, "bulkstate tail: %s\n", err.msg);
        return 78;
    }
    const bs_kafka_props kp = bs_config_kafka_props(cfg);
    bs_consumer *cons = bs_consumer_new_tail(&kp, topic, beginning, &err);
    if (cons == NULL) {
        fprintf(stderr, "bulkstate tail: %s\n", err.msg);
        bs_codec_free(cd);
        return 69;
    }
    int64_t deadline = timeout_s >= 0 ? bs_mono_ms() + timeout_s * 1000 : INT64_MAX;
    for (long seen = 0; (max < 0 || seen < max) && bs_mono_ms() < deadline;) {
        bs_msg *m = bs_consumer_poll(cons, 200, &err);
        if (m == NULL) continue;
        json_t *j = NULL;
        bs_err derr = {0};
        bool result = false;
        if (bs_codec_decode_reply(cd, m->payload, m->len, m->json, &j, &result, &derr) < 0)
            fprintf(stderr, "bulkstate tail: [%d] offset %lld: %s\n", m->partition,
                    (long long)m->offset, derr.msg);
        if (j != NULL) {
            seen++;
            if (as_json) {
                char *t = json_dumps(j, JSON_COMPACT);
                printf("%s\n", t);
                free(t);
            } else if (result) {
                printf("%s", json_string_value(json_object_get(j, "command_id")));
                bs_cli_print_result(j);
            } else {
                const char *id = json_string_value(json_object_get(j, "command_id"));
                bs_cli_print_completion(j, id ? id : "(unknown)");
            }
            fflush(stdout);
            json_decref(j);
        }
        bs_msg_free(m);
    }
    bs_consumer_close(cons);
    bs_codec_free(cd);
    return 0;
}
