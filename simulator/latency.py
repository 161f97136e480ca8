"""Request latency of a variant: measured, or drawn from a model fitted to its measurements.

The fitted model is a lognormal body spliced at a threshold t (the `tail_share` upper quantile
of the measurements) with a Pareto tail: P(L > x) = q (t / x)^alpha for x > t, alpha by the Hill
estimator. Latencies are drawn by inverse CDF from one uniform per request that every variant
shares (common random numbers), so a request that is slow for one variant is slow for all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from simulator.errors import SimulationError

Z99 = 2.3263478740408408  # standard normal 0.99 quantile


@dataclass(frozen=True)
class LatencyModel:
    """Latency in milliseconds: lognormal(mu, sigma) below `threshold`, Pareto(alpha) above."""

    mu: float
    sigma: float
    threshold: float = float("inf")
    tail_share: float = 0.0  # q = P(L > threshold)
    alpha: float = float("inf")

    def __post_init__(self) -> None:
        if not (self.sigma > 0 and self.threshold > 0 and 0 <= self.tail_share < 1 and self.alpha > 0):
            raise SimulationError(f"latency model: invalid parameters {self}")

    @staticmethod
    def from_quantiles(p50_ms: float, p99_ms: float) -> LatencyModel:
        """A lognormal with the given median and 99th percentile (no separate tail)."""
        if not 0 < p50_ms < p99_ms:
            raise SimulationError(f"latency: need 0 < p50 < p99, got {p50_ms}, {p99_ms}")
        return LatencyModel(float(np.log(p50_ms)), float(np.log(p99_ms / p50_ms) / Z99))

    @staticmethod
    def from_samples(samples_ms: np.ndarray, tail_share: float = 0.05) -> LatencyModel:
        """Lognormal body from the lower 1 - tail_share of the samples, Pareto tail (Hill)."""
        x = np.sort(check_latencies(np.asarray(samples_ms, np.float64), "latency samples"))
        if len(x) < 20 or x[0] <= 0:
            raise SimulationError("latency samples: need >= 20 positive measurements")
        k = max(int(round(tail_share * len(x))), 2)
        threshold = x[-k - 1]
        # body: match the median and the 90th percentile (both below the tail threshold)
        p50, p90 = np.quantile(x, [0.5, min(0.9, 1 - tail_share)])
        sigma = max(float(np.log(p90 / p50) / ndtri(min(0.9, 1 - tail_share))), 1e-6)
        alpha = 1.0 / max(float(np.mean(np.log(x[-k:] / threshold))), 1e-6)
        return LatencyModel(float(np.log(p50)), sigma, float(threshold), k / len(x), alpha)

    def quantile(self, w: np.ndarray) -> np.ndarray:
        """Inverse CDF at uniforms w in (0, 1), milliseconds."""
        w = np.clip(w, 1e-12, 1 - 1e-12)
        q = self.tail_share
        if q == 0:
            return np.exp(self.mu + self.sigma * ndtri(w))
        head = ndtr((np.log(self.threshold) - self.mu) / self.sigma)
        body = np.exp(self.mu + self.sigma * ndtri(np.minimum(w / (1 - q), 1 - 1e-12) * head))
        tail = self.threshold * np.maximum((1 - w) / q, 1e-12) ** (-1 / self.alpha)
        return np.where(w < 1 - q, body, tail)

    def summary(self) -> dict[str, float]:
        p50, p99 = self.quantile(np.array([0.5, 0.99]))
        return {"mu": self.mu, "sigma": self.sigma, "threshold_ms": self.threshold,
                "tail_share": self.tail_share, "alpha": self.alpha, "p50_ms": float(p50),
                "p99_ms": float(p99)}


def check_latencies(latency_ms: np.ndarray, what: str) -> np.ndarray:
    """`latency_ms` unchanged, or SimulationError naming the first negative or non-finite value."""
    bad = ~(np.isfinite(latency_ms) & (latency_ms >= 0))
    if bad.any():
        raise SimulationError(f"{what}: latency {latency_ms.flat[np.argmax(bad)]!r} ms is negative "
                              "or not finite")
    return latency_ms
