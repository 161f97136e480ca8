"""Request latency of a variant: measured, or drawn from a model fitted to its measurements.

The fitted model is a lognormal body spliced at a threshold t (the `tail_share` upper quantile
of the measurements) with a Pareto tail: P(L > x) = q (t / x)^alpha for x > t, alpha by the Hill
estimator. Latencies are drawn by inverse CDF from one uniform per request that every variant
shares (common random numbers), so a request that is slow for one variant is slow for all.

A model fitted to the serving path's timing (`Timing`) is the lognormal with the p50 and p99 that
`compression.latency.measure` gives at the serving batch (one request's candidates), every variant
interleaved round-robin: the variants table's measurement, so the table and the simulation time the
same thing. Its timing at ten requests per call splits a call into its fixed cost and its cost per
request (`Timing.overhead_ms`, `Timing.per_request_ms`): where a compressed variant is slower at one
request, the report says whether the fixed per-call cost is why. "Slower" is measured as the
variants table measures "vs fp32": CPU time per call in paired rounds (`Timing.cpu_ms`, all
variants in the same rounds), slower only where the 95% interval of the ratio lies below 1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from simulator.errors import SimulationError

Z99 = 2.3263478740408408  # standard normal 0.99 quantile


@dataclass(frozen=True)
class Timing:
    """How a variant's serving path was timed (compression.latency.measure): p50 of one request of
    `candidates` candidates and of ten requests per call, `threads` torch threads on `device`,
    interleaved round-robin with `interleaved` - 1 other variants."""

    candidates: int
    p50_ms: float  # one request per call (the serving batch)
    p99_ms: float
    p50_ms_ten: float  # ten requests per call
    threads: int
    device: str
    interleaved: int
    cpu_ms: tuple[float, ...] = ()  # CPU ms per call (one request) in each paired round; () on CUDA

    @property
    def per_request_ms(self) -> float:
        """The slope of p50 against requests per call (from 1 and 10 requests)."""
        return (self.p50_ms_ten - self.p50_ms) / 9

    @property
    def overhead_ms(self) -> float:
        """The intercept: what a call costs before its first request."""
        return self.p50_ms - self.per_request_ms

    def describe(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return (f"one request of {self.candidates} candidates per call, {threads} on {self.device}, "
                f"{self.interleaved} variants interleaved round-robin")


@dataclass(frozen=True)
class LatencyModel:
    """Latency in milliseconds: lognormal(mu, sigma) below `threshold`, Pareto(alpha) above."""

    mu: float
    sigma: float
    threshold: float = float("inf")
    tail_share: float = 0.0  # q = P(L > threshold)
    alpha: float = float("inf")
    timing: Timing | None = None  # how it was measured, when fitted to the serving path's timing

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
    def timed(timing: Timing) -> LatencyModel:
        """The lognormal with the measured p50 and p99 at the serving batch (p99 raised just above
        p50 where the two coincide: a lognormal needs p50 < p99)."""
        p99 = max(timing.p99_ms, timing.p50_ms * (1 + 1e-6))
        model = LatencyModel.from_quantiles(timing.p50_ms, p99)
        return LatencyModel(model.mu, model.sigma, timing=timing)

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

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.quantile(np.array([0.5, 0.99]))
        out: dict[str, Any] = {"mu": self.mu, "sigma": self.sigma, "threshold_ms": self.threshold,
               "tail_share": self.tail_share, "alpha": self.alpha, "p50_ms": float(p50),
               "p99_ms": float(p99)}
        if self.timing is not None:
            out["timing"] = {**asdict(self.timing), "overhead_ms": self.timing.overhead_ms,
                             "per_request_ms": self.timing.per_request_ms, "how": self.timing.describe()}
        return out


def check_latencies(latency_ms: np.ndarray, what: str) -> np.ndarray:
    """`latency_ms` unchanged, or SimulationError naming the first negative or non-finite value."""
    bad = ~(np.isfinite(latency_ms) & (latency_ms >= 0))
    if bad.any():
        raise SimulationError(f"{what}: latency {latency_ms.flat[np.argmax(bad)]!r} ms is negative "
                              "or not finite")
    return latency_ms
