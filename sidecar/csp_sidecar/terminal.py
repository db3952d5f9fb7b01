"""The sidecar's own terminal: raw mode that is always restored, and its size."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import termios
import tty
from collections.abc import Iterator

DEFAULT_SIZE = (24, 80)


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put ``fd`` in raw mode for the block; restore it on every way out.

    Keystrokes (Ctrl-C included) then reach the agent as bytes, exactly as they
    would without the sidecar; the agent's own PTY does the line discipline.
    """
    if not is_tty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def get_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on ``fd``, or $LINES/$COLUMNS, or 24x80."""
    if is_tty(fd):
        with contextlib.suppress(OSError):
            rows, cols, _, _ = struct.unpack(
                "HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
            if rows and cols:
                return rows, cols
    try:
        return int(os.environ["LINES"]), int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        return DEFAULT_SIZE
