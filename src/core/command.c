/* command: JSON → bs_command with Prefect's validation rules, and the JSON rendering of
 * states, details and run policies. Pure: jansson only, no I/O. */
#include "command.h"

#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "filter.h"
#include "timeutil.h"

enum { D_UUID, D_TS, D_STR, D_TRIBOOL, D_BOOL, D_STRMAP };

static const struct dkey {
    const char *name;
    int kind;
    size_t off;
} DKEYS[] = {
    {"flow_run_id", D_UUID, offsetof(bs_details, flow_run_id)},
    {"task_run_id", D_UUID, offsetof(bs_details, task_run_id)},
    {"child_flow_run_id", D_UUID, offsetof(bs_details, child_flow_run_id)},
    {"scheduled_time", D_TS, offsetof(bs_details, scheduled_time)},
    {"cache_key", D_STR, offsetof(bs_details, cache_key)},
    {"cache_expiration", D_TS, offsetof(bs_details, cache_expiration)},
    {"deferred", D_TRIBOOL, offsetof(bs_details, deferred)},
    {"untrackable_result", D_BOOL, offsetof(bs_details, untrackable_result)},
    {"pause_timeout", D_TS, offsetof(bs_details, pause_timeout)},
    {"pause_reschedule", D_BOOL, offsetof(bs_details, pause_reschedule)},
    {"pause_key", D_STR, offsetof(bs_details, pause_key)},
    {"run_input_keyset", D_STRMAP, offsetof(bs_details, run_input_keyset)},
    {"refresh_cache", D_TRIBOOL, offsetof(bs_details, refresh_cache)},
    {"retriable", D_TRIBOOL, offsetof(bs_details, retriable)},
    {"transition_id", D_UUID, offsetof(bs_details, transition_id)},
    {"task_parameters_id", D_UUID, offsetof(bs_details, task_parameters_id)},
    {"traceparent", D_STR, offsetof(bs_details, traceparent)},
    {"deployment_concurrency_lease_id", D_UUID,
     offsetof(bs_details, deployment_concurrency_lease_id)},
};

int bs_details_from_json(const json_t *j, bool strict, const char *path, bs_arena *ar,
                         bs_details *out, bs_err *err)
{
    char kpath[sizeof err->field];
    bs_details_init(out);
    if (j == NULL || json_is_null(j)) return 0;
    if (!json_is_object(j))
        return strict ? bs_err_input(err, "model_type", path,
                                     "input should be a valid dictionary or object")
                      : 0;
    for (size_t i = 0; i < sizeof DKEYS / sizeof DKEYS[0]; i++) {
        const json_t *v = json_object_get(j, DKEYS[i].name);
        char *field = (char *)out + DKEYS[i].off;
        const char *bad = NULL, *badmsg = NULL;
        snprintf(kpath, sizeof kpath, "%s.%s", path, DKEYS[i].name);
        if (v == NULL) continue;
        if (json_is_null(v)) {
            if (DKEYS[i].kind == D_BOOL) {
                bad = "bool_type";
                badmsg = "input should be a valid boolean";
            } else if (DKEYS[i].kind == D_TRIBOOL) {
                *(int8_t *)field = -1;
            }
        } else {
            switch (DKEYS[i].kind) {
            case D_UUID:
                if (!json_is_string(v) || !bs_uuid_parse(json_string_value(v), (bs_uuid *)field)) {
                    bad = "uuid_parsing";
                    badmsg = "input should be a valid UUID";
                }
                break;
            case D_TS:
                if (!json_is_string(v) || !bs_ts_parse(json_string_value(v), (int64_t *)field)) {
                    bad = "datetime_parsing";
                    badmsg = "input should be a valid ISO-8601 datetime";
                }
                break;
            case D_STR:
                if (json_is_string(v))
                    *(const char **)field = bs_arena_strdup(ar, json_string_value(v));
                else {
                    bad = "string_type";
                    badmsg = "input should be a valid string";
                }
                break;
            case D_TRIBOOL:
            case D_BOOL:
                if (!json_is_boolean(v)) {
                    bad = "bool_type";
                    badmsg = "input should be a valid boolean";
                } else if (DKEYS[i].kind == D_BOOL)
                    *(bool *)field = json_is_true(v);
                else
                    *(int8_t *)field = json_is_true(v) ? 1 : 0;
                break;
            case D_STRMAP: {
                const char *k;
                json_t *mv;
                if (!json_is_object(v)) {
                    bad = "dict_type";
                    badmsg = "input should be a valid dictionary";
                    break;
                }
                json_object_foreach((json_t *)v, k, mv)
                {
                    if (!json_is_string(mv)) {
                        bad = "string_type";
                        badmsg = "input should be a valid string";
                    }
                }
                if (bad == NULL) {
                    char *txt = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
                    *(const char **)field = bs_arena_strdup(ar, txt);
                    free(txt);
                }
                break;
            }
            }
        }
        if (bad && strict) return bs_err_input(err, bad, kpath, "%s", badmsg);
    }
    return 0;
}

