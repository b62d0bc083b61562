/* store_int: what the store's files share: the connection object and the statement helpers.
 * Not for use outside src/io/store*.c. */
#ifndef BS_STORE_INT_H
#define BS_STORE_INT_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "store.h"

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

/* Fills err from a failed statement (res may be NULL: the connection's error) and clears
 * res. Returns -1. */
int bs_pg_fail(bs_store *st, PGresult *res, bs_err *err, const char *what);
/* Runs sql with text parameters; the caller clears the result. */
PGresult *bs_pg_exec(bs_store *st, const char *sql, int n, const char *const *params);
/* The same, prepared on first use; sql must be a static string (its address names it). */
PGresult *bs_pg_exec_prepared(bs_store *st, const char *sql, int n, const char *const *params);
/* The same, with mw called while the statement executes on the server (when not NULL). */
int bs_pg_exec_prepared_meanwhile_ok(bs_store *st, const char *sql, int n,
                                     const char *const *params, const bs_store_meanwhile *mw,
                                     const char *what, bs_err *err);
/* Runs a statement whose rows are not needed: 0, or -1 with err. */
int bs_pg_exec_ok(bs_store *st, const char *sql, int n, const char *const *params, const char *what,
                  bs_err *err);
int bs_pg_exec_prepared_ok(bs_store *st, const char *sql, int n, const char *const *params,
                           const char *what, bs_err *err);

/* A message's partition and offset as text parameters. */
typedef struct bs_source_text {
    char part[16], off[32];
} bs_source_text;
bs_source_text bs_pg_source(const bs_source *src);

/* Column readers. Timestamps travel as microseconds since the epoch (bigint). */
int64_t bs_pg_col_ts(const PGresult *res, int r, int c); /* BS_TS_NULL when NULL */
const char *bs_pg_col_str(const PGresult *res, int r, int c, bs_arena *ar); /* NULL when NULL */
void bs_pg_col_uuid(const PGresult *res, int r, int c, bs_uuid *out);       /* "" when NULL */
bool bs_pg_col_bool(const PGresult *res, int r, int c);
/* The first column of every row, as strings in ar. */
const char **bs_pg_col_strings(const PGresult *res, bs_arena *ar, size_t *n);
/* Microseconds as a text parameter (NULL for BS_TS_NULL). */
const char *bs_pg_ts_param(bs_arena *ar, int64_t us);

#define BS_PG_US(x) "(extract(epoch FROM " x ") * 1000000)::bigint"
/* A flow_run_state row t's columns, as bs_pg_col_state reads them (six, from c). */
#define BS_PG_STATE_COLS(t)                                                                        \
    t ".id, " t ".type, " t ".name, " t                                                            \
      ".message, " BS_PG_US(t ".timestamp") ", " t ".state_details::text"
/* Columns c..c+5 of row r (BS_PG_STATE_COLS) into s, strings in ar; type BS_NONE when the
 * state is not there (its id NULL). data is left NULL. */
void bs_pg_col_state(const PGresult *res, int r, int c, bs_arena *ar, bs_state *s);

#endif
