"""The simulator's one error type: bad input or a misbehaving variant, named in one line."""
from __future__ import annotations

from recsys.errors import UserError


class SimulationError(UserError):
    """Probabilities outside [0, 1], negative latencies, bad scores, K > C; the run stops cleanly."""
