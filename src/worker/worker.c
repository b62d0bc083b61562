/* worker: the loop. One message at a time (large commands interleave a batch per turn): poll,
 * count the delivery, handle it (handle.c), then settle it as settle.h decides: store the
 * offset, dead-letter a poison message, retry after a capped, jittered backoff while the
 * consumer keeps polling (group membership), or stop. A command's offset is stored only after
 * its transaction committed and every reply and its completion were acknowledged; a crash
 * anywhere before that redelivers the command, which then finds its record 'done' and
 * republishes the stored replies instead of applying anything again.
 *
 * An applied one-batch command's acknowledgements are awaited once the next message was
 * handled (the unacked command: one at most), so the broker's round trip overlaps the next
 * transaction instead of adding to each command's time; with no message waiting they are
 * awaited at once. Offsets are still stored in order, and if they fail, both messages are
 * delivered again (settle_unacked).
 *
 * worker.threads > 1 runs that loop in as many lanes, one thread each, each with a consumer of
 * its own in the group (as Kafka Streams runs one consumer per stream thread): the group
 * spreads the partitions over the lanes, rebalances reach each lane's consumer in its own
 * poll, between two commands, and a partition's commands keep their order in the one lane it
 * is assigned to. What holds between two worker processes holds between two lanes. */
#include "worker.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids.h"
#include "log.h"
#include "settle.h"
#include "worker_int.h"

_Static_assert(BS_MAX_THREADS <= BS_METRICS_THREADS, "a gauge for every thread");

static const bs_mode WORKER_MODE = {.publish = true, .dead_letter = true, .defer_ack = true};
/* how long the worker waits at start for the broker to describe a topic it writes (reply,
 * dead-letter, events): at most once per process when the broker does not answer, since the
 * other threads skip the check when the first thread's failed */
#define TOPIC_CHECK_MS 5000

/* One lane. lane0 NULL: lane 0, which makes what the process shares (metrics, HTTP endpoint,
 * Prefect's outbox); otherwise lane `lane` of lane0, with cfg its own copy. */
