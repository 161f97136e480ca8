"""Bad data given to the main job: one line naming the file (and line), exit 2, no run folder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(config: Path, *sets: str) -> subprocess.CompletedProcess:
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", str(config), *args],
                          capture_output=True, text=True, timeout=300)


def test_missing_movielens_folder(tiny_config, tmp_path: Path) -> None:
    proc = _run(tiny_config(), 'data.source="movielens"', f'data.movielens.path="{tmp_path / "nowhere"}"')
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and "nowhere" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_malformed_criteo_line_is_named(tiny_config, tmp_path: Path) -> None:
    good = "\t".join(["1"] + ["3"] * 13 + ["a1b2c3d4"] * 26)
    bad = "\t".join(["1"] + ["3"] * 12 + ["a1b2c3d4"] * 26)  # one integer column short
    tsv = tmp_path / "day.tsv"
    tsv.write_text("\n".join([good] * 50 + [bad] + [good] * 50) + "\n")
    proc = _run(tiny_config(), 'data.source="criteo"', f'data.criteo.train_paths=["{tsv}"]',
                "two_tower.enabled=false", "baselines.popularity=false")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{tsv}:51" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "runs" / "tiny").exists()  # found mid-run: the new run folder is removed


def test_a_binary_config_is_one_line_from_the_command(tmp_path: Path) -> None:
    """The process itself: status 2 and one line, no traceback (tests/reliability has the matrix in-process)."""
    config = tmp_path / "model.pt"
    config.write_bytes(bytes(range(256)))
    proc = subprocess.run([sys.executable, "-m", "recsys.app.cli", "check", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"error: {config}: not a TOML config (not UTF-8 text: byte 128)\n"
