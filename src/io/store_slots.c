/* store_slots: deployment concurrency. The limits a batch may touch are locked after its
 * runs (the global order: runs by id DESC, then limits by id) with Prefect's slot decay
 * applied; the slot plan of the written transitions (slots.h) is written back; expired
 * leases are reaped between commands. */
#include "store_int.h"

/* clang-format off */
/* The limits a batch may take or free slots on, locked after the runs (the global order is
 * runs by id DESC, then limits by id), with Prefect's slot decay applied. */
static const char SQL_LOCK_LIMITS[] =
    "SELECT id, GREATEST(0, active_slots - floor(slot_decay_per_second * "
    "  EXTRACT(EPOCH FROM now() - updated)))::bigint "
    "FROM concurrency_limit_v2 WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE";

/* Prefect's bulk_increment/decrement_active_slots write the new count and the decayed
 * denied_slots (rate limits decay by slot_decay_per_second, concurrency limits by the clamped
 * average occupancy; 10 s for tag limits, 30 s otherwise, Prefect's defaults). */
static const char SQL_UPDATE_LIMITS[] =
    "UPDATE concurrency_limit_v2 AS l SET active_slots = u.a, "
    "  denied_slots = GREATEST(0, l.denied_slots - floor(CASE "
    "    WHEN l.slot_decay_per_second > 0 THEN l.slot_decay_per_second "
    "    ELSE 1.0 / GREATEST(0.1, LEAST(l.avg_slot_occupancy_seconds, "
    "                                   CASE WHEN l.name LIKE 'tag:%' THEN 10 ELSE 30 END)) "
    "  END * EXTRACT(EPOCH FROM now() - l.updated))), "
    "  updated = now() "
    "FROM unnest($1::uuid[], $2::int[]) AS u(id, a) WHERE l.id = u.id";

static const char SQL_INSERT_LEASES[] =
    "INSERT INTO bulkstate.deployment_lease (id, limit_id, flow_run_id, slots, expiration) "
    "SELECT u.id, u.l, u.fr, 1, now() + u.ttl * interval '1 second' "
    "FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[]) AS u(id, l, fr, ttl)";

/* leases Prefect's server holds: released through its API after the commit (outbox.c) */
static const char SQL_QUEUE_PREFECT_RELEASES[] =
    "INSERT INTO bulkstate.prefect_lease_release (lease_id, fallback_limit_id) "
    "SELECT u.l, u.f FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS u(l, f, o) "
    "ORDER BY u.o";

static const char SQL_DELETE_LEASES[] =
    "DELETE FROM bulkstate.deployment_lease WHERE id = ANY($1::uuid[])";
/* clang-format on */

int bs_store_lock_limits(bs_store *st, bs_arena *ar, bs_batch *b, bs_err *err)
{
    const char **ids = bs_arena_alloc(ar, sizeof(char *) * (2 * b->n + 1));
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        const bs_run *run = &b->runs[i];
        if (!b->found[i]) continue;
        if (!bs_uuid_null(&run->concurrency_limit_id)) ids[k++] = run->concurrency_limit_id.s;
        if (run->lease_found) ids[k++] = run->lease_limit_id.s;
    }
    b->limits = NULL;
    b->nlimits = 0;
    if (k == 0) return 0; /* the common case: no limited deployment, no extra round trip */
    const char *p[1] = {bs_pg_array(ar, ids, k)};
    PGresult *res = bs_pg_exec_prepared(st, SQL_LOCK_LIMITS, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "lock the concurrency limits");
    const int rows = PQntuples(res);
    b->limits = bs_arena_alloc(ar, sizeof(bs_limit_view) * (size_t)(rows ? rows : 1));
    for (int r = 0; r < rows; r++) {
        bs_limit_view *v = &b->limits[r];
        bs_pg_col_uuid(res, r, 0, &v->id);
        v->start = v->now = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        v->touched = false;
    }
    b->nlimits = (size_t)rows;
    PQclear(res);
    return 0;
}

