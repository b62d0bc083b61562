/* filter: Prefect's FlowRunFilter as a validated tree, parsed from JSON (the seed's body, or
 * an Avro command converted to the same shape). Pure: no I/O. Every sub-filter has the same
 * shape; which keys it accepts is decided by a descriptor table in filter.c. */
#ifndef BS_FILTER_H
#define BS_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "arena.h"
#include "err.h"

typedef enum { BS_OP_AND = 0, BS_OP_OR } bs_op;

/* Sizes one command may ask for (config [limits]); larger ones are rejected as invalid
 * before they reach PostgreSQL. Prefect itself caps none of them: the defaults sit far above
 * real use (run names, tags and keys of tens of characters, id lists of thousands). */
typedef struct bs_caps {
    int list_items;    /* items of one any_/not_any_/all_/id_/type_ list */
    int string_bytes;  /* one string of a filter, and state.name */
    int pattern_bytes; /* one like_ pattern (matched against every candidate row) */
    int max_runs;      /* a large command's max_runs */
} bs_caps;

#define BS_CAPS_DEFAULT_INIT                                                                       \
    {                                                                                              \
        10000, 4096, 256, 1000000                                                                  \
    }
extern const bs_caps bs_caps_default;

typedef struct bs_list {
    bool set; /* false: absent or null */
    size_t n;
    const char **v; /* normalised values (UUIDs lower-case hyphenated) */
} bs_list;

typedef struct bs_optbool {
    bool set, v;
} bs_optbool;

typedef struct bs_optts {
    bool set;
    int64_t v; /* microseconds since the epoch */
} bs_optts;

typedef struct bs_subfilter {
    bool present; /* the key was given and not null */
    bs_op op;
    bs_list any, not_any, all, id, type;
    const char *like; /* NULL when absent */
    bs_optbool is_null;
    bs_optts before, after;
} bs_subfilter;

/* Top-level fields in Prefect's order (the order predicates are emitted in). */
typedef enum {
    BS_F_ID = 0,
    BS_F_NAME,
    BS_F_TAGS,
    BS_F_DEPLOYMENT_ID,
    BS_F_WORK_QUEUE_NAME,
    BS_F_STATE,
    BS_F_FLOW_VERSION,
    BS_F_START_TIME,
    BS_F_END_TIME,
    BS_F_EXPECTED_START_TIME,
    BS_F_NEXT_SCHEDULED_START_TIME,
    BS_F_PARENT_FLOW_RUN_ID,
    BS_F_PARENT_TASK_RUN_ID,
    BS_F_IDEMPOTENCY_KEY,
    BS_F_CREATED_BY,
    BS_F_COUNT
} bs_field;

typedef struct bs_filter {
    bool present; /* false: flow_runs absent or null, which matches every run */
    bs_op op;
    bs_subfilter f[BS_F_COUNT];
    bs_subfilter state_type, state_name; /* the two children of f[BS_F_STATE] */
} bs_filter;

/* JSON key of a top-level field ("id", "name", ...). */
const char *bs_filter_field_name(bs_field f);

/* Validates j (may be NULL or JSON null: no filter) as a FlowRunFilter and fills out; strings
 * are copied into ar. path names j in error messages ("flow_runs"). Errors name the field
 * (e.g. "flow_runs.id.any_[0]") and carry Prefect's error type. caps NULL: the defaults. */
int bs_filter_from_json(const json_t *j, const char *path, const bs_caps *caps, bs_arena *ar,
                        bs_filter *out, bs_err *err);

#endif
