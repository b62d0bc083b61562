/* result: the reply records (one FlowRunOrchestrationResult per run, one BulkSetStateCompleted
 * per command) as JSON trees shaped like their Avro schemas, ready for codec.c to encode.
 * Pure. */
#ifndef BS_RESULT_H
#define BS_RESULT_H

#include <jansson.h>

#include "err.h"
#include "model.h"
#include "orch.h"

typedef struct bs_result {
    const char *command_id;
    int seq, total;
    const char *flow_run_id;
    bs_status status;
    const bs_state *state; /* NULL: "state": null */
    const char *reason;    /* NULL: null */
    int64_t delay_seconds; /* WAIT only */
} bs_result;

typedef struct bs_completion {
    const char *command_id; /* NULL when unknown */
    int matched;
    int counts[4]; /* by bs_status */
    bool replayed;
    int batches;            /* large commands: batches applied (0 means 1) */
    bool cancelled;         /* a cancel command stopped it */
    const char *error_code; /* NULL: no error */
    const bs_err *err;      /* type/field/msg of the error, may be NULL */
    int64_t completed_at_us;
} bs_completion;

/* How many bytes of a message of len bytes its dead-letter copy keeps, when the producer takes
 * records of at most max bytes and the copy carries key_len bytes of key and headers of
 * hdr_bytes (names and values). Less than len: the copy is cut (and says so). */
size_t bs_dead_letter_keep(size_t max, size_t key_len, size_t hdr_bytes, size_t len);

/* New references. */
json_t *bs_result_to_json(const bs_result *r);
json_t *bs_completion_to_json(const bs_completion *c);

#endif
