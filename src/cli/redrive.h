/* redrive: `bulkstate redrive`, dead letters copied back to the topic they came from. */
#ifndef BS_REDRIVE_H
#define BS_REDRIVE_H

#include "config.h"

int bs_redrive_main(const bs_config *cfg, int argc, char **argv);

#endif
