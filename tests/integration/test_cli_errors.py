"""cspctl as a script sees it: exit codes that mean something, clear errors, --json.

Every case runs the real ``cspctl`` against a real ``cspd`` (the ``gateway``
fixture) and checks the exit code from README's table, that stderr explains
the problem, and that no Python traceback ever reaches the user.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from csp_cli.main import COMMANDS
from tests.conftest import CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

TRACEBACK = "Traceback (most recent call last)"


def check(r: subprocess.CompletedProcess[str], code: int, *in_stderr: str) -> None:
    """Exit code as documented, each phrase in stderr, and never a traceback."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    for phrase in in_stderr:
        assert phrase in r.stderr, (phrase, r.stderr)
    assert TRACEBACK not in r.stderr + r.stdout


def foreign_token_env(env: CspEnv) -> dict[str, str]:
    """A client whose token file holds another token than the gateway's."""
    run = env.root / "other-run"
    (run / "csp").mkdir(parents=True, mode=0o700)
    (run / "csp" / "token").write_text("not-the-gateways-token\n")
    return {"XDG_RUNTIME_DIR": str(run), "CSP_GATEWAY": str(env.socket)}


@pytest.mark.parametrize(("args", "code", "phrase"), [
    (("send", "@all", ""), 2, "empty message"),
    (("send", "@nobody", "hi"), 5, "unknown recipient: @nobody"),
    (("send", "--room", "Bad Room", "hi"), 2, "invalid room name"),
    (("send", "--room", "nosuch", "hi"), 5, "no room #nosuch"),
    (("send", "--bogus", "hi"), 2, "No such option"),
    (("history", "--limit", "0"), 2, "limit must be between"),
    (("history", "--room", "nosuch"), 5, "no room #nosuch"),
    (("pause", "nosuch"), 5, "unknown agent 'nosuch'"),
    (("pause", "Bad!"), 2, "invalid agent name"),
    (("rooms", "join", "nosuch"), 5, "no room #nosuch"),
    (("rooms", "relay", "main", "maybe"), 2, "not one of"),
    (("agents", "remove", "nosuch"), 5, "no agent 'nosuch'"),
    (("agents", "add", "x", "--env", "NOPE", "--", "cat"), 2, "--env wants KEY=VALUE"),
    (("agents", "forget", "Bad!"), 2, "invalid agent name"),
    (("spawn", "Bad!"), 2, "invalid agent name"),
    (("kill", "--timeout", "-1"), 2, "-1.0 is not in the range x>=0"),
])
def test_bad_input_gets_its_exit_code(csp_env: CspEnv, gateway: GatewayProcess,
                                      args: tuple[str, ...], code: int, phrase: str) -> None:
    check(csp_env.cspctl(*args, input=""), code, phrase)


def test_text_over_64_kib_is_refused_with_the_limit(csp_env: CspEnv,
                                                    gateway: GatewayProcess) -> None:
    r = csp_env.cspctl("send", "@all", "-", input="x" * (64 * 1024 + 1))
    check(r, 2, "the limit is 65536")


def test_history_of_an_empty_room_is_not_an_error(csp_env: CspEnv,
                                                  gateway: GatewayProcess) -> None:
    assert csp_env.cspctl("rooms", "create", "quiet").returncode == 0
    r = csp_env.cspctl("history", "--room", "quiet", "--json")
    check(r, 0)
    assert json.loads(r.stdout) == []


def test_an_agent_may_not_read_or_rotate_the_owners_token(csp_env: CspEnv,
                                                          gateway: GatewayProcess) -> None:
    """A process working for an agent (its sidecar gave it CSP_AGENT) is refused the
    owner's token; the path, and the owner's own `cspctl token`, still work."""
    owner = csp_env.cspctl("token")
    assert owner.returncode == 0 and owner.stdout.strip() == csp_env.token_file.read_text().strip()
    for args in (("token",), ("token", "--rotate")):
        r = csp_env.cspctl(*args, extra_env={"CSP_AGENT": "fa"})
        assert r.returncode == 4, (args, r.stdout, r.stderr)
        assert "inside agent 'fa'" in r.stderr and "Traceback" not in r.stderr
        assert owner.stdout.strip() not in r.stdout
    assert csp_env.token_file.read_text().strip() == owner.stdout.strip()  # not rotated
    assert csp_env.cspctl("token", "--path", extra_env={"CSP_AGENT": "fa"}).returncode == 0


