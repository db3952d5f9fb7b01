"""csp-sidecar with real PTYs, real children, a real tmux and a real gateway."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.tmuxtest import Pane, TmuxServer

FAKE_CLI = REPO / "tests" / "tools" / "fake_cli.py"
SIDECAR = [sys.executable, "-m", "csp_sidecar"]


def sidecar_cmd(name: str, *command: str, profile: str | None = None) -> str:
    args = [*SIDECAR, "--name", name]
    if profile:
        args += ["--profile", profile]
    return shlex.join([*args, "--", *command])


def fake_cli() -> list[str]:
    return [sys.executable, str(FAKE_CLI)]


def received(log: Path) -> list[str]:
    """What the fake CLI read, one entry per read() call."""
    if not log.exists():
        return []
    return [r["data"] for r in map(json.loads, log.read_text().splitlines()) if "data" in r]


def prompts(log: Path) -> list[str]:
    """The prompts the fake CLI took (submitted lines), in order."""
    if not log.exists():
        return []
    return [r["prompt"] for r in map(json.loads, log.read_text().splitlines()) if "prompt" in r]


def history(env: CspEnv) -> list[dict[str, object]]:
    r = env.cspctl("history", "--json", "--limit", "500")
    assert r.returncode == 0, r.stderr
    result: list[dict[str, object]] = json.loads(r.stdout)
    return result


def agent_state(env: CspEnv, name: str) -> dict[str, object]:
    r = env.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    for row in json.loads(r.stdout):
        if row["name"] == name:
            return dict(row)
    return {}


@pytest.fixture
def fake_log(csp_env: CspEnv) -> Path:
    log = csp_env.root / "fake_cli.log"
    csp_env.env["FAKECLI_LOG"] = str(log)
    csp_env.env["FAKECLI_THINK"] = "0.2"
    return log


def start_fake(env: CspEnv, tmux: TmuxServer, name: str = "fa") -> Pane:
    pane = tmux.new_pane(sidecar_cmd(name, *fake_cli(), profile="claude"))
    pane.wait_text("fake agent ready")
    wait_for(lambda: agent_state(env, name).get("state") == "ready", what=f"{name} ready")
    return pane


# -- delivery ------------------------------------------------------------------


def test_message_arrives_as_one_bracketed_paste_then_a_separate_enter(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    start_fake(csp_env, tmux)
    assert csp_env.cspctl("send", "@fa", "line one\nline two").returncode == 0
    reads = wait_for(lambda: (r := received(fake_log)) and "\r" in r and r, what="submit key")
    paste, submit = reads[0], reads[1]
    assert paste == "\x1b[200~[human → @fa] line one\rline two\x1b[201~"
    assert submit == "\r"
    # and the agent's reply is shared as clean output, without prompt or spinner
    outputs = wait_for(lambda: [m for m in history(csp_env) if m["kind"] == "output"
                                and "reply:" in str(m["content"])], what="captured reply")
    text = str(outputs[0]["content"])
    assert text.startswith("reply: [human → @fa] line one")
    assert "❯" not in text and "Thinking" not in text and "\x1b" not in text
    assert outputs[0]["from"] == "fa"


def test_hostile_message_arrives_as_harmless_text(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    start_fake(csp_env, tmux)
    hostile = "/exit\x1b[201~\x03\x04 rm -rf ~\x1b]0;pwned\x07 \x1b[31mred\x9b0m \x1b\x1b[201~end"
    assert csp_env.cspctl("send", "--urgent", "@fa", hostile).returncode == 0
    reads = wait_for(lambda: (r := received(fake_log)) and len(r) >= 2 and r, what="delivery")
    paste = reads[0]
    assert paste.startswith("\x1b[200~") and paste.endswith("\x1b[201~")
    inner = paste[len("\x1b[200~"):-len("\x1b[201~")]
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in inner if c not in "\r\t")
    assert inner.startswith("[human → @fa] /exit")  # tagged: never starts with a command
    assert inner.endswith("end")
    assert reads[1] == "\r"


def test_message_waits_for_a_half_typed_line(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    pane = start_fake(csp_env, tmux)
    pane.type("my own half")
    wait_for(lambda: "my own half" in "".join(received(fake_log)), what="human keys")
    assert csp_env.cspctl("send", "@fa", "from the group").returncode == 0
    wait_for(lambda: agent_state(csp_env, "fa").get("queue") == 1, what="message queued")
    assert not any("from the group" in r for r in received(fake_log))
    pane.type(" line")
    pane.send("Enter")
    reads = wait_for(lambda: (r := received(fake_log)) and any("from the group" in x for x in r)
                     and r, what="delivery after the human's Enter")
    typed = "".join(reads[:reads.index(next(x for x in reads if "from the group" in x))])
    assert typed == "my own half line\r"  # the human's line went in whole, alone
    paste = next(x for x in reads if "from the group" in x)
    assert paste == "\x1b[200~[human → @fa] from the group\x1b[201~"
    wait_for(lambda: "● reply: [human → @fa] from the group" in pane.screen(), what="reply")


def test_message_waits_while_the_agent_prints(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    csp_env.env["FAKECLI_THINK"] = "2.0"
    pane = start_fake(csp_env, tmux)
    pane.type("long task")
    pane.send("Enter")
    pane.wait_text("Thinking")
    assert csp_env.cspctl("send", "@fa", "while busy").returncode == 0
    wait_for(lambda: agent_state(csp_env, "fa").get("queue") == 1, what="queued while busy")
    screen = pane.wait_text("● reply: [human → @fa] while busy")
    # the reply to the human's task came first: the message waited for it
    assert screen.index("● reply: long task") < screen.index("● reply: [human → @fa] while busy")


def test_pause_holds_delivery_until_resume(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    start_fake(csp_env, tmux)
    assert csp_env.cspctl("pause", "fa").returncode == 0
    wait_for(lambda: agent_state(csp_env, "fa").get("state") == "paused", what="paused")
    assert csp_env.cspctl("send", "@fa", "held back").returncode == 0
    wait_for(lambda: agent_state(csp_env, "fa").get("queue") == 1, what="queued while paused")
    assert received(fake_log) == []
    assert csp_env.cspctl("resume", "fa").returncode == 0
    wait_for(lambda: any("held back" in r for r in received(fake_log)), what="delivered")


def test_output_made_while_the_gateway_is_down_is_shared_after(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    pane = start_fake(csp_env, tmux)
    gateway.stop()
    pane.type("offline one")
    pane.send("Enter")
    pane.wait_text("● reply: offline one")
    pane.type("offline two")
    pane.send("Enter")
    pane.wait_text("● reply: offline two")
    gateway.start()
    def shared() -> str:
        return "\n".join(str(m["content"]) for m in history(csp_env) if m["kind"] == "output")

    text = wait_for(lambda: "offline two" in (t := shared()) and t,
                    what="output shared after the restart")
    assert text.index("reply: offline one") < text.index("reply: offline two")
    # and the agent is back online and receives messages again
    wait_for(lambda: agent_state(csp_env, "fa").get("online"), what="reconnected")
    assert csp_env.cspctl("send", "@fa", "after restart").returncode == 0
    pane.wait_text("● reply: [human → @fa] after restart")


def test_a_name_already_online_is_refused_before_the_child_starts(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    start_fake(csp_env, tmux)
    marker = csp_env.root / "second-started"
    r = csp_env.run(*SIDECAR, "--name", "fa", "--", "touch", str(marker), timeout=30)
    assert r.returncode != 0
    assert "already online" in r.stderr
    assert not marker.exists()


# -- pass-through ----------------------------------------------------------------


def test_exit_status_and_environment(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    out = csp_env.root / "env.txt"
    r = csp_env.run(*SIDECAR, "--name", "envy", "--room", "lab", "--", "sh", "-c",
                    f'echo "$CSP_AGENT $CSP_ROOM $CSP_GATEWAY" > {out}; exit 7')
    assert r.returncode == 7, r.stderr
    assert out.read_text().split() == ["envy", "lab", str(csp_env.socket)]


def test_env_option_reaches_the_cli_alone(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    """``--env`` (what ``cspctl attach`` passes for an agent's ``env``) changes the CLI's
    environment, not the sidecar's: its log stays in the user's state directory."""
    out = csp_env.root / "env.txt"
    home = csp_env.root / "throwaway-home"
    home.mkdir()
    r = csp_env.run(*SIDECAR, "--name", "homed", "--env", f"HOME={home}", "--env", "X=a=b",
                    "--", "sh", "-c", f'echo "$HOME $X" > {out}')
    assert r.returncode == 0, r.stderr
    assert out.read_text().split() == [str(home), "a=b"]
    assert not list(home.rglob("*.log"))
    state = csp_env.state
    assert (state / "sidecar-homed.log").exists()
    bad = csp_env.run(*SIDECAR, "--name", "homed", "--env", "NOEQUALS", "--", "true")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr and "Traceback" not in bad.stderr


def test_exit_status_of_a_signalled_child(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    r = csp_env.run(*SIDECAR, "--name", "sig", "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM


def test_stdin_that_is_not_a_terminal(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    r = csp_env.run(*SIDECAR, "--name", "piped", "--", "cat", input="through a pipe\n")
    assert r.returncode == 0, r.stderr
    assert "through a pipe" in r.stdout


def test_runs_without_a_gateway(csp_env: CspEnv) -> None:
    r = csp_env.run(*SIDECAR, "--name", "alone", "--", "sh", "-c", "echo still works")
    assert r.returncode == 0
    assert "still works" in r.stdout
    assert "gateway not reachable" in r.stderr


def test_agent_process_group_is_gone_after_exit(csp_env: CspEnv,
                                                gateway: GatewayProcess) -> None:
    pidfile = csp_env.root / "bg.pid"
    r = csp_env.run(*SIDECAR, "--name", "leaver", "--", "sh", "-c",
                    f"sleep 300 & echo $! > {pidfile}; exit 0")
    assert r.returncode == 0
    pid = int(pidfile.read_text())
    wait_for(lambda: not _alive(pid), what="the agent's background child to be gone")


def test_sidecar_sigterm_ends_the_agent(csp_env: CspEnv, gateway: GatewayProcess,
                                        tmux: TmuxServer) -> None:
    pidfile = csp_env.root / "agent.pid"
    pane = tmux.new_pane(sidecar_cmd("stubborn", "sh", "-c",
                                     f"trap '' HUP; echo $$ > {pidfile}; echo up; "
                                     "while :; do sleep 1; done"))
    pane.wait_text("up")
    sidecar_pid = pane.pid
    os.kill(sidecar_pid, signal.SIGTERM)
    assert pane.dead_status() == 128 + signal.SIGTERM  # the agent's own end
    wait_for(lambda: not _alive(int(pidfile.read_text())), what="the agent to be gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("program", [["vim", "-u", "NONE", "-N", "-n"], ["less"]])
def test_full_screen_programs_look_the_same(csp_env: CspEnv, gateway: GatewayProcess,
                                            tmux: TmuxServer, program: list[str]) -> None:
    import shutil
    if shutil.which(program[0]) is None:
        pytest.skip(f"{program[0]} is not installed")
    text = csp_env.root / "sample.txt"
    text.write_text("".join(f"line {i} of the sample\n" for i in range(200)))
    plain = tmux.new_pane(shlex.join([*program, str(text)]), width=80, height=24)
    wrapped = tmux.new_pane(sidecar_cmd("viewer", *program, str(text), profile="generic"),
                            width=80, height=24)
    for pane in (plain, wrapped):
        pane.wait_text("line 10 of the sample")
        pane.send("G")  # both vim and less: go to the end
    wait_for(lambda: plain.screen() == wrapped.screen() and "line 199" in plain.screen(),
             what="identical screens after G")
    for pane in (plain, wrapped):
        pane.send("q") if program[0] == "less" else pane.type(":q!\r")
    assert wrapped.dead_status() == 0


def test_window_size_changes_reach_the_child(csp_env: CspEnv, gateway: GatewayProcess,
                                             tmux: TmuxServer) -> None:
    pane = tmux.new_pane(sidecar_cmd("sizer", "sh", profile="shell"), width=90, height=25)
    pane.type("stty size\r")
    pane.wait_text("25 90")
    tmux.run("resize-window", "-t", pane.target.split(":")[0], "-x", "70", "-y", "20")
    pane.type("clear; stty size\r")
    pane.wait_text("20 70")


def test_ctrl_c_reaches_the_child(csp_env: CspEnv, gateway: GatewayProcess,
                                  tmux: TmuxServer) -> None:
    pane = tmux.new_pane(sidecar_cmd("py", sys.executable, "-q", "-i", profile="generic"))
    pane.wait_text(">>>")
    pane.type("import time; time.sleep(60)\r")
    wait_for(lambda: pane.screen().count(">>>") == 1 and "sleep(60)" in pane.screen(),
             what="sleep running")
    pane.send("C-c")
    pane.wait_text("KeyboardInterrupt")
    pane.type("exit()\r")
    assert pane.dead_status() == 0


def test_bash_round_trip_of_keystrokes(csp_env: CspEnv, gateway: GatewayProcess,
                                       tmux: TmuxServer) -> None:
    pane = tmux.new_pane(sidecar_cmd("sh1", "bash", "--norc", "--noprofile", profile="shell"))
    pane.type("echo $((6*7)) $CSP_AGENT\r")
    pane.wait_text("42 sh1")
    pane.type("exit 5\r")
    assert pane.dead_status() == 5
    assert subprocess.run(["true"]).returncode == 0


def test_the_agent_is_addressable_before_its_cli_starts(csp_env: CspEnv,
                                                        gateway: GatewayProcess) -> None:
    # the CLI's very first act addresses the agent by name: registration came first
    r = csp_env.run(*SIDECAR, "--name", "early", "--", sys.executable, "-m", "csp_cli",
                    "send", "@early", "@human", "first words")
    assert r.returncode == 0, r.stderr
    sent = [m for m in history(csp_env) if m["content"] == "first words"]
    assert sent and sent[0]["from"] == "early"  # and it spoke as the agent (CSP_AGENT)


def test_a_sigkilled_sidecar_takes_a_hup_proof_agent_with_it(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    pidfile = csp_env.root / "agent.pid"
    pane = tmux.new_pane(sidecar_cmd("doomed", "sh", "-c",
                                     f"trap '' HUP; echo $$ > {pidfile}; echo up; "
                                     "while :; do sleep 1; done"))
    pane.wait_text("up")
    agent = int(pidfile.read_text())
    os.kill(pane.pid, signal.SIGKILL)
    wait_for(lambda: not _alive(agent), what="the agent to die with its sidecar")


def test_output_is_still_shared_after_the_token_is_rotated(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    pane = start_fake(csp_env, tmux)
    assert csp_env.cspctl("token", "--rotate").returncode == 0
    pane.type("after rotation")
    pane.send("Enter")
    wait_for(lambda: any("reply: after rotation" in str(m["content"]) for m in history(csp_env)
                         if m["kind"] == "output"), what="output shared with the new token")
    # and messages still reach the agent
    assert csp_env.cspctl("send", "@fa", "still here").returncode == 0
    pane.wait_text("● reply: [human → @fa] still here")


def test_urgent_skips_the_wait_for_quiet_but_not_a_half_typed_line(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    csp_env.env["FAKECLI_THINK"] = "8"
    pane = start_fake(csp_env, tmux)
    pane.type("a long task")
    pane.send("Enter")
    pane.wait_text("Thinking")
    # the agent is busy for 8 s: an urgent message is typed in now all the same (the CLI
    # takes it as its next prompt, and confirms it then)
    assert csp_env.cspctl("send", "@fa", "!stop that").returncode == 0
    wait_for(lambda: (a := agent_state(csp_env, "fa")).get("queue") == 0
             and a.get("pending") == 1, timeout=6,
             what="the urgent message typed in while the agent is busy")
    assert "● reply: a long task" not in pane.screen()  # it was still thinking
    pane.wait_text("● reply: [human → @fa] stop that", timeout=20)
    # but a half-typed line holds even an urgent one
    pane.type("mine")
    wait_for(lambda: "mine" in "".join(received(fake_log)), what="the human's keys")
    assert csp_env.cspctl("send", "--urgent", "@fa", "second").returncode == 0
    wait_for(lambda: agent_state(csp_env, "fa").get("queue") == 1, what="held")
    assert not any("second" in r for r in received(fake_log))
    pane.send("C-u")  # the human clears the line
    wait_for(lambda: any("second" in r for r in received(fake_log)), what="delivered after")
