"""Serving speed, side by side in one run: today's path (the model's own forward on a Batch of
the candidate rows) against the serving path (recsys.serving.fast on the same requests).

1. Every variant of the quickstart (configs/quickstart.toml: the exported DLRM and logistic
   regression, the fp32 TBE baseline and the compressed variants) and of the MovieLens dim-64
   teacher (configs/movielens_compress.toml): p50/p99 at 1, 10, 100 (one request), 1,000 and
   4,096 rows, both paths interleaved (compression.latency.measure). Rows are test rows cut into
   whole requests of up to 100 candidates (a request's user and context: its first row's), so
   both paths score exactly the same candidate rows; inputs are built before timing. Then the CPU
   time of a call (thread_time) at every size, both paths of every variant in rounds of shuffled
   blocks (recsys.serving.paired): today's / the serving path's, and the fp32 TBE baseline's / each
   compressed variant's, each ratio with a 95% interval, so that "never slower" is measured; the
   exported DLRM beside the fp32 baseline (the same tables and layers) is the run's A/A pair.
2. What TorchScript, TorchRec's fx tracing and torch.compile each change, on one request.
3. The quickstart's simulation stage: requests/s with today's path and with the serving path.

Every timed call, of either path, runs on the serving thread policy's torch threads
(recsys.serving.threads: one) unless --threads says otherwise; the machine's load is printed
before, with each table and at the end. The runs are trained through the `recsys run` CLI into
--out, or reused from there.

    python bench/serving_bench.py --out /tmp/runs
    python bench/serving_bench.py --out /tmp/runs --quick
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torchrec.datasets.utils import Batch

from compression.config import TimingConfig
from compression.latency import LatencyStats, candidates_per_request, measure
from compression.variant import load_variant
from recsys.app.config import ExperimentConfig, load_config
from recsys.data.sources import load_dataset
from recsys.serving.export import load_model
from recsys.serving.paired import paired_cpu, ratio_of
from recsys.serving.requests import RequestBatch
from recsys.serving.scorer import ModelScorer, RequestScorer
from recsys.serving.threads import serving_threads, serving_with, torch_threads

QUICKSTART, MOVIELENS = "configs/quickstart.toml", "configs/movielens_compress.toml"
SIZES = (1, 10, 100, 1000, 4096)
POOL = 8  # distinct request batches per size, cycled through
FULL = TimingConfig(batch_sizes=SIZES, repeats=9, iters=30, warmup=5)
QUICK = TimingConfig(batch_sizes=SIZES, repeats=2, iters=5, warmup=2)


def trained_run(config_path: str, out: Path) -> ExperimentConfig:
    """The scenario's run under `out`, trained through the CLI unless its models and variants exist."""
    config = load_config(config_path, {"out_dir": str(out)})
    if not ((config.run_dir / "dlrm" / "model").is_dir() and (config.run_dir / "variants").is_dir()):
        subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", config_path, "--set", f'out_dir="{out}"'],
                       check=True)
    return config


def scorers(config: ExperimentConfig) -> dict[str, RequestScorer]:
    """The run's exported ranking models and every stored variant (the fp32 TBE baseline included)."""
    out: dict[str, RequestScorer] = {}
    for kind in ("dlrm", "logistic"):
        if (config.run_dir / kind / "model").is_dir():
            out[kind] = ModelScorer(load_model(config.run_dir / kind / "model").model)
    for folder in sorted(p for p in (config.run_dir / "variants").iterdir() if p.is_dir()):
        out[f"variant {folder.name}"] = load_variant(folder)
    return out


def request_pools(config: ExperimentConfig, shared: frozenset[str],
                  sizes: tuple[int, ...]) -> dict[int, list[RequestBatch]]:
    """POOL request batches of each size from the test split's head."""
    dataset = load_dataset(config.data, config.seed)
    pools = {}
    for size in sizes:
        batches = [b for _, b in zip(range(POOL), dataset.batches("test", size, drop_last=True))]
        pools[size] = [RequestBatch.from_batch(b, shared, candidates_per_request(size)) for b in batches]
    return pools


