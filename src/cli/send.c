/* send: `bulkstate send`, the client side: produce a command (Avro single-object by default,
 * or the seed's JSON body with a content-type header, or raw bytes for testing), then wait for
 * its results and completion on the reply topic and print them. With --batch, a file of
 * commands (one JSON body per line, a command log) is sent one command at a time, each after
 * the previous one completed. */
#include "send.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "print.h"
#include "codec.h"
#include "file.h"
#include "ids.h"
#include "kafka.h"
#include "log.h"

typedef struct sender {
    const bs_config *cfg;
    const char *format; /* avro, json or raw */
    int timeout_s;
    bool as_json, no_wait;
    bs_codec *cd;
    bs_producer *prod;
    bs_consumer *tail; /* assigned to the end of tail_topic before anything is produced */
    char *tail_topic;
} sender;

typedef struct reply {
    int seq;
    json_t *j;
} reply;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bulkstate send [options]\n"
            "Produce bulk-set-state commands and print their results and completions.\n\n"
            "  -f, --file FILE        one command body: the seed's JSON request body, optionally\n"
            "                         with command_id and reply_topic ('-' = stdin)\n"
            "  -b, --batch FILE       one command body per line; each is sent after the previous\n"
            "                         one completed ('-' = stdin)\n"
            "  -i, --command-id ID    command id (default: the body's, else a new UUID)\n"
            "  -F, --format FMT       avro (single-object, default), json (content-type\n"
            "                         header) or raw (the file's bytes as they are)\n"
            "  -t, --timeout SECONDS  how long to wait for each completion (default 30)\n"
            "  -j, --json             print replies as JSON lines\n"
            "  -n, --no-wait          produce and exit\n"
            "  -r, --follow ID        send nothing: stream the replies of command ID from the\n"
            "                         start of the reply topic as they come, until its completion\n"
            "  -h, --help\n\n"
            "exit status: 0 completed without error, 1 a completion carries an error,\n"
            "2 no completion before the timeout, 64 usage, 69 Kafka unavailable, 78 config\n");
}

static int by_seq(const void *a, const void *b)
{
    return ((const reply *)a)->seq - ((const reply *)b)->seq;
}

/* Points the tail consumer at the end of topic (the worker answers a command whose own reply
 * topic is missing on the default one). */
static int tail_at(sender *s, const char *topic)
{
    bs_err err = {0};
    if (s->tail != NULL && strcmp(s->tail_topic, topic) == 0) return 0;
    bs_consumer_close(s->tail);
    free(s->tail_topic);
    s->tail_topic = NULL;
    const bs_kafka_props kp = bs_config_kafka_props(s->cfg);
    s->tail = bs_consumer_new_tail(&kp, topic, false, &err);
    if (s->tail == NULL && strcmp(topic, s->cfg->reply_topic) != 0) {
        fprintf(stderr, "bulkstate send: %s; waiting on \"%s\" instead\n", err.msg,
                s->cfg->reply_topic);
        topic = s->cfg->reply_topic;
        s->tail = bs_consumer_new_tail(&kp, topic, false, &err);
    }
    if (s->tail == NULL) {
        fprintf(stderr, "bulkstate send: %s\n", err.msg);
        return -1;
    }
    s->tail_topic = bs_xstrdup(topic);
    return 0;
}

/* Waits for the completion of command id and prints it with its results (sorted by seq).
 * Returns 0, 1 (error completion) or 2 (timeout). */
static int await(sender *s, const char *id)
{
    size_t nrep = 0, cap = 64;
    reply *reps = bs_xmalloc(sizeof *reps * cap);
    json_t *completion = NULL;
    int64_t deadline = bs_mono_ms() + (int64_t)s->timeout_s * 1000;
    int status;
    while (bs_mono_ms() < deadline) {
        bs_err err = {0};
        bs_msg *m = bs_consumer_poll(s->tail, 100, &err);
        if (m == NULL) continue;
        json_t *j = NULL;
        bool is_result = false;
        bs_codec_decode_reply(s->cd, m->payload, m->len, m->json, &j, &is_result, &err);
        bs_msg_free(m);
        const char *cid = j ? json_string_value(json_object_get(j, "command_id")) : NULL;
        if (cid == NULL || strcmp(cid, id) != 0) {
            json_decref(j);
            continue;
        }
        if (is_result) {
            if (nrep == cap) reps = bs_xrealloc(reps, sizeof *reps * (cap *= 2));
            reps[nrep].seq = (int)json_integer_value(json_object_get(j, "seq"));
            reps[nrep++].j = j;
        } else {
            json_decref(completion);
            completion = j;
        }
        if (completion != NULL &&
            (json_is_object(json_object_get(completion, "error")) ||
             (long long)nrep >= json_integer_value(json_object_get(completion, "matched"))))
            break;
    }
    qsort(reps, nrep, sizeof *reps, by_seq);
    if (completion == NULL) {
        fprintf(stderr, "bulkstate send: no completion for command %s within %d s\n", id,
                s->timeout_s);
        status = 2;
    } else if (s->as_json) {
        for (size_t i = 0; i < nrep; i++) {
            char *t = json_dumps(reps[i].j, JSON_COMPACT);
            printf("%s\n", t);
            free(t);
        }
        char *t = json_dumps(completion, JSON_COMPACT);
        printf("%s\n", t);
        free(t);
        status = json_is_object(json_object_get(completion, "error")) ? 1 : 0;
    } else {
        status = bs_cli_print_completion(completion, id);
        for (size_t i = 0; i < nrep; i++)
            bs_cli_print_result(reps[i].j);
    }
    fflush(stdout);
    for (size_t i = 0; i < nrep; i++)
        json_decref(reps[i].j);
    free(reps);
    json_decref(completion);
    return status;
}

