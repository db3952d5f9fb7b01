"""The real Claude Code CLI inside csp-sidecar, answering through a local stand-in API.

This is csp tried as a new user would: ``csp-sidecar --name claude -- claude``
in a tmux pane, a message sent with ``cspctl send @claude``, and the reply
read back with ``cspctl history``.  Claude Code is the one from the npm
registry (``npm install -g @anthropic-ai/claude-code``); it talks to
``tests/tools/fake_anthropic.py`` through ``ANTHROPIC_BASE_URL``, so the test
sees exactly what Claude Code sent to "the model" and knows what it answered.
Its first-run screens (onboarding, folder trust) are pre-answered in a
private ``HOME``.  Skips when ``claude`` is not installed (.ci/run installs it).
"""

from __future__ import annotations

import json
import re
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
from tests.tools.fake_anthropic import RUN_MARK, SLOW_MARK
from tests.tools.fake_anthropic import user_texts as fake_user_texts

TAG = "[human → @claude]"
# what must never be shared as Claude's words: its chrome and the terminal's
CHROME = [re.compile(p) for p in (
    r"\x1b", r"[\x00-\x08\x0b-\x1f]",              # escape sequences, control bytes
    r"^\s*[❯>]", r"^[─━═╌]{5,}",                    # the prompt, the rules around it
    r"^\s*[✻✶✢✳✽✺·◐◑◒◓]\s",                        # spinners, "Worked for 1s", effort
    r"^\s*\*\s+\S+…",                                # the spinner "* Sock-hopping…"
    r"esc to interrupt", r"shift\+tab", r"\? for shortcuts", r"focus-events",
    r"Do you want to proceed", r"Waiting for permission",   # its permission menu
    r"Esc to cancel", r"^\s*\d\. (Yes|No)", r"Yes, and ", r"Run the requested command",
    r"^\s*Tip:", r"Tip: ",                                  # tips
    r"Claude Code v\d", r"[▐▛▜▝▘]{2}", r"^▎", r"Auto mode (is now|lets)",  # start notices
)]


def sidecar_executable() -> list[str]:
    """``csp-sidecar`` as installed next to this Python, else the module."""
    script = Path(sys.executable).with_name("csp-sidecar")
    return [str(script)] if script.exists() else [sys.executable, "-m", "csp_sidecar"]


class FakeAnthropic:
    def __init__(self, root: Path) -> None:
        self.log = root / "anthropic-requests.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tools.fake_anthropic", "--log", str(self.log)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "port N", printed once it serves
        assert first.startswith("port "), f"fake API did not start: {first!r}"
        self.url = f"http://127.0.0.1:{int(first.split()[1])}"

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def conversation(self) -> list[dict[str, Any]]:
        """The main-loop requests: /v1/messages calls that offer Claude its tools."""
        return [r for r in self.requests() if r["path"] == "/v1/messages"
                and isinstance(r["body"], dict) and r["body"].get("tools")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def claude() -> str:
    path = shutil.which("claude")
    if path is None:
        # not tests.conftest.require: CI installs it (.ci/run), a dev box may not have it
        pytest.skip("Claude Code is not installed (npm install -g @anthropic-ai/claude-code)")
    return path


@pytest.fixture
def fake_api(csp_env: CspEnv) -> Iterator[FakeAnthropic]:
    api = FakeAnthropic(csp_env.root)
    yield api
    api.stop()


def claude_env(csp_env: CspEnv, api: FakeAnthropic, project: Path) -> dict[str, str]:
    """A private HOME with the first-run screens answered, pointed at the stand-in API."""
    home = csp_env.root / "home"
    home.mkdir()
    state = {
        "hasCompletedOnboarding": True,  # skips the welcome/login flow (it pings the real API)
        "theme": "dark",
        "projects": {str(project): {"hasTrustDialogAccepted": True}},  # the folder trust screen
    }
    (home / ".claude.json").write_text(json.dumps(state))
    # no ~/.claude/settings.json: its defaults, tips under the spinner included
    return {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_AUTH_TOKEN": "csp-test-token",  # a bearer token: no "use this API key?" screen
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # nothing about the renderer here: the claude profile itself asks for the
        # classic one (CLAUDE_CODE_DISABLE_ALTERNATE_SCREEN), as a new user gets it
    }


def claude_pane(csp_env: CspEnv, tmux: TmuxServer, api: FakeAnthropic, *args: str,
                width: int = 100, onboarded: bool = True) -> Pane:
    """Claude Code in the sidecar in a new pane, its first-run screens answered if onboarded."""
    project = csp_env.root / "project"
    project.mkdir()
    env = claude_env(csp_env, api, project)
    if not onboarded:
        state = csp_env.root / "home" / ".claude.json"
        state.write_text(json.dumps({**json.loads(state.read_text()),
                                     "hasCompletedOnboarding": False}))
    command = ["env", *(f"{k}={v}" for k, v in env.items()),
               *sidecar_executable(), "--name", "claude", "--", "claude", *args]
    return tmux.new_pane(f"cd {shlex.quote(str(project))} && {shlex.join(command)}",
                         width=width, height=30)


def start_claude(csp_env: CspEnv, tmux: TmuxServer, api: FakeAnthropic,
                 *args: str, width: int = 100) -> Pane:
    pane = claude_pane(csp_env, tmux, api, *args, width=width)
    try:
        wait_for(lambda: agent(csp_env).get("state") == "ready", timeout=40,
                 what="Claude Code to be ready")
    except AssertionError:
        raise AssertionError(f"not ready; screen:\n{pane.screen()}") from None
    return pane


def agent(env: CspEnv) -> dict[str, Any]:
    r = env.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    return next((dict(a) for a in json.loads(r.stdout) if a["name"] == "claude"), {})


def outputs(env: CspEnv) -> list[dict[str, Any]]:
    r = env.cspctl("history", "--json", "--limit", "500")
    assert r.returncode == 0, r.stderr
    return [m for m in json.loads(r.stdout) if m["kind"] == "output" and m["from"] == "claude"]


def shared_text(env: CspEnv) -> str:
    return "\n".join(str(m["content"]) for m in outputs(env))


def wait_shared(env: CspEnv, *needles: str) -> str:
    """All of claude's shared output, once every needle is in it."""
    def ready() -> str:
        text = shared_text(env)
        return text if all(n in text for n in needles) else ""
    return wait_for(ready, timeout=20, what=f"{needles} in cspctl history")


def wait_calls(api: FakeAnthropic, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]]:
        calls = api.conversation()
        return calls if len(calls) >= count else []
    return wait_for(enough, timeout=30, what=f"{count} conversation call(s) to the API")


