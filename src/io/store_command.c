/* store_command: bulkstate's own records. The command row (claimed in the transaction that
 * applies the command, or that starts a large one; its status, totals and a large command's
 * checkpoint), the replies and events recorded with it, and the delivery counts that find
 * poison messages. */
#include "store_int.h"

/* the columns of a command row that bs_progress holds, in load_progress's order */
#define PROGRESS_COLS                                                                              \
    "COALESCE(snapshot_max_id::text, ''), COALESCE(snapshot_at::text, ''), "                       \
    "COALESCE(last_id::text, ''), batches, acked_seq, matched, accepted, rejected, waited, "       \
    "aborted, cancel_requested, status, cancelled"

/* row 0 from column c on */
static void load_progress(const PGresult *res, int c, bs_progress *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->snapshot_max_id, sizeof p->snapshot_max_id, "%s", PQgetvalue(res, 0, c));
    snprintf(p->snapshot_at, sizeof p->snapshot_at, "%s", PQgetvalue(res, 0, c + 1));
    snprintf(p->last_id, sizeof p->last_id, "%s", PQgetvalue(res, 0, c + 2));
    p->batches = atoi(PQgetvalue(res, 0, c + 3));
    p->acked_seq = atoi(PQgetvalue(res, 0, c + 4));
    p->matched = atoi(PQgetvalue(res, 0, c + 5));
    for (int i = 0; i < 4; i++)
        p->counts[i] = atoi(PQgetvalue(res, 0, c + 6 + i));
    p->cancel_requested = bs_pg_col_bool(res, 0, c + 10);
    p->done = strcmp(PQgetvalue(res, 0, c + 11), "done") == 0;
    p->cancelled = bs_pg_col_bool(res, 0, c + 12);
}

static const char SQL_CLAIM[] =
    "INSERT INTO bulkstate.command (command_id, body_sha256, source_topic, "
    "source_partition, source_offset, status, max_runs) VALUES ($1, "
    "encode(sha256(convert_to($2, 'UTF8')), 'hex'), $3, $4, $5, 'running', $6::int) "
    "ON CONFLICT (command_id) DO NOTHING RETURNING 1";

static const char SQL_CLAIMED[] =
    "SELECT body_sha256 = encode(sha256(convert_to($2, 'UTF8')), 'hex'), " PROGRESS_COLS
    " FROM bulkstate.command WHERE command_id = $1 FOR UPDATE";

