"""CTR metrics against independent computations (brute-force pairs, scipy, direct formulas)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from recsys.metrics.ctr import auc, calibration, ctr_metrics, log_loss, normalized_entropy, paired_auc_difference


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Count every (positive, negative) pair: 1 if ordered right, 1/2 if tied."""
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def tied_data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float64)
    s = rng.integers(0, 8, n) + 2.0 * y * rng.random(n).round(1)  # few distinct values: many ties
    return y, s


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_count_with_ties(seed: int) -> None:
    y, s = tied_data(seed)
    assert auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_auc_matches_mann_whitney_u(seed: int) -> None:
    y, s = tied_data(seed)
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert auc(y, s) == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)


def test_auc_accepts_torch_and_known_values() -> None:
    assert auc(torch.tensor([0.0, 1.0]), torch.tensor([0.2, 0.8])) == 1.0
    assert auc([1, 0], [0.2, 0.8]) == 0.0
    assert auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_weighted_auc_equals_repeated_rows(seed: int) -> None:
    y, s = tied_data(seed, n=120)
    w = np.random.default_rng(seed + 100).integers(0, 4, y.size)
    assert auc(y, s, weights=w) == pytest.approx(brute_auc(np.repeat(y, w), np.repeat(s, w)), abs=1e-12)


def test_auc_errors() -> None:
    with pytest.raises(ValueError, match="only one class"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only one class"):
        auc([1, 0, 1], [0.1, 0.2, 0.3], weights=[1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        auc([1, 0], [0.1, float("nan")])
    with pytest.raises(ValueError, match="differ in length"):
        auc([1, 0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        auc([1, 2], [0.1, 0.2])


def test_log_loss_direct_formula() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.4).astype(float)
    p = rng.uniform(0.01, 0.99, 200)
    expected = -np.mean([np.log(pi) if yi else np.log(1 - pi) for yi, pi in zip(y, p)])
    assert log_loss(y, p) == pytest.approx(expected, rel=1e-12)


def test_log_loss_clips_certain_mistakes() -> None:
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-np.log(1e-7), rel=1e-6)


def test_ne_of_constant_base_rate_predictor_is_one() -> None:
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=float)
    assert normalized_entropy(y, np.full(y.size, 0.2)) == pytest.approx(1.0, rel=1e-12)
    assert normalized_entropy(y, np.where(y == 1, 0.9, 0.1)) < 1.0


def test_calibration() -> None:
    assert calibration([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(2.0)
    assert calibration([1, 0, 1, 0], [0.9, 0.1, 0.6, 0.4]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        calibration([0, 0], [0.1, 0.2])


def test_ctr_metrics_drops_padding_rows() -> None:
    y = np.array([1, 0, 1, 0, -1, -1], dtype=float)
    logits = np.array([2.0, -1.0, 0.5, 1.0, 50.0, -50.0])
    m = ctr_metrics(torch.from_numpy(y), torch.from_numpy(logits), from_logits=True)
    p = 1 / (1 + np.exp(-logits[:4]))
    assert m.n == 4 and m.ctr == 0.5
    assert m.auc == pytest.approx(brute_auc(y[:4], logits[:4]))
    assert m.log_loss == pytest.approx(log_loss(y[:4], p))
    assert m.ne == pytest.approx(log_loss(y[:4], p) / np.log(2))
    assert m.calibration == pytest.approx(p.mean() / 0.5)
    assert set(m.to_dict()) == {"auc", "log_loss", "ne", "calibration", "ctr", "n"}


def test_ctr_metrics_auc_keeps_saturated_logits_apart() -> None:
    m = ctr_metrics([0, 1, 0, 1], [-3.0, 40.0, 45.0, 50.0], from_logits=True)
    assert m.auc == pytest.approx(0.75)


def test_paired_auc_difference_separates_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.3).astype(np.float64)
    a = y + rng.normal(0.0, 2.0, y.size)
    better = a + 0.3 * y  # a little more signal on the same rows
    jittered = a + rng.normal(0.0, 0.05, y.size)  # no more signal
    gain = paired_auc_difference(y, a, better, rounds=100)
    assert gain.delta == pytest.approx(brute_auc(y, better) - brute_auc(y, a), abs=1e-12)
    assert 0.0 < gain.low < gain.delta < gain.high
    noise = paired_auc_difference(y, a, jittered, rounds=100)
    assert noise.low < 0.0 < noise.high
    same = paired_auc_difference(y, a, a, rounds=20)
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)
    unpaired = np.percentile([auc(y, better, w) for w in rng.poisson(1.0, (100, y.size))], [2.5, 97.5])
    assert gain.high - gain.low < (unpaired[1] - unpaired[0]) / 2  # pairing cancels the shared noise
