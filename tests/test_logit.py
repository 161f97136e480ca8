"""The logistic link against independent computations: scipy's expit and a brute-force root search."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit

from recsys.logit import intercept_for_rate, sigmoid


def test_sigmoid_matches_expit_over_the_whole_range():
    x = np.concatenate([np.linspace(-800.0, 800.0, 16001), [-1000.0, -745.0, -709.0, 0.0, 36.0, 709.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        p = sigmoid(x)
    expected = expit(x)
    assert p.dtype == np.float64 and not np.isnan(p).any()
    normal = expected > np.finfo(np.float64).tiny
    np.testing.assert_allclose(p[normal], expected[normal], rtol=1e-15, atol=0.0)
    np.testing.assert_allclose(p[~normal], expected[~normal], rtol=0.0, atol=1.5e-308)
    assert sigmoid(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]


def test_sigmoid_in_place_and_scalars():
    x = np.array([[-2.0, 0.0], [3.0, -1000.0]])
    expected = expit(x)
    out = sigmoid(x, out=x)
    assert out is x
    np.testing.assert_allclose(x, expected, rtol=1e-15)
    assert sigmoid(0.0) == 0.5 and sigmoid(np.float32(2.0)).dtype == np.float64


def _brute_force_root(logits: np.ndarray, rate: float, step: float = 1e-3) -> float:
    """The first grid intercept in [-10, 10] whose mean click probability reaches `rate`."""
    grid = np.arange(-10.0, 10.0, step)
    means = np.array([expit(logits + b).mean() for b in grid])
    return float(grid[np.argmax(means >= rate)])


@pytest.mark.parametrize("rate", [0.004, 0.1, 0.5, 0.93])
def test_intercept_matches_a_brute_force_root_search(rate):
    logits = np.random.default_rng(0).normal(0.0, 1.5, 500)
    b, root = intercept_for_rate(logits, rate), _brute_force_root(logits, rate)
    assert root - 1e-3 <= b <= root
    assert expit(logits + b).mean() == pytest.approx(rate, rel=1e-12)


def test_intercept_bad_input():
    with pytest.raises(ValueError, match="1.5"):
        intercept_for_rate(np.zeros(3), 1.5)
    with pytest.raises(ValueError, match="not in"):
        intercept_for_rate(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"no intercept in \[-1.0, 1.0\]"):
        intercept_for_rate(np.zeros(3), 0.01, lo=-1.0, hi=1.0)
