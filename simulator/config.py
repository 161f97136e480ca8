"""The `[simulator]` section of an experiment config, validated on construction.

TOML layout (every key optional; defaults below):

    [simulator]            seed, num_requests, batch_requests, candidates, slate_size,
                           candidate_source, retrieval_model, counterfactual, reward
    [simulator.users]      drift_requests, session_mean_requests
    [simulator.click]      model, examination, examination_decay, calibrate, continuation,
                           no_click_weight
    [simulator.latency]    source, effects, serving_batch, fit_samples, p50_ms, p99_ms,
                           penalty_per_100ms, abandon_half_ms, patience_ms
    [simulator.policy]     name, options, update_delay_steps
    [simulator.stopping]   check_every_steps
    [simulator.log]        requests, epsilon, variant

When to stop and what to declare is the experiment's `[decision]` rule (bandit.DecisionRule), the
one the online service uses too: `simulator.stopping.prob_best`, `max_loss` and `min_requests` are
refused in one line that says where they went. The default policy (DecisionTS) serves that rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bandit import BanditInputError, Policy, policy_kwargs
from recsys.errors import ConfigError, require


@dataclass(frozen=True)
class UserConfig:
    """Who sends requests: sessions of several requests, preferences that may drift."""

    drift_requests: int = 0  # requests after which preferences have rotated to new ones; 0: none
    session_mean_requests: float = 5.0  # mean requests per session (geometric lengths, >= 1)

    def __post_init__(self) -> None:
        require(self.drift_requests >= 0, "drift_requests", "must be >= 0 (0: no drift)")
        require(self.session_mean_requests >= 1.0, "session_mean_requests", "must be >= 1")


@dataclass(frozen=True)
class ClickConfig:
    """How users click on a slate; examination is per position, top first."""

    model: Literal["pbm", "cascade", "dcm", "choice"] = "pbm"
    examination: tuple[float, ...] = ()  # explicit per-position examination; () uses the decay
    examination_decay: float = 0.85  # examination of position k is decay ** k
    calibrate: Literal["none", "obd"] = "none"  # obd: examination and base CTR from the OBD sample
    continuation: float = 0.5  # DCM: probability of examining on after a click
    no_click_weight: float = 1.0  # choice model: weight of the no-click option

    def __post_init__(self) -> None:
        require(all(0.0 <= e <= 1.0 for e in self.examination), "examination",
                "probabilities must lie in [0, 1]")
        require(0.0 < self.examination_decay <= 1.0, "examination_decay", "must be in (0, 1]")
        require(0.0 <= self.continuation <= 1.0, "continuation", "must be in [0, 1]")
        require(self.no_click_weight > 0.0, "no_click_weight", "must be > 0")


@dataclass(frozen=True)
class LatencyConfig:
    """Where request latency comes from and how users react to it (see simulator.effects)."""

    source: Literal["fitted", "measured"] = "fitted"
    effects: Literal["none", "google2009", "amazon_1pct", "akamai_7pct", "custom"] = "google2009"
    serving_batch: int = 1  # measured: requests per timed scorer call (dynamic batching)
    fit_samples: int = 200  # fitted: timed single-request calls per variant to fit from
    p50_ms: tuple[float, ...] = ()  # fitted: fixed per-variant median instead of measuring
    p99_ms: tuple[float, ...] = ()  # fitted: fixed per-variant p99 (with p50_ms)
    penalty_per_100ms: float = 0.0  # custom: relative click loss per +100 ms
    abandon_half_ms: float = 3000.0  # custom: latency at which half of patient users abandon
    patience_ms: float = 2000.0  # custom: waiting that erodes a session's patience by 1/e

    def __post_init__(self) -> None:
        require(self.serving_batch >= 1, "serving_batch", "must be >= 1")
        require(self.fit_samples >= 20, "fit_samples", "must be >= 20")
        require(len(self.p50_ms) == len(self.p99_ms), "p99_ms", "give one per p50_ms value")
        require(all(0 < a < b for a, b in zip(self.p50_ms, self.p99_ms)), "p50_ms",
                "need 0 < p50_ms < p99_ms for every variant")
        require(0.0 <= self.penalty_per_100ms < 1.0, "penalty_per_100ms", "must be in [0, 1)")
        require(self.abandon_half_ms > 0.0, "abandon_half_ms", "must be > 0")
        require(self.patience_ms > 0.0, "patience_ms", "must be > 0")


@dataclass(frozen=True)
class PolicyConfig:
    """The bandit policy that picks the serving variant per request: a context-free policy of
    bandit.Policy.registry and its options, as plain TOML values (tables for the guardrail,
    allocation, memory and model objects), checked in full by bandit.policy_kwargs."""

    name: str = "DecisionTS"  # the default serves the [decision] rule
    options: dict[str, Any] = field(default_factory=dict)  # the policy's keyword options
    update_delay_steps: int = 1  # feedback of step s reaches the policy before step s + delay

    def __post_init__(self) -> None:
        choices = ", ".join(sorted(n for n, cls in Policy.registry.items() if not cls.contextual))
        require(self.name in Policy.registry, "name", f"unknown policy {self.name!r} (one of {choices})")
        require(not self.policy_class.contextual, "name", f"{self.name} needs a context per request; the "
                f"simulator picks variants with a context-free policy (one of {choices})")
        self.kwargs()
        require(self.update_delay_steps >= 0, "update_delay_steps", "must be >= 0")

    @property
    def policy_class(self) -> type[Policy]:
        return Policy.registry[self.name]

    def kwargs(self) -> dict[str, Any]:
        """The options built into the policy's keyword arguments (the seed is the simulator's, and
        so are a rule-serving policy's rule, control and costs)."""
        fixed = ("seed", *getattr(self.policy_class, "set_by_caller", ()))
        try:
            return policy_kwargs(self.policy_class, self.options, fixed=fixed)
        except BanditInputError as e:
            raise ConfigError(f"options.{e}") from None


