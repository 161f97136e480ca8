"""The latency measurement: warm-up, round-robin interleaving, ordered percentiles, QPS."""
from __future__ import annotations

import time

import torch

from compression.config import TimingConfig
from compression.latency import measure


def test_interleaved_and_ordered():
    calls: list[str] = []

    def runner(name: str, seconds: float):
        def run(batch):
            calls.append(name)
            time.sleep(seconds)
        return run

    threads = torch.get_num_threads()
    config = TimingConfig(batch_sizes=(8,), repeats=3, iters=4, warmup=2, threads=1)
    out = measure({"fast": runner("fast", 0.001), "slow": runner("slow", 0.004)}, {8: [None]}, config)
    assert calls[:4] == ["fast", "fast", "slow", "slow"]  # warm-up first
    timed = calls[4:]
    assert timed[:4] == ["fast"] * 4 and timed[4:8] == ["slow"] * 4 and timed[8:12] == ["slow"] * 4  # rotation
    fast, slow = out["fast"][8], out["slow"][8]
    assert fast.p50_ms <= fast.p95_ms <= fast.p99_ms and fast.p50_ms < slow.p50_ms
    assert abs(fast.qps - 8 / (fast.p50_ms / 1000)) < 1e-6 and fast.threads == 1
    assert torch.get_num_threads() == threads  # restored
