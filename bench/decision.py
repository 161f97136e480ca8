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
with its one-sided 95% Clopper-Pearson upper bound), the share without a decision at max_requests,
the requests used (median over seeds) against a fixed equal split, and SLO violators shipped
(target 0).

The fixed equal split it is compared with (target <= 0.5x) makes the oracle verdict's statements on
the exact rates (simulator.verdict's formulas): the same error level (each statement a one-sided z
test at (1 - confidence) / (K - 1), the union over the K - 1 arms the rule itself uses), the same
guardrails (the SLO violator gets its 1/K share, as the bandit's arms do, and is not an arm to beat),
power 0.8. "fixed/v" sizes it so that its whole verdict holds with power 0.8 (every statement at
once, correlated through the shared control: `fixed_verdict_requests`), the fair comparison for a
verdict of several statements; "fixed/st" gives each statement power 0.8 alone (a verdict of two
statements of like difficulty then holds in about 64-70% of tests). The bandit's requests are those
whose feedback its verdict read ("used"; a fixed test too counts the requests it analyses) and, with
them, the step still in flight when it stopped ("sent"). Its median is set against the fixed test's
power 0.8; its 80th percentile ("q80") is the like-for-like quantile.

--oracle prints instead how far any policy can go under this stopping rule: per scenario the plug-in
optimum (`plug_in_optimum`: the per-arm requests, fewest in total, at which every statement of the
oracle verdict reaches the rule's evidence threshold at its exact gap, the allocation DecisionTS
tracks) against fixed/v; the probability that a statement at the boundary (true gap 0) ever reaches
the threshold within the scenario's horizon (`null_crossing`: Gaussian increments, its two arms
sharing all the traffic), checked every batch and every 256 requests, against the level the rule
spends on it; and the plug-in optimum again under the lowest threshold that would still keep that
probability within the level (a threshold calibrated to the horizon).

    .venv/bin/python bench/decision.py [--seeds 50] [--batch 4096] [--oracle]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from bandit import DecisionRule, DecisionTS, LatencyStats, decide
from bandit.decision import (
    calibrated_threshold,
    effect_scale,
    information_horizon,
    mixture_evidence,
    scale_mixture_evidence,
)
from simulator.latency import LatencyModel
from simulator.verdict import Statements, verdict_statements


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

    def statements(self) -> Statements | None:
        """The oracle verdict's statements on the exact rates (simulator.verdict's, as the report's):
        the SLO violator gets its 1/K share, as the bandit's arms do, and is not an arm to beat."""
        rule = self.rule
        cost = np.array(self.bytes) if rule.cost_by == "bytes" else self.p99()
        meets = self.p99() <= (rule.slo_p99_ms or np.inf)
        return verdict_statements(rule, self.arms, np.array(self.reward), cost, meets, self.oracle())


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
    used: int  # requests whose feedback the verdict read
    sent: int  # ... and those of the step still in flight (feedback arrives one step late)
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
            return Run(d.chosen, int(n.sum()), t, time.perf_counter() - start)
    return Run(None, int(n.sum()), t, time.perf_counter() - start)


def plug_in_optimum(s: Scenario, drop: float = 0.0) -> np.ndarray:
    """Per-arm requests, fewest in total, at which every statement of the oracle verdict reaches the
    rule's evidence threshold less `drop` at its exact gap (the plug-in of the allocation that ends the
    experiment soonest: what DecisionTS tracks; arms in no statement, the SLO violator, get 0): the
    statement j's evidence (the rule's: `scale_mixture_evidence` for "better than", else
    `mixture_evidence`) falls as the variance sum_i coef_ji^2 v_i / n_i grows, so each needs it below
    a bound found by bisection; the total is minimised under those convex constraints (SLSQP on log n)."""
    st = s.statements()
    assert st is not None
    r, rule = np.array(s.reward), s.rule
    tau = effect_scale(rule, r[s.arms.index(rule.control)])
    need = threshold(s) - drop
    bound = np.array([_variance_bound(g, tau, need, "than" in w) for g, w in zip(st.gaps, st.words)])
    weight = st.coef ** 2 * st.arm_var
    arms = np.flatnonzero(np.any(st.coef != 0, axis=0))
    cons = [{"type": "ineq", "fun": lambda x, j=j: 1 - float(np.sum(weight[j, arms] / np.exp(x))) / bound[j]}
            for j in range(len(bound))]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # SLSQP's trial steps
        res = optimize.minimize(lambda x: float(np.exp(x).sum()), np.full(len(arms), np.log(1e5)), method="SLSQP",
                                constraints=cons, options={"maxiter": 500, "ftol": 1e-10})
    out = np.zeros(len(r))
    out[arms] = np.exp(res.x)
    return out


