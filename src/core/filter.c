/* filter: FlowRunFilter validation, key by key, with Prefect's rules: unknown keys are
 * rejected (extra_forbidden), operators are "and_"/"or_", UUIDs and timestamps are parsed and
 * normalised here so the SQL compiler never sees raw input. Pure: no I/O. */
#include "filter.h"

#include <stdio.h>
#include <string.h>

#include "model.h"
#include "timeutil.h"

enum {
    K_OPERATOR = 1 << 0,
    K_ANY = 1 << 1,
    K_NOT_ANY = 1 << 2,
    K_ALL = 1 << 3,
    K_LIKE = 1 << 4,
    K_IS_NULL = 1 << 5,
    K_BEFORE = 1 << 6,
    K_AFTER = 1 << 7,
    K_ID = 1 << 8,
    K_TYPE = 1 << 9,
};

enum { V_STR, V_UUID, V_STATE_TYPE };

typedef struct fdesc {
    const char *json;
    unsigned keys;
    int item; /* kind of the any_/not_any_/all_ items */
} fdesc;

static const fdesc FIELDS[BS_F_COUNT] = {
    [BS_F_ID] = {"id", K_ANY | K_NOT_ANY, V_UUID},
    [BS_F_NAME] = {"name", K_ANY | K_LIKE, V_STR},
    [BS_F_TAGS] = {"tags", K_OPERATOR | K_ALL | K_ANY | K_IS_NULL, V_STR},
    [BS_F_DEPLOYMENT_ID] = {"deployment_id", K_OPERATOR | K_ANY | K_IS_NULL, V_UUID},
    [BS_F_WORK_QUEUE_NAME] = {"work_queue_name", K_OPERATOR | K_ANY | K_IS_NULL, V_STR},
    [BS_F_STATE] = {"state", K_OPERATOR, V_STR}, /* children parsed separately */
    [BS_F_FLOW_VERSION] = {"flow_version", K_ANY, V_STR},
    [BS_F_START_TIME] = {"start_time", K_BEFORE | K_AFTER | K_IS_NULL, V_STR},
    [BS_F_END_TIME] = {"end_time", K_BEFORE | K_AFTER | K_IS_NULL, V_STR},
    [BS_F_EXPECTED_START_TIME] = {"expected_start_time", K_BEFORE | K_AFTER, V_STR},
    [BS_F_NEXT_SCHEDULED_START_TIME] = {"next_scheduled_start_time", K_BEFORE | K_AFTER, V_STR},
    [BS_F_PARENT_FLOW_RUN_ID] = {"parent_flow_run_id", K_OPERATOR | K_ANY, V_UUID},
    [BS_F_PARENT_TASK_RUN_ID] = {"parent_task_run_id", K_OPERATOR | K_ANY | K_IS_NULL, V_UUID},
    [BS_F_IDEMPOTENCY_KEY] = {"idempotency_key", K_ANY | K_NOT_ANY, V_STR},
    [BS_F_CREATED_BY] = {"created_by", K_OPERATOR | K_ID | K_TYPE | K_IS_NULL, V_STR},
};

static const fdesc STATE_TYPE = {"type", K_ANY | K_NOT_ANY, V_STATE_TYPE};
static const fdesc STATE_NAME = {"name", K_ANY | K_NOT_ANY, V_STR};

static const struct {
    const char *name;
    unsigned bit;
} KEYS[] = {
    {"operator", K_OPERATOR}, {"any_", K_ANY},     {"not_any_", K_NOT_ANY},
    {"all_", K_ALL},          {"like_", K_LIKE},   {"is_null_", K_IS_NULL},
    {"before_", K_BEFORE},    {"after_", K_AFTER}, {"id_", K_ID},
    {"type_", K_TYPE},
};

const bs_caps bs_caps_default = BS_CAPS_DEFAULT_INIT;

const char *bs_filter_field_name(bs_field f)
{
    return f < BS_F_COUNT ? FIELDS[f].json : "?";
}

