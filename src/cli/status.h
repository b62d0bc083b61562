/* status: `bulkstate status COMMAND_ID`, what the database recorded for a command. */
#ifndef BS_STATUS_H
#define BS_STATUS_H

#include "config.h"

/* Returns the exit status: 0 found, 1 no such command, 64 usage, 69 database unavailable. */
int bs_status_main(const bs_config *cfg, int argc, char **argv);

#endif
