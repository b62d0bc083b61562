/* Shared by the harnesses: what the worker produces for an input once it is decoded and
 * validated. A valid command: a result carrying the state it proposes (name, message, data and
 * details come from the input) for a made-up run, and its completion. A rejected one: the
 * error completion, whose error text quotes the input. Each is encoded in every output framing
 * and read back as a consumer reads it (reader: a codec with the CLI's limit); none may fail to
 * encode or to decode, and a result must read back as a result. The dead-letter copy's size plan
 * must fit the producer's records. */
#ifndef BS_FUZZ_REPLIES_H
#define BS_FUZZ_REPLIES_H

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "model.h"
#include "result.h"

static bs_codec *fuzz_reader;
static bs_codec *codec; /* the worker's: its input limit */
static bs_arena *ar;

static void fuzz_encode_back(bs_codec *cd, bs_schema which, json_t *j)
{
    static const bs_framing framings[] = {BS_FRAME_SINGLE_OBJECT, BS_FRAME_CONFLUENT,
                                          BS_FRAME_JSON};
    for (size_t f = 0; f < 3; f++) {
        unsigned char *buf = NULL;
        size_t len = 0;
        bs_err err = {0};
        if (bs_codec_encode(cd, which, j, framings[f], &buf, &len, &err) < 0) abort();
        json_t *back = NULL;
        bool is_result = false;
        if (bs_codec_decode_reply(fuzz_reader, buf, len, framings[f] == BS_FRAME_JSON, &back,
                                  &is_result, &err) < 0)
            abort();
        if (is_result != (which == BS_SCHEMA_RESULT)) abort();
        json_decref(back);
        free(buf);
    }
    json_decref(j);
}

/* The reader's codec, made once (freed at exit by fuzz_replies_free). */
static void fuzz_replies_init(void)
{
    bs_codec_conf conf = {.schema_dir = BS_SOURCE_DIR "/schemas",
                          .max_message_bytes = BS_CLI_MAX_MESSAGE_BYTES,
                          .confluent_ids = {7, 8, 9}};
    bs_err err = {0};
    if ((fuzz_reader = bs_codec_new(&conf, &err)) == NULL) abort();
}

static void fuzz_replies_free(void)
{
    bs_codec_free(fuzz_reader);
}

static void fuzz_cleanup(void)
{
    bs_codec_free(codec);
    fuzz_replies_free();
    bs_arena_free(ar);
}

/* The harnesses' set-up: the worker's codec (allocations capped as the worker caps them), the
 * reader's, an arena; freed at exit (the codecs' Avro values live for the whole run). */
static void fuzz_setup(size_t max_message)
{
    bs_codec_conf conf = {.schema_dir = BS_SOURCE_DIR "/schemas",
                          .max_message_bytes = max_message,
                          .confluent_ids = {7, 8, 9}};
    bs_err err = {0};
    bs_codec_cap_allocations(max_message * 4 + (1u << 20));
    if ((codec = bs_codec_new(&conf, &err)) == NULL) abort();
    fuzz_replies_init();
    ar = bs_arena_new();
    atexit(fuzz_cleanup);
}

static void fuzz_replies(bs_codec *cd, const bs_command *cmd, const char *command_id,
                         const bs_err *why, size_t msg_len)
{
    if (cmd != NULL) {
        bs_state st = {.type = cmd->state_type,
                       .name = cmd->state_name ? cmd->state_name : "Proposed",
                       .message = cmd->state_message,
                       .data = cmd->state_data,
                       .data_truthy = cmd->data_truthy,
                       .data_persisted = cmd->data_persisted,
                       .timestamp = 1700000000000000LL,
                       .details = cmd->details};
        bs_uuid_parse("0199f000-0000-7000-8000-000000000001", &st.id);
        const bs_result r = {.command_id = cmd->command_id,
                             .seq = 0,
                             .total = 1,
                             .flow_run_id = "0199f000-0000-7000-8000-000000000002",
                             .status = BS_ACCEPT,
                             .state = &st,
                             .reason = cmd->state_message};
        fuzz_encode_back(cd, BS_SCHEMA_RESULT, bs_result_to_json(&r));
    }
    const bs_completion c = {.command_id = command_id ? command_id : "fuzz",
                             .matched = cmd ? 1 : 0,
                             .counts = {cmd ? 1 : 0, 0, 0, 0},
                             .error_code = why ? "invalid_command" : NULL,
                             .err = why,
                             .completed_at_us = 1700000000000000LL};
    fuzz_encode_back(cd, BS_SCHEMA_COMPLETED, bs_completion_to_json(&c));
    /* the dead-letter copy: its error headers quote the error, and it must fit */
    const size_t max = 1000000, hdr = why ? strlen(why->msg) + strlen(why->field) + 512 : 512;
    const size_t keep = bs_dead_letter_keep(max, msg_len % 4096, hdr, msg_len);
    if (keep > msg_len || (keep > 0 && keep + msg_len % 4096 + hdr > max)) abort();
}

#endif
