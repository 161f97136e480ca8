"""The decision rule an experiment ends on, its verdict as a pure function of per-arm statistics,
and the Thompson policy that serves it.

One rule (`DecisionRule`, a config's `[decision]` section), shared by the simulator and the online
service: an objective ("reward": the most reward among the arms that pass the guardrails; "cost":
the cheapest arm, by p99 latency or by bytes, among those non-inferior to the control), the
guardrails (a p99 latency SLO; non-inferiority to the control within a relative or absolute
margin), the confidence, and the minimum and maximum requests.

`decide` judges the rule from per-arm counts, summed rewards in [0, 1], log-latency statistics and
bytes (numbers any store keeps). A variant is declared only when every statement the verdict makes
about rewards holds by a sequential test at level 1 - confidence, union over the K - 1 arms a
statement can be wrong about, so that checking after every batch does not inflate the error (a
one-sided normal-mixture likelihood ratio of the estimated gap, `mixture_evidence`: exact for
Gaussian increments, asymptotic for click counts; its threshold calibrated to the experiment's
horizon, max_requests, by simulation at the boundary, `calibrated_threshold`, and never above
Ville's bound ln((K - 1) / (1 - confidence)), which holds for any horizon):
 - cost: the declared arm is non-inferior (r >= g(r_control), g(x) = (1 - margin) x or x - margin)
   and meets the SLO; every other arm is shown inferior, shown to break the SLO, or is costlier
   (bytes exactly; p99 with posterior probability >= confidence);
 - reward: the declared arm meets both guardrails, has posterior P(best among the arms that pass
   them) >= confidence and is shown better than every arm not excluded (the mixture averaged over
   one, two and four times the margin's scale: `scale_mixture_evidence`).
Latency statements (P(p99 <= SLO), P(p99_i < p99_j)) come from the lognormal posterior
(`LogNormalLatency`, seeded Monte Carlo draws), which every request informs: posterior
probabilities, not anytime-valid tests. Before `min_requests` nothing is declared; at
`max_requests` the verdict is "no decision yet", with the leader and what it still lacks.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import special

from bandit.array_cache import cached_array
from bandit.checks import in_range, positive_int
from bandit.errors import BanditArmCountError, BanditInputError
from bandit.memory import ArmStats, Stationary
from bandit.policies.thompson import ThompsonSampling
from bandit.posterior import BetaBernoulli, LogNormalLatency
from bandit.state import serializable

P99 = 0.99
_PRIOR = BetaBernoulli()
_QUADRATURE = (np.arange(128) + 0.5) / 128  # midpoints in the control's quantile space (error < 1e-4)


def _one_of(value: object, field: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BanditInputError(field, f"{value!r} is not one of {', '.join(map(repr, allowed))}")


@serializable
@dataclass(frozen=True)
class DecisionRule:
    """What an experiment must show before a variant is served (see the module docstring)."""

    objective: Literal["reward", "cost"] = "reward"
    cost_by: Literal["p99_ms", "bytes"] = "p99_ms"  # the cost of the "cost" objective
    slo_p99_ms: float | None = None  # guardrail: p99 latency at most this; None: no SLO
    control: str = "dlrm"  # the arm others must not be inferior to (the fp32 model)
    margin: float = 0.01  # non-inferiority margin: r >= (1 - margin) r_control, or r_control - margin
    margin_kind: Literal["relative", "absolute"] = "relative"
    confidence: float = 0.95  # 1 - the error level of a declared verdict
    min_requests: int = 10_000  # nothing is declared before this many requests
    max_requests: int = 200_000  # the experiment ends here: "no decision yet" if nothing was declared

    def __post_init__(self) -> None:
        _one_of(self.objective, "objective", ("reward", "cost"))
        _one_of(self.cost_by, "cost_by", ("p99_ms", "bytes"))
        _one_of(self.margin_kind, "margin_kind", ("relative", "absolute"))
        if self.slo_p99_ms is not None:
            in_range(self.slo_p99_ms, "slo_p99_ms", 0.0, np.inf, closed=False)
        if not isinstance(self.control, str) or not self.control:
            raise BanditInputError("control", f"expected an arm name, got {self.control!r}")
        in_range(self.margin, "margin", 0.0, 1.0)
        if self.margin >= 1:
            raise BanditInputError("margin", f"must be below 1, got {self.margin!r}")
        in_range(self.confidence, "confidence", 0.5, 1.0, closed=False)
        positive_int(self.min_requests, "min_requests", 0)
        positive_int(self.max_requests, "max_requests")
        if self.max_requests < self.min_requests:
            raise BanditInputError("max_requests", f"{self.max_requests} is below min_requests = {self.min_requests}")

    @property
    def needs_latency(self) -> bool:
        return self.slo_p99_ms is not None or (self.objective == "cost" and self.cost_by == "p99_ms")

    def threshold(self, n_arms: int) -> float:
        """ln((K - 1) / (1 - confidence)): the log evidence each reward statement needs."""
        return float(np.log(max(n_arms - 1, 1)) - np.log1p(-self.confidence))

    def floor(self, control_reward: np.ndarray | float) -> np.ndarray:
        """g(r_control): the least reward that is non-inferior to the control's."""
        c = np.asarray(control_reward, dtype=np.float64)
        return c * (1 - self.margin) if self.margin_kind == "relative" else c - self.margin

    def describe(self) -> str:
        """The rule in one sentence."""
        margin = f"{self.margin:.3g}" + (" relative" if self.margin_kind == "relative" else " absolute")
        guard = f"non-inferior to {self.control} (margin {margin})"
        if self.slo_p99_ms is not None:
            guard += f" with p99 <= {self.slo_p99_ms:g} ms"
        goal = ("the most reward" if self.objective == "reward"
                else f"the lowest {'p99 latency' if self.cost_by == 'p99_ms' else 'bytes'}")
        return (f"serve the variant with {goal} among those {guard}, at confidence {self.confidence:g}, "
                f"after {self.min_requests:,} to {self.max_requests:,} requests")


