"""A line-oriented agent CLI without hooks that answers in markdown: capture's stand-in.

Run on a PTY (``python -m tests.tools.markdown_cli [--redraw]``), it prints a
banner and a ``> `` prompt, echoes what is typed (bracketed pastes included),
and on Enter shows a spinner redrawn in place (cursor up, erase line), then
answers with :func:`tests.tools.long_reply.long_reply` drawn line by line with
CR LF, long lines left to the terminal to wrap at the pane's width, and shows
its prompt again.  With ``--redraw`` it answers a resize (SIGWINCH) as Ink-based
CLIs do: it clears the screen and draws the whole conversation again.

Unit tests use the same bytes without a PTY: :func:`banner`, :func:`turn` and
:func:`redraw` return what the CLI writes.
"""

from __future__ import annotations

import os
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable
from types import FrameType

from tests.tools.long_reply import long_reply

PROMPT = "> "
BANNER = "markdown-cli 1.0: a stand-in agent that answers every prompt in markdown"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
CLEAR = "\x1b[2J\x1b[H"


def banner() -> str:
    """What the CLI prints as it starts: its banner, a blank line, its prompt."""
    return BANNER + "\r\n\r\n" + PROMPT


def frame(number: int, width: int = 80) -> str:
    """The spinner's line, cut to the pane's ``width`` as spinners are (one row)."""
    text = f"{SPINNER[number % len(SPINNER)]} thinking... (esc to interrupt)"
    return text[:max(1, width - 1)]


def spinner(frames: int = 4, width: int = 80) -> str:
    """A spinner line redrawn in place ``frames`` times, then erased for the reply."""
    out = [("\x1b[1A\r\x1b[2K" if i else "") + frame(i, width) + "\r\n" for i in range(frames)]
    return "".join(out) + ("\x1b[1A\r\x1b[2K" if frames else "")


def reply(prompt: str, number: int) -> str:
    """The answer to turn ``number``, then a blank line and the prompt again."""
    return long_reply(prompt, number).replace("\n", "\r\n") + "\r\n\r\n" + PROMPT


def turn(prompt: str, number: int, frames: int = 4, width: int = 80) -> str:
    """One whole turn as the terminal gets it: the echo of the typed prompt (after
    the prompt already on screen), Enter, the spinner, the reply."""
    echo = prompt.replace("\n", "\r\n")
    return echo + "\r\n" + spinner(frames, width) + reply(prompt, number)


def redraw(prompts: list[str]) -> str:
    """A full clear and the whole conversation drawn again (``--redraw`` on a resize)."""
    body = banner()
    for number, prompt in enumerate(prompts, 1):
        body += prompt.replace("\n", "\r\n") + "\r\n" + reply(prompt, number)
    return CLEAR + body


def _answer(line: str, prompts: list[str], write: Callable[[str], None]) -> None:
    """Think for ``$MDCLI_THINK`` seconds (a spinner frame every 0.1 s), then answer."""
    prompts.append(line)
    width = os.get_terminal_size(1).columns
    write("\r\n")
    for i in range(max(1, round(float(os.environ.get("MDCLI_THINK", "0.5")) / 0.1))):
        write(("\x1b[1A\r\x1b[2K" if i else "") + frame(i, width) + "\r\n")
        time.sleep(0.1)
    write("\x1b[1A\r\x1b[2K" + reply(line, len(prompts)))


def _key(line: str, ch: str, pasting: bool, prompts: list[str],
         write: Callable[[str], None]) -> str:
    """Echo one typed character; Enter (outside a paste) sends the line."""
    if ch == "\r" and not pasting:
        if line.strip():
            _answer(line, prompts, write)
        else:
            write("\r\n" + PROMPT)
        return ""
    if ch in "\r\n":
        write("\r\n")
        return line + "\n"
    if ch == "\x7f":
        if line:
            write("\b \b")
        return line[:-1]
    if ch.isprintable():
        write(ch)
        return line + ch
    return line


def main() -> int:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    prompts: list[str] = []

    def write(text: str) -> None:
        os.write(1, text.encode())

    def on_resize(_signum: int, _frame: FrameType | None) -> None:
        write(redraw(prompts))

    if "--redraw" in sys.argv[1:]:
        signal.signal(signal.SIGWINCH, on_resize)
    write("\x1b[?2004h" + banner())
    line, pasting = "", False
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not data or (b"\x04" in data and not line):
                return 0
            text, pos = data.decode("utf-8", "replace"), 0
            while pos < len(text):
                if text.startswith(("\x1b[200~", "\x1b[201~"), pos):
                    pasting, pos = text[pos + 4] == "0", pos + 6
                    continue
                line = _key(line, text[pos], pasting, prompts, write)
                pos += 1
    finally:
        write("\x1b[?2004l")
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    sys.exit(main())
