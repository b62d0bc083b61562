/* libFuzzer harness: a command message's bytes through the worker's decoder (framing sniffing,
 * single-object / Confluent Avro via avro-c with capped allocations), then, when it decodes,
 * through validation and the filter compiler, as the worker does, and the replies it would
 * produce, valid or rejected (replies.h). Never crashes, leaks or allocates without bound;
 * every failure is an error code. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bs_err err = {0};
    json_t *body = NULL;
    /* the first byte stands for the content-type header: 'J' JSON, anything else binary */
    if (size == 0) return 0;
    bool json = data[0] == 'J';
    if (bs_codec_decode(codec, BS_SCHEMA_COMMAND, data + 1, size - 1, json, &body, &err) == 0) {
        bs_command cmd;
        if (bs_command_from_json(body, NULL, 1700000000000000LL, NULL, ar, &cmd, &err) == 0) {
            bs_sql sql;
            bs_filter_select_sql(&cmd.filter, cmd.limit, ar, &sql);
            fuzz_replies(codec, &cmd, cmd.command_id, NULL, size);
        } else {
            fuzz_replies(codec, NULL, bs_command_id_peek(body, ar), &err, size);
        }
        json_decref(body);
    } else if (err.code == 0) {
        abort(); /* a failure must say why */
    } else {
        fuzz_replies(codec, NULL, NULL, &err, size); /* bad framing: the error completion */
    }
    bs_arena_reset(ar);
    return 0;
}
