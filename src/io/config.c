/* config: table-driven ini parsing and validation (PgBouncer's style). No Kafka or PostgreSQL
 * here: [kafka] keys are only collected; librdkafka validates them when the handle is made. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "codec.h"
#include "log.h"

enum { T_INT, T_STR };

typedef struct key {
    const char *section, *name;
    int type;
    size_t off;
    const char *def;
    long min, max;
    const char *help;
} key;

#define O(f) offsetof(bs_config, f)

/* alphabetical within each section */
static const key KEYS[] = {
    {"limits", "max_list_items", T_INT, O(caps.list_items), "10000", 1, 1000000,
     "items of one any_/not_any_/all_ list of a filter at most"},
    {"limits", "max_pattern_bytes", T_INT, O(caps.pattern_bytes), "256", 1, 65536,
     "bytes of a like_ pattern at most (matched against every candidate run)"},
    {"limits", "max_runs", T_INT, O(caps.max_runs), "1000000", 1, 100000000,
     "a large command's max_runs at most"},
    {"limits", "max_string_bytes", T_INT, O(caps.string_bytes), "4096", 16, 1048576,
     "bytes of one string of a filter, and of state.name, at most"},
    {"orchestration", "concurrency_slot_wait_seconds", T_INT, O(slot_wait_s), "30", 1, 86400,
     "how far out a run denied a deployment concurrency slot is rescheduled (Prefect's "
     "server.deployments.concurrency_slot_wait_seconds)"},
    {"orchestration", "initial_deployment_lease_duration", T_INT, O(lease_ttl_s), "300", 1, 86400,
     "lifetime in seconds of a deployment concurrency lease when the deployment sets no "
     "grace_period_seconds (Prefect's server.concurrency.initial_deployment_lease_duration)"},
    {"postgres", "conninfo", T_STR, O(conninfo), "dbname=bulkstate", 0, 0,
     "libpq connection string, handed to libpq as is"},
    {"postgres", "lock_timeout_ms", T_INT, O(lock_timeout_ms), "10000", 0, 600000,
     "lock_timeout of the worker's session (0 = none)"},
    {"postgres", "statement_timeout_ms", T_INT, O(statement_timeout_ms), "30000", 0, 3600000,
     "statement_timeout of the worker's session (0 = none)"},
    {"prefect", "api_url", T_STR, O(prefect_api_url), "", 0, 0,
     "Prefect's server API (PREFECT_API_URL, e.g. http://127.0.0.1:4200/api): every written "
     "state's event is delivered to its event bus (empty: off)"},
    {"prefect", "auth_string", T_STR, O(prefect_auth_string), "", 0, 0,
     "user:password for Prefect's basic auth (its PREFECT_SERVER_API_AUTH_STRING; empty: none)"},
    {"prefect", "batch_events", T_INT, O(prefect_batch_events), "100", 1, 1000,
     "events posted to Prefect in one request at most"},
    {"prefect", "lag_alert_s", T_INT, O(prefect_lag_alert_s), "60", 1, 86400,
     "/readyz reports Prefect's events as late when the oldest waits longer than this"},
    {"prefect", "max_events_per_s", T_INT, O(prefect_max_events_per_s), "200", 1, 100000,
     "events posted to Prefect per second at most: its in-memory event bus drops what its "
     "services cannot take (10,000 waiting), though it answers 204"},
    {"prefect", "outbox_max", T_INT, O(prefect_outbox_max), "100000", 100, 100000000,
     "undelivered events at which commands wait for Prefect to take them (the outbox bound)"},
    {"prefect", "timeout_ms", T_INT, O(prefect_timeout_ms), "5000", 100, 60000,
     "timeout of one request to Prefect's server"},
    {"worker", "batch_pause_ms", T_INT, O(batch_pause_ms), "0", 0, 60000,
     "pause between two batches of a large command (max_runs), to spare the database"},
    {"worker", "command_topic", T_STR, O(command_topic), "bulkstate.commands", 0, 0,
     "topic the commands are consumed from"},
    {"worker", "confluent_command_id", T_INT, O(confluent_command_id), "-1", -1, 2147483647,
     "schema-registry id that means BulkSetStateCommand in Confluent framing (-1: none)"},
    {"worker", "confluent_command_versions", T_STR, O(confluent_command_versions), "", 0, 0,
     "schema-registry ids of earlier BulkSetStateCommand versions, ID:VERSION,... (versions "
     "as in schemas/versions/)"},
    {"worker", "confluent_completed_id", T_INT, O(confluent_completed_id), "-1", -1, 2147483647,
     "schema-registry id of BulkSetStateCompleted, for output_framing=confluent"},
    {"worker", "confluent_result_id", T_INT, O(confluent_result_id), "-1", -1, 2147483647,
     "schema-registry id of FlowRunOrchestrationResult, for output_framing=confluent"},
    {"worker", "dlq_topic", T_STR, O(dlq_topic), "bulkstate.dlq", 0, 0,
     "dead-letter topic: raw copies of messages that could not be processed"},
    {"worker", "events_topic", T_STR, O(events_topic), "", 0, 0,
     "topic for Prefect-shaped state-change events, one per written state (empty: off)"},
    {"worker", "flush_timeout_ms", T_INT, O(flush_timeout_ms), "30000", 100, 600000,
     "how long to wait for the broker to acknowledge a command's replies"},
    {"worker", "lease_reap_interval_ms", T_INT, O(lease_reap_interval_ms), "15000", 100, 3600000,
     "how often the worker frees the slots of expired deployment concurrency leases"},
    {"worker", "log_format", T_STR, O(log_format), "logfmt", 0, 0, "logfmt or json"},
    {"worker", "log_level", T_STR, O(log_level), "info", 0, 0, "debug, info, warn or error"},
    {"worker", "metrics_listen", T_STR, O(metrics_listen), "", 0, 0,
     "HOST:PORT of the HTTP endpoint serving /metrics, /healthz and /readyz (empty: off; "
     "port 0 picks a free one)"},
    {"worker", "max_attempts", T_INT, O(max_attempts), "5", 1, 1000,
     "deliveries of one message that may end without a result (crash, kill, timeout) before "
     "it is dead-lettered"},
    {"worker", "max_message_bytes", T_INT, O(max_message_bytes), "983040", 1024, 16777216,
     "larger command messages are dead-lettered without decoding; [kafka] message.max.bytes "
     "must leave 16384 bytes above it for a dead-letter copy's key and headers"},
    {"worker", "output_framing", T_STR, O(output_framing), "single-object", 0, 0,
     "single-object, confluent or json"},
    {"worker", "poll_timeout_ms", T_INT, O(poll_timeout_ms), "200", 10, 5000,
     "consumer poll timeout"},
    {"worker", "reply_topic", T_STR, O(reply_topic), "bulkstate.replies", 0, 0,
     "default topic for results and completions (a command may name its own)"},
    {"worker", "reply_topic_pattern", T_STR, O(reply_topic_pattern), ".*", 0, 0,
     "POSIX extended regular expression a command's own reply_topic must match whole; the "
     "command, dead-letter and events topics and names starting with __ are refused always"},
    {"worker", "retry_backoff_initial_ms", T_INT, O(retry_backoff_initial_ms), "200", 10, 60000,
     "first delay before retrying a command after a transient failure"},
    {"worker", "retry_backoff_max_ms", T_INT, O(retry_backoff_max_ms), "30000", 100, 600000,
     "cap of the exponential retry delay"},
    {"worker", "schema_dir", T_STR, O(schema_dir), BS_SOURCE_DIR "/schemas", 0, 0,
     "directory holding the .avsc files"},
    {"worker", "threads", T_INT, O(threads), "1", 1, BS_MAX_THREADS,
     "consumers in this process, one thread each with its own PostgreSQL connection: the "
     "group spreads the partitions over them, each partition handled in order by one"},
};

