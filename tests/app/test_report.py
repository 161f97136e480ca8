"""A finished run tells its verdict first: report.md, report.html (checked in a browser) and
results.json carry the same verdict, recomputed here from the served and reward counts."""
from __future__ import annotations

import json

import pytest

from simulator.verdict import Verdict, fixed_ab_requests, newcombe, wilson
from tests.simulator.test_report_html import render


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
    leader, runner = verdict.leader, verdict.runner_up
    assert runner is not None and verdict.fixed_ab_requests == fixed_ab_requests(
        clicks[leader] / served[leader], clicks[runner] / served[runner], 3, 0.05)
    assert verdict.regret == simulation["cumulative_regret"]

    headline = verdict.headline()
    assert (run_dir / "report.md").read_text().startswith(f"# `fr`: {headline}\n")
    assert (run_dir / "simulation" / "report.md").read_text().startswith(f"# Simulation: {headline}\n")
    images, broken, dom = render(run_dir / "report.html", tmp_path)
    # P(chosen) and shares, regret and latency, reward fronts, offline variant fronts, the variants plot,
    # learning curves
    assert (images, broken) == (6, 0)
    assert dom.index(headline) < dom.index("Compressed variants") < dom.index("Learning curves")
