#!/usr/bin/env python3
"""bulkstate's performance benchmark, side by side with a set-based SQL floor and with
Prefect's own HTTP endpoint, on the same machine and the same 1,000,000-run population.

PostgreSQL is sized as in production (shared_buffers a quarter of the memory, set by bench.sh;
checkpoints every 30 min or 8 GB of WAL) and runs durable (its defaults: fsync,
synchronous_commit and full_page_writes on) for the headline; throughput, floor and Prefect
run again non-durable as a second column (--durability). Each scenario that must start from
the same runs gets its own copy of the population, which is loaded once and kept across bench
runs (bench_pristine).

Scenarios (each prints a table; all figures go to build/bench/results.json):
  throughput  a backlog of --commands commands (limit 50: id lists, state+tag filters,
              deployment filters; force on and off; ACCEPT, REJECT and WAIT) consumed by one
              worker as fast as it goes; worker RSS at start, after 100k and at the end
  floor       the same commands as one set-based SQL statement each (select with the filter,
              insert the states, update the runs) through psql, on a copy of the population;
              then both again in turns of --chunk-commands (--interleaved-commands in all),
              each timed by the database: the ratio's target is checked against this run
  prefect     Prefect's server answering bulk_set_state over HTTP (its own database, the same
              population), client concurrency 1 and 4
  cost        per transition, for the three above: PostgreSQL CPU, WAL bytes, statements
  latency     an open-loop producer at 50% of the measured throughput: command timestamp to
              completion timestamp, p50/p95/p99/max, and where the time went (the worker's
              phase clocks, its completions' bulkstate.phases header)
  tail        the latency run again once per hypothesis about the tail, one change each
  scale       1 and 2 workers, 1, 3 and 6 partitions; 1 worker of 2 and 3 threads
  delivery    events to Prefect's server with its services on: the command path's throughput
              without delivery, with it, and with the outbox only; the delay to Prefect
"""
import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import signal
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

SRC = os.environ["BS_SOURCE_DIR"]
BUILD = os.environ["BS_BUILD_DIR"]
# another build's binary to measure against the same services (a before/after comparison)
BIN = os.environ.get("BS_BENCH_BIN") or os.path.join(BUILD, "bulkstate")
BROKER = os.environ["BULKSTATE_KAFKA_BOOTSTRAP_SERVERS"]
PG = f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user=postgres"
OUT = os.path.join(BUILD, "bench")
# every topic of this run gets this suffix: a broker kept up between two runs still holds the
# last run's topics, whose records carry the same command ids
RUN = time.strftime("%Y%m%d%H%M%S")


def psql(db, sql, check=True):
    return subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                           f"{PG} dbname={db}", "-c", sql], check=check, capture_output=True,
                          text=True).stdout.strip()


def psql_file(db, path):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", f"{PG} dbname={db}", "-f",
                    path], check=True, capture_output=True)


def env_for(db, topic, group, partitions=3):
    return dict(os.environ,
                BULKSTATE_CONFIG=os.path.join(SRC, "config/bulkstate.ini"),
                BULKSTATE_POSTGRES_CONNINFO=f"{PG} dbname={db}",
                BULKSTATE_WORKER_COMMAND_TOPIC=topic,
                BULKSTATE_WORKER_REPLY_TOPIC=topic + ".replies",
                BULKSTATE_WORKER_DLQ_TOPIC=topic + ".dlq",
                BULKSTATE_WORKER_LOG_LEVEL="warn",
                BULKSTATE_WORKER_METRICS_LISTEN="",
                BULKSTATE_KAFKA_GROUP_ID=group)


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def postmaster():
    """The pid of PostgreSQL's postmaster (its data directory's postmaster.pid)."""
    data = psql("postgres", "SHOW data_directory")
    with open(os.path.join(data, "postmaster.pid")) as f:
        return int(f.readline())


