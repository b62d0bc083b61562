#!/usr/bin/env python3
"""Differential test of bulkstate's filter compiler against Prefect's own server.

1. Creates a varied population of flow runs through Prefect's REST API (states, tags,
   deployments, work queues, subflows, idempotency keys, null times) on Prefect's database.
2. Generates N seeded, reproducible FlowRunFilters that mix every field, operator and corner
   of filters-and-schema.md section 2 (plus a share of invalid ones).
3. Asks Prefect (POST /flow_runs/filter, sort ID_DESC, same limit) and bulkstate
   (`bulkstate select` on the same database) for the ids, and compares them. An invalid
   filter must be rejected by both.

Prints `filter-conformance: compared=<N> differences=<D>` on a line of its own; exits 1 when
D > 0. Only the standard library is used, so any Python 3 runs it.
"""
import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

STATE_TYPES = ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED",
               "CRASHED", "PAUSED", "CANCELLING"]
TAGS = ["a", "b", "c", "nightly", "db", "x-y", "with space", "ünï", "50%", "a_b", "back\\slash"]
NAMES = ["eager-otter", "brisk-heron", "quiet-lynx", "amber-finch", "rusty-marmot",
         "swift-ibis", "calm-badger", "Marvin-run", "100%-done", "under_score", "back\\slash",
         "o'brien", "MARVIN"]
VERSIONS = ["1.0", "1.1", "2.0", "2.0-rc1"]
QUEUES = ["default", "q1", "q2"]


class Api:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text.decode(errors="replace")

    def ok(self, method, path, body=None):
        status, out = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {out}")
        return out


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_population(api, rng, n_runs):
    """Returns the pools the filter generator draws from."""
    now = dt.datetime.now(dt.timezone.utc)
    flows = [api.ok("POST", "/flows/", {"name": f"conformance-flow-{i}"})["id"] for i in range(3)]
    api.call("POST", "/work_pools/", {"name": "conformance-pool", "type": "process"})
    for q in QUEUES[1:]:
        api.call("POST", "/work_pools/conformance-pool/queues/", {"name": q})
    deployments = []
    for i in range(4):
        d = api.ok("POST", "/deployments/", {"name": f"dep-{i}", "flow_id": flows[i % 3],
                                             "work_pool_name": "conformance-pool",
                                             "work_queue_name": QUEUES[i % 3]})
        deployments.append(d["id"])
    ids, keys, parents, task_runs = [], [], [], []
    for i in range(n_runs):
        body = {"flow_id": rng.choice(flows), "name": rng.choice(NAMES) + f"-{i}",
                "tags": rng.sample(TAGS, rng.randint(0, 3))}
        if rng.random() < 0.5:
            body["deployment_id"] = rng.choice(deployments)
        if rng.random() < 0.4:
            body["work_pool_name"] = "conformance-pool"
            body["work_queue_name"] = rng.choice(QUEUES)
        if rng.random() < 0.6:
            body["flow_version"] = rng.choice(VERSIONS)
        if rng.random() < 0.3:
            body["idempotency_key"] = f"key-{i}"
            keys.append(body["idempotency_key"])
        if task_runs and rng.random() < 0.15:
            body["parent_task_run_id"] = rng.choice(task_runs)
        final = rng.choice(STATE_TYPES + ["SCHEDULED", "COMPLETED", "NONE"])
        if final == "SCHEDULED":
            when = now + dt.timedelta(minutes=rng.randint(-3000, 3000))
            body["state"] = {"type": "SCHEDULED",
                             "name": rng.choice(["Scheduled", "Late", "AwaitingRetry"]),
                             "state_details": {"scheduled_time": iso(when)}}
        elif final != "NONE":
            body["state"] = {"type": "PENDING"}
        run = api.ok("POST", "/flow_runs/", body)
        ids.append(run["id"])
        if final not in ("SCHEDULED", "PENDING", "NONE"):
            if final != "CANCELLING" or rng.random() < 0.5:
                api.ok("POST", f"/flow_runs/{run['id']}/set_state",
                       {"state": {"type": "RUNNING"}, "force": True})
            api.ok("POST", f"/flow_runs/{run['id']}/set_state",
                   {"state": {"type": final}, "force": True})
        if rng.random() < 0.2:
            parents.append(run["id"])
            for k in range(2):
                tr = api.ok("POST", "/task_runs/", {"flow_run_id": run["id"], "task_key": f"t{k}",
                                                    "dynamic_key": str(k), "name": f"task-{k}"})
                task_runs.append(tr["id"])
    return {"ids": ids, "deployments": deployments, "keys": keys, "parents": parents,
            "task_runs": task_runs}


