"""The verdict: intervals against published values, the A/B sample size against a hand computation,
the chosen variant only when the stopping rule fired, and a round trip through results.json."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from simulator.experiment import ExperimentResult
from simulator.verdict import Verdict, fixed_ab_requests, newcombe, verdict_of, wilson


@pytest.mark.parametrize("x, n, low, high", [  # Newcombe (1998a), Table I, method 3 (Wilson score)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_published_values(x, n, low, high) -> None:
    assert wilson(x, n) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("x1, n1, x2, n2, low, high", [  # Newcombe (1998b), Table II, method 10
    (56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090), (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926), (0, 10, 0, 20, -0.1611, 0.2775), (10, 10, 0, 20, 0.6791, 1.0)])
def test_newcombe_difference_interval_matches_published_values(x1, n1, x2, n2, low, high) -> None:
    assert newcombe(x1, n1, x2, n2) == pytest.approx((low, high), abs=5e-5)


def test_fixed_ab_sample_size_by_hand() -> None:
    # 10% vs 12%, two-sided 5%, power 80%: z = 1.959964, 0.841621; pbar = 0.11
    root = 1.959964 * math.sqrt(2 * 0.11 * 0.89) + 0.841621 * math.sqrt(0.10 * 0.90 + 0.12 * 0.88)
    per_arm = math.ceil(root ** 2 / 0.02 ** 2)
    assert per_arm == 3841
    assert fixed_ab_requests(0.10, 0.12, 2, 0.05) == 2 * per_arm
    assert fixed_ab_requests(0.12, 0.10, 4, 0.05) == 4 * per_arm  # every arm gets the same share
    assert fixed_ab_requests(0.10, 0.12, 2, 0.01) > 2 * per_arm  # more confidence, more requests
    assert fixed_ab_requests(0.3, 0.3, 2, 0.05) is None


def _result(stopped: bool, prob_best=(0.1, 0.2, 0.7)) -> ExperimentResult:
    k = 3
    return ExperimentResult(
        variants=["logistic", "dlrm", "dlrm-int8"], served=np.array([1000, 3000, 6000]),
        reward=np.array([100.0, 360.0, 750.0]), expected_all=np.array([0.1, 0.12, 0.125]),
        latency_p50_ms=np.array([1.0, 2.0, 1.5]), latency_p99_ms=np.array([3.0, 8.0, 6.0]),
        embedding_bytes=[100, 400, 130], impressions=50_000, clicks=1500, abandoned=3, winner=2,
        stopped=stopped, prob_best=np.array(prob_best), cumulative_regret=np.array([5.0, 9.0, 12.5]),
        cumulative_oracle_gap=np.array([6.0, 11.0, 15.0]), allocation=np.full((3, k), 1 / k),
        latency_models=[{}] * k, calibration=None)


def test_no_decision_names_the_leader_never_a_winner() -> None:
    v = verdict_of(_result(stopped=False), 0.95)
    assert (v.decided, v.chosen, v.leader, v.leader_prob_best) == (False, None, "dlrm-int8", 0.7)
    assert v.headline() == ("No decision yet: dlrm-int8 leads (P(best) 0.700, the rule asks for 0.95) "
                            "after 10,000 requests")
    assert v.control == "dlrm" and v.requests == 10_000 and v.regret == 12.5
    int8, control = v.arms[2], v.arms[1]
    assert int8.reward == 0.125 and (int8.reward_low, int8.reward_high) == pytest.approx(wilson(750, 6000))
    assert int8.vs_control == pytest.approx(0.125 - 0.12)
    assert (int8.vs_control_low, int8.vs_control_high) == pytest.approx(newcombe(750, 6000, 360, 3000))
    assert control.vs_control is None and (int8.p99_ms, int8.bytes, int8.prob_best) == (6.0, 130, 0.7)
    assert v.runner_up == "dlrm"  # the other arm with the highest mean reward
    assert v.fixed_ab_requests == fixed_ab_requests(0.125, 0.12, 3, 0.05)
    assert "No decision yet" in v.to_dict()["headline"]


def test_the_stopping_rule_chooses() -> None:
    v = verdict_of(_result(stopped=True, prob_best=(0.0, 0.02, 0.98)), 0.95)
    assert (v.decided, v.chosen) == (True, "dlrm-int8")
    assert v.headline().startswith("Serve dlrm-int8: the stopping rule declared it best (P(best) 0.980 >= 0.95)")
    header, rows = v.table()
    assert rows[2][0] == "dlrm-int8 (chosen)" and rows[1][3] == "control" and len(header) == len(rows[0])


def test_a_policy_without_posterior_leads_by_mean_reward() -> None:
    v = verdict_of(_result(stopped=False, prob_best=(np.nan,) * 3), 0.95, control="none-such")
    assert v.leader_prob_best is None and v.control == "logistic"  # no arm of that name: the first
    assert "by mean reward; the policy has no posterior" in v.headline()


def test_round_trip_through_json() -> None:
    v = verdict_of(_result(stopped=False), 0.9)
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.headline() == v.headline()
