"""Cold start: the first request to a stopped, socket-activated gateway until its answer.

The gateway is started the way systemd starts ``csp-gateway.service`` from
``csp-gateway.socket``: ``systemd-socket-activate`` (systemd's own tool) holds
the listening unix socket, and on the first connection execs ``cspd`` with the
socket as fd 3 and ``LISTEN_FDS``/``LISTEN_PID``/``LISTEN_FDNAMES=unix`` set,
as the user manager would.  What the user manager adds on top (a cgroup, the
unit's sandboxing) is not in the figure.  The gateway's database and token exist
already (it ran before and was stopped), and its files are in the page cache:
the common case of a gateway that stopped (or was killed) and is needed again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time

from .gateway import BenchGateway

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
# what the gateway's environment must carry (systemd-socket-activate passes nothing else)
PASSED = ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "HOME", "PATH",
          "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")
READ_TIMEOUT_S = 20.0


async def health_once(socket_path: str, token: str) -> float:
    """Connect, send one ``GET /v1/health``, read the whole answer: seconds it took."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(f"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n"
                     f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"cold start: answered {head[:200]!r}")
        await asyncio.wait_for(reader.read(), READ_TIMEOUT_S)
        return time.perf_counter() - t0
    finally:
        writer.close()


async def cold_starts(count: int) -> list[float]:
    """``count`` cold starts of one stopped gateway; seconds each."""
    if SOCKET_ACTIVATE is None:
        raise RuntimeError("systemd-socket-activate is not installed")
    gw = BenchGateway()
    await gw.start()  # creates the database and the token, as a first start would
    gw.stop(remove=False)
    token = gw.token_path.read_text().strip()
    env = {**gw.env}
    passed = [f"--setenv={k}" for k in PASSED if k in env]
    samples = []
    try:
        for _ in range(count):
            gw.socket.unlink(missing_ok=True)
            proc = await asyncio.create_subprocess_exec(
                SOCKET_ACTIVATE, "--listen", str(gw.socket), "--fdname=unix", *passed,
                sys.executable, "-m", "cspd", env=env, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            try:
                deadline = time.monotonic() + 10
                while not gw.socket.exists():  # systemd-socket-activate is listening
                    if time.monotonic() > deadline:
                        raise RuntimeError("systemd-socket-activate did not listen")
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)  # settled: nothing but the socket is up
                samples.append(await health_once(str(gw.socket), token))
            finally:
                if proc.returncode is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        await asyncio.wait_for(proc.wait(), 10)
                    except TimeoutError:
                        os.killpg(proc.pid, signal.SIGKILL)
                        await proc.wait()
    finally:
        gw.stop()
    return samples
