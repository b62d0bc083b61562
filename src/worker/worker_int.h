/* worker_int: what the worker's files share. Not for use outside src/worker/.
 *   worker.c    the loop: poll, handle, settle (retry with backoff, dead-letter, stop); the
 *               threads (lanes) of worker.threads, one loop each;
 *   handle.c    one message: decode, validate, cancel, start a large command, or apply;
 *   apply.c     the pipeline of one batch, shared by every kind of command;
 *   large.c     large commands (max_runs): batches with a checkpoint, round robin;
 *   reply.c     the one publisher: replies, events, completions, dead letters, acks;
 *   replay.c    bulkstate replay: a command log re-applied outside the group;
 *   periodic.c  between commands: lease reaper, systemd notify, SIGHUP reload;
 *   outbox.c    the thread delivering committed events to Prefect's server;
 *   failpoint.c fault injection for the fault tests. */
#ifndef BS_WORKER_INT_H
#define BS_WORKER_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "batch.h"
#include "codec.h"
#include "config.h"
#include "err.h"
#include "kafka.h"
#include "metrics.h"
#include "model.h"
#include "ops.h"
#include "outbox.h"
#include "store.h"
#include "worker.h"

#define BS_MAX_LARGE 16 /* large commands in progress at once, per worker */

typedef struct large_cmd large_cmd;

/* A worker process runs worker.threads lanes. Each lane is a bs_worker of its own, run by its
 * own thread: its consumer (a member of the group: the group spreads the partitions over the
 * lanes, and a partition is handled in order by the one lane it is assigned to), producer,
 * PostgreSQL connection, codec, arena and large commands. They share the metrics registry, the
 * HTTP endpoint and Prefect's outbox, which lane 0 owns. Lane 0 runs on the caller's thread and
 * also does what the process does once: the lease reaper, systemd's notifications, the logged
 * reload. */
struct bs_worker {
    bs_config *cfg; /* SIGHUP applies the reloadable keys in place (lanes > 0: their own copy) */
    bs_codec *codec;
    bs_store *store;
    bs_consumer *cons; /* NULL in a replay worker */
    bs_producer *prod;
    bs_arena *ar; /* per message: reset after each one */
    bs_framing framing;
    /* delivery accounting, one per command in flight: the current one's (dv) and the last
     * command's whose acknowledgements are still awaited (unacked). They live as long as the
     * worker: late delivery reports land here */
    bs_delivery dvs[2], *dv;
    struct {
        bs_msg *m;       /* NULL: none; else its replies and completion are sent, not yet acked */
        bs_delivery *dv; /* its records' accounting (one of dvs) */
    } unacked;
    const bs_msg *cur; /* the message being handled: its trace context goes on */
    regex_t reply_re;  /* worker.reply_topic_pattern */
    bool reply_re_set;
    char *known_topics[64]; /* reply topics seen to exist */
    size_t n_known_topics;
    int64_t next_reap_us; /* when the expired-lease reaper runs next */
    bs_metrics *m;        /* the process's registry (lane 0's), under its mutex */
    bs_http *http;
    bs_outbox *outbox;                     /* NULL unless [prefect] api_url is set */
    bool outbox_held;                      /* the consumer is paused until the outbox has room */
    bool ready_sent;                       /* systemd READY=1 */
    int64_t watchdog_us, next_watchdog_us; /* WATCHDOG=1 interval, 0 = no watchdog */
    int lane;                              /* 0: the caller's thread; 1..: threads of their own */
    bs_worker *lanes[BS_MAX_THREADS];      /* lane 0: every lane, itself first */
    size_t nlanes;
    bs_worker *lane0;            /* lane 0 (itself for lane 0) */
    int inflight;                /* this lane's part of the metrics' in-flight gauge */
    _Atomic int64_t turn_us;     /* when this lane's loop last turned (lane 0's watchdog) */
    _Atomic unsigned reload_gen; /* lane 0: its reloads so far; the others follow */
    unsigned reloads_seen;
    const char *config_path;     /* what a reload reads */
    volatile sig_atomic_t *stop; /* the process's stop flag: set by a signal or a failed lane */
    pthread_t thread;
    bool started;
    int rc; /* a lane's loop: 0, or -1 with err */
    bs_err err;
    large_cmd *large[BS_MAX_LARGE]; /* in progress, one batch each per loop turn */
    size_t nlarge;
    struct {             /* the one-batch command being handled: where its time goes */
        bool on;         /* off for large commands, whose batches interleave with others */
        int64_t last_us; /* monotonic time of the last mark */
        int64_t us[BS_PHASES];
    } ph;
    int64_t count_us;  /* the current delivery's count (before bs_handle starts the clocks) */
    bool events_sent;  /* events sent since the last wait for acknowledgements */
    bool topics_known; /* its producer found every topic it writes at start */
};

/* The time since the last mark goes to phase p (while w->ph.on). */
void bs_phase_mark(bs_worker *w, bs_phase p);

/* How a message is handled: by the worker, or by `bulkstate replay` with its options. A
 * parameter of every call, never a field of the worker. */
typedef struct bs_mode {
    bool publish;       /* replies, events and completions go to Kafka */
    bool dead_letter;   /* a bad message is dead-lettered (else it is only reported) */
    bool deterministic; /* clock and ids derive from the command's issued_at and id */
    bool inline_large;  /* a large command runs all its batches at once (no group to serve) */
    bool dry_run;       /* the store rolls everything back at the end (an outer transaction) */
    bool defer_ack;     /* an applied one-batch command's acknowledgements are awaited while the
                         * next message is handled (worker.c: the unacked command) */
    FILE *print;        /* every result also as a JSON line here; NULL: nowhere */
} bs_mode;

