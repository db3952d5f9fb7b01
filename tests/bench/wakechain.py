"""The floor under ``one_agent``: three idle processes woken in turn, doing nothing else.

A message to an idle agent wakes three processes one after the other: the gateway
(the POST), the sidecar (the gateway's frame), the CLI (the paste).  Here three
Python processes pass one byte along over unix sockets after the same idle gap,
each doing no work but the read and the write; the time from the first write to
the last process's read is what the machine's scheduler alone costs that path.
Its tail is the virtual machine's (a vCPU that idled is woken by the host), not
csp's.

``python -m tests.bench.wakechain`` runs it alone and prints the percentiles.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import time

from .figures import Figures, percentiles

# one hop: read a byte from fd 0, pass it on to fd 1; the last one answers with the
# monotonic time it read it at, so no clock is read by the one being timed
_HOP = """
import os, struct, sys, time
last = sys.argv[1] == "last"
while True:
    b = os.read(0, 1)
    if not b:
        break
    if last:
        t = time.monotonic_ns()
        os.write(1, struct.pack("=q", t))
    else:
        os.write(1, b)
"""


def _chain(hops: int) -> tuple[socket.socket, socket.socket, list[subprocess.Popen[bytes]]]:
    """``hops`` processes joined by socket pairs: (the first's input, the last's
    output, the processes)."""
    first_in, theirs = socket.socketpair()
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(hops):
        ours, nxt = socket.socketpair()
        role = "last" if i == hops - 1 else "hop"
        procs.append(subprocess.Popen([sys.executable, "-c", _HOP, role], stdin=theirs,
                                      stdout=nxt, close_fds=True))
        theirs.close()
        nxt.close()
        theirs = ours
    return first_in, theirs, procs


async def measure(rounds: int, idle_s: float, hops: int = 3, prefix: str = "") -> Figures:
    """The first write to the last process's read, after ``idle_s`` of quiet each round."""
    first_in, last_out, procs = _chain(hops)
    samples: list[float] = []
    try:
        for _ in range(rounds + 1):  # the first round warms up, and is dropped
            await asyncio.sleep(idle_s)
            t0 = time.monotonic_ns()
            first_in.sendall(b"x")
            got = await asyncio.get_running_loop().run_in_executor(
                None, _read_exact, last_out, 8)
            samples.append((struct.unpack("=q", got)[0] - t0) / 1e9)
    finally:
        first_in.close()
        last_out.close()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return percentiles(samples[1:], prefix)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the wake chain ended early")
        data += chunk
    return data


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    print(asyncio.run(measure(rounds, 0.12)))


if __name__ == "__main__":
    main()
