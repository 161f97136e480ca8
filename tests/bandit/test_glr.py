"""GLR (Chernoff) statistic and stopping rule against hand computations."""
import numpy as np
import pytest

from bandit import GLRRule, NormalInverseGamma, ThompsonSampling, TopTwoTS, check_glr
from bandit.glr import transport_costs


def _kl(p, q):
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def test_bernoulli_statistic_and_threshold_by_hand():
    p = ThompsonSampling(3, seed=0)
    p.update([0] * 100 + [1] * 200 + [2] * 50, [1] * 30 + [0] * 70 + [1] * 40 + [0] * 160 + [1] * 10 + [0] * 40)
    # means 0.3, 0.2, 0.2; pooled with arm 1: (30 + 40) / 300, with arm 2: 40 / 150
    w01 = 100 * _kl(0.3, 70 / 300) + 200 * _kl(0.2, 70 / 300)
    w02 = 100 * _kl(0.3, 40 / 150) + 50 * _kl(0.2, 40 / 150)
    res = check_glr(p, GLRRule(delta=0.05))
    assert res.winner == 0 and res.samples_used == 350
    np.testing.assert_allclose(res.arm_statistic, [np.inf, w01, w02])
    assert res.statistic == pytest.approx(min(w01, w02))
    assert res.threshold == pytest.approx(np.log(2 * (1 + np.log(350)) / 0.05))
    assert res.stop == (min(w01, w02) > res.threshold)
    assert check_glr(p, GLRRule(calibrated=min(w01, w02) - 1e-9)).stop
    assert not check_glr(p, GLRRule(calibrated=min(w01, w02) + 1e-9)).stop


def test_gaussian_statistic_by_hand_and_zero_for_unseen_or_worse_arms():
    p = ThompsonSampling(3, model=NormalInverseGamma(), seed=0)
    p.update([0, 0, 0, 0, 1, 1], [1.0, 2.0, 3.0, 4.0, 0.0, 1.0])
    w = transport_costs(p.model, p.reward_stats)
    var0, var1 = np.var([1, 2, 3, 4]), np.var([0, 1])
    assert w[0, 1] == pytest.approx((2.5 - 0.5) ** 2 / (2 * (var0 / 4 + var1 / 2)))
    assert w[1, 0] == 0 and w[0, 2] == 0 and w[2, 0] == 0 and np.all(np.diag(w) == 0)


def test_top_two_with_glr_stops_on_the_best_arm():
    mu = np.array([0.2, 0.25, 0.3])
    p = TopTwoTS(3, beta="ids", challenger="tcb", seed=0)
    env = np.random.default_rng([0, 99])
    res = check_glr(p)
    while not res.stop and p.pulls.sum() < 100_000:
        s = p.select(200)
        p.update(s.arms, env.random(200) < mu[s.arms])
        res = check_glr(p)
    assert res.stop and res.winner == 2