@dataclass(frozen=True)
class LatencyStats:
    """Per-arm count, sum and sum of squares of log latency (ms): the lognormal posterior's input."""

    n: np.ndarray
    log_sum: np.ndarray
    log_sumsq: np.ndarray

    @staticmethod
    def of(arms: np.ndarray, latency_ms: np.ndarray, n_arms: int) -> LatencyStats:
        """From per-request arm ids and latencies (> 0)."""
        log = np.log(np.asarray(latency_ms, np.float64))
        a = np.asarray(arms, np.int64)
        return LatencyStats(np.bincount(a, minlength=n_arms).astype(np.float64),
                            np.bincount(a, log, minlength=n_arms), np.bincount(a, log * log, minlength=n_arms))

    def __add__(self, other: LatencyStats) -> LatencyStats:
        return LatencyStats(self.n + other.n, self.log_sum + other.log_sum, self.log_sumsq + other.log_sumsq)

    def arm_stats(self) -> ArmStats:
        s = ArmStats(len(self.n), Stationary())
        s.n, s.s, s.ss = (np.asarray(x, np.float64).copy() for x in (self.n, self.log_sum, self.log_sumsq))
        return s


@dataclass(frozen=True)
class ArmStatus:
    """One arm under the rule; probabilities are posterior, evidence is a log evidence."""

    name: str
    requests: int
    reward: float | None  # mean reward; None if never served
    p_chosen: float  # P(this arm is the rule's answer) under the posterior
    p_noninferior: float | None  # P(r >= g(r_control)); None for the control
    p_slo: float | None  # P(p99 <= SLO); None without an SLO
    p99_ms: float | None  # posterior median of p99; None without latencies
    bytes: float | None
    evidence_noninferior: float  # for "non-inferior" (inf for the control)
    evidence_inferior: float  # for "inferior" (-inf for the control)
    status: str  # chosen, leader, inferior, breaks SLO, open (evidence still needed), settled


@dataclass(frozen=True)
class Decision:
    """The verdict of a rule on the data so far."""

    decided: bool
    chosen: str | None  # the variant to serve; None: no decision yet
    leader: str  # the chosen arm, else the most likely answer
    reason: str  # why it was chosen, or what the leader still lacks
    requests: int
    final: bool  # max_requests reached without a decision
    threshold: float
    arms: tuple[ArmStatus, ...]

    def arm(self, name: str) -> ArmStatus:
        return next(a for a in self.arms if a.name == name)

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Decision:
        arms = tuple(ArmStatus(**{k: _infinite(k, v) for k, v in a.items()}) for a in d["arms"])
        return Decision(**{**d, "arms": arms})


