"""Fixtures shared by the whole suite.

``csp_env`` gives a test its own XDG runtime/state/config dirs; ``gateway``
runs a real ``cspd`` in them (started by hand, binding its own socket).
Tests that need real OS parts they cannot get skip with the reason, unless
``CSP_REQUIRE_INTEGRATION=1`` (set by CI), which turns such skips into
failures so the real path is always exercised there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.polling import wait_for

# fixtures that live in their own modules
pytest_plugins = ["tests.tmuxtest", "tests.dbus_bus"]

REPO = Path(__file__).resolve().parent.parent


def require(condition: bool, reason: str) -> None:
    """Skip (or fail under CSP_REQUIRE_INTEGRATION=1) when a real part is missing."""
    if condition:
        return
    if os.environ.get("CSP_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"required for integration tests: {reason}")
    pytest.skip(reason)


@dataclass
class CspEnv:
    root: Path
    env: dict[str, str]

    @property
    def runtime(self) -> Path:
        return Path(self.env["XDG_RUNTIME_DIR"]) / "csp"

    @property
    def socket(self) -> Path:
        return self.runtime / "gateway.sock"

    @property
    def token_file(self) -> Path:
        return self.runtime / "token"

    @property
    def state(self) -> Path:
        return Path(self.env["XDG_STATE_HOME"]) / "csp"

    @property
    def config(self) -> Path:
        return Path(self.env["XDG_CONFIG_HOME"]) / "csp" / "config.toml"

    def run(self, *args: str, input: str | None = None, timeout: float = 30,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command (e.g. ``cspctl``) with this environment."""
        env = {**self.env, **(extra_env or {})}
        return subprocess.run(list(args), env=env, input=input, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def cspctl(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "csp_cli", *args, **kw)  # type: ignore[arg-type]


@pytest.fixture
def csp_env(tmp_path: Path) -> CspEnv:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CSP_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_",
                                "DBUS_SESSION_BUS_ADDRESS", "TMUX"))}
    env.update({
        "XDG_RUNTIME_DIR": str(run),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONUNBUFFERED": "1",
    })
    return CspEnv(tmp_path, env)


class GatewayProcess:
    def __init__(self, env: CspEnv) -> None:
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.log = env.root / "cspd.log"

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cspd"], env=self.env.env,
                                         stdout=log, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True)
        wait_for(lambda: self.env.socket.exists() and self.env.token_file.exists()
                 and self._answers(), what="cspd to serve")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"cspd exited: {self.log.read_text()}")
        r = self.env.cspctl("gateway", "status", "--json")
        return '"ok": true' in r.stdout

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def gateway(csp_env: CspEnv) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(csp_env)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()  # also when start() timed out: never leak a cspd
