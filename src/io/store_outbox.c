/* store_outbox: Prefect's outbox (bulkstate.prefect_outbox), read by the delivery thread on
 * its own connection: the oldest events first, deleted once delivered, moved aside when
 * Prefect refuses one. A session advisory lock makes one deliverer per database, so events of
 * one run go out in their commit order whatever the number of workers. */
#include <poll.h>

#include "log.h"
#include "store_int.h"

#define OUTBOX_LOCK "7301180625" /* pg_advisory_lock key of the deliverer */

int bs_store_outbox_take(bs_store *st, bs_arena *ar, int limit, bs_outbox_rows *out, bs_err *err)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[1] = {lim};
    PGresult *res =
        bs_pg_exec(st,
                   "SELECT o.seq, " BS_PG_US(
                       "o.created") ", o.flow_run_id::text, COALESCE(o.event, r.event) "
                                    "FROM bulkstate.prefect_outbox o "
                                    "LEFT JOIN bulkstate.command_result r "
                                    "  ON r.command_id = o.command_id AND r.seq = o.result_seq "
                                    "ORDER BY o.seq LIMIT $1::int",
                   1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "read Prefect's outbox");
    const size_t n = (size_t)PQntuples(res), cap = n ? n : 1;
    out->n = n;
    out->seq = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    out->created_us = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    out->flow_run_id = bs_arena_alloc(ar, sizeof(char *) * cap);
    out->event = bs_arena_alloc(ar, sizeof(char *) * cap);
    int64_t *gone = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    size_t k = 0, ngone = 0;
    for (size_t i = 0; i < n; i++) {
        const int64_t seq = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        if (PQgetisnull(res, (int)i, 3)) { /* its command was purged since: nothing to send */
            gone[ngone++] = seq;
            continue;
        }
        out->seq[k] = seq;
        out->created_us[k] = bs_pg_col_ts(res, (int)i, 1);
        out->flow_run_id[k] = bs_arena_strdup(ar, PQgetvalue(res, (int)i, 2));
        out->event[k] = bs_arena_strdup(ar, PQgetvalue(res, (int)i, 3));
        k++;
    }
    out->n = k;
    PQclear(res);
    if (ngone > 0) {
        bs_log(BS_LOG_WARN, "outbox", "%zu events dropped: their commands' records were deleted",
               ngone);
        return bs_store_outbox_delete(st, ar, gone, ngone, err);
    }
    return 0;
}

