"""The experiment's report: results.json (deterministic: same config and seed, same bytes),
report.md and report.png, each written atomically so a failed run never leaves half a file."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from recsys.atomic import write_bytes, write_text
from simulator.experiment import ExperimentResult


def result_dict(r: ExperimentResult) -> dict:
    rows = [{"variant": name, "served": int(r.served[v]),
             "mean_reward": _num(r.reward[v] / r.served[v]) if r.served[v] else None,
             "expected_reward_all_requests": _num(r.expected_all[v]),
             "prob_best": _num(r.prob_best[v]), "latency_p50_ms": _num(r.latency_p50_ms[v]),
             "latency_p99_ms": _num(r.latency_p99_ms[v]), "embedding_bytes": r.embedding_bytes[v],
             "latency_model": r.latency_models[v]} for v, name in enumerate(r.variants)]
    return {"winner": r.variants[r.winner], "stopped_early": r.stopped, "requests": r.requests,
            "impressions": r.impressions, "clicks": r.clicks, "abandoned": r.abandoned,
            "cumulative_regret": _num(r.cumulative_regret[-1]) if len(r.cumulative_regret) else None,
            "cumulative_oracle_gap": _num(r.cumulative_oracle_gap[-1]) if len(r.cumulative_oracle_gap) else None,
            "variants": rows, "calibration": r.calibration}


def write_simulation_report(r: ExperimentResult, folder: Path | str) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = result_dict(r)
    write_text(folder / "results.json", json.dumps(data, indent=1, sort_keys=True))
    write_text(folder / "report.md", _markdown(data))
    _plot(r, folder / "report.png")


def _markdown(d: dict) -> str:
    lines = [f"# Simulation: winner {d['winner']}", "",
             f"{d['requests']} requests, {d['impressions']} impressions, {d['clicks']} clicks, "
             f"{d['abandoned']} abandoned; stopped early: {d['stopped_early']}; "
             f"exact cumulative regret vs the best variant: {_fmt(d['cumulative_regret'])}; "
             f"vs each request's best variant: {_fmt(d['cumulative_oracle_gap'])}", "",
             "| variant | served | mean reward | E[reward] all requests | P(best) | p50 ms | p99 ms "
             "| embedding bytes |",
             "|---|---|---|---|---|---|---|---|"]
    for v in d["variants"]:
        lines.append(f"| {v['variant']} | {v['served']} | {_fmt(v['mean_reward'])} | "
                     f"{_fmt(v['expected_reward_all_requests'])} | {_fmt(v['prob_best'])} | "
                     f"{_fmt(v['latency_p50_ms'])} | {_fmt(v['latency_p99_ms'])} | {v['embedding_bytes']} |")
    return "\n".join(lines) + "\n\n![allocation and regret](report.png)\n"


def _plot(r: ExperimentResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for v, name in enumerate(r.variants):
        ax1.plot(r.allocation[:, v], label=name)
    ax1.set(xlabel="step", ylabel="traffic share", title="allocation")
    ax1.legend()
    ax2.plot(r.cumulative_regret, label="vs the best variant")
    ax2.plot(r.cumulative_oracle_gap, label="vs each request's best", linestyle="--")
    ax2.set(xlabel="step", ylabel="expected reward lost", title="exact cumulative regret")
    ax2.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes(path, png.getvalue())


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
