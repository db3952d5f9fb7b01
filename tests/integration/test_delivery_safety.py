"""Typing only where it is safe, exactly once: the delivery gates with real programs.

Each test runs a real program (vim, bash, the fake agent CLI) under a real
sidecar in a real tmux pane, with a real gateway, and sends chat messages
that would do harm if they were typed at the wrong moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CspEnv, GatewayProcess
from tests.integration.test_sidecar import (
    SIDECAR,
    agent_state,
    fake_cli,
    history,
    prompts,
    received,
    sidecar_cmd,
    start_fake,
)
from tests.polling import wait_for
from tests.tmuxtest import Pane, TmuxServer


@pytest.fixture
def fake_log(csp_env: CspEnv) -> Path:
    log = csp_env.root / "fake_cli.log"
    csp_env.env["FAKECLI_LOG"] = str(log)
    csp_env.env["FAKECLI_THINK"] = "0.2"
    return log


def _online_with_queue(env: CspEnv, name: str, queue: int) -> dict[str, object]:
    return wait_for(lambda: (a := agent_state(env, name)).get("online")
                    and a.get("queue") == queue and a, what=f"{name} holding {queue}")


# -- the foreground: only the agent itself is typed into ---------------------------


def test_urgent_message_into_vim_leaves_the_file_unchanged(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    text = csp_env.root / "notes.txt"
    text.write_text("original\n")
    pane = tmux.new_pane(sidecar_cmd("ed", "vim", "-u", "NONE", "-N", "-n", str(text),
                                     profile="generic"))
    pane.wait_text("original")
    assert csp_env.cspctl("send", "@ed", "!ihello\x1b:wq\r").returncode == 0
    row = _online_with_queue(csp_env, "ed", 1)
    assert row["reason"], row  # the state says why it waits
    assert "hello" not in pane.screen()
    pane.type(":q!\r")
    assert pane.dead_status() == 0
    assert text.read_text() == "original\n"


@pytest.mark.parametrize("command", [
    ["env", "bash", "--norc", "--noprofile"],
    ["sh", "-c", "exec bash --norc --noprofile"],
])
@pytest.mark.parametrize("profile", [None, "generic"])
def test_a_shell_never_runs_a_message(csp_env: CspEnv, gateway: GatewayProcess,
                                      tmux: TmuxServer, command: list[str],
                                      profile: str | None) -> None:
    pwned = csp_env.root / "pwned"
    pane = tmux.new_pane(sidecar_cmd("box", *command, profile=profile))
    pane.type("echo shell-up\r")
    pane.wait_text("shell-up")
    wait_for(lambda: agent_state(csp_env, "box").get("online"), what="box online")
    for urgent in ("", "!"):
        assert csp_env.cspctl("send", "@box", f"{urgent}please check; touch {pwned} #"
                              ).returncode == 0
    row = _online_with_queue(csp_env, "box", 2)
    assert row["reason"]
    pane.type("echo still-mine\r")
    pane.wait_text("still-mine")
    assert not pwned.exists()
    assert "please check" not in pane.screen()


def test_a_shell_the_agent_opens_gets_nothing(csp_env: CspEnv, gateway: GatewayProcess,
                                              tmux: TmuxServer) -> None:
    pwned = csp_env.root / "pwned"
    pane = tmux.new_pane(sidecar_cmd("py", sys.executable, "-q", "-i", profile="generic"))
    pane.wait_text(">>>")
    wait_for(lambda: agent_state(csp_env, "py").get("state") == "ready", what="py ready")
    # the agent (python) starts an interactive shell, which takes the terminal
    pane.type("import os; os.system('bash --norc --noprofile -i')\r")
    pane.type("echo inner-shell\r")
    pane.wait_text("inner-shell")
    assert csp_env.cspctl("send", "@py", f"!touch {pwned}").returncode == 0
    row = _online_with_queue(csp_env, "py", 1)
    assert "bash" in str(row["reason"])
    pane.type("echo still-mine\r")
    pane.wait_text("still-mine")
    assert not pwned.exists()
    # back to the agent itself: the message goes in, as text for python to read
    pane.type("exit\r")
    wait_for(lambda: agent_state(csp_env, "py").get("queue") == 0, what="delivered to python")
    assert not pwned.exists()


# -- the human's draft --------------------------------------------------------------


@pytest.mark.parametrize("newline", [["C-j"], ["\\", "Enter"], ["M-Enter"]],
                         ids=["ctrl-j", "backslash-enter", "alt-enter"])
def test_a_multi_line_draft_is_never_merged_with_a_message(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path,
        newline: list[str]) -> None:
    pane = start_fake(csp_env, tmux)
    pane.type("first line of my draft")
    for key in newline:
        if key == "\\":
            pane.type("\\")
        else:
            pane.send(key)
    draft = "first line of my draft"

    def new_line_arrived() -> bool:  # in a read of its own or with the text (a busy machine)
        text = "".join(received(fake_log))
        return draft in text and not text.endswith(draft)

    wait_for(new_line_arrived, what="the new-line key")
    assert csp_env.cspctl("send", "@fa", "from the group").returncode == 0
    _online_with_queue(csp_env, "fa", 1)
    assert not any("from the group" in r for r in received(fake_log))
    pane.type("second line")
    pane.send("Enter")
    reads = wait_for(lambda: (r := received(fake_log)) and any("from the group" in x for x in r)
                     and r, what="delivery after the draft was sent")
    at = next(i for i, x in enumerate(reads) if "from the group" in x)
    assert "second line" in "".join(reads[:at])  # the whole draft went first, alone
    assert "first line" not in reads[at]


# -- exactly once, across restarts -------------------------------------------------


def _restartable(env: CspEnv, tmux: TmuxServer, name: str) -> Pane:
    pane = tmux.new_pane(sidecar_cmd(name, *fake_cli(), profile="claude"))
    pane.wait_text("fake agent ready")
    return pane


def test_ten_restarts_with_messages_queued_deliver_each_once_in_order(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    csp_env.env["FAKECLI_THINK"] = "0.6"
    sent: list[str] = []
    for round_ in range(10):
        pane = _restartable(csp_env, tmux, "fa")
        for k in range(3):
            body = f"msg-{round_:02d}-{k}"
            assert csp_env.cspctl("send", "@fa", body).returncode == 0
            sent.append(body)
        # kill the sidecar with messages queued: on even rounds while the first is being
        # typed in (pasted, not yet submitted), on odd ones once the CLI took it
        first = sent[-3]
        seen = received if round_ % 2 == 0 else prompts
        wait_for(lambda: any(first in r for r in seen(fake_log)),  # noqa: B023
                 what="a delivery under way")
        os.kill(pane.pid, signal.SIGKILL)
        pane.dead_status()
        wait_for(lambda: not agent_state(csp_env, "fa").get("online"), what="fa offline")
    _restartable(csp_env, tmux, "fa")
    taken = lambda: "\n".join(prompts(fake_log))  # noqa: E731
    wait_for(lambda: all(b in taken() for b in sent), timeout=60, what="every message taken")
    wait_for(lambda: agent_state(csp_env, "fa").get("pending") == 0, what="all acknowledged")
    text = taken()
    assert [text.count(b) for b in sent] == [1] * len(sent)  # once each
    assert sorted(sent, key=text.index) == sent  # in order


def test_killed_between_submit_and_ack_types_nothing_twice(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer, fake_log: Path) -> None:
    # a CLI whose hooks never fire: the prompt is submitted, never confirmed, never acked
    csp_env.env["FAKECLI_NO_HOOKS"] = "1"
    pane = _restartable(csp_env, tmux, "fa")
    wait_for(lambda: agent_state(csp_env, "fa").get("state") == "ready", what="ready")
    assert csp_env.cspctl("send", "@fa", "only once please").returncode == 0
    wait_for(lambda: "\r" in received(fake_log), what="submitted")
    assert agent_state(csp_env, "fa").get("pending") == 1  # not acknowledged yet
    os.kill(pane.pid, signal.SIGKILL)
    pane.dead_status()
    wait_for(lambda: not agent_state(csp_env, "fa").get("online"), what="fa offline")
    csp_env.env["FAKECLI_NO_HOOKS"] = "0"
    _restartable(csp_env, tmux, "fa")
    wait_for(lambda: agent_state(csp_env, "fa").get("pending") == 0, what="the replay acked")
    assert "".join(received(fake_log)).count("only once please") == 1
    assert prompts(fake_log) == ["[human → @fa] only once please"]
    # and the room hears that the turn on it was cut short
    wait_for(lambda: any("was not answered" in str(m["content"]) for m in history(csp_env)),
             what="the interruption reported")


def test_a_cli_killed_mid_turn_is_reported(csp_env: CspEnv, gateway: GatewayProcess,
                                            tmux: TmuxServer, fake_log: Path) -> None:
    csp_env.env["FAKECLI_THINK"] = "30"
    pane = _restartable(csp_env, tmux, "fa")
    wait_for(lambda: agent_state(csp_env, "fa").get("state") == "ready", what="ready")
    r = csp_env.cspctl("send", "--json", "@fa", "a long question")
    assert r.returncode == 0, r.stderr
    sent_id = json.loads(r.stdout)["id"]
    pane.wait_text("Thinking")
    cli = int(subprocess.run(["pgrep", "-P", str(pane.pid)], capture_output=True,
                             text=True).stdout.split()[0])
    os.kill(cli, signal.SIGKILL)
    pane.dead_status()
    reports = wait_for(lambda: [m for m in history(csp_env)
                                if "was not answered" in str(m["content"])],
                       what="the cut-short turn reported")
    assert f"#{sent_id} from human" in str(reports[0]["content"])


def test_nothing_is_typed_before_the_cli_is_ready(csp_env: CspEnv, gateway: GatewayProcess,
                                                  tmux: TmuxServer, fake_log: Path) -> None:
    # the gateway holds a message for an agent that is offline ...
    assert csp_env.run(*SIDECAR, "--name", "late", "--", "true").returncode == 0
    assert csp_env.cspctl("send", "@late", "are you there").returncode == 0
    # ... which comes back with a CLI that takes 2 s to start (and flushes its input then)
    csp_env.env["FAKECLI_START_DELAY"] = "2"
    pane = tmux.new_pane(sidecar_cmd("late", *fake_cli(), profile="claude"))
    pane.wait_text("● reply: [human → @late] are you there")
    assert received(fake_log)[0].startswith("\x1b[200~")  # the first read was our paste
    wait_for(lambda: agent_state(csp_env, "late").get("pending") == 0, what="acknowledged")
