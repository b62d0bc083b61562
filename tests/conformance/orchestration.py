#!/usr/bin/env python3
"""Differential test of bulkstate's orchestration against Prefect's own server.

1. Creates a population of flow runs through Prefect's REST API on database A (every state
   type, retries or not, blocking and rescheduling pauses, scheduled in the past and the
   future, with and without deployment and infrastructure pid, persisted results, deployments
   with concurrency limits (ENQUEUE, CANCEL_NEW), a deployment deleted after its runs were
   created, subflows whose parent task runs are in various states with tag limits), then copies
   database A to database B (pg_dump), so both hold the same runs with the same ids.
2. Generates seeded bulk commands (1..8 runs by id each, a proposed state with a name and
   details, force or not) and applies each one, in the same order, through Prefect's HTTP
   `POST /flow_runs/bulk_set_state` on A and through bulkstate via Kafka (`bulkstate send
   --batch -`, a worker on B), alternately, so both see the same clock.
3. Compares per run: status, details type, reason, delay_seconds (within 3 s: a scheduled
   time set from "now" on each side differs by the time between the two calls), state
   null-ness, type and name, scheduled_time (within 2 s); at the end, every run's columns in A
   and B, the subflows' parent task runs, and the slots each concurrency limit holds.

Differences that come from Prefect's shared `state_details` object (filters-and-schema.md §6
item 10: one object serves every run of a request) are counted as expected, with the reason;
so are bulkstate's deliberate refusals of subflow transitions that would have to release tag
concurrency leases Prefect keeps in its server's memory.
Prints `orchestration-conformance: compared=<N> unexplained=<U> expected=<E>`; exits 1 when
U > 0.
"""
import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from filters import Api, iso  # noqa: E402

TYPES = ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CRASHED",
         "PAUSED", "CANCELLING"]
NAMES = {"SCHEDULED": ["Scheduled", "Late", "AwaitingRetry", "Resuming", "Rescheduled"],
         "PENDING": ["Pending", "Submitting", "InfrastructurePending"],
         "PAUSED": ["Paused", "Suspended"],
         "RUNNING": ["Running", "Retrying"]}


def now():
    return dt.datetime.now(dt.timezone.utc)


