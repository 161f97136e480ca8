"""Policy options: declared by the constructors, unknown ones refused, built from plain values."""
import inspect

import pytest

from bandit import (
    EXP3,
    UCB1,
    Allocation,
    BanditArmCountError,
    BanditInputError,
    BetaBernoulli,
    Constrained,
    Discounted,
    LatencySLO,
    LinUCB,
    NonInferiority,
    Policy,
    Scalarised,
    Stationary,
    ThompsonSampling,
    TopTwoTS,
    TradeoffTS,
    policy_kwargs,
)


def test_declared_options_come_from_every_constructor_in_the_hierarchy():
    options = TradeoffTS.declared_options()
    assert list(options) == ["objective", "latency", "n_draws", "model", "memory", "allocation", "seed"]
    assert options["n_draws"].annotation is int and options["n_draws"].default == 4000
    assert options["objective"].default is inspect.Parameter.empty
    assert options["allocation"].annotation is Allocation
    assert list(UCB1.declared_options()) == ["c", "memory", "allocation", "seed"]


def test_registry_holds_the_public_policies_only():
    assert "ThompsonSampling" in Policy.registry and "UCB1" in Policy.registry
    assert not [name for name in Policy.registry if name.startswith("_")]


@pytest.mark.parametrize("make, message", [
    (lambda: ThompsonSampling(3, gama=0.1), "gama: unknown option of ThompsonSampling (allowed: model, memory, "
                                            "allocation, seed)"),
    (lambda: EXP3(3, epsilon=0.1), "epsilon: unknown option of EXP3 (allowed: gamma, memory, allocation, seed)"),
])
def test_policies_refuse_unknown_options(make, message):
    with pytest.raises(BanditInputError) as info:
        make()
    assert str(info.value) == message


def test_plain_values_become_the_guardrail_and_allocation_objects():
    raw = {"objective": {"slo": {"threshold": 5, "percentile": 0.99},
                         "noninferiority": {"control": 0, "margin": 0.01}},
           "n_draws": 500, "memory": {"gamma": 0.99},
           "allocation": {"floor": 0.05, "control": 0, "control_share": 0.2},
           "model": {"type": "BetaBernoulli", "alpha": [1, 2, 3]}}
    kwargs = policy_kwargs(TradeoffTS, raw)
    assert kwargs == {"objective": Constrained(LatencySLO(5.0, 0.99), NonInferiority(0, 0.01)), "n_draws": 500,
                      "memory": Discounted(0.99), "allocation": Allocation(floor=0.05, control=0, control_share=0.2),
                      "model": BetaBernoulli((1.0, 2.0, 3.0))}
    assert isinstance(kwargs["objective"].slo.threshold, float)
    policy = TradeoffTS(3, seed=0, **kwargs)
    assert policy.objective == kwargs["objective"] and policy.allocation.control_share == 0.2


@pytest.mark.parametrize("policy, raw, expected", [
    (ThompsonSampling, {"memory": {"type": "Stationary"}}, {"memory": Stationary()}),
    (TradeoffTS, {"objective": {"type": "Scalarised", "lam": 1}}, {"objective": Scalarised(1.0)}),
    (TradeoffTS, {"objective": {"lam": 0.5}}, {"objective": Scalarised(0.5)}),
    (TopTwoTS, {"beta": "ids", "challenger": "tcb"}, {"beta": "ids", "challenger": "tcb"}),
    (TopTwoTS, {"beta": 1}, {"beta": 1.0}),
    (UCB1, {"c": 1}, {"c": 1.0}),
    (ThompsonSampling, {"allocation": Allocation(floor=0.1)}, {"allocation": Allocation(floor=0.1)}),
])
def test_values_of_the_declared_type_are_accepted(policy, raw, expected):
    assert policy_kwargs(policy, raw) == expected


@pytest.mark.parametrize("policy, raw, message", [
    (EXP3, {"gama": 0.1}, "gama: unknown option of EXP3 (allowed: gamma, memory, allocation)"),
    (EXP3, {"gamma": "0.1"}, "gamma: expected float, got str '0.1'"),
    (EXP3, {"gamma": True}, "gamma: expected float, got bool True"),
    (EXP3, {"gamma": 2.0}, "gamma: must be in [1e-12, 1.0], got 2.0"),
    (EXP3, {"seed": 1}, "seed: set by the caller, not an option of EXP3 here"),
    (TradeoffTS, {}, "objective: required option of TradeoffTS is missing"),
    (TradeoffTS, {"objective": {"slo": {"threshold": 5.0, "percentile": 1.5}}},
     "objective.slo.percentile: must be in (0, 1), got 1.5"),
    (TradeoffTS, {"objective": {"slo": {"percentile": 0.9}}},
     "objective.slo.threshold: required field of LatencySLO is missing"),
    (TradeoffTS, {"objective": {"slo": {"threshold": 5.0, "pct": 0.9}}},
     "objective.slo.pct: unknown field of LatencySLO (allowed: threshold, percentile, max_violation_prob)"),
    (TradeoffTS, {"objective": {"slo": {"threshold": 5.0}, "noninferiority": {"control": 0, "margin": -1}}},
     "objective.noninferiority.margin: must be in [0.0, inf], got -1.0"),
    (TradeoffTS, {"objective": {"type": "Pareto"}}, "objective.type: 'Pareto' is not one of Constrained, Scalarised"),
    (TradeoffTS, {"objective": {"sla": 1}}, "objective: no one of Constrained, Scalarised has fields sla"),
    (TradeoffTS, {"objective": {"slo": 5.0}}, "objective.slo: expected a table of LatencySLO fields, got float"),
    (ThompsonSampling, {"memory": {}}, "memory.type: required to tell which of Stationary, Discounted, "
                                       "SlidingWindow is meant"),
    (ThompsonSampling, {"memory": {"size": 0}}, "memory.size: expected an integer >= 1, got 0"),
    (ThompsonSampling, {"allocation": {"floor": 1.5}}, "allocation.floor: must be in [0.0, 1.0], got 1.5"),
    (ThompsonSampling, {"model": {"type": "BetaBernoulli", "alpha": [1.0, 0.0]}},
     "model.alpha: must be in (0, inf), got 0.0"),
    (TopTwoTS, {"beta": "adaptive"}, "beta: expected a number in [0, 1] or 'ids', got 'adaptive'"),
    (TopTwoTS, {"beta": [0.5]}, "beta: expected float or str, got list [0.5]"),
    (LinUCB, {"alpha": 1.0}, "dim: required option of LinUCB is missing"),
])
def test_bad_options_are_refused_naming_the_dotted_option(policy, raw, message):
    with pytest.raises(BanditInputError) as info:
        policy_kwargs(policy, raw, fixed=("seed",))
    assert str(info.value) == message


def test_checks_that_need_the_arm_count_wait_for_the_policy_that_has_arms():
    raw = {"objective": {"slo": {"threshold": 5.0}, "noninferiority": {"control": 4}},
           "allocation": {"floor": 0.3}}
    kwargs = policy_kwargs(TradeoffTS, raw)
    with pytest.raises(BanditArmCountError, match="^objective.noninferiority.control: not an arm id below 3$"):
        TradeoffTS(3, **kwargs)
    with pytest.raises(BanditArmCountError, match=r"^allocation.floor: 0.3 x 4 arms exceeds 1$"):
        TradeoffTS(4, **{**kwargs, "objective": Constrained(LatencySLO(5.0))})
