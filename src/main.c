/* main: argv, config, signals, subcommands and exit codes. The worker's loop lives in
 * worker.c; this file only starts and stops it. */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "orch.h"
#include "redrive.h"
#include "select.h"
#include "send.h"
#include "status.h"
#include "tail.h"
#include "store.h"
#include "timeutil.h"
#include "worker.h"

#define EX_USAGE       64
#define EX_UNAVAILABLE 69
#define EX_CONFIG      78

static volatile sig_atomic_t stop_requested, reload_requested;

static void on_term(int sig)
{
    (void)sig;
    if (stop_requested) _exit(1); /* a second signal: give up at once */
    stop_requested = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    reload_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bulkstate [-c FILE] COMMAND [options]\n\n"
            "Applies Prefect bulk-set-state commands from Kafka to Prefect's PostgreSQL tables.\n\n"
            "commands:\n"
            "  worker         consume commands, apply them, publish the results (the daemon)\n"
            "  migrate        create Prefect's tables if absent, and bulkstate's schema\n"
            "                 (--recommended-indexes: also schemas/recommended.sql)\n"
            "  send           produce one command and print its results (send --help)\n"
            "  select         dry run: the ids a filter selects, one JSON line per request\n"
            "  status ID      what the database recorded for a command (status --help)\n"
            "  tail           print the reply topic, human-readable (tail --help)\n"
            "  replay         re-apply a command log: skip what was applied, --dry-run,\n"
            "                 --clock issued_at for deterministic results (replay --help)\n"
            "  check-config   validate the configuration; exit 78 on any error\n"
            "  redrive        copy dead letters back to their topic, as received (redrive --help)\n"
            "  topics [N]     create the command, reply, dead-letter (and events) topics (N "
            "partitions,\n"
            "                 default 3; replication factor $BULKSTATE_REPLICATION, default 1)\n"
            "  rules          list the orchestration rules that run (force off / on)\n\n"
            "options:\n"
            "  -c, --config FILE   ini file (default: $BULKSTATE_CONFIG, else built-in defaults\n"
            "                      and BULKSTATE_* environment variables)\n"
            "  -X, --kafka KEY=VALUE\n"
            "                      a librdkafka property (as kcat's -X), over the file and the\n"
            "                      environment; for every command; may be repeated\n"
            "  -V, --version\n"
            "  -h, --help\n\n"
            "configuration keys:\n");
    bs_config_print_reference(out);
    fprintf(out, "\nexit status: 0 ok, 1 runtime failure, 64 usage, 69 a service is "
                 "unavailable, 78 configuration error\n");
}

static int cmd_worker(bs_config *cfg, const char *path)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bs_err err = {0};
    bs_worker *w = bs_worker_new(cfg, &err);
    if (w == NULL) {
        bs_log(BS_LOG_ERROR, "main", "could not start: %s", err.msg);
        return err.retriable ? EX_UNAVAILABLE : 1;
    }
    int rc = bs_worker_run(w, &stop_requested, &reload_requested, path, &err);
    if (rc < 0) bs_log(BS_LOG_ERROR, "main", "worker failed: %s", err.msg);
    bs_worker_free(w); /* flush the producer, commit offsets, leave the group */
    bs_log(BS_LOG_INFO, "main", "stopped");
    return rc < 0 ? 1 : 0;
}

static void replay_usage(FILE *out)
{
    fputs("usage: bulkstate [-c FILE] replay [options]\n\n"
          "Re-reads a command log from Kafka (outside the consumer group) up to its end and\n"
          "applies each command to the database as the worker would. Commands already applied\n"
          "are skipped. One JSON line per command on stdout: partition, offset, command_id,\n"
          "outcome (applied, dry_run, already_applied, invalid, failed), its counts or error.\n\n"
          "  --topic TOPIC        the log (default: worker.command_topic)\n"
          "  --partition N        only this partition (default: all)\n"
          "  --from-offset N      start offset in every partition (default 0: the beginning)\n"
          "  --from-time ISO8601  start at the first message at or after this time\n"
          "  --dry-run            evaluate every command in a transaction that is rolled back\n"
          "  --clock issued_at    orchestration clock and generated ids from each command's\n"
          "                       issued_at and id: the same log into the same database gives\n"
          "                       byte-identical results (default: now)\n"
          "  --results            also print every per-run result as a JSON line\n"
          "  --emit               publish replies to the reply topic (new ones, and the stored\n"
          "                       ones of commands already applied)\n\n"
          "exit status: 0 done, 1 a command failed (transient: rerun from its offset), 64 usage,\n"
          "69 Kafka or PostgreSQL unavailable, 78 configuration\n",
          out);
}

