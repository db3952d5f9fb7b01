"""The long, realistic markdown reply every API stand-in answers with.

Real agents answer with headings, quotes, nested bullets, tables, code and
paragraphs wider than any pane; a one-line stand-in hides every capture bug.
``long_reply(prompt, turn)`` is deterministic, so a test can check that the
chat holds the reply word for word.  It has more than 40 lines, a table, a
block quote, a fenced code block, lines longer than 200 characters, and one
line that quotes the prompt (capture must keep it: it is not the prompt's echo).
"""

from __future__ import annotations

QUOTE_MARK = "You asked: "


def first_line(prompt: str) -> str:
    for line in prompt.splitlines():
        if line.strip():
            return line.strip()
    return ""


def long_reply(prompt: str, turn: int = 1) -> str:
    """A 46-line markdown reply to ``prompt`` for answer number ``turn``."""
    asked = first_line(prompt)
    para = (f"Turn {turn} paragraph: this sentence is deliberately long so that it runs past "
            "the right edge of a narrow pane and past a wide one too, carrying paths such as "
            "/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe and "
            "sidecar/csp_sidecar/delivery.py without a single break, because a terminal wraps "
            "it and capture must join the pieces again into one line of text.")
    lines = [
        f"# Review notes, turn {turn}",
        "",
        f"{QUOTE_MARK}{asked}",
        "",
        "> Quoted guidance: keep the terminal untouched,",
        "> and never type into a line the human is writing.",
        "",
        "## Findings",
        "",
        "- The delivery gate holds while a menu is open",
        "  - nested: the permission prompt counts as a menu",
        "  - nested: an editor in the foreground counts too",
        "- Replies are shared once, when the turn ends",
        "  1. ordered child one",
        "  2. ordered child two",
        "",
        "| Component | State | Notes |",
        "|-----------|-------|-------|",
        f"| gateway | ok | turn {turn} |",
        "| sidecar | busy | coalesces queued messages |",
        "| hooks | wired | per run, never in the user's files |",
        "",
        "```python",
        "def deliver(message: str) -> bool:",
        "    if not safe_now():",
        "        return False  # wait for the gate",
        "    return type_in(message)",
        "```",
        "",
        para,
        "",
        "Second paragraph with `inline code`, **bold** and _emphasis_ that stays one line.",
        "A line with trailing context: see https://example.invalid/docs/csp#delivery for more.",
        "",
        "### Steps",
        "",
        "1. Read the issue",
        "2. Write the test first",
        "3. Make it pass against the real CLI",
        "",
        "Indented block:",
        "",
        "    four spaces of indentation are part of the text",
        "        eight spaces too",
        "",
        f"End of turn {turn}: 46 lines in all.",
    ]
    assert len(lines) == 46, len(lines)
    return "\n".join(lines)
