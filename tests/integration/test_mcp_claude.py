"""The real Claude Code under a sidecar has csp's MCP tools, with no ``mcp add``.

Claude Code 2.x talks to the Anthropic API stand-in (``tests.tools.fake_anthropic``):
the tools offered to "the model" in its requests show what Claude Code loaded,
and a prompt line ``MCP: send_message {...}`` makes the stand-in call that tool.
The user's own files say nothing about csp; the sidecar passes the server for
this run (``--mcp-config``) and pre-approves its tools in the run's settings, so
the call runs without a permission menu and lands in the room as from ``claude``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import CspEnv, GatewayProcess
from tests.integration.test_claude_code import (  # noqa: F401 (claude, fake_api: fixtures)
    FakeAnthropic,
    claude,
    fake_api,
    post,
    posts,
    start_claude,
    wait_calls,
)
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

CSP_TOOLS = {"send_message", "read_messages", "list_agents", "get_history"}


def offered(request: dict[str, Any]) -> set[str]:
    return {str(t.get("name")) for t in request["body"].get("tools") or []}


def test_claude_code_is_offered_csp_tools_and_its_call_lands_in_history(
        claude: str, csp_env: CspEnv, gateway: GatewayProcess,  # noqa: F811
        tmux: TmuxServer, fake_api: FakeAnthropic) -> None:  # noqa: F811
    home = csp_env.root / "home"
    pane = start_claude(csp_env, tmux, fake_api)
    # nothing of the user's mentions csp: no `claude mcp add`, no settings of ours
    for path in (home / ".claude.json", home / ".claude" / "settings.json"):
        assert "csp" not in json.loads(path.read_text()).get("mcpServers", {})
        assert "mcp__csp" not in path.read_text()

    text = "hello from claude over mcp"
    args = json.dumps({"text": text, "to": ["@human"]})
    post(csp_env, f"MCP: send_message {args}")

    def landed() -> list[dict[str, Any]]:
        return [m for m in posts(csp_env) if m["content"] == text]
    try:
        (message,) = wait_for(landed, timeout=60, what="claude's send_message in the room")
    except AssertionError:
        raise AssertionError(f"requests: {[sorted(offered(r)) for r in fake_api.conversation()]}"
                             f"\nscreen:\n{pane.screen()}") from None
    assert message["from"] == "claude" and message["to"] == ["human"]

    calls = wait_calls(fake_api, 2)  # the tool call, then its result answered
    assert {f"mcp__csp__{name}" for name in CSP_TOOLS} <= offered(calls[0])
    results = [b for m in calls[1]["body"]["messages"] if m["role"] == "user"
               and isinstance(m["content"], list) for b in m["content"]
               if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert results and not results[-1].get("is_error"), results
    content = results[-1]["content"]
    text = content if isinstance(content, str) else "".join(
        str(b.get("text", "")) for b in content if isinstance(b, dict))
    assert json.loads(text)["id"] == message["id"]  # the tool's answer reached the model
