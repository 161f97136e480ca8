"""The experiment's report: results.json (deterministic: same config and seed, same bytes; with
the verdict), report.md (the verdict first), report.png (traffic share over time and cumulative
regret) and pareto.png (expected reward vs bytes and vs p99, the chosen or leading variant marked),
each written atomically so a failed run never leaves half a file."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from compression.report import VariantRow, plot
from recsys.atomic import write_bytes, write_text
from simulator.experiment import ExperimentResult
from simulator.verdict import Verdict

PLOTS = {"report.png": "traffic share over time and cumulative regret",
         "pareto.png": "expected reward vs embedding bytes and vs p99 latency, Pareto front ringed"}


def result_dict(r: ExperimentResult, verdict: Verdict, log: dict | None = None) -> dict:
    """results.json's content; `log`: the summary of the logged impressions written with it."""
    rows = [{"variant": name, "served": int(r.served[v]),
             "mean_reward": _num(r.reward[v] / r.served[v]) if r.served[v] else None,
             "expected_reward_all_requests": _num(r.expected_all[v]),
             "prob_best": _num(r.prob_best[v]), "latency_p50_ms": _num(r.latency_p50_ms[v]),
             "latency_p99_ms": _num(r.latency_p99_ms[v]), "embedding_bytes": r.embedding_bytes[v],
             "latency_model": r.latency_models[v]} for v, name in enumerate(r.variants)]
    return {"verdict": verdict.to_dict(), "leader": r.variants[r.winner], "stopped_early": r.stopped,
            "requests": r.requests,
            "impressions": r.impressions, "clicks": r.clicks, "abandoned": r.abandoned,
            "cumulative_regret": _num(r.cumulative_regret[-1]) if len(r.cumulative_regret) else None,
            "cumulative_oracle_gap": _num(r.cumulative_oracle_gap[-1]) if len(r.cumulative_oracle_gap) else None,
            "variants": rows, "calibration": r.calibration, **({"log": log} if log else {})}


def write_simulation_report(r: ExperimentResult, verdict: Verdict, folder: Path | str, serving_batch: int,
                            log: dict | None = None) -> dict:
    """results.json, report.md and the plots; returns results.json's content. `serving_batch`:
    rows scored per request (its candidates); `log`: as for result_dict."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = result_dict(r, verdict, log)
    write_text(folder / "results.json", json.dumps(data, indent=1, sort_keys=True))
    write_text(folder / "report.md", _markdown(data, verdict))
    _plot(r, folder / "report.png")
    plot(verdict_rows(r, verdict, serving_batch), folder / "pareto.png", "simulation: " + verdict.headline())
    return data


def verdict_rows(r: ExperimentResult, verdict: Verdict, serving_batch: int) -> list[VariantRow]:
    """The arms as rows of the variants table (compression.report.VariantRow): expected reward over
    all requests (the realised mean where not counterfactual) against the control's, the
    simulation's latency; the chosen variant (or the leader) marked in its name."""
    control = r.variants.index(verdict.control)
    value = np.where(np.isfinite(r.expected_all), r.expected_all, r.reward / np.maximum(r.served, 1))
    size = r.embedding_bytes
    return [VariantRow(marked(name, verdict), size[v], size[control] / max(size[v], 1), "E[reward]",
                       float(value[v]), float(value[v] - value[control]), float(r.latency_p50_ms[v]),
                       float(r.latency_p99_ms[v]), float("nan"), serving_batch)
            for v, name in enumerate(r.variants) if r.served[v] > 0]


def marked(name: str, verdict: Verdict) -> str:
    """`name`, with "[chosen]" or "[leader]" appended if the verdict names it so."""
    if name == verdict.chosen:
        return f"{name} [chosen]"
    return f"{name} [leader]" if name == verdict.leader and verdict.chosen is None else name


def _markdown(d: dict, verdict: Verdict) -> str:
    header, rows = verdict.table()
    lines = [f"# Simulation: {verdict.headline()}", "", "| " + " | ".join(header) + " |",
             "|---" * len(header) + "|", *("| " + " | ".join(row) + " |" for row in rows), "",
             *verdict.reasons(), "",
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
    if d.get("log"):
        log = d["log"]
        lines += ["", f"Logged impressions: {log['impressions']} from {log['requests']} requests served by "
                  f"{log['variant']} (epsilon {log['epsilon']:g}), with propensities, in log/."]
    lines.append("")
    lines += [f"![{alt}]({name})" for name, alt in PLOTS.items()]
    return "\n".join(lines) + "\n"


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
