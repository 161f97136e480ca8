"""Bad files through the command line: each case exits with status 2, prints one line on stderr
naming the file, runs no code from a run folder and changes nothing on disk.

Cases: a damaged exported teacher given to `recsys compress` (flipped bit, pickled weights with a
forged checksum, broken model.json), every training checkpoint damaged when `recsys run --force`
resumes (flipped shard, code in .metadata with forged checksums), an infinite learning rate, and
a diverging one."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, cli

pytestmark = pytest.mark.slow


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file's checksum (the run lock excluded: it names the last process that held it)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _pickled_model(model: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1), "note": io.StringIO("a pickled object")}, buf)
    (model / "model.pt").write_bytes(buf.getvalue())
    info = json.loads((model / "model.json").read_text())
    info["model_sha256"] = _sha(model / "model.pt")
    (model / "model.json").write_text(json.dumps(info))


def _drop_kind(model: Path) -> None:
    info = json.loads((model / "model.json").read_text())
    del info["kind"]
    (model / "model.json").write_text(json.dumps(info))


TEACHER = {  # damage -> (file named, what the line says)
    "flipped model.pt": (lambda m: _flip(m / "model.pt"), "model.pt", "checksum does not match"),
    "pickled model.pt": (_pickled_model, "model.pt", "not a weights-only file (it holds pickled objects); refused"),
    "model.json not JSON": (lambda m: (m / "model.json").write_text("{"), "model.json", "not readable JSON"),
    "model.json without kind": (_drop_kind, "model.json", "'kind' is missing"),
}


def _one_line_and_unchanged(proc, before: dict[str, str], run_dir: Path, named: Path, says: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {named}: "), proc.stderr
    assert says in proc.stderr and "weights_only=False" not in proc.stderr
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("case", TEACHER)
def test_compress_refuses_a_damaged_teacher_and_keeps_the_variants(run_copy, case: str) -> None:
    config, run_dir = run_copy
    model = run_dir / "dlrm" / "model"
    damage, name, says = TEACHER[case]
    damage(model)
    before = _snapshot(run_dir)
    _one_line_and_unchanged(cli("compress", str(config)), before, run_dir, model / name, says)


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _forge(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"][name] = _sha(folder / name)
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("case", ["flipped shard", "code in .metadata"])
def test_resume_refuses_when_no_checkpoint_is_intact(run_copy, tmp_path: Path, case: str) -> None:
    config, run_dir = run_copy
    marker = tmp_path / "pwned"
    checkpoints = sorted((run_dir / "dlrm" / "checkpoints").glob("step-*"))
    assert len(checkpoints) >= 2
    for folder in checkpoints:
        if case == "flipped shard":
            _flip(folder / "__0_0.distcp")
        else:
            _forge(folder, ".metadata", pickle.dumps(RunsCode(marker)))
    before = _snapshot(run_dir)
    proc = cli("run", str(config), "--force")
    named = checkpoints[-1] / ("__0_0.distcp" if case == "flipped shard" else ".metadata")
    says = "checksum does not match" if case == "flipped shard" else "refused"
    _one_line_and_unchanged(proc, before, run_dir, named, says)
    assert "no earlier checkpoint is intact (rerun with --fresh to start over)" in proc.stderr
    assert not marker.exists()


def test_an_infinite_learning_rate_is_refused_before_training(run_copy) -> None:
    config, run_dir = run_copy
    before = _snapshot(run_dir)
    proc = cli("run", str(config), "--force", "--set", "dlrm.optim.lr_dense=inf")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "lr_dense: must be a finite number in (0, 1e+30]" in proc.stderr
    assert _snapshot(run_dir) == before


def test_a_diverging_model_is_one_line_and_leaves_no_run(tmp_path: Path) -> None:
    config = tmp_path / "div.toml"
    config.write_text(TINY.format(name="div", out=tmp_path / "runs", cache=tmp_path / "cache"))
    proc = cli("run", str(config), "--set", "two_tower.enabled=false", "--set", "dlrm.optim.lr_dense=1e30",
               "--set", "dlrm.optim.lr_sparse=1e30")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.fullmatch(r"error: dlrm: loss is (nan|inf|-inf) at step \d+ \(epoch 1\); lower dlrm\.optim\.lr_dense "
                        r"or lr_sparse\n", proc.stderr), proc.stderr
    assert not (tmp_path / "runs" / "div").exists()
