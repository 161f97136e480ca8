"""Atomic writes: a reader (or a crash) never sees a half-written file or folder.

Everything is written under a temporary name in the destination's folder and renamed into
place, which POSIX makes atomic on one filesystem. A folder cannot be renamed over a non-empty
one, so `replace_folder` renames the old folder aside (`.<name>.old`), renames the new one in,
and only then deletes the old: at every step the old or the new folder is complete on disk, and
the next replacement puts back an old folder that a crash left aside. `remove_folder` renames a
folder aside before deleting it, so no reader ever sees it half deleted.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `final` when the block succeeds."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        replace_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(staged: Path, final: Path) -> None:
    """Move the complete folder `staged` to `final`, replacing any folder there (see above)."""
    staged, final = Path(staged), Path(final)
    aside = final.with_name(f".{final.name}.old")
    if aside.exists() and not final.exists():  # a crash between the two renames of an earlier call
        os.replace(aside, final)
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        os.replace(final, aside)
    try:
        os.replace(staged, final)
    except BaseException:
        if aside.exists():
            os.replace(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def remove_folder(path: Path) -> None:
    """Delete the folder `path` as one step: renamed to a hidden name, then deleted (see above)."""
    path = Path(path)
    trash = path.with_name(f".{path.name}.deleted")
    shutil.rmtree(trash, ignore_errors=True)  # a crash mid-delete of an earlier call
    if path.exists():
        os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
