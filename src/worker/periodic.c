/* periodic: what the worker does between commands: the expired-lease reaper, systemd's
 * notify protocol (READY, WATCHDOG, STATUS), the SIGHUP reload, and librdkafka's statistics
 * (consumer lag) into the metrics. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "worker_int.h"

void bs_periodic_on_stats(const char *json, size_t len, void *ctx)
{
    bs_worker *w = ctx;
    if (bs_metrics_lag_from_stats(w->m, w->lane, json, len) < 0)
        bs_log(BS_LOG_DEBUG, "worker", "unreadable librdkafka statistics");
}

/* Every lease_reap_interval_ms: expired deployment-concurrency leases give their slots back
 * (a failure is logged and tried again at the next interval). */
void bs_periodic_reap(bs_worker *w)
{
    if (w->lane != 0) return; /* one reaper per process */
    int64_t now = bs_now_us();
    if (now < w->next_reap_us) return;
    w->next_reap_us = now + (int64_t)w->cfg->lease_reap_interval_ms * 1000;
    bs_err err = {0};
    int leases, slots;
    if (bs_store_check(w->store, &err) < 0 ||
        bs_store_reap_leases(w->store, w->ar, &leases, &slots, &err) < 0)
        bs_log(BS_LOG_WARN, "worker", "lease reaper: %s", err.msg);
    else if (leases > 0) {
        bs_log(BS_LOG_INFO, "worker", "lease reaper: expired_leases=%d slots_freed=%d", leases,
               slots);
        bs_metrics_lock(w->m);
        w->m->reaped_slots += (uint64_t)slots;
        bs_metrics_unlock(w->m);
    }
    bs_arena_reset(w->ar);
}

/* systemd: READY=1 once every thread's consumer has joined the group, partitions are assigned
 * and PostgreSQL answered (so not while the group still rebalances as the threads join one
 * after the other); WATCHDOG=1 while
 * every thread's loop turns. All no-ops outside systemd. Each thread keeps its share of the
 * assigned partitions in the metrics; the main thread (lane 0) speaks for the process. */
void bs_periodic_notify(bs_worker *w)
{
    const int assigned = bs_consumer_assigned(w->cons);
    const int64_t now = bs_mono_us();
    atomic_store(&w->turn_us, now);
    bs_metrics_lock(w->m);
    w->m->assigned += assigned - w->m->thread_assigned[w->lane];
    w->m->thread_assigned[w->lane] = assigned;
    w->m->thread_joined[w->lane] = bs_consumer_joined(w->cons);
    const bool all_joined = bs_metrics_all_joined(w->m);
    const int total = w->m->assigned;
    const bool db_ok = w->m->db_ok;
    bs_metrics_unlock(w->m);
    if (w->lane != 0) return;
    if (!w->ready_sent && all_joined && total > 0 && db_ok) {
        char msg[160];
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=ready: %d partitions assigned", total);
        bs_notify(msg);
        w->ready_sent = true;
        bs_log(BS_LOG_INFO, "worker", "ready partitions=%d threads=%zu", total, w->nlanes);
    }
    if (w->watchdog_us > 0 && now >= w->next_watchdog_us) {
        /* a thread stuck longer than the interval withholds the ping: systemd restarts us */
        size_t stuck = 0;
        for (size_t i = 1; i < w->nlanes; i++)
            if (now - atomic_load(&w->lanes[i]->turn_us) > w->watchdog_us) stuck = i;
        if (stuck == 0)
            bs_notify("WATCHDOG=1");
        else
            bs_log(BS_LOG_WARN, "worker", "thread %zu has not turned for %lld ms: no watchdog ping",
                   stuck, (long long)((now - atomic_load(&w->lanes[stuck]->turn_us)) / 1000));
        w->next_watchdog_us = now + w->watchdog_us;
    }
}

/* STATUS=: a one-line summary, after each command (the process's figures). */
void bs_periodic_status(bs_worker *w)
{
    bs_metrics_lock(w->m);
    const uint64_t commands = w->m->commands, transitions = w->m->transitions;
    const int assigned = w->m->assigned;
    bs_metrics_unlock(w->m);
    char msg[200];
    snprintf(msg, sizeof msg, "STATUS=%" PRIu64 " commands, %" PRIu64 " runs; %d partitions",
             commands, transitions, assigned);
    bs_notify(msg);
}

/* SIGHUP: the reloadable keys are applied; a config that does not load is not, and the log
 * says why. Every thread reloads its own copy; the main thread's reload is the one logged. */
void bs_periodic_reload(bs_worker *w, const char *path)
{
    char *errs = NULL, *changes = NULL;
    size_t errs_len = 0, changes_len = 0;
    FILE *ef = open_memstream(&errs, &errs_len), *cf = open_memstream(&changes, &changes_len);
    int rc = bs_config_reload(w->cfg, path, ef, cf);
    fclose(ef);
    fclose(cf);
    if (w->lane != 0) {
        free(errs);
        free(changes);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(changes, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        bs_log(BS_LOG_INFO, "worker", "reload: %s", line);
    if (rc < 0) {
        for (char *p = errs; p && *p; p++)
            if (*p == '\n' && p[1]) *p = ';';
        bs_log(BS_LOG_ERROR, "worker", "reload failed, keeping the running configuration: %s",
               errs ? errs : "");
    } else {
        bs_log_setup((bs_log_level)bs_log_level_parse(w->cfg->log_level),
                     strcmp(w->cfg->log_format, "json") == 0);
        bs_log(BS_LOG_INFO, "worker", "reloaded %s: %d key%s applied",
               path ? path : "(environment)", rc, rc == 1 ? "" : "s");
    }
    free(errs);
    free(changes);
}
