"""A private tmux server per test, and a pane to type into and read from.

Every server has its own ``-L`` socket name and is killed in teardown, so
tests never see each other's panes or the user's own tmux.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CspEnv, require
from tests.polling import wait_for


class TmuxServer:
    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"csp-test-{uuid.uuid4().hex[:10]}"
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, text=True,
                              capture_output=True, check=check, timeout=20)

    def new_pane(self, command: str, width: int = 100, height: int = 30) -> Pane:
        """A new session running ``command`` (a shell string) in a pane of its own."""
        name = f"s{uuid.uuid4().hex[:6]}"
        status_file = Path(tempfile.mkdtemp(prefix="csp-pane-")) / "status"
        # a shell in between records the exit status: tmux 3.3a now and then misses
        # the SIGCHLD of a pane's process, leaving pane_dead_status empty
        command = f"{command}; echo $? > {shlex.quote(str(status_file))}"
        env_args: list[str] = []
        for key in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "PATH",
                    "DBUS_SESSION_BUS_ADDRESS", "FAKECLI_LOG", "FAKECLI_THINK", "HOME",
                    "FAKECLI_NO_HOOKS", "FAKECLI_REPLY", "FAKECLI_START_DELAY"):
            if key in self.env:
                env_args += ["-e", f"{key}={self.env[key]}"]
        self.run("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                 *env_args, command)
        self.run("set-option", "-t", name, "remain-on-exit", "on")
        return Pane(self, f"{name}:0.0", status_file)

    def kill(self) -> None:
        self.run("kill-server", check=False)


class Pane:
    def __init__(self, server: TmuxServer, target: str, status_file: Path | None = None) -> None:
        self.server = server
        self.target = target
        self.status_file = status_file

    def send(self, *keys: str) -> None:
        self.server.run("send-keys", "-t", self.target, *keys)

    def type(self, text: str) -> None:
        self.server.run("send-keys", "-t", self.target, "-l", text)

    def screen(self) -> str:
        # -J: a line the pane wrapped comes back whole
        return self.server.run("capture-pane", "-p", "-J", "-t", self.target).stdout

    def wait_text(self, text: str, timeout: float = 15.0) -> str:
        def shown() -> str:
            screen = self.screen()
            return screen if text in screen else ""
        return wait_for(shown, timeout=timeout, what=f"{text!r} on screen")

    def info(self, fmt: str) -> str:
        return self.server.run("display-message", "-p", "-t", self.target, fmt).stdout.strip()

    def dead_status(self, timeout: float = 15.0) -> int:
        """Wait for the pane's command to exit; return its exit status (panes made by
        :meth:`TmuxServer.new_pane` only: they record it)."""
        if self.status_file is None:
            raise AssertionError("this pane does not record its exit status")
        status_file = self.status_file
        text = wait_for(lambda: status_file.read_text() if status_file.exists() else "",
                        timeout=timeout, what="the pane's command to exit")
        return int(text.strip())

    @property
    def pid(self) -> int:
        """The pid of the pane's command (the child of the recording shell)."""
        shell = int(self.info("#{pane_pid}"))
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        return int(children[0]) if children else shell


@pytest.fixture
def tmux(csp_env: CspEnv) -> Iterator[TmuxServer]:
    require(shutil.which("tmux") is not None, "tmux is not installed")
    server = TmuxServer(csp_env.env)
    yield server
    server.kill()
