"""Conjugate posteriors for rewards and latencies, and the probability that each arm is best.

`sample` on a model is the one source of posterior draws: Thompson variants' Monte Carlo
propensities, the stopping rule and the latency guardrail all call it. `prob_best` computes the
Thompson sampling allocation P(arm i has the highest mean) by one-dimensional Gauss-Legendre
quadrature of f_i(x) * prod_{j != i} F_j(x) over the arms' independent posterior marginals, on a
grid split at every arm's quantiles; it is exact to about 1e-9, not a Monte Carlo estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from bandit.checks import in_range
from bandit.errors import BanditArmCountError
from bandit.memory import ArmStats
from bandit.state import serializable

_LEVELS = np.array([1e-12, 1e-6, 1e-3, 0.02, 0.15, 0.4, 0.6, 0.85, 0.98, 1 - 1e-3, 1 - 1e-6,
                    1 - 1e-12])
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(10)


def _per_arm(value: float | tuple, n_arms: int, field: str) -> np.ndarray:
    if not isinstance(value, tuple):
        return np.full(n_arms, float(value))
    if len(value) != n_arms:
        raise BanditArmCountError(f"model.{field}", f"expected one number or {n_arms} (one per arm), got {len(value)}")
    return np.asarray(value, dtype=np.float64)


@serializable
@dataclass(frozen=True)
class BetaBernoulli:
    """Beta(alpha, beta) prior on a click probability; alpha/beta may be per-arm tuples."""

    alpha: float | tuple = 1.0
    beta: float | tuple = 1.0
    reward_range = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if np.ndim(value) == 0:
                in_range(value, f"model.{name}", 0.0, np.inf, closed=False)
            else:
                per_arm = tuple(in_range(v, f"model.{name}", 0.0, np.inf, closed=False) for v in value)
                object.__setattr__(self, name, per_arm)

    def params(self, s: ArmStats) -> tuple[np.ndarray, np.ndarray]:
        """Posterior Beta parameters per arm (rewards in [0, 1] count fractionally)."""
        k = len(s.n)
        return _per_arm(self.alpha, k, "alpha") + s.s, _per_arm(self.beta, k, "beta") + s.n - s.s

    def marginal(self, s: ArmStats):
        """Frozen scipy distribution of each arm's mean."""
        return stats.beta(*self.params(s))

    def mean(self, s: ArmStats) -> np.ndarray:
        a, b = self.params(s)
        return a / (a + b)

    def sample(self, s: ArmStats, n_draws: int, rng: np.random.Generator) -> np.ndarray:
        """(n_draws, n_arms) draws of the arms' mean rewards."""
        a, b = self.params(s)
        return rng.beta(a, b, size=(n_draws, len(a)))


@serializable
@dataclass(frozen=True)
class NormalInverseGamma:
    """Normal-Inverse-Gamma prior on (mean, variance) of Gaussian observations."""

    mu: float = 0.0
    kappa: float = 1e-4
    alpha: float = 1.0
    beta: float = 1e-2
    reward_range = (-np.inf, np.inf)

    def __post_init__(self) -> None:
        in_range(self.mu, "model.mu", -1e300, 1e300)
        for name in ("kappa", "alpha", "beta"):
            in_range(getattr(self, name), f"model.{name}", 1e-300, np.inf)

    def params(self, s: ArmStats) -> tuple[np.ndarray, ...]:
        """Posterior (mu_n, kappa_n, alpha_n, beta_n) per arm."""
        kappa = self.kappa + s.n
        mu = (self.kappa * self.mu + s.s) / kappa
        spread = s.ss + self.kappa * self.mu ** 2 - kappa * mu ** 2
        return mu, kappa, self.alpha + s.n / 2, self.beta + 0.5 * np.maximum(spread, 0.0)

    def marginal(self, s: ArmStats):
        """Frozen scipy Student-t distribution of each arm's mean."""
        mu, kappa, alpha, beta = self.params(s)
        return stats.t(df=2 * alpha, loc=mu, scale=np.sqrt(beta / (alpha * kappa)))

    def mean(self, s: ArmStats) -> np.ndarray:
        return self.params(s)[0]

    def sample_params(self, s: ArmStats, n_draws: int, rng: np.random.Generator):
        """(n_draws, n_arms) joint draws of (mean, variance)."""
        mu, kappa, alpha, beta = self.params(s)
        var = beta / rng.gamma(alpha, 1.0, size=(n_draws, len(mu)))
        return mu + np.sqrt(var / kappa) * rng.standard_normal((n_draws, len(mu))), var

    def sample(self, s: ArmStats, n_draws: int, rng: np.random.Generator) -> np.ndarray:
        """(n_draws, n_arms) draws of the arms' means."""
        return self.sample_params(s, n_draws, rng)[0]