static bs_worker *worker_new(bs_config *cfg, bs_worker *lane0, int lane, bool replay, bs_err *err)
{
    bs_worker *w = bs_xcalloc(1, sizeof *w);
    w->cfg = cfg;
    w->lane = lane;
    w->lane0 = lane0 ? lane0 : w;
    if (lane0 == NULL) {
        w->m = bs_xcalloc(1, sizeof *w->m);
        bs_metrics_init(w->m);
        const char *group = bs_config_get_kafka(cfg, "group.id");
        snprintf(w->m->group, sizeof w->m->group, "%s", group ? group : "");
        if (!replay && cfg->metrics_listen[0] &&
            (w->http = bs_http_start(cfg->metrics_listen, w->m, err)) == NULL)
            goto fail;
    } else {
        w->m = lane0->m;
        w->outbox = lane0->outbox;
        /* static membership: every member of the group needs an instance id of its own */
        const char *instance = bs_config_get_kafka(cfg, "group.instance.id");
        if (instance != NULL) {
            char id[256];
            snprintf(id, sizeof id, "%s-%d", instance, lane);
            bs_config_set_kafka(cfg, "group.instance.id", id, "worker.threads");
        }
    }
    w->ar = bs_arena_new();
    w->dv = &w->dvs[0];
    char why[256];
    if (bs_topic_pattern_compile(cfg->reply_topic_pattern, &w->reply_re, why, sizeof why) < 0) {
        bs_err_fatal(err, BS_EINVAL, "worker.reply_topic_pattern: %s", why);
        goto fail;
    }
    w->reply_re_set = true;
    w->framing = (bs_framing)bs_framing_parse(cfg->output_framing);
    /* avro-c may allocate what a crafted length asks for: cap each allocation */
    bs_codec_cap_allocations((size_t)cfg->max_message_bytes * 4 + (1u << 20));
    const bs_codec_conf cc = bs_config_codec_conf(cfg, (size_t)cfg->max_message_bytes);
    if ((w->codec = bs_codec_new(&cc, err)) == NULL) goto fail;
    const bs_store_conf sc = bs_config_store_conf(cfg);
    /* bounded: about 10 s of tries, then systemd restarts us */
    for (int64_t backoff = 200;; backoff = backoff * 2 > 5000 ? 5000 : backoff * 2) {
        w->store = bs_store_new(&sc, err);
        if (w->store != NULL) break;
        if (!err->retriable) goto fail;
        bs_log(BS_LOG_WARN, "worker", "database not reachable, retrying in %lld ms: %s",
               (long long)backoff, err->msg);
        struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000};
        nanosleep(&ts, NULL);
        if (backoff >= 5000) goto fail;
    }
    bs_metrics_lock(w->m); /* the HTTP thread may be reading */
    w->m->db_ok = true;
    bs_metrics_unlock(w->m);
    const bs_kafka_props kp = bs_config_kafka_props(cfg);
    if ((w->prod = bs_producer_new(&kp, err)) == NULL) goto fail;
    /* the producer learns its topics now, not on a command's first reply (which waited 0.5 s
     * for them) */
    w->topics_known = !replay && (lane0 == NULL || lane0->topics_known);
    for (const char *const *t =
             (const char *const[]){cfg->reply_topic, cfg->dlq_topic,
                                   cfg->events_topic[0] ? cfg->events_topic : NULL, NULL};
         w->topics_known && *t; t++)
        if (!(w->topics_known = bs_producer_topic_exists(w->prod, *t, TOPIC_CHECK_MS)))
            bs_log(BS_LOG_WARN, "worker",
                   "topic %s: not found, or the broker did not answer within %d ms (its records "
                   "fail until it exists)",
                   *t, TOPIC_CHECK_MS);
    bs_kafka_set_stats_hook(w->lane0->http ? bs_periodic_on_stats : NULL, w);
    /* a replay reads the log on its own, outside the consumer group */
    if (!replay && (w->cons = bs_consumer_new(&kp, cfg->command_topic, err)) == NULL) goto fail;
    if (lane0 == NULL) {
        if (!replay && cfg->prefect_api_url[0] &&
            (w->outbox = bs_outbox_start(cfg, w->m, err)) == NULL)
            goto fail;
        w->watchdog_us = bs_notify_watchdog_interval_us();
        bs_failpoint_setup();
    }
    return w;
fail:
    bs_worker_free(w);
    return NULL;
}

bs_worker *bs_worker_new(bs_config *cfg, bs_err *err)
{
    bs_worker *w = worker_new(cfg, NULL, 0, false, err);
    if (w == NULL) return NULL;
    w->lanes[w->nlanes++] = w;
    for (int i = 1; i < cfg->threads; i++) {
        bs_worker *lane = worker_new(bs_config_copy(cfg), w, i, false, err);
        if (lane == NULL) {
            bs_worker_free(w);
            return NULL;
        }
        w->lanes[w->nlanes++] = lane;
    }
    bs_metrics_lock(w->m);
    w->m->threads = (int)w->nlanes;
    bs_metrics_unlock(w->m);
    return w;
}

bs_worker *bs_worker_new_replay(bs_config *cfg, bs_err *err)
{
    bs_worker *w = worker_new(cfg, NULL, 0, true, err);
    if (w != NULL) w->lanes[w->nlanes++] = w;
    return w;
}

