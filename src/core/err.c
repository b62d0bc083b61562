/* err: error type helpers. Pure: formatting only. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int set(bs_err *err, bs_code code, bool retriable, bool fatal, const char *fmt, va_list ap)
{
    err->code = code;
    err->retriable = retriable;
    err->fatal = fatal;
    err->type[0] = '\0';
    err->field[0] = '\0';
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return -1;
}

#define SET(retriable, fatal)                                                                      \
    do {                                                                                           \
        va_list ap;                                                                                \
        if (err == NULL) return -1;                                                                \
        va_start(ap, fmt);                                                                         \
        set(err, code, retriable, fatal, fmt, ap);                                                 \
        va_end(ap);                                                                                \
        return -1;                                                                                 \
    } while (0)

int bs_err_set(bs_err *err, bs_code code, const char *fmt, ...)
{
    SET(false, false);
}

int bs_err_retriable(bs_err *err, bs_code code, const char *fmt, ...)
{
    SET(true, false);
}

int bs_err_fatal(bs_err *err, bs_code code, const char *fmt, ...)
{
    SET(false, true);
}

int bs_err_input(bs_err *err, const char *type, const char *field, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL) return -1;
    va_start(ap, fmt);
    set(err, BS_EINVAL, false, false, fmt, ap);
    va_end(ap);
    snprintf(err->type, sizeof err->type, "%s", type);
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    return -1;
}

void bs_err_prefix(bs_err *err, const char *fmt, ...)
{
    char pre[256], old[sizeof err->msg];
    va_list ap;
    if (err == NULL) return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", pre, old);
}

const char *bs_code_name(bs_code code)
{
    switch (code) {
    case BS_OK:
        return "ok";
    case BS_EINVAL:
        return "invalid";
    case BS_ECONFLICT:
        return "conflict";
    case BS_EDB:
        return "db";
    case BS_ETIMEOUT:
        return "timeout";
    case BS_EKAFKA:
        return "kafka";
    case BS_EENCODE:
        return "encode";
    case BS_ESYS:
        return "system";
    case BS_EINTERNAL:
        return "internal";
    }
    return "unknown";
}