static int parse_op(const json_t *v, const char *path, bs_op *out, bs_err *err)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s && strcmp(s, "and_") == 0)
        *out = BS_OP_AND;
    else if (s && strcmp(s, "or_") == 0)
        *out = BS_OP_OR;
    else
        return bs_err_input(err, "enum", path, "input should be 'and_' or 'or_'");
    return 0;
}

/* A string of a filter: no NUL, at most max bytes (the limit named by key). */
static int check_string(const json_t *v, const char *path, int max, const char *key, bs_err *err)
{
    if (strlen(json_string_value(v)) != json_string_length(v))
        return bs_err_input(err, "string_nul", path, "strings must not contain NUL characters");
    if (json_string_length(v) > (size_t)max)
        return bs_err_input(err, "string_too_long", path,
                            "string has %zu bytes, more than the limit of %d (limits.%s)",
                            json_string_length(v), max, key);
    return 0;
}

static int parse_item(const json_t *v, int kind, const char *path, const bs_caps *caps,
                      bs_arena *ar, const char **out, bs_err *err)
{
    if (kind == V_UUID) {
        bs_uuid u;
        if (json_is_string(v)) {
            if (!bs_uuid_parse(json_string_value(v), &u))
                return bs_err_input(err, "uuid_parsing", path, "input should be a valid UUID");
            *out = bs_arena_strdup(ar, u.s);
            return 0;
        }
        return bs_err_input(err, "uuid_type", path, "UUID input should be a string");
    }
    if (!json_is_string(v))
        return bs_err_input(err, "string_type", path, "input should be a valid string");
    if (check_string(v, path, caps->string_bytes, "max_string_bytes", err) < 0) return -1;
    if (kind == V_STATE_TYPE && bs_state_type_parse(json_string_value(v)) < 0)
        return bs_err_input(err, "enum", path,
                            "input should be 'SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED', "
                            "'FAILED', 'CANCELLED', 'CRASHED', 'PAUSED' or 'CANCELLING'");
    *out = bs_arena_strdup(ar, json_string_value(v));
    return 0;
}

static int parse_list(const json_t *v, int kind, const char *path, const bs_caps *caps,
                      bs_arena *ar, bs_list *out, bs_err *err)
{
    char ipath[sizeof err->field];
    if (json_is_null(v)) return 0;
    if (!json_is_array(v))
        return bs_err_input(err, "list_type", path, "input should be a valid list");
    if (json_array_size(v) > (size_t)caps->list_items)
        return bs_err_input(err, "too_long", path,
                            "list has %zu items, more than the limit of %d (limits.max_list_items)",
                            json_array_size(v), caps->list_items);
    out->set = true;
    out->n = json_array_size(v);
    out->v = bs_arena_alloc(ar, sizeof(char *) * (out->n ? out->n : 1));
    for (size_t i = 0; i < out->n; i++) {
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        if (parse_item(json_array_get(v, i), kind, ipath, caps, ar, &out->v[i], err) < 0) return -1;
    }
    return 0;
}

static int parse_bool(const json_t *v, const char *path, bs_optbool *out, bs_err *err)
{
    if (json_is_null(v)) return 0;
    if (!json_is_boolean(v))
        return bs_err_input(err, "bool_type", path, "input should be a valid boolean");
    out->set = true;
    out->v = json_is_true(v);
    return 0;
}

static int parse_ts(const json_t *v, const char *path, bs_optts *out, bs_err *err)
{
    if (json_is_null(v)) return 0;
    if (!json_is_string(v) || !bs_ts_parse(json_string_value(v), &out->v))
        return bs_err_input(err, "datetime_parsing", path,
                            "input should be a valid ISO-8601 datetime");
    out->set = true;
    return 0;
}