int bs_store_outbox_delete(bs_store *st, bs_arena *ar, const int64_t *seq, size_t n, bs_err *err)
{
    const char **s = bs_arena_alloc(ar, sizeof(char *) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        s[i] = bs_arena_printf(ar, "%" PRId64, seq[i]);
    const char *p[1] = {bs_pg_array(ar, s, n)};
    return bs_pg_exec_ok(st, "DELETE FROM bulkstate.prefect_outbox WHERE seq = ANY($1::bigint[])",
                         1, p, "delete delivered events", err);
}

int bs_store_outbox_refuse(bs_store *st, bs_arena *ar, int64_t seq, const char *answer, bs_err *err)
{
    const char *p[2] = {bs_arena_printf(ar, "%" PRId64, seq), answer};
    return bs_pg_exec_ok(st,
                         "WITH r AS (DELETE FROM bulkstate.prefect_outbox WHERE seq = $1::bigint "
                         "RETURNING seq, flow_run_id, event, created, command_id, result_seq) "
                         "INSERT INTO bulkstate.prefect_outbox_refused (seq, flow_run_id, event, "
                         "created, answer) SELECT r.seq, r.flow_run_id, "
                         "COALESCE(r.event, c.event, ''), r.created, $2 FROM r "
                         "LEFT JOIN bulkstate.command_result c "
                         "  ON c.command_id = r.command_id AND c.seq = r.result_seq "
                         "ON CONFLICT (seq) DO NOTHING",
                         2, p, "set a refused event aside", err);
}

int bs_store_outbox_depth(bs_store *st, int64_t *depth, double *oldest_s, bs_err *err)
{
    PGresult *res =
        bs_pg_exec(st,
                   "SELECT count(*), COALESCE(extract(epoch FROM clock_timestamp() - "
                   "min(created)), 0) FROM (SELECT created FROM bulkstate.prefect_outbox "
                   "UNION ALL SELECT created FROM bulkstate.prefect_lease_release) o",
                   0, NULL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "measure Prefect's outbox");
    *depth = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    *oldest_s = strtod(PQgetvalue(res, 0, 1), NULL);
    PQclear(res);
    return 0;
}

int bs_store_outbox_lead(bs_store *st, bool *got, bs_err *err)
{
    PGresult *res = bs_pg_exec(st, "SELECT pg_try_advisory_lock(" OUTBOX_LOCK ")", 0, NULL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "take the outbox's lock");
    *got = bs_pg_col_bool(res, 0, 0);
    PQclear(res);
    return 0;
}

int bs_store_outbox_listen(bs_store *st, bs_err *err)
{
    return bs_pg_exec_ok(st, "LISTEN bulkstate_prefect_outbox", 0, NULL, "listen for events", err);
}

int bs_store_wait_notify(bs_store *st, int timeout_ms, bs_err *err)
{
    int got = 0;
    PGnotify *n;
    if (PQconsumeInput(st->conn) == 0) return bs_pg_fail(st, NULL, err, "wait for events");
    while ((n = PQnotifies(st->conn)) != NULL) { /* already here */
        got = 1;
        PQfreemem(n);
    }
    if (got) return 1;
    struct pollfd pfd = {.fd = PQsocket(st->conn), .events = POLLIN};
    if (pfd.fd < 0) return bs_pg_fail(st, NULL, err, "wait for events");
    if (poll(&pfd, 1, timeout_ms) <= 0) return 0;
    if (PQconsumeInput(st->conn) == 0) return bs_pg_fail(st, NULL, err, "wait for events");
    while ((n = PQnotifies(st->conn)) != NULL) {
        got = 1;
        PQfreemem(n);
    }
    return got;
}

int bs_store_lease_releases_take(bs_store *st, bs_arena *ar, int limit, bs_lease_releases *out,
                                 bs_err *err)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[1] = {lim};
    PGresult *res = bs_pg_exec(st,
                               "SELECT seq, lease_id::text, fallback_limit_id::text, "
                               "task_run_id::text, tags::text FROM "
                               "bulkstate.prefect_lease_release ORDER BY seq LIMIT $1::int",
                               1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "read the lease releases");
    const size_t n = (size_t)PQntuples(res), cap = n ? n : 1;
    out->n = n;
    out->seq = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    out->lease_id = bs_arena_alloc(ar, sizeof(char *) * cap);
    out->fallback_limit = bs_arena_alloc(ar, sizeof(char *) * cap);
    out->task_run_id = bs_arena_alloc(ar, sizeof(char *) * cap);
    out->tags = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (size_t i = 0; i < n; i++) {
        out->seq[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        out->lease_id[i] = bs_pg_col_str(res, (int)i, 1, ar);
        out->fallback_limit[i] = bs_pg_col_str(res, (int)i, 2, ar);
        out->task_run_id[i] = bs_pg_col_str(res, (int)i, 3, ar);
        out->tags[i] = bs_pg_col_str(res, (int)i, 4, ar);
    }
    PQclear(res);
    return 0;
}

int bs_store_lease_release_done(bs_store *st, bs_arena *ar, int64_t seq, const char *fallback,
                                bs_err *err)
{
    const char *p[2] = {bs_arena_printf(ar, "%" PRId64, seq), fallback};
    return bs_pg_exec_ok(st,
                         "WITH done AS (DELETE FROM bulkstate.prefect_lease_release "
                         "WHERE seq = $1::bigint) "
                         "UPDATE concurrency_limit_v2 SET active_slots = GREATEST(0, "
                         "active_slots - 1), updated = now() WHERE id = $2::uuid AND active",
                         2, p, "record a lease release", err);
}
