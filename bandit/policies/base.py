"""The policy contract: select(n) -> arms with their propensities; update(batch); state_dict.

Every policy states a probability vector over arms (per context row when contextual) and
`select` samples arms from exactly that vector, so reported propensities are the true selection
probabilities, whatever approximation produced the vector.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bandit import checks
from bandit.allocation import Allocation
from bandit.errors import BanditInputError, BanditStateError
from bandit.memory import ArmStats, Memory, Stationary
from bandit.state import decode, encode, load_arrays, restore_rng, rng_state, seal, unseal


@dataclass(frozen=True)
class Selection:
    """n chosen arms and the probability with which each was chosen."""

    arms: np.ndarray
    propensities: np.ndarray

    def __len__(self) -> int:
        return len(self.arms)


def ties_split(scores: np.ndarray) -> np.ndarray:
    """Probability 1 on the highest score (shape (..., K)), split evenly among ties."""
    best = scores == scores.max(axis=-1, keepdims=True)
    return best / best.sum(axis=-1, keepdims=True)


class Policy:
    """Base class: validation, allocation controls, sampling, state. Subclasses give `_preferred`.

    A policy's options are the keyword parameters of its constructors (its own and its base
    classes'), typed by their annotations; `declared_options` lists them and any other keyword is
    refused.
    """

    registry: ClassVar[dict[str, type[Policy]]] = {}
    contextual: ClassVar[bool] = False
    reward_range: tuple[float, float] = (0.0, 1.0)
    default_reweight_fraction: ClassVar[float] = 0.0  # Allocation.reweight_fraction when it is None
    default_reweight_within: ClassVar[int] = 0  # Allocation.reweight_within when it is None
    dim: int  # features per context row (contextual policies only)

    @property
    def needs_latency(self) -> bool:
        """Whether update() must be given each decision's latency."""
        return False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            Policy.registry[cls.__name__] = cls

    @classmethod
    @functools.cache
    def declared_options(cls) -> dict[str, inspect.Parameter]:
        """Every keyword option, the class's own first, with its resolved type and its default
        (`inspect.Parameter.empty` when required); n_arms is an argument, not an option."""
        out: dict[str, inspect.Parameter] = {}
        for klass in cls.__mro__[:cls.__mro__.index(Policy) + 1]:
            init = vars(klass).get("__init__")
            if init is None:
                continue
            hints = typing.get_type_hints(init)
            for p in inspect.signature(init).parameters.values():
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "n_arms"):
                    out.setdefault(p.name, p.replace(annotation=hints[p.name]))
        return out

    def __init__(self, n_arms: int, *, memory: Memory = Stationary(),
                 allocation: Allocation = Allocation(), seed: int | None = None, **options: Any) -> None:
        self.n_arms = checks.positive_int(n_arms, "n_arms")
        declared = type(self).declared_options()
        unknown = [name for name in options if name not in declared]
        if unknown:
            raise BanditInputError(unknown[0], f"unknown option of {type(self).__name__} "
                                   f"(allowed: {', '.join(declared)})")
        if not isinstance(allocation, Allocation):
            raise BanditInputError("allocation", f"expected an Allocation, got {allocation!r}")
        allocation.check_arms(self.n_arms)
        if self.contextual and (allocation.reweight_every != 1 or (allocation.reweight_fraction or 0.0) > 0):
            raise BanditInputError("allocation.reweight_every", "contextual policies reweight every time")
        if allocation.reweight_fraction is None:
            allocation = dataclasses.replace(allocation, reweight_fraction=self.default_reweight_fraction)
        if allocation.reweight_within is None:
            allocation = dataclasses.replace(allocation, reweight_within=self.default_reweight_within)
        self.memory, self.allocation = memory, allocation
        self._config = {"n_arms": self.n_arms, "memory": memory, "allocation": allocation,
                        "seed": seed, **options}
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._pulls = np.zeros(self.n_arms, dtype=np.int64)
        self._rewards = ArmStats(self.n_arms, memory)
        self._latencies = ArmStats(self.n_arms, memory)
        self._cache = np.zeros(self.n_arms + 1)
        self._cache[-1] = -1.0

    @property
    def pulls(self) -> np.ndarray:
        """Observations received per arm (undiscounted)."""
        return self._pulls.copy()

    @property
    def reward_stats(self) -> ArmStats:
        """Per-arm reward statistics under the policy's memory (read-only by convention)."""
        return self._rewards

    @property
    def latency_stats(self) -> ArmStats:
        """Per-arm statistics of log-latency under the policy's memory."""
        return self._latencies

    def probabilities(self, context: Any = None, n: int | None = None) -> np.ndarray:
        """Current selection probabilities: (n_arms,), or (n, n_arms) for contextual policies."""
        if self.contextual:
            rows = len(context) if n is None and context is not None else (n or 1)
            x = checks.contexts(context, rows, self.dim)
            if self.allocation.warming_up(self._pulls):
                return self.allocation.apply(np.ones((rows, self.n_arms)))
            return self.allocation.apply(self._preferred(x))
        if self.allocation.warming_up(self._pulls):
            return self.allocation.apply(np.ones(self.n_arms))
        seen = float(self._pulls.sum())
        if self.allocation.due(seen, self._cache[-1]):
            self._cache = np.append(self.allocation.apply(self._preferred(None)), seen)
        return self._cache[:-1].copy()

    def select(self, n: int, context: Any = None) -> Selection:
        """Choose n arms at once (one per context row for contextual policies)."""
        n = checks.positive_int(n, "n")
        p = self.probabilities(context, n)
        cdf = np.cumsum(p, axis=-1)
        cdf /= cdf[..., -1:]
        u = self._rng.random(n)
        if p.ndim == 1:
            arms = np.searchsorted(cdf, u, side="right")
            return Selection(arms, p[arms])
        arms = (cdf <= u[:, None]).sum(axis=1)
        return Selection(arms, p[np.arange(n), arms])

    def update(self, arms: Any, rewards: Any, latencies: Any = None, propensities: Any = None,
               context: Any = None) -> None:
        """Fold in a batch of feedback (any order, any delay); all-or-nothing on bad input."""
        a = checks.arms(arms, self.n_arms)
        r = checks.values(rewards, len(a), "rewards", *self.reward_range)
        if latencies is None and self.needs_latency:
            raise BanditInputError("latencies", f"{type(self).__name__} needs latencies")
        lat = None if latencies is None else checks.values(latencies, len(a), "latencies", 0.0, np.inf, True)
        prop = None if propensities is None else checks.values(propensities, len(a), "propensities", 0.0, 1.0, True)
        x = checks.contexts(context, len(a), self.dim) if self.contextual else None
        self._check_update(prop)
        self._pulls += np.bincount(a, minlength=self.n_arms)
        self._rewards.add(a, r)
        if lat is not None:
            self._latencies.add(a, np.log(lat))
        self._learn(a, r, prop, x)

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _check_update(self, propensities: np.ndarray | None) -> None:
        """Extra checks a subclass needs before any state changes."""

    def _learn(self, arms: np.ndarray, rewards: np.ndarray, propensities: np.ndarray | None,
               context: np.ndarray | None) -> None:
        """Update model state beyond the shared per-arm statistics."""

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"pulls": self._pulls, "cache": self._cache}
        out.update({f"rewards.{k}": v for k, v in self._rewards.arrays().items()})
        out.update({f"latencies.{k}": v for k, v in self._latencies.arrays().items()})
        return out

    def _assign(self, arrays: dict[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            owner, _, field = name.rpartition(".")
            if owner:
                getattr(self, f"_{owner}").assign({field: value})
            else:
                setattr(self, f"_{field}", value)

    def state_dict(self) -> dict:
        """Versioned, checksummed, JSON-able state, enough to continue bit-exactly."""
        payload = {"policy": type(self).__name__, "config": encode(self._config),
                   "rng": rng_state(self._rng), "arrays": {k: v.tolist() for k, v in self._arrays().items()}}
        return seal("policy", payload)

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by the same policy class with the same config."""
        payload = unseal(state, "policy")
        if payload.get("policy") != type(self).__name__:
            raise BanditStateError("policy", f"state is for {payload.get('policy')!r}, not {type(self).__name__}")
        if payload.get("config") != _plain(encode(self._config)):
            raise BanditStateError("config", "state was saved with a different config")
        arrays = load_arrays(payload.get("arrays"), self._arrays(), self.reward_range)
        rng = restore_rng(payload.get("rng"))
        self._assign(arrays)
        self._rng = rng

    @classmethod
    def from_state_dict(cls, state: dict) -> Policy:
        """Build the saved policy (any registered class) and restore its state."""
        payload = unseal(state, "policy")
        policy_cls = Policy.registry.get(str(payload.get("policy")))
        if policy_cls is None:
            raise BanditStateError("policy", f"unknown policy {payload.get('policy')!r}")
        try:
            policy = policy_cls(**decode(payload.get("config")))
        except (TypeError, BanditInputError) as exc:
            raise BanditStateError("config", f"cannot rebuild {policy_cls.__name__}: {exc}") from None
        policy.load_state_dict(state)
        return policy


def _plain(value: Any) -> Any:
    """The form `value` takes after a JSON round trip (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
