"""When to stop an experiment, judged from a Thompson policy's posteriors.

An experiment configured with a decision rule (a config's [decision], `bandit.decision`) stops by
`bandit.decide` instead: the same rule for the simulator and the online service, judged from
per-arm counts rather than from a policy. The rules below serve direct users of the policies.

Default rule (`check_stopping`): a guardrail-satisfying arm is best with posterior probability
>= prob_best, its expected loss E[max_j r_j - r_winner] is below max_loss (Monte Carlo), and
(`anytime`, on by default) it beats every other eligible arm by the anytime-valid mixture
likelihood-ratio test (`glr.mixture_evidence`) at delta = 1 - prob_best, union over the K - 1 arms
it could wrongly beat: a declared verdict is then wrong with probability at most 1 - prob_best
however often the rule is checked, first batch included. The posterior thresholds alone do not
hold that level when checked after every batch (they ship a worse arm more often, early above all).
GLR rule (`check_glr`, best-arm identification at confidence 1 - delta): the Chernoff statistic
min_j W[best, j] of the empirical best against every other arm exceeds
log((K - 1) (1 + log t) / delta) after t observations: a union over the K - 1 alternatives of
the threshold log((1 + log t) / delta) of Garivier & Kaufmann (2016), a heuristic without a
proof of its level, or a constant calibrated by simulation; no Monte Carlo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.checks import in_range, positive_int
from bandit.errors import BanditInputError
from bandit.glr import mixture_evidence, transport_costs
from bandit.policies.thompson import ThompsonSampling
from bandit.posterior import BetaBernoulli, LogNormalLatency
from bandit.tradeoff import LatencySLO, NonInferiority, judge_guardrails


@dataclass(frozen=True)
class StoppingRule:
    """Thresholds for declaring a winner.

    guardrail_prob: an arm may win only if P(SLO met) and P(non-inferior) are both >= this.
    anytime: the winner must also pass the anytime-valid test at level 1 - prob_best (rewards in
        [0, 1], a BetaBernoulli model); False judges by the posterior thresholds alone.
    """

    prob_best: float = 0.95
    max_loss: float = 1e-3
    slo: LatencySLO | None = None
    noninferiority: NonInferiority | None = None
    guardrail_prob: float = 0.95
    n_draws: int = 20_000
    anytime: bool = True

    def __post_init__(self) -> None:
        in_range(self.prob_best, "prob_best", 0.0, 1.0)
        in_range(self.max_loss, "max_loss", 0.0, np.inf)
        in_range(self.guardrail_prob, "guardrail_prob", 0.0, 1.0)
        positive_int(self.n_draws, "n_draws")
        if not isinstance(self.anytime, bool):
            raise BanditInputError("anytime", f"expected true or false, got {self.anytime!r}")

    def evidence_threshold(self, n_arms: int) -> float:
        """ln((K - 1) / (1 - prob_best)): the log likelihood ratio a winner needs against each arm."""
        with np.errstate(divide="ignore"):
            return float(np.log(max(n_arms - 1, 1)) - np.log1p(-self.prob_best))


@dataclass(frozen=True)
class StoppingResult:
    """The decision and the evidence behind it; per-arm arrays are indexed by arm id.

    arm_evidence[j]: the anytime-valid log likelihood ratio of the winner beating arm j (`inf` at
    the winner and at arms that fail a guardrail; nan without a winner or with `anytime` off).
    """

    stop: bool
    winner: int | None
    prob_best: float
    expected_loss: float
    samples_used: int
    arm_prob_best: np.ndarray
    arm_expected_loss: np.ndarray
    guardrails_ok: np.ndarray
    evidence: float
    evidence_threshold: float
    arm_evidence: np.ndarray


def check_stopping(policy: ThompsonSampling, rule: StoppingRule = StoppingRule(),
                   rng: np.random.Generator | int | None = None) -> StoppingResult:
    """Judge the rule from the policy's posteriors (its own RNG is not touched)."""
    if not isinstance(policy, ThompsonSampling):
        raise BanditInputError("policy", "the stopping rule needs a posterior (a Thompson policy)")
    model = _anytime_model(policy, rule)
    rng = np.random.default_rng(rng)
    latency = getattr(policy, "latency", LogNormalLatency())
    if rule.slo is not None and policy.pulls.sum() > 0 and policy.latency_stats.n.sum() == 0:
        raise BanditInputError("slo", "the rule has a latency SLO but the policy saw no latencies")
    g = judge_guardrails(policy.model, policy.reward_stats, latency, policy.latency_stats,
                         rule.slo, rule.noninferiority, rule.n_draws, rng)
    ok = (g.p_slo_violation <= 1 - rule.guardrail_prob) & (g.p_inferior <= 1 - rule.guardrail_prob)
    k = policy.n_arms
    used = int(policy.pulls.sum())
    threshold = rule.evidence_threshold(k)
    nan = np.full(k, np.nan)
    if not ok.any():
        return StoppingResult(False, None, float("nan"), float("nan"), used, nan, nan, ok, float("nan"), threshold, nan)
    eligible = np.where(ok, g.reward_draws, -np.inf)
    p_best = np.bincount(eligible.argmax(axis=1), minlength=k) / rule.n_draws
    loss = np.where(ok, (eligible.max(axis=1, keepdims=True) - g.reward_draws).mean(axis=0), np.nan)
    winner = int(np.argmax(p_best))
    against = nan
    if model is not None:
        against = mixture_evidence(model, policy.reward_stats)[winner]
        against[~ok | (np.arange(k) == winner)] = np.inf
    evidence = float(against.min())
    stop = bool(p_best[winner] >= rule.prob_best and loss[winner] <= rule.max_loss
                and (not rule.anytime or evidence >= threshold))
    return StoppingResult(stop, winner, float(p_best[winner]), float(loss[winner]), used, p_best, loss, ok,
                          evidence, threshold, against)


