"""`recsys simulate` serves the world the run's models were trained in: `simulator.seed` changes
the traffic only; models or variants from another world, or a listed variant that is missing, stop
it in one line before anything is written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bandit import DecisionRule
from recsys.app.cli import main
from recsys.app.config import load_config
from recsys.app.simulate import simulate
from recsys.data.synthetic import world_for
from recsys.errors import ConfigError
from simulator.environment import Environment
from simulator.logs import read_impressions
from tests.conftest import refused

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"


@pytest.mark.parametrize("overrides, message", [
    ({"decision.margin": 2.0}, "decision.margin: must be in [0.0, 1.0], got 2.0"),
    ({"decision.objective": "fast"}, "decision.objective: 'fast' is not one of 'reward', 'cost'"),
    ({"decision.control": "fp32"}, "decision.control: no variant 'fp32' in this simulation (one of dlrm, logistic, "
                                   "dlrm-int8, dlrm-pruned-int4, dlrm-student-int8)"),
    ({"decision.min_requests": 10, "decision.max_requests": 5}, "decision.max_requests: 5 is below min_requests = 10"),
    ({"decision.prob_best": 0.9}, "decision.prob_best: unknown key (allowed: objective, cost_by, slo_p99_ms, control, "
                                  "margin, margin_kind, confidence, min_requests, max_requests)"),
    ({"simulator.stopping.prob_best": 0.9}, "simulator.stopping.prob_best: moved to decision.confidence"),
])
def test_the_decision_rule_is_checked_in_full_naming_the_key(overrides, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, overrides)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_the_quickstart_rule_and_its_default_policy() -> None:
    config = load_config(QUICKSTART)
    assert config.decision == DecisionRule(objective="cost", cost_by="bytes", control="dlrm", margin=0.04,
                                           min_requests=8192, max_requests=61_440)
    assert config.simulator is not None and config.simulator.policy.name == "DecisionTS"
    assert config.simulator.num_requests is None  # the rule's max_requests


def _refused(capsys, config: Path, *sets: str, root: Path) -> str:
    """`recsys simulate CONFIG --set ...` in process (its subprocess refusal: test_compress_job.py's
    corrupt variant): status 2, one "error: " line, nothing under root changed; the line."""
    err = refused(capsys, ["simulate", str(config), *[a for s in sets for a in ("--set", s)]], root)
    assert err.startswith("error: "), err
    return err


@pytest.mark.slow
@pytest.mark.parametrize("sets, folder, key", [
    (["seed=1"], "dlrm/model", "seed"),
    (["data.synthetic.num_rows=30000"], "dlrm/model", "data"),
])
def test_models_from_another_world_are_refused_in_one_line(capsys, finished_run, sets, folder, key) -> None:
    config, run_dir = finished_run
    err = _refused(capsys, config, *sets, root=run_dir)
    assert f"{run_dir / folder}: trained with a different `{key}` than this config" in err


@pytest.mark.slow
def test_a_variant_from_another_world_is_refused(capsys, run_copy) -> None:
    config, run_dir = run_copy
    manifest_path = run_dir / "variants" / "int8" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["teacher"]["experiment"]["data"]["synthetic"]["num_items"] = 999
    manifest_path.write_text(json.dumps(manifest))
    err = _refused(capsys, config, root=run_dir)
    assert f"{run_dir / 'variants' / 'int8'}: trained with a different `data` than this config" in err


@pytest.mark.slow
def test_a_listed_variant_that_is_missing_is_named(capsys, run_copy) -> None:
    config, run_dir = run_copy
    shutil.rmtree(run_dir / "variants" / "int8")
    err = _refused(capsys, config, root=run_dir)
    assert f"{run_dir / 'variants' / 'int8'}: variant 'int8' of compress.variants is not stored" in err


@pytest.mark.slow
def test_simulator_seed_changes_the_traffic_not_the_world(run_copy, monkeypatch) -> None:
    path, _ = run_copy
    built = []
    original = Environment.build

    def spy(config, world, seed, **kwargs):
        built.append((world, seed))
        return original(config, world, seed, **kwargs)

    monkeypatch.setattr(Environment, "build", staticmethod(spy))
    runs = {s: simulate(load_config(path, {"simulator.seed": s})) for s in (0, 1)}
    again = simulate(load_config(path, {"simulator.seed": 1}))

    config = load_config(path)
    truth = world_for(config.data, config.seed)  # the world of the top-level seed (3), both times
    assert [seed for _, seed in built] == [0, 1, 1]
    for world, _ in built:
        assert np.array_equal(world.user_latent, truth.user_latent)
        assert np.array_equal(world.item_latent, truth.item_latent)
    assert again == runs[1]  # the same seed, the same traffic, the same result
    served = {s: [v["served"] for v in r["variants"]] for s, r in runs.items()}
    assert served[0] != served[1] and runs[0]["clicks"] != runs[1]["clicks"]


@pytest.mark.slow
def test_the_log_holds_the_named_variants_impressions_with_propensities(capsys, run_copy) -> None:
    config, run_dir = run_copy
    eps, candidates = 0.3, 20
    capsys.readouterr()
    status = main(["simulate", str(config), "--set", "simulator.log.requests=2048", "--set",
                   f"simulator.log.epsilon={eps}", "--set", 'simulator.log.variant="dlrm-int8"'])
    out, err = capsys.readouterr()
    assert status == 0, err[-3000:]
    summary = json.loads((run_dir / "simulation" / "results.json").read_text())["log"]
    log = read_impressions(run_dir / "simulation" / "log")
    assert summary == {"variant": "dlrm-int8", "requests": 2048, "epsilon": eps, "impressions": len(log),
                       "clicks": int(log.click.sum()), "folder": "log"}
    assert len(log) % 5 == 0 and len(log) > 0.9 * 2048 * 5  # whole slates of 5, few abandoned requests
    # an item the variant would have shown there: eps / C + 1 - eps; any other: eps / C
    assert set(np.round(log.propensity, 6)) <= {round(eps / candidates, 6), round(eps / candidates + 1 - eps, 6)}
    greedy = np.isclose(log.propensity, eps / candidates + 1 - eps).mean()
    assert greedy == pytest.approx(1 - eps, abs=0.05)  # mostly the variant's own ranking
    assert "logged" in out and "dlrm-int8" in out


@pytest.mark.slow
def test_an_unknown_logging_variant_is_refused_before_anything_runs(capsys, finished_run) -> None:
    config, run_dir = finished_run
    err = _refused(capsys, config, "simulator.log.requests=100", 'simulator.log.variant="int8"', root=run_dir)
    assert "simulator.log.variant: no variant 'int8' in this simulation (one of dlrm, logistic, dlrm-int8)" in err
    assert not (run_dir / "simulation" / "log").exists()


@pytest.mark.slow
def test_a_simulation_that_fails_while_writing_leaves_the_previous_one_whole(run_copy, monkeypatch) -> None:
    """simulation/ is replaced as one folder: a failure (or a kill) after results.json leaves the old run's files."""
    import simulator.report

    path, run_dir = run_copy
    folder = run_dir / "simulation"
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    original = simulator.report.write_simulation_report

    def fails_after_the_results(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt  # as a Ctrl-C between the report and the variants plot would

    monkeypatch.setattr(simulator.report, "write_simulation_report", fails_after_the_results)
    with pytest.raises(KeyboardInterrupt):
        simulate(load_config(path, {"simulator.seed": 7}))
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before and not list(run_dir.glob(".simulation*"))  # no staged folder left behind


def test_the_simulation_times_variants_as_the_variants_table_does(run_copy, monkeypatch) -> None:
    """One latency story: the simulator's fitted latencies use the config's compress.latency."""
    path, _ = run_copy
    seen = []
    original = Environment.build

    def spy(config, world, seed, **kwargs):
        seen.append(kwargs.get("timing"))
        return original(config, world, seed, **kwargs)

    monkeypatch.setattr(Environment, "build", staticmethod(spy))
    config = load_config(path, {"compress.latency.repeats": 2, "compress.latency.iters": 3})
    simulate(config)
    assert config.compress is not None and seen and all(t == config.compress.latency for t in seen)
    assert seen[0].repeats == 2  # not the defaults
