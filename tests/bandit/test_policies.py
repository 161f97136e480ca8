"""Policy behaviour: propensities are real, allocations follow their definitions, TS learns."""
import numpy as np
import pytest

from bandit import (
    EXP3,
    KLUCB,
    UCB1,
    Allocation,
    Discounted,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    SlidingWindow,
    Softmax,
    ThompsonSampling,
    TopTwoTS,
)
from bandit.glr import transport_costs
from bandit.policies.ucb import bernoulli_kl

MU = np.array([0.04, 0.0425, 0.045, 0.0475, 0.05])


def _run(policy, steps, batch, seed=0, mu=MU):
    env = np.random.default_rng([seed, 2024])
    regret = 0.0
    for _ in range(steps // batch):
        s = policy.select(batch)
        r = (env.random(batch) < mu[s.arms]).astype(float)
        policy.update(s.arms, r, propensities=s.propensities)
        regret += (mu.max() - mu[s.arms]).sum()
    return regret


def test_selection_frequency_matches_propensities():
    p = ThompsonSampling(5, seed=3)
    p.update([0, 1, 2, 3, 4] * 40, np.tile([0, 1, 0, 1, 1], 40) * (np.arange(200) % 3 == 0))
    s = p.select(200_000)
    freq = np.bincount(s.arms, minlength=5) / len(s)
    probs = p.probabilities()
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(0.25 / len(s)))
    np.testing.assert_allclose(s.propensities, probs[s.arms])


def test_ts_allocation_equals_thompson_draw_frequency():
    p = ThompsonSampling(3, seed=0)
    p.update([0] * 30 + [1] * 30 + [2] * 30, [1] * 10 + [0] * 20 + [1] * 14 + [0] * 16 + [1] * 12 + [0] * 18)
    a = np.array([11, 15, 13.0])
    draws = np.random.default_rng(9).beta(a, 32 - a, size=(400_000, 3))
    freq = np.bincount(draws.argmax(1), minlength=3) / len(draws)
    np.testing.assert_allclose(p.probabilities(), freq, atol=3e-3)


def test_top_two_allocation_matches_resampling_simulation():
    p = TopTwoTS(3, beta=0.5, seed=0)
    p.update([0] * 20 + [1] * 20 + [2] * 20, [1] * 5 + [0] * 15 + [1] * 8 + [0] * 12 + [1] * 9 + [0] * 11)
    a = np.array([6, 9, 10.0])
    b = 22 - a
    rng = np.random.default_rng(1)
    leader = rng.beta(a, b, size=(100_000, 3)).argmax(1)
    picks = []
    for lead in leader[:20_000]:
        if rng.random() < 0.5:
            picks.append(lead)
            continue
        while (c := rng.beta(a, b).argmax()) == lead:
            pass
        picks.append(c)
    freq = np.bincount(picks, minlength=3) / len(picks)
    np.testing.assert_allclose(p.probabilities(), freq, atol=0.015)


def test_epsilon_greedy_closed_form_and_decay():
    p = EpsilonGreedy(4, epsilon=0.2, decay=0.01, seed=0)
    p.update([0, 1, 2, 3] * 25, [0, 1, 0, 0] * 25)
    eps = 0.2 / (1 + 0.01 * 100)
    np.testing.assert_allclose(p.probabilities(), [eps / 4, eps / 4 + 1 - eps, eps / 4, eps / 4])


def test_softmax_and_exp3_closed_form():
    p = Softmax(2, temperature=0.5)
    p.update([0, 1, 1], [1.0, 0.0, 1.0])
    e = np.exp(np.array([1.0, 0.5]) / 0.5)
    np.testing.assert_allclose(p.probabilities(), e / e.sum())
    x = EXP3(2, gamma=0.1)
    x.update([1, 1], [1.0, 1.0], propensities=[0.5, 0.5])
    w = np.exp(np.array([0.0, 0.1 * 4 / 2]))
    np.testing.assert_allclose(x.probabilities(), 0.9 * w / w.sum() + 0.05)


def test_ucb1_index_and_klucb_index_solve_their_equations():
    u = UCB1(2)
    u.update([0] * 10 + [1] * 30, [1] * 5 + [0] * 5 + [1] * 20 + [0] * 10)
    np.testing.assert_allclose(u.indices(), [0.5 + np.sqrt(2 * np.log(40) / 10), 2 / 3 + np.sqrt(2 * np.log(40) / 30)])
    k = KLUCB(2)
    k.update([0] * 10 + [1] * 30, [1] * 5 + [0] * 5 + [1] * 20 + [0] * 10)
    q = k.indices()
    np.testing.assert_allclose(np.array([10, 30]) * bernoulli_kl(np.array([0.5, 2 / 3]), q), np.log(40), rtol=1e-6)


def test_thompson_beats_uniform_regret():
    ts = _run(ThompsonSampling(5, seed=1), 50_000, 500, mu=MU * 4)
    uniform = 50_000 * 4 * (MU.max() - MU.mean())
    assert ts < 0.4 * uniform


