"""`torch.ops.recsys.request_ids`: a request's ids put in the serving order, checked and remapped in
one pass on CPU, where FBGEMM runs three or four ops (permute_2D_sparse_data,
asynchronous_complete_cumsum, bounds_check_indices, pruned_array_lookup).

`request_ids(permute, lengths, values, shared, cols, rows, mode, warning, remap, remap_offsets)` ->
(bags, ids, offsets) as FBGEMM's permute (keys `permute` of `lengths` [F, N] and `values`) and
cumsum give them, the first `shared` permuted keys (a request's features) keeping their first
`cols` bags, the others all N: bags [shared * cols + (K - shared) * N], offsets one more; each
id then checked against its key's `rows` as FBGEMM's CPU bounds_check_indices does in `mode`
(BoundsCheckMode: FATAL raises, WARNING sets a bad id to 0 and adds one to `warning`, IGNORE sets
it to 0, NONE checks nothing; -1, a pruned row, is never bad) and, for a key whose remap
(`remap[remap_offsets[k]:remap_offsets[k + 1]]`) is not empty, remapped as pruned_array_lookup
does. Where FBGEMM would read outside a remap (an id out of range after mode NONE, or -1, read at
position -1), this op raises, or keeps -1 (a pruned row) for -1. An id inside its key's rows costs
one unsigned compare (and, remapped, one load); only others take the general path: paired CPU time
at 4,096 rows (2 shared cores, load 8), 87 -> 51 us fp32, 104 -> 64 us pruned (the remap was ~16 us
of a pruned variant's extra cost there, now ~12); at 100 rows 14 -> 13 us.
CPU only: on CUDA, Lookup keeps FBGEMM's ops. Built and loaded with the serving path's other C++
ops (recsys.serving.ops).
"""
from __future__ import annotations

