"""State: exact JSON round trips, bit-exact continuation, rejection of foreign or corrupt state."""
import json

import numpy as np
import pytest

from bandit import (
    EXP3,
    KLUCB,
    UCB1,
    Allocation,
    BanditStateError,
    BetaBernoulli,
    Constrained,
    DecisionLedger,
    Discounted,
    LatencySLO,
    LinTS,
    NormalInverseGamma,
    SlidingWindow,
    ThompsonSampling,
    TopTwoTS,
    TradeoffTS,
    from_json,
    to_json,
)
from bandit.state import load_arrays, seal

FACTORIES = [
    lambda: ThompsonSampling(3, model=BetaBernoulli((1.0, 2.0, 3.0), 5.0), memory=Discounted(0.99), seed=1),
    lambda: ThompsonSampling(3, model=NormalInverseGamma(), memory=SlidingWindow(7), seed=2),
    lambda: TopTwoTS(3, beta=0.4, allocation=Allocation(floor=0.05, control=0, control_share=0.2), seed=3),
    lambda: UCB1(3, allocation=Allocation(floor=0.1, reweight_every=5), seed=4),
    lambda: KLUCB(3, seed=5),
    lambda: EXP3(3, gamma=0.2, seed=6),
    lambda: TradeoffTS(3, Constrained(LatencySLO(100.0)), seed=7),
    lambda: ThompsonSampling(3, allocation=Allocation(reweight_fraction=0.5), seed=9),
    lambda: TopTwoTS(3, beta="ids", challenger="tcb", allocation=Allocation(reweight_fraction=0.3), seed=10),
]


def _feed(policy, rng, n=20):
    s = policy.select(n, context=rng.normal(size=(n, 2)) if policy.contextual else None)
    rewards = rng.random(n) < 0.5
    kwargs = {"propensities": s.propensities, "latencies": rng.lognormal(4, 0.3, n)}
    if policy.contextual:
        kwargs["context"] = rng.normal(size=(n, 2))
    policy.update(s.arms, rewards, **kwargs)


@pytest.mark.parametrize("make", FACTORIES + [lambda: LinTS(3, dim=2, seed=8)])
def test_round_trip_continues_bit_exactly(make):
    rng = np.random.default_rng(0)
    original = make()
    for _ in range(3):
        _feed(original, rng)
    text = to_json(original)
    copy = from_json(text)
    assert to_json(copy) == text
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(3):
        _feed(original, rng_a)
        _feed(copy, rng_b)
    assert to_json(copy) == to_json(original)
    ctx = np.ones((4, 2)) if original.contextual else None
    a, b = original.select(4, context=ctx), copy.select(4, context=ctx)
    np.testing.assert_array_equal(a.arms, b.arms)
    np.testing.assert_array_equal(a.propensities, b.propensities)


def test_same_seed_same_decisions():
    a, b = ThompsonSampling(4, seed=11), ThompsonSampling(4, seed=11)
    np.testing.assert_array_equal(a.select(100).arms, b.select(100).arms)


def _tampered(policy, edit):
    state = json.loads(to_json(policy))
    edit(state)
    return state


@pytest.mark.parametrize("edit, field", [
    (lambda s: s.update(version=99), "version"),
    (lambda s: s["payload"]["arrays"]["pulls"].__setitem__(0, 7), "checksum"),
    (lambda s: s.update(format="pickle"), "format"),
    (lambda s: s.update(kind="ledger"), "kind"),
])
def test_bad_state_is_rejected_and_state_kept(edit, field):
    p = ThompsonSampling(3, seed=0)
    p.update([0, 1, 2], [1, 0, 1])
    before = to_json(p)
    with pytest.raises(BanditStateError, match=f"^{field}:"):
        p.load_state_dict(_tampered(p, edit))
    assert to_json(p) == before


def test_state_of_another_policy_or_config_is_rejected():
    p = ThompsonSampling(3, seed=0)
    with pytest.raises(BanditStateError, match="^policy:"):
        p.load_state_dict(UCB1(3).state_dict())
    with pytest.raises(BanditStateError, match="^config:"):
        p.load_state_dict(ThompsonSampling(3, seed=1).state_dict())
    with pytest.raises(BanditStateError, match="^json:"):
        from_json("{not json")


def test_ledger_round_trip_and_delayed_out_of_order_feedback():
    policy, ledger = ThompsonSampling(3, seed=0), DecisionLedger(3)
    s = policy.select(4)
    ledger.record(["a", "b", "c", "d"], s)
    restored = DecisionLedger(3)
    restored.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    fb = restored.resolve(policy, ["d", "b"], [1.0, 0.0])
    np.testing.assert_array_equal(fb.arms, s.arms[[3, 1]])
    np.testing.assert_array_equal(fb.propensities, s.propensities[[3, 1]])
    assert len(restored) == 2 and policy.pulls.sum() == 2
    np.testing.assert_array_equal(policy.pulls, np.bincount(s.arms[[3, 1]], minlength=3))


def _resealed(state, edit):
    """A state edited by hand and given a fresh, valid checksum."""
    state = json.loads(json.dumps(state))
    edit(state["payload"])
    return seal(state["kind"], state["payload"])


def _arrays(edit):
    return lambda payload: edit(payload["arrays"])