void bs_worker_free(bs_worker *w)
{
    if (w == NULL) return;
    for (size_t i = w->nlanes; i-- > 1;) /* lane 0 frees the others first: they use its parts */
        bs_worker_free(w->lanes[i]);
    bs_large_release_all(w, NULL);
    bs_msg_free(w->unacked.m);
    if (w->lane == 0) bs_outbox_stop(w->outbox);
    bs_consumer_close(w->cons);
    bs_producer_free(w->prod, w->cfg->flush_timeout_ms);
    bs_store_free(w->store);
    bs_codec_free(w->codec);
    bs_arena_free(w->ar);
    for (size_t i = 0; i < w->n_known_topics; i++)
        free(w->known_topics[i]);
    if (w->reply_re_set) regfree(&w->reply_re);
    if (w->lane == 0) {
        bs_http_stop(w->http);
        bs_metrics_destroy(w->m);
        free(w->m);
    } else {
        bs_config_free(w->cfg);
    }
    free(w);
}

/* This lane's part of the in-flight gauge: the command in hand (if any) and its large ones. */
static void set_inflight(bs_worker *w, int n)
{
    bs_metrics_lock(w->m);
    w->m->inflight += n - w->inflight;
    w->inflight = n;
    bs_metrics_unlock(w->m);
}

static int64_t jitter(int64_t ms)
{
    return ms / 2 + (int64_t)(rand() % (int)(ms / 2 + 1));
}

/* A delivery counted more than max_attempts times: dead-lettered without being handled. */
static int reject_poison(bs_worker *w, bs_msg *m, int attempts, bs_outcome *o, bs_err *err)
{
    memset(o, 0, sizeof *o);
    o->kind = BS_OUT_REJECTED;
    o->command_id = m->command_id;
    o->error_code = "poison_message";
    bs_err_input(&o->error, "poison_message", "",
                 "delivery %d of this message: the previous %d ended without a result (worker "
                 "crash, kill or timeout)",
                 attempts, attempts - 1);
    return bs_reply_reject(w, &WORKER_MODE, m, o, err);
}

/* A failure to retry: the backoff, with the consumer polled (paused: no message expected) so
 * the group keeps us. Ends when the delay is over or a stop is asked. */
static void back_off(bs_worker *w, const bs_msg *m, int64_t delay, const bs_err *why,
                     volatile sig_atomic_t *stop)
{
    bs_log(BS_LOG_WARN, "worker",
           "transient failure partition=%" PRId32 " offset=%" PRId64
           " retry_in_ms=%lld error=\"%s\"",
           m->partition, m->offset, (long long)delay, why->msg);
    bs_arena_reset(w->ar);
    bs_err dberr = {0};
    bool db_ok = bs_store_check(w->store, &dberr) == 0;
    bs_metrics_lock(w->m);
    w->m->retries++;
    w->m->backoff++;
    w->m->db_ok = db_ok;
    snprintf(w->m->db_error, sizeof w->m->db_error, "%s", dberr.msg);
    snprintf(w->m->backoff_error, sizeof w->m->backoff_error, "%s", why->msg);
    bs_metrics_unlock(w->m);
    bs_consumer_pause(w->cons, true);
    const int64_t until = bs_mono_ms() + delay;
    while (!*stop && bs_mono_ms() < until) {
        /* large commands in progress go on meanwhile: the message may wait for one to end */
        bs_large_run(w, stop);
        bs_err perr = {0};
        bs_msg *other = bs_consumer_poll(w->cons, 100, &perr);
        if (other != NULL) /* paused: none expected; never skip one */
            bs_consumer_rewind(w->cons, other);
        bs_msg_free(other);
        bs_producer_poll(w->prod);
        bs_periodic_notify(w);
    }
    bs_consumer_pause(w->cons, false);
    bs_metrics_lock(w->m);
    w->m->backoff--;
    bs_metrics_unlock(w->m);
}

/* The unacked command's acknowledgements, awaited once the next message was handled (they
 * have mostly come by then), then its offset stored. If they failed or did not come within
 * flush_timeout_ms, it and next (the message handled since; NULL: none) go back to be
 * delivered again, next first so that a partition they share resumes at the lower offset: the
 * unacked command is found done, and its stored replies are published again and awaited
 * through the usual retries. -1 then. */