/* What became of a settled message. */
typedef enum {
    BS_OUT_APPLIED = 0, /* applied now (or evaluated, in a dry run) */
    BS_OUT_ALREADY,     /* applied before: its stored replies were published again */
    BS_OUT_REJECTED,    /* bad input: error completion (and dead letter) */
    BS_OUT_CANCEL,      /* a cancel command flagged a large command */
    BS_OUT_RUNNING      /* a large command now runs in batches: the message is kept */
} bs_outcome_kind;

typedef struct bs_outcome {
    bs_outcome_kind kind;
    const char *command_id; /* NULL when unknown (in the arena) */
    const char *reply_topic;
    int matched, counts[4];
    int batches; /* large commands */
    bool cancelled;
    const char *error_code; /* REJECTED: "invalid_command", ... */
    bs_err error;           /* REJECTED: what was wrong */
    bool unacked; /* its completion was sent without awaiting the acknowledgements (defer_ack) */
} bs_outcome;

/* handle.c: one message. 0: settled, o says how (RUNNING: m now belongs to the worker's
 * large commands); -1 with err: not settled (err's flags say why, settle.h). */
int bs_handle(bs_worker *w, const bs_mode *mode, bs_msg *m, bs_outcome *o, bs_err *err);
/* The error of a command whose id was used before for another body (BS_ECONFLICT). */
int bs_handle_conflict(const bs_command *cmd, bs_err *err);
/* The orchestration clock and ids of a command (deterministic in replay). */
bs_batch_env bs_handle_env(bs_worker *w, const bs_mode *mode, const bs_command *cmd);

/* apply.c: one batch in its own transaction. The caller has begun the transaction and claimed
 * the command; ids are the selected runs. lock, decide, write, slots, encode, events, record,
 * commit; then the replies are published. */
typedef struct bs_apply {
    const bs_command *cmd;
    const char *reply_topic;
    const bs_source *src;
    const bs_filter *recheck; /* large: runs that stopped matching are skipped; NULL: none */
    int first_seq, total;     /* total -1: not known yet (large) */
    bs_progress *progress;    /* in: the command's row; out: with this batch counted */
    bool finish;              /* the command is done after this batch */
} bs_apply;
/* Returns 0 (committed and published; progress updated) or -1 with err (rolled back). */
int bs_apply_batch(bs_worker *w, const bs_mode *mode, const bs_apply *a, const char **ids, size_t n,
                   bs_err *err);

/* reply.c */
/* Publishes replies [first_seq, first_seq + r->n) of a command, then their events; in replay
 * mode->print gets each result as a JSON line. failpoint (NULL: none) is reached after the
 * first reply. */
int bs_reply_publish(bs_worker *w, const bs_mode *mode, const char *topic, const char *command_id,
                     int first_seq, const bs_replies *r, const char *failpoint, bs_err *err);
/* The completion of a command (error_code NULL: none), its acknowledgement awaited unless
 * o->unacked (then the caller awaits them, bs_reply_wait_for). */
int bs_reply_complete(bs_worker *w, const bs_mode *mode, const bs_outcome *o, bs_err *err);
/* Bad input: an error completion (when the command id is known) and a copy of the message on
 * the dead-letter topic, both acknowledged; o is the rejection (kind, code, error). */
int bs_reply_reject(bs_worker *w, const bs_mode *mode, const bs_msg *m, const bs_outcome *o,
                    bs_err *err);
/* Waits for every produced record's acknowledgement (bounded by flush_timeout_ms). */
int bs_reply_wait(bs_worker *w, bs_err *err);
/* The same for the records counted in dv (one of w->dvs). */
int bs_reply_wait_for(bs_worker *w, bs_delivery *dv, bs_err *err);
/* A command's own reply topic must match worker.reply_topic_pattern, not be one of bulkstate's
 * inputs, and exist (asked once per topic): 0, or -1 with why (topic_forbidden,
 * topic_not_found). */
int bs_reply_topic_check(bs_worker *w, const char *topic, bs_err *why);

/* large.c */
/* A large command arrives or comes back after a crash. 0 with o->kind RUNNING (m is kept),
 * ALREADY (finished earlier: replies published again) or APPLIED (inline: all batches run);
 * -1 with err. */
int bs_large_start(bs_worker *w, const bs_mode *mode, bs_msg *m, const bs_command *cmd,
                   const char *identity, bs_outcome *o, bs_err *err);
/* One batch of each large command in progress (round robin with the poll loop). */
void bs_large_run(bs_worker *w, volatile sig_atomic_t *stop);
/* Lets go of the large command in progress that m started, m freed with it (its checkpoint is
 * in the database; m is delivered again). */
void bs_large_drop(bs_worker *w, const bs_msg *m);
/* Lets go of every large command in progress (their checkpoints are in the database). */
void bs_large_release_all(bs_worker *w, const char *why);

/* periodic.c */
void bs_periodic_reap(bs_worker *w);
void bs_periodic_notify(bs_worker *w);
void bs_periodic_status(bs_worker *w);
void bs_periodic_reload(bs_worker *w, const char *path);
void bs_periodic_on_stats(const char *json, size_t len, void *ctx);

/* failpoint.c: BULKSTATE_FAILPOINT=NAME:N makes the worker SIGKILL itself the Nth time it
 * reaches point NAME. Unset, a failpoint costs one comparison. */
void bs_failpoint_setup(void);
void bs_failpoint(const char *name);

#endif