static json_t *uuid_json(const bs_uuid *u)
{
    return bs_uuid_null(u) ? json_null() : json_string(u->s);
}

static json_t *ts_json(int64_t ts)
{
    char buf[48];
    return ts == BS_TS_NULL ? json_null() : json_string(bs_ts_format(ts, buf, sizeof buf));
}

static json_t *str_json(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *bs_details_to_json(const bs_details *d)
{
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof DKEYS / sizeof DKEYS[0]; i++) {
        const char *field = (const char *)d + DKEYS[i].off;
        json_t *v = NULL;
        switch (DKEYS[i].kind) {
        case D_UUID:
            v = uuid_json((const bs_uuid *)field);
            break;
        case D_TS:
            v = ts_json(*(const int64_t *)field);
            break;
        case D_STR:
            v = str_json(*(const char *const *)field);
            break;
        case D_TRIBOOL: {
            int8_t b = *(const int8_t *)field;
            v = b < 0 ? json_null() : json_boolean(b);
            break;
        }
        case D_BOOL:
            v = json_boolean(*(const bool *)field);
            break;
        case D_STRMAP: {
            const char *txt = *(const char *const *)field;
            v = txt ? json_loads(txt, 0, NULL) : NULL;
            if (v == NULL) v = json_null();
            break;
        }
        }
        json_object_set_new(o, DKEYS[i].name, v);
    }
    return o;
}

void bs_data_flags(const json_t *data, bool *truthy, bool *persisted)
{
    *truthy = false;
    *persisted = false;
    if (data == NULL) return;
    switch (json_typeof(data)) {
    case JSON_OBJECT: {
        const json_t *t = json_object_get(data, "type");
        *truthy = json_object_size(data) > 0;
        *persisted = !(json_is_string(t) && strcmp(json_string_value(t), "unpersisted") == 0);
        break;
    }
    case JSON_ARRAY:
        *truthy = json_array_size(data) > 0;
        break;
    case JSON_STRING:
        *truthy = json_string_length(data) > 0;
        break;
    case JSON_INTEGER:
        *truthy = json_integer_value(data) != 0;
        break;
    case JSON_REAL:
        *truthy = json_real_value(data) != 0.0;
        break;
    case JSON_TRUE:
        *truthy = true;
        break;
    default:
        break;
    }
}

/* Pydantic's lax int: ints, integral floats and decimal strings. */
static int lax_int(const json_t *v, const char *path, int64_t *out, bs_err *err)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || !isfinite(d))
            return bs_err_input(err, "int_from_float", path,
                                "input should be a valid integer, got a number with a "
                                "fractional part");
        /* outside int64 the conversion is undefined */
        if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return bs_err_input(err, "int_parsing_size", path,
                                "input should be an integer within the 64-bit range");
        *out = (int64_t)d;
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        while (isspace((unsigned char)*s))
            s++;
        long long n = strtoll(s, &end, 10);
        while (isspace((unsigned char)*end))
            end++;
        if (*s && *end == '\0') {
            *out = n;
            return 0;
        }
        return bs_err_input(err, "int_parsing", path,
                            "input should be a valid integer, unable to parse string as an "
                            "integer");
    }
    return bs_err_input(err, "int_type", path, "input should be a valid integer");
}

