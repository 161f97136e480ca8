"""A finished run tells its verdict first: report.md, report.html (checked in a browser) and
results.json carry the same verdict, recomputed here from the served and reward counts."""
from __future__ import annotations

import json

import pytest

from simulator.verdict import Verdict, newcombe, wilson
from tests.simulator.test_report_html import render
from tests.simulator.test_verdict import simulated_power


@pytest.mark.slow
def test_the_run_report_starts_with_the_simulations_verdict(finished_run, tmp_path) -> None:
    _, run_dir = finished_run
    simulation = json.loads((run_dir / "simulation" / "results.json").read_text())
    verdict = Verdict.from_dict(simulation["verdict"])
    assert json.loads((run_dir / "metrics.json").read_text())["simulation"] == simulation
    assert verdict.requests == simulation["requests"] == 4096
    assert verdict.decided is simulation["decided"] and (verdict.chosen is None) is not verdict.decided
    assert not verdict.decided and "the rule asks for at least 10,000" in verdict.reason  # the default rule
    assert simulation["decision"]["leader"] == verdict.leader and simulation["checks"]["requests"][-1] == 4096

    rows = {v["variant"]: v for v in simulation["variants"]}
    served = {n: r["served"] for n, r in rows.items()}
    clicks = {n: r["mean_reward"] * r["served"] for n, r in rows.items()}
    for arm in verdict.arms:  # the intervals, from the counts results.json shows
        assert (arm.reward_low, arm.reward_high) == pytest.approx(wilson(clicks[arm.name], served[arm.name]))
        if arm.name != "dlrm":
            assert (arm.vs_control_low, arm.vs_control_high) == pytest.approx(
                newcombe(clicks[arm.name], served[arm.name], clicks["dlrm"], served["dlrm"]))
        assert arm.p99_ms == rows[arm.name]["latency_p99_ms"] and arm.p_chosen == rows[arm.name]["p_chosen"]
    # the fixed equal split for the whole verdict (the leader better than both others, non-inferior to dlrm
    # within 1%), checked by simulating that test at the observed rates: power 0.8 at its size, less at 0.9 of it
    names = [a.name for a in verdict.arms]
    rate = [clicks[n] / served[n] for n in names]
    a, c = names.index(verdict.leader), names.index("dlrm")
    tests = [(a, 1.0, j, 1.0) if rate[a] > rate[j] else (j, 1.0, a, 1.0) for j in range(3) if j != a]
    if a != c:
        tests.append((a, 1.0, c, 0.99) if rate[a] > 0.99 * rate[c] else (c, 0.99, a, 1.0))
    n = verdict.fixed_ab_requests
    assert n is not None and len(verdict.fixed_ab_statements) == len(tests)
    assert simulated_power(n // 3, rate, tests, 0.025) == pytest.approx(0.8, abs=0.01)
    assert simulated_power(int(0.9 * n) // 3, rate, tests, 0.025) < 0.78
    assert f"would need {n:,} requests for its whole verdict" in (run_dir / "report.md").read_text()
    assert verdict.regret == simulation["cumulative_regret"]

    headline = verdict.headline()
    assert (run_dir / "report.md").read_text().startswith(f"# `fr`: {headline}\n")
    assert (run_dir / "simulation" / "report.md").read_text().startswith(f"# Simulation: {headline}\n")
    images, broken, dom = render(run_dir / "report.html", tmp_path)
    # P(chosen) and shares, regret and latency, reward fronts, offline variant fronts, the variants plot,
    # learning curves
    assert (images, broken) == (6, 0)
    assert dom.index(headline) < dom.index("Compressed variants") < dom.index("Learning curves")