def decide(rule: DecisionRule, names: Sequence[str], requests: Any, rewards: Any,
           latency: LatencyStats | None = None, bytes: Sequence[float] | None = None,
           n_draws: int = 20_000, seed: int = 0) -> Decision:
    """The rule's verdict from per-arm requests, summed rewards in [0, 1], log-latency statistics
    and bytes; deterministic for a given `seed` (of the latency posterior's Monte Carlo draws)."""
    k = len(names)
    n, s = _counts(requests, rewards, k)
    if rule.control not in names:
        raise BanditArmCountError("control", f"no arm {rule.control!r} (arms: {', '.join(names)})")
    if rule.needs_latency and latency is None:
        raise BanditInputError("latency", "the rule judges p99 latency: pass the arms' latency statistics")
    if rule.objective == "cost" and rule.cost_by == "bytes" and (bytes is None or len(bytes) != k):
        raise BanditInputError("bytes", f"the rule's cost is bytes: pass {k} values, one per arm")
    c = list(names).index(rule.control)
    rng = np.random.default_rng(seed)
    p99 = None if latency is None else LogNormalLatency().sample_percentile(latency.arm_stats(), P99, n_draws, rng)
    evidence = _evidence(rule, n, s, c)
    threshold = calibrated_threshold(rule, k, information_horizon(rule, n, s, c))
    view = _View(rule, list(names), n, s, c, p99, None if bytes is None else np.asarray(bytes, np.float64),
                 evidence, threshold, _chosen_share(rule, n, s, c, p99, bytes, n_draws, rng))
    return view.verdict()


def information_horizon(rule: DecisionRule, n: np.ndarray, s: np.ndarray, control: int) -> float:
    """tau^2 (`effect_scale`) times the most information (1 / the variance of its estimated gap) any
    statement can have at max_requests: every request on its two arms, split at best, at the
    smallest per-request variance of any arm (posterior mean rates), the slope of the margin's side
    at most 1: max_requests / ((1 + a)^2 v_min)."""
    p = (s + 1) / (n + 2)
    slope = 1 - rule.margin if rule.margin_kind == "relative" else 1.0
    v = float(np.min(p * (1 - p)))
    tau = effect_scale(rule, float(_moments(n, s)[0][control]))
    return tau * tau * rule.max_requests / ((1 + slope) ** 2 * v)


def calibrated_threshold(rule: DecisionRule, n_arms: int, horizon: float) -> float:
    """The log evidence each reward statement needs: the least that a statement at the boundary
    (true gap 0) reaches with probability at most (1 - confidence) / (K - 1), ever, within
    `horizon` (`information_horizon`, rounded up to a power of 2^(1/4)), checked continuously
    (`_boundary_maxima`; under the reward objective the larger of `mixture_evidence`'s and
    `scale_mixture_evidence`'s), and never above `rule.threshold`, Ville's bound for any horizon.
    An experiment ends at max_requests, so its evidence need not hold forever: over the horizons of
    bench/decision.py's scenarios the boundary statement reaches Ville's bound in a third to two
    thirds of the share the rule allows it. The quantile is taken at 0.75 of that share: the
    margin for the grid of looks (continuous looks cross a little more) and the Monte Carlo error."""
    level = (1 - rule.confidence) / max(n_arms - 1, 1)
    column = int(np.searchsorted(_HORIZONS, horizon))
    if column == len(_HORIZONS):
        return rule.threshold(n_arms)
    kinds = (False, True) if rule.objective == "reward" else (False,)
    need = max(float(np.quantile(_boundary_maxima(scaled)[:, column], 1 - 0.75 * level)) for scaled in kinds)
    return min(rule.threshold(n_arms), need)


_HORIZONS = 2.0 ** (np.arange(-40, 121) / 4)  # 10^-3 to 10^9 in units of tau^-2


@functools.cache
def _boundary_maxima(scaled: bool, paths: int = 8000) -> np.ndarray:
    """`_simulated_maxima`, computed once per machine (0.6 s, 1.5 s with `scale_mixture_evidence`,
    on 2 cores: every process that builds a DecisionTS, the service's restart included, paid both)
    and read from the disk cache after (bandit.array_cache, keyed by the code that computes it)."""
    key = f"{_code_key()}\0{scaled}\0{paths}"
    return cached_array(f"boundary-maxima-{'scaled' if scaled else 'plain'}", key,
                        lambda: _simulated_maxima(scaled, paths), (paths, len(_HORIZONS)))


@functools.cache
def _code_key() -> str:
    """What the simulated maxima depend on: the code that computes them and the horizons."""
    sources = [inspect.getsource(f) for f in (_simulated_maxima, mixture_evidence, scale_mixture_evidence)]
    return "\0".join(sources + [_HORIZONS.tobytes().hex()])


