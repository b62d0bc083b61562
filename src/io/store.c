/* store: the connection, its session settings, transactions and migrations, and the
 * statement helpers the other store files share (store_int.h). */
#include "store_int.h"

#include "file.h"
#include "log.h"
#include "timeutil.h"

/* SQLSTATE → what happened and whether trying again may help. A lost connection, a
 * serialization failure, a deadlock, a lock not available, insufficient resources or an
 * operator intervention pass; a statement that ran into statement_timeout (57014) will most
 * likely do so again, so the worker counts it as a failed delivery (settle.h); anything else
 * is about the statement, for this command. */
static void classify(const PGconn *conn, const PGresult *res, bs_code *code, bool *retriable)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    *code = BS_EDB;
    *retriable = true;
    if (PQstatus(conn) != CONNECTION_OK || state == NULL) return;
    if (strcmp(state, "57014") == 0) {
        *code = BS_ETIMEOUT;
        return;
    }
    *retriable = strncmp(state, "08", 2) == 0 || strcmp(state, "40001") == 0 ||
                 strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
                 strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0;
}

int bs_pg_fail(bs_store *st, PGresult *res, bs_err *err, const char *what)
{
    bs_code code;
    bool retriable;
    classify(st->conn, res, &code, &retriable);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(st->conn);
    char clean[400];
    snprintf(clean, sizeof clean, "%s", msg);
    for (char *p = clean; *p; p++)
        if (*p == '\n') *p = ' ';
    if (retriable)
        bs_err_retriable(err, code, "could not %s: %s", what, clean);
    else
        bs_err_set(err, code, "could not %s: %s", what, clean);
    PQclear(res);
    return -1;
}

PGresult *bs_pg_exec(bs_store *st, const char *sql, int n, const char *const *params)
{
    return PQexecParams(st->conn, sql, n, NULL, params, NULL, NULL, 0);
}

/* sql is a static string: its address names its prepared statement, prepared here on first
 * use. NULL with name "" when every slot is taken (the statement runs unprepared); NULL when
 * ready; the failed PQprepare's result otherwise. */
static PGresult *prepared_name(bs_store *st, const char *sql, int n, char name[16])
{
    int i = 0;
    while (i < st->nprepared && st->prepared[i] != sql)
        i++;
    snprintf(name, 16, "bs_%d", i);
    if (i < st->nprepared) return NULL;
    if (i == (int)(sizeof st->prepared / sizeof st->prepared[0])) {
        name[0] = '\0';
        return NULL;
    }
    PGresult *res = PQprepare(st->conn, name, sql, n, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) return res;
    PQclear(res);
    st->prepared[st->nprepared++] = sql;
    return NULL;
}

PGresult *bs_pg_exec_prepared(bs_store *st, const char *sql, int n, const char *const *params)
{
    char name[16];
    PGresult *failed = prepared_name(st, sql, n, name);
    if (failed != NULL) return failed;
    if (name[0] == '\0') return bs_pg_exec(st, sql, n, params);
    return PQexecPrepared(st->conn, name, n, params, NULL, NULL, 0);
}

static int result_ok(bs_store *st, PGresult *res, const char *what, bs_err *err)
{
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) return bs_pg_fail(st, res, err, what);
    PQclear(res);
    return 0;
}

int bs_pg_exec_ok(bs_store *st, const char *sql, int n, const char *const *params, const char *what,
                  bs_err *err)
{
    return result_ok(st, bs_pg_exec(st, sql, n, params), what, err);
}

int bs_pg_exec_prepared_ok(bs_store *st, const char *sql, int n, const char *const *params,
                           const char *what, bs_err *err)
{
    return result_ok(st, bs_pg_exec_prepared(st, sql, n, params), what, err);
}

int bs_pg_exec_prepared_meanwhile_ok(bs_store *st, const char *sql, int n,
                                     const char *const *params, const bs_store_meanwhile *mw,
                                     const char *what, bs_err *err)
{
    if (mw == NULL) return bs_pg_exec_prepared_ok(st, sql, n, params, what, err);
    char name[16];
    PGresult *failed = prepared_name(st, sql, n, name);
    if (failed != NULL) return bs_pg_fail(st, failed, err, what);
    const int sent = name[0] ? PQsendQueryPrepared(st->conn, name, n, params, NULL, NULL, 0)
                             : PQsendQueryParams(st->conn, sql, n, NULL, params, NULL, NULL, 0);
    mw->fn(mw->ctx);
    if (!sent) return bs_pg_fail(st, NULL, err, what);
    /* the statement's one result, then NULL (after a lost connection: NULL at once) */
    PGresult *res = PQgetResult(st->conn), *more;
    while ((more = PQgetResult(st->conn)) != NULL)
        PQclear(more);
    return result_ok(st, res, what, err);
}

