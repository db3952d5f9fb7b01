"""Codex and Gemini CLI under a sidecar get csp's MCP server, with no ``mcp add``.

Each real CLI talks to its API stand-in; the tools in its conversation request
show that it started ``cspctl mcp`` (from the sidecar's per-run wiring: Codex's
``-c mcp_servers.csp...``, Gemini's system-defaults file) and listed its tools.
The CLI's own files say nothing about csp.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csp_sidecar.mcp_wiring import insecure_ancestor
from tests.conftest import CspEnv, GatewayProcess, require
from tests.integration import test_codex, test_gemini
from tests.integration.test_codex import codex  # noqa: F401 (a fixture)
from tests.integration.test_gemini import gemini, room  # noqa: F401 (fixtures)
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer
from tests.tools.fake_openai import last_user_text

CSP_TOOLS = ("send_message", "read_messages", "list_agents", "get_history")


def tool_names(body: dict[str, Any]) -> set[str]:
    """Tool names in an OpenAI Responses request or a Gemini generateContent request."""
    names: set[str] = set()
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if "name" in tool or "type" in tool:  # Codex's tool_search has a type only
            names.add(str(tool.get("name") or tool["type"]))
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            names.add(str(decl.get("name")))
        if isinstance(tool.get("function"), dict):
            names.add(str(tool["function"].get("name")))
    return names


def csp_tools(names: set[str]) -> set[str]:
    return {tool for tool in CSP_TOOLS if any("csp" in n and n.endswith(tool) for n in names)}


def mcp_servers_under(root: int) -> list[int]:
    """Processes running ``csp_cli mcp`` whose ancestry includes ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"csp_cli" not in argv or b"mcp" not in argv:
            continue
        pid = int(entry.name)
        while pid > 1:
            if pid == root:
                found.append(int(entry.name))
                break
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                break
            pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def test_codex_is_offered_csp_tools(codex: str, csp_env: CspEnv,  # noqa: F811
                                    gateway: GatewayProcess, tmux: TmuxServer) -> None:
    api = test_codex.FakeOpenAI(csp_env.root)
    try:
        run = test_codex.Run(csp_env, tmux, api, 100)
        run.wait_ready("Codex to be ready", timeout=60)
        assert csp_env.cspctl("send", "@codex", "question 1").returncode == 0
        mains = wait_for(lambda: api.requests("main"), timeout=40, what="Codex's request")
        assert last_user_text(mains[0]["body"]).endswith("question 1")
        # Codex 0.171 defers MCP tools behind its tool_search tool (their names are not in
        # the request): what shows it has csp's server is `cspctl mcp` running under it
        names = tool_names(mains[0]["body"])
        assert "tool_search" in names or csp_tools(names) == set(CSP_TOOLS), sorted(names)
        pid = int(run.agent()["pid"])
        servers = wait_for(lambda: mcp_servers_under(pid), what="cspctl mcp under Codex")
        assert servers
        config = csp_env.root / "codex"
        assert not any("csp_cli" in p.read_text() for p in config.rglob("*.toml"))
    finally:
        api.stop()


@pytest.fixture
def secure_runtime(csp_env: CspEnv) -> Iterator[Path]:
    """A runtime dir outside /tmp: Gemini CLI ignores a system-defaults file in a
    directory others may write to (csp then goes without, see mcp_wiring), and the
    sidecar writes that file into its runtime dir.  Set before the gateway starts."""
    base = Path.home() / ".cache"
    base.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="csp-mcp-", dir=base))
    require(insecure_ancestor(run) is None, f"no directory safe for Gemini CLI ({run})")
    csp_env.env["XDG_RUNTIME_DIR"] = str(run)
    try:
        yield run
    finally:
        shutil.rmtree(run, ignore_errors=True)


def test_gemini_is_offered_csp_tools(gemini: str, csp_env: CspEnv,  # noqa: F811
                                     secure_runtime: Path, gateway: GatewayProcess,
                                     room: Any, tmux: TmuxServer) -> None:  # noqa: F811
    api = test_gemini.FakeGemini(csp_env.root)
    try:
        test_gemini.start_gemini(csp_env, tmux, api, 100)
        assert csp_env.cspctl("send", "@gemini", "question 1").returncode == 0
        mains = wait_for(lambda: [r for r in api.requests() if r["kind"] == "main"],
                         timeout=40, what="Gemini's request")
        names = tool_names(mains[0]["body"])
        assert csp_tools(names) == set(CSP_TOOLS), sorted(names)
        for settings in (csp_env.root).rglob("settings.json"):
            assert "csp_cli" not in json.dumps(json.loads(settings.read_text()))
    finally:
        api.stop()
