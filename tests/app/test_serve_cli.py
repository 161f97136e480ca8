"""`recsys serve` from the command line: its flags reach the [serve] section, bad input is one line."""
from __future__ import annotations

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
