"""Accuracy/latency trade-off: latency-SLO and non-inferiority guardrails judged from posteriors,
a constrained or scalarised Thompson policy, and the Pareto set of (reward, latency percentile).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit.checks import in_range, positive_int
from bandit.errors import BanditArmCountError, BanditInputError
from bandit.memory import ArmStats
from bandit.policies.thompson import ThompsonSampling
from bandit.posterior import LogNormalLatency, prob_best
from bandit.state import serializable


@serializable
@dataclass(frozen=True)
class LatencySLO:
    """The `percentile` of latency must not exceed `threshold` (same unit as the latencies).

    Allocation treats an arm as violating when P(percentile > threshold) >= max_violation_prob.
    """

    threshold: float
    percentile: float = 0.95
    max_violation_prob: float = 0.5

    def __post_init__(self) -> None:
        in_range(self.threshold, "slo.threshold", 1e-300, np.inf)
        in_range(self.percentile, "slo.percentile", 0.0, 1.0, closed=False)
        in_range(self.max_violation_prob, "slo.max_violation_prob", 0.0, 1.0)


@serializable
@dataclass(frozen=True)
class NonInferiority:
    """Reward must not be worse than the control arm's by more than `margin`.

    Allocation treats an arm as inferior when P(r_k < r_control - margin) >= max_violation_prob.
    """

    control: int
    margin: float = 0.0
    max_violation_prob: float = 0.5

    def __post_init__(self) -> None:
        positive_int(self.control, "noninferiority.control", 0)
        in_range(self.margin, "noninferiority.margin", 0.0, np.inf)
        in_range(self.max_violation_prob, "noninferiority.max_violation_prob", 0.0, 1.0)


@dataclass(frozen=True)
class Guardrails:
    """Posterior draws of mean rewards and the violation probability of each guardrail."""

    reward_draws: np.ndarray
    p_slo_violation: np.ndarray
    p_inferior: np.ndarray


def judge_guardrails(model: Any, rewards: ArmStats, latency: LogNormalLatency, latencies: ArmStats,
                     slo: LatencySLO | None, noninferiority: NonInferiority | None,
                     n_draws: int, rng: np.random.Generator) -> Guardrails:
    """Monte Carlo violation probabilities from n_draws joint posterior draws per arm."""
    draws = model.sample(rewards, n_draws, rng)
    k = draws.shape[1]
    p_slo = np.zeros(k)
    if slo is not None:
        q = latency.sample_percentile(latencies, slo.percentile, n_draws, rng)
        p_slo = (q > slo.threshold).mean(axis=0)
    p_inf = np.zeros(k)
    if noninferiority is not None:
        ref = draws[:, noninferiority.control:noninferiority.control + 1] - noninferiority.margin
        p_inf = (draws < ref).mean(axis=0)
        p_inf[noninferiority.control] = 0.0
    return Guardrails(draws, p_slo, p_inf)


@serializable
@dataclass(frozen=True)
class Constrained:
    """Maximise reward among arms that meet the latency SLO (and non-inferiority, if given)."""

    slo: LatencySLO
    noninferiority: NonInferiority | None = None


@serializable
@dataclass(frozen=True)
class Scalarised:
    """Maximise mean reward - lam * mean latency."""

    lam: float

    def __post_init__(self) -> None:
        in_range(self.lam, "objective.lam", 0.0, np.inf)


class TradeoffTS(ThompsonSampling):
    """Thompson sampling on a reward model plus a lognormal latency model per arm.

    Constrained: arms judged to violate a guardrail get probability 0 (only the allocation floor);
    the rest get exact P(best among them). If every arm violates, all mass goes to the arm least
    likely to break the SLO. Scalarised: P(best utility) estimated from `n_draws` Monte Carlo
    draws (standard error <= 0.5 / sqrt(n_draws)); select still samples from exactly that vector.
    """

    @property
    def needs_latency(self) -> bool:
        return True

    def __init__(self, n_arms: int, objective: Constrained | Scalarised,
                 latency: LogNormalLatency = LogNormalLatency(), n_draws: int = 4000,
                 **kwargs: Any) -> None:
        if not isinstance(objective, (Constrained, Scalarised)):
            raise BanditInputError("objective", f"expected Constrained or Scalarised, got {objective!r}")
        self.objective, self.latency = objective, latency
        self.n_draws = positive_int(n_draws, "n_draws")
        super().__init__(n_arms, objective=objective, latency=latency, n_draws=n_draws, **kwargs)
        if isinstance(objective, Constrained) and objective.noninferiority is not None \
                and objective.noninferiority.control >= self.n_arms:
            raise BanditArmCountError("objective.noninferiority.control", f"not an arm id below {self.n_arms}")

    def guardrails(self, rng: np.random.Generator | None = None) -> Guardrails:
        """Current guardrail judgement (uses the policy's own RNG unless one is given)."""
        obj = self.objective
        slo = obj.slo if isinstance(obj, Constrained) else None
        ni = obj.noninferiority if isinstance(obj, Constrained) else None
        return judge_guardrails(self.model, self._rewards, self.latency, self._latencies, slo, ni,
                                self.n_draws, self._rng if rng is None else rng)

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        if isinstance(self.objective, Scalarised):
            draws = self.model.sample(self._rewards, self.n_draws, self._rng)
            utility = draws - self.objective.lam * self.latency.sample_mean(self._latencies, self.n_draws, self._rng)
            return np.bincount(utility.argmax(axis=1), minlength=self.n_arms) / self.n_draws
        g = self.guardrails()
        obj = self.objective
        ni_limit = obj.noninferiority.max_violation_prob if obj.noninferiority else 1.0
        ok = (g.p_slo_violation < obj.slo.max_violation_prob) & (g.p_inferior < ni_limit)
        if not ok.any():
            ok = g.p_slo_violation == g.p_slo_violation.min()
        return prob_best(self.model.marginal(self._rewards), eligible=ok)


def pareto_front(value: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both (higher value, e.g. reward or AUC; lower
    cost, e.g. latency or bytes), in index order."""
    r, lat = np.asarray(value, float), np.asarray(cost, float)
    if r.shape != lat.shape or r.ndim != 1:
        raise BanditInputError("cost", f"shape {lat.shape} does not match value shape {r.shape}")
    no_worse = (r[None, :] >= r[:, None]) & (lat[None, :] <= lat[:, None])
    better = (r[None, :] > r[:, None]) | (lat[None, :] < lat[:, None])
    dominated = (no_worse & better).any(axis=1)
    return np.flatnonzero(~dominated)
