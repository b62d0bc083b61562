/* tail: `bulkstate tail`, the reply topic made readable. */
#ifndef BS_TAIL_H
#define BS_TAIL_H

#include "config.h"

int bs_tail_main(const bs_config *cfg, int argc, char **argv);

#endif
