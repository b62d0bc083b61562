/* reply: the one publisher. Every record a command produces goes out through here: its
 * results (fresh or recorded), their state-change events, its completion, and for bad input
 * an error completion and a dead-letter copy. Every reply of a command is keyed by the command
 * id, so they share one partition and a consumer reads them in the order produced: results in
 * seq order, then the completion (the idempotent producer keeps that order on retries).
 * Replay decides through bs_mode whether anything is sent and where results are printed. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "result.h"
#include "text.h"
#include "worker_int.h"

/* The command's W3C trace context, carried onto every record it produces. */
static size_t add_trace(const bs_worker *w, bs_header *h, size_t n)
{
    const bs_msg *m = w->cur;
    if (m != NULL && m->traceparent != NULL) {
        h[n++] = (bs_header){"traceparent", m->traceparent, strlen(m->traceparent)};
        if (m->tracestate != NULL)
            h[n++] = (bs_header){"tracestate", m->tracestate, strlen(m->tracestate)};
    }
    return n;
}

/* A result (seq set) or a completion; the bulkstate.kind header says which. */
static int send_reply(bs_worker *w, const char *topic, const char *command_id,
                      const unsigned char *buf, size_t len, const char *seq, const char *phases,
                      bs_err *err)
{
    const char *ctype = w->framing == BS_FRAME_JSON ? "application/json" : "avro/binary";
    const char *kind = seq ? "result" : "completion";
    bs_header h[7] = {
        {"content-type", ctype, strlen(ctype)},
        {"command-id", command_id ? command_id : "", command_id ? strlen(command_id) : 0},
        {"bulkstate.kind", kind, strlen(kind)}};
    size_t n = 3;
    if (seq) h[n++] = (bs_header){"seq", seq, strlen(seq)};
    if (phases) h[n++] = (bs_header){"bulkstate.phases", phases, strlen(phases)};
    n = add_trace(w, h, n);
    return bs_producer_send(w->prod, topic, command_id, command_id ? strlen(command_id) : 0, buf,
                            len, h, n, w->dv, err);
}

/* A state-change event: JSON, keyed by the run (Prefect's events are JSON documents), with the
 * CloudEvents Kafka binding's binary-mode headers (the value is the event, unchanged). */
static int send_event(bs_worker *w, const char *run_id, const char *event, const char *command_id,
                      bs_err *err)
{
    if (event == NULL || w->cfg->events_topic[0] == '\0') return 0;
    json_t *ev = json_loads(event, 0, NULL);
    const char *id = json_string_value(json_object_get(ev, "id")),
               *type = json_string_value(json_object_get(ev, "event")),
               *time = json_string_value(json_object_get(ev, "occurred")),
               *source = json_string_value(
                   json_object_get(json_object_get(ev, "resource"), "prefect.resource.id"));
    bs_header h[10] = {{"content-type", "application/json", 16},
                       {"command-id", command_id, strlen(command_id)},
                       {"ce_specversion", "1.0", 3}};
    size_t n = 3;
    if (id) h[n++] = (bs_header){"ce_id", id, strlen(id)};
    if (type) h[n++] = (bs_header){"ce_type", type, strlen(type)};
    if (source) h[n++] = (bs_header){"ce_source", source, strlen(source)};
    if (time) h[n++] = (bs_header){"ce_time", time, strlen(time)};
    n = add_trace(w, h, n);
    int rc = bs_producer_send(w->prod, w->cfg->events_topic, run_id, strlen(run_id),
                              (const unsigned char *)event, strlen(event), h, n, w->dv, err);
    json_decref(ev);
    if (rc == 0) w->events_sent = true;
    return rc;
}

/* replay --results: the reply as a JSON line */
static void print_reply(bs_worker *w, FILE *out, const unsigned char *buf, size_t len)
{
    json_t *j = NULL;
    bool is_result;
    bs_err derr = {0};
    if (bs_codec_decode_reply(w->codec, buf, len, w->framing == BS_FRAME_JSON, &j, &is_result,
                              &derr) < 0)
        return;
    char *t = json_dumps(j, JSON_COMPACT);
    fprintf(out, "%s\n", t);
    free(t);
    json_decref(j);
}

int bs_reply_publish(bs_worker *w, const bs_mode *mode, const char *topic, const char *command_id,
                     int first_seq, const bs_replies *r, const char *failpoint, bs_err *err)
{
    for (size_t i = 0; i < r->n; i++) {
        if (mode->print) print_reply(w, mode->print, r->replies[i], r->lens[i]);
        if (!mode->publish) continue;
        char seq[16];
        snprintf(seq, sizeof seq, "%zu", (size_t)first_seq + i);
        if (send_reply(w, topic, command_id, r->replies[i], r->lens[i], seq, NULL, err) < 0)
            return -1;
        if (i == 0 && failpoint) bs_failpoint(failpoint);
    }
    for (size_t i = 0; mode->publish && r->events && i < r->n; i++)
        if (send_event(w, r->run_ids[i], r->events[i], command_id, err) < 0) return -1;
    return 0;
}

