"""An API stand-in (``tests/tools/fake_*.py``) in a process of its own, for the real-CLI tests.

Each real agent CLI answers through a local stand-in for its vendor's API; the
tests start it, point the CLI at :attr:`StandIn.url`, and read back every
request it logged (:meth:`StandIn.requests`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def sidecar_executable() -> list[str]:
    """``csp-sidecar`` as installed next to this Python, else the module."""
    script = Path(sys.executable).with_name("csp-sidecar")
    return [str(script)] if script.exists() else [sys.executable, "-m", "csp_sidecar"]


class StandIn:
    """``python -m MODULE --log FILE``; ready once it printed ``port N``."""

    module = ""  # e.g. "tests.tools.fake_anthropic"
    log_name = "requests.jsonl"
    url_path = ""  # appended to http://127.0.0.1:PORT (e.g. "/v1")

    def __init__(self, root: Path) -> None:
        self.log = root / self.log_name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--log", str(self.log)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "port N", printed once it serves
        assert first.startswith("port "), f"{self.module} did not start: {first!r}"
        self.url = f"http://127.0.0.1:{int(first.split()[1])}{self.url_path}"

    def requests(self) -> list[dict[str, Any]]:
        """Every request it got so far, in order (one JSON line each)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