def test_forgetting_memories_track_a_change_that_stationary_ts_misses():
    mu = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    leaders = {}
    for name, memory in (("discounted", Discounted(0.99)), ("window", SlidingWindow(500)), ("stationary", None)):
        p = ThompsonSampling(5, seed=0) if memory is None else ThompsonSampling(5, memory=memory, seed=0)
        _run(p, 20_000, 50, mu=mu)
        _run(p, 2_000, 50, seed=1, mu=mu[::-1])
        leaders[name] = int(np.argmax(p.probabilities()))
    assert leaders == {"discounted": 0, "window": 0, "stationary": 4}


def test_allocation_floor_control_share_and_warmup():
    alloc = Allocation(warmup=100, min_per_arm=10, floor=0.05, control=0, control_share=0.3)
    p = ThompsonSampling(4, allocation=alloc, seed=0)
    np.testing.assert_allclose(p.probabilities(), [0.3, 0.7 / 3, 0.7 / 3, 0.7 / 3])
    p.update([1, 2, 3, 0] * 30, [1, 0, 0, 0] * 30)
    probs = p.probabilities()
    assert probs[0] == pytest.approx(0.3)
    assert probs[1:].min() >= 0.7 * 0.05 - 1e-12
    core = p.prob_best()[1:] / p.prob_best()[1:].sum()
    np.testing.assert_allclose(probs[1:], 0.7 * (0.05 + (1 - 3 * 0.05) * core))


def test_reweighting_in_batches_holds_the_split():
    p = ThompsonSampling(2, allocation=Allocation(reweight_every=50), seed=0)
    p.update([0, 1] * 5, [1, 0] * 5)
    first = p.probabilities()
    p.update([0, 1] * 20, [0, 1] * 20)
    np.testing.assert_array_equal(p.probabilities(), first)
    p.update([0, 1] * 5, [0, 1] * 5)
    assert not np.array_equal(p.probabilities(), first)


def test_linear_policies_learn_context_dependence():
    rng = np.random.default_rng(0)
    theta = np.array([[1.0, -1.0], [-1.0, 1.0]])
    for policy in (LinTS(2, dim=2, v=0.2, seed=0), LinUCB(2, dim=2, alpha=0.5, seed=0)):
        for _ in range(40):
            x = rng.normal(size=(50, 2))
            s = policy.select(50, context=x)
            policy.update(s.arms, (x * theta[s.arms]).sum(1) + rng.normal(0, 0.1, 50), context=x)
        x = np.array([[2.0, -2.0], [-2.0, 2.0]])
        assert np.argmax(policy.probabilities(x), axis=1).tolist() == [0, 1]


