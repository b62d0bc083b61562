/* outbox: the delivery of state-change events to Prefect's server, on a thread of its own with
 * its own PostgreSQL connection, so Prefect being down, slow or refusing never blocks the
 * command path (until the outbox holds prefect.outbox_max events: then commands wait). What
 * the events are built from was recorded in the commands' transactions (bulkstate.prefect_outbox:
 * one row per batch, naming its results); this thread builds the events, posts them in seq
 * order, oldest first, and deletes them once Prefect answered 2xx. A crash between the answer and
 * the delete posts them again: Prefect dedupes events by id. One deliverer per database (an
 * advisory lock), so a run's events go out in commit order. */
#include "outbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "ids.h"
#include "log.h"

struct bs_outbox {
    pthread_t thread;
    atomic_bool stop, full;
    bs_store_conf sc;
    char *conninfo;
    bs_prefect *pf;
    bs_metrics *m;
    int batch, max;
    int rate;          /* events per second at most, on average */
    double tokens;     /* pacing: events that may go now (a token bucket) */
    int64_t refill_us; /* monotonic time tokens was last refilled */
};

/* Sleeps ms, in steps, ending early on stop. */
static void nap(bs_outbox *ob, int64_t ms)
{
    const int64_t until = bs_mono_ms() + ms;
    while (!atomic_load(&ob->stop) && bs_mono_ms() < until) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void failed(bs_outbox *ob, const bs_err *err, int64_t *backoff_ms, int64_t *last_log_ms)
{
    bs_metrics_lock(ob->m);
    ob->m->prefect_failures++;
    snprintf(ob->m->prefect_error, sizeof ob->m->prefect_error, "%s", err->msg);
    bs_metrics_unlock(ob->m);
    const int64_t now = bs_mono_ms();
    if (now - *last_log_ms >= 30000) { /* once per 30 s while it lasts */
        bs_log(BS_LOG_WARN, "outbox", "event delivery failed, retrying in %lld ms error=\"%s\"",
               (long long)*backoff_ms, err->msg);
        *last_log_ms = now;
    }
    nap(ob, *backoff_ms);
    *backoff_ms = *backoff_ms * 2 > 30000 ? 30000 : *backoff_ms * 2;
}

/* The events of the rows that name what to build them from: the states the take read and
 * the runs' related objects as they are now. Returns 0, or -1 with err (the database). */
static int build(bs_store *st, bs_arena *ar, bs_outbox_rows *r, bs_err *err)
{
    const char **ids = bs_arena_alloc(ar, sizeof(char *) * (r->n ? r->n : 1));
    const char **ctx = bs_arena_alloc(ar, sizeof(char *) * (r->n ? r->n : 1));
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->event[i] == NULL) ids[k++] = r->flow_run_id[i];
    if (k == 0) return 0;
    if (bs_store_event_context(st, ar, ids, k, ctx, err) < 0) return -1;
    k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->event[i] != NULL) continue;
        char *text = bs_event_json(&r->initial[i], &r->validated[i], r->flow_run_id[i],
                                   r->run_count[i], ctx[k++]);
        r->event[i] = bs_arena_strdup(ar, text);
        free(text);
    }
    return 0;
}

/* The JSON array of events [from, to). */
static char *array_of(const bs_outbox_rows *r, size_t from, size_t to, size_t *len)
{
    size_t n = 2;
    for (size_t i = from; i < to; i++)
        n += strlen(r->event[i]) + 1;
    char *s = bs_xmalloc(n + 1), *p = s;
    *p++ = '[';
    for (size_t i = from; i < to; i++) {
        if (i > from) *p++ = ',';
        size_t k = strlen(r->event[i]);
        memcpy(p, r->event[i], k);
        p += k;
    }
    *p++ = ']';
    *p = '\0';
    *len = (size_t)(p - s);
    return s;
}

static void delivered(bs_outbox *ob, const bs_outbox_rows *r, size_t from, size_t to)
{
    const int64_t now = bs_now_us();
    bs_metrics_lock(ob->m);
    for (size_t i = from; i < to; i++)
        bs_hist_observe(&ob->m->prefect_delay, (double)(now - r->created_us[i]) / 1e6);
    ob->m->prefect_delivered += to - from;
    ob->m->prefect_error[0] = '\0';
    bs_metrics_unlock(ob->m);
}

