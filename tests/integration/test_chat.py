"""``cspctl chat`` in a real tmux pane against a real gateway (and real sidecars).

The command center is prompt_toolkit's line editor: these tests type into it the
way a person does (tmux send-keys, a bracketed paste, a resized window) and read
back what tmux shows, including where tmux puts the cursor, so a disagreement
about the width of a character between the editor and the terminal shows up.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from typing import Any

from tests.conftest import REPO, CspEnv, GatewayProcess, require
from tests.polling import wait_for
from tests.tmuxtest import Pane, TmuxServer

FAKE_CLI = REPO / "tests" / "tools" / "fake_cli.py"
CSPCTL = f"{shlex.quote(sys.executable)} -m csp_cli"


def history(env: CspEnv) -> list[dict[str, Any]]:
    r = env.cspctl("history", "--json", "--limit", "200")
    assert r.returncode == 0, r.stderr
    result: list[dict[str, Any]] = json.loads(r.stdout)
    return result


def sent(env: CspEnv) -> list[str]:
    """What the human has said, oldest first."""
    return [m["content"] for m in history(env) if m["from"] == "human"]


def chat_pane(env: CspEnv, server: TmuxServer) -> Pane:
    """The chat pane of a fresh ``cspctl attach --detached`` session."""
    r = env.cspctl("attach", "--detached", "-L", server.socket)
    assert r.returncode == 0, r.stderr
    pane = Pane(server, "=csp:.0")
    pane.wait_text("connected")
    return pane


def lone_chat(server: TmuxServer, *args: str, width: int = 100, height: int = 30) -> Pane:
    """``cspctl chat`` alone in a pane of its own."""
    pane = server.new_pane(" ".join([CSPCTL, "chat", *map(shlex.quote, args)]),
                           width=width, height=height)
    pane.wait_text("· connected")
    return pane


def lines(pane: Pane) -> list[str]:
    return [line.rstrip() for line in pane.screen().splitlines() if line.strip()]


def last_line(pane: Pane) -> str:
    return lines(pane)[-1]


def wait_input(pane: Pane, text: str) -> None:
    """The input line reads ``> text``."""
    wait_for(lambda: last_line(pane) == f"> {text}".rstrip(),
             what=f"the input line to read {text!r} (it reads {last_line(pane)!r})")


def type_line(pane: Pane, text: str) -> None:
    pane.type(text)
    wait_input(pane, text)
    pane.send("Enter")


def test_chat_shows_the_room_and_sends_what_is_typed(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = chat_pane(csp_env, tmux)
    # the chat pane keeps the documented scrollback (tmux fixes it when a pane is made)
    assert pane.info("#{history_limit}") == "50000"
    r = csp_env.cspctl("send", "@all", "hello from a script")
    assert r.returncode == 0, r.stderr
    pane.wait_text("human: hello from a script")

    type_line(pane, "typed in the chat pane")
    wait_for(lambda: any(m["content"] == "typed in the chat pane" and m["from"] == "human"
                         and m["to"] == ["all"] for m in history(csp_env)),
             what="the typed line in the history")
    pane.wait_text("human: typed in the chat pane")

    type_line(pane, "/help")
    pane.wait_text("/pause NAME")

    # a half-typed line survives a message arriving: it stays on the input line
    pane.type("half typed")
    wait_input(pane, "half typed")
    assert csp_env.cspctl("send", "@all", "arrives meanwhile").returncode == 0
    pane.wait_text("human: arrives meanwhile")
    wait_input(pane, "half typed")
    pane.send("C-u")
    wait_input(pane, "")

    # a control sequence inside a message is shown harmless, not executed
    assert csp_env.cspctl("send", "@all", "evil\x1b]2;pwned\x07 end").returncode == 0
    pane.wait_text("human: evil]2;pwned end")
    assert "pwned" not in pane.info("#{pane_title}")

    # errors from the gateway are shown, not fatal
    type_line(pane, "/pause nobody")
    wait_for(lambda: "nobody" in pane.screen() and "pause: sent" not in pane.screen(),
             what="an error about 'nobody'")
    # a room that does not exist is refused, with how to make it
    type_line(pane, "/room lobby")
    pane.wait_text("no room #lobby: create it with `cspctl rooms create lobby`")
    assert "now watching" not in pane.screen()
    assert csp_env.cspctl("rooms", "create", "lobby").returncode == 0
    type_line(pane, "/room lobby")
    pane.wait_text("now watching #lobby")
    wait_for(lambda: "#lobby · connected" in pane.screen(), what="the status on #lobby")

    type_line(pane, "/quit")
    # the chat ends and its pane says how to start it again, as an agent's pane does
    pane.wait_text("[csp] chat exited with status 0")
    pane.wait_text(f"restart it with:  cspctl attach -L {tmux.socket}")
    wait_for(lambda: pane.info("#{pane_dead}") == "1", what="the chat to end")
    again = csp_env.cspctl("attach", "--detached", "-L", tmux.socket)
    assert again.returncode == 0 and "restarted the chat pane" in again.stderr
    wait_for(lambda: pane.info("#{pane_dead}") == "0", what="the chat restarted")
    pane.wait_text("· connected")


def test_wide_characters_are_edited_where_the_terminal_shows_them(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = lone_chat(tmux)
    pane.type("日本語 and 🎉 emoji")
    wait_input(pane, "日本語 and 🎉 emoji")
    # prompt, 3 wide, " and ", a wide emoji, " emoji": tmux's cursor is where the editor
    # thinks it is
    assert pane.info("#{cursor_x}") == str(2 + 6 + 5 + 2 + 6)
    pane.send(*["Left"] * 6)
    wait_for(lambda: pane.info("#{cursor_x}") == str(2 + 6 + 5 + 2), what="the cursor moved")
    pane.type("中")
    wait_input(pane, "日本語 and 🎉中 emoji")
    assert pane.info("#{cursor_x}") == str(2 + 6 + 5 + 2 + 2)
    pane.send("BSpace", "BSpace")
    wait_input(pane, "日本語 and  emoji")
    pane.send("Enter")
    wait_for(lambda: sent(csp_env) == ["日本語 and  emoji"], what="the line sent")
    pane.wait_text("human: 日本語 and  emoji")
    wait_input(pane, "")


def test_up_recalls_what_was_sent_even_after_a_restart(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = lone_chat(tmux)
    type_line(pane, "first line")
    type_line(pane, "second line")
    wait_for(lambda: sent(csp_env) == ["first line", "second line"], what="both lines sent")
    pane.send("Up")
    wait_input(pane, "second line")
    pane.send("Up")
    wait_input(pane, "first line")
    pane.send("Down")
    wait_input(pane, "second line")
    pane.send("Enter")
    wait_for(lambda: sent(csp_env) == ["first line", "second line", "second line"],
             what="the recalled line sent")
    type_line(pane, "/quit")
    assert pane.dead_status() == 0
    # the history is kept (in the state dir, private): a new chat recalls it
    later = lone_chat(tmux)
    later.send("Up")
    wait_input(later, "/quit")
    later.send("Up")
    wait_input(later, "second line")
    kept = csp_env.state / "chat_history"
    assert kept.stat().st_mode & 0o777 == 0o600


def test_tab_completes_online_agents_and_commands(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    require(csp_env.run(sys.executable, "-m", "csp_sidecar", "--help").returncode == 0,
            "csp-sidecar does not run")
    sidecar = subprocess.Popen([sys.executable, "-m", "csp_sidecar", "--name", "alpha",
                                "--profile", "generic", "--", "cat"], env=csp_env.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(a["name"] == "alpha" and a.get("online") for a in json.loads(
            csp_env.cspctl("agents", "--json").stdout)), timeout=30, what="alpha online")
        pane = lone_chat(tmux)
        pane.type("@alp")
        wait_input(pane, "@alp")
        pane.send("Tab")
        wait_input(pane, "@alpha")
        pane.type("hello alpha")
        wait_input(pane, "@alpha hello alpha")
        pane.send("Enter")
        wait_for(lambda: any(m["content"] == "hello alpha" and m["to"] == ["alpha"]
                             for m in history(csp_env)), what="the message to @alpha")
        pane.type("/pa")
        pane.send("Tab")
        wait_input(pane, "/pause")
        pane.type("al")
        pane.send("Tab")
        wait_input(pane, "/pause alpha")
        pane.send("Enter")
        pane.wait_text("pause: sent to alpha")
    finally:
        sidecar.terminate()
        sidecar.wait(timeout=10)


def test_a_pasted_block_of_twenty_lines_is_one_message(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = lone_chat(tmux)
    block = "\n".join(f"pasted line {i}" for i in range(1, 21))
    path = csp_env.root / "paste.txt"
    path.write_text(block + "\n")
    tmux.run("load-buffer", "-b", "block", str(path))
    # -p: as a terminal pastes, inside bracketed-paste marks (the chat asked for them)
    tmux.run("paste-buffer", "-p", "-b", "block", "-t", pane.target)
    wait_for(lambda: "pasted line 20" in pane.screen(), what="the block in the input")
    assert sent(csp_env) == []  # the newlines of a paste are text, not Enter
    pane.send("Enter")
    wait_for(lambda: sent(csp_env) == [block], what="the block sent as one message")
    pane.wait_text("human: pasted line 1")
    wait_input(pane, "")


def test_a_resize_keeps_the_line_and_the_status_whole(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = lone_chat(tmux, width=100, height=30)
    pane.type("typed before the resize")
    wait_input(pane, "typed before the resize")
    for width, height in ((50, 12), (32, 10), (120, 40)):
        tmux.run("resize-window", "-t", pane.target, "-x", str(width), "-y", str(height))
        wait_for(lambda w=width: pane.info("#{pane_width}") == str(w), what="the new size")
        wait_input(pane, "typed before the resize")
        shown = lines(pane)
        # one status line, right above the input, and no half of an old one left behind
        assert sum("· connected" in line for line in shown) == 1, shown
        assert "· connected" in shown[-2] and len(shown[-2]) < width, shown
    pane.type(" and after")
    pane.send("Enter")
    wait_for(lambda: sent(csp_env) == ["typed before the resize and after"],
             what="the line sent after resizing")


def test_a_half_typed_line_survives_the_gateway_going_away(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pane = lone_chat(tmux)
    pane.type("half typed")
    wait_input(pane, "half typed")
    gateway.stop()
    wait_for(lambda: "reconnecting" in pane.screen(), what="the chat to notice")
    wait_input(pane, "half typed")
    gateway.start()
    # sent as soon as the gateway is back, most likely before the chat has reconnected:
    # the chat catches up on them, each once and in order
    for i in (1, 2, 3):
        assert csp_env.cspctl("send", "@all", f"while the chat was away {i}").returncode == 0
    pane.wait_text("reconnected to the gateway")
    wait_for(lambda: "away 3" in pane.screen(), what="the catch-up")
    shown = [line for line in lines(pane) if "while the chat was away" in line]
    assert [line[-1] for line in shown] == ["1", "2", "3"], shown
    wait_input(pane, "half typed")
    pane.type(", then finished")
    pane.send("Enter")
    wait_for(lambda: sent(csp_env)[-1:] == ["half typed, then finished"], what="the line sent")
    assert csp_env.cspctl("send", "@all", "after the restart").returncode == 0
    pane.wait_text("human: after the restart")
    assert pane.screen().count("human: after the restart") == 1
    # a line entered while the gateway is away is given back, not lost
    gateway.stop()
    wait_for(lambda: pane.screen().count("reconnecting") >= 2, what="the second outage")
    type_line(pane, "sent into the void")
    pane.wait_text("not sent, the gateway is unreachable")
    wait_input(pane, "sent into the void")
    gateway.start()
    wait_for(lambda: pane.screen().count("reconnected to the gateway") >= 2,
             what="back again")
    pane.send("Enter")
    wait_for(lambda: sent(csp_env)[-1:] == ["sent into the void"], what="the line sent after")


def test_a_chat_started_before_the_gateway_waits_for_it(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    gateway.stop()
    pane = tmux.new_pane(f"{CSPCTL} chat")
    pane.wait_text("cannot reach the gateway")
    pane.type("typed while waiting")
    wait_input(pane, "typed while waiting")
    gateway.start()
    pane.wait_text("reconnected to the gateway")
    wait_for(lambda: "· connected" in pane.screen(), what="the status to say connected")
    wait_input(pane, "typed while waiting")
    pane.send("Enter")
    wait_for(lambda: sent(csp_env) == ["typed while waiting"], what="the line sent")
    pane.wait_text("human: typed while waiting")


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
    type_line(chat, "@fake please say pineapple")
    wait_for(lambda: log.exists() and "please say pineapple" in log.read_text(),
             what="the message in the agent's PTY")
    agent.wait_text("reply:")
    chat.wait_text("fake (output)")
    wait_for(lambda: "please say pineapple" in chat.screen().split("fake (output)", 1)[-1],
             what="the agent's reply in the chat")
    type_line(chat, "/list")
    chat.wait_text("* fake ")
    for action, state in (("pause", lambda s: s == "paused"),
                          ("resume", lambda s: s != "paused")):
        type_line(chat, f"/{action} fake")
        chat.wait_text(f"{action}: sent to fake")
        wait_for(lambda check=state: any(
            a["name"] == "fake" and check(a["state"])
            for a in json.loads(csp_env.cspctl("agents", "--json").stdout)),
            what=f"fake {action}d")


# -- line mode (pipes, scripts) ---------------------------------------------------------

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


def _said(stdout: str) -> list[str]:
    """The messages a piped chat printed, without their time."""
    return [line[9:] for line in stdout.splitlines() if line[:2].isdigit()]


def test_piped_chat_prints_only_what_happens_after_it_starts(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    for i in range(1, 4):
        assert csp_env.cspctl("send", "@all", f"before {i}").returncode == 0
    first_id = history(csp_env)[0]["id"]
    # the same every time: what it sent itself, and nothing from before
    for run in range(3):
        r = csp_env.cspctl("chat", input=f"hello {run}\n")
        assert r.returncode == 0, r.stderr
        assert _said(r.stdout) == [f"human: hello {run}"], r.stdout
        assert "\x1b" not in r.stdout + r.stderr  # plain lines: no terminal app, no colour
    r = csp_env.cspctl("chat", input="")
    assert r.returncode == 0 and r.stdout == "", r.stdout

    # a backlog only when asked: the last N, or what came after an id
    r = csp_env.cspctl("chat", "--limit", "2", input="")
    assert _said(r.stdout) == ["human: hello 1", "human: hello 2"], r.stdout
    r = csp_env.cspctl("chat", "--since", str(first_id), input="and one more\n")
    assert _said(r.stdout) == ["human: before 2", "human: before 3", "human: hello 0",
                               "human: hello 1", "human: hello 2", "human: and one more"]
    r = csp_env.cspctl("chat", "--since", str(first_id), "--limit", "1", input="")
    assert _said(r.stdout) == ["human: and one more"], r.stdout

    # nonsense is refused, clearly
    bad = csp_env.cspctl("chat", "--limit", "0", input="")
    assert bad.returncode == 2 and "--limit" in bad.stderr
    nosuch = csp_env.cspctl("chat", "--room", "nosuch", input="hi\n")
    assert nosuch.returncode == 5
    assert "create it with `cspctl rooms create nosuch`" in nosuch.stdout + nosuch.stderr
    assert "Traceback" not in nosuch.stdout + nosuch.stderr
    assert "hi" not in sent(csp_env)
