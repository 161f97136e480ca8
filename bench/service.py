"""The online experiment service over real HTTP on loopback: uvicorn in a subprocess, the load
generator here (both on the same cores).

    .venv/bin/python bench/service.py [--seconds 10] [--connections 8]

Prints, side by side with the issue's targets: assign requests/s and p50/p99 latency (next to the
same load on a FastAPI endpoint that does nothing: the floor of the stack on this machine); feedback
events/s in batches of 1,000 (each batch durable before its reply); client-side assignment
decisions/s from a weights snapshot; time to ready after a SIGKILL and events lost (acknowledged
before the kill, missing after). The load generator is a minimal asyncio HTTP/1.1 keep-alive
client on uvloop, so the figures are the service's, not an HTTP library's: its time is in every
HTTP figure (the bare endpoints' too), and on asyncio's own loop it was ~0.15 ms more a request
(bare /rank endpoint p50 0.90 vs 0.75 ms, interleaved blocks, 2 shared cores at load ~7).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bandit.client import LocalAssigner  # noqa: E402
from recsys.app.rank import example_request  # noqa: E402

TOKEN = "bench-token"
SPEC = {"id": "bench", "arms": ["fp32", "int8", "int4"], "policy": "DecisionTS", "options": {},  # the default
        "rule": {"type": "DecisionRule", "fields": {"control": "fp32", "min_requests": 1000}}, "salt": "bench",
        "recompute_every": 1000, "recompute_seconds": 5.0, "costs": []}


class Service:
    def __init__(self, folder: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.spec, self.store = folder / "spec.json", folder / "store.db"
        self.spec.write_text(json.dumps(SPEC))
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        t = time.perf_counter()
        env = {**os.environ, "RECSYS_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "recsys.app.serve", "--spec", str(self.spec), "--store",
                                      str(self.store), "--port", str(self.port)], env=env)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return time.perf_counter() - t
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("the service exited") from None
                time.sleep(0.01)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


BARE = """
import sys, uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
app = FastAPI()
class Body(BaseModel):
    unit_id: str
@app.post("/v1/experiments/bench/assign")
async def assign(body: Body):
    return JSONResponse({"decision_id": "d", "arm": "a", "propensity": 0.5, "weights_version": 1})
@app.get("/readyz")
async def ready():
    return {}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def bare_endpoint(seconds: float, connections: int) -> np.ndarray:
    """The same load on a FastAPI endpoint that does nothing: the floor of this stack on this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", BARE, str(port)])
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        uvloop.run(assign_load(port, 1.0, connections))
        return uvloop.run(assign_load(port, seconds, connections))[0]
    finally:
        proc.terminate()
        proc.wait()


class Connection:
    """One keep-alive HTTP/1.1 connection: POST JSON, read the JSON reply."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the service closed the connection")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def assign_load(port: int, seconds: float, connections: int) -> tuple[np.ndarray, list[str]]:
    """Assign requests on `connections` connections for `seconds`; latencies (ms) and decision ids."""
    latencies: list[float] = []
    decisions: list[str] = []
    end = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        conn = await Connection(port).open()
        i = 0
        while time.perf_counter() < end:
            body = json.dumps({"unit_id": f"user-{k}-{i}"}).encode()
            t = time.perf_counter()
            status, reply = await conn.post("/v1/experiments/bench/assign", body)
            latencies.append((time.perf_counter() - t) * 1e3)
            assert status == 200, reply
            decisions.append(json.loads(reply)["decision_id"])
            i += 1
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(connections)))
    return np.array(latencies), decisions


async def feedback_load(port: int, decisions: list[str], batch: int, connections: int, tag: str) -> tuple[float, int]:
    """Every decision's feedback in batches; (seconds, events) with each batch acknowledged."""
    batches = [decisions[i:i + batch] for i in range(0, len(decisions) - batch + 1, batch)]
    rng = np.random.default_rng(0)
    bodies = [json.dumps({"events": [{"event_id": f"{tag}-{d}", "decision_id": d, "reward": float(rng.random() < 0.1),
                                      "latency_ms": 5.0} for d in b]}).encode() for b in batches]
    queue = list(bodies)
    t = time.perf_counter()

    async def worker() -> None:
        conn = await Connection(port).open()
        while queue:
            status, reply = await conn.post("/v1/experiments/bench/feedback", queue.pop())
            assert status == 200, reply
        conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t, batch * len(bodies)


