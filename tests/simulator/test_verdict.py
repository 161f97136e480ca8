"""The verdict: intervals against published values, the A/B sample sizes against hand computations,
the chosen variant only when the decision rule holds, and a round trip through results.json."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from bandit import DecisionRule
from simulator.verdict import (
    Verdict,
    fixed_ab_requests,
    fixed_noninferiority_requests,
    fixed_verdict_requests,
    newcombe,
    verdict_of,
    wilson,
)
from tests.simulator.conftest import made_up_result


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


REWARD = DecisionRule(min_requests=0)
COST = DecisionRule(objective="cost", cost_by="bytes", margin=0.05, min_requests=0)


def test_fixed_noninferiority_sample_size_by_hand() -> None:
    # control 0.40, arm 0.40, margin 5% relative: gap 0.02; 3 arms: one-sided 0.025 each; power 80%
    z = 1.959964 + 0.841621
    var = 0.4 * 0.6 * 0.95 ** 2 + 0.4 * 0.6
    per_arm = math.ceil(z * z * var / 0.02 ** 2)
    assert fixed_noninferiority_requests(0.40, 0.40, COST, 3) == 3 * per_arm
    assert fixed_noninferiority_requests(0.40, 0.36, COST, 3) == 3 * math.ceil(z * z * (
        0.4 * 0.6 * 0.95 ** 2 + 0.36 * 0.64) / 0.02 ** 2)  # inferior by as much: as many requests
    assert fixed_noninferiority_requests(0.40, 0.38, COST, 3) is None  # on the margin


def test_fixed_verdict_sample_size_gives_its_power_by_simulation() -> None:
    """Two statements sharing the control (0.401 non-inferior, 0.376 inferior, margin 3%): the
    equal-split test sized for verdict power 0.8 shows both in 80% of simulated tests; one
    statement alone is the per-statement formula."""
    rule = DecisionRule(objective="cost", cost_by="bytes", margin=0.03, min_requests=0)
    floor, alpha, arms = 0.97 * 0.40, 0.05 / 3, 4
    one = fixed_verdict_requests(np.array([0.401 - floor]), np.array([-0.97]), np.array([0.401 * 0.599]),
                                 0.24, arms, alpha)
    assert one == fixed_noninferiority_requests(0.40, 0.401, rule, arms)
    total = fixed_verdict_requests(np.array([0.401 - floor, floor - 0.376]), np.array([-0.97, 0.97]),
                                   np.array([0.401 * 0.599, 0.376 * 0.624]), 0.24, arms, alpha)
    assert total is not None and total > max(one, fixed_noninferiority_requests(0.40, 0.376, rule, arms))
    n = total // arms
    rng = np.random.default_rng(0)
    c, a, b = (rng.binomial(n, p, 100_000) / n for p in (0.40, 0.401, 0.376))  # 100,000 tests
    crit = norm.ppf(1 - alpha)
    ni = (a - 0.97 * c) / np.sqrt((a * (1 - a) + 0.97 ** 2 * c * (1 - c)) / n) > crit
    inferior = (0.97 * c - b) / np.sqrt((b * (1 - b) + 0.97 ** 2 * c * (1 - c)) / n) > crit
    assert (ni & inferior).mean() == pytest.approx(0.8, abs=0.004)
    assert fixed_verdict_requests(np.array([0.01, -0.01]), np.ones(2), np.ones(2), 0.2, 3, alpha) is None


def test_no_decision_names_the_leader_never_a_winner() -> None:
    v = verdict_of(made_up_result(REWARD))
    assert (v.decided, v.chosen, v.leader) == (False, None, "dlrm-int8")
    assert v.leader_p_chosen is not None and 0.5 < v.leader_p_chosen < 0.95
    assert v.headline() == (f"No decision yet: dlrm-int8 leads (P(best) {v.leader_p_chosen:.3f}, the rule asks for "
                            "0.95 evidence) after 10,000 requests")
    assert v.control == "dlrm" and v.requests == 10_000 and v.regret == 4.5
    int8, control = v.arms[2], v.arms[0]
    assert int8.reward == 0.125 and (int8.reward_low, int8.reward_high) == pytest.approx(wilson(750, 6000))
    assert int8.vs_control == pytest.approx(0.125 - 0.12)
    assert (int8.vs_control_low, int8.vs_control_high) == pytest.approx(newcombe(750, 6000, 360, 3000))
    assert control.vs_control is None and (int8.p99_ms, int8.bytes) == (6.0, 130)
    assert v.runner_up == "dlrm"  # the other arm with the highest mean reward
    assert v.fixed_ab_requests == fixed_ab_requests(0.125, 0.12, 3, 0.05)
    reasons = " ".join(v.reasons())
    assert "The rule: serve the variant with the most reward" in reasons and "Still lacking: dlrm-int8" in reasons
    assert "dlrm-int8: reward 0.1250 [" in reasons and "p99 6.00 ms" in reasons and "130 bytes" in reasons


def test_the_rule_chooses_the_cheapest_non_inferior_variant() -> None:
    v = verdict_of(made_up_result(COST, served=(30_000, 30_000, 30_000), reward=(12_000, 9_000, 12_100)))
    assert (v.decided, v.chosen) == (True, "dlrm-int8")  # logistic is cheaper but shown inferior
    assert v.headline() == "Serve dlrm-int8: the decision rule holds after 90,000 requests"
    assert [a.status for a in v.arms] == ["settled", "inferior", "chosen"]
    header, rows = v.table()
    assert rows[0][3] == "control" and rows[2][-1] == "chosen" and len(header) == len(rows[0])
    assert "Why: dlrm-int8 is non-inferior to dlrm" in " ".join(v.reasons())
    rate = 12_000 / 30_000
    assert v.fixed_ab_requests == max(fixed_noninferiority_requests(rate, 12_100 / 30_000, COST, 3),
                                      fixed_noninferiority_requests(rate, 0.3, COST, 3))


def test_round_trip_through_json() -> None:
    v = verdict_of(made_up_result(COST))
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.headline() == v.headline()
