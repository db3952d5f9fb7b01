"""The real Claude Code CLI inside csp-sidecar, answering through a local stand-in API.

This is csp tried as a new user would: ``csp-sidecar --name claude -- claude``
in a tmux pane, a message sent with ``cspctl send @claude``, and the reply
read back with ``cspctl history``.  Claude Code is the one from the npm
registry (``npm install -g @anthropic-ai/claude-code``); it talks to
``tests/tools/fake_anthropic.py`` through ``ANTHROPIC_BASE_URL``, so the test
sees exactly what Claude Code sent to "the model" and knows what it answered:
``long_reply(prompt, turn)``, 46 lines of markdown (a table, a quote, a code
block, indentation, lines wider than any pane, a line quoting the prompt).

The sidecar runs Claude Code with hooks of its own (``--settings``): a prompt
received means busy, the turn's end means ready and its reply
(``last_assistant_message``) is shared, exactly and once; a permission menu
means it waits for its human, and nothing is typed in.  Nothing is read off the
screen, so the pane's width and its resizes change nothing.  Its first-run
screens (onboarding, folder trust) are pre-answered in a private ``HOME``,
whose ``~/.claude/settings.json`` carries a Stop hook of the user's own.
Skips when ``claude`` is not installed (.ci/run installs it).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csp_sidecar.hooks import SOCKET_ENV
from csp_sidecar.profiles import apply_to_env, load_profile
from csp_sidecar.wiring import RunFacts, hook_argv, wire
from tests.conftest import CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.standins import StandIn, sidecar_executable
from tests.tmuxtest import Pane, TmuxServer
from tests.tools.fake_anthropic import RUN_MARK, SLOW_MARK, last_user_text
from tests.tools.fake_anthropic import user_texts as fake_user_texts
from tests.tools.long_reply import long_reply

TAG = "[human → @claude]"
HEIGHT = 30
# the last line of every long reply: on screen, the reply has been rendered in full
END = "46 lines in all."


class FakeAnthropic(StandIn):
    module = "tests.tools.fake_anthropic"
    log_name = "anthropic-requests.jsonl"

    def conversation(self) -> list[dict[str, Any]]:
        """The main-conversation requests (those that offer tools), turn 1, 2, 3..."""
        return [r for r in self.requests() if "turn" in r]

    def expected(self, turn: int) -> str:
        """What the stand-in answered in main turn ``turn``, from the prompt it logged."""
        request = next(r for r in self.conversation() if r["turn"] == turn)
        return long_reply(last_user_text(request["body"]), turn)

    def release(self) -> None:
        """Let the replies held for a "take your time" prompt go."""
        req = urllib.request.Request(f"{self.url}/_test/release", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert json.load(answer) == {"released": True}



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


def user_hook_log(env: CspEnv) -> Path:
    return env.root / "users-own-stop-hook.jsonl"


def claude_env(csp_env: CspEnv, api: FakeAnthropic, project: Path) -> dict[str, str]:
    """A private HOME with the first-run screens answered, pointed at the stand-in API.

    Its ``~/.claude/settings.json`` has a Stop hook of the user's own, which
    appends the event's JSON to :func:`user_hook_log`: csp's hooks must not
    replace it.
    """
    home = csp_env.root / "home"
    home.mkdir()
    state = {
        "hasCompletedOnboarding": True,  # skips the welcome/login flow (it pings the real API)
        "theme": "dark",
        "projects": {str(project): {"hasTrustDialogAccepted": True}},  # the folder trust screen
    }
    (home / ".claude.json").write_text(json.dumps(state))
    log = shlex.quote(str(user_hook_log(csp_env)))
    settings = {"hooks": {"Stop": [{"hooks": [
        {"type": "command", "command": f"tr -d '\\n' >> {log}; echo >> {log}"}]}]}}
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(json.dumps(settings))
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
                         width=width, height=HEIGHT)


def start_claude(csp_env: CspEnv, tmux: TmuxServer, api: FakeAnthropic,
                 *args: str, width: int = 100) -> Pane:
    pane = claude_pane(csp_env, tmux, api, *args, width=width)
    wait_agent(csp_env, pane, "Claude Code to be ready", timeout=40, state="ready")
    return pane


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(str(self.socket_path))
        self.sock = sock


def gateway_api(env: CspEnv, method: str, path: str, body: Any = None) -> Any:
    """Call the gateway's API: cheap enough to poll (a cspctl run is a new Python)."""
    conn = _UnixHTTP(env.socket)
    headers = {"Authorization": f"Bearer {env.token_file.read_text().strip()}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        answer = conn.getresponse()
        assert answer.status in (200, 201), (answer.status, answer.read())
        return json.load(answer)
    finally:
        conn.close()


def gateway_get(env: CspEnv, path: str) -> Any:
    return gateway_api(env, "GET", path)


def post(env: CspEnv, text: str) -> None:
    """What ``cspctl send @claude TEXT`` does, through the API (as the human)."""
    gateway_api(env, "POST", "/v1/messages", {"to": ["@claude"], "content": text})


def claude_of(agents: list[dict[str, Any]]) -> dict[str, Any]:
    return next((dict(a) for a in agents if a["name"] == "claude"), {})


def cspctl_json(env: CspEnv, *args: str) -> Any:
    r = env.cspctl(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_agent(env: CspEnv, pane: Pane, what: str, timeout: float = 20, reason: str = "",
               cspctl: bool = True, **want: Any) -> dict[str, Any]:
    """Claude, once it has the fields ``want`` (and ``reason`` in its reason): polled
    through the API, then (``cspctl``) read as ``cspctl agents --json`` shows it."""
    def matches(a: dict[str, Any]) -> bool:
        return all(a.get(k) == v for k, v in want.items()) and reason in str(a.get("reason"))

    def now() -> dict[str, Any]:
        return claude_of(gateway_get(env, "/v1/agents")["agents"])

    def matching() -> dict[str, Any]:
        a = now()
        return a if matches(a) else {}
    try:
        seen = wait_for(matching, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {now()}\nscreen:\n{pane.screen()}") from None
    if not cspctl:
        return seen
    shown = claude_of(cspctl_json(env, "agents"))
    assert matches(shown), shown
    return shown


def said(env: CspEnv) -> list[dict[str, Any]]:
    """Everything claude has posted, oldest first, as ``cspctl history --json`` shows it."""
    return [m for m in cspctl_json(env, "history", "--limit", "500") if m["from"] == "claude"]


def posts(env: CspEnv) -> list[dict[str, Any]]:
    """The same, read through the API (cheap enough to poll)."""
    return [m for m in gateway_get(env, "/v1/messages?limit=500")["messages"]
            if m["from"] == "claude"]


def send(env: CspEnv, *args: str) -> None:
    r = env.cspctl("send", *args)
    assert r.returncode == 0, r.stderr


def wait_said(env: CspEnv, count: int, pane: Pane, timeout: float = 30) -> list[dict[str, Any]]:
    """Claude's posts (``posts``), once there are ``count`` of them."""
    def enough() -> list[dict[str, Any]]:
        now = posts(env)
        return now if len(now) >= count else []
    try:
        return wait_for(enough, timeout=timeout, what=f"{count} post(s) from claude")
    except AssertionError:
        raise AssertionError(f"posts: {posts(env)}\nscreen:\n{pane.screen()}") from None


def wait_calls(api: FakeAnthropic, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]]:
        calls = api.conversation()
        return calls if len(calls) >= count else []
    return wait_for(enough, timeout=30, what=f"{count} conversation call(s) to the API")


def tagged_prompts(request: dict[str, Any]) -> list[str]:
    """Every user text of a request that holds a csp message, in order."""
    return [t for m in request["body"]["messages"] if m["role"] == "user"
            for t in fake_user_texts(m) if TAG in t]


def unwrap_paste(text: str) -> str:
    """Claude Code 2.1 hands a large paste to the model as <pasted_content id=...>...</...>."""
    m = re.fullmatch(r'\s*<pasted_content id="[^"]*">\n(.*)\n</pasted_content id="[^"]*">\s*',
                     text, re.DOTALL)
    return m.group(1) if m else text


def title(pane: Pane) -> str:
    """What the sidecar shows in the pane's border (``cspctl attach``) and title."""
    return pane.info("#{@csp_title}")


def turn_done(screen: str) -> bool:
    """Claude Code's turn is over: its spinner gave way to "✻ Churned for 2s · done …"."""
    return (re.search(r"^\s*✻ \w+ for \d", screen, re.MULTILINE) is not None
            and "esc to interrupt" not in screen and "Stop hooks" not in screen)


def settings_timeout(settings: dict[str, Any]) -> float:
    """The longest time Claude Code gives one of csp's hooks (seconds)."""
    return max(float(h["timeout"]) for entries in settings["hooks"].values()
               for entry in entries for h in entry["hooks"])


def resize(tmux: TmuxServer, pane: Pane, width: int) -> None:
    tmux.run("resize-window", "-t", pane.target.split(":")[0], "-x", str(width),
             "-y", str(HEIGHT))
    wait_for(lambda: pane.info("#{pane_width}") == str(width), what=f"the pane {width} wide")


@pytest.mark.parametrize("width", [40, 66, 200])
def test_each_reply_is_shared_word_for_word_once_at_any_width(
        width: int, claude: str, csp_env: CspEnv, gateway: GatewayProcess,
        tmux: TmuxServer, fake_api: FakeAnthropic) -> None:
    pane = start_claude(csp_env, tmux, fake_api, width=width)
    # the third one long: Claude Code folds its paste into "[Pasted text #1 +29 lines]"
    # (where an Enter that comes too soon gets swallowed), and its hook must still say
    # that it took it
    long = "\n".join(f"row {i:02d} of question three: " + "x" * 40 for i in range(30))
    questions = ["question one", "question two\nwith a second line", long]
    for turn, question in enumerate(questions, 1):
        if turn == 1:
            send(csp_env, "@claude", question)
        else:
            post(csp_env, question)  # the same, without starting a cspctl each time
        got = wait_said(csp_env, turn, pane)
        # one prompt per message: Claude Code asked "the model" once, the message its prompt
        calls = fake_api.conversation()
        assert [c["turn"] for c in calls] == list(range(1, turn + 1))
        assert unwrap_paste(last_user_text(calls[-1]["body"])) == f"{TAG} {question}"
        assert [unwrap_paste(t) for t in tagged_prompts(calls[-1])] == [
            f"{TAG} {q}" for q in questions[:turn]]
        # its reply, word for word: markdown, long lines and the line quoting the prompt
        assert [(m["kind"], m["content"]) for m in got] == [
            ("output", fake_api.expected(n)) for n in range(1, turn + 1)]
        # ready again at once (its Stop hook said so), for the next message
        wait_agent(csp_env, pane, "ready again", state="ready", cspctl=False)
    assert got[0]["content"] == long_reply(f"{TAG} question one", 1)

    # resized twice (Claude Code redraws what it shows): nothing new is posted; the
    # next message's reply is the only post after them
    for new_width in (width + 37, max(30, width - 17)):
        resize(tmux, pane, new_width)
    post(csp_env, "question four")
    wait_said(csp_env, 4, pane)
    assert len(fake_api.conversation()) == 4
    # as cspctl history shows them: each reply once, word for word, and nothing else
    shared = said(csp_env)
    assert [(m["kind"], m["content"]) for m in shared] == [
        ("output", fake_api.expected(n)) for n in range(1, 5)]
    assert shared[-1]["content"] == long_reply(f"{TAG} question four", 4)
    # each message was confirmed by Claude Code's UserPromptSubmit hook, and acknowledged
    wait_agent(csp_env, pane, "every message acknowledged", state="ready", queue=0, pending=0)

    # the user's own Stop hook ran at the end of every turn, next to csp's
    ran = [json.loads(line) for line in user_hook_log(csp_env).read_text().splitlines()]
    assert [e.get("last_assistant_message") for e in ran] == [m["content"] for m in shared]


def test_a_message_sent_while_claude_works_waits_for_its_turn_to_end(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    pane = start_claude(csp_env, tmux, fake_api, width=66)
    first = f"please {SLOW_MARK}"
    send(csp_env, "@claude", first)
    wait_calls(fake_api, 1)  # the stand-in holds its reply until released
    wait_agent(csp_env, pane, "claude busy", state="busy")
    wait_for(lambda: title(pane).startswith("claude · busy"), what="busy in the pane title")
    second = "meanwhile, one more thing"
    post(csp_env, second)
    wait_agent(csp_env, pane, "the second message queued", state="busy", queue=1,
               reason="the agent is busy")
    assert "meanwhile" not in pane.screen()  # not typed into its input while it works
    # resized while it works: changes nothing of what it says
    resize(tmux, pane, 90)
    resize(tmux, pane, 52)
    assert len(fake_api.conversation()) == 1
    fake_api.release()
    wait_said(csp_env, 2, pane)
    calls = fake_api.conversation()
    assert len(calls) == 2
    assert tagged_prompts(calls[-1]) == [f"{TAG} {first}", f"{TAG} {second}"]
    assert [(m["kind"], m["content"]) for m in said(csp_env)] == [
        ("output", long_reply(f"{TAG} {first}", 1)), ("output", long_reply(f"{TAG} {second}", 2))]
    wait_agent(csp_env, pane, "ready again", state="ready", queue=0)


def test_no_message_answers_a_permission_prompt_not_even_an_urgent_one(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    # "manual" permissions: Claude Code asks before running a command that writes
    # (its default, "auto" mode, lets a classifier decide, and let this one run)
    pane = start_claude(csp_env, tmux, fake_api, "--permission-mode", "default")
    made = csp_env.root / "project" / "made-by-tool"
    post(csp_env, f"{RUN_MARK} touch {made.name}")
    pane.wait_text("Do you want to proceed?", timeout=30)  # its menu: " ❯ 1. Yes", ...
    wait_agent(csp_env, pane, "claude waiting", state="waiting")
    wait_for(lambda: title(pane).startswith("claude · waiting"), what="waiting in the title")
    # a message now would pick the menu's entry if typed in (its Enter chooses "1. Yes"),
    # an urgent one as much as any other
    send(csp_env, "@claude", "2 more things, yes")
    send(csp_env, "@claude", "!stop, wrong branch")
    wait_agent(csp_env, pane, "both messages held back", state="waiting", queue=2,
               reason="waits for its human")
    screen = pane.screen()
    assert "Do you want to proceed?" in screen and "wrong branch" not in screen, screen
    assert not made.exists()
    assert len(fake_api.conversation()) == 1
    assert said(csp_env) == []  # the tool call is not shared (tool activity is off)
    # the human answers the menu (Esc: no); only then do the messages go in, as one
    # prompt, the urgent one first
    pane.send("Escape")
    calls = wait_calls(fake_api, 2)
    assert tagged_prompts(calls[-1])[-1] == \
        f"{TAG} stop, wrong branch\n\n{TAG} 2 more things, yes"
    wait_said(csp_env, 1, pane)
    assert [(m["kind"], m["content"]) for m in said(csp_env)] == [
        ("output", fake_api.expected(2))]
    assert not made.exists()  # the command never ran
    wait_agent(csp_env, pane, "ready again", state="ready", queue=0)


def test_a_permission_prompt_the_human_dismisses_leaves_it_ready(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    pane = start_claude(csp_env, tmux, fake_api, "--permission-mode", "default")
    post(csp_env, f"{RUN_MARK} touch made-by-tool")
    pane.wait_text("Do you want to proceed?", timeout=30)
    wait_agent(csp_env, pane, "claude waiting", state="waiting", cspctl=False)
    # Esc: no. Claude Code ends the turn ("Interrupted · What should Claude do instead?")
    # without its Stop hook, and waits for its input: ready, with nothing queued
    pane.send("Escape")
    pane.wait_text("Interrupted")
    wait_agent(csp_env, pane, "ready after the menu was dismissed", timeout=8, state="ready")


def test_a_hook_with_no_sidecar_behind_it_returns_at_once(
        claude: str, csp_env: CspEnv, tmux: TmuxServer, fake_api: FakeAnthropic,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Claude Code with csp's wiring, but its sidecar gone: the socket its hooks talk to
    # is a dead one's (a file nobody listens on), as after a kill -9
    dead = csp_env.root / "dead"
    dead.mkdir(mode=0o700)
    gone = dead / "claude.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(gone))
    monkeypatch.setenv("XDG_CONFIG_HOME", csp_env.env["XDG_CONFIG_HOME"])  # shipped profile
    profile = load_profile("claude")
    project = csp_env.root / "project"
    project.mkdir()
    env = apply_to_env(profile, claude_env(csp_env, fake_api, project))
    # csp-hook as the sidecar runs it, behind a line that notes each call (then execs it)
    hook_calls = csp_env.root / "csp-hook-calls"
    recorder = ("/bin/sh", "-c", f'echo "$*" >> {shlex.quote(str(hook_calls))}; exec "$@"', "sh")
    wiring = wire(profile, RunFacts(agent="claude", hook_socket=gone, env=env,
                                    command=["claude"], cwd=project,
                                    hook_argv=(*recorder, *hook_argv())))
    assert wiring.hooks is not None
    env.update(wiring.env)
    settings = json.loads(wiring.args[1])

    # each hook command, run as Claude Code runs it (sh -c, the event's JSON on stdin),
    # exits 0 and says nothing, long before Claude Code's timeout for it: whether the
    # socket is a dead sidecar's, missing, or a hung sidecar's (it listens, never reads)
    hung = dead / "hung.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(hung))
        listening.listen(1)
        for path in (gone, dead / "missing.sock", hung):
            for event in ("UserPromptSubmit", "Stop"):
                (entry,) = settings["hooks"][event]
                (hook,) = entry["hooks"]
                payload = json.dumps({"hook_event_name": event, "session_id": "s",
                                      "prompt": "x", "last_assistant_message": "y" * 1_000_000})
                started = time.monotonic()
                r = subprocess.run(["sh", "-c", hook["command"]], input=payload, text=True,
                                   capture_output=True, timeout=30,
                                   env={**os.environ, **env, SOCKET_ENV: str(path)})
                took = time.monotonic() - started
                assert (r.returncode, r.stdout) == (0, ""), (path, r)
                assert took < hook["timeout"] / 2, f"{event} hook took {took:.1f}s on {path}"
    hook_calls.unlink()

    command = ["env", *(f"{k}={v}" for k, v in env.items()), *wiring.apply(["claude"])]
    pane = tmux.new_pane(f"cd {shlex.quote(str(project))} && {shlex.join(command)}",
                         width=100, height=HEIGHT)
    # its input line, between two rules ("❯ " in column 0)
    wait_for(lambda: any(line.startswith("❯") for line in pane.screen().splitlines()),
             timeout=40, what="Claude Code's input line")
    for turn, question in enumerate(["hello without a sidecar", "and again"], 1):
        pane.type(question)
        pane.wait_text(question)
        pane.send("Enter")
        # the stand-in got it (UserPromptSubmit's hook did not hold the prompt up), and
        # Claude Code shows the whole reply
        calls = wait_calls(fake_api, turn)
        assert last_user_text(calls[-1]["body"]) == question
        try:
            pane.wait_text(f"End of turn {turn}: {END}", timeout=30)
            # then runs its Stop hooks, csp's and the user's ("running Stop hooks… 0/2"
            # under the spinner), and the turn is done ("✻ Churned for 0s · done"): well
            # within the hooks' timeout, which a csp-hook waiting for its sidecar would use up
            wait_for(lambda: turn_done(pane.screen()), timeout=settings_timeout(settings),
                     what=f"turn {turn} to be done")
        except AssertionError:
            raise AssertionError(pane.screen()) from None
    # csp's hooks ran (and returned), and the user's own Stop hook next to them
    events = [line.split()[-1] for line in hook_calls.read_text().splitlines()]
    assert events.count("UserPromptSubmit") == 2 and events.count("Stop") == 2, events
    assert len(user_hook_log(csp_env).read_text().splitlines()) == 2
    # no hook error shown (the banner's folder, named after this test, aside)
    assert "hook" not in pane.screen().replace(str(project), "").lower(), pane.screen()


def test_its_onboarding_screens_are_not_shared(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        fake_api: FakeAnthropic) -> None:
    # a new user's first start: a splash ("Welcome to Claude Code v…", stars), then a
    # theme menu; Claude has said nothing yet
    pane = claude_pane(csp_env, tmux, fake_api, onboarded=False)
    pane.wait_text("Choose the text style", timeout=30)
    assert claude_of(cspctl_json(csp_env, "agents")).get("state") != "ready"
    # Ctrl-C until it exits (and no more: the shell around the sidecar would take it)
    sidecar = Path(f"/proc/{pane.pid}")

    def gone() -> bool:
        if not sidecar.exists():
            return True
        pane.send("C-c")
        return False
    try:
        wait_for(gone, timeout=20, interval=0.5, what="claude and its sidecar to exit")
    except AssertionError:
        raise AssertionError(pane.screen()) from None
    wait_agent(csp_env, pane, "claude offline", online=False)
    assert said(csp_env) == []
