"""The byte pump: the human's terminal on one side, the agent's PTY on the other.

Bytes from the human go to the agent unchanged; bytes from the agent go to
the human's terminal first, untouched, and only then to whoever watches them
(the screen model).  Writes to the PTY never block the loop: what the PTY
cannot take now waits in a buffer and goes when it is writable.

While the sidecar types a message in (paste, pause, submit key) the human's
keystrokes are held back and handed on right after, so they never splice into
the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
from collections.abc import Callable

from .terminal import is_tty

STDIN, STDOUT = 0, 1
READ_SIZE = 65536


def write_all(fd: int, data: bytes) -> None:
    """Write everything to a terminal that may be slow; give up if it vanished."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except OSError:
            return  # the terminal vanished; keep serving the agent
        view = view[n:]


class Pump:
    def __init__(self, child_fd: int, *, on_human: Callable[[bytes], None],
                 on_output: Callable[[bytes], None], on_closed: Callable[[], None]) -> None:
        self.child_fd = child_fd
        self.on_human = on_human
        self.on_output = on_output
        self.on_closed = on_closed
        self._to_child = bytearray()
        self._writer_armed = False  # the loop watches the PTY for room to write the rest
        self._held: bytearray | None = None
        self._closed = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.child_fd, self._on_child_output)
        # no usable stdin (closed): the agent runs without a human
        with contextlib.suppress(OSError, ValueError):
            loop.add_reader(STDIN, self._on_stdin)

    def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for remove, fd in ((loop.remove_reader, self.child_fd),
                           (loop.remove_writer, self.child_fd), (loop.remove_reader, STDIN)):
            with contextlib.suppress(OSError, ValueError):
                remove(fd)

    # -- to the agent --------------------------------------------------------

    def write_child(self, data: bytes) -> None:
        """Queue bytes for the agent's PTY; never blocks the loop."""
        if self._closed or not data:
            return
        self._to_child += data
        self._flush()

    def _flush(self) -> None:
        while self._to_child:
            try:
                n = os.write(self.child_fd, self._to_child)
            except BlockingIOError:
                if not self._writer_armed:
                    asyncio.get_running_loop().add_writer(self.child_fd, self._flush)
                    self._writer_armed = True
                return
            except OSError:
                self._to_child.clear()
                break
            del self._to_child[:n]
        if self._writer_armed:
            asyncio.get_running_loop().remove_writer(self.child_fd)
            self._writer_armed = False

    def hold_human(self) -> None:
        """From now on keep the human's keystrokes back (a message is being typed)."""
        if self._held is None:
            self._held = bytearray()

    def release_human(self) -> None:
        """Hand on what the human typed meanwhile, as if it came now."""
        held, self._held = self._held, None
        if held:
            self.on_human(bytes(held))

    # -- readers -------------------------------------------------------------

    def _on_stdin(self) -> None:
        try:
            data = os.read(STDIN, READ_SIZE)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return
            data = b""
        if not data:
            # the human's side is gone: pass an end-of-file on if it was a pipe
            asyncio.get_running_loop().remove_reader(STDIN)
            if not is_tty(STDIN):
                self.write_child(b"\x04")
            return
        if self._held is not None:
            self._held += data
            return
        self.on_human(data)

    def _on_child_output(self) -> None:
        try:
            data = os.read(self.child_fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._closed = True
            self.stop()
            self.on_closed()
            return
        write_all(STDOUT, data)  # the human's view first, untouched
        self.on_output(data)
