"""The real Codex CLI inside csp-sidecar, answering through a local Responses API stand-in.

csp tried as a new user would: ``csp-sidecar --name codex -- env HOME=...
CODEX_HOME=... codex`` in a tmux pane (the profile's ``--no-alt-screen
--no-daemon`` must land after ``codex``, not after ``env``), messages sent with
``cspctl send @codex``, replies read back with ``cspctl history``.  Codex talks
to ``tests/tools/fake_openai.py``, which answers every turn with
``tests.tools.long_reply``'s 46 lines of markdown (a table, a quote, code,
indentation, a line of over 300 characters), so the test knows each reply word for
word.  The sidecar takes replies from Codex's own ``notify`` report
(``last-assistant-message``), never from the screen: whatever the pane's width,
however often it is resized, each reply is shared exactly as Codex got it,
once, and the title Codex generates on the side is not shared at all.  A
``notify`` program the user set in their own config still runs, with the argv
Codex gives it, also when that config is named by an ``env`` in front of
``codex``.  Skips when ``codex`` is not installed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import struct
import sys
import termios
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.standins import StandIn, sidecar_executable
from tests.tmuxtest import Pane, TmuxServer
from tests.tools.codex_setup import codex_home
from tests.tools.fake_openai import SIDE_REPLY, last_user_text
from tests.tools.long_reply import long_reply

NAME = "codex"
TAG = f"[human → @{NAME}]"
TURNS = 3
# the user's own notify program: appends the argv it gets (after its log path) as JSON
USER_NOTIFY = """\
import json, sys
with open(sys.argv[1], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[2:]) + "\\n")
"""
USER_NOTIFY_ARG = "users-own-arg"


class FakeOpenAI(StandIn):
    """``tests.tools.fake_openai`` in a process of its own, and what it was asked."""

    module = "tests.tools.fake_openai"
    log_name = "openai-requests.jsonl"
    url_path = "/v1"

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in super().requests() if kind is None or e["kind"] == kind]


@pytest.fixture
def codex() -> str:
    path = shutil.which("codex")
    if path is None:
        pytest.skip("Codex is not installed (npm install -g @openai/codex)")
    return path


@pytest.fixture
def fake_api(csp_env: CspEnv) -> Iterator[FakeOpenAI]:
    api = FakeOpenAI(csp_env.root)
    yield api
    api.stop()


class Run:
    """One Codex in the sidecar, in a pane, and where to look at what it did."""

    def __init__(self, env: CspEnv, tmux: TmuxServer, api: FakeOpenAI, width: int) -> None:
        self.env, self.api = env, api
        project = env.root / "project"
        project.mkdir()
        script = env.root / "user_notify.py"
        script.write_text(USER_NOTIFY)
        self.user_notify_log = env.root / "user-notify.jsonl"
        codex_env = codex_home(env.root / "codex", api.url, project,
                               notify=[sys.executable, str(script), str(self.user_notify_log),
                                       USER_NOTIFY_ARG])
        # the natural way to run Codex with an environment of its own: `env` in front
        command = [*sidecar_executable(), "--name", NAME, "--",
                   "env", *(f"{k}={v}" for k, v in codex_env.items()), "codex"]
        self.pane: Pane = tmux.new_pane(f"cd {shlex.quote(str(project))} && "
                                        f"{shlex.join(command)}", width=width, height=30)
        self.session = self.pane.target.split(":")[0]
        self.tmux = tmux

    def agent(self) -> dict[str, Any]:
        r = self.env.cspctl("agents", "--json")
        assert r.returncode == 0, r.stderr
        return next((dict(a) for a in json.loads(r.stdout) if a["name"] == NAME), {})

    def outputs(self) -> list[str]:
        r = self.env.cspctl("history", "--json", "--limit", "500")
        assert r.returncode == 0, r.stderr
        return [str(m["content"]) for m in json.loads(r.stdout)
                if m["kind"] == "output" and m["from"] == NAME]

    def user_notified(self) -> list[list[str]]:
        if not self.user_notify_log.exists():
            return []
        return [json.loads(line) for line in self.user_notify_log.read_text().splitlines()]

    def diagnose(self) -> str:
        log = Path(self.env.env["XDG_STATE_HOME"]) / "csp" / f"sidecar-{NAME}.log"
        return (f"\nagent: {self.agent()}\noutputs: {[o[:80] for o in self.outputs()]}"
                f"\nrequests: {[(r['kind'], r.get('turn')) for r in self.api.requests()]}"
                f"\nsidecar log:\n{log.read_text() if log.exists() else '-'}"
                f"\nscreen:\n{self.pane.screen()}")

    def wait_ready(self, what: str, timeout: float = 40) -> None:
        try:
            wait_for(lambda: self.agent().get("state") == "ready", timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}{self.diagnose()}") from None

    def ask(self, n: int) -> str:
        """Send "question n"; return the reply Codex got (n-th main request), once shared."""
        before = len(self.outputs())
        assert self.env.cspctl("send", f"@{NAME}", f"question {n}").returncode == 0

        def more() -> list[str]:
            shared = self.outputs()
            return shared if len(shared) > before else []

        try:
            shared = wait_for(more, timeout=30, what=f"the reply to question {n} in history")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{self.diagnose()}") from None
        mains = self.api.requests("main")
        assert [r["turn"] for r in mains] == list(range(1, n + 1)), mains
        prompt = last_user_text(mains[-1]["body"])
        assert prompt == f"{TAG} question {n}"  # the message, typed in once, as one prompt
        expected = long_reply(prompt, n)
        assert shared[before:] == [expected], f"turn {n} shared:\n{shared[before:]}"
        return expected

    def codex_argv(self) -> list[str]:
        """The argv of the agent's process: ``env`` has exec'd node running codex."""
        raw = Path(f"/proc/{self.agent()['pid']}/cmdline").read_bytes()
        return [os.fsdecode(word) for word in raw.split(b"\0")[:-1]]

    def codex_size(self) -> tuple[int, int]:
        """(columns, rows) of the agent's own terminal, the sidecar's PTY."""
        tty = os.readlink(f"/proc/{self.agent()['pid']}/fd/0")
        fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY)
        try:
            rows, cols, _, _ = struct.unpack(
                "4H", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        finally:
            os.close(fd)
        return cols, rows

    def resize(self, width: int, height: int) -> None:
        """Resize the tmux window; wait until the sidecar has passed the size on to Codex."""
        self.tmux.run("resize-window", "-t", self.session, "-x", str(width), "-y", str(height))
        wait_for(lambda: self.codex_size() == (width, height),
                 what=f"Codex's terminal at {width}x{height}")


def without_csp_mcp(csp_env: CspEnv) -> None:
    """The shipped codex profile with csp's MCP server off, as the user's own profile.

    Codex 0.171 writes its thread title in a hidden thread whose config is rebuilt
    without the ``-c`` overrides but with every MCP server disabled, so a server given
    by ``-c`` alone (csp's) becomes ``{enabled = false}``, "invalid transport", and no
    title is asked for.  The title's notify is the side case this test must see not
    shared, so here Codex runs without csp's server (test_mcp_agents.py covers it).
    """
    user = csp_env.config.parent / "profiles"
    user.mkdir(parents=True, exist_ok=True)
    text = (resources.files("csp_sidecar") / "profiles" / "codex.toml").read_text()
    assert "\n[mcp]\n" in text
    (user / "codex.toml").write_text(text.replace("\n[mcp]\n", "\n[mcp]\nenabled = false\n"))


@pytest.mark.parametrize("width", [40, 66, 200])
def test_each_reply_is_shared_word_for_word_once(
        codex: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeOpenAI, width: int) -> None:
    without_csp_mcp(csp_env)
    run = Run(csp_env, tmux, fake_api, width)
    run.wait_ready("Codex to be ready")
    # `env` ran Codex with the profile's arguments and csp's notify after `codex` itself
    argv = run.codex_argv()
    after = argv[next(i for i, w in enumerate(argv) if w.endswith("/codex")) + 1:]
    assert {"--no-alt-screen", "--no-daemon"} <= set(after), argv
    assert any(w.startswith("notify=") and "hook_cmd" in w for w in after), argv

    replies = []
    for n in range(1, TURNS + 1):
        if n > 1:
            run.wait_ready(f"Codex ready for question {n}", timeout=20)
        replies.append(run.ask(n))
    assert run.outputs() == replies  # each once, and nothing else: no chrome, no echo

    # Codex generated a title on the side (its notify fires for it too): not shared
    assert fake_api.requests("side"), "Codex asked for no title: the side case went untested"
    assert not any(SIDE_REPLY in o for o in run.outputs())

    # two resizes: Codex redraws its whole history at each width; none of that is
    # posted: the next output after them is the next reply, and only it
    run.resize(max(30, width // 2), 20)
    run.resize(width + 17, 35)
    run.wait_ready("Codex ready after the resizes", timeout=20)
    replies.append(run.ask(TURNS + 1))
    assert run.outputs() == replies


def test_the_users_own_notify_program_still_runs(
        codex: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeOpenAI) -> None:
    # the user set `notify = [python, user_notify.py, LOG, "users-own-arg"]` in the
    # config.toml of the CODEX_HOME given to codex (through `env`, as above)
    run = Run(csp_env, tmux, fake_api, 100)
    run.wait_ready("Codex to be ready")
    reply = run.ask(1)

    def notified() -> list[list[str]]:
        got = run.user_notified()
        said = [json.loads(argv[-1]).get("last-assistant-message") for argv in got]
        return got if reply in said else []

    try:
        # csp-hook starts the user's program before it tells the sidecar: by the time
        # the reply is in the history, the program has been started
        got = wait_for(notified, timeout=5, what="the user's notify program to run")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {run.user_notified()}{run.diagnose()}") from None
    # with the argv Codex gives it: its own arguments, then the turn's JSON
    assert all(len(argv) == 2 and argv[0] == USER_NOTIFY_ARG for argv in got), got
    assert all(json.loads(argv[1]).get("type") == "agent-turn-complete" for argv in got), got
