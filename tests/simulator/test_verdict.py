"""The verdict: intervals against published values, the fixed A/B test's size against closed forms,
a brute-force scan and simulated tests,
the chosen variant only when the decision rule holds, and a round trip through results.json."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from bandit import DecisionRule
from simulator.verdict import Verdict, fixed_verdict_requests, newcombe, verdict_of, verdict_statements, wilson
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


REWARD = DecisionRule(min_requests=0)
COST = DecisionRule(objective="cost", cost_by="bytes", margin=0.05, min_requests=0)
Z = 1.959964 + 0.841621  # one-sided 0.025, power 0.8


def joint_power(per_arm: np.ndarray, gaps, coef, leaf, centre_var: float, alpha: float) -> np.ndarray:
    """The joint power of the statements at each per-arm count, by conditioning on the shared arm's
    estimate (given it the statements are independent) and 200-node Gauss-Hermite quadrature over
    it: another route than the multivariate normal orthant fixed_verdict_requests takes."""
    x, w = np.polynomial.hermite_e.hermegauss(200)
    n = np.asarray(per_arm, np.float64)[:, None, None]
    gaps, coef, leaf = (np.asarray(a, np.float64)[None, None, :] for a in (gaps, coef, leaf))
    sd = np.sqrt((coef ** 2 * centre_var + leaf) / n)  # of each statement's estimate
    centre = coef * x[None, :, None] * np.sqrt(centre_var / n)  # the shared arm's share of each estimate
    each = norm.cdf((gaps + centre - norm.ppf(1 - alpha) * sd) / np.sqrt(leaf / n))
    return (each.prod(axis=2) * w[None, :]).sum(axis=1) / w.sum()


def test_one_statement_is_the_closed_form() -> None:
    # control 0.40, arm 0.40, margin 5% relative: gap 0.02; 3 arms: one-sided 0.025 each; power 80%
    var = 0.4 * 0.6 * 0.95 ** 2 + 0.4 * 0.6
    per_arm = math.ceil(Z * Z * var / 0.02 ** 2)
    s = verdict_statements(COST, ("dlrm", "logistic", "int8"), np.array([0.4, 0.3, 0.4]), np.array([3, 1, 2]),
                           np.array([True, False, True]), "int8")  # logistic breaks the SLO: no statement
    assert s is not None and s.words == ("int8 non-inferior to dlrm",) and s.requests() == 3 * per_arm
    inferior = verdict_statements(COST, ("dlrm", "int8", "int4"), np.array([0.4, 0.36, 0.2]), np.array([2, 1, 3]),
                                  np.ones(3, bool), "dlrm")  # int4 costs more than the answer: no statement
    assert inferior is not None and inferior.words == ("int8 inferior to dlrm",)
    assert inferior.requests() == 3 * math.ceil(Z * Z * (0.4 * 0.6 * 0.95 ** 2 + 0.36 * 0.64) / 0.02 ** 2)
    on_margin = verdict_statements(COST, ("dlrm", "int8"), np.array([0.4, 0.38]), np.array([2, 1]),
                                   np.ones(2, bool), "int8")
    assert on_margin is None  # no gap to detect


@pytest.mark.parametrize("gaps, coef, leaf, centre_var", [
    ([0.0121, 0.0154], [-0.97, 0.97], [0.2402, 0.2346], 0.24),  # the cheaper scenario: non-inferior, inferior
    ([0.005, 0.025, 0.0062], [1.0, 1.0, 1.0], [0.1056, 0.09, 0.99 ** 2 * 0.1056], 0.1094),  # best of 3 + NI
    ([0.01, 0.03], [1.0, -1.0], [0.2, 0.25], 0.21),  # a statement of each sign, one much easier
])
def test_fixed_verdict_sample_size_is_the_least_with_joint_power(gaps, coef, leaf, centre_var) -> None:
    """The joint power by quadrature reaches 0.8 at the returned per-arm count, not one below (it
    grows with the count), and falls short at 0.9 of it. Statement j: coef[j] x arm 0 + arm j + 1."""
    alpha, arms = 0.05 / 3, len(gaps) + 1
    matrix = np.column_stack([coef, np.eye(len(gaps))])
    total = fixed_verdict_requests(np.array(gaps), matrix, np.array([centre_var, *leaf]), alpha)
    assert total is not None and total % arms == 0
    n = total // arms
    power = joint_power(np.array([n, n - 1, int(0.9 * n)]), gaps, coef, leaf, centre_var, alpha)
    assert power[0] >= 0.8 > power[1] and power[2] < 0.78
    alone = max(fixed_verdict_requests(np.array(gaps[j:j + 1]), matrix[j:j + 1], np.array([centre_var, *leaf]),
                                       alpha) or 0 for j in range(len(gaps)))
    assert total >= alone  # each statement at power 0.8 alone is a lower bound
    assert fixed_verdict_requests(np.array([0.01, -0.01]), np.ones((2, 3)), np.ones(3), alpha) is None


def test_fixed_verdict_sample_size_gives_its_power_by_simulation() -> None:
    """Two statements sharing the control (0.401 non-inferior, 0.376 inferior, margin 3%): the
    equal-split test sized for verdict power 0.8 shows both in 80% of simulated tests."""
    rule = DecisionRule(objective="cost", cost_by="bytes", margin=0.03, min_requests=0)
    s = verdict_statements(rule, ("dlrm", "int8", "int4", "logistic"), np.array([0.40, 0.401, 0.376, 0.33]),
                           np.array([4, 2, 1, 1]), np.array([True, True, True, False]), "int8")
    assert s is not None and s.words == ("int8 non-inferior to dlrm", "int4 inferior to dlrm")
    total, alone = s.requests(), s.per_statement()
    assert total is not None and alone is not None and total > alone  # both at once take more than either alone
    tests, rates = [(1, 1.0, 0, 0.97), (0, 0.97, 2, 1.0)], (0.40, 0.401, 0.376)
    assert simulated_power(total // 4, rates, tests, 0.05 / 3) == pytest.approx(0.8, abs=0.004)
    assert simulated_power(alone // 4, rates, tests, 0.05 / 3) < 0.75


def simulated_power(per_arm: int, rates, tests: list[tuple[int, float, int, float]], alpha: float,
                    runs: int = 100_000) -> float:
    """The share of `runs` simulated equal-split tests (binomial counts, `per_arm` requests each)
    in which every one-sided z test (i, a, j, b): "a rate_i - b rate_j > 0", unpooled variance, passes."""
    rng = np.random.default_rng(0)
    p = [rng.binomial(per_arm, r, runs) / per_arm for r in rates]
    crit = norm.ppf(1 - alpha)
    ok = np.ones(runs, bool)
    for i, a, j, b in tests:
        ok &= (a * p[i] - b * p[j]) / np.sqrt((a * a * p[i] * (1 - p[i]) + b * b * p[j] * (1 - p[j])) / per_arm) > crit
    return float(ok.mean())


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
    # the whole verdict at once: dlrm-int8 better than dlrm and than logistic, non-inferior to dlrm (1%)
    assert v.fixed_ab_statements == ("dlrm-int8 better than dlrm", "dlrm-int8 better than logistic",
                                     "dlrm-int8 non-inferior to dlrm")
    n = v.fixed_ab_requests
    assert n is not None and n % 3 == 0
    tests = [(2, 1.0, 0, 1.0), (2, 1.0, 1, 1.0), (2, 1.0, 0, 0.99)]
    assert simulated_power(n // 3, (0.12, 0.1, 0.125), tests, 0.025) == pytest.approx(0.8, abs=0.005)
    assert simulated_power(int(0.9 * n) // 3, (0.12, 0.1, 0.125), tests, 0.025) < 0.78
    reasons = " ".join(v.reasons())
    assert (f"would need {n:,} requests for its whole verdict (3 statements: dlrm-int8 better than dlrm, "
            "dlrm-int8 better than logistic, dlrm-int8 non-inferior to dlrm; each a one-sided z test at level "
            "0.05 / 2) to hold at once with power 0.8") in reasons
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
    assert v.fixed_ab_statements == ("dlrm-int8 non-inferior to dlrm", "logistic inferior to dlrm")
    n, rates, tests = v.fixed_ab_requests, (0.4, 0.3, 12_100 / 30_000), [(2, 1.0, 0, 0.95), (0, 0.95, 1, 1.0)]
    assert n is not None and simulated_power(n // 3, rates, tests, 0.025) == pytest.approx(0.8, abs=0.005)
    assert simulated_power(int(0.9 * n) // 3, rates, tests, 0.025) < 0.78


def test_round_trip_through_json() -> None:
    v = verdict_of(made_up_result(COST))
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.headline() == v.headline()
