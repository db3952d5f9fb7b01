"""The sidecar's benchmark cases still run (a quick pass; no figure is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_sidecar_cases_write_their_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "tests.bench.run", "--quick",
                        "--only", "sidecar_echo", "--only", "sidecar_passthrough",
                        "--output", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    cases = json.loads(out.read_text())["cases"]
    assert cases["sidecar_echo"]["sidecar_n"] == cases["sidecar_echo"]["direct_n"] == 30
    passthrough = cases["sidecar_passthrough"]
    assert passthrough["base64_bytes"] > 300_000 and passthrough["ansi_bytes"] > 300_000
    assert passthrough["base64_sidecar_mb_per_s"] > 0
    assert "sidecar_p99_ms" in r.stdout
