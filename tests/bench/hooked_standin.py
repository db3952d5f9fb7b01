"""``python hooked_standin.py --settings JSON``: a stand-in agent CLI whose hooks say its turns.

For the client benchmark (``client_cases``): like Claude Code it takes the
``--settings`` JSON the sidecar's claude profile passes and reports its turns
to the sidecar, but it sends each hook's frame itself, from this process, the
moment the event happens (no hook program is started): so a turn's end, as
the CLI's hook says it, is a timestamp here, and what the benchmark measures
after it is the sidecar's part alone.

It takes its terminal in raw mode, turns bracketed paste on, draws ``❯ `` and
reads.  Each read, submitted prompt and turn end is one JSON line in
``$STANDIN_LOG`` with ``time.monotonic()``; a prompt is answered after
``$STANDIN_THINK`` seconds (while it "thinks" it does not read, as a busy CLI).
Ctrl-D ends it.  Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import termios
import time
import tty

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
MAGIC = b"CSPHOOK1 "


def hook_targets(argv: list[str]) -> dict[str, tuple[str, str]]:
    """Event -> (socket path, label) from the csp-hook commands in ``--settings``."""
    if "--settings" not in argv:
        return {}
    settings = json.loads(argv[argv.index("--settings") + 1])
    out: dict[str, tuple[str, str]] = {}
    for event, groups in settings.get("hooks", {}).items():
        for group in groups:
            for hook in group.get("hooks", []):
                words = hook.get("command", "").split()
                if "--socket" in words:
                    out[event] = (words[words.index("--socket") + 1].strip("'\""), event)
    return out


def send_hook(targets: dict[str, tuple[str, str]], event: str, payload: dict[str, str]) -> None:
    if event not in targets:
        return
    path, label = targets[event]
    body = json.dumps({"hook_event_name": event, "session_id": "standin", **payload})
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.sendall(MAGIC + label.encode() + b"\n" + body.encode())
    except OSError:
        pass  # as csp-hook: a missing sidecar never stops the CLI


def main() -> int:
    targets = hook_targets(sys.argv[1:])
    think = float(os.environ.get("STANDIN_THINK", "0.05"))
    log = open(os.environ["STANDIN_LOG"], "a")  # noqa: SIM115

    def record(**fields: object) -> None:
        log.write(json.dumps({"t": time.monotonic(), **fields}) + "\n")
        log.flush()

    saved = termios.tcgetattr(0)
    tty.setraw(0)
    os.write(1, "\x1b[?2004hstand-in ready\r\n❯ ".encode())
    line, in_paste, turn = "", False, 0
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                return 0
            text = data.decode("utf-8", "replace")
            record(data=text)
            i = 0
            while i < len(text):
                if text.startswith(PASTE_START, i):
                    in_paste, i = True, i + len(PASTE_START)
                    continue
                if text.startswith(PASTE_END, i):
                    in_paste, i = False, i + len(PASTE_END)
                    continue
                ch, i = text[i], i + 1
                if in_paste:
                    line += "\n" if ch == "\r" else ch
                elif ch == "\r" and line:
                    turn += 1
                    record(prompt=line)
                    send_hook(targets, "UserPromptSubmit", {"prompt": line})
                    os.write(1, "\r\n✻ Thinking… (esc to interrupt)\r".encode())
                    time.sleep(think)
                    reply = f"reply {turn}: {len(line)} characters"
                    os.write(1, f"\x1b[2K● {reply}\r\n".encode())
                    record(turn_end=turn)
                    send_hook(targets, "Stop", {"last_assistant_message": reply})
                    os.write(1, "❯ ".encode())
                    line = ""
                elif ch == "\x04" and not line:
                    return 0
                elif ch.isprintable():
                    line += ch
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    sys.exit(main())
