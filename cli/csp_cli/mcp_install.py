"""``cspctl mcp install``: register csp with a CLI's own configuration, its own way.

Each CLI has a documented command that edits its configuration (``claude mcp
add``, ``codex mcp add``, ``gemini mcp add``); running it, rather than writing
their files ourselves, keeps their format and their locking theirs.  The server
registered is this ``cspctl``, by absolute path (an agent CLI's PATH may differ).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from csp_core.errors import ConfigError, CspError

SERVER_NAME = "csp"


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    # a removal of something not registered is not a failure
    missing_ok: bool = False

    def shell(self) -> str:
        return shlex.join(self.argv)


def server_command() -> list[str]:
    """How an agent CLI starts csp's MCP server: this installation's ``cspctl mcp``."""
    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if here is not None and here.name == "cspctl" and here.is_file():
        return [str(here), "mcp"]
    found = shutil.which("cspctl")
    if found:
        return [str(Path(found).resolve()), "mcp"]
    return [sys.executable, "-m", "csp_cli", "mcp"]


def plan(cli: str, *, remove: bool = False) -> list[Step]:
    """The commands that (un)register csp with ``cli``."""
    server = server_command()
    if cli == "claude":
        if remove:
            return [Step(("claude", "mcp", "remove", "--scope", "user", SERVER_NAME), True)]
        return [Step(("claude", "mcp", "remove", "--scope", "user", SERVER_NAME), True),
                Step(("claude", "mcp", "add", "--scope", "user", SERVER_NAME, "--", *server))]
    if cli == "codex":
        if remove:
            return [Step(("codex", "mcp", "remove", SERVER_NAME), True)]
        return [Step(("codex", "mcp", "remove", SERVER_NAME), True),
                Step(("codex", "mcp", "add", SERVER_NAME, "--", *server))]
    if cli == "gemini":
        if remove:
            return [Step(("gemini", "mcp", "remove", "--scope", "user", SERVER_NAME), True)]
        return [Step(("gemini", "mcp", "remove", "--scope", "user", SERVER_NAME), True),
                Step(("gemini", "mcp", "add", "--scope", "user", SERVER_NAME, *server))]
    raise ConfigError(f"unknown CLI {cli!r}: use claude, codex or gemini")


def run_plan(steps: list[Step]) -> str:
    """Run the steps in order; a failing one (but a tolerated removal) stops with its output."""
    done = []
    for step in steps:
        if shutil.which(step.argv[0]) is None:
            raise ConfigError(f"{step.argv[0]} is not installed (not on PATH)")
        try:
            r = subprocess.run(step.argv, capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CspError(f"{step.shell()}: {exc}") from None
        if r.returncode != 0 and not step.missing_ok:
            why = (r.stderr or r.stdout).strip().splitlines()
            raise CspError(f"{step.shell()} failed ({r.returncode}): "
                           f"{why[-1] if why else 'no output'}")
        done.append(step.shell())
    return "ran:\n  " + "\n  ".join(done)
