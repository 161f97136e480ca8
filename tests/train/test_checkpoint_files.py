"""Every checkpoint file is verified before it is read: a modified `.metadata` whose pickle would run
code is refused before it runs; a flipped, missing or extra file is one CheckpointError naming it;
the newest checkpoint being corrupt falls back to the previous one (with a warning); a pickled
(not weights-only) file is refused without advising weights_only=False."""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import CheckpointException

from recsys.errors import CheckpointError
from recsys.integrity import sha256
from recsys.train.dcp_reader import SafeFileSystemReader
from tests.train.conftest import weights

FILES = [".metadata", "__0_0.distcp", "rng-0.pt"]


class RunsCode:
    """Unpickling this runs a shell command (what an attacker would put in `.metadata`)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def two_epochs(trainer, tmp_path_factory) -> tuple[Path, dict]:
    """A finished two-epoch run (checkpoints step-16 and step-32) and its final weights."""
    out = tmp_path_factory.mktemp("two") / "run"
    result = trainer(out, epochs=2)
    return out, {"weights": weights(result), "test": result.test, "tested": result.tested_epoch}


@pytest.fixture
def run(two_epochs, tmp_path: Path) -> Path:
    """A private copy of the two-epoch run."""
    return Path(shutil.copytree(two_epochs[0], tmp_path / "run"))


def _newest(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step-*"))[-1]


def _only_newest(run: Path) -> Path:
    """Delete every checkpoint but the newest; returns it."""
    newest = _newest(run)
    for old in (run / "checkpoints").glob("step-*"):
        if old != newest:
            shutil.rmtree(old)
    return newest


def _rehash(folder: Path) -> None:
    """Record the files' current checksums, as an attacker who edits meta.json would."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"] = {name: sha256(folder / name) for name in meta["files"]}
    (folder / "meta.json").write_text(json.dumps(meta))


