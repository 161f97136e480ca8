"""Off-policy evaluation from a log of (arm, reward, logging propensity): replay, IPS, SNIPS and
doubly robust estimates of a target policy's mean reward, with percentile-bootstrap confidence
intervals and the effective sample size of the importance weights.

Every estimator is a ratio sum(num_i) / sum(den_i) of per-row terms, so one bootstrap serves all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit import checks
from bandit.errors import BanditInputError

ESTIMATORS = ("replay", "ips", "snips", "dr")


@dataclass(frozen=True)
class LoggedBandit:
    """A log of decisions made by a behaviour policy; `positions` is an optional slot id."""

    arms: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    n_arms: int
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        arms = checks.arms(self.arms, checks.positive_int(self.n_arms, "n_arms"))
        n = len(arms)
        object.__setattr__(self, "arms", arms)
        object.__setattr__(self, "rewards", checks.values(self.rewards, n, "rewards"))
        object.__setattr__(self, "propensities", checks.values(self.propensities, n, "propensities", 0.0, 1.0, True))
        if self.positions is not None:
            object.__setattr__(self, "positions", checks.arms(self.positions, n + 1, "positions"))
            if len(self.positions) != n:
                raise BanditInputError("positions", f"expected {n} values to match arms")

    def __len__(self) -> int:
        return len(self.arms)


@dataclass(frozen=True)
class Estimate:
    """A policy-value estimate with its (1 - alpha) bootstrap interval and effective sample size."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    ess: float
    n: int


def _check_target(log: LoggedBandit, target: np.ndarray, field: str) -> np.ndarray:
    t = np.asarray(target, dtype=np.float64)
    if t.shape != (len(log), log.n_arms):
        raise BanditInputError(field, f"expected shape ({len(log)}, {log.n_arms}), got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise BanditInputError(field, "non-finite value")
    return t


def _terms(name: str, log: LoggedBandit, target: np.ndarray, q_hat: np.ndarray | None,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-row numerator and denominator terms, and the effective sample size."""
    rows = np.arange(len(log))
    w = target[rows, log.arms] / log.propensities
    ess = float(w.sum() ** 2 / max((w * w).sum(), 1e-300))
    if name == "replay":
        if not np.allclose(log.propensities, log.propensities[0]):
            raise BanditInputError("estimators", "replay needs a log from a uniformly random policy")
        cdf = np.cumsum(target, axis=1)
        draw = (cdf <= rng.random(len(log))[:, None] * cdf[:, -1:]).sum(axis=1)
        match = (draw == log.arms).astype(np.float64)
        return match * log.rewards, match, float(match.sum())
    if name == "ips":
        return w * log.rewards, np.ones(len(log)), ess
    if name == "snips":
        return w * log.rewards, w, ess
    if name == "dr":
        if q_hat is None:
            raise BanditInputError("q_hat", "the doubly robust estimator needs a reward model")
        direct = (target * q_hat).sum(axis=1)
        return direct + w * (log.rewards - q_hat[rows, log.arms]), np.ones(len(log)), ess
    raise BanditInputError("estimators", f"unknown estimator {name!r}; choose from {ESTIMATORS}")


def off_policy_value(log: LoggedBandit, target: np.ndarray, q_hat: np.ndarray | None = None,
             estimators: tuple[str, ...] | None = None, n_boot: int = 2000, alpha: float = 0.05,
             rng: np.random.Generator | int | None = None) -> dict[str, Estimate]:
    """Estimate the mean reward of a target policy given as P(arm | logged row), shape (n, K).

    q_hat (n, K) is the reward model for DR (e.g. `cross_fitted_means`). By default every
    applicable estimator runs: replay only on uniformly random logs, DR only with q_hat.
    """
    target = _check_target(log, target, "target")
    q_hat = None if q_hat is None else _check_target(log, q_hat, "q_hat")
    if estimators is None:
        uniform = np.allclose(log.propensities, log.propensities[0])
        estimators = tuple(e for e in ESTIMATORS
                           if (e != "replay" or uniform) and (e != "dr" or q_hat is not None))
    checks.positive_int(n_boot, "n_boot")
    checks.in_range(alpha, "alpha", 1e-6, 0.5)
    rng = np.random.default_rng(rng)
    out = {}
    for name in estimators:
        num, den, ess = _terms(name, log, target, q_hat, rng)
        boot = _bootstrap(num, den, n_boot, rng)
        low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
        value = num.sum() / den.sum() if den.sum() > 0 else float("nan")
        out[name] = Estimate(name, float(value), float(low), float(high), ess, len(log))
    return out


def _bootstrap(num: np.ndarray, den: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Ratio estimates on n_boot row resamples (computed in chunks to bound memory)."""
    n = len(num)
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        d = den[idx].sum(axis=1)
        out[start:start + len(idx)] = np.where(d > 0, num[idx].sum(axis=1) / np.where(d > 0, d, 1), np.nan)
    return out


def cross_fitted_means(log: LoggedBandit, n_folds: int = 2, prior_strength: float = 1.0,
                       rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Reward model q_hat[i, a]: mean reward of arm a (in row i's position) from the other folds,
    shrunk towards the overall mean by `prior_strength` pseudo-observations. Cross-fitting keeps
    a row's own reward out of its model, as DR's unbiasedness argument needs."""
    checks.positive_int(n_folds, "n_folds", 2)
    rng = np.random.default_rng(rng)
    n, k = len(log), log.n_arms
    pos = np.zeros(n, dtype=np.int64) if log.positions is None else log.positions
    slots = int(pos.max()) + 1
    fold = rng.permutation(n) % n_folds
    q = np.empty((n, k))
    for f in range(n_folds):
        train = fold != f
        cell = pos[train] * k + log.arms[train]
        counts = np.bincount(cell, minlength=slots * k).reshape(slots, k)
        sums = np.bincount(cell, log.rewards[train], minlength=slots * k).reshape(slots, k)
        base = log.rewards[train].mean()
        q[fold == f] = ((sums + prior_strength * base) / (counts + prior_strength))[pos[fold == f]]
    return q
