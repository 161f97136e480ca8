"""The closed loop: the simulated users as traffic to a running service (`recsys serve`) over HTTP.

Each request of a step is a POST /rank (the user's features, the dense context, every candidate;
the unit is the user), so the service assigns the arm (sticky, against its current weights) and
ranks with that variant's own model; the simulated users click on the top of that ranking, with
the latency of the configured source ("fitted": the variant's latency model at the request's
shared quantile, as in process; "measured": the service's own `latency_ms`); a step's feedback is
one POST /feedback, sent `update_delay_steps` steps later as in process. The verdict is the
service's (GET /v1/experiments/{id}). Nothing is counterfactual: the service scores only the
assigned variant, so the regret is not known (NaN).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import UserError

if TYPE_CHECKING:

    from bandit.decision import Decision, DecisionRule
    from recsys.data.world import World
    from simulator.environment import Environment
    from simulator.experiment import Delivery, Trace
    from simulator.serving import Arm
    from simulator.step import Draws, Outcome, Requests

CONCURRENCY = 4  # /rank requests in flight


class ServiceTraffic:
    """simulator.experiment.Traffic served by the experiment `experiment` of the service at `url`."""

    def __init__(self, url: str, token: str, experiment: str, variants: list[Arm], world: World,
                 rule: DecisionRule) -> None:
        import httpx

        if world.schema().keys("context") != ["device"]:  # what the simulator's requests carry
            raise UserError(f"serve.closed_loop: the world's context features are {world.schema().keys('context')}, "
                            "expected ['device']")
        self.url, self.variants = f"{url.rstrip('/')}/v1/experiments/{experiment}", variants
        self.names = [v.name for v in variants]
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60.0,
                                   limits=httpx.Limits(max_connections=CONCURRENCY))
        users, items = world.user_table(), world.item_table()
        self.user_rows = {f.name: c.rows() for f, c in zip(users.features, users.columns)}
        self.item_rows = {f.name: c.rows() for f, c in zip(items.features, items.columns)}
        self.summary: dict[str, Any] | None = None  # the last GET's, until the next POST changes the service
        self._check_fresh(rule)

    def _check_fresh(self, rule: DecisionRule) -> None:
        """The service serves these arms under this rule, and its experiment has no feedback yet
        (a verdict on earlier traffic mixed in would not be this simulation's)."""
        summary = self._get()
        arms = [a["arm"] for a in summary["arms"]]
        if arms != self.names:
            raise UserError(f"serve: the service's arms ({', '.join(arms)}) are not this simulation's "
                            f"({', '.join(self.names)})")
        if summary["rule"] != rule.describe():
            raise UserError(f"serve: the service judges another rule ({summary['rule']})")
        seen = sum(a["observations"] for a in summary["arms"])
        if seen:
            raise UserError(f"serve: experiment {summary['experiment']!r} already holds {seen} feedback events; "
                            "serve a fresh store (serve.store) for a closed-loop simulation")

    def serve(self, env: Environment, requests: Requests, draws: Draws) -> tuple[Outcome, None, Delivery]:
        from simulator.experiment import Delivery, served_latency

        n, c = requests.candidates.shape
        self.summary = None
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            answers = list(pool.map(self._rank, (self._request(requests, i) for i in range(n))))
        scores = np.zeros((n, c))
        for i, a in enumerate(answers):
            scores[i, [item["item_id"] for item in a["items"]]] = [item["score"] for item in a["items"]]
        arms = np.array([self.names.index(a["arm"]) for a in answers], dtype=np.int64)
        measured = np.array([a["latency_ms"] for a in answers], dtype=np.float64)
        latency = served_latency(env, self.variants, arms, draws, measured)
        outcome = env.simulator.serve(requests, arms, scores, latency, draws)
        return outcome, None, Delivery(arms, outcome.reward, np.maximum(latency, 1e-6),
                                       np.array([a["propensity"] for a in answers]),
                                       tuple(a["decision_id"] for a in answers))

    def deliver(self, feedback: Delivery) -> None:
        events = [{"event_id": f"sim-{d}", "decision_id": d, "reward": float(r), "latency_ms": float(lat)}
                  for d, r, lat in zip(feedback.decision_ids, feedback.reward, feedback.latency_ms)]
        self.summary = None
        self._post("/feedback", {"events": events})

    def judge(self, trace: Trace) -> Decision:
        from bandit.decision import Decision

        return Decision.from_dict(self._get()["decision"])

    def shares(self) -> np.ndarray:
        """The weights of the summary `judge` just fetched (one GET per step), or a fresh one."""
        summary = self.summary if self.summary is not None else self._get()
        return np.array([a["weight"] for a in summary["arms"]])

    def close(self) -> None:
        self.client.close()

    def _request(self, requests: Requests, i: int) -> dict[str, Any]:
        u = int(requests.users[i])
        features = {k: rows[u] for k, rows in self.user_rows.items()} | {"device": [int(requests.device[i])]}
        candidates = [{"item_id": j, "features": {k: rows[int(item)] for k, rows in self.item_rows.items()}}
                      for j, item in enumerate(requests.candidates[i])]
        return {"unit_id": f"user-{u}", "dense": requests.dense[i].tolist(), "features": features,
                "candidates": candidates, "k": len(candidates)}

    def _rank(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post("/rank", body)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer(lambda: self.client.post(self.url + path, json=body))

    def _get(self) -> dict[str, Any]:
        self.summary = self._answer(lambda: self.client.get(self.url))
        return self.summary

    def _answer(self, call: Any) -> dict[str, Any]:
        import httpx

        try:
            r = call()
        except httpx.TransportError as e:
            raise UserError(f"serve: no service at {self.url} ({e}); start it with `recsys serve CONFIG`") from None
        if r.status_code != 200:
            try:
                problem = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                problem = r.text[:200]
            raise UserError(f"serve: {r.request.method} {r.request.url.path} answered {r.status_code}: {problem}")
        out: dict[str, Any] = r.json()
        return out


def service_traffic(url: str, experiment: str, variants: list[Arm], world: World,
                    rule: DecisionRule) -> ServiceTraffic:
    """The traffic to the service at `url`, with the write token of $RECSYS_SERVE_TOKEN."""
    from recsys.app.serve import TOKEN_ENV

    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UserError(f"set {TOKEN_ENV} to the service's bearer token (serve.closed_loop sends feedback)")
    return ServiceTraffic(url, token, experiment, variants, world, rule)