/* Pydantic's lax bool. */
static int lax_bool(const json_t *v, const char *path, bool *out, bs_err *err)
{
    static const char *const yes[] = {"1", "on", "t", "true", "y", "yes"};
    static const char *const no[] = {"0", "off", "f", "false", "n", "no"};
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = json_integer_value(v) == 1;
        return 0;
    }
    if (json_is_string(v)) {
        for (size_t i = 0; i < 6; i++) {
            if (strcasecmp(json_string_value(v), yes[i]) == 0) {
                *out = true;
                return 0;
            }
            if (strcasecmp(json_string_value(v), no[i]) == 0) {
                *out = false;
                return 0;
            }
        }
    }
    return bs_err_input(err, "bool_parsing", path, "input should be a valid boolean");
}

static bool topic_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 249 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-') return false;
    return true;
}

/* nulls dropped, recursively */
static json_t *without_nulls(const json_t *j)
{
    if (json_is_object(j)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (!json_is_null(v)) json_object_set_new(o, k, without_nulls(v));
        }
        return o;
    }
    if (json_is_array(j)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(j); i++)
            json_array_append_new(a, without_nulls(json_array_get(j, i)));
        return a;
    }
    return json_deep_copy(j);
}

const char *bs_command_identity(bs_arena *ar, const json_t *body, const bs_command *cmd)
{
    json_t *n = without_nulls(body);
    json_object_del(n, "issued_at");
    json_object_set_new(n, "force", json_boolean(cmd->force));
    json_object_set_new(n, "limit", json_integer(cmd->limit));
    char *s = json_dumps(n, JSON_COMPACT | JSON_SORT_KEYS);
    const char *out = bs_arena_strdup(ar, s);
    free(s);
    json_decref(n);
    return out;
}

const char *bs_command_id_peek(const json_t *body, bs_arena *ar)
{
    const json_t *v = json_is_object(body) ? json_object_get(body, "command_id") : NULL;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > BS_MAX_COMMAND_ID)
        return NULL;
    return bs_arena_strdup(ar, json_string_value(v));
}

static int parse_state(const json_t *st, int64_t now_us, const bs_caps *caps, bs_arena *ar,
                       bs_command *cmd, bs_err *err)
{
    const char *key;
    json_t *v;
    if (st == NULL || json_is_null(st))
        return bs_err_input(err, "missing", "state", "field required");
    if (!json_is_object(st))
        return bs_err_input(err, "model_type", "state",
                            "input should be a valid dictionary or object");
    json_object_foreach((json_t *)st, key, v)
    {
        if (strcmp(key, "type") && strcmp(key, "name") && strcmp(key, "message") &&
            strcmp(key, "data") && strcmp(key, "state_details")) {
            char path[sizeof err->field];
            snprintf(path, sizeof path, "state.%s", key);
            return bs_err_input(err, "extra_forbidden", path, "extra inputs are not permitted");
        }
    }
    v = json_object_get(st, "type");
    if (v == NULL || json_is_null(v))
        return bs_err_input(err, "missing", "state.type", "field required");
    cmd->state_type = json_is_string(v) ? bs_state_type_parse(json_string_value(v)) : -1;
    if (cmd->state_type < 0)
        return bs_err_input(err, "enum", "state.type",
                            "input should be 'SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED', "
                            "'FAILED', 'CANCELLED', 'CRASHED', 'PAUSED' or 'CANCELLING'");
    static const char *const strs[] = {"name", "message"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(st, strs[i]);
        if (v == NULL || json_is_null(v)) continue;
        if (!json_is_string(v)) {
            char path[32];
            snprintf(path, sizeof path, "state.%s", strs[i]);
            return bs_err_input(err, "string_type", path, "input should be a valid string");
        }
        if (i == 0 && json_string_length(v) > (size_t)caps->string_bytes)
            return bs_err_input(err, "string_too_long", "state.name",
                                "string has %zu bytes, more than the limit of %d "
                                "(limits.max_string_bytes)",
                                json_string_length(v), caps->string_bytes);
        if (i == 0)
            cmd->state_name = bs_arena_strdup(ar, json_string_value(v));
        else
            cmd->state_message = bs_arena_strdup(ar, json_string_value(v));
    }
    v = json_object_get(st, "data");
    if (v != NULL && !json_is_null(v)) {
        char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        cmd->state_data = bs_arena_strdup(ar, txt);
        free(txt);
        bs_data_flags(v, &cmd->data_truthy, &cmd->data_persisted);
    }
    if (bs_details_from_json(json_object_get(st, "state_details"), true, "state.state_details", ar,
                             &cmd->details, err) < 0)
        return -1;
    if (cmd->state_type == BS_SCHEDULED && cmd->details.scheduled_time == BS_TS_NULL)
        cmd->details.scheduled_time = now_us;
    return 0;
}

