"""One command at a time per run folder: `recsys run`, `compress` and `simulate` hold an exclusive
flock on runs/<name>/.lock for their whole life; a second one refuses in one line naming the
holder's pid. The kernel releases the lock when the holder exits, however it ends (a SIGKILL too),
so a stale lock file never blocks anyone. The lock file stays (unlinking it would let two
processes lock two different files); a run folder this command created and left holding only the
lock file is removed again, so a refused first run leaves nothing behind.
"""
from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys.errors import UserError

LOCK = ".lock"


class RunInUse(UserError):
    """Another process holds the run folder's lock."""


@contextmanager
def run_lock(run_dir: Path, create: bool = True) -> Iterator[None]:
    """Hold runs/<name>/.lock for the block; RunInUse if another process holds it. `create` False:
    a run folder that does not exist is left alone (nothing in it to protect), without a lock."""
    run_dir = Path(run_dir)
    if not create and not run_dir.is_dir():
        yield
        return
    made = _missing_parents(run_dir)
    fd = -1
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUse(f"{run_dir}: in use by another recsys command ({_holder(fd)}); "
                           "wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        _remove_if_only_lock(run_dir, made)
        if fd >= 0:
            os.close(fd)


def _holder(fd: int) -> str:
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def _missing_parents(run_dir: Path) -> list[Path]:
    """The folders from run_dir up that do not exist yet, deepest first."""
    out = []
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            break
        out.append(folder)
    return out


def _remove_if_only_lock(run_dir: Path, made: list[Path]) -> None:
    """Undo this command's folders when they hold nothing but the lock file."""
    if not made:
        return
    try:
        left = os.listdir(run_dir)
    except OSError:  # not there: a failed first training removed it, or it could not be made
        left = []
    if left not in ([], [LOCK]):
        return
    if left:
        (run_dir / LOCK).unlink()
    for folder in made:
        try:
            folder.rmdir()
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENAMETOOLONG):  # removed already, or never made
                continue
            return  # something else was put there meanwhile