def _simulated_maxima(scaled: bool, paths: int) -> np.ndarray:
    """(paths, horizons): the most evidence a gap-0 statement shows up to each of `_HORIZONS`, in
    information time s (units tau^-2): Brownian motion B(s), the estimate B(s) / s of variance 1 / s
    at tau = 1, looked at 60 times per factor e from s = 10^-4; seeded."""
    rng = np.random.default_rng(0)
    times = np.geomspace(1e-4, _HORIZONS[-1], int(60 * np.log(_HORIZONS[-1] / 1e-4)))
    steps = np.sqrt(np.diff(times, prepend=0.0))
    walk, most = np.zeros(paths), np.full(paths, -np.inf)
    out = np.empty((paths, len(_HORIZONS)))
    evidence = scale_mixture_evidence if scaled else mixture_evidence
    column = 0
    for t, step in zip(times, steps):
        walk += step * rng.standard_normal(paths)
        up = walk > 0.5 * np.sqrt(t)  # z > 0.5: below it no evidence comes near any threshold
        if up.any():
            most[up] = np.maximum(most[up], evidence(walk[up] / t, np.full(int(up.sum()), 1 / t), 1.0))
        while column < len(_HORIZONS) and _HORIZONS[column] <= t * (1 + 1e-12):
            out[:, column] = most
            column += 1
    out[:, column:] = most[:, None]
    return out


def noninferior_probability(rule: DecisionRule, n: np.ndarray, s: np.ndarray, control: int) -> np.ndarray:
    """P(r_k >= g(r_control)) per arm under Beta(1 + s, 1 + n - s) posteriors: the expectation over
    the control's posterior of 1 - F_k(g(x)), by the midpoint rule on 128 of its quantiles."""
    a, b = _PRIOR.params(_stats(n, s))
    x = special.betaincinv(a[control], b[control], _QUADRATURE)
    g = np.clip(rule.floor(x), 0.0, 1.0)
    p = 1 - special.betainc(a[:, None], b[:, None], g[None, :])
    out = p.mean(axis=1)
    out[control] = 1.0
    return out


def margin_evidence(rule: DecisionRule, n: np.ndarray, s: np.ndarray, control: int) -> tuple[np.ndarray, np.ndarray]:
    """Log evidence, per arm, for "non-inferior" (against the null r <= g(r_control)) and for
    "inferior" (against r >= g(r_control)): `mixture_evidence` of the estimated gap
    r_k - g(r_control) and its variance. The control gets (inf, -inf)."""
    a = 1 - rule.margin if rule.margin_kind == "relative" else 1.0
    m, v = _moments(n, s)
    gap = m - rule.floor(m[control])
    var = v + a * a * v[control]
    tau = effect_scale(rule, m[control])
    ni, inf = mixture_evidence(gap, var, tau), mixture_evidence(-gap, var, tau)
    ni[control], inf[control] = np.inf, -np.inf
    return ni, inf


