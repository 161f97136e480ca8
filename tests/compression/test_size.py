"""Byte counts: the formula of TORCHREC_NOTES and the TBE's own buffers agree with size.py."""
from __future__ import annotations

import pytest
import torch
from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen

from compression.prune import apply_mask
from compression.scorer import CompressedScorer
from compression.tables import float_tables, pack
from recsys.serving.size import fp32_bytes, row_bytes, table_bytes, tbe_bytes


@pytest.mark.parametrize("precision, expected", [("int8", 68096), ("int4", 36096), ("int2", 20096),
                                                 ("fp16", 128000), ("fp32", 256000)])
def test_formula_matches_the_notes_for_1000x64(precision, expected):
    assert table_bytes(1000, 64, precision).total == expected


def test_row_bytes_and_row_alignment_16():
    assert [row_bytes(64, p) for p in ("fp32", "fp16", "int8", "int4", "int2")] == [256, 128, 68, 36, 20]
    assert table_bytes(1000, 64, "int4", row_alignment=16).total == 48000


def test_pruned_table_from_the_notes():
    out = table_bytes(300, 64, "int4", remap_ids=1000)
    assert (out.total, out.remap_bytes, out.table_padding_bytes) == (10880 + 4000, 4000, 80)
    assert out.scale_bias_bytes == 300 * 4


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_mixed_precision_and_pruning_match_the_tbe_buffers(random_model, kind):
    model = random_model(kind)
    tables = float_tables(model)
    names = list(tables)
    precisions = ["int2", "fp16", "int8", "int4", "fp32"]
    packed = {}
    for i, name in enumerate(names):
        t = tables[name]
        if i % 2 == 0:  # prune every other table
            t = apply_mask(t, torch.arange(t.num_embeddings) % 3 != 0)
        packed[name] = pack(t, precisions[i % len(precisions)])
    fp32_total = fp32_bytes((t.num_embeddings, t.dim) for t in tables.values())
    scorer = CompressedScorer(model, packed, fp32_total)
    tbes = [m for m in scorer.model.modules() if isinstance(m, IntNBitTableBatchedEmbeddingBagsCodegen)]
    assert len(tbes) == (2 if kind == "dlrm" else 4)  # one per pooling type (SUM, MEAN) per EBC
    host = sum(tbe.weights_host.numel() for tbe in tbes)
    remap = sum(tbe.index_remappings_array.numel() * tbe.index_remappings_array.element_size() for tbe in tbes)
    assert scorer.embedding_bytes() == host + remap == tbe_bytes(scorer.model)
    assert remap == sum(4 * t.num_embeddings for t in packed.values() if t.remap is not None) > 0
    assert scorer.size.ratio > 1.0


def test_fp32_baseline_ratio_is_exactly_one(random_model):
    model = random_model("dlrm")
    tables = float_tables(model)
    fp32_total = fp32_bytes((t.num_embeddings, t.dim) for t in tables.values())
    scorer = CompressedScorer(model, {n: pack(t, "fp32") for n, t in tables.items()}, fp32_total)
    assert scorer.size.ratio == 1.0 and scorer.runtime_bytes() == fp32_total
