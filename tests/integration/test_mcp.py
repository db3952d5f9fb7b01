"""`cspctl mcp` bridges a stdio MCP client to the gateway, speaking as the agent."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import CspEnv, GatewayProcess


def _rpc(i: int, method: str, params: dict[str, object] | None = None) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params or {}})


def test_stdio_bridge_posts_as_the_agent(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    lines = [
        _rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "test", "version": "0"}}),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        _rpc(2, "tools/list"),
        _rpc(3, "tools/call", {"name": "post_message",
                               "arguments": {"content": "hello from mcp", "to": ["@all"]}}),
        "this is not json",
        _rpc(4, "tools/call", {"name": "read_messages", "arguments": {"limit": 5}}),
    ]
    r = subprocess.run([sys.executable, "-m", "csp_cli", "mcp"], input="\n".join(lines) + "\n",
                       env={**csp_env.env, "CSP_AGENT": "helper"}, text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    by_id = {a.get("id"): a for a in answers}
    assert by_id[1]["result"]["serverInfo"]["name"] == "csp"
    tools = {t["name"] for t in by_id[2]["result"]["tools"]}
    assert {"post_message", "read_messages", "list_agents"} <= tools
    assert by_id[3]["result"]["isError"] is False
    assert by_id[None]["error"]["code"] == -32700  # the line that was not JSON
    history = json.loads(csp_env.cspctl("history", "--json").stdout)
    posted = [m for m in history if m["content"] == "hello from mcp"]
    assert posted and posted[0]["from"] == "helper"
    assert "hello from mcp" in by_id[4]["result"]["content"][0]["text"]


def test_bridge_reports_a_gateway_that_is_down(csp_env: CspEnv) -> None:
    r = subprocess.run([sys.executable, "-m", "csp_cli", "mcp"],
                       input=_rpc(1, "tools/list") + "\n", env=csp_env.env, text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0
    answer = json.loads(r.stdout)
    assert answer["id"] == 1 and "not running" in answer["error"]["message"]
