"""The one place a configured policy is built for its arms: a context-free class of
`Policy.registry` by name, its options as plain values (`policy_kwargs`), and what only the
caller knows (a rule-serving policy's rule, the control's arm id and the arms' bytes).

The simulator and the online service both build their policy here, so the same name and options
give the same policy in both. Every error is a BanditInputError naming the field: `policy` for
the name, `options.<dotted option>` for an option (an arm id or floor that does not fit this
many arms too).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bandit.decision import DecisionRule
from bandit.errors import BanditInputError
from bandit.options import policy_kwargs
from bandit.policies.base import Policy

DEFAULT_POLICY = "DecisionTS"  # the policy that serves the [decision] rule


def policy_class(name: str) -> type[Policy]:
    """The context-free policy class `name` names, or BanditInputError("policy", ...)."""
    cls = Policy.registry.get(name)
    if cls is None or cls.contextual:
        choices = ", ".join(sorted(n for n, c in Policy.registry.items() if not c.contextual))
        raise BanditInputError("policy", f"{name!r} is not a context-free policy (one of {choices})")
    return cls


def build_policy(name: str, options: Mapping[str, Any], n_arms: int, seed: int | None,
                 rule: DecisionRule = DecisionRule(), control: int = 0, costs: tuple[float, ...] = ()) -> Policy:
    """Policy `name` with `options` for `n_arms` arms; a policy that serves the rule (its
    `set_by_caller`) also gets `rule`, `control` (an arm id) and `costs` (bytes per arm)."""
    cls = policy_class(name)
    caller: tuple[str, ...] = getattr(cls, "set_by_caller", ())
    try:
        kwargs = policy_kwargs(cls, options, fixed=("seed", *caller))
        given: dict[str, Any] = {"rule": rule, "control": control, "costs": tuple(costs)}
        return cls(n_arms, seed=seed, **kwargs, **{k: given[k] for k in caller})
    except BanditInputError as e:
        raise BanditInputError(f"options.{e.field}", e.problem) from None