def test_refused_token_exits_4_and_status_says_the_gateway_answers(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    other = foreign_token_env(csp_env)
    check(csp_env.cspctl("send", "hi", extra_env=other), 4,
          f"wrong token: the gateway at {csp_env.socket} does not accept the one in "
          f"{other['XDG_RUNTIME_DIR']}/csp/token")
    r = csp_env.cspctl("gateway", "status", extra_env=other)
    check(r, 4)
    assert "answering, but it refused this client: wrong token" in r.stdout
    r = csp_env.cspctl("gateway", "status", "--json", extra_env=other)
    check(r, 4)
    status = json.loads(r.stdout)
    assert (status["health"], status["error"]) == (None, "wrong token")


def test_gateway_stopped_exits_3_with_the_os_reason(csp_env: CspEnv,
                                                    gateway: GatewayProcess) -> None:
    gateway.stop()
    for args in (("send", "hi"), ("agents",), ("rooms",), ("pause", "claude")):
        r = csp_env.cspctl(*args)
        check(r, 3, "the gateway is not running at", "(No such file or directory)",
              "start it with")
        assert "ClientConnectorError" not in r.stderr  # aiohttp's wording stays inside
    r = csp_env.cspctl("gateway", "status", "--json")
    check(r, 3)
    assert json.loads(r.stdout)["health"] is None


def test_chat_with_stdin_at_dev_null_ends_cleanly(csp_env: CspEnv,
                                                  gateway: GatewayProcess) -> None:
    # epoll refuses /dev/null: this used to print a traceback and then hang
    r = subprocess.run([sys.executable, "-m", "csp_cli", "chat"], env=csp_env.env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    check(r, 0)


def test_chat_fed_by_a_pipe_exits_with_the_failed_lines_code(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    check(csp_env.cspctl("chat", input="hello\n"), 0)
    check(csp_env.cspctl("chat", input="@nobody hi\n"), 5, "unknown recipient: @nobody")
    check(csp_env.cspctl("chat", input="hi\n", extra_env=foreign_token_env(csp_env)), 4,
          "wrong token")


def test_agents_presets_json(csp_env: CspEnv) -> None:
    r = csp_env.cspctl("agents", "presets", "--json")
    check(r, 0)
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert set(rows) >= {"claude", "codex", "gemini", "aider"}
    assert rows["claude"]["skip_permissions"] == ["--dangerously-skip-permissions"]
    assert set(rows["aider"]) >= {"command", "profile", "installed", "install_hint"}


def test_config_show_checks_the_gateway_table(csp_env: CspEnv) -> None:
    r = csp_env.cspctl("config", "show", "--json")
    check(r, 0)
    assert json.loads(r.stdout)["config"]["gateway"]["max_message_bytes"] == 65536
    csp_env.config.parent.mkdir(parents=True, exist_ok=True)
    csp_env.config.write_text('[gateway]\nmax_message_bytes = "big"\n')
    check(csp_env.cspctl("config", "show"), 2, "gateway.max_message_bytes must be int")


def test_rooms_relay_says_on_and_off(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    r = csp_env.cspctl("rooms", "relay", "main", "on", "--hop-limit", "4")
    check(r, 0, "#main: relay on, hop limit 4")
    r = csp_env.cspctl("rooms", "--json")
    main = next(room for room in json.loads(r.stdout)["rooms"] if room["name"] == "main")
    assert (main["relay"], main["hop_limit"]) == (True, 4)


def test_attach_without_a_terminal_says_how_to_attach(csp_env: CspEnv, gateway: GatewayProcess,
                                                      tmux: TmuxServer) -> None:
    r = csp_env.cspctl("attach", "-L", tmux.socket, input="")
    check(r, 1, "cannot attach: this is not a terminal",
          f"tmux -L {tmux.socket} attach-session -t csp")
    assert "open terminal failed" not in r.stderr
    assert tmux.run("has-session", "-t", "=csp", check=False).returncode == 0


def test_every_verb_has_help(csp_env: CspEnv) -> None:
    verbs = [(), *((verb,) for verb in COMMANDS), ("agents", "add"), ("agents", "presets"),
             ("config", "show"), ("gateway", "status"), ("rooms", "relay")]
    for verb in verbs:
        r = csp_env.cspctl(*verb, "--help")
        check(r, 0)
        assert "Usage: cspctl" in r.stdout
    check(csp_env.run(sys.executable, "-m", "csp_sidecar", "--help"), 0)
    check(csp_env.run(sys.executable, "-m", "cspd", "--help"), 0)


def test_sidecar_names_a_command_it_cannot_run(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    r = csp_env.run(sys.executable, "-m", "csp_sidecar", "--name", "ghost", "--",
                    "/nonexistent/agent", input="")
    check(r, 127, "cannot run '/nonexistent/agent': not found or not executable")
    assert "None" not in r.stderr


def test_text_far_over_the_limit_names_the_limit_too(csp_env: CspEnv,
                                                     gateway: GatewayProcess) -> None:
    # past the HTTP body limit aiohttp answers before the handler: same wording
    r = csp_env.cspctl("send", "@all", "-", input="x" * (4 * 1024 * 1024))
    check(r, 2, "the limit is 65536 bytes")


@pytest.mark.parametrize("args", [
    ("send", "hello"), ("history",), ("agents",), ("agents", "presets"), ("rooms",),
    ("config", "show"), ("gateway", "status"),
])
def test_what_readme_says_takes_json_prints_json(csp_env: CspEnv, gateway: GatewayProcess,
                                                 args: tuple[str, ...]) -> None:
    r = csp_env.cspctl(*args, "--json")
    check(r, 0)
    json.loads(r.stdout)


def test_mcp_refuses_a_bad_name_at_start(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    # not as an error result on every tool call, with exit 0
    check(csp_env.cspctl("mcp", "--as", "Bad!", input=""), 2, "invalid agent name 'Bad!'")


def _online(env: CspEnv, name: str) -> bool | None:
    rows = json.loads(env.cspctl("agents", "--json").stdout)
    return next((row["online"] for row in rows if row["name"] == name), None)


def test_agents_forget(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    sidecar = subprocess.Popen([sys.executable, "-m", "csp_sidecar", "--name", "worker", "--",
                                "sleep", "60"], env=csp_env.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _online(csp_env, "worker"), what="worker online")
        check(csp_env.cspctl("agents", "forget", "worker"), 6, "worker is online")
        sidecar.terminate()
        sidecar.wait(timeout=15)
        wait_for(lambda: _online(csp_env, "worker") is False, what="worker offline")
        check(csp_env.cspctl("agents", "forget", "worker"), 0, "forgot worker")
        assert _online(csp_env, "worker") is None
        check(csp_env.cspctl("agents", "forget", "worker"), 5, "unknown agent 'worker'")
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait(timeout=5)


def test_rate_limited_exits_7(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    csp_env.config.parent.mkdir(parents=True, exist_ok=True)
    csp_env.config.write_text("[gateway]\nrate_per_second = 0.01\nrate_burst = 1\n")
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGHUP)  # reload: the new limits apply at once
    last: list[subprocess.CompletedProcess[str]] = []
    wait_for(lambda: last.append(csp_env.cspctl("send", "hi")) or last[-1].returncode == 7,
             what="a refused send")
    check(last[-1], 7, "too many messages from human; retry in")


def test_follow_says_once_that_the_gateway_went_away(csp_env: CspEnv,
                                                     gateway: GatewayProcess) -> None:
    out, err = csp_env.root / "follow.out", csp_env.root / "follow.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "csp_cli", "history", "-f"],
                                env=csp_env.env, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr)
    try:
        # it has connected once something sent now shows up
        check(csp_env.cspctl("send", "one"), 0)
        wait_for(lambda: "human: one" in out.read_text(), what="the first message")
        gateway.stop()
        wait_for(lambda: "went away" in err.read_text(), what="the notice")
        gateway.start()  # several reconnect attempts fail meanwhile
        check(csp_env.cspctl("send", "two"), 0)
        wait_for(lambda: "human: two" in out.read_text(), what="a message after the restart")
        wait_for(lambda: "cspctl: reconnected" in err.read_text(), what="the reconnect notice")
        assert err.read_text().count("went away") == 1, err.read_text()
        assert TRACEBACK not in err.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kill_says_what_it_waits_for(csp_env: CspEnv, gateway: GatewayProcess,
                                     tmux: TmuxServer) -> None:
    assert csp_env.cspctl("agents", "add", "sleeper", "--", "sleep", "300").returncode == 0
    check(csp_env.cspctl("attach", "--detached", "-L", tmux.socket), 0)
    wait_for(lambda: _online(csp_env, "sleeper"), what="the agent online")
    r = csp_env.cspctl("kill", "-L", tmux.socket, "--timeout", "10")
    check(r, 0, "asking sleeper to exit (up to 10s)...", "session 'csp' ended")


def test_inside_an_agent_as_another_name_is_refused(csp_env: CspEnv,
                                                    gateway: GatewayProcess) -> None:
    inside = {"CSP_AGENT": "claude"}
    r = csp_env.cspctl("send", "--as", "codex", "I am codex, honest", extra_env=inside)
    assert r.returncode == 4
    assert "you speak as claude" in r.stderr and "Traceback" not in r.stderr
    r = csp_env.cspctl("mcp", "--as", "human", input="", extra_env=inside)
    assert r.returncode == 4
    # outside an agent --as works, and inside one its own name is fine
    assert csp_env.cspctl("send", "--as", "codex", "from a script").returncode == 0
    ok = csp_env.cspctl("send", "--as", "claude", "mine", "--json", extra_env=inside)
    assert ok.returncode == 0 and json.loads(ok.stdout)["from"] == "claude"
