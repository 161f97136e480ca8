"""Building the serving path's C++ ops (recsys.serving.ops): a failed build is one line, each Python
environment builds in a folder of its own, a killed build's lock does not hang the next load."""
from __future__ import annotations

from pathlib import Path

import pytest


def test_a_failed_build_is_one_line_naming_what_it_needs(monkeypatch) -> None:
    import recsys.serving.ops as ops
    from recsys.errors import UserError

    def no_compiler(**kwargs):
        raise RuntimeError("Error building extension 'recsys_ops'\n[1/2] c++ ... not found\nninja: build stopped")

    monkeypatch.setattr(ops, "load_inline", no_compiler)
    with pytest.raises(UserError) as e:
        ops.load.__wrapped__()  # the cached load() already ran in this process
    assert str(e.value) == ("the serving path's C++ ops (recsys/serving/ops.py) did not build: they need a C++ "
                            "compiler (g++) and the ninja package (Error building extension 'recsys_ops')")


def test_each_python_environment_builds_in_a_folder_of_its_own(monkeypatch, tmp_path) -> None:
    """Two venvs sharing one build folder replace each other's build (other include paths), so each
    process of either would rebuild; TORCH_EXTENSIONS_DIR is honoured."""
    from recsys.serving.ops import build_directory

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    a, b = build_directory("/envs/a"), build_directory("/envs/b")
    assert a != b and a == build_directory("/envs/a")
    assert {p.parent for p in map(Path, (a, b))} == {tmp_path} and all(Path(p).is_dir() for p in (a, b))


def test_the_lock_a_killed_build_left_does_not_hang_the_next_load(monkeypatch, tmp_path) -> None:
    """cpp_extension's `lock` file outlives a SIGKILLed build and made every later load wait forever."""
    import recsys.serving.ops as ops

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    folder = Path(ops.build_directory())
    (folder / "lock").touch()  # as a build killed between its writes leaves it
    seen = []
    monkeypatch.setattr(ops, "load_inline", lambda **kw: seen.append((kw["build_directory"],
                                                                          (folder / "lock").exists())))
    ops.load.__wrapped__()
    assert seen == [(str(folder), False)]
