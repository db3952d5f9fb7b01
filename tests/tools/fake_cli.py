"""A small stand-in for an agent CLI, for tests and benchmarks.

It puts its terminal in raw mode, enables bracketed paste, draws a prompt
(``❯ ``), and records every byte it receives to ``$FAKECLI_LOG`` (one JSON
line per read, so tests can see exactly what arrived and in how many writes;
and one ``{"prompt": ...}`` line per submitted prompt).
On Enter it "thinks" for ``$FAKECLI_THINK`` seconds (printing a spinner-like
line), then answers with ``● reply: <what it was sent>`` and shows the prompt
again.  Ctrl-C clears the line; Ctrl-D on an empty line exits with status 3.

Like Claude Code, it takes ``--settings <json>`` and runs the command hooks
named there: ``UserPromptSubmit`` with ``{"prompt": ...}`` on stdin when a
prompt is submitted, ``Stop`` with ``{"last_assistant_message": ...}`` when
its reply is drawn.  So the sidecar's claude profile, hooks and all, can be
tested against it.  ``FAKECLI_NO_HOOKS=1`` makes it ignore them (a CLI whose
hooks do not fire); ``FAKECLI_REPLY=long`` answers with the 46-line markdown
reply of ``tests/tools/long_reply.py`` instead of echoing, ``FAKECLI_REPLY=untagged``
echoes without the sender tag (whose ``@names`` would route the reply on).  ``FAKECLI_START_DELAY``
seconds pass before it takes its terminal (a slow-starting CLI, which flushes
whatever was typed before it was ready).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import termios
import time
import tty

PROMPT = "❯ "


def hooks_from_argv(argv: list[str]) -> dict[str, list[str]]:
    """Claude Code's ``--settings`` hooks: event name -> shell commands."""
    if "--settings" not in argv or os.environ.get("FAKECLI_NO_HOOKS") == "1":
        return {}
    settings = json.loads(argv[argv.index("--settings") + 1])
    out: dict[str, list[str]] = {}
    for event, groups in settings.get("hooks", {}).items():
        out[event] = [h["command"] for g in groups for h in g.get("hooks", [])
                      if h.get("type") == "command"]
    return out


def run_hooks(hooks: dict[str, list[str]], event: str, payload: dict[str, object]) -> None:
    body = json.dumps({"hook_event_name": event, **payload})
    for command in hooks.get(event, []):
        subprocess.run(command, shell=True, input=body, text=True, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)


def answer(line: str, turn: int) -> str:
    if os.environ.get("FAKECLI_REPLY") == "long":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from long_reply import long_reply
        return long_reply(line, turn)
    if os.environ.get("FAKECLI_REPLY") == "untagged":  # the text alone: no @names to route
        return "reply: " + re.sub(r"^\[[^\]]*\]\s*", "", line)
    return "reply: " + line


def main() -> int:
    log_path = os.environ.get("FAKECLI_LOG")
    think = float(os.environ.get("FAKECLI_THINK", "0.3"))
    hooks = hooks_from_argv(sys.argv[1:])
    turn = 0
    fd = sys.stdin.fileno()
    time.sleep(float(os.environ.get("FAKECLI_START_DELAY", "0")))
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)  # TCSAFLUSH: what was typed before now is lost, as with real CLIs
    out = sys.stdout
    log = open(log_path, "a") if log_path else None  # noqa: SIM115
    try:
        out.write("\x1b[?2004h" + "fake agent ready\r\n" + PROMPT)
        out.flush()
        line = ""
        in_paste = False
        while True:
            data = os.read(fd, 65536)
            if not data:
                return 0
            text = data.decode("utf-8", "replace")
            if log:
                log.write(json.dumps({"t": time.time(), "data": text}) + "\n")
                log.flush()
            i = 0
            while i < len(text):
                if text.startswith("\x1b[200~", i):
                    in_paste, i = True, i + 6
                    continue
                if text.startswith("\x1b[201~", i):
                    in_paste, i = False, i + 6
                    continue
                ch = text[i]
                i += 1
                if in_paste:
                    line += "\n" if ch == "\r" else ch
                    out.write("\r\n" if ch == "\r" else ch)
                elif ch == "\r":
                    out.write("\r\n")
                    if line.strip() == "exit":
                        return 0
                    if line:
                        turn += 1
                        if log:  # what it took as a prompt, apart from the raw reads
                            log.write(json.dumps({"t": time.time(), "prompt": line}) + "\n")
                            log.flush()
                        run_hooks(hooks, "UserPromptSubmit", {"prompt": line})
                        out.write("✻ Thinking… (esc to interrupt)\r")
                        out.flush()
                        time.sleep(think)
                        out.write("\x1b[2K")
                        reply = answer(line, turn)
                        for n, part in enumerate(reply.split("\n")):
                            out.write(("● " if n == 0 else "  ") + part + "\r\n")
                        out.flush()
                        if log:
                            log.write(json.dumps({"t": time.time(), "turn_end": turn}) + "\n")
                            log.flush()
                        run_hooks(hooks, "Stop", {"last_assistant_message": reply})
                    line = ""
                    out.write(PROMPT)
                elif ch == "\x03":
                    line = ""
                    out.write("^C\r\n" + PROMPT)
                elif ch == "\x04" and not line:
                    return 3
                elif ch == "\x7f":
                    if line:
                        line = line[:-1]
                        out.write("\b \b")
                elif ch.isprintable():
                    line += ch
                    out.write(ch)
            out.flush()
    finally:
        out.write("\x1b[?2004l")
        out.flush()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if log:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
