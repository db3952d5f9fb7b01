"""The real Gemini CLI inside csp-sidecar, answering long markdown through a local stand-in.

``csp-sidecar --name gemini -- env <a private home> gemini`` in a tmux pane, three
messages in a row with ``cspctl send @gemini``, and each reply read back with
``cspctl history``.  The stand-in (``tests/tools/fake_gemini.py``) answers every
prompt with ``tests.tools.long_reply.long_reply``: 46 lines of markdown with a
table, a block quote, code, indentation and lines far wider than the pane.  The
room must hold that text word for word, once per turn, and nothing of Gemini's
screen (banner, prompt echo, "Press Ctrl+O to expand", wrap breaks), at pane
widths 40, 66 and 200, and nothing new when the window is resized.  The sidecar
gets the replies from Gemini's own session transcript
(``$GEMINI_CLI_HOME/.gemini/tmp/<slug>/chats/session-*-<id8>.jsonl``), not from the
screen; GEMINI_CLI_HOME is set only by the ``env`` in front of ``gemini``, so the
sidecar must find it there.
Skips when ``gemini`` is not installed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.standins import StandIn, sidecar_executable
from tests.tmuxtest import Pane, TmuxServer
from tests.tools.fake_gemini import last_user_text
from tests.tools.gemini_setup import gemini_home
from tests.tools.long_reply import long_reply

NAME = "gemini"
TAG = f"[human → @{NAME}]"
HEIGHT = 30
TURNS = 3


class FakeGemini(StandIn):
    """``tests.tools.fake_gemini`` in a process of its own, and what it was asked."""

    module = "tests.tools.fake_gemini"
    log_name = "gemini-requests.jsonl"

    def prompts(self) -> list[str]:
        """The prompt of each conversation turn (``main`` requests), as the CLI sent it."""
        return [last_user_text(r["body"]) for r in self.requests() if r["kind"] == "main"]


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
    """``csp-sidecar --name gemini -- env <private home> gemini`` in a pane ``width`` wide,
    run in a project directory of its own (the sidecar's own environment is the test's:
    Gemini's home, GEMINI_CLI_HOME included, is only in the ``env`` wrapper)."""
    project = csp_env.root / "project"
    project.mkdir()
    env = gemini_home(csp_env.root / "gemini", api.url, project)
    command = [*sidecar_executable(), "--name", NAME, "--",
               "env", *(f"{k}={v}" for k, v in env.items()), "gemini"]
    return tmux.new_pane(f"cd {shlex.quote(str(project))} && {shlex.join(command)}",
                         width=width, height=HEIGHT)


def start_gemini(csp_env: CspEnv, tmux: TmuxServer, api: FakeGemini, width: int) -> Pane:
    pane = gemini_pane(csp_env, tmux, api, width)
    try:
        # its input box first (a cheap look), then the sidecar's word
        pane.wait_text("Type your message", timeout=60)
        wait_for(lambda: agent(csp_env).get("state") == "ready", timeout=30,
                 what="Gemini CLI to be ready")
    except AssertionError:
        raise AssertionError(f"not ready: {agent(csp_env)}; screen:\n{pane.screen()}") from None
    return pane


def agent(env: CspEnv) -> dict[str, Any]:
    r = env.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    return next((dict(a) for a in json.loads(r.stdout) if a["name"] == NAME), {})


def said(env: CspEnv) -> list[dict[str, Any]]:
    """Every message in the room's history from gemini, whatever its kind."""
    r = env.cspctl("history", "--json", "--limit", "500")
    assert r.returncode == 0, r.stderr
    return [m for m in json.loads(r.stdout) if m["from"] == NAME]


class Room:
    """``cspctl history --follow --json``, read as it goes: what gemini says, at once,
    without starting a cspctl per look (the machine has two cores; Gemini needs them)."""

    def __init__(self, env: CspEnv) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "csp_cli", "history", "--follow", "--json"],
            env=env.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.messages: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.messages.append(json.loads(line))

    def said(self) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["from"] == NAME]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def room(csp_env: CspEnv, gateway: GatewayProcess) -> Iterator[Room]:
    followed = Room(csp_env)
    yield followed
    followed.close()