/* n numbers as text, for an array parameter */
static const char **numbers(bs_arena *ar, const int64_t *v, size_t n)
{
    const char **s = bs_arena_alloc(ar, sizeof(char *) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        s[i] = bs_arena_printf(ar, "%" PRId64, v[i]);
    return s;
}

int bs_store_write_slots(bs_store *st, bs_arena *ar, const bs_slot_plan *plan, bs_err *err)
{
    struct {
        const char *sql, *what;
        size_t n;
        int np;
        const char *p[4];
    } stmt[4] = {
        {SQL_DELETE_LEASES,
         "revoke leases",
         plan->nrevoke,
         1,
         {bs_pg_array(ar, plan->revoke_id, plan->nrevoke)}},
        {SQL_INSERT_LEASES,
         "create leases",
         plan->ncreate,
         4,
         {bs_pg_array(ar, plan->create_id, plan->ncreate),
          bs_pg_array(ar, plan->create_limit, plan->ncreate),
          bs_pg_array(ar, plan->create_run, plan->ncreate),
          bs_pg_array(ar, numbers(ar, plan->create_ttl_s, plan->ncreate), plan->ncreate)}},
        {SQL_UPDATE_LIMITS,
         "update concurrency slots",
         plan->nupdate,
         2,
         {bs_pg_array(ar, plan->update_id, plan->nupdate),
          bs_pg_array(ar, numbers(ar, plan->update_active, plan->nupdate), plan->nupdate)}},
        {SQL_QUEUE_PREFECT_RELEASES,
         "queue lease releases for Prefect",
         plan->nprefect,
         2,
         {bs_pg_array(ar, plan->prefect_lease, plan->nprefect),
          bs_pg_array(ar, plan->prefect_fallback_limit, plan->nprefect)}},
    };
    for (int i = 0; i < 4; i++)
        if (stmt[i].n > 0 &&
            bs_pg_exec_ok(st, stmt[i].sql, stmt[i].np, stmt[i].p, stmt[i].what, err) < 0)
            return -1;
    return 0;
}

/* clang-format off */
/* Expired leases whose run is still PENDING with that lease give their slots back (Prefect's
 * repossessor). So do leases whose PENDING state was followed by a RUNNING state carrying
 * another lease id: Prefect's server moved the run for a client >= 3.4.11, did not find the
 * lease and took a second slot under its own lease, which it will release; the first slot is
 * ours to free. Any other lease whose run moved on is only deleted: whoever moved it released
 * the slot (bulkstate through the lease, Prefect's server through its one-slot fallback). The
 * runs are locked first, in the global order, so a batch holding one is waited for. */
static const char SQL_EXPIRED_LEASE_RUNS[] =
    "SELECT DISTINCT flow_run_id FROM bulkstate.deployment_lease WHERE expiration < now() "
    "ORDER BY flow_run_id DESC LIMIT 500";
static const char SQL_LOCK_RUN_IDS[] =
    "SELECT id FROM flow_run WHERE id = ANY($1::uuid[]) ORDER BY id DESC FOR UPDATE";
static const char SQL_REAP[] =
    "WITH expired AS ("
    "  DELETE FROM bulkstate.deployment_lease "
    "  WHERE flow_run_id = ANY($1::uuid[]) AND expiration < now() "
    "  RETURNING id, limit_id, flow_run_id, slots), "
    "held AS ("
    "  SELECT e.limit_id, sum(e.slots) AS slots FROM expired e "
    "  JOIN flow_run fr ON fr.id = e.flow_run_id "
    "  JOIN flow_run_state s ON s.id = fr.state_id "
    "  WHERE (s.type = 'PENDING' "
    "         AND s.state_details->>'deployment_concurrency_lease_id' = e.id::text) "
    "     OR EXISTS (SELECT 1 FROM flow_run_state o "
    "       CROSS JOIN LATERAL (SELECT n.type, n.state_details FROM flow_run_state n "
    "         WHERE n.flow_run_id = o.flow_run_id AND n.timestamp > o.timestamp "
    "         ORDER BY n.timestamp LIMIT 1) nx "
    "       WHERE o.flow_run_id = e.flow_run_id AND o.type = 'PENDING' "
    "         AND o.state_details->>'deployment_concurrency_lease_id' = e.id::text "
    "         AND nx.type = 'RUNNING' "
    "         AND nx.state_details->>'deployment_concurrency_lease_id' <> e.id::text) "
    "  GROUP BY e.limit_id), "
    "freed AS ("
    "  UPDATE concurrency_limit_v2 l "
    "  SET active_slots = GREATEST(0, l.active_slots - h.slots), updated = now() "
    "  FROM held h WHERE l.id = h.limit_id AND l.active RETURNING h.slots) "
    "SELECT (SELECT count(*) FROM expired), (SELECT COALESCE(sum(slots), 0) FROM freed)";
/* clang-format on */

int bs_store_reap_leases(bs_store *st, bs_arena *ar, int *leases, int *slots, bs_err *err)
{
    *leases = *slots = 0;
    PGresult *res = bs_pg_exec(st, SQL_EXPIRED_LEASE_RUNS, 0, NULL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return bs_pg_fail(st, res, err, "find expired leases");
    size_t n;
    const char **ids = bs_pg_col_strings(res, ar, &n);
    PQclear(res);
    if (n == 0) return 0;
    const char *p[1] = {bs_pg_array(ar, ids, n)};
    if (bs_store_begin(st, err) < 0) return -1;
    res = bs_pg_exec(st, SQL_LOCK_RUN_IDS, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        bs_pg_fail(st, res, err, "lock the runs of expired leases");
        bs_store_rollback(st);
        return -1;
    }
    PQclear(res);
    res = bs_pg_exec(st, SQL_REAP, 1, p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        bs_pg_fail(st, res, err, "reap expired leases");
        bs_store_rollback(st);
        return -1;
    }
    *leases = atoi(PQgetvalue(res, 0, 0));
    *slots = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    return bs_store_commit(st, err);
}