@serializable
@dataclass(frozen=True)
class LogNormalLatency:
    """Latency is lognormal: a Normal-Inverse-Gamma posterior on log-latency per arm."""

    prior: NormalInverseGamma = NormalInverseGamma()

    def sample_percentile(self, log_stats: ArmStats, q: float, n_draws: int,
                          rng: np.random.Generator) -> np.ndarray:
        """(n_draws, n_arms) posterior draws of the q-quantile of latency."""
        mu, var = self.prior.sample_params(log_stats, n_draws, rng)
        with np.errstate(over="ignore"):
            return np.exp(mu + np.sqrt(var) * stats.norm.ppf(q))

    def sample_mean(self, log_stats: ArmStats, n_draws: int, rng: np.random.Generator) -> np.ndarray:
        """(n_draws, n_arms) posterior draws of mean latency exp(mu + var / 2)."""
        mu, var = self.prior.sample_params(log_stats, n_draws, rng)
        with np.errstate(over="ignore"):
            return np.exp(mu + var / 2)


def prob_best(marginal, eligible: np.ndarray | None = None) -> np.ndarray:
    """P(each arm's mean is the largest) for independent marginals with batch shape (..., K).

    Arms outside `eligible` (a boolean mask over the last axis) get 0 and are ignored.
    """
    lo_hi = marginal.ppf(_LEVELS.reshape((-1,) + (1,) * len(marginal.mean().shape)))
    shape = lo_hi.shape[1:]
    if eligible is not None:
        lo_hi = np.where(eligible, lo_hi, np.nan)
    edges = np.sort(np.moveaxis(lo_hi, 0, -1).reshape(shape[:-1] + (-1,)), axis=-1)
    edges = np.where(np.isnan(edges), np.nanmax(edges, axis=-1, keepdims=True), edges)
    left, right = edges[..., :-1, None], edges[..., 1:, None]
    x = ((left + right) / 2 + (right - left) / 2 * _NODES).reshape(shape[:-1] + (-1,))
    w = ((right - left) / 2 * _WEIGHTS).reshape(x.shape)
    args = [np.expand_dims(np.asarray(a), -2) for a in marginal.args]
    kwds = {key: np.expand_dims(np.asarray(v), -2) for key, v in marginal.kwds.items()}
    pdf = marginal.dist.pdf(x[..., None], *args, **kwds)
    cdf = marginal.dist.cdf(x[..., None], *args, **kwds)
    if eligible is not None:
        pdf = np.where(eligible[..., None, :], pdf, 0.0)
        cdf = np.where(eligible[..., None, :], cdf, 1.0)
    before = np.cumprod(np.concatenate([np.ones_like(cdf[..., :1]), cdf[..., :-1]], -1), -1)
    after = np.cumprod(np.concatenate([np.ones_like(cdf[..., :1]), cdf[..., :0:-1]], -1), -1)[..., ::-1]
    p = np.einsum("...g,...gk->...k", w, pdf * before * after)
    p = np.clip(np.nan_to_num(p), 0.0, None)
    total = p.sum(-1, keepdims=True)
    fallback = np.ones(shape) if eligible is None else eligible.astype(float) * np.ones(shape)
    return np.where(total > 0, p / np.where(total > 0, total, 1), fallback / fallback.sum(-1, keepdims=True))
