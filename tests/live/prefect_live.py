"""What a Prefect deployment sees of bulkstate's transitions, against a real Prefect server with
its services on, on the same database as the worker:
1. cancellation of a run whose process a flow.serve() runner holds: through Prefect's own
   endpoint and through bulkstate, side by side (process killed, run CANCELLED, both timed);
2. a reactive automation on prefect.flow-run.Cancelled fires once per run, for Prefect's
   transitions and bulkstate's alike, and not again when the command is redelivered;
3. the event history holds, for each state bulkstate wrote, the event Prefect's endpoint emits
   for the same transition, compared field by field (ids, names and times aside);
4. Prefect stopped for a while: commands keep completing, and when it returns their events are
   delivered, in order, none lost or doubled;
5. a deployment concurrency lease Prefect's server holds is released through its API;
6. so are the tag-limit leases of a subflow's parent task run, when bulkstate cancels the
   subflow.
Prints one line `prefect-live: ...` with the figures and exits 1 on any failed check."""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

FAILED = []


def check(name, ok, detail=""):
    print(f"{'ok' if ok else 'NOT OK'} - {name}{': ' + str(detail) if detail and not ok else ''}",
          flush=True)
    if not ok:
        FAILED.append(name)


class Api:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return json.loads(text) if text else None

    def run(self, rid):
        return self.call("GET", f"/flow_runs/{rid}")

    def events(self, flt):
        out, page = [], self.call("POST", "/events/filter", {"filter": flt, "limit": 50})
        while True:
            out += page["events"]
            if not page.get("next_page"):
                return out
            req = urllib.request.Request(page["next_page"], method="GET")
            with urllib.request.urlopen(req, timeout=30) as r:
                page = json.loads(r.read())


