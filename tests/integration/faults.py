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


THREADS = 1  # worker.threads of every worker started (--threads)


class Scenario:
    def __init__(self, name, n_runs, n_cmds, seed, sel_min=1, sel_max=5, partitions=3):
        if THREADS > 1:  # records, topics and run ids of their own
            name = f"{name}-t{THREADS}"
        self.name = name
        self.prefix = f"ft-{name}"
        self.partitions = partitions
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
                        BULKSTATE_KAFKA_AUTO_COMMIT_INTERVAL_MS="500",
                        BULKSTATE_WORKER_THREADS=str(THREADS))
        rng = random.Random(seed)
        # run ids: UUIDv7-shaped, one prefix per scenario
        tag = sum(map(ord, name)) % 4096
        self.runs = [f"0194{tag:04x}-0000-7000-8000-{i:012x}" for i in range(n_runs)]
        self.cmds = []
        self.want_states = {r: 1 for r in self.runs}
        self.want_count = {r: 0 for r in self.runs}
        for k in range(n_cmds):
            sel = rng.sample(self.runs, rng.randint(sel_min, sel_max))
            t = rng.choice(TYPES)
            self.cmds.append({"command_id": f"{self.prefix}-{k}",
                              "flow_runs": {"id": {"any_": sel}},
                              "state": {"type": t}, "force": True, "limit": 50})
            for r in sel:
                self.want_states[r] += 1
                self.want_count[r] += t == "RUNNING"

    def setup(self):
        subprocess.run([BIN, "topics", str(self.partitions)], env=self.env, check=True,
                       capture_output=True)
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

    def start_worker(self, extra=None, log=None, instance=0, static=True):
        # static membership (group.instance.id) lets a killed worker's successor take its
        # partitions back at once; a worker that lives through a broker restart goes without it
        # (the restarted coordinator may fence the old member id, which librdkafka treats as
        # fatal)
        env = dict(self.env)
        if static:
            env["BULKSTATE_KAFKA_GROUP_INSTANCE_ID"] = f"{self.prefix}-worker-{instance}"
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

    def verify(self, faults, min_faults, dead_expected=0):
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
        return (lost == 0 and doubled == 0 and missing == 0 and len(dead) == dead_expected and
                faults >= min_faults)


def kill_when(w, reached, rng):
    """SIGKILLs worker w once reached() is true (a bounded wait, 60 s, on what the database
    shows), then up to 20 ms later, so the kill lands anywhere in the next step's life. Returns
    its exit status."""
    until = time.time() + 60
    while time.time() < until and w.poll() is None and not reached():
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.02))
    w.kill()
    return w.wait()


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
            # a kill at an arbitrary moment of the work: after a seeded number of further
            # commands (observed in the database, bounded wait), plus up to 20 ms, so it lands
            # anywhere in the next command's life. Counted in commands, not seconds: a faster
            # worker would otherwise finish the backlog before enough kills
            target = min(len(sc.cmds), sc.done() + rng.randint(1, 40))
            w = sc.start_worker(log=log)
            rc = kill_when(w, lambda: sc.done() >= target, rng)
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
    w = sc.start_worker(log=log, static=False)
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


