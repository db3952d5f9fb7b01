"""Print about N bytes (argv[1]) of coloured, TUI-like text, then exit.

Lines of short words in changing colours with a box-drawing separator and a
bullet, the way agent CLIs and ``ls --color`` print: a harder case for the
sidecar's screen model than plain ASCII.
"""

from __future__ import annotations

import sys

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = sys.stdout.buffer
    written, n = 0, 0
    while written < total:
        words = " ".join(f"\x1b[{31 + (n + k) % 7}m{w}\x1b[0m" for k, w in enumerate(WORDS))
        line = f"● {n:6d} │ {words} │ done\n".encode()
        out.write(line)
        written += len(line)
        n += 1
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
