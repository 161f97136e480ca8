"""An online experiment: sticky assignment against the current weights, idempotent batched
feedback, weights recomputed by the simulator's policy classes, and its summary.

State lives in an `ExperimentStore`; the in-memory policy is a replay of the acknowledged
feedback batches in order (`Experiment.__init__` rebuilds it so after a restart), and the
weights layouts are read back as stored, so a restart serves every unit the arm it had.
A feedback batch is validated in full (ids, rewards, latencies, and the policy's own update on a
copy) before anything is written; the reply comes after the batch is durable.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from bandit.assignment import Layout, check_unit, salt_key, unit_hash
from bandit.builder import DEFAULT_POLICY, build_policy
from bandit.checks import in_range, positive_int
from bandit.decision import DecisionRule, LatencyStats, decide
from bandit.errors import BanditInputError, BanditStateError
from bandit.memory import ArmStats, Stationary
from bandit.policies.base import Policy
from bandit.posterior import BetaBernoulli, prob_best
from bandit.state import decode, encode
from bandit.store import ConflictError, DecisionRecord, Event, ExperimentStore, Resolved

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DECISION = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_EVENT_ID = 128
SRM_ALPHA = 0.001  # the usual threshold of a sample-ratio-mismatch alarm


class UnknownExperiment(BanditInputError):
    """No experiment of that id is served."""


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment is; stored on creation and checked unchanged on every restart.

    arms: arm names (the variants). policy, options: a context-free class of bandit.Policy.registry
    and its options as plain values, built by bandit.builder as the simulator builds its policy (default:
    DecisionTS, which serves the rule). rule: the decision rule.
    salt: the assignment hash's salt (default: the id). recompute_every, recompute_seconds: the
    weights are recomputed after that many new feedback events, or that many seconds after the
    first event since the last recompute. costs: bytes per arm (rules that judge cost by bytes).
    """

    id: str
    arms: tuple[str, ...]
    policy: str = DEFAULT_POLICY
    options: Mapping[str, Any] = field(default_factory=dict)
    rule: DecisionRule = DecisionRule()
    salt: str = ""
    recompute_every: int = 1000
    recompute_seconds: float = 30.0
    costs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise BanditInputError("id", f"expected 1 to 64 of A-Z a-z 0-9 _ . - (not first), got {self.id!r}")
        names = tuple(self.arms)
        if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(a, str) and a for a in names):
            raise BanditInputError("arms", f"expected at least two distinct names, got {list(names)!r}")
        object.__setattr__(self, "arms", names)
        object.__setattr__(self, "salt", self.salt or self.id)
        object.__setattr__(self, "costs", tuple(float(c) for c in self.costs))
        salt_key(self.salt)
        positive_int(self.recompute_every, "recompute_every")
        in_range(self.recompute_seconds, "recompute_seconds", 0.0, np.inf, closed=False)
        if self.rule.control not in names:
            raise BanditInputError("rule.control", f"{self.rule.control!r} is not an arm ({', '.join(names)})")
        experiment_policy(self)

    def to_json(self) -> str:
        return json.dumps(encode(asdict(self) | {"rule": self.rule}), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> ExperimentSpec:
        raw = json.loads(text)
        return ExperimentSpec(**{**raw, "rule": decode(raw["rule"]), "arms": tuple(raw["arms"]),
                                 "costs": tuple(raw["costs"])})


def experiment_policy(spec: ExperimentSpec) -> Policy:
    """The spec's policy for its arms (bandit.builder; seed 0: the weights are a function of the feedback)."""
    policy = build_policy(spec.policy, spec.options, len(spec.arms), 0, spec.rule, spec.arms.index(spec.rule.control),
                          spec.costs)
    if tuple(policy.reward_range) != (0.0, 1.0):
        raise BanditInputError("options.model", "online experiments take rewards in [0, 1] (a BetaBernoulli model)")
    return policy


@dataclass(frozen=True)
class Assignment:
    decision_id: str
    arm: str
    propensity: float
    weights_version: int


@dataclass(frozen=True)
class Exposure:
    """A decision a client made from a weights snapshot: its id (the client's), unit and version."""

    decision_id: str
    unit_id: str
    weights_version: int


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    duplicates: int


@dataclass
class _Totals:
    """Per-arm observations, reward sums and log-latency statistics of every acknowledged event."""

    n: np.ndarray
    s: np.ndarray
    latency: LatencyStats

    @staticmethod
    def empty(k: int) -> _Totals:
        return _Totals(np.zeros(k), np.zeros(k), LatencyStats(np.zeros(k), np.zeros(k), np.zeros(k)))

    def add(self, arms: np.ndarray, rewards: np.ndarray, latencies: np.ndarray | None) -> None:
        k = len(self.n)
        self.n = self.n + np.bincount(arms, minlength=k)
        self.s = self.s + np.bincount(arms, rewards, minlength=k)
        if latencies is not None:
            self.latency = self.latency + LatencyStats.of(arms, latencies, k)


class Experiment:
    """One experiment over a store: assign, feedback, snapshot, summary. Thread-safe."""

    def __init__(self, spec: ExperimentSpec, store: ExperimentStore) -> None:
        self.spec, self.store = spec, store
        stored = store.get_spec(spec.id)
        if stored is None:
            store.put_spec(spec.id, spec.to_json())
        elif stored != spec.to_json():
            raise BanditStateError(f"experiments.{spec.id}",
                                   f"the store holds another definition ({_diff(stored, spec)})")
        self._key = salt_key(spec.salt)
        self._lock = threading.Lock()
        self.policy = experiment_policy(spec)
        self.totals = _Totals.empty(len(spec.arms))
        for batch in store.replay(spec.id):
            self._fold(self.policy, batch)
        self._layouts = {v: _layout(text, len(spec.arms)) for v, text in store.weights(spec.id).items()}
        if not self._layouts:
            self._layouts[1] = Layout.initial(self.policy.probabilities())
            store.save_weights(spec.id, 1, _layout_json(self._layouts[1]))
        self.version = max(self._layouts)
        served = store.served(spec.id)
        self.served = np.array([served.get(i, 0) for i in range(len(spec.arms))], dtype=np.int64)
        self._pending, self._since = 0, time.monotonic()

    @property
    def layout(self) -> Layout:
        return self._layouts[self.version]

    def assign(self, unit_id: str) -> Assignment:
        """The unit's arm under the current weights (sticky), logged with its propensity."""
        record = self.choose(unit_id)
        self.log([record])
        return self.assignment(record)

    def choose(self, unit_id: str) -> DecisionRecord:
        """The unit's decision under the current weights, not yet logged: a caller that answers
        several requests at once logs their decisions together (`log`) before answering any."""
        h = unit_hash(self._key, check_unit(unit_id))
        with self._lock:
            version, layout = self.version, self.layout
        arm = layout.arm_of(h)
        return DecisionRecord(os.urandom(12).hex(), unit_id, arm, float(layout.weights()[arm]), version, time.time())

    def log(self, records: Sequence[DecisionRecord]) -> None:
        """Write decisions (one transaction) and count them as served."""
        with self._lock:
            self.store.log_decisions(self.spec.id, records)
            for r in records:
                self.served[r.arm] += 1

    def assignment(self, record: DecisionRecord) -> Assignment:
        """What the caller is told of a logged decision."""
        return Assignment(record.decision_id, self.spec.arms[record.arm], record.propensity, record.weights_version)

    def log_exposures(self, exposures: Sequence[Exposure]) -> FeedbackResult:
        """Record decisions a client made locally from a weights snapshot (bandit.client): the arm
        and propensity are recomputed here from the stored layout of the version the client
        used, so feedback on them counts like feedback on /assign's decisions. Idempotent on
        decision_id; the whole batch is checked before anything is written."""
        if not exposures:
            raise BanditInputError("exposures", "expected at least one exposure")
        with self._lock:
            records, seen = [], set()
            for i, x in enumerate(exposures):
                where = f"exposures[{i}]"
                if not isinstance(x.decision_id, str) or not _DECISION.match(x.decision_id):
                    raise BanditInputError(f"{where}.decision_id", "expected 1 to 64 of A-Z a-z 0-9 _ . : -")
                if x.decision_id in seen:
                    raise BanditInputError(f"{where}.decision_id", f"{x.decision_id!r} repeats in the batch")
                seen.add(x.decision_id)
                layout = self._layouts.get(x.weights_version)
                if layout is None:
                    raise BanditInputError(f"{where}.weights_version", f"unknown version {x.weights_version!r} "
                                           f"(1..{self.version})")
                arm = layout.arm_of(unit_hash(self._key, check_unit(x.unit_id, f"{where}.unit_id")))
                records.append(DecisionRecord(x.decision_id, x.unit_id, arm, float(layout.weights()[arm]),
                                              x.weights_version, time.time()))
            known = self.store.decisions(self.spec.id, list(seen))
            for i, r in enumerate(records):
                old = known.get(r.decision_id)
                if old is not None and (old.unit, old.weights_version) != (r.unit, r.weights_version):
                    raise ConflictError(f"exposures[{i}].decision_id", f"{r.decision_id!r} was recorded for "
                                        "another unit or version")
            fresh = [r for r in records if r.decision_id not in known]
            if fresh:
                self.store.log_decisions(self.spec.id, fresh)
                self.served += np.bincount([r.arm for r in fresh], minlength=len(self.spec.arms))
        return FeedbackResult(len(fresh), len(records) - len(fresh))

    def feedback(self, events: Sequence[Event], refresh: bool = True) -> FeedbackResult:
        """Validate the whole batch, write the new events durably, then update the policy.
        Events already stored with the same content are acknowledged again and not counted twice.
        `refresh`: recompute the weights if due before returning (a service that answers first
        calls `refresh` itself afterwards)."""
        with self._lock:
            fresh = self._new_events(events)
            resolved = self._resolve(fresh)
            trial = copy.deepcopy(self.policy)
            self._fold(trial, resolved)
            if fresh:
                self.store.append_feedback(self.spec.id, fresh)
            self.policy = trial
            self._fold_totals(resolved)
            self._pending += len(fresh)
        if refresh:
            self.refresh()
        return FeedbackResult(len(fresh), len(events) - len(fresh))

    def snapshot(self) -> dict[str, Any]:
        """What a client needs to assign locally, bit-identically to `assign`."""
        layout = self.layout
        return {"experiment": self.spec.id, "version": self.version, "salt": self.spec.salt,
                "arms": list(self.spec.arms), "starts": list(layout.starts), "owners": list(layout.owners),
                "weights": layout.weights().tolist()}

    def summary(self) -> dict[str, Any]:
        """Per arm: served, reward mean and 95% interval, P(best), latency p50/p99; the decision;
        the sample-ratio-mismatch check; the weights and their version."""
        names, t = self.spec.arms, self.totals
        a, b = 1 + t.s, 1 + t.n - t.s
        low, high = stats.beta.ppf(0.025, a, b), stats.beta.ppf(0.975, a, b)
        stats_ = ArmStats(len(names), Stationary())
        stats_.n, stats_.s, stats_.ss = t.n.copy(), t.s.copy(), t.s.copy()
        p_best = prob_best(BetaBernoulli().marginal(stats_))
        lat = self.store.latencies(self.spec.id)
        arms = []
        for i, name in enumerate(names):
            q = np.percentile(lat[i], [50, 99]).tolist() if lat.get(i) else [None, None]
            arms.append({"arm": name, "served": int(self.served[i]), "observations": int(t.n[i]),
                         "reward_mean": float(t.s[i] / t.n[i]) if t.n[i] else None,
                         "reward_interval": [float(low[i]), float(high[i])], "p_best": float(p_best[i]),
                         "latency_p50_ms": q[0], "latency_p99_ms": q[1], "weight": float(self.layout.weights()[i])})
        verdict = decide(self.spec.rule, names, t.n, t.s, t.latency if self.spec.rule.needs_latency else None,
                         self.spec.costs or None)
        return {"experiment": self.spec.id, "weights_version": self.version, "arms": arms,
                "decision": verdict.to_dict(), "rule": self.spec.rule.describe(), "srm": self.srm()}

    def srm(self) -> dict[str, Any]:
        """Sample-ratio mismatch: each unit's first arm against the weights it was assigned under
        (Pearson chi-square over arms; independent units, known probabilities)."""
        k = len(self.spec.arms)
        observed, expected = np.zeros(k), np.zeros(k)
        for version, arm, units in self.store.first_assignments(self.spec.id):
            observed[arm] += units
            expected += units * self._layouts[version].weights()
        if observed.sum() == 0:
            return {"units": 0, "p_value": None, "mismatch": False, "observed": observed.tolist(),
                    "expected": expected.tolist()}
        impossible = bool(np.any((expected == 0) & (observed > 0)))
        live = expected > 0
        chi2 = float((np.square(observed - expected)[live] / expected[live]).sum())
        p = 0.0 if impossible else float(stats.chi2.sf(chi2, max(int(live.sum()) - 1, 1)))
        return {"units": int(observed.sum()), "chi2": chi2, "p_value": p, "mismatch": p < SRM_ALPHA,
                "observed": observed.tolist(), "expected": expected.tolist()}

    def recompute(self) -> None:
        """New weights from the policy, laid out so that as few units as possible change arm. The
        policy's split is computed outside the lock (assign is never held up by it); the new layout
        replaces the old one only if no other recompute did so meanwhile."""
        with self._lock:
            policy, layout, pending = self.policy, self.layout, self._pending
        new = layout.rebalance(policy.probabilities())
        with self._lock:
            if self.layout is not layout:
                return
            self._pending, self._since = self._pending - pending, time.monotonic()
            if new == layout:
                return
            self.store.save_weights(self.spec.id, self.version + 1, _layout_json(new))
            self._layouts[self.version + 1] = new
            self.version += 1

    def refresh(self) -> bool:
        """Recompute the weights if due: recompute_every new feedback events since the last
        recompute, or recompute_seconds since it with at least one new event. The service calls
        this after each feedback batch and from a background task, never on the assign path."""
        due = self._pending >= self.spec.recompute_every or (
            self._pending > 0 and time.monotonic() - self._since >= self.spec.recompute_seconds)
        if due:
            self.recompute()
        return due

    def _new_events(self, events: Sequence[Event]) -> list[Event]:
        if not events:
            raise BanditInputError("events", "expected at least one event")
        seen: dict[str, int] = {}
        for i, e in enumerate(events):
            if not isinstance(e.event_id, str) or not 0 < len(e.event_id) <= MAX_EVENT_ID:
                raise BanditInputError(f"events[{i}].event_id", f"expected 1 to {MAX_EVENT_ID} characters")
            if e.event_id in seen:
                raise BanditInputError(f"events[{i}].event_id", f"{e.event_id!r} repeats events[{seen[e.event_id]}]")
            seen[e.event_id] = i
        stored = self.store.events(list(seen))
        for i, e in enumerate(events):
            old = stored.get(e.event_id)
            if old is not None and old != e:
                raise ConflictError(f"events[{i}].event_id", f"{e.event_id!r} was recorded with other content")
        return [e for e in events if e.event_id not in stored]

    def _resolve(self, events: list[Event]) -> list[Resolved]:
        ids = [e.decision_id for e in events]
        known = self.store.decisions(self.spec.id, ids)
        answered = self.store.answered(ids)
        first: dict[str, int] = {}
        out = []
        with_latency = [e.latency_ms is not None for e in events]
        for i, e in enumerate(events):
            where = f"events[{i}]"
            d = known.get(e.decision_id)
            if d is None:
                raise BanditInputError(f"{where}.decision_id", f"unknown decision id {e.decision_id!r:.80}")
            if e.decision_id in answered or e.decision_id in first:
                raise ConflictError(f"{where}.decision_id", f"{e.decision_id!r} already has its feedback")
            first[e.decision_id] = i
            _check_number(e.reward, f"{where}.reward", 0.0, 1.0)
            if e.latency_ms is not None:
                _check_number(e.latency_ms, f"{where}.latency_ms", 0.0, np.inf, open_low=True)
            if with_latency[i] != with_latency[0]:
                raise BanditInputError(f"{where}.latency_ms", "give latency_ms on every event of a batch or on none")
            out.append(Resolved(e, d.arm, d.propensity))
        if out and not any(with_latency) and (self.policy.needs_latency or self.spec.rule.needs_latency):
            raise BanditInputError("events[0].latency_ms", "required: the policy or the rule judges latency")
        return out

    def _fold(self, policy: Policy, batch: list[Resolved]) -> None:
        """Feed one batch to `policy` (and to the totals when it is the live one)."""
        if not batch:
            return
        arms, rewards, latencies, props = _arrays(batch)
        try:
            policy.update(arms, rewards, latencies=latencies, propensities=props)
        except BanditInputError as e:
            raise BanditInputError(f"events.{e.field}", e.problem) from None
        if policy is self.policy:
            self._fold_totals(batch)

    def _fold_totals(self, batch: list[Resolved]) -> None:
        if batch:
            arms, rewards, latencies, _ = _arrays(batch)
            self.totals.add(arms, rewards, latencies)


def _arrays(batch: list[Resolved]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    arms = np.array([r.arm for r in batch], dtype=np.int64)
    rewards = np.array([r.event.reward for r in batch], dtype=np.float64)
    lat = None if batch[0].event.latency_ms is None else np.array([r.event.latency_ms for r in batch], np.float64)
    return arms, rewards, lat, np.array([r.propensity for r in batch], dtype=np.float64)


def _check_number(value: Any, field: str, low: float, high: float, open_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BanditInputError(field, f"expected a finite number, got {value!r}")
    if (value <= low if open_low else value < low) or value > high:
        raise BanditInputError(field, f"{value!r} is outside {'(' if open_low else '['}{low:g}, {high:g}]")


def _layout_json(layout: Layout) -> str:
    return json.dumps({"n_arms": layout.n_arms, "starts": list(layout.starts), "owners": list(layout.owners)})


def _layout(text: str, n_arms: int) -> Layout:
    try:
        raw = json.loads(text)
        layout = Layout(int(raw["n_arms"]), tuple(raw["starts"]), tuple(raw["owners"]))
    except (ValueError, KeyError, TypeError, BanditInputError) as exc:
        raise BanditStateError("weights", f"a stored layout is unreadable ({exc})") from None
    if layout.n_arms != n_arms:
        raise BanditStateError("weights", f"a stored layout has {layout.n_arms} arms, the experiment {n_arms}")
    return layout


def _diff(stored: str, spec: ExperimentSpec) -> str:
    old, new = json.loads(stored), json.loads(spec.to_json())
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return f"{keys[0]} differs: stored {json.dumps(old.get(keys[0]))[:80]}, given {json.dumps(new.get(keys[0]))[:80]}"
