/* filter_sql: FlowRunFilter → SQL boolean expression over table flow_run, with every value
 * passed as a $n text parameter (arrays as one array literal each, so a 10,000-id any_ is one
 * parameter). Reproduces Prefect's (SQLAlchemy's) semantics, TRUE folding included. Pure. */
#ifndef BS_FILTER_SQL_H
#define BS_FILTER_SQL_H

#include <stddef.h>

#include "arena.h"
#include "filter.h"

typedef struct bs_sql {
    char *text;          /* boolean SQL expression, "TRUE" when everything matches */
    size_t nparams;      /* parameters used: $first .. $(first+nparams-1) */
    const char **params; /* text values, owned by the arena */
    /* selection statements only (bs_filter_select_sql): */
    int limit;
    /* the filter has a tags term PostgreSQL can answer from a GIN index: run `window` first,
     * then, when it falls short, `text` with index scans off, so the planner reads the GIN
     * index instead of walking the primary key through runs that do not match (its estimates
     * for jsonb ?& / ?| assume the terms independent of the rest, and a walk over a million
     * runs that match nothing takes seconds) */
    bool bitmap;
    /* with bitmap: the same selection over the newest BS_SELECT_WINDOW runs only, same
     * parameters; when it returns `limit` ids they are the answer (the first matches in id
     * order). NULL otherwise. */
    char *window;
} bs_sql;

#define BS_SELECT_WINDOW 5000

/* Compiles f; parameters are numbered from first_param. Everything is allocated in ar. */
void bs_filter_sql(const bs_filter *f, int first_param, bs_arena *ar, bs_sql *out);

/* The selection statement: ids of matching runs, Prefect's order, limit as the last param.
 * The limit parameter is appended to out->params. */
void bs_filter_select_sql(const bs_filter *f, int limit, bs_arena *ar, bs_sql *out);

/* Renders a PostgreSQL array literal ({"a","b"}) of n strings, quoting every element;
 * a NULL element is written as NULL. */
char *bs_pg_array(bs_arena *ar, const char *const *v, size_t n);

#endif
