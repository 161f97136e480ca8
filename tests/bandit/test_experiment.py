"""The experiment over its store (SQLite and PostgreSQL): assignment equal to the client's, idempotent and
all-or-nothing feedback, restart = replay, the sample-ratio-mismatch check."""
import json
import math
import re

import numpy as np
import pytest

from bandit import BanditInputError, BanditStateError
from bandit.client import LocalAssigner
from bandit.decision import DecisionRule
from bandit.experiment import ConflictError, Experiment, ExperimentSpec, experiment_policy
from bandit.store import DecisionRecord, Event, open_store

RULE = DecisionRule(control="fp32", min_requests=100)
CTR = {"fp32": 0.12, "int8": 0.11, "int4": 0.05}


def _spec(**kw):
    return ExperimentSpec(**{"id": "exp", "arms": ("fp32", "int8", "int4"), "rule": RULE,
                             "recompute_every": 300, **kw})


def _traffic(exp, n, seed=0, start=0):
    """n assignments to units u0.., with click feedback in batches of 250."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(start, start + n):
        a = exp.assign(f"u{i % 700}")
        events.append(Event(f"e{i}", a.decision_id, float(rng.random() < CTR[a.arm]), float(rng.lognormal(2, 0.3))))
    for j in range(0, len(events), 250):
        exp.feedback(events[j:j + 250])
    return events


@pytest.fixture
def db(store_url):
    """The store's URL: every test runs on SQLite and on PostgreSQL (tests/bandit/conftest.py)."""
    return store_url


def test_server_assignment_equals_the_client_snapshot_over_100k_units():
    exp = Experiment(_spec(), open_store(":memory:"))  # the hash and the layout, not the store
    _traffic(exp, 1500)
    assert exp.version > 1  # the layout has been rebalanced, not only the initial intervals
    client = LocalAssigner.from_snapshot(json.loads(json.dumps(exp.snapshot())))
    ids = [f"unit-{i}" for i in range(99_000)] + ["ü漢字😀" * k for k in range(1, 61)] + ["x" * 256]
    server = [exp.assign(u) for u in ids]
    arms, props = client.assign_many(ids)
    assert [s.arm for s in server] == [exp.spec.arms[a] for a in arms]
    assert [s.propensity for s in server] == props.tolist()
    assert {s.weights_version for s in server} == {client.version}


def test_restart_rebuilds_the_posterior_as_a_replay_and_keeps_every_unit_on_its_arm(db):
    exp = Experiment(_spec(), open_store(db))
    events = _traffic(exp, 2000)
    before = {u: exp.assign(u).arm for u in (f"u{i}" for i in range(700))}
    again = Experiment(_spec(), open_store(db))
    assert again.version == exp.version and again.layout == exp.layout
    for name in ("n", "s", "ss"):
        np.testing.assert_array_equal(getattr(again.policy.reward_stats, name), getattr(exp.policy.reward_stats, name))
    # an independent replay: the acknowledged events' arms from the store, summed per arm
    decisions = again.store.decisions("exp", [e.decision_id for e in events])
    arms = np.array([decisions[e.decision_id].arm for e in events])
    np.testing.assert_array_equal(again.totals.n, np.bincount(arms, minlength=3))
    np.testing.assert_array_equal(again.totals.s, np.bincount(arms, [e.reward for e in events], minlength=3))
    assert {u: again.assign(u).arm for u in before} == before


def test_feedback_is_idempotent_on_event_id_and_refuses_reused_ids(db):
    exp = Experiment(_spec(), open_store(db))
    events = _traffic(exp, 500)
    n = exp.totals.n.copy()
    assert exp.feedback(events[:300]).duplicates == 300
    np.testing.assert_array_equal(exp.totals.n, n)
    changed = Event(events[0].event_id, events[0].decision_id, 1 - events[0].reward, events[0].latency_ms)
    with pytest.raises(ConflictError, match=r"^events\[0\]\.event_id: .* other content$"):
        exp.feedback([changed])
    other = Event("fresh", events[1].decision_id, 1.0, 3.0)
    with pytest.raises(ConflictError, match=r"^events\[0\]\.decision_id: .* already has its feedback$"):
        exp.feedback([other])
    np.testing.assert_array_equal(exp.totals.n, n)


def _bad(case, good):
    e = good[-1]
    return {
        "nan reward": Event(e.event_id, e.decision_id, math.nan, 3.0),
        "inf reward": Event(e.event_id, e.decision_id, math.inf, 3.0),
        "reward above 1": Event(e.event_id, e.decision_id, 1.5, 3.0),
        "negative latency": Event(e.event_id, e.decision_id, 1.0, -2.0),
        "unknown decision": Event(e.event_id, "no-such-decision", 1.0, 3.0),
        "long event id": Event("x" * 129, e.decision_id, 1.0, 3.0),
        "latency on some": Event(e.event_id, e.decision_id, 1.0, None),
        "repeated event id": Event(good[0].event_id, e.decision_id, 1.0, 3.0),
    }[case]


