/* send: the `bulkstate send` subcommand. */
#ifndef BS_SEND_H
#define BS_SEND_H

#include "config.h"

/* Returns the process exit status. */
int bs_send_main(const bs_config *cfg, int argc, char **argv);

#endif
