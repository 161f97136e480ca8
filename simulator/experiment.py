"""The experiment loop: requests in batches -> the bandit picks a variant per request -> its real
scorer ranks the candidates -> latency-aware users click -> rewards reach the policy late and in
bulk -> the decision rule (bandit.decide, on the feedback delivered so far) -> a verdict.

Counterfactual mode scores every variant on every request, so with the shared user draws each
variant's expected reward on each request is known and the regret is exact. Feedback of step s
reaches the policy before step s + update_delay_steps. Each check records every arm's P(chosen)
and the policy's traffic split, for the report's plots.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bandit import BanditInputError, Decision, DecisionRule, LatencyStats, Policy, decide
from bandit.builder import build_policy
from recsys.errors import ConfigError
from simulator.config import SimulatorConfig
from simulator.environment import Environment
from simulator.serving import Arm, score
from simulator.step import Draws, Outcome, Requests


@dataclass
class Trace:
    """What a run keeps: per-request arms and latencies, per-step sums."""

    n_arms: int
    arms: list[np.ndarray] = field(default_factory=list)
    latency_ms: list[np.ndarray] = field(default_factory=list)
    step_expected: list[np.ndarray] = field(default_factory=list)  # per step [V]: E[reward] summed
    step_served: list[float] = field(default_factory=list)  # per step: E[reward] of the served arms
    step_oracle: list[float] = field(default_factory=list)  # per step: E[reward] of each request's best
    checks: list[int] = field(default_factory=list)  # requests sent at each check of the rule
    check_chosen: list[np.ndarray] = field(default_factory=list)  # per check [V]: P(chosen)
    check_shares: list[np.ndarray] = field(default_factory=list)  # per check [V]: the policy's split
    reward: np.ndarray = field(init=False)  # [V] realised reward summed over served requests
    expected: np.ndarray = field(init=False)  # [V] expected reward summed over all requests
    seen: np.ndarray = field(init=False)  # [V] feedback delivered (requests)
    seen_reward: np.ndarray = field(init=False)  # [V] reward in the feedback delivered
    seen_latency: LatencyStats = field(init=False)  # of the feedback delivered

    def __post_init__(self) -> None:
        self.reward, self.expected = np.zeros(self.n_arms), np.zeros(self.n_arms)
        self.seen, self.seen_reward = np.zeros(self.n_arms), np.zeros(self.n_arms)
        self.seen_latency = LatencyStats(np.zeros(self.n_arms), np.zeros(self.n_arms), np.zeros(self.n_arms))

    def deliver(self, arms: np.ndarray, reward: np.ndarray, latency_ms: np.ndarray) -> None:
        """Count feedback as it reaches the policy: what the decision rule judges."""
        self.seen += np.bincount(arms, minlength=self.n_arms)
        self.seen_reward += np.bincount(arms, weights=reward, minlength=self.n_arms)
        self.seen_latency = self.seen_latency + LatencyStats.of(arms, latency_ms, self.n_arms)

    def check(self, t: int, decision: Decision, shares: np.ndarray) -> None:
        self.checks.append(t)
        self.check_chosen.append(np.array([a.p_chosen for a in decision.arms]))
        self.check_shares.append(np.asarray(shares, np.float64))

    def record(self, outcome: Outcome, expected: np.ndarray | None) -> None:
        self.arms.append(outcome.arms)
        self.latency_ms.append(outcome.latency_ms)
        self.reward += np.bincount(outcome.arms, weights=outcome.reward, minlength=self.n_arms)
        if expected is None:
            self.expected[:] = np.nan
            self.step_expected.append(np.full(self.n_arms, np.nan))
            self.step_served.append(float("nan"))
            self.step_oracle.append(float("nan"))
            return
        self.expected += expected.sum(axis=1)
        self.step_expected.append(expected.sum(axis=1))
        self.step_served.append(float(expected[outcome.arms, np.arange(len(outcome.arms))].sum()))
        self.step_oracle.append(float(expected.max(axis=0).sum()))

    def regret(self) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative regret per step against the best fixed variant in hindsight (the bandit
        regret), and against each request's best variant (what a perfect per-request router gains)."""
        per_arm, served = np.array(self.step_expected), np.array(self.step_served)
        best = int(np.argmax(per_arm.sum(axis=0))) if np.isfinite(per_arm).all() else 0
        return np.cumsum(per_arm[:, best] - served), np.cumsum(np.array(self.step_oracle) - served)