/* The tokens earned since the last refill, up to burst. */
static void refill(bs_outbox *ob, double burst)
{
    const int64_t now = bs_mono_us();
    ob->tokens += (double)(now - ob->refill_us) * ob->rate / 1e6;
    if (ob->tokens > burst) ob->tokens = burst;
    ob->refill_us = now;
}

/* Keeps deliveries at ob->rate events per second on average, in bursts of at most two
 * seconds' worth (a token bucket): Prefect's in-memory event bus holds 10,000 events per
 * subscriber and drops the rest while still answering 204, so a backlog must be fed to it at
 * the pace its services consume, not at once; events arriving below that pace go at once. */
static void pace(bs_outbox *ob, size_t n)
{
    const double burst = 2.0 * ob->rate > (double)n ? 2.0 * ob->rate : (double)n;
    refill(ob, burst);
    if (ob->tokens < (double)n) {
        nap(ob, (int64_t)(((double)n - ob->tokens) * 1000.0 / ob->rate) + 1);
        refill(ob, burst);
    }
    ob->tokens -= (double)n;
}

/* Posts rows [from, to) and deletes what Prefect took. A refused batch is posted again event
 * by event, so one bad event is set aside and the others still go. Returns 0, or -1 with err
 * (retriable: try the same rows again later). */
static int deliver(bs_outbox *ob, bs_store *st, bs_arena *ar, const bs_outbox_rows *r, size_t from,
                   size_t to, bs_err *err)
{
    size_t len;
    pace(ob, to - from);
    char *body = array_of(r, from, to, &len);
    int rc = bs_prefect_post_events(ob->pf, body, len, err);
    free(body);
    if (rc == 0) {
        delivered(ob, r, from, to);
        return bs_store_outbox_done(st, ar, r, from, to, err);
    }
    if (err->retriable) return -1;
    if (to - from > 1) {
        for (size_t i = from; i < to; i++)
            if (deliver(ob, st, ar, r, i, i + 1, err) < 0) return -1;
        return 0;
    }
    bs_log(BS_LOG_ERROR, "outbox", "Prefect refused event seq=%lld flow_run_id=%s error=\"%s\"",
           (long long)r->seq[from], r->flow_run_id[from], err->msg);
    bs_metrics_lock(ob->m);
    ob->m->prefect_refused++;
    bs_metrics_unlock(ob->m);
    const char *answer = bs_arena_strdup(ar, err->msg);
    *err = (bs_err){0};
    return bs_store_outbox_refuse(st, ar, r, from, answer, err);
}

/* The leases of Prefect's server that committed transitions release. Returns 0, or -1 with
 * err (try again later). */
static int release_leases(bs_outbox *ob, bs_store *st, bs_arena *ar, size_t *n, bs_err *err)
{
    bs_lease_releases r;
    if (bs_store_lease_releases_take(st, ar, ob->batch, &r, err) < 0) return -1;
    *n = r.n;
    for (size_t i = 0; i < r.n; i++) {
        bool gone = false;
        if (r.lease_id[i] == NULL) { /* a task run's tag-limit leases */
            if (bs_prefect_release_task_slots(ob->pf, r.task_run_id[i], r.tags[i], err) < 0 ||
                bs_store_lease_release_done(st, ar, r.seq[i], NULL, err) < 0)
                return -1;
            continue;
        }
        if (bs_prefect_release_lease(ob->pf, r.lease_id[i], &gone, err) < 0) return -1;
        if (gone)
            bs_log(BS_LOG_INFO, "outbox",
                   "lease %s no longer held by Prefect: one slot freed on limit %s", r.lease_id[i],
                   r.fallback_limit[i] ? r.fallback_limit[i] : "(none)");
        if (bs_store_lease_release_done(st, ar, r.seq[i], gone ? r.fallback_limit[i] : NULL, err) <
            0)
            return -1;
    }
    return 0;
}

/* Depth and lag into the metrics, and whether commands must wait. */
static int measure(bs_outbox *ob, bs_store *st, bs_err *err)
{
    int64_t depth;
    double oldest;
    if (bs_store_outbox_depth(st, &depth, &oldest, err) < 0) return -1;
    atomic_store(&ob->full, depth >= ob->max);
    bs_metrics_lock(ob->m);
    ob->m->outbox_depth = depth;
    ob->m->outbox_oldest_s = oldest;
    bs_metrics_unlock(ob->m);
    return 0;
}

