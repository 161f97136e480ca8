"""Bad input: one-line errors naming the cause; what was already written stays intact."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bandit import DecisionRule
from recsys.config_loading import from_dict
from recsys.errors import ConfigError
from simulator.click_models import PositionBased
from simulator.config import SimulatorConfig
from simulator.environment import Environment
from simulator.errors import SimulationError
from simulator.experiment import run_experiment
from simulator.latency import LatencyModel
from simulator.logs import log_impressions
from simulator.oracle import WorldScorer
from simulator.serving import Arm
from tests.simulator.conftest import WORLD


class Broken(WorldScorer):
    """Scores correctly for `good_calls` calls, then returns `bad(scores)`."""

    def __init__(self, world, bad, good_calls=0):
        super().__init__(world)
        self.bad, self.calls, self.good_calls = bad, 0, good_calls

    def score(self, batch):
        self.calls += 1
        out = super().score(batch)
        return out if self.calls <= self.good_calls else self.bad(out)


def _one_line(exc: pytest.ExceptionInfo, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError) as exc:
        SimulatorConfig(candidates=5, slate_size=10)
    _one_line(exc, "slate_size", "K = 10 > C = 5")
    with pytest.raises(ConfigError) as exc:
        from_dict(SimulatorConfig, {"click": {"examination": [1.0, 1.5]}}, "simulator")
    _one_line(exc, "simulator.click.examination", "[0, 1]")
    with pytest.raises(ConfigError) as exc:
        from_dict(SimulatorConfig, {"latency": {"p50_ms": [5.0], "p99_ms": [2.0]}}, "simulator")
    _one_line(exc, "p50_ms")


@pytest.mark.parametrize("key, value, message", [
    ("prob_best", 0.9, "simulator.stopping.prob_best: moved to decision.confidence (one rule for the simulator "
                       "and the online service)"),
    ("min_requests", 100, "simulator.stopping.min_requests: moved to decision.min_requests (one rule"),
    ("max_loss", 0.01, "simulator.stopping.max_loss: removed: a variant is declared when the [decision] rule holds"),
])
def test_stopping_keys_that_moved_into_the_decision_rule_are_refused(key, value, message):
    with pytest.raises(ConfigError) as exc:
        from_dict(SimulatorConfig, {"stopping": {key: value}}, "simulator")
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    kept = from_dict(SimulatorConfig, {"stopping": {"check_every_steps": 2}}, "simulator")
    assert kept.stopping.check_every_steps == 2


def test_the_rules_control_must_be_a_variant():
    env = Environment.build(SimulatorConfig(num_requests=1000, batch_requests=500, candidates=20, slate_size=5),
                            WORLD, 0)
    with pytest.raises(ConfigError) as exc:
        run_experiment(env, [Arm("a", WorldScorer(WORLD)), Arm("b", WorldScorer(WORLD))], DecisionRule())
    assert str(exc.value) == "decision.control: no variant 'dlrm' in this simulation (one of a, b)"


def test_probability_outside_unit_interval():
    with pytest.raises(SimulationError) as exc:
        PositionBased(np.array([1.0, -0.1]))
    _one_line(exc, "examination", "-0.1")


@pytest.mark.parametrize("bad, words", [
    (lambda s: s.clone().fill_(float("nan")), ("'broken'", "nan")),
    (lambda s: s[:-1], ("'broken'", "shape")),
    (lambda s: s.reshape(-1, 1), ("'broken'", "shape")),
])
def test_bad_scores_stop_the_run(sim_config, bad, words):
    env = Environment.build(sim_config, WORLD, 0)
    variants = [Arm("ok", WorldScorer(env.world.world)), Arm("broken", Broken(env.world.world, bad))]
    with pytest.raises(SimulationError) as exc:
        run_experiment(env, variants)
    _one_line(exc, *words)


def test_negative_latency(sim_config):
    env = Environment.build(sim_config, WORLD, 0)
    with pytest.raises(SimulationError) as exc:
        env.simulator.expected_reward(*_request_scores(env), np.full(1000, -1.0))
    _one_line(exc, "latency", "-1.0")
    with pytest.raises(SimulationError) as exc:
        LatencyModel.from_samples(np.r_[np.ones(30), -2.0])
    _one_line(exc, "negative")


def _request_scores(env):
    requests, _ = env.requests()
    return requests, np.zeros(requests.candidates.shape)


def test_failure_keeps_written_parts(sim_config, tmp_path):
    config = dataclasses.replace(sim_config, log=dataclasses.replace(sim_config.log, requests=4000))
    env = Environment.build(config, WORLD, 0)
    scorer = Broken(env.world.world, lambda s: s * float("nan"), good_calls=2)
    with pytest.raises(SimulationError):
        log_impressions(env, Arm("broken", scorer, LatencyModel.from_quantiles(5, 20)), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.npz", "part-00001.npz"]
    assert len(np.load(tmp_path / "part-00001.npz")["user"]) > 0