static int set_value(bs_config *cfg, const key *k, const char *val, const char *where, FILE *errs)
{
    char *field = (char *)cfg + k->off;
    if (k->type == T_STR) {
        free(*(char **)field);
        *(char **)field = bs_xstrdup(val);
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(val, &end, 10);
    if (errno || end == val || *end != '\0') {
        fprintf(errs, "%s: %s.%s: \"%s\" is not an integer\n", where, k->section, k->name, val);
        return 1;
    }
    if (n < k->min || n > k->max) {
        fprintf(errs, "%s: %s.%s: %ld is out of range %ld..%ld\n", where, k->section, k->name, n,
                k->min, k->max);
        return 1;
    }
    *(int *)field = (int)n;
    return 0;
}

static const char *const SECTIONS[] = {"kafka",    "limits",  "orchestration",
                                       "postgres", "prefect", "worker"};

static bool known_section(const char *name)
{
    for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++)
        if (strcmp(SECTIONS[i], name) == 0) return true;
    return false;
}

static const key *find(const char *section, const char *name)
{
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].name, name) == 0)
            return &KEYS[i];
    return NULL;
}

void bs_config_set_kafka(bs_config *cfg, const char *k, const char *val, const char *where)
{
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka_keys[i], k) == 0) {
            free(cfg->kafka_vals[i]);
            free(cfg->kafka_where[i]);
            cfg->kafka_vals[i] = bs_xstrdup(val);
            cfg->kafka_where[i] = bs_xstrdup(where ? where : "config");
            return;
        }
    cfg->kafka_keys = bs_xrealloc(cfg->kafka_keys, (cfg->nkafka + 1) * sizeof(char *));
    cfg->kafka_vals = bs_xrealloc(cfg->kafka_vals, (cfg->nkafka + 1) * sizeof(char *));
    cfg->kafka_where = bs_xrealloc(cfg->kafka_where, (cfg->nkafka + 1) * sizeof(char *));
    cfg->kafka_keys[cfg->nkafka] = bs_xstrdup(k);
    cfg->kafka_vals[cfg->nkafka] = bs_xstrdup(val);
    cfg->kafka_where[cfg->nkafka] = bs_xstrdup(where ? where : "config");
    cfg->nkafka++;
}

