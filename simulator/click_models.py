"""Click models behind one batched interface, each with its closed-form click probabilities.

Every model maps attraction a [n, K] (the probability of clicking an item once examined, slate
order, top first) to clicks [n, K], driven by two uniform draws per position (u, v) that the
caller shares across variants (common random numbers), and states the exact per-position click
probabilities and P(any click) that those draws realise on average:

- PBM (position-based): click_k iff u_k < e_k a_k.            P(click_k) = e_k a_k
- Cascade (Craswell et al. 2008): scan down, click the first attractive item, stop.
                                                            P(click_k) = a_k prod_{j<k} (1 - a_j)
- DCM (dependent click model, Guo et al. 2009): scan down; after a click go on with
  probability lambda, after a skip always.  P(click_k) = a_k E_k, E_{k+1} = E_k (1 - a_k (1 - lambda))
- Choice (multinomial logit with a no-click option): weight w_k = e_k a_k / (1 - a_k) (so a lone
  item with e = 1 against w_0 = 1 is clicked with probability a), one click at most.
                                                            P(click_k) = w_k / (w_0 + sum_j w_j)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from simulator.errors import SimulationError


class ClickModel(Protocol):
    @property
    def name(self) -> str:
        """The config's name of the model."""

    def click_probabilities(self, attraction: np.ndarray) -> np.ndarray:
        """Exact P(click) per position, [n, K]."""

    def p_any_click(self, attraction: np.ndarray) -> np.ndarray:
        """Exact P(at least one click) per request, [n]."""

    def sample(self, attraction: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Clicks, bool [n, K], from uniforms u, v [n, K]."""


def check_probabilities(x: np.ndarray, what: str) -> np.ndarray:
    """`x` unchanged, or SimulationError naming the first value outside [0, 1]. The test is two
    reductions (min and max are NaN if any value is); the culprit is searched only on failure."""
    if np.size(x) and not (np.min(x) >= 0.0 and np.max(x) <= 1.0):
        bad = ~((x >= 0.0) & (x <= 1.0))
        raise SimulationError(f"{what}: probability {x.flat[np.argmax(bad)]!r} is outside [0, 1]")
    return x


@dataclass(frozen=True)
class PositionBased:
    examination: np.ndarray  # [K]
    name: str = "pbm"

    def __post_init__(self) -> None:
        check_probabilities(np.asarray(self.examination), "click model: examination")

    def click_probabilities(self, attraction: np.ndarray) -> np.ndarray:
        return self.examination[: attraction.shape[1]] * attraction

    def p_any_click(self, attraction: np.ndarray) -> np.ndarray:
        return _any_of(self.click_probabilities(attraction))

    def sample(self, attraction: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u < self.click_probabilities(attraction)


@dataclass(frozen=True)
class Cascade:
    name: str = "cascade"

    def click_probabilities(self, attraction: np.ndarray) -> np.ndarray:
        return attraction * _exclusive_cumprod(1.0 - attraction)

    def p_any_click(self, attraction: np.ndarray) -> np.ndarray:
        return _any_of(attraction)

    def sample(self, attraction: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        attractive = u < attraction
        return attractive & (np.cumsum(attractive, axis=1) == 1)


@dataclass(frozen=True)
class DependentClick:
    continuation: float  # lambda: probability of examining on after a click
    name: str = "dcm"

    def __post_init__(self) -> None:
        check_probabilities(np.asarray(self.continuation), "click model: continuation")

    def click_probabilities(self, attraction: np.ndarray) -> np.ndarray:
        return attraction * _exclusive_cumprod(1.0 - attraction * (1.0 - self.continuation))

    def p_any_click(self, attraction: np.ndarray) -> np.ndarray:
        return _any_of(attraction)

    def sample(self, attraction: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        clicks = np.zeros(attraction.shape, bool)
        examined = np.ones(len(attraction), bool)
        for k in range(attraction.shape[1]):  # K positions, each vectorised over requests
            clicks[:, k] = examined & (u[:, k] < attraction[:, k])
            examined &= ~clicks[:, k] | (v[:, k] < self.continuation)
        return clicks


@dataclass(frozen=True)
class Choice:
    examination: np.ndarray  # [K] position weight multiplying each item's odds
    no_click_weight: float = 1.0
    name: str = "choice"

    def __post_init__(self) -> None:
        check_probabilities(np.asarray(self.examination), "click model: examination")

    def click_probabilities(self, attraction: np.ndarray) -> np.ndarray:
        odds = attraction / np.maximum(1.0 - attraction, 1e-12)
        w = self.examination[: attraction.shape[1]] * odds
        return w / (self.no_click_weight + w.sum(axis=1, keepdims=True))

    def p_any_click(self, attraction: np.ndarray) -> np.ndarray:
        return self.click_probabilities(attraction).sum(axis=1)

    def sample(self, attraction: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        cdf = np.cumsum(self.click_probabilities(attraction), axis=1)
        chosen = (cdf <= u[:, :1]).sum(axis=1)  # K means the no-click option
        return np.arange(attraction.shape[1])[None, :] == chosen[:, None]


def examination_vector(explicit: tuple[float, ...], decay: float, k: int) -> np.ndarray:
    """Per-position examination: the explicit values, else decay ** position."""
    if explicit:
        return np.asarray(explicit[:k], np.float64)
    return decay ** np.arange(k, dtype=np.float64)


def make_click_model(name: str, examination: np.ndarray, continuation: float,
                     no_click_weight: float) -> ClickModel:
    """The click model named in the config."""
    if name == "pbm":
        return PositionBased(examination)
    if name == "cascade":
        return Cascade()
    if name == "dcm":
        return DependentClick(continuation)
    if name == "choice":
        return Choice(examination, no_click_weight)
    raise SimulationError(f"click.model: unknown click model {name!r}")


def _any_of(p: np.ndarray) -> np.ndarray:
    """P(at least one of independent events) [n] from their probabilities p [n, K], as
    p_0 + (1 - p_0) p_1 + (1 - p_0)(1 - p_1) p_2 + ...: non-negative terms, so accurate relative
    to the result however small (no 1 - x cancellation), and no log1p/expm1 (no SIMD loop; they
    were most of a step's click model time)."""
    any_click, none = np.zeros(len(p)), np.ones(len(p))
    for k in range(p.shape[1]):  # K columns, each vectorised over requests
        column = p[:, k]
        any_click += none * column
        none *= 1.0 - column
    return any_click


def _exclusive_cumprod(x: np.ndarray) -> np.ndarray:
    """[1, x_0, x_0 x_1, ...] along axis 1."""
    out = np.ones_like(x)
    np.cumprod(x[:, :-1], axis=1, out=out[:, 1:])
    return out
