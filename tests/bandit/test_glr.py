"""GLR (Chernoff) statistic and stopping rule against hand computations."""
import numpy as np
import pytest
from scipy import integrate, stats

from bandit import BetaBernoulli, EpsilonGreedy, GLRRule, NormalInverseGamma, ThompsonSampling, TopTwoTS, check_glr
from bandit.glr import mixture_evidence, transport_costs


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


def test_mixture_evidence_by_brute_force_integration_and_maximisation():
    """E[i, j] = ln m_i m_j / sup_{l_i <= l_j} L_i L_j: prior averages by adaptive quadrature, the
    constrained maximum on a grid, with per-arm priors and fractional rewards."""
    p = ThompsonSampling(3, model=BetaBernoulli((1.0, 2.0, 0.5), (1.0, 3.0, 0.5)), seed=0)
    p.update([0] * 40 + [1] * 60 + [2] * 30, np.r_[np.tile([1.0, 0.0, 0.5, 0.0], 10), np.tile([0.0, 1.0, 0.0], 20),
                                                    np.tile([1.0, 0.25, 0.0], 10)])
    n, s = p.reward_stats.n, p.reward_stats.s
    prior = [(1.0, 1.0), (2.0, 3.0), (0.5, 0.5)]
    log_m = [np.log(integrate.quad(lambda t, a=a: t ** s[a] * (1 - t) ** (n[a] - s[a]) * stats.beta.pdf(t, *prior[a]),
                                   0, 1, epsabs=0, epsrel=1e-12, limit=200)[0]) for a in range(3)]
    grid = np.linspace(1e-9, 1 - 1e-9, 400_001)
    loglik = [s[a] * np.log(grid) + (n[a] - s[a]) * np.log1p(-grid) for a in range(3)]
    evidence = mixture_evidence(p.model, p.reward_stats)
    for i in range(3):
        for j in range(3):
            if i != j:
                best_null = np.max(np.maximum.accumulate(loglik[i]) + loglik[j])  # l_i <= l_j
                assert evidence[i, j] == pytest.approx(log_m[i] + log_m[j] - best_null, abs=1e-4)
    assert evidence[0, 1] > evidence[1, 0]  # arm 0 (mean 0.375) leads arm 1 (1/3)


def test_mixture_evidence_reaches_one_over_delta_in_at_most_delta_of_runs_under_equal_arms():
    """Ville's inequality on the boundary of the null (equal arms), sampled adaptively (epsilon-
    greedy feeds whichever arm leads) and checked after every batch of 40 up to 4,000 observations."""
    runs, delta, crossed = 300, 0.1, 0
    for seed in range(runs):
        p = EpsilonGreedy(2, epsilon=0.2, seed=seed)
        env = np.random.default_rng([seed, 5])
        for _ in range(100):
            s = p.select(40)
            p.update(s.arms, env.random(40) < 0.2)
            if mixture_evidence(BetaBernoulli(), p.reward_stats).max() >= np.log(2 / delta):  # either way
                crossed += 1
                break
    assert crossed <= stats.binom.ppf(0.99, runs, delta)
