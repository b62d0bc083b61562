/* settle: what the worker does with a message once it was handled, decided from what
 * happened (the error's code and flags), never from message text. Pure: the worker's loop
 * does what these functions say. */
#ifndef BS_SETTLE_H
#define BS_SETTLE_H

#include <stdbool.h>

#include "err.h"

typedef enum {
    BS_SETTLE_DONE = 0, /* settled: store the offset, forget the delivery count */
    BS_SETTLE_REJECT,   /* a permanent failure of this message: error completion, dead letter */
    BS_SETTLE_RETRY,    /* an outage: back off, keep polling, handle the same message again */
    BS_SETTLE_STOP      /* the process cannot go on: stop with a non-zero exit */
} bs_settle;

/* Before a delivery is handled: attempts deliveries have started (this one included); once
 * more than max_attempts did, the message is poison (the earlier ones ended without a
 * result: a crash, a kill, a timeout) and is dead-lettered instead of handled again. */
bool bs_settle_is_poison(int attempts, int max_attempts);

/* After handling: err NULL (or BS_OK) is success. rejecting: the failure happened while the
 * message was being rejected (its error records could not be produced); it is tried again,
 * and counted (bs_settle_counts_attempt), so after max_attempts the message is poison and
 * rejected the plainest way (default reply topic, a dead letter cut to fit). poisoned: that
 * plainest way failed too, permanently: only the operator can mend it (the dead-letter topic
 * is missing, say), so the process stops. */
bs_settle bs_settle_decide(const bs_err *err, bool rejecting, bool poisoned);

/* Whether a retried failure counts as one more failed delivery toward max_attempts: a
 * statement that ran into statement_timeout will most likely do so again, and so will a
 * rejection that failed; an outage of the apply path will not. */
bool bs_settle_counts_attempt(const bs_err *err, bool rejecting);

/* The error code of the completion and dead-letter record of a message rejected after this
 * failure ("command_id_reused", "internal_error", ...). */
const char *bs_settle_reject_code(const bs_err *err);

#endif
