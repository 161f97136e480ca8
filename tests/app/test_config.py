"""Config validation: every bad value is a one-line error naming its key, before anything is written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recsys.app.config import ExperimentConfig, load_config
from recsys.config_loading import from_dict
from recsys.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path: Path) -> None:
    config = load_config(path)
    assert from_dict(ExperimentConfig, config.to_dict()) == config


@pytest.mark.parametrize("key,value,message", [
    ("dlrm.optim.batch_size", "x", "dlrm.optim.batch_size: expected int, got str"),
    ("dlrm.optim.batch_size", 0, "dlrm.optim.batch_size: must be >= 1"),
    ("dlrm.optim.lr_dense", True, "dlrm.optim.lr_dense: expected float, got bool"),
    ("dlrm.model.arch", "resnet", "dlrm.model.arch: 'resnet' is not one of"),
    ("dlrm.model.over_arch", [1], "dlrm.model.over_arch: needs at least two positive layers (TorchRec's OverArch) "
     "and a last layer of 1"),
    ("dlrm.model.dense_arch", [64, 8], "dlrm.model.dense_arch: last layer (8) must equal embedding_dim"),
    ("dlrm.colour", 1, "dlrm.colour: unknown key"),
    ("data.source", "kaggle", "data.source: 'kaggle' is not one of"),
    ("data.test_fraction", 1.5, "data.test_fraction: must be in [0, 1)"),
    ("data.synthetic.base_ctr", 0.0, "data.synthetic.base_ctr: must be in (0, 1)"),
    ("train.sharding.default", "diagonal", "train.sharding.default: 'diagonal' is not one of"),
    ("two_tower.model.temperature", -1.0, "two_tower.model.temperature: must be > 0"),
    ("name", "a/b", "name: must be letters"),
    ("name", "..", "name: must be letters, digits, '-', '_' or '.', not only dots"),
    ("name", ".", "name: must be letters, digits, '-', '_' or '.', not only dots"),
    ("name", "", "name: must be letters"),
])
def test_bad_values_name_their_key(key: str, value, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS[0].with_name("quickstart.toml"), {key: value})
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_fingerprint_tracks_the_sections_a_checkpoint_depends_on() -> None:
    base = load_config(CONFIGS[0].with_name("quickstart.toml"))
    other_lr = load_config(CONFIGS[0].with_name("quickstart.toml"), {"dlrm.optim.lr_dense": 0.5})
    other_tt = load_config(CONFIGS[0].with_name("quickstart.toml"), {"two_tower.optim.epochs": 1})
    assert base.fingerprint("dlrm") != other_lr.fingerprint("dlrm")
    assert base.fingerprint("dlrm") == other_tt.fingerprint("dlrm")


def test_cli_reports_bad_config_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'name = "bad"\nout_dir = "{tmp_path / "runs"}"\n[dlrm.optim]\nepochs = "three"\n')
    proc = subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: dlrm.optim.epochs: expected int, got str 'three'"
    assert not (tmp_path / "runs").exists()


def test_cli_rejects_missing_and_malformed_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    for path, expected in [(tmp_path / "nope.toml", "no such config file"), (broken, "broken.toml")]:
        proc = subprocess.run([sys.executable, "-m", "recsys.app.cli", "check", str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and expected in proc.stderr and proc.stderr.count("\n") == 1


def test_help_is_fast_and_imports_no_torch() -> None:
    code = "import sys, recsys.app.cli as c; c._parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
