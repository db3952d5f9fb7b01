"""``cspctl chat`` in a real tmux pane against a real gateway (and real sidecars)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.conftest import REPO, CspEnv, GatewayProcess, require
from tests.polling import wait_for
from tests.tmuxtest import Pane, TmuxServer

FAKE_CLI = REPO / "tests" / "tools" / "fake_cli.py"


def history(env: CspEnv) -> list[dict[str, Any]]:
    r = env.cspctl("history", "--json", "--limit", "200")
    assert r.returncode == 0, r.stderr
    result: list[dict[str, Any]] = json.loads(r.stdout)
    return result


def chat_pane(env: CspEnv, server: TmuxServer) -> Pane:
    """The chat pane of a fresh ``cspctl attach --detached`` session."""
    r = env.cspctl("attach", "--detached", "-L", server.socket)
    assert r.returncode == 0, r.stderr
    pane = Pane(server, "=csp:.0")
    pane.wait_text("connected")
    return pane


def last_line(pane: Pane) -> str:
    return [line for line in pane.screen().splitlines() if line.strip()][-1]


def test_chat_shows_the_room_and_sends_what_is_typed(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = chat_pane(csp_env, tmux)
    r = csp_env.cspctl("send", "@all", "hello from a script")
    assert r.returncode == 0, r.stderr
    pane.wait_text("human: hello from a script")

    pane.type("typed in the chat pane")
    pane.send("Enter")
    wait_for(lambda: any(m["content"] == "typed in the chat pane" and m["from"] == "human"
                         and m["to"] == ["all"] for m in history(csp_env)),
             what="the typed line in the history")
    pane.wait_text("human: typed in the chat pane")

    pane.type("/help")
    pane.send("Enter")
    pane.wait_text("/pause NAME")

    # a half-typed line survives a message arriving: it stays on the input line
    pane.type("half typed")
    assert csp_env.cspctl("send", "@all", "arrives meanwhile").returncode == 0
    pane.wait_text("human: arrives meanwhile")
    assert last_line(pane).rstrip() == "> half typed"
    pane.send("C-u")
    wait_for(lambda: last_line(pane).rstrip() != "> half typed", what="the line cleared")

    # a control sequence inside a message is shown harmless, not executed
    assert csp_env.cspctl("send", "@all", "evil\x1b]2;pwned\x07 end").returncode == 0
    pane.wait_text("human: evil]2;pwned end")
    assert "pwned" not in pane.info("#{pane_title}")

    # errors from the gateway are shown, not fatal
    pane.type("/pause nobody")
    pane.send("Enter")
    wait_for(lambda: "nobody" in pane.screen() and "pause: sent" not in pane.screen(),
             what="an error about 'nobody'")
    pane.type("/quit")
    pane.send("Enter")
    # the chat ends (its terminal closes; tmux 3.3a sometimes misses the exit status)
    wait_for(lambda: pane.info("#{pane_dead}") == "1", what="the chat to end")


def test_chat_reconnects_when_the_gateway_restarts(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = chat_pane(csp_env, tmux)
    gateway.stop()
    pane.wait_text("reconnecting")
    gateway.start()
    pane.wait_text("reconnected to the gateway")
    assert csp_env.cspctl("send", "@all", "after the restart").returncode == 0
    pane.wait_text("human: after the restart")
    assert pane.screen().count("human: after the restart") == 1


def test_chat_and_agent_round_trip(csp_env: CspEnv, gateway: GatewayProcess,
                                   tmux: TmuxServer) -> None:
    """Text typed into the chat reaches the agent's PTY; the agent's reply reaches the chat."""
    require(csp_env.run(sys.executable, "-m", "csp_sidecar", "--help").returncode == 0,
            "csp-sidecar does not run")
    log = csp_env.root / "fake_cli.log"
    csp_env.env["FAKECLI_LOG"] = str(log)
    csp_env.env["FAKECLI_THINK"] = "0.1"
    r = csp_env.cspctl("agents", "add", "fake", "--profile", "claude",
                       "--env", f"FAKECLI_LOG={log}", "--env", "FAKECLI_THINK=0.1",
                       "--", sys.executable, str(FAKE_CLI))
    assert r.returncode == 0, r.stderr
    chat = chat_pane(csp_env, tmux)
    agent = Pane(tmux, "=csp:.1")
    agent.wait_text("fake agent ready")
    chat.wait_text("fake joined")
    chat.type("@fake please say pineapple")
    chat.send("Enter")
    wait_for(lambda: log.exists() and "please say pineapple" in log.read_text(),
             what="the message in the agent's PTY")
    agent.wait_text("reply:")
    chat.wait_text("fake (output)")
    wait_for(lambda: "please say pineapple" in chat.screen().split("fake (output)", 1)[-1],
             what="the agent's reply in the chat")
    chat.type("/list")
    chat.send("Enter")
    chat.wait_text("* fake ")
    for action, state in (("pause", lambda s: s == "paused"),
                          ("resume", lambda s: s != "paused")):
        chat.type(f"/{action} fake")
        chat.send("Enter")
        chat.wait_text(f"{action}: sent to fake")
        wait_for(lambda check=state: any(
            a["name"] == "fake" and check(a["state"])
            for a in json.loads(csp_env.cspctl("agents", "--json").stdout)),
            what=f"fake {action}d")


def test_plain_mode_reads_lines_from_a_pipe(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    r = csp_env.cspctl("chat", input="/help\nhi from a pipe\n@nobody direct\n")
    assert r.returncode == 5, r.stderr  # the line that failed sets the exit code
    assert "/pause NAME" in r.stdout
    assert "unknown" in r.stdout.lower() and "nobody" in r.stdout  # the error, shown
    assert [m["content"] for m in history(csp_env) if m["from"] == "human"] == [
        "hi from a pipe"]
    path = csp_env.root / "lines.txt"
    path.write_text("from a file\n")
    with open(path) as fh:
        done = subprocess.run([sys.executable, "-m", "csp_cli", "chat"], stdin=fh,
                              env=csp_env.env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "from a file" in [m["content"] for m in history(csp_env)]
