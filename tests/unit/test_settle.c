/* The settle decision (settle.c): what the loop does with a message after handling it, from
 * the error's code and flags alone. */
#include "../t.h"
#include "settle.h"

static bs_err mk(bs_code code, bool retriable, bool fatal)
{
    bs_err e = {0};
    if (fatal)
        bs_err_fatal(&e, code, "x");
    else if (retriable)
        bs_err_retriable(&e, code, "x");
    else
        bs_err_set(&e, code, "x");
    return e;
}

int main(void)
{
    /* success */
    CHECK_INT(bs_settle_decide(NULL, false, false), BS_SETTLE_DONE);
    bs_err ok = {0};
    CHECK_INT(bs_settle_decide(&ok, false, false), BS_SETTLE_DONE);
    /* { code, retriable, fatal, rejecting, poisoned, want } */
    static const struct {
        bs_code code;
        bool retriable, fatal, rejecting, poisoned;
        bs_settle want;
    } cases[] = {
        {BS_EDB, true, false, false, false, BS_SETTLE_RETRY},         /* PostgreSQL down */
        {BS_EKAFKA, true, false, false, false, BS_SETTLE_RETRY},      /* acks timed out */
        {BS_ETIMEOUT, true, false, false, false, BS_SETTLE_RETRY},    /* statement_timeout */
        {BS_ECONFLICT, false, false, false, false, BS_SETTLE_REJECT}, /* command id reused */
        {BS_EDB, false, false, false, false, BS_SETTLE_REJECT},       /* a statement it fails */
        {BS_EENCODE, false, false, false, false, BS_SETTLE_REJECT},   /* replies do not fit */
        {BS_EINTERNAL, false, false, false, false, BS_SETTLE_REJECT},
        {BS_EKAFKA, false, true, false, false, BS_SETTLE_STOP}, /* librdkafka fatal */
        /* a rejection that failed is tried again (and counted: poison after max_attempts) */
        {BS_EKAFKA, true, false, true, false, BS_SETTLE_RETRY},  /* dead letter not acked yet */
        {BS_EKAFKA, false, false, true, false, BS_SETTLE_RETRY}, /* reply topic gone, too large */
        {BS_EKAFKA, false, false, true, true, BS_SETTLE_STOP},   /* the poison record neither */
        {BS_EKAFKA, true, false, true, true, BS_SETTLE_RETRY},   /* ... during an outage */
        {BS_EDB, false, true, true, false, BS_SETTLE_STOP},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bs_err e = mk(cases[i].code, cases[i].retriable, cases[i].fatal);
        const bs_settle got = bs_settle_decide(&e, cases[i].rejecting, cases[i].poisoned);
        if (got != cases[i].want) fprintf(stderr, "case %zu\n", i);
        CHECK_INT(got, cases[i].want);
    }
    /* poison: delivery attempts beyond max_attempts */
    CHECK(!bs_settle_is_poison(1, 3));
    CHECK(!bs_settle_is_poison(3, 3));
    CHECK(bs_settle_is_poison(4, 3));
    /* a statement timeout and a failed rejection count as one more failed delivery when
     * retried; an outage of the apply path does not */
    bs_err t = mk(BS_ETIMEOUT, true, false), d = mk(BS_EDB, true, false);
    CHECK(bs_settle_counts_attempt(&t, false));
    CHECK(!bs_settle_counts_attempt(&d, false));
    CHECK(bs_settle_counts_attempt(&d, true));
    CHECK(!bs_settle_counts_attempt(NULL, false));
    /* reject codes follow the error's code, never its message */
    bs_err c = mk(BS_ECONFLICT, false, false), v = mk(BS_EINVAL, false, false);
    CHECK_STR(bs_settle_reject_code(&c), "command_id_reused");
    CHECK_STR(bs_settle_reject_code(&v), "invalid_command");
    bs_err enc = mk(BS_EENCODE, false, false);
    snprintf(enc.msg, sizeof enc.msg, "command_id_reused");
    CHECK_STR(bs_settle_reject_code(&enc), "internal_error");
    /* the flags are what the helpers set */
    bs_err r = mk(BS_EDB, true, false), f = mk(BS_EKAFKA, false, true),
           p = mk(BS_EDB, false, false);
    CHECK(r.retriable && !r.fatal);
    CHECK(f.fatal && !f.retriable);
    CHECK(!p.retriable && !p.fatal);
    bs_err in = {0};
    bs_err_input(&in, "uuid_parsing", "flow_runs.id.any_[0]", "bad");
    CHECK_INT(in.code, BS_EINVAL);
    CHECK(!in.retriable && !in.fatal);
    CHECK_STR(in.type, "uuid_parsing");
    CHECK_STR(in.field, "flow_runs.id.any_[0]");
    bs_err_prefix(&in, "command %d", 42);
    CHECK_STR(in.msg, "command 42: bad");
    CHECK_STR(bs_code_name(BS_ETIMEOUT), "timeout");
    return t_done();
}
