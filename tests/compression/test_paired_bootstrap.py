"""The paired bootstrap interval the compression bench reports (AUC(b) - AUC(a) on the same test
rows, resampled jointly), checked against two independent computations on a toy case: scipy's own
paired percentile bootstrap, and DeLong's closed-form variance of a difference of correlated AUCs.
Pairing matters: two models sharing most of their signal have a far narrower interval for their
difference than resampling each alone would give."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recsys.metrics.ctr import auc, paired_auc_difference

ROUNDS = 1000


def _toy(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' scores sharing a latent signal (strongly correlated), b slightly better."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.float64)
    shared = y + rng.normal(0.0, 1.2, n)
    return y, shared + rng.normal(0.0, 0.5, n), shared + 0.15 * y + rng.normal(0.0, 0.5, n)


def _delong(y: np.ndarray, scores: list[np.ndarray]) -> np.ndarray:
    """DeLong's covariance matrix of the AUCs of `scores` on the same rows (structural components)."""
    pos, neg = y == 1, y == 0
    v10, v01 = [], []
    for s in scores:
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    return np.cov(np.array(v10)) / pos.sum() + np.cov(np.array(v01)) / neg.sum()


def test_paired_bootstrap_agrees_with_scipys_paired_bootstrap():
    y, a, b = _toy()
    mine = paired_auc_difference(y, a, b, rounds=ROUNDS)
    ref = stats.bootstrap((y, a, b), lambda yy, aa, bb: auc(yy, bb) - auc(yy, aa), paired=True, vectorized=False,
                          n_resamples=ROUNDS, method="percentile", confidence_level=0.95,
                          rng=np.random.default_rng(1))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert mine.delta == pytest.approx(auc(y, b) - auc(y, a))
    assert mine.low == pytest.approx(ref.confidence_interval.low, abs=0.15 * width)
    assert mine.high == pytest.approx(ref.confidence_interval.high, abs=0.15 * width)


def test_paired_bootstrap_matches_delongs_closed_form_and_is_narrower_than_unpaired():
    y, a, b = _toy()
    mine = paired_auc_difference(y, a, b, rounds=ROUNDS)
    cov = _delong(y, [a, b])
    paired_sd = float(np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))
    unpaired_sd = float(np.sqrt(cov[0, 0] + cov[1, 1]))
    z = stats.norm.ppf(0.975)
    assert (mine.high - mine.low) / 2 == pytest.approx(z * paired_sd, rel=0.15)
    assert (mine.low + mine.high) / 2 == pytest.approx(mine.delta, abs=0.3 * z * paired_sd)
    assert paired_sd < 0.6 * unpaired_sd  # the shared signal cancels: pairing is what makes it narrow


@pytest.mark.slow
def test_coverage_of_the_true_difference_on_fresh_samples():
    """Over 40 fresh toy samples from one population, the 95% interval holds the population's AUC
    difference (from one very large sample) in at least 34 (binomial: P(fewer) < 1% at 95% coverage)."""
    y, a, b = _toy(n=400_000, seed=99)
    truth = auc(y, b) - auc(y, a)
    hits = 0
    for seed in range(40):
        d = paired_auc_difference(*_toy(n=800, seed=seed), rounds=200, seed=seed)
        hits += d.low <= truth <= d.high
    assert hits >= 34
