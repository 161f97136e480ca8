"""How much changing one table alone hurts a model: the sensitivities behind mixed precision and
mixed dimensions.

The probe model holds every table as given; each table in turn is replaced by each of its
candidate forms (another precision, a lower rank) while the others stay, and the probe batches
(the first validation batches, read once) are scored: the mean squared change of their logits
(label-free, so less noisy on small validation splits) or the increase of the task's loss.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn
from torchrec.datasets.utils import Batch

from compression.tables import FloatTable, load_tables
from recsys.errors import ConfigError
from recsys.train.tasks import Task

PROBE_BATCH_SIZE = 1024
Form = TypeVar("Form")


def probe_batches(task: Task, batches: int, loss: bool, key: str = "quantize.sensitivity") -> list[Batch]:
    """The first `batches` validation batches of the task's rows, read once: every probe scores the
    same rows (a streamed source would re-parse its files per probe). Full batches only when the
    task's loss needs them; ConfigError naming `key` if there is none."""
    full = loss and task.needs_full_batches
    stream = task.dataset.batches("val", PROBE_BATCH_SIZE, drop_last=full, positives_only=task.positives_only)
    out = list(itertools.islice(stream, batches))
    if full and not out:
        raise ConfigError(f"{key}: the val split has no full batch of {PROBE_BATCH_SIZE} "
                          f"{'clicks' if task.positives_only else 'rows'}; use 'output'")
    return out


def _signal(task: Task, batches: list[Batch], loss: bool) -> Callable[[nn.Module], Any]:
    """A function of the probe model: the task's loss on the probe batches, or their logits."""

    @torch.no_grad()
    def signal(model: nn.Module) -> Any:
        model.eval()
        if loss:
            return float(task.loss(model, batches))
        return torch.cat([task.score(model, b) for b in batches])

    return signal


def table_harm(task: Task, model: nn.Module, tables: dict[str, FloatTable], forms: Mapping[str, Sequence[Form]],
               replace: Callable[[FloatTable, Form], FloatTable], batches: list[Batch],
               loss: bool) -> dict[str, dict[Form, float]]:
    """Per table and form: the val-loss increase (`loss`) or logit MSE when only that table is
    `replace(table, form)`, against the model holding `tables`."""
    probe = copy.deepcopy(model)
    load_tables(probe, tables)
    signal = _signal(task, batches, loss)
    base = signal(probe)
    out: dict[str, dict[Form, float]] = {}
    for name, table in tables.items():
        out[name] = {}
        for form in forms[name]:
            load_tables(probe, {name: replace(table, form)})
            value = signal(probe)
            out[name][form] = float(value - base) if loss else float((value - base).square().mean())
        load_tables(probe, {name: table})
    return out
