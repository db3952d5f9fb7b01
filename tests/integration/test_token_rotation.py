"""Long-lived clients keep working across ``cspctl token --rotate`` (issue #10).

Before, ``cspctl chat`` and ``cspctl mcp`` read the token once at start: after a
rotation every line failed with "wrong token" until they were restarted.  Each
test here keeps one real client process running across a rotation (and, where
the client must reconnect, across a gateway restart, which makes it present
the token again) and checks that it goes on working without a restart.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import CspEnv, GatewayProcess
from tests.integration.test_sidecar import history, start_fake
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

pytestmark = pytest.mark.integration

CSPCTL = [sys.executable, "-m", "csp_cli"]


class Running:
    """A client process fed through stdin, whose stdout lines are collected by a thread."""

    def __init__(self, env: CspEnv, *args: str) -> None:
        self.proc = subprocess.Popen([*CSPCTL, *args], env=env.env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.proc.stdout is not None
        stdout: IO[str] = self.proc.stdout
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def write(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def output(self) -> list[str]:
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return self.seen

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Close stdin, wait for the exit; (exit code, stderr)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Client processes started by a test, killed by pid if it left them running."""
    procs: list[Running] = []
    yield procs
    for proc in procs:
        proc.kill()


def contents(env: CspEnv) -> list[str]:
    return [str(m["content"]) for m in history(env)]


def rotate(env: CspEnv, token_file: Path) -> None:
    old = token_file.read_text()
    r = env.cspctl("token", "--rotate")
    assert r.returncode == 0, r.stderr
    assert token_file.read_text() != old


def test_chat_sends_after_a_rotation(csp_env: CspEnv, gateway: GatewayProcess,
                                     running: list[Running]) -> None:
    chat = Running(csp_env, "chat")
    running.append(chat)
    chat.write("before the rotation")
    wait_for(lambda: "before the rotation" in contents(csp_env), what="the first line sent")
    rotate(csp_env, csp_env.token_file)
    chat.write("after the rotation")
    wait_for(lambda: "after the rotation" in contents(csp_env), what="a line after rotating")
    # the view still follows the room, and a reconnect (gateway restart) presents the
    # new token
    gateway.stop()
    gateway.start()
    rotate(csp_env, csp_env.token_file)
    chat.write("after a restart and another rotation")
    wait_for(lambda: "after a restart and another rotation" in contents(csp_env),
             what="a line after a restart")
    assert csp_env.cspctl("send", "@all", "from a script").returncode == 0
    wait_for(lambda: any("from a script" in line for line in chat.output()),
             what="the chat to show new messages")
    code, err = chat.finish()
    assert code == 0, err
    assert "wrong token" not in "\n".join(chat.output()) + err


def _rpc(i: int, method: str, params: dict[str, Any] | None = None) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params or {}})


def _answer(mcp: Running, rid: int) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for line in mcp.output():
            answer: dict[str, Any] = json.loads(line)
            if answer.get("id") == rid:
                return answer
        return None
    answer = wait_for(found, what=f"the answer to request {rid}")
    assert answer is not None
    return answer


def _post(mcp: Running, rid: int, text: str) -> dict[str, Any]:
    mcp.write(_rpc(rid, "tools/call", {"name": "post_message",
                                       "arguments": {"content": text, "to": ["@all"]}}))
    return _answer(mcp, rid)


def test_mcp_posts_after_a_rotation(csp_env: CspEnv, gateway: GatewayProcess,
                                    running: list[Running]) -> None:
    mcp = Running(csp_env, "mcp")
    running.append(mcp)
    mcp.write(_rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                     "clientInfo": {"name": "test", "version": "0"}}))
    assert _answer(mcp, 1)["result"]["serverInfo"]["name"] == "csp"
    mcp.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    first = _post(mcp, 2, "mcp before the rotation")
    assert first["result"]["isError"] is False, first
    rotate(csp_env, csp_env.token_file)
    second = _post(mcp, 3, "mcp after the rotation")
    assert "error" not in second, second
    assert second["result"]["isError"] is False, second
    assert {"mcp before the rotation", "mcp after the rotation"} <= set(contents(csp_env))
    code, err = mcp.finish()
    assert code == 0, err


def test_history_follow_keeps_going_after_a_rotation(csp_env: CspEnv, gateway: GatewayProcess,
                                                     running: list[Running]) -> None:
    follow = Running(csp_env, "history", "--follow", "--json")
    running.append(follow)

    def printed(text: str) -> bool:
        return any(json.loads(line)["content"] == text for line in follow.output())

    assert csp_env.cspctl("send", "@all", "one").returncode == 0
    wait_for(lambda: printed("one"), what="a live message")
    rotate(csp_env, csp_env.token_file)
    assert csp_env.cspctl("send", "@all", "two").returncode == 0
    wait_for(lambda: printed("two"), what="a message after the rotation")
    # reconnecting after a restart presents the token: the new one
    gateway.stop()
    gateway.start()
    assert csp_env.cspctl("send", "@all", "three").returncode == 0
    wait_for(lambda: printed("three"), what="a message after the restart")
    assert follow.proc.poll() is None, follow.proc.stderr and follow.proc.stderr.read()


def test_sidecar_reconnects_with_the_rotated_token(csp_env: CspEnv, gateway: GatewayProcess,
                                                  tmux: TmuxServer, tmp_path: Path) -> None:
    csp_env.env["FAKECLI_LOG"] = str(tmp_path / "fake_cli.log")
    csp_env.env["FAKECLI_THINK"] = "0.2"
    pane = start_fake(csp_env, tmux)
    rotate(csp_env, csp_env.token_file)
    gateway.stop()
    gateway.start()  # the sidecar must present the token again to reconnect

    def online() -> bool:
        rows = json.loads(csp_env.cspctl("agents", "--json").stdout)
        return any(row["name"] == "fa" and row["online"] for row in rows)
    wait_for(online, timeout=30, what="the sidecar to reconnect")
    assert csp_env.cspctl("send", "@fa", "after the rotation").returncode == 0
    pane.wait_text("● reply: [human → @fa] after the rotation")
    wait_for(lambda: any("reply: [human → @fa] after the rotation" in str(m["content"])
                         for m in history(csp_env) if m["kind"] == "output"),
             what="the agent's reply shared")