/* --follow: the replies of a command already sent, printed as they arrive (results, then the
 * completion), read from the start of the reply topic. Returns 0, 1 (error completion),
 * 2 (timeout) or 69/78. */
static int follow(sender *s, const char *id)
{
    bs_err err = {0};
    const bs_codec_conf cc = bs_config_codec_conf(s->cfg, BS_CLI_MAX_MESSAGE_BYTES);
    if ((s->cd = bs_codec_new(&cc, &err)) == NULL) {
        fprintf(stderr, "bulkstate send: %s\n", err.msg);
        return 78;
    }
    const bs_kafka_props kp = bs_config_kafka_props(s->cfg);
    bs_consumer *tail = bs_consumer_new_tail(&kp, s->cfg->reply_topic, true, &err);
    if (tail == NULL) {
        fprintf(stderr, "bulkstate send: %s\n", err.msg);
        bs_codec_free(s->cd);
        return 69;
    }
    int64_t deadline = bs_mono_ms() + (int64_t)s->timeout_s * 1000;
    long long results = 0, matched = -1;
    int status = 2;
    bool done = false;
    while (!done && bs_mono_ms() < deadline) {
        bs_msg *m = bs_consumer_poll(tail, 100, &err);
        if (m == NULL) continue;
        json_t *j = NULL;
        bool is_result = false;
        bs_codec_decode_reply(s->cd, m->payload, m->len, m->json, &j, &is_result, &err);
        bs_msg_free(m);
        const char *cid = j ? json_string_value(json_object_get(j, "command_id")) : NULL;
        if (cid == NULL || strcmp(cid, id) != 0) {
            json_decref(j);
            continue;
        }
        if (s->as_json) {
            char *t = json_dumps(j, JSON_COMPACT);
            printf("%s\n", t);
            free(t);
        } else if (is_result) {
            bs_cli_print_result(j);
        } else {
            bs_cli_print_completion(j, id);
        }
        fflush(stdout);
        if (is_result) {
            results++;
        } else {
            matched = json_integer_value(json_object_get(j, "matched"));
            status = json_is_object(json_object_get(j, "error")) ? 1 : 0;
            done = status == 1 || results >= matched;
        }
        if (matched >= 0 && results >= matched) done = true;
        json_decref(j);
    }
    if (!done)
        fprintf(stderr, "bulkstate send: no completion for command %s within %d s\n", id,
                s->timeout_s);
    bs_consumer_close(tail);
    bs_codec_free(s->cd);
    s->cd = NULL;
    return done ? status : 2;
}

