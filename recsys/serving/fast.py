"""The serving path: every model, fp32 or compressed, scores a `RequestBatch` through one lean,
TorchScript-compiled module of its architecture, its lookups through its own TBEs.

A request's own work is done once and broadcast to its candidates: the user-side and context
lookups, the dense arch, and for DLRM every dot product and first over-arch layer term among
them. Per candidate remain its item lookups, its dot products with the request's vectors and
with its other item vectors, and the rest of the over arch. A two-tower embeds its whole item
catalogue once (when given one), so a request is one user tower and a dot product per candidate.

    path = serving_path(model)                   # None for a model without one
    scores = path.score_requests(requests)       # [N], request-major
    scores = path.score(batch)                   # every row its own request
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.fx import symbolic_trace
from torchrec.models.dlrm import DLRM, InteractionArch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.dlrm import DLRMRanker
from recsys.models.factorized import FactorizedEBC
from recsys.models.logistic import ID_COLUMNS, LogisticRegression
from recsys.models.two_tower import Tower, TwoTower
from recsys.serving.lookup import Lookup
from recsys.serving.ops import load as load_ops
from recsys.serving.requests import RequestBatch
from recsys.serving.threads import serving_threads, torch_threads

CALL_ROWS = 4_096  # candidates per module call. A step's 400k candidates in one call page in fresh
# 100 MB activations every call (1.3 s on one thread vs 0.37-0.44 s in calls of 4k-16k rows); on the
# one thread a serving call runs on (recsys.serving.threads) 16k-row calls were 15% slower than 4k


def broadcast(x: torch.Tensor, candidates: int) -> torch.Tensor:
    """Per-request rows [n, F] repeated for each request's C candidates: [n * C, F] (a view when n = 1)."""
    if candidates == 1:
        return x
    return x.expand(candidates, x.shape[1]) if x.shape[0] == 1 else x.repeat_interleave(candidates, 0)


