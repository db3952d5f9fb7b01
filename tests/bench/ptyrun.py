"""A program on a PTY that the benchmark itself plays the terminal for.

The benchmark holds the PTY master, as tmux would: it types by writing to it
and sees the screen's bytes by reading from it.  Reads happen only inside the
calls below (or in :meth:`PtyRun.drain` while the benchmark waits on something
else), so a chatty program can fill the PTY and stall until the next read,
exactly as with a slow terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import sys
import time
from pathlib import Path

from ptyprocess import PtyProcess

from .procstat import ProcSample, sample

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tests" / "tools"
ROWS, COLS = 50, 160


def sidecar_argv(name: str, profile: str, *command: str) -> list[str]:
    return [sys.executable, "-m", "csp_sidecar", "--name", name, "--profile", profile,
            "--", *command]


def bench_env(base: dict[str, str]) -> dict[str, str]:
    """The gateway's environment without the outer tmux or session bus (not ours to touch)."""
    env = {k: v for k, v in base.items()
           if not k.startswith(("TMUX", "DBUS_SESSION_BUS_ADDRESS"))}
    env["TERM"] = "xterm-256color"
    return env


class PtyRun:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = PtyProcess.spawn(argv, env=env, dimensions=(ROWS, COLS))
        self.fd: int = self.proc.fd
        self.seen = bytearray()  # everything read, for wait_for
        self.read_bytes = 0

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read(self, timeout: float) -> bytes:
        """One read of what is there (b"" on timeout); raises EOFError at the end."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every slave end is closed
            data = b""
        if not data:
            raise EOFError
        self.read_bytes += len(data)
        return data

    def wait_for(self, marker: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            if time.monotonic() > deadline:
                tail = bytes(self.seen[-300:])
                raise RuntimeError(f"no {marker!r} within {timeout}s; saw {tail!r}")
            self.seen += self.read(0.1)
            del self.seen[:-65536]

    async def drain(self, until: asyncio.Event) -> None:
        """Keep reading (and discarding) while the benchmark waits on something else."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def on_readable() -> None:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                done.set()
                loop.remove_reader(self.fd)
                return
            self.seen += data
            del self.seen[:-65536]

        loop.add_reader(self.fd, on_readable)
        try:
            waiter = asyncio.ensure_future(until.wait())
            ender = asyncio.ensure_future(done.wait())
            await asyncio.wait([waiter, ender], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            ender.cancel()
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self.fd)

    def read_to_end(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with contextlib.suppress(EOFError):
            while time.monotonic() < deadline:
                self.read(0.5)

    def zombie_sample(self, timeout: float = 10.0) -> ProcSample | None:
        """CPU of the process once it has exited but is not yet reaped (its own, not its
        children's); None if it did not exit in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                return None
            if state == "Z":
                return self.sample()
            time.sleep(0.01)
        return None

    def close(self) -> int | None:
        """End the program (SIGHUP, then harder), reap it; its exit status."""
        with contextlib.suppress(Exception):
            if self.proc.isalive():
                self.proc.terminate(force=True)
        with contextlib.suppress(Exception):
            self.proc.close(force=True)
        status = self.proc.exitstatus
        return None if status is None else int(status)
