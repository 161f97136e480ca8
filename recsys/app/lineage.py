"""Was a stored model trained with this config? The one comparison of a run config stored beside
a model (an exported model's `experiment`, a variant manifest's `teacher.experiment`, metrics.json's
`config`) with the current config, section by section, as typed configs with defaults filled in
(so keys added to the config since still match; where data is cached is not compared)."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.app.config import ExperimentConfig
from recsys.config_loading import from_dict
from recsys.errors import CheckpointError, UserError


def difference(config: ExperimentConfig, trained: dict[str, Any], keys: Sequence[str]) -> str | None:
    """The first of `keys` (dotted: "seed", "data", "dlrm.model") whose value in the stored run
    config `trained` differs from this config's; None when all match."""
    for key in keys:
        current = config.section(key)
        try:
            same = _stored(trained, key, current) == current
        except (AttributeError, TypeError, UserError):
            same = False
        if not same:
            return key
    return None


def check_trained(config: ExperimentConfig, trained: dict[str, Any], folder: Path, keys: Sequence[str]) -> None:
    """CheckpointError naming the first differing key unless `trained` matches `config` at `keys`."""
    key = difference(config, trained, keys)
    if key is not None:
        raise CheckpointError(f"{folder}: trained with a different `{key}` than this config; "
                              "rerun `recsys run` (or --fresh)")


def _stored(trained: dict[str, Any], key: str, current: Any) -> Any:
    node: Any = trained
    for part in key.split("."):
        node = node.get(part)
    return from_dict(type(current), node, key) if dataclasses.is_dataclass(current) else node
