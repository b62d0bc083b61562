/* log: stderr lines "ts=... level=... module=... msg" or one JSON object per line. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "text.h"

/* set by a reload on the main thread, read by every thread (librdkafka's too) */
static _Atomic int min_level = BS_LOG_INFO;
static _Atomic int as_json;

void bs_log_setup(bs_log_level level, int json)
{
    atomic_store(&min_level, (int)level);
    atomic_store(&as_json, json);
}

int bs_log_level_parse(const char *s)
{
    static const char *const n[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, n[i]) == 0) return i;
    return -1;
}

void bs_log(bs_log_level level, const char *module, const char *fmt, ...)
{
    static const char *const n[] = {"debug", "info", "warn", "error"};
    char raw[2048], msg[4 * sizeof raw], ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;
    if ((int)level < atomic_load(&min_level)) return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* values come from messages: no line of theirs can look like one of ours (control
     * characters escaped), nor break the JSON encoder (invalid UTF-8 escaped) */
    bs_text_escape(raw, msg, sizeof msg);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
    if (atomic_load(&as_json)) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "ts", ts, "level", n[level], "module", module,
                              "msg", msg);
        char *line = json_dumps(o, JSON_COMPACT);
        fprintf(stderr, "%s\n", line);
        free(line);
        json_decref(o);
    } else {
        fprintf(stderr, "ts=%s level=%s module=%s %s\n", ts, n[level], module, msg);
    }
}