SOURCE = r"""
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>
#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

enum Mode : int64_t { FATAL = 0, WARNING = 1, IGNORE = 2, NONE = 3 };

template <typename index_t>
index_t checked(index_t idx, int64_t num_rows, int64_t mode, int64_t key, int64_t* warning) {
  if (idx == -1 || mode == NONE || (idx >= 0 && idx < num_rows)) {
    return idx;
  }
  TORCH_CHECK(mode != FATAL, "id ", static_cast<int64_t>(idx), " of key ", key, " is outside its ", num_rows, " rows");
  if (mode == WARNING && warning[0]++ == 0) {
    TORCH_WARN("(at least one) out of bounds id: ", static_cast<int64_t>(idx), " of key ", key, ", ", num_rows,
               " rows; set to 0");
  }
  return 0;
}

template <typename index_t>
index_t remapped(index_t idx, int64_t key, const int32_t* map, int64_t capacity) {
  if (idx == -1) {
    return idx;
  }
  TORCH_CHECK(idx >= 0 && idx < capacity, "id ", static_cast<int64_t>(idx), " of key ", key,
              " is outside its remap of ", capacity, " rows");
  return static_cast<index_t>(map[idx]);
}

// One key's ids, checked (and remapped): an id inside [0, bound) takes one unsigned compare (and one
// load), any other (-1, out of range, mode NONE) the general path.
template <typename index_t>
void copy_key(const index_t* src, index_t* out, int64_t count, int64_t num_rows, int64_t mode, int64_t key,
              int64_t* warn, const int32_t* map, int64_t capacity) {
  if (capacity == 0) {
    const uint64_t bound = static_cast<uint64_t>(num_rows);
    for (int64_t i = 0; i < count; ++i) {
      const index_t idx = src[i];
      out[i] = static_cast<uint64_t>(idx) < bound ? idx : checked<index_t>(idx, num_rows, mode, key, warn);
    }
    return;
  }
  const uint64_t bound = static_cast<uint64_t>(std::min(num_rows, capacity));
  for (int64_t i = 0; i < count; ++i) {
    const index_t idx = src[i];
    out[i] = static_cast<uint64_t>(idx) < bound
                 ? static_cast<index_t>(map[idx])
                 : remapped<index_t>(checked<index_t>(idx, num_rows, mode, key, warn), key, map, capacity);
  }
}

template <typename index_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run(const at::Tensor& permute, const at::Tensor& lengths,
                                                    const at::Tensor& values, int64_t S, int64_t cols,
                                                    const at::Tensor& rows, int64_t mode, at::Tensor& warning,
                                                    const at::Tensor& remap, const at::Tensor& remap_offsets) {
  const int64_t F = lengths.size(0), N = lengths.size(1), K = permute.numel();
  const index_t* len = lengths.data_ptr<index_t>();
  const index_t* vals = values.data_ptr<index_t>();
  const int32_t* perm = permute.data_ptr<int32_t>();
  const int64_t* num_rows = rows.data_ptr<int64_t>();
  const int32_t* table = remap.data_ptr<int32_t>();
  const int64_t* table_start = remap_offsets.data_ptr<int64_t>();
  int64_t* warn = warning.data_ptr<int64_t>();
  std::vector<int64_t> start(F + 1, 0);
  for (int64_t f = 0; f < F; ++f) {
    int64_t sum = 0;
    for (int64_t b = 0; b < N; ++b) sum += len[f * N + b];
    start[f + 1] = start[f] + sum;
  }
  TORCH_CHECK(start[F] <= values.numel(), "lengths add up to ", start[F], " ids, values holds ", values.numel());
  const int64_t total = S * cols + (K - S) * N;
  at::Tensor bags = at::empty({total}, lengths.options());
  at::Tensor offsets = at::empty({total + 1}, lengths.options());
  index_t* bag = bags.data_ptr<index_t>();
  index_t* off = offsets.data_ptr<index_t>();
  std::vector<int64_t> first_bag(K + 1, 0);
  off[0] = 0;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t f = perm[k], B = k < S ? cols : N, at = first_bag[k];
    TORCH_CHECK(f >= 0 && f < F, "permute names key ", f, " of ", F);
    for (int64_t b = 0; b < B; ++b) {
      bag[at + b] = len[f * N + b];
      off[at + b + 1] = off[at + b] + len[f * N + b];
    }
    first_bag[k + 1] = at + B;
  }
  at::Tensor ids = at::empty({static_cast<int64_t>(off[total])}, values.options());
  index_t* out = ids.data_ptr<index_t>();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t first = off[first_bag[k]];
    copy_key<index_t>(vals + start[perm[k]], out + first, off[first_bag[k + 1]] - first, num_rows[k], mode, k, warn,
                      table + table_start[k], table_start[k + 1] - table_start[k]);
  }
  return {bags, ids, offsets};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> request_ids(const at::Tensor& permute, const at::Tensor& lengths,
                                                            const at::Tensor& values, int64_t shared, int64_t cols,
                                                            const at::Tensor& rows, int64_t mode, at::Tensor warning,
                                                            const at::Tensor& remap, const at::Tensor& remap_offsets) {
  TORCH_CHECK(lengths.dim() == 2, "lengths must be [keys, rows]");
  TORCH_CHECK(values.scalar_type() == lengths.scalar_type(), "values and lengths must have one integer dtype");
  TORCH_CHECK(permute.scalar_type() == at::kInt && remap.scalar_type() == at::kInt, "permute and remap must be int32");
  TORCH_CHECK(rows.scalar_type() == at::kLong && remap_offsets.scalar_type() == at::kLong &&
              warning.scalar_type() == at::kLong, "rows, remap_offsets and warning must be int64");
  TORCH_CHECK(rows.numel() == permute.numel() && remap_offsets.numel() == permute.numel() + 1,
              "rows and remap_offsets must have one entry per permuted key (and one more)");
  TORCH_CHECK(mode >= FATAL && mode <= NONE, "bounds check mode ", mode, " is not 0..3");
  TORCH_CHECK(shared >= 0 && shared <= permute.numel(), "shared ", shared, " is not 0..", permute.numel(), " keys");
  TORCH_CHECK(cols >= 0 && cols <= lengths.size(1), "cols ", cols, " is not 0..", lengths.size(1), " rows");
  auto c = [](const at::Tensor& t) { return t.contiguous(); };
  return AT_DISPATCH_INDEX_TYPES(values.scalar_type(), "request_ids", [&] {
    return run<index_t>(c(permute), c(lengths), c(values), shared, cols, c(rows), mode, warning, c(remap),
                        c(remap_offsets));
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(recsys, m) {
  m.def("request_ids(Tensor permute, Tensor lengths, Tensor values, int shared, int cols, Tensor rows, int mode, "
        "Tensor(a!) warning, Tensor remap, Tensor remap_offsets) -> (Tensor, Tensor, Tensor)");
  m.impl("request_ids", c10::DispatchKey::CPU, TORCH_FN(request_ids));
}
"""