const char *bs_config_get_kafka(const bs_config *cfg, const char *k)
{
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka_keys[i], k) == 0) return cfg->kafka_vals[i];
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int parse_file(bs_config *cfg, const char *path, FILE *errs)
{
    FILE *f = fopen(path, "r");
    char line[4096], section[64] = "", where[1100];
    int nerr = 0, lineno = 0;
    if (f == NULL) {
        fprintf(errs, "%s:0: could not open config file: %s\n", path, strerror(errno));
        return 1;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        /* a comment is a whole line starting with ';' or '#': values may hold both (a
         * password "ab #1" stays whole) */
        char *s = trim(line);
        if (*s == '\0' || *s == ';' || *s == '#') continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e == NULL || e[1] != '\0') {
                fprintf(errs, "%s: malformed section header\n", where);
                nerr++;
                continue;
            }
            *e = '\0';
            snprintf(section, sizeof section, "%s", trim(s + 1));
            if (!known_section(section)) {
                fprintf(errs, "%s: unknown section [%s]\n", where, section);
                nerr++;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            fprintf(errs, "%s: expected key = value\n", where);
            nerr++;
            continue;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        if (*section == '\0') {
            fprintf(errs, "%s: key \"%s\" outside a section\n", where, k);
            nerr++;
        } else if (strcmp(section, "kafka") == 0) {
            bs_config_set_kafka(cfg, k, v, where);
        } else {
            const key *kd = find(section, k);
            if (kd == NULL) {
                fprintf(errs, "%s: unknown key \"%s\" in [%s]\n", where, k, section);
                nerr++;
            } else {
                nerr += set_value(cfg, kd, v, where, errs);
            }
        }
    }
    fclose(f);
    return nerr;
}

