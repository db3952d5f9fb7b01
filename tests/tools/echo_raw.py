"""Echo every byte back at once, in raw mode: the keystroke-latency stand-in.

Prints ``ready`` once its terminal is raw, then writes back whatever it reads,
read by read, until end of file or Ctrl-D.  Used by the sidecar benchmark to
time a keystroke's round trip with and without the sidecar in between.
"""

from __future__ import annotations

import os
import sys
import termios
import tty


def main() -> int:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        os.write(1, b"ready\r\n")
        while True:
            data = os.read(fd, 4096)
            if not data or b"\x04" in data:
                return 0
            os.write(1, data)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    sys.exit(main())
