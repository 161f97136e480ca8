"""recsys.atomic: a folder is replaced so that the old or the new one is complete on disk at every
step, a failure between the renames puts the old one back, and a crash there is repaired."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys import atomic


def _folder(path: Path, text: str) -> None:
    path.mkdir(parents=True)
    (path / "a.txt").write_text(text)
    (path / "b.txt").write_text(text * 2)


def _content(path: Path) -> str | None:
    """'old' or 'new' when `path` is a complete folder written by _folder, else None."""
    try:
        a, b = (path / "a.txt").read_text(), (path / "b.txt").read_text()
    except OSError:
        return None
    return a if b == a * 2 else None


def _names(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_staged_folder_replaces_the_old_folder_and_leaves_nothing_else(tmp_path: Path) -> None:
    final = tmp_path / "v"
    _folder(final, "old")
    with atomic.staged_folder(final) as staged:
        (staged / "a.txt").write_text("new")
        (staged / "b.txt").write_text("newnew")
    assert _content(final) == "new" and _names(tmp_path) == ["v"]


def test_an_error_in_the_block_keeps_the_old_folder(tmp_path: Path) -> None:
    final = tmp_path / "v"
    _folder(final, "old")
    with pytest.raises(RuntimeError), atomic.staged_folder(final) as staged:
        (staged / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert _content(final) == "old" and _names(tmp_path) == ["v"]


def test_old_or_new_is_complete_on_disk_at_every_rename(tmp_path: Path, monkeypatch) -> None:
    final, staged = tmp_path / "v", tmp_path / "staged"
    _folder(final, "old")
    _folder(staged, "new")
    seen, real_replace = [], os.replace

    def old_kept_until_new_is_in() -> bool:
        return _content(final) == "new" or "old" in {_content(p) for p in tmp_path.iterdir()}

    def watched(src, dst):
        seen.append(old_kept_until_new_is_in())
        real_replace(src, dst)
        seen.append(old_kept_until_new_is_in())

    monkeypatch.setattr(atomic.os, "replace", watched)
    atomic.replace_folder(staged, final)
    assert seen and all(seen)
    assert _content(final) == "new" and _names(tmp_path) == ["v"]


def test_a_failure_between_the_renames_puts_the_old_folder_back(tmp_path: Path, monkeypatch) -> None:
    final = tmp_path / "v"
    _folder(final, "old")
    calls, real_replace = [], os.replace

    def second_fails(src, dst):
        calls.append(Path(src).name)
        if len(calls) == 2:
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", second_fails)
    with pytest.raises(OSError, match="disk gone"), atomic.staged_folder(final) as staged:
        (staged / "a.txt").write_text("new")
        (staged / "b.txt").write_text("newnew")
    assert calls == ["v", ".v.tmp", ".v.old"]  # aside, in (fails), back
    assert _content(final) == "old" and _names(tmp_path) == ["v"]


def test_a_crash_between_the_renames_is_repaired_by_the_next_replacement(tmp_path: Path) -> None:
    final = tmp_path / "v"
    _folder(final, "old")
    os.replace(final, tmp_path / ".v.old")  # what a crash after the first rename leaves
    assert _content(tmp_path / ".v.old") == "old"
    with pytest.raises(RuntimeError), atomic.staged_folder(final):
        raise RuntimeError("this write fails too")
    assert _names(tmp_path) == [".v.old"]
    atomic.replace_folder(_staged(tmp_path), final)
    assert _content(final) == "new" and _names(tmp_path) == ["v"]


def _staged(parent: Path) -> Path:
    staged = parent / "staged"
    _folder(staged, "new")
    return staged


def test_remove_folder_takes_the_folder_away_in_one_step(tmp_path: Path, monkeypatch) -> None:
    """Killed mid-delete, the folder is already gone from its name (never half there); the next
    removal of that name clears what the kill left."""
    final = tmp_path / "v"
    _folder(final, "old")
    real_rmtree = atomic.shutil.rmtree

    def killed_mid_delete(path, ignore_errors=False):
        if Path(path).exists():
            (Path(path) / "a.txt").unlink()
            raise KeyboardInterrupt("killed")
        real_rmtree(path, ignore_errors=ignore_errors)

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(atomic.shutil, "rmtree", killed_mid_delete)
        atomic.remove_folder(final)
    assert not final.exists() and _names(tmp_path) == [".v.deleted"]
    atomic.remove_folder(final)
    assert _names(tmp_path) == []