@dataclass
class ExperimentResult:
    variants: list[str]
    served: np.ndarray  # [V] requests served
    reward: np.ndarray  # [V] realised reward summed over served requests
    expected_all: np.ndarray  # [V] mean expected reward over all requests (NaN: not counterfactual)
    latency_p50_ms: np.ndarray  # [V] over served requests
    latency_p99_ms: np.ndarray
    embedding_bytes: list[int]
    impressions: int  # rendered slate positions
    clicks: int
    abandoned: int
    winner: int  # the chosen variant, or the leader
    stopped: bool  # the decision rule declared a variant
    p_chosen: np.ndarray  # [V] posterior P(the variant is the rule's answer) at the end
    decision: Decision  # the rule's verdict (bandit.decide) on the feedback delivered
    rule: DecisionRule
    checks: np.ndarray  # [checks] requests sent at each check of the rule
    check_chosen: np.ndarray  # [checks, V] P(chosen) at each check
    check_shares: np.ndarray  # [checks, V] the policy's traffic split at each check
    latency_quantiles: np.ndarray  # [V, len(QUANTILES)] of the requests each served (NaN: none)
    cumulative_regret: np.ndarray  # [steps] vs the best fixed variant in hindsight
    cumulative_oracle_gap: np.ndarray  # [steps] vs each request's best variant
    allocation: np.ndarray  # [steps, V] share of each step's requests
    latency_models: list[dict]
    calibration: dict | None

    @property
    def requests(self) -> int:
        return int(self.served.sum())


QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)  # of each variant's latency


def make_policy(config: SimulatorConfig, n_arms: int, seed: int, rule: DecisionRule = DecisionRule(),
                control: int = 0, costs: tuple[float, ...] = ()) -> Policy:
    """The configured policy for `n_arms` variants, built by bandit.build_policy (as the online
    service builds its own); its errors as the config's keys. Options that do not fit this many
    arms (an arm id, floors over 1) fail here, in one line."""
    try:
        return build_policy(config.policy.name, config.policy.options, n_arms, seed, rule, control, costs)
    except BanditInputError as e:
        raise ConfigError(f"simulator.policy.{e} (the simulation has {n_arms} variants)") from None


@dataclass(frozen=True, eq=False)
class Delivery:
    """One step's feedback, delivered `update_delay_steps` steps later: per request its arm, reward,
    latency (> 0) and propensity, and the service's decision id when the traffic is online."""

    arms: np.ndarray
    reward: np.ndarray
    latency_ms: np.ndarray
    propensities: np.ndarray
    decision_ids: tuple[str, ...] = ()


class Traffic(Protocol):
    """Who picks each request's variant, ranks its candidates and learns from the feedback: the
    policy in this process (`InProcess`), or a running service over HTTP (recsys.app.closed_loop)."""

    def serve(self, env: Environment, requests: Requests, draws: Draws) -> tuple[Outcome, np.ndarray | None,
                                                                              Delivery]: ...

    def deliver(self, feedback: Delivery) -> None: ...

    def judge(self, trace: Trace) -> Decision: ...

    def shares(self) -> np.ndarray: ...


def run_experiment(env: Environment, variants: list[Arm], rule: DecisionRule | None = None,
                   traffic: Traffic | None = None) -> ExperimentResult:
    """Run until the rule declares a variant, its max_requests or simulator.num_requests; all
    randomness from env.streams. `rule`: None judges DecisionRule() with the first arm as control.
    `traffic`: None is the configured policy in this process."""
    config = env.config
    names = [v.name for v in variants]
    rule = rule if rule is not None else DecisionRule(control=names[0])
    if rule.control not in names:
        raise ConfigError(f"decision.control: no variant {rule.control!r} in this simulation "
                          f"(one of {', '.join(names)})")
    limit = min(rule.max_requests, config.num_requests or rule.max_requests)
    env.prepare_latency(variants)
    sizes = tuple(float(v.scorer.embedding_bytes()) for v in variants)
    if traffic is None:
        policy = make_policy(config, len(variants), env.streams.policy_seed(), rule, names.index(rule.control), sizes)
        traffic = InProcess(variants, policy, Judge(rule, names, sizes))
    pending: deque[Delivery] = deque()
    trace, decision, step = Trace(len(variants)), None, 0
    totals = np.zeros(3, np.int64)  # impressions, clicks, abandoned
    while env.t < limit and (decision is None or not decision.decided):
        requests, draws = env.requests()
        outcome, expected, feedback = traffic.serve(env, requests, draws)
        env.advance(outcome.latency_ms, outcome.abandoned)
        pending.append(feedback)
        while len(pending) > config.policy.update_delay_steps:
            _deliver(traffic, trace, pending.popleft())
        trace.record(outcome, expected)
        totals += [int((~outcome.abandoned).sum()) * config.slate_size, int(outcome.clicks.sum()),
                   int(outcome.abandoned.sum())]
        step += 1
        if step % config.stopping.check_every_steps == 0:
            decision = traffic.judge(trace)
            trace.check(env.t, decision, traffic.shares())
    if decision is None or not decision.decided:
        while pending:
            _deliver(traffic, trace, pending.popleft())
        decision = traffic.judge(trace)
        trace.check(env.t, decision, traffic.shares())
    return _result(env, variants, rule, decision, trace, totals)


@dataclass(frozen=True)
class Judge:
    """The rule's verdict on the feedback a trace has delivered."""

    rule: DecisionRule
    names: list[str]
    sizes: tuple[float, ...]

    def __call__(self, trace: Trace) -> Decision:
        try:
            return decide(self.rule, self.names, trace.seen, trace.seen_reward, trace.seen_latency, self.sizes)
        except BanditInputError as e:
            raise ConfigError(f"decision.{e}") from None


