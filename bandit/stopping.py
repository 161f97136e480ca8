"""When to stop an experiment: a guardrail-satisfying arm is best with posterior probability
>= prob_best and its expected loss E[max_j r_j - r_winner] is below max_loss (Monte Carlo)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.checks import in_range, positive_int
from bandit.errors import BanditInputError
from bandit.policies.thompson import ThompsonSampling
from bandit.posterior import LogNormalLatency
from bandit.tradeoff import LatencySLO, NonInferiority, judge_guardrails


@dataclass(frozen=True)
class StoppingRule:
    """Thresholds for declaring a winner.

    guardrail_prob: an arm may win only if P(SLO met) and P(non-inferior) are both >= this.
    """

    prob_best: float = 0.95
    max_loss: float = 1e-3
    slo: LatencySLO | None = None
    noninferiority: NonInferiority | None = None
    guardrail_prob: float = 0.95
    n_draws: int = 20_000

    def __post_init__(self) -> None:
        in_range(self.prob_best, "prob_best", 0.0, 1.0)
        in_range(self.max_loss, "max_loss", 0.0, np.inf)
        in_range(self.guardrail_prob, "guardrail_prob", 0.0, 1.0)
        positive_int(self.n_draws, "n_draws")


@dataclass(frozen=True)
class StoppingResult:
    """The decision and the evidence behind it; per-arm arrays are indexed by arm id."""

    stop: bool
    winner: int | None
    prob_best: float
    expected_loss: float
    samples_used: int
    arm_prob_best: np.ndarray
    arm_expected_loss: np.ndarray
    guardrails_ok: np.ndarray


def check_stopping(policy: ThompsonSampling, rule: StoppingRule = StoppingRule(),
                   rng: np.random.Generator | int | None = None) -> StoppingResult:
    """Judge the rule from the policy's posteriors (its own RNG is not touched)."""
    if not isinstance(policy, ThompsonSampling):
        raise BanditInputError("policy", "the stopping rule needs a posterior (a Thompson policy)")
    rng = np.random.default_rng(rng)
    latency = getattr(policy, "latency", LogNormalLatency())
    if rule.slo is not None and policy.pulls.sum() > 0 and policy.latency_stats.n.sum() == 0:
        raise BanditInputError("slo", "the rule has a latency SLO but the policy saw no latencies")
    g = judge_guardrails(policy.model, policy.reward_stats, latency, policy.latency_stats,
                         rule.slo, rule.noninferiority, rule.n_draws, rng)
    ok = (g.p_slo_violation <= 1 - rule.guardrail_prob) & (g.p_inferior <= 1 - rule.guardrail_prob)
    k = policy.n_arms
    used = int(policy.pulls.sum())
    if not ok.any():
        nan = np.full(k, np.nan)
        return StoppingResult(False, None, float("nan"), float("nan"), used, nan, nan, ok)
    eligible = np.where(ok, g.reward_draws, -np.inf)
    p_best = np.bincount(eligible.argmax(axis=1), minlength=k) / rule.n_draws
    loss = np.where(ok, (eligible.max(axis=1, keepdims=True) - g.reward_draws).mean(axis=0), np.nan)
    winner = int(np.argmax(p_best))
    stop = bool(p_best[winner] >= rule.prob_best and loss[winner] <= rule.max_loss)
    return StoppingResult(stop, winner, float(p_best[winner]), float(loss[winner]), used, p_best, loss, ok)
