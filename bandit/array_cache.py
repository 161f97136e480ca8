"""Arrays that take seconds to compute and never change for the same code: computed once per
machine, kept on disk, loaded by every later process.

`cached_array(name, key, compute, shape)` returns `compute()`'s float64 array of `shape`, from
`<cache folder>/<name>-<digest of key>.npy` when that file holds one, else computed and written
there (under a temporary name, renamed into place: a reader never sees half a file). The key must
name everything the array depends on (the computing code's source, its parameters); numpy's
version is added to it. A file that cannot be read as the array (truncated, not .npy, another
shape) is computed again and replaced; a folder that cannot be written costs only the time. Files
are read with `allow_pickle=False`: nothing in them is executed.

The folder is RECSYS_CACHE_DIR, else $XDG_CACHE_HOME/recsys, else ~/.cache/recsys.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_folder() -> Path:
    """Where cached arrays live (see the module's docstring)."""
    if os.environ.get("RECSYS_CACHE_DIR"):
        return Path(os.environ["RECSYS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recsys"


def cached_array(name: str, key: str, compute: Callable[[], np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """`compute()`'s float64 array of `shape`, read from the cache folder when a file for (`name`,
    `key`) holds one."""
    digest = hashlib.sha256(f"{key}\0numpy {np.__version__}".encode()).hexdigest()[:16]
    path = cache_folder() / f"{name}-{digest}.npy"
    stored = _read(path)
    if stored is not None and stored.shape == shape and stored.dtype == np.float64:
        return stored
    array = np.asarray(compute(), dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name}: computed an array of shape {array.shape}, not {shape}")
    _write(path, array)
    return array


def _read(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # absent, unreadable, not a whole .npy file, or pickled objects
        return None


def _write(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:  # a read-only or full disk, or no folder there: the array is still returned
        with contextlib.suppress(OSError):
            tmp.unlink()
