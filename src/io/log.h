/* log: one line per event on stderr (journald keeps it), logfmt or JSON. The level is checked
 * before formatting. Control characters and invalid UTF-8 in the formatted text are escaped
 * (text.h), so a value from a message cannot forge a line. Never called from a signal
 * handler. */
#ifndef BS_LOG_H
#define BS_LOG_H

typedef enum { BS_LOG_DEBUG = 0, BS_LOG_INFO, BS_LOG_WARN, BS_LOG_ERROR } bs_log_level;

void bs_log_setup(bs_log_level level, int json);
int bs_log_level_parse(const char *s); /* -1 if unknown */
/* msg is printf-formatted and should be "key=value ..." pairs after a short text. */
void bs_log(bs_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
