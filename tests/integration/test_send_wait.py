"""``cspctl send --wait`` (issue 15): a script gets the agent's reply back.

Real gateway, real sidecars in tmux panes, the stand-in CLI with Claude Code's
hooks, so each reply goes through the exact-reply path (the Stop hook) and is
posted once.  One agent: its reply is printed and the exit is 0.  Two agents,
one paused: the other's reply arrives, labelled, and the wait ends with exit 8
and what came so far.
"""

from __future__ import annotations

import json
import time

from tests.conftest import CspEnv, GatewayProcess
from tests.integration.test_sidecar import agent_state, history, start_fake
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

EXIT_TIMEOUT = 8


def _think(env: CspEnv) -> None:
    env.env["FAKECLI_LOG"] = str(env.root / "fake_cli.log")
    env.env["FAKECLI_THINK"] = "0.2"


def test_send_wait_prints_the_reply_of_the_agent(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    _think(csp_env)
    start_fake(csp_env, tmux, "fa")
    r = csp_env.cspctl("send", "@fa", "what is six times seven", "--wait", "--timeout", "60",
                       timeout=90)
    assert r.returncode == 0, r.stderr
    # the stand-in answers "reply: <the line it was typed>", the line naming the sender
    assert r.stdout.strip() == "reply: [human → @fa] what is six times seven", r.stdout
    assert "waiting for the reply" in r.stderr

    # --json: the message and the reply, for scripts; a second question gets its own reply
    r = csp_env.cspctl("send", "@fa", "and seven times eight", "--wait", "--json",
                       "--timeout", "60", timeout=90)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["timed_out"] is False and out["waiting_for"] == []
    reply = out["replies"]["fa"]
    assert reply["from"] == "fa" and reply["kind"] == "output"
    assert reply["content"] == "reply: [human → @fa] and seven times eight"
    assert reply["id"] > out["message"]["id"]


def test_send_wait_labels_several_replies_and_times_out_with_exit_8(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    _think(csp_env)
    csp_env.env["FAKECLI_REPLY"] = "untagged"  # replies that name nobody: no relay between them
    start_fake(csp_env, tmux, "fa")
    start_fake(csp_env, tmux, "fb")

    r = csp_env.cspctl("send", "@fa", "@fb", "roll call", "--wait", "--timeout", "60",
                       timeout=90)
    assert r.returncode == 0, r.stderr
    assert "── fa (#" in r.stdout and "── fb (#" in r.stdout, r.stdout
    assert r.stdout.count("reply: roll call") == 2, r.stdout

    # both idle again before the next case
    quiet_since: list[tuple[int, float]] = []

    def settled() -> bool:
        """Both idle with nothing waiting, and no new message for 1.5 s (a reply in flight
        between two agents leaves both idle for a moment)."""
        idle = all(agent_state(csp_env, n).get("state") == "ready"
                   and agent_state(csp_env, n).get("queue") == 0
                   and agent_state(csp_env, n).get("pending") == 0 for n in ("fa", "fb"))
        newest = max(int(str(m["id"])) for m in history(csp_env))
        if not idle or not quiet_since or quiet_since[0][0] != newest:
            quiet_since[:] = [(newest, time.monotonic())]
            return False
        return time.monotonic() - quiet_since[0][1] >= 1.5

    wait_for(settled, timeout=90, interval=0.3, what="both agents idle, nothing waiting")

    # fa paused: its message waits, fb answers; the wait ends at the timeout with exit 8
    assert csp_env.cspctl("pause", "fa").returncode == 0
    wait_for(lambda: agent_state(csp_env, "fa").get("state") == "paused", what="fa paused")
    r = csp_env.cspctl("send", "@fa", "@fb", "anyone there", "--wait", "--json",
                       "--timeout", "4", timeout=60)
    assert r.returncode == EXIT_TIMEOUT, (r.returncode, r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert out["timed_out"] is True and out["waiting_for"] == ["fa"]
    assert list(out["replies"]) == ["fb"]
    assert "anyone there" in out["replies"]["fb"]["content"]
    assert "no reply from fa" in r.stderr

    # plain text on timeout: nothing from the paused agent, exit 8 all the same
    r = csp_env.cspctl("send", "@fa", "still there", "--wait", "--timeout", "1", timeout=60)
    assert r.returncode == EXIT_TIMEOUT, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""


def test_send_wait_skips_the_reply_to_what_the_agent_was_doing(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    """The agent is busy with an earlier prompt when the message comes: the reply to that
    prompt comes first, and is not taken for the reply to the message."""
    _think(csp_env)
    csp_env.env["FAKECLI_THINK"] = "2.0"
    start_fake(csp_env, tmux, "fs")
    assert csp_env.cspctl("send", "@fs", "the first question").returncode == 0
    wait_for(lambda: agent_state(csp_env, "fs").get("state") == "busy", what="fs busy")
    r = csp_env.cspctl("send", "@fs", "the second question", "--wait", "--timeout", "60",
                       timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "reply: [human → @fs] the second question", r.stdout
    first = [m for m in history(csp_env) if m["from"] == "fs"]
    assert [m["content"] for m in first][:1] == ["reply: [human → @fs] the first question"]
