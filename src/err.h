/* err: the one error type of bulkstate. A failing function returns -1 and fills a caller-owned
 * bs_err; the code tells the worker what to do (reply, retry, exit). No allocation here. */
#ifndef BS_ERR_H
#define BS_ERR_H

typedef enum { BS_OK = 0, BS_EINVAL, BS_ETRANSIENT, BS_EFATAL } bs_code;

typedef struct bs_err {
    bs_code code;
    char type[40];   /* input errors: Prefect's (Pydantic's) error type, e.g. "uuid_parsing" */
    char field[160]; /* dotted path of the offending input field, "" when not about a field */
    char msg[512];
} bs_err;

/* Sets code and message; always returns -1 so callers can `return bs_err_set(...)`. */
int bs_err_set(bs_err *err, bs_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, naming the input field (dotted path) the error is about. */
int bs_err_field(bs_err *err, bs_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An invalid-input error (code BS_EINVAL) with Prefect's error type and the field path. */
int bs_err_input(bs_err *err, const char *type, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepends "<prefix>: " to the message. */
void bs_err_prefix(bs_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stable lower-case name of a code, for logs and error replies. */
const char *bs_code_name(bs_code code);

#endif
