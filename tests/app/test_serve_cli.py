"""`recsys serve` from the command line: its flags reach the [serve] section, bad input is one line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys.app.cli import main

QUICKSTART = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml")


@pytest.mark.parametrize("extra, message", [
    ([], "no exported dlrm model; run `recsys run` first"),
    (["--port", "70000"], "port: expected 1 to 65535, got 70000"),
    (["--set", "serve.max_events=0"], "serve.max_events: must be >= 1"),
])
def test_serve_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    code = main(["serve", QUICKSTART, "--set", f'out_dir="{tmp_path}"', *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.iterdir())


def test_a_second_service_of_the_same_run_refuses_in_one_line(tmp_path, capsys):
    """runs/<name>/service/.lock is held by the run's service (here by this test): a second
    `recsys serve` refuses before loading anything, naming the holder."""
    from recsys.app.lock import run_lock

    run_dir = tmp_path / "quickstart"
    run_dir.mkdir()
    with run_lock(run_dir / "service"):
        code = main(["serve", QUICKSTART, "--set", f'out_dir="{tmp_path}"'])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{run_dir / 'service'}: in use by another recsys command (pid {os.getpid()})" in err
    assert not any(run_dir.iterdir())  # the lock folder goes with the holder's lock


@pytest.mark.parametrize("store, expected", [
    ("postgresql://u:pw@db.example:5432/exp", "postgresql://u:pw@db.example:5432/exp"),  # a URL, unchanged
    ("/abs/x.db", "/abs/x.db"),
    ("x.db", "RUN/x.db"),
])
def test_the_store_is_a_url_or_a_file_of_the_run(tmp_path, store, expected):
    from recsys.app.config import load_config
    from recsys.app.serve import ServeConfig, store_location

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml",
                         {"out_dir": str(tmp_path)})
    assert store_location(config, ServeConfig(store=store)) == expected.replace("RUN", str(config.run_dir))
