"""Errors raised on bad input; each message is one line that starts with the offending field."""
from __future__ import annotations


class BanditInputError(ValueError):
    """An argument, batch or config value is invalid; the policy state was not changed."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class BanditArmCountError(BanditInputError):
    """An option does not fit the number of arms (an arm id out of range, floors summing over 1):
    a caller that does not know the arms yet may leave this check for when it does."""


class BanditStateError(BanditInputError):
    """A saved state is corrupt, from another version, or for another policy or config."""