@pytest.mark.parametrize("case, field", [
    ("nan reward", "events[2].reward"), ("inf reward", "events[2].reward"), ("reward above 1", "events[2].reward"),
    ("negative latency", "events[2].latency_ms"), ("unknown decision", "events[2].decision_id"),
    ("long event id", "events[2].event_id"), ("latency on some", "events[2].latency_ms"),
    ("repeated event id", "events[2].event_id"),
])
def test_a_bad_event_refuses_the_whole_batch_and_writes_nothing(db, case, field):
    exp = Experiment(_spec(), open_store(db))
    ids = [exp.assign(f"u{i}").decision_id for i in range(3)]
    good = [Event(f"e{i}", d, 1.0, 3.0) for i, d in enumerate(ids)]
    batch = good[:2] + [_bad(case, good)]
    with pytest.raises(BanditInputError, match=f"^{re.escape(field)}: [^\\n]+$"):
        exp.feedback(batch)
    assert exp.store.events([e.event_id for e in good]) == {} and exp.totals.n.sum() == 0
    assert exp.policy.pulls.sum() == 0
    assert exp.feedback(good).accepted == 3


def test_a_changed_definition_is_refused_naming_the_field(db):
    Experiment(_spec(), open_store(db))
    with pytest.raises(BanditStateError, match=r"^experiments\.exp: the store holds another definition "
                                               r"\(salt differs: stored \"exp\", given \"other\"\)$"):
        Experiment(_spec(salt="other"), open_store(db))


@pytest.mark.parametrize("kw, field", [
    (dict(id="../x"), "id"), (dict(arms=("fp32",)), "arms"), (dict(arms=("fp32", "fp32")), "arms"),
    (dict(policy="LinUCB"), "policy"), (dict(options={"gamma": 0.1}), "options.gamma"),
    (dict(options={"model": {"type": "NormalInverseGamma"}}), "options.model"),
    (dict(rule=DecisionRule(control="dlrm")), "rule.control"), (dict(recompute_every=0), "recompute_every"),
])
def test_bad_definition_names_the_field(kw, field):
    with pytest.raises(BanditInputError, match=f"^{field}: [^\\n]+$"):
        _spec(**kw)


def test_sample_ratio_mismatch_is_flagged_only_when_units_do_not_follow_the_weights(db):
    exp = Experiment(_spec(), open_store(db))
    for i in range(3000):
        exp.assign(f"unit-{i}")
    assert exp.srm()["p_value"] > 1e-3 and not exp.srm()["mismatch"]
    # a buggy caller logs 300 extra units on fp32 only
    exp.store.log_decisions("exp", [DecisionRecord(f"bad{i}", f"extra-{i}", 0, 1 / 3, 1, 0.0) for i in range(300)])
    srm = exp.srm()
    assert srm["mismatch"] and srm["units"] == 3300 and srm["observed"][0] - srm["expected"][0] > 150


def test_the_default_policy_is_the_simulators_decision_ts_built_by_one_builder(db):
    """Same name, options, rule, control and bytes: the service's policy and the simulator's are
    the same policy (class, options, and the split after the same feedback)."""
    from bandit.decision import DecisionTS
    from simulator.config import PolicyConfig, SimulatorConfig
    from simulator.experiment import make_policy

    costs = (4.0, 2.0, 1.0)
    exp = Experiment(_spec(arms=("int8", "fp32", "int4"), costs=costs), open_store(db))
    assert isinstance(exp.policy, DecisionTS) and exp.spec.policy == SimulatorConfig().policy.name
    assert (exp.policy.rule, exp.policy.control, exp.policy.costs) == (RULE, 1, costs)
    service = experiment_policy(exp.spec)
    sim = make_policy(SimulatorConfig(policy=PolicyConfig()), 3, 0, RULE, 1, costs)
    rng = np.random.default_rng(3)
    arms, rewards, lat = rng.integers(0, 3, 400), (rng.random(400) < 0.1).astype(float), rng.lognormal(2, .3, 400)
    for p in (service, sim):
        p.update(arms, rewards, latencies=lat)
    np.testing.assert_array_equal(service.probabilities(), sim.probabilities())


def test_a_rule_without_latency_takes_feedback_without_latency_under_the_default_policy(db):
    exp = Experiment(_spec(), open_store(db))
    ids = [exp.assign(f"u{i}").decision_id for i in range(3)]
    assert exp.feedback([Event(f"e{i}", d, 1.0, None) for i, d in enumerate(ids)]).accepted == 3


def test_feedback_can_leave_a_due_recompute_to_the_caller(db):
    """A service answers first and recomputes after: feedback(refresh=False) leaves the weights
    as they were though a recompute is due; refresh() then makes it."""
    exp = Experiment(_spec(recompute_every=10), open_store(db))
    ids = [exp.assign(f"u{i}").decision_id for i in range(20)]
    exp.feedback([Event(f"e{i}", d, float(i % 2), 3.0) for i, d in enumerate(ids)], refresh=False)
    assert exp.version == 1 and exp.totals.n.sum() == 20
    assert exp.refresh() and exp.version == 2