def build_population(api, rng, n_runs):
    flow = api.ok("POST", "/flows/", {"name": "orchestration-flow"})["id"]
    deps = [api.ok("POST", "/deployments/", {"name": f"odep-{i}", "flow_id": flow})["id"]
            for i in range(2)]
    # deployments with concurrency limits (Prefect creates their concurrency_limit_v2 rows):
    # ENQUEUE and CANCEL_NEW (the API refuses a limit of 0; the unit cases cover it)
    deps += [api.ok("POST", "/deployments/", dict({"name": f"odep-limited-{i}", "flow_id": flow,
                                                   "concurrency_limit": limit}, **extra))["id"]
             for i, (limit, extra) in enumerate([
                 (3, {}),
                 (2, {"concurrency_options": {"collision_strategy": "CANCEL_NEW"}})])]
    # runs of a deployment deleted afterwards: their deployment_id dangles (no foreign key),
    # which SecureFlowConcurrencySlots answers with "Deployment not found." on PENDING
    gone = api.ok("POST", "/deployments/", {"name": "odep-gone", "flow_id": flow})["id"]
    ids, dep_of, parent_of = [], {}, {}
    limited = set(deps[2:])
    # subflows: their parent task runs live in one parent flow run; tag limits (Prefect creates
    # them in concurrency_limit_v2, named tag:<tag>): "light" never has a slot in use, "held"
    # gets slots through Prefect's own task policy (leases in its server's memory)
    parent_run = api.ok("POST", "/flow_runs/", {"flow_id": flow, "name": "subflow-parent"})["id"]
    # Prefect's task policy lets a task run only inside a running flow run
    api.ok("POST", f"/flow_runs/{parent_run}/set_state", {"state": {"type": "RUNNING"}, "force": True})
    for tag in ("light", "held"):
        api.ok("POST", "/concurrency_limits/", {"tag": tag, "concurrency_limit": 1000})
    task_paths = []
    for i in range(n_runs):
        body = {"flow_id": flow, "name": f"orch-{i}"}
        if rng.random() < 0.15:
            tpath = rng.choice(["none", "pending", "running", "completed"] * 2 + ["core_running"])
            # "held" only on the tasks that take its slots, so that only their subflows meet
            # bulkstate's refusal and the others are compared
            tags = rng.choice([[], ["light"], ["light", "other"]])
            if tpath == "core_running":
                tags = ["held"]
            task = api.ok("POST", "/task_runs/", {"flow_run_id": parent_run, "task_key": "orch-subflow",
                                                  "dynamic_key": str(i), "name": f"orch-task-{i}",
                                                  "tags": tags})["id"]
            task_paths.append((task, tpath))
            body["parent_task_run_id"] = task
        if rng.random() < 0.6:
            body["deployment_id"] = rng.choice(deps) if rng.random() < 0.85 else gone
        if rng.random() < 0.4:
            body["empirical_policy"] = {"retries": rng.randint(0, 3),
                                        "retry_delay": rng.choice([0, 5, 60])}
        run = api.ok("POST", "/flow_runs/", body)
        rid = run["id"]
        ids.append(rid)
        dep_of[rid] = body.get("deployment_id")
        if "parent_task_run_id" in body:
            parent_of[rid] = body["parent_task_run_id"]
        if rng.random() < 0.3:
            api.ok("PATCH", f"/flow_runs/{rid}", {"infrastructure_pid": f"pid-{i}"})
        path = rng.choice(["none", "scheduled", "pending", "running", "completed", "completed_data",
                           "failed", "cancelled", "crashed", "paused", "suspended", "cancelling",
                           "late"])
        def put(state, force=True):
            api.ok("POST", f"/flow_runs/{rid}/set_state", {"state": state, "force": force})
        if path == "none":
            continue
        if path in ("scheduled", "late"):
            when = now() + dt.timedelta(hours=rng.choice([-48, -30, 30, 48]))
            put({"type": "SCHEDULED", "name": "Late" if path == "late" else "Scheduled",
                 "state_details": {"scheduled_time": iso(when)}})
            continue
        put({"type": "PENDING"})
        if path == "pending":
            continue
        put({"type": "RUNNING"})
        if path == "completed_data":
            put({"type": "COMPLETED", "data": {"storage_key": f"s3://bucket/{rid}"}})
        elif path in ("completed", "failed", "cancelled", "crashed", "cancelling"):
            put({"type": path.upper()})
        elif path in ("paused", "suspended"):
            details = {"pause_key": f"k-{i}",
                       "pause_timeout": iso(now() + dt.timedelta(hours=rng.choice([-48, 48])))}
            if path == "suspended":
                details["pause_reschedule"] = True
            put({"type": "PAUSED", "name": "Suspended" if path == "suspended" else "Paused",
                 "state_details": details})
    # the parent task runs' own states, set after their subflows' (each subflow state is copied
    # onto its parent task, which would release the tag slots)
    for task, tpath in task_paths:
        def put_task(state, force=True):
            api.ok("POST", f"/task_runs/{task}/set_state", {"state": state, "force": force})
        if tpath != "none":
            put_task({"type": "PENDING"})
        if tpath in ("running", "completed"):
            put_task({"type": "RUNNING"})
        if tpath == "completed":
            put_task({"type": "COMPLETED"})
        if tpath == "core_running":  # through Prefect's CoreTaskPolicy: takes the tag slots
            put_task({"type": "RUNNING"}, force=False)
    api.ok("DELETE", f"/deployments/{gone}")
    return ids, dep_of, limited, parent_of


