"""How users react to latency: abandonment before the slate renders, fewer clicks on a slow page,
and patience that waiting erodes across a session. Presets carry their sources.

- abandonment: P(abandon | L, patience p) = 1 - 2^(-L / (abandon_half_ms * p)); half of fully
  patient users leave at abandon_half_ms.
- click penalty: attraction is multiplied by (1 - penalty_per_100ms)^(L / 100 ms).
- patience: after a request of latency L, p <- p exp(-L / patience_ms); a user who abandons
  ends the session.

Presets (the abandonment curve and patience are the same in all: 3 s half-abandonment after
Google/SOASTA 2016, "The need for mobile speed": 53 % of mobile visits are abandoned when a page
takes over 3 s; patience_ms = 2 s is a modelling choice with no field source):
- google2009: -0.2 % per 100 ms (Brutlag, "Speed matters for Google web search", 2009: +100 ms
  to +400 ms of server delay cut searches per user by 0.2 % to 0.6 %).
- amazon_1pct: -1 % per 100 ms (Linden 2006, "every 100 ms of latency cost 1 % of sales"), a
  sensitivity preset.
- akamai_7pct: -7 % per 100 ms (Akamai 2017 online retail performance report: a 100 ms delay
  can cut conversion by up to 7 %), a sensitivity preset.
- none: latency has no effect; custom: the three numbers from the config.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import LatencyConfig

_HALF_ABANDON_MS, _PATIENCE_MS = 3000.0, 2000.0
PENALTY_PER_100MS = {"google2009": 0.002, "amazon_1pct": 0.01, "akamai_7pct": 0.07}


@dataclass(frozen=True)
class LatencyEffects:
    penalty_per_100ms: float = 0.0
    abandon_half_ms: float = float("inf")  # inf: nobody abandons
    patience_ms: float = float("inf")  # inf: patience never erodes

    @staticmethod
    def from_config(config: LatencyConfig) -> LatencyEffects:
        if config.effects == "none":
            return LatencyEffects()
        if config.effects == "custom":
            return LatencyEffects(config.penalty_per_100ms, config.abandon_half_ms, config.patience_ms)
        return LatencyEffects(PENALTY_PER_100MS[config.effects], _HALF_ABANDON_MS, _PATIENCE_MS)

    def abandon_probability(self, latency_ms: np.ndarray, patience: np.ndarray) -> np.ndarray:
        """P(the user leaves before the slate renders), [n]."""
        return -np.expm1(-np.log(2.0) * latency_ms / (self.abandon_half_ms * patience))

    def click_multiplier(self, latency_ms: np.ndarray) -> np.ndarray:
        """Factor in (0, 1] on attraction, [n]."""
        return np.exp(np.log1p(-self.penalty_per_100ms) * latency_ms / 100.0)
