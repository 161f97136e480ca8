"""Simulator throughput, measured side by side in one run (2-core CPU figures in the report).

1. impressions/s of the vectorised simulator alone: sessions, context, popularity candidates,
   top-K, attraction, PBM clicks, latency effects, CRN expected reward; scores are given
   (model scoring excluded).
2. the same work per request in plain Python (the reference): the ratio of the two.
3. one step with a real DLRM variant scoring the step's requests through its serving path
   (recsys.serving.fast, on RequestBatches): the simulator's share.

    python bench/simulator_bench.py [--dlrm runs/quickstart/dlrm/model]
"""
from __future__ import annotations

import argparse
import bisect
import heapq
import math
import random
import time

import numpy as np
import torch

from recsys.data.config import SyntheticConfig
from recsys.data.world import CONTEXT_WEIGHTS, World
from simulator.config import LatencyConfig, SimulatorConfig
from simulator.environment import Environment
from simulator.latency import LatencyModel
from simulator.serving import Arm, score

C, K, N = 50, 10, 8192
LATENCY = LatencyModel.from_quantiles(8.0, 40.0)


def environment(batch: int) -> Environment:
    config = SimulatorConfig(batch_requests=batch, candidates=C, slate_size=K,
                             latency=LatencyConfig(effects="google2009"))
    return Environment.build(config, World.generate(SyntheticConfig(), 0), 0)


def vectorised(env: Environment, steps: int, scores: np.ndarray) -> tuple[float, float]:
    """(seconds, rendered impressions) of `steps` simulator steps with given scores [N, C]."""
    start, shown = time.perf_counter(), 0
    for _ in range(steps):
        requests, draws = env.requests()
        latency = LATENCY.quantile(draws.latency)
        out = env.simulator.serve(requests, np.zeros(N, np.int64), scores, latency, draws)
        env.advance(out.latency_ms, out.abandoned)
        shown += int((~out.abandoned).sum()) * K
    return time.perf_counter() - start, shown


def reference(env: Environment, n: int, scores: np.ndarray) -> tuple[float, float]:
    """The same work request by request in plain Python: (seconds, rendered impressions).

    One session at a time (the vectorised step runs N concurrent ones): a session's user by
    activity, device, geometric length and patience; the request's context, C distinct
    popularity candidates (with-replacement draws, first occurrences kept), the top K by the
    given scores, latency, abandonment, PBM clicks, realised and expected reward, patience."""
    w, sim, config = env.world.world, env.simulator, env.config
    users_l, items_l = w.user_latent.tolist(), w.item_latent.tolist()
    bias, cdf = w.item_bias.tolist(), np.cumsum(w.item_exposure).tolist()
    ucdf, weights = np.cumsum(w.user_activity).tolist(), CONTEXT_WEIGHTS.tolist()
    exam, scale, icpt = sim.click_model.examination.tolist(), w.config.preference_scale, w.intercept
    effects, rnd, rows = sim.effects, random.Random(0), scores.tolist()
    log_act = w.log_activity(np.arange(w.num_users)).tolist()
    stop = math.log1p(-1.0 / config.users.session_mean_requests)
    user = remaining = 0
    patience, shown, reward, expected = 1.0, 0, 0, 0.0
    start = time.perf_counter()
    for r in range(n):
        if remaining <= 0:  # a new session
            user = min(bisect.bisect_right(ucdf, rnd.random() * ucdf[-1]), len(ucdf) - 1)
            rnd.randrange(w.config.num_devices)  # the session's device (a request feature)
            remaining, patience = 1 + int(math.log(1.0 - rnd.random()) / stop), 1.0
        hour = rnd.randrange(24) * 2 * math.pi / 24
        ctx = [math.sin(hour), math.cos(hour), log_act[user], rnd.gauss(0, 1)]
        cands: dict[int, None] = {}
        while len(cands) < C:
            cands.setdefault(min(bisect.bisect_right(cdf, rnd.random() * cdf[-1]), len(cdf) - 1))
        cands_l, row = list(cands), rows[r % len(rows)]
        slate = [cands_l[j] for j in heapq.nlargest(K, range(C), key=row.__getitem__)]
        latency = math.exp(LATENCY.mu + LATENCY.sigma * rnd.gauss(0, 1))
        p_abandon = 1 - 2 ** (-latency / (effects.abandon_half_ms * patience))
        patience *= math.exp(-latency / effects.patience_ms)
        remaining -= 1
        if rnd.random() < p_abandon:
            remaining = 0
            continue
        mult = (1 - effects.penalty_per_100ms) ** (latency / 100)
        c = sum(a * b for a, b in zip(ctx, weights)) + icpt
        no_click, clicks = 1.0, 0
        for k, item in enumerate(slate):
            dot = sum(a * b for a, b in zip(users_l[user], items_l[item]))
            p = exam[k] * mult / (1 + math.exp(-(scale * dot + bias[item] + c)))
            no_click *= 1 - p
            clicks += rnd.random() < p
        reward += clicks > 0
        expected += (1 - p_abandon) * (1 - no_click)
        shown += K
    return time.perf_counter() - start, shown