def set_created_by(conninfo, rng, pools):
    """created_by is set by Prefect's server from the caller (deployment, automation); the
    REST API takes no such field, so a share of runs gets it directly in the table."""
    creators = [(str(uuid.UUID(int=rng.getrandbits(128))), rng.choice(["DEPLOYMENT", "AUTOMATION"]))
                for _ in range(4)]
    stmts = []
    for rid in pools["ids"]:
        r = rng.random()
        if r < 0.3:
            cid, ctype = rng.choice(creators)
            stmts.append(f"UPDATE flow_run SET created_by = '{json.dumps({'id': cid, 'type': ctype, 'display_value': 'x'})}'::jsonb WHERE id = '{rid}';")
        elif r < 0.35:
            stmts.append(f"UPDATE flow_run SET created_by = '{json.dumps({'id': None, 'type': 'USER', 'display_value': 'y'})}'::jsonb WHERE id = '{rid}';")
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", conninfo], input="\n".join(stmts),
                   text=True, check=True)
    pools["creators"] = creators


def read_times(conninfo, pools):
    out = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\t", conninfo, "-c",
                          "SELECT to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                          "to_char(end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                          "to_char(expected_start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                          "to_char(next_scheduled_start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                          "name FROM flow_run"], text=True, check=True, capture_output=True).stdout
    times = {"start": [], "end": [], "expected": [], "next": []}
    names = []
    for line in out.splitlines():
        cols = line.split("\t")
        for key, v in zip(["start", "end", "expected", "next"], cols[:4]):
            if v:
                times[key].append(v)
        names.append(cols[4])
    pools["times"] = times
    pools["names"] = names


class Gen:
    def __init__(self, rng, pools):
        self.r = rng
        self.p = pools

    def maybe(self, p=0.5):
        return self.r.random() < p

    def subset(self, pool, kmax=3, miss=0.2):
        k = self.r.randint(0, min(kmax, len(pool))) if pool else 0
        out = self.r.sample(pool, k)
        if self.maybe(miss):
            out.append(str(uuid.UUID(int=self.r.getrandbits(128))))
        return out

    def strs(self, pool, kmax=3):
        k = self.r.randint(0, min(kmax, len(pool)))
        return self.r.sample(pool, k) + (["no-such-value"] if self.maybe(0.15) else [])

    def time(self, key):
        pool = self.p["times"][key] or self.p["times"]["expected"]
        t = self.r.choice(pool)
        if self.maybe(0.3):  # shift by a little, or give it another notation
            d = dt.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
            d += dt.timedelta(microseconds=self.r.choice([-1, 1, -1000000, 3600000000]))
            t = self.r.choice([iso(d), d.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()])
        return t

    def op(self):
        return self.r.choice(["and_", "or_"])

    def sub(self, keys):
        d = {}
        for k, fn in keys:
            if self.maybe(0.55):
                d[k] = None if self.maybe(0.05) else fn()
        return d

    def filter(self):
        g = self
        fields = {
            "id": lambda: g.sub([("any_", lambda: g.subset(g.p["ids"], 6)),
                                 ("not_any_", lambda: g.subset(g.p["ids"], 6))]),
            "name": lambda: g.sub([("any_", lambda: g.strs(g.p["names"])),
                                   ("like_", lambda: g.r.choice(["", "%", "_", "\\", "marvin", "-1", "o'b",
                                                                 "_sc", "100%", "ER", g.r.choice(g.p["names"])[:4]]))]),
            "tags": lambda: g.sub([("operator", g.op), ("all_", lambda: g.strs(TAGS, 2)),
                                   ("any_", lambda: g.strs(TAGS, 3)),
                                   ("is_null_", lambda: g.maybe())]),
            "deployment_id": lambda: g.sub([("operator", g.op),
                                            ("any_", lambda: g.subset(g.p["deployments"], 2)),
                                            ("is_null_", lambda: g.maybe())]),
            "work_queue_name": lambda: g.sub([("operator", g.op), ("any_", lambda: g.strs(QUEUES, 2)),
                                              ("is_null_", lambda: g.maybe())]),
            "state": lambda: g.state(),
            "flow_version": lambda: g.sub([("any_", lambda: g.strs(VERSIONS, 2))]),
            "start_time": lambda: g.sub([("before_", lambda: g.time("start")),
                                         ("after_", lambda: g.time("start")),
                                         ("is_null_", lambda: g.maybe())]),
            "end_time": lambda: g.sub([("before_", lambda: g.time("end")),
                                       ("after_", lambda: g.time("end")),
                                       ("is_null_", lambda: g.maybe())]),
            "expected_start_time": lambda: g.sub([("before_", lambda: g.time("expected")),
                                                  ("after_", lambda: g.time("expected"))]),
            "next_scheduled_start_time": lambda: g.sub([("before_", lambda: g.time("next")),
                                                        ("after_", lambda: g.time("next"))]),
            "parent_flow_run_id": lambda: g.sub([("operator", g.op),
                                                 ("any_", lambda: g.subset(g.p["parents"], 3))]),
            "parent_task_run_id": lambda: g.sub([("operator", g.op),
                                                 ("any_", lambda: g.subset(g.p["task_runs"], 3)),
                                                 ("is_null_", lambda: g.maybe())]),
            "idempotency_key": lambda: g.sub([("any_", lambda: g.strs(g.p["keys"], 4)),
                                              ("not_any_", lambda: g.strs(g.p["keys"], 4))]),
            "created_by": lambda: g.sub([("operator", g.op),
                                         ("id_", lambda: [c[0].upper() if g.maybe(0.3) else c[0]
                                                          for c in g.r.sample(g.p["creators"], g.r.randint(0, 2))]),
                                         ("type_", lambda: g.strs(["DEPLOYMENT", "AUTOMATION", "USER"], 2)),
                                         ("is_null_", lambda: g.maybe())]),
        }
        f = {}
        if self.maybe(0.3):
            f["operator"] = self.op()
        for name in self.r.sample(list(fields), self.r.randint(0, 4)):
            f[name] = None if self.maybe(0.05) else fields[name]()
        return f

    def state(self):
        g = self
        d = {}
        if g.maybe(0.3):
            d["operator"] = g.op()
        if g.maybe(0.7):
            d["type"] = g.sub([("any_", lambda: g.r.sample(STATE_TYPES, g.r.randint(0, 3))),
                               ("not_any_", lambda: g.r.sample(STATE_TYPES, g.r.randint(0, 2)))])
        if g.maybe(0.5):
            d["name"] = g.sub([("any_", lambda: g.strs(["Scheduled", "Late", "AwaitingRetry", "Running",
                                                        "Completed", "Failed", "Pending"], 2)),
                               ("not_any_", lambda: g.strs(["Late", "Completed", "Running"], 2))])
        return d

    def invalid(self):
        f = self.filter()
        kind = self.r.randrange(6)
        if kind == 0:
            f["id"] = {"any_": ["not-a-uuid"]}
        elif kind == 1:
            f["labels"] = {"any_": ["x"]}
        elif kind == 2:
            f["operator"] = "xor_"
        elif kind == 3:
            f["start_time"] = {"before_": "yesterday"}
        elif kind == 4:
            f["state"] = {"type": {"any_": ["running"]}}
        else:
            f["flow_version"] = {"not_any_": ["1.0"]}
        return f


