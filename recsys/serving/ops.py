"""The serving path's C++ ops, one extension: `torch.ops.recsys.request_ids` (recsys.serving.ids_op)
and `torch.ops.recsys.candidate_dots` (recsys.serving.dots_op), CPU kernels both.

`load()` compiles them with torch.utils.cpp_extension (ninja and the host's C++ compiler) by
`make setup` or on first use, and caches the build under TORCH_EXTENSIONS_DIR (default
~/.cache/torch_extensions), one folder per Python environment; later processes load it from the
cache. The first build took 22-35 s quiet, 95 s (45 s CPU) on a loaded 2-core machine.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.cpp_extension import load_inline

from recsys.errors import UserError
from recsys.serving import dots_op, ids_op


def build_directory(prefix: str = sys.prefix) -> str:
    """The ops' build folder for this Python environment and torch: under TORCH_EXTENSIONS_DIR
    (default ~/.cache/torch_extensions), one per environment, since a build from another venv
    (other include paths) would otherwise replace it, and every process of either would rebuild."""
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    key = hashlib.sha256(f"{prefix}\0{torch.__version__}".encode()).hexdigest()[:12]
    folder = root / f"recsys_ops-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


@functools.cache
def load() -> None:
    """Compile the ops (first call on a machine) or load them from the cache, registering them in
    this process. A host without a C++ compiler or ninja gets one line saying so (UserError).
    Processes build one at a time under a file lock the kernel drops when its holder dies, so the
    `lock` file cpp_extension leaves behind a killed build (it would make every later load wait
    forever) is removed before loading."""
    folder = Path(build_directory())
    try:
        with open(folder / "recsys.lock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            (folder / "lock").unlink(missing_ok=True)
            load_inline(name="recsys_ops", cpp_sources=[ids_op.SOURCE, dots_op.SOURCE], is_python_module=False,
                        extra_cflags=["-O3"], build_directory=str(folder))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"the serving path's C++ ops (recsys/serving/ops.py) did not build: they need a C++ "
                        f"compiler (g++) and the ninja package ({first})") from None