def resize(tmux: TmuxServer, pane: Pane, width: int) -> None:
    """Resize the pane's window (the sidecar gets SIGWINCH and passes it on) and wait
    until Gemini has redrawn at the new width: the rule over its input box spans it."""
    tmux.run("resize-window", "-t", pane.target, "-x", str(width), "-y", str(HEIGHT))
    rule = "─" * width
    try:
        wait_for(lambda: rule in [line.strip() for line in pane.screen().splitlines()],
                 what=f"Gemini redrawn {width} wide")
    except AssertionError:
        raise AssertionError(f"not redrawn {width} wide:\n{pane.screen()}") from None


class Turns:
    """Send messages one after another and check what the room holds after each."""

    def __init__(self, env: CspEnv, room: Room, api: FakeGemini, pane: Pane) -> None:
        self.env = env
        self.room = room
        self.api = api
        self.pane = pane
        self.replies: list[str] = []
        self.timings: list[float] = []

    def ask(self, text: str) -> str:
        """Send ``text`` to gemini, wait for its reply in the history; return the reply."""
        turn = len(self.replies) + 1
        started = time.monotonic()
        assert self.env.cspctl("send", f"@{NAME}", text).returncode == 0

        def prompts() -> list[str]:
            sent = self.api.prompts()
            return sent if len(sent) >= turn else []

        # one prompt per message, tagged with its sender (the stand-in logged it)
        sent = wait_for(prompts, timeout=30, what=f"prompt {turn} at the API")
        assert sent == [f"{TAG} question {i}" for i in range(1, turn)] + [f"{TAG} {text}"]
        # Gemini CLI 0.61 records (and shows) a reply trimmed at both ends, zero-width
        # characters and <!-- comments --> taken out; the sidecar strips newlines at
        # its ends too.  long_reply has none of these, so comparing with its text
        # trimmed changes nothing: the comparison is exact, character for character
        expected = long_reply(sent[-1], turn).strip()

        def shared_so_far() -> list[dict[str, Any]]:
            shared = self.room.said()
            return shared if len(shared) > len(self.replies) else []

        try:
            shared = wait_for(shared_so_far, timeout=30, what=f"reply {turn} in cspctl history")
        except AssertionError:
            raise AssertionError(f"reply {turn} not shared; agent {agent(self.env)}; "
                                 f"screen:\n{self.pane.screen()}") from None
        self.timings.append(time.monotonic() - started)
        self.replies.append(expected)
        # the reply word for word, once, as gemini's output; nothing else from gemini
        assert [m["content"] for m in shared] == self.replies, \
            f"turn {turn}: gemini shared {len(shared)} message(s):\n" + "\n---\n".join(
                m["content"] for m in shared)
        assert all(m["kind"] == "output" for m in shared), [m["kind"] for m in shared]
        assert len(self.api.prompts()) == turn  # submitted exactly once
        return expected


@pytest.mark.parametrize("width", [40, 66, 200])
def test_each_long_markdown_reply_is_shared_once_word_for_word(
        width: int, gemini: str, csp_env: CspEnv, gateway: GatewayProcess, room: Room,
        tmux: TmuxServer, fake_api: FakeGemini) -> None:
    started = time.monotonic()
    pane = start_gemini(csp_env, tmux, fake_api, width)
    to_ready = time.monotonic() - started
    assert room.said() == []  # its start (banner, tips, notices) is not shared

    turns = Turns(csp_env, room, fake_api, pane)
    for n in range(1, TURNS + 1):
        turns.ask(f"question {n}")

    # resized twice, Gemini redraws its whole screen (the replies so far included) at
    # each new width: none of it is shared again; the next message's reply is the only
    # new thing in the room
    for new_width in (width + 17, width):
        resize(tmux, pane, new_width)
    turns.ask(f"question {TURNS + 1}")
    # and the stored history says the same as the live view
    assert [m["content"] for m in said(csp_env)] == turns.replies

    print(f"\nwidth {width}: ready after {to_ready:.1f}s; replies after "
          + ", ".join(f"{t:.1f}s" for t in turns.timings)
          + f"; total {time.monotonic() - started:.1f}s")