def proposal(rng):
    t = rng.choice(TYPES)
    state = {"type": t}
    if rng.random() < 0.5:
        state["name"] = rng.choice(NAMES.get(t, [t.capitalize()]))
    details = {}
    if t == "SCHEDULED" or rng.random() < 0.1:
        if rng.random() < 0.8:
            details["scheduled_time"] = iso(now() + dt.timedelta(hours=rng.choice([-24, 24])))
    if t == "PAUSED":
        if rng.random() < 0.5:
            details["pause_reschedule"] = True
        if rng.random() < 0.7:
            details["pause_key"] = rng.choice(["k-1", "k-2", "fresh-key"])
    if rng.random() < 0.05:
        details["transition_id"] = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    if details:
        state["state_details"] = details
    if t == "COMPLETED" and rng.random() < 0.3:
        state["data"] = rng.choice([{"storage_key": "x"}, {"type": "unpersisted"}, 1])
    if rng.random() < 0.3:
        state["message"] = "from the conformance test"
    return state


def parse_ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def close(a, b, secs):
    if a is None or b is None:
        return a is b
    return abs((parse_ts(a) - parse_ts(b)).total_seconds()) <= secs


# state_details keys whose values are fresh random ids on each side: compared by presence
RANDOM_IDS = ("deployment_concurrency_lease_id", "pause_key", "run_input_keyset")
# the field of Prefect's shared state_details object that only its response shows wrong (the
# last run's): UpdateStateDetails sets it on every run before its state is written
RESPONSE_ONLY = ("state_details.flow_run_id",)  # (details_diff leaves the known case out)
# timestamps computed from each side's clock
CLOCKED = ("scheduled_time", "pause_timeout", "cache_expiration")


def details_diff(ps, bs, prev_leases, rid, others):
    """Every state_details field of two result states, as difference descriptions. A lease id
    must be there on both sides or neither, and carried from the run's previous state on both
    sides or on neither. Prefect's response of a request of several runs shows as flow_run_id
    the last run's (its shared object): that one is left out, and only when Prefect's value is
    one of the request's other runs (others) and bulkstate's the run itself."""
    out = []
    pd, bd = ps.get("state_details") or {}, bs.get("state_details") or {}
    for key in sorted(set(pd) | set(bd)):
        a, b = pd.get(key), bd.get(key)
        if key in CLOCKED:
            if not close(a, b, 2):
                out.append(f"{'scheduled_time' if key == 'scheduled_time' else 'state_details.' + key} {a} vs {b}")
        elif key in RANDOM_IDS:
            if (a is None) != (b is None):
                out.append(f"state_details.{key} {a} vs {b}")
            elif key == "deployment_concurrency_lease_id" and a is not None and \
                    (a == prev_leases[0]) != (b == prev_leases[1]):
                out.append(f"state_details.{key} carried {a == prev_leases[0]} vs {b == prev_leases[1]}")
        elif key == "flow_run_id" and a in others and b == rid:
            continue
        elif a != b:
            out.append(f"state_details.{key} {a!r} vs {b!r}")
    return out


def compare_result(p, b, sel, prev_leases=(None, None)):
    """Returns (unexplained, expected) lists of difference descriptions for one run."""
    un, ex = [], []
    multi = len(sel) > 1
    if p["status"] != b["status"]:
        un.append(f"status {p['status']} vs {b['status']}")
    pd, bd = p["details"], b["details"]
    if pd["type"] != bd["type"]:
        un.append(f"details.type {pd['type']} vs {bd['type']}")
    if pd.get("reason") != bd.get("reason"):
        un.append(f"reason {pd.get('reason')!r} vs {bd.get('reason')!r}")
    if pd["type"] == "wait_details" and abs((pd.get("delay_seconds") or 0) - (bd.get("delay_seconds") or 0)) > 3:
        un.append(f"delay {pd.get('delay_seconds')} vs {bd.get('delay_seconds')}")
    ps, bs = p["state"], b["state"]
    if (ps is None) != (bs is None):
        un.append(f"state {ps is None and 'null' or 'set'} vs {bs is None and 'null' or 'set'}")
    elif ps is not None:
        if (ps["type"], ps["name"]) != (bs["type"], bs["name"]):
            un.append(f"state {ps['type']}/{ps['name']} vs {bs['type']}/{bs['name']}")
        # Prefect shares one state_details object among the runs of a request: what a rule
        # sets for one run leaks into the next (expected there, never for a single run)
        others = {x for x in sel if x != b["flow_run_id"]}
        (ex if multi else un).extend(details_diff(ps, bs, prev_leases, b["flow_run_id"], others))
    return un, ex


