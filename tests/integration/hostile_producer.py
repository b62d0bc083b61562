#!/usr/bin/env python3
"""A hostile producer against the real broker and database: a seeded generator interleaves
hostile messages with good commands on one command topic, paced, while one worker serves it.

Hostile kinds: mutations (flipped, cut, inserted, repeated bytes) of valid commands in JSON and
in Avro; sizes just under, at and over max_message_bytes; reply topics that do not exist or are
forbidden; lists, patterns and strings past [limits] (and lists at the limit); control
characters and invalid UTF-8 in every string and header; ids of good commands reused with
other bodies (and the same body: a redelivery). Good commands force a state on 1..3 runs.

First a baseline: good commands alone, at the same pace, give the normal latency (the
command's Kafka timestamp to its completion's). Then the mixed stream. It fails when a good
command has no completion (stalled), its runs miss a state (lost) or have one more than the
ACCEPT results published (doubled), any good command waits longer than the bound, or the
worker's log holds a line its logger did not write.

Prints `fault-test hostile: messages=... good=... stalled=0 lost=0 doubled=0
max_good_latency_ms=...`.
"""
import argparse
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time

BIN = os.path.join(os.environ["BS_BUILD_DIR"], "bulkstate")
TOOL = os.path.join(os.environ["BS_BUILD_DIR"], "hostile_tool")
BROKER = os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"]
MAX_MESSAGE = 983040  # the sample configuration's max_message_bytes
PREFIX = "0199e000-0000-7000-8000-"
LOG_LINE = re.compile(r"^ts=\S+ level=(debug|info|warn|error) module=[a-z_]+ ")


def sql(q):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", q],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"psql: {p.stderr.strip()}")
    return p.stdout.strip()


def record(key, value, headers=(), pace=True, partition=None):
    """One record of hostile_tool's file format."""
    def blob(b):
        return struct.pack(">I", len(b)) + b
    out = struct.pack(">III", 1 if pace else 0,
                      0xFFFFFFFF if partition is None else partition, len(headers))
    for n, v in headers:
        out += blob(n) + blob(v)
    return out + blob(key or b"") + blob(value)


