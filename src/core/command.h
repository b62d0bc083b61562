/* command: validation of a bulk-set-state command given as JSON (the seed's request body plus
 * command_id; Avro commands are converted to the same JSON shape first), and the JSON form of
 * states and their details. Follows Prefect's request validation (filters-and-schema.md §1):
 * the first invalid field rejects the whole command with its path and Prefect's error type.
 * Pure: no I/O, no clock (the caller passes "now" for SCHEDULED defaults). */
#ifndef BS_COMMAND_H
#define BS_COMMAND_H

#include <jansson.h>

#include "arena.h"
#include "err.h"
#include "filter.h"
#include "model.h"

#define BS_MAX_COMMAND_ID 200
#define BS_BULK_LIMIT     50

/* Validates body into cmd. header_command_id (may be NULL) is used when the body has none.
 * now_us fills state_details.scheduled_time of a SCHEDULED state that has none (one value for
 * the whole command, as Prefect does). caps bounds the sizes it may ask for (NULL: the
 * defaults). Strings live in ar. */
int bs_command_from_json(const json_t *body, const char *header_command_id, int64_t now_us,
                         const bs_caps *caps, bs_arena *ar, bs_command *cmd, bs_err *err);

/* The body as the command's identity (its SHA-256 tells a redelivery from a reused id): nulls
 * dropped, force and limit made explicit, issued_at left out, keys sorted, compact JSON. In
 * ar. */
const char *bs_command_identity(bs_arena *ar, const json_t *body, const bs_command *cmd);

/* Best effort: the command_id of an otherwise invalid body, or NULL. */
const char *bs_command_id_peek(const json_t *body, bs_arena *ar);

/* Parses a state_details object. strict: reject wrong types (commands); lenient: ignore them
 * (rows written by others). Unknown keys are ignored in both modes, as Prefect does. */
int bs_details_from_json(const json_t *j, bool strict, const char *path, bs_arena *ar,
                         bs_details *out, bs_err *err);
/* All 18 keys, nulls included (new reference). */
json_t *bs_details_to_json(const bs_details *d);

/* Computes data_truthy / data_persisted of a JSON value (NULL = null). */
void bs_data_flags(const json_t *data, bool *truthy, bool *persisted);

/* Parses empirical_policy JSON (lenient; missing keys take FlowRunPolicy defaults). */
void bs_policy_from_json(const json_t *j, bs_arena *ar, bs_policy *out);
json_t *bs_policy_to_json(const bs_policy *p);

#endif
