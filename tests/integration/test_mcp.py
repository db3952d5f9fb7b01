"""MCP as the specification says, checked with the official MCP Python SDK's client.

Both transports: streamable HTTP at ``/mcp`` (on the unix socket, through the
SDK's httpx client with a unix-socket transport, and on loopback TCP) and stdio
through ``cspctl mcp``.  A real gateway; an agent under a real sidecar for the
identity (its process tree says who it is, never a tool argument).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import CspEnv, GatewayProcess
from tests.integration.test_identity import tcp_gateway  # noqa: F401 (a fixture)
from tests.polling import wait_for

SIDECAR = [sys.executable, "-m", "csp_sidecar"]
TOOLS = {"send_message", "read_messages", "list_agents", "get_history"}
OLD, NEWEST_HANDSHAKE, FUTURE = "2024-11-05", "2025-11-25", "2026-07-28"


def token(env: CspEnv) -> str:
    return env.token_file.read_text().strip()


def http_client(env: CspEnv, *, url: str | None = None, bearer: str | None = "owner",
                headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """The SDK's httpx, on the gateway's unix socket (or at a TCP ``url``)."""
    h = dict(headers or {})
    if bearer is not None:
        h["Authorization"] = f"Bearer {token(env) if bearer == 'owner' else bearer}"
    transport = None if url else httpx2.AsyncHTTPTransport(uds=str(env.socket))
    return httpx2.AsyncClient(transport=transport, headers=h, timeout=60)


@asynccontextmanager
async def http_session(env: CspEnv, *, url: str | None = None,
                       headers: dict[str, str] | None = None,
                       initialize: bool = True) -> AsyncIterator[ClientSession]:
    client = http_client(env, url=url, headers=headers)
    endpoint = (url or "http://localhost") + "/mcp"
    async with client, streamable_http_client(endpoint, http_client=client) as (r, w), \
            ClientSession(r, w) as session:
        if initialize:
            await session.initialize()
        yield session


async def initialize_as(session: ClientSession, version: str) -> types.InitializeResult:
    """``initialize`` offering ``version`` (the SDK's own offers its newest)."""
    result = await session.send_request(
        types.InitializeRequest(params=types.InitializeRequestParams(
            protocol_version=version, capabilities=types.ClientCapabilities(),
            client_info=types.Implementation(name="csp-test", version="0"))),
        types.InitializeResult)
    session.adopt(result)
    await session.send_notification(types.InitializedNotification())
    return result


def data(result: types.CallToolResult) -> Any:
    assert not result.is_error, result.content
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return json.loads(block.text)


def history(env: CspEnv) -> list[dict[str, Any]]:
    r = env.cspctl("history", "--json", "--limit", "200")
    assert r.returncode == 0, r.stderr
    out: list[dict[str, Any]] = json.loads(r.stdout)
    return out


def watchers(env: CspEnv) -> int:
    r = env.cspctl("gateway", "status", "--json")
    return int(json.loads(r.stdout)["health"]["watchers"]) if r.returncode == 0 else -1


# -- streamable HTTP on the unix socket ------------------------------------------------


@pytest.mark.parametrize("offered, answered", [
    (OLD, OLD), ("2025-06-18", "2025-06-18"), (NEWEST_HANDSHAKE, NEWEST_HANDSHAKE),
    (FUTURE, NEWEST_HANDSHAKE), ("1999-01-01", NEWEST_HANDSHAKE)])
async def test_protocol_version_negotiation(csp_env: CspEnv, gateway: GatewayProcess,
                                            offered: str, answered: str) -> None:
    async with http_session(csp_env, initialize=False) as session:
        result = await initialize_as(session, offered)
        assert result.protocol_version == answered
        assert result.server_info.name == "csp"
        assert result.capabilities.tools is not None
        assert not result.capabilities.tools.list_changed  # the tool set never changes
        tools = await session.list_tools()  # the session works at that version
        assert {t.name for t in tools.tools} == TOOLS


async def test_tools_are_described_for_a_model(csp_env: CspEnv,
                                               gateway: GatewayProcess) -> None:
    async with http_session(csp_env) as session:
        assert session.protocol_version == NEWEST_HANDSHAKE
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80
        assert tool.input_schema["type"] == "object"
    send = tools["send_message"].input_schema
    assert send["required"] == ["text"]
    assert {"to", "reply_to", "urgent"} <= set(send["properties"])
    assert "from" not in send["properties"] and "as" not in send["properties"]
    assert {"wait_seconds", "limit"} <= set(tools["read_messages"].input_schema["properties"])
    assert {"room", "since", "limit", "text"} <= set(
        tools["get_history"].input_schema["properties"])


async def test_send_then_see_it_in_cspctl_history_and_read_what_cspctl_sent(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    async with http_session(csp_env) as session:
        sent = data(await session.call_tool("send_message", {"text": "hello over http"}))
        first = data(await session.call_tool("read_messages", {}))  # sets the cursor
        assert all(m["from"] != "human" for m in first["messages"])  # never its own
        r = csp_env.cspctl("send", "--as", "bob", "@all", "a note from bob")
        assert r.returncode == 0, r.stderr
        got = data(await session.call_tool("read_messages", {}))
        again = data(await session.call_tool("read_messages", {}))
        found = data(await session.call_tool("get_history", {"text": "NOTE FROM"}))
    posted = [m for m in history(csp_env) if m["content"] == "hello over http"]
    assert [m["id"] for m in posted] == [sent["id"]] and posted[0]["from"] == "human"
    assert [(m["from"], m["content"]) for m in got["messages"]] == [("bob", "a note from bob")]
    assert again["messages"] == []  # marked read
    assert [m["content"] for m in found["messages"]] == ["a note from bob"]


async def test_read_messages_waits_for_a_message_that_arrives_meanwhile(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    async with http_session(csp_env) as session:
        data(await session.call_tool("read_messages", {}))
        assert watchers(csp_env) == 0

        def send_once_waiting() -> None:
            wait_for(lambda: watchers(csp_env) == 1, what="read_messages to wait")
            assert csp_env.cspctl("send", "--as", "bob", "@all", "late news").returncode == 0

        import anyio
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, send_once_waiting)
            got = data(await session.call_tool("read_messages", {"wait_seconds": 60}))
    assert [m["content"] for m in got["messages"]] == ["late news"]
    assert watchers(csp_env) == 0  # the wait is over: nothing left behind


async def test_a_failing_tool_is_a_tool_error_and_the_session_goes_on(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    async with http_session(csp_env) as session:
        bad = await session.call_tool("send_message", {"text": "x", "to": ["@nobody"]})
        assert bad.is_error and "unknown recipient" in str(bad.content[0])
        bad = await session.call_tool("send_message", {"text": "x", "reply_to": 99999})
        assert bad.is_error and "no message #99999" in str(bad.content[0])
        bad = await session.call_tool("read_messages", {"wait_seconds": -1})
        assert bad.is_error
        ok = data(await session.call_tool("send_message", {"text": "still here"}))
        reply = data(await session.call_tool("send_message", {"text": "yes",
                                                              "reply_to": ok["id"]}))
        old = data(await session.call_tool("post_message", {"content": "old name"}))
    shown = {m["id"]: m for m in history(csp_env)}
    assert shown[reply["id"]]["content"] == f"(re #{ok['id']}) yes"
    assert shown[old["id"]]["content"] == "old name"


# -- the HTTP rules -------------------------------------------------------------------

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": NEWEST_HANDSHAKE, "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "0"}}}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


