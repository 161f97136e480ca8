"""Paired CPU-time comparison: the interval on a ratio tells apart what differs and only that."""
from __future__ import annotations

import numpy as np
import pytest

from recsys.serving.paired import Ratio, paired_cpu, ratio_of


def test_the_ratio_is_taken_within_rounds_so_a_drift_common_to_both_sides_cancels():
    rng = np.random.default_rng(0)
    drift = np.linspace(1.0, 3.0, 31)  # the machine slows down threefold over the run
    slow = drift * 2.0 * (1 + 0.01 * rng.standard_normal(31))
    fast = drift * (1 + 0.01 * rng.standard_normal(31))
    ratio = ratio_of(slow, fast)
    assert ratio.low < 2.0 < ratio.high and ratio.high - ratio.low < 0.05
    assert ratio.verdict() == "faster" and ratio_of(fast, slow).verdict() == "slower"
    # each side's own median would see the drift: 2 * median(drift) / median(drift) only by luck of the middle
    assert abs(ratio.median - 2.0) < 0.02


def test_two_samples_of_one_distribution_are_not_told_apart():
    rng = np.random.default_rng(1)
    a, b = 1 + 0.05 * rng.standard_normal(41), 1 + 0.05 * rng.standard_normal(41)
    ratio = ratio_of(a, b)
    assert ratio.low < 1.0 < ratio.high and ratio.verdict() == "same"
    assert str(Ratio(1.0, 0.9, 1.1)) == "1.000x [0.900, 1.100]"


def test_rounds_must_pair():
    with pytest.raises(ValueError, match="same rounds on both sides, got 3 and 2"):
        ratio_of([1.0, 1.0, 1.0], [1.0, 1.0])


def work(n: int) -> int:
    return sum(i * i for i in range(n))


def test_twice_the_work_measures_about_twice_the_cpu_time_and_every_runner_runs_every_round():
    seen: list[str] = []

    def runner(name: str, n: int):
        return lambda x: (seen.append(name), work(n * x))

    times = paired_cpu({"once": runner("once", 2_000), "twice": runner("twice", 4_000)}, [1, 1], rounds=9,
                       block_ms=2.0)
    assert {k: len(v) for k, v in times.items()} == {"once": 9, "twice": 9}
    ratio = ratio_of(times["twice"], times["once"])
    assert 1.4 < ratio.median < 2.8 and ratio.verdict() == "faster", ratio  # "once" is the faster
    assert seen.count("once") == seen.count("twice")  # the same block size for both
    timed = seen[6:]  # after the warm-up (two inputs each) and one call each to size the blocks
    blocks = [name for i, name in enumerate(timed) if i == 0 or timed[i - 1] != name]
    assert len(blocks) < 2 * 9  # a runner ran twice in a row somewhere: the order changed between rounds
