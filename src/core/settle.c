/* settle: see settle.h. Pure. */
#include "settle.h"

#include <stddef.h>

bool bs_settle_is_poison(int attempts, int max_attempts)
{
    return attempts > max_attempts;
}

bs_settle bs_settle_decide(const bs_err *err, bool rejecting, bool poisoned)
{
    if (err == NULL || err->code == BS_OK) return BS_SETTLE_DONE;
    if (err->fatal) return BS_SETTLE_STOP;
    if (err->retriable) return BS_SETTLE_RETRY;
    if (!rejecting) return BS_SETTLE_REJECT;
    return poisoned ? BS_SETTLE_STOP : BS_SETTLE_RETRY;
}

bool bs_settle_counts_attempt(const bs_err *err, bool rejecting)
{
    return err != NULL && (rejecting || err->code == BS_ETIMEOUT);
}

const char *bs_settle_reject_code(const bs_err *err)
{
    switch (err->code) {
    case BS_EINVAL:
        return "invalid_command";
    case BS_ECONFLICT:
        return "command_id_reused";
    default:
        return "internal_error";
    }
}
