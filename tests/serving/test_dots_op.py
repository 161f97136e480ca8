"""The dot_interaction op (recsys.serving.dots_op) against dot products computed in float64 by numpy
from the vectors multiplied out: plain and factorized vectors on both sides, widths with and
without a remainder past its eight partial sums; DotDLRM's path for other devices (`dots`)
against the op; bad layouts refused with a message."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.serving.fast import DotDLRM, over_layers, vector_maps
from recsys.serving.ops import load
from recsys.serving.threads import torch_threads
from tests.serving.test_factorized import factorized as factorized_scorer


@pytest.fixture(scope="module", autouse=True)
def op() -> None:
    load()


def case(dim: int, s: int, k: int, n: int, per_request: int, ranks: dict[int, int], seed: int = 0):
    """Random raw vectors of s request and k candidate vectors (vector v factorized at rank
    ranks[v], else plain), their maps, and the op's arguments."""
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(ranks[v], dim, generator=g) if v in ranks else None for v in range(s + k)]
    widths, map_at, flat = vector_maps(maps, dim)
    request = torch.randn(n, int(widths[:s].sum()), generator=g)
    candidate = torch.randn(n * per_request, int(widths[s:].sum()), generator=g)
    left, right = (t.contiguous() for t in torch.triu_indices(k, k, offset=1))
    return maps, (request, candidate, per_request, dim, s, widths, map_at, flat, left, right)


def multiplied_out(raw: torch.Tensor, maps: list, dim: int) -> np.ndarray:
    """[rows, vectors, dim] in float64: each raw vector as it is or times its map."""
    out, start = [], 0
    for m in maps:
        width = dim if m is None else m.shape[0]
        x = raw[:, start:start + width].double().numpy()
        out.append(x if m is None else x @ m.double().numpy())
        start += width
    return np.stack(out, 1) if out else np.zeros((len(raw), 0, dim))


def expected(maps: list, args: tuple) -> tuple[np.ndarray, np.ndarray]:
    request, candidate, per_request, dim, s, *_, left, right = args
    S = multiplied_out(request, maps[:s], dim)
    C = multiplied_out(candidate, maps[s:], dim)
    mine = np.repeat(S, per_request, axis=0)
    cross = np.einsum("njd,nid->nji", C, mine).reshape(len(C), -1)
    within = np.einsum("npd,npd->np", C[:, left.numpy()], C[:, right.numpy()])
    return np.einsum("nid,njd->nij", S, S).reshape(len(S), -1), np.concatenate([cross, within], 1)


@pytest.mark.parametrize("dim", [1, 7, 8, 13, 64])
@pytest.mark.parametrize("s, k, n, per_request, ranks", [
    (1, 1, 1, 1, {}),                  # plain only
    (3, 4, 1, 100, {2: 4, 4: 2}),      # a factorized request vector, a factorized candidate vector
    (2, 3, 3, 7, {1: 3, 2: 1, 4: 5}),  # several requests; ranks above dim where dim is small
    (4, 2, 9, 1, {3: 2, 4: 2, 5: 2}),  # every candidate vector factorized
    (2, 0, 5, 1, {1: 2}),              # no candidate vectors (every feature the request's)
])
def test_every_dot_product_in_its_column(dim, s, k, n, per_request, ranks):
    maps, args = case(dim, s, k, n, per_request, ranks, seed=dim)
    request_dots, candidate_dots = torch.ops.recsys.dot_interaction(*args)
    want_request, want_candidate = expected(maps, args)
    assert request_dots.shape == (n, s * s) and candidate_dots.shape == (n * per_request, k * s + k * (k - 1) // 2)
    scale = np.sqrt(dim) * 5
    assert np.allclose(request_dots.numpy(), want_request, rtol=1e-4, atol=1e-5 * scale)
    assert np.allclose(candidate_dots.numpy(), want_candidate, rtol=1e-4, atol=1e-5 * scale)


def test_strided_inputs_and_two_threads_give_the_same_dots():
    maps, args = case(16, 3, 3, 400, 3, {1: 4, 3: 4})
    request, candidate = args[0], args[1]
    strided = (torch.cat([torch.zeros(len(request), 5), request], 1)[:, 5:], candidate.t().contiguous().t())
    assert not strided[0].is_contiguous() and not strided[1].is_contiguous()
    one = torch.ops.recsys.dot_interaction(*args)
    with torch_threads(2):
        two = torch.ops.recsys.dot_interaction(*strided, *args[2:])
    assert all(torch.equal(a, b) for a, b in zip(one, two))


@pytest.mark.parametrize("factorized", [False, True])
@pytest.mark.parametrize("n, candidates", [(1, 100), (4, 7), (6, 1)])
def test_the_path_for_other_devices_computes_what_the_op_does(random_model, factorized, n, candidates):
    ranker = random_model("dlrm")
    if factorized:  # request and candidate tables factorized at ranks 2 and 4, as a variant serves them
        ranker = factorized_scorer(ranker, "fp32").model
    model = ranker.model
    module = DotDLRM(model, ranker.request_keys, *over_layers(model.over_arch)).eval()
    assert bool((module.map_at >= 0).any()) == factorized and module.k > 1 and module.left.numel() > 0
    g = torch.Generator().manual_seed(n)
    request = torch.randn(n, int(module.widths[:module.s].sum()), generator=g)
    candidate = torch.randn(n * candidates, int(module.widths[module.s:].sum()), generator=g)
    op = torch.ops.recsys.dot_interaction(request, candidate, candidates, module.dim, module.s, module.widths,
                                          module.map_at, module.maps, module.left, module.right)
    with torch.no_grad():
        fallback = module.dots(request, candidate)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-4) for a, b in zip(op, fallback))


@pytest.mark.parametrize("change, message", [
    ({"request": torch.zeros(2, 8, dtype=torch.float64)}, "request, candidate and maps must be float32"),
    ({"candidate": torch.zeros(6, 9)}, "rows of 8 and 9 columns, the vectors take 8 and 6"),
    ({"per_request": 4}, "6 candidates are not 2 requests of 4"),
    ({"left": torch.tensor([0, 2])}, r"pair 1 \(2, 1\) is not two of the 2 candidate vectors"),
    ({"left": torch.tensor([0])}, "left and right must be int64 vectors of one length"),
    ({"widths": torch.tensor([4, 3, 4, 2])}, "vector 1 has no map and width 3, not dim 4"),
    ({"map_at": torch.tensor([-1, -1, -1, 4])}, "vector 3's map of 2 x 4 at 4 lies outside the 8 map values"),
    ({"s": 5}, "s 5 is not 1..4 vectors"),
    ({"request": torch.zeros(2, 3, 4)}, "request and candidate must be 2-d"),
])
def test_bad_layouts_are_refused_with_a_message(change, message):
    args = {"request": torch.zeros(2, 8), "candidate": torch.zeros(6, 6), "per_request": 3, "dim": 4, "s": 2,
            "widths": torch.tensor([4, 4, 4, 2]), "map_at": torch.tensor([-1, -1, -1, 0]), "maps": torch.zeros(8),
            "left": torch.tensor([0, 0]), "right": torch.tensor([1, 1])}
    args.update(change)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.recsys.dot_interaction(*args.values())
