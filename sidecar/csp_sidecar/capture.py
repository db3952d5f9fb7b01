"""Turning what settles on the agent's screen into clean chat text.

At each quiet point (no output for ``capture_quiet_ms``) the screen is
compared with the previous quiet point.  Lines that are new, including those
that scrolled off the top in between, and that sit above the cursor (the
input area and footers of TUIs live at and below it) are candidates.  Then
the CLI's chrome (prompts, rules, footers, spinners: profile patterns), the
echo of what was just injected and of what the human typed are dropped, reply
markers (``● ``) are stripped, and the rest is chunked at line boundaries.
"""

from __future__ import annotations

import difflib
import re

from .profiles import Profile

SPINNER = re.compile(r"^\s*[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏⣾⣽⣻⢿⡿⣟⣯⣷|/\\-]\s")


def _norm(line: str) -> str:
    return " ".join(line.split())


class Capture:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.previous: list[str] = []
        self.echoes: list[str] = []  # normalised lines we typed in ourselves

    def expect_echo(self, text: str) -> None:
        """Remember text the agent will echo, so it is not shared as its output."""
        for line in text.splitlines():
            n = _norm(line)
            if n:
                self.echoes.append(n)
        del self.echoes[:-200]

    def reset(self, lines: list[str]) -> None:
        self.previous = lines

    def settle(self, scrolled: list[str], lines: list[str], cursor_row: int) -> list[str]:
        """New settled lines since the last call, filtered; updates the baseline."""
        above = lines[:cursor_row]
        current = scrolled + above
        new: list[str] = []
        matcher = difflib.SequenceMatcher(a=self.previous, b=current, autojunk=False)
        for op, _, _, j1, j2 in matcher.get_opcodes():
            if op in ("insert", "replace"):
                new.extend(current[j1:j2])
        self.previous = above
        return [line for line in (self._clean(x) for x in new) if line is not None]

    def _clean(self, line: str) -> str | None:
        for marker in self.profile.reply_markers:
            if line.lstrip().startswith(marker):
                line = line.lstrip()[len(marker):]
                break
        if not line.strip():
            return ""
        if any(p.search(line) for p in self.profile.chrome_patterns):
            return None
        if SPINNER.match(line):
            return None
        n = _norm(line)
        if any(n == e or (len(n) > 12 and n in e) for e in self.echoes):
            return None
        return line.rstrip()

    def chunks(self, lines: list[str]) -> list[str]:
        """Join lines into messages of at most ``chunk_max_chars``, at line boundaries."""
        text = "\n".join(lines)
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
        if not text.strip():
            return []
        out: list[str] = []
        cap = self.profile.chunk_max_chars
        current = ""
        for line in text.split("\n"):
            while len(line) > cap:  # a single huge line: cut it
                if current:
                    out.append(current)
                    current = ""
                out.append(line[:cap])
                line = line[cap:]
            candidate = f"{current}\n{line}" if current else line
            if len(candidate) > cap:
                out.append(current)
                current = line
            else:
                current = candidate
        if current.strip():
            out.append(current)
        return [c.strip("\n") for c in out if c.strip()]
