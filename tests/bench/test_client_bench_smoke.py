"""The client benchmark cases still run (a quick pass: figures are not asserted, only
that each case measured what it says, with its target beside it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASES = ("cspctl_send_wall", "sidecar_idle_rss", "turn_end_to_typing", "twenty_to_one")


def test_quick_client_cases_write_their_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    only = [arg for name in CASES for arg in ("--only", name)]
    r = subprocess.run([sys.executable, "-m", "tests.bench.run", "--quick", *only,
                        "--output", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    cases = doc["cases"]
    assert cases["cspctl_send_wall"]["n"] >= 3 and cases["cspctl_send_wall"]["p50_ms"] > 0
    assert cases["sidecar_idle_rss"]["rss_mib"] > 5
    assert cases["turn_end_to_typing"]["n"] >= 2
    assert cases["turn_end_to_typing"]["prompts_per_round_max"] == 1  # coalesced
    assert cases["twenty_to_one"]["wall_s"] > 0
    assert cases["twenty_to_one"]["prompts_max"] <= 2  # one alone, the rest coalesced
    for name in CASES:
        verdict = doc["targets"][name][0]
        assert verdict["met"] is not None, verdict  # the figure was there and a number
        assert f"target {verdict['target']}" in r.stdout