static int parse_sub(const json_t *j, const fdesc *d, const char *path, const bs_caps *caps,
                     bs_arena *ar, bs_subfilter *out, bs_err *err)
{
    const char *key;
    json_t *v;
    char kpath[sizeof err->field];
    memset(out, 0, sizeof *out);
    if (j == NULL || json_is_null(j)) return 0;
    if (!json_is_object(j))
        return bs_err_input(err, "model_type", path,
                            "input should be a valid dictionary or object");
    out->present = true;
    json_object_foreach((json_t *)j, key, v)
    {
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
            if (strcmp(key, KEYS[i].name) == 0) bit = KEYS[i].bit;
        snprintf(kpath, sizeof kpath, "%s.%s", path, key);
        if (d == &FIELDS[BS_F_STATE] && (strcmp(key, "type") == 0 || strcmp(key, "name") == 0))
            continue; /* the children, parsed by the caller */
        if (!(bit & d->keys))
            return bs_err_input(err, "extra_forbidden", kpath, "extra inputs are not permitted");
        int rc = 0;
        switch (bit) {
        case K_OPERATOR:
            rc = parse_op(v, kpath, &out->op, err);
            break;
        case K_ANY:
            rc = parse_list(v, d->item, kpath, caps, ar, &out->any, err);
            break;
        case K_NOT_ANY:
            rc = parse_list(v, d->item, kpath, caps, ar, &out->not_any, err);
            break;
        case K_ALL:
            rc = parse_list(v, d->item, kpath, caps, ar, &out->all, err);
            break;
        case K_ID:
            rc = parse_list(v, V_UUID, kpath, caps, ar, &out->id, err);
            break;
        case K_TYPE:
            rc = parse_list(v, V_STR, kpath, caps, ar, &out->type, err);
            break;
        case K_LIKE:
            if (json_is_null(v)) break;
            if (!json_is_string(v))
                return bs_err_input(err, "string_type", kpath, "input should be a valid string");
            if (check_string(v, kpath, caps->pattern_bytes, "max_pattern_bytes", err) < 0)
                return -1;
            out->like = bs_arena_strdup(ar, json_string_value(v));
            break;
        case K_IS_NULL:
            rc = parse_bool(v, kpath, &out->is_null, err);
            break;
        case K_BEFORE:
            rc = parse_ts(v, kpath, &out->before, err);
            break;
        case K_AFTER:
            rc = parse_ts(v, kpath, &out->after, err);
            break;
        }
        if (rc < 0) return -1;
    }
    return 0;
}

int bs_filter_from_json(const json_t *j, const char *path, const bs_caps *caps, bs_arena *ar,
                        bs_filter *out, bs_err *err)
{
    if (caps == NULL) caps = &bs_caps_default;
    const char *key;
    json_t *v;
    char kpath[sizeof err->field];
    memset(out, 0, sizeof *out);
    if (j == NULL || json_is_null(j)) return 0;
    if (!json_is_object(j))
        return bs_err_input(err, "model_type", path,
                            "input should be a valid dictionary or object");
    out->present = true;
    json_object_foreach((json_t *)j, key, v)
    {
        snprintf(kpath, sizeof kpath, "%s.%s", path, key);
        if (strcmp(key, "operator") == 0) {
            if (parse_op(v, kpath, &out->op, err) < 0) return -1;
            continue;
        }
        int f = -1;
        for (int i = 0; i < BS_F_COUNT; i++)
            if (strcmp(key, FIELDS[i].json) == 0) f = i;
        if (f < 0)
            return bs_err_input(err, "extra_forbidden", kpath, "extra inputs are not permitted");
        if (parse_sub(v, &FIELDS[f], kpath, caps, ar, &out->f[f], err) < 0) return -1;
        if (f == BS_F_STATE && out->f[f].present) {
            char cpath[sizeof err->field];
            snprintf(cpath, sizeof cpath, "%s.type", kpath);
            if (parse_sub(json_object_get(v, "type"), &STATE_TYPE, cpath, caps, ar,
                          &out->state_type, err) < 0)
                return -1;
            snprintf(cpath, sizeof cpath, "%s.name", kpath);
            if (parse_sub(json_object_get(v, "name"), &STATE_NAME, cpath, caps, ar,
                          &out->state_name, err) < 0)
                return -1;
        }
    }
    return 0;
}
