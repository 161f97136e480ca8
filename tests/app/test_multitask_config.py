"""`recsys check` on the multi-task keys: a conversion label and a conversion head go together, only
the DLRM reads the label, and the label comes from the synthetic world; each a one-line error."""
from __future__ import annotations

from pathlib import Path

import pytest

from recsys.app.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MULTITASK, QUICKSTART = CONFIGS / "multitask.toml", CONFIGS / "quickstart.toml"


@pytest.mark.parametrize("config, sets, message", [
    (QUICKSTART, ["dlrm.model.conversion_arch=[16, 1]"],
     "dlrm.model.conversion_arch: the conversion head needs conversion labels; set data.synthetic.conversion_rate"),
    (MULTITASK, ["dlrm.model.conversion_arch=[16, 2]"],
     "dlrm.model.conversion_arch: needs at least two positive layers (TorchRec's OverArch) and a last layer of 1"),
    (MULTITASK, ["data.synthetic.conversion_rate=1.0"], "data.synthetic.conversion_rate: must be in (0, 1)"),
    (MULTITASK, ["two_tower.enabled=true", "baselines.popularity=true"],
     "data.synthetic.conversion_rate: only the DLRM reads conversion labels; "
     "set two_tower.enabled and baselines.popularity to false"),
    (MULTITASK, ['data.source="movielens"'],
     "data.synthetic.conversion_rate: conversions are drawn by the synthetic world; data.source is 'movielens'"),
])
def test_bad_multitask_keys_are_one_line(capsys, config: Path, sets: list[str], message: str) -> None:
    status = main(["check", str(config), *[a for s in sets for a in ("--set", s)]])
    out, err = capsys.readouterr()
    assert (status, out, err) == (2, "", f"error: {message}\n")


@pytest.mark.parametrize("old, new, message", [
    ("conversion_arch = [64, 32, 1]\n", "", "data.synthetic.conversion_rate: the conversion label is learned by a "
     "DLRM's conversion head; set dlrm.model.conversion_arch (dlrm enabled)"),
])
def test_edited_config_is_refused_in_one_line(capsys, tmp_path: Path, old: str, new: str, message: str) -> None:
    text = MULTITASK.read_text()
    assert old in text
    (tmp_path / "c.toml").write_text(text.replace(old, new, 1))
    assert main(["check", str(tmp_path / "c.toml")]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
