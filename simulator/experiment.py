"""The experiment loop: requests in batches -> the bandit picks a variant per request -> its real
scorer ranks the candidates -> latency-aware users click -> rewards reach the policy late and in
bulk -> the stopping rule -> a winner.

Counterfactual mode scores every variant on every request, so with the shared user draws each
variant's expected reward on each request is known and the regret is exact. Feedback of step s
reaches the policy before step s + update_delay_steps.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from bandit import BanditInputError, Policy, StoppingRule, ThompsonSampling, check_stopping
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
    reward: np.ndarray = field(init=False)  # [V] realised reward summed over served requests
    expected: np.ndarray = field(init=False)  # [V] expected reward summed over all requests

    def __post_init__(self) -> None:
        self.reward, self.expected = np.zeros(self.n_arms), np.zeros(self.n_arms)

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
    winner: int
    stopped: bool  # the stopping rule fired before num_requests
    prob_best: np.ndarray  # [V] the policy's posterior P(best) (NaN for non-posterior policies)
    cumulative_regret: np.ndarray  # [steps] vs the best fixed variant in hindsight
    cumulative_oracle_gap: np.ndarray  # [steps] vs each request's best variant
    allocation: np.ndarray  # [steps, V] share of each step's requests
    latency_models: list[dict]
    calibration: dict | None

    @property
    def requests(self) -> int:
        return int(self.served.sum())


def make_policy(config: SimulatorConfig, n_arms: int, seed: int) -> Policy:
    """The configured policy (its name and options checked with the config) for `n_arms` variants;
    options that do not fit this many arms (an arm id, floors over 1) fail here, in one line."""
    try:
        return config.policy.policy_class(n_arms, seed=seed, **config.policy.kwargs())
    except BanditInputError as e:
        raise ConfigError(f"simulator.policy.options.{e} (the simulation has {n_arms} variants)") from None


def run_experiment(env: Environment, variants: list[Arm]) -> ExperimentResult:
    """Run until num_requests or the stopping rule; all randomness from env.streams."""
    config = env.config
    env.prepare_latency(variants)
    policy = make_policy(config, len(variants), env.streams.policy_seed())
    pending: deque = deque()
    trace, stopped, step = Trace(len(variants)), False, 0
    totals = np.zeros(3, np.int64)  # impressions, clicks, abandoned
    while env.t < config.num_requests and not stopped:
        requests, draws = env.requests()
        selection = policy.select(len(requests))
        outcome, expected = _serve(env, variants, requests, draws, selection.arms)
        env.advance(outcome.latency_ms, outcome.abandoned)
        pending.append((outcome.arms, outcome.reward, outcome.latency_ms, selection.propensities))
        while len(pending) > config.policy.update_delay_steps:
            _update(policy, pending.popleft())
        trace.record(outcome, expected)
        totals += [int((~outcome.abandoned).sum()) * config.slate_size, int(outcome.clicks.sum()),
                   int(outcome.abandoned.sum())]
        step += 1
        stopped = _should_stop(env, policy, step)
    while pending:
        _update(policy, pending.popleft())
    return _result(env, variants, policy, trace, totals, stopped)


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


def _update(policy: Policy, feedback: tuple) -> None:
    arms, reward, latency, propensities = feedback
    policy.update(arms, reward, latencies=np.maximum(latency, 1e-6), propensities=propensities)


def _should_stop(env: Environment, policy: Policy, step: int) -> bool:
    rule = env.config.stopping
    if not isinstance(policy, ThompsonSampling) or step % rule.check_every_steps or env.t < rule.min_requests:
        return False
    result = check_stopping(policy, StoppingRule(rule.prob_best, rule.max_loss), rng=env.streams.stopping)
    return result.stop


def _result(env: Environment, variants: list[Arm], policy: Policy, trace: Trace,
            totals: np.ndarray, stopped: bool) -> ExperimentResult:
    k = len(variants)
    arms, latency = np.concatenate(trace.arms), np.concatenate(trace.latency_ms)
    served = np.bincount(arms, minlength=k)
    prob_best = policy.prob_best() if isinstance(policy, ThompsonSampling) else np.full(k, np.nan)
    per_step = np.array([np.bincount(a, minlength=k) for a in trace.arms])
    mean = np.divide(trace.reward, served, out=np.full(k, np.nan), where=served > 0)
    regret, oracle_gap = trace.regret()
    return ExperimentResult(
        variants=[v.name for v in variants], served=served, reward=trace.reward,
        expected_all=trace.expected / max(env.t, 1),
        latency_p50_ms=_per_arm_quantile(arms, latency, k, 0.5),
        latency_p99_ms=_per_arm_quantile(arms, latency, k, 0.99),
        embedding_bytes=[int(v.scorer.embedding_bytes()) for v in variants],
        impressions=int(totals[0]), clicks=int(totals[1]), abandoned=int(totals[2]),
        winner=int(np.argmax(prob_best) if isinstance(policy, ThompsonSampling) else np.nanargmax(mean)),
        stopped=stopped, prob_best=prob_best, cumulative_regret=regret, cumulative_oracle_gap=oracle_gap,
        allocation=per_step / per_step.sum(axis=1, keepdims=True),
        latency_models=[v.latency.summary() if v.latency else {} for v in variants],
        calibration=None if env.calibration is None else env.calibration.summary())


def _per_arm_quantile(arms: np.ndarray, values: np.ndarray, k: int, q: float) -> np.ndarray:
    return np.array([np.quantile(values[arms == v], q) if (arms == v).any() else np.nan
                     for v in range(k)])
