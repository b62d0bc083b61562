/* select: `bulkstate select`, a dry run of the selection: which runs would a filter touch.
 * Reads one JSON object per line ({"flow_runs": ..., "limit": N}) and prints, per line,
 * {"ids": [...]} in Prefect's order or {"error": {...}} when the filter is invalid. */
#ifndef BS_SELECT_H
#define BS_SELECT_H

#include "config.h"

int bs_select_main(const bs_config *cfg, int argc, char **argv);

#endif