async def _post(client: httpx2.AsyncClient, body: Any, base: str = "http://localhost",
                **headers: str) -> httpx2.Response:
    return await client.post(f"{base}/mcp", json=body, headers={**ACCEPT, **headers})


async def test_http_rules(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    async with http_client(csp_env, bearer=None) as anonymous:
        assert (await _post(anonymous, INIT)).status_code == 401
    async with http_client(csp_env, bearer="wrong") as wrong:
        assert (await _post(wrong, INIT)).status_code == 401
    async with http_client(csp_env) as client:
        foreign = await _post(client, INIT, Origin="http://evil.example")
        assert foreign.status_code == 403
        opened = await _post(client, INIT)
        assert opened.status_code == 200
        sid = opened.headers["mcp-session-id"]
        assert len(sid) >= 32 and sid.isascii()
        other = (await _post(client, INIT)).headers["mcp-session-id"]
        assert other != sid  # a new random id per session
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        accepted = await _post(client, initialized, **{"Mcp-Session-Id": sid})
        assert accepted.status_code == 202 and not accepted.content
        answered = await _post(client, {"jsonrpc": "2.0", "id": 7, "result": {}},
                               **{"Mcp-Session-Id": sid})
        assert answered.status_code == 202  # a response from the client
        assert (await _post(client, LIST)).status_code == 400  # no session id
        assert (await _post(client, LIST, **{"Mcp-Session-Id": "f" * 64})).status_code == 404
        bad_version = await _post(client, LIST, **{"Mcp-Session-Id": sid,
                                                   "MCP-Protocol-Version": "1900-01-01"})
        assert bad_version.status_code == 400
        ok = await _post(client, LIST, **{"Mcp-Session-Id": sid,
                                          "MCP-Protocol-Version": NEWEST_HANDSHAKE})
        assert ok.status_code == 200 and ok.json()["id"] == 2
        unknown = await _post(client, {"jsonrpc": "2.0", "id": 3, "method": "nope"},
                              **{"Mcp-Session-Id": sid})
        assert unknown.json()["error"]["code"] == -32601
        garbage = await client.post("http://localhost/mcp", content=b"{nope",
                                    headers={**ACCEPT, "Content-Type": "application/json"})
        assert garbage.status_code == 400 and garbage.json()["error"]["code"] == -32700
        assert (await client.get("http://localhost/mcp", headers={
            "Mcp-Session-Id": sid})).status_code == 405  # no server-initiated stream
        ended = await client.delete("http://localhost/mcp", headers={"Mcp-Session-Id": sid})
        assert ended.status_code == 204
        assert (await _post(client, LIST, **{"Mcp-Session-Id": sid})).status_code == 404
        again = await client.delete("http://localhost/mcp", headers={"Mcp-Session-Id": sid})
        assert again.status_code == 404


async def test_the_sdk_ends_its_session_with_delete(csp_env: CspEnv,
                                                    gateway: GatewayProcess) -> None:
    seen: list[str] = []

    async def remember(response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid:
            seen.append(sid)

    client = http_client(csp_env)
    client.event_hooks["response"].append(remember)
    async with client:
        async with streamable_http_client("http://localhost/mcp", http_client=client) as (
                r, w), ClientSession(r, w) as session:
            await session.initialize()
            await session.send_ping()
        assert seen  # the session existed ...
        after = await _post(client, LIST, **{"Mcp-Session-Id": seen[0]})
        assert after.status_code == 404  # ... and the SDK's DELETE ended it


async def test_loopback_tcp(csp_env: CspEnv, tcp_gateway: str) -> None:  # noqa: F811
    async with http_session(csp_env, url=tcp_gateway) as session:
        sent = data(await session.call_tool("send_message", {"text": "hello over tcp"}))
    assert sent["id"] in [m["id"] for m in history(csp_env) if m["from"] == "human"]
    async with http_client(csp_env, url=tcp_gateway) as client:
        foreign = await _post(client, INIT, base=tcp_gateway, Origin="http://evil.example")
        assert foreign.status_code == 403
        own = await _post(client, INIT, base=tcp_gateway, Origin=tcp_gateway)
        assert own.status_code == 200
    async with http_client(csp_env, url=tcp_gateway, bearer=None) as anonymous:
        assert (await _post(anonymous, INIT, base=tcp_gateway)).status_code == 401


# -- stdio: cspctl mcp ------------------------------------------------------------------


@asynccontextmanager
async def stdio_session(env: CspEnv, **extra: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "csp_cli", "mcp"],
                                   env={**env.env, **extra})
    async with stdio_client(params) as (r, w), ClientSession(r, w) as session:
        yield session


async def test_stdio_negotiates_and_works_like_http(csp_env: CspEnv,
                                                    gateway: GatewayProcess) -> None:
    async with stdio_session(csp_env) as session:
        old = await initialize_as(session, OLD)
        assert old.protocol_version == OLD
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
        sent = data(await session.call_tool("send_message", {"text": "hello over stdio"}))
        data(await session.call_tool("read_messages", {}))
        assert csp_env.cspctl("send", "--as", "bob", "@all", "for stdio").returncode == 0
        got = data(await session.call_tool("read_messages", {}))
    async with stdio_session(csp_env) as session:
        newer = await initialize_as(session, FUTURE)
        assert newer.protocol_version == NEWEST_HANDSHAKE
    assert [m["content"] for m in got["messages"]] == ["for stdio"]
    assert any(m["id"] == sent["id"] and m["from"] == "human" for m in history(csp_env))


def _rpc(i: int, method: str, params: dict[str, object] | None = None) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params or {}})


