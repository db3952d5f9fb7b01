"""Entry point of ``csp-sidecar`` (not built yet)."""

from __future__ import annotations

import sys


def main() -> None:
    print("csp-sidecar: not built yet", file=sys.stderr)
    sys.exit(1)
