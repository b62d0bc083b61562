/* event: Prefect's flow-run state-change event, built from a decision and the run's related
 * objects. Key order and value formats follow Prefect's server (models/events.py). */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

#define MESSAGE_LIMIT 100000 /* Prefect's TRUNCATE_STATE_MESSAGES_AT */
#define TIGHT_US      (5LL * 60 * 1000000)

char *bs_event_truncated(const char *s, size_t limit)
{
    if (s == NULL) return strdup("");
    size_t len = strlen(s);
    if (len <= limit) return strdup(s);
    size_t half = limit / 2;
    char mid[64];
    snprintf(mid, sizeof mid, "...%zu additional characters...", len - 2 * half);
    size_t out_len = 2 * half + strlen(mid);
    if (out_len >= len) return strdup(s);
    char *out = malloc(out_len + 1);
    if (out == NULL) abort();
    memcpy(out, s, half);
    memcpy(out + half, mid, strlen(mid));
    memcpy(out + half + strlen(mid), s + len - half, half);
    out[out_len] = '\0';
    return out;
}

/* Python's datetime.isoformat() of a UTC timestamp: microseconds only when non-zero. */
static void iso_python(int64_t us, char *buf, size_t n)
{
    char z[40];
    bs_ts_format(us, z, sizeof z); /* "...SS[.ffffff]Z" */
    size_t l = strlen(z);
    if (l > 0 && z[l - 1] == 'Z') z[l - 1] = '\0';
    snprintf(buf, n, "%s+00:00", z);
}

static json_t *state_payload(const bs_state *s)
{
    if (s->type == BS_NONE) return json_null();
    json_t *p = json_object();
    json_object_set_new(p, "type", json_string(bs_state_type_name(s->type)));
    if (s->name && *s->name) json_object_set_new(p, "name", json_string(s->name));
    if (s->message && *s->message) {
        char *m = bs_event_truncated(s->message, MESSAGE_LIMIT);
        json_object_set_new(p, "message", json_string(m));
        free(m);
    }
    if (s->type == BS_PAUSED)
        json_object_set_new(p, "pause_reschedule",
                            json_string(s->details.pause_reschedule ? "true" : "false"));
    return p;
}

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : dflt;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *related(const bs_event_context *ctx)
{
    static const struct {
        const char *key, *kind;
    } KINDS[] = {{"flow", "flow"},
                 {"deployment", "deployment"},
                 {"work_queue", "work-queue"},
                 {"work_pool", "work-pool"},
                 {"task_run", "task-run"}};
    json_t *out = json_array();
    const char *tags[512];
    size_t ntags = 0;
    json_t *fr = json_object_get(ctx, "flow_run");
    json_t *tag_sources[6] = {json_object_get(fr, "tags")};
    size_t nsrc = 1;
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++) {
        json_t *o = json_object_get(ctx, KINDS[k].key);
        if (!json_is_object(o)) continue;
        tag_sources[nsrc++] = json_object_get(o, "tags");
        char id[160];
        snprintf(id, sizeof id, "prefect.%s.%s", KINDS[k].kind, str_or(o, "id", ""));
        json_t *r = json_object();
        json_object_set_new(r, "prefect.resource.id", json_string(id));
        json_object_set_new(r, "prefect.resource.role", json_string(KINDS[k].kind));
        json_object_set_new(r, "prefect.resource.name", json_string(str_or(o, "name", "")));
        if (strcmp(KINDS[k].kind, "work-pool") == 0)
            json_object_set_new(r, "prefect.work-pool.type", json_string(str_or(o, "type", "")));
        json_array_append_new(out, r);
    }
    for (size_t s = 0; s < nsrc; s++) {
        size_t i;
        json_t *t;
        json_array_foreach(tag_sources[s], i, t)
        {
            const char *v = json_string_value(t);
            if (v == NULL || ntags == sizeof tags / sizeof tags[0]) continue;
            bool seen = false;
            for (size_t j = 0; j < ntags && !seen; j++)
                seen = strcmp(tags[j], v) == 0;
            if (!seen) tags[ntags++] = v;
        }
    }
    qsort(tags, ntags, sizeof tags[0], cmp_str);
    for (size_t i = 0; i < ntags; i++) {
        char id[600];
        snprintf(id, sizeof id, "prefect.tag.%s", tags[i]);
        json_t *r = json_object();
        json_object_set_new(r, "prefect.resource.id", json_string(id));
        json_object_set_new(r, "prefect.resource.role", json_string("tag"));
        json_array_append_new(out, r);
    }
    /* provenance: the deployment or automation that created the run */
    json_t *cb = json_object_get(fr, "created_by");
    const char *type = str_or(cb, "type", ""), *cid = str_or(cb, "id", NULL);
    const char *kind = strcmp(type, "DEPLOYMENT") == 0   ? "deployment"
                       : strcmp(type, "AUTOMATION") == 0 ? "automation"
                                                         : NULL;
    if (kind && cid) {
        char id[160];
        snprintf(id, sizeof id, "prefect.%s.%s", kind, cid);
        json_t *r = json_object();
        json_object_set_new(r, "prefect.resource.id", json_string(id));
        json_object_set_new(r, "prefect.resource.role", json_string("creator"));
        const char *dv = str_or(cb, "display_value", NULL);
        if (dv && *dv) json_object_set_new(r, "prefect.resource.name", json_string(dv));
        json_array_append_new(out, r);
    }
    return out;
}