def side_by_side(named: dict[str, RequestScorer], pools: dict[int, list[RequestBatch]],
                 timing: TimingConfig) -> dict[str, dict[int, LatencyStats]]:
    """Both paths of every scorer, interleaved: `<name>|today` and `<name>|fast`."""
    rows: dict[int, Batch] = {id(r): r.to_batch() for pool in pools.values() for r in pool}
    runners: dict[str, Any] = {}
    for name, s in named.items():
        runners[f"{name}|today"] = lambda r, s=s: s.score(rows[id(r)])
        runners[f"{name}|fast"] = s.score_requests
    return measure(runners, {size: pool for size, pool in pools.items()}, timing)


def print_table(title: str, stats: dict[str, dict[int, LatencyStats]], names: list[str]) -> None:
    print(f"\n== {title}: p50 / p99 ms per call (rows per call; 100 = one request), both paths interleaved ==")
    head = f"{'variant':<22}{'path':<7}" + "".join(f"{f'@{b}':>16}" for b in SIZES) + f"{'rows/s@4096':>14}"
    print(head)
    for name in names:
        for path in ("today", "fast"):
            per = stats[f"{name}|{path}"]
            cells = "".join(f"{per[b].p50_ms:>8.3f}/{per[b].p99_ms:<7.3f}" for b in SIZES)
            print(f"{name:<22}{path:<7}{cells}{per[SIZES[-1]].qps:>14,.0f}")
        today, fast = stats[f"{name}|today"], stats[f"{name}|fast"]
        print(f"{'':<22}{'x':<7}" + "".join(f"{today[b].p50_ms / fast[b].p50_ms:>15.1f}x" for b in SIZES))
    base = next((n for n in names if n.endswith("fp32")), None)
    if base:
        print("serving path, p50 of the fp32 TBE baseline / the variant's (> 1: the variant is faster):")
        for name in names:
            if name != base:
                ratios = [stats[f"{base}|fast"][b].p50_ms / stats[f"{name}|fast"][b].p50_ms for b in SIZES]
                print(f"  {name:<20}" + "".join(f"{r:>15.2f}x " for r in ratios))


CPU_ROUNDS = 31  # rounds of the CPU-time comparison (--quick: 7)


def cpu_ratios(named: dict[str, RequestScorer], pools: dict[int, list[RequestBatch]],
               rounds: int) -> tuple[dict[int, dict[str, list[float]]], dict[int, dict[str, list[float]]]]:
    """Per size, the CPU time of one call (ms) in every round (recsys.serving.paired: blocks of
    calls, runners in a new random order each round): both paths of every scorer (`<name>|today`,
    `<name>|fast`), then the serving paths alone, so that the variants, compared with one another,
    run in short rounds (today's path at 4,096 rows takes ~10 ms a call) and the blocks are paired
    closely. On a shared machine the steadier comparison, and the ratios come with intervals."""
    both, fast = {}, {}
    with torch.no_grad():
        for size, pool in pools.items():
            rows: dict[int, Batch] = {id(r): r.to_batch() for r in pool}
            runners: dict[str, Any] = {}
            for name, s in named.items():
                runners[f"{name}|today"] = lambda r, s=s, rows=rows: s.score(rows[id(r)])
                runners[f"{name}|fast"] = s.score_requests
            both[size] = paired_cpu(runners, pool, rounds)
            fast[size] = paired_cpu({name: s.score_requests for name, s in named.items()}, pool, 2 * rounds,
                                    block_ms=2.5)  # twice the rounds of half the blocks: pairs closer in time
    return both, fast


def print_cpu_table(title: str, both: dict[int, dict[str, list[float]]], fast: dict[int, dict[str, list[float]]],
                    names: list[str], rounds: int) -> None:
    print(f"\n== {title}: CPU time per call, interleaved (median ms, and the ratio's median [95% interval] "
          f"over rounds) ==")
    print(f"today's path / serving path (both paths of every variant in each of {rounds} rounds):")
    print(f"{'variant':<22}" + "".join(f"{f'@{b}':>34}" for b in both))
    for name in names:
        cells = "".join(f"{statistics.median(t[f'{name}|fast']):>9.3f} ms "
                        f"{ratio_of(t[f'{name}|today'], t[f'{name}|fast'])!s:>21}" for t in both.values())
        print(f"{name:<22}{cells}")
    base = next((n for n in names if n.endswith("fp32")), None)
    if base:
        print("serving path, fp32 TBE baseline / the variant (> 1: the variant is faster; 'slower': its interval "
              f"lies below 1; the serving paths alone in each of {2 * rounds} rounds):")
        print(f"  {'':<20}" + "".join(f"{f'@{b}':>24} {'':<7}" for b in fast))
        for name in names:
            if name != base:
                cells = []
                for t in fast.values():
                    r = ratio_of(t[base], t[name])
                    cells.append(f"{r!s:>24} {r.verdict():<7}")
                print(f"  {name:<20}" + "".join(cells))


