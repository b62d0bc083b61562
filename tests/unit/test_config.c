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
    bs_config_free(cfg);

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
    CHECK_INT(load_text("[worker]\nreply_topic = r ; comment\n", errs, sizeof errs, &cfg), 0);
    CHECK_STR(cfg->conninfo, "dbname=x");
    CHECK_STR(cfg->reply_topic, "r");
    CHECK_STR(bs_config_get_kafka(cfg, "bootstrap.servers"), "127.0.0.1:1234");
    bs_config_free(cfg);
    return t_done();
}
