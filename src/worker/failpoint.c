/* failpoint: fault injection for the fault tests. BULKSTATE_FAILPOINT=NAME:N makes the worker
 * SIGKILL itself the Nth time it reaches point NAME (before_commit, after_commit,
 * between_replies, before_offset, batch_before_commit, batch_after_commit). */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker_int.h"

static char fp_name[32];
static long fp_nth;
static atomic_long fp_seen; /* over the worker's threads */

void bs_failpoint_setup(void)
{
    const char *v = getenv("BULKSTATE_FAILPOINT");
    const char *colon = v ? strchr(v, ':') : NULL;
    if (colon == NULL || (size_t)(colon - v) >= sizeof fp_name) return;
    snprintf(fp_name, sizeof fp_name, "%.*s", (int)(colon - v), v);
    fp_nth = atol(colon + 1);
    bs_log(BS_LOG_WARN, "worker", "failpoint armed: %s at occurrence %ld", fp_name, fp_nth);
}

void bs_failpoint(const char *name)
{
    if (fp_name[0] == '\0' || strcmp(name, fp_name) != 0 ||
        atomic_fetch_add(&fp_seen, 1) + 1 != fp_nth)
        return;
    bs_log(BS_LOG_WARN, "worker", "failpoint %s reached: SIGKILL", name);
    raise(SIGKILL);
}
