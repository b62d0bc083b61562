/* model: names of state types and the defaults of details and policies. Pure. */
#include "model.h"

#include <string.h>

static const char *const TYPE_NAMES[] = {"SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED",
                                         "CANCELLED", "CRASHED", "PAUSED",  "CANCELLING"};
static const char *const DEFAULT_NAMES[] = {"Scheduled", "Pending", "Running",
                                            "Completed", "Failed",  "Cancelled",
                                            "Crashed",   "Paused",  "Cancelling"};

const char *bs_state_type_name(int type)
{
    return type >= 0 && type < BS_NTYPES ? TYPE_NAMES[type] : "NONE";
}

const char *bs_state_type_default_name(int type)
{
    return type >= 0 && type < BS_NTYPES ? DEFAULT_NAMES[type] : "";
}

int bs_state_type_parse(const char *s)
{
    for (int i = 0; s && i < BS_NTYPES; i++)
        if (strcmp(s, TYPE_NAMES[i]) == 0) return i;
    return -1;
}

bool bs_state_type_terminal(int type)
{
    return type == BS_COMPLETED || type == BS_FAILED || type == BS_CANCELLED || type == BS_CRASHED;
}

void bs_details_init(bs_details *d)
{
    memset(d, 0, sizeof *d);
    d->scheduled_time = d->cache_expiration = d->pause_timeout = BS_TS_NULL;
    d->deferred = 0;
    d->refresh_cache = d->retriable = -1;
}

void bs_policy_init(bs_policy *p)
{
    memset(p, 0, sizeof *p);
    p->retries = -1;
    p->retry_delay = -1;
}