def prefect_ids(api, f, limit):
    status, out = api.call("POST", "/flow_runs/filter",
                           {"flow_runs": f, "sort": "ID_DESC", "limit": limit, "offset": 0})
    if status == 422:
        return "invalid"
    if status != 200:
        raise RuntimeError(f"Prefect answered {status}: {out}")
    return [r["id"] for r in out]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--bulkstate", required=True)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--filters", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--conninfo", required=True, help="libpq conninfo of Prefect's database")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    api = Api(args.api)
    pools = build_population(api, rng, args.runs)
    set_created_by(args.conninfo, rng, pools)
    read_times(args.conninfo, pools)
    print(f"population: {len(pools['ids'])} runs, {len(pools['task_runs'])} task runs, "
          f"{len(pools['deployments'])} deployments", flush=True)

    gen = Gen(rng, pools)
    cases = []
    for i in range(args.filters):
        f = gen.invalid() if rng.random() < 0.04 else gen.filter()
        if rng.random() < 0.03:
            f = None if rng.random() < 0.5 else {}
        limit = rng.choice([1, 2, 5, 50, 200, 200, 200])
        cases.append((f, limit))

    lines = "".join(json.dumps({"flow_runs": f, "limit": l}) + "\n" for f, l in cases)
    env_conn = {"BULKSTATE_POSTGRES_CONNINFO": args.conninfo}
    import os
    env = dict(os.environ, **env_conn)
    res = subprocess.run([args.bulkstate, "select"], input=lines, text=True, capture_output=True,
                         env=env)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        raise SystemExit("bulkstate select failed")
    ours = [json.loads(l) for l in res.stdout.splitlines()]
    assert len(ours) == len(cases), (len(ours), len(cases))

    differences = 0
    invalid = empty = 0
    for (f, limit), o in zip(cases, ours):
        theirs = prefect_ids(api, f, limit)
        mine = "invalid" if "error" in o else o["ids"]
        if theirs == "invalid":
            invalid += 1
        elif not theirs:
            empty += 1
        if theirs != mine:
            differences += 1
            if differences <= 10:
                if isinstance(theirs, list) and isinstance(mine, list):
                    detail = (f"only Prefect: {sorted(set(theirs) - set(mine))[:5]} "
                              f"only bulkstate: {sorted(set(mine) - set(theirs))[:5]} "
                              f"(counts {len(theirs)} / {len(mine)})")
                else:
                    detail = f"prefect: {str(theirs)[:200]} bulkstate: {str(mine)[:200]} {o.get('error', '')}"
                print(f"DIFFERENCE limit={limit} filter={json.dumps(f)}\n  {detail}", flush=True)
    print(f"cases: {len(cases)} ({invalid} rejected by Prefect, {empty} matching nothing, "
          f"{len(cases) - invalid - empty} matching some runs)")
    print(f"filter-conformance: compared={len(cases)} differences={differences}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
