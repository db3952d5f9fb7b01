"""A real ``cspd`` for the benchmark: a subprocess in its own temporary XDG dirs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import tomli_w

from csp_core.client import GatewayClient
from csp_core.errors import CspError

from .procstat import ProcSample, sample

START_TIMEOUT = 20.0


class BenchGateway:
    """Start ``cspd`` by hand on a unix socket in a temp dir; stop and clean up on exit."""

    def __init__(self, gateway_config: dict[str, Any] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="csp-bench-"))
        run = self.root / "run"
        run.mkdir(mode=0o700)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CSP_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        self.env.update({"XDG_RUNTIME_DIR": str(run),
                         "XDG_STATE_HOME": str(self.root / "state"),
                         "XDG_CONFIG_HOME": str(self.root / "config")})
        self.socket = run / "csp" / "gateway.sock"
        self.token_path = run / "csp" / "token"
        self.config = gateway_config or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "cspd.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def client(self, agent: str | None = None) -> GatewayClient:
        return GatewayClient(str(self.socket), agent=agent, token_path=self.token_path,
                             create_token=False)

    async def start(self) -> None:
        if self.config:
            path = self.root / "config" / "csp" / "config.toml"
            path.parent.mkdir(parents=True, mode=0o700)
            path.write_text(tomli_w.dumps({"gateway": self.config}))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cspd"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cspd exited: {self.log.read_text()}")
            if self.socket.exists() and self.token_path.exists():
                try:
                    async with self.client() as c:
                        await c.health()
                    return
                except CspError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cspd did not serve within {START_TIMEOUT}s")
            await asyncio.sleep(0.05)

    def stop(self, remove: bool = True) -> None:
        """Stop ``cspd``; ``remove``: and delete its directories (else they stay, as
        a stopped gateway's would)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    async def __aenter__(self) -> BenchGateway:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()