json_t *bs_event_state_change(const bs_state *initial, const bs_decision *d,
                              const bs_event_context *ctx)
{
    return bs_event_flow_run_state(initial, &d->state, d->run.id.s, d->run.run_count, ctx);
}

json_t *bs_event_flow_run_state(const bs_state *initial, const bs_state *v, const char *run_id,
                                int64_t run_count, const bs_event_context *ctx)
{
    char occurred[48], ts[48], rid[64], count[24], name[512];
    bs_ts_format(v->timestamp, occurred, sizeof occurred);
    iso_python(v->timestamp, ts, sizeof ts);
    snprintf(rid, sizeof rid, "prefect.flow-run.%s", run_id);
    snprintf(count, sizeof count, "%lld", (long long)run_count);
    snprintf(name, sizeof name, "prefect.flow-run.%s", v->name ? v->name : "");
    json_t *fr = json_object_get(ctx, "flow_run");

    json_t *res = json_object();
    json_object_set_new(res, "prefect.resource.id", json_string(rid));
    json_object_set_new(res, "prefect.resource.name", json_string(str_or(fr, "name", "")));
    json_object_set_new(res, "prefect.run-count", json_string(count));
    char *msg = bs_event_truncated(v->message, MESSAGE_LIMIT);
    json_object_set_new(res, "prefect.state-message", json_string(msg));
    free(msg);
    json_object_set_new(res, "prefect.state-name", json_string(v->name ? v->name : ""));
    json_object_set_new(res, "prefect.state-timestamp", json_string(ts));
    json_object_set_new(res, "prefect.state-type", json_string(bs_state_type_name(v->type)));

    json_t *intended = json_object();
    json_object_set_new(intended, "from",
                        initial->type == BS_NONE ? json_null()
                                                 : json_string(bs_state_type_name(initial->type)));
    json_object_set_new(intended, "to", json_string(bs_state_type_name(v->type)));
    json_t *payload = json_object();
    json_object_set_new(payload, "intended", intended);
    json_object_set_new(payload, "initial_state", state_payload(initial));
    json_object_set_new(payload, "validated_state", state_payload(v));

    bool tight = initial->type != BS_NONE && initial->timestamp != BS_TS_NULL &&
                 v->timestamp - initial->timestamp < TIGHT_US &&
                 v->timestamp - initial->timestamp > -TIGHT_US;
    json_t *e = json_object();
    json_object_set_new(e, "occurred", json_string(occurred));
    json_object_set_new(e, "event", json_string(name));
    json_object_set_new(e, "resource", res);
    json_object_set_new(e, "related", related(ctx));
    json_object_set_new(e, "payload", payload);
    json_object_set_new(e, "id", json_string(v->id.s));
    json_object_set_new(e, "follows", tight ? json_string(initial->id.s) : json_null());
    return e;
}

char *bs_event_json(const bs_state *initial, const bs_state *validated, const char *run_id,
                    int64_t run_count, const char *ctx_json)
{
    json_t *c = ctx_json ? json_loads(ctx_json, 0, NULL) : NULL;
    json_t *e =
        bs_event_flow_run_state(initial, validated, run_id, run_count, c ? c : json_object());
    json_decref(c);
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (text == NULL) abort();
    return text;
}