def user_texts(request: dict[str, Any]) -> list[str]:
    """Every user text block of a request, Claude Code's <system-reminder>s left out."""
    return [t for m in request["body"]["messages"] if m["role"] == "user"
            for t in fake_user_texts(m)]


def unwrap_paste(text: str) -> str:
    """Claude Code 2.1 hands a large paste to the model as <pasted_content id=...>...</...>."""
    m = re.fullmatch(r'\s*<pasted_content id="[^"]*">\n(.*)\n</pasted_content id="[^"]*">\s*',
                     text, re.DOTALL)
    return m.group(1) if m else text


def assert_clean(text: str, sent: str) -> None:
    for line in text.splitlines():
        for pattern in CHROME:
            assert not pattern.search(line), f"chrome {pattern.pattern!r} shared: {line!r}"
    for line in sent.splitlines():
        if line.strip():
            assert line.strip() not in [x.strip() for x in text.splitlines()], \
                f"echo of the injected prompt shared: {line!r}"


def test_group_message_is_one_prompt_and_the_reply_is_shared_clean(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    pane = start_claude(csp_env, tmux, fake_api)
    body = "please answer briefly\nthe second line\nand a third one"
    assert csp_env.cspctl("send", "@claude", body).returncode == 0

    # Claude Code asked "the model" once, with the whole message as one user prompt
    first = wait_calls(fake_api, 1)
    prompts = [t for t in user_texts(first[-1]) if "please answer" in t or "second line" in t]
    assert prompts == [f"{TAG} {body}"], prompts

    # its reply reaches the room as clean output text from claude
    expected = f"ECHO: {TAG} please answer briefly / the second line / and a third one"
    try:
        shared = wait_shared(csp_env, expected, "(3 lines received)")
    except AssertionError:
        raise AssertionError(f"reply not shared: {outputs(csp_env)}\nscreen:\n"
                             f"{pane.screen()}") from None
    assert_clean(shared, f"{TAG} {body}")
    assert shared.count(expected) == 1  # shared once, not once per redraw
    assert len(fake_api.conversation()) == 1  # the Enter submitted it exactly once

    # and it is ready for the next one: a long message (a paste Claude Code folds into
    # "[Pasted text #1 +29 lines]", the case where an early Enter gets swallowed) is
    # again one prompt
    wait_for(lambda: agent(csp_env).get("state") == "ready", timeout=20, what="ready again")
    long = "\n".join(f"row {i:02d} of a long message: " + "x" * 40 for i in range(30))
    assert csp_env.cspctl("send", "@claude", long).returncode == 0
    second = wait_calls(fake_api, 2)
    tagged = [unwrap_paste(t) for t in user_texts(second[-1]) if TAG in t]
    assert tagged == [f"{TAG} {body}", f"{TAG} {long}"]
    shared = wait_shared(csp_env, "row 29 of a long message", "lines received)")
    assert_clean(shared, f"{TAG} {body}\n{long}")
    assert len(fake_api.conversation()) == 2

def test_a_message_sent_while_claude_works_waits_for_its_reply(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    # narrow, so that the tip Claude Code shows under its spinner from the second turn
    # on ("⎿  Tip: …", tips are on by default) wraps onto a second line
    pane = start_claude(csp_env, tmux, fake_api, width=64)
    # the stand-in API holds both replies back for a few seconds
    assert csp_env.cspctl("send", "@claude", f"please {SLOW_MARK}").returncode == 0
    wait_calls(fake_api, 1)
    wait_for(lambda: agent(csp_env).get("state") == "busy", what="claude busy")
    second = f"meanwhile, {SLOW_MARK}"
    assert csp_env.cspctl("send", "@claude", second).returncode == 0
    wait_for(lambda: agent(csp_env).get("queue") == 1, what="the second message queued")
    # held back, not typed into its input while it works (the API answers seconds later)
    assert "meanwhile" not in pane.screen()
    pane.wait_text(f"ECHO: {TAG} please {SLOW_MARK}", timeout=20)
    calls = wait_calls(fake_api, 2)
    assert len(calls) == 2
    tagged = [t for t in user_texts(calls[-1]) if TAG in t]
    assert tagged == [f"{TAG} please {SLOW_MARK}", f"{TAG} {second}"]
    shared = wait_shared(csp_env, f"ECHO: {TAG} {second}")
    assert shared.index(f"ECHO: {TAG} please") < shared.index(f"ECHO: {TAG} meanwhile")
    assert_clean(shared, f"{TAG} please {SLOW_MARK}")
    # its two replies and nothing else: no tip, nor the line a tip wraps onto
    said = {line.strip() for line in shared.splitlines() if line.strip()}
    assert said == {f"ECHO: {TAG} please {SLOW_MARK}", f"ECHO: {TAG} {second}",
                    "(1 line received)"}, shared


def test_a_message_never_answers_claudes_permission_prompt(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    # "manual" permissions: Claude Code asks before running a command that writes
    # (its default, "auto" mode, lets a classifier decide, and let this one run)
    pane = start_claude(csp_env, tmux, fake_api, "--permission-mode", "default")
    made = csp_env.root / "project" / "made-by-tool"
    assert csp_env.cspctl("send", "@claude", f"{RUN_MARK} touch {made.name}").returncode == 0
    pane.wait_text("Do you want to proceed?", timeout=30)  # its menu: " ❯ 1. Yes", ...
    # a message now would pick the menu's entry if typed in (its Enter chooses "1. Yes")
    assert csp_env.cspctl("send", "@claude", "2 more things, yes").returncode == 0
    wait_for(lambda: agent(csp_env).get("queue") == 1, what="the message held back")
    assert "Do you want to proceed?" in pane.screen()
    assert not made.exists()
    # the human answers the menu (Esc: no); only then does the message go in, as a prompt
    pane.send("Escape")
    calls = wait_calls(fake_api, 2)
    tagged = [t for t in user_texts(calls[-1]) if TAG in t]
    assert tagged[-1] == f"{TAG} 2 more things, yes"
    assert not made.exists()  # the command never ran
    shared = wait_shared(csp_env, f"ECHO: {TAG} 2 more things, yes")
    assert_clean(shared, f"{TAG} {RUN_MARK} touch {made.name}")
    # nothing of the menu was shared, not even the command it showed on a line of its
    # own; the tool call is, once, as the one line Claude Code keeps of it
    lines = [line.strip() for line in shared.splitlines()]
    assert f"touch {made.name}" not in lines
    assert lines.count(f"Bash(touch {made.name})") == 1, shared


def test_an_approved_tool_call_is_shared_as_its_call_and_result_not_its_menu(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    pane = start_claude(csp_env, tmux, fake_api, "--permission-mode", "default")
    made = csp_env.root / "project" / "approved"
    assert csp_env.cspctl("send", "@claude", f"{RUN_MARK} touch {made.name}").returncode == 0
    pane.wait_text("Do you want to proceed?", timeout=30)
    wait_for(lambda: agent(csp_env).get("state") == "busy", what="the menu counted as busy")
    pane.send("Enter")  # the human picks "1. Yes"
    shared = wait_shared(csp_env, "TOOL RESULT:")
    assert made.exists()
    assert_clean(shared, f"{TAG} {RUN_MARK} touch {made.name}")
    said = [" ".join(line.split()) for line in shared.splitlines() if line.strip()]
    # the call as one line, its outcome, and Claude's words about it: nothing of the menu
    assert said == [f"Bash(touch {made.name})", "⎿ Done",
                    "TOOL RESULT: (Bash completed with no output)"], shared


def test_its_onboarding_screens_are_not_shared(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    # a new user's first start: a splash ("Welcome to Claude Code v…", stars), then a
    # theme menu; Claude has said nothing yet
    pane = claude_pane(csp_env, tmux, fake_api, onboarded=False)
    pane.wait_text("Choose the text style", timeout=30)
    assert agent(csp_env).get("state") != "ready"
    # Ctrl-C until it exits; the sidecar captures a last time and posts it before it ends
    try:
        wait_for(lambda: pane.status_file.exists() or pane.send("C-c"), timeout=20,
                 interval=0.5, what="claude and its sidecar to exit")
    except AssertionError:
        raise AssertionError(pane.screen()) from None
    assert outputs(csp_env) == []