def threshold(s: Scenario) -> float:
    """The rule's evidence threshold at the exact rates (`calibrated_threshold` at their horizon)."""
    n = np.full(len(s.arms), 1e9)
    horizon = information_horizon(s.rule, n, n * np.array(s.reward), s.arms.index(s.rule.control))
    return calibrated_threshold(s.rule, len(s.arms), horizon)


def _variance_bound(gap: float, tau: float, need: float, scaled: bool) -> float:
    """The largest variance of a gap's estimate at which its evidence reaches `need`."""
    lo, hi = np.log(1e-14), 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        evidence = scale_mixture_evidence if scaled else mixture_evidence
        lo, hi = (mid, hi) if evidence(np.array([gap]), np.array([np.exp(mid)]), tau)[0] >= need else (lo, mid)
    return float(np.exp(lo))


def null_crossing(s: Scenario, drops: np.ndarray, look: int, paths: int = 20_000) -> np.ndarray:
    """Per threshold (the rule's, `threshold`, less each of `drops`): the probability that one statement of true
    gap 0 (the boundary) ever shows that evidence, checked every `look` requests from min_requests to
    max_requests, its two arms (rates 0.4, as the scenarios') sharing all the traffic, the widest
    window any allocation gives it; Gaussian increments, seeded. The rule spends (1 - confidence) /
    (K - 1) on it: the union over the K - 1 arms."""
    rule = s.rule
    tau, v = effect_scale(rule, 0.4), 0.24
    rng = np.random.default_rng(0)
    walk, best, pairs = np.zeros(paths), np.full(paths, -np.inf), 0
    for t in range(look, rule.max_requests + 1, look):
        walk += rng.standard_normal(paths) * np.sqrt(2 * v * (t // 2 - pairs))
        pairs = t // 2
        if t >= rule.min_requests:
            gap, var = walk / pairs, np.full(paths, 2 * v / pairs)
            evidence = scale_mixture_evidence if rule.objective == "reward" else mixture_evidence
            best = np.maximum(best, evidence(gap, var, tau))
    return np.array([(best >= threshold(s) - d).mean() for d in drops])


def oracle_table(batch: int) -> None:
    """How far any allocation can go under the rule's stopping threshold, and under a threshold
    calibrated to the horizon (see the module docstring)."""
    drops = np.arange(0.0, 2.01, 0.1)
    print(f"{'scenario':<11} {'plug-in optimum per arm':<34} {'total':>7} {'ratio':>5} {'Ville':>5} "
          f"{'null P':>7} {'finer':>7} {'level':>7} {'drop':>4} {'ratio':>5} {'drop':>4} {'ratio':>5}")
    for make in (quickstart, slo, cheaper):
        s = make(200_000)
        st = s.statements()
        assert st is not None
        fixed = st.requests() or 0
        best = plug_in_optimum(s)
        ville = plug_in_optimum(s, threshold(s) - s.rule.threshold(len(s.arms))).sum() / fixed
        level = (1 - s.rule.confidence) / (len(s.arms) - 1)
        coarse, fine = null_crossing(s, drops, batch), null_crossing(s, drops, 256)
        calibrated = [float(drops[np.flatnonzero(p <= level)[-1]]) for p in (fine, coarse)]
        print(f"{s.name:<11} {' '.join(f'{x:,.0f}' for x in best):<34} {best.sum():>7,.0f} {best.sum() / fixed:>5.2f} "
              f"{ville:>5.2f} "
              f"{coarse[0]:>7.2%} {fine[0]:>7.2%} {level:>7.2%} "
              + " ".join(f"{d:>4.1f} {plug_in_optimum(s, d).sum() / fixed:>5.2f}" for d in calibrated))
    print("plug-in optimum: per-arm requests, fewest in total, at which every statement of the oracle verdict "
          "reaches the rule's threshold (calibrated to the horizon) at its exact gap; ratio: its total / fixed/v; "
          "Ville: the same under Ville's bound ln((K - 1) / (1 - confidence)). null P: the probability a "
          f"statement at the boundary ever reaches the threshold, checked every {batch} requests (finer: every 256); "
          "level: what the rule spends on it; drop: the most the threshold could be lowered (0.1 steps) keeping the "
          "finer null P within the level (the rule's calibration is more cautious: 0.75 of the level, looks from "
          "information 0, the smallest variance of any arm); ratio: the plug-in optimum's total there "
          f"/ fixed/v; the second drop and ratio: keeping the null P checked every {batch} requests within the level "
          "(valid only for that schedule).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4096, help="requests per step (simulator.batch_requests)")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--oracle", action="store_true", help="the plug-in optimum's table instead (see above)")
    args = parser.parse_args()
    if args.oracle:
        oracle_table(args.batch)
        return
    print(f"{'scenario':<11} {'oracle':<17} {'right':>5} {'wrong':>5} {'<=95%':>6} {'none':>5} {'used':>7} "
          f"{'sent':>7} {'fixed/st':>9} {'fixed/v':>9} {'ratio':>5} {'sent':>5} {'q80':>5} {'/st':>5} "
          f"{'SLO':>3} {'s/run':>5}")
    for make in (quickstart, slo, cheaper, boundary):
        s = make(args.max_requests)
        truth = s.oracle()
        runs = [run(s, seed, args.batch) for seed in range(args.seeds)]
        right = np.mean([r.declared == truth for r in runs])
        wrong = np.mean([r.declared not in (None, truth) for r in runs])
        none = np.mean([r.declared is None for r in runs])
        used, sent = (float(np.median([getattr(r, k) for r in runs])) for k in ("used", "sent"))
        q80 = float(np.quantile([r.used for r in runs], 0.8))
        statements = s.statements()
        per_statement, verdict = (0, 0) if statements is None else (statements.per_statement() or 0,
                                                                    statements.requests() or 0)
        p99 = dict(zip(s.arms, s.p99()))
        violators = sum(r.declared is not None and s.rule.slo_p99_ms is not None and p99[r.declared] > s.rule.slo_p99_ms
                        for r in runs)
        seconds = np.mean([r.seconds for r in runs])
        wrong_bound = float(stats.beta.ppf(0.95, wrong * len(runs) + 1, len(runs) - wrong * len(runs)))
        decides = none < 0.5  # else the right verdict is "no decision" (boundary): nothing to compare
        ratios = [x / verdict if verdict and decides else float("nan") for x in (used, sent, q80)]
        ratios.append(used / per_statement if per_statement and decides else float("nan"))
        print(f"{s.name:<11} {truth:<17} {right:>5.0%} {wrong:>5.0%} {wrong_bound:>6.1%} {none:>5.0%} {used:>7,.0f} "
              f"{sent:>7,.0f} {per_statement:>9,} {verdict:>9,} "
              + " ".join(f"{x:>5.2f}" for x in ratios) + f" {violators:>3} {seconds:>5.1f}")
        declared = {name: sum(r.declared == name for r in runs) for name in s.arms}
        print(f"{'':<11} declared: {', '.join(f'{a} {c}' for a, c in declared.items() if c) or 'none'}; "
              f"error level {1 - s.rule.confidence:.2g}; rule: {s.rule.describe()}")
    print("used: median requests whose feedback the verdict read; sent: with the step in flight; fixed/st: an "
          "equal split sized for power 0.8 per statement; fixed/v: for its whole verdict at power 0.8; ratio: "
          "used / fixed/v (target <= 0.5); sent: sent / fixed/v; q80: the 80th percentile of used / fixed/v; "
          "/st: used / fixed/st (nan where most runs end without a decision, the right verdict there).")


if __name__ == "__main__":
    main()
