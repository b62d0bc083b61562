/* cli: human-readable rendering of replies (results and completions, in their JSON shape). */
#ifndef BS_CLI_H
#define BS_CLI_H

#include <jansson.h>

/* One line per result: seq, run, status, state, delay, reason. */
void bs_cli_print_result(const json_t *r);
/* The completion line; returns 1 when it carries an error, else 0. */
int bs_cli_print_completion(const json_t *c, const char *id);

#endif
