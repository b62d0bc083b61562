/* store_outbox: Prefect's outbox (bulkstate.prefect_outbox), read by the delivery thread on
 * its own connection: the oldest events first, deleted once delivered, moved aside when
 * Prefect refuses one. A session advisory lock makes one deliverer per database, so events of
 * one run go out in their commit order whatever the number of workers. */
#include <poll.h>

#include "log.h"
#include "store_int.h"

#define OUTBOX_LOCK "7301180625" /* pg_advisory_lock key of the deliverer */

/* The oldest outbox rows, expanded into their events (those of the command_result rows each
 * names): the event stored, or the states its event is built from (the one written and the
 * run's before it). A row whose command's records were purged since, or whose run was deleted
 * (its states with it), comes back with neither. */
/* clang-format off */
static const char SQL_OUTBOX_TAKE[] =
    "SELECT o.seq, COALESCE(r.seq, -1), " BS_PG_US("o.created") ", "
    "  COALESCE(r.flow_run_id, o.flow_run_id)::text, COALESCE(o.event, r.event), r.run_count, "
    "  " BS_PG_STATE_COLS("s") ", " BS_PG_STATE_COLS("p") " "
    "FROM (SELECT * FROM bulkstate.prefect_outbox ORDER BY seq LIMIT $1::int) o "
    "LEFT JOIN bulkstate.command_result r ON o.event IS NULL AND r.command_id = o.command_id "
    "  AND r.seq BETWEEN o.result_seq AND COALESCE(o.result_last, o.result_seq) "
    "  AND (r.event IS NOT NULL OR r.state_id IS NOT NULL) "
    "LEFT JOIN flow_run_state s ON r.event IS NULL AND s.id = r.state_id "
    "LEFT JOIN flow_run_state p ON r.event IS NULL AND p.id = r.prior_state_id "
    "ORDER BY o.seq, r.seq LIMIT $1::int";
/* clang-format on */

/* Delivered events, as (outbox seq, result seq) pairs: a row whose last event went is deleted,
 * another moves past its last delivered event. */
static const char SQL_OUTBOX_DONE[] =
    "WITH d AS (SELECT o, max(r) AS r, count(*)::int AS n "
    "  FROM unnest($1::bigint[], $2::int[]) AS u(o, r) GROUP BY o), "
    "gone AS (DELETE FROM bulkstate.prefect_outbox x USING d WHERE x.seq = d.o "
    "  AND (d.r < 0 OR d.r >= COALESCE(x.result_last, x.result_seq))) "
    "UPDATE bulkstate.prefect_outbox x SET result_seq = d.r + 1, events = x.events - d.n "
    "FROM d WHERE x.seq = d.o AND d.r >= 0 AND d.r < COALESCE(x.result_last, x.result_seq)";

int bs_store_outbox_take(bs_store *st, bs_arena *ar, int limit, bs_outbox_rows *out, bs_err *err)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[1] = {lim};
    PGresult *res = bs_pg_exec_prepared(st, SQL_OUTBOX_TAKE, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "read Prefect's outbox");
    const size_t n = (size_t)PQntuples(res), cap = n ? n : 1;
    out->seq = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    out->result_seq = bs_arena_alloc(ar, sizeof(int) * cap);
    out->created_us = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    out->flow_run_id = bs_arena_alloc(ar, sizeof(char *) * cap);
    out->event = bs_arena_alloc(ar, sizeof(char *) * cap);
    out->run_count = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    out->validated = bs_arena_alloc(ar, sizeof(bs_state) * cap);
    out->initial = bs_arena_alloc(ar, sizeof(bs_state) * cap);
    bs_outbox_rows gone = {.seq = bs_arena_alloc(ar, sizeof(int64_t) * cap),
                           .result_seq = bs_arena_alloc(ar, sizeof(int) * cap)};
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const int64_t seq = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        if (PQgetisnull(res, (int)i, 4) && PQgetisnull(res, (int)i, 6)) {
            gone.seq[gone.n] = seq; /* its command was purged, or its run deleted, since */
            gone.result_seq[gone.n++] = -1;
            continue;
        }
        out->seq[k] = seq;
        out->result_seq[k] = atoi(PQgetvalue(res, (int)i, 1));
        out->created_us[k] = bs_pg_col_ts(res, (int)i, 2);
        out->flow_run_id[k] = bs_pg_col_str(res, (int)i, 3, ar);
        out->event[k] = bs_pg_col_str(res, (int)i, 4, ar);
        out->run_count[k] =
            PQgetisnull(res, (int)i, 5) ? 0 : strtoll(PQgetvalue(res, (int)i, 5), NULL, 10);
        bs_pg_col_state(res, (int)i, 6, ar, &out->validated[k]);
        bs_pg_col_state(res, (int)i, 12, ar, &out->initial[k]);
        k++;
    }
    out->n = k;
    PQclear(res);
    if (gone.n > 0) {
        bs_log(BS_LOG_WARN, "outbox",
               "%zu outbox events dropped: their commands' records or their runs were deleted",
               gone.n);
        return bs_store_outbox_done(st, ar, &gone, 0, gone.n, err);
    }
    return 0;
}

int bs_store_outbox_done(bs_store *st, bs_arena *ar, const bs_outbox_rows *r, size_t from,
                         size_t to, bs_err *err)
{
    const size_t n = to - from;
    const char **o = bs_arena_alloc(ar, sizeof(char *) * (n ? n : 1));
    const char **q = bs_arena_alloc(ar, sizeof(char *) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        o[i] = bs_arena_printf(ar, "%" PRId64, r->seq[from + i]);
        q[i] = bs_arena_printf(ar, "%d", r->result_seq[from + i]);
    }
    const char *p[2] = {bs_pg_array(ar, o, n), bs_pg_array(ar, q, n)};
    return bs_pg_exec_prepared_ok(st, SQL_OUTBOX_DONE, 2, p, "record delivered events", err);
}

int bs_store_outbox_refuse(bs_store *st, bs_arena *ar, const bs_outbox_rows *r, size_t i,
                           const char *answer, bs_err *err)
{
    const char *p[4] = {bs_arena_printf(ar, "%" PRId64, r->seq[i]), r->flow_run_id[i], r->event[i],
                        answer};
    if (bs_store_begin(st, err) < 0) return -1;
    if (bs_pg_exec_ok(st,
                      "INSERT INTO bulkstate.prefect_outbox_refused (seq, flow_run_id, event, "
                      "created, answer) SELECT nextval(pg_get_serial_sequence("
                      "'bulkstate.prefect_outbox', 'seq')), $2::uuid, $3, o.created, $4 "
                      "FROM bulkstate.prefect_outbox o WHERE o.seq = $1::bigint",
                      4, p, "set a refused event aside", err) < 0 ||
        bs_store_outbox_done(st, ar, r, i, i + 1, err) < 0) {
        bs_store_rollback(st);
        return -1;
    }
    return bs_store_commit(st, err);
}

int bs_store_outbox_depth(bs_store *st, int64_t *depth, double *oldest_s, bs_err *err)
{
    PGresult *res =
        bs_pg_exec(st,
                   "SELECT COALESCE(sum(n), 0), COALESCE(extract(epoch FROM clock_timestamp() - "
                   "min(created)), 0) FROM (SELECT COALESCE(events, 1) AS n, created FROM "
                   "bulkstate.prefect_outbox UNION ALL SELECT 1, created FROM "
                   "bulkstate.prefect_lease_release) o",
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
