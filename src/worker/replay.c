/* replay: `bulkstate replay` re-reads a command log (a topic from an offset or a timestamp, up
 * to its end when the replay starts) outside the consumer group and handles each command as
 * the worker would, through the same bs_handle, with a bs_mode saying what differs: nothing
 * is dead-lettered (the worker did that when the message first came), replies are published
 * only with --emit, large commands run all their batches at once, a dry run is rolled back at
 * the end, and --clock issued_at derives the clock and ids from each command. Prints one JSON
 * line per command (and per result with --results). */
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "worker_int.h"

static const char *outcome_word(const bs_outcome *o, bool dry_run)
{
    switch (o->kind) {
    case BS_OUT_ALREADY:
        return "already_applied";
    case BS_OUT_REJECTED:
        return "invalid";
    default:
        return dry_run ? "dry_run" : "applied";
    }
}

/* The JSON line of one message. */
static void report(FILE *out, const bs_msg *m, int rc, const bs_outcome *o, const bs_err *err,
                   bool dry_run)
{
    json_t *line = json_object();
    json_object_set_new(line, "partition", json_integer(m->partition));
    json_object_set_new(line, "offset", json_integer(m->offset));
    json_object_set_new(line, "command_id",
                        o->command_id   ? json_string(o->command_id)
                        : m->command_id ? json_string(m->command_id)
                                        : json_null());
    if (rc < 0) {
        json_object_set_new(line, "outcome", json_string("failed"));
        json_object_set_new(line, "error", json_string(err->msg));
    } else {
        json_object_set_new(line, "outcome", json_string(outcome_word(o, dry_run)));
        if (o->kind == BS_OUT_REJECTED) {
            json_t *e = json_object();
            json_object_set_new(e, "code", json_string(o->error_code));
            json_object_set_new(e, "type", json_string(o->error.type));
            json_object_set_new(e, "field", json_string(o->error.field));
            json_object_set_new(e, "message", json_string(o->error.msg));
            json_object_set_new(line, "error", e);
        } else {
            static const char *const K[4] = {"accepted", "rejected", "waited", "aborted"};
            json_object_set_new(line, "matched", json_integer(o->matched));
            for (int i = 0; i < 4; i++)
                json_object_set_new(line, K[i], json_integer(o->counts[i]));
        }
    }
    char *t = json_dumps(line, JSON_COMPACT);
    if (out) fprintf(out, "%s\n", t);
    free(t);
    json_decref(line);
}

int bs_worker_replay(bs_worker *w, const bs_replay_opts *opt, bs_err *err)
{
    const bs_mode mode = {.publish = opt->emit && !opt->dry_run,
                          .dead_letter = false,
                          .deterministic = opt->clock_issued_at,
                          .inline_large = true,
                          .dry_run = opt->dry_run,
                          .print = opt->print_results ? opt->out : NULL};
    const char *topic = opt->topic ? opt->topic : w->cfg->command_topic;
    const bs_kafka_props kp = bs_config_kafka_props(w->cfg);
    bs_range range;
    bs_consumer *c = bs_consumer_new_range(&kp, topic, opt->partition, opt->from_offset,
                                           opt->from_ts_ms, &range, err);
    if (c == NULL) return -1;
    /* a dry run is cumulative: each command sees the ones before it, then all is rolled back */
    if (opt->dry_run && bs_store_outer_begin(w->store, err) < 0) {
        bs_consumer_close(c);
        return -1;
    }
    int totals[4] = {0}; /* applied or evaluated, already applied, invalid, failed */
    int rc = 0;
    bs_msg *m;
    while ((m = bs_range_next(c, &range, err)) != NULL) {
        bs_err herr = {0};
        bs_outcome o;
        w->cur = m;
        const int hrc = bs_handle(w, &mode, m, &o, &herr);
        w->cur = NULL;
        report(opt->out, m, hrc, &o, &herr, opt->dry_run);
        totals[hrc < 0 ? 3 : o.kind == BS_OUT_ALREADY ? 1 : o.kind == BS_OUT_REJECTED ? 2 : 0]++;
        bs_msg_free(m);
        bs_arena_reset(w->ar);
        if (hrc < 0) { /* a failure: stop here; rerun from this offset */
            *err = herr;
            rc = -1;
            break;
        }
    }
    if (err->code != BS_OK) rc = -1; /* no message for 30 s before the end of the log */
    if (opt->dry_run) bs_store_outer_rollback(w->store);
    if (opt->out) fflush(opt->out);
    fprintf(stderr, "replay of %s: %d %s, %d already applied (skipped), %d invalid, %d failed\n",
            topic, totals[0], opt->dry_run ? "evaluated (dry run, rolled back)" : "applied",
            totals[1], totals[2], totals[3]);
    bs_consumer_close(c);
    return rc;
}
