"""Per-arm sufficient statistics (count, sum, sum of squares) under a chosen memory of the past.

Stationary keeps everything; Discounted multiplies the past by gamma per observation (drifting
rewards, Raj & Kalyani 2017); SlidingWindow keeps only the last `size` observations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.checks import in_range, positive_int
from bandit.state import serializable


@serializable
@dataclass(frozen=True)
class Stationary:
    """Remember every observation with equal weight."""


@serializable
@dataclass(frozen=True)
class Discounted:
    """Weight an observation by gamma ** (observations that arrived after it)."""

    gamma: float = 0.999

    def __post_init__(self) -> None:
        in_range(self.gamma, "memory.gamma", 1e-9, 1.0)


@serializable
@dataclass(frozen=True)
class SlidingWindow:
    """Remember only the `size` most recent observations (all arms together)."""

    size: int = 10_000

    def __post_init__(self) -> None:
        positive_int(self.size, "memory.size")


Memory = Stationary | Discounted | SlidingWindow


class ArmStats:
    """Weighted count, sum and sum of squares of observed values, per arm."""

    def __init__(self, n_arms: int, memory: Memory) -> None:
        self.memory = memory
        self.n: np.ndarray = np.zeros(n_arms)
        self.s: np.ndarray = np.zeros(n_arms)
        self.ss: np.ndarray = np.zeros(n_arms)
        size = memory.size if isinstance(memory, SlidingWindow) else 0
        self.window_arms = np.full(size, -1, dtype=np.int64)
        self.window_values = np.zeros(size)
        self.window_next = np.zeros(1, dtype=np.int64)

    def add(self, arms: np.ndarray, values: np.ndarray) -> None:
        """Fold a batch in, in arrival order (arms and values already validated)."""
        if isinstance(self.memory, SlidingWindow):
            self._add_window(arms, values)
            return
        weights = np.ones(len(arms))
        if isinstance(self.memory, Discounted):
            weights = self.memory.gamma ** np.arange(len(arms) - 1, -1, -1, dtype=np.float64)
            decay = self.memory.gamma ** len(arms)
            self.n *= decay
            self.s *= decay
            self.ss *= decay
        k = len(self.n)
        self.n += np.bincount(arms, weights, minlength=k)
        self.s += np.bincount(arms, weights * values, minlength=k)
        self.ss += np.bincount(arms, weights * values * values, minlength=k)

    def _add_window(self, arms: np.ndarray, values: np.ndarray) -> None:
        size = len(self.window_arms)
        arms, values = arms[-size:], values[-size:]
        slots = (self.window_next[0] + np.arange(len(arms))) % size
        self.window_arms[slots] = arms
        self.window_values[slots] = values
        self.window_next[0] = (self.window_next[0] + len(arms)) % size
        kept = self.window_arms >= 0
        a, v, k = self.window_arms[kept], self.window_values[kept], len(self.n)
        self.n = np.bincount(a, minlength=k).astype(np.float64)
        self.s = np.bincount(a, v, minlength=k)
        self.ss = np.bincount(a, v * v, minlength=k)

    def mean(self, default: float = 0.0) -> np.ndarray:
        """Per-arm mean, `default` where nothing was observed."""
        return np.where(self.n > 0, self.s / np.maximum(self.n, 1e-300), default)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that make up the state."""
        return {"n": self.n, "s": self.s, "ss": self.ss, "window_arms": self.window_arms,
                "window_values": self.window_values, "window_next": self.window_next}

    def assign(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the state with already-validated arrays."""
        for name, value in arrays.items():
            setattr(self, name, value)
