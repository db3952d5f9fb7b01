"""The real Gemini CLI inside csp-sidecar, answering long markdown through a local stand-in.

``csp-sidecar --name gemini -- env <a private home> gemini`` in a tmux pane, three
messages in a row with ``cspctl send @gemini``, and each reply read back with
``cspctl history``.  The stand-in (``tests/tools/fake_gemini.py``) answers every
prompt with ``tests.tools.long_reply.long_reply``: 46 lines of markdown with a
table, a block quote, code, indentation and lines far wider than the pane.  What
the room must hold is that text, word for word, once per turn, and nothing of
Gemini's screen, however narrow the pane and however often it is resized.
Skips when ``gemini`` is not installed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.tmuxtest import Pane, TmuxServer
from tests.tools.gemini_setup import gemini_home
from tests.tools.long_reply import long_reply

NAME = "gemini"
TAG = f"[human → @{NAME}]"
HEIGHT = 30


def sidecar_executable() -> list[str]:
    """``csp-sidecar`` as installed next to this Python, else the module."""
    script = Path(sys.executable).with_name("csp-sidecar")
    return [str(script)] if script.exists() else [sys.executable, "-m", "csp_sidecar"]


class FakeGemini:
    """``tests.tools.fake_gemini`` in a process of its own, and what it was asked."""

    def __init__(self, root: Path) -> None:
        self.log = root / "gemini-requests.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tools.fake_gemini", "--log", str(self.log)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "port N", printed once it serves
        assert first.startswith("port "), f"fake API did not start: {first!r}"
        self.url = f"http://127.0.0.1:{int(first.split()[1])}"

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def turns(self) -> list[dict[str, Any]]:
        """The conversation's requests (``main``: a prompt answered with long_reply)."""
        return [r for r in self.requests() if r["kind"] == "main"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def gemini() -> str:
    path = shutil.which("gemini")
    if path is None:
        pytest.skip("Gemini CLI is not installed (npm install -g @google/gemini-cli)")
    return path


@pytest.fixture
def fake_api(csp_env: CspEnv) -> Iterator[FakeGemini]:
    api = FakeGemini(csp_env.root)
    yield api
    api.stop()


def gemini_pane(csp_env: CspEnv, tmux: TmuxServer, api: FakeGemini, width: int) -> Pane:
    project = csp_env.root / "project"
    project.mkdir()
    env = gemini_home(csp_env.root / "gemini", api.url, project)
    command = [*sidecar_executable(), "--name", NAME, "--",
               "env", *(f"{k}={v}" for k, v in env.items()), "gemini"]
    return tmux.new_pane(f"cd {shlex.quote(str(project))} && {shlex.join(command)}",
                         width=width, height=HEIGHT)


def agent(env: CspEnv) -> dict[str, Any]:
    r = env.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    return next((dict(a) for a in json.loads(r.stdout) if a["name"] == NAME), {})


def said(env: CspEnv) -> list[dict[str, Any]]:
    """Everything in the room's history from gemini, whatever its kind."""
    r = env.cspctl("history", "--json", "--limit", "500")
    assert r.returncode == 0, r.stderr
    return [m for m in json.loads(r.stdout) if m["from"] == NAME]


def test_each_long_markdown_reply_is_shared_once_word_for_word(
        gemini: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeGemini) -> None:
    pane = gemini_pane(csp_env, tmux, fake_api, 66)
    try:
        wait_for(lambda: agent(csp_env).get("state") == "ready", timeout=60,
                 what="Gemini CLI to be ready")
    except AssertionError:
        raise AssertionError(f"not ready: {agent(csp_env)}; screen:\n{pane.screen()}") from None
    assert csp_env.cspctl("send", f"@{NAME}", "question 1").returncode == 0
    wait_for(lambda: said(csp_env), timeout=60, what="a reply")
    print(said(csp_env))
