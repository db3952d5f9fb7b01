"""The scale cases of issue 11 still run (a quick pass, tiny sizes; no figure is asserted
against its target), and every target is printed beside its figure and judged in the
results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.registry import Target

REPO = Path(__file__).resolve().parents[2]
SCALE = ["gateway_idle", "cold_start", "durable_rate", "one_agent", "fanout_50", "fanout_200"]


def test_quick_scale_cases_write_figures_and_verdicts(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    only = [arg for name in SCALE for arg in ("--only", name)]
    r = subprocess.run([sys.executable, "-m", "tests.bench.run", "--quick", *only,
                        "--output", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    cases = doc["cases"]
    assert set(cases) == set(SCALE)
    assert doc["machine"]["python"] and doc["machine"]["cpus"]
    # real sidecars around the stand-in: every agent got every message
    assert cases["fanout_200"]["n"] == cases["fanout_200"]["agents"] * cases["fanout_200"][
        "rounds"]
    assert cases["fanout_50"]["n"] == cases["fanout_50"]["agents"] * cases["fanout_50"]["rounds"]
    for name in ("fanout_50", "fanout_200"):  # the window's CPU, counted per process group
        fanout = cases[name]
        assert fanout["window_cpu_ms_sidecars"] > 0 and fanout["window_cpu_ms_gateway"] > 0
        assert fanout["window_cpu_ms_total"] >= fanout["window_cpu_ms_sidecars"]
        assert fanout["window_cpu_floor_ms"] > 0 and fanout["last_paste_mean_ms"] > 0
    assert cases["one_agent"]["n"] >= 1 and cases["cold_start"]["n"] >= 1
    assert cases["one_agent"]["cpu_ms_gateway"] > 0 and cases["one_agent"]["cpu_ms_sidecar"] > 0
    assert cases["durable_rate"]["batch_messages"] > 0
    assert cases["gateway_idle"]["idle_rss_mib"] > 0
    verdicts = {(name, v["figure"]): v for name, vs in doc["targets"].items() for v in vs}
    assert ("durable_rate", "batch_msgs_per_s") in verdicts
    assert all(v["met"] in (True, False) for v in verdicts.values())
    for name in SCALE:  # printed beside the figure, ok or MISS
        assert f"{name}:" in r.stdout
    assert "target <= 25" in r.stdout and "target >= 20000" in r.stdout


def test_targets_judge_their_figures() -> None:
    at_most, at_least = Target("p99_ms", 25), Target("msgs_per_s", 5000, "min")
    assert at_most.met(25) is True and at_most.met(25.1) is False
    assert at_least.met(5000) is True and at_least.met(4999.9) is False
    assert at_most.met("n/a") is None and at_most.met(None) is None
    assert at_most.verdict({"p99_ms": 31.0}) == {"figure": "p99_ms", "value": 31.0,
                                                 "target": "<= 25", "met": False}