MOVED = {"prob_best": "moved to decision.confidence",
         "min_requests": "moved to decision.min_requests",
         "max_loss": "removed: a variant is declared when the [decision] rule holds at decision.confidence"}


@dataclass(frozen=True)
class StoppingConfig:
    """How often the simulation judges the [decision] rule (after every `check_every_steps` steps);
    the keys that moved into [decision] are refused where they were."""

    check_every_steps: int = 1
    prob_best: float | None = None
    max_loss: float | None = None
    min_requests: int | None = None

    def __post_init__(self) -> None:
        require(self.check_every_steps >= 1, "check_every_steps", "must be >= 1")
        for key, where in MOVED.items():
            require(getattr(self, key) is None, key, f"{where} (one rule for the simulator and the online service)")


@dataclass(frozen=True)
class LogConfig:
    """Logged impressions for training: epsilon-greedy over the logging variant's ranking."""

    requests: int = 0  # requests to log; 0: no log
    epsilon: float = 0.1  # share of uniformly random slates (1.0: a uniform-random log, like OBD)
    variant: str = ""  # the logging variant, by arm name; "": the first arm

    def __post_init__(self) -> None:
        require(self.requests >= 0, "requests", "must be >= 0")
        require(0.0 <= self.epsilon <= 1.0, "epsilon", "must be in [0, 1]")


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 0  # the traffic's random streams; the world is the experiment's top-level seed's
    num_requests: int | None = None  # traffic at most (whole steps); None: the rule's decision.max_requests
    batch_requests: int = 4096  # requests per step (concurrent sessions)
    candidates: int = 100  # C
    slate_size: int = 10  # K
    candidate_source: Literal["popularity", "random", "retrieval"] = "popularity"
    retrieval_model: str | None = None  # exported two-tower folder, for candidate_source = retrieval
    counterfactual: bool = True  # score every variant on every request: exact regret
    reward: Literal["any_click", "clicks"] = "any_click"  # clicks: clicks / slate_size
    users: UserConfig = field(default_factory=UserConfig)
    click: ClickConfig = field(default_factory=ClickConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        require(self.seed >= 0, "seed", "must be >= 0")
        require(self.num_requests is None or self.num_requests >= 1, "num_requests", "must be >= 1")
        require(self.batch_requests >= 1, "batch_requests", "must be >= 1")
        require(self.slate_size >= 1, "slate_size", "must be >= 1")
        require(self.slate_size <= self.candidates, "slate_size",
                f"K = {self.slate_size} > C = {self.candidates} candidates")
        require(self.candidate_source != "retrieval" or bool(self.retrieval_model),
                "retrieval_model", "required when candidate_source = 'retrieval'")
        require(not self.click.examination or len(self.click.examination) >= self.slate_size,
                "click.examination", f"give at least slate_size = {self.slate_size} values")