def _anytime_model(policy: ThompsonSampling, rule: StoppingRule) -> BetaBernoulli | None:
    """The reward model the anytime-valid test reads (None when the rule does not use it)."""
    if not rule.anytime:
        return None
    if not isinstance(policy.model, BetaBernoulli):
        raise BanditInputError("anytime", "the anytime-valid test needs rewards in [0, 1] (a BetaBernoulli "
                               "model); anytime=False judges by the posterior alone")
    return policy.model


@dataclass(frozen=True)
class GLRRule:
    """Chernoff stopping for best-arm identification with error probability about `delta`.

    calibrated: a constant threshold that replaces the default one, chosen by simulating the
    experiment (as a power calculation sizes a fixed test); the default is conservative.
    """

    delta: float = 0.05
    calibrated: float | None = None

    def __post_init__(self) -> None:
        in_range(self.delta, "delta", 1e-300, 1.0)
        if self.calibrated is not None:
            in_range(self.calibrated, "calibrated", 0.0, np.inf)

    def threshold(self, observations: float, n_arms: int) -> float:
        """The calibrated constant, else log((K - 1) (1 + log t) / delta), t = observations (>= 1)."""
        if self.calibrated is not None:
            return self.calibrated
        return float(np.log(max(n_arms - 1, 1) * (1 + np.log(max(observations, 1.0))) / self.delta))


@dataclass(frozen=True)
class GLRResult:
    """The decision and the evidence: arm_statistic[j] = W[winner, j] (inf at the winner)."""

    stop: bool
    winner: int
    statistic: float
    threshold: float
    samples_used: int
    arm_statistic: np.ndarray


def check_glr(policy: ThompsonSampling, rule: GLRRule = GLRRule()) -> GLRResult:
    """Judge the GLR rule from the policy's reward statistics (uses its memory's counts)."""
    if not isinstance(policy, ThompsonSampling):
        raise BanditInputError("policy", "the GLR rule needs a reward model (a Thompson policy)")
    stats = policy.reward_stats
    winner = int(np.argmax(stats.mean(default=-np.inf)))
    row = transport_costs(policy.model, stats)[winner]
    row[winner] = np.inf
    statistic = float(row.min())
    threshold = rule.threshold(stats.n.sum(), policy.n_arms)
    return GLRResult(statistic > threshold, winner, statistic, threshold, int(policy.pulls.sum()), row)