def wait(what, fn, seconds, step=0.1):
    """Polls fn until it returns a true value or `seconds` pass (then None). Bounded."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    print(f"# gave up waiting for {what} after {seconds} s", flush=True)
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (killed, not yet reaped) is gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def since_iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


class Bulkstate:
    def __init__(self, exe, env):
        self.exe, self.env = exe, env

    def send(self, body, timeout=60):
        p = subprocess.run([self.exe, "send", "--json", "-t", str(timeout), "-f", "-"],
                           input=json.dumps(body), text=True, capture_output=True, env=self.env)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        return p.returncode, [l for l in lines if "seq" in l], next(
            (l for l in lines if "matched" in l), None)


def cancel_timed(api, send_cancel, rid, pid):
    """Cancels rid (its process pid) with send_cancel(); seconds until the process is gone and
    until the run is CANCELLED."""
    t0 = time.monotonic()
    send_cancel()
    killed = wait(f"process {pid} of {rid} to end", lambda: not alive(pid), 120)
    t_kill = time.monotonic() - t0 if killed else None
    done = wait(f"{rid} CANCELLED", lambda: api.run(rid)["state_type"] == "CANCELLED", 120, 0.2)
    t_done = time.monotonic() - t0 if done else None
    return t_kill, t_done


def shape(ev):
    """An event as the same transition on another run would give it: ids, names, times and
    the run's own labels aside."""
    res = {k: ("<id>" if k == "prefect.resource.id" else "<label>")
           for k in ev["resource"]}
    related = sorted((r.get("prefect.resource.role"),
                      tuple(sorted(k for k in r if k != "prefect.resource.id")))
                     for r in ev.get("related", []))
    pl = ev.get("payload", {})
    payload = {
        "intended": pl.get("intended"),
        "initial_state": {k: v for k, v in (pl.get("initial_state") or {}).items()
                          if k in ("type", "name", "message")},
        "validated_state": {k: v for k, v in (pl.get("validated_state") or {}).items()
                            if k in ("type", "name", "message")},
        "keys": sorted(pl),
    }
    return {"event": ev["event"], "resource": res, "related": related, "payload": payload,
            "has_follows": ev.get("follows") is not None, "keys": sorted(k for k in ev if k != "received")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--bulkstate", required=True)
    ap.add_argument("--worker-log", required=True)
    ap.add_argument("--prefect-script", required=True, help="scripts/prefect.sh")
    ap.add_argument("--pid-dir", required=True)
    args = ap.parse_args()
    api = Api(args.api)
    bs = Bulkstate(args.bulkstate, dict(os.environ))
    t_start = time.time() - 5
    worker = subprocess.Popen([args.bulkstate, "worker"], stderr=open(args.worker_log, "w"))
    runner_env = dict(os.environ, PREFECT_API_URL=args.api, PREFECT_RUNNER_POLL_FREQUENCY="1",
                      BS_PID_DIR=args.pid_dir, PREFECT_LOGGING_LEVEL="WARNING")
    runner = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__),
                                                            "served_flow.py")],
                              env=runner_env, stdout=subprocess.DEVNULL,
                              stderr=open(args.worker_log + ".runner", "w"))
    try:
        dep = wait("the served deployment", lambda: _try(
            lambda: api.call("GET", "/deployments/name/bs-sleeper/bs-serve")), 120, 0.5)
        check("flow.serve() registered its deployment", dep is not None)
        if dep is None:
            return 1
        # an automation on every run's Cancelled event
        auto = api.call("POST", "/automations/", {
            "name": "bs-on-cancelled", "enabled": True,
            "trigger": {"type": "event", "posture": "Reactive",
                        "expect": ["prefect.flow-run.Cancelled"],
                        "match": {"prefect.resource.id": "prefect.flow-run.*"},
                        "for_each": ["prefect.resource.id"], "threshold": 1, "within": 0},
            "actions": [{"type": "do-nothing"}]})
        runs = [api.call("POST", f"/deployments/{dep['id']}/create_flow_run", {})["id"]
                for _ in range(2)]
        pids = {}
        for rid in runs:
            pf = os.path.join(args.pid_dir, rid)
            got = wait(f"run {rid} RUNNING with its process",
                       lambda: os.path.exists(pf) and api.run(rid)["state_type"] == "RUNNING",
                       180, 0.2)
            pids[rid] = int(open(pf).read()) if got else None
        check("both served runs are RUNNING", all(pids.values()), pids)
        if not all(pids.values()):
            return 1
        a, b = runs
        # 1. side by side
        pa = cancel_timed(api, lambda: api.call("POST", "/flow_runs/bulk_set_state", {
            "flow_runs": {"id": {"any_": [a]}}, "state": {"type": "CANCELLING"}}), a, pids[a])
        cmd_b = {"command_id": f"live-cancel-{uuid.uuid4()}", "flow_runs": {"id": {"any_": [b]}},
                 "state": {"type": "CANCELLING"}}
        pb = cancel_timed(api, lambda: bs.send(cmd_b), b, pids[b])
        print(f"# cancellation, Prefect's endpoint: process gone {fmt(pa[0])} s, CANCELLED "
              f"{fmt(pa[1])} s; bulkstate: {fmt(pb[0])} s, {fmt(pb[1])} s", flush=True)
        check("Prefect's endpoint: the process was stopped and the run CANCELLED", None not in pa)
        check("bulkstate: the process was stopped and the run CANCELLED", None not in pb)
        if None not in pa and None not in pb:
            bound = max(2 * pa[1], pa[1] + 5)
            check(f"bulkstate's cancellation within {bound:.1f} s (Prefect's {pa[1]:.1f} s)",
                  pb[1] <= bound, pb)
        # bulkstate's own CANCELLED write: a scheduled run with no process is cancelled at once
        c = api.call("POST", f"/deployments/{dep['id']}/create_flow_run", {
            "state": {"type": "SCHEDULED", "state_details": {
                "scheduled_time": since_iso(time.time() + 3600)}}})["id"]
        cmd_c = {"command_id": f"live-cancel-{uuid.uuid4()}", "flow_runs": {"id": {"any_": [c]}},
                 "state": {"type": "CANCELLING"}}
        rc, res_c, done_c = bs.send(cmd_c)
        check("bulkstate cancels a scheduled run (REJECT into Cancelled)",
              rc == 0 and res_c and res_c[0]["state"]["type"] == "CANCELLED", res_c)
        rc, _, again = bs.send(cmd_c)
        check("the same command again is replayed", rc == 0 and again and again["replayed"], again)

        def fired(rid):
            evs = api.events({"resource": {"id": [f"prefect.flow-run.{rid}"]},
                              "event": {"name": ["prefect.flow-run.Cancelled"]},
                              "occurred": {"since": since_iso(t_start)}})
            ids = {e["id"] for e in evs}
            acts = api.events({"event": {"name": ["prefect.automation.action.triggered"]},
                               "occurred": {"since": since_iso(t_start)}})
            return sum(1 for e in acts for r in e.get("related", [])
                       if r.get("prefect.resource.id") in {f"prefect.event.{i}" for i in ids})
        # 2. the automation: once per run, whoever wrote the transition
        wait("the automation on all three runs", lambda: all(fired(r) >= 1 for r in (a, b, c)),
             60, 0.5)
        counts = {r: fired(r) for r in (a, b, c)}
        print(f"# automation fired: Prefect's endpoint's run {counts[a]}, bulkstate's served run "
              f"{counts[b]}, bulkstate's own CANCELLED write {counts[c]}", flush=True)
        check("the automation fired once per run", list(counts.values()) == [1, 1, 1], counts)
        # 3. the event history: bulkstate's Cancelling of b against Prefect's of a
        def history(rid, name):
            return [e for e in api.events({"resource": {"id": [f"prefect.flow-run.{rid}"]},
                                           "occurred": {"since": since_iso(t_start)}})
                    if e["event"] == name]
        ea, eb = history(a, "prefect.flow-run.Cancelling"), history(b, "prefect.flow-run.Cancelling")
        check("one Cancelling event per run in the history", len(ea) == 1 and len(eb) == 1,
              (len(ea), len(eb)))
        if ea and eb:
            sa, sb = shape(ea[0]), shape(eb[0])
            diff = [k for k in sa if sa[k] != sb[k]]
            check("bulkstate's event is the one Prefect's endpoint emits, field by field", not diff,
                  {k: (sa[k], sb[k]) for k in diff})
            ids = psql(f"SELECT id FROM flow_run_state WHERE flow_run_id = '{b}' "
                       f"AND type = 'CANCELLING'")
            check("its id is the id of the state bulkstate wrote", ids == [eb[0]["id"]],
                  (ids, eb[0]["id"]))
        # 4. Prefect down: commands complete; the events arrive in order once it is back
        d = api.call("POST", f"/deployments/{dep['id']}/create_flow_run", {
            "state": {"type": "SCHEDULED", "state_details": {
                "scheduled_time": since_iso(time.time() + 3600)}}})["id"]
        subprocess.run([args.prefect_script, "down-live"], check=True, capture_output=True)
        walk = ["PENDING", "RUNNING", "COMPLETED", "SCHEDULED", "PENDING", "RUNNING", "FAILED"]
        ok_down = True
        for i, st in enumerate(walk):
            rc, res, done = bs.send({"command_id": f"live-down-{uuid.uuid4()}",
                                     "flow_runs": {"id": {"any_": [d]}},
                                     "state": {"type": st}, "force": True})
            ok_down &= rc == 0 and bool(res) and res[0]["status"] == "ACCEPT"
        check(f"{len(walk)} commands completed while Prefect was down", ok_down)
        want = psql(f"SELECT id FROM flow_run_state WHERE flow_run_id = '{d}' "
                    f"ORDER BY timestamp")[-len(walk):]
        waiting = psql("SELECT COALESCE(sum(COALESCE(events, 1)), 0) FROM bulkstate.prefect_outbox")
        check("their events wait in the outbox", int(waiting[0]) >= len(walk), waiting)
        # the worker is killed meanwhile: the outbox is in the database, a new worker delivers it
        worker.kill()
        worker.wait(timeout=30)
        worker = subprocess.Popen([args.bulkstate, "worker"],
                                  stderr=open(args.worker_log + ".2", "w"))
        subprocess.run([args.prefect_script, "up-live"], check=True, capture_output=True)
        t_up = time.monotonic()
        def got_d():
            evs = api.events({"resource": {"id": [f"prefect.flow-run.{d}"]},
                              "occurred": {"since": since_iso(t_start)}})
            return [e["id"] for e in sorted(evs, key=lambda e: (e["occurred"], e["id"]))
                    if e["event"] != "prefect.flow-run.Cancelling"]
        wait("the events written while Prefect was down", lambda: set(want) <= set(got_d()), 120, 0.5)
        got = got_d()
        print(f"# after Prefect came back: {len([g for g in got if g in want])} of {len(want)} "
              f"events delivered in {time.monotonic() - t_up:.1f} s", flush=True)
        check("none lost", set(want) <= set(got), (want, got))
        check("none doubled", len(got) == len(set(got)), got)
        check("in commit order", [g for g in got if g in want] == want, (want, got))
        # 5. a lease Prefect's server holds: bulkstate releases it through Prefect's API, so the
        # slot is freed once and the lease revoked (the engine's next renewal fails)
        api.call("PATCH", f"/deployments/{dep['id']}", {"concurrency_limit": 1})
        limit_id = psql(f"SELECT concurrency_limit_id FROM deployment WHERE id = '{dep['id']}'")[0]
        slots = lambda: int(psql(f"SELECT active_slots FROM concurrency_limit_v2 "
                                 f"WHERE id = '{limit_id}'")[0])
        e = api.call("POST", f"/deployments/{dep['id']}/create_flow_run", {})["id"]
        pe = os.path.join(args.pid_dir, e)
        wait(f"run {e} RUNNING", lambda: os.path.exists(pe) and
             api.run(e)["state_type"] == "RUNNING", 180, 0.2)
        lease = (api.run(e)["state"]["state_details"] or {}).get("deployment_concurrency_lease_id")
        check("the served run holds a slot under a lease of Prefect's", lease and slots() == 1,
              (lease, slots()))
        rc, res_e, _ = bs.send({"command_id": f"live-lease-{uuid.uuid4()}",
                                "flow_runs": {"id": {"any_": [e]}}, "state": {"type": "COMPLETED"},
                                "force": True})
        t0 = time.monotonic()  # from the command's completion (its commit)
        check("bulkstate completes the run", rc == 0 and res_e and res_e[0]["status"] == "ACCEPT",
              res_e)
        freed = wait("the slot freed", lambda: slots() == 0, 30, 0.1)
        t_free = time.monotonic() - t0
        renew = None
        try:
            api.call("POST", f"/v2/concurrency_limits/leases/{lease}/renew",
                     {"lease_duration": 60})
            renew = 204
        except urllib.error.HTTPError as ex:
            renew = ex.code
        check("the slot is freed", freed is not None, slots())
        check("Prefect's lease is revoked (its renewal answers 410)", renew == 410, renew)
        f = api.call("POST", f"/deployments/{dep['id']}/create_flow_run", {})["id"]
        pf = os.path.join(args.pid_dir, f)
        took = wait(f"run {f} RUNNING in the freed slot", lambda: os.path.exists(pf) and
                    api.run(f)["state_type"] == "RUNNING", 180, 0.2)
        check("the next run takes the slot, once", took is not None and slots() == 1, slots())
        print(f"# lease of Prefect's released {t_free:.1f} s after the command completed; renewal "
              f"after it: HTTP {renew}; "
              f"slots now {slots()}", flush=True)
        check("released within 5 s of the command's completion", t_free <= 5, t_free)
        api.call("POST", "/flow_runs/bulk_set_state", {"flow_runs": {"id": {"any_": [f]}},
                                                        "state": {"type": "CANCELLING"}})
        # 6. a subflow whose parent task run holds a slot of a tag limit (a lease in Prefect's
        # server memory): bulkstate cancels the subflow, the task run gets the copy of the
        # state, and Prefect is asked to release the task run's tag leases, as its own
        # ReleaseTaskConcurrencySlots does
        tag = f"live-tag-{uuid.uuid4().hex[:8]}"
        api.call("POST", "/concurrency_limits/", {"tag": tag, "concurrency_limit": 5})
        flow_id = api.run(e)["flow_id"]
        parent = api.call("POST", "/flow_runs/", {"flow_id": flow_id, "name": "live-parent"})["id"]
        api.call("POST", f"/flow_runs/{parent}/set_state", {"state": {"type": "RUNNING"},
                                                            "force": True})
        task = api.call("POST", "/task_runs/", {"flow_run_id": parent, "task_key": "live-sub",
                                                "dynamic_key": "0", "name": "live-task",
                                                "tags": [tag]})["id"]
        for t in ("PENDING", "RUNNING"):  # Prefect's task policy takes the tag slot
            api.call("POST", f"/task_runs/{task}/set_state", {"state": {"type": t}})
        holders = lambda: api.call("GET", f"/concurrency_limits/tag/{tag}")["active_slots"]
        tag_slots = lambda: int(psql(f"SELECT active_slots FROM concurrency_limit_v2 "
                                     f"WHERE name = 'tag:{tag}'")[0])
        check("the task run holds its tag's slot under Prefect's lease",
              holders() == [task] and tag_slots() == 1, (holders(), tag_slots()))
        sub = api.call("POST", "/flow_runs/", {"flow_id": flow_id, "name": "live-subflow",
                                               "parent_task_run_id": task})["id"]
        api.call("POST", f"/flow_runs/{sub}/set_state", {"state": {"type": "RUNNING"},
                                                         "force": True})
        rc, res_s, _ = bs.send({"command_id": f"live-subflow-{uuid.uuid4()}",
                                "flow_runs": {"id": {"any_": [sub]}},
                                "state": {"type": "CANCELLED"}, "force": True})
        t0 = time.monotonic()
        check("bulkstate cancels the subflow (no refusal)",
              rc == 0 and res_s and res_s[0]["status"] == "ACCEPT", res_s)
        check("its parent task run gets the state",
              api.call("GET", f"/task_runs/{task}")["state_type"] == "CANCELLED",
              api.call("GET", f"/task_runs/{task}")["state_type"])
        released = wait("the tag slot released", lambda: holders() == [] and tag_slots() == 0,
                        30, 0.1)
        t_tag = time.monotonic() - t0
        check("Prefect released the task run's tag lease and slot", released is not None,
              (holders(), tag_slots()))
        print(f"# tag lease of the parent task run released {t_tag:.1f} s after the command "
              f"completed", flush=True)
        print(f"prefect-live: kill_s prefect={fmt(pa[0])} bulkstate={fmt(pb[0])} "
              f"cancelled_s prefect={fmt(pa[1])} bulkstate={fmt(pb[1])} automation_fired "
              f"prefect={counts[a]} bulkstate={counts[b]} bulkstate_own={counts[c]} "
              f"down_events={len(want)} lost={len(set(want) - set(got))} "
              f"doubled={len(got) - len(set(got))} lease_released_s={t_free:.1f} "
              f"lease_renewal_after={renew} tag_lease_released_s={t_tag:.1f} "
              f"failed={len(FAILED)}", flush=True)
        return 1 if FAILED else 0
    finally:
        runner.terminate()
        worker.terminate()
        for p in (runner, worker):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def fmt(s):
    return "-" if s is None else f"{s:.1f}"


def psql(sql):
    """The first column of a query on the worker's database."""
    out = subprocess.run(["psql", "-X", "-A", "-t", os.environ["BULKSTATE_POSTGRES_CONNINFO"],
                          "-c", sql], capture_output=True, text=True, check=True).stdout
    return out.split()


def _try(fn):
    try:
        return fn()
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError:
        return None


if __name__ == "__main__":
    sys.exit(main())
