#!/usr/bin/env python3
"""Fault tests against the real services: a stream of bulk commands while the worker is killed
(SIGKILL) at chosen points and at random moments, or while the broker and PostgreSQL restart and
the worker's database session is terminated. Afterwards every command must have exactly one
applied effect and a complete set of replies.

The model: N runs, M commands each forcing one state (PENDING, RUNNING, SCHEDULED, COMPLETED or
FAILED) on 1..5 runs picked by a seeded generator. Forced transitions are always accepted, so
each command including a run adds exactly one state row to it, and each RUNNING one adds one to
its run_count. Lost effects are missing rows or counts, doubled effects are extra ones.

Prints `fault-test <name>: commands=<N> faults=<K> lost=<L> doubled=<D>` and exits 1 when
anything was lost or doubled, a reply is missing, or fewer faults than asked were injected.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

BIN = os.path.join(os.environ["BS_BUILD_DIR"], "bulkstate")
SRC = os.environ["BS_SOURCE_DIR"]
TYPES = ["PENDING", "RUNNING", "SCHEDULED", "COMPLETED", "FAILED"]
POINTS = ["before_commit", "after_commit", "between_replies", "before_offset"]


def sql(q):
    return subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", q],
                          check=True, capture_output=True, text=True).stdout.strip()


class Scenario:
    def __init__(self, name, n_runs, n_cmds, seed):
        self.name = name
        self.prefix = f"ft-{name}"
        self.topics = {"command": f"{self.prefix}.commands", "reply": f"{self.prefix}.replies",
                       "dlq": f"{self.prefix}.dlq"}
        self.env = dict(os.environ,
                        BULKSTATE_WORKER_COMMAND_TOPIC=self.topics["command"],
                        BULKSTATE_WORKER_REPLY_TOPIC=self.topics["reply"],
                        BULKSTATE_WORKER_DLQ_TOPIC=self.topics["dlq"],
                        BULKSTATE_WORKER_OUTPUT_FRAMING="json",
                        BULKSTATE_WORKER_MAX_ATTEMPTS="1000",  # poison handling is poison.sh's
                        BULKSTATE_WORKER_RETRY_BACKOFF_MAX_MS="1000",
                        BULKSTATE_KAFKA_GROUP_ID=f"{self.prefix}-group",
                        BULKSTATE_KAFKA_SESSION_TIMEOUT_MS="6000",
                        BULKSTATE_KAFKA_HEARTBEAT_INTERVAL_MS="1000",
                        BULKSTATE_KAFKA_AUTO_COMMIT_INTERVAL_MS="500")
        rng = random.Random(seed)
        # run ids: UUIDv7-shaped, one prefix per scenario
        tag = sum(map(ord, name)) % 4096
        self.runs = [f"0194{tag:04x}-0000-7000-8000-{i:012x}" for i in range(n_runs)]
        self.cmds = []
        self.want_states = {r: 1 for r in self.runs}
        self.want_count = {r: 0 for r in self.runs}
        for k in range(n_cmds):
            sel = rng.sample(self.runs, rng.randint(1, 5))
            t = rng.choice(TYPES)
            self.cmds.append({"command_id": f"{self.prefix}-{k}",
                              "flow_runs": {"id": {"any_": sel}},
                              "state": {"type": t}, "force": True, "limit": 50})
            for r in sel:
                self.want_states[r] += 1
                self.want_count[r] += t == "RUNNING"

    def setup(self):
        subprocess.run([BIN, "topics", "3"], env=self.env, check=True, capture_output=True)
        values = ",".join(f"('{r}')" for r in self.runs)
        sql(f"SELECT bulkstate_dev.new_run(id::uuid, 'ft', 'SCHEDULED', '{{ft}}') "
            f"FROM (VALUES {values}) AS v(id)")
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{self.prefix}.cmds")
        with open(path, "w") as f:
            for c in self.cmds:
                f.write(c["command_id"] + "\t" + json.dumps(c) + "\n")
        subprocess.run(["kcat", "-P", "-b", os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"],
                        "-t", self.topics["command"], "-K", "\t", "-H",
                        "content-type=application/json", "-l", path], check=True)
        os.unlink(path)

    def done(self):
        return int(sql(f"SELECT count(*) FROM bulkstate.command WHERE command_id LIKE "
                       f"'{self.prefix}-%' AND status = 'done'"))

    def start_worker(self, extra=None, log=None):
        env = dict(self.env, BULKSTATE_KAFKA_GROUP_INSTANCE_ID=f"{self.prefix}-worker")
        env.update(extra or {})
        return subprocess.Popen([BIN, "worker"], env=env, stdout=log, stderr=log)

    def finish(self, log):
        """Runs a worker without faults until every command is done, then stops it cleanly
        (offsets committed). Returns False on a timeout."""
        w = self.start_worker(log=log)
        deadline = time.time() + 300
        while self.done() < len(self.cmds) and time.time() < deadline:
            time.sleep(0.2)
        ok = self.done() == len(self.cmds)
        w.send_signal(signal.SIGTERM)
        w.wait(timeout=60)
        return ok

    def verify(self, faults, min_faults):
        rows = sql("SELECT fr.id, (SELECT count(*) FROM flow_run_state s WHERE s.flow_run_id = fr.id), "
                   "fr.run_count FROM flow_run fr WHERE fr.id = ANY(ARRAY[" +
                   ",".join(f"'{r}'" for r in self.runs) + "]::uuid[])")
        lost = doubled = 0
        for line in rows.splitlines():
            rid, states, count = line.split("|")
            ds = int(states) - self.want_states[rid]
            dc = int(count) - self.want_count[rid]
            lost += max(0, -ds) + max(0, -dc)
            doubled += max(0, ds) + max(0, dc)
        # replies: every command's results 0..matched-1 and its completion
        out = subprocess.run(["kcat", "-C", "-b", os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"],
                              "-t", self.topics["reply"], "-o", "beginning", "-e", "-q"],
                             capture_output=True, text=True, timeout=120).stdout
        seqs, completions = {}, {}
        for line in out.splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if "seq" in j:
                seqs.setdefault(j["command_id"], set()).add(j["seq"])
            else:
                completions[j["command_id"]] = j
        missing = 0
        for c in self.cmds:
            comp = completions.get(c["command_id"])
            n = len(c["flow_runs"]["id"]["any_"])
            if comp is None or comp.get("error") or comp["matched"] != n or \
                    seqs.get(c["command_id"], set()) != set(range(n)):
                missing += 1
        dead = subprocess.run(["kcat", "-C", "-b", os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"],
                               "-t", self.topics["dlq"], "-o", "beginning", "-e", "-q", "-f", "%o\n"],
                              capture_output=True, text=True, timeout=60).stdout.split()
        print(f"replies: {len(self.cmds) - missing} of {len(self.cmds)} commands complete; "
              f"dead letters: {len(dead)}")
        print(f"fault-test {self.name}: commands={len(self.cmds)} faults={faults} "
              f"lost={lost} doubled={doubled}", flush=True)
        return lost == 0 and doubled == 0 and missing == 0 and not dead and faults >= min_faults


def kill_scenario(args, log):
    """SIGKILL at the four points of a command's life (failpoints, seeded) and at random
    moments, until at least --faults kills happened."""
    sc = Scenario("kill", args.runs, args.commands, args.seed)
    sc.setup()
    rng = random.Random(args.seed + 1)
    faults = 0
    per_point = {p: 0 for p in POINTS + ["random"]}
    while faults < args.faults and sc.done() < len(sc.cmds):
        if rng.random() < 0.75:
            point = rng.choice(POINTS)
            w = sc.start_worker({"BULKSTATE_FAILPOINT": f"{point}:{rng.randint(1, 12)}"}, log)
            try:
                rc = w.wait(timeout=120)
            except subprocess.TimeoutExpired:
                w.kill()
                rc = w.wait()
        else:
            point = "random"
            w = sc.start_worker(log=log)
            time.sleep(rng.uniform(0.5, 4.0))  # a kill at an arbitrary moment, not a sync
            w.kill()
            rc = w.wait()
        if rc == -signal.SIGKILL:
            faults += 1
            per_point[point] += 1
    print("kills by point: " + " ".join(f"{p}={n}" for p, n in per_point.items()), flush=True)
    if not sc.finish(log):
        print("the commands did not all complete", flush=True)
        return 1
    return 0 if sc.verify(faults, args.faults) else 1


def services_scenario(args, log):
    """The broker restarts, PostgreSQL restarts, and the worker's session is terminated
    (pg_terminate_backend), each while commands are flowing."""
    sc = Scenario("services", args.runs, args.commands, args.seed + 7)
    sc.setup()
    rng = random.Random(args.seed + 2)
    w = sc.start_worker(log=log)
    faults = 0
    actions = ["kafka", "terminate", "postgres", "terminate", "kafka", "terminate", "postgres"]
    for a in actions:
        # let some commands through first: wait for progress, bounded
        target = min(len(sc.cmds), sc.done() + rng.randint(20, 60))
        deadline = time.time() + 120
        while sc.done() < target and time.time() < deadline:
            time.sleep(0.1)
        if a == "kafka":
            subprocess.run([os.path.join(SRC, "scripts/kafka.sh"), "bounce"], check=True,
                           capture_output=True)
        elif a == "postgres":
            subprocess.run([os.path.join(SRC, "scripts/pg.sh"), "down"], check=True,
                           capture_output=True)
            time.sleep(rng.uniform(0.5, 2.0))  # the outage lasts a while
            subprocess.run([os.path.join(SRC, "scripts/pg.sh"), "up"], check=True,
                           capture_output=True)
        else:
            n = sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'bulkstate'")
            if n == "0":
                continue
        faults += 1
        if w.poll() is not None:
            print(f"the worker exited ({w.returncode}) after {a}", flush=True)
            return 1
    deadline = time.time() + 300
    while sc.done() < len(sc.cmds) and time.time() < deadline:
        time.sleep(0.2)
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=60)
    print(f"faults injected: {faults} ({', '.join(actions)})", flush=True)
    if args.log != os.devnull:
        log.flush()
        with open(args.log) as f:
            text = f.read()
        print(f"worker: transient failures retried={text.count('transient failure')} "
              f"broker errors logged={text.count('module=rdkafka')}", flush=True)
    return 0 if sc.verify(faults, 5) else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["kill", "services"])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--commands", type=int, default=1000)
    ap.add_argument("--faults", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--log", default=os.devnull)
    args = ap.parse_args()
    with open(args.log, "a") as log:
        if args.scenario == "kill":
            return kill_scenario(args, log)
        return services_scenario(args, log)


if __name__ == "__main__":
    sys.exit(main())
