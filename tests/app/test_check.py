"""`recsys check` validates the whole config before any work: policy names and typed options,
guardrail objects, distillation students. One line naming the full key, exit status 2."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from bandit import Policy
from recsys.app.cli import main
from recsys.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.toml"))
QUICKSTART = CONFIGS[0].with_name("quickstart.toml")
VARIANTS = tomllib.loads(QUICKSTART.read_text())["compress"]["variants"]
N = len(VARIANTS)  # the index of a variant added after them
FIRST_STUDENT = next((i for i, v in enumerate(VARIANTS) if "distill" in v.get("steps", ())), N)
TS = 'simulator.policy.name="ThompsonSampling"'  # named: the options below are its
CONTEXT_FREE = ", ".join(sorted(n for n, cls in Policy.registry.items() if not cls.contextual))

TRADEOFF = """
[simulator.policy.options]
n_draws = 2000
allocation = {{ floor = 0.02, control = 0, control_share = 0.2 }}

[simulator.policy.options.objective.slo]
threshold = 5.0
percentile = {percentile}

[simulator.policy.options.objective.noninferiority]
control = 0
margin = 0.002
"""

DISTILLED = """
[[compress.variants]]
name = "student"
steps = ["distill", "quantize"]
distill = {{ student = {student} }}
"""


def _check(capsys, config: Path, *sets: str) -> tuple[int, str, str]:
    status = main(["check", str(config), *[a for s in sets for a in ("--set", s)]])
    out, err = capsys.readouterr()
    return status, out, err


def _with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(QUICKSTART.read_text() + text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_passes_check(capsys, tmp_path: Path, path: Path) -> None:
    """Given its data files: the Criteo config names files that users bring (check refuses it until then)."""
    sets = []
    if tomllib.loads(path.read_text())["data"]["source"] == "criteo":
        tsv = tmp_path / "day_0.tsv"
        tsv.write_text("\t".join(["1"] + ["3"] * 13 + ["a1b2c3d4"] * 26) + "\n")
        assert _check(capsys, path)[2] == "error: data.criteo.train_paths[0]: no such file: data/criteo/day_0.tsv\n"
        sets = [f'data.criteo.train_paths=["{tsv}"]']
    status, out, err = _check(capsys, path, *sets)
    assert (status, err) == (0, "") and out.startswith("name = ")


@pytest.mark.parametrize("sets, message", [
    (['simulator.policy.name="ThompsonSampler"'],
     f"simulator.policy.name: unknown policy 'ThompsonSampler' (one of {CONTEXT_FREE})"),
    (['simulator.policy.name="LinUCB"'],
     "simulator.policy.name: LinUCB needs a context per request; the simulator picks variants with a "
     f"context-free policy (one of {CONTEXT_FREE})"),
    ([TS, "simulator.policy.options.gama=0.1"],
     "simulator.policy.options.gama: unknown option of ThompsonSampling (allowed: model, memory, allocation)"),
    (['simulator.policy.name="EXP3"', 'simulator.policy.options.gamma="high"'],
     "simulator.policy.options.gamma: expected float, got str 'high'"),
    (['simulator.policy.name="EXP3"', "simulator.policy.options.gamma=1.5"],
     "simulator.policy.options.gamma: must be in [1e-12, 1.0], got 1.5"),
    ([TS, "simulator.policy.options.seed=3"],
     "simulator.policy.options.seed: set by the caller, not an option of ThompsonSampling here"),
    (['simulator.policy.name="TradeoffTS"'],
     "simulator.policy.options.objective: required option of TradeoffTS is missing"),
    ([TS, "simulator.policy.options.memory={ gamma = 1.5 }"],
     "simulator.policy.options.memory.gamma: must be in [1e-09, 1.0], got 1.5"),
])
def test_bad_policy_is_one_line_naming_the_key(capsys, sets: list[str], message: str) -> None:
    assert _check(capsys, QUICKSTART, *sets) == (2, "", f"error: {message}\n")


def test_guardrail_tables_are_built_and_checked(capsys, tmp_path: Path) -> None:
    good = _with(tmp_path, TRADEOFF.format(percentile=0.99))
    status, out, _ = _check(capsys, good, 'simulator.policy.name="TradeoffTS"')
    assert status == 0
    assert tomllib.loads(out)["simulator"]["policy"]["options"]["objective"]["slo"] == {"threshold": 5.0,
                                                                                       "percentile": 0.99}
    bad = _with(tmp_path, TRADEOFF.format(percentile=1.5))
    assert _check(capsys, bad, 'simulator.policy.name="TradeoffTS"') == (
        2, "", "error: simulator.policy.options.objective.slo.percentile: must be in (0, 1), got 1.5\n")


@pytest.mark.parametrize("student, message", [
    ("{ embeding_dim = 8 }", f"compress.variants[{N}].distill.student.embeding_dim: unknown key (allowed: arch, "
                             "embedding_dim, dense_arch, over_arch, dcn_layers, dcn_rank, conversion_arch)"),
    ('{ embedding_dim = "8" }', f"compress.variants[{N}].distill.student.embedding_dim: expected int, got str '8'"),
    ("{ embedding_dim = 8 }", f"compress.variants[{N}].distill.student.dense_arch: last layer (16) must equal "
                              "embedding_dim (8): DLRM's dot interaction needs it"),
])
def test_bad_student_is_one_line_naming_the_key(capsys, tmp_path: Path, student: str, message: str) -> None:
    assert _check(capsys, _with(tmp_path, DISTILLED.format(student=student))) == (2, "", f"error: {message}\n")


def test_the_student_is_checked_against_the_teacher_that_compress_names(capsys, tmp_path: Path) -> None:
    config = _with(tmp_path, DISTILLED.format(student="{ dense_arch = [32, 16] }"))
    assert _check(capsys, config)[0] == 0
    assert _check(capsys, config, 'compress.teacher="two_tower"') == (
        2, "", f"error: compress.variants[{FIRST_STUDENT}].distill.student.dense_arch: unknown key (allowed: "
               "embedding_dim, tower, "
               "loss, logq_correction, num_negatives, temperature)\n")


def test_good_student_passes(capsys, tmp_path: Path) -> None:
    config = _with(tmp_path, DISTILLED.format(student="{ embedding_dim = 8, dense_arch = [32, 8] }"))
    status, out, _ = _check(capsys, config)
    assert status == 0
    assert tomllib.loads(out)["compress"]["variants"][N]["distill"]["student"] == {"embedding_dim": 8,
                                                                                  "dense_arch": [32, 8]}


def test_the_command_exits_with_status_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "recsys.app.cli", "check", str(QUICKSTART), "--set", TS, "--set",
                           "simulator.policy.options.gama=0.1"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: simulator.policy.options.gama: unknown option of ThompsonSampling "
                           "(allowed: model, memory, allocation)\n")


def test_options_that_need_the_arm_count_fail_in_one_line_when_the_simulation_builds_its_policy() -> None:
    from recsys.app.config import load_config
    from recsys.errors import ConfigError
    from simulator.experiment import make_policy

    config = load_config(QUICKSTART, {"simulator.policy.options.allocation": {"control": 5, "control_share": 0.2}})
    assert make_policy(config.simulator, 6, seed=0).allocation.control == 5
    with pytest.raises(ConfigError) as info:
        make_policy(config.simulator, 3, seed=0)
    assert str(info.value) == ("simulator.policy.options.allocation.control: arm 5 not in 0..2 "
                               "(the simulation has 3 variants)")


def test_the_memory_estimate_is_its_parts_and_refuses_one_byte_over(tmp_path: Path) -> None:
    """The tables of the largest model (rows x (dim + one Adagrad float) x 4 bytes, counted here
    from the feature sizes the config sets), the rows in memory and the world add up; the refusal
    comes exactly when they exceed what is available, naming the largest part's key."""
    from recsys.app.config import load_config
    from recsys.app.footprint import check_memory, estimate

    sets = {"data.synthetic.num_users": 50_000, "data.synthetic.num_items": 7_000, "train.device": "cpu",
            "dlrm.model.embedding_dim": 16, "dlrm.model.dense_arch": [16, 16], "simulator": None}
    config = load_config(QUICKSTART, {k: v for k, v in sets.items() if v is not None})
    config = dataclasses.replace(config, simulator=None, compress=None)
    rows = 50_000 + 8 + 32 + 7_000 + 16 + 64 + 4  # users, segments, user tags, items, categories, item tags, devices
    assert [(n.key, n.bytes) for n in estimate(config)] == [
        ("data.synthetic.num_rows", 200_000 * (4 + 4 * 4 + 8 + 8 + 8 + 8)),  # label, dense, user, item, device
        ("data.synthetic.num_users", 50_000 * (16 + 8 + 32 + 4 + 3) * 8),  # latent, segment and tag scores, tags
        ("data.synthetic.num_items", 7_000 * (16 + 16 + 64 + 4 + 3) * 8),
        ("data.synthetic.num_users", (rows - 4) * (32 + 1) * 4)]  # the two-tower's (dim 32 > DLRM's 16), no device
    total = sum(n.bytes for n in estimate(config))
    check_memory(config, available=total)
    with pytest.raises(ConfigError, match=r"^data.synthetic.num_users: the config needs at least .* more than the "
                                          r"1\.0 KiB available here$"):
        check_memory(config, available=1024)
    with pytest.raises(ConfigError):
        check_memory(config, available=total - 1)
    multitask = load_config(QUICKSTART.with_name("multitask.toml"))
    rows_in_memory = next(n for n in estimate(multitask) if n.key == "data.synthetic.num_rows")
    assert rows_in_memory.bytes == multitask.data.synthetic.num_rows * (4 + 4 + 4 * 4 + 8 + 8 + 8 + 8)  # + conversion


def test_overrides_set_nested_keys_and_refuse_a_key_under_a_value() -> None:
    from recsys.config_loading import apply_overrides

    raw = {"name": "x", "dlrm": {"optim": {"epochs": 2}}, "compress": {"variants": [{"name": "a"}]}}
    assert apply_overrides(raw, {"dlrm.optim.epochs": 3, "two_tower.model.tower": [8]}) == {
        "name": "x", "dlrm": {"optim": {"epochs": 3}}, "two_tower": {"model": {"tower": [8]}},
        "compress": {"variants": [{"name": "a"}]}}
    for key, message in (("name.x", "--set name.x: name holds 'x', not a table"),
                         ("dlrm.optim.epochs.x", "--set dlrm.optim.epochs.x: dlrm.optim.epochs holds 3, not a table"),
                         ("compress.variants.name", "compress.variants holds a list, not a table"),
                         ("dlrm..x", "empty part")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            apply_overrides(raw, {key: 1})
