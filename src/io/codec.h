/* codec: the wire formats. Input framing is sniffed (Avro single-object C3 01 + fingerprint,
 * Confluent 00 + schema id, or JSON when the content-type header says so); Avro is decoded
 * with avro-c into the same JSON shape the validator reads. Output records are encoded from
 * their JSON trees (result.c) in the configured framing. avro-c's allocations are capped
 * (1.11.1 allocates unbounded memory on crafted lengths). */
#ifndef BS_CODEC_H
#define BS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"

typedef enum {
    BS_SCHEMA_COMMAND = 0,
    BS_SCHEMA_RESULT,
    BS_SCHEMA_COMPLETED,
    BS_NSCHEMAS
} bs_schema;
typedef enum { BS_FRAME_SINGLE_OBJECT = 0, BS_FRAME_CONFLUENT, BS_FRAME_JSON } bs_framing;

typedef struct bs_codec bs_codec;

typedef struct bs_codec_conf {
    const char *schema_dir;             /* directory with the .avsc files */
    size_t max_message_bytes;           /* larger inputs are rejected before decoding */
    int32_t confluent_ids[BS_NSCHEMAS]; /* registry id of each schema; -1 = none */
    /* registry ids of the command schema's released versions: "ID:VERSION,..." (NULL or "":
     * none) */
    const char *confluent_command_versions;
} bs_codec_conf;

/* The released versions of each schema are kept as schema_dir/versions/<Name>/<N>.avsc
 * (1, 2, ...); the current one, schema_dir/<Name>.avsc, is the next number. A command written
 * with any of them decodes (by its single-object fingerprint, or its Confluent id through
 * confluent_command_versions), each with its own writer schema; fields a version lacks are
 * absent, which is what their defaults (null) mean to validation. */
#define BS_MAX_SCHEMA_VERSIONS 16

/* Loads and checks the schemas; NULL and err (fatal) on failure. */
bs_codec *bs_codec_new(const bs_codec_conf *conf, bs_err *err);
void bs_codec_free(bs_codec *cd); /* NULL is a no-op */

/* The input cap of the command-line tools, which read replies (not untrusted commands). */
#define BS_CLI_MAX_MESSAGE_BYTES (64u << 20)

/* Decodes one record of schema `which` from a framed message into a JSON tree in the schema's
 * shape (for commands: the request body's shape, state.data parsed back into JSON). json: the
 * message carries content-type application/json. *out is a new reference. Errors are
 * BS_EINVAL with err->type one of message_too_large, bad_framing, unknown_schema,
 * avro_decode, json_parse. */
int bs_codec_decode(bs_codec *cd, bs_schema which, const void *buf, size_t len, bool json,
                    json_t **out, bs_err *err);

/* Decodes a message of the reply topic: a result, or else a completion. *is_result tells
 * which. Single-object and Confluent framing identify the schema; a JSON reply is a result when
 * it has "seq". */
int bs_codec_decode_reply(bs_codec *cd, const void *buf, size_t len, bool json, json_t **out,
                          bool *is_result, bs_err *err);

/* Encodes j (schema-shaped) in the given framing; *buf is malloc'd (caller frees). A record
 * that does not fit its schema is BS_EENCODE (permanent), with type and field saying where. */
int bs_codec_encode(bs_codec *cd, bs_schema which, const json_t *j, bs_framing framing,
                    unsigned char **buf, size_t *len, bs_err *err);

/* Turns a request body (state.data any JSON) into the command schema's shape (state.data as
 * JSON text, force/limit explicit). New reference. */
json_t *bs_codec_body_to_command(const json_t *body);

const char *bs_framing_name(bs_framing f);
int bs_framing_parse(const char *s); /* -1 if unknown */

/* Caps every single avro-c allocation at max_bytes; call once at start-up. */
void bs_codec_cap_allocations(size_t max_bytes);

#endif
