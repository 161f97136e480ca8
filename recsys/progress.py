"""Progress bars that show on a terminal and stay quiet in pipes, logs and CI."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def bar(total: int | None, desc: str, enabled: bool = True, unit: str = "batch") -> tqdm:
    """A tqdm bar (rate and ETA) when `enabled` and on a terminal; otherwise a silent one."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not (enabled and interactive()),
                dynamic_ncols=True, leave=False)