int bs_command_from_json(const json_t *body, const char *header_command_id, int64_t now_us,
                         const bs_caps *caps, bs_arena *ar, bs_command *cmd, bs_err *err)
{
    const json_t *v;
    if (caps == NULL) caps = &bs_caps_default;
    memset(cmd, 0, sizeof *cmd);
    cmd->limit = BS_BULK_LIMIT;
    cmd->issued_at = BS_TS_NULL;
    bs_details_init(&cmd->details);
    if (!json_is_object(body))
        return bs_err_input(err, "model_type", "", "command should be a JSON object");

    v = json_object_get(body, "command_id");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v))
            return bs_err_input(err, "string_type", "command_id", "input should be a valid string");
        cmd->command_id = bs_arena_strdup(ar, json_string_value(v));
    } else if (header_command_id != NULL) {
        cmd->command_id = bs_arena_strdup(ar, header_command_id);
    } else {
        return bs_err_input(err, "missing", "command_id",
                            "field required (in the body or the command-id header)");
    }
    size_t idlen = strlen(cmd->command_id);
    if (idlen == 0 || idlen > BS_MAX_COMMAND_ID)
        return bs_err_input(err, "string_too_long", "command_id",
                            "command_id should have 1 to %d characters", BS_MAX_COMMAND_ID);
    for (const char *p = cmd->command_id; *p; p++)
        if ((unsigned char)*p < 0x20)
            return bs_err_input(err, "string_pattern_mismatch", "command_id",
                                "command_id must not contain control characters");

    v = json_object_get(body, "cancel_command_id");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > BS_MAX_COMMAND_ID)
            return bs_err_input(err, "string_type", "cancel_command_id",
                                "cancel_command_id should be a command id (1 to %d characters)",
                                BS_MAX_COMMAND_ID);
        cmd->cancel_command_id = bs_arena_strdup(ar, json_string_value(v));
        return 0; /* a cancel command: nothing else is read */
    }

    if (bs_filter_from_json(json_object_get(body, "flow_runs"), "flow_runs", caps, ar, &cmd->filter,
                            err) < 0)
        return -1;
    if (parse_state(json_object_get(body, "state"), now_us, caps, ar, cmd, err) < 0) return -1;

    v = json_object_get(body, "force");
    if (v != NULL && !json_is_null(v) && lax_bool(v, "force", &cmd->force, err) < 0) return -1;

    v = json_object_get(body, "limit");
    if (v != NULL && !json_is_null(v)) {
        int64_t n = 0;
        if (lax_int(v, "limit", &n, err) < 0) return -1;
        if (n < 1)
            return bs_err_input(err, "greater_than_equal", "limit",
                                "input should be greater than or equal to 1");
        if (n > BS_BULK_LIMIT)
            return bs_err_input(err, "less_than_equal", "limit",
                                "input should be less than or equal to %d", BS_BULK_LIMIT);
        cmd->limit = (int)n;
    }

    v = json_object_get(body, "max_runs");
    if (v != NULL && !json_is_null(v)) {
        int64_t n = 0;
        if (lax_int(v, "max_runs", &n, err) < 0) return -1;
        if (n < 1)
            return bs_err_input(err, "greater_than_equal", "max_runs",
                                "input should be greater than or equal to 1");
        if (n > caps->max_runs)
            return bs_err_input(err, "less_than_equal", "max_runs",
                                "input should be less than or equal to %d (limits.max_runs)",
                                caps->max_runs);
        cmd->max_runs = (int)n;
    }

    v = json_object_get(body, "reply_topic");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || !topic_name_ok(json_string_value(v)))
            return bs_err_input(err, "string_pattern_mismatch", "reply_topic",
                                "reply_topic should be a Kafka topic name ([a-zA-Z0-9._-], 1 to "
                                "249 characters)");
        cmd->reply_topic = bs_arena_strdup(ar, json_string_value(v));
    }

    v = json_object_get(body, "issued_at");
    if (v != NULL && !json_is_null(v)) {
        /* timestamp-millis, within the years 1..9999 (what a datetime holds; the product
         * cannot overflow) */
        if (json_is_integer(v) && (json_integer_value(v) < -62135596800000LL ||
                                   json_integer_value(v) > 253402300799999LL))
            return bs_err_input(err, "datetime_parsing", "issued_at",
                                "issued_at is out of range (years 1 to 9999)");
        if (json_is_integer(v))
            cmd->issued_at = json_integer_value(v) * 1000;
        else if (!json_is_string(v) || !bs_ts_parse(json_string_value(v), &cmd->issued_at))
            return bs_err_input(err, "datetime_parsing", "issued_at",
                                "input should be a valid ISO-8601 datetime");
    }
    return 0;
}