static int cmd_replay(bs_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"topic", required_argument, NULL, 't'},
                                         {"partition", required_argument, NULL, 'p'},
                                         {"from-offset", required_argument, NULL, 'o'},
                                         {"from-time", required_argument, NULL, 'T'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"clock", required_argument, NULL, 'k'},
                                         {"results", no_argument, NULL, 'r'},
                                         {"emit", no_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bs_replay_opts o = {.partition = -1, .from_ts_ms = -1, .out = stdout};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:p:o:T:nk:reh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            o.topic = optarg;
            break;
        case 'p':
            o.partition = atoi(optarg);
            break;
        case 'o':
            o.from_offset = atoll(optarg);
            break;
        case 'T': {
            int64_t us;
            if (!bs_ts_parse(optarg, &us)) {
                fprintf(stderr, "bulkstate replay: --from-time: not an ISO 8601 time\n");
                return EX_USAGE;
            }
            o.from_ts_ms = us / 1000;
            break;
        }
        case 'n':
            o.dry_run = true;
            break;
        case 'k':
            if (strcmp(optarg, "issued_at") != 0 && strcmp(optarg, "now") != 0) {
                replay_usage(stderr);
                return EX_USAGE;
            }
            o.clock_issued_at = strcmp(optarg, "issued_at") == 0;
            break;
        case 'r':
            o.print_results = true;
            break;
        case 'e':
            o.emit = true;
            break;
        case 'h':
            replay_usage(stdout);
            return 0;
        default:
            replay_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc || (o.dry_run && o.emit)) {
        replay_usage(stderr);
        return EX_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    bs_err err = {0};
    bs_worker *w = bs_worker_new_replay(cfg, &err);
    if (w == NULL) {
        fprintf(stderr, "bulkstate replay: %s\n", err.msg);
        return err.retriable ? EX_UNAVAILABLE : 1;
    }
    int rc = bs_worker_replay(w, &o, &err);
    if (rc < 0) fprintf(stderr, "bulkstate replay: %s\n", err.msg);
    bs_worker_free(w);
    return rc < 0 ? (err.retriable ? EX_UNAVAILABLE : 1) : 0;
}

