/* result: JSON trees in the shape of schemas/FlowRunOrchestrationResult.avsc and
 * schemas/BulkSetStateCompleted.avsc. Pure. */
#include "result.h"

#include "command.h"

static json_t *opt_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *bs_result_to_json(const bs_result *r)
{
    json_t *o = json_object(), *details = json_object();
    json_object_set_new(o, "command_id", json_string(r->command_id));
    json_object_set_new(o, "seq", json_integer(r->seq));
    json_object_set_new(o, "total", json_integer(r->total));
    json_object_set_new(o, "flow_run_id", json_string(r->flow_run_id));
    json_object_set_new(o, "status", json_string(bs_status_name(r->status)));
    if (r->state != NULL && r->state->type != BS_NONE) {
        const bs_state *s = r->state;
        json_t *st = json_object();
        json_object_set_new(st, "id", json_string(s->id.s));
        json_object_set_new(st, "type", json_string(bs_state_type_name(s->type)));
        json_object_set_new(st, "name", json_string(s->name ? s->name : ""));
        json_object_set_new(st, "timestamp", json_integer(s->timestamp));
        json_object_set_new(st, "message", opt_str(s->message));
        json_object_set_new(st, "data", opt_str(s->data));
        json_object_set_new(st, "state_details", bs_details_to_json(&s->details));
        json_object_set_new(o, "state", st);
    } else {
        json_object_set_new(o, "state", json_null());
    }
    json_object_set_new(details, "type", json_string(bs_status_details_type(r->status)));
    json_object_set_new(details, "reason", opt_str(r->reason));
    json_object_set_new(details, "delay_seconds",
                        r->status == BS_WAIT ? json_integer(r->delay_seconds) : json_null());
    json_object_set_new(o, "details", details);
    return o;
}

json_t *bs_completion_to_json(const bs_completion *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "command_id", opt_str(c->command_id));
    json_object_set_new(o, "matched", json_integer(c->matched));
    json_object_set_new(o, "accepted", json_integer(c->counts[BS_ACCEPT]));
    json_object_set_new(o, "rejected", json_integer(c->counts[BS_REJECT]));
    json_object_set_new(o, "waited", json_integer(c->counts[BS_WAIT]));
    json_object_set_new(o, "aborted", json_integer(c->counts[BS_ABORT]));
    json_object_set_new(o, "replayed", json_boolean(c->replayed));
    json_object_set_new(o, "batches", json_integer(c->batches > 0 ? c->batches : 1));
    json_object_set_new(o, "cancelled", json_boolean(c->cancelled));
    if (c->error_code != NULL) {
        json_t *e = json_object();
        json_object_set_new(e, "code", json_string(c->error_code));
        json_object_set_new(e, "type",
                            c->err && c->err->type[0] ? json_string(c->err->type) : json_null());
        json_object_set_new(e, "field",
                            c->err && c->err->field[0] ? json_string(c->err->field) : json_null());
        json_object_set_new(e, "message", json_string(c->err ? c->err->msg : ""));
        json_object_set_new(o, "error", e);
    } else {
        json_object_set_new(o, "error", json_null());
    }
    json_object_set_new(o, "completed_at", json_integer(c->completed_at_us / 1000));
    return o;
}

size_t bs_dead_letter_keep(size_t max, size_t key_len, size_t hdr_bytes, size_t len)
{
    /* the record's own framing: a varint and attributes per header, the batch header */
    const size_t used = key_len + hdr_bytes + 1024;
    const size_t room = max > used ? max - used : 0;
    return len < room ? len : room;
}
