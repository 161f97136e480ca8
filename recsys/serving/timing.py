"""The one way a call is timed on its serving device: CUDA events on a GPU, perf_counter on CPU."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def timed(call: Callable[[Any], Any], x: Any, device: torch.device | None = None) -> tuple[Any, float]:
    """Run call(x); return its output and the milliseconds it took on `device` (CPU if None)."""
    if device is not None and device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = call(x)
        end.record()
        torch.cuda.synchronize(device)
        return out, start.elapsed_time(end)
    t0 = time.perf_counter()
    out = call(x)
    return out, (time.perf_counter() - t0) * 1e3
