"""A run killed at any write (checkpoint shards, RNG, meta.json, the rename, the pruning, the
history) reruns to exactly the uninterrupted run's result: the same history, the same tested
epoch, and the weights of that epoch (the ones that are scored and exported). The kill is
simulated by raising at each write point in turn; the best-epoch marker travels inside the
checkpoint, so there is no point between "saved" and "marked" to be killed at.
A fresh start removes the old run's checkpoints instead of being pruned by them."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from recsys.train import checkpoint, loop
from recsys.train.config import TrainConfig
from tests.train.conftest import weights

WRITES = [(checkpoint, "_write_shards"), (checkpoint, "_write_rng"), (checkpoint, "write_text"),
          (checkpoint, "replace_folder"), (checkpoint, "remove_folder"), (loop, "write_text")]


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the code under test catches it."""


def _hook_writes(monkeypatch, kill_at: int | None) -> list[str]:
    """Count every write the run makes; raise Killed just before write number `kill_at` (1-based)."""
    calls: list[str] = []
    for module, name in WRITES:
        real = getattr(module, name, None)
        if real is None:
            continue

        def hooked(*args, _real=real, _name=f"{module.__name__}.{name}", **kwargs):
            calls.append(_name)
            if len(calls) == kill_at:
                raise Killed(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, hooked)
    return calls


def _outcome(result) -> dict:
    history = [{k: v for k, v in r.items() if k != "samples_per_s"} for r in result.history]
    return {"history": history, "test": result.test, "tested": result.tested_epoch}


def _kill_everywhere(train, tmp_path: Path, monkeypatch) -> None:
    with monkeypatch.context() as m:
        writes = _hook_writes(m, None)
        reference = train(tmp_path / "reference")
    expected, expected_weights = _outcome(reference), weights(reference)
    val = [r["val_auc"] for r in reference.history]
    assert expected["tested"] == val.index(max(val)) + 1 < len(val)  # the best epoch is restored, not the last
    assert {"checkpoint._write_shards", "loop.write_text"} <= {w.split("train.")[-1] for w in writes}
    for k in range(1, len(writes) + 1):
        out = tmp_path / f"killed-at-{k}"
        with monkeypatch.context() as m, pytest.raises(Killed):
            _hook_writes(m, k)
            train(out)
        rerun = train(out)
        assert _outcome(rerun) == expected, f"killed before write {k} ({writes[k - 1]})"
        got = weights(rerun)
        assert all(torch.equal(got[n], expected_weights[n]) for n in expected_weights), f"weights, kill {k}"


def test_a_kill_at_any_epoch_end_write_reruns_to_the_same_result(trainer, tmp_path: Path, monkeypatch) -> None:
    _kill_everywhere(lambda out: trainer(out, epochs=2), tmp_path, monkeypatch)


@pytest.mark.slow
def test_a_kill_at_any_write_with_mid_epoch_checkpoints_reruns_to_the_same_result(trainer, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """Three epochs, a checkpoint every 10 steps: the best epoch (2) is pruned unless kept as best."""
    mid = dataclasses.replace(trainer, config=TrainConfig(device="cpu", checkpoint_every=10))
    _kill_everywhere(lambda out: mid(out, epochs=3, lr_dense=0.2, lr_sparse=1.0), tmp_path, monkeypatch)


def test_a_missing_best_checkpoint_warns_and_tests_the_last_epoch(trainer, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    first = trainer(out, epochs=2)
    assert first.tested_epoch == 1
    best = out / "checkpoints" / f"step-{first.history[0]['step']:08d}"
    shutil.rmtree(best)
    again = trainer(out, epochs=2)
    assert again.tested_epoch == 2 and again.history == first.history
    err = capsys.readouterr().err
    assert f"warning: {best}: missing; the best epoch (1) cannot be restored, so the last (2)" in err
    last_epoch = dataclasses.replace(trainer, config=TrainConfig(device="cpu", select_best=False))
    last = last_epoch(tmp_path / "last", epochs=2)
    assert again.test == last.test != first.test  # epoch 2's weights were scored, as reported


def test_fresh_start_removes_the_old_checkpoints(trainer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer(out, epochs=3)  # checkpoints up to step 48
    fresh = trainer(out, epochs=1, resume=False)  # step 16 must not be pruned by the old run's 32 and 48
    steps = sorted(json.loads((p / "meta.json").read_text())["loop"]["step"]
                   for p in (out / "checkpoints").glob("step-*"))
    assert steps == [16]
    resumed = trainer(out, epochs=1)  # resumes the fresh run's checkpoint, not the old run's
    assert _outcome(resumed) == _outcome(fresh)



@pytest.mark.parametrize("stop", [KeyboardInterrupt(), OSError(28, "No space left on device", "shard")])
def test_what_stops_a_checkpoint_write_reaches_the_caller_unwrapped(trainer, tmp_path: Path, monkeypatch,
                                                                   stop: BaseException) -> None:
    """DCP wraps a rank's failure in CheckpointException (a BaseException the CLI does not know):
    a Ctrl-C or a full disk while shards are written must arrive as itself, so the CLI says one line."""
    def failing_save(*args, **kwargs):
        raise stop

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(type(stop)) as caught:
        trainer(tmp_path / "run", epochs=1)
    assert (type(caught.value), caught.value.args) == (type(stop), stop.args)  # DCP hands back a copy
