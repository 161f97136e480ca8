"""Bad input: one-line error naming the field, and the policy state unchanged."""
import numpy as np
import pytest

from bandit import (
    EXP3,
    Allocation,
    BanditInputError,
    Constrained,
    DecisionLedger,
    GLRRule,
    LatencySLO,
    LinTS,
    LinUCB,
    NormalInverseGamma,
    StoppingRule,
    ThompsonSampling,
    TopTwoTS,
    TradeoffTS,
    check_stopping,
    to_json,
)


@pytest.mark.parametrize("make, kwargs, field", [
    (lambda: ThompsonSampling(3), dict(arms=[0, 1], rewards=[1.0, np.nan]), "rewards"),
    (lambda: ThompsonSampling(3), dict(arms=[0, 1], rewards=[1.0, np.inf]), "rewards"),
    (lambda: ThompsonSampling(3), dict(arms=[0, 1], rewards=[1.0, 2.0]), "rewards"),
    (lambda: ThompsonSampling(3), dict(arms=[0, 3], rewards=[1.0, 0.0]), "arms"),
    (lambda: ThompsonSampling(3), dict(arms=[0, -1], rewards=[1.0, 0.0]), "arms"),
    (lambda: ThompsonSampling(3), dict(arms=[0, 1, 2], rewards=[1.0, 0.0]), "rewards"),
    (lambda: ThompsonSampling(3), dict(arms=[0, 1], rewards=[1, 0], latencies=[5.0, -1.0]), "latencies"),
    (lambda: ThompsonSampling(3), dict(arms=[0, 1], rewards=[1, 0], latencies=[5.0]), "latencies"),
    (lambda: TradeoffTS(3, Constrained(LatencySLO(10.0))), dict(arms=[0], rewards=[1]), "latencies"),
    (lambda: EXP3(3), dict(arms=[0], rewards=[1]), "propensities"),
    (lambda: EXP3(3), dict(arms=[0], rewards=[1], propensities=[0.0]), "propensities"),
    (lambda: LinUCB(3, dim=2), dict(arms=[0], rewards=[1], context=[[1.0, np.nan]]), "context"),
    (lambda: LinUCB(3, dim=2), dict(arms=[0], rewards=[1], context=[[1.0, 2.0, 3.0]]), "context"),
])
def test_bad_batch_raises_naming_field_and_changes_nothing(make, kwargs, field):
    policy = make()
    good = dict(arms=[0, 1], rewards=[1.0, 0.0], latencies=[10.0, 20.0], propensities=[0.5, 0.5])
    if policy.contextual:
        good["context"] = np.ones((2, 2))
    policy.update(**good)
    before = to_json(policy)
    with pytest.raises(BanditInputError, match=f"^{field}: ") as info:
        policy.update(**kwargs)
    assert "\n" not in str(info.value)
    assert to_json(policy) == before


@pytest.mark.parametrize("build, field", [
    (lambda: ThompsonSampling(0), "n_arms"),
    (lambda: ThompsonSampling(3, allocation=Allocation(floor=0.5)), "allocation.floor"),
    (lambda: Allocation(control_share=0.2), "allocation.control_share"),
    (lambda: ThompsonSampling(3, allocation=Allocation(control=5, control_share=0.1)), "allocation.control"),
    (lambda: ThompsonSampling(3).select(0), "n"),
    (lambda: Allocation(reweight_fraction=-0.1), "allocation.reweight_fraction"),
    (lambda: LinTS(2, dim=2, allocation=Allocation(reweight_fraction=0.01)), "allocation.reweight_every"),
    (lambda: TopTwoTS(3, beta="adaptive"), "beta"),
    (lambda: TopTwoTS(3, challenger="kl"), "challenger"),
    (lambda: GLRRule(delta=0.0), "delta"),
    (lambda: GLRRule(calibrated=-1.0), "calibrated"),
    (lambda: StoppingRule(anytime="yes"), "anytime"),
])
def test_bad_config_names_field(build, field):
    with pytest.raises(BanditInputError, match=f"^{field}: "):
        build()


def test_ledger_rejects_unknown_ids_without_closing_others():
    policy, ledger = ThompsonSampling(2, seed=0), DecisionLedger(2)
    ledger.record(["x", "y"], policy.select(2))
    with pytest.raises(BanditInputError, match="^decision_ids: "):
        ledger.resolve(policy, ["x", "zzz"], [1.0, 0.0])
    with pytest.raises(BanditInputError, match="^rewards: "):
        ledger.resolve(policy, ["x"], [np.nan])
    assert len(ledger) == 2


@pytest.mark.parametrize("make, rewards, latencies, field", [
    (lambda: ThompsonSampling(2, seed=0), [2.0, 1.0], None, "rewards"),  # outside the policy's [0, 1]
    (lambda: ThompsonSampling(2, seed=0), [1.0, 0.0], [5.0, -1.0], "latencies"),
    (lambda: TradeoffTS(2, Constrained(LatencySLO(10.0)), seed=0), [1.0, 0.0], None, "latencies"),
])
def test_ledger_keeps_decisions_whose_feedback_the_policy_refuses(make, rewards, latencies, field):
    """Validate first, remove after: a refused batch loses no decision, and the same ids resolve
    once the feedback is corrected."""
    policy, ledger = make(), DecisionLedger(2)
    s = policy.select(2)
    ledger.record(["x", "y"], s)
    before = to_json(policy)
    with pytest.raises(BanditInputError, match=f"^{field}: "):
        ledger.resolve(policy, ["x", "y"], rewards, latencies)
    assert len(ledger) == 2 and to_json(policy) == before
    fb = ledger.resolve(policy, ["x", "y"], [1.0, 0.0], [5.0, 6.0])
    assert len(ledger) == 0 and policy.pulls.sum() == 2
    np.testing.assert_array_equal(fb.arms, s.arms)


def test_anytime_rule_refuses_an_unbounded_reward_model_before_drawing():
    policy = ThompsonSampling(2, model=NormalInverseGamma(), seed=0)
    policy.update([0, 1], [3.5, -2.0])
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    with pytest.raises(BanditInputError, match=r"^anytime: .*anytime=False") as info:
        check_stopping(policy, rng=rng)
    assert "\n" not in str(info.value) and rng.bit_generator.state == state
    assert check_stopping(policy, StoppingRule(anytime=False), rng=rng).winner == 0