static int settle_unacked(bs_worker *w, const bs_msg *next)
{
    bs_msg *u = w->unacked.m;
    if (u == NULL) return 0;
    w->unacked.m = NULL;
    bs_err err = {0};
    const int64_t t0 = bs_mono_us();
    const int rc = bs_reply_wait_for(w, w->unacked.dv, &err);
    const double waited = (double)(bs_mono_us() - t0) / 1e6;
    bs_metrics_lock(w->m);
    w->m->phase_s[BS_PH_ACK] += waited; /* the command's last phase, not in its header */
    bs_hist_observe(&w->m->ack, waited);
    if (rc < 0) w->m->retries++;
    bs_metrics_unlock(w->m);
    if (rc == 0) {
        bs_failpoint("before_offset");
        bs_err serr = {0};
        if (bs_consumer_store(w->cons, u, &serr) < 0 && !bs_consumer_owns(w->cons, u))
            bs_log(BS_LOG_INFO, "worker",
                   "partition=%" PRId32 " revoked before offset=%" PRId64
                   " was acknowledged: its new owner publishes that command's replies again",
                   u->partition, u->offset);
        else if (serr.msg[0])
            bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
    } else {
        bs_log(BS_LOG_WARN, "worker",
               "replies not acknowledged partition=%" PRId32 " offset=%" PRId64
               ", it is delivered again%s: %s",
               u->partition, u->offset, next ? " with the message after it" : "", err.msg);
        if (next != NULL) bs_consumer_rewind(w->cons, next);
        bs_consumer_rewind(w->cons, u);
    }
    bs_msg_free(u);
    return rc;
}

/* m is not settled: it is delivered again, to whoever owns its partition. That is not a failed
 * delivery of m, so its count is taken back (an applied command's transaction cleared it
 * already). started_large: m started a large command, which lets go of m (its checkpoint is
 * in the database). Returns settle_message's answer. */
static int let_go(bs_worker *w, bs_msg *m, const bs_source *src, bool counted, bool started_large)
{
    bs_err uerr = {0};
    if (counted && bs_store_uncount_attempt(w->store, src, &uerr) < 0)
        bs_log(BS_LOG_WARN, "worker", "%s", uerr.msg);
    if (!started_large) return 0;
    bs_large_drop(w, m);
    return 1; /* (freed with the large command) */
}

/* One message, until it is settled, the partition is revoked or a stop is asked. Returns 0, 1
 * when the worker keeps the message (a large command in progress), 2 when it is the unacked
 * command now; -1 with err to stop. */
