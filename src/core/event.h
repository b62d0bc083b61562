/* event: the state-change event Prefect's server emits for every state it writes
 * (InstrumentFlowRunStateTransitions: prefect.flow-run.<state name>, the run as resource, its
 * flow, deployment, work queue, work pool, parent task run, tags and creator as related
 * resources, the initial and validated states as payload). Pure: the related objects come in
 * as JSON, loaded by the caller. */
#ifndef BS_EVENT_H
#define BS_EVENT_H

#include <jansson.h>

#include "model.h"
#include "orch.h"

/* The objects a run's event names besides the run itself, each a JSON object or null:
 * {"flow_run": {"name", "tags", "created_by"}, "flow": {"id", "name", "tags"},
 *  "deployment": {...}, "work_queue": {"id", "name"}, "work_pool": {"id", "name", "type"},
 *  "task_run": {"id", "name", "tags"}} (the shape store.c's query returns). */
typedef json_t bs_event_context;

/* The event of a written transition: initial is the run's state before it (type BS_NONE when
 * none), d the decision (d->write must be true). A new reference. */
json_t *bs_event_state_change(const bs_state *initial, const bs_decision *d,
                              const bs_event_context *ctx);

/* The same from its parts: validated is the state written, run_count the run's after the
 * transition (what the outbox's deliverer reads back from the written rows). */
json_t *bs_event_flow_run_state(const bs_state *initial, const bs_state *validated,
                                const char *run_id, int64_t run_count, const bs_event_context *ctx);

/* The same as compact JSON text (malloc), the related objects given as the JSON text of a
 * bs_event_context (NULL: none, as for a run gone since). */
char *bs_event_json(const bs_state *initial, const bs_state *validated, const char *run_id,
                    int64_t run_count, const char *ctx_json);

/* Prefect's truncated_to(): NULL → "", longer than limit → head...N additional
 * characters...tail. Returns a new string (malloc). */
char *bs_event_truncated(const char *s, size_t limit);

#endif
