"""Variants are judged by recsys's own evaluation: a manifest's metrics are its task's `evaluate` of
the same model, in a single process with or without a process group."""
from __future__ import annotations

import socket

import pytest
import torch.distributed as dist

from compression.build import compress, teacher_task
from compression.config import CompressConfig
from compression.variant import load_variant
from recsys.config_loading import from_dict


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_manifest_metrics_are_the_tasks_evaluation(tiny_exported, tiny_dataset, tmp_path, kind):
    exported = tiny_exported(kind)
    config = from_dict(CompressConfig, {
        "teacher": kind, "variants": [{"name": "int4", "quantize": {"default": "int4"}}],
        "latency": {"batch_sizes": [64], "repeats": 1, "iters": 1, "warmup": 0}}, "compress")
    manifests = compress(exported, tiny_dataset, config, tmp_path, progress=False)
    task = teacher_task(exported, tiny_dataset, config.ks)
    for manifest in manifests:
        model = load_variant(tmp_path / "variants" / manifest["name"]).model
        expected = task.evaluate(model, "test", config.eval_batch_size)
        assert {k: manifest["metrics"][k] for k in expected} == expected
        assert manifest["metrics"]["delta_" + task.primary] == (
            expected[task.primary] - manifests[0]["metrics"][task.primary])
    assert ("calibration" in manifests[1]["metrics"]) == (kind == "dlrm")  # ranking metrics as in training
    assert ("recall@20" in manifests[1]["metrics"]) == (kind == "two_tower")


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_evaluation_without_a_process_group_equals_a_one_process_group(tiny_exported, tiny_dataset, monkeypatch,
                                                                        kind):
    if dist.is_initialized():
        pytest.skip("a process group is already running in this test process")
    exported = tiny_exported(kind)
    task = teacher_task(exported, tiny_dataset)
    alone = task.evaluate(exported.model, "test", 500)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", _free_port())
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        grouped = task.evaluate(exported.model, "test", 500)
    finally:
        dist.destroy_process_group()
    assert alone == grouped and not exported.model.training
