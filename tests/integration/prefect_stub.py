#!/usr/bin/env python3
"""A stand-in for Prefect's events API, for fault injection in tests/integration/outbox.sh
(the real server's behaviour is checked by tests/live/prefect_live.py): POST .../events takes a
JSON array of events and answers 204, after --unavailable answers of 503 first (and while the
--down-file exists); a batch holding
an event about --refuse-run is answered 422, as Prefect answers an event it cannot validate.
Every accepted event is appended to --log as one JSON line {"id", "resource", "event",
"batch", "whole"}; the listening port is written to --port-file once it listens. Without --log it only
answers 204 (the benchmark's stand-in for a Prefect server on other machines)."""
import argparse
import http.server
import json
import os
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--port-file", required=True)
ap.add_argument("--log", default="")
ap.add_argument("--unavailable", type=int, default=0)
ap.add_argument("--refuse-run", default="")
ap.add_argument("--down-file", default="")
args = ap.parse_args()
lock = threading.Lock()
state = {"unavailable": args.unavailable, "batches": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self.path.endswith("/events"):
            return self.answer(404, b'{"detail": "Not Found"}')
        if not args.log:
            return self.answer(204)
        with lock:
            if state["unavailable"] > 0 or (args.down_file and os.path.exists(args.down_file)):
                state["unavailable"] = max(0, state["unavailable"] - 1)
                return self.answer(503, b'{"detail": "unavailable"}')
            events = json.loads(body)
            if args.refuse_run and any(e["resource"]["prefect.resource.id"] ==
                                       "prefect.flow-run." + args.refuse_run for e in events):
                return self.answer(422, b'{"detail": "invalid event"}')
            state["batches"] += 1
            with open(args.log, "a") as f:
                for e in events:
                    f.write(json.dumps({"id": e["id"], "event": e["event"],
                                        "resource": e["resource"]["prefect.resource.id"],
                                        "batch": state["batches"], "whole": e}) + "\n")
        self.answer(204)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
srv.serve_forever()
