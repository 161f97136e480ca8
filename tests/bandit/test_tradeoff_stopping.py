"""Guardrails, constrained and scalarised allocation, Pareto set and the stopping rule."""
import numpy as np
import pytest

from bandit import (
    Allocation,
    Constrained,
    LatencySLO,
    NonInferiority,
    Scalarised,
    StoppingRule,
    ThompsonSampling,
    TopTwoTS,
    TradeoffTS,
    check_stopping,
    pareto_front,
)
from bandit.glr import mixture_evidence

CTR = np.array([0.30, 0.35, 0.40])
P95 = np.array([60.0, 80.0, 140.0])


def _feed(policy, n, seed=0):
    rng = np.random.default_rng([seed, 7])
    arms = np.repeat(np.arange(3), n)
    lat = P95[arms] * np.exp(0.2 * (rng.standard_normal(len(arms)) - 1.6449))
    policy.update(arms, rng.random(len(arms)) < CTR[arms], latencies=lat)


def test_constrained_gives_violator_only_the_floor():
    p = TradeoffTS(3, Constrained(LatencySLO(100.0)), allocation=Allocation(floor=0.02), seed=0)
    _feed(p, 2000)
    probs = p.probabilities()
    assert probs[2] == pytest.approx(0.02)
    assert probs[1] > 0.9


def test_noninferiority_excludes_a_clearly_worse_arm():
    p = TradeoffTS(3, Constrained(LatencySLO(1000.0), NonInferiority(control=2, margin=0.01)), seed=0)
    _feed(p, 2000)
    probs = p.probabilities()
    assert probs[0] == 0 and probs[1] == 0 and probs[2] == pytest.approx(1)


def test_scalarised_prefers_low_latency_when_lambda_is_large():
    p = TradeoffTS(3, Scalarised(lam=0.01), seed=0)
    _feed(p, 2000)
    assert np.argmax(p.probabilities()) == 0
    q = TradeoffTS(3, Scalarised(lam=0.0), seed=0)
    _feed(q, 2000)
    assert np.argmax(q.probabilities()) == 2


def test_pareto_front_by_brute_force():
    rng = np.random.default_rng(0)
    for r, lat in ((rng.random(30), rng.random(30)), (rng.integers(0, 5, 30) / 4, rng.integers(0, 5, 30) / 4)):
        expected = [i for i in range(30) if not any(
            r[j] >= r[i] and lat[j] <= lat[i] and (r[j] > r[i] or lat[j] < lat[i]) for j in range(30))]
        assert pareto_front(r, lat).tolist() == expected
    value, cost = np.array([0.78, 0.779, 0.775, 0.77, 0.769, 0.77]), np.array([100, 50, 50, 20, 30, 20])
    assert pareto_front(value, cost).tolist() == [0, 1, 3, 5]  # exact ties both stay


def test_stopping_picks_best_slo_meeting_arm_and_reports_evidence():
    p = TradeoffTS(3, Constrained(LatencySLO(100.0)), seed=0)
    _feed(p, 3000)
    res = check_stopping(p, StoppingRule(slo=LatencySLO(100.0), max_loss=1e-3), rng=0)
    assert res.stop and res.winner == 1
    assert res.guardrails_ok.tolist() == [True, True, False]
    assert res.samples_used == 9000 and res.prob_best >= 0.95
    assert res.expected_loss == pytest.approx(res.arm_expected_loss[1])
    # the anytime-valid evidence against the other SLO-meeting arm; the violator is not a rival
    assert res.evidence_threshold == pytest.approx(np.log(2 / 0.05))
    assert res.arm_evidence[0] == res.evidence == mixture_evidence(p.model, p.reward_stats)[1, 0]
    assert res.evidence >= res.evidence_threshold and np.isinf(res.arm_evidence[[1, 2]]).all()


def test_stopping_expected_loss_matches_independent_monte_carlo():
    p = ThompsonSampling(2, seed=0)
    p.update([0] * 200 + [1] * 200, [1] * 50 + [0] * 150 + [1] * 60 + [0] * 140)
    res = check_stopping(p, StoppingRule(n_draws=200_000), rng=1)
    d = np.random.default_rng(2).beta([51, 61], [151, 141], size=(200_000, 2))
    assert res.winner == 1
    assert res.prob_best == pytest.approx((d[:, 1] > d[:, 0]).mean(), abs=0.005)
    assert res.expected_loss == pytest.approx(np.maximum(d[:, 0] - d[:, 1], 0).mean(), abs=5e-4)
    assert not res.stop


def test_top_two_ts_identifies_best_arm_and_stops():
    mu = np.array([0.2, 0.25, 0.3])
    p = TopTwoTS(3, seed=0)
    env = np.random.default_rng([0, 99])
    res = check_stopping(p, rng=0)
    while not res.stop and p.pulls.sum() < 100_000:
        s = p.select(200)
        p.update(s.arms, env.random(200) < mu[s.arms])
        res = check_stopping(p, StoppingRule(n_draws=4000), rng=0)
    assert res.stop and res.winner == 2
