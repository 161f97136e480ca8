"""Popularity candidates are exact successive sampling without replacement."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import chi2

from simulator.candidates import SampledCandidates, first_distinct

WEIGHTS = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
N = 200_000


def _sequence_probabilities(p: np.ndarray, c: int) -> dict[tuple[int, ...], float]:
    """Exact probability of every ordered sample of c distinct items (successive sampling)."""
    out = {}
    for seq in itertools.permutations(range(len(p)), c):
        prob, left = 1.0, 1.0
        for i in seq:
            prob *= p[i] / left
            left -= p[i]
        out[seq] = prob
    return out


@pytest.mark.parametrize("c, width", [(3, None), (3, 3), (5, 5)], ids=["block", "top-up", "c=5"])
def test_matches_exact_without_replacement_law(c, width):
    """Inclusion probabilities within sampling error, and the law of the ordered sample passes
    a chi-square test; width = c forces most requests through several top-up blocks."""
    source = SampledCandidates(WEIGHTS, np.random.default_rng(3))
    if width:
        source._widths[c] = width
    sample = source.candidates(np.zeros(N, np.int64), c)
    assert sample.shape == (N, c) and all(len(set(row)) == c for row in sample[:5000])
    law = _sequence_probabilities(WEIGHTS / WEIGHTS.sum(), c)
    inclusion = np.array([sum(q for s, q in law.items() if i in s) for i in range(len(WEIGHTS))])
    observed = np.bincount(sample.ravel(), minlength=len(WEIGHTS)) / N
    se = np.sqrt(inclusion * (1 - inclusion) / N)
    assert np.all(np.abs(observed - inclusion) < 4.5 * se), (observed, inclusion)
    codes = sample @ (len(WEIGHTS) ** np.arange(c))
    expected = np.array([law[s] for s in law]) * N
    counts = np.bincount(codes, minlength=len(WEIGHTS) ** c)[
        [np.dot(s, len(WEIGHTS) ** np.arange(c)) for s in law]]
    stat = np.sum((counts - expected) ** 2 / expected)
    assert chi2.sf(stat, len(law) - 1) > 1e-4, stat


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_first_distinct_matches_a_plain_scan(dtype):
    """The compiled scan keeps, per row, the first C distinct draws in draw order (as a dict
    does), and reports the rows with fewer than C distinct draws as not done."""
    draws = np.random.default_rng(5).integers(0, 12, (500, 9)).astype(dtype)
    done, sample = first_distinct(draws, 6, 12)
    expected = [list(dict.fromkeys(row.tolist()))[:6] for row in draws]
    assert done.tolist() == [len(e) == 6 for e in expected]
    assert 0 < done.sum() < len(draws)
    assert sample.tolist() == [e for e in expected if len(e) == 6]