def postgres_cpu_s():
    """CPU seconds PostgreSQL has used: the postmaster and its children, and the backends that
    exited since its start (the postmaster's reaped children: cutime and cstime), so that a
    connection closed before the sample still counts. The children are found by their parent,
    not their command line: a backend that is exiting has none left, yet is not reaped, and
    its CPU would be missed (a sample right after a worker stopped lost its backend's)."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        master = postmaster()
        with open(f"/proc/{master}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        reaped = (int(fields[13]) + int(fields[14])) / tick
    except (OSError, ValueError):
        return cpu_s(postgres_pids())
    return cpu_s([master] + children(master)) + reaped


def children(pid):
    """The processes whose parent is pid, zombies included (/proc/*/stat)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def cpu_s(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def process_tree(pid):
    """pid and its child processes (the Prefect server's workers)."""
    if not pid:
        return []
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def postgres_pids():
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
# Checkpoints as a production server writing this much would have them: driven by time, not by
# the WAL's size. With PostgreSQL's defaults (5 min, max_wal_size 1 GB) the benchmark's 22 kB of
# WAL per transition brought a checkpoint every 6-11 s ("checkpoints are occurring too
# frequently"), and after each one the first change to every page writes the whole page again
# (full_page_writes). The test command's cluster keeps the defaults. A tail hypothesis
# measures them against these.
CHECKPOINTS = {"checkpoint_timeout": "30min", "max_wal_size": "8GB"}


def alter_system(want, hint=""):
    """want ({setting: value}) in force without a restart: ALTER SYSTEM, a reload, and the
    settings read back until they show it. Returns them as read back."""
    for k, v in want.items():
        psql("postgres", f"ALTER SYSTEM SET {k} = '{v}'")
    psql("postgres", "SELECT pg_reload_conf()")
    deadline = time.time() + 10  # bounded: the reload is applied within 10 s, or the bench stops
    while True:
        got = {k: psql("postgres", f"SHOW {k}") for k in want}
        if got == want:
            return got
        if time.time() > deadline:
            raise SystemExit(f"PostgreSQL kept {got} (wanted {want}){hint}")
        time.sleep(0.1)


def set_checkpoints():
    """CHECKPOINTS in force; returns them, read back."""
    return alter_system(CHECKPOINTS)


def set_durable(durable):
    """PostgreSQL durable (its defaults: every commit flushed to disk) or not, without a restart:
    scripts/pg.sh keeps the non-durable settings in a file ALTER SYSTEM overrides. Returns the
    settings in force, read back."""
    v = "on" if durable else "off"
    got = alter_system({k: v for k in DURABILITY},
                       ": its server was started with them on its command line; stop the "
                       "services and run again")
    psql("postgres", "CHECKPOINT")
    return got


def check_shared_buffers():
    """PostgreSQL's shared_buffers, read back; tests/bench/bench.sh starts the cluster with
    BS_PG_SHARED_BUFFERS (a quarter of the memory unless set), and a cluster that was already
    running with another size would measure another database: the bench stops then."""
    got = psql("postgres", "SELECT setting::bigint * 8192 / 1048576 FROM pg_settings "
                           "WHERE name = 'shared_buffers'") + "MB"
    want = os.environ.get("BS_PG_SHARED_BUFFERS")
    if want and want.upper() != got.upper():
        raise SystemExit(f"PostgreSQL runs with shared_buffers={got}, not {want}: it was started "
                         "before with another size; stop the services (scripts/services.sh "
                         "stop) and run again")
    print(f"PostgreSQL shared_buffers: {got}")
    return got


def disk_facts():
    """The disk PostgreSQL writes to: its device and how many flushes per second it takes
    (pg_test_fsync, one 8 kB write then fdatasync: the cost of one durable commit)."""
    facts = {}
    dev = subprocess.run(["df", "--output=source", OUT], capture_output=True,
                         text=True).stdout.split()[-1]
    facts["device"] = dev
    name = os.path.basename(dev)
    try:
        facts["rotational"] = open(f"/sys/block/{name}/queue/rotational").read().strip() == "1"
    except OSError:
        pass
    tool = "/usr/lib/postgresql/15/bin/pg_test_fsync"
    if os.path.exists(tool):
        out = subprocess.run([tool, "-s", "1", "-f", os.path.join(OUT, "fsync.test")],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.strip().startswith("fdatasync") and "ops/sec" in line:
                facts["fdatasync_per_s"] = float(line.split()[1])
                break
    return facts


class Cost:
    """PostgreSQL's cost of what runs between start() and stop(): CPU seconds of all its
    processes (/proc: backends, WAL writer, checkpointer, autovacuum), WAL bytes (pg_stat_wal)
    and statements executed in the scenario's database (pg_stat_statements, BEGIN and COMMIT
    included)."""

    def __init__(self, db):
        self.db = db
        psql("postgres", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def sample(self):
        row = psql("postgres", "SELECT (SELECT wal_bytes FROM pg_stat_wal), "
                               "(SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements s "
                               f"JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{self.db}'), "
                               "(SELECT dealloc FROM pg_stat_statements_info)")
        wal, calls, dealloc = row.split("|")
        return postgres_cpu_s(), int(wal), int(calls), int(dealloc)

    def start(self):
        self.t0 = self.sample()
        return self

    def stop(self, transitions):
        t1 = self.sample()
        n = max(transitions, 1)
        out = {"pg_cpu_ms": round(1000 * (t1[0] - self.t0[0]) / n, 3),
               "wal_bytes": round((t1[1] - self.t0[1]) / n),
               "statements": round((t1[2] - self.t0[2]) / n, 3)}
        if t1[3] != self.t0[3]:  # entries evicted meanwhile: the statement count is low
            out["statements_undercounted"] = True
        return out


# ---- population and commands ----

PRISTINE = "bench_pristine"


def population_key():
    """What the population depends on: its SQL, Prefect's tables and bulkstate's schema."""
    h = hashlib.sha256()
    for p in ("tests/bench/population_1m.sql", "tests/bench/population_states.sql",
              "schemas/recommended.sql", "schemas/bulkstate.sql", "schemas/prefect.sql"):
        path = os.path.join(SRC, p)
        if os.path.exists(path):
            h.update(open(path, "rb").read())
    return "bench population " + h.hexdigest()[:16]


def load(db, reload=False):
    """db: a fresh copy of the 1,000,000-run population. The population is loaded once into
    bench_pristine (about 6 minutes here) and kept across bench runs while what it depends on is
    unchanged (its key is the database's comment); every scenario that must start from the same
    runs gets its own copy (a file copy: seconds). Returns whether it was loaded now."""
    key = population_key()
    have = psql("postgres", "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                            f"WHERE datname = '{PRISTINE}'")
    loaded = reload or have != key
    if loaded:
        psql("postgres", f"DROP DATABASE IF EXISTS {PRISTINE}")
        psql("postgres", f"CREATE DATABASE {PRISTINE}")
        subprocess.run([BIN, "migrate", "--recommended-indexes"], env=env_for(PRISTINE, "x", "x"),
                       check=True, capture_output=True)
        psql_file(PRISTINE, os.path.join(SRC, "tests/bench/population_1m.sql"))
        psql_file(PRISTINE, os.path.join(SRC, "tests/bench/population_states.sql"))
        psql("postgres", f"COMMENT ON DATABASE {PRISTINE} IS '{key}'")
    copy_population(db)
    return loaded


def copy_population(db):
    psql("postgres", f"DROP DATABASE IF EXISTS {db}")
    psql("postgres", f"CREATE DATABASE {db} TEMPLATE {PRISTINE} STRATEGY FILE_COPY")
    # the worker's own schema as this build has it (idempotent)
    subprocess.run([BIN, "migrate"], env=env_for(db, "x", "x"), check=True, capture_output=True)


def make_commands(db, n, seed, prefix):
    rng = random.Random(seed)
    ids = psql(db, "SELECT id FROM flow_run ORDER BY md5(id::text) LIMIT 100000").split()
    deps = [psql(db, f"SELECT md5('dep{d}')::uuid") for d in range(0, 100, 7)]
    cmds = []
    for k in range(n):
        r = rng.random()
        if r < 0.40:   # ids: ACCEPT (CANCELLED from most states), some REJECT/ABORT
            body = {"flow_runs": {"id": {"any_": rng.sample(ids, 50)}},
                    "state": {"type": "CANCELLED"}}
        elif r < 0.60:  # state + tags (350 combinations, so commands rarely walk past
                        # runs earlier ones moved): SCHEDULED -> PENDING (accepted)
            body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}},
                                  "tags": {"all_": [f"t{rng.randrange(50)}",
                                                    f"u{rng.randrange(7)}"]}},
                    "state": {"type": "PENDING"}}
        elif r < 0.75:  # SCHEDULED -> RUNNING: WAIT for future runs, ACCEPT for past ones
            body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}},
                                  "tags": {"all_": [f"u{rng.randrange(7)}",
                                                    f"t{rng.randrange(50)}", "nightly"]}},
                    "state": {"type": "RUNNING"}}
        elif r < 0.90:  # deployment filter, forced
            body = {"flow_runs": {"deployment_id": {"any_": [rng.choice(deps)]}},
                    "state": {"type": "SCHEDULED", "name": "Rescheduled"}, "force": True}
        else:           # REJECT: only SCHEDULED runs may be marked Late
            body = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}},
                                  "tags": {"all_": [f"t{rng.randrange(50)}"]}},
                    "state": {"type": "SCHEDULED", "name": "Late"}}
        body["limit"] = 50
        body["command_id"] = f"{prefix}-{k}"
        cmds.append(body)
    return cmds


def produce(topic, cmds, partitions=3):
    subprocess.run(["kcat", "-b", BROKER, "-L", "-t", topic], capture_output=True)
    path = os.path.join(OUT, "cmds.tsv")
    with open(path, "w") as f:
        for c in cmds:
            f.write(c["command_id"] + "\t" + json.dumps(c) + "\n")
    subprocess.run(["kcat", "-P", "-b", BROKER, "-t", topic, "-K", "\t", "-H",
                    "content-type=application/json", "-l", path], check=True)


def topics(db, topic, partitions):
    subprocess.run([BIN, "topics", str(partitions)], env=env_for(db, topic, "x"), check=True,
                   capture_output=True)


def progress(db, prefix):
    row = psql(db, f"SELECT count(*), COALESCE(sum(matched), 0) FROM bulkstate.command "
                   f"WHERE command_id LIKE '{prefix}-%' AND status = 'done'")
    a, b = row.split("|")
    return int(a), int(b)


def run_delay_s(pids):
    """Seconds the threads of pids have spent runnable but waiting for a core
    (/proc/PID/task/TID/schedstat, its second field): how much the CPU held them up."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return total / 1e9


def free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def metrics_text(port):
    """A worker's metrics page ("" while it does not listen yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def worker_totals(ports):
    """The workers' own totals, summed: seconds per phase of their one-batch commands (the
    acknowledgement included, which no completion header carries) and the acknowledgement
    histogram's buckets (ack_le)."""
    totals = {}
    for port in ports:
        for line in metrics_text(port).splitlines():
            if line.startswith("bulkstate_command_phase_seconds_total{"):
                k = line.split('"')[1]
                totals[k] = totals.get(k, 0.0) + float(line.split()[-1])
            elif line.startswith("bulkstate_reply_ack_seconds_bucket{"):
                le = totals.setdefault("ack_le", {})
                k = line.split('"')[1]
                le[k] = le.get(k, 0) + int(line.split()[-1])
    return totals


def metric_progress(ports):
    """Commands the workers settled (applied or replayed) and their per-run results, summed from
    their metrics. Read over HTTP from this process: a psql every 0.2 s (its start, its
    backend's fork and its query) took some 0.13 of a core, as much as the worker itself, from
    the two cores the run measures."""
    done = matched = 0
    for port in ports:
        for line in metrics_text(port).splitlines():
            if (line.startswith('bulkstate_commands_completed_total{outcome="applied"}') or
                    line.startswith('bulkstate_commands_completed_total{outcome="replayed"}')):
                done += int(line.split()[-1])
            elif line.startswith("bulkstate_transitions_total{"):
                matched += int(line.split()[-1])
    return done, matched


def run_workers(db, topic, group, prefix, n, workers=1, rss_marks=(), extra_env=None, waits=None,
                totals=None):
    """Starts the workers on a produced backlog, waits for n commands; returns elapsed s,
    transitions, RSS samples {mark: MB} of the first worker, CPU s of workers and PostgreSQL.
    waits (a dict), when given, gets the seconds the workers' threads and PostgreSQL's
    processes waited for a core meanwhile (backends that start meanwhile count from zero);
    totals (a dict), the workers' own totals (worker_totals)."""
    ports = [free_port() for _ in range(workers)]
    procs = [subprocess.Popen([BIN, "worker"],
                              env=dict(env_for(db, topic, group), **(extra_env or {}),
                                       BULKSTATE_WORKER_METRICS_LISTEN=f"127.0.0.1:{ports[i]}"),
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(OUT, f"{group}.{i}.log"), "w"))
             for i in range(workers)]
    rss = {"start": None}
    pg_before = postgres_cpu_s()
    pg_delay = run_delay_s(children(postmaster()))
    t0 = time.time()
    marks = sorted(rss_marks)
    while True:
        done, matched = metric_progress(ports)
        if rss["start"] is None and done == 0:
            rss["start"] = rss_mb(procs[0].pid)
        while marks and matched >= marks[0]:
            rss[marks.pop(0)] = rss_mb(procs[0].pid)
        t1 = time.time()
        timed_out = t1 - t0 > 3600
        # the database has the last word: every command done, and their transitions (a
        # replay counts in the metrics of two workers)
        if done >= n or timed_out:
            db_done, matched = progress(db, prefix)
            if db_done >= n or timed_out:
                break
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a worker exited: see {OUT}/{group}.*.log")
        time.sleep(0.2)
    elapsed = t1 - t0
    rss["end"] = rss_mb(procs[0].pid)
    worker_cpu = cpu_s([p.pid for p in procs])
    pg_cpu = postgres_cpu_s() - pg_before
    if waits is not None:
        waits["postgres"] = run_delay_s(children(postmaster())) - pg_delay
        waits["workers"] = run_delay_s([p.pid for p in procs])
    if totals is not None:
        totals.update(worker_totals(ports))
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)
    return elapsed, matched, rss, worker_cpu, pg_cpu


# ---- scenarios ----

def scenario_throughput(args, res, db="bench", cmds=None):
    cmds = cmds or make_commands(db, args.commands, 1, "tp")
    topic = f"{db}.tp.{RUN}"
    topics(db, topic, 3)
    produce(topic, cmds)
    cost = Cost(db).start()
    waits, totals = {}, {}
    elapsed, matched, rss, wcpu, pcpu = run_workers(db, topic, f"{db}-tp", "tp", len(cmds), 1,
                                                    (100000, 1000000), waits=waits, totals=totals)
    res["cost_bulkstate"] = cost.stop(matched)
    res.update(commands=len(cmds), transitions=matched, throughput_s=round(elapsed, 1),
               commands_per_s=round(len(cmds) / elapsed, 1),
               transitions_per_s=round(matched / elapsed, 1),
               rss_mb_start=rss.get("start"), rss_mb_100k=rss.get(100000),
               rss_mb_1m=rss.get(1000000), rss_mb_end=rss.get("end"),
               worker_cpu_s=round(wcpu, 1), postgres_cpu_s=round(pcpu, 1),
               postgres_waited_for_core_s=round(waits["postgres"], 2),
               worker_waited_for_core_s=round(waits["workers"], 2))
    print(f"\nthroughput: {len(cmds)} commands, {matched} transitions in {elapsed:.1f} s")
    print(f"  {res['commands_per_s']} commands/s, {res['transitions_per_s']} transitions/s; "
          f"CPU: worker {wcpu:.0f} s, PostgreSQL {pcpu:.0f} s of {elapsed:.0f} s wall x 2 cores; "
          f"waited for a core: PostgreSQL {waits['postgres']:.1f} s, worker {waits['workers']:.1f} s")
    print(f"  worker RSS MB: start {rss.get('start')}, after 100k {rss.get(100000)}, "
          f"after 1M {rss.get(1000000)}, end {rss.get('end')}")
    res["throughput_phases_ms"] = print_command_time(totals, len(cmds), elapsed)
    return cmds


def print_command_time(totals, n, elapsed):
    """Where one command's time went in a backlog, from the worker's own totals (ms per command,
    its wait in Kafka left out: the backlog's queue), against the wall time per command (from
    the worker's launch); what the phases leave ("between") is the worker's start and group
    join, and the loop's own time between two commands (the poll, the bookkeeping)."""
    names = [p for p in ("count", "decode", "claim", "select", "lock", "decide", "write",
                         "record", "commit", "publish", "ack") if p in totals]
    if not names or not n:
        return None
    out = {p: round(1000 * totals[p] / n, 2) for p in names}
    out["wall"] = round(1000 * elapsed / n, 2)
    out["between"] = round(out["wall"] - sum(out[p] for p in names), 2)
    print("  one command's time, ms (the worker's own clocks; wall = elapsed / commands):")
    print("    " + " ".join(f"{p:>8}" for p in names + ["between", "wall"]))
    print("    " + " ".join(f"{out[p]:>8}" for p in names + ["between", "wall"]))
    return out


def floor_statements(cmds, db):
    """The floor's psql lines for each command: the SQL its selection compiles to, parameters
    inlined as literals, in one statement that locks, inserts the states and updates the runs."""
    lines = "\n".join(json.dumps({"flow_runs": c.get("flow_runs"), "limit": 50}) for c in cmds)
    out = subprocess.run([BIN, "select", "--sql"], input=lines, capture_output=True, text=True,
                         env=env_for(db, "x", "x"), check=True).stdout.splitlines()
    per_command = []

    def inline(sql, params):
        for i in range(len(params), 0, -1):
            v = params[i - 1].replace("'", "''")
            sql = sql.replace(f"${i}", f"'{v}'")
        return sql

    for c, line in zip(cmds, out):
        j = json.loads(line)
        st = c["state"]
        name = st.get("name") or st["type"].capitalize()

        def write(sel):
            return (f"WITH sel AS (SELECT id FROM flow_run WHERE id = ANY(ARRAY({sel})) FOR UPDATE), "
                    f"ins AS (INSERT INTO flow_run_state (id, flow_run_id, type, \"timestamp\", name, "
                    f"state_details) SELECT gen_random_uuid(), sel.id, '{st['type']}', "
                    f"clock_timestamp(), '{name}', jsonb_build_object('flow_run_id', sel.id) FROM sel "
                    f"RETURNING id, flow_run_id, type, name, \"timestamp\") UPDATE flow_run f SET "
                    f"state_id = ins.id, state_type = ins.type, state_name = ins.name, "
                    f"state_timestamp = ins.\"timestamp\" FROM ins WHERE f.id = ins.flow_run_id;")

        if not j.get("window"):
            per_command.append([write(inline(j["sql"], j["params"]))])
            continue
        # the worker's plan for a tags filter: the newest runs, then the planner's walk when
        # they hold a few matches, else every match from the GIN index (psql decides)
        win = inline(j["window"], j["params"])
        per_command.append([f"SELECT count(*) >= 50 AS full, count(*) >= {j['dense_min']} AS dense "
                            f"FROM ({win}) w \\gset",
                            "\\if :full", write(win), "\\elif :dense",
                            write(inline(j["sql"], j["params"])), "\\else",
                            write(inline(j["sparse"], j["params"])), "\\endif"])
    return per_command


def run_floor_script(db, name, lines):
    """lines as one psql script (OUT/name): its output and the runs its UPDATEs changed."""
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", f"{PG} dbname={db}",
                          "-f", path], capture_output=True, text=True, check=True).stdout
    return out, sum(int(l.split()[1]) for l in out.splitlines() if l.startswith("UPDATE "))


def scenario_floor(args, res, cmds, db="bench_floor"):
    stmts = [line for c in floor_statements(cmds, db) for line in c]
    cost = Cost(db).start()
    t0 = time.time()
    out, rows = run_floor_script(db, "floor.sql", stmts)
    elapsed = time.time() - t0
    res["cost_floor"] = cost.stop(rows)
    res.update(floor_s=round(elapsed, 1), floor_transitions=rows,
               floor_transitions_per_s=round(rows / elapsed, 1))
    print(f"\nfloor (one set-based statement per command, psql): {rows} transitions in "
          f"{elapsed:.1f} s = {res['floor_transitions_per_s']} transitions/s")


def scenario_prefect(args, res, seed=2):
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        print("\nprefect: unavailable (scripts/prefect.sh could not install it)")
        return
    # Prefect's database: its own schema (its migrations) with the same population
    conn = os.environ["BS_PREFECT_DB_CONNINFO"]
    db = conn.split("dbname=")[1].split()[0]
    if psql(db, "SELECT count(*) FROM flow_run") != "1000000":
        psql(db, "TRUNCATE flow_run, flow_run_state CASCADE")
        psql_file(db, os.path.join(SRC, "tests/bench/population_1m.sql"))
        psql_file(db, os.path.join(SRC, "tests/bench/population_states.sql"))
    # the same indexes as bulkstate's database and the floor's
    psql_file(db, os.path.join(SRC, "schemas/recommended.sql"))
    cmds = make_commands(db, args.prefect_commands, seed, "pf")

    def post(body):
        b = {k: v for k, v in body.items() if k != "command_id"}
        req = urllib.request.Request(api + "/flow_runs/bulk_set_state", data=json.dumps(b).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return len(json.loads(r.read())["results"])

    print("\nprefect (HTTP bulk_set_state, its own server and database, same population):")
    best, total = 0, 0
    cost = Cost(db).start()
    for conc in (1, 4):
        part = cmds[: len(cmds) // 2] if conc == 1 else cmds[len(cmds) // 2:]
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(conc) as ex:
            n = sum(ex.map(post, part))
        elapsed = time.time() - t0
        tps = n / elapsed
        best = max(best, tps)
        total += n
        res[f"prefect_c{conc}_transitions_per_s"] = round(tps, 1)
        print(f"  concurrency {conc}: {len(part)} requests, {n} transitions in {elapsed:.1f} s = "
              f"{tps:.1f} transitions/s")
    res["prefect_transitions_per_s"] = round(best, 1)
    res["cost_prefect"] = cost.stop(total)


def open_loop(topic, cmds, rate):
    """Produces cmds at rate per second, on schedule whatever the worker does (an open loop)."""
    kc = subprocess.Popen(["kcat", "-P", "-b", BROKER, "-t", topic, "-K", "\t", "-H",
                           "content-type=application/json", "-X", "linger.ms=0"],
                          stdin=subprocess.PIPE, text=True)
    t0 = time.time()
    for k, c in enumerate(cmds):
        delay = t0 + k / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        kc.stdin.write(c["command_id"] + "\t" + json.dumps(c) + "\n")
        kc.stdin.flush()
    kc.stdin.close()
    kc.wait()


def latency_run(db, name, cmds, rate, extra_env=None):
    """cmds produced at rate per second (an open loop) to a fresh topic bench.<name>, consumed
    by one worker on db that is already running (it joined its group and got its partitions:
    its /readyz says so), so that latency is measured on a running worker, not on the group's
    first join. Returns the latencies (ms, sorted) and, per command, (completion time,
    latency, command time, phases, its partition)."""
    topic = f"bench.{name}.{RUN}"
    topics(db, topic, 3)
    port = free_port()
    env = dict(env_for(db, topic, f"bench-{name}"), **(extra_env or {}),
               BULKSTATE_WORKER_METRICS_LISTEN=f"127.0.0.1:{port}")
    w = subprocess.Popen([BIN, "worker"], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(OUT, f"{name}.log"), "w"))
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline or w.poll() is not None:
            raise SystemExit(f"the latency worker never became ready: see {OUT}/{name}.log")
        time.sleep(0.1)
    prefix = cmds[0]["command_id"].rsplit("-", 1)[0]
    t_start = time.time()
    open_loop(topic, cmds, rate)
    deadline = time.time() + 600  # bounded: the backlog is done, or 10 minutes pass
    while progress(db, prefix)[0] < len(cmds) and time.time() < deadline:
        time.sleep(0.2)
    totals = dict(worker_totals([port]), gc=broker_gc(t_start, time.time()))
    w.terminate()
    w.wait(timeout=60)
    sent = {}
    for line in subprocess.run(["kcat", "-C", "-b", BROKER, "-t", topic, "-o", "beginning",
                                "-e", "-q", "-f", "%k %T %p\n"], capture_output=True, text=True).stdout.splitlines():
        k, ts, part = line.split()
        sent[k] = (int(ts), int(part))
    lat, done = [], []
    for line in subprocess.run(["kcat", "-C", "-b", BROKER, "-t", topic + ".replies", "-o",
                                "beginning", "-e", "-q", "-f", "%k %T %h\n"], capture_output=True,
                               text=True).stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and "seq=" not in parts[2] and parts[0] in sent:
            t_cmd, part = sent.pop(parts[0])
            lat.append(int(parts[1]) - t_cmd)
            done.append((int(parts[1]), lat[-1], t_cmd, phases_of(parts[2]), part))
    lat.sort()
    return lat, done, totals


def quantiles(lat):
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": lat[-1], "n": len(lat)}


def scenario_latency(args, res):
    rate = res["commands_per_s"] * 0.5
    n = int(rate * args.latency_seconds)
    copy_population("bench_lat")  # the same start as every tail hypothesis's run
    cmds = make_commands("bench_lat", n, 3, "lat")
    lat, done, totals = latency_run("bench_lat", "lat", cmds, rate)
    psql("postgres", "DROP DATABASE bench_lat WITH (FORCE)")
    st = quantiles(lat)
    res.update(latency_rate_per_s=round(rate, 1), latency_commands=st["n"],
               p50_ms_half_load=st["p50"], p95_ms_half_load=st["p95"],
               p99_ms_half_load=st["p99"], max_ms_half_load=st["max"])
    print(f"\nlatency at {rate:.1f} commands/s (50% of throughput), {st['n']} commands: "
          f"p50 {st['p50']} ms, p95 {st['p95']} ms, p99 {st['p99']} ms, max {st['max']} ms")
    res["latency_phases_ms"] = print_phases(done, st["p99"])
    res["latency_ack"] = print_ack(totals, st["n"])


def broker_gc(t0, t1):
    """The broker JVM's collection pauses between two wall-clock times, from its gc.log
    (scripts/kafka.sh): count, total and longest, and how many passed 100 ms."""
    path = os.path.join(os.environ.get("BS_RUN_DIR", os.path.join(BUILD, "services")), "kafka",
                        "gc.log")
    pauses = []
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"^\[(\S+)\] GC\(\d+\) Pause .* ([\d.]+)ms$", line.strip())
                if m:
                    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
                    if t0 <= t <= t1:
                        pauses.append(float(m.group(2)))
    except OSError:
        return None
    return {"pauses": len(pauses), "total_ms": round(sum(pauses), 1),
            "max_ms": round(max(pauses, default=0), 1), "over_100_ms": sum(p > 100 for p in pauses)}


def print_ack(totals, n):
    """The wait for the broker's acknowledgement of each command's replies, from the worker's
    totals and histogram: it comes after the completion (so in no phases header) and before
    the thread takes its next command, so a slow one shows as the next command's delivery."""
    if totals.get("ack") is None or not n:
        return None
    le = totals.get("ack_le", {})
    count = le.get("+Inf", 0)
    over = {b: count - le[b] for b in ("0.05", "0.1", "0.25") if b in le}
    out = {"mean_ms": round(1000 * totals["ack"] / n, 2),
           **{f"over_{int(float(b) * 1000)}_ms": v for b, v in over.items()}}
    print(f"  then the acknowledgement of its replies (the broker's): {out['mean_ms']} ms per "
          f"command on average; of {count}, over 50 / 100 / 250 ms: " +
          " / ".join(str(v) for v in over.values()))
    gc = totals.get("gc")
    if gc is not None:
        out["broker_gc"] = gc
        print(f"  the broker's JVM meanwhile: {gc['pauses']} collection pauses, {gc['total_ms']} ms "
              f"in all, the longest {gc['max_ms']} ms, {gc['over_100_ms']} over 100 ms (its gc.log)")
    return out


# Each hypothesis about the tail: one change, tested alone against the latency scenario's run
# (same copy of the population, same commands, same rate). sql: run in the copy first;
# system: ALTER SYSTEM settings (reset after); live: Prefect's server with its services runs
# beside (it is stopped otherwise); env: the worker's environment; broker_gc: the broker
# restarted with that collector (scripts/kafka.sh BS_KAFKA_GC; restarted as before after).
# The first entry changes nothing: the control, which always runs, first. The latency
# scenario's own p99 was above every hypothesis's in three runs out of three (9 of 9), opposite
# changes included (a GIN index with and without its pending list each "helped"), so each
# hypothesis is compared with a run made as it is, not with that scenario.
TAIL_HYPOTHESES = [
    ("unchanged (the control: run as each hypothesis is)", {}),
    ("trigram index of run names without fastupdate",
     {"sql": "ALTER INDEX trgm_ix_flow_run_name SET (fastupdate = off)"}),
    ("bulkstate's GIN index on (state_type, tags) without fastupdate",
     {"sql": "ALTER INDEX ix_flow_run__state_type_tags_gin SET (fastupdate = off)"}),
    ("no autovacuum on flow_run", {"sql": "ALTER TABLE flow_run SET (autovacuum_enabled = off)"}),
    ("checkpoints at PostgreSQL's defaults (5 min, max_wal_size 1 GB)",
     {"system": {"checkpoint_timeout": "'5min'", "max_wal_size": "'1GB'"}}),
    ("new WAL segments not zero-filled (wal_init_zero off)", {"system": {"wal_init_zero": "off"}}),
    ("Prefect's server and its services running beside", {"live": True}),
    ("worker.threads 3: one thread per partition", {"env": {"BULKSTATE_WORKER_THREADS": "3"}}),
    ("worker.threads 3, Prefect's trigram index with a 512 kB pending list",
     {"sql": "ALTER INDEX trgm_ix_flow_run_name SET (gin_pending_list_limit = 512)",
      "env": {"BULKSTATE_WORKER_THREADS": "3"}}),
    ("worker.threads 3, Prefect's trigram index without fastupdate",
     {"sql": "ALTER INDEX trgm_ix_flow_run_name SET (fastupdate = off)",
      "env": {"BULKSTATE_WORKER_THREADS": "3"}}),
    ("the broker's JVM on G1 with a 20 ms pause goal (serial otherwise)", {"broker_gc": "g1"}),
]


def bounce_broker(gc):
    """Restarts the broker on its data with the collector gc (scripts/kafka.sh)."""
    subprocess.run([os.path.join(SRC, "scripts/kafka.sh"), "bounce"], check=True,
                   capture_output=True, env=dict(os.environ, BS_KAFKA_GC=gc))


def scenario_tail(args, res):
    """The tail's hypotheses, each alone, at the latency scenario's rate and backlog."""
    rate = res["latency_rate_per_s"]
    n = res["latency_commands"]
    base = {"p50": res["p50_ms_half_load"], "p95": res["p95_ms_half_load"],
            "p99": res["p99_ms_half_load"], "max": res["max_ms_half_load"]}
    print(f"\ntail hypotheses at {rate} commands/s, {n} commands each (ms):")
    print(f"  {'':<66} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}")
    print(f"  {'as in the latency scenario':<66} " +
          " ".join(f"{base[k]:>6}" for k in ("p50", "p95", "p99", "max")))
    out, phases = {}, []
    for i, (name, h) in enumerate(TAIL_HYPOTHESES):
        if i > 0 and args.tail and not any(t in name for t in args.tail.split(",")):
            continue
        if h.get("live") and not live_server(0):
            print(f"  {name:<66} skipped: no Prefect server with its services")
            continue
        db = "bench_tail"
        copy_population(db)
        if h.get("sql"):
            psql(db, h["sql"])
        for k, v in h.get("system", {}).items():
            psql("postgres", f"ALTER SYSTEM SET {k} = {v}")
        psql("postgres", "SELECT pg_reload_conf()")
        if h.get("live"):
            live_server(signal.SIGCONT)
        if h.get("broker_gc"):
            bounce_broker(h["broker_gc"])
        try:
            cmds = make_commands(db, n, 3, "lat")
            lat, done, totals = latency_run(db, f"tail{i}", cmds, rate, h.get("env"))
        finally:
            if h.get("live"):
                live_server(signal.SIGSTOP)
            if h.get("broker_gc"):
                bounce_broker("serial")
            for k in h.get("system", {}):
                psql("postgres", f"ALTER SYSTEM RESET {k}")
            set_checkpoints()  # (and the reload)
            psql("postgres", f"DROP DATABASE {db} WITH (FORCE)")
        st = quantiles(lat)
        out[name] = st
        print(f"  {name:<66} " + " ".join(f"{st[k]:>6}" for k in ("p50", "p95", "p99", "max")))
        phases.append((name, done, st["p99"], "BULKSTATE_WORKER_THREADS" in h.get("env", {}),
                       totals))
    for name, done, p99, per_partition, totals in phases:  # after the table, one block each
        print(f"\n  {name}:")
        out[name]["phases_ms"] = print_phases(done, p99, per_partition)
        out[name]["ack"] = print_ack(totals, out[name]["n"])
    res["tail_hypotheses"] = out


PHASES = ("wait", "count", "decode", "claim", "select", "lock", "decide", "write", "record", "commit",
          "publish")


def phases_of(headers):
    """The completion's bulkstate.phases header (kcat's %h: name=value pairs joined by ',')."""
    for h in headers.split(","):
        if h.startswith("bulkstate.phases="):
            return {k: float(v) for k, v in
                    (kv.split("=") for kv in h[len("bulkstate.phases="):].split(";"))}
    return {}


def print_phases(done, p99, per_partition=False):
    """Where the commands' time went, from the worker's clocks: the mean of each phase over all
    commands and over those at or above p99. The wait in Kafka is split into the part spent
    queued behind the command the worker was busy with (the one completed before this one,
    when that completion came after this command was produced) and the rest (the broker's
    delivery to the worker). per_partition: a thread per partition, so a command queues only
    behind its own partition's."""
    done.sort(key=lambda d: (d[0], d[2]))  # by completion, then production (not the dicts)
    rows = []
    prev_done = {}
    for t_done, l, t_cmd, ph, part in done:
        lane = part if per_partition else 0
        if ph:
            queued = min(ph["wait"], max(0, prev_done[lane] - t_cmd)) if lane in prev_done else 0
            rows.append((l, dict(ph, queued=queued, delivery=ph["wait"] - queued)))
        prev_done[lane] = t_done
    if not rows:
        print("  (no bulkstate.phases headers)")
        return None
    names = ("queued", "delivery") + PHASES[1:]
    # the commands that kept the others waiting: the slowest 1 % by their own time (all but
    # the wait in Kafka)
    own = sorted((sum(v for k, v in p.items() if k not in ("wait", "queued", "delivery")), i)
                 for i, (_, p) in enumerate(rows))
    slow = [rows[i][1] for _, i in own[-max(1, len(own) // 100):]]
    groups = [("all", [p for _, p in rows]), (f">= p99 ({p99} ms)", [p for l, p in rows if l >= p99]),
              ("slowest 1% (own)", slow)]
    out = {}
    print("  where the time went, ms (mean per command; wait in Kafka = queued + delivery):")
    print(f"  {'':<18} " + " ".join(f"{n:>8}" for n in names))
    for label, ps in groups:
        means = {n: round(sum(p[n] for p in ps) / len(ps), 2) for n in names} if ps else {}
        out[label] = dict(means, commands=len(ps))
        print(f"  {label:<18} " + " ".join(f"{means.get(n, 0):>8.1f}" for n in names) +
              f"   ({len(ps)} commands)")
    return out


def start_sink():
    """The stand-in for a Prefect server elsewhere: answers 204 to every POST of events."""
    port_file = os.path.join(OUT, "sink.port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    p = subprocess.Popen([sys.executable, os.path.join(SRC, "tests/integration/prefect_stub.py"),
                          "--port-file", port_file], stdout=subprocess.DEVNULL)
    end = time.time() + 30
    while not os.path.exists(port_file) and time.time() < end:  # bounded: 30 s
        time.sleep(0.1)
    with open(port_file) as f:
        return p, f"http://127.0.0.1:{f.read().strip()}/api"


def scenario_delivery(args, res):
    """Events delivered to Prefect's server ([prefect] api_url, its services on): the command
    path's throughput without and with delivery, on the same population in the same run, and
    the delay from each state's time to Prefect's receipt of its event at half load (from
    Prefect's own events table: received - occurred)."""
    api = os.environ.get("BS_LIVE_API_URL")
    if not api:
        print("\ndelivery: skipped (no Prefect server with its services: prefect.sh start-live)")
        return
    n = args.delivery_commands
    out = {}
    # "outbox": Prefect's server stopped (SIGSTOP) meanwhile, so the events are only recorded
    # in the outbox: the cost of bulkstate's own part, apart from Prefect's ingestion sharing
    # the machine's cores
    # "sink": delivered, unpaced, to a stand-in that only answers 204 (Prefect's server on
    # other machines, as in production): everything bulkstate does for delivery (record, read,
    # build, post, delete) on these cores, without Prefect's ingestion. Prefect's server is
    # stopped (SIGSTOP) in every variant but "with", so that its services' own periodic work
    # does not share the cores with the variants compared against "without" either
    pid = live_pid()
    sink, sink_url = start_sink()
    variants = [("without", {}), ("with", {"BULKSTATE_PREFECT_API_URL": api}),
                ("sink", {"BULKSTATE_PREFECT_API_URL": sink_url,
                          "BULKSTATE_PREFECT_MAX_EVENTS_PER_S": "100000"})]
    if pid:
        variants.append(("outbox", {"BULKSTATE_PREFECT_API_URL": api}))
    # each variant on its own copy of the population, so that all of them apply the same
    # commands to the same runs (not to the runs the previous variant already moved); each
    # --delivery-repeats times, in a rotating order (a variant is not always the first on a
    # cold cache); the median of each is compared, and the spread printed
    runs = {label: [] for label, _ in variants}
    for rep in range(args.delivery_repeats):
        for label, extra in variants[rep % len(variants):] + variants[:rep % len(variants)]:
            db = f"bench_dv{label}"
            copy_population(db)
            cmds = make_commands(db, n, 5, f"dv{label}")
            topic = f"bench.dv{label}{rep}.{RUN}"
            topics(db, topic, 3)
            produce(topic, cmds)
            if pid and label != "with":
                os.kill(pid, signal.SIGSTOP)
            cost = Cost(db).start()
            live0 = cpu_s(process_tree(pid))
            try:
                elapsed, matched, _, wcpu, pcpu = run_workers(db, topic, f"bench-dv{label}{rep}",
                                                              f"dv{label}", n, 1, extra_env=extra)
            finally:
                if pid and label != "with":
                    os.kill(pid, signal.SIGCONT)
            c = cost.stop(matched)
            c["prefect_server_cpu_s"] = round(cpu_s(process_tree(pid)) - live0, 1)
            runs[label].append((matched / elapsed, c))
            psql("postgres", f"DROP DATABASE {db} WITH (FORCE)")
            print(f"delivery {label} #{rep + 1}: {n} commands, {matched} transitions in "
                  f"{elapsed:.1f} s: {matched / elapsed:.1f} transitions/s (CPU: worker "
                  f"{wcpu:.0f} s, PostgreSQL {pcpu:.0f} s, Prefect's server "
                  f"{c['prefect_server_cpu_s']} s); per transition: PostgreSQL CPU "
                  f"{c['pg_cpu_ms']} ms, WAL {c['wal_bytes']} bytes, {c['statements']} statements")
    sink.terminate()
    sink.wait(timeout=30)
    for label, got in runs.items():
        tps = sorted(t for t, _ in got)
        out[label] = statistics.median(tps)
        res[f"delivery_runs_{label}"] = [round(t, 1) for t, _ in got]
        res[f"cost_delivery_{label}"] = got[[t for t, _ in got].index(tps[len(tps) // 2])][1]
        print(f"delivery {label}: median {out[label]:.1f} transitions/s of {len(tps)} runs "
              f"(min {tps[0]:.1f}, max {tps[-1]:.1f})")
    # half load, open loop, with delivery; then Prefect's own record of when it received them.
    # The worker posts at most [prefect] max_events_per_s (200: what Prefect's bus takes here
    # without dropping), so a load whose events exceed it only queues in the outbox: the
    # delay is measured at half load or at half that pace, whichever is lower
    pace = float(os.environ.get("BULKSTATE_PREFECT_MAX_EVENTS_PER_S", "200"))
    per_cmd = matched / n if n else 1
    half = res["commands_per_s"] * 0.5
    rate = min(half, 0.5 * pace / max(per_cmd, 1))
    print(f"delivery delay at {rate:.2f} commands/s ({rate * per_cmd:.0f} events/s): half load "
          f"is {half:.1f} commands/s ({half * per_cmd:.0f} events/s), the pace {pace:.0f} "
          f"events/s")
    m = int(rate * args.latency_seconds)
    cmds = make_commands("bench", m, 6, "dvlat")
    topics("bench", f"bench.dvlat.{RUN}", 3)
    env = dict(env_for("bench", f"bench.dvlat.{RUN}", "bench-dvlat"), BULKSTATE_PREFECT_API_URL=api)
    w = subprocess.Popen([BIN, "worker"], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(OUT, "dvlat.log"), "w"))
    # the events the throughput run left undelivered go first: wait until they are (bounded:
    # 15 minutes), so that the delay measured is the steady one
    t_drain, end = time.time(), time.time() + 900
    while int(psql("bench", "SELECT count(*) FROM bulkstate.prefect_outbox")) > 0 and \
            time.time() < end:
        time.sleep(0.5)
    print(f"delivery: the earlier runs' backlog delivered in {time.time() - t_drain:.0f} s")
    t_start = psql("postgres", "SELECT now()")
    open_loop(f"bench.dvlat.{RUN}", cmds, rate)
    deadline = time.time() + 600
    while progress("bench", "dvlat")[0] < m and time.time() < deadline:
        time.sleep(0.2)
    while int(psql("bench", "SELECT count(*) FROM bulkstate.prefect_outbox")) > 0 and \
            time.time() < deadline:  # bounded: the outbox drains, or 10 minutes pass
        time.sleep(0.2)
    w.terminate()
    w.wait(timeout=60)
    live = os.environ["BS_LIVE_DB"]
    # Prefect's persister writes what it received in batches: wait until its count stops
    # growing for 3 s (bounded: 60 s)
    seen, still, end = -1, 0, time.time() + 60
    while still < 3 and time.time() < end:
        n = int(psql(live, f"SELECT count(*) FROM events WHERE occurred >= '{t_start}'"))
        still = still + 1 if n == seen else 0
        seen = n
        time.sleep(1)
    row = psql(live, "SELECT count(*), "
                     "percentile_cont(0.5) WITHIN GROUP (ORDER BY d), "
                     "percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d) FROM ("
                     "SELECT extract(epoch FROM received - occurred) * 1000 AS d FROM events "
                     f"WHERE occurred >= '{t_start}' AND event LIKE 'prefect.flow-run.%') e")
    cnt, p50, p99, mx = row.split("|")
    written = int(psql("bench", "SELECT count(*) FROM bulkstate.command_result "
                                "WHERE command_id LIKE 'dvlat-%' AND "
                                "(event IS NOT NULL OR state_id IS NOT NULL)"))
    if "outbox" in out:
        res.update(delivery_transitions_per_s_outbox_only=round(out["outbox"], 1),
                   delivery_cost_outbox_only=round(1 - out["outbox"] / out["without"], 3))
    res.update(delivery_transitions_per_s_sink=round(out["sink"], 1),
               delivery_cost_sink=round(1 - out["sink"] / out["without"], 3))
    res.update(delivery_transitions_per_s_without=round(out["without"], 1),
               delivery_transitions_per_s_with=round(out["with"], 1),
               delivery_cost=round(1 - out["with"] / out["without"], 3),
               delivery_events=int(cnt), delivery_events_written=written,
               delivery_p50_ms=round(float(p50 or 0), 1), delivery_p99_ms=round(float(p99 or 0), 1),
               delivery_max_ms=round(float(mx or 0), 1))
    res.update(delivery_rate_commands_per_s=round(rate, 2), delivery_half_load=round(half, 1))
    print(f"delivery at {rate:.2f} commands/s: {cnt} events in Prefect's history of "
          f"{written} written; state to Prefect's receipt p50 {res['delivery_p50_ms']} ms, p99 "
          f"{res['delivery_p99_ms']} ms, max {res['delivery_max_ms']} ms")
    print(f"delivery cost to the command path: {100 * res['delivery_cost']:.1f} % "
          f"({out['without']:.1f} -> {out['with']:.1f} transitions/s)")
    print(f"  bulkstate's own part, delivered unpaced to a sink on these cores (Prefect's "
          f"server elsewhere): {100 * res['delivery_cost_sink']:.1f} % ({out['without']:.1f} -> "
          f"{out['sink']:.1f} transitions/s)")
    if "outbox" in out:
        print(f"  of which recording the events (Prefect's server stopped meanwhile): "
              f"{100 * res['delivery_cost_outbox_only']:.1f} % ({out['without']:.1f} -> "
              f"{out['outbox']:.1f} transitions/s); the rest is Prefect's ingestion sharing "
              f"the cores")


# (workers, partitions, worker.threads)
SCALE_ROWS = [(1, 1, 1), (1, 3, 1), (1, 6, 1), (2, 1, 1), (2, 3, 1), (2, 6, 1), (1, 6, 2), (1, 6, 3)]


def machine_cpu():
    """The machine's CPU time so far, from /proc/stat's first line: (busy, iowait, total) in
    ticks; busy is user, nice, system, irq, softirq and steal, of every process (the broker's
    and the kernel's included)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal, iowait, sum(v)


def scenario_scale(args, res):
    print("\nscale (same backlog each time):")
    print(f"  {'workers':>7} {'threads':>7} {'partitions':>10} {'transitions/s':>14} "
          f"{'worker CPU s':>12} {'PostgreSQL CPU s':>16} {'wall s':>7} {'CPU busy':>8} "
          f"{'machine':>8} {'iowait':>7} {'waited for a core':>17}")
    tps = {}
    # 6 partitions as well: with 3, two workers split the partitions 2:1, so the second worker
    # can add at most half (1.5x) whatever the worker does; 6 split evenly. Then one worker of
    # 2 and 3 threads (worker.threads) against two workers of one
    # each row on its own copy of the population: on one database, which aged as the rows ran
    # one after the other, a row's figure depended on its place in the list (the first row was
    # the fastest one-worker row in both runs made so)
    for i, (workers, parts, threads) in enumerate(SCALE_ROWS):
        prefix = f"sc{i}"
        topic = f"bench.scale{i}.{RUN}"
        copy_population("bench_scale")
        cmds = make_commands("bench_scale", args.scale_commands, 10 + i, prefix)
        topics("bench_scale", topic, parts)
        produce(topic, cmds, parts)
        m0 = machine_cpu()
        waits = {}
        elapsed, matched, _, wcpu, pcpu = run_workers(
            "bench_scale", topic, f"bench-{prefix}", prefix, len(cmds), workers,
            extra_env={"BULKSTATE_WORKER_THREADS": str(threads)}, waits=waits)
        m1 = machine_cpu()
        psql("postgres", "DROP DATABASE bench_scale WITH (FORCE)")
        # the whole machine meanwhile: busy (every process) and waiting on the disk
        machine = (m1[0] - m0[0]) / max(1, m1[2] - m0[2])
        iowait = (m1[1] - m0[1]) / max(1, m1[2] - m0[2])
        tps[(workers, parts, threads)] = matched / elapsed
        # the share of the machine's cores the workers and PostgreSQL kept busy: which resource
        # saturates
        busy = (wcpu + pcpu) / (elapsed * os.cpu_count())
        print(f"  {workers:>7} {threads:>7} {parts:>10} {matched / elapsed:>14.1f} {wcpu:>12.1f} "
              f"{pcpu:>16.1f} {elapsed:>7.1f} {busy:>8.0%} {machine:>8.0%} {iowait:>7.0%} "
              f"{waits['postgres']:>7.1f} + {waits['workers']:<7.1f}")
        key = f"scale_w{workers}_p{parts}" + (f"_t{threads}" if threads > 1 else "")
        res[f"{key}_transitions_per_s"] = round(matched / elapsed, 1)
        res[f"{key}_cpu_busy"] = round(busy, 3)
        res[f"{key}_postgres_cpu_share"] = round(pcpu / (wcpu + pcpu), 3)
        res[f"{key}_machine_busy"] = round(machine, 3)
        res[f"{key}_iowait"] = round(iowait, 3)
        # runnable, but both cores were busy: the CPU held PostgreSQL and the workers up
        res[f"{key}_postgres_waited_for_core_s"] = round(waits["postgres"], 2)
        res[f"{key}_workers_waited_for_core_s"] = round(waits["workers"], 2)
    res["two_worker_speedup"] = round(tps[(2, 6, 1)] / tps[(1, 6, 1)], 2)
    res["two_worker_speedup_3_partitions"] = round(tps[(2, 3, 1)] / tps[(1, 3, 1)], 2)
    print(f"  2 workers / 1: {res['two_worker_speedup']} with 6 partitions, "
          f"{res['two_worker_speedup_3_partitions']} with 3 (split 2:1, at most 1.5)")
    best = max(((1, 6, t) for t in (2, 3)), key=lambda k: tps[k])
    res["threads_best"] = best[2]
    res["threads_speedup"] = round(tps[best] / tps[(1, 6, 1)], 2)
    res["threads_to_two_workers"] = round(tps[best] / tps[(2, 6, 1)], 2)
    res["scale_best_one_worker_transitions_per_s"] = round(tps[best], 1)
    print(f"  1 worker of {best[2]} threads / 1 worker of 1: {res['threads_speedup']}; "
          f"/ 2 workers of 1: {res['threads_to_two_workers']} (6 partitions)")


def live_pid():
    """The pid of the Prefect server with its services (scripts/prefect.sh start-live), or None."""
    pid_file = os.environ.get("BS_LIVE_PID_FILE")
    try:
        return int(open(pid_file).read()) if pid_file else None
    except (OSError, ValueError):
        return None


def live_server(sig):
    """Stops (SIGSTOP) or continues (SIGCONT) the Prefect server with its services, which only
    the delivery scenario uses: its services' polling would otherwise share the cores with
    every other scenario. Returns whether there is one (signal 0 only asks)."""
    pid = live_pid()
    try:
        if pid:
            os.kill(pid, sig)
            return True
    except OSError:
        pass
    return False


def ratios(r):
    if r.get("floor_transitions_per_s"):
        r["ratio_to_floor"] = round(r["transitions_per_s"] / r["floor_transitions_per_s"], 3)
    if r.get("prefect_transitions_per_s"):
        r["ratio_to_prefect"] = round(r["transitions_per_s"] / r["prefect_transitions_per_s"], 1)


def interleaved_chunk_bulkstate(db, topic, port, proc, chunk, done_before):
    """One chunk through the running worker: seconds from its first claim to its last record
    (the database's clocks: no polling in the figure) and its transitions."""
    produce(topic, chunk)
    deadline = time.time() + 600
    while metric_progress([port])[0] < done_before + len(chunk):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the interleaved run's worker stopped or stalled: see {OUT}/il.0.log")
        time.sleep(0.05)
    ids = ",".join(f"'{c['command_id']}'" for c in chunk)
    row = psql(db, "SELECT extract(epoch FROM max(completed) - min(created)), sum(matched), "
                   f"count(*) FROM bulkstate.command WHERE status = 'done' AND command_id IN ({ids})")
    secs, rows, n = row.split("|")
    if int(n) != len(chunk):
        raise SystemExit(f"interleaved run: {n} of {len(chunk)} commands done")
    return float(secs), int(rows)


def interleaved_chunk_floor(db, lines):
    """One chunk through psql: seconds from its first statement to its last (the database's
    clocks: psql's start and connection left out) and its transitions."""
    out, rows = run_floor_script(
        db, "floor_chunk.sql",
        ["SELECT extract(epoch FROM clock_timestamp()) AS bs_t0 \\gset"] + lines +
        ["SELECT extract(epoch FROM clock_timestamp()) AS bs_t1 \\gset",
         "\\echo TIMES :bs_t0 :bs_t1"])
    t = next(l.split() for l in out.splitlines() if l.startswith("TIMES "))
    return float(t[2]) - float(t[1]), rows


def scenario_interleaved(args, res):
    """bulkstate and the floor in turns on the same commands, --chunk-commands at a time
    (bulkstate, floor, floor, bulkstate, ...), each timed by the database from its first
    statement to its last. Run one after the other, identical pairs of the two gave ratios
    from 0.72 to 1.03 here: every phase of bulkstate's commands, and the floor's statements,
    ran up to a fifth slower in one half-minute than in the next. In turns of a few seconds,
    both meet the same machine; the ratio's target is checked against this run."""
    n, size = args.interleaved_commands, args.chunk_commands
    db, fdb = "bench_il", "bench_il_floor"
    copy_population(db)
    copy_population(fdb)
    cmds = make_commands(db, n, 1, "il")
    floor = floor_statements(cmds, fdb)
    topic = f"{db}.il.{RUN}"
    topics(db, topic, 3)
    port = free_port()
    proc = subprocess.Popen([BIN, "worker"],
                            env=dict(env_for(db, topic, f"{db}-il"),
                                     BULKSTATE_WORKER_METRICS_LISTEN=f"127.0.0.1:{port}"),
                            stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(OUT, "il.0.log"), "w"))
    try:
        deadline = time.time() + 120
        while "bulkstate_assigned_partitions 3" not in metrics_text(port):
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the interleaved run's worker did not join: see {OUT}/il.0.log")
            time.sleep(0.1)
        t = {"bulkstate": [0.0, 0], "floor": [0.0, 0]}
        for j, k in enumerate(range(0, n, size)):
            for who in (("bulkstate", "floor") if j % 2 == 0 else ("floor", "bulkstate")):
                if who == "bulkstate":
                    secs, rows = interleaved_chunk_bulkstate(db, topic, port, proc,
                                                             cmds[k:k + size], k)
                else:
                    secs, rows = interleaved_chunk_floor(
                        fdb, [line for c in floor[k:k + size] for line in c])
                t[who][0] += secs
                t[who][1] += rows
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        for d in (db, fdb):
            psql("postgres", f"DROP DATABASE {d} WITH (FORCE)")
    b, f = (t[w][1] / t[w][0] for w in ("bulkstate", "floor"))
    res.update(interleaved_commands=n, interleaved_chunk=size,
               interleaved_transitions_per_s=round(b, 1),
               interleaved_floor_transitions_per_s=round(f, 1),
               interleaved_ratio_to_floor=round(b / f, 3))
    print(f"\nbulkstate and the floor in turns of {size} commands ({n} commands, "
          f"{t['floor'][1]} transitions each way): bulkstate {b:.1f} transitions/s in "
          f"{t['bulkstate'][0]:.1f} s, the floor {f:.1f} in {t['floor'][0]:.1f} s: "
          f"{res['interleaved_ratio_to_floor']}")


def headline_modes(args, res, modes, skip):
    """throughput, floor and Prefect's endpoint in each durability mode, each on its own copy of
    the population: res (the first mode's figures, the headline), res[mode] for the others."""
    for i, mode in enumerate(modes):
        r = res if i == 0 else res.setdefault(mode, {})
        r["durability"] = set_durable(mode == "durable")
        db = "bench" if i == 0 else f"bench_{mode}"
        if i > 0:
            copy_population(db)
        print(f"\n==== PostgreSQL {mode}: " +
              ", ".join(f"{k}={v}" for k, v in r["durability"].items()))
        cmds = scenario_throughput(args, r, db)
        if "floor" not in skip:
            copy_population(f"{db}_floor")
            scenario_floor(args, r, cmds, f"{db}_floor")
            psql("postgres", f"DROP DATABASE {db}_floor WITH (FORCE)")
        if "prefect" not in skip:
            scenario_prefect(args, r, 2 + 2 * i)  # another seed: its population is not copied
        ratios(r)
        if i == 0 and "floor" not in skip and args.interleaved_commands > 0:
            scenario_interleaved(args, r)
        if i > 0:
            psql("postgres", f"DROP DATABASE {db} WITH (FORCE)")
    set_durable(modes[0] == "durable")


def print_cost(res, modes):
    print("\ncost per transition (PostgreSQL: CPU of all its processes, WAL, statements in the "
          "scenario's database)")
    print(f"  {'':<12} {'':<10} {'CPU ms':>8} {'WAL bytes':>10} {'statements':>10}")
    for i, mode in enumerate(modes):
        r = res if i == 0 else res.get(mode, {})
        for who in ("bulkstate", "floor", "prefect"):
            c = r.get(f"cost_{who}")
            if c:
                print(f"  {mode:<12} {who:<10} {c['pg_cpu_ms']:>8} {c['wal_bytes']:>10} "
                      f"{c['statements']:>10}" +
                      ("  (undercounted: statements evicted)" if c.get("statements_undercounted")
                       else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=23000)
    ap.add_argument("--prefect-commands", type=int, default=200)
    ap.add_argument("--latency-seconds", type=int, default=60)
    ap.add_argument("--scale-commands", type=int, default=3000)
    ap.add_argument("--interleaved-commands", type=int, default=3000,
                    help="commands of the headline mode's run of bulkstate and the floor in "
                         "turns, against which the floor target is checked (0: none)")
    ap.add_argument("--chunk-commands", type=int, default=100)
    ap.add_argument("--delivery-commands", type=int, default=3000)
    ap.add_argument("--delivery-repeats", type=int, default=3)
    ap.add_argument("--tail", default="",
                    help="only the tail hypotheses whose names contain one of these (comma-separated)")
    ap.add_argument("--skip", default="", help="comma-separated scenarios to skip")
    ap.add_argument("--durability", default="durable,nondurable",
                    help="PostgreSQL modes for throughput, floor and Prefect, the first one the "
                         "headline (and the mode of latency, scale and delivery)")
    ap.add_argument("--reload", action="store_true",
                    help=f"load the population again even when {PRISTINE} holds it")
    args = ap.parse_args()
    modes = args.durability.split(",")
    if any(m not in ("durable", "nondurable") for m in modes):
        ap.error("--durability: durable and/or nondurable")
    os.makedirs(OUT, exist_ok=True)
    skip = set(args.skip.split(","))
    res = {"machine": f"{os.cpu_count()} cores, "
                      f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB",
           "disk": disk_facts()}
    print(f"disk: {res['disk']}")
    res["shared_buffers"] = check_shared_buffers()
    res["checkpoints"] = set_checkpoints()
    print(f"PostgreSQL checkpoints: {res['checkpoints']}")
    live_server(signal.SIGSTOP)
    try:
        run_all(args, res, modes, skip)
    finally:
        live_server(signal.SIGCONT)


def run_all(args, res, modes, skip):
    t0 = time.time()
    set_durable(False)  # loading and copying need no durability
    loaded = load("bench", args.reload)
    print(f"population: 1,000,000 runs with their states, "
          f"{'loaded' if loaded else 'copied from the one kept in ' + PRISTINE} in "
          f"{time.time() - t0:.0f} s")
    headline_modes(args, res, modes, skip)
    if "latency" not in skip:
        scenario_latency(args, res)
        if "tail" not in skip:
            scenario_tail(args, res)
    if "scale" not in skip:
        scenario_scale(args, res)
    if "delivery" not in skip:
        live_server(signal.SIGCONT)
        scenario_delivery(args, res)
    if res.get("prefect_transitions_per_s"):
        if res.get("scale_w2_p6_transitions_per_s"):  # each side in its best configuration
            res["ratio_two_workers_to_prefect"] = round(
                res["scale_w2_p6_transitions_per_s"] / res["prefect_transitions_per_s"], 1)
        if res.get("scale_best_one_worker_transitions_per_s"):
            res["ratio_threads_to_prefect"] = round(
                res["scale_best_one_worker_transitions_per_s"] / res["prefect_transitions_per_s"], 1)
    print("\nsummary")
    cols = [(m, res if i == 0 else res.get(m, {})) for i, m in enumerate(modes)]
    print(f"  {'':<30} " + " ".join(f"{m:>12}" for m, _ in cols))
    for name, key in [("bulkstate transitions/s", "transitions_per_s"),
                      ("floor transitions/s", "floor_transitions_per_s"),
                      ("Prefect transitions/s (best)", "prefect_transitions_per_s"),
                      ("bulkstate / floor", "ratio_to_floor"),
                      ("  in turns (interleaved)", "interleaved_ratio_to_floor"),
                      ("bulkstate / Prefect", "ratio_to_prefect")]:
        print(f"  {name:<30} " + " ".join(f"{str(r.get(key)):>12}" for _, r in cols))
    print_cost(res, modes)
    growth = (round(res["rss_mb_1m"] - res["rss_mb_100k"], 1)
              if res.get("rss_mb_1m") and res.get("rss_mb_100k") else None)
    threads_tail = res.get("tail_hypotheses", {}).get("worker.threads 3: one thread per partition",
                                                      {})
    print(f"\ntargets ({modes[0]})")
    targets = [("transitions_per_s / prefect", res.get("ratio_to_prefect"), ">=", 25),
               ("  2 workers (scale) / prefect", res.get("ratio_two_workers_to_prefect"), ">=", 25),
               (f"  1 worker, {res.get('threads_best') or 'n'} threads / prefect",
                res.get("ratio_threads_to_prefect"), ">=", 25),
               ("/ floor, in turns" if res.get("interleaved_ratio_to_floor")
                else "transitions_per_s / floor",
                res.get("interleaved_ratio_to_floor", res.get("ratio_to_floor")), ">=", 0.85),
               ("p50 ms at 50% load", res.get("p50_ms_half_load"), "<=", 30),
               ("  worker.threads 3 (tail run)", threads_tail.get("p50"), "<=", 30),
               ("p99 ms at 50% load", res.get("p99_ms_half_load"), "<=", 100),
               ("  worker.threads 3 (tail run)", threads_tail.get("p99"), "<=", 100),
               ("RSS growth 100k -> 1M (MB)", growth, "<", 5),
               ("2 workers / 1 (6 partitions)", res.get("two_worker_speedup"), ">=", 1.8),
               ("  1 worker, threads / 2 workers", res.get("threads_to_two_workers"), ">=", 0.9),
               ("delivery to Prefect: cost", res.get("delivery_cost"), "<=", 0.05),
               ("  bulkstate's part (a sink)", res.get("delivery_cost_sink"), "<=", 0.05),
               ("  recording the events only", res.get("delivery_cost_outbox_only"), "<=", 0.05),
               ("  state to Prefect p99 ms", res.get("delivery_p99_ms"), "<=", 1000)]
    for name, val, op, bound in targets:
        met = "" if val is None else ("met" if {">=": val >= bound, "<=": val <= bound,
                                                "<": val < bound}[op] else "NOT met")
        print(f"  {name:<30} {str(val):>10}   target {op} {bound:<6} {met}")
    print_limits(res)  # (it adds its figures to res)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(f"results: {os.path.join(OUT, 'results.json')}")


def print_limits(res):
    """What bounds the targets on this machine, from the same run's figures."""
    print("\nlimits (same run)")
    floor, prefect = res.get("floor_transitions_per_s"), res.get("prefect_transitions_per_s")
    if floor and prefect:
        res["ratio_floor_to_prefect"] = round(floor / prefect, 1)
        print(f"  floor / Prefect {res['ratio_floor_to_prefect']}x: bulkstate writes what the "
              f"floor writes and more, so its ratio to Prefect stays below this")
    if res.get("floor_s") and res.get("commands"):
        res["floor_ms_per_command"] = round(1000 * res["floor_s"] / res["commands"], 1)
        print(f"  the floor's time per command {res['floor_ms_per_command']} ms (one statement, "
              f"{res['floor_transitions'] / res['commands']:.1f} transitions): with one command "
              f"at a time per worker, a command's latency does not go below it")
    if res.get("throughput_s"):
        pg, w = res["postgres_cpu_s"] / res["throughput_s"], res["worker_cpu_s"] / res["throughput_s"]
        print(f"  throughput run: PostgreSQL busy {pg:.2f} cores, the worker {w:.2f}, of "
              f"{os.cpu_count()}")
    one, two = res.get("scale_w1_p6_machine_busy"), res.get("scale_w2_p6_machine_busy")
    if one and two:
        res["two_workers_bound"] = round(min(2.0, 1 / one), 2)
        print(f"  2 workers: one kept {one:.0%} of the machine busy, so two reach at most "
              f"{res['two_workers_bound']}x, every core busy all the time; they reached "
              f"{res.get('two_worker_speedup')}x with it {two:.0%} busy")


if __name__ == "__main__":
    sys.exit(main())
