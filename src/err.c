/* err: error type helpers. Pure: formatting only. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int bs_err_set(bs_err *err, bs_code code, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL) return -1;
    err->code = code;
    err->type[0] = '\0';
    err->field[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int bs_err_field(bs_err *err, bs_code code, const char *field, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL) return -1;
    err->code = code;
    err->type[0] = '\0';
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int bs_err_input(bs_err *err, const char *type, const char *field, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL) return -1;
    err->code = BS_EINVAL;
    snprintf(err->type, sizeof err->type, "%s", type);
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
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
    size_t n = strlen(pre);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, pre, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    strncpy(err->msg + n + 2, old, rest);
    err->msg[sizeof err->msg - 1] = '\0';
}

const char *bs_code_name(bs_code code)
{
    switch (code) {
    case BS_OK:
        return "ok";
    case BS_EINVAL:
        return "invalid";
    case BS_ETRANSIENT:
        return "transient";
    case BS_EFATAL:
        return "fatal";
    }
    return "unknown";
}
