"""The verdict must be right: the decision rule's declared variant against the oracle's, over seeds.

Three scenarios, each a list of arms with an exact expected reward, a latency model (the simulator's
`LatencyModel`, lognormal from a p50 and a p99 in ms) and embedding bytes, and a `DecisionRule`:
  quickstart  the quickstart's arms and rule (rewards of a quickstart run; latencies and bytes of
              its variants table): the smallest arm (bytes) non-inferior to dlrm within 4%;
  slo         the most accurate arm breaks the p99 SLO: the most reward among the arms that meet it;
  cheaper     a compressed arm is non-inferior and cheaper (bytes) than fp32, a cheaper one is not;
  boundary    a cheaper arm just below the margin: declaring it is wrong (the error the rule bounds).
A run is the simulator's loop without the scoring (which is deterministic: each arm's expected
reward per request is what scoring would give): steps of `--batch` requests, the default policy
(DecisionTS) picks an arm per request, clicks are Bernoulli(expected reward), latencies are drawn
from the arm's latency model, feedback reaches the policy one step late, and `bandit.decide` judges
the rule after every step, as simulator.experiment does. The oracle's verdict applies the rule to
the exact rewards and latency models. Printed per scenario: the share of seeds whose declared
variant is the oracle's (target >= 95%), the share that declares another (target <= 1 - confidence;
with its one-sided 95% Clopper-Pearson upper bound),
the share without a decision at max_requests, the requests used (median over seeds) against the
requests a fixed equal-split test needs for the same statements at the same error and power 0.8
(simulator.verdict's formulas on the exact rates; target <= 0.5x), and SLO violators shipped
(target 0).

    .venv/bin/python bench/decision.py [--seeds 50] [--batch 4096]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bandit import DecisionRule, DecisionTS, LatencyStats, decide
from simulator.latency import LatencyModel
from simulator.verdict import fixed_ab_requests, fixed_noninferiority_requests


@dataclass(frozen=True)
class Scenario:
    name: str
    arms: tuple[str, ...]
    reward: tuple[float, ...]  # exact expected reward per request
    p50_ms: tuple[float, ...]
    p99_ms: tuple[float, ...]
    bytes: tuple[float, ...]
    rule: DecisionRule

    def p99(self) -> np.ndarray:
        return np.array([LatencyModel.from_quantiles(a, b).quantile(np.array([0.99]))[0]
                         for a, b in zip(self.p50_ms, self.p99_ms)])

    def oracle(self) -> str:
        """The rule applied to the exact rewards and latency models."""
        r, rule = np.array(self.reward), self.rule
        ok = r >= rule.floor(r[self.arms.index(rule.control)])
        if rule.slo_p99_ms is not None:
            ok &= self.p99() <= rule.slo_p99_ms
        if rule.objective == "reward":
            key = -r
        else:
            key = np.array(self.bytes) if rule.cost_by == "bytes" else self.p99()
        return self.arms[int(np.argmin(np.where(ok, key, np.inf)))]

    def fixed_split(self) -> int:
        """Requests of an equal-split test making the oracle verdict's statements at the rule's
        error level, power 0.8, on the exact rates (simulator.verdict's formulas)."""
        r, rule, k = np.array(self.reward), self.rule, len(self.arms)
        best = self.arms.index(self.oracle())
        c = self.arms.index(rule.control)
        if rule.objective == "reward":
            meets = self.p99() <= (rule.slo_p99_ms or np.inf)
            runner = max((v for v in range(k) if v != best and meets[v]), key=lambda v: r[v])
            return fixed_ab_requests(r[best], r[runner], k, 2 * (1 - rule.confidence) / (k - 1)) or 0
        cost = np.array(self.bytes) if rule.cost_by == "bytes" else self.p99()
        meets = self.p99() <= (rule.slo_p99_ms or np.inf)
        cheaper = [v for v in range(k) if cost[v] < cost[best] and v != c and meets[v]]
        sizes = [fixed_noninferiority_requests(r[c], r[v], rule, k) for v in [best, *cheaper] if v != c]
        return max((s for s in sizes if s is not None), default=0)


def quickstart(max_requests: int) -> Scenario:
    """The quickstart's arms and [decision] rule: exact expected rewards of a quickstart simulation
    (runs/quickstart/simulation/results.json, expected_reward_all_requests), p50/p99 and bytes of its
    variants table; its max_requests unless a smaller one is given."""
    rule = DecisionRule(objective="cost", cost_by="bytes", control="dlrm", margin=0.04, min_requests=8192,
                        max_requests=min(max_requests, 61_440))
    return Scenario("quickstart", ("dlrm", "logistic", "dlrm-int8", "dlrm-pruned-int4", "dlrm-student-int8"),
                    (0.6889, 0.5770, 0.6888, 0.6838, 0.6594), (0.50, 0.28, 0.53, 0.54, 0.45),
                    (0.65, 0.40, 0.62, 0.67, 0.52), (199_936, 49_984, 62_848, 39_376, 62_848), rule)


def slo(max_requests: int) -> Scenario:
    rule = DecisionRule(objective="reward", slo_p99_ms=20.0, control="dlrm", margin=0.02, min_requests=8192,
                        max_requests=max_requests)
    return Scenario("slo", ("dlrm", "dlrm-large", "dlrm-int8", "logistic"), (0.40, 0.42, 0.385, 0.33),
                    (4.0, 9.0, 3.5, 1.0), (12.0, 30.0, 10.0, 3.0), (400_000, 1_600_000, 100_000, 50_000), rule)


def cheaper(max_requests: int) -> Scenario:
    rule = DecisionRule(objective="cost", cost_by="bytes", control="dlrm", margin=0.03, min_requests=8192,
                        max_requests=max_requests)
    return Scenario("cheaper", ("dlrm", "dlrm-int8", "dlrm-int4", "logistic"), (0.40, 0.401, 0.376, 0.33),
                    (4.0, 4.0, 4.0, 1.0), (12.0, 12.0, 12.0, 3.0), (400_000, 100_000, 50_000, 50_000), rule)


def boundary(max_requests: int) -> Scenario:
    """A cheaper arm just below the margin (0.3918 < 0.98 x 0.40): declaring it is the error the rule
    must keep below 1 - confidence; the right verdict is the control (or no decision)."""
    rule = DecisionRule(objective="cost", cost_by="bytes", control="dlrm", margin=0.02, min_requests=8192,
                        max_requests=max_requests)
    return Scenario("boundary", ("dlrm", "dlrm-int8", "logistic"), (0.40, 0.3918, 0.33), (4.0, 4.0, 1.0),
                    (12.0, 12.0, 3.0), (400_000, 100_000, 50_000), rule)


@dataclass(frozen=True)
class Run:
    declared: str | None
    requests: int
    seconds: float


def run(s: Scenario, seed: int, batch: int) -> Run:
    """One experiment: the simulator's loop with Bernoulli clicks at the exact rewards."""
    start = time.perf_counter()
    rng = np.random.default_rng([seed, 1])
    k, rule = len(s.arms), s.rule
    models = [LatencyModel.from_quantiles(a, b) for a, b in zip(s.p50_ms, s.p99_ms)]
    policy = DecisionTS(k, rule=rule, control=s.arms.index(rule.control), costs=s.bytes, seed=seed)
    reward, n, clicks = np.array(s.reward), np.zeros(k), np.zeros(k)
    latency = LatencyStats(np.zeros(k), np.zeros(k), np.zeros(k))
    pending = None
    t = 0
    while t < rule.max_requests:
        arms = policy.select(batch).arms
        click = (rng.random(batch) < reward[arms]).astype(np.float64)
        ms = np.choose(arms, [m.quantile(rng.random(batch)) for m in models])
        t += batch
        if pending is not None:
            policy.update(*pending[:2], latencies=pending[2])
            n += np.bincount(pending[0], minlength=k)
            clicks += np.bincount(pending[0], pending[1], minlength=k)
            latency = latency + LatencyStats.of(pending[0], pending[2], k)
        pending = (arms, click, ms)
        d = decide(rule, list(s.arms), n, clicks, latency, s.bytes)
        if d.decided:
            return Run(d.chosen, t, time.perf_counter() - start)
    return Run(None, t, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4096, help="requests per step (simulator.batch_requests)")
    parser.add_argument("--max-requests", type=int, default=200_000)
    args = parser.parse_args()
    print(f"{'scenario':<11} {'oracle':<18} {'right':>6} {'wrong':>6} {'<=95%':>6} {'none':>6} {'median req':>11} "
          f"{'fixed split':>11} {'ratio':>6} {'SLO viol.':>9} {'s/run':>6}")
    for make in (quickstart, slo, cheaper, boundary):
        s = make(args.max_requests)
        truth = s.oracle()
        runs = [run(s, seed, args.batch) for seed in range(args.seeds)]
        right = np.mean([r.declared == truth for r in runs])
        wrong = np.mean([r.declared not in (None, truth) for r in runs])
        none = np.mean([r.declared is None for r in runs])
        used = float(np.median([r.requests for r in runs]))
        fixed = s.fixed_split()
        p99 = dict(zip(s.arms, s.p99()))
        violators = sum(r.declared is not None and s.rule.slo_p99_ms is not None and p99[r.declared] > s.rule.slo_p99_ms
                        for r in runs)
        seconds = np.mean([r.seconds for r in runs])
        wrong_bound = float(stats.beta.ppf(0.95, wrong * len(runs) + 1, len(runs) - wrong * len(runs)))
        print(f"{s.name:<11} {truth:<18} {right:>6.0%} {wrong:>6.0%} {wrong_bound:>6.1%} {none:>6.0%} {used:>11,.0f} "
              f"{fixed:>11,} "
              f"{used / fixed if fixed else float('nan'):>6.2f} {violators:>9} {seconds:>6.1f}")
        declared = {name: sum(r.declared == name for r in runs) for name in s.arms}
        print(f"{'':<11} declared: {', '.join(f'{a} {c}' for a, c in declared.items() if c)}; "
              f"error level {1 - s.rule.confidence:.2g}; rule: {s.rule.describe()}")


if __name__ == "__main__":
    main()
