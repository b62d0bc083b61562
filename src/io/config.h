/* config: the ini file (config/bulkstate.ini), one table of known keys with types, defaults,
 * bounds and help; a [kafka] section passed verbatim to librdkafka; environment overrides
 * BULKSTATE_<SECTION>_<KEY> (for [kafka], underscores become dots). Every error names
 * file:line. The one module that knows the whole configuration: it hands each other I/O
 * module its own settings (bs_config_*_conf), so none of them reads bs_config. */
#ifndef BS_CONFIG_H
#define BS_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "codec.h"
#include "filter.h"
#include "kafka.h"
#include "prefect.h"
#include "store.h"

#define BS_MAX_THREADS 16 /* worker.threads at most */

typedef struct bs_config {
    char *command_topic, *reply_topic, *dlq_topic, *events_topic, *reply_topic_pattern;
    char *confluent_command_versions;
    char *schema_dir, *output_framing, *log_level, *log_format, *metrics_listen;
    char *conninfo;
    char *prefect_api_url, *prefect_auth_string;
    int prefect_batch_events, prefect_lag_alert_s, prefect_outbox_max, prefect_timeout_ms;
    int prefect_max_events_per_s;
    int poll_timeout_ms, flush_timeout_ms, max_message_bytes, max_attempts;
    int retry_backoff_initial_ms, retry_backoff_max_ms, lease_reap_interval_ms;
    int slot_wait_s, lease_ttl_s, batch_pause_ms;
    int statement_timeout_ms, lock_timeout_ms;
    int threads; /* worker.threads: consumers (lanes) in one worker process */
    int confluent_command_id, confluent_result_id, confluent_completed_id;
    bs_caps caps; /* [limits] */
    size_t nkafka;
    char **kafka_keys, **kafka_vals, **kafka_where; /* where: "file:line" or "environment" */
    char *const *x;                                 /* -X key=value, from the command line */
    size_t nx;
} bs_config;

/* Loads path (NULL: defaults only) then the environment. Errors are printed to errs (NULL:
 * not printed), each as "file:line: message"; returns their count (0 = valid). *out is filled
 * even on errors. */
int bs_config_load(const char *path, FILE *errs, bs_config **out);
/* The same, with librdkafka properties given on the command line ("key=value", as kcat's -X),
 * applied after the file and the environment (a SIGHUP reload applies them again). x stays
 * the caller's and must outlive the configuration. */
int bs_config_load_x(const char *path, char *const *x, size_t nx, FILE *errs, bs_config **out);
void bs_config_free(bs_config *cfg); /* NULL is a no-op */
/* A deep copy (each of a worker's threads reads and reloads its own); x stays shared. */
bs_config *bs_config_copy(const bs_config *cfg);
/* The commands that talk to Kafka need bootstrap.servers: 1 (and a message) when missing. */
int bs_config_require_kafka(const bs_config *cfg, FILE *errs);
/* Sets or replaces a [kafka] key; where ("file:line", NULL: "config") names it in errors. */
void bs_config_set_kafka(bs_config *cfg, const char *key, const char *val, const char *where);
const char *bs_config_get_kafka(const bs_config *cfg, const char *key);
/* SIGHUP: loads path and the environment again. Errors: the live config is untouched, the
 * errors go to errs, and -N (their count) is returned. Otherwise the reloadable keys that
 * changed are applied (one "key: old -> new" line each to log), changed keys that need a
 * restart are named on log, and the number applied is returned. */
int bs_config_reload(bs_config *live, const char *path, FILE *errs, FILE *log);
/* The settings each I/O module takes, drawn from the whole configuration (they point into
 * cfg: valid while it lives). */
bs_kafka_props bs_config_kafka_props(const bs_config *cfg);
bs_store_conf bs_config_store_conf(const bs_config *cfg);
bs_codec_conf bs_config_codec_conf(const bs_config *cfg, size_t max_message_bytes);
bs_prefect_conf bs_config_prefect_conf(const bs_config *cfg);
/* Prints the key reference (for --help and the README). */
void bs_config_print_reference(FILE *out);

#endif
