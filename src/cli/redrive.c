/* redrive: copies dead letters back to the topic they came from, as they were received (key,
 * value, headers; the reasons bulkstate and Kafka Connect added left off), so that a command
 * dead-lettered for a cause since mended is consumed again. Reads the dead-letter topic from
 * its start to its end when the command began; joins no consumer group. A copy cut to fit
 * (bulkstate.truncated) is not whole and is never re-driven. Applying a command twice is
 * harmless: a re-driven command that was applied before republishes its replies. */
#include "redrive.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "kafka.h"
#include "text.h"

typedef struct selection {
    const char *type, *code, *command_id;
    int32_t partition;
    int64_t from, to; /* offsets in the dead-letter topic, inclusive; -1: open */
} selection;

static const char *header(const bs_msg *m, const char *name, char *buf, size_t n)
{
    for (size_t i = m->nheaders; i-- > 0;)
        if (strcmp(m->headers[i].name, name) == 0) {
            snprintf(buf, n, "%.*s", (int)m->headers[i].len, (const char *)m->headers[i].value);
            return buf;
        }
    return NULL;
}

static bool selected(const selection *s, const bs_msg *m, const char *type, const char *code,
                     const char *id)
{
    if (s->type && (type == NULL || strcmp(type, s->type) != 0)) return false;
    if (s->code && (code == NULL || strcmp(code, s->code) != 0)) return false;
    if (s->command_id && (id == NULL || strcmp(id, s->command_id) != 0)) return false;
    if (s->partition >= 0 && m->partition != s->partition) return false;
    if (s->from >= 0 && m->offset < s->from) return false;
    if (s->to >= 0 && m->offset > s->to) return false;
    return true;
}

int bs_redrive_main(const bs_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"type", required_argument, NULL, 't'},
                                         {"code", required_argument, NULL, 'c'},
                                         {"command-id", required_argument, NULL, 'i'},
                                         {"partition", required_argument, NULL, 'p'},
                                         {"from-offset", required_argument, NULL, 'f'},
                                         {"to-offset", required_argument, NULL, 'o'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    selection s = {.partition = -1, .from = -1, .to = -1};
    bool dry = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:c:i:p:f:o:nh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            s.type = optarg;
            break;
        case 'c':
            s.code = optarg;
            break;
        case 'i':
            s.command_id = optarg;
            break;
        case 'p':
            s.partition = (int32_t)atol(optarg);
            break;
        case 'f':
            s.from = atoll(optarg);
            break;
        case 'o':
            s.to = atoll(optarg);
            break;
        case 'n':
            dry = true;
            break;
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: bulkstate redrive [--type T] [--code C] [--command-id ID]\n"
                    "                         [--partition P] [--from-offset N] [--to-offset M]\n"
                    "                         [--dry-run]\n"
                    "Copies the dead letters selected (all criteria must hold: error type, error\n"
                    "code, command id, dead-letter partition and offsets) back to the topic they\n"
                    "came from, as received. --dry-run lists them. exit status: 0, 1 some could\n"
                    "not be re-driven (cut copies), 64 usage, 69 Kafka unavailable\n");
            return c == 'h' ? 0 : 64;
        }
    }
    bs_err err = {0};
    const bs_kafka_props kp = bs_config_kafka_props(cfg);
    bs_range range;
    bs_consumer *cons = bs_consumer_new_range(&kp, cfg->dlq_topic, -1, 0, -1, &range, &err);
    bs_producer *prod = cons && !dry ? bs_producer_new(&kp, &err) : NULL;
    if (cons == NULL || (!dry && prod == NULL)) {
        fprintf(stderr, "bulkstate redrive: %s\n", err.msg);
        bs_consumer_close(cons);
        return 69;
    }
    bs_delivery dv = {0};
    int n_sent = 0, n_cut = 0, rc = 0;
    bs_msg *m;
    while ((m = bs_range_next(cons, &range, &err)) != NULL) {
        char type[128], code[128], id[256], topic[256], cut[8], esc[1024];
        const char *t = header(m, "bulkstate.error.type", type, sizeof type),
                   *cd = header(m, "bulkstate.error.code", code, sizeof code),
                   *cid = header(m, "command-id", id, sizeof id),
                   *to = header(m, "bulkstate.original.topic", topic, sizeof topic);
        if (!selected(&s, m, t, cd, cid)) {
            bs_msg_free(m);
            continue;
        }
        const bool whole = header(m, "bulkstate.truncated", cut, sizeof cut) == NULL;
        if (to == NULL) to = cfg->command_topic;
        printf("%s partition=%" PRId32 " offset=%" PRId64 " code=%s type=%s command_id=%s -> %s\n",
               !whole ? "not re-driven (cut to fit)"
               : dry  ? "would re-drive"
                      : "re-driven",
               m->partition, m->offset, cd ? cd : "-", t ? t : "-",
               bs_text_escape(cid ? cid : "-", esc, sizeof esc), to);
        if (!whole) {
            n_cut++;
        } else if (!dry) {
            /* the record as received: the reasons added on the way to the dead letters off */
            bs_header h[BS_MSG_MAX_HEADERS];
            size_t nh = 0;
            for (size_t i = 0; i < m->nheaders; i++)
                if (strncmp(m->headers[i].name, "bulkstate.", 10) != 0 &&
                    strncmp(m->headers[i].name, "__connect.errors.", 17) != 0)
                    h[nh++] = m->headers[i];
            if (bs_producer_send(prod, to, m->key, m->key_len, m->payload, m->len, h, nh, &dv,
                                 &err) < 0) {
                fprintf(stderr, "bulkstate redrive: %s\n", err.msg);
                bs_msg_free(m);
                rc = 69;
                break;
            }
            n_sent++;
        } else {
            n_sent++;
        }
        bs_msg_free(m);
    }
    if (rc == 0 && err.code != BS_OK) { /* no record for 30 s before the log's end */
        fprintf(stderr, "bulkstate redrive: %s\n", err.msg);
        rc = 69;
    }
    if (prod && bs_producer_wait(prod, &dv, 30000, &err) < 0) {
        fprintf(stderr, "bulkstate redrive: %s\n", err.msg);
        rc = 69;
    }
    printf("%s %d, not re-driven (cut) %d\n", dry ? "would re-drive" : "re-driven", n_sent, n_cut);
    bs_producer_free(prod, 5000);
    bs_consumer_close(cons);
    return rc ? rc : n_cut ? 1 : 0;
}
