"""`torch.ops.recsys.dot_interaction`: every dot product a DLRM's dot interaction takes, a request's
among its own vectors and each candidate's with its request's and among its own, in one pass on
CPU, factorized vectors (a table held as A times a map B, compression.factorize) taken as they
come out of the lookup, never multiplied out per candidate.

`dot_interaction(request, candidate, per_request, dim, s, widths, map_at, maps, left, right)` ->
(request_dots [n, s * s], candidate_dots [N, k * s + P]) for `request` [n, ...] (row q: request q's s
vectors side by side) and `candidate` [N, ...] (row c: candidate c's k vectors), N = n * per_request,
the candidates of request q being rows q * per_request to (q + 1) * per_request - 1. Vector v (the
request's first, then the candidate's) is `widths[v]` wide: a plain vector of `dim`, or the r
coordinates of a factorized one, whose map B [r, dim] lies in `maps` (float32, flat, row-major)
from `map_at[v]` (-1: plain). Its vector is then coordinates @ B. Outputs: request_dots[q, i * s + j]
= request vector i . request vector j; candidate_dots[c, j * s + i] = candidate vector j . request
vector i, then [c, k * s + p] = candidate vector left[p] . candidate vector right[p] (left, right:
int64 [P], each in [0, k)).
A request's factorized vectors are multiplied out once per request. A factorized candidate vector j
meets the request's vectors through T = B_j times each request vector, computed once per request,
then r multiply-adds per product (dim for a plain vector), or, where a request has too few
candidates for T to pay (about r or fewer), multiplied out (r * dim) like the vectors of the pairs
among a candidate's own. Each dot product sums in eight partial sums held in two 4-float registers
(GCC/Clang vector extensions: SSE on x86-64, NEON on ARM; written out, the compiler left most of it
scalar), added pairwise: the results differ from BLAS products of the multiplied-out vectors by
float32 rounding only. Requests are split across torch's intra-op threads (at::parallel_for).
The op alone, MovieLens layouts (fp32 / f4ft-int4), one thread: 170 / 190 us at 1,000 rows with
scalar loops, 146 / 149 us with the registers; 24 / 27 and 24 / 24 us at 100 rows.
Paired CPU time of DotDLRM's forward, one thread, bmm and index_selects / the first version of this
op (plain vectors only), scores within 2e-6: quickstart fp32 1.20x, 1.22x, 1.24x, 1.23x, 1.25x at 1,
10, 100, 1,000, 4,096 rows; MovieLens dim 64 fp32 1.20x, 1.21x, 1.14x, 2.61x at 1, 100, 1,000, 4,096
rows (an index_select of [4,096, 3, 64] along its middle dimension took about a millisecond); 2-core
AMD EPYC, quiet. With factorized vectors taken as they come (this version), MovieLens f4ft-int4
(rank-4 int4 A, 3 of 8 tables factorized) against the fp32 baseline, paired CPU time of the whole
serving call: 0.95x [0.93, 1.00], 1.01x, 1.00x, 1.01x, 0.99x at 1, 10, 100, 1,000, 4,096 rows, where
the maps multiplied out by the lookup (a split, a matmul and a concatenation per side) gave 0.87-0.90x
at every size.
CPU only: on other devices DotDLRM multiplies the maps out and keeps batched matmuls. Built and
loaded with the serving path's other C++ ops (recsys.serving.ops).
"""
from __future__ import annotations