static int settle_message(bs_worker *w, bs_msg *m, volatile sig_atomic_t *stop, bs_err *err)
{
    int64_t backoff = w->cfg->retry_backoff_initial_ms;
    const int64_t taken_us = bs_mono_us();
    const bs_source src = {m->topic, m->partition, m->offset};
    bool counted = false; /* this delivery was counted in bulkstate.delivery_attempt */
    for (;;) {            /* ends: settled, a stop, a revoked partition, or a fatal error */
        bs_err herr = {0};
        bs_outcome o = {0};
        int attempts = 0, rc = -1;
        bool poisoned = false;
        w->cur = m;      /* (a large command's batch during a backoff sets its own) */
        w->count_us = 0; /* this delivery's count, when it is made now (bs_handle's clocks) */
        const int64_t count_start_us = bs_mono_us();
        if (!counted && bs_store_bump_attempt(w->store, &src, &attempts, &herr) == 0) {
            counted = true;
            w->count_us = bs_mono_us() - count_start_us;
            poisoned = bs_settle_is_poison(attempts, w->cfg->max_attempts);
            rc = poisoned ? reject_poison(w, m, attempts, &o, &herr)
                          : bs_handle(w, &WORKER_MODE, m, &o, &herr);
        } else if (counted) {
            rc = bs_handle(w, &WORKER_MODE, m, &o, &herr);
        }
        if (settle_unacked(w, m) < 0) /* the previous command goes again, and m after it */
            return let_go(w, m, &src, counted, rc == 0 && o.kind == BS_OUT_RUNNING);
        const bool rejecting = rc < 0 && o.kind == BS_OUT_REJECTED;
        switch (bs_settle_decide(rc == 0 ? NULL : &herr, rejecting, poisoned)) {
        case BS_SETTLE_DONE: {
            if (o.kind == BS_OUT_RUNNING) return 1; /* settled when its last batch is */
            bs_metrics_lock(w->m);
            bs_hist_observe(&w->m->latency, (double)(bs_mono_us() - taken_us) / 1e6);
            w->m->db_ok = true;
            bs_metrics_unlock(w->m);
            bs_periodic_status(w);
            if (o.unacked) { /* settled after the next message (settle_unacked) */
                w->unacked.m = m;
                w->unacked.dv = w->dv;
                w->dv = w->dv == &w->dvs[0] ? &w->dvs[1] : &w->dvs[0];
                return 2;
            }
            bs_failpoint("before_offset");
            bs_err serr = {0};
            if (bs_consumer_store(w->cons, m, &serr) < 0)
                bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
            /* an applied command's transaction cleared the count already */
            if (o.kind != BS_OUT_APPLIED && bs_store_clear_attempt(w->store, &src, &serr) < 0)
                bs_log(BS_LOG_WARN, "worker", "%s", serr.msg);
            return 0;
        }
        case BS_SETTLE_REJECT: /* bs_handle rejects what it can; this failed outside it */
        case BS_SETTLE_STOP:
            *err = herr;
            return -1;
        case BS_SETTLE_RETRY:
            break;
        }
        if (bs_settle_counts_attempt(&herr, rejecting)) counted = false;
        back_off(w, m, jitter(backoff), &herr, stop);
        if (*stop || !bs_consumer_owns(w->cons, m)) /* a clean stop, a rebalance */
            return let_go(w, m, &src, counted, false);
        backoff =
            backoff * 2 > w->cfg->retry_backoff_max_ms ? w->cfg->retry_backoff_max_ms : backoff * 2;
    }
}

/* SIGHUP: lane 0 sees the signal and tells the other lanes; each reloads the file itself. The
 * other lanes are told first, so that once lane 0 logs the reload, no lane handles a message
 * without it. */
static void reload_if_asked(bs_worker *w, volatile sig_atomic_t *reload_flag)
{
    if (w->lane == 0 && reload_flag && *reload_flag) {
        *reload_flag = 0;
        atomic_fetch_add(&w->reload_gen, 1);
        bs_periodic_reload(w, w->config_path);
    } else if (w->lane != 0 && atomic_load(&w->lane0->reload_gen) != w->reloads_seen) {
        w->reloads_seen = atomic_load(&w->lane0->reload_gen);
        bs_periodic_reload(w, w->config_path);
    }
}