class Gen:
    def __init__(self, seed, runs, env):
        self.rng = random.Random(seed)
        self.runs = runs
        self.env = env
        self.good = []  # (command_id, runs, type)
        self.kinds = {}

    def good_command(self, k):
        sel = self.rng.sample(self.runs, self.rng.randint(1, 3))
        t = self.rng.choice(["PENDING", "RUNNING", "SCHEDULED", "COMPLETED", "FAILED"])
        cid = f"hp-good-{k}"
        body = {"command_id": cid, "flow_runs": {"id": {"any_": sel}}, "state": {"type": t},
                "force": True}
        self.good.append((cid, sel, body))
        if self.rng.random() < 0.3:  # some in Avro
            return record(cid.encode(), self.avro([body])[0])
        return record(cid.encode(), json.dumps(body).encode(), [(b"content-type", b"application/json")])

    def decoy(self, k):
        """A valid command that matches no run (no run carries the tag)."""
        return {"command_id": f"hp-bad-{k}", "flow_runs": {"tags": {"all_": ["hp-decoy"]}},
                "state": {"type": self.rng.choice(["CANCELLED", "RUNNING", "SCHEDULED"]),
                          "message": "decoy"}, "limit": self.rng.randint(1, 50)}

    def avro(self, bodies):
        out = subprocess.run([TOOL, "encode"], input="".join(json.dumps(b) + "\n" for b in bodies),
                             env=self.env, capture_output=True, text=True, check=True).stdout
        return [bytes.fromhex(h) if h != "-" else b"" for h in out.split("\n")[:len(bodies)]]

    def mutate(self, b):
        b = bytearray(b)
        for _ in range(self.rng.randint(1, 3)):
            op = self.rng.randrange(5)
            i = self.rng.randrange(len(b) + 1) if b else 0
            if op == 0 and b:
                b[min(i, len(b) - 1)] ^= 1 << self.rng.randrange(8)
            elif op == 1:
                del b[i:i + self.rng.randint(1, 16)]
            elif op == 2:
                b[i:i] = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 8)))
            elif op == 3:
                b[i:i] = b[i:i + self.rng.randint(1, 64)] * self.rng.randint(2, 50)
            else:  # an Avro length or count that claims far too much
                b[i:i] = b"\xfe\xff\xff\xff\x0f"
        return bytes(b)

    def hostile_string(self):
        return self.rng.choice(["line\nts=x level=info module=worker command done matched=999",
                                "\x1b[2J\x1b]0;title\x07", "nul\u0000byte", "\ud800 lone",
                                "tab\tand\rreturn", "\u202e reversed", "ok", "x" * 5000])

    def key(self):
        r = self.rng.random()
        if r < 0.3:
            return None
        if r < 0.6:
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 64)))
        if r < 0.65:
            return b"k" * self.rng.randint(1000, 10000)
        return f"hp-bad-{self.rng.randrange(10**9)}".encode()

    def headers(self, json_ct):
        h = [(b"content-type", b"application/json")] if json_ct else []
        r = self.rng.random()
        if r < 0.15:
            h.append((b"command-id", b"hdr\n\x1b[31m\xff\xfe"))
        elif r < 0.25:
            h.append((b"content-type", bytes(self.rng.randrange(256) for _ in range(8))))
        elif r < 0.3:
            h.append((bytes(self.rng.randrange(256) for _ in range(6)), b"\x00\xff"))
        elif r < 0.35:
            h.append((b"command-id", b"y" * 300))
        return h

    def hostile(self, k, avro_decoys):
        kinds = ["json_mut", "avro_mut", "size", "reply_topic", "caps", "strings", "headers",
                 "duplicate"]
        weights = [30, 15, 1, 12, 10, 15, 7, 10]
        kind = self.rng.choices(kinds, weights)[0]
        if kind == "size" and self.kinds.get("size", 0) >= 40:
            kind = "json_mut"  # a few dozen large ones are enough (1 MB each)
        if kind == "duplicate" and not self.good:
            kind = "json_mut"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        body = self.decoy(k)
        if kind == "json_mut":
            raw = json.dumps(body, ensure_ascii=self.rng.random() < 0.5).encode("utf-8", "surrogatepass")
            return record(self.key(), self.mutate(raw), self.headers(self.rng.random() < 0.7))
        if kind == "avro_mut":
            return record(self.key(), self.mutate(self.rng.choice(avro_decoys)), self.headers(False))
        if kind == "size":
            r = self.rng.random()
            if r < 0.4:  # over the limit: random bytes
                n = self.rng.randint(MAX_MESSAGE + 1, 1000000)
                return record(self.key(), self.rng.randbytes(n), self.headers(self.rng.random() < 0.5))
            # at or just under the limit: a valid command padded in state.message
            body["state"]["message"] = ""
            base = len(json.dumps(body).encode())
            body["state"]["message"] = "m" * (MAX_MESSAGE - base - self.rng.randint(0, 3))
            return record(self.key(), json.dumps(body).encode(), self.headers(True))
        if kind == "reply_topic":
            body["reply_topic"] = self.rng.choice(
                [f"hp.replies.none{self.rng.randrange(10**6)}", "hp.commands", "hp.dlq",
                 "__consumer_offsets", f"other.{self.rng.randrange(10**6)}", "a b", "t" * 300,
                 "hp.replies\n.x"])
            if self.rng.random() < 0.3:
                del body["state"]  # invalid too: the error still has to go somewhere
            return record(self.key(), json.dumps(body).encode(), self.headers(True))
        if kind == "caps":
            r = self.rng.randrange(5)
            f = body["flow_runs"]
            if r == 0:
                f["name"] = {"any_": [f"n{i}" for i in range(self.rng.randint(10001, 60000))]}
            elif r == 1:
                f["name"] = {"like_": "%_" * self.rng.randint(129, 30000)}
            elif r == 2:
                f["tags"] = {"any_": ["t" * self.rng.randint(4097, 200000)]}
            elif r == 3:
                body["max_runs"] = self.rng.choice([0, -1, 1000001, 10**12, "many"])
            else:  # at the limit: valid, and matches nothing
                f["idempotency_key"] = {"any_": [f"k{i}" for i in range(10000)]}
            return record(self.key(), json.dumps(body).encode(), self.headers(True))
        if kind == "strings":
            for path in self.rng.sample(["command_id", "state.name", "state.message", "reply_topic",
                                         "tags", "name", "state_name", "work_queue"],
                                        self.rng.randint(1, 3)):
                v = self.hostile_string()
                if path == "command_id":
                    body["command_id"] = v[:200]
                elif path.startswith("state."):
                    body["state"][path[6:]] = v
                elif path == "reply_topic":
                    body["reply_topic"] = v
                elif path == "tags":
                    body["flow_runs"]["tags"]["all_"].append(v)
                elif path == "name":
                    body["flow_runs"]["name"] = {"like_": v[:200]}
                elif path == "state_name":
                    body["flow_runs"]["state"] = {"name": {"any_": [v]}}
                else:
                    body["flow_runs"]["work_queue_name"] = {"any_": [v]}
            raw = json.dumps(body, ensure_ascii=self.rng.random() < 0.5).encode("utf-8", "surrogatepass")
            if self.rng.random() < 0.3:  # raw invalid UTF-8 inside a string
                raw = raw.replace(b"decoy", self.rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xc0\xaf",
                                                              b"\xed\xa0\x80"]))
            return record(self.key(), raw, self.headers(True))
        if kind == "headers":
            raw = json.dumps(body).encode()
            h = [(b"content-type", b"application/json"),
                 (b"command-id", self.hostile_string().encode("utf-8", "surrogatepass")[:300])]
            return record(self.key(), raw, h)
        # duplicate: a good command's id (same key, so the same partition, after it), another
        # body or the same one (a redelivery)
        cid, sel, good_body = self.rng.choice(self.good)
        if self.rng.random() < 0.2:
            raw = json.dumps(good_body).encode()
        else:
            body["command_id"] = cid
            raw = json.dumps(body).encode()
        return record(cid.encode(), raw, [(b"content-type", b"application/json")])


