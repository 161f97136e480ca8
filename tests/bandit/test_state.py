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
    policy, ledger = ThompsonSampling(3, seed=0), DecisionLedger()
    s = policy.select(4)
    ledger.record(["a", "b", "c", "d"], s)
    restored = DecisionLedger()
    restored.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    fb = restored.resolve(["d", "b"], [1.0, 0.0])
    np.testing.assert_array_equal(fb.arms, s.arms[[3, 1]])
    np.testing.assert_array_equal(fb.propensities, s.propensities[[3, 1]])
    policy.update(fb.arms, fb.rewards, propensities=fb.propensities)
    assert len(restored) == 2 and policy.pulls.sum() == 2


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