static int apply_env(bs_config *cfg, FILE *errs)
{
    extern char **environ;
    int nerr = 0;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "BULKSTATE_", 10) != 0) continue;
        char name[256];
        const char *eq = strchr(*e, '=');
        if (eq == NULL || (size_t)(eq - *e) >= sizeof name) continue;
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e - 10), *e + 10);
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        const char *val = eq + 1;
        if (strncmp(name, "kafka_", 6) == 0) {
            char *k = name + 6;
            for (char *p = k; *p; p++)
                if (*p == '_') *p = '.';
            bs_config_set_kafka(cfg, k, val, "environment");
            continue;
        }
        char *us = strchr(name, '_');
        if (us == NULL) continue;
        *us = '\0';
        const key *kd = find(name, us + 1);
        if (kd == NULL) {
            if (known_section(name)) {
                /* the name only: a mistyped secret's value stays out of the journal */
                fprintf(errs, "environment: unknown key %.*s\n", (int)(eq - *e), *e);
                nerr++;
            }
            continue;
        }
        nerr += set_value(cfg, kd, val, "environment", errs);
    }
    return nerr;
}

static int validate(const bs_config *cfg, const char *where, FILE *errs)
{
    int nerr = 0;
    if (bs_framing_parse(cfg->output_framing) < 0) {
        fprintf(errs, "%s: worker.output_framing: \"%s\" is not single-object, confluent or json\n",
                where, cfg->output_framing);
        nerr++;
    } else if (strcmp(cfg->output_framing, "confluent") == 0 &&
               (cfg->confluent_result_id < 0 || cfg->confluent_completed_id < 0)) {
        fprintf(errs,
                "%s: output_framing = confluent needs worker.confluent_result_id and "
                "worker.confluent_completed_id\n",
                where);
        nerr++;
    }
    if (bs_log_level_parse(cfg->log_level) < 0) {
        fprintf(errs, "%s: worker.log_level: \"%s\" is not debug, info, warn or error\n", where,
                cfg->log_level);
        nerr++;
    }
    if (strcmp(cfg->log_format, "logfmt") && strcmp(cfg->log_format, "json")) {
        fprintf(errs, "%s: worker.log_format: \"%s\" is not logfmt or json\n", where,
                cfg->log_format);
        nerr++;
    }
    if (cfg->retry_backoff_initial_ms > cfg->retry_backoff_max_ms) {
        fprintf(errs, "%s: worker.retry_backoff_initial_ms is above retry_backoff_max_ms\n", where);
        nerr++;
    }
    regex_t re;
    char rerr[256];
    if (bs_topic_pattern_compile(cfg->reply_topic_pattern, &re, rerr, sizeof rerr) < 0) {
        fprintf(errs, "%s: worker.reply_topic_pattern: \"%s\" is not a regular expression: %s\n",
                where, cfg->reply_topic_pattern, rerr);
        nerr++;
    } else {
        regfree(&re);
    }
    /* every [kafka] key through librdkafka itself, where it was set */
    for (size_t i = 0; i < cfg->nkafka; i++) {
        char why[512];
        if (bs_kafka_check_prop(cfg->kafka_keys[i], cfg->kafka_vals[i], why, sizeof why) < 0) {
            fprintf(errs, "%s: [kafka] %s\n", cfg->kafka_where[i], why);
            nerr++;
        }
    }
    long producer_max =
        bs_kafka_conf_long("message.max.bytes", bs_config_get_kafka(cfg, "message.max.bytes"));
    if (producer_max > 0 && (long)cfg->max_message_bytes + BS_DLQ_HEADROOM > producer_max) {
        fprintf(errs,
                "%s: worker.max_message_bytes (%d) needs [kafka] message.max.bytes of at least "
                "%ld (it is %ld): a dead-letter copy carries the whole message plus its key and "
                "headers\n",
                where, cfg->max_message_bytes, (long)cfg->max_message_bytes + BS_DLQ_HEADROOM,
                producer_max);
        nerr++;
    }
    static const char *const owned[] = {"enable.auto.offset.store", "enable.auto.commit"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = bs_config_get_kafka(cfg, owned[i]);
        if (v && strcmp(v, "false") != 0) {
            fprintf(errs,
                    "%s: [kafka] %s must stay false: offsets are stored only after a "
                    "command's replies are acknowledged\n",
                    where, owned[i]);
            nerr++;
        }
    }
    return nerr;
}