class Affine(nn.Module):
    """A Linear layer as one addmm, its weight transposed once."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight: torch.Tensor
        self.bias: torch.Tensor
        self.register_buffer("weight", linear.weight.detach().t().contiguous())
        bias = linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.out_features)
        self.register_buffer("bias", bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class Layers(nn.Module):
    """Linear layers, a ReLU after each but the last (after the last too with `last_relu`): an
    addmm and an in-place ReLU per layer, two ops and one new tensor (TorchScript's frozen and
    optimized Linear is a matmul and an add)."""

    def __init__(self, linears: list[nn.Linear], last_relu: bool) -> None:
        super().__init__()
        self.affines = nn.ModuleList([Affine(lin) for lin in linears])
        self.relus = [True] * (len(linears) - 1) + [last_relu]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, affine in enumerate(self.affines):
            x = affine(x)
            if self.relus[i]:
                x = torch.relu_(x)
        return x


def same_function(module: nn.Module, layers: nn.Module, inputs: int, device: torch.device) -> bool:
    """Whether `layers` computes what `module` does, on a random input."""
    x = torch.randn(8, inputs, device=device)
    with torch.no_grad():
        return torch.allclose(module(x), layers(x), atol=1e-6)


def over_layers(over_arch: nn.Module) -> tuple[nn.Linear, nn.Module] | None:
    """TorchRec's OverArch as its first Linear and the layers after its ReLU (Linear, ReLU, ...,
    Linear), checked against the module on a random input; None if it is not that shape."""
    linears = [m for m in over_arch.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    rest = Layers(linears[1:], last_relu=False) if len(linears) > 1 else nn.Identity()
    first = nn.Sequential(linears[0], nn.ReLU(), rest)
    return (linears[0], rest) if same_function(over_arch, first, linears[0].in_features,
                                                linears[0].weight.device) else None


def dense_layers(dense_arch: nn.Module) -> nn.Module:
    """TorchRec's DenseArch as `Layers` (Linear and ReLU each), if that is what it computes on a
    random input; else the module itself."""
    linears = [m for m in dense_arch.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return dense_arch
    layers = Layers(linears, last_relu=True)
    return layers if same_function(dense_arch, layers, linears[0].in_features, linears[0].weight.device) \
        else dense_arch


class RequestModule(nn.Module):
    """A model's serving module: `forward(dense, values, lengths, permutes, candidates)` -> [N]
    logits of a RequestBatch's tensors, `permutes[t]` locating `groups[t]` (the features one of
    its TBEs, or id lookups, reads) among its keys; `shared`: its features of the request."""

    def __init__(self, groups: list[list[str]], shared: list[str]) -> None:
        super().__init__()
        self.groups = groups
        self.shared = shared


class DotDLRM(RequestModule):
    """TorchRec's DLRM with its dot interaction, its first over-arch layer split by the vectors its
    inputs come from: a request's vectors S (the dense arch output, the shared features) and each
    candidate's vectors I. The dense output and the dot products within S are a per-request term;
    the dot products of I with S and within I are per candidate, all of a candidate's in one row,
    taken by one matmul. On CPU every dot product comes from one op (`torch.ops.recsys.dot_interaction`,
    recsys.serving.dots_op), which takes a factorized EBC's features as the lookup gives them (r
    coordinates and their map) and never multiplies a candidate's out for its products with the
    request; elsewhere `dots`. The layer's weight columns are laid out once for the parts; no pair is
    gathered per call."""

    def __init__(self, dlrm: DLRM, shared: Collection[str], first: nn.Linear, rest: nn.Module) -> None:
        load_ops()
        ebc = dlrm.sparse_arch.embedding_bag_collection
        lookup = Lookup(ebc, shared, project=False)
        mine, theirs = lookup.shared_features, lookup.candidate_features
        super().__init__(lookup.groups, mine)
        self.lookup, self.dense_arch, self.rest = lookup, dense_layers(dlrm.dense_arch), rest
        d, s, k = dlrm.sparse_arch.D, 1 + len(mine), len(theirs)
        self.dim, self.s, self.k = d, s, k
        at = {f: ("S", 1 + mine.index(f)) if f in mine else ("I", theirs.index(f)) for f in mine + theirs}
        vectors = [("S", 0)] + [at[f] for f in dlrm.sparse_arch.sparse_feature_names]  # InteractionArch's rows
        pairs = torch.triu_indices(len(vectors), len(vectors), offset=1).t().tolist()  # its dot products, in order
        within = [(vectors[a][1], vectors[b][1]) for a, b in pairs if vectors[a][0] == vectors[b][0] == "I"]
        w = first.weight.detach().t()  # [inputs, H]
        shared_w, dots_w = w.new_zeros(d + s * s, w.shape[1]), w.new_zeros(k * s + len(within), w.shape[1])
        shared_w[:d] = w[:d]
        for p, (a, b) in enumerate(pairs):
            (side_a, i), (side_b, j) = vectors[a], vectors[b]
            if side_a == side_b == "S":
                shared_w[d + i * s + j] = w[d + p]
            elif side_a == side_b == "I":
                dots_w[k * s + within.index((i, j))] = w[d + p]
            else:  # candidate vector, then request vector
                dots_w[i * s + j if side_a == "I" else j * s + i] = w[d + p]
        maps = ebc.feature_maps() if isinstance(ebc, FactorizedEBC) else {}
        widths, map_at, flat = vector_maps([None, *(maps.get(f) for f in mine + theirs)], d)
        self.bias: torch.Tensor
        self.shared_w: torch.Tensor
        self.dots_w: torch.Tensor
        self.left: torch.Tensor
        self.right: torch.Tensor
        self.widths: torch.Tensor
        self.map_at: torch.Tensor
        self.maps: torch.Tensor
        for name, value in (("bias", first.bias.detach().clone()), ("shared_w", shared_w), ("dots_w", dots_w),
                            ("left", torch.tensor([i for i, _ in within], dtype=torch.int64)),
                            ("right", torch.tensor([j for _, j in within], dtype=torch.int64)),
                            ("widths", widths), ("map_at", map_at), ("maps", flat)):
            self.register_buffer(name, value)

    def forward(self, dense: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, permutes: list[torch.Tensor],
                candidates: int) -> torch.Tensor:
        shared, candidate = self.lookup(values, lengths, permutes, dense.shape[0])
        d = self.dense_arch(dense)
        request = torch.cat([d, shared], 1)
        if request.is_cuda:
            request_dots, dots = self.dots(request, candidate)
        else:
            request_dots, dots = torch.ops.recsys.dot_interaction(
                request, candidate, candidates, self.dim, self.s, self.widths, self.map_at, self.maps, self.left,
                self.right)
        h = broadcast(torch.addmm(self.bias, torch.cat([d, request_dots], 1), self.shared_w), candidates)
        if self.k == 0:  # every feature is the request's (Criteo: each row its own request); h may be its row's view
            return self.rest(torch.relu(h)).squeeze(-1)
        return self.rest(torch.relu_(torch.addmm(h, dots, self.dots_w))).squeeze(-1)

    def dots(self, request: torch.Tensor, candidate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What `dot_interaction` computes, from the vectors multiplied out (the lookup's maps) by
        batched matmuls and two index_selects, a product and a sum (any device)."""
        n = request.shape[0]
        shared = self.lookup.shared_map(request[:, self.dim:])
        s = torch.cat([request[:, :self.dim], shared], 1).view(n, self.s, self.dim)
        request_dots = torch.bmm(s, s.transpose(1, 2)).flatten(1)
        if self.k == 0:
            return request_dots, candidate
        candidate = self.lookup.candidate_map(candidate)
        cross = torch.bmm(candidate.view(n, -1, self.dim), s.transpose(1, 2)).view(-1, self.k * self.s)
        vectors = candidate.view(-1, self.k, self.dim)
        within = (vectors.index_select(1, self.left) * vectors.index_select(1, self.right)).sum(2)
        return request_dots, torch.cat([cross, within], 1)


