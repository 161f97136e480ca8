"""The closed loop: `recsys simulate` with serve.closed_loop sends the simulated users to a running
`recsys serve` over HTTP (rank -> clicks -> feedback) and reaches the decision the in-process
simulation reaches for the same seed; the service's store then holds exactly the simulation's
traffic."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from recsys.app.cli import main

TOKEN = "closed-loop-token"
# cheapest p99 among the variants within half of dlrm's reward: a verdict a few thousand requests show
RULE = ["decision.objective=\"cost\"", "decision.cost_by=\"p99_ms\"", "decision.margin=0.5",
        "decision.min_requests=1000", "decision.max_requests=8192", "simulator.num_requests=8192"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


def _simulate(capsys: pytest.CaptureFixture[str], config: Path, *sets: str) -> tuple[int, str]:
    """`recsys simulate CONFIG --set ...` through recsys.app.cli.main in this process: (status, stderr)."""
    capsys.readouterr()
    status = main(["simulate", str(config), *_sets(*sets)])
    return status, capsys.readouterr().err


@pytest.mark.slow
def test_the_service_over_http_reaches_the_in_process_decision(capsys, run_copy, monkeypatch) -> None:
    """The simulations run in this process (only the service is another): no interpreter start-up each."""
    config, run_dir = run_copy
    status, err = _simulate(capsys, config, *RULE)
    assert status == 0, err[-2000:]
    expected = json.loads((run_dir / "simulation" / "results.json").read_text())["verdict"]
    assert expected["decided"], expected["reason"]  # the rule declares a variant in process

    port = _free_port()
    env = {**os.environ, "RECSYS_SERVE_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "recsys.app.cli", "serve", str(config), "--port", str(port),
                               *_sets(*RULE)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()  # reading a live server's stderr to its end would wait forever
                pytest.fail(f"service not ready: {server.communicate()[1].decode()[-2000:]}")
            time.sleep(0.2)
        monkeypatch.setenv("RECSYS_SERVE_TOKEN", TOKEN)
        status, err = _simulate(capsys, config, *RULE, "serve.closed_loop=true", f"serve.port={port}")
        assert status == 0, err[-2000:]
        got = json.loads((run_dir / "simulation" / "results.json").read_text())["verdict"]
        assert got["decided"] and got["chosen"] == expected["chosen"], (got["reason"], expected["reason"])
        summary = httpx.get(f"http://127.0.0.1:{port}/v1/experiments/fr").json()
        assert summary["decision"]["chosen"] == expected["chosen"]
        # a second closed loop on the same experiment would mix its verdict with this one's: refused
        status, err = _simulate(capsys, config, *RULE, "serve.closed_loop=true", f"serve.port={port}")
        assert status == 2 and "already holds" in err and err.count("\n") == 1
    finally:
        server.terminate()
        server.wait(30)
    # every simulated request was a decision of the service; the feedback delivered before the
    # verdict (all but the last step's, update_delay_steps = 1) is in the store once
    with sqlite3.connect(run_dir / "experiments.db") as db:
        decisions, events = (db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("decisions", "feedback"))
    assert decisions == got["requests"] and events == sum(a["observations"] for a in summary["arms"])
    assert events == decisions - 1024  # batch_requests


class _World:
    """The little of a World that ServiceTraffic reads: no user or item features."""

    def schema(self):
        return self

    def keys(self, side):
        return ["device"]

    def user_table(self):
        return _Table()

    item_table = user_table


class _Table:
    features: list = []
    columns: list = []


def test_a_step_reads_the_service_summary_once(monkeypatch) -> None:
    """judge then shares (every step) take one GET; a POST makes the next shares fetch anew."""
    from bandit.decision import DecisionRule, decide
    from recsys.app.closed_loop import ServiceTraffic
    from simulator.experiment import Delivery

    rule = DecisionRule(control="a")
    decision = decide(rule, ["a", "b"], [0, 0], [0.0, 0.0]).to_dict()
    weights, gets = iter([0.5, 0.2, 0.9]), []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"accepted": 0, "duplicates": 0})
        gets.append(request.url.path)
        w = next(weights)
        return httpx.Response(200, json={"experiment": "e", "rule": rule.describe(), "decision": decision,
                                         "arms": [{"arm": "a", "observations": 0, "weight": w},
                                                  {"arm": "b", "observations": 0, "weight": 1 - w}]})

    client = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: client(transport=httpx.MockTransport(answer), **kw))

    class Arm:
        def __init__(self, name: str) -> None:
            self.name = name

    traffic = ServiceTraffic("http://service", "t", "e", [Arm("a"), Arm("b")], _World(), rule)
    assert len(gets) == 1  # the freshness check
    assert traffic.judge(None).leader == decision["leader"]
    assert traffic.shares().tolist() == [0.2, 0.8] and len(gets) == 2  # judge's summary, not a second GET
    traffic.deliver(Delivery(np.array([0]), np.array([1.0]), np.array([5.0]), np.array([0.5]), ("d",)))
    assert traffic.shares().tolist() == [0.9, pytest.approx(0.1)] and len(gets) == 3