bs_source_text bs_pg_source(const bs_source *src)
{
    bs_source_text t;
    snprintf(t.part, sizeof t.part, "%" PRId32, src->partition);
    snprintf(t.off, sizeof t.off, "%" PRId64, src->offset);
    return t;
}

int64_t bs_pg_col_ts(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? BS_TS_NULL : strtoll(PQgetvalue(res, r, c), NULL, 10);
}

const char *bs_pg_col_str(const PGresult *res, int r, int c, bs_arena *ar)
{
    return PQgetisnull(res, r, c) ? NULL : bs_arena_strdup(ar, PQgetvalue(res, r, c));
}

void bs_pg_col_uuid(const PGresult *res, int r, int c, bs_uuid *out)
{
    out->s[0] = '\0';
    if (!PQgetisnull(res, r, c)) snprintf(out->s, sizeof out->s, "%s", PQgetvalue(res, r, c));
}

bool bs_pg_col_bool(const PGresult *res, int r, int c)
{
    return strcmp(PQgetvalue(res, r, c), "t") == 0;
}

const char **bs_pg_col_strings(const PGresult *res, bs_arena *ar, size_t *n)
{
    *n = (size_t)PQntuples(res);
    const char **v = bs_arena_alloc(ar, sizeof(char *) * (*n ? *n : 1));
    for (size_t i = 0; i < *n; i++)
        v[i] = bs_arena_strdup(ar, PQgetvalue(res, (int)i, 0));
    return v;
}

const char *bs_pg_ts_param(bs_arena *ar, int64_t us)
{
    return us == BS_TS_NULL ? NULL : bs_arena_printf(ar, "%" PRId64, us);
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
        bs_pg_exec_ok(st, "SELECT set_config('client_connection_check_interval', '1000', false)", 0,
                      NULL, "configure the session", err) < 0)
        return -1;
    return bs_pg_exec_ok(st,
                         "SELECT set_config('statement_timeout', $1, false), "
                         "set_config('lock_timeout', $2, false), "
                         "set_config('application_name', 'bulkstate', false), "
                         "set_config('timezone', 'UTC', false)",
                         2, p, "configure the session", err);
}

bs_store *bs_store_new(const bs_store_conf *conf, bs_err *err)
{
    bs_store *st = bs_xcalloc(1, sizeof *st);
    st->conninfo = bs_xstrdup(conf->conninfo);
    st->statement_timeout_ms = conf->statement_timeout_ms;
    st->lock_timeout_ms = conf->lock_timeout_ms;
    st->conn = PQconnectdb(st->conninfo);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(st->conn));
        msg[strcspn(msg, "\n")] = '\0';
        bs_err_retriable(err, BS_EDB, "could not connect to PostgreSQL: %s", msg);
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
        return bs_err_retriable(err, BS_EDB, "could not reconnect to PostgreSQL: %s", msg);
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
        int rc = bs_pg_fail(st, res, err, "apply the schema script");
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
    PGresult *res = bs_pg_exec(st, "SELECT to_regclass('public.flow_run') IS NOT NULL", 0, NULL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "inspect the database");
    bool have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    *created_prefect = false;
    if (bs_pg_exec_ok(st, "BEGIN", 0, NULL, "begin the migration", err) < 0) return -1;
    /* one migration at a time, whatever runs it */
    if (bs_pg_exec_ok(st, "SELECT pg_advisory_xact_lock(7301180624)", 0, NULL, "lock the migration",
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
    return bs_pg_exec_ok(st, "COMMIT", 0, NULL, "commit the migration", err);
fail:
    bs_store_rollback(st);
    return -1;
}

/* Inside an outer transaction (replay --dry-run), a command's transaction is a savepoint. */
int bs_store_begin(bs_store *st, bs_err *err)
{
    return bs_pg_exec_ok(st,
                         st->outer ? "SAVEPOINT bs_cmd" : "BEGIN ISOLATION LEVEL READ COMMITTED", 0,
                         NULL, "begin", err);
}

int bs_store_commit(bs_store *st, bs_err *err)
{
    return bs_pg_exec_ok(st, st->outer ? "RELEASE SAVEPOINT bs_cmd" : "COMMIT", 0, NULL, "commit",
                         err);
}

void bs_store_rollback(bs_store *st)
{
    PQclear(PQexec(st->conn, st->outer ? "ROLLBACK TO SAVEPOINT bs_cmd; RELEASE SAVEPOINT bs_cmd"
                                       : "ROLLBACK"));
}

int bs_store_outer_begin(bs_store *st, bs_err *err)
{
    if (bs_pg_exec_ok(st, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, "begin", err) < 0)
        return -1;
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
    return bs_pg_exec_ok(st, "SAVEPOINT bs_run", 0, NULL, "set a savepoint", err);
}

void bs_store_rollback_to_savepoint(bs_store *st)
{
    PQclear(PQexec(st->conn, "ROLLBACK TO SAVEPOINT bs_run"));
}
