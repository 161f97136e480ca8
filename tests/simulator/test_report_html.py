"""report.html opens in a real browser (headless Chromium) with every image loaded: the verdict
first, its tables, and the plots inlined as data URIs. A broken image is caught."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from recsys.app.report import write_run_report
from simulator.experiment import ExperimentResult
from simulator.report import write_simulation_report
from simulator.verdict import verdict_of

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")
COUNT_IMAGES = ("<script>window.addEventListener('load', () => { const i = [...document.images]; "
                "document.title = 'images ' + i.length + ' broken ' + i.filter(m => m.naturalWidth === 0).length; "
                "});</script>")


def render(html: Path, tmp: Path) -> tuple[int, int, str]:
    """(images, images that did not load, the DOM) of `html` loaded in headless Chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("!!! chromium is not installed: report.html was NOT checked in a browser "
                    "(apt-get install -y chromium) !!!")
    page = tmp / "probe.html"
    page.write_text(html.read_text().replace("</body>", COUNT_IMAGES + "</body>"))
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"<title>images (\d+) broken (\d+)</title>", proc.stdout)
    assert found, proc.stdout[:2000]
    return int(found[1]), int(found[2]), proc.stdout


def _result() -> ExperimentResult:
    steps, k = 12, 3
    allocation = np.linspace([1 / 3] * k, [0.05, 0.15, 0.8], steps)
    return ExperimentResult(
        variants=["dlrm", "logistic", "dlrm-int8"], served=np.array([3000, 1000, 6000]),
        reward=np.array([360.0, 100.0, 750.0]), expected_all=np.array([0.12, 0.1, 0.125]),
        latency_p50_ms=np.array([2.0, 1.0, 1.5]), latency_p99_ms=np.array([8.0, 3.0, 6.0]),
        embedding_bytes=[400, 100, 130], impressions=50_000, clicks=1500, abandoned=3, winner=2, stopped=False,
        prob_best=np.array([0.2, 0.0, 0.8]), cumulative_regret=np.cumsum(np.full(steps, 1.5)),
        cumulative_oracle_gap=np.cumsum(np.full(steps, 2.0)), allocation=allocation, latency_models=[{}] * k,
        calibration=None)


def _simulate(run_dir: Path) -> str:
    """The simulation's report of a made-up result; its verdict's headline."""
    result = _result()
    verdict = verdict_of(result, 0.95)
    write_simulation_report(result, verdict, run_dir / "simulation", 20)
    return verdict.headline()


def _report(run_dir: Path) -> None:
    """The run's reports around the stored simulation (a run with no trained model of its own)."""
    provenance = {"device": "cpu", "world_size": 1, "threads": 2, "versions": {"torch": "x"}, "git": "abc"}
    simulation = json.loads((run_dir / "simulation" / "results.json").read_text())
    write_run_report({"name": "html", "seed": 0, "provenance": provenance, "models": {}, "simulation": simulation},
                     run_dir)


def test_report_html_loads_every_image_in_a_browser(tmp_path: Path) -> None:
    headline = _simulate(tmp_path)
    _report(tmp_path)
    html = tmp_path / "report.html"
    assert re.findall(r'<img src="(.{22})', html.read_text()) == ["data:image/png;base64,"] * 2  # inline only
    images, broken, dom = render(html, tmp_path)
    assert (images, broken) == (2, 0)  # traffic share and regret; the reward Pareto fronts
    assert headline.startswith("No decision yet: dlrm-int8 leads") and headline in dom
    assert dom.index(headline) < dom.index("Run <code>html</code>")  # the verdict first
    assert (tmp_path / "report.md").read_text().startswith(f"# `html`: {headline}\n")


def test_a_broken_image_is_caught(tmp_path: Path) -> None:
    _simulate(tmp_path)
    png = tmp_path / "simulation" / "pareto.png"
    png.write_bytes(b"not a PNG")  # inlined as it is: the browser cannot decode it
    _report(tmp_path)
    assert render(tmp_path / "report.html", tmp_path)[:2] == (2, 1)
