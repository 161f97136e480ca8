"""Conjugate posteriors for rewards and latencies, and the probability that each arm is best.

`sample` on a model is the one source of posterior draws: Thompson variants' Monte Carlo
propensities, the stopping rule and the latency guardrail all call it. `prob_best` computes the
Thompson sampling allocation P(arm i has the highest mean) by one-dimensional Gauss-Legendre
quadrature of f_i(x) * prod_{j != i} F_j(x) over the arms' independent posterior marginals, on a
grid split at every arm's quantiles; it is exact to about 1e-9, not a Monte Carlo estimate.
Only densities are evaluated where they are bounded and light-tailed (`smooth()`): F_j at the
nodes is f_j integrated on the same grid (each interval's interpolating polynomial integrated
from its left end), several times cheaper than incomplete beta functions; other arms (Beta with
a parameter below 1, Student-t with df < 30, any scipy distribution) use their exact `cdf`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from bandit.checks import in_range
from bandit.errors import BanditArmCountError
from bandit.memory import ArmStats
from bandit.state import serializable

_LEVELS = np.array([1e-12, 1e-6, 1e-3, 0.02, 0.15, 0.4, 0.6, 0.85, 0.98, 1 - 1e-3, 1 - 1e-6,
                    1 - 1e-12])
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(10)


def _partial_integrals(nodes: np.ndarray) -> np.ndarray:
    """Matrix P with (P @ f)[k] = integral from -1 to nodes[k] of the polynomial through (nodes, f)."""
    leg = np.polynomial.legendre
    inverse = np.linalg.inv(leg.legvander(nodes, len(nodes) - 1))
    return np.stack([leg.legval(nodes, leg.legint(inverse[:, col], lbnd=-1)) for col in range(len(nodes))], 1)


_PARTIAL = _partial_integrals(_NODES)


def _per_arm(value: float | tuple, n_arms: int, field: str) -> np.ndarray:
    if not isinstance(value, tuple):
        return np.full(n_arms, float(value))
    if len(value) != n_arms:
        raise BanditArmCountError(f"model.{field}", f"expected one number or {n_arms} (one per arm), got {len(value)}")
    return np.asarray(value, dtype=np.float64)


@dataclass(frozen=True)
class BetaMarginal:
    """Independent Beta(a, b) distributions of the arms' means; a and b have shape (..., K)."""

    a: np.ndarray
    b: np.ndarray

    def ppf(self, q: np.ndarray | float) -> np.ndarray:
        return special.betaincinv(self.a, self.b, q)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return special.betainc(self.a, self.b, x)

    def smooth(self) -> np.ndarray:
        """Arms with a bounded density (a, b >= 1)."""
        return (self.a >= 1) & (self.b >= 1)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """log density for x in (0, 1), broadcast against (..., K): one log per point, not per arm."""
        return (self.a - 1) * np.log(x) + (self.b - 1) * np.log1p(-x) - special.betaln(self.a, self.b)


@dataclass(frozen=True)
class StudentTMarginal:
    """Independent Student-t distributions (df, loc, scale) of the arms' means, shape (..., K)."""

    df: np.ndarray
    loc: np.ndarray
    scale: np.ndarray

    def ppf(self, q: np.ndarray | float) -> np.ndarray:
        return self.loc + self.scale * special.stdtrit(self.df, q)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return special.stdtr(self.df, (x - self.loc) / self.scale)

    def smooth(self) -> np.ndarray:
        """Arms whose tails are close enough to normal (df >= 30) for polynomial pieces."""
        return self.df >= 30

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        half = (self.df + 1) / 2
        z = (x - self.loc) / self.scale
        return (special.gammaln(half) - special.gammaln(self.df / 2) - 0.5 * np.log(self.df * np.pi)
                - np.log(self.scale) - half * np.log1p(z * z / self.df))


