/* filter_sql: every statement that reads flow_run through a filter is built here.
 * FlowRunFilter → SQL boolean expression over table flow_run, with every value
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
    /* A tags term PostgreSQL can answer from a GIN index, AND-ed with the rest, no ids named.
     * The planner's estimates for jsonb ?& / ?| assume the terms independent of the rest, and
     * its walk of the primary key through a million runs that match nothing takes seconds. So
     * the store runs `window` first: the same selection over the newest BS_SELECT_WINDOW runs,
     * same parameters; `limit` ids there are the answer (the first matches in id order). With
     * at least BS_SELECT_DENSE matches there, `text` (the planner's walk soon finds the rest);
     * with fewer, `sparse`: every match read from the index, then the newest `limit` of them.
     * Both NULL otherwise. */
    char *window;
    char *sparse;
} bs_sql;

#define BS_SELECT_WINDOW 1000
#define BS_SELECT_DENSE  5

/* Compiles f; parameters are numbered from first_param. Everything is allocated in ar. */
void bs_filter_sql(const bs_filter *f, int first_param, bs_arena *ar, bs_sql *out);

/* The selection statement: ids of matching runs, Prefect's order, limit as the last param.
 * The limit parameter is appended to out->params. */
void bs_filter_select_sql(const bs_filter *f, int limit, bs_arena *ar, bs_sql *out);

/* Large commands (max_runs) walk a snapshot of the matching runs in batches.
 * snapshot: a scalar subquery, the highest matching id now (parameters from first_param).
 * batch: the next batch, Prefect's order, at most limit: matching runs at or below the
 * snapshot's id, created by its time, below last_id (NULL: the first batch). The parameters
 * (filter, then snapshot id, time, limit, last id) are all in out.
 * recheck: which of the ids (a PostgreSQL array literal) still match, after locking. */
void bs_filter_snapshot_sql(const bs_filter *f, int first_param, bs_arena *ar, bs_sql *out);
void bs_filter_batch_sql(const bs_filter *f, const char *snapshot_max_id, const char *snapshot_at,
                         int limit, const char *last_id, bs_arena *ar, bs_sql *out);
void bs_filter_recheck_sql(const bs_filter *f, const char *ids, bs_arena *ar, bs_sql *out);

/* Renders a PostgreSQL array literal ({"a","b"}) of n strings, quoting every element;
 * a NULL element is written as NULL. */
char *bs_pg_array(bs_arena *ar, const char *const *v, size_t n);

#endif
