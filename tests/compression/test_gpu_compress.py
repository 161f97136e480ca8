"""Compression on the serving GPU: the same variants score alike on CUDA and CPU, timed with CUDA events."""
from __future__ import annotations

import pytest
import torch

from compression.build import compress
from compression.config import CompressConfig
from recsys.config_loading import from_dict

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_variants_on_cuda_match_cpu(tiny_exported, tiny_dataset, tmp_path):
    raw = {"variants": [{"name": "int4", "quantize": {"default": "int4"}}],
           "latency": {"batch_sizes": [64], "repeats": 1, "iters": 2, "warmup": 1}}
    config = from_dict(CompressConfig, raw, "compress")
    exported = tiny_exported("dlrm")
    on = {d: {m["name"]: m for m in compress(exported, tiny_dataset, config, tmp_path / d, torch.device(d), False)}
          for d in ("cpu", "cuda")}
    for name in ("fp32", "int4"):
        assert on["cuda"][name]["metrics"]["auc"] == pytest.approx(on["cpu"][name]["metrics"]["auc"], abs=1e-4)
        assert on["cuda"][name]["latency"]["64"]["device"].startswith("cuda")
