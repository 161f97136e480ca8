"""The serving thread policy: how many torch threads one serving call runs on, the same for the
simulator, the service, the variants table and the benchmarks, so that their latencies agree.

A serving path's call runs on `serving_threads()` intra-op threads: SERVING_THREADS (one) unless a
block asks for another count (`serving_with`, as the latency measurement does when its config
names one); the process's own setting (`recsys run` trains on one thread per core) is restored
after each call. Why one: on the 2 shared cores here, a 2-thread op waits for both threads, and
with other processes on the cores one of them is often descheduled, so small calls pay for it in
full. Measured (one request of 100 candidates, quickstart DLRM, CPU time per call, load 3): p50
0.33 ms on one thread vs 0.38 ms on two; 4,096 rows: p50 6.5 ms vs 22 ms (min 3.9 vs 12.5 ms).
Requests are served in parallel by running calls side by side, one per core, not by splitting one.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

SERVING_THREADS = 1
_policy = [SERVING_THREADS]  # the innermost `serving_with` block's count last


def serving_threads() -> int:
    """Torch threads a serving call runs on now."""
    return _policy[-1]


@contextmanager
def serving_with(threads: int) -> Iterator[None]:
    """Serving calls in this block run on `threads` torch threads."""
    if threads < 1:
        raise ValueError(f"serving threads must be >= 1, got {threads}")
    _policy.append(threads)
    try:
        yield
    finally:
        _policy.pop()


class TorchThreads:
    """Torch's intra-op threads set to `threads` in a `with` block (changed and restored only when
    they differ). A class rather than a generator context manager: it is entered on every serving
    call, and a generator's costs about 2 us more (the serving module's own call is ~10 us)."""

    def __init__(self, threads: int) -> None:
        self.threads = self.before = threads

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        if self.before != self.threads:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        if self.before != self.threads:
            torch.set_num_threads(self.before)


def torch_threads(threads: int) -> TorchThreads:
    """Torch's intra-op threads set to `threads` in this block, the process's restored after it."""
    return TorchThreads(threads)
