#!/usr/bin/env python3
"""Schema versions and the example client, with an independent Avro implementation (fastavro)
and Kafka client (confluent-kafka) against the real broker and a running worker:
1. every released version of each schema and the current one read each other's records both
   ways (Avro's resolution rules, 200 generated records per pair), and a deliberately
   incompatible change (a new field without a default, a changed type) fails that check;
2. a command written with every command version, single-object and Confluent framing (ids
   mapped by worker.confluent_command_versions), is applied by today's worker;
3. today's replies are read by readers holding every older reply version;
4. the example client sends in Avro and in JSON and follows its replies to the completion, and
   a traceparent comes back on every reply.
Prints `schema-compat: pairs=... compatible=... incompatible_detected=...` and
`clients: ...`; exits 1 on any failed check."""
import copy
import io
import json
import os
import struct
import subprocess
import sys

import fastavro
from fastavro.utils import generate_many

SRC = os.environ["BS_SOURCE_DIR"]
sys.path.insert(0, os.path.join(SRC, "examples", "python"))
import bulkstate_client as client  # noqa: E402

FAILED = []
PREFIX = "0199b000-0000-7000-8000-"
FAMILIES = ["BulkSetStateCommand", "FlowRunOrchestrationResult", "BulkSetStateCompleted"]


def check(name, ok, detail=""):
    print(f"{'ok' if ok else 'NOT OK'} - {name}{': ' + str(detail)[:300] if not ok else ''}",
          flush=True)
    if not ok:
        FAILED.append(name)


def versions(family):
    vdir = os.path.join(SRC, "schemas", "versions", family)
    paths = [os.path.join(vdir, f) for f in sorted(os.listdir(vdir), key=lambda f: int(f[:-5]))]
    return paths + [os.path.join(SRC, "schemas", f"{family}.avsc")]


def raw(path):
    with open(path) as f:
        return json.load(f)


def reads(writer_raw, reader_raw, n=200):
    """Records generated for the writer, written with it, read with the reader: None, or why
    not."""
    w = fastavro.parse_schema(copy.deepcopy(writer_raw), _write_hint=False)
    r = fastavro.parse_schema(copy.deepcopy(reader_raw), _write_hint=False)
    try:
        for rec in generate_many(w, n):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, w, rec)
            buf.seek(0)
            fastavro.schemaless_reader(buf, w, r)
    except Exception as ex:  # the resolution error is the finding
        return f"{type(ex).__name__}: {ex}"
    return None


def compat():
    pairs = ok = 0
    for fam in FAMILIES:
        vs = versions(fam)
        for i, a in enumerate(vs):
            for b in vs[i + 1:]:
                for w, r in ((a, b), (b, a)):  # old data, new reader; new data, old reader
                    pairs += 1
                    why = reads(raw(w), raw(r))
                    ok += why is None
                    check(f"{fam}: {os.path.relpath(w, SRC)} read as {os.path.relpath(r, SRC)}",
                          why is None, why)
    # deliberately incompatible changes must fail the same check
    cur = raw(os.path.join(SRC, "schemas", "BulkSetStateCommand.avsc"))
    old = raw(versions("BulkSetStateCommand")[0])
    no_default = copy.deepcopy(cur)
    no_default["fields"].append({"name": "priority", "type": "int"})
    retyped = copy.deepcopy(cur)
    for f in retyped["fields"]:
        if f["name"] == "command_id":
            f["type"] = "int"
    detected = 0
    for name, bad in (("a new field without a default", no_default),
                      ("command_id made an int", retyped)):
        why = reads(old, bad)
        detected += why is not None
        check(f"incompatible change detected: {name}", why is not None)
    print(f"schema-compat: pairs={pairs} compatible={ok} incompatible_detected={detected} of 2",
          flush=True)


def body(k, t="CANCELLED"):
    return {"command_id": f"clients-{k}", "flow_runs": {"id": {"any_": [f"{PREFIX}{k:012x}"]}},
            "state": {"type": t}, "force": True}


def applied(replies):
    c = replies[-1] if replies else {}
    return c.get("_kind") == "completion" and c.get("matched") == 1 and c.get("accepted") == 1


def worker_side():
    cmd_versions = versions("BulkSetStateCommand")
    k = 0
    first = None  # where the replies of clients-1 start
    # 2. every command version, single-object framing
    for path in cmd_versions:
        k += 1
        start = client.ends(client.REPLY_TOPIC)
        first = first or start
        cid = client.send(body(k), "avro", schema=path)
        rep = client.follow(cid, start_at=start)
        check(f"a command written with {os.path.relpath(path, SRC)} is applied", applied(rep), rep)
    # ... and Confluent framing, ids 41 (version 1) and 42 (current), from the environment
    for cid_reg, path in ((41, cmd_versions[0]), (42, cmd_versions[-1])):
        k += 1
        schema, _ = client.load(path)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, client.command_record(body(k)))
        value = b"\x00" + struct.pack(">I", cid_reg) + buf.getvalue()
        start = client.ends(client.REPLY_TOPIC)
        p = client.Producer({"bootstrap.servers": client.BOOTSTRAP})
        cid = f"clients-{k}"
        p.produce(client.COMMAND_TOPIC, key=cid.encode(), value=value,
                  headers=[("command-id", cid.encode())])
        p.flush(30)
        rep = client.follow(cid, start_at=start)
        check(f"Confluent id {cid_reg} ({os.path.relpath(path, SRC)}) is applied", applied(rep),
              rep)
    # 3. today's replies, read by readers holding every reply version
    for vr, vc in zip(versions("FlowRunOrchestrationResult"), versions("BulkSetStateCompleted")):
        readers = {"result": fastavro.parse_schema(raw(vr), _write_hint=False),
                   "completion": fastavro.parse_schema(raw(vc), _write_hint=False)}
        rep = client.follow("clients-1", reader_schemas=readers, start_at=first)
        check(f"today's replies read with {os.path.relpath(vr, SRC)} and "
              f"{os.path.relpath(vc, SRC)}", len(rep) == 2 and rep[0].get("status") == "ACCEPT"
              and rep[1].get("matched") == 1, rep)
    # 4. the example in JSON, with a trace context
    k += 1
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    start = client.ends(client.REPLY_TOPIC)
    cid = client.send(body(k, "FAILED"), "json", headers=[("traceparent", tp.encode())])
    rep = client.follow(cid, start_at=start)
    check("a JSON command through the example is applied", applied(rep), rep)
    check("every reply carries its traceparent", rep and all(r["_traceparent"] == tp for r in rep),
          rep)
    check("replies say what they are", [r["_kind"] for r in rep] == ["result", "completion"], rep)
    print(f"clients: commands={k} failed={len(FAILED)}", flush=True)


def main():
    compat()
    if "--compat-only" not in sys.argv:
        worker_side()
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