@dataclass(frozen=True)
class NormalMarginal:
    """Independent normal distributions (loc, scale) of the arms' means, shape (..., K)."""

    loc: np.ndarray
    scale: np.ndarray

    def ppf(self, q: np.ndarray | float) -> np.ndarray:
        return self.loc + self.scale * special.ndtri(q)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return special.ndtr((x - self.loc) / self.scale)

    def smooth(self) -> np.ndarray:
        return np.ones(np.shape(self.loc), dtype=bool)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.loc) / self.scale
        return -0.5 * z * z - np.log(self.scale) - 0.5 * np.log(2 * np.pi)


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

    def log_evidence(self, s: ArmStats) -> np.ndarray:
        """log of each arm's likelihood prod p^r (1 - p)^(1 - r) averaged over the prior:
        ln B(alpha + s, beta + n - s) - ln B(alpha, beta)."""
        k = len(s.n)
        return special.betaln(*self.params(s)) - special.betaln(_per_arm(self.alpha, k, "alpha"),
                                                                 _per_arm(self.beta, k, "beta"))

    def marginal(self, s: ArmStats) -> BetaMarginal:
        """The posterior distribution of each arm's mean."""
        return BetaMarginal(*self.params(s))

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

    def marginal(self, s: ArmStats) -> StudentTMarginal:
        """The posterior (Student-t) distribution of each arm's mean."""
        mu, kappa, alpha, beta = self.params(s)
        return StudentTMarginal(2 * alpha, mu, np.sqrt(beta / (alpha * kappa)))

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


def prob_best(marginal: Any, eligible: np.ndarray | None = None) -> np.ndarray:
    """P(each arm's mean is the largest) for independent marginals with batch shape (..., K).

    `marginal` has vectorised `ppf`, `logpdf` and `cdf` (a marginal above, or a frozen scipy
    distribution); the CDF of the arms its `smooth()` names is integrated from their densities.
    Arms outside `eligible` (a boolean mask over the last axis) get 0 and are ignored.
    """
    shape = np.shape(marginal.ppf(0.5))
    mask = np.ones(shape, dtype=bool) if eligible is None else np.broadcast_to(eligible, shape)
    half, x = _grid(marginal, mask, shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pdf = np.exp(_on_grid(marginal.logpdf, x))  # (..., K, M, Q)
    pdf = np.where(np.isfinite(pdf) & mask[..., None, None], pdf, 0.0)
    cdf = np.where(mask[..., None, None], _cdf(marginal, pdf, half, x, shape), 1.0)
    p = np.einsum("...mq,...kmq->...k", half * _WEIGHTS, pdf * _product_of_others(cdf))
    p = np.clip(np.nan_to_num(p), 0.0, None)
    total = p.sum(-1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1), mask / mask.sum(-1, keepdims=True))


def _grid(marginal: Any, mask: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Half-widths (..., M, 1) of the M intervals between the eligible arms' sorted quantiles,
    and the quadrature nodes (..., M, Q) inside them."""
    lo_hi = marginal.ppf(_LEVELS.reshape((-1,) + (1,) * len(shape)))
    edges = np.sort(np.moveaxis(np.where(mask, lo_hi, np.nan), 0, -1).reshape(shape[:-1] + (-1,)), axis=-1)
    edges = np.where(np.isnan(edges), np.nanmax(edges, axis=-1, keepdims=True), edges)
    half = (edges[..., 1:, None] - edges[..., :-1, None]) / 2
    return half, (edges[..., :-1, None] + half) + half * _NODES


def _cdf(marginal: Any, pdf: np.ndarray, half: np.ndarray, x: np.ndarray, shape: tuple) -> np.ndarray:
    """CDFs (..., K, M, Q) at the nodes: smooth arms' densities integrated along the grid (whole
    intervals before, the interpolating polynomial within), the others' exact `cdf`."""
    full = np.einsum("...mq,...kmq->...km", half * _WEIGHTS, pdf)
    cdf = np.clip((np.cumsum(full, -1) - full)[..., None] + (half[..., None, :, :] * pdf) @ _PARTIAL.T, 0.0, 1.0)
    smooth = marginal.smooth() if hasattr(marginal, "smooth") else np.zeros(shape, dtype=bool)
    return cdf if smooth.all() else np.where(smooth[..., None, None], cdf, _on_grid(marginal.cdf, x))


def _product_of_others(values: np.ndarray) -> np.ndarray:
    """prod over j != k of values[..., j, :, :], for each k (axis -3), by prefix and suffix products."""
    before, after = np.ones_like(values), np.ones_like(values)
    np.cumprod(values[..., :-1, :, :], axis=-3, out=before[..., 1:, :, :])
    np.cumprod(values[..., :0:-1, :, :], axis=-3, out=after[..., -2::-1, :, :])
    return before * after


def _on_grid(function: Any, x: np.ndarray) -> np.ndarray:
    """A marginal's vectorised function at nodes x of shape (..., M, Q): shape (..., K, M, Q)."""
    values = function(np.moveaxis(x.reshape(x.shape[:-2] + (-1,)), -1, 0)[..., None])
    return np.moveaxis(values, 0, -1).reshape(values.shape[1:] + x.shape[-2:])