def vector_maps(maps: Sequence[torch.Tensor | None], dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`dot_interaction`'s description of vectors with `maps` (None: a plain vector of `dim`): their
    widths, where each map starts in the flat maps (-1: none) and the flat maps."""
    widths = [dim if m is None else m.shape[0] for m in maps]
    sizes = [0 if m is None else m.numel() for m in maps]
    starts = [sum(sizes[:v]) if m is not None else -1 for v, m in enumerate(maps)]
    flat = [m.detach().float().flatten() for m in maps if m is not None]
    return (torch.tensor(widths, dtype=torch.int64), torch.tensor(starts, dtype=torch.int64),
            torch.cat(flat) if flat else torch.zeros(0))


class AnyDLRM(RequestModule):
    """Any TorchRec DLRM (DCN and other interactions): the lookups and the dense arch once per
    request, then the model's own interaction and over arch on every candidate."""

    def __init__(self, dlrm: DLRM, shared: Collection[str]) -> None:
        lookup = Lookup(dlrm.sparse_arch.embedding_bag_collection, shared)
        mine, theirs = lookup.shared_features, lookup.candidate_features
        super().__init__(lookup.groups, mine)
        self.lookup, self.dense_arch = lookup, dense_layers(dlrm.dense_arch)
        self.inter_arch, self.over_arch = symbolic_trace(dlrm.inter_arch), symbolic_trace(dlrm.over_arch)  # scriptable
        names = dlrm.sparse_arch.sparse_feature_names
        self.dim, self.rows = dlrm.sparse_arch.D, 1 + len(names)
        order = [0] + [1 + (mine + theirs).index(f) for f in names]  # model row -> row of [d; mine; theirs]
        self.order: torch.Tensor
        self.register_buffer("order", torch.tensor([r * self.dim + i for r in order for i in range(self.dim)]))

    def forward(self, dense: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, permutes: list[torch.Tensor],
                candidates: int) -> torch.Tensor:
        n = dense.shape[0]
        shared, candidate = self.lookup(values, lengths, permutes, n)
        s = broadcast(torch.cat([self.dense_arch(dense), shared], 1), candidates)
        e = torch.cat([s, candidate], 1).index_select(1, self.order).view(-1, self.rows, self.dim)
        return self.over_arch(self.inter_arch(e[:, 0], e[:, 1:])).squeeze(-1)


def _tower_head(tower: Tower) -> nn.Module:
    return nn.Sequential(tower.mlp, tower.out) if tower.mlp is not None else tower.out


class TwoTowerRequests(RequestModule):
    """The user tower once per request; each candidate's item embedding from the catalogue's
    (computed once, by the model's own item tower and tables) or, without a catalogue, by the
    item tower on the candidate's features."""

    def __init__(self, model: TwoTower, catalogue: KeyedJaggedTensor | None) -> None:
        user = Lookup(model.user_tower.ebc, model.user_tower.keys, order=model.user_tower.keys)
        item = Lookup(model.item_tower.ebc, (), order=model.item_tower.keys)
        super().__init__(user.groups + ([[model.item_key]] if catalogue is not None else item.groups),
                         model.user_tower.keys)
        self.user, self.item, self.split = user, item, len(user.groups)
        self.user_head, self.item_head = _tower_head(model.user_tower), _tower_head(model.item_tower)
        self.precomputed, self.temperature = catalogue is not None, model.config.temperature
        self.catalogue: torch.Tensor
        self.register_buffer("catalogue", model.embed(catalogue, "item") if catalogue is not None else torch.zeros(0))

    def forward(self, dense: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, permutes: list[torch.Tensor],
                candidates: int) -> torch.Tensor:
        n = dense.shape[0]
        users = F.normalize(self.user_head(self.user(values, lengths, permutes[:self.split], n)[0]), dim=-1)
        if self.precomputed:
            ids = torch.ops.fbgemm.permute_2D_sparse_data(permutes[-1], lengths, values, None, None)[1]
            items = self.catalogue.index_select(0, ids.long())
        else:
            items = F.normalize(self.item_head(self.item(values, lengths, permutes[self.split:], 0)[1]), dim=-1)
        return (broadcast(users, candidates) * items).sum(1) / self.temperature


class LogisticRequests(RequestModule):
    """Logistic regression: the request's id weights and dense term once, plus each candidate's."""

    def __init__(self, model: LogisticRegression) -> None:
        lookup = Lookup(model.ebc, model.request_keys)
        super().__init__(lookup.groups, lookup.shared_features)
        self.lookup, self.dense, self.columns = lookup, model.dense, ID_COLUMNS

    def forward(self, dense: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, permutes: list[torch.Tensor],
                candidates: int) -> torch.Tensor:
        n = dense.shape[0]
        shared, candidate = self.lookup(values, lengths, permutes, n)
        per_request = shared.sum(1, keepdim=True) / self.columns + self.dense(dense)
        return broadcast(per_request, candidates).squeeze(-1) + candidate.sum(1) / self.columns


class ServingPath:
    """A model's serving module, TorchScript-compiled, frozen and optimized for inference (about
    10% faster than scripted alone on one request), behind the Scorer interface: `score(batch)`
    and `score_requests(requests)`, one logit per candidate, in inference mode.
    Measured on 2 shared cores (CPU time, paired rounds), and not kept: the module's call without
    inference mode, or under no_grad, 1.3-1.5x slower at 1 and 100 rows; TorchScript's graph
    optimizations off (torch.jit.optimized_execution(False)) 0.92x at 1 row, 1.09x at 4,096; its
    executor splits each addmm into a matmul and an add, but F.linear instead (one op, kept only
    without optimize_for_inference, which splits it the same way) was slower at 1 row (6 layers:
    37 vs 27 us) and faster at 4,096 (3.1 vs 3.4 ms). Also not kept (quickstart fp32 DLRM, one
    thread, paired CPU time against this module's part, 2 shared cores at load 3-8, scores within
    5e-6 in every case): torch.compile (inductor, C++) of the dense part (all after the lookups):
    dynamic shapes 0.41x / 0.39x / 0.45x / 0.72x at 1 / 10 / 100 / 1,000 rows, 1.03x [0.98, 1.12] at
    4,096, 57 s to compile; static 0.37x / 0.47x at 1 / 100, 1.01x at 4,096; with freezing and the C++
    wrapper 0.55x / 0.62x, 1.18x [1.11, 1.24] at 4,096 (61 s for three shapes): Dynamo's guards and
    the wrapper cost more than the ops at a request's size. AOTInductor (torch.export, static):
    1.12x [0.94, 1.28] at 1 row, 1.13x [0.95, 1.26] at 100 (with freezing 0.50x at 100, 1.30x at
    4,096), for 34-78 s of compiling per shape and variant, paid by every test and `recsys run`
    that builds a path. addmm kept whole (a beta TorchScript cannot fold, so its executor does not
    split it): 1.00x at 100 rows, 1.05x [0.95, 1.12] at 4,096 (addmm copies the bias instead).
    The candidates' own dot products by one bmm of each one's vectors (not two index_selects, a
    mul and a sum): 1.25x at 1 row, 0.96x [0.88, 1.03] at 100; all their dot products, with the
    request's vectors too, by one bmm: 1.34x at 1 row, 0.85x [0.82, 0.94] at 100. TorchScript's
    Static Runtime (torch._C._jit_to_static_module, made for CPU ranking inference) on this module:
    0.74-0.79x at 100 rows on all five quickstart models, on the frozen module without
    optimize_for_inference 0.81x [0.76, 0.88] (scores within 1.5e-6; AMD EPYC, 2 cores at load 5)."""

    def __init__(self, module: RequestModule, device: torch.device) -> None:
        self.device = device
        self.bytes = sum(m.bytes for m in module.modules() if isinstance(m, Lookup))
        self.groups = module.groups
        self.shared = frozenset(module.shared)
        self.features = frozenset(f for group in self.groups for f in group)
        scripted = torch.jit.script(module.to(device).eval())
        self.module = torch.jit.optimize_for_inference(torch.jit.freeze(scripted))
        self.forward = self.module.forward  # the compiled method, called without nn.Module's Python __call__
        self.permutes: dict[tuple[str, ...], list[torch.Tensor]] = {}  # per key order of the requests

    def permutes_for(self, keys: tuple[str, ...]) -> list[torch.Tensor]:
        """Where each group's features are among `keys`: the module's `permutes` argument."""
        if keys not in self.permutes:
            missing = sorted(self.features - set(keys))
            if missing:
                raise ValueError(f"requests: no feature {', '.join(missing)}")
            self.permutes[keys] = [torch.tensor([keys.index(f) for f in group], dtype=torch.int32,
                                                device=self.device) for group in self.groups]
        return self.permutes[keys]

    def score_requests(self, requests: RequestBatch) -> torch.Tensor:
        """[N] logits of every request's candidates, request after request, on the serving thread
        policy's torch threads (recsys.serving.threads); a module call scores at most CALL_ROWS
        candidates (whole requests): larger tensors only cost memory traffic."""
        with torch_threads(serving_threads()), torch.inference_mode():
            return self.in_calls(requests)

    def in_calls(self, requests: RequestBatch) -> torch.Tensor:
        per_call = max(1, CALL_ROWS // requests.candidates)
        if requests.num_requests > per_call:
            return torch.cat([self.in_calls(part) for part in requests.split(per_call)])
        permutes = self.permutes_for(requests.keys)
        if requests.candidates > 1 and requests.shared & self.features != self.shared:
            raise ValueError(f"requests: per-request features {sorted(requests.shared & self.features)} "
                             f"are not this model's {sorted(self.shared)}")
        return self.forward(requests.dense, requests.values, requests.lengths, permutes, requests.candidates)

    def score(self, batch: Batch) -> torch.Tensor:
        """One logit per row of `batch`, every row its own request."""
        return self.score_requests(RequestBatch.from_batch(batch.to(self.device)))

    def embedding_bytes(self) -> int:
        """Bytes the path's TBEs hold."""
        return self.bytes


def serving_path(model: nn.Module, catalogue: KeyedJaggedTensor | None = None,
                 device: torch.device = torch.device("cpu")) -> ServingPath | None:
    """The serving path of a recsys model (DLRM, two-tower, logistic regression) or of a TorchRec
    DLRM (every feature per candidate); None for any other model. `catalogue`: a two-tower's item
    features, row i = item i, embedded once."""
    if isinstance(model, TwoTower):
        return ServingPath(TwoTowerRequests(model, catalogue), device)
    if isinstance(model, LogisticRegression):
        return ServingPath(LogisticRequests(model), device)
    dlrm = model.model if isinstance(model, DLRMRanker) else model
    if not isinstance(dlrm, DLRM):
        return None
    shared = getattr(model, "request_keys", ())
    layers = over_layers(dlrm.over_arch) if type(dlrm.inter_arch) is InteractionArch else None
    module = DotDLRM(dlrm, shared, *layers) if layers is not None else AnyDLRM(dlrm, shared)
    return ServingPath(module, device)