int bs_config_load(const char *path, FILE *errs, bs_config **out)
{
    return bs_config_load_x(path, NULL, 0, errs, out);
}

int bs_config_load_x(const char *path, char *const *x, size_t nx, FILE *errs, bs_config **out)
{
    FILE *sink = NULL;
    if (errs == NULL && (errs = sink = fopen("/dev/null", "w")) == NULL) errs = stderr;
    bs_config *cfg = bs_xcalloc(1, sizeof *cfg);
    int nerr = 0;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        set_value(cfg, &KEYS[i], KEYS[i].def, "default", errs);
    if (path != NULL) nerr += parse_file(cfg, path, errs);
    nerr += apply_env(cfg, errs);
    cfg->x = x;
    cfg->nx = nx;
    for (size_t i = 0; i < nx; i++) {
        char k[256];
        const char *eq = strchr(x[i], '=');
        if (eq == NULL || eq == x[i] || (size_t)(eq - x[i]) >= sizeof k) {
            fprintf(errs ? errs : stderr, "-X %s: expected key=value\n", x[i]);
            nerr++;
            continue;
        }
        snprintf(k, sizeof k, "%.*s", (int)(eq - x[i]), x[i]);
        bs_config_set_kafka(cfg, k, eq + 1, "-X");
    }
    nerr += validate(cfg, path ? path : "config", errs);
    if (sink) fclose(sink);
    *out = cfg;
    return nerr;
}

int bs_config_require_kafka(const bs_config *cfg, FILE *errs)
{
    if (bs_config_get_kafka(cfg, "bootstrap.servers") != NULL) return 0;
    fprintf(errs, "config: [kafka] bootstrap.servers is required\n");
    return 1;
}

void bs_config_free(bs_config *cfg)
{
    if (cfg == NULL) return;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (KEYS[i].type == T_STR) free(*(char **)((char *)cfg + KEYS[i].off));
    for (size_t i = 0; i < cfg->nkafka; i++) {
        free(cfg->kafka_keys[i]);
        free(cfg->kafka_vals[i]);
        free(cfg->kafka_where[i]);
    }
    free(cfg->kafka_keys);
    free(cfg->kafka_vals);
    free(cfg->kafka_where);
    free(cfg);
}

bs_config *bs_config_copy(const bs_config *cfg)
{
    bs_config *c = bs_xmalloc(sizeof *c);
    *c = *cfg;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (KEYS[i].type == T_STR) {
            char **f = (char **)((char *)c + KEYS[i].off);
            if (*f) *f = bs_xstrdup(*f);
        }
    c->kafka_keys = bs_xcalloc(cfg->nkafka + 1, sizeof(char *));
    c->kafka_vals = bs_xcalloc(cfg->nkafka + 1, sizeof(char *));
    c->kafka_where = bs_xcalloc(cfg->nkafka + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->nkafka; i++) {
        c->kafka_keys[i] = bs_xstrdup(cfg->kafka_keys[i]);
        c->kafka_vals[i] = bs_xstrdup(cfg->kafka_vals[i]);
        c->kafka_where[i] = bs_xstrdup(cfg->kafka_where[i]);
    }
    return c;
}

void bs_config_print_reference(FILE *out)
{
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        fprintf(out, "  [%s] %-26s default %-22s %s\n", KEYS[i].section, KEYS[i].name, KEYS[i].def,
                KEYS[i].help);
    fprintf(out, "  [kafka] any librdkafka property, passed verbatim (bootstrap.servers and "
                 "group.id are required)\n");
}

