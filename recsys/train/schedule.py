"""The dense optimizer's learning-rate schedule: linear warm-up, then cosine or step decay.

The learning rate is a closed-form function of the optimizer step (the number of steps already
taken), so a resumed run, whose checkpoint holds that step, continues on exactly the same curve.
The fused sparse (embedding) optimizer keeps its own constant rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from recsys.errors import require


@dataclass(frozen=True)
class LRSchedule:
    """Step s (0-based) of `warmup_steps` > 0 warm-up steps runs at base * (s + 1) / warmup_steps;
    after it, t = s - warmup_steps steps into the decay:
    cosine: base * (min_ratio + (1 - min_ratio) * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2);
    step: base * decay_rate ** floor(t / decay_steps); none: base."""

    warmup_steps: int = 0
    decay: Literal["none", "cosine", "step"] = "none"
    decay_steps: int = 0  # cosine: its length (then it stays at min_ratio); step: steps between cuts
    decay_rate: float = 0.1  # step: the factor of each cut
    min_ratio: float = 0.0  # cosine: the floor, as a fraction of the base rate

    def __post_init__(self) -> None:
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.decay == "none" or self.decay_steps >= 1, "decay_steps",
                f"must be >= 1 with decay = {self.decay!r}")
        require(0.0 < self.decay_rate <= 1.0, "decay_rate", "must be in (0, 1]")
        require(0.0 <= self.min_ratio <= 1.0, "min_ratio", "must be in [0, 1]")

    def lr(self, step: int, base: float) -> float:
        """The learning rate of optimizer step `step` (0 = the first), for base rate `base`."""
        if step < self.warmup_steps:
            return base * (step + 1) / self.warmup_steps
        t = step - self.warmup_steps
        if self.decay == "cosine":
            progress = min(t, self.decay_steps) / self.decay_steps
            return base * (self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
        if self.decay == "step":
            return base * self.decay_rate ** (t // self.decay_steps)
        return base
