"""The experiment's report: results.json (deterministic: same config and seed, same bytes; with
the verdict and the rule's checks over time), report.md (the verdict first), decision.png (P(chosen)
and traffic share at each check of the rule), report.png (cumulative regret and each variant's
latency distribution) and pareto.png (expected reward vs bytes and vs p99, the chosen or leading
variant marked), each written atomically so a failed run never leaves half a file."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from compression.latency import SERVING_CANDIDATES
from compression.report import VariantRow, plot
from recsys.atomic import write_bytes, write_text
from recsys.serving.paired import ratio_of
from simulator.experiment import QUANTILES, ExperimentResult
from simulator.verdict import Verdict

PLOTS = {"decision.png": "P(chosen) and traffic share at each check of the decision rule",
         "report.png": "cumulative regret and each variant's latency distribution",
         "pareto.png": "expected reward vs embedding bytes and vs p99 latency, Pareto front ringed, "
                       "the chosen (or leading) variant marked"}


def result_dict(r: ExperimentResult, verdict: Verdict, log: dict | None = None) -> dict:
    """results.json's content; `log`: the summary of the logged impressions written with it."""
    rows = [{"variant": name, "served": int(r.served[v]),
             "mean_reward": _num(r.reward[v] / r.served[v]) if r.served[v] else None,
             "expected_reward_all_requests": _num(r.expected_all[v]),
             "p_chosen": _num(r.p_chosen[v]), "latency_p50_ms": _num(r.latency_p50_ms[v]),
             "latency_p99_ms": _num(r.latency_p99_ms[v]), "embedding_bytes": r.embedding_bytes[v],
             "latency_quantiles_ms": dict(zip(map(str, QUANTILES), map(_num, r.latency_quantiles[v]))),
             "latency_model": r.latency_models[v]} for v, name in enumerate(r.variants)]
    checks = {"requests": r.checks.tolist(), "p_chosen": r.check_chosen.tolist(), "shares": r.check_shares.tolist()}
    return {"verdict": verdict.to_dict(), "decision": r.decision.to_dict(), "leader": r.variants[r.winner],
            "decided": r.stopped, "requests": r.requests, "checks": checks,
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
    _plot_decision(r, folder / "decision.png")
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
             f"{d['abandoned']} abandoned; decided: {d['decided']}; "
             f"exact cumulative regret vs the best variant: {_fmt(d['cumulative_regret'])}; "
             f"vs each request's best variant: {_fmt(d['cumulative_oracle_gap'])}", "",
             *latency_story(d["variants"], verdict.control),
             "| variant | served | mean reward | E[reward] all requests | P(chosen) | p50 ms | p99 ms "
             "| embedding bytes |",
             "|---|---|---|---|---|---|---|---|"]
    for v in d["variants"]:
        lines.append(f"| {v['variant']} | {v['served']} | {_fmt(v['mean_reward'])} | "
                     f"{_fmt(v['expected_reward_all_requests'])} | {_fmt(v['p_chosen'])} | "
                     f"{_fmt(v['latency_p50_ms'])} | {_fmt(v['latency_p99_ms'])} | {v['embedding_bytes']} |")
    if d.get("log"):
        log = d["log"]
        lines += ["", f"Logged impressions: {log['impressions']} from {log['requests']} requests served by "
                  f"{log['variant']} (epsilon {log['epsilon']:g}), with propensities, in log/."]
    lines.append("")
    lines += [f"![{alt}]({name})" for name, alt in PLOTS.items()]
    return "\n".join(lines) + "\n"


def latency_story(variants: list[dict], control: str) -> list[str]:
    """What the simulation's latencies time (paragraphs ending in a blank line; none when no variant
    was timed here) and, for each variant slower than the control at one request (`_slower`), whether
    its fixed per-call cost is why (the intercept and slope of p50 against requests per call)."""
    timed = {v["variant"]: v["latency_model"]["timing"] for v in variants if "timing" in v.get("latency_model", {})}
    if not timed:
        return []
    first = next(iter(timed.values()))
    same = (f"the variants table's serving-batch column times {SERVING_CANDIDATES} candidates instead"
            if first["candidates"] != SERVING_CANDIDATES else
            "the same thing the variants table's serving-batch column times")
    out = [f"Latency: each variant's p50 and p99 were timed on its serving path with the variants table's "
           f"measurement (compression.latency.measure), {first['how']}: {same}; requests draw from a lognormal "
           "with those p50 and p99.", ""]
    base = timed.get(control)
    for name, t in timed.items():
        if base is not None and name != control:
            out += _slower(name, t, control, base)
    return out