def _flip(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_checkpoint_records_the_checksum_of_every_file(run: Path) -> None:
    folder = _newest(run)
    meta = json.loads((folder / "meta.json").read_text())
    assert sorted(meta["files"]) == FILES == sorted(p.name for p in folder.iterdir() if p.name != "meta.json")
    assert all(meta["files"][n] == sha256(folder / n) for n in FILES)


@pytest.mark.parametrize("rehashed", [False, True], ids=["checksum-stale", "checksum-forged"])
def test_metadata_that_would_run_code_is_refused_before_it_runs(trainer, run: Path, tmp_path: Path,
                                                                 rehashed: bool) -> None:
    marker = tmp_path / "pwned"
    folder = _only_newest(run)
    (folder / ".metadata").write_bytes(pickle.dumps(RunsCode(marker)))
    if rehashed:
        _rehash(folder)
    with pytest.raises(CheckpointError) as e:
        trainer(run, epochs=2)
    message = str(e.value)
    assert str(folder / ".metadata") in message and "\n" not in message
    assert ("system" in message and "refused" in message) if rehashed else "checksum does not match" in message
    assert not marker.exists()


def test_the_dcp_reader_itself_refuses_code_in_metadata(two_epochs, run: Path, tmp_path: Path) -> None:
    """Even when handed straight to DCP (no checksum check first), `.metadata` runs nothing."""
    marker = tmp_path / "pwned"
    folder = _newest(run)
    good = {"model": {k: torch.zeros_like(v) for k, v in two_epochs[1]["weights"].items()}}
    (folder / ".metadata").write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(CheckpointException):  # a BaseException, not an Exception
        dcp.load(good, storage_reader=SafeFileSystemReader(folder))
    assert not marker.exists()


def test_the_safe_reader_loads_what_dcp_wrote(two_epochs, run: Path) -> None:
    best_step = json.loads((_newest(run) / "meta.json").read_text())["loop"]["best_step"]
    folder = run / "checkpoints" / f"step-{best_step:08d}"  # the weights the run ended with
    expected = {k: v for k, v in two_epochs[1]["weights"].items() if "embedding_bags" not in k}
    state = {"model": {k: torch.zeros_like(v) for k, v in expected.items()}}
    dcp.load(state, storage_reader=SafeFileSystemReader(folder))
    assert all(torch.equal(state["model"][k], expected[k]) for k in expected)
    assert any(v.abs().sum() > 0 for v in expected.values())


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_a_damaged_file_of_the_only_checkpoint_is_named(trainer, run: Path, name: str, damage: str) -> None:
    folder = _only_newest(run)
    path = folder / name
    if damage == "flipped":
        _flip(path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()
    with pytest.raises(CheckpointError) as e:
        trainer(run, epochs=2)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and "--fresh" in message
    assert ("missing" if damage == "missing" else "checksum does not match") in message


def test_a_file_not_written_with_the_checkpoint_is_refused(trainer, run: Path) -> None:
    folder = _only_newest(run)
    (folder / "__0_1.distcp").write_bytes(b"planted")
    with pytest.raises(CheckpointError, match=r"__0_1.distcp: not written with the checkpoint; refused"):
        trainer(run, epochs=2)


@pytest.mark.parametrize("meta", ["{not json", "[]", '{"loop": {}}', '{"files": [], "loop": {}}'],
                         ids=["bad-json", "not-object", "no-files", "files-not-object"])
def test_a_broken_meta_json_is_named(trainer, run: Path, meta: str) -> None:
    folder = _only_newest(run)
    (folder / "meta.json").write_text(meta)
    with pytest.raises(CheckpointError) as e:
        trainer(run, epochs=2)
    assert str(e.value).startswith(f"{folder / 'meta.json'}: ")


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(trainer, two_epochs, run: Path, capsys) -> None:
    bad = _newest(run) / "__0_0.distcp"
    _flip(bad)
    result = trainer(run, epochs=2)  # resumes after epoch 1, trains epoch 2 again
    err = capsys.readouterr().err
    assert f"warning: {bad}: checksum does not match" in err and "resuming from the previous checkpoint, step-" in err
    assert result.test == two_epochs[1]["test"] and result.tested_epoch == two_epochs[1]["tested"]
    assert all(torch.equal(v, two_epochs[1]["weights"][k]) for k, v in weights(result).items())
    assert json.loads((_newest(run) / "meta.json").read_text())["files"]["__0_0.distcp"] == sha256(bad)


def test_shards_that_match_forged_checksums_but_do_not_load_are_a_checkpoint_error(trainer, run: Path) -> None:
    """DCP's CheckpointException (a BaseException) becomes one CheckpointError line."""
    folder = _only_newest(run)
    shard = folder / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:1000])
    _rehash(folder)
    with pytest.raises(CheckpointError) as e:
        trainer(run, epochs=2)
    assert str(e.value).startswith(f"{folder}: its files match their checksums but do not load")
    assert "\n" not in str(e.value)


def test_a_pickled_rng_file_is_refused_without_advising_weights_only_false(trainer, run: Path) -> None:
    folder = _only_newest(run)
    buf = io.BytesIO()
    torch.save({"state": torch.get_rng_state(), "note": io.StringIO("pickled object")}, buf)
    (folder / "rng-0.pt").write_bytes(buf.getvalue())
    _rehash(folder)
    with pytest.raises(CheckpointError) as e:
        trainer(run, epochs=2)
    message = str(e.value)
    assert message.startswith(f"{folder / 'rng-0.pt'}: not a weights-only file (it holds pickled objects); refused")
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


@pytest.mark.parametrize("damage", ["missing", "bad line", "short"])
def test_a_damaged_history_is_named_not_silently_shortened(trainer, run: Path, damage: str) -> None:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()
    if damage == "missing":
        path.unlink()
    else:
        path.write_text(lines[0] + "\n" + ("{oops\n" if damage == "bad line" else ""))
    with pytest.raises(CheckpointError) as e:
        trainer(run, epochs=2)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and message.endswith("rerun with --fresh to start over")
