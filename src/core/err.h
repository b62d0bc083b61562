/* err: the one error type of bulkstate. A failing function returns -1 and fills a caller-owned
 * bs_err. The code says what happened; the two flags say what may be done about it, as
 * librdkafka's error object carries retriable and fatal beside its code. What the worker then
 * does with a message is decided in one place (settle.h), never from the message text. No
 * allocation here. */
#ifndef BS_ERR_H
#define BS_ERR_H

#include <stdbool.h>

typedef enum {
    BS_OK = 0,
    BS_EINVAL,    /* invalid input: a command's field or framing, a configuration value */
    BS_ECONFLICT, /* a command id already used for another body */
    BS_EDB,       /* PostgreSQL: the connection, or a statement it refused */
    BS_ETIMEOUT,  /* a statement ran into statement_timeout */
    BS_EKAFKA,    /* the broker or the Kafka client */
    BS_EENCODE,   /* a record could not be encoded in its schema */
    BS_ESYS,      /* the system: a file, a socket, a library's set-up */
    BS_EINTERNAL  /* a broken invariant */
} bs_code;

typedef struct bs_err {
    bs_code code;
    bool retriable;  /* the same work may succeed later (an outage): retry, do not settle */
    bool fatal;      /* the process cannot go on: stop, exit non-zero */
    char type[40];   /* input errors: Prefect's (Pydantic's) error type, e.g. "uuid_parsing" */
    char field[160]; /* dotted path of the offending input field, "" when not about a field */
    char msg[512];
} bs_err;

/* A permanent error: neither retriable nor fatal. Always returns -1, so callers can
 * `return bs_err_set(...)`. */
int bs_err_set(bs_err *err, bs_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A retriable error (an outage: the same work may succeed later). */
int bs_err_retriable(bs_err *err, bs_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A fatal error (the process cannot go on). */
int bs_err_fatal(bs_err *err, bs_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An invalid-input error (BS_EINVAL, permanent) with Prefect's error type and the field path. */
int bs_err_input(bs_err *err, const char *type, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepends "<prefix>: " to the message. */
void bs_err_prefix(bs_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stable lower-case name of a code, for logs ("db", "kafka", ...). */
const char *bs_code_name(bs_code code);

#endif
