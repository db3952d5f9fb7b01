"""Known agent CLIs: their usual command, the sidecar profile, and their risky flags.

The flags that switch off an agent's own permission prompts are listed so that
``cspctl agents add --skip-permissions`` can offer them by name; they are never
added to a command unless the person asks for them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    command: tuple[str, ...]
    profile: str
    skip_permissions: tuple[str, ...]
    install_hint: str

    @property
    def executable(self) -> str:
        return self.command[0]


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("claude", "Claude Code", ("claude",), "claude",
           ("--dangerously-skip-permissions",), "npm install -g @anthropic-ai/claude-code"),
    Preset("codex", "Codex", ("codex",), "codex",
           ("--dangerously-bypass-approvals-and-sandbox",), "npm install -g @openai/codex"),
    Preset("gemini", "Gemini CLI", ("gemini",), "gemini",
           ("--yolo",), "npm install -g @google/gemini-cli"),
    Preset("aider", "aider", ("aider",), "aider",
           ("--yes-always",), "pipx install aider-chat"),
)}


def preset_for_command(command: list[str]) -> Preset | None:
    """The preset whose executable this command runs, if any (by basename)."""
    if not command:
        return None
    base = command[0].rsplit("/", 1)[-1]
    return next((p for p in PRESETS.values() if p.executable == base), None)


def installed() -> list[Preset]:
    """The presets whose executable is on ``PATH``, in a stable order."""
    return [p for p in PRESETS.values() if shutil.which(p.executable)]
