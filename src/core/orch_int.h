/* orch_int: what orch.c (engine, global transforms) and orch_rules.c (policy rules) share. */
#ifndef BS_ORCH_INT_H
#define BS_ORCH_INT_H

#include "orch.h"

#define M(t)       (1u << (t))
#define M_NONE     M(BS_NONE)
#define M_ALL      0x3FFu
#define M_TERMINAL (M(BS_COMPLETED) | M(BS_FAILED) | M(BS_CANCELLED) | M(BS_CRASHED))

typedef struct octx {
    const bs_orch_input *in;
    const bs_state *cur; /* C: the run's current state */
    bs_decision *d;      /* d->state is P, the proposal as it stands */
} octx;

typedef void orch_hook(octx *c);

typedef struct orch_rule {
    const char *name;
    uint32_t from, to;
    bool universal; /* transforms: selected always, hooks not subject to the live check */
    orch_hook *before, *after, *cleanup;
} orch_rule;

extern const orch_rule BS_CORE_FLOW_POLICY[];
extern const int BS_CORE_FLOW_POLICY_LEN;
extern const orch_rule BS_MINIMAL_FLOW_POLICY[];
extern const int BS_MINIMAL_FLOW_POLICY_LEN;

/* api-version absent or >= x.y.z */
bool bs_orch_api_at_least(const octx *c, int64_t v);
#define API_0_8_3 8003
#define API_0_8_4 8004

#endif
