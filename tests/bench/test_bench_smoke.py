"""The benchmark harness itself still runs (a quick pass; no figure is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench import cases as _cases  # noqa: F401  (registers the cases)
from tests.bench.figures import percentiles
from tests.bench.registry import CASES

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "tests.bench.run", "--quick", "--only",
                        "post_latency", "--only", "fanout", "--output", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert set(doc["cases"]) == {"post_latency", "fanout"}
    assert doc["cases"]["fanout"]["s5_n"] == 5 * doc["cases"]["fanout"]["s1_n"]
    assert "p99_ms" in doc["cases"]["post_latency"] and "p99_ms" in r.stdout


def test_unknown_case_is_refused() -> None:
    r = subprocess.run([sys.executable, "-m", "tests.bench.run", "--only", "nope"],
                       cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "unknown case" in r.stderr


def test_registry_and_percentiles() -> None:
    assert list(CASES)[:3] == ["post_latency", "throughput", "fanout"]
    figures = percentiles([0.001 * i for i in range(1, 101)])
    assert (figures["p50_ms"], figures["p90_ms"], figures["p99_ms"], figures["max_ms"]) == (
        50.0, 90.0, 99.0, 100.0)