SOURCE = r"""
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace recsys_dots {

// Four floats as one register (GCC/Clang vector extension: SSE on x86-64, NEON on ARM), loaded and
// stored unaligned by memcpy.
typedef float f4 __attribute__((vector_size(16)));

inline f4 load4(const float* p) {
  f4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void store4(float* p, f4 v) { std::memcpy(p, &v, sizeof(v)); }

// a . b over n floats: eight partial sums (two registers), added pairwise, then the tail.
inline float dot(const float* a, const float* b, int64_t n) {
  f4 lo = {0.f, 0.f, 0.f, 0.f}, hi = lo;
  int64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    lo += load4(a + d) * load4(b + d);
    hi += load4(a + d + 4) * load4(b + d + 4);
  }
  const f4 part = lo + hi;
  float out = (part[0] + part[1]) + (part[2] + part[3]);
  for (; d < n; ++d) out += a[d] * b[d];
  return out;
}

// x (r coordinates) times B [r, dim] into out [dim], eight columns at a time summed over the r rows in
// registers (a loop over the rows writing all of out each time ran at half the speed).
inline void multiply_out(const float* x, int64_t r, const float* B, int64_t dim, float* out) {
  int64_t d = 0;
  for (; d + 8 <= dim; d += 8) {
    f4 lo = {0.f, 0.f, 0.f, 0.f}, hi = lo;
    for (int64_t i = 0; i < r; ++i) {
      const float* row = B + i * dim + d;
      lo += x[i] * load4(row);
      hi += x[i] * load4(row + 4);
    }
    store4(out + d, lo);
    store4(out + d + 4, hi);
  }
  for (; d < dim; ++d) {
    float acc = 0.f;
    for (int64_t i = 0; i < r; ++i) acc += x[i] * B[i * dim + d];
    out[d] = acc;
  }
}

struct Layout {
  int64_t s, k, dim;
  std::vector<int64_t> width, at, start;  // per vector; start: its first column in its row
  std::vector<int64_t> t_start;           // per candidate vector: its products with the request's in T
  int64_t request_width = 0, candidate_width = 0, t_size = 0;
};

Layout layout_of(const at::Tensor& widths, const at::Tensor& map_at, const at::Tensor& maps, int64_t s, int64_t dim) {
  TORCH_CHECK(widths.dim() == 1 && map_at.dim() == 1 && widths.numel() == map_at.numel() &&
              widths.scalar_type() == at::kLong && map_at.scalar_type() == at::kLong,
              "widths and map_at must be int64 vectors of one length");
  TORCH_CHECK(s >= 1 && s <= widths.numel(), "s ", s, " is not 1..", widths.numel(), " vectors");
  Layout L{s, widths.numel() - s, dim, {}, {}, {}, {}};
  const at::Tensor w = widths.contiguous(), a = map_at.contiguous();
  for (int64_t v = 0; v < widths.numel(); ++v) {
    const int64_t wv = w.data_ptr<int64_t>()[v], av = a.data_ptr<int64_t>()[v];
    if (av < 0) {
      TORCH_CHECK(wv == dim, "vector ", v, " has no map and width ", wv, ", not dim ", dim);
    } else {
      TORCH_CHECK(wv > 0 && av + wv * dim <= maps.numel(), "vector ", v, "'s map of ", wv, " x ", dim,
                  " at ", av, " lies outside the ", maps.numel(), " map values");
    }
    int64_t& row_width = v < s ? L.request_width : L.candidate_width;
    L.width.push_back(wv);
    L.at.push_back(av);
    L.start.push_back(row_width);
    row_width += wv;
    if (v >= s) {
      L.t_start.push_back(L.t_size);
      if (av >= 0) L.t_size += s * wv;
    }
  }
  return L;
}

std::tuple<at::Tensor, at::Tensor> dot_interaction(const at::Tensor& request, const at::Tensor& candidate,
                                                   int64_t per_request, int64_t dim, int64_t s,
                                                   const at::Tensor& widths, const at::Tensor& map_at,
                                                   const at::Tensor& maps, const at::Tensor& left,
                                                   const at::Tensor& right) {
  TORCH_CHECK(request.dim() == 2 && candidate.dim() == 2, "request and candidate must be 2-d");
  TORCH_CHECK(request.scalar_type() == at::kFloat && candidate.scalar_type() == at::kFloat &&
              maps.scalar_type() == at::kFloat, "request, candidate and maps must be float32");
  TORCH_CHECK(dim > 0, "dim must be positive, got ", dim);
  const Layout L = layout_of(widths, map_at, maps, s, dim);
  TORCH_CHECK(request.size(1) == L.request_width && candidate.size(1) == L.candidate_width, "rows of ",
              request.size(1), " and ", candidate.size(1), " columns, the vectors take ", L.request_width, " and ",
              L.candidate_width);
  TORCH_CHECK(per_request > 0 && candidate.size(0) == request.size(0) * per_request, candidate.size(0),
              " candidates are not ", request.size(0), " requests of ", per_request);
  TORCH_CHECK(left.dim() == 1 && right.dim() == 1 && left.numel() == right.numel() &&
              left.scalar_type() == at::kLong && right.scalar_type() == at::kLong,
              "left and right must be int64 vectors of one length");
  const int64_t n = request.size(0), k = L.k, P = left.numel();
  const at::Tensor q_in = request.contiguous(), c_in = candidate.contiguous(), m_in = maps.contiguous();
  const at::Tensor l_in = left.contiguous(), r_in = right.contiguous();
  const int64_t* lp = l_in.data_ptr<int64_t>();
  const int64_t* rp = r_in.data_ptr<int64_t>();
  for (int64_t p = 0; p < P; ++p) {
    TORCH_CHECK(lp[p] >= 0 && lp[p] < k && rp[p] >= 0 && rp[p] < k, "pair ", p, " (", lp[p], ", ", rp[p],
                ") is not two of the ", k, " candidate vectors");
  }
  at::Tensor request_dots = at::empty({n, s * s}, q_in.options());
  at::Tensor candidate_dots = at::empty({n * per_request, k * s + P}, c_in.options());
  const float* qv = q_in.data_ptr<float>();
  const float* cv = c_in.data_ptr<float>();
  const float* mv = m_in.data_ptr<float>();
  float* rd = request_dots.data_ptr<float>();
  float* cd = candidate_dots.data_ptr<float>();
  const int64_t width = k * s + P;
  // A factorized candidate vector meets the request's vectors through T (s * r dot products of dim per
  // request, then r multiply-adds each) or multiplied out (r * dim, then dim each), whichever costs less.
  std::vector<char> via_t(k, 0), in_pair(k, 0);
  for (int64_t p = 0; p < P; ++p) in_pair[lp[p]] = in_pair[rp[p]] = 1;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t r = L.width[s + j];
    const int64_t through_t = s * r * dim + per_request * s * r;
    const int64_t multiplied = per_request * s * dim + (in_pair[j] ? 0 : per_request * r * dim);
    via_t[j] = L.at[s + j] >= 0 && through_t < multiplied;
  }
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> S(s * dim), T(L.t_size), E(k * dim);
    std::vector<const float*> vec(k);
    for (int64_t q = begin; q < end; ++q) {
      const float* raw = qv + q * L.request_width;
      for (int64_t i = 0; i < s; ++i) {
        const float* x = raw + L.start[i];
        if (L.at[i] < 0) {
          for (int64_t d = 0; d < dim; ++d) S[i * dim + d] = x[d];
        } else {
          multiply_out(x, L.width[i], mv + L.at[i], dim, &S[i * dim]);
        }
      }
      for (int64_t i = 0; i < s; ++i) {
        for (int64_t j = 0; j < s; ++j) rd[q * s * s + i * s + j] = dot(&S[i * dim], &S[j * dim], dim);
      }
      for (int64_t j = 0; j < k; ++j) {
        const int64_t v = s + j, r = L.width[v];
        if (!via_t[j]) continue;
        for (int64_t c = 0; c < r; ++c) {  // T_j [r, s]: row c of B_j . each request vector
          for (int64_t i = 0; i < s; ++i) T[L.t_start[j] + c * s + i] = dot(mv + L.at[v] + c * dim, &S[i * dim], dim);
        }
      }
      for (int64_t row = q * per_request; row < (q + 1) * per_request; ++row) {
        const float* mine = cv + row * L.candidate_width;
        float* out = cd + row * width;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t v = s + j, r = L.width[v];
          const float* x = mine + L.start[v];
          vec[j] = x;
          if (L.at[v] >= 0 && (in_pair[j] || !via_t[j])) {
            multiply_out(x, r, mv + L.at[v], dim, &E[j * dim]);
            vec[j] = &E[j * dim];
          }
          float* cross = out + j * s;
          if (via_t[j]) {  // x [r] times T_j [r, s], the s products side by side
            for (int64_t i = 0; i < s; ++i) cross[i] = 0.f;
            for (int64_t c = 0; c < r; ++c) {
              const float a = x[c];
              const float* t = &T[L.t_start[j] + c * s];
              for (int64_t i = 0; i < s; ++i) cross[i] += a * t[i];
            }
          } else {
            for (int64_t i = 0; i < s; ++i) cross[i] = dot(vec[j], &S[i * dim], dim);
          }
        }
        for (int64_t p = 0; p < P; ++p) out[k * s + p] = dot(vec[lp[p]], vec[rp[p]], dim);
      }
    }
  });
  return {request_dots, candidate_dots};
}

}  // namespace recsys_dots

TORCH_LIBRARY_FRAGMENT(recsys, m) {
  m.def("dot_interaction(Tensor request, Tensor candidate, int per_request, int dim, int s, Tensor widths, "
        "Tensor map_at, Tensor maps, Tensor left, Tensor right) -> (Tensor, Tensor)");
  m.impl("dot_interaction", c10::DispatchKey::CPU, TORCH_FN(recsys_dots::dot_interaction));
}
"""
