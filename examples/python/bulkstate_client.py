#!/usr/bin/env python3
"""A bulkstate client in Python: confluent-kafka for Kafka, fastavro for Avro.

    bulkstate_client.py send COMMAND.json [--format avro|json] [--schema FILE]
    bulkstate_client.py follow COMMAND_ID

`send` produces one command (Avro single-object framing by default, or JSON with the
`content-type: application/json` header) and follows its replies to the completion; `follow`
only reads. Replies are printed as JSON lines. What a client needs to know:
- a command's key and `command-id` header are its `command_id`; its replies are keyed by it too,
  so they share one partition and arrive in order: the results (`seq` 0..n-1), then the
  completion;
- every reply has the header `bulkstate.kind`: `result` or `completion` (a completion has no
  `seq`); in Avro, the single-object fingerprint says which schema wrote it;
- single-object framing is C3 01, the CRC-64-AVRO fingerprint of the schema's parsing canonical
  form (8 bytes, little-endian), then the Avro body;
- a `traceparent` header on the command comes back on every reply.

Settings: BOOTSTRAP (default $BULKSTATE_KAFKA_BOOTSTRAP_SERVERS), COMMAND_TOPIC
(bulkstate.commands), REPLY_TOPIC (bulkstate.replies), SCHEMAS (the repository's schemas/).
"""
import argparse
import io
import json
import os
import sys
import time
import uuid

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.environ.get("SCHEMAS", os.path.join(HERE, "..", "..", "schemas"))
BOOTSTRAP = os.environ.get("BOOTSTRAP", os.environ.get("BULKSTATE_KAFKA_BOOTSTRAP_SERVERS",
                                                       "127.0.0.1:9092"))
COMMAND_TOPIC = os.environ.get("COMMAND_TOPIC", "bulkstate.commands")
REPLY_TOPIC = os.environ.get("REPLY_TOPIC", "bulkstate.replies")


def load(path):
    """A schema file, parsed, and its single-object fingerprint (8 bytes, little-endian)."""
    with open(path) as f:
        raw = json.load(f)
    parsed = fastavro.parse_schema(raw, _write_hint=False)
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    # fastavro gives the fingerprint's 8 bytes in their wire (little-endian) order
    return parsed, bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


def single_object(schema_path, record):
    schema, fp = load(schema_path)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return b"\xc3\x01" + fp + buf.getvalue()


def command_record(body):
    """The request body in the command schema's shape: state.data as JSON text."""
    rec = dict(body)
    state = dict(rec["state"])
    if "data" in state and state["data"] is not None:
        state["data"] = json.dumps(state["data"])
    rec["state"] = state
    return rec


def reply_readers():
    """fingerprint -> (writer schema, what it is) for every reply schema version known."""
    out = {}
    for name, kind in (("FlowRunOrchestrationResult", "result"),
                       ("BulkSetStateCompleted", "completion")):
        paths = [os.path.join(SCHEMAS, f"{name}.avsc")]
        vdir = os.path.join(SCHEMAS, "versions", name)
        if os.path.isdir(vdir):
            paths += [os.path.join(vdir, f) for f in sorted(os.listdir(vdir))]
        for p in paths:
            schema, fp = load(p)
            out[fp] = (schema, kind)
    return out


def decode_reply(value, readers, reader_schemas=None):
    """A reply's record: JSON framing, or Avro single-object read with its writer's schema,
    resolved to the reader schema held for its kind when given ({"result": ..., "completion":
    ...}: a reader holding an older version)."""
    if value[:2] != b"\xc3\x01":
        return json.loads(value)
    writer, kind = readers[value[2:10]]
    reader = (reader_schemas or {}).get(kind)
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), writer, reader)


def follow(command_id, timeout=60, reader_schemas=None, start_at=None):
    """The replies of command_id, in order, until its completion (bounded by timeout)."""
    readers = reply_readers()
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"example-{uuid.uuid4()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(REPLY_TOPIC, timeout=10)
    parts = [TopicPartition(REPLY_TOPIC, p, start_at.get(p, 0) if start_at else 0)
             for p in md.topics[REPLY_TOPIC].partitions]
    c.assign(parts)
    replies, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error() or (m.key() or b"").decode("utf-8", "replace") != command_id:
                continue
            headers = dict(m.headers() or [])
            rec = decode_reply(m.value(), readers, reader_schemas)
            rec["_kind"] = headers.get("bulkstate.kind", b"").decode()
            rec["_traceparent"] = headers.get("traceparent", b"").decode() or None
            replies.append(rec)
            if rec["_kind"] == "completion":
                return replies
        return replies
    finally:
        c.close()


def ends(topic):
    """The end offset of each partition of topic: replies of a command sent now come after."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"example-{uuid.uuid4()}"})
    try:
        md = c.list_topics(topic, timeout=10)
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in md.topics[topic].partitions}
    finally:
        c.close()


def send(body, fmt="avro", schema=None, headers=None):
    """Produces one command; returns its id."""
    cid = body.setdefault("command_id", str(uuid.uuid4()))
    hdrs = [("command-id", cid.encode())] + list(headers or [])
    if fmt == "json":
        value = json.dumps(body).encode()
        hdrs.append(("content-type", b"application/json"))
    else:
        value = single_object(schema or os.path.join(SCHEMAS, "BulkSetStateCommand.avsc"),
                              command_record(body))
    p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True})
    p.produce(COMMAND_TOPIC, key=cid.encode(), value=value, headers=hdrs)
    if p.flush(30) != 0:
        raise RuntimeError("the command was not acknowledged within 30 s")
    return cid


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("file")
    s.add_argument("--format", choices=["avro", "json"], default="avro")
    s.add_argument("--schema", help="the command schema version to write with")
    f = sub.add_parser("follow")
    f.add_argument("command_id")
    a = ap.parse_args()
    if a.cmd == "send":
        with open(a.file) as fh:
            body = json.load(fh)
        start = ends(REPLY_TOPIC)
        cid = send(body, a.format, a.schema)
        replies = follow(cid, start_at=start)
    else:
        replies = follow(a.command_id)
    for r in replies:
        print(json.dumps(r, default=str))
    return 0 if replies and replies[-1]["_kind"] == "completion" else 2


if __name__ == "__main__":
    sys.exit(main())