def print_a_a(named: dict[str, RequestScorer], pools: dict[int, list[RequestBatch]],
              fast: dict[int, dict[str, list[float]]]) -> None:
    """The noise floor of the variants' verdicts: the exported DLRM and the fp32 TBE baseline hold the
    same tables and layers; when they score every pooled request identically, theirs is an A/A pair."""
    base = next((n for n in named if n.endswith("fp32")), None)
    if base is None or "dlrm" not in named:
        return
    with torch.no_grad():
        same = all(torch.equal(named["dlrm"].score_requests(r), named[base].score_requests(r))
                   for pool in pools.values() for r in pool)
    if same:
        ratios = [ratio_of(t[base], t["dlrm"]) for t in fast.values()]
        print(f"A/A: dlrm and {base} score identically (same tables and layers); their ratios above, "
              f"{min(r.median for r in ratios):.3f}-{max(r.median for r in ratios):.3f}x, "
              f"{sum(r.verdict() != 'same' for r in ratios)} of {len(ratios)} sizes not 'same', are this run's noise")


def conventions(scorer: Any, request: RequestBatch, timing: TimingConfig) -> None:
    """One request through: the model's forward eager (today) and fx-traced + TorchScript (TorchRec's
    inference convention); the serving module eager (its TBEs scripted), TorchScript, frozen,
    frozen + optimize_for_inference (used), torch.compile; and the whole call as the simulator
    makes it."""
    from torchrec.fx import symbolic_trace

    from recsys.serving.fast import DotDLRM, over_layers

    dlrm = scorer.model.model
    batch = request.to_batch()
    module = DotDLRM(dlrm, scorer.path.shared, *over_layers(dlrm.over_arch)).eval()
    scripted = torch.jit.script(module)
    args = (request.dense, request.values, request.lengths, scorer.path.permutes_for(request.keys),
            request.candidates)
    runners: dict[str, Any] = {
        "model eager (today)": lambda _: dlrm(batch.dense_features, batch.sparse_features),
        "model fx+TorchScript": _traced(symbolic_trace, dlrm, batch),
        "module eager": lambda _: module(*args),
        "module TorchScript": lambda _: scripted(*args),
        "module frozen": _call(torch.jit.freeze(torch.jit.script(module)), args),
        "module frozen+optimized": _call(scorer.path.module, args),
        "module torch.compile": _compiled(module, args),
        "score_requests (used)": scorer.score_requests,
    }
    runners = {k: v for k, v in runners.items() if v is not None}
    with torch.inference_mode():
        stats = measure(runners, {request.num_candidates: [request]}, dataclasses.replace(timing, batch_sizes=(100,)))
    print(f"\n== one request ({request.num_candidates} candidates), quickstart int8 DLRM: p50 / p99 ms ==")
    for name, per in stats.items():
        s = per[request.num_candidates]
        print(f"{name:<26}{s.p50_ms:>8.3f}{s.p99_ms:>9.3f}")


def _traced(trace: Any, dlrm: torch.nn.Module, batch: Batch) -> Any:
    try:
        scripted = torch.jit.script(trace(dlrm))
    except Exception as e:  # noqa: BLE001 (reported, not raised: the bench goes on)
        print(f"fx trace + TorchScript of the model failed: {str(e).splitlines()[0][:120]}")
        return None
    return lambda _: scripted(batch.dense_features, batch.sparse_features)


def _call(module: Any, args: tuple) -> Any:
    return lambda _: module(*args)


def _compiled(module: torch.nn.Module, args: tuple) -> Any:
    compiled = torch.compile(module)
    try:
        with torch.inference_mode():
            compiled(*args)
    except Exception as e:  # noqa: BLE001
        print(f"torch.compile of the serving module failed: {str(e).splitlines()[0][:120]}")
        return None
    return lambda _: compiled(*args)


