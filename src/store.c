/* store: the PostgreSQL side. Every value travels as a parameter; arrays as one array
 * parameter each, so a batch is a fixed number of statements. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "command.h"
#include "file.h"
#include "log.h"
#include "timeutil.h"

struct bs_store {
    PGconn *conn;
    char *conninfo;
    bool outer; /* an outer transaction is open: commands run in savepoints */
    int statement_timeout_ms, lock_timeout_ms;
    /* the hot statements, prepared on this connection at first use (no parse and plan per
     * batch); forgotten when the connection is reset */
    const char *prepared[24];
    int nprepared;
};

/* SQLSTATE → what the worker does: retry (transient) or give up on the command. */
static bs_code store_code(const PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (PQstatus(conn) != CONNECTION_OK || state == NULL) return BS_ETRANSIENT;
    if (strncmp(state, "08", 2) == 0 || strcmp(state, "40001") == 0 ||
        strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
        strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0)
        return BS_ETRANSIENT;
    return BS_EFATAL;
}

static int fail(bs_store *st, PGresult *res, bs_err *err, const char *what)
{
    bs_code code = store_code(st->conn, res);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(st->conn);
    char clean[400];
    snprintf(clean, sizeof clean, "%s", msg);
    for (char *p = clean; *p; p++)
        if (*p == '\n') *p = ' ';
    bs_err_set(err, code, "could not %s: %s", what, clean);
    /* a statement that ran into statement_timeout will most likely do so again: the worker
     * counts it as a failed delivery (and dead-letters it after max_attempts) */
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state != NULL && strcmp(state, "57014") == 0)
        snprintf(err->type, sizeof err->type, "%s", "statement_timeout");
    PQclear(res);
    return -1;
}

static PGresult *exec(bs_store *st, const char *sql, int n, const char *const *params)
{
    return PQexecParams(st->conn, sql, n, NULL, params, NULL, NULL, 0);
}

/* sql is a static string: its address names its prepared statement */
static PGresult *exec_prepared(bs_store *st, const char *sql, int n, const char *const *params)
{
    char name[16];
    int i = 0;
    while (i < st->nprepared && st->prepared[i] != sql)
        i++;
    snprintf(name, sizeof name, "bs_%d", i);
    if (i == st->nprepared) {
        if (i == (int)(sizeof st->prepared / sizeof st->prepared[0]))
            return exec(st, sql, n, params);
        PGresult *res = PQprepare(st->conn, name, sql, n, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) return res;
        PQclear(res);
        st->prepared[st->nprepared++] = sql;
    }
    return PQexecPrepared(st->conn, name, n, params, NULL, NULL, 0);
}

static int result_ok(bs_store *st, PGresult *res, const char *what, bs_err *err)
{
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) return fail(st, res, err, what);
    PQclear(res);
    return 0;
}

static int exec_ok(bs_store *st, const char *sql, int n, const char *const *params,
                   const char *what, bs_err *err)
{
    return result_ok(st, exec(st, sql, n, params), what, err);
}

static int exec_prepared_ok(bs_store *st, const char *sql, int n, const char *const *params,
                            const char *what, bs_err *err)
{
    return result_ok(st, exec_prepared(st, sql, n, params), what, err);
}

/* a message's partition and offset as text parameters */
typedef struct source_text {
    char part[16], off[32];
} source_text;

static source_text source_params(const bs_source *src)
{
    source_text t;
    snprintf(t.part, sizeof t.part, "%" PRId32, src->partition);
    snprintf(t.off, sizeof t.off, "%" PRId64, src->offset);
    return t;
}

static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    bs_log(BS_LOG_DEBUG, "postgres", "notice=\"%.*s\"", (int)strcspn(msg, "\n"), msg);
}

static int session_setup(bs_store *st, bs_err *err)
{
    char a[32], b[32];
    snprintf(a, sizeof a, "%d", st->statement_timeout_ms);
    snprintf(b, sizeof b, "%d", st->lock_timeout_ms);
    const char *p[2] = {a, b};
    PQsetNoticeProcessor(st->conn, on_notice, NULL);
    /* a worker killed while its statement waits (on a lock, say) leaves a backend that would
     * wait on; PostgreSQL 14+ can notice the dead client and end it */
    if (PQserverVersion(st->conn) >= 140000 &&
        exec_ok(st, "SELECT set_config('client_connection_check_interval', '1000', false)", 0, NULL,
                "configure the session", err) < 0)
        return -1;
    return exec_ok(st,
                   "SELECT set_config('statement_timeout', $1, false), "
                   "set_config('lock_timeout', $2, false), "
                   "set_config('application_name', 'bulkstate', false), "
                   "set_config('timezone', 'UTC', false)",
                   2, p, "configure the session", err);
}

bs_store *bs_store_new(const bs_config *cfg, bs_err *err)
{
    bs_store *st = bs_xcalloc(1, sizeof *st);
    st->conninfo = bs_xstrdup(cfg->conninfo);
    st->statement_timeout_ms = cfg->statement_timeout_ms;
    st->lock_timeout_ms = cfg->lock_timeout_ms;
    st->conn = PQconnectdb(st->conninfo);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(st->conn));
        msg[strcspn(msg, "\n")] = '\0';
        bs_err_set(err, BS_ETRANSIENT, "could not connect to PostgreSQL: %s", msg);
        bs_store_free(st);
        return NULL;
    }
    if (session_setup(st, err) < 0) {
        bs_store_free(st);
        return NULL;
    }
    return st;
}

void bs_store_free(bs_store *st)
{
    if (st == NULL) return;
    if (st->conn) PQfinish(st->conn);
    free(st->conninfo);
    free(st);
}

int bs_store_check(bs_store *st, bs_err *err)
{
    if (PQstatus(st->conn) == CONNECTION_OK) return 0;
    PQreset(st->conn);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(st->conn));
        msg[strcspn(msg, "\n")] = '\0';
        return bs_err_set(err, BS_ETRANSIENT, "could not reconnect to PostgreSQL: %s", msg);
    }
    st->nprepared = 0; /* a new session */
    bs_log(BS_LOG_INFO, "store", "reconnected to PostgreSQL");
    return session_setup(st, err);
}

static int run_script(bs_store *st, const char *path, bs_err *err)
{
    char *sql = bs_read_file(path, NULL, err);
    if (sql == NULL) return -1;
    PGresult *res = PQexec(st->conn, sql); /* a trusted file of ours: several statements */
    free(sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = fail(st, res, err, "apply the schema script");
        bs_err_prefix(err, "%s", path);
        return rc;
    }
    PQclear(res);
    return 0;
}

int bs_store_migrate(bs_store *st, const char *schema_dir, bool recommended, bool *created_prefect,
                     bs_err *err)
{
    char path[1024];
    PGresult *res = exec(st, "SELECT to_regclass('public.flow_run') IS NOT NULL", 0, NULL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "inspect the database");
    bool have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    *created_prefect = false;
    if (exec_ok(st, "BEGIN", 0, NULL, "begin the migration", err) < 0) return -1;
    /* one migration at a time, whatever runs it */
    if (exec_ok(st, "SELECT pg_advisory_xact_lock(7301180624)", 0, NULL, "lock the migration",
                err) < 0)
        goto fail;
    if (!have) {
        snprintf(path, sizeof path, "%s/prefect.sql", schema_dir);
        if (run_script(st, path, err) < 0) goto fail;
        *created_prefect = true;
    }
    snprintf(path, sizeof path, "%s/bulkstate.sql", schema_dir);
    if (run_script(st, path, err) < 0) goto fail;
    snprintf(path, sizeof path, "%s/recommended.sql", schema_dir);
    if (recommended && run_script(st, path, err) < 0) goto fail;
    return exec_ok(st, "COMMIT", 0, NULL, "commit the migration", err);
fail:
    bs_store_rollback(st);
    return -1;
}

/* Inside an outer transaction (replay --dry-run), a command's transaction is a savepoint. */
int bs_store_begin(bs_store *st, bs_err *err)
{
    return exec_ok(st, st->outer ? "SAVEPOINT bs_cmd" : "BEGIN ISOLATION LEVEL READ COMMITTED", 0,
                   NULL, "begin", err);
}

int bs_store_commit(bs_store *st, bs_err *err)
{
    return exec_ok(st, st->outer ? "RELEASE SAVEPOINT bs_cmd" : "COMMIT", 0, NULL, "commit", err);
}