def consume(topic, fmt):
    return subprocess.run(["kcat", "-C", "-b", BROKER, "-t", topic, "-o", "beginning", "-e", "-q",
                           "-f", fmt], capture_output=True).stdout


def completions():
    """command_id -> (first completion timestamp, completion) and the ACCEPT (command, run)s."""
    done, accepted = {}, set()
    for line in consume("hp.replies", "%T\t%s\n").split(b"\n"):
        ts, _, payload = line.partition(b"\t")
        try:
            r = json.loads(payload)
        except ValueError:
            continue
        if "seq" in r:
            if r.get("status") == "ACCEPT":
                accepted.add((r["command_id"], r["flow_run_id"]))
        elif "matched" in r and r.get("command_id") not in done:
            done[r.get("command_id")] = (int(ts), r)
    return done, accepted


def produced_at():
    out = {}
    for line in consume("hp.commands", "%T\t%k\n").split(b"\n"):
        m = re.match(rb"^(\d+)\t(hp-good-\d+)$", line)
        if m and m.group(2).decode() not in out:
            out[m.group(2).decode()] = int(m.group(1))
    return out


def produce(env, records, rate):
    path = os.path.join(env["TMPDIR"], "hp.records")
    with open(path, "wb") as f:
        for r in records:
            f.write(r)
    subprocess.run([TOOL, "produce", "hp.commands", path], env=dict(env, HOSTILE_RATE=str(rate)),
                   check=True, capture_output=True)


def wait_for(ids, seconds):
    """Bounded: until every id has a completion or the deadline."""
    deadline = time.time() + seconds
    while True:
        done, accepted = completions()
        if all(i in done for i in ids) or time.time() > deadline:
            return done, accepted
        time.sleep(1)