int bs_reply_wait_for(bs_worker *w, bs_delivery *dv, bs_err *err)
{
    int rc = bs_producer_wait(w->prod, dv, w->cfg->flush_timeout_ms, err);
    if (dv->pending == 0) {
        dv->failed = 0;
        dv->permanent = false;
        dv->error[0] = '\0';
    }
    return rc;
}

int bs_reply_wait(bs_worker *w, bs_err *err)
{
    return bs_reply_wait_for(w, w->dv, err);
}

int bs_reply_complete(bs_worker *w, const bs_mode *mode, const bs_outcome *o, bs_err *err)
{
    if (!mode->publish || o->command_id == NULL) return 0;
    /* its events are on another topic, so not ordered with its replies: they are acknowledged
     * before the completion is sent, and a consumer that has the completion finds them */
    if (w->events_sent) {
        w->events_sent = false;
        if (bs_reply_wait(w, err) < 0) return -1;
    }
    bs_completion c = {.command_id = o->command_id,
                       .matched = o->matched,
                       .replayed = o->kind == BS_OUT_ALREADY,
                       .batches = o->batches,
                       .cancelled = o->cancelled,
                       .error_code = o->error_code,
                       .err = o->error_code ? &o->error : NULL,
                       .completed_at_us = bs_now_us()};
    memcpy(c.counts, o->counts, sizeof c.counts);
    json_t *j = bs_completion_to_json(&c);
    unsigned char *buf;
    size_t len;
    int rc = bs_codec_encode(w->codec, BS_SCHEMA_COMPLETED, j, w->framing, &buf, &len, err);
    json_decref(j);
    if (rc < 0) return -1;
    bs_phase_mark(w, BS_PH_PUBLISH);
    char phases[BS_PHASES * 24] = "";
    if (w->ph.on) /* a one-batch command: where its time went, in ms, up to this completion */
        for (int i = 0, k = 0; i < BS_PH_ACK && k < (int)sizeof phases; i++)
            k += snprintf(phases + k, sizeof phases - (size_t)k, "%s%s=%.2f", i ? ";" : "",
                          bs_phase_names[i], (double)w->ph.us[i] / 1000.0);
    rc = send_reply(w, o->reply_topic ? o->reply_topic : w->cfg->reply_topic, o->command_id, buf,
                    len, NULL, w->ph.on ? phases : NULL, err);
    free(buf);
    if (rc < 0) return -1;
    if (o->unacked) return 0; /* awaited by the caller, after the next message */
    if (bs_reply_wait(w, err) < 0) return -1;
    bs_phase_mark(w, BS_PH_ACK);
    return 0;
}