int bs_store_claim(bs_store *st, bs_arena *ar, const char *command_id, const char *body,
                   const bs_source *src, int max_runs, const bs_filter *filter, bs_claim *out,
                   bs_progress *p, bs_err *err)
{
    const bs_source_text t = bs_pg_source(src);
    const char *mr = max_runs > 0 ? bs_arena_printf(ar, "%d", max_runs) : NULL;
    const char *params[6] = {command_id, body, src->topic, t.part, t.off, mr};
    PGresult *res = bs_pg_exec_prepared(st, SQL_CLAIM, 6, params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "record the command");
    const bool inserted = PQntuples(res) == 1;
    PQclear(res);
    memset(p, 0, sizeof *p);
    *out = BS_CLAIM_NEW;
    if (inserted && max_runs == 0) return 0;
    if (inserted) {
        /* the snapshot: the highest matching id and the time now; later batches stay below
         * both, so runs created meanwhile are not swept in */
        bs_sql top;
        bs_filter_snapshot_sql(filter, 2, ar, &top);
        const char **sp = bs_arena_alloc(ar, sizeof(char *) * (top.nparams + 1));
        sp[0] = command_id;
        memcpy(sp + 1, top.params, sizeof(char *) * top.nparams);
        const char *sql = bs_arena_printf(ar,
                                          "UPDATE bulkstate.command SET snapshot_at = now(), "
                                          "snapshot_max_id = (%s) WHERE command_id = $1 "
                                          "RETURNING " PROGRESS_COLS,
                                          top.text);
        res = bs_pg_exec(st, sql, (int)(1 + top.nparams), sp);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
            return bs_pg_fail(st, res, err, "take the command's snapshot");
        load_progress(res, 0, p);
        PQclear(res);
        return 0;
    }
    res = bs_pg_exec_prepared(st, SQL_CLAIMED, 2, params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return bs_pg_fail(st, res, err, "read the command record");
    if (!bs_pg_col_bool(res, 0, 0)) {
        *out = BS_CLAIM_CONFLICT;
    } else {
        load_progress(res, 1, p);
        /* a one-batch row left 'running' cannot be seen here: it is written in the same
         * transaction as the transitions. Running means new work, or a large command's
         * checkpoint to resume from. */
        *out = p->done ? BS_CLAIM_DONE : BS_CLAIM_NEW;
    }
    PQclear(res);
    return 0;
}

/* The count commits asynchronously (synchronous_commit off for its own transaction only, set
 * by the statement itself): it does not wait for the WAL flush, a cost paid once per command on
 * a durable database. What it risks is a PostgreSQL crash within its WAL writer's delay (3 x
 * wal_writer_delay at most), which can forget the last counts: a message that kills the worker
 * is then dead-lettered one delivery later. A worker crash loses nothing (the count is
 * committed, and seen, at once), and the command's own transaction, committed durably, flushes
 * its count with it. */
int bs_store_bump_attempt(bs_store *st, const bs_source *src, int *attempts, bs_err *err)
{
    const bs_source_text t = bs_pg_source(src);
    const char *p[3] = {src->topic, t.part, t.off};
    if (bs_store_check(st, err) < 0) return -1;
    PGresult *res =
        bs_pg_exec(st,
                   "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) "
                   "INSERT INTO bulkstate.delivery_attempt (topic, partition, \"offset\") "
                   "SELECT $1, $2::integer, $3::bigint FROM async "
                   "ON CONFLICT (topic, partition, \"offset\") DO "
                   "UPDATE SET attempts = bulkstate.delivery_attempt.attempts + 1, "
                   "last_seen = now() RETURNING attempts",
                   3, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return bs_pg_fail(st, res, err, "count the delivery");
    *attempts = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static int attempt_exec(bs_store *st, const bs_source *src, const char *sql, bs_err *err)
{
    const bs_source_text t = bs_pg_source(src);
    const char *p[3] = {src->topic, t.part, t.off};
    return bs_pg_exec_ok(st, sql, 3, p, "update the delivery count", err);
}

int bs_store_uncount_attempt(bs_store *st, const bs_source *src, bs_err *err)
{
    return attempt_exec(st, src,
                        "UPDATE bulkstate.delivery_attempt SET attempts = attempts - 1 WHERE "
                        "topic = $1 AND partition = $2 AND \"offset\" = $3",
                        err);
}

int bs_store_clear_attempt(bs_store *st, const bs_source *src, bs_err *err)
{
    return attempt_exec(st, src,
                        "DELETE FROM bulkstate.delivery_attempt WHERE topic = $1 AND partition = "
                        "$2 AND \"offset\" = $3",
                        err);
}

static const char *hex_bytea(bs_arena *ar, const unsigned char *b, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    char *s = bs_arena_alloc(ar, 2 * n + 3);
    s[0] = '\\';
    s[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        s[2 + 2 * i] = hx[b[i] >> 4];
        s[3 + 2 * i] = hx[b[i] & 15];
    }
    s[2 + 2 * n] = '\0';
    return s;
}

/* One statement: the replies, (when $7) one row in Prefect's outbox naming the range of them
 * that carry an event, or what one is built from (stored once, in its command_result row),
 * the command's progress, and its delivery count cleared. With no replies ($2 NULL) the first
 * two insert nothing. */
/* clang-format off */
static const char SQL_RECORD[] =
    "WITH outbox AS (INSERT INTO bulkstate.prefect_outbox (command_id, result_seq, result_last, "
    "  events) SELECT $1, min(u.seq), max(u.seq), count(*) "
    "  FROM unnest($2::int[], $6::text[], $8::uuid[]) AS u(seq, e, s) "
    "  WHERE $7::boolean AND (u.e IS NOT NULL OR u.s IS NOT NULL) HAVING count(*) > 0), "
    "results AS (INSERT INTO bulkstate.command_result (command_id, seq, flow_run_id, status, "
    "  reply, event, state_id, prior_state_id, run_count) "
    "  SELECT $1, u.seq, u.fr, u.st, u.r, u.e, u.s, u.p, u.c FROM unnest($2::int[], $3::uuid[], "
    "  $4::text[], $5::bytea[], $6::text[], $8::uuid[], $9::uuid[], $10::bigint[]) "
    "  AS u(seq, fr, st, r, e, s, p, c)), "
    "attempt AS (DELETE FROM bulkstate.delivery_attempt WHERE topic = $21 AND "
    "  partition = $22::int AND \"offset\" = $23::bigint) "
    "UPDATE bulkstate.command SET matched = $11, accepted = $12, rejected = $13, waited = $14, "
    "  aborted = $15, run_ids = COALESCE($16::uuid[], run_ids), last_id = $17::uuid, "
    "  batches = $18::int, cancelled = $19::boolean, "
    "  status = CASE WHEN $20::boolean THEN 'done' ELSE status END, "
    "  completed = CASE WHEN $20::boolean THEN clock_timestamp() END "
    "WHERE command_id = $1";
/* clang-format on */

int bs_store_record(bs_store *st, bs_arena *ar, const char *command_id, const bs_record *rec,
                    bs_err *err)
{
    const size_t n = rec->n;
    const char *p[23] = {command_id};
    if (n > 0) {
        const char **seq = bs_arena_alloc(ar, sizeof(char *) * n);
        const char **stat = bs_arena_alloc(ar, sizeof(char *) * n);
        const char **rep = bs_arena_alloc(ar, sizeof(char *) * n);
        const char **ev = bs_arena_alloc(ar, sizeof(char *) * n);
        const char **cnt = bs_arena_alloc(ar, sizeof(char *) * n);
        for (size_t i = 0; i < n; i++) {
            seq[i] = bs_arena_printf(ar, "%zu", (size_t)rec->first_seq + i);
            stat[i] = bs_status_name(rec->statuses[i]);
            rep[i] = hex_bytea(ar, rec->replies[i], rec->lens[i]);
            ev[i] = rec->events ? rec->events[i] : NULL;
            cnt[i] = rec->state_ids && rec->state_ids[i]
                         ? bs_arena_printf(ar, "%" PRId64, rec->run_counts[i])
                         : NULL;
        }
        const bool refs = rec->state_ids != NULL;
        p[1] = bs_pg_array(ar, seq, n);
        p[2] = bs_pg_array(ar, rec->run_ids, n);
        p[3] = bs_pg_array(ar, stat, n);
        p[4] = bs_pg_array(ar, rep, n);
        p[5] = bs_pg_array(ar, ev, n);
        p[6] = rec->outbox && (rec->events || refs) ? "t" : "f";
        p[7] = refs ? bs_pg_array(ar, rec->state_ids, n) : NULL;
        p[8] = refs ? bs_pg_array(ar, rec->prior_ids, n) : NULL;
        p[9] = refs ? bs_pg_array(ar, cnt, n) : NULL;
    } else {
        p[6] = "f";
    }
    const bs_progress *g = rec->progress;
    char m[16], c[4][16], b[16];
    snprintf(m, sizeof m, "%d", g->matched);
    snprintf(b, sizeof b, "%d", g->batches);
    for (int i = 0; i < 4; i++)
        snprintf(c[i], sizeof c[i], "%d", g->counts[i]);
    bs_source_text t = {{0}, {0}};
    if (rec->delivery) t = bs_pg_source(rec->delivery);
    p[10] = m;
    for (int i = 0; i < 4; i++)
        p[11 + i] = c[i];
    p[15] = rec->store_run_ids ? bs_pg_array(ar, rec->run_ids, n) : NULL;
    p[16] = g->last_id[0] ? g->last_id : NULL;
    p[17] = b;
    p[18] = g->cancelled ? "t" : "f";
    p[19] = rec->done ? "t" : "f";
    p[20] = rec->delivery ? rec->delivery->topic : NULL;
    p[21] = rec->delivery ? t.part : NULL;
    p[22] = rec->delivery ? t.off : NULL;
    return bs_pg_exec_prepared_ok(st, SQL_RECORD, 23, p, "record the replies and the progress",
                                  err);
}

int bs_store_acked(bs_store *st, const char *command_id, int acked_seq, bs_err *err)
{
    char a[16];
    snprintf(a, sizeof a, "%d", acked_seq);
    const char *p[2] = {command_id, a};
    return bs_pg_exec_ok(st,
                         "UPDATE bulkstate.command SET acked_seq = GREATEST(acked_seq, $2::int) "
                         "WHERE command_id = $1",
                         2, p, "record the acknowledged replies", err);
}

int bs_store_cancel_requested(bs_store *st, const char *command_id, bool *yes, bs_err *err)
{
    const char *p[1] = {command_id};
    PGresult *res = bs_pg_exec(
        st, "SELECT cancel_requested FROM bulkstate.command WHERE command_id = $1", 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return bs_pg_fail(st, res, err, "read the command");
    *yes = PQntuples(res) == 1 && bs_pg_col_bool(res, 0, 0);
    PQclear(res);
    return 0;
}

int bs_store_request_cancel(bs_store *st, const char *command_id, bool *found, bs_err *err)
{
    const char *p[1] = {command_id};
    PGresult *res = bs_pg_exec(st,
                               "UPDATE bulkstate.command SET cancel_requested = true WHERE "
                               "command_id = $1 AND status = 'running' AND max_runs IS NOT NULL "
                               "RETURNING 1",
                               1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "request the cancel");
    *found = PQntuples(res) == 1;
    PQclear(res);
    return 0;
}

int bs_store_load_replies(bs_store *st, bs_arena *ar, const char *command_id, int from_seq,
                          bool events, bs_replies *out, bs_err *err)
{
    char f[16];
    snprintf(f, sizeof f, "%d", from_seq);
    const char *p[2] = {command_id, f};
    PGresult *res = PQexecParams(st->conn,
                                 "SELECT flow_run_id::text, reply, event FROM "
                                 "bulkstate.command_result WHERE command_id = $1 AND seq >= "
                                 "$2::int ORDER BY seq",
                                 2, NULL, p, NULL, NULL, 1 /* binary: raw bytes */);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "load the recorded replies");
    const size_t n = (size_t)PQntuples(res), cap = n ? n : 1;
    out->n = n;
    out->replies = bs_arena_alloc(ar, sizeof(unsigned char *) * cap);
    out->lens = bs_arena_alloc(ar, sizeof(size_t) * cap);
    out->run_ids = bs_arena_alloc(ar, sizeof(char *) * cap);
    out->events = events ? bs_arena_alloc(ar, sizeof(char *) * cap) : NULL;
    for (size_t i = 0; i < n; i++) {
        const int r = (int)i;
        const size_t len = (size_t)PQgetlength(res, r, 1);
        out->replies[i] = bs_arena_alloc(ar, len ? len : 1);
        memcpy(out->replies[i], PQgetvalue(res, r, 1), len);
        out->lens[i] = len;
        out->run_ids[i] =
            bs_arena_strndup(ar, PQgetvalue(res, r, 0), (size_t)PQgetlength(res, r, 0));
        if (events)
            out->events[i] =
                PQgetisnull(res, r, 2)
                    ? NULL
                    : bs_arena_strndup(ar, PQgetvalue(res, r, 2), (size_t)PQgetlength(res, r, 2));
    }
    PQclear(res);
    return 0;
}

int bs_store_command_json(bs_store *st, bs_arena *ar, const char *command_id, const char **json,
                          bs_err *err)
{
    const char *p[1] = {command_id};
    PGresult *res =
        bs_pg_exec(st,
                   "SELECT json_build_object('command_id', command_id, 'status', status, "
                   "'matched', matched, 'accepted', accepted, 'rejected', rejected, "
                   "'waited', waited, 'aborted', aborted, 'source_topic', source_topic, "
                   "'source_partition', source_partition, 'source_offset', source_offset, "
                   "'created', created, 'completed', completed, 'body_sha256', "
                   "body_sha256)::text FROM bulkstate.command WHERE command_id = $1",
                   1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "read the command record");
    *json = PQntuples(res) ? bs_arena_strdup(ar, PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    return 0;
}