void bs_policy_from_json(const json_t *j, bs_arena *ar, bs_policy *out)
{
    const json_t *v;
    bs_policy_init(out);
    if (!json_is_object(j)) return;
    if (json_is_integer(v = json_object_get(j, "max_retries")))
        out->max_retries = json_integer_value(v);
    if (json_is_number(v = json_object_get(j, "retry_delay_seconds")))
        out->retry_delay_seconds = json_number_value(v);
    if (json_is_integer(v = json_object_get(j, "retries"))) out->retries = json_integer_value(v);
    if (json_is_number(v = json_object_get(j, "retry_delay")))
        out->retry_delay = (int64_t)json_number_value(v);
    if (json_is_boolean(v = json_object_get(j, "resuming"))) out->resuming = json_is_true(v);
    if (json_is_string(v = json_object_get(j, "retry_type")))
        out->retry_type = bs_arena_strdup(ar, json_string_value(v));
    if (json_is_array(v = json_object_get(j, "pause_keys"))) {
        for (size_t i = 0; i < json_array_size(v) && out->n_pause_keys < BS_MAX_PAUSE_KEYS; i++)
            if (json_is_string(json_array_get(v, i)))
                out->pause_keys[out->n_pause_keys++] =
                    bs_arena_strdup(ar, json_string_value(json_array_get(v, i)));
    }
}

json_t *bs_policy_to_json(const bs_policy *p)
{
    json_t *o = json_object(), *keys = json_array();
    for (size_t i = 0; i < p->n_pause_keys; i++)
        json_array_append_new(keys, json_string(p->pause_keys[i]));
    json_object_set_new(o, "max_retries", json_integer(p->max_retries));
    json_object_set_new(o, "retry_delay_seconds", json_real(p->retry_delay_seconds));
    json_object_set_new(o, "retries", p->retries < 0 ? json_null() : json_integer(p->retries));
    json_object_set_new(o, "retry_delay",
                        p->retry_delay < 0 ? json_null() : json_integer(p->retry_delay));
    json_object_set_new(o, "pause_keys", keys);
    json_object_set_new(o, "resuming", json_boolean(p->resuming));
    json_object_set_new(o, "retry_type", str_json(p->retry_type));
    return o;
}