/* One lane's loop, until *w->stop: 0, or -1 with err. */
static int lane_loop(bs_worker *w, volatile sig_atomic_t *reload_flag, bs_err *err)
{
    volatile sig_atomic_t *stop = w->stop;
    int rc = 0;
    while (!*stop) {
        bs_err perr = {0};
        reload_if_asked(w, reload_flag);
        const bool hold = bs_outbox_full(w->outbox); /* Prefect is behind: commands wait */
        if (hold != w->outbox_held) {
            if (w->lane == 0) /* (every lane holds; one says so) */
                bs_log(hold ? BS_LOG_WARN : BS_LOG_INFO, "worker", "%s",
                       hold ? "Prefect's outbox is full: commands wait for its events"
                            : "Prefect's outbox has room again: commands resume");
            bs_consumer_pause(w->cons, hold);
            w->outbox_held = hold;
        }
        if (hold) { /* polled paused (the group keeps us), until the delivery catches up */
            settle_unacked(w, NULL);
            bs_msg *other = bs_consumer_poll(w->cons, 100, &perr);
            if (other != NULL) bs_consumer_rewind(w->cons, other);
            bs_msg_free(other);
            bs_producer_poll(w->prod);
            bs_periodic_notify(w);
            continue;
        }
        /* large commands in progress: one batch each, then a short poll for other partitions */
        if (w->nlarge > 0) settle_unacked(w, NULL); /* offsets in order */
        bs_large_run(w, stop);
        const int timeout = w->unacked.m ? 0 : w->nlarge ? 10 : w->cfg->poll_timeout_ms;
        bs_msg *m = bs_consumer_poll(w->cons, timeout, &perr);
        bs_producer_poll(w->prod);
        bs_periodic_notify(w);
        bs_periodic_reap(w);
        reload_if_asked(w, reload_flag); /* again: a message the poll returned sees it */
        if (m == NULL) {
            settle_unacked(w, NULL); /* nothing to overlap with */
            if (perr.fatal) {
                *err = perr;
                rc = -1;
                break;
            }
            continue;
        }
        bs_metrics_lock(w->m);
        w->m->consumed++;
        bs_metrics_seen(w->m, m->topic, m->partition, m->timestamp_ms);
        bs_metrics_unlock(w->m);
        set_inflight(w, (int)w->nlarge + 1);
        const int kept = settle_message(w, m, stop, err);
        w->cur = NULL;
        if (kept <= 0) bs_msg_free(m);
        bs_arena_reset(w->ar);
        set_inflight(w, (int)w->nlarge); /* large commands still in progress */
        if (kept < 0) {
            rc = -1;
            break;
        }
    }
    settle_unacked(w, NULL);
    if (rc == 0) bs_large_release_all(w, "stopping");
    return rc;
}

static void *lane_thread(void *arg)
{
    bs_worker *w = arg;
    w->rc = lane_loop(w, NULL, &w->err);
    if (w->rc < 0) {
        bs_log(BS_LOG_ERROR, "worker", "thread %d failed, stopping the worker: %s", w->lane,
               w->err.msg);
        *w->stop = 1; /* the process stops as a whole: systemd restarts it */
    }
    return NULL;
}

int bs_worker_run(bs_worker *w, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload_flag,
                  const char *config_path, bs_err *err)
{
    bs_log(BS_LOG_INFO, "worker", "started topic=%s group=%s reply_topic=%s framing=%s threads=%zu",
           w->cfg->command_topic, bs_config_get_kafka(w->cfg, "group.id"), w->cfg->reply_topic,
           bs_framing_name(w->framing), w->nlanes);
    srand((unsigned)bs_now_us());
    for (size_t i = 0; i < w->nlanes; i++) {
        w->lanes[i]->stop = stop;
        w->lanes[i]->config_path = config_path;
        atomic_store(&w->lanes[i]->turn_us, bs_mono_us());
    }
    /* signals go to this thread: the lanes' threads start with them blocked */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = 0;
    for (size_t i = 1; i < w->nlanes && rc == 0; i++) {
        const int e = pthread_create(&w->lanes[i]->thread, NULL, lane_thread, w->lanes[i]);
        if (e != 0) {
            bs_err_fatal(err, BS_EINVAL, "could not start worker thread %zu: %s", i, strerror(e));
            rc = -1;
        }
        w->lanes[i]->started = e == 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0) rc = lane_loop(w, reload_flag, err);
    if (rc < 0) *stop = 1;
    bs_notify("STOPPING=1");
    bs_log(BS_LOG_INFO, "worker", "stopping");
    for (size_t i = 1; i < w->nlanes; i++) {
        if (!w->lanes[i]->started) continue;
        pthread_join(w->lanes[i]->thread, NULL);
        w->lanes[i]->started = false;
        if (rc == 0 && w->lanes[i]->rc < 0) {
            *err = w->lanes[i]->err;
            rc = -1;
        }
    }
    return rc;
}