/* A connection that LISTENs and leads; NULL (and a nap) when it cannot be had. */
static bs_store *connect_leader(bs_outbox *ob, bs_err *err)
{
    bs_store *st = bs_store_new(&ob->sc, err);
    bool lead = false;
    if (st == NULL || bs_store_outbox_listen(st, err) < 0) goto fail;
    /* bounded by stop: another worker may lead for as long as it lives */
    while (!atomic_load(&ob->stop)) {
        if (bs_store_outbox_lead(st, &lead, err) < 0) goto fail;
        if (lead) return st;
        if (measure(ob, st, err) < 0) goto fail;
        nap(ob, 1000);
    }
fail:
    bs_store_free(st);
    return NULL;
}

static void *run(void *arg)
{
    bs_outbox *ob = arg;
    bs_arena *ar = bs_arena_new();
    bs_store *st = NULL;
    int64_t backoff = 200, last_log = -30000, next_measure = 0;
    while (!atomic_load(&ob->stop)) { /* ends at stop; every failure naps, then tries again */
        bs_err err = {0};
        bs_arena_reset(ar);
        if (st == NULL && (st = connect_leader(ob, &err)) == NULL) {
            if (!atomic_load(&ob->stop)) failed(ob, &err, &backoff, &last_log);
            continue;
        }
        if (bs_mono_ms() >= next_measure) {
            if (measure(ob, st, &err) < 0) goto lost;
            next_measure = bs_mono_ms() + 1000;
        }
        size_t nleases = 0;
        if (release_leases(ob, st, ar, &nleases, &err) < 0) goto failure;
        bs_outbox_rows r;
        if (bs_store_outbox_take(st, ar, ob->batch, &r, &err) < 0 || build(st, ar, &r, &err) < 0)
            goto lost;
        if (r.n == 0 && nleases == 0) { /* idle: wait for a commit that wrote events */
            if (bs_store_wait_notify(st, 1000, &err) < 0) goto lost;
            continue;
        }
        if (r.n > 0 && deliver(ob, st, ar, &r, 0, r.n, &err) < 0) goto failure;
        backoff = 200;
        continue;
    failure: /* Prefect's answer: the same rows later; the database's: reconnect first */
        if (err.code != BS_EDB && err.code != BS_ETIMEOUT) {
            failed(ob, &err, &backoff, &last_log);
            continue;
        }
    lost: /* the database: a new connection (and the lock again) */
        bs_store_free(st);
        st = NULL;
        failed(ob, &err, &backoff, &last_log);
    }
    bs_store_free(st);
    bs_arena_free(ar);
    return NULL;
}

bs_outbox *bs_outbox_start(const bs_config *cfg, bs_metrics *m, bs_err *err)
{
    const bs_prefect_conf pc = bs_config_prefect_conf(cfg);
    bs_prefect *pf = bs_prefect_new(&pc, err);
    if (pf == NULL) return NULL;
    bs_outbox *ob = bs_xcalloc(1, sizeof *ob);
    ob->pf = pf;
    ob->m = m;
    ob->batch = cfg->prefect_batch_events;
    ob->rate = cfg->prefect_max_events_per_s;
    ob->refill_us = bs_mono_us();
    ob->tokens = ob->rate; /* a second's worth at the start */
    ob->max = cfg->prefect_outbox_max;
    ob->conninfo = bs_xstrdup(cfg->conninfo);
    ob->sc = bs_config_store_conf(cfg);
    ob->sc.conninfo = ob->conninfo;
    atomic_init(&ob->stop, false);
    atomic_init(&ob->full, false);
    bs_metrics_lock(m);
    m->prefect_on = true;
    m->outbox_max = cfg->prefect_outbox_max;
    m->outbox_lag_alert_s = cfg->prefect_lag_alert_s;
    bs_metrics_unlock(m);
    if (pthread_create(&ob->thread, NULL, run, ob) != 0) {
        bs_prefect_free(pf);
        free(ob->conninfo);
        free(ob);
        bs_err_fatal(err, BS_ESYS, "could not start the event delivery thread");
        return NULL;
    }
    bs_log(BS_LOG_INFO, "outbox", "delivering events to Prefect at %s", cfg->prefect_api_url);
    return ob;
}

bool bs_outbox_full(const bs_outbox *ob)
{
    return ob != NULL && atomic_load(&((bs_outbox *)ob)->full);
}

void bs_outbox_stop(bs_outbox *ob)
{
    if (ob == NULL) return;
    atomic_store(&ob->stop, true);
    pthread_join(ob->thread, NULL);
    bs_prefect_free(ob->pf);
    free(ob->conninfo);
    free(ob);
}