def _bridge(env: CspEnv, lines: list[str], **extra: str) -> dict[Any, Any]:
    r = subprocess.run([sys.executable, "-m", "csp_cli", "mcp"], input="\n".join(lines) + "\n",
                       env={**env.env, **extra}, text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    return {a.get("id"): a for a in answers}


INIT_LINE = _rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                   "clientInfo": {"name": "test", "version": "0"}})


def test_stdio_bridge_answers_a_line_that_is_not_json(csp_env: CspEnv,
                                                      gateway: GatewayProcess) -> None:
    by_id = _bridge(csp_env, [INIT_LINE, "this is not json", _rpc(2, "tools/list")])
    assert by_id[1]["result"]["protocolVersion"] == "2025-06-18"
    assert by_id[None]["error"]["code"] == -32700
    assert {t["name"] for t in by_id[2]["result"]["tools"]} == TOOLS


def test_bridge_reports_a_gateway_that_is_down(csp_env: CspEnv) -> None:
    by_id = _bridge(csp_env, [INIT_LINE, _rpc(2, "tools/list")])
    assert "not running" in by_id[1]["error"]["message"]
    assert "not running" in by_id[2]["error"]["message"]  # still answering


def test_bridge_survives_a_gateway_that_does_not_answer(csp_env: CspEnv) -> None:
    """A socket that accepts and never answers: each request gets a clear error."""
    import socket
    csp_env.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    csp_env.token_file.write_text("x" * 43)
    csp_env.token_file.chmod(0o600)
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(csp_env.socket))
        mute.listen(8)
        env = {**csp_env.env, "CSP_MCP_TIMEOUT": "1"}
        r = subprocess.run([sys.executable, "-m", "csp_cli", "mcp"],
                           input=INIT_LINE + "\n" + _rpc(2, "ping") + "\n", env=env,
                           text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    answers = {a["id"]: a for a in map(json.loads, r.stdout.splitlines())}
    assert "did not answer within 1s" in answers[1]["error"]["message"]
    assert "did not answer" in answers[2]["error"]["message"]


def test_bridge_reads_a_rotated_token_and_outlives_a_gateway_restart(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    """One ``cspctl mcp`` across ``cspctl token --rotate`` and a gateway restart."""
    proc = subprocess.Popen([sys.executable, "-m", "csp_cli", "mcp"], env=csp_env.env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None

    def ask(line: str) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answer: dict[str, Any] = json.loads(proc.stdout.readline())
        return answer

    try:
        assert ask(INIT_LINE)["result"]["serverInfo"]["name"] == "csp"
        assert csp_env.cspctl("token", "--rotate").returncode == 0
        assert "tools" in ask(_rpc(2, "tools/list"))["result"]
        gateway.stop()
        gateway.start()  # its sessions are gone: the bridge initializes again
        sent = ask(_rpc(3, "tools/call", {"name": "send_message",
                                          "arguments": {"text": "after restart"}}))
        assert sent["result"]["isError"] is False, sent
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert any(m["content"] == "after restart" for m in history(csp_env))


# -- identity: an agent under a sidecar --------------------------------------------------

AGENT_SCRIPT = r'''
import asyncio, json, os, sys
import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

out, marker = sys.argv[1], sys.argv[2]
run = os.path.join(os.environ["XDG_RUNTIME_DIR"], "csp")
results = {}


async def exercise(session, label):
    await session.initialize()
    sent = await session.call_tool("send_message", {"text": f"hello from {label}",
                                                    "to": ["@human"]})
    await session.call_tool("read_messages", {})
    open(marker + "." + label, "w").close()  # the test sends once we wait
    got = await session.call_tool("read_messages", {"wait_seconds": 60})
    forged = await session.call_tool("send_message", {"text": "forged", "from": "human"})
    agents = await session.call_tool("list_agents", {})
    results[label] = {"sent": sent.structured_content, "got": got.structured_content,
                      "forged_is_error": forged.is_error,
                      "agents": agents.structured_content}


async def main():
    # no X-CSP-Agent, the owner's token: the process tree alone says who this is
    token = open(os.path.join(run, "token")).read().strip()
    client = httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(
        uds=os.path.join(run, "gateway.sock")),
        headers={"Authorization": "Bearer " + token}, timeout=90)
    async with client, streamable_http_client("http://localhost/mcp",
                                              http_client=client) as (r, w), \
            ClientSession(r, w) as session:
        await exercise(session, "http")
    params = StdioServerParameters(command=sys.executable, args=["-m", "csp_cli", "mcp"],
                                   env=dict(os.environ))
    async with stdio_client(params) as (r, w), ClientSession(r, w) as session:
        await exercise(session, "stdio")
    with open(out, "w") as f:
        json.dump(results, f)

asyncio.run(main())
'''


def test_an_agent_under_a_sidecar_is_itself_on_both_transports(
        csp_env: CspEnv, gateway: GatewayProcess) -> None:
    script, out = csp_env.root / "agent.py", csp_env.root / "agent.json"
    marker = csp_env.root / "waiting"
    script.write_text(AGENT_SCRIPT)
    log = open(csp_env.root / "sidecar.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*SIDECAR, "--name", "helper", "--", sys.executable, str(script),
                             str(out), str(marker)], env=csp_env.env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for label in ("http", "stdio"):
            wait_for(Path(f"{marker}.{label}").exists, timeout=60, what=f"{label} ready")
            wait_for(lambda: watchers(csp_env) == 1, what=f"{label} read_messages to wait")
            r = csp_env.cspctl("send", "@helper", f"ping over {label}")
            assert r.returncode == 0, r.stderr
        wait_for(out.exists, timeout=60, what="the agent's results")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=10)
        log.close()
    results = json.loads(out.read_text())
    shown = {m["id"]: m for m in history(csp_env)}
    for label in ("http", "stdio"):
        got = results[label]
        assert shown[got["sent"]["id"]]["from"] == "helper"
        assert shown[got["sent"]["id"]]["to"] == ["human"]
        contents = [(m["from"], m["content"]) for m in got["got"]["messages"]]
        assert contents == [("human", f"ping over {label}")]
        assert got["forged_is_error"]  # no tool takes a name to speak as
        me = [a for a in got["agents"]["agents"] if a["you"]]
        assert [a["name"] for a in me] == ["helper"] and me[0]["state"] != "offline"
    assert "forged" not in [m["content"] for m in shown.values()]



# -- cspctl mcp install: each CLI's own command, in a HOME of the test's own ------------


def _registered(home: Path, name: str) -> Any:
    if name == "claude":
        state = home / ".claude.json"
        return json.loads(state.read_text()).get("mcpServers", {}).get("csp") \
            if state.exists() else None
    if name == "codex":
        import tomllib
        config = home / ".codex" / "config.toml"
        return tomllib.loads(config.read_text()).get("mcp_servers", {}).get("csp") \
            if config.exists() else None
    settings = home / ".gemini" / "settings.json"
    return json.loads(settings.read_text()).get("mcpServers", {}).get("csp") \
        if settings.exists() else None


@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
def test_install_and_remove_with_the_real_cli(csp_env: CspEnv, name: str) -> None:
    import shutil
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    home = csp_env.root / "home"
    home.mkdir()
    extra = {"HOME": str(home), "CODEX_HOME": str(home / ".codex")}
    (home / ".codex").mkdir()
    shown = csp_env.cspctl("mcp", "install", "--for", name, "--print", extra_env=extra)
    assert shown.returncode == 0 and f"{name} mcp add" in shown.stdout, shown.stderr
    assert _registered(home, name) is None  # --print changed nothing
    for _ in range(2):  # a second install replaces the first
        r = csp_env.cspctl("mcp", "install", "--for", name, extra_env=extra, timeout=120)
        assert r.returncode == 0, r.stderr
    server = _registered(home, name)
    assert server is not None and server["args"][-1] == "mcp", server
    assert "csp_cli" in server["args"] or server["command"].endswith("cspctl")
    r = csp_env.cspctl("mcp", "install", "--for", name, "--remove", extra_env=extra,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert _registered(home, name) is None