def test_lints_propensities_match_cholesky_draw_frequency():
    p = LinTS(3, dim=2, v=1.0, seed=0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    p.update(rng.integers(0, 3, 60), rng.normal(size=60), context=x)
    ctx = np.array([[0.3, -0.2]])
    mean, spread = p.score_moments(ctx)
    draws = mean + np.sqrt(spread) * rng.standard_normal((200_000, 3))
    freq = np.bincount(draws.argmax(1), minlength=3) / len(draws)
    np.testing.assert_allclose(p.probabilities(ctx)[0], freq, atol=4e-3)


def _pair_simulation(p, challenger_of, share, rng, n=200_000):
    """Frequencies of the top-two process: leader ~ p, challenger given the leader, leader kept
    with probability share[leader, challenger]."""
    leader = rng.choice(len(p), size=n, p=p)
    challenger = challenger_of(leader)
    keep = rng.random(n) < share[leader, challenger]
    return np.bincount(np.where(keep, leader, challenger), minlength=len(p)) / n


def test_top_two_tcb_with_ids_beta_matches_simulation_of_its_definition():
    p = TopTwoTS(3, beta="ids", challenger="tcb", seed=0)
    p.update([0] * 20 + [1] * 40 + [2] * 60, [1] * 5 + [0] * 15 + [1] * 12 + [0] * 28 + [1] * 21 + [0] * 39)
    mean, n = np.array([5 / 20, 12 / 40, 21 / 60]), np.array([20.0, 40.0, 60.0])

    def pooled(i, j):
        return (n[i] * mean[i] + n[j] * mean[j]) / (n[i] + n[j])

    w21 = n[2] * bernoulli_kl(mean[2], pooled(2, 1)) + n[1] * bernoulli_kl(mean[1], pooled(2, 1))
    w20 = n[2] * bernoulli_kl(mean[2], pooled(2, 0)) + n[0] * bernoulli_kl(mean[0], pooled(2, 0))
    w = transport_costs(p.model, p.reward_stats)
    np.testing.assert_allclose(w[2, [0, 1]], [w20, w21])
    assert w[0, 1] == w[0, 2] == w[1, 2] == 0 and w21 < w20
    # leader 2 is challenged by the arm the data least separate from it (1); a leader below the
    # empirical best is challenged by the best (zero cost, ties to the higher mean)

    def challenger_of(lead):
        return np.array([2, 2, 1])[lead]

    share = np.square(n)[None, :] / (np.square(n)[:, None] + np.square(n)[None, :])
    freq = _pair_simulation(p.prob_best(), challenger_of, share, np.random.default_rng(3))
    np.testing.assert_allclose(p.probabilities(), freq, atol=4e-3)


def test_top_two_ids_beta_with_resampling_challenger_matches_simulation():
    p = TopTwoTS(3, beta="ids", seed=0)
    p.update([0] * 10 + [1] * 30 + [2] * 20, [1] * 3 + [0] * 7 + [1] * 9 + [0] * 21 + [1] * 7 + [0] * 13)
    rng = np.random.default_rng(4)
    pb = p.prob_best()

    def challenger_of(lead):
        q = np.where(np.arange(3)[None, :] == lead[:, None], 0.0, pb[None, :])
        u = rng.random(len(lead))[:, None] * q.sum(1, keepdims=True)
        return (np.cumsum(q, 1) < u).sum(1)

    n2 = np.square([10.0, 30.0, 20.0])
    freq = _pair_simulation(pb, challenger_of, n2[None, :] / (n2[:, None] + n2[None, :]), rng)
    np.testing.assert_allclose(p.probabilities(), freq, atol=4e-3)


def test_lazy_refresh_propensities_are_the_selection_frequencies():
    """One request at a time: the split is recomputed only on its schedule, and every reported
    propensity is the probability the arm was drawn with (pooled z-test over 20k decisions)."""
    p = ThompsonSampling(3, allocation=Allocation(reweight_fraction=0.05), seed=0)
    p.update([0, 1, 2] * 100, [1, 0, 0] * 20 + [0, 1, 0] * 30 + [0, 0, 1] * 50)
    mu, env = np.array([0.2, 0.25, 0.3]), np.random.default_rng(5)
    chosen, drawn_from, splits = np.zeros(3), np.zeros(3), set()
    variance = np.zeros(3)
    for _ in range(20_000):
        probs = p.probabilities()
        s = p.select(1)
        assert s.propensities[0] == probs[s.arms[0]]
        chosen[s.arms[0]] += 1
        drawn_from += probs
        variance += probs * (1 - probs)
        splits.add(probs.tobytes())
        p.update(s.arms, env.random(1) < mu[s.arms])
    assert np.all(np.abs(chosen - drawn_from) < 4 * np.sqrt(variance))
    # refreshes at 300 * 1.05^k observations: 1 + log(20300 / 300) / log(1.05) = 87 of them
    assert 80 <= len(splits) <= 88


def test_allocation_schedule_waits_for_count_and_fraction():
    alloc = Allocation(reweight_every=10, reweight_fraction=0.1)
    assert alloc.due(0, -1)
    assert not alloc.due(109, 100) and alloc.due(110, 100)
    assert not alloc.due(1099, 1000) and alloc.due(1100, 1000)


def test_decision_ts_refreshes_its_plan_at_a_tenth_more_feedback_or_4096_observations():
    from bandit import DecisionTS

    allocation = DecisionTS(3, costs=(3.0, 2.0, 1.0)).allocation
    assert allocation == Allocation(reweight_fraction=0.1, reweight_within=4096)
    assert allocation.due(10_999, 10_000) is False and allocation.due(11_000, 10_000) is True  # a tenth
    assert allocation.due(104_095, 100_000) is False and allocation.due(104_096, 100_000) is True  # 4,096
    assert Allocation(reweight_fraction=0.1, reweight_within=0).due(104_096, 100_000) is False


def test_default_refresh_is_lazy_for_thompson_and_immediate_for_closed_forms():
    """Thompson policies recompute their split once new observations reach 1% of those it was
    computed from; closed-form and contextual policies after every update."""
    assert UCB1(3).allocation.reweight_fraction == 0.0
    assert LinTS(2, dim=2).allocation.reweight_fraction == 0.0
    lazy, exact = ThompsonSampling(3, seed=0), ThompsonSampling(3, allocation=Allocation(reweight_fraction=0.0), seed=0)
    assert lazy.allocation == Allocation(reweight_fraction=0.01, reweight_within=0)
    for arms, rewards in (([0, 1, 2] * 100, [1, 0, 0] * 30 + [0, 1, 0] * 70), ([0, 0], [1, 1]), ([1], [1])):
        before = lazy.probabilities()
        lazy.update(arms, rewards)
        exact.update(arms, rewards)
        after = lazy.probabilities()
        if len(arms) == 300 or len(arms) == 1:  # first split, then 3 = 1% of 300 new observations
            np.testing.assert_array_equal(after, exact.probabilities())
        else:
            np.testing.assert_array_equal(after, before)
            assert not np.array_equal(after, exact.probabilities())
