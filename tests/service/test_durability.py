"""SIGKILL under load: the service is killed at random moments while a client assigns and sends
feedback batches, restarted each time; every acknowledged event is in the store exactly once, and
the posteriors the service reports equal a replay of the acknowledged events."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from bandit.memory import ArmStats, Stationary
from bandit.posterior import BetaBernoulli, prob_best

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "kill-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ARMS = ("fp32", "int8", "int4")
SPEC = {"id": "k", "arms": list(ARMS), "policy": "ThompsonSampling", "options": {}, "salt": "k",
        "rule": {"type": "DecisionRule", "fields": {"control": "fp32", "min_requests": 10}},
        "recompute_every": 100, "recompute_seconds": 0.5, "costs": []}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`python -m recsys.app.serve` in a subprocess, restartable on the same store and port."""

    def __init__(self, folder: Path) -> None:
        self.spec, self.store, self.port = folder / "spec.json", folder / "store.db", free_port()
        self.spec.write_text(json.dumps(SPEC))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and wait until ready; returns the seconds to ready."""
        start = time.perf_counter()
        env = {**os.environ, "RECSYS_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "recsys.app.serve", "--spec", str(self.spec),
                                      "--store", str(self.store), "--port", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Load:
    """Assign units and send their feedback in batches, resending a batch until it is acknowledged."""

    def __init__(self, url: str, seed: int) -> None:
        self.url, self.rng = url, np.random.default_rng(seed)
        self.http = httpx.Client(timeout=3.0)
        self.arm_of: dict[str, str] = {}  # decision id -> arm (from acknowledged assigns)
        self.acked: dict[str, dict] = {}  # event id -> event
        self.batches = 0
        self.stop = threading.Event()
        self.n = 0

    def run(self) -> None:
        while not self.stop.is_set():
            batch = [self._event() for _ in range(int(self.rng.integers(1, 40)))]
            batch = [e for e in batch if e is not None]
            while batch and not self._send(batch):
                time.sleep(0.01)

    def _event(self) -> dict | None:
        self.n += 1
        try:
            r = self.http.post(f"{self.url}/v1/experiments/k/assign", json={"unit_id": f"u{self.n % 500}"},
                               headers=AUTH)
        except httpx.TransportError:
            time.sleep(0.01)
            return None
        d = r.json()
        self.arm_of[d["decision_id"]] = d["arm"]
        click = float(self.rng.random() < {"fp32": 0.3, "int8": 0.25, "int4": 0.1}[d["arm"]])
        return {"event_id": f"ev-{self.n}", "decision_id": d["decision_id"], "reward": click,
                "latency_ms": float(self.rng.lognormal(1, 0.3))}

    def _send(self, batch: list[dict]) -> bool:
        try:
            r = self.http.post(f"{self.url}/v1/experiments/k/feedback", json={"events": batch}, headers=AUTH)
        except httpx.TransportError:
            return False
        assert r.status_code == 200, r.text
        self.acked.update({e["event_id"]: e for e in batch})
        self.batches += 1
        return True


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path):
    service = Service(tmp_path)
    rng = np.random.default_rng(7)
    load = Load(service.url, 1)
    recovery = [service.start()]
    worker = threading.Thread(target=load.run)
    worker.start()
    try:
        for _ in range(20):
            time.sleep(float(rng.uniform(0.05, 0.6)))
            service.kill()
            recovery.append(service.start())
        time.sleep(0.5)
        load.stop.set()
        worker.join(timeout=60)  # every acknowledged batch is in before the summary is read
        summary = httpx.get(f"{service.url}/v1/experiments/k", timeout=60).json()  # 5 s timed out under load
    finally:
        load.stop.set()
        worker.join(timeout=60)
        service.stop()  # a failed test must not leave its service running
    assert load.batches > 40 and len(load.acked) > 500

    with sqlite3.connect(service.store) as db:
        stored = dict(db.execute("SELECT event_id, reward FROM feedback").fetchall())
        arms = dict(db.execute("SELECT f.event_id, d.arm FROM feedback f JOIN decisions d "
                               "ON d.decision_id = f.decision_id").fetchall())
        count = db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
    assert set(stored) == set(load.acked) and count == len(load.acked)  # every acknowledged event, once
    # the replay, computed here from what the client was told: arms from its assigns, rewards it sent
    idx = np.array([ARMS.index(load.arm_of[e["decision_id"]]) for e in load.acked.values()])
    assert [ARMS[arms[k]] for k in load.acked] == [load.arm_of[e["decision_id"]] for e in load.acked.values()]
    n = np.bincount(idx, minlength=3)
    s = np.bincount(idx, [e["reward"] for e in load.acked.values()], minlength=3)
    assert [a["observations"] for a in summary["arms"]] == n.tolist()
    for a, total in zip(summary["arms"], s):
        assert a["reward_mean"] * a["observations"] == pytest.approx(total, abs=1e-9)
    stats = ArmStats(3, Stationary())
    stats.n, stats.s, stats.ss = n.astype(float), s, s
    np.testing.assert_allclose([a["p_best"] for a in summary["arms"]], prob_best(BetaBernoulli().marginal(stats)),
                               rtol=0, atol=1e-12)
    print(f"kills: 20, events acknowledged: {len(load.acked)}, batches: {load.batches}, "
          f"time to ready after a kill: median {np.median(recovery[1:]):.2f} s, max {max(recovery[1:]):.2f} s")