class RowsOnly:
    """A scorer reduced to `score(batch)`: the simulator then scores Batches of rows (today's path)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer, self.device = scorer, scorer.device

    def score(self, batch: Batch) -> torch.Tensor:
        return self.scorer.score(batch)

    def embedding_bytes(self) -> int:
        return self.scorer.embedding_bytes()


def simulation(config: ExperimentConfig, requests: int) -> None:
    """The quickstart's simulation stage (its arms, world and simulator config; `requests` of them)
    with today's path and with the serving path: requests/s of the whole stage."""
    from recsys.data.synthetic import world_for
    from recsys.serving.export import load_model
    from simulator.environment import Environment
    from simulator.experiment import run_experiment
    from simulator.serving import Arm, exported_arm

    assert config.simulator is not None
    world = world_for(config.data, config.seed)
    sim = dataclasses.replace(config.simulator, num_requests=requests)
    rates = {}
    for path in ("today", "fast"):
        arms = [exported_arm(load_model(config.run_dir / k / "model"), k) for k in ("dlrm", "logistic")]
        arms += [Arm(f"dlrm-{f.name}", load_variant(f)) for f in sorted((config.run_dir / "variants").iterdir())
                 if f.is_dir() and f.name != "fp32"]
        if path == "today":
            arms = [Arm(a.name, RowsOnly(a.scorer)) for a in arms]
        env = Environment.build(sim, world, config.seed, cache_dir=config.data.cache_dir)
        start = time.perf_counter()
        result = run_experiment(env, arms)
        seconds = time.perf_counter() - start
        rates[path] = result.requests / seconds
        print(f"simulation stage, {path:<5} path: {result.requests:,} requests, {len(arms)} variants "
              f"(counterfactual: {sim.counterfactual}) in {seconds:.1f} s = {rates[path]:,.0f} requests/s")
    print(f"simulation stage: {rates['fast'] / rates['today']:.1f}x the requests/s")


def load() -> str:
    """The machine's load averages (1, 5, 15 min), as `uptime` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_serving", help="where the runs are trained or reused")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="quickstart,movielens,conventions,simulation")
    parser.add_argument("--sim-requests", type=int, default=None, help="default: the quickstart config's")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of every timed call, both paths (default: the serving policy's, "
                             "recsys.serving.threads)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    threads = args.threads or serving_threads()
    timing = dataclasses.replace(QUICK if args.quick else FULL, threads=threads)
    out, parts = Path(args.out).resolve(), args.parts.split(",")
    print(f"every timed call on {threads} torch thread(s), both paths (serving policy: {serving_threads()}); "
          f"torch {torch.__version__}; {os.cpu_count()} cores, load {load()}")
    with serving_with(threads), torch_threads(threads):
        run_parts(parts, out, timing, args)
    print(f"\nload at the end: {load()}")


def run_parts(parts: list[str], out: Path, timing: TimingConfig, args: argparse.Namespace) -> None:
    quickstart = trained_run(QUICKSTART, out)
    rounds = 7 if args.quick else CPU_ROUNDS
    for part, path in (("quickstart", QUICKSTART), ("movielens", MOVIELENS)):
        if part in parts:
            config = quickstart if part == "quickstart" else trained_run(path, out)
            named = scorers(config)
            shared = next(s.path.shared for s in named.values() if getattr(s, "path", None) is not None)
            pools = request_pools(config, shared, SIZES)
            stats = side_by_side(named, pools, timing)
            print_table(f"{config.name} ({', '.join(named)}), load {load()}", stats, list(named))
            both, fast = cpu_ratios(named, pools, rounds)
            print_cpu_table(config.name, both, fast, list(named), rounds)
            print_a_a(named, pools, fast)
    if "conventions" in parts:
        int8 = load_variant(quickstart.run_dir / "variants" / "int8")
        assert int8.path is not None
        conventions(int8, request_pools(quickstart, int8.path.shared, (100,))[100][0], timing)
    if "simulation" in parts:
        assert quickstart.simulator is not None
        simulation(quickstart, args.sim_requests or (20_000 if args.quick else quickstart.simulator.num_requests))


if __name__ == "__main__":
    main()
