/* Config: the sample file is valid; errors name file:line; the environment overrides. */
#include <stdlib.h>
#include <unistd.h>

#include "../t.h"
#include "config.h"

static int load_text(const char *text, char *errs, size_t n, bs_config **cfg)
{
    char path[] = "/tmp/bs_config_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    FILE *e = fmemopen(errs, n, "w");
    int nerr = bs_config_load(path, e, cfg);
    fclose(e);
    unlink(path);
    return nerr;
}

int main(void)
{
    char errs[4096];
    bs_config *cfg = NULL;
    FILE *e = fmemopen(errs, sizeof errs, "w");
    CHECK_INT(bs_config_load("config/bulkstate.ini", e, &cfg), 0);
    fclose(e);
    CHECK_STR(bs_config_get_kafka(cfg, "group.id"), "bulkstate");
    CHECK_INT(cfg->threads, 1);
    /* a worker thread's copy: the same values, and its own (it outlives the original, and a
     * key set on it leaves the original alone) */
    bs_config *copy = bs_config_copy(cfg);
    bs_config_set_kafka(copy, "group.id", "other", NULL);
    CHECK_STR(bs_config_get_kafka(cfg, "group.id"), "bulkstate");
    bs_config_free(cfg);
    CHECK_STR(copy->command_topic, "bulkstate.commands");
    CHECK_STR(copy->conninfo, "host=/run/postgresql dbname=prefect user=bulkstate");
    CHECK_INT(copy->poll_timeout_ms, 200);
    CHECK_STR(bs_config_get_kafka(copy, "group.id"), "other");
    CHECK_STR(bs_config_get_kafka(copy, "bootstrap.servers"), "127.0.0.1:9092");
    bs_config_free(copy);

    memset(errs, 0, sizeof errs);
    CHECK_INT(load_text("[worker]\npoll_timeout_ms = 5\nbogus = 1\n[kafka]\n"
                        "bootstrap.servers = x:1\nenable.auto.commit = true\n[nope]\n",
                        errs, sizeof errs, &cfg),
              4);
    CHECK(strstr(errs, ":2: worker.poll_timeout_ms: 5 is out of range 10..5000") != NULL);
    CHECK(strstr(errs, ":3: unknown key \"bogus\" in [worker]") != NULL);
    CHECK(strstr(errs, ":7: unknown section [nope]") != NULL);
    CHECK(strstr(errs, "enable.auto.commit must stay false") != NULL);
    bs_config_free(cfg);

    /* the [prefect] section, as docs/prefect.md shows it */
    memset(errs, 0, sizeof errs);
    CHECK_INT(load_text("[prefect]\napi_url = http://127.0.0.1:4200/api\nmax_events_per_s = 50\n"
                        "[kafka]\nbootstrap.servers = x:1\n",
                        errs, sizeof errs, &cfg),
              0);
    CHECK_STR(cfg->prefect_api_url, "http://127.0.0.1:4200/api");
    CHECK_INT(cfg->prefect_max_events_per_s, 50);
    CHECK_INT(cfg->prefect_outbox_max, 100000);
    bs_config_free(cfg);

    setenv("BULKSTATE_POSTGRES_CONNINFO", "dbname=x", 1);
    setenv("BULKSTATE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1234", 1);
    memset(errs, 0, sizeof errs);
    CHECK_INT(
        load_text("; a comment\n  # another\n[worker]\nreply_topic = r\n", errs, sizeof errs, &cfg),
        0);
    CHECK_STR(cfg->conninfo, "dbname=x");
    CHECK_STR(cfg->reply_topic, "r");
    CHECK_STR(bs_config_get_kafka(cfg, "bootstrap.servers"), "127.0.0.1:1234");
    bs_config_free(cfg);
    unsetenv("BULKSTATE_POSTGRES_CONNINFO");

    /* values keep their '#' and ';' (comments are whole lines) */
    memset(errs, 0, sizeof errs);
    CHECK_INT(load_text("[kafka]\nsasl.password = ab #1 ;x\n[postgres]\nconninfo = dbname=a#b\n",
                        errs, sizeof errs, &cfg),
              0);
    CHECK_STR(bs_config_get_kafka(cfg, "sasl.password"), "ab #1 ;x");
    CHECK_STR(cfg->conninfo, "dbname=a#b");
    bs_config_free(cfg);

    /* [kafka] keys go through librdkafka, named by file:line; the producer's message.max.bytes
     * must hold a dead-letter copy of the largest command; the reply-topic pattern compiles;
     * [limits] */
    memset(errs, 0, sizeof errs);
    CHECK_INT(load_text("[kafka]\nbootstrap.servers = x:1\nsocket.timeout.mss = 5\n"
                        "linger.ms = soon\n[worker]\nmax_message_bytes = 2000000\n"
                        "reply_topic_pattern = (a\n[limits]\nmax_list_items = 0\n",
                        errs, sizeof errs, &cfg),
              5);
    CHECK(strstr(errs, ":3: [kafka] socket.timeout.mss: No such configuration property") != NULL);
    CHECK(strstr(errs, ":4: [kafka] linger.ms: ") != NULL);
    CHECK(strstr(errs, "worker.max_message_bytes (2000000) needs [kafka] message.max.bytes of at "
                       "least 2016384 (it is 1000000)") != NULL);
    CHECK(strstr(errs, "worker.reply_topic_pattern: \"(a\" is not a regular expression") != NULL);
    CHECK(strstr(errs, ":9: limits.max_list_items: 0 is out of range 1..1000000") != NULL);
    bs_config_free(cfg);
    memset(errs, 0, sizeof errs);
    CHECK_INT(load_text("[kafka]\nmessage.max.bytes = 2016384\n[worker]\nmax_message_bytes = "
                        "2000000\n[limits]\nmax_pattern_bytes = 64\n",
                        errs, sizeof errs, &cfg),
              0);
    CHECK_INT(cfg->caps.pattern_bytes, 64);
    CHECK_INT(cfg->caps.list_items, 10000);
    bs_config_free(cfg);
    setenv("BULKSTATE_KAFKA_LINGER_MS", "never", 1);
    memset(errs, 0, sizeof errs);
    CHECK_INT(load_text("[worker]\n", errs, sizeof errs, &cfg), 1);
    CHECK(strstr(errs, "environment: [kafka] linger.ms: ") != NULL);
    bs_config_free(cfg);
    unsetenv("BULKSTATE_KAFKA_LINGER_MS");
    /* -X key=value from the command line: over the file, checked like the rest */
    char *x[] = {"linger.ms=7", "bogus.prop=1", "novalue"};
    memset(errs, 0, sizeof errs);
    e = fmemopen(errs, sizeof errs, "w");
    CHECK_INT(bs_config_load_x("config/bulkstate.ini", x, 3, e, &cfg), 2);
    fclose(e);
    CHECK_STR(bs_config_get_kafka(cfg, "linger.ms"), "7");
    CHECK(strstr(errs, "-X: [kafka] bogus.prop: No such configuration property") != NULL);
    CHECK(strstr(errs, "-X novalue: expected key=value") != NULL);
    bs_config_free(cfg);
    return t_done();
}