def psql_rows(conninfo, sql):
    """The rows of a query, each a list of column texts."""
    out = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\t", conninfo, "-c", sql],
                         text=True, check=True, capture_output=True).stdout
    return [l.split("\t") for l in out.splitlines()]


def final_columns(conninfo):
    rows = psql_rows(
        conninfo,
        "SELECT id, state_type, state_name, run_count, start_time IS NULL, end_time IS NULL, "
        "extract(epoch FROM total_run_time)::int, next_scheduled_start_time IS NULL, "
        "COALESCE(empirical_policy->>'resuming', 'false'), "
        "COALESCE(empirical_policy->>'retry_type', ''), "
        "COALESCE(jsonb_array_length(empirical_policy->'pause_keys'), 0) FROM flow_run "
        "WHERE name LIKE 'orch-%' ORDER BY id")
    return {r[0]: r[1:] for r in rows}


def task_columns(conninfo):
    rows = psql_rows(
        conninfo,
        "SELECT t.id, t.state_type, t.state_name, t.run_count, t.start_time IS NULL, "
        "t.end_time IS NULL, extract(epoch FROM t.total_run_time)::int, "
        "t.next_scheduled_start_time IS NULL, "
        "COALESCE(s.state_details->>'child_flow_run_id', ''), "
        "(SELECT count(*) FROM task_run_state x WHERE x.task_run_id = t.id) "
        "FROM task_run t LEFT JOIN task_run_state s ON s.id = t.state_id "
        "WHERE t.task_key = 'orch-subflow' ORDER BY t.id")
    return {r[0]: r[1:] for r in rows}


