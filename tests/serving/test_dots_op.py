"""The candidate_dots op (recsys.serving.dots_op) against dot products computed in float64 by
numpy, over vector widths with and without a remainder past its eight partial sums; DotDLRM's
path for other devices (`dots`) against the op; bad shapes refused with a message."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.serving.fast import DotDLRM, over_layers
from recsys.serving.ops import load
from recsys.serving.threads import torch_threads
from tests.serving.conftest import random_requests


@pytest.fixture(scope="module", autouse=True)
def op() -> None:
    load()


def pairs(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    left, right = torch.triu_indices(k, k, offset=1)
    return left.contiguous(), right.contiguous()


def expected(candidate: torch.Tensor, request: torch.Tensor, per_request: int, dim: int, left, right) -> np.ndarray:
    """The op's contract, in float64: candidate vector j . its request's vector i, then the pairs."""
    c = candidate.double().numpy().reshape(candidate.shape[0], -1, dim)
    r = np.repeat(request.double().numpy().reshape(request.shape[0], -1, dim), per_request, axis=0)
    cross = np.einsum("njd,nid->nji", c, r).reshape(len(c), -1)
    within = np.einsum("npd,npd->np", c[:, left.numpy()], c[:, right.numpy()])
    return np.concatenate([cross, within], 1)


@pytest.mark.parametrize("dim", [1, 7, 8, 13, 16, 64])
@pytest.mark.parametrize("k, s, n, per_request", [(1, 1, 1, 1), (3, 5, 1, 100), (4, 2, 3, 7), (2, 6, 9, 1)])
def test_every_dot_product_in_its_column(dim, k, s, n, per_request):
    g = torch.Generator().manual_seed(dim * 100 + k)
    candidate = torch.randn(n * per_request, k * dim, generator=g)
    request = torch.randn(n, s * dim, generator=g)
    left, right = pairs(k)
    out = torch.ops.recsys.candidate_dots(candidate, request, per_request, dim, left, right)
    assert out.shape == (n * per_request, k * s + len(left)) and out.dtype == torch.float32
    want = expected(candidate, request, per_request, dim, left, right)
    assert np.allclose(out.numpy(), want, rtol=1e-5, atol=1e-5 * np.sqrt(dim))


def test_strided_inputs_and_two_threads_give_the_same_dots():
    g = torch.Generator().manual_seed(3)
    wide = torch.randn(1200, 3 * 16 + 5, generator=g)
    candidate = wide[:, 5:]  # a column slice
    request = torch.randn(80, 4, generator=g).t()  # a transpose
    left, right = pairs(3)
    one = torch.ops.recsys.candidate_dots(candidate.contiguous(), request.contiguous(), 300, 16, left, right)
    with torch_threads(2):
        two = torch.ops.recsys.candidate_dots(candidate, request, 300, 16, left, right)
    assert torch.equal(one, two)
    assert np.allclose(one.numpy(), expected(candidate, request, 300, 16, left, right), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n, candidates", [(1, 100), (4, 7), (6, 1)])
def test_the_path_for_other_devices_computes_what_the_op_does(random_model, n, candidates):
    ranker = random_model("dlrm")
    module = DotDLRM(ranker.model, ranker.request_keys, *over_layers(ranker.model.over_arch)).eval()
    requests = random_requests(n=n, candidates=candidates, seed=n)
    g = torch.Generator().manual_seed(n)
    candidate = torch.randn(n * candidates, module.k * module.dim, generator=g)
    request = torch.randn(n, module.s * module.dim, generator=g)
    assert module.k > 1 and module.left.numel() > 0 and requests.num_candidates == n * candidates
    op = torch.ops.recsys.candidate_dots(candidate, request, candidates, module.dim, module.left, module.right)
    fallback = module.dots(candidate, request.view(n, module.s, module.dim))
    assert torch.allclose(op, fallback, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"candidate": torch.zeros(6, 8, dtype=torch.float64)}, "candidate and request must be float32"),
    ({"candidate": torch.zeros(6, 9)}, "widths 9 and 12 are not multiples of dim 4"),
    ({"per_request": 4}, "6 candidates are not 2 requests of 4"),
    ({"left": torch.tensor([0, 2])}, r"pair 1 \(2, 1\) is not two of the 2 candidate vectors"),
    ({"left": torch.tensor([0])}, "left and right must be int64 vectors of one length"),
    ({"request": torch.zeros(2, 3, 4)}, "candidate and request must be 2-d"),
])
def test_bad_shapes_are_refused_with_a_message(change, message):
    args = {"candidate": torch.zeros(6, 8), "request": torch.zeros(2, 12), "per_request": 3, "dim": 4,
            "left": torch.tensor([0, 0]), "right": torch.tensor([1, 1])}
    args.update(change)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.recsys.candidate_dots(*args.values())
