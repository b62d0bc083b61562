/* select: validation and selection exactly as the worker does them, without writing. */
#include "select.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "filter.h"
#include "filter_sql.h"
#include "ids.h"
#include "store.h"

#define MAX_SELECT_LIMIT 10000

static json_t *error_json(const bs_err *err)
{
    return json_pack("{s:{s:s,s:s,s:s}}", "error", "type", err->type[0] ? err->type : "error",
                     "field", err->field, "message", err->msg);
}

int bs_select_main(const bs_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                         {"sql", no_argument, NULL, 's'},
                                         {"explain", no_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *file = "-";
    int show_sql = 0, explain = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:seh", opts, NULL)) != -1) {
        if (c == 'f')
            file = optarg;
        else if (c == 'e')
            explain = 1;
        else if (c == 's')
            show_sql = 1;
        else {
            fprintf(
                c == 'h' ? stdout : stderr,
                "usage: bulkstate select [-f FILE] [--sql]\n"
                "Reads {\"flow_runs\": FILTER, \"limit\": N} per line (default stdin) and prints\n"
                "the ids the worker would select, or the validation error. Writes nothing.\n"
                "  --sql   also print the compiled statement and its parameters\n");
            return c == 'h' ? 0 : 64;
        }
    }
    FILE *in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (in == NULL) {
        perror(file);
        return 64;
    }
    bs_err err = {0};
    const bs_store_conf sc = bs_config_store_conf(cfg);
    bs_store *st = bs_store_new(&sc, &err);
    if (st == NULL) {
        fprintf(stderr, "bulkstate select: %s\n", err.msg);
        if (in != stdin) fclose(in);
        return 69;
    }
    bs_arena *ar = bs_arena_new();
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (getline(&line, &cap, in) > 0) {
        if (line[strspn(line, " \t\r\n")] == '\0') continue;
        json_error_t jerr;
        json_t *req = json_loads(line, 0, &jerr), *out;
        bs_filter f;
        memset(&err, 0, sizeof err);
        const json_t *lim = json_object_get(req, "limit");
        long long limit = json_is_integer(lim) ? json_integer_value(lim) : 50;
        if (!json_is_object(req)) {
            bs_err_input(&err, "json_parse", "", "not a JSON object: %s", jerr.text);
            out = error_json(&err);
        } else if (limit < 1 || limit > MAX_SELECT_LIMIT) {
            bs_err_input(&err, "less_than_equal", "limit", "limit should be 1..%d",
                         MAX_SELECT_LIMIT);
            out = error_json(&err);
        } else if (bs_filter_from_json(json_object_get(req, "flow_runs"), "flow_runs", &cfg->caps,
                                       ar, &f, &err) < 0) {
            out = error_json(&err);
        } else {
            bs_sql sql;
            const char **ids;
            size_t n;
            bs_filter_select_sql(&f, (int)limit, ar, &sql);
            /* the full selection's plan (with a GIN-able tags term, the sparse one) */
            if (explain) {
                sql.text = bs_arena_printf(ar, "EXPLAIN %s", sql.sparse ? sql.sparse : sql.text);
                sql.window = NULL;
                sql.sparse = NULL;
            }
            int64_t t0 = bs_mono_ms();
            /* in a transaction, as in the worker */
            int sel = bs_store_begin(st, &err);
            if (sel == 0) sel = bs_store_select(st, ar, &sql, &ids, &n, &err);
            bs_store_rollback(st);
            if (sel < 0) {
                fprintf(stderr, "bulkstate select: %s\n", err.msg);
                out = json_pack("{s:{s:s,s:s}}", "error", "type", "sql", "message", err.msg);
                rc = 1;
            } else {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++)
                    json_array_append_new(a, json_string(ids[i]));
                out = json_pack("{s:o,s:I}", explain ? "plan" : "ids", a, "ms",
                                (json_int_t)(bs_mono_ms() - t0));
            }
            if (show_sql) {
                json_t *p = json_array();
                for (size_t i = 0; i < sql.nparams; i++)
                    json_array_append_new(p, json_string(sql.params[i]));
                json_object_set_new(out, "sql", json_string(sql.text));
                json_object_set_new(out, "params", p);
                json_object_set_new(out, "window",
                                    sql.window ? json_string(sql.window) : json_null());
                json_object_set_new(out, "sparse",
                                    sql.sparse ? json_string(sql.sparse) : json_null());
                json_object_set_new(out, "dense_min", json_integer(BS_SELECT_DENSE));
            }
        }
        char *txt = json_dumps(out, JSON_COMPACT);
        printf("%s\n", txt);
        fflush(stdout);
        free(txt);
        json_decref(out);
        json_decref(req);
        bs_arena_reset(ar);
    }
    free(line);
    if (in != stdin) fclose(in);
    bs_arena_free(ar);
    bs_store_free(st);
    return rc;
}