def _slower(name: str, t: dict, control: str, base: dict) -> list[str]:
    """Why `name` is slower than `control` at one request, where it is: by paired CPU time when both
    have its rounds (a higher p50 that the rounds do not tell from the control's is said to be
    noise), else by p50."""
    ratio = ratio_of(base["cpu_ms"], t["cpu_ms"]) if t.get("cpu_ms") and base.get("cpu_ms") else None
    higher = t["p50_ms"] > base["p50_ms"]
    if ratio is not None and ratio.verdict() != "slower":
        return [f"{name}'s p50 is above {control}'s at one request ({t['p50_ms']:.3f} vs {base['p50_ms']:.3f} ms), "
                f"but paired CPU time does not tell them apart ({control}'s over {name}'s: {ratio}): noise.", ""] \
            if higher else []
    if ratio is None and not higher:
        return []
    slower = (f"{name} is slower than {control} at one request (p50 {t['p50_ms']:.3f} vs {base['p50_ms']:.3f} ms"
              + (f"; paired CPU time, {control}'s over {name}'s: {ratio}" if ratio is not None else "") + ")")
    parts = (f"per-call overhead {t['overhead_ms']:.3f} vs {base['overhead_ms']:.3f} ms, per request of "
             f"{t['candidates']} candidates {t['per_request_ms']:.3f} vs {base['per_request_ms']:.3f} ms, from "
             "the p50 at 1 and 10 requests per call")
    if t["overhead_ms"] > base["overhead_ms"] and t["per_request_ms"] <= base["per_request_ms"]:
        why = ("its fixed cost per call is why: each request costs it no more, so at larger batches it is as "
               "fast or faster")
    elif t["overhead_ms"] > base["overhead_ms"]:
        why = "it costs more per call and per request"
    else:
        why = "its cost per request is higher (the fixed cost per call is not why)"
    return [f"{slower}: {why} ({parts}).", ""]


def _plot_decision(r: ExperimentResult, path: Path) -> None:
    """P(chosen) and the policy's traffic split at each check of the rule, against requests."""
    plt, fig, (ax1, ax2) = _figure()
    what = "P(best)" if r.rule.objective == "reward" else "P(chosen)"
    for v, name in enumerate(r.variants):
        ax1.plot(r.checks, r.check_chosen[:, v], label=name, marker=".")
        ax2.plot(r.checks, r.check_shares[:, v], label=name, marker=".")
    ax1.axhline(r.rule.confidence, color="grey", linestyle=":", label=f"confidence {r.rule.confidence:g}")
    ax1.set(xlabel="requests", ylabel=what, title=f"{what} under the decision rule", ylim=(-0.02, 1.02))
    ax2.set(xlabel="requests", ylabel="traffic share", title="the policy's split", ylim=(-0.02, 1.02))
    ax1.legend(fontsize=8)
    _save(plt, fig, path)


def _plot(r: ExperimentResult, path: Path) -> None:
    """Cumulative regret against requests (every step serves as many), and each variant's latency
    quantiles (a box from the 5th to the 95th percentile, whiskers to the 1st and 99th, the median
    line; the SLO dashed)."""
    plt, fig, (ax1, ax2) = _figure()
    steps = np.arange(1, len(r.cumulative_regret) + 1) * r.requests / max(len(r.cumulative_regret), 1)
    ax1.plot(steps, r.cumulative_regret, label="vs the best variant")
    ax1.plot(steps, r.cumulative_oracle_gap, label="vs each request's best", linestyle="--")
    ax1.set(xlabel="requests", ylabel="expected clicks lost", title="exact cumulative regret")
    ax1.legend()
    index = {q: i for i, q in enumerate(QUANTILES)}
    stats = [{"label": name, "whislo": q[index[0.01]], "q1": q[index[0.05]], "med": q[index[0.5]],
              "q3": q[index[0.95]], "whishi": q[index[0.99]], "fliers": []}
             for name, q in zip(r.variants, r.latency_quantiles) if np.isfinite(q).all()]
    if stats:
        ax2.bxp(stats, orientation="horizontal", showfliers=False)
    if r.rule.slo_p99_ms is not None:
        ax2.axvline(r.rule.slo_p99_ms, color="tab:red", linestyle="--", label=f"SLO p99 {r.rule.slo_p99_ms:g} ms")
        ax2.legend(fontsize=8)
    ax2.set(xlabel="latency ms (box 5-95%, whiskers 1-99%)", title="latency of the requests each served")
    _save(plt, fig, path)


def _figure() -> tuple[Any, Any, Any]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    return plt, fig, axes


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes(path, png.getvalue())


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