int bs_reply_reject(bs_worker *w, const bs_mode *mode, const bs_msg *m, const bs_outcome *o,
                    bs_err *err)
{
    const bs_err *cerr = &o->error;
    const char *code = o->error_code, *etype = cerr->type[0] ? cerr->type : code;
    char trace[33];
    char part[16], off[32], size[32];
    snprintf(part, sizeof part, "%" PRId32, m->partition);
    snprintf(off, sizeof off, "%" PRId64, m->offset);
    snprintf(size, sizeof size, "%zu", m->len);
    /* Kafka Connect's names for the same (its tooling reads these): the stage where it failed
     * and a class name per kind of error */
    const char *stage = strcmp(code, "bad_message") == 0 ? "VALUE_CONVERTER" : "TASK_PUT";
    char cls[96];
    snprintf(cls, sizeof cls, "bulkstate.%s.%s", code, etype);
    /* the original's headers first, as received (a re-dead-lettered copy's earlier reasons
     * left out), so that a copy re-driven to the command topic reads as the original did */
    bs_header h[BS_MSG_MAX_HEADERS + 16];
    size_t n = 0;
    for (size_t i = 0; i < m->nheaders; i++)
        if (strncmp(m->headers[i].name, "bulkstate.", 10) != 0 &&
            strncmp(m->headers[i].name, "__connect.errors.", 17) != 0)
            h[n++] = m->headers[i];
    const size_t ours = n; /* where bulkstate's own headers start */
    h[n++] = (bs_header){"bulkstate.original.topic", m->topic, strlen(m->topic)};
    h[n++] = (bs_header){"bulkstate.original.partition", part, strlen(part)};
    h[n++] = (bs_header){"bulkstate.original.offset", off, strlen(off)};
    h[n++] = (bs_header){"bulkstate.error.code", code, strlen(code)};
    h[n++] = (bs_header){"bulkstate.error.type", etype, strlen(etype)};
    h[n++] = (bs_header){"bulkstate.error.field", cerr->field, strlen(cerr->field)};
    h[n++] = (bs_header){"bulkstate.error.message", cerr->msg, strlen(cerr->msg)};
    h[n++] = (bs_header){"__connect.errors.topic", m->topic, strlen(m->topic)};
    h[n++] = (bs_header){"__connect.errors.partition", part, strlen(part)};
    h[n++] = (bs_header){"__connect.errors.offset", off, strlen(off)};
    h[n++] = (bs_header){"__connect.errors.exception.class.name", cls, strlen(cls)};
    h[n++] = (bs_header){"__connect.errors.exception.message", cerr->msg, strlen(cerr->msg)};
    h[n++] = (bs_header){"__connect.errors.stage", stage, strlen(stage)};
    const size_t whole = n;
    h[n++] = (bs_header){"bulkstate.original.size", size, strlen(size)};
    h[n++] = (bs_header){"bulkstate.truncated", "true", 4};
    /* the copy must fit the producer's largest record, headers and key included: what does
     * not is cut, and the headers say so and how large the message was */
    size_t hdr_bytes = 0;
    for (size_t i = 0; i < n; i++)
        hdr_bytes += strlen(h[i].name) + h[i].len + 8;
    size_t len =
        bs_dead_letter_keep(bs_producer_max_message_bytes(w->prod), m->key_len, hdr_bytes, m->len);
    const bool cut = len < m->len;
    bs_log(BS_LOG_WARN, "worker",
           "command rejected command_id=%s partition=%" PRId32 " offset=%" PRId64
           " code=%s type=%s field=%s error=\"%s\" trace_id=%s%s",
           o->command_id ? o->command_id : "-", m->partition, m->offset, code, etype,
           cerr->field[0] ? cerr->field : "-", cerr->msg, bs_trace_id(m->traceparent, trace),
           cut ? " dead_letter=truncated" : "");
    const int64_t ts = m->timestamp_ms > 0 ? m->timestamp_ms : 0; /* the original's */
    int rc = bs_producer_send_at(w->prod, w->cfg->dlq_topic, m->key, m->key_len, m->payload, len, h,
                                 cut ? n : whole, ts, w->dv, err);
    if (rc == 0) rc = bs_reply_wait(w, err);
    if (rc < 0 && !err->retriable && (len > 0 || ours > 0 || m->key_len > 0)) {
        /* refused for good (the topic's own max.message.bytes is below the producer's, or the
         * original's key and headers alone are too large): bulkstate's headers alone, which
         * still name the original's topic, partition, offset and size */
        bs_log(BS_LOG_WARN, "worker", "dead letter refused, sent without its value: %s", err->msg);
        memset(err, 0, sizeof *err);
        rc = bs_producer_send_at(w->prod, w->cfg->dlq_topic, NULL, 0, "", 0, h + ours, n - ours, ts,
                                 w->dv, err);
        if (rc == 0) rc = bs_reply_wait(w, err);
    }
    if (rc < 0) return -1;
    /* the dead letter holds the error: a completion that cannot be encoded is not a reason to
     * keep the message (the operator finds it there) */
    bs_err cerr2 = {0};
    if (bs_reply_complete(w, mode, o, &cerr2) < 0) {
        if (cerr2.code != BS_EENCODE) {
            *err = cerr2;
            return -1;
        }
        bs_log(BS_LOG_WARN, "worker", "error completion not sent: %s", cerr2.msg);
    }
    bs_metrics_lock(w->m);
    w->m->completed[2]++;
    w->m->dlq++;
    bs_metrics_failed(w->m, code);
    bs_metrics_unlock(w->m);
    return 0;
}

int bs_reply_topic_check(bs_worker *w, const char *topic, bs_err *why)
{
    const bs_config *c = w->cfg;
    /* bulkstate's own inputs and Kafka's internal topics: never, whatever the pattern */
    if (strcmp(topic, c->command_topic) == 0 || strcmp(topic, c->dlq_topic) == 0 ||
        (c->events_topic[0] && strcmp(topic, c->events_topic) == 0) ||
        strncmp(topic, "__", 2) == 0 || !bs_topic_pattern_match(&w->reply_re, topic))
        return bs_err_input(why, "topic_forbidden", "reply_topic",
                            "reply topic \"%s\" is not allowed (worker.reply_topic_pattern, and "
                            "never the command, dead-letter, events or internal topics)",
                            topic);
    for (size_t i = 0; i < w->n_known_topics; i++)
        if (strcmp(w->known_topics[i], topic) == 0) return 0;
    if (!bs_producer_topic_exists(w->prod, topic, 10000))
        return bs_err_input(why, "topic_not_found", "reply_topic",
                            "reply topic \"%s\" does not exist", topic);
    if (w->n_known_topics < sizeof w->known_topics / sizeof w->known_topics[0])
        w->known_topics[w->n_known_topics++] = bs_xstrdup(topic);
    return 0;
}
