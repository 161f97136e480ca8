"""Errors caused by the user's input. The CLI prints them as one line and exits with status 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in a config, a data file or a checkpoint; the message names what and where."""


class ConfigError(UserError):
    """A config key is unknown, has the wrong type, or holds an impossible value."""


class DataError(UserError):
    """A data file is missing or malformed, or a split is empty."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or was written by a different config."""


def require(ok: bool, key: str, message: str) -> None:
    """Raise ConfigError('key: message') unless `ok`; used by config dataclasses' __post_init__."""
    if not ok:
        raise ConfigError(f"{key}: {message}")