void bs_store_rollback(bs_store *st)
{
    PQclear(PQexec(st->conn, st->outer ? "ROLLBACK TO SAVEPOINT bs_cmd; RELEASE SAVEPOINT bs_cmd"
                                       : "ROLLBACK"));
}

int bs_store_outer_begin(bs_store *st, bs_err *err)
{
    if (exec_ok(st, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, "begin", err) < 0) return -1;
    st->outer = true;
    return 0;
}

void bs_store_outer_rollback(bs_store *st)
{
    st->outer = false;
    PQclear(PQexec(st->conn, "ROLLBACK"));
}

int bs_store_savepoint(bs_store *st, bs_err *err)
{
    return exec_ok(st, "SAVEPOINT bs_run", 0, NULL, "set a savepoint", err);
}

void bs_store_rollback_to_savepoint(bs_store *st)
{
    PQclear(PQexec(st->conn, "ROLLBACK TO SAVEPOINT bs_run"));
}

static const char SQL_CLAIM[] =
    "INSERT INTO bulkstate.command (command_id, body_sha256, source_topic, "
    "source_partition, source_offset, status) VALUES ($1, "
    "encode(sha256(convert_to($2, 'UTF8')), 'hex'), $3, $4, $5, 'running') "
    "ON CONFLICT (command_id) DO NOTHING RETURNING 1";

int bs_store_claim(bs_store *st, const char *command_id, const char *body, const bs_source *src,
                   bs_claim *out, bs_command_record *rec, bs_err *err)
{
    const source_text t = source_params(src);
    const char *p[5] = {command_id, body, src->topic, t.part, t.off};
    PGresult *res = exec_prepared(st, SQL_CLAIM, 5, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "record the command");
    bool inserted = PQntuples(res) == 1;
    PQclear(res);
    if (inserted) {
        *out = BS_CLAIM_NEW;
        return 0;
    }
    res = exec(st,
               "SELECT body_sha256 = encode(sha256(convert_to($2, 'UTF8')), 'hex'), status, "
               "matched, accepted, rejected, waited, aborted FROM bulkstate.command WHERE "
               "command_id = $1 FOR UPDATE",
               2, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return fail(st, res, err, "read the command record");
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        *out = BS_CLAIM_CONFLICT;
    } else if (strcmp(PQgetvalue(res, 0, 1), "done") == 0) {
        *out = BS_CLAIM_DONE;
        rec->matched = atoi(PQgetvalue(res, 0, 2));
        for (int i = 0; i < 4; i++)
            rec->counts[i] = atoi(PQgetvalue(res, 0, 3 + i));
    } else {
        /* a row left 'running' cannot be seen here: it is written in the same transaction as
         * the transitions. Treat it as new work. */
        *out = BS_CLAIM_NEW;
    }
    PQclear(res);
    return 0;
}

