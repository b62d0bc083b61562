/* status: reads bulkstate.command and bulkstate.command_result (the replies exactly as they
 * were published) and prints them, decoded. Reads only. */
#include "status.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "print.h"
#include "codec.h"
#include "store.h"

int bs_status_main(const bs_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int as_json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        if (c == 'j') {
            as_json = 1;
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: bulkstate status [--json] COMMAND_ID\n"
                    "Shows what the database recorded for a command: its outcome, where it came\n"
                    "from, and every result as it was published.\n"
                    "exit status: 0 found, 1 no such command, 69 database unavailable\n");
            return c == 'h' ? 0 : 64;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: bulkstate status [--json] COMMAND_ID\n");
        return 64;
    }
    const char *id = argv[optind];
    bs_err err = {0};
    const bs_codec_conf cc = bs_config_codec_conf(cfg, BS_CLI_MAX_MESSAGE_BYTES);
    bs_codec *cd = bs_codec_new(&cc, &err);
    if (cd == NULL) {
        fprintf(stderr, "bulkstate status: %s\n", err.msg);
        return 78;
    }
    const bs_store_conf sc = bs_config_store_conf(cfg);
    bs_store *st = bs_store_new(&sc, &err);
    if (st == NULL) {
        fprintf(stderr, "bulkstate status: %s\n", err.msg);
        bs_codec_free(cd);
        return 69;
    }
    bs_arena *ar = bs_arena_new();
    const char *record = NULL;
    bs_replies r = {0};
    int rc = 0;
    if (bs_store_command_json(st, ar, id, &record, &err) < 0 ||
        (record && bs_store_load_replies(st, ar, id, 0, false, &r, &err) < 0)) {
        fprintf(stderr, "bulkstate status: %s\n", err.msg);
        rc = 69;
    } else if (record == NULL) {
        fprintf(stderr, "bulkstate status: no command \"%s\" recorded\n", id);
        rc = 1;
    } else {
        json_t *rec = json_loads(record, 0, NULL);
        if (as_json) {
            printf("%s\n", record);
        } else {
            printf("command %s: %s, matched=%lld accepted=%lld rejected=%lld waited=%lld "
                   "aborted=%lld\n  from %s [%lld] offset %lld, created %s, completed %s\n",
                   id, json_string_value(json_object_get(rec, "status")),
                   (long long)json_integer_value(json_object_get(rec, "matched")),
                   (long long)json_integer_value(json_object_get(rec, "accepted")),
                   (long long)json_integer_value(json_object_get(rec, "rejected")),
                   (long long)json_integer_value(json_object_get(rec, "waited")),
                   (long long)json_integer_value(json_object_get(rec, "aborted")),
                   json_string_value(json_object_get(rec, "source_topic")),
                   (long long)json_integer_value(json_object_get(rec, "source_partition")),
                   (long long)json_integer_value(json_object_get(rec, "source_offset")),
                   json_string_value(json_object_get(rec, "created")),
                   json_is_string(json_object_get(rec, "completed"))
                       ? json_string_value(json_object_get(rec, "completed"))
                       : "-");
        }
        for (size_t i = 0; i < r.n; i++) {
            json_t *res = NULL;
            bs_err derr = {0};
            const bool is_json = r.lens[i] > 0 && r.replies[i][0] == '{';
            if (bs_codec_decode(cd, BS_SCHEMA_RESULT, r.replies[i], r.lens[i], is_json, &res,
                                &derr) < 0) {
                fprintf(stderr, "bulkstate status: result %zu of \"%s\": %s\n", i, id, derr.msg);
                rc = 1;
                continue;
            }
            if (as_json) {
                char *t = json_dumps(res, JSON_COMPACT);
                printf("%s\n", t);
                free(t);
            } else {
                bs_cli_print_result(res);
            }
            json_decref(res);
        }
        json_decref(rec);
    }
    bs_arena_free(ar);
    bs_store_free(st);
    bs_codec_free(cd);
    return rc;
}
