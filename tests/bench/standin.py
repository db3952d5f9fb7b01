"""``python standin.py NAME REPORTS``: the scale benchmark's stand-in agent CLI.

Small on purpose (standard library only, nothing read at start but this file),
so that two hundred of them fit beside their sidecars on a 2-core machine.  It
takes its terminal in raw mode, turns bracketed paste on, draws a prompt
(``❯ ``) and reads.  Every read is timestamped (``time.monotonic_ns()``, the
clock the benchmark reads too) and reported at once as one line appended to the
file REPORTS (shared by all stand-ins; one ``write`` of a short line with
``O_APPEND`` is never interleaved with another's): ``NAME T FLAGS``, FLAGS
holding ``P`` when the read holds the start of a bracketed paste and ``S`` when
it holds a submit key outside one.  A file, not a socket: the benchmark reads it
when it looks, so no report wakes it while the agents of a fan-out still wait
for the CPU.  A submitted prompt is answered with one line and a new prompt, so
the sidecar sees the screen react and calls the agent ready again once it is
quiet.  Ctrl-D or a closed terminal ends it.
"""

import os
import sys
import termios
import time
import tty

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"


def main(name: str, report_to: str) -> None:
    reports = os.open(report_to, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    os.write(1, b"\x1b[?2004hstand-in ready\r\n\xe2\x9d\xaf ")
    in_paste = False
    try:
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                return
            at = time.monotonic_ns()
            if not data or data == b"\x04":
                return
            flags = ""
            if PASTE_START in data:
                flags += "P"
                in_paste = True
            if in_paste and PASTE_END in data:
                in_paste = False
                tail = data[data.rindex(PASTE_END) + len(PASTE_END):]
            else:
                tail = b"" if in_paste else data
            if b"\r" in tail:
                flags += "S"
            report(reports, f"{name} {at} {flags or '-'}\n".encode())
            if "S" in flags:
                os.write(1, b"\r\nok\r\n\xe2\x9d\xaf ")
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def report(fd: int, line: bytes) -> None:
    try:  # noqa: SIM105  (no contextlib: the stand-in imports next to nothing)
        os.write(fd, line)
    except OSError:  # the benchmark's file is gone: nobody to tell
        pass


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
