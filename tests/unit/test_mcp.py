"""The MCP pieces that need no gateway: version negotiation, sessions, who reads what,
the stdio bridge's timeouts, and what ``cspctl mcp install`` would run."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from csp_cli.main import cli
from csp_cli.mcp_bridge import ANSWER_TIMEOUT, time_allowed
from csp_cli.mcp_install import plan, server_command
from csp_core.protocol import Message
from cspd.mcp import LATEST, VERSIONS, Sessions, negotiate
from cspd.mcp_tools import TOOLS, ToolResult, is_for


@pytest.mark.parametrize("offered, answered", [
    ("2024-11-05", "2024-11-05"), ("2025-03-26", "2025-03-26"), ("2025-06-18", "2025-06-18"),
    ("2025-11-25", "2025-11-25"), ("2026-07-28", LATEST), ("9999-99-99", LATEST),
    (None, LATEST), (42, LATEST)])
def test_negotiate_answers_a_version_the_server_speaks(offered: Any, answered: str) -> None:
    assert negotiate(offered) == answered
    assert answered in VERSIONS


def test_sessions_are_random_bounded_and_end() -> None:
    sessions = Sessions(limit=3)
    opened = [sessions.open("human", LATEST, {}) for _ in range(4)]
    ids = {s.id for s in opened}
    assert len(ids) == 4 and all(len(i) == 64 for i in ids)
    assert sessions.get(opened[0].id) is None  # the least recently used went first
    assert sessions.get(opened[1].id) is opened[1]
    sessions.open("human", LATEST, {})
    assert sessions.get(opened[1].id) is opened[1]  # used since: kept
    assert sessions.get(opened[2].id) is None
    assert sessions.end(opened[3].id) and not sessions.end(opened[3].id)
    assert sessions.get(opened[3].id) is None


def _m(sender: str, to: list[str], room: str = "main", kind: str = "chat",
       content: str = "x") -> Message:
    return Message(1, room, sender, to, kind, content, "2026-01-01T00:00:00.000Z")


@pytest.mark.parametrize("message, wanted", [
    (_m("human", ["all"]), True),                      # to its room
    (_m("bob", ["me"], room="elsewhere"), True),       # to it by name, any room
    (_m("me", ["all"]), False),                        # its own
    (_m("bob", ["carol"]), False),                     # to someone else
    (_m("bob", ["all"], room="elsewhere"), False),     # a room it is not in
    (_m("bob", ["all"], kind="output", content="done"), False),  # output not for it
    (_m("bob", ["all"], kind="output", content="@me look"), True),
])
def test_what_an_agent_reads(message: Message, wanted: bool) -> None:
    assert is_for(message, "me", {"main"}) is wanted


def test_tools_have_schemas_and_no_identity_argument() -> None:
    for tool in TOOLS:
        schema = tool["inputSchema"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert not {"from", "sender", "agent", "as"} & set(schema.get("properties", {}))
        assert len(tool["description"]) > 80


def test_a_tool_result_is_text_and_structured_when_the_version_has_it() -> None:
    ok = ToolResult({"id": 3}).to_json(structured=True)
    assert json.loads(ok["content"][0]["text"]) == {"id": 3}
    assert ok["structuredContent"] == {"id": 3} and ok["isError"] is False
    assert "structuredContent" not in ToolResult({"id": 3}).to_json(structured=False)
    bad = ToolResult("no such room", is_error=True).to_json(structured=True)
    assert bad == {"content": [{"type": "text", "text": "no such room"}], "isError": True}


def test_a_waiting_read_gets_its_wait_on_top_of_the_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSP_MCP_TIMEOUT", raising=False)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "read_messages", "arguments": {"wait_seconds": 120}}}
    assert time_allowed(call) == ANSWER_TIMEOUT + 120
    assert time_allowed({"method": "ping"}) == ANSWER_TIMEOUT
    monkeypatch.setenv("CSP_MCP_TIMEOUT", "2")
    assert time_allowed({"method": "ping"}) == 2
    monkeypatch.setenv("CSP_MCP_TIMEOUT", "soon")
    assert time_allowed({"method": "ping"}) == ANSWER_TIMEOUT


@pytest.mark.parametrize("name, add, remove", [
    ("claude", ["claude", "mcp", "add", "--scope", "user", "csp", "--"],
     ["claude", "mcp", "remove", "--scope", "user", "csp"]),
    ("codex", ["codex", "mcp", "add", "csp", "--"], ["codex", "mcp", "remove", "csp"]),
    ("gemini", ["gemini", "mcp", "add", "--scope", "user", "csp"],
     ["gemini", "mcp", "remove", "--scope", "user", "csp"]),
])
def test_install_runs_each_clis_own_command(name: str, add: list[str],
                                            remove: list[str]) -> None:
    steps = plan(name)
    assert [list(s.argv) for s in steps] == [remove, [*add, *server_command()]]
    assert steps[0].missing_ok and not steps[1].missing_ok  # re-installing replaces
    assert [list(s.argv) for s in plan(name, remove=True)] == [remove]


def test_install_print_changes_nothing() -> None:
    result = CliRunner().invoke(cli, ["mcp", "install", "--for", "codex", "--print"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [shlex.split(line)[:4] for line in lines] == [
        ["codex", "mcp", "remove", "csp"], ["codex", "mcp", "add", "csp"]]
    assert shlex.split(lines[1])[-1] == "mcp"


def test_the_registered_server_is_a_runnable_cspctl() -> None:
    command = server_command()
    assert command[-1] == "mcp"
    assert command[0].endswith("cspctl") or command[:3] == [sys.executable, "-m", "csp_cli"]


async def test_the_store_keeps_read_cursors_and_filters_history(tmp_path: Path) -> None:
    from cspd.store import Draft, Store

    store = Store(tmp_path / "csp.sqlite3")
    await store.open()
    try:
        for text in ("50% done", "50 percent", "a_b", "axb", "plain"):
            await store.append(Draft(room="main", sender="bob", to=["all"], kind="chat",
                                     content=text))
        found = await store.search_history("main", 0, 10, "50%")
        assert [m.content for m in found] == ["50% done"]  # % is no wildcard
        assert [m.content for m in await store.search_history("main", 0, 10, "A_B")] == [
            "a_b"]  # nor _, and case does not matter
        newest = await store.search_history(None, 0, 1, "50")
        assert [m.content for m in newest] == ["50 percent"]  # the newest match
        after = await store.search_history(None, 1, 1, "50")
        assert [m.content for m in after] == ["50 percent"]  # the first after id 1
        assert await store.read_cursor("me") is None
        await store.set_read_cursor("me", 3)
        await store.set_read_cursor("me", 2)  # never backwards
        assert await store.read_cursor("me") == 3
        await store.forget_agent("me")
        assert await store.read_cursor("me") is None
    finally:
        await store.close()