/* Sends one command given as text (a JSON body, or raw bytes) and waits for it. */
static int send_one(sender *s, const char *text, size_t len, const char *id_opt)
{
    bs_err err = {0};
    unsigned char *payload = (unsigned char *)text;
    size_t plen = len;
    const char *reply_topic = s->cfg->reply_topic;
    char *id = id_opt ? bs_xstrdup(id_opt) : NULL;
    json_t *body = NULL;
    int status = 0;

    if (strcmp(s->format, "raw") != 0) {
        json_error_t jerr;
        body = json_loadb(text, len, 0, &jerr);
        if (!json_is_object(body)) {
            fprintf(stderr, "bulkstate send: not a JSON object: %s\n", jerr.text);
            json_decref(body);
            free(id);
            return 64;
        }
        if (id != NULL) json_object_set_new(body, "command_id", json_string(id));
        if (!json_is_string(json_object_get(body, "command_id"))) {
            bs_uuid fresh;
            bs_uuid4(&fresh);
            json_object_set_new(body, "command_id", json_string(fresh.s));
        }
        free(id);
        id = bs_xstrdup(json_string_value(json_object_get(body, "command_id")));
        if (json_is_string(json_object_get(body, "reply_topic")))
            reply_topic = json_string_value(json_object_get(body, "reply_topic"));
        if (strcmp(s->format, "avro") == 0) {
            json_t *cmd = bs_codec_body_to_command(body);
            if (!json_is_integer(json_object_get(cmd, "issued_at")))
                json_object_set_new(cmd, "issued_at", json_integer(bs_now_us() / 1000));
            int rc = bs_codec_encode(s->cd, BS_SCHEMA_COMMAND, cmd, BS_FRAME_SINGLE_OBJECT,
                                     &payload, &plen, &err);
            json_decref(cmd);
            if (rc < 0) {
                fprintf(stderr,
                        "bulkstate send: cannot encode the command as Avro: %s (use --format "
                        "json to let the worker validate it)\n",
                        err.msg);
                status = 64;
                goto out;
            }
        } else {
            char *t = json_dumps(body, JSON_COMPACT);
            payload = (unsigned char *)t;
            plen = strlen(t);
        }
    }
    if (!s->no_wait && id != NULL && tail_at(s, reply_topic) < 0) {
        status = 69;
        goto out;
    }
    bs_delivery dv = {0};
    bs_header hdrs[2];
    size_t nh = 0;
    if (strcmp(s->format, "json") == 0)
        hdrs[nh++] = (bs_header){"content-type", "application/json", 16};
    if (id != NULL) hdrs[nh++] = (bs_header){"command-id", id, strlen(id)};
    if (bs_producer_send(s->prod, s->cfg->command_topic, id, id ? strlen(id) : 0, payload, plen,
                         hdrs, nh, &dv, &err) < 0 ||
        bs_producer_wait(s->prod, &dv, 30000, &err) < 0) {
        fprintf(stderr, "bulkstate send: %s\n", err.msg);
        status = 69;
        goto out;
    }
    if (!s->as_json)
        printf("sent command %s to %s (%s, %zu bytes)\n", id ? id : "(none)", s->cfg->command_topic,
               s->format, plen);
    if (!s->no_wait && id != NULL) status = await(s, id);
out:
    if (payload != (unsigned char *)text) free(payload);
    json_decref(body);
    free(id);
    return status;
}

int bs_send_main(const bs_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"command-id", required_argument, NULL, 'i'},
                                         {"format", required_argument, NULL, 'F'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"no-wait", no_argument, NULL, 'n'},
                                         {"follow", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    sender s = {.cfg = cfg, .format = "avro", .timeout_s = 30};
    const char *file = NULL, *batch = NULL, *id = NULL, *follow_id = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:b:i:F:t:jnr:h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            follow_id = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'b':
            batch = optarg;
            break;
        case 'i':
            id = optarg;
            break;
        case 'F':
            s.format = optarg;
            break;
        case 't':
            s.timeout_s = atoi(optarg);
            break;
        case 'j':
            s.as_json = true;
            break;
        case 'n':
            s.no_wait = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 64;
        }
    }
    if (follow_id != NULL) {
        if (file || batch || id) {
            usage(stderr);
            return 64;
        }
        return follow(&s, follow_id);
    }
    if ((file == NULL) == (batch == NULL) || (batch && (id || strcmp(s.format, "raw") == 0)) ||
        (strcmp(s.format, "avro") && strcmp(s.format, "json") && strcmp(s.format, "raw"))) {
        usage(stderr);
        return 64;
    }
    bs_err err = {0};
    int status = 0;
    const bs_codec_conf cc = bs_config_codec_conf(cfg, BS_CLI_MAX_MESSAGE_BYTES);
    const bs_kafka_props kp = bs_config_kafka_props(cfg);
    if ((s.cd = bs_codec_new(&cc, &err)) == NULL || (s.prod = bs_producer_new(&kp, &err)) == NULL) {
        fprintf(stderr, "bulkstate send: %s\n", err.msg);
        status = 78;
    } else if (file != NULL) {
        size_t len;
        char *text = bs_read_file(file, &len, &err);
        if (text == NULL) {
            fprintf(stderr, "bulkstate send: %s\n", err.msg);
            status = 64;
        } else {
            status = send_one(&s, text, len, id);
        }
        free(text);
    } else {
        /* a command log: one body per line, in order, read as it comes (a pipe works); stop at
         * the first usage or Kafka failure, go on after error completions (they are answers) */
        FILE *in = strcmp(batch, "-") == 0 ? stdin : fopen(batch, "r");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        if (in == NULL) {
            fprintf(stderr, "bulkstate send: could not read \"%s\": %s\n", batch, strerror(errno));
            status = 64;
        }
        while (in != NULL && (n = getline(&line, &cap, in)) > 0) {
            if (line[strspn(line, " \t\r\n")] == '\0') continue;
            int rc = send_one(&s, line, (size_t)n, NULL);
            if (rc > status) status = rc;
            if (rc >= 64) break;
        }
        free(line);
        if (in != NULL && in != stdin) fclose(in);
    }
    bs_consumer_close(s.tail);
    free(s.tail_topic);
    bs_producer_free(s.prod, 5000);
    bs_codec_free(s.cd);
    return status;
}