def client_side(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/experiments/bench/weights") as r:
        assigner = LocalAssigner.from_snapshot(json.loads(r.read()))
    ids = [f"user-{i}" for i in range(1_000_000)]
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        assigner.assign_many(ids)
        best = max(best, len(ids) / (time.perf_counter() - t))
    return best


async def kill_during_feedback(service: Service, decisions: list[str]) -> tuple[float, int, int]:
    """Feedback batches of 100 on 2 connections, a SIGKILL once a third is acknowledged; (seconds to
    ready from the restart, events acknowledged before the kill, acknowledged events missing after)."""
    acked: list[str] = []
    batches = [decisions[i:i + 100] for i in range(0, len(decisions) - 99, 100)]

    async def worker() -> None:
        conn = await Connection(service.port).open()
        while batches:
            events = [{"event_id": f"kill-{d}", "decision_id": d, "reward": 1.0, "latency_ms": 5.0}
                      for d in batches.pop()]
            try:
                status, _ = await conn.post("/v1/experiments/bench/feedback", json.dumps({"events": events}).encode())
            except (ConnectionError, asyncio.IncompleteReadError):
                return
            if status == 200:
                acked.extend(e["event_id"] for e in events)

    tasks = [asyncio.create_task(worker()) for _ in range(2)]
    while len(acked) < len(decisions) // 3:
        await asyncio.sleep(0.002)
    service.kill()
    await asyncio.gather(*tasks)
    if not acked or not batches:
        raise SystemExit("the kill did not land mid-stream: give the kill phase more decisions")
    ready = service.start()
    with sqlite3.connect(service.store) as db:
        stored = {r[0] for r in db.execute("SELECT event_id FROM feedback WHERE event_id LIKE 'kill-%'")}
    return ready, len(acked), len(set(acked) - stored)


SERVE_RUN = """
import dataclasses, sys
from recsys.app.config import load_config
from recsys.app.serve import ServeConfig, serve
config = load_config(sys.argv[1])
if sys.argv[4] == "models-only":
    config = dataclasses.replace(config, compress=None)
serve(config, ServeConfig(port=int(sys.argv[2]), store=sys.argv[3], experiment="bench-rank"))
"""

BARE_RANK = """
import sys, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
@app.post("/v1/experiments/bench-rank/rank")
async def rank(request: Request):
    await request.body()
    return JSONResponse({"decision_id": "d", "arm": "a", "propensity": 0.5, "weights_version": 1, "items": [],
                         "model_ms": 0.0, "latency_ms": 0.0})
@app.get("/readyz")
async def ready():
    return {}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen) -> None:
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("a service exited") from None
            time.sleep(0.05)


class OwnScorers:
    """Each variant's serving call on one request of 100 candidates, in this process on one
    thread (the serving policy's), warmed up: what /rank's model call is compared with."""

    def __init__(self, config_path: str, models_only: bool) -> None:
        import dataclasses

        import torch

        from recsys.app.config import load_config
        from recsys.app.rank import VariantRanker, example_request
        from recsys.app.serve import run_schema
        from recsys.app.simulate import arms
        from simulator.serving import serving_call

        torch.set_num_threads(1)  # with 2 intra-op threads, a DLRM call here took ~47 ms on the loaded machine
        config = load_config(config_path)
        config = dataclasses.replace(config, compress=None) if models_only else config
        variants = arms(config)
        self.schema = run_schema(config)
        batch = VariantRanker(variants, self.schema).prepare(example_request(self.schema, 100,
                                                                             np.random.default_rng(1))).requests
        self.calls = {v.name: (serving_call(v.scorer, [batch]), v.scorer.device) for v in variants}
        self.times: dict[str, list[float]] = {name: [] for name in self.calls}
        for _ in range(20):
            for name in self.calls:
                self.time(name, record=False)

    def time(self, name: str, record: bool = True) -> None:
        """One call of `name`'s serving call, timed (kept in `times` if `record`)."""
        from recsys.serving.timing import timed

        (call, inputs), device = self.calls[name]
        ms = timed(call, inputs[0], device)[1]
        if record:
            self.times[name].append(ms)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _units_by_arm(port: int, arms: list[str], count: int) -> list[str]:
    """`count` unit ids taking the arms in turn under the service's current weights (from its
    snapshot, as a client-side assigner would), so every arm with weight gets its share of the
    requests; an arm with no weight is skipped."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/experiments/bench-rank/weights") as r:
        assigner = LocalAssigner.from_snapshot(json.loads(r.read()))
    pools: dict[str, list[str]] = {arm: [] for arm in arms}
    for i in range(100 * count):
        unit = f"rank-user-{i}"
        arm = assigner.assign(unit)[0]
        if len(pools[arm]) < count:
            pools[arm].append(unit)
        if all(len(p) == count for p in pools.values()):
            break
    turns = [p for p in pools.values() if p]
    return [turns[j % len(turns)][j // len(turns)] for j in range(count)]


async def rank_load(port: int, bare_port: int, own: OwnScorers, units: list[str],
                    ) -> tuple[dict[str, list[tuple[float, float, float]]], list[float]]:
    """One /rank call of 100 candidates per unit, one at a time, each followed by the same body to
    the bare endpoint and by one call of the assigned variant's own scorer (interleaved, so that
    load drift hits all three alike; one call, like the service's, after the same HTTP exchange: a
    scorer called right after other scorers runs on warm caches, 0.11-0.17 ms a call here against
    0.35-0.40 ms for the first call after the HTTP exchange, which is what the service's call
    meets); by assigned arm: (client ms, the handler's latency_ms, its model call's model_ms), and
    the bare endpoint's client ms."""
    rng = np.random.default_rng(0)
    conn, bare = await Connection(port).open(), await Connection(bare_port).open()
    by_arm: dict[str, list[tuple[float, float, float]]] = {}
    floor: list[float] = []
    for i, unit in enumerate(units):
        body = json.dumps(example_request(own.schema, 100, rng, unit, k=10)).encode()
        t = time.perf_counter()
        status, reply = await conn.post("/v1/experiments/bench-rank/rank", body)
        ms = (time.perf_counter() - t) * 1e3
        assert status == 200, reply
        t = time.perf_counter()
        status, _ = await bare.post("/v1/experiments/bench-rank/rank", body)
        bare_ms = (time.perf_counter() - t) * 1e3
        out = json.loads(reply)
        own.time(out["arm"], record=i >= 20)
        if i >= 20:  # warm-up of the connections and the load generator
            by_arm.setdefault(out["arm"], []).append((ms, out["latency_ms"], out["model_ms"]))
            floor.append(bare_ms)
    conn.close()
    bare.close()
    return by_arm, floor


def rank_rows(config_path: str, models_only: bool, requests: int) -> list[tuple[str, str, str]]:
    """Per variant: /rank over HTTP (p50/p99; the handler's and its model call's share) next to the
    variant's own serving call timed in this process and a bare FastAPI endpoint given the same
    body, all interleaved at one connection. overhead = HTTP p50 - the own scorer's p50."""
    own = OwnScorers(config_path, models_only)
    port, bare_port = _free_port(), _free_port()
    env = {**os.environ, "RECSYS_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", SERVE_RUN, config_path, str(port), f"{tmp}/rank.db",
                                 "models-only" if models_only else "all"], env=env)
        bare_proc = subprocess.Popen([sys.executable, "-c", BARE_RANK, str(bare_port)])
        try:
            _wait_ready(port, proc)
            ready = time.perf_counter() - t
            _wait_ready(bare_port, bare_proc)
            units = _units_by_arm(port, list(own.calls), requests + 20)
            cpu = [_cpu_seconds(p.pid) for p in (proc, bare_proc)]
            service, floor = uvloop.run(rank_load(port, bare_port, own, units))
            cpu = [(_cpu_seconds(p.pid) - c) * 1e3 / len(units) for p, c in zip((proc, bare_proc), cpu)]
        finally:
            for p in (proc, bare_proc):
                p.terminate()
                p.wait()
    own_all = np.median(np.concatenate([t for t in own.times.values()]))
    rows = [("rank: bare endpoint", f"HTTP p50 {np.median(floor):.2f} / p99 {np.percentile(floor, 99):.2f} ms "
             f"(a FastAPI endpoint that reads the same bodies and answers a constant: the stack's floor here; "
             f"the rank service was ready {ready:.1f} s after its start, variants loaded and warmed)", ""),
            ("rank: CPU per request", f"service {cpu[0]:.2f} ms (all arms; own scorers' p50 {own_all:.2f}: "
             f"{cpu[0] - own_all:.2f} ms of CPU beyond the model), bare endpoint {cpu[1]:.2f} ms (process CPU "
             f"time over the run: what a loaded machine's scheduling does not inflate)", "")]
    for name, t in own.times.items():
        http, handler, model = np.array(service.get(name, [(np.nan,) * 3])).T
        own_p50 = np.median(t)
        rows.append((f"rank {name}", f"HTTP p50 {np.median(http):.2f} / p99 {np.percentile(http, 99):.2f} ms "
                     f"({len(http)} requests; in the handler {np.median(handler):.2f}, its model call "
                     f"{np.median(model):.2f}); own scorer p50 {own_p50:.2f} / p99 {np.percentile(t, 99):.2f}; "
                     f"overhead p50 {np.median(http) - own_p50:.2f} ms", "overhead <= 2 ms at p50"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--config", default=None, help="a finished run's config: also time /rank with 100 candidates "
                   "on its variants")
    p.add_argument("--models-only", action="store_true", help="with --config: serve the exported models only "
                   "(for a run whose variants are not built yet)")
    p.add_argument("--rank-requests", type=int, default=300)
    p.add_argument("--rank-only", action="store_true", help="with --config: time /rank only")
    p.add_argument("--feedback-events", type=int, default=10_000, help="events in the feedback phase (whole batches)")
    args = p.parse_args()
    if args.config and args.rank_only:
        _table(rank_rows(args.config, args.models_only, args.rank_requests))
        return
    with tempfile.TemporaryDirectory() as tmp:
        service = Service(Path(tmp))
        first_ready = service.start()
        try:
            uvloop.run(assign_load(service.port, 1.0, args.connections))  # warm-up
            lat, decisions = uvloop.run(assign_load(service.port, args.seconds, args.connections))
            pool = list(decisions)
            while len(pool) < args.feedback_events + 5000:  # decisions for the feedback phases (untimed)
                pool += uvloop.run(assign_load(service.port, 2.0, args.connections))[1]
            fb_seconds, fb_events = uvloop.run(feedback_load(service.port, pool[:args.feedback_events], 1000, 2,
                                                              "fb"))
            local = client_side(service.port)
            ready, acked, lost = uvloop.run(kill_during_feedback(service, pool[args.feedback_events:]))
        finally:
            service.stop()
    bare = bare_endpoint(args.seconds, args.connections)
    rows = [
        ("bare FastAPI endpoint", f"{len(bare) / args.seconds:,.0f} req/s, p50 {np.percentile(bare, 50):.2f} ms, "
                                  f"p99 {np.percentile(bare, 99):.2f} ms (same load: the stack's floor here)", ""),
        ("assign", f"{len(lat) / args.seconds:,.0f} req/s, p50 {np.percentile(lat, 50):.2f} ms, "
                   f"p99 {np.percentile(lat, 99):.2f} ms ({args.connections} connections)",
         ">= 2,000 req/s at p99 <= 20 ms"),
        ("feedback", f"{fb_events / fb_seconds:,.0f} events/s ({fb_events:,} events, batches of 1,000, "
                     f"each durable before its reply)", ">= 20,000 events/s"),
        ("client-side assign", f"{local:,.0f} decisions/s (1M unit ids, LocalAssigner.assign_many)",
         ">= 1,000,000 decisions/s"),
        ("recovery after SIGKILL", f"ready in {ready:.2f} s (first start {first_ready:.2f} s); "
                                   f"{acked:,} events acknowledged before the kill, {lost} lost", "0 lost"),
    ]
    _table(rows)
    if args.config:
        _table(rank_rows(args.config, args.models_only, args.rank_requests))


def _table(rows: list[tuple[str, str, str]]) -> None:
    width = 24
    print(f"{'':{width}}  measured".ljust(width + 112) + "target")
    for name, value, target in rows:
        print(f"{name:{width}}  {value:110}{target}", flush=True)


if __name__ == "__main__":
    main()