/* Keys a SIGHUP applies to the running worker; the others need a restart. */
static const char *const RELOADABLE[] = {
    "limits.max_list_items",
    "limits.max_pattern_bytes",
    "limits.max_runs",
    "limits.max_string_bytes",
    "worker.log_level",
    "worker.log_format",
    "worker.max_attempts",
    "worker.retry_backoff_initial_ms",
    "worker.retry_backoff_max_ms",
    "worker.flush_timeout_ms",
    "worker.poll_timeout_ms",
    "worker.lease_reap_interval_ms",
    "worker.batch_pause_ms",
    "orchestration.concurrency_slot_wait_seconds",
    "orchestration.initial_deployment_lease_duration",
};

static void value_text(const bs_config *cfg, const key *k, char *buf, size_t n)
{
    const char *field = (const char *)cfg + k->off;
    if (k->type == T_STR)
        snprintf(buf, n, "%s", *(char *const *)field ? *(char *const *)field : "");
    else
        snprintf(buf, n, "%d", *(const int *)field);
}

int bs_config_reload(bs_config *live, const char *path, FILE *errs, FILE *log)
{
    bs_config *next = NULL;
    int nerr = bs_config_load_x(path, live->x, live->nx, errs, &next);
    nerr += bs_config_require_kafka(next, errs);
    if (nerr > 0) {
        bs_config_free(next);
        return -nerr;
    }
    int changed = 0;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        const key *k = &KEYS[i];
        char a[512], b[512], name[128];
        value_text(live, k, a, sizeof a);
        value_text(next, k, b, sizeof b);
        if (strcmp(a, b) == 0) continue;
        snprintf(name, sizeof name, "%s.%s", k->section, k->name);
        bool reloadable = false;
        for (size_t j = 0; j < sizeof RELOADABLE / sizeof RELOADABLE[0]; j++)
            reloadable |= strcmp(RELOADABLE[j], name) == 0;
        if (!reloadable) {
            fprintf(log, "%s changed: takes effect after a restart\n", name);
            continue;
        }
        char *dst = (char *)live + k->off, *src = (char *)next + k->off;
        if (k->type == T_STR) {
            char *tmp = *(char **)dst;
            *(char **)dst = *(char **)src;
            *(char **)src = tmp;
        } else {
            *(int *)dst = *(int *)src;
        }
        fprintf(log, "%s: %s -> %s\n", name, a, b);
        changed++;
    }
    bool kafka_same = live->nkafka == next->nkafka;
    for (size_t i = 0; kafka_same && i < live->nkafka; i++) {
        const char *v = bs_config_get_kafka(next, live->kafka_keys[i]);
        kafka_same = v != NULL && strcmp(v, live->kafka_vals[i]) == 0;
    }
    if (!kafka_same) fprintf(log, "[kafka] changed: takes effect after a restart\n");
    bs_config_free(next);
    return changed;
}

bs_kafka_props bs_config_kafka_props(const bs_config *cfg)
{
    return (bs_kafka_props){cfg->nkafka, cfg->kafka_keys, cfg->kafka_vals};
}

bs_store_conf bs_config_store_conf(const bs_config *cfg)
{
    return (bs_store_conf){.conninfo = cfg->conninfo,
                           .statement_timeout_ms = cfg->statement_timeout_ms,
                           .lock_timeout_ms = cfg->lock_timeout_ms};
}

bs_codec_conf bs_config_codec_conf(const bs_config *cfg, size_t max_message_bytes)
{
    return (bs_codec_conf){.schema_dir = cfg->schema_dir,
                           .max_message_bytes = max_message_bytes,
                           .confluent_command_versions = cfg->confluent_command_versions,
                           .confluent_ids = {cfg->confluent_command_id, cfg->confluent_result_id,
                                             cfg->confluent_completed_id}};
}

bs_prefect_conf bs_config_prefect_conf(const bs_config *cfg)
{
    return (bs_prefect_conf){.api_url = cfg->prefect_api_url,
                             .auth_string = cfg->prefect_auth_string,
                             .timeout_ms = cfg->prefect_timeout_ms};
}