def mixture_evidence(gap: np.ndarray, var: np.ndarray, tau: float) -> np.ndarray:
    """ln of the one-sided normal-mixture likelihood ratio against "true gap <= 0", for an estimated
    gap with variance `var`: the Gaussian likelihood of the estimate averaged over gaps drawn from
    the half-normal 2 N(0, tau^2) on gap > 0, over its likelihood at gap 0, i.e. with S = var (var + tau^2)
    ln 2 + 0.5 ln(var / (var + tau^2)) + gap^2 tau^2 / (2 S) + ln Phi(gap tau / sqrt(S)),
    and -inf where the estimate is not above 0. Each likelihood ratio of a gap > 0 against gap 0 is a
    martingale of mean 1 at gap 0 and a supermartingale at any gap < 0, so their average is too
    (exactly for Gaussian increments, asymptotically for Bernoulli counts); by Ville's inequality it
    reaches ln(1 / delta) with probability at most delta, ever (Robbins' mixture; Howard et al. 2021).
    Spending no prior mass on gaps of the wrong sign gains up to ln 2 over the two-sided mixture."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = var * (var + tau * tau)
        out = (np.log(2.0) + 0.5 * np.log(var / (var + tau * tau)) + gap * gap * tau * tau / (2 * spread)
               + special.log_ndtr(gap * tau / np.sqrt(spread)))
    return np.where((gap > 0) & np.isfinite(var), out, -np.inf)


def effect_scale(rule: DecisionRule, control_reward: float) -> float:
    """tau, the gap the mixture is tuned to: the margin (relative: times the control's reward), or 1%
    of the control's reward with no margin."""
    if rule.margin == 0:
        return 0.01 * max(float(control_reward), 1e-6)
    return rule.margin * max(float(control_reward), 1e-6) if rule.margin_kind == "relative" else rule.margin


def _moments(n: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per arm: the mean reward (posterior mean for unseen arms) and the variance of that mean
    (Bernoulli, from the posterior mean so never 0; inf for an unseen arm)."""
    p = (s + 1) / (n + 2)
    m = np.divide(s, n, out=p.copy(), where=n > 0)
    with np.errstate(divide="ignore"):
        return m, np.where(n > 0, p * (1 - p) / np.maximum(n, 1), np.inf)


@dataclass(frozen=True)
class _Evidence:
    noninferior: np.ndarray  # per arm, for "non-inferior"
    inferior: np.ndarray  # per arm, for "inferior"
    beats: np.ndarray  # (K, K) for "i has more reward than j" (the reward objective's; -inf under "cost")


def _evidence(rule: DecisionRule, n: np.ndarray, s: np.ndarray, control: int) -> _Evidence:
    ni, inf = margin_evidence(rule, n, s, control)
    m, v = _moments(n, s)
    if rule.objective != "reward":
        return _Evidence(ni, inf, np.full((len(n), len(n)), -np.inf))
    beats = scale_mixture_evidence(m[:, None] - m[None, :], v[:, None] + v[None, :], effect_scale(rule, m[control]))
    return _Evidence(ni, inf, beats)


def scale_mixture_evidence(gap: np.ndarray, var: np.ndarray, tau: float,
                           scales: tuple[float, ...] = (1.0, 2.0, 4.0)) -> np.ndarray:
    """`mixture_evidence` averaged over tau x scales, equal weights: for "arm i has more reward than
    arm j", a gap with no natural scale (the margin is one for non-inferiority only); an average of
    e-processes is one, so the level holds, and a gap of 2-4 margins is shown sooner than at tau
    alone (about 10% fewer requests at twice tau, 5% more at tau)."""
    each = np.stack([mixture_evidence(gap, var, tau * k) for k in scales])
    with np.errstate(divide="ignore"):
        return special.logsumexp(each, axis=0) - np.log(len(scales))


def _chosen_share(rule: DecisionRule, n: np.ndarray, s: np.ndarray, control: int, p99: np.ndarray | None,
                  bytes: Sequence[float] | None, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """P(each arm is the rule's answer): the share of joint posterior draws (rewards, p99) in which
    it is the best (reward) or the cheapest (cost) arm among those passing both guardrails."""
    r = _PRIOR.sample(_stats(n, s), n_draws, rng)
    ok = r >= rule.floor(r[:, control:control + 1])
    if rule.slo_p99_ms is not None and p99 is not None:
        ok &= p99 <= rule.slo_p99_ms
    if rule.objective == "reward":
        key = -r
    elif rule.cost_by == "bytes":
        ranks = np.unique(np.asarray(bytes, np.float64), return_inverse=True)[1]
        key = ranks[None, :] + (1 - r) / 2  # equal bytes: the more reward
    else:
        key = p99 if p99 is not None else np.zeros_like(r)
    key = np.where(ok, key, np.inf)
    some = ok.any(axis=1)
    return np.bincount(key[some].argmin(axis=1), minlength=len(n)) / len(r)


@dataclass
class _View:
    """Everything the verdict reads, computed once."""

    rule: DecisionRule
    names: list[str]
    n: np.ndarray
    s: np.ndarray
    control: int
    p99: np.ndarray | None
    bytes: np.ndarray | None
    evidence: _Evidence
    threshold: float
    p_chosen: np.ndarray

    def verdict(self) -> Decision:
        used = int(self.n.sum())
        answers = [i for i in range(len(self.names)) if self.eligible[i] and not self.blockers(i)]
        chosen = max(answers, key=lambda i: self.mean[i]) if answers and used >= self.rule.min_requests else None
        leader = chosen if chosen is not None else self.leader()
        final = chosen is None and used >= self.rule.max_requests
        reason = self.why(chosen) if chosen is not None else self.lacking(leader, used)
        needed = set(self.blockers(leader)) | {leader}
        statuses = tuple(self.status(i, chosen, leader, needed) for i in range(len(self.names)))
        return Decision(chosen is not None, None if chosen is None else self.names[chosen], self.names[leader],
                        reason, used, final, self.threshold, statuses)

    @cached_property
    def mean(self) -> np.ndarray:
        return np.divide(self.s, self.n, out=np.full(len(self.n), np.nan), where=self.n > 0)

    @cached_property
    def p_noninferior(self) -> np.ndarray:
        return noninferior_probability(self.rule, self.n, self.s, self.control)

    @cached_property
    def p_slo(self) -> np.ndarray | None:
        if self.rule.slo_p99_ms is None or self.p99 is None:
            return None
        return (self.p99 <= self.rule.slo_p99_ms).mean(axis=0)

    @cached_property
    def eligible(self) -> np.ndarray:
        """Arms shown non-inferior that meet the SLO with confidence."""
        slo_ok = np.ones(len(self.n), bool) if self.p_slo is None else self.p_slo >= self.rule.confidence
        return slo_ok & (self.evidence.noninferior >= self.threshold)

    @cached_property
    def breaks_slo(self) -> np.ndarray:
        return np.zeros(len(self.n), bool) if self.p_slo is None else self.p_slo <= 1 - self.rule.confidence

    @cached_property
    def excluded(self) -> np.ndarray:
        """Arms shown inferior or shown to break the SLO."""
        return self.breaks_slo | (self.evidence.inferior >= self.threshold)

    def costlier(self, i: int, j: int) -> bool:
        """Arm j costs at least as much as arm i (bytes), or more with confidence (p99)."""
        if self.rule.cost_by == "bytes":
            assert self.bytes is not None
            return bool(self.bytes[j] >= self.bytes[i])
        assert self.p99 is not None
        return bool((self.p99[:, i] < self.p99[:, j]).mean() >= self.rule.confidence)

    def blockers(self, i: int) -> list[int]:
        """The other arms that keep arm i from being declared (besides its own guardrails)."""
        out = []
        for j in (j for j in range(len(self.names)) if j != i and not self.excluded[j]):
            if self.rule.objective == "cost" and not self.costlier(i, j):
                out.append(j)
            if self.rule.objective == "reward" and self.evidence.beats[i, j] < self.threshold:
                out.append(j)
        return out

    def leader(self) -> int:
        return int(np.argmax(self.p_chosen)) if self.p_chosen.max() > 0 else self.control

    def why(self, i: int) -> str:
        name, rule = self.names[i], self.rule
        parts = [f"{name} is non-inferior to {rule.control}" + (
            " (the control)" if i == self.control else f" (log evidence "
            f"{self.evidence.noninferior[i]:.1f} >= {self.threshold:.1f})")]
        if self.p_slo is not None:
            parts.append(f"meets p99 <= {rule.slo_p99_ms:g} ms (P = {self.p_slo[i]:.3f})")
        if rule.objective == "reward":
            parts.append(f"has the most reward (P(best) = {self.p_chosen[i]:.3f}; it beats every arm not excluded, "
                         "by its evidence)")
        else:
            shown = "is shown inferior or to break the SLO" if rule.slo_p99_ms is not None else "is shown inferior"
            parts.append(f"is the cheapest such arm by {rule.cost_by.replace('_ms', '')} (every other arm costs "
                         f"more or {shown})")
        return "; ".join(parts)

    def lacking(self, i: int, used: int) -> str:
        """What arm i (the leader) still lacks, first things first."""
        rule, name, conf = self.rule, self.names[i], self.rule.confidence
        if used < rule.min_requests:
            return f"{used:,} requests, the rule asks for at least {rule.min_requests:,}"
        if self.p_slo is not None and self.p_slo[i] < conf:
            return f"{name}: P(p99 <= {rule.slo_p99_ms:g} ms) = {self.p_slo[i]:.3f} < {conf:g}"
        if self.evidence.noninferior[i] < self.threshold:
            return (f"{name} not yet shown non-inferior to {rule.control}: P(non-inferior) = "
                    f"{self.p_noninferior[i]:.3f}, log evidence {self.evidence.noninferior[i]:.1f} < "
                    f"{self.threshold:.1f}")
        if rule.objective == "reward" and self.p_chosen[i] < conf:
            return f"{name}: P(best) = {self.p_chosen[i]:.3f} < {conf:g}"
        j = self.blockers(i)[0]
        if rule.objective == "reward":
            return (f"{name} not yet shown better than {self.names[j]} (log evidence "
                    f"{self.evidence.beats[i, j]:.1f} < {self.threshold:.1f})")
        if rule.cost_by == "bytes" or self.costlier(j, i):
            return (f"{self.names[j]} is cheaper and not yet shown inferior (P(non-inferior) = "
                    f"{self.p_noninferior[j]:.3f})")
        return f"{name}'s p99 not yet shown below {self.names[j]}'s"

    def status(self, i: int, chosen: int | None, leader: int, needed: set[int]) -> ArmStatus:
        label = ("chosen" if i == chosen else "leader" if i == leader else
                 "inferior" if self.evidence.inferior[i] >= self.threshold else
                 "breaks SLO" if self.breaks_slo[i] else "open" if i in needed and chosen is None else "settled")
        return ArmStatus(
            name=self.names[i], requests=int(self.n[i]), reward=None if self.n[i] == 0 else float(self.mean[i]),
            p_chosen=float(self.p_chosen[i]),
            p_noninferior=None if i == self.control else float(self.p_noninferior[i]),
            p_slo=None if self.p_slo is None else float(self.p_slo[i]),
            p99_ms=None if self.p99 is None else float(np.median(self.p99[:, i])),
            bytes=None if self.bytes is None else float(self.bytes[i]),
            evidence_noninferior=float(self.evidence.noninferior[i]),
            evidence_inferior=float(self.evidence.inferior[i]), status=label)


class DecisionTS(ThompsonSampling):
    """Thompson sampling for a DecisionRule: a tenth of the traffic by each arm's posterior probability
    of being the rule's answer (`decide`'s p_chosen), the rest in proportion to the requests each arm
    still lacks on the cheapest completion of the statements the leader's verdict needs (its own
    non-inferiority or its lead, and one statement about each arm still open, all against one
    partner: the control, or under the reward objective the leader; `star_completion`): a plug-in of
    the allocation that ends the experiment soonest, tracked as the estimates move. Arms already
    shown inferior, dominated or costlier than the leader get only their share of the tenth.
    Rewards in [0, 1] (BetaBernoulli), each with its latency. `rule`, `control` (its arm id) and
    `costs` (bytes per arm, for cost_by = "bytes") are set by whoever knows the arms (the
    simulator, the service)."""

    set_by_caller: ClassVar[tuple[str, ...]] = ("rule", "control", "costs")
    # the plan moves slowly: recomputed when the feedback has grown by a tenth (Allocation.reweight_fraction),
    # so that one-request-at-a-time decisions outpace MABWiser's Thompson sampling (bench/bandit_bench.py),
    # and at the latest every 4,096 observations (reweight_within), so that it follows a long experiment
    default_reweight_fraction = 0.1
    default_reweight_within = 4096
    EXPLORE: ClassVar[float] = 0.1  # the share allocated by P(chosen)

    @property
    def needs_latency(self) -> bool:
        """Only when the rule reads latency (an SLO, or cost by p99)."""
        return self.rule.needs_latency

    def __init__(self, n_arms: int, rule: DecisionRule = DecisionRule(), control: int = 0,
                 costs: tuple[float, ...] = (), n_draws: int = 4000, **kwargs: Any) -> None:
        if not isinstance(rule, DecisionRule):
            raise BanditInputError("rule", f"expected a DecisionRule, got {rule!r}")
        self.rule, self.n_draws = rule, positive_int(n_draws, "n_draws")
        self.control, self.costs = positive_int(control, "control", 0), tuple(costs)
        super().__init__(n_arms, rule=rule, control=control, costs=self.costs, n_draws=n_draws, **kwargs)
        if not isinstance(self.model, BetaBernoulli):
            raise BanditInputError("model", "DecisionTS judges rewards in [0, 1]: a BetaBernoulli model")
        if self.control >= self.n_arms:
            raise BanditArmCountError("control", f"not an arm id below {self.n_arms}")
        if self.costs and len(self.costs) != self.n_arms:  # none yet: decide() asks for them
            raise BanditArmCountError("costs", f"expected {self.n_arms} byte counts, got {len(self.costs)}")
        calibrated_threshold(rule, self.n_arms, 1.0)  # its one-time simulation now, not in a decision's time

    def decision(self) -> Decision:
        """The rule's verdict on the policy's own statistics (arms named by their ids)."""
        names = [str(i) for i in range(self.n_arms)]
        rule = _renamed(self.rule, str(self.control))
        lat = self.latency_stats
        latency = LatencyStats(lat.n, lat.s, lat.ss) if self.rule.needs_latency else None
        return decide(rule, names, self.reward_stats.n, self.reward_stats.s, latency, self.costs or None,
                      self.n_draws, int(self._rng.integers(2 ** 31)))

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        d = self.decision()
        chosen = np.array([a.p_chosen for a in d.arms])
        chosen = chosen / chosen.sum() if chosen.sum() > 0 else np.full(self.n_arms, 1 / self.n_arms)
        need = self._remaining(d)
        if need.sum() == 0:  # the plan says enough, the evidence is not there yet: the arms in question
            need = np.array([a.status in ("leader", "open") for a in d.arms], dtype=np.float64)
            need[self.control if self.rule.objective == "cost" else int(d.leader)] = 1.0
        return self.EXPLORE * chosen + (1 - self.EXPLORE) * need / need.sum()

    def _remaining(self, d: Decision) -> np.ndarray:
        """Requests each arm still lacks for the statements the leader's verdict needs, on the
        cheapest completion of the present counts (`star_completion`). The statements: each open
        arm against the partner (the control under the cost objective: shown inferior or
        non-inferior; the leader under the reward objective: shown worse), and under the reward
        objective the leader's own non-inferiority to the control. A statement's gap (floored at
        a quarter of the effect scale: an arm on the margin would take everything and still not be
        shown) needs its variance down to the V at which `mixture_evidence` reaches the threshold
        + 1. Arms the verdict no longer needs (shown inferior, dominated, costlier than the
        leader) get nothing here: only their share of P(chosen)."""
        n, s, rule = self.reward_stats.n, self.reward_stats.s, self.rule
        c, k = self.control, self.n_arms
        p = (s + 1) / (n + 2)
        v = p * (1 - p)
        leader = int(d.leader)
        partner = c if rule.objective == "cost" else leader
        slope2 = (1 - rule.margin) ** 2 if rule.margin_kind == "relative" else 1.0
        floor = float(rule.floor(p[c]))
        leaves = np.array([a.status in ("leader", "open") for a in d.arms]) & (np.arange(k) != partner)
        if rule.objective == "cost":
            gap, leaf_v, centre_v = np.abs(p - floor), v, np.full(k, slope2 * v[c])
        else:
            gap, leaf_v, centre_v = np.abs(p[leader] - p), v.copy(), np.full(k, v[leader])
            if leader != c:  # the leader's non-inferiority: the control is its leaf
                leaves[c] = True
                gap[c], leaf_v[c] = abs(p[leader] - floor), slope2 * v[c]
        tau = effect_scale(rule, p[c])
        target = variance_needed(np.maximum(gap, tau / 4), tau, d.threshold + 1)
        want = star_completion(n[leaves], leaf_v[leaves], centre_v[leaves], target[leaves], n[partner])
        out = np.zeros(k)
        if want is not None:
            out[leaves] = np.maximum(want[0] - n[leaves], 0.0)
            out[partner] = max(want[1] - n[partner], 0.0)
        return out


def star_completion(have: np.ndarray, leaf_var: np.ndarray, centre_var: np.ndarray, target: np.ndarray,
                    centre_have: float) -> tuple[np.ndarray, float] | None:
    """The fewest further requests that bring every statement j, of variance
    leaf_var[j] / n_j + centre_var[j] / n_centre, down to target[j], starting from the present counts
    (`have`, `centre_have`): for a centre count m, each leaf needs max(have_j, leaf_var_j /
    (target_j - centre_var_j / m)), and the total, convex in m, is minimised on a log grid of m.
    Returns the leaves' and the centre's counts, or None without statements."""
    if len(have) == 0:
        return None
    low = max(centre_have, float(np.max(centre_var / target)) * (1 + 1e-6), 1.0)
    m = low * np.geomspace(1.0, 1e4, 400)
    room = target[None, :] - centre_var[None, :] / m[:, None]
    leaves = np.maximum(have[None, :], leaf_var[None, :] / np.maximum(room, 1e-300))
    best = int(np.argmin(m + leaves.sum(axis=1)))
    return leaves[best], float(m[best])


def variance_needed(gap: np.ndarray, tau: float, evidence: float) -> np.ndarray:
    """The largest variance V at which `mixture_evidence(gap, V, tau)` reaches `evidence` (it falls
    as V grows), by bisection on log V."""
    lo, hi = np.full(np.shape(gap), np.log(1e-14)), np.zeros(np.shape(gap))
    for _ in range(30):  # log V to 32 / 2^30
        mid = (lo + hi) / 2
        enough = mixture_evidence(gap, np.exp(mid), tau) >= evidence
        lo, hi = np.where(enough, mid, lo), np.where(enough, hi, mid)
    return np.exp(lo)


def _renamed(rule: DecisionRule, control: str) -> DecisionRule:
    return replace(rule, control=control)


def _counts(requests: Any, rewards: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    n, s = np.asarray(requests, np.float64), np.asarray(rewards, np.float64)
    if n.shape != (k,) or s.shape != (k,):
        raise BanditInputError("requests", f"expected {k} counts and {k} reward sums, got {n.shape} and {s.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(s)) and np.all(n >= 0) and np.all((s >= 0) & (s <= n))):
        raise BanditInputError("rewards", "need 0 <= summed reward <= requests per arm (rewards in [0, 1])")
    return n, s


def _stats(n: np.ndarray, s: np.ndarray) -> ArmStats:
    out = ArmStats(len(n), Stationary())
    out.n, out.s, out.ss = n.copy(), s.copy(), s.copy()
    return out


def _finite(d: Any) -> Any:
    """JSON-safe: infinities as strings."""
    if isinstance(d, dict):
        return {k: _finite(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_finite(v) for v in d]
    if isinstance(d, float) and np.isinf(d):
        return "inf" if d > 0 else "-inf"
    return d


def _infinite(key: str, v: Any) -> Any:
    return float(v) if key.startswith("evidence") and isinstance(v, str) else v
