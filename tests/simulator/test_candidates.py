"""Popularity candidates are exact successive sampling without replacement."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import chi2

from simulator.candidates import SampledCandidates, scan_draws

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


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_scan_draws_matches_a_plain_scan(dtype):
    """The compiled scan extends each row with its new draws in draw order until it has C (as
    a plain list scan does), a residual slot taking the next residual draw, and resumes a short
    row where it stopped over further blocks; rows not listed are left alone."""
    rng = np.random.default_rng(5)
    table = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -1, -1, -1, -1], np.int16)
    c, sample, count = 6, np.full((400, 6), -7, np.int64), np.zeros(400, np.int64)
    expected: list[list[int]] = [[] for _ in range(400)]
    rows = np.arange(300)
    for _ in range(3):
        slots = rng.integers(0, len(table), (len(rows), 3)).astype(dtype)
        residual = rng.integers(0, 12, np.count_nonzero(slots >= 12))
        scan_draws(rows, slots, table, residual, sample, count, np.zeros(12, np.int64))
        left = iter(residual.tolist())
        for row, row_slots in zip(rows.tolist(), slots.tolist()):
            for slot in row_slots:
                if len(expected[row]) == c:
                    break
                item = int(table[slot]) if table[slot] >= 0 else next(left)
                if item not in expected[row]:
                    expected[row].append(item)
        rows = rows[count[rows] < c]
    assert count.tolist() == [len(e) for e in expected]
    assert all(sample[row, : len(e)].tolist() == e for row, e in enumerate(expected))
    assert 0 < len(rows) and np.all(sample[300:] == -7)