def overlap_scenario(args, log):
    """4 consumers in one group (4 partitions: 4 workers, or 4 / --threads workers of that many
    threads each), 10,000 commands of 5..20 runs out of 50: heavily overlapping lock sets. No
    deadlock may reach a user (every completion without error), and every effect applies
    once."""
    sc = Scenario("overlap", 50, args.commands, args.seed + 11, sel_min=5, sel_max=20,
                  partitions=4)
    sc.setup()
    t0 = time.time()
    nworkers = max(1, 4 // THREADS)
    workers = [sc.start_worker(log=log, instance=i, static=False) for i in range(nworkers)]
    deadline = time.time() + 900
    while sc.done() < len(sc.cmds) and time.time() < deadline:
        time.sleep(0.5)
    elapsed = time.time() - t0
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        w.wait(timeout=60)
    log.flush()
    with open(args.log) as f:
        text = f.read()
    print(f"{nworkers} workers of {THREADS} threads: {sc.done()} commands in {elapsed:.0f} s; "
          f"deadlocks retried="
          f"{text.count('deadlock')}, transient failures retried={text.count('transient failure')}",
          flush=True)
    # a deadlock surfacing to a user would be an error completion: verify() counts those
    return 0 if sc.verify(0, 0) else 1


def poison_scenario(args, log):
    """Bad messages of every kind interleaved with good commands on one partition: garbage bytes,
    truncated Avro, a wrong fingerprint, an oversize message, valid JSON with invalid values.
    Every good command applies once; every bad one is dead-lettered with its reason."""
    sc = Scenario("poison", 50, args.commands, args.seed + 13, partitions=1)
    sc.env["BULKSTATE_WORKER_MAX_MESSAGE_BYTES"] = "4096"
    sc.setup_topics_only = True
    subprocess.run([BIN, "topics", "1"], env=sc.env, check=True, capture_output=True)
    values = ",".join(f"('{r}')" for r in sc.runs)
    sql(f"SELECT bulkstate_dev.new_run(id::uuid, 'ft', 'SCHEDULED', '{{ft}}') "
        f"FROM (VALUES {values}) AS v(id)")
    tmp = os.environ.get("TMPDIR", "/tmp")
    # a valid Avro command as `bulkstate send` encodes it, read back raw from a scratch topic
    scratch = dict(sc.env, BULKSTATE_WORKER_COMMAND_TOPIC=sc.prefix + ".scratch")
    subprocess.run([BIN, "topics", "1"], env=scratch, check=True, capture_output=True)
    body = os.path.join(tmp, "scratch.json")
    with open(body, "w") as f:
        json.dump({"command_id": "scratch", "state": {"type": "CANCELLED"},
                   "flow_runs": {"id": {"any_": [sc.runs[0]]}}}, f)
    subprocess.run([BIN, "send", "-n", "-f", body], env=scratch, check=True, capture_output=True)
    seed_avro = subprocess.run(["kcat", "-C", "-b", os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"],
                                "-t", sc.prefix + ".scratch", "-o", "beginning", "-c", "1", "-e",
                                "-q", "-f", "%s"], capture_output=True, check=True,
                               timeout=60).stdout
    assert seed_avro[:2] == b"\xc3\x01", "send did not produce single-object Avro"
    rng = random.Random(args.seed + 17)
    bad = [("garbage", b"\x17\x99garbage bytes \x00\xff", "bad_framing", False),
           ("truncated", seed_avro[: len(seed_avro) // 2], "avro_decode", False),
           ("fingerprint", b"\xc3\x01" + bytes(8) + seed_avro[10:], "unknown_schema", False),
           ("oversize", json.dumps({"state": {"type": "CANCELLED", "message": "x" * 5000}}).encode(),
            "message_too_large", True),
           ("invalid", json.dumps({"command_id": "ft-poison-bad", "state": {"type": "CANCELLED"},
                                   "flow_runs": {"id": {"any_": ["not-a-uuid"]}}}).encode(),
            "uuid_parsing", True),
           ("limit", json.dumps({"state": {"type": "CANCELLED"}, "limit": 0}).encode(),
            "greater_than_equal", True)]
    broker = os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"]
    chunk = max(1, len(sc.cmds) // 10)
    expected_types = []
    for start in range(0, len(sc.cmds), chunk):
        lines = os.path.join(tmp, "good.jsonl")
        with open(lines, "w") as f:
            for c in sc.cmds[start:start + chunk]:
                f.write(c["command_id"] + "\t" + json.dumps(c) + "\n")
        subprocess.run(["kcat", "-P", "-b", broker, "-t", sc.topics["command"], "-K", "\t", "-H",
                        "content-type=application/json", "-l", lines], check=True)
        name, payload, etype, as_json = bad[rng.randrange(len(bad))]
        path = os.path.join(tmp, f"bad-{name}")
        with open(path, "wb") as f:
            f.write(payload)
        cmd = ["kcat", "-P", "-b", broker, "-t", sc.topics["command"], "-k", f"bad-{name}"]
        if as_json:
            cmd += ["-H", "content-type=application/json"]
        subprocess.run(cmd + [path], check=True)
        expected_types.append(etype)
    w = sc.start_worker(log=log)
    deadline = time.time() + 300
    while sc.done() < len(sc.cmds) and time.time() < deadline:
        time.sleep(0.2)
    # the last bad message follows the last good command: wait for its dead letter
    def dead_types():
        out = subprocess.run(["kcat", "-C", "-b", broker, "-t", sc.topics["dlq"], "-o", "beginning",
                              "-e", "-q", "-f", "%h\n"], capture_output=True, text=True,
                             timeout=60).stdout
        return [h.split("bulkstate.error.type=")[1].split(",")[0]
                for h in out.splitlines() if "bulkstate.error.type=" in h]
    while len(dead_types()) < len(expected_types) and time.time() < deadline:
        time.sleep(0.2)
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=60)
    got = dead_types()
    print(f"bad messages: {len(expected_types)} sent, {len(got)} dead-lettered; types "
          f"{'match' if got == expected_types else 'differ: ' + str(got) + ' vs ' + str(expected_types)}",
          flush=True)
    return 0 if sc.verify(len(expected_types), 0, dead_expected=len(expected_types)) and \
        got == expected_types else 1


def large_scenario(args, log):
    """One command over 10,000 runs (max_runs, batches of 50) while the worker is killed at
    batch boundaries and mid-batch >= 20 times; runs created meanwhile must be left alone; then a
    second large command is cancelled and must stop within one batch."""
    sc = Scenario("large", 0, 0, args.seed + 19)
    subprocess.run([BIN, "topics", "3"], env=sc.env, check=True, capture_output=True)
    sql("SELECT bulkstate_dev.new_run(gen_random_uuid(), 'lc', 'SCHEDULED', '{lc}') "
        "FROM generate_series(1, 10000)")
    sql("SELECT bulkstate_dev.new_run(gen_random_uuid(), 'lc2', 'SCHEDULED', '{lc2}') "
        "FROM generate_series(1, 3000)")
    broker = os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"]

    def produce(cid, body, partition=None):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "large.cmd")
        with open(path, "w") as f:
            f.write(cid + "\t" + json.dumps(body) + "\n")
        cmd = ["kcat", "-P", "-b", broker, "-t", sc.topics["command"], "-K", "\t", "-H",
               "content-type=application/json", "-l", path]
        if partition is not None:
            cmd += ["-p", str(partition)]
        subprocess.run(cmd, check=True)

    def progress(cid):
        row = sql(f"SELECT status, batches, matched, cancelled FROM bulkstate.command "
                  f"WHERE command_id = '{cid}'")
        return row.split("|") if row else None

    produce("lc-all", {"command_id": "lc-all", "flow_runs": {"tags": {"all_": ["lc"]}},
                       "state": {"type": "CANCELLED"}, "force": True, "max_runs": 1000000})
    rng = random.Random(args.seed + 23)
    faults, inserted = 0, False
    deadline = time.time() + 900
    while faults < args.faults and time.time() < deadline:
        p = progress("lc-all")
        if p and p[0] == "done":
            break
        if p and not inserted and int(p[1]) >= 20:
            # created while the command runs: outside its snapshot
            sql("SELECT bulkstate_dev.new_run(gen_random_uuid(), 'lc-late', 'SCHEDULED', '{lc}') "
                "FROM generate_series(1, 50)")
            inserted = True
        if rng.random() < 0.8:
            point = rng.choice(["batch_before_commit", "batch_after_commit"])
            w = sc.start_worker({"BULKSTATE_FAILPOINT": f"{point}:{rng.randint(1, 4)}"}, log)
            try:
                rc = w.wait(timeout=120)
            except subprocess.TimeoutExpired:
                w.kill()
                rc = w.wait()
        else:
            # a kill at an arbitrary moment: after a seeded number of further batches, as in
            # the kill scenario
            target = int((progress("lc-all") or ["", "0"])[1]) + rng.randint(1, 8)
            w = sc.start_worker(log=log)

            def reached():
                p = progress("lc-all")
                return p is not None and (p[0] == "done" or int(p[1]) >= target)

            rc = kill_when(w, reached, rng)
        faults += rc == -signal.SIGKILL
    print(f"kills: {faults}, after batch {(progress('lc-all') or ['', '?'])[1]} of 200", flush=True)
    w = sc.start_worker(log=log)
    while (progress("lc-all") or ["running"])[0] != "done" and time.time() < deadline:
        time.sleep(0.5)
    if not inserted:
        print("the command finished before runs could be inserted during it", flush=True)
    p = progress("lc-all")
    counts = sql("SELECT count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n = 0), "
                 "count(*) FILTER (WHERE n > 1) FROM (SELECT fr.id, (SELECT count(*) FROM "
                 "flow_run_state s WHERE s.flow_run_id = fr.id) - 1 AS n FROM flow_run fr "
                 "WHERE fr.name = 'lc') x").split("|")
    late = sql("SELECT count(*) FROM flow_run WHERE name = 'lc-late' AND state_type <> 'SCHEDULED'")
    once, lost, doubled = int(counts[0]), int(counts[1]), int(counts[2])
    out = subprocess.run(["kcat", "-C", "-b", broker, "-t", sc.topics["reply"], "-o", "beginning",
                          "-e", "-q"], capture_output=True, text=True, timeout=300).stdout
    seqs, completion = set(), None
    for line in out.splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("command_id") != "lc-all":
            continue
        if "seq" in j:
            seqs.add(j["seq"])
        elif not j.get("replayed"):
            completion = j
    print(f"lc-all: status={p[0]} batches={p[1]} matched={p[2]}; runs transitioned once={once} "
          f"results={len(seqs)} completion={completion and (completion['matched'], completion['batches'])}; "
          f"runs created during it and transitioned: {late}", flush=True)
    ok = (p[0] == "done" and p[1] == "200" and p[2] == "10000" and once == 10000 and
          len(seqs) == 10000 and completion is not None and completion["matched"] == 10000 and
          completion["batches"] == 200 and late == "0" and inserted and faults >= args.faults)
    print(f"fault-test large-command: commands=1 faults={faults} lost={lost} doubled={doubled}",
          flush=True)

    # cancellation: slowed down by a pause between batches, cancelled from another partition
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=60)
    w = sc.start_worker({"BULKSTATE_WORKER_BATCH_PAUSE_MS": "300"}, log)
    produce("lc2-all", {"command_id": "lc2-all", "flow_runs": {"tags": {"all_": ["lc2"]}},
                        "state": {"type": "CANCELLED"}, "force": True, "max_runs": 1000000})
    while int((progress("lc2-all") or ["", "0"])[1]) < 3 and time.time() < deadline:
        time.sleep(0.1)
    # on another partition than the command's: its partition is held while it runs
    busy = int(sql("SELECT source_partition FROM bulkstate.command WHERE command_id = 'lc2-all'"))
    produce("lc2-stop", {"command_id": "lc2-stop", "cancel_command_id": "lc2-all"},
            partition=(busy + 1) % 3)
    at_cancel = None
    while time.time() < deadline:
        if sql("SELECT cancel_requested FROM bulkstate.command WHERE command_id = 'lc2-all'") == "t":
            at_cancel = int(progress("lc2-all")[1])
            break
        time.sleep(0.05)
    while (progress("lc2-all") or ["running"])[0] != "done" and time.time() < deadline:
        time.sleep(0.1)
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=60)
    p2 = progress("lc2-all")
    stopped = at_cancel is not None and p2[3] == "t" and int(p2[1]) - at_cancel <= 1
    print(f"cancel: requested after {at_cancel} batches; stopped after {p2[1]} batches "
          f"({p2[2]} of 3000 runs), cancelled={p2[3]}", flush=True)
    return 0 if ok and stopped and lost == 0 and doubled == 0 else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["kill", "services", "overlap", "poison", "large"])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--commands", type=int, default=1000)
    ap.add_argument("--faults", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("--threads", type=int, default=1, help="worker.threads of every worker")
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    with open(args.log, "a") as log:
        scenarios = {"kill": kill_scenario, "services": services_scenario,
                     "overlap": overlap_scenario, "poison": poison_scenario,
                     "large": large_scenario}
        return scenarios[args.scenario](args, log)


if __name__ == "__main__":
    sys.exit(main())