def side_by_side(rounds: int = 7) -> tuple[float, float, float]:
    """Median impressions/s of the vectorised simulator and of the reference, and the median of
    their per-round ratios: rounds alternate, so both see the same load on a shared machine."""
    scores = np.random.default_rng(1).standard_normal((N, C))
    env, ref_env = environment(N), environment(N)
    vectorised(env, 2, scores)  # warm-up
    rates = []
    for _ in range(rounds):
        sec, shown = vectorised(env, 4, scores)
        rsec, rshown = reference(ref_env, 800, scores)
        rates.append((shown / sec, rshown / rsec))
    fast, slow = np.array(rates).T
    return float(np.median(fast)), float(np.median(slow)), float(np.median(fast / slow))


def dlrm_step(env: Environment, folder: str | None) -> tuple[float, float, float]:
    """(simulator s, request building s, DLRM scoring s) of one step with a real DLRM variant."""
    from recsys.models.registry import build_model
    from recsys.serving.scorer import ModelScorer
    if folder:
        from recsys.serving.export import load_model
        model = load_model(folder).model
    else:
        model = build_model("dlrm", env.world.world.schema(), {"embedding_dim": 16, "dense_arch": [64, 16],
                            "over_arch": [64, 32, 1]}, torch.device("cpu"))
    variant = Arm("dlrm", ModelScorer(model), LATENCY)
    times = np.zeros(3)
    for step in range(4):  # the first is warm-up
        t0 = time.perf_counter()
        requests, draws = env.requests()
        t1 = time.perf_counter()
        batches = env.batches.batches(requests, len(requests))
        t2 = time.perf_counter()
        scores, _ = score(variant, batches, requests)
        t3 = time.perf_counter()
        out = env.simulator.serve(requests, np.zeros(N, np.int64), scores, LATENCY.quantile(draws.latency), draws)
        env.advance(out.latency_ms, out.abandoned)
        t4 = time.perf_counter()
        if step:
            times += [(t1 - t0) + (t4 - t3), t2 - t1, t3 - t2]
    return tuple(times / 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dlrm", default=None, help="exported DLRM folder (default: a fresh quickstart-sized DLRM)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    fast, slow, ratio = side_by_side()
    print(f"simulator alone (C={C}, K={K}, {N} requests/step): {fast:,.0f} impressions/s")
    print(f"per-request Python reference: {slow:,.0f} impressions/s; speed-up {ratio:.0f}x "
          "(medians over alternating rounds)")
    sim, build, model = dlrm_step(environment(N), args.dlrm)
    total = sim + build + model
    print(f"DLRM step ({N * C} candidate rows): simulator {sim:.3f}s, request building {build:.3f}s, "
          f"DLRM scoring {model:.3f}s; simulator share {sim / total:.1%} "
          f"({(sim + build) / total:.1%} with request building)")


if __name__ == "__main__":
    main()