def limit_slots(conninfo):
    rows = psql_rows(
        conninfo,
        "SELECT d.name, l.active_slots FROM concurrency_limit_v2 l "
        "JOIN deployment d ON d.concurrency_limit_id = l.id "
        "UNION ALL SELECT name, active_slots FROM concurrency_limit_v2 WHERE name LIKE 'tag:%' "
        "ORDER BY 1")
    return dict(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--bulkstate", required=True)
    ap.add_argument("--conninfo-a", required=True, help="Prefect's database")
    ap.add_argument("--conninfo-b", required=True, help="the copy bulkstate works on")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--proposals", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    api = Api(args.api)
    ids, dep_of, limited, parent_of = build_population(api, rng, args.runs)
    # the copy: same runs, same ids, same states
    dump = subprocess.run(["pg_dump", "--no-owner", args.conninfo_a], check=True,
                          capture_output=True).stdout
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", args.conninfo_b], input=dump,
                   check=True, capture_output=True)
    subprocess.run([args.bulkstate, "migrate"], check=True, capture_output=True,
                   env=dict(os.environ, BULKSTATE_POSTGRES_CONNINFO=args.conninfo_b))
    print(f"population: {len(ids)} runs, copied to the second database", flush=True)

    # Prefect's server runs without its services, so its lease repossessor never runs: neither
    # does bulkstate's reaper here
    worker = subprocess.Popen([args.bulkstate, "worker"], stderr=open(os.environ.get("BS_WORKER_LOG", os.devnull), "w"),
                              env=dict(os.environ, BULKSTATE_POSTGRES_CONNINFO=args.conninfo_b,
                                       BULKSTATE_WORKER_LEASE_REAP_INTERVAL_MS="3600000"))
    sender = subprocess.Popen([args.bulkstate, "send", "--json", "-t", "60", "--batch", "-"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    compared = unexplained = expected = slot_denials = 0
    shown = 0
    reasons_expected = {}
    SHARED = "shared state_details (Prefect reuses one object for every run of a request)"
    FOLLOW = "run diverged earlier through the shared state_details (e.g. a leaked scheduled_time makes Prefect WAIT later)"
    LEAK = ("deployment slot count diverged: Prefect's shared state_details gave another run of "
            "an earlier request a lease id, and that run's release freed this deployment's slot")
    CLOCK = ("scheduled time due within a second of the proposal: WAIT on one side, ACCEPT on "
             "the other, the two calls being a few hundred ms apart")
    HELD = ("deliberate: bulkstate refuses a subflow transition that would release tag "
            "concurrency leases Prefect keeps in its server's memory (a tag limit of the parent "
            "task run has slots in use)")
    FOLLOW_HELD = "run diverged earlier through such a refusal"
    held_refusals = 0
    # A run whose result diverged for an expected reason is tainted: later differences on it
    # are expected only when they follow from that divergence: the two sides held different
    # states (type, name or scheduled time) when the proposal came, or the difference is in
    # the same fields as the recorded one. At most FOLLOW_CAP follow-ons per divergence.
    FOLLOW_CAP = 25
    taint = {}  # run id -> {"why": FOLLOW or FOLLOW_HELD, "fields": set, "n": follow-ons}
    views = {}  # run id -> (Prefect's, bulkstate's) state of the run after its last result
    leases = {}  # run id -> the deployment lease id of that state, each side

    def lease_of(r):
        return (r["state"].get("state_details") or {}).get("deployment_concurrency_lease_id")
    follow_by = {"states apart": 0, "same field": 0, "path": 0}
    capped = 0
    shared_fields = {}  # the fields the shared object leaked, counted by result
    leaked_deps = set()  # limited deployments whose lease id leaked into another run

    # a difference in the first field carries these with it
    IMPLIED = {"status": {"details.type", "reason", "delay"}, "state": {"scheduled_time"}}

    def kinds(diffs):
        """The fields that differ, less those another differing field implies."""
        k = {d.split(" ", 1)[0] for d in diffs}
        return k - set().union(*(IMPLIED.get(x, set()) for x in k))

    def view(r):
        """Where a result leaves its run: state type and name, whether it carries data (a
        persisted result decides what the terminal-state rule allows) and a lease id (the
        forced path carries it on), its task run id (leaked into Prefect's written state by
        the shared object), its scheduled time."""
        st = r.get("state")
        if st is None:
            return None
        det = st.get("state_details") or {}
        return (st["type"], st["name"], st.get("data") is not None,
                det.get("deployment_concurrency_lease_id") is not None, det.get("task_run_id"),
                det.get("scheduled_time"))

    def apart(rid):
        v = views.get(rid)
        if v is None or v[0] is None or v[1] is None:
            return v is not None and v[0] != v[1]
        return v[0][:5] != v[1][:5] or not close(v[0][5], v[1][5], 2)

    def taint_run(rid, why, diffs):
        t = taint.setdefault(rid, {"why": why, "fields": set(), "n": 0})
        t["fields"] |= kinds(diffs)

    # final columns that depend on the path a run took, not only on where it ended
    PATH = {"run_count", "start_null", "end_null", "run_time_s", "next_sched_null", "resuming",
            "retry_type", "pause_keys", "child_flow_run_id", "states"}

    def follows(rid, diffs, final=False):
        """Why diffs on rid follow from its recorded divergence, or None (counted, capped)."""
        nonlocal capped
        t = taint.get(rid)
        if t is None:
            return None
        if apart(rid):
            how = "states apart"
        elif not final and kinds(diffs) <= t["fields"]:
            how = "same field"
        elif final and kinds(diffs) <= PATH and t["fields"] & {"state", "status"}:
            how = "path"  # the run went another way through its states: counts and times
        else:
            return None
        if t["n"] >= FOLLOW_CAP:
            capped += 1
            return None
        t["n"] += 1
        t["fields"] |= kinds(diffs)  # the divergence now covers these too
        follow_by[how] += 1
        return t["why"]

    try:
        k = 0
        while compared < args.proposals:
            k += 1
            sel = rng.sample(ids, rng.randint(1, 8))
            body = {"flow_runs": {"id": {"any_": sel}}, "state": proposal(rng),
                    "force": rng.random() < 0.2, "limit": 50}
            theirs = api.ok("POST", "/flow_runs/bulk_set_state", body)["results"]
            body["command_id"] = f"orch-{args.seed}-{k}"
            sender.stdin.write(json.dumps(body) + "\n")
            sender.stdin.flush()
            mine = []
            while True:
                line = sender.stdout.readline()
                if not line:
                    raise SystemExit("bulkstate send stopped")
                obj = json.loads(line)
                if "matched" in obj:
                    if obj.get("error"):
                        raise SystemExit(f"command {k} failed: {obj['error']}")
                    break
                mine.append(obj)
            if [r["flow_run_id"] for r in theirs] != [r["flow_run_id"] for r in mine]:
                unexplained += 1
                print(f"DIFFERENCE command {k}: selected runs differ", flush=True)
                continue
            for p, b in zip(theirs, mine):
                compared += 1
                rid = p["flow_run_id"]
                try:
                    pl = ((p.get("state") or {}).get("state_details") or {}).get("deployment_concurrency_lease_id")
                    bl = ((b.get("state") or {}).get("state_details") or {}).get("deployment_concurrency_lease_id")
                    if len(sel) > 1 and pl and not bl:
                        leaked_deps.update(dep_of[x] for x in sel if dep_of.get(x) in limited)
                    breason = (b.get("details") or {}).get("reason") or ""
                    if "concurrency" in breason and not breason.startswith("bulkstate cannot"):
                        slot_denials += 1
                    un, ex = compare_result(p, b, sel, leases.get(rid, (None, None)))
                    if un and (b["details"].get("reason") or "").startswith(
                            "bulkstate cannot release tag concurrency leases"):
                        expected += 1
                        held_refusals += 1
                        reasons_expected[HELD] = reasons_expected.get(HELD, 0) + 1
                        taint_run(rid, FOLLOW_HELD, un)
                        continue
                    why = follows(rid, un) if un else None
                    if why is not None:
                        expected += 1
                        reasons_expected[why] = reasons_expected.get(why, 0) + 1
                        continue
                    # the shared object's leaks that reach the written state taint the run;
                    # its flow_run_id and task_run_id are only the response's (the last run's)
                    leaked = [d for d in ex if d.split(" ", 1)[0] not in RESPONSE_ONLY]
                    if leaked and not un:
                        taint_run(rid, FOLLOW, leaked)
                    reasons = f"{p['details'].get('reason')} {b['details'].get('reason')}"
                    if un and dep_of.get(rid) in leaked_deps and "concurrency limit reached" in reasons:
                        expected += 1
                        reasons_expected[LEAK] = reasons_expected.get(LEAK, 0) + 1
                        taint_run(rid, FOLLOW, un)
                        continue
                    # a scheduled time set from "now" (a retry delay) falls due within a second
                    # of the proposal: the two sides, a few hundred ms apart, land on either side
                    waits = [x for x in (p, b) if x["status"] == "WAIT"]
                    if (un and {p["status"], b["status"]} == {"ACCEPT", "WAIT"} and
                            (waits[0]["details"].get("delay_seconds") or 0) <= 1):
                        expected += 1
                        reasons_expected[CLOCK] = reasons_expected.get(CLOCK, 0) + 1
                        taint_run(rid, FOLLOW, un)
                        continue
                    if un:
                        unexplained += 1
                        if shown < 15:
                            shown += 1
                            print(f"DIFFERENCE command {k} run {p['flow_run_id']} proposal "
                                  f"{json.dumps(body['state'])} force={body['force']}: {'; '.join(un)}"
                                  f" (earlier divergence: {taint.get(rid)}; states before: "
                                  f"{views.get(rid)})", flush=True)
                    elif ex:
                        expected += 1
                        reasons_expected[SHARED] = reasons_expected.get(SHARED, 0) + 1
                        for f in kinds(ex):
                            shared_fields[f] = shared_fields.get(f, 0) + 1
                finally:
                    # a result without a state (an ABORT) says nothing of where the run is
                    old = views.get(rid, (None, None))
                    views[rid] = (view(p) or old[0], view(b) or old[1])
                    old = leases.get(rid, (None, None))
                    leases[rid] = tuple(lease_of(x) if x.get("state") else o
                                        for x, o in zip((p, b), old))
    finally:
        sender.stdin.close()
        sender.wait(timeout=60)
        worker.terminate()
        worker.wait(timeout=60)

    a, b = final_columns(args.conninfo_a), final_columns(args.conninfo_b)
    cols = ["state_type", "state_name", "run_count", "start_null", "end_null", "run_time_s",
            "next_sched_null", "resuming", "retry_type", "pause_keys"]
    final_diffs = 0
    for rid in a:
        ra, rb = a[rid], b.get(rid)
        diff = [f"{c} {x} vs {y}" for c, x, y in zip(cols, ra, rb or [None] * len(cols))
                if x != y and not (c == "run_time_s" and rb and abs(int(x) - int(y)) <= 5)]
        why = follows(rid, diff, final=True) if diff else None
        if why is not None:
            expected += 1
            reasons_expected[why] = reasons_expected.get(why, 0) + 1
        elif diff:
            final_diffs += 1
            if final_diffs <= 10:
                print(f"FINAL DIFFERENCE run {rid}: {'; '.join(diff)}", flush=True)
    unexplained += final_diffs + capped
    print(f"commands: {k}; runs whose final columns differ: {final_diffs}")
    # the parent task runs of the subflows: same columns, same copied states
    ta, tb = task_columns(args.conninfo_a), task_columns(args.conninfo_b)
    tcols = ["state_type", "state_name", "run_count", "start_null", "end_null", "run_time_s",
             "next_sched_null", "child_flow_run_id", "states"]
    child_of = {t: r for r, t in parent_of.items()}
    task_diffs = written = 0
    for tid in ta:
        ra, rb = ta[tid], tb.get(tid)
        written += int(ra[-1])
        diff = [f"{c} {x} vs {y}" for c, x, y in zip(tcols, ra, rb or [None] * len(tcols))
                if x != y and not (c == "run_time_s" and rb and abs(int(x) - int(y)) <= 5)]
        why = follows(child_of[tid], diff, final=True) if diff and tid in child_of else None
        if why is not None:
            expected += 1
            reasons_expected[why] = reasons_expected.get(why, 0) + 1
        elif diff:
            task_diffs += 1
            if task_diffs <= 10:
                print(f"FINAL DIFFERENCE parent task run {tid}: {'; '.join(diff)}", flush=True)
    unexplained += task_diffs
    print(f"subflows: {len(parent_of)}; parent task runs whose final columns differ: {task_diffs}; "
          f"task run states in Prefect's database: {written}; transitions refused for tag "
          f"leases in Prefect's memory: {held_refusals}")
    sa, sb = limit_slots(args.conninfo_a), limit_slots(args.conninfo_b)
    print(f"results refused for deployment concurrency (slot denied, limit reached): {slot_denials}")
    print(f"deployment concurrency slots held at the end: Prefect {sa}, bulkstate {sb}")
    differ = sorted(n for n in set(sa) | set(sb) if sa.get(n) != sb.get(n))
    if differ and all(n.startswith("tag:") for n in differ) and held_refusals:
        expected += 1
        reasons_expected[HELD] = reasons_expected.get(HELD, 0) + 1
    elif differ:
        unexplained += 1
        print(f"FINAL DIFFERENCE: concurrency slots differ: {differ}", flush=True)
    for r, n in reasons_expected.items():
        print(f"expected: {n} x {r}")
    print("expected shared state_details, by field: " +
          ", ".join(f"{k} {v}" for k, v in sorted(shared_fields.items())))
    print(f"expected follow-ons of an earlier divergence: {follow_by['states apart']} while the "
          f"two sides held different states, {follow_by['same field']} in the field that "
          f"diverged, {follow_by['path']} final counts or times of a run that went another way; "
          f"{capped} over the cap of {FOLLOW_CAP} per run (counted unexplained)")
    print(f"orchestration-conformance: compared={compared} unexplained={unexplained} expected={expected}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
