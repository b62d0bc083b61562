/* libFuzzer harness: a JSON request body (the seed endpoint's body, as `bulkstate send` and
 * JSON-framed commands carry it) through parsing, validation (every filter field, the state,
 * its details, force, limit), the command's identity and the filter-to-SQL compiler, whose
 * statements must name exactly the parameters they carry; then the replies the worker would
 * produce for it, valid or rejected (replies.h), up to the real size limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "codec.h"
#include "command.h"
#include "filter_sql.h"
#include "replies.h"

#define MAX_MESSAGE 983040 /* worker.max_message_bytes, its default */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup(MAX_MESSAGE);
    return 0;
}

/* Every $n placeholder of sql names one of its parameters, and the highest is the last one
 * (the limit, or the ids of a recheck). */
static void check_params(const bs_sql *sql)
{
    unsigned long max = 0;
    for (const char *p = sql->text; (p = strchr(p, '$')) != NULL; p++) {
        char *end;
        unsigned long n = strtoul(p + 1, &end, 10);
        if (end == p + 1) continue;
        if (n == 0 || n > sql->nparams) abort();
        if (n > max) max = n;
    }
    if (max != sql->nparams) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_MESSAGE) return 0; /* the worker rejects it before parsing */
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (body != NULL) {
        bs_err err = {0};
        bs_command cmd;
        if (bs_command_from_json(body, NULL, 1700000000000000LL, NULL, ar, &cmd, &err) == 0) {
            bs_sql sql;
            bs_filter_select_sql(&cmd.filter, cmd.limit, ar, &sql);
            check_params(&sql);
            bs_filter_recheck_sql(&cmd.filter, "{}", ar, &sql);
            check_params(&sql);
            json_t *id = json_loads(bs_command_identity(ar, body, &cmd), 0, NULL);
            if (!json_is_object(id)) abort(); /* the identity is the body, normalised */
            json_decref(id);
            fuzz_replies(codec, &cmd, cmd.command_id, NULL, size);
        } else if (err.code == 0 || err.msg[0] == '\0') {
            abort(); /* a rejection names its problem */
        } else {
            fuzz_replies(codec, NULL, bs_command_id_peek(body, ar), &err, size);
        }
        json_decref(body);
    }
    bs_arena_reset(ar);
    return 0;
}