@pytest.mark.parametrize("make, edit, field", [
    (lambda: ThompsonSampling(3, seed=0), _arrays(lambda a: a["pulls"].__setitem__(0, -4)), "arrays.pulls"),
    (lambda: ThompsonSampling(3, seed=0), _arrays(lambda a: a["rewards.n"].__setitem__(1, -1.0)), "arrays.rewards.n"),
    (lambda: ThompsonSampling(3, seed=0), _arrays(lambda a: a["rewards.n"].__setitem__(1, 50.0)), "arrays.rewards.n"),
    # more successes than counts (the sum of squares kept consistent with the sum)
    (lambda: ThompsonSampling(3, seed=0),
     _arrays(lambda a: (a["rewards.s"].__setitem__(0, 9.0), a["rewards.ss"].__setitem__(0, 9.0))), "arrays.rewards.s"),
    (lambda: ThompsonSampling(3, seed=0), _arrays(lambda a: a["rewards.ss"].__setitem__(2, -2.0)), "arrays.rewards.ss"),
    # 2.5 successes in 2 observations, which Cauchy-Schwarz admits (ss = 4): the policy's reward range refuses it
    (lambda: ThompsonSampling(3, seed=0),
     _arrays(lambda a: (a["rewards.s"].__setitem__(0, 2.5), a["rewards.ss"].__setitem__(0, 4.0))), "arrays.rewards.s"),
    (lambda: ThompsonSampling(3, memory=SlidingWindow(8), seed=0),
     _arrays(lambda a: a["rewards.window_arms"].__setitem__(0, 7)), "arrays.rewards.window_arms"),
    (lambda: ThompsonSampling(3, memory=SlidingWindow(8), seed=0),
     _arrays(lambda a: a["rewards.window_next"].__setitem__(0, 8)), "arrays.rewards.window_next"),
    (lambda: UCB1(3, seed=0), _arrays(lambda a: a["cache"].__setitem__(0, 3.0)), "arrays.cache"),
])
def test_resealed_state_with_impossible_contents_is_rejected_and_state_kept(make, edit, field):
    """The checksum alone is no defence: contents no valid update sequence produces are refused."""
    p = make()
    p.update([0, 1, 2, 0, 2], [1, 0, 1, 1, 0], latencies=[3.0, 4.0, 5.0, 6.0, 7.0])
    p.probabilities()
    before = to_json(p)
    with pytest.raises(BanditStateError, match=f"^{field}: [^\n]+$"):
        p.load_state_dict(_resealed(p.state_dict(), edit))
    assert to_json(p) == before
    p.load_state_dict(_resealed(p.state_dict(), lambda payload: None))
    assert to_json(p) == before


def test_reward_range_bounds_sums_of_bounded_rewards():
    """Rewards in [0, 1] sum to at most n per arm; Cauchy-Schwarz alone admits 2.5 in 2 when ss = 4."""
    p = ThompsonSampling(2, seed=0)
    p.update([0, 0, 1], [1, 0, 1])
    saved = p.state_dict()["payload"]["arrays"]
    current = {k: np.asarray(v) for k, v in saved.items()}
    saved["rewards.s"][0], saved["rewards.ss"][0] = 2.5, 4.0
    load_arrays(saved, current)
    with pytest.raises(BanditStateError, match="^arrays.rewards.s: sum above n x 1.0$"):
        load_arrays(saved, current, reward_range=(0.0, 1.0))


@pytest.mark.parametrize("edit, field", [
    (lambda payload: payload["open"].__setitem__("a", [5, 0.5]), "open.a"),
    (lambda payload: payload["open"].__setitem__("a", [-1, 0.5]), "open.a"),
    (lambda payload: payload["open"].__setitem__("a", [0, 0.0]), "open.a"),
    (lambda payload: payload["open"].__setitem__("a", [0, 1.5]), "open.a"),
    (lambda payload: payload["open"].__setitem__("a", [True, 0.5]), "open.a"),
    (lambda payload: payload.__setitem__("n_arms", 5), "n_arms"),
])
def test_resealed_ledger_with_unknown_arms_or_bad_propensities_is_rejected(edit, field):
    ledger = DecisionLedger(3)
    ledger.record(["a", "b"], ThompsonSampling(3, seed=0).select(2))
    before = ledger.state_dict()
    with pytest.raises(BanditStateError, match=f"^{field}: [^\n]+$"):
        ledger.load_state_dict(_resealed(before, edit))
    assert ledger.state_dict() == before


def test_lazy_refresh_round_trip_mid_schedule_continues_bit_exactly():
    """Saved between two refreshes, the copy keeps serving the cached split and refreshes at the
    same request as the original."""
    original = ThompsonSampling(3, allocation=Allocation(reweight_fraction=0.2), seed=0)
    env = np.random.default_rng(1)
    for _ in range(57):
        s = original.select(1)
        original.update(s.arms, env.random(1) < 0.3)
    copy = from_json(to_json(original))
    for _ in range(40):
        a, b = original.select(1), copy.select(1)
        np.testing.assert_array_equal(a.propensities, b.propensities)
        np.testing.assert_array_equal(a.arms, b.arms)
        reward = env.random(1) < 0.3
        original.update(a.arms, reward)
        copy.update(b.arms, reward)
    assert to_json(copy) == to_json(original)


def test_state_saved_with_the_old_default_rebuilds_it_and_a_lazy_policy_refuses_it():
    """States saved before the lazy default record reweight_fraction 0.0: from_json rebuilds a
    policy that recomputes after every update and continues bit-exactly; loading such a state
    into a policy with today's default is refused in one line."""
    old = ThompsonSampling(3, allocation=Allocation(reweight_fraction=0.0), seed=0)
    rng = np.random.default_rng(0)
    _feed(old, rng)
    text = to_json(old)
    assert json.loads(text)["payload"]["config"]["allocation"]["fields"]["reweight_fraction"] == 0.0
    copy = from_json(text)
    assert copy.allocation.reweight_fraction == 0.0
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(3):
        _feed(old, rng_a)
        _feed(copy, rng_b)
    assert to_json(copy) == to_json(old)
    with pytest.raises(BanditStateError, match="^config: state was saved with a different config$"):
        ThompsonSampling(3, seed=0).load_state_dict(json.loads(text))