int bs_store_bump_attempt(bs_store *st, const bs_source *src, int *attempts, bs_err *err)
{
    const source_text t = source_params(src);
    const char *p[3] = {src->topic, t.part, t.off};
    if (bs_store_check(st, err) < 0) return -1;
    PGresult *res = exec(st,
                         "INSERT INTO bulkstate.delivery_attempt (topic, partition, \"offset\") "
                         "VALUES ($1, $2, $3) ON CONFLICT (topic, partition, \"offset\") DO "
                         "UPDATE SET attempts = bulkstate.delivery_attempt.attempts + 1, "
                         "last_seen = now() RETURNING attempts",
                         3, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return fail(st, res, err, "count the delivery");
    *attempts = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static int attempt_exec(bs_store *st, const bs_source *src, const char *sql, bs_err *err)
{
    const source_text t = source_params(src);
    const char *p[3] = {src->topic, t.part, t.off};
    return exec_ok(st, sql, 3, p, "update the delivery count", err);
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

int bs_store_select(bs_store *st, bs_arena *ar, const bs_sql *sql, const char ***ids, size_t *n,
                    bs_err *err)
{
    PGresult *res = NULL;
    const char *text = sql->text;
    if (sql->window != NULL) { /* the newest runs first: enough matches there are the answer */
        res = exec(st, sql->window, (int)sql->nparams, sql->params);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            return fail(st, res, err, "select the flow runs");
        const int k = PQntuples(res);
        if (k < sql->limit) {
            PQclear(res);
            res = NULL;
            if (k < BS_SELECT_DENSE) text = sql->sparse; /* few matches: read them all */
        }
    }
    if (res == NULL) res = exec(st, text, (int)sql->nparams, sql->params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "select the flow runs");
    *n = (size_t)PQntuples(res);
    *ids = bs_arena_alloc(ar, sizeof(char *) * (*n ? *n : 1));
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = bs_arena_strdup(ar, PQgetvalue(res, (int)i, 0));
    PQclear(res);
    return 0;
}

#define US(x) "(extract(epoch FROM " x ") * 1000000)::bigint"

/* clang-format off */
#define UUID_RE "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
/* Timestamps come back as microseconds since the epoch (bigint), so no text parsing. The
 * deployment and its concurrency limit come with the run: the rules need to know whether the
 * deployment exists and whether it is limited. */
static const char SQL_LOCK[] =
    "SELECT fr.id, fr.deployment_id, fr.parent_task_run_id, "
    "  COALESCE(fr.infrastructure_pid, '') <> '', fr.run_count, "
    "  " US("fr.expected_start_time") ", " US("fr.next_scheduled_start_time") ", "
    "  " US("fr.start_time") ", " US("fr.end_time") ", " US("fr.total_run_time") ", "
    "  fr.empirical_policy::text, "
    "  s.id, s.type, s.name, s.message, " US("s.timestamp") ", s.state_details::text, "
    "  COALESCE(NULLIF(s.data, 'null'::jsonb), a.data::jsonb)::text, "
    "  ARRAY(SELECT " US("x.timestamp") " FROM flow_run_state x "
    "        WHERE x.flow_run_id = fr.id "
    "          AND x.timestamp >= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'), "
    "  d.id IS NOT NULL, cl.id IS NOT NULL, COALESCE(cl.\"limit\", 0), "
    "  d.concurrency_limit_id, COALESCE(cl.active, false), "
    "  COALESCE(d.concurrency_options->>'collision_strategy', '') = 'CANCEL_NEW', "
    "  CASE WHEN jsonb_typeof(d.concurrency_options->'grace_period_seconds') = 'number' "
    "       THEN (d.concurrency_options->>'grace_period_seconds')::numeric::bigint ELSE -1 END, "
    "  ls.id IS NOT NULL, ls.limit_id, COALESCE(ls.slots, 1), COALESCE(lcl.active, false) "
    "FROM flow_run fr "
    "LEFT JOIN flow_run_state s ON s.id = fr.state_id "
    "LEFT JOIN artifact a ON a.id = s.result_artifact_id "
    "LEFT JOIN deployment d ON d.id = fr.deployment_id "
    "LEFT JOIN concurrency_limit_v2 cl ON cl.id = d.concurrency_limit_id "
    "LEFT JOIN bulkstate.deployment_lease ls ON ls.id = CASE "
    "  WHEN s.state_details->>'deployment_concurrency_lease_id' ~* '" UUID_RE "' "
    "  THEN (s.state_details->>'deployment_concurrency_lease_id')::uuid END "
    "LEFT JOIN concurrency_limit_v2 lcl ON lcl.id = ls.limit_id "
    "WHERE fr.id = ANY($1::uuid[]) ORDER BY fr.id DESC FOR UPDATE OF fr";
/* clang-format on */

static int64_t col_ts(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? BS_TS_NULL : strtoll(PQgetvalue(res, r, c), NULL, 10);
}

static const char *col_str(const PGresult *res, int r, int c, bs_arena *ar)
{
    return PQgetisnull(res, r, c) ? NULL : bs_arena_strdup(ar, PQgetvalue(res, r, c));
}

static void col_uuid(const PGresult *res, int r, int c, bs_uuid *out)
{
    out->s[0] = '\0';
    if (!PQgetisnull(res, r, c)) snprintf(out->s, sizeof out->s, "%s", PQgetvalue(res, r, c));
}

/* run_count, expected_start_time, next_scheduled_start_time, start_time, end_time and
 * total_run_time from columns c..c+5: the bookkeeping flow runs and task runs share. */
static void col_bookkeeping(const PGresult *res, int r, int c, int64_t *run_count,
                            int64_t *expected, int64_t *next, int64_t *start, int64_t *end,
                            int64_t *total)
{
    *run_count = strtoll(PQgetvalue(res, r, c), NULL, 10);
    *expected = col_ts(res, r, c + 1);
    *next = col_ts(res, r, c + 2);
    *start = col_ts(res, r, c + 3);
    *end = col_ts(res, r, c + 4);
    *total = col_ts(res, r, c + 5);
    if (*total == BS_TS_NULL) *total = 0;
}

static void load_row(const PGresult *res, int r, bs_arena *ar, bs_run *run)
{
    memset(run, 0, sizeof *run);
    col_uuid(res, r, 0, &run->id);
    col_uuid(res, r, 1, &run->deployment_id);
    col_uuid(res, r, 2, &run->parent_task_run_id);
    run->has_infrastructure_pid = strcmp(PQgetvalue(res, r, 3), "t") == 0;
    run->deployment_exists = strcmp(PQgetvalue(res, r, 19), "t") == 0;
    run->deployment_limited = strcmp(PQgetvalue(res, r, 20), "t") == 0;
    run->deployment_limit = strtoll(PQgetvalue(res, r, 21), NULL, 10);
    col_uuid(res, r, 22, &run->concurrency_limit_id);
    run->limit_active = strcmp(PQgetvalue(res, r, 23), "t") == 0;
    run->cancel_new = strcmp(PQgetvalue(res, r, 24), "t") == 0;
    run->grace_period_s = strtoll(PQgetvalue(res, r, 25), NULL, 10);
    run->lease_found = strcmp(PQgetvalue(res, r, 26), "t") == 0;
    col_uuid(res, r, 27, &run->lease_limit_id);
    run->lease_slots = strtoll(PQgetvalue(res, r, 28), NULL, 10);
    run->lease_limit_active = strcmp(PQgetvalue(res, r, 29), "t") == 0;
    col_bookkeeping(res, r, 4, &run->run_count, &run->expected_start_time,
                    &run->next_scheduled_start_time, &run->start_time, &run->end_time,
                    &run->total_run_time_us);
    json_t *pol = json_loads(PQgetvalue(res, r, 10), 0, NULL);
    bs_policy_from_json(pol, ar, &run->policy);
    json_decref(pol);

    bs_state *cur = &run->current;
    if (PQgetisnull(res, r, 11)) {
        cur->type = BS_NONE;
        bs_details_init(&cur->details);
    } else {
        col_uuid(res, r, 11, &cur->id);
        cur->type = bs_state_type_parse(PQgetvalue(res, r, 12));
        cur->name = col_str(res, r, 13, ar);
        cur->message = col_str(res, r, 14, ar);
        cur->timestamp = col_ts(res, r, 15);
        json_t *det = json_loads(PQgetvalue(res, r, 16), 0, NULL);
        bs_details_from_json(det, false, "state_details", ar, &cur->details, NULL);
        json_decref(det);
        cur->data = col_str(res, r, 17, ar);
        if (cur->data) {
            json_t *d = json_loads(cur->data, JSON_DECODE_ANY, NULL);
            bs_data_flags(d, &cur->data_truthy, &cur->data_persisted);
            json_decref(d);
        }
    }
    /* "{1,2,3}" */
    const char *arr = PQgetvalue(res, r, 18);
    size_t cap = 1;
    for (const char *p = arr; *p; p++)
        cap += *p == ',';
    int64_t *taken = bs_arena_alloc(ar, sizeof(int64_t) * cap);
    size_t n = 0;
    for (const char *p = arr + 1; *p && *p != '}';) {
        char *end;
        taken[n++] = strtoll(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p != '}') break;
    }
    run->taken_ts = taken;
    run->n_taken_ts = n;
}

/* clang-format off */
/* Subflows' parent task runs (G11), locked after the flow runs, in id order. */
static const char SQL_LOCK_TASKS[] =
    "SELECT t.id, t.flow_run_id, s.type, " US("s.timestamp") ", t.run_count, "
    "  " US("t.expected_start_time") ", " US("t.next_scheduled_start_time") ", "
    "  " US("t.start_time") ", " US("t.end_time") ", " US("t.total_run_time") ", "
    "  jsonb_typeof(t.tags) = 'array' AND jsonb_array_length(t.tags) > 0, "
    "  (SELECT string_agg(l.name, ',' ORDER BY l.name) FROM concurrency_limit_v2 l "
    "   WHERE jsonb_typeof(t.tags) = 'array' AND l.active_slots > 0 "
    "     AND l.name IN (SELECT 'tag:' || x FROM jsonb_array_elements_text(t.tags) x)) "
    "FROM task_run t LEFT JOIN task_run_state s ON s.id = t.state_id "
    "WHERE t.id = ANY($1::uuid[]) ORDER BY t.id FOR UPDATE OF t";
/* clang-format on */

static int lock_parent_tasks(bs_store *st, bs_arena *ar, bs_run *runs, const bool *found, size_t n,
                             bs_err *err)
{
    const char **ids = bs_arena_alloc(ar, sizeof *ids * (n ? n : 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (found[i] && !bs_uuid_null(&runs[i].parent_task_run_id))
            ids[k++] = runs[i].parent_task_run_id.s;
    if (k == 0) return 0;
    const char *p[1] = {bs_pg_array(ar, ids, k)};
    PGresult *res = exec_prepared(st, SQL_LOCK_TASKS, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return fail(st, res, err, "lock the parent task runs");
    const int rows = PQntuples(res);
    bs_task_run *tasks = bs_arena_alloc(ar, sizeof *tasks * (rows ? (size_t)rows : 1));
    for (int r = 0; r < rows; r++) {
        bs_task_run *t = &tasks[r];
        memset(t, 0, sizeof *t);
        t->found = true;
        col_uuid(res, r, 0, &t->id);
        col_uuid(res, r, 1, &t->flow_run_id);
        t->state_type =
            PQgetisnull(res, r, 2) ? BS_NONE : bs_state_type_parse(PQgetvalue(res, r, 2));
        t->state_timestamp = col_ts(res, r, 3);
        col_bookkeeping(res, r, 4, &t->run_count, &t->expected_start_time,
                        &t->next_scheduled_start_time, &t->start_time, &t->end_time,
                        &t->total_run_time_us);
        t->has_tags = strcmp(PQgetvalue(res, r, 10), "t") == 0;
        t->tag_v2_limits = col_str(res, r, 11, ar);
    }
    PQclear(res);
    for (size_t i = 0; i < n; i++) {
        if (!found[i] || bs_uuid_null(&runs[i].parent_task_run_id)) continue;
        static const bs_task_run missing = {.found = false};
        runs[i].parent_task = &missing;
        for (int r = 0; r < rows; r++)
            if (strcmp(tasks[r].id.s, runs[i].parent_task_run_id.s) == 0) {
                runs[i].parent_task = &tasks[r];
                break;
            }
    }
    return 0;
}

int bs_store_lock_runs(bs_store *st, bs_arena *ar, const char *const *ids, size_t n,
                       int64_t taken_since_us, bs_run *runs, bool *found, bs_err *err)
{
    char since[32];
    snprintf(since, sizeof since, "%" PRId64, taken_since_us);
    const char *p[2] = {bs_pg_array(ar, ids, n), since};
    PGresult *res = exec_prepared(st, SQL_LOCK, 2, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "lock the flow runs");
    int rows = PQntuples(res), r = 0;
    /* both lists are in id DESC order: merge */
    for (size_t i = 0; i < n; i++) {
        found[i] = r < rows && strcmp(PQgetvalue(res, r, 0), ids[i]) == 0;
        if (found[i]) load_row(res, r++, ar, &runs[i]);
    }
    PQclear(res);
    return lock_parent_tasks(st, ar, runs, found, n, err);
}

static const char *ts_text(bs_arena *ar, int64_t us)
{
    return us == BS_TS_NULL ? NULL : bs_arena_printf(ar, "%" PRId64, us);
}

static const char SQL_INSERT_ARTIFACTS[] =
    "INSERT INTO artifact (id, flow_run_id, key, type, description, data) "
    "SELECT u.id, u.fr, u.k, u.t, u.d, u.data::json FROM unnest($1::uuid[], $2::uuid[], "
    "$3::text[], $4::text[], $5::text[], $6::text[]) AS u(id, fr, k, t, d, data)";

static const char SQL_INSERT_STATES[] =
    "INSERT INTO flow_run_state (id, flow_run_id, type, \"timestamp\", name, message, "
    "state_details, result_artifact_id) "
    "SELECT u.id, u.fr, u.t, 'epoch'::timestamptz + u.ts * interval '1 microsecond', u.n, u.m, "
    "u.det, u.art FROM unnest($1::uuid[], $2::uuid[], $3::state_type[], $4::bigint[], "
    "$5::text[], $6::text[], $7::jsonb[], $8::uuid[]) AS u(id, fr, t, ts, n, m, det, art)";

/* clang-format off */
/* One statement for every run of the batch: written runs (u.w) get the new state's mirror
 * columns and their bookkeeping; runs where only empirical_policy changed get just that. */
#define TS(c) "'epoch'::timestamptz + u." c " * interval '1 microsecond'"
static const char SQL_UPDATE_RUNS[] =
    "UPDATE flow_run AS f SET "
    "  state_id = CASE WHEN u.w THEN u.sid ELSE f.state_id END, "
    "  state_type = CASE WHEN u.w THEN u.st ELSE f.state_type END, "
    "  state_name = CASE WHEN u.w THEN u.sn ELSE f.state_name END, "
    "  state_timestamp = CASE WHEN u.w THEN " TS("sts") " ELSE f.state_timestamp END, "
    "  start_time = CASE WHEN u.w THEN " TS("s") " ELSE f.start_time END, "
    "  end_time = CASE WHEN u.w THEN " TS("e") " ELSE f.end_time END, "
    "  expected_start_time = CASE WHEN u.w THEN " TS("x") " ELSE f.expected_start_time END, "
    "  next_scheduled_start_time = CASE WHEN u.w THEN " TS("nx") " "
    "                              ELSE f.next_scheduled_start_time END, "
    "  total_run_time = CASE WHEN u.w THEN u.trt * interval '1 microsecond' "
    "                   ELSE f.total_run_time END, "
    "  run_count = CASE WHEN u.w THEN u.rc ELSE f.run_count END, "
    "  empirical_policy = COALESCE(u.pol, f.empirical_policy), "
    "  updated = now() "
    "FROM unnest($1::uuid[], $2::boolean[], $3::uuid[], $4::state_type[], $5::text[], "
    "            $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], "
    "            $11::bigint[], $12::int[], $13::jsonb[]) "
    "     AS u(id, w, sid, st, sn, sts, s, e, x, nx, trt, rc, pol) "
    "WHERE f.id = u.id";
/* clang-format on */

static const char SQL_INSERT_TASK_ARTIFACTS[] =
    "INSERT INTO artifact (id, task_run_id, flow_run_id, data) "
    "SELECT u.id, u.tr, u.fr, u.data::json FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], "
    "$4::text[]) AS u(id, tr, fr, data)";

static const char SQL_INSERT_TASK_STATES[] =
    "INSERT INTO task_run_state (id, task_run_id, type, \"timestamp\", name, message, "
    "state_details, result_artifact_id) "
    "SELECT u.id, u.tr, u.t, 'epoch'::timestamptz + u.ts * interval '1 microsecond', u.n, u.m, "
    "u.det, u.art FROM unnest($1::uuid[], $2::uuid[], $3::state_type[], $4::bigint[], "
    "$5::text[], $6::text[], $7::jsonb[], $8::uuid[]) AS u(id, tr, t, ts, n, m, det, art)";

/* clang-format off */
static const char SQL_UPDATE_TASKS[] =
    "UPDATE task_run AS t SET state_id = u.sid, state_type = u.st, state_name = u.sn, "
    "  state_timestamp = " TS("sts") ", start_time = " TS("s") ", end_time = " TS("e") ", "
    "  expected_start_time = " TS("x") ", next_scheduled_start_time = " TS("nx") ", "
    "  total_run_time = u.trt * interval '1 microsecond', run_count = u.rc, updated = now() "
    "FROM unnest($1::uuid[], $2::uuid[], $3::state_type[], $4::text[], $5::bigint[], "
    "            $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], "
    "            $11::int[]) AS u(id, sid, st, sn, sts, s, e, x, nx, trt, rc) "
    "WHERE t.id = u.id";

/* ReleaseTaskConcurrencySlots, first API: the task runs leave the active_slots (a set) of
 * their tags' limits; every such limit is rewritten, as Prefect's session does. */
static const char SQL_RELEASE_TAG_SLOTS[] =
    "UPDATE concurrency_limit AS c SET updated = now(), active_slots = COALESCE(("
    "  SELECT jsonb_agg(DISTINCT x) FROM jsonb_array_elements(c.active_slots) x "
    "  WHERE jsonb_typeof(x) <> 'string' OR NOT (x #>> '{}') = ANY (ARRAY("
    "    SELECT t.id::text FROM task_run t WHERE t.id = ANY($1::uuid[]) AND t.tags ? c.tag))), "
    "  '[]'::jsonb) "
    "WHERE c.tag IN (SELECT jsonb_array_elements_text(t.tags) FROM task_run t "
    "                WHERE t.id = ANY($1::uuid[]) AND jsonb_typeof(t.tags) = 'array')";
/* clang-format on */

/* The parent task runs' copies of the written states (G11). */
static int write_tasks(bs_store *st, bs_arena *ar, const bs_write *w, size_t n, bs_err *err)
{
    size_t nt = 0, na = 0, nr = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].d && w[i].d->task_write) nt++;
    if (nt == 0) return 0;
    const char **a[4], **s[8], **u[11], **rel = bs_arena_alloc(ar, sizeof(char *) * nt);
    for (int i = 0; i < 4; i++)
        a[i] = bs_arena_alloc(ar, sizeof(char *) * nt);
    for (int i = 0; i < 8; i++)
        s[i] = bs_arena_alloc(ar, sizeof(char *) * nt);
    for (int i = 0; i < 11; i++)
        u[i] = bs_arena_alloc(ar, sizeof(char *) * nt);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const bs_decision *d = w[i].d;
        if (d == NULL || !d->task_write) continue;
        const bs_task_run *t = &d->task;
        const bs_state *ts = &d->task_state;
        const char *fr = bs_uuid_null(&t->flow_run_id) ? NULL : t->flow_run_id.s;
        if (w[i].task_artifact_id) {
            a[0][na] = w[i].task_artifact_id;
            a[1][na] = t->id.s;
            a[2][na] = fr;
            a[3][na] = w[i].artifact_data;
            na++;
        }
        json_t *det = bs_details_to_json(&ts->details);
        char *dt = json_dumps(det, JSON_COMPACT);
        json_decref(det);
        s[0][k] = ts->id.s;
        s[1][k] = t->id.s;
        s[2][k] = bs_state_type_name(ts->type);
        s[3][k] = ts_text(ar, ts->timestamp);
        s[4][k] = ts->name ? ts->name : "";
        s[5][k] = ts->message;
        s[6][k] = bs_arena_strdup(ar, dt);
        s[7][k] = w[i].task_artifact_id;
        free(dt);
        u[0][k] = t->id.s;
        u[1][k] = ts->id.s;
        u[2][k] = bs_state_type_name(ts->type);
        u[3][k] = ts->name ? ts->name : "";
        u[4][k] = ts_text(ar, ts->timestamp);
        u[5][k] = ts_text(ar, t->start_time);
        u[6][k] = ts_text(ar, t->end_time);
        u[7][k] = ts_text(ar, t->expected_start_time);
        u[8][k] = ts_text(ar, t->next_scheduled_start_time);
        u[9][k] = ts_text(ar, t->total_run_time_us);
        u[10][k] = bs_arena_printf(ar, "%" PRId64, t->run_count);
        k++;
        if (d->task_release_v1) rel[nr++] = t->id.s;
    }
    const char *p[11];
    if (na > 0) {
        for (int i = 0; i < 4; i++)
            p[i] = bs_pg_array(ar, a[i], na);
        if (exec_ok(st, SQL_INSERT_TASK_ARTIFACTS, 4, p, "write parent task run artifacts", err) <
            0)
            return -1;
    }
    for (int i = 0; i < 8; i++)
        p[i] = bs_pg_array(ar, s[i], k);
    if (exec_ok(st, SQL_INSERT_TASK_STATES, 8, p, "write parent task run states", err) < 0)
        return -1;
    for (int i = 0; i < 11; i++)
        p[i] = bs_pg_array(ar, u[i], k);
    if (exec_ok(st, SQL_UPDATE_TASKS, 11, p, "update parent task runs", err) < 0) return -1;
    if (nr > 0) {
        p[0] = bs_pg_array(ar, rel, nr);
        if (exec_ok(st, SQL_RELEASE_TAG_SLOTS, 1, p, "release tag concurrency slots", err) < 0)
            return -1;
    }
    return 0;
}

int bs_store_write(bs_store *st, bs_arena *ar, const bs_write *w, size_t n, bs_err *err)
{
    const size_t cap = n ? n : 1;
    const char **a[6], **s[8], **u[13];
    for (int i = 0; i < 6; i++)
        a[i] = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (int i = 0; i < 8; i++)
        s[i] = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (int i = 0; i < 13; i++)
        u[i] = bs_arena_alloc(ar, sizeof(char *) * cap);
    size_t na = 0, ns = 0, nu = 0;
    for (size_t i = 0; i < n; i++) {
        const bs_decision *d = w[i].d;
        if (d == NULL || (!d->write && !d->policy_changed)) continue;
        if (d->write && w[i].artifact_id) {
            a[0][na] = w[i].artifact_id;
            a[1][na] = d->run.id.s;
            a[2][na] = w[i].artifact_key;
            a[3][na] = w[i].artifact_type;
            a[4][na] = w[i].artifact_description;
            a[5][na] = w[i].artifact_data;
            na++;
        }
        if (d->write) {
            json_t *det = bs_details_to_json(&d->state.details);
            char *dt = json_dumps(det, JSON_COMPACT);
            json_decref(det);
            s[0][ns] = d->state.id.s;
            s[1][ns] = d->run.id.s;
            s[2][ns] = bs_state_type_name(d->state.type);
            s[3][ns] = ts_text(ar, d->state.timestamp);
            s[4][ns] = d->state.name ? d->state.name : "";
            s[5][ns] = d->state.message;
            s[6][ns] = bs_arena_strdup(ar, dt);
            s[7][ns] = w[i].artifact_id;
            free(dt);
            ns++;
        }
        u[0][nu] = d->run.id.s;
        u[1][nu] = d->write ? "t" : "f";
        u[2][nu] = d->write ? d->state.id.s : NULL;
        u[3][nu] = d->write ? bs_state_type_name(d->state.type) : NULL;
        u[4][nu] = d->write ? (d->state.name ? d->state.name : "") : NULL;
        u[5][nu] = d->write ? ts_text(ar, d->state.timestamp) : NULL;
        u[6][nu] = ts_text(ar, d->run.start_time);
        u[7][nu] = ts_text(ar, d->run.end_time);
        u[8][nu] = ts_text(ar, d->run.expected_start_time);
        u[9][nu] = ts_text(ar, d->run.next_scheduled_start_time);
        u[10][nu] = ts_text(ar, d->run.total_run_time_us);
        u[11][nu] = bs_arena_printf(ar, "%" PRId64, d->run.run_count);
        if (d->policy_changed) {
            json_t *pol = bs_policy_to_json(&d->run.policy);
            char *pt = json_dumps(pol, JSON_COMPACT);
            json_decref(pol);
            u[12][nu] = bs_arena_strdup(ar, pt);
            free(pt);
        } else {
            u[12][nu] = NULL;
        }
        nu++;
    }
    const char *p[13];
    if (na > 0) {
        for (int i = 0; i < 6; i++)
            p[i] = bs_pg_array(ar, a[i], na);
        if (exec_ok(st, SQL_INSERT_ARTIFACTS, 6, p, "write result artifacts", err) < 0) return -1;
    }
    if (ns > 0) {
        for (int i = 0; i < 8; i++)
            p[i] = bs_pg_array(ar, s[i], ns);
        if (exec_prepared_ok(st, SQL_INSERT_STATES, 8, p, "write flow run states", err) < 0)
            return -1;
    }
    if (nu > 0) {
        for (int i = 0; i < 13; i++)
            p[i] = bs_pg_array(ar, u[i], nu);
        if (exec_prepared_ok(st, SQL_UPDATE_RUNS, 13, p, "update flow runs", err) < 0) return -1;
    }
    return write_tasks(st, ar, w, n, err);
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

static const char SQL_RECORD_REPLIES[] =
    "INSERT INTO bulkstate.command_result (command_id, seq, flow_run_id, status, "
    "reply, event) SELECT $1, u.seq, u.fr, u.st, u.r, u.e FROM unnest($2::int[], "
    "$3::uuid[], $4::text[], $5::bytea[], $6::text[]) AS u(seq, fr, st, r, e)";

static const char SQL_FINISH[] =
    "WITH attempt AS (DELETE FROM bulkstate.delivery_attempt WHERE topic = $8 AND "
    "partition = $9 AND \"offset\" = $10) "
    "UPDATE bulkstate.command SET status = 'done', matched = $2, accepted = $3, "
    "rejected = $4, waited = $5, aborted = $6, run_ids = $7::uuid[], completed = "
    "clock_timestamp() WHERE command_id = $1";

int bs_store_finish(bs_store *st, bs_arena *ar, const char *command_id, const bs_source *src,
                    const char *const *run_ids, const int *statuses,
                    const unsigned char *const *replies, const size_t *reply_lens,
                    const char *const *events, size_t n, const bs_command_record *rec, bs_err *err)
{
    const size_t cap = n ? n : 1;
    const char **seq = bs_arena_alloc(ar, sizeof(char *) * cap);
    const char **stat = bs_arena_alloc(ar, sizeof(char *) * cap);
    const char **rep = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (size_t i = 0; i < n; i++) {
        seq[i] = bs_arena_printf(ar, "%zu", i);
        stat[i] = bs_status_name((bs_status)statuses[i]);
        rep[i] = hex_bytea(ar, replies[i], reply_lens[i]);
    }
    if (n > 0) {
        const char **ev = bs_arena_alloc(ar, sizeof(char *) * cap);
        for (size_t i = 0; i < n; i++)
            ev[i] = events ? events[i] : NULL;
        const char *p[6] = {command_id,
                            bs_pg_array(ar, seq, n),
                            bs_pg_array(ar, run_ids, n),
                            bs_pg_array(ar, stat, n),
                            bs_pg_array(ar, rep, n),
                            bs_pg_array(ar, ev, n)};
        if (exec_prepared_ok(st, SQL_RECORD_REPLIES, 6, p, "record the replies", err) < 0)
            return -1;
    }
    char m[16], c[4][16];
    snprintf(m, sizeof m, "%d", rec->matched);
    for (int i = 0; i < 4; i++)
        snprintf(c[i], sizeof c[i], "%d", rec->counts[i]);
    const source_text t = source_params(src);
    const char *p[10] = {command_id, m,      c[0], c[1], c[2], c[3], bs_pg_array(ar, run_ids, n),
                         src->topic, t.part, t.off};
    return exec_prepared_ok(st, SQL_FINISH, 10, p, "mark the command done", err);
}

int bs_store_command_json(bs_store *st, bs_arena *ar, const char *command_id, const char **json,
                          bs_err *err)
{
    const char *p[1] = {command_id};
    PGresult *res = exec(st,
                         "SELECT json_build_object('command_id', command_id, 'status', status, "
                         "'matched', matched, 'accepted', accepted, 'rejected', rejected, "
                         "'waited', waited, 'aborted', aborted, 'source_topic', source_topic, "
                         "'source_partition', source_partition, 'source_offset', source_offset, "
                         "'created', created, 'completed', completed, 'body_sha256', "
                         "body_sha256)::text FROM bulkstate.command WHERE command_id = $1",
                         1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return fail(st, res, err, "read the command record");
    *json = PQntuples(res) ? bs_arena_strdup(ar, PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    return 0;
}

int bs_store_load_replies(bs_store *st, bs_arena *ar, const char *command_id,
                          unsigned char ***replies, size_t **lens, const char ***run_ids,
                          const char ***events, size_t *n, bs_err *err)
{
    return bs_store_load_replies_from(st, ar, command_id, 0, replies, lens, run_ids, events, n,
                                      err);
}

/* clang-format off */
/* The limits a batch may take or free slots on, locked after the runs (the global order is
 * runs by id DESC, then limits by id), with Prefect's slot decay applied. */
static const char SQL_LOCK_LIMITS[] =
    "SELECT id, GREATEST(0, active_slots - floor(slot_decay_per_second * "
    "  EXTRACT(EPOCH FROM now() - updated)))::bigint "
    "FROM concurrency_limit_v2 WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE";

/* Prefect's bulk_increment/decrement_active_slots write the new count and the decayed
 * denied_slots (rate limits decay by slot_decay_per_second, concurrency limits by the clamped
 * average occupancy; 10 s for tag limits, 30 s otherwise, Prefect's defaults). */
static const char SQL_UPDATE_LIMITS[] =
    "UPDATE concurrency_limit_v2 AS l SET active_slots = u.a, "
    "  denied_slots = GREATEST(0, l.denied_slots - floor(CASE "
    "    WHEN l.slot_decay_per_second > 0 THEN l.slot_decay_per_second "
    "    ELSE 1.0 / GREATEST(0.1, LEAST(l.avg_slot_occupancy_seconds, "
    "                                   CASE WHEN l.name LIKE 'tag:%' THEN 10 ELSE 30 END)) "
    "  END * EXTRACT(EPOCH FROM now() - l.updated))), "
    "  updated = now() "
    "FROM unnest($1::uuid[], $2::int[]) AS u(id, a) WHERE l.id = u.id";

static const char SQL_INSERT_LEASES[] =
    "INSERT INTO bulkstate.deployment_lease (id, limit_id, flow_run_id, slots, expiration) "
    "SELECT u.id, u.l, u.fr, 1, now() + u.ttl * interval '1 second' "
    "FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[]) AS u(id, l, fr, ttl)";

static const char SQL_DELETE_LEASES[] =
    "DELETE FROM bulkstate.deployment_lease WHERE id = ANY($1::uuid[])";
/* clang-format on */

int bs_store_lock_limits(bs_store *st, bs_arena *ar, const bs_run *runs, const bool *found,
                         size_t n, bs_limit_view **views, size_t *nv, bs_err *err)
{
    const char **ids = bs_arena_alloc(ar, sizeof(char *) * (2 * n + 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!found[i]) continue;
        if (!bs_uuid_null(&runs[i].concurrency_limit_id)) ids[k++] = runs[i].concurrency_limit_id.s;
        if (runs[i].lease_found) ids[k++] = runs[i].lease_limit_id.s;
    }
    *views = NULL;
    *nv = 0;
    if (k == 0) return 0; /* the common case: no limited deployment, no extra round trip */
    const char *p[1] = {bs_pg_array(ar, ids, k)};
    PGresult *res = exec_prepared(st, SQL_LOCK_LIMITS, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return fail(st, res, err, "lock the concurrency limits");
    int rows = PQntuples(res);
    *views = bs_arena_alloc(ar, sizeof(bs_limit_view) * (size_t)(rows ? rows : 1));
    for (int r = 0; r < rows; r++) {
        bs_limit_view *v = &(*views)[r];
        col_uuid(res, r, 0, &v->id);
        v->start = v->now = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        v->touched = false;
    }
    *nv = (size_t)rows;
    PQclear(res);
    return 0;
}

bs_limit_view *bs_limit_find(bs_limit_view *views, size_t nv, const bs_uuid *id)
{
    for (size_t i = 0; i < nv; i++)
        if (strcmp(views[i].id.s, id->s) == 0) return &views[i];
    return NULL;
}

void bs_limit_apply(bs_limit_view *views, size_t nv, const bs_run *run, const bs_slot_ops *ops)
{
    bs_limit_view *v;
    if (ops->acquire && (v = bs_limit_find(views, nv, &run->concurrency_limit_id)) != NULL) {
        v->now += 1;
        v->touched = true;
    }
    if (ops->release && (v = bs_limit_find(views, nv, &ops->release_limit)) != NULL) {
        v->now = v->now > ops->release_slots ? v->now - ops->release_slots : 0;
        v->touched = true;
    }
}

int bs_store_write_slots(bs_store *st, bs_arena *ar, const bs_run *const *runs,
                         const bs_slot_ops *const *ops, size_t n, bs_limit_view *views, size_t nv,
                         bs_err *err)
{
    const size_t cap = n ? n : 1;
    const char **li = bs_arena_alloc(ar, sizeof(char *) * cap),
               **ll = bs_arena_alloc(ar, sizeof(char *) * cap);
    const char **lr = bs_arena_alloc(ar, sizeof(char *) * cap),
               **lt = bs_arena_alloc(ar, sizeof(char *) * cap);
    const char **del = bs_arena_alloc(ar, sizeof(char *) * cap);
    size_t nl = 0, nd = 0;
    for (size_t i = 0; i < nv; i++) {
        views[i].now = views[i].start;
        views[i].touched = false;
    }
    for (size_t i = 0; i < n; i++) {
        bs_limit_apply(views, nv, runs[i], ops[i]);
        if (ops[i]->acquire) {
            li[nl] = ops[i]->lease_id.s;
            ll[nl] = runs[i]->concurrency_limit_id.s;
            lr[nl] = runs[i]->id.s;
            lt[nl++] = bs_arena_printf(ar, "%" PRId64, ops[i]->lease_ttl_s);
        }
        if (!bs_uuid_null(&ops[i]->revoke)) del[nd++] = ops[i]->revoke.s;
    }
    const char **vi = bs_arena_alloc(ar, sizeof(char *) * (nv ? nv : 1));
    const char **va = bs_arena_alloc(ar, sizeof(char *) * (nv ? nv : 1));
    size_t nu = 0;
    for (size_t i = 0; i < nv; i++)
        if (views[i].touched) {
            vi[nu] = views[i].id.s;
            va[nu++] = bs_arena_printf(ar, "%" PRId64, views[i].now);
        }
    struct {
        const char *sql, *what;
        size_t n;
        int np;
        const char *p[4];
    } stmt[3] = {
        {SQL_DELETE_LEASES, "revoke leases", nd, 1, {bs_pg_array(ar, del, nd)}},
        {SQL_INSERT_LEASES,
         "create leases",
         nl,
         4,
         {bs_pg_array(ar, li, nl), bs_pg_array(ar, ll, nl), bs_pg_array(ar, lr, nl),
          bs_pg_array(ar, lt, nl)}},
        {SQL_UPDATE_LIMITS,
         "update concurrency slots",
         nu,
         2,
         {bs_pg_array(ar, vi, nu), bs_pg_array(ar, va, nu)}},
    };
    for (int i = 0; i < 3; i++) {
        if (stmt[i].n == 0) continue;
        PGresult *res = exec(st, stmt[i].sql, stmt[i].np, stmt[i].p);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) return fail(st, res, err, stmt[i].what);
        PQclear(res);
    }
    return 0;
}

/* clang-format off */
/* Expired leases whose run is still PENDING with that lease give their slots back (Prefect's
 * repossessor). So do leases whose PENDING state was followed by a RUNNING state carrying
 * another lease id: Prefect's server moved the run for a client >= 3.4.11, did not find the
 * lease and took a second slot under its own lease, which it will release; the first slot is
 * ours to free. Any other lease whose run moved on is only deleted: whoever moved it released
 * the slot (bulkstate through the lease, Prefect's server through its one-slot fallback). The
 * runs are locked first, in the global order, so a batch holding one is waited for. */
static const char SQL_EXPIRED_LEASE_RUNS[] =
    "SELECT DISTINCT flow_run_id FROM bulkstate.deployment_lease WHERE expiration < now() "
    "ORDER BY flow_run_id DESC LIMIT 500";
static const char SQL_LOCK_RUN_IDS[] =
    "SELECT id FROM flow_run WHERE id = ANY($1::uuid[]) ORDER BY id DESC FOR UPDATE";
static const char SQL_REAP[] =
    "WITH expired AS ("
    "  DELETE FROM bulkstate.deployment_lease "
    "  WHERE flow_run_id = ANY($1::uuid[]) AND expiration < now() "
    "  RETURNING id, limit_id, flow_run_id, slots), "
    "held AS ("
    "  SELECT e.limit_id, sum(e.slots) AS slots FROM expired e "
    "  JOIN flow_run fr ON fr.id = e.flow_run_id "
    "  JOIN flow_run_state s ON s.id = fr.state_id "
    "  WHERE (s.type = 'PENDING' "
    "         AND s.state_details->>'deployment_concurrency_lease_id' = e.id::text) "
    "     OR EXISTS (SELECT 1 FROM flow_run_state o "
    "       CROSS JOIN LATERAL (SELECT n.type, n.state_details FROM flow_run_state n "
    "         WHERE n.flow_run_id = o.flow_run_id AND n.timestamp > o.timestamp "
    "         ORDER BY n.timestamp LIMIT 1) nx "
    "       WHERE o.flow_run_id = e.flow_run_id AND o.type = 'PENDING' "
    "         AND o.state_details->>'deployment_concurrency_lease_id' = e.id::text "
    "         AND nx.type = 'RUNNING' "
    "         AND nx.state_details->>'deployment_concurrency_lease_id' <> e.id::text) "
    "  GROUP BY e.limit_id), "
    "freed AS ("
    "  UPDATE concurrency_limit_v2 l "
    "  SET active_slots = GREATEST(0, l.active_slots - h.slots), updated = now() "
    "  FROM held h WHERE l.id = h.limit_id AND l.active RETURNING h.slots) "
    "SELECT (SELECT count(*) FROM expired), (SELECT COALESCE(sum(slots), 0) FROM freed)";
/* clang-format on */

int bs_store_reap_leases(bs_store *st, bs_arena *ar, int *leases, int *slots, bs_err *err)
{
    *leases = *slots = 0;
    PGresult *res = exec(st, SQL_EXPIRED_LEASE_RUNS, 0, NULL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "find expired leases");
    size_t n = (size_t)PQntuples(res);
    if (n == 0) {
        PQclear(res);
        return 0;
    }
    const char **ids = bs_arena_alloc(ar, sizeof(char *) * n);
    for (size_t i = 0; i < n; i++)
        ids[i] = bs_arena_strdup(ar, PQgetvalue(res, (int)i, 0));
    PQclear(res);
    const char *p[1] = {bs_pg_array(ar, ids, n)};
    if (bs_store_begin(st, err) < 0) return -1;
    res = exec(st, SQL_LOCK_RUN_IDS, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail(st, res, err, "lock the runs of expired leases");
        bs_store_rollback(st);
        return -1;
    }
    PQclear(res);
    res = exec(st, SQL_REAP, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail(st, res, err, "reap expired leases");
        bs_store_rollback(st);
        return -1;
    }
    *leases = atoi(PQgetvalue(res, 0, 0));
    *slots = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    return bs_store_commit(st, err);
}

/* clang-format off */
/* What a run's state-change event names besides the run: Prefect's related resources. */
static const char SQL_EVENT_CONTEXT[] =
    "SELECT fr.id::text, json_build_object("
    "  'flow_run', json_build_object('name', fr.name, 'tags', fr.tags, 'created_by', fr.created_by), "
    "  'flow', CASE WHEN f.id IS NOT NULL THEN "
    "    json_build_object('id', f.id, 'name', f.name, 'tags', f.tags) END, "
    "  'deployment', CASE WHEN d.id IS NOT NULL THEN "
    "    json_build_object('id', d.id, 'name', d.name, 'tags', d.tags) END, "
    "  'work_queue', CASE WHEN wq.id IS NOT NULL THEN "
    "    json_build_object('id', wq.id, 'name', wq.name) END, "
    "  'work_pool', CASE WHEN wp.id IS NOT NULL THEN "
    "    json_build_object('id', wp.id, 'name', wp.name, 'type', wp.type) END, "
    "  'task_run', CASE WHEN tr.id IS NOT NULL THEN "
    "    json_build_object('id', tr.id, 'name', tr.name, 'tags', tr.tags) END)::text "
    "FROM flow_run fr "
    "LEFT JOIN flow f ON f.id = fr.flow_id "
    "LEFT JOIN deployment d ON d.id = fr.deployment_id "
    "LEFT JOIN work_queue wq ON wq.id = fr.work_queue_id "
    "LEFT JOIN work_pool wp ON wp.id = wq.work_pool_id "
    "LEFT JOIN task_run tr ON tr.id = fr.parent_task_run_id "
    "WHERE fr.id = ANY($1::uuid[])";
/* clang-format on */

int bs_store_event_context(bs_store *st, bs_arena *ar, const char *const *ids, size_t n,
                           const char **ctx, bs_err *err)
{
    for (size_t i = 0; i < n; i++)
        ctx[i] = NULL;
    if (n == 0) return 0;
    const char *p[1] = {bs_pg_array(ar, ids, n)};
    PGresult *res = exec(st, SQL_EVENT_CONTEXT, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return fail(st, res, err, "load the runs' related resources");
    for (int r = 0; r < PQntuples(res); r++)
        for (size_t i = 0; i < n; i++)
            if (ctx[i] == NULL && strcmp(ids[i], PQgetvalue(res, r, 0)) == 0) {
                ctx[i] = bs_arena_strdup(ar, PQgetvalue(res, r, 1));
                break;
            }
    PQclear(res);
    return 0;
}

/* ---- large commands (max_runs): batches with a checkpoint in the command row ---- */

static void params_join(bs_arena *ar, const char *const *a, size_t na, const char *const *b,
                        size_t nb, const char ***out)
{
    *out = bs_arena_alloc(ar, sizeof(char *) * (na + nb + 1));
    for (size_t i = 0; i < na; i++)
        (*out)[i] = a[i];
    for (size_t i = 0; i < nb; i++)
        (*out)[na + i] = b[i];
}

static void load_large(const PGresult *res, bs_large *lg)
{
    memset(lg, 0, sizeof *lg);
    snprintf(lg->snapshot_max_id, sizeof lg->snapshot_max_id, "%s", PQgetvalue(res, 0, 0));
    snprintf(lg->snapshot_at, sizeof lg->snapshot_at, "%s", PQgetvalue(res, 0, 1));
    snprintf(lg->last_id, sizeof lg->last_id, "%s", PQgetvalue(res, 0, 2));
    lg->batches = atoi(PQgetvalue(res, 0, 3));
    lg->acked_seq = atoi(PQgetvalue(res, 0, 4));
    lg->matched = atoi(PQgetvalue(res, 0, 5));
    for (int i = 0; i < 4; i++)
        lg->counts[i] = atoi(PQgetvalue(res, 0, 6 + i));
    lg->cancel_requested = strcmp(PQgetvalue(res, 0, 10), "t") == 0;
    lg->done = strcmp(PQgetvalue(res, 0, 11), "done") == 0;
    lg->cancelled = strcmp(PQgetvalue(res, 0, 12), "t") == 0;
}

#define LARGE_COLS                                                                                 \
    "COALESCE(snapshot_max_id::text, ''), COALESCE(snapshot_at::text, ''), "                       \
    "COALESCE(last_id::text, ''), batches, acked_seq, matched, accepted, rejected, waited, "       \
    "aborted, cancel_requested, status, cancelled"

int bs_store_large_claim(bs_store *st, bs_arena *ar, const char *command_id, const char *body,
                         const bs_source *src, int max_runs, const bs_filter *filter, bs_claim *out,
                         bs_large *lg, bs_err *err)
{
    const source_text t = source_params(src);
    char mr[16];
    snprintf(mr, sizeof mr, "%d", max_runs);
    if (bs_store_begin(st, err) < 0) return -1;
    const char *p[6] = {command_id, body, src->topic, t.part, t.off, mr};
    PGresult *res = exec(st,
                         "INSERT INTO bulkstate.command (command_id, body_sha256, source_topic, "
                         "source_partition, source_offset, status, max_runs) VALUES ($1, "
                         "encode(sha256(convert_to($2, 'UTF8')), 'hex'), $3, $4, $5, 'running', "
                         "$6) ON CONFLICT (command_id) DO NOTHING RETURNING 1",
                         6, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail(st, res, err, "record the command");
        goto rollback;
    }
    bool inserted = PQntuples(res) == 1;
    PQclear(res);
    if (inserted) {
        /* the snapshot: the highest matching id and the time now; later batches stay below
         * both, so runs created meanwhile are not swept in */
        bs_sql where;
        bs_filter_sql(filter, 2, ar, &where);
        const char *first[1] = {command_id};
        const char **params;
        params_join(ar, first, 1, where.params, where.nparams, &params);
        char *sql = bs_arena_printf(ar,
                                    "UPDATE bulkstate.command SET snapshot_at = now(), "
                                    "snapshot_max_id = (SELECT flow_run.id FROM flow_run WHERE %s "
                                    "ORDER BY flow_run.id DESC LIMIT 1) WHERE command_id = $1 "
                                    "RETURNING " LARGE_COLS,
                                    where.text);
        res = exec(st, sql, (int)(1 + where.nparams), params);
    } else {
        res = exec(st,
                   "SELECT body_sha256 = encode(sha256(convert_to($2, 'UTF8')), 'hex') "
                   "FROM bulkstate.command WHERE command_id = $1",
                   2, p);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            fail(st, res, err, "read the command record");
            goto rollback;
        }
        bool same = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!same) {
            *out = BS_CLAIM_CONFLICT;
            bs_store_rollback(st);
            return 0;
        }
        res = exec(st, "SELECT " LARGE_COLS " FROM bulkstate.command WHERE command_id = $1", 1, p);
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fail(st, res, err, "read the command's progress");
        goto rollback;
    }
    load_large(res, lg);
    PQclear(res);
    *out = lg->done ? BS_CLAIM_DONE : BS_CLAIM_NEW;
    return bs_store_commit(st, err);
rollback:
    bs_store_rollback(st);
    return -1;
}

int bs_store_large_select(bs_store *st, bs_arena *ar, const bs_filter *filter, const bs_large *lg,
                          int limit, const char ***ids, size_t *n, bs_err *err)
{
    *n = 0;
    *ids = bs_arena_alloc(ar, sizeof(char *));
    if (lg->snapshot_max_id[0] == '\0') return 0; /* nothing matched at the start */
    bs_sql where;
    bs_filter_sql(filter, 1, ar, &where);
    int k = (int)where.nparams;
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *extra[4] = {lg->snapshot_max_id, lg->snapshot_at, lim,
                            lg->last_id[0] ? lg->last_id : NULL};
    const char **params;
    params_join(ar, where.params, where.nparams, extra, 4, &params);
    char *sql = bs_arena_printf(ar,
                                "SELECT flow_run.id FROM flow_run WHERE (%s) AND flow_run.id <= "
                                "$%d::uuid AND flow_run.created <= $%d::timestamptz AND ($%d::uuid "
                                "IS NULL OR flow_run.id < $%d::uuid) ORDER BY flow_run.id DESC "
                                "LIMIT $%d",
                                where.text, k + 1, k + 2, k + 4, k + 4, k + 3);
    PGresult *res = exec(st, sql, k + 4, params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "select the next batch");
    *n = (size_t)PQntuples(res);
    *ids = bs_arena_alloc(ar, sizeof(char *) * (*n ? *n : 1));
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = bs_arena_strdup(ar, PQgetvalue(res, (int)i, 0));
    PQclear(res);
    return 0;
}

int bs_store_still_matching(bs_store *st, bs_arena *ar, const bs_filter *filter,
                            const char *const *ids, size_t n, bool *match, bs_err *err)
{
    for (size_t i = 0; i < n; i++)
        match[i] = false;
    if (n == 0) return 0;
    bs_sql where;
    bs_filter_sql(filter, 1, ar, &where);
    const char *arr[1] = {bs_pg_array(ar, ids, n)};
    const char **params;
    params_join(ar, where.params, where.nparams, arr, 1, &params);
    char *sql = bs_arena_printf(
        ar, "SELECT flow_run.id FROM flow_run WHERE flow_run.id = ANY($%d::uuid[]) AND (%s)",
        (int)where.nparams + 1, where.text);
    PGresult *res = exec(st, sql, (int)where.nparams + 1, params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return fail(st, res, err, "check the batch still matches");
    for (int r = 0; r < PQntuples(res); r++)
        for (size_t i = 0; i < n; i++)
            if (!match[i] && strcmp(ids[i], PQgetvalue(res, r, 0)) == 0) match[i] = true;
    PQclear(res);
    return 0;
}

int bs_store_large_record(bs_store *st, bs_arena *ar, const char *command_id, int first_seq,
                          const char *const *run_ids, const int *statuses,
                          const unsigned char *const *replies, const size_t *reply_lens,
                          const char *const *events, size_t n, const bs_large *lg, bool finish,
                          bs_err *err)
{
    const size_t cap = n ? n : 1;
    if (n > 0) {
        const char **seq = bs_arena_alloc(ar, sizeof(char *) * cap);
        const char **stat = bs_arena_alloc(ar, sizeof(char *) * cap);
        const char **rep = bs_arena_alloc(ar, sizeof(char *) * cap);
        const char **ev = bs_arena_alloc(ar, sizeof(char *) * cap);
        for (size_t i = 0; i < n; i++) {
            seq[i] = bs_arena_printf(ar, "%zu", (size_t)first_seq + i);
            stat[i] = bs_status_name((bs_status)statuses[i]);
            rep[i] = hex_bytea(ar, replies[i], reply_lens[i]);
            ev[i] = events ? events[i] : NULL;
        }
        const char *p[6] = {command_id,
                            bs_pg_array(ar, seq, n),
                            bs_pg_array(ar, run_ids, n),
                            bs_pg_array(ar, stat, n),
                            bs_pg_array(ar, rep, n),
                            bs_pg_array(ar, ev, n)};
        if (exec_ok(st,
                    "INSERT INTO bulkstate.command_result (command_id, seq, flow_run_id, status, "
                    "reply, event) SELECT $1, u.seq, u.fr, u.st, u.r, u.e FROM unnest($2::int[], "
                    "$3::uuid[], $4::text[], $5::bytea[], $6::text[]) AS u(seq, fr, st, r, e)",
                    6, p, "record the replies", err) < 0)
            return -1;
    }
    char m[16], c[4][16], b[16];
    snprintf(m, sizeof m, "%d", lg->matched);
    snprintf(b, sizeof b, "%d", lg->batches);
    for (int i = 0; i < 4; i++)
        snprintf(c[i], sizeof c[i], "%d", lg->counts[i]);
    const char *p[10] = {command_id,
                         m,
                         c[0],
                         c[1],
                         c[2],
                         c[3],
                         lg->last_id[0] ? lg->last_id : NULL,
                         b,
                         finish ? "t" : "f",
                         lg->cancelled ? "t" : "f"};
    return exec_ok(st,
                   "UPDATE bulkstate.command SET matched = $2, accepted = $3, rejected = $4, "
                   "waited = $5, aborted = $6, last_id = $7::uuid, batches = $8, "
                   "status = CASE WHEN $9::boolean THEN 'done' ELSE status END, "
                   "cancelled = $10::boolean, "
                   "completed = CASE WHEN $9::boolean THEN clock_timestamp() END "
                   "WHERE command_id = $1",
                   10, p, "record the batch's progress", err);
}

int bs_store_large_acked(bs_store *st, const char *command_id, int acked_seq, bs_err *err)
{
    char a[16];
    snprintf(a, sizeof a, "%d", acked_seq);
    const char *p[2] = {command_id, a};
    return exec_ok(st,
                   "UPDATE bulkstate.command SET acked_seq = GREATEST(acked_seq, $2::int) WHERE "
                   "command_id = $1",
                   2, p, "record the acknowledged replies", err);
}

int bs_store_large_cancel_requested(bs_store *st, const char *command_id, bool *yes, bs_err *err)
{
    const char *p[1] = {command_id};
    PGresult *res =
        exec(st, "SELECT cancel_requested FROM bulkstate.command WHERE command_id = $1", 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "read the command");
    *yes = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

int bs_store_request_cancel(bs_store *st, const char *command_id, bool *found, bs_err *err)
{
    const char *p[1] = {command_id};
    PGresult *res = exec(st,
                         "UPDATE bulkstate.command SET cancel_requested = true WHERE command_id = "
                         "$1 AND status = 'running' AND max_runs IS NOT NULL RETURNING 1",
                         1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return fail(st, res, err, "request the cancel");
    *found = PQntuples(res) == 1;
    PQclear(res);
    return 0;
}

int bs_store_load_replies_from(bs_store *st, bs_arena *ar, const char *command_id, int from_seq,
                               unsigned char ***replies, size_t **lens, const char ***run_ids,
                               const char ***events, size_t *n, bs_err *err)
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
        return fail(st, res, err, "load the recorded replies");
    *n = (size_t)PQntuples(res);
    size_t cap = *n ? *n : 1;
    *replies = bs_arena_alloc(ar, sizeof(unsigned char *) * cap);
    *lens = bs_arena_alloc(ar, sizeof(size_t) * cap);
    *run_ids = bs_arena_alloc(ar, sizeof(char *) * cap);
    if (events) *events = bs_arena_alloc(ar, sizeof(char *) * cap);
    for (size_t i = 0; i < *n; i++) {
        size_t len = (size_t)PQgetlength(res, (int)i, 1);
        (*replies)[i] = bs_arena_alloc(ar, len ? len : 1);
        memcpy((*replies)[i], PQgetvalue(res, (int)i, 1), len);
        (*lens)[i] = len;
        (*run_ids)[i] =
            bs_arena_strndup(ar, PQgetvalue(res, (int)i, 0), (size_t)PQgetlength(res, (int)i, 0));
        if (events)
            (*events)[i] = PQgetisnull(res, (int)i, 2)
                               ? NULL
                               : bs_arena_strndup(ar, PQgetvalue(res, (int)i, 2),
                                                  (size_t)PQgetlength(res, (int)i, 2));
    }
    PQclear(res);
    return 0;
}