def latencies(done, at, ids):
    return sorted(done[i][0] - at[i] for i in ids if i in done and i in at)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostile", type=int, default=5000)
    ap.add_argument("--good", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0, help="messages a second")
    ap.add_argument("--seed", type=int, default=20261201)
    a = ap.parse_args()
    env = dict(os.environ,
               BULKSTATE_WORKER_COMMAND_TOPIC="hp.commands", BULKSTATE_WORKER_REPLY_TOPIC="hp.replies",
               BULKSTATE_WORKER_DLQ_TOPIC="hp.dlq", BULKSTATE_WORKER_OUTPUT_FRAMING="json",
               BULKSTATE_WORKER_REPLY_TOPIC_PATTERN=r"hp\.replies(\..+)?",
               BULKSTATE_KAFKA_GROUP_ID="hp-group",
               TMPDIR=os.environ.get("TMPDIR", "/tmp"))
    subprocess.run([BIN, "topics", "4"], env=env, check=True, capture_output=True)
    runs = [f"{PREFIX}{i:012x}" for i in range(300)]
    sql(f"SELECT count(bulkstate_dev.new_run(('{PREFIX}' || lpad(to_hex(i), 12, '0'))::uuid, 'hp', "
        f"'SCHEDULED', '{{hp}}')) FROM generate_series(0, {len(runs) - 1}) i")
    log_path = os.path.join(env["TMPDIR"], "hp.worker.log")
    log = open(log_path, "wb")
    worker = subprocess.Popen([BIN, "worker"], env=env, stdout=log, stderr=log)
    g = Gen(a.seed, runs, env)
    try:
        deadline = time.time() + 60  # bounded: the worker joins its group
        while b"partitions assigned" not in open(log_path, "rb").read():
            if worker.poll() is not None or time.time() > deadline:
                print("worker did not get its partitions", file=sys.stderr)
                return 1
            time.sleep(0.1)
        # the baseline: good commands alone, at the same pace
        base = [g.good_command(k) for k in range(100)]
        produce(env, base, a.rate)
        base_ids = [c[0] for c in g.good]
        done, _ = wait_for(base_ids, 120)
        at = produced_at()
        lat = latencies(done, at, base_ids[10:])  # the first ones warm up connections
        if len(lat) != len(base_ids) - 10:
            print(f"baseline: {len(lat)} of {len(base_ids) - 10} completed", file=sys.stderr)
            return 1
        normal_p99 = lat[int(len(lat) * 0.99) - 1]
        # the bound: ten times the normal p99, at least 2 s (a hostile message may need a
        # metadata round trip or a 1 MB dead letter ahead of a good one)
        bound = max(10 * normal_p99, 2000)

        avro_decoys = [b for b in g.avro([g.decoy(i) for i in range(20)]) if b]
        order = ["g"] * a.good + ["h"] * a.hostile
        g.rng.shuffle(order)
        recs, k_good, k_bad = [], 100, 0
        for o in order:
            if o == "g":
                recs.append(g.good_command(k_good))
                k_good += 1
            else:
                recs.append(g.hostile(k_bad, avro_decoys))
                k_bad += 1
        t0 = time.time()
        produce(env, recs, a.rate)
        good_ids = [c[0] for c in g.good[100:]]
        done, accepted = wait_for(good_ids, 120)
        elapsed = time.time() - t0
        at = produced_at()
        alive = worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()

    stalled = sum(i not in done for i in good_ids)
    bad_completion = [i for i in good_ids + base_ids
                      if i in done and (done[i][1].get("error") or
                                        done[i][1].get("accepted") != done[i][1].get("matched"))]
    lat = latencies(done, at, good_ids)
    max_lat = lat[-1] if lat else -1
    slow = sum(x > bound for x in lat)
    # effects: each run holds its first state plus one per ACCEPT result published for it
    want = {r: 1 for r in runs}
    for cid, run in accepted:
        if run in want:
            want[run] += 1
    for cid, sel, _ in g.good:
        for r in sel:
            if (cid, r) not in accepted:
                want[r] += 1  # a good command's effect not published: counted as lost below
    have = dict(tuple(l.split("|")) for l in sql(
        "SELECT r.id, count(s.id) FROM flow_run r JOIN flow_run_state s ON s.flow_run_id = r.id "
        f"WHERE r.id::text LIKE '{PREFIX[:8]}%' GROUP BY r.id").splitlines())
    lost = sum(max(0, want[r] - int(have.get(r, 0))) for r in runs)
    doubled = sum(max(0, int(have.get(r, 0)) - want[r]) for r in runs)
    forged = [l for l in open(log_path, "rb").read().decode("utf-8", "replace").splitlines()
              if not LOG_LINE.match(l)]
    rejected = {}
    for line in consume("hp.replies", "%s\n").split(b"\n"):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("error"):
            t = r["error"].get("type") or r["error"].get("code")
            rejected[t] = rejected.get(t, 0) + 1
    print("hostile kinds: " + " ".join(f"{k}={v}" for k, v in sorted(g.kinds.items())))
    print("error completions by type: " + " ".join(f"{k}={v}" for k, v in sorted(rejected.items())))
    print(f"baseline: p99_ms={normal_p99} bound_ms={bound}; mixed stream: {elapsed:.0f} s, "
          f"good latency p50_ms={lat[len(lat) // 2] if lat else -1} "
          f"p99_ms={lat[int(len(lat) * 0.99) - 1] if lat else -1} over_bound={slow}")
    print(f"fault-test hostile: messages={len(recs)} good={a.good} stalled={stalled} lost={lost} "
          f"doubled={doubled} max_good_latency_ms={max_lat}")
    ok = True
    for what, bad in [("worker died", not alive), ("bad completions", bad_completion[:5]),
                      ("stalled", stalled), ("lost", lost), ("doubled", doubled),
                      ("over the latency bound", slow), ("forged log lines", forged[:3])]:
        if bad:
            print(f"FAIL: {what}: {bad}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
