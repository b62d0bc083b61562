/* filter_sql: the compiler. Each sub-filter yields a list of predicates combined by its
 * operator; an empty list is TRUE. At the top level TRUE terms vanish under AND and make the
 * whole filter TRUE under OR, as SQLAlchemy folds them. No value is ever pasted into SQL text:
 * only column names and operators come from here. Pure. */
#include "filter_sql.h"

#include <stdio.h>
#include <string.h>

#include "timeutil.h"

#define MAX_TERMS 16

typedef struct ctx {
    bs_arena *ar;
    int next;            /* next parameter number */
    const char **params; /* grows in the arena */
    size_t nparams, cap;
} ctx;

typedef struct terms {
    size_t n;
    const char *t[MAX_TERMS];
} terms;

static int add_param(ctx *c, const char *value)
{
    if (c->nparams == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        const char **p = bs_arena_alloc(c->ar, cap * sizeof *p);
        if (c->nparams) memcpy(p, c->params, c->nparams * sizeof *p);
        c->params = p;
        c->cap = cap;
    }
    c->params[c->nparams++] = value;
    return c->next++;
}

char *bs_pg_array(bs_arena *ar, const char *const *v, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += (v[i] ? strlen(v[i]) * 2 : 4) + 3;
    char *out = bs_arena_alloc(ar, len), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) *p++ = ',';
        if (v[i] == NULL) {
            memcpy(p, "NULL", 4);
            p += 4;
            continue;
        }
        *p++ = '"';
        for (const char *s = v[i]; *s; s++) {
            if (*s == '"' || *s == '\\') *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

static void add(terms *t, const char *s)
{
    if (t->n < MAX_TERMS) t->t[t->n++] = s;
}

static const char *arr(ctx *c, const bs_list *l)
{
    return bs_pg_array(c->ar, l->v, l->n);
}

/* col = ANY($n::type[]); one value: col = $n::type, the same rows, and a form the planner can
 * walk an index on (col, id) with in id order (it cannot with an array) */
static void any_of(ctx *c, terms *t, const char *col, const char *type, const bs_list *l)
{
    if (l->n == 1 && l->v[0] != NULL) {
        int n = add_param(c, l->v[0]);
        add(t, bs_arena_printf(c->ar, "%s = $%d::%s", col, n, type));
        return;
    }
    int n = add_param(c, arr(c, l));
    add(t, bs_arena_printf(c->ar, "%s = ANY($%d::%s[])", col, n, type));
}

/* NOT IN: NULL never matches, as in SQL's NOT IN */
static void none_of(ctx *c, terms *t, const char *col, const char *type, const bs_list *l)
{
    int n = add_param(c, arr(c, l));
    add(t, bs_arena_printf(c->ar, "%s <> ALL($%d::%s[])", col, n, type));
}

static void is_null(ctx *c, terms *t, const char *col, const bs_optbool *b)
{
    add(t, bs_arena_printf(c->ar, "%s IS %sNULL", col, b->v ? "" : "NOT "));
}

static void ts_cmp(ctx *c, terms *t, const char *col, const char *op, const bs_optts *ts)
{
    char buf[48];
    int n = add_param(c, bs_arena_strdup(c->ar, bs_ts_format_pg(ts->v, buf, sizeof buf)));
    add(t, bs_arena_printf(c->ar, "%s %s $%d::timestamptz", col, op, n));
}

/* Joins terms; NULL when there are none (TRUE). */
static const char *combine(ctx *c, const terms *t, bs_op op)
{
    if (t->n == 0) return NULL;
    if (t->n == 1) return t->t[0];
    size_t len = 3;
    for (size_t i = 0; i < t->n; i++)
        len += strlen(t->t[i]) + 8;
    char *s = bs_arena_alloc(c->ar, len), *p = s;
    *p++ = '(';
    for (size_t i = 0; i < t->n; i++) {
        if (i) p += sprintf(p, op == BS_OP_OR ? " OR " : " AND ");
        p += sprintf(p, "%s", t->t[i]);
    }
    *p++ = ')';
    *p = '\0';
    return s;
}

/* A state child (type or name) is one AND-ed group: Prefect drops it only when it yields TRUE
 * (no active key), otherwise its any_ and non-empty not_any_ both apply. */
static void state_child(ctx *c, terms *t, const bs_subfilter *s, const char *col, const char *type)
{
    terms child = {0};
    if (!s->present) return;
    if (s->any.set) any_of(c, &child, col, type, &s->any);
    if (s->not_any.set && s->not_any.n > 0) none_of(c, &child, col, type, &s->not_any);
    const char *p = combine(c, &child, BS_OP_AND);
    if (p != NULL) add(t, p);
}

static const char *field_pred(ctx *c, const bs_filter *f, int i)
{
    const bs_subfilter *s = &f->f[i];
    terms t = {0};
    switch ((bs_field)i) {
    case BS_F_ID:
        if (s->any.set) any_of(c, &t, "flow_run.id", "uuid", &s->any);
        if (s->not_any.set && s->not_any.n) none_of(c, &t, "flow_run.id", "uuid", &s->not_any);
        break;
    case BS_F_NAME:
        if (s->any.set) any_of(c, &t, "flow_run.name", "text", &s->any);
        if (s->like && *s->like) {
            int n = add_param(c, s->like);
            add(&t, bs_arena_printf(c->ar, "flow_run.name ILIKE '%%' || $%d || '%%'", n));
        }
        break;
    case BS_F_TAGS:
        if (s->all.set && s->all.n) {
            int n = add_param(c, arr(c, &s->all));
            add(&t, bs_arena_printf(c->ar, "flow_run.tags ?& $%d::text[]", n));
        }
        if (s->any.set) {
            int n = add_param(c, arr(c, &s->any));
            add(&t, bs_arena_printf(c->ar, "flow_run.tags ?| $%d::text[]", n));
        }
        if (s->is_null.set)
            add(&t, s->is_null.v ? "flow_run.tags = '[]'::jsonb" : "flow_run.tags <> '[]'::jsonb");
        break;
    case BS_F_DEPLOYMENT_ID:
        if (s->any.set) any_of(c, &t, "flow_run.deployment_id", "uuid", &s->any);
        if (s->is_null.set) is_null(c, &t, "flow_run.deployment_id", &s->is_null);
        break;
    case BS_F_WORK_QUEUE_NAME:
        if (s->any.set) any_of(c, &t, "flow_run.work_queue_name", "text", &s->any);
        if (s->is_null.set) is_null(c, &t, "flow_run.work_queue_name", &s->is_null);
        break;
    case BS_F_STATE:
        state_child(c, &t, &f->state_type, "flow_run.state_type", "state_type");
        state_child(c, &t, &f->state_name, "flow_run.state_name", "text");
        break;
    case BS_F_FLOW_VERSION:
        if (s->any.set) any_of(c, &t, "flow_run.flow_version", "text", &s->any);
        break;
    case BS_F_START_TIME:
        if (s->before.set)
            ts_cmp(c, &t, "COALESCE(flow_run.start_time, flow_run.expected_start_time)",
                   "<=", &s->before);
        if (s->after.set)
            ts_cmp(c, &t, "COALESCE(flow_run.start_time, flow_run.expected_start_time)",
                   ">=", &s->after);
        if (s->is_null.set) is_null(c, &t, "flow_run.start_time", &s->is_null);
        break;
    case BS_F_END_TIME:
    case BS_F_EXPECTED_START_TIME:
    case BS_F_NEXT_SCHEDULED_START_TIME: {
        const char *col = bs_arena_printf(c->ar, "flow_run.%s", bs_filter_field_name(i));
        if (s->before.set) ts_cmp(c, &t, col, "<=", &s->before);
        if (s->after.set) ts_cmp(c, &t, col, ">=", &s->after);
        if (s->is_null.set) is_null(c, &t, col, &s->is_null);
        break;
    }
    case BS_F_PARENT_FLOW_RUN_ID:
        if (s->any.set) {
            int n = add_param(c, arr(c, &s->any));
            add(&t, bs_arena_printf(c->ar,
                                    "flow_run.id IN (SELECT fr.id FROM flow_run fr JOIN task_run "
                                    "tr ON tr.id = fr.parent_task_run_id WHERE tr.flow_run_id = "
                                    "ANY($%d::uuid[]))",
                                    n));
        }
        break;
    case BS_F_PARENT_TASK_RUN_ID:
        if (s->any.set) any_of(c, &t, "flow_run.parent_task_run_id", "uuid", &s->any);
        if (s->is_null.set) is_null(c, &t, "flow_run.parent_task_run_id", &s->is_null);
        break;
    case BS_F_IDEMPOTENCY_KEY:
        if (s->any.set) any_of(c, &t, "flow_run.idempotency_key", "text", &s->any);
        if (s->not_any.set && s->not_any.n)
            none_of(c, &t, "flow_run.idempotency_key", "text", &s->not_any);
        break;
    case BS_F_CREATED_BY:
        if (s->id.set) any_of(c, &t, "(flow_run.created_by ->> 'id')", "text", &s->id);
        if (s->type.set) any_of(c, &t, "(flow_run.created_by ->> 'type')", "text", &s->type);
        if (s->is_null.set) is_null(c, &t, "flow_run.created_by", &s->is_null);
        break;
    case BS_F_COUNT:
        break;
    }
    return combine(c, &t, s->op);
}

static void compile(ctx *c, const bs_filter *f, bs_sql *out)
{
    terms top = {0};
    bool any_true = false;
    if (f->present) {
        for (int i = 0; i < BS_F_COUNT; i++) {
            if (!f->f[i].present) continue;
            const char *p = field_pred(c, f, i);
            if (p == NULL)
                any_true = true;
            else
                add(&top, p);
        }
    }
    const char *w = combine(c, &top, f->op);
    if (w == NULL || (f->op == BS_OP_OR && any_true)) {
        /* TRUE OR x is TRUE: the parameters compiled so far are dropped with the terms */
        w = "TRUE";
        c->nparams = 0;
    }
    out->text = (char *)w;
    out->params = c->params;
    out->nparams = c->nparams;
}

void bs_filter_sql(const bs_filter *f, int first_param, bs_arena *ar, bs_sql *out)
{
    ctx c = {.ar = ar, .next = first_param};
    compile(&c, f, out);
}

void bs_filter_select_sql(const bs_filter *f, int limit, bs_arena *ar, bs_sql *out)
{
    ctx c = {.ar = ar, .next = 1};
    bs_sql where;
    compile(&c, f, &where);
    c.next = 1 + (int)where.nparams;
    int n = add_param(&c, bs_arena_printf(ar, "%d", limit));
    out->text = bs_arena_printf(
        ar, "SELECT flow_run.id FROM flow_run WHERE %s ORDER BY flow_run.id DESC LIMIT $%d",
        where.text, n);
    out->params = c.params;
    out->nparams = c.nparams;
    out->limit = limit;
    out->window = NULL;
    out->sparse = NULL;
    const bs_subfilter *id = &f->f[BS_F_ID], *tags = &f->f[BS_F_TAGS];
    /* a GIN-able tags term AND-ed with the rest (under OR, a branch without an index would
     * make a sequential scan out of it); not when ids are named (primary key lookups) */
    bool gin = f->op == BS_OP_AND && tags->present &&
               ((tags->all.set && tags->all.n) || tags->any.set) &&
               !(tags->op == BS_OP_OR && tags->is_null.set) && !(id->present && id->any.set);
    if (!gin) return; /* the planner's own choice, which its estimates serve well */
    /* dense matches are found among the newest runs at once; the GIN index would fetch and
     * sort them all */
    out->window = bs_arena_printf(ar,
                                  "SELECT flow_run.id FROM (SELECT * FROM flow_run ORDER BY "
                                  "flow_run.id DESC LIMIT %d) AS flow_run WHERE %s ORDER BY "
                                  "flow_run.id DESC LIMIT $%d",
                                  BS_SELECT_WINDOW, where.text, n);
    /* a materialized CTE has no order or limit for a walk of the primary key to serve: the
     * planner reads every match, from the GIN index when the matches are few */
    out->sparse = bs_arena_printf(ar,
                                  "WITH m AS MATERIALIZED (SELECT flow_run.id FROM flow_run "
                                  "WHERE %s) SELECT m.id FROM m ORDER BY m.id DESC LIMIT $%d",
                                  where.text, n);
}

void bs_filter_snapshot_sql(const bs_filter *f, int first_param, bs_arena *ar, bs_sql *out)
{
    bs_sql where;
    bs_filter_sql(f, first_param, ar, &where);
    memset(out, 0, sizeof *out);
    out->text = bs_arena_printf(
        ar, "SELECT flow_run.id FROM flow_run WHERE %s ORDER BY flow_run.id DESC LIMIT 1",
        where.text);
    out->params = where.params;
    out->nparams = where.nparams;
}

void bs_filter_batch_sql(const bs_filter *f, const char *snapshot_max_id, const char *snapshot_at,
                         int limit, const char *last_id, bs_arena *ar, bs_sql *out)
{
    ctx c = {.ar = ar, .next = 1};
    bs_sql where;
    compile(&c, f, &where);
    c.next = 1 + (int)where.nparams;
    const int top = add_param(&c, snapshot_max_id), at = add_param(&c, snapshot_at);
    const int lim = add_param(&c, bs_arena_printf(ar, "%d", limit));
    const int below = add_param(&c, last_id);
    memset(out, 0, sizeof *out);
    out->text = bs_arena_printf(ar,
                                "SELECT flow_run.id FROM flow_run WHERE (%s) AND flow_run.id <= "
                                "$%d::uuid AND flow_run.created <= $%d::timestamptz AND ($%d::uuid "
                                "IS NULL OR flow_run.id < $%d::uuid) ORDER BY flow_run.id DESC "
                                "LIMIT $%d",
                                where.text, top, at, below, below, lim);
    out->params = c.params;
    out->nparams = c.nparams;
    out->limit = limit;
}

void bs_filter_recheck_sql(const bs_filter *f, const char *ids, bs_arena *ar, bs_sql *out)
{
    ctx c = {.ar = ar, .next = 1};
    bs_sql where;
    compile(&c, f, &where);
    c.next = 1 + (int)where.nparams;
    const int n = add_param(&c, ids);
    memset(out, 0, sizeof *out);
    out->text = bs_arena_printf(
        ar, "SELECT flow_run.id FROM flow_run WHERE flow_run.id = ANY($%d::uuid[]) AND (%s)", n,
        where.text);
    out->params = c.params;
    out->nparams = c.nparams;
}