@dataclass(eq=False)
class InProcess:
    """The simulation's own policy picks the variants; its scorers rank here (all of them on every
    request in counterfactual mode); the rule is judged on the trace."""

    variants: list[Arm]
    policy: Policy
    judge: Judge

    def serve(self, env: Environment, requests: Requests, draws: Draws) -> tuple[Outcome, np.ndarray | None,
                                                                              Delivery]:
        selection = self.policy.select(len(requests))
        outcome, expected = _serve(env, self.variants, requests, draws, selection.arms)
        return outcome, expected, Delivery(outcome.arms, outcome.reward, np.maximum(outcome.latency_ms, 1e-6),
                                           selection.propensities)

    def deliver(self, feedback: Delivery) -> None:
        self.policy.update(feedback.arms, feedback.reward, latencies=feedback.latency_ms,
                           propensities=feedback.propensities)

    def shares(self) -> np.ndarray:
        return self.policy.probabilities()


def served_latency(env: Environment, variants: list[Arm], arms: np.ndarray, draws: Draws,
                   measured_ms: np.ndarray) -> np.ndarray:
    """Each request's latency under the variant that served it: `measured_ms` (latency.source =
    "measured"), or the variant's latency model at the request's shared quantile."""
    out = np.zeros(len(arms))
    for v, variant in enumerate(variants):
        mine = arms == v
        if mine.any():
            out[mine] = env.latency(variant, _take_draws(draws, mine), measured_ms[mine])
    return out


def _serve(env: Environment, variants: list[Arm], requests: Requests, draws: Draws,
           arms: np.ndarray) -> tuple[Outcome, np.ndarray | None]:
    """Scores and latencies of the serving variants (of all, in counterfactual mode)."""
    sim, n = env.simulator, len(requests)
    per_call = env.config.latency.serving_batch if env.config.latency.source == "measured" else n
    scores = np.zeros(requests.candidates.shape)
    latency = np.zeros(n)
    expected = np.full((len(variants), n), np.nan) if env.config.counterfactual else None
    batches = env.batches.batches(requests, per_call) if expected is not None else None
    for v, variant in enumerate(variants):  # a loop over variants, each vectorised over requests
        mine = np.ones(n, bool) if expected is not None else arms == v
        if not mine.any():
            continue
        sub = requests if expected is not None else requests.take(mine)
        s, measured = score(variant, batches or env.batches.batches(sub, per_call), sub)
        lat = env.latency(variant, _take_draws(draws, mine), measured)
        if expected is not None:
            expected[v] = sim.expected_reward(requests, s, lat)
        chosen = arms[mine] == v
        scores[np.flatnonzero(mine)[chosen]] = s[chosen]
        latency[np.flatnonzero(mine)[chosen]] = lat[chosen]
    return sim.serve(requests, arms, scores, latency, draws), expected


def _take_draws(draws: Draws, mask: np.ndarray) -> Draws:
    return Draws(draws.click_u[mask], draws.click_v[mask], draws.abandon[mask], draws.latency[mask])


def _deliver(traffic: Traffic, trace: Trace, feedback: Delivery) -> None:
    traffic.deliver(feedback)
    trace.deliver(feedback.arms, feedback.reward, feedback.latency_ms)


def _result(env: Environment, variants: list[Arm], rule: DecisionRule, decision: Decision, trace: Trace,
            totals: np.ndarray) -> ExperimentResult:
    k = len(variants)
    names = [v.name for v in variants]
    arms, latency = np.concatenate(trace.arms), np.concatenate(trace.latency_ms)
    served = np.bincount(arms, minlength=k)
    per_step = np.array([np.bincount(a, minlength=k) for a in trace.arms])
    regret, oracle_gap = trace.regret()
    quantiles = np.array([[_per_arm_quantile(arms, latency, k, q)[v] for q in QUANTILES] for v in range(k)])
    return ExperimentResult(
        variants=names, served=served, reward=trace.reward,
        expected_all=trace.expected / max(env.t, 1),
        latency_p50_ms=_per_arm_quantile(arms, latency, k, 0.5),
        latency_p99_ms=_per_arm_quantile(arms, latency, k, 0.99),
        embedding_bytes=[int(v.scorer.embedding_bytes()) for v in variants],
        impressions=int(totals[0]), clicks=int(totals[1]), abandoned=int(totals[2]),
        winner=names.index(decision.leader), stopped=decision.decided,
        p_chosen=np.array([a.p_chosen for a in decision.arms]), decision=decision, rule=rule,
        checks=np.array(trace.checks), check_chosen=np.array(trace.check_chosen),
        check_shares=np.array(trace.check_shares), latency_quantiles=quantiles,
        cumulative_regret=regret, cumulative_oracle_gap=oracle_gap,
        allocation=per_step / per_step.sum(axis=1, keepdims=True),
        latency_models=[v.latency.summary() if v.latency else {} for v in variants],
        calibration=None if env.calibration is None else env.calibration.summary())


def _per_arm_quantile(arms: np.ndarray, values: np.ndarray, k: int, q: float) -> np.ndarray:
    return np.array([np.quantile(values[arms == v], q) if (arms == v).any() else np.nan
                     for v in range(k)])