static int cmd_migrate(const bs_config *cfg, int argc, char **argv)
{
    bool recommended = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--recommended-indexes") == 0)
            recommended = true;
        else {
            fprintf(stderr, "usage: bulkstate migrate [--recommended-indexes]\n");
            return EX_USAGE;
        }
    }
    bs_err err = {0};
    bool created = false;
    const bs_store_conf sc = bs_config_store_conf(cfg);
    bs_store *st = bs_store_new(&sc, &err);
    if (st == NULL) {
        fprintf(stderr, "bulkstate migrate: %s\n", err.msg);
        return EX_UNAVAILABLE;
    }
    int rc = bs_store_migrate(st, cfg->schema_dir, recommended, &created, &err);
    bs_store_free(st);
    if (rc < 0) {
        fprintf(stderr, "bulkstate migrate: %s\n", err.msg);
        return 1;
    }
    printf("migrated: %s; bulkstate schema ready\n",
           created ? "created Prefect's tables" : "Prefect's tables already present, left alone");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"kafka", required_argument, NULL, 'X'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = getenv("BULKSTATE_CONFIG");
    char **x = calloc((size_t)argc, sizeof *x); /* -X key=value: at most one per argument */
    size_t nx = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+c:X:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'X':
            x[nx++] = optarg;
            break;
        case 'V':
            printf("bulkstate %s\n", BS_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "rules") == 0) {
        for (int force = 0; force < 2; force++) {
            printf("force=%s:", force ? "true" : "false");
            for (const char *const *n = bs_orch_rule_names(force); *n; n++)
                printf(" %s", *n);
            printf("\n");
        }
        printf("both (global):");
        for (const char *const *n = bs_orch_global_names(); *n; n++)
            printf(" %s", *n);
        printf("\n");
        return 0;
    }
    static const char *const COMMANDS[] = {"worker",       "migrate", "topics", "tail",
                                           "status",       "select",  "send",   "replay",
                                           "check-config", "redrive"};
    bool known = false, wants_help = false;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        known |= strcmp(cmd, COMMANDS[i]) == 0;
    if (!known) {
        fprintf(stderr, "bulkstate: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return EX_USAGE;
    }
    for (int i = optind + 1; i < argc; i++)
        wants_help |= strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;
    static const char *const HELP[][2] = {
        {"worker",
         "usage: bulkstate [-c FILE] worker\n\n"
         "Consumes commands, applies them, publishes the results. SIGTERM/SIGINT: finish\n"
         "the command in hand, flush, commit, exit 0. SIGHUP: reload the reloadable keys.\n"
         "Exit status: 0 stopped, 1 fatal error, 69 PostgreSQL or Kafka unavailable at\n"
         "start, 78 configuration error.\n"},
        {"migrate", "usage: bulkstate [-c FILE] migrate [--recommended-indexes]\n\n"
                    "Creates Prefect's tables when absent and bulkstate's schema (idempotent).\n"
                    "Exit status: 0 done, 1 failed, 64 usage, 69 PostgreSQL unavailable.\n"},
        {"topics", "usage: bulkstate [-c FILE] topics [PARTITIONS [KEY=VALUE...]]\n\n"
                   "Creates the command, reply, dead-letter and (when set) events topics,\n"
                   "with the topic configs given (for the topics created now).\n"
                   "Exit status: 0 ready, 69 Kafka unavailable.\n"},
        {"check-config", "usage: bulkstate [-c FILE] check-config\n\n"
                         "Validates every key of the file and the environment; errors as\n"
                         "file:line. Exit status: 0 valid, 78 invalid.\n"},
    };
    for (size_t i = 0; wants_help && i < sizeof HELP / sizeof HELP[0]; i++)
        if (strcmp(cmd, HELP[i][0]) == 0) {
            fputs(HELP[i][1], stdout);
            return 0;
        }
    bs_config *cfg = NULL;
    /* a subcommand's --help works whatever the configuration says */
    int nerr = bs_config_load_x(path, x, nx, wants_help ? NULL : stderr, &cfg);
    if (wants_help) nerr = 0;
    if (!wants_help && strcmp(cmd, "migrate") != 0 && strcmp(cmd, "select") != 0 &&
        strcmp(cmd, "status") != 0)
        nerr += bs_config_require_kafka(cfg, stderr);
    int rc;
    if (strcmp(cmd, "check-config") == 0) {
        if (nerr == 0)
            printf("%s: configuration is valid\n", path ? path : "(defaults + environment)");
        rc = nerr ? EX_CONFIG : 0;
    } else if (nerr > 0) {
        fprintf(stderr, "bulkstate: %d configuration error%s\n", nerr, nerr == 1 ? "" : "s");
        rc = EX_CONFIG;
    } else {
        bs_log_setup((bs_log_level)bs_log_level_parse(cfg->log_level),
                     strcmp(cfg->log_format, "json") == 0);
        if (strcmp(cmd, "worker") == 0)
            rc = cmd_worker(cfg, path);
        else if (strcmp(cmd, "migrate") == 0)
            rc = cmd_migrate(cfg, argc - optind, argv + optind);
        else if (strcmp(cmd, "topics") == 0) {
            const char *names[4] = {cfg->command_topic, cfg->reply_topic, cfg->dlq_topic,
                                    cfg->events_topic};
            const int nnames = cfg->events_topic[0] ? 4 : 3;
            int parts = optind + 1 < argc ? atoi(argv[optind + 1]) : 3;
            const char *rf = getenv("BULKSTATE_REPLICATION");
            bs_err err = {0};
            const bs_kafka_props kp = bs_config_kafka_props(cfg);
            /* topic configs after the count: KEY=VALUE, for the topics created now */
            const int first_conf = optind + 2;
            rc = bs_kafka_create_topics(
                &kp, names, nnames, parts > 0 ? parts : 3, rf ? atoi(rf) : 1,
                (const char *const *)argv + (first_conf < argc ? first_conf : argc),
                first_conf < argc ? (size_t)(argc - first_conf) : 0, &err);
            if (rc < 0)
                fprintf(stderr, "bulkstate topics: %s\n", err.msg);
            else
                printf("topics ready: %s %s %s%s%s\n", names[0], names[1], names[2],
                       nnames > 3 ? " " : "", nnames > 3 ? names[3] : "");
            rc = rc < 0 ? EX_UNAVAILABLE : 0;
        } else if (strcmp(cmd, "tail") == 0)
            rc = bs_tail_main(cfg, argc - optind, argv + optind);
        else if (strcmp(cmd, "status") == 0)
            rc = bs_status_main(cfg, argc - optind, argv + optind);
        else if (strcmp(cmd, "redrive") == 0)
            rc = bs_redrive_main(cfg, argc - optind, argv + optind);
        else if (strcmp(cmd, "select") == 0)
            rc = bs_select_main(cfg, argc - optind, argv + optind);
        else if (strcmp(cmd, "send") == 0)
            rc = bs_send_main(cfg, argc - optind, argv + optind);
        else if (strcmp(cmd, "replay") == 0)
            rc = cmd_replay(cfg, argc - optind, argv + optind);
        else {
            fprintf(stderr, "bulkstate: unknown command \"%s\"\n", cmd);
            usage(stderr);
            rc = EX_USAGE;
        }
    }
    bs_config_free(cfg);
    free(x);
    return rc;
}
