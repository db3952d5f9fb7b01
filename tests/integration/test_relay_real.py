"""Real Claude Code and real Codex relaying through a room: model calls stop at the hop limit.

Each answers through its local API stand-in with a long markdown reply that
quotes the prompt it got, csp's sender tag (and so `@names`) included.  With the
room relaying agents' output, every reply reaches the other agent, which answers
it: the loop guard must stop that after the room's hop limit, so each stand-in
gets the human's question plus at most the relayed replies the limit allows.
Skips when either CLI is not installed.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CspEnv, GatewayProcess
from tests.integration.test_claude_code import FakeAnthropic, claude_pane
from tests.integration.test_codex import FakeOpenAI
from tests.polling import wait_for
from tests.standins import sidecar_executable
from tests.tmuxtest import TmuxServer
from tests.tools.codex_setup import codex_home

HOP_LIMIT = 2


@pytest.fixture
def apis(csp_env: CspEnv) -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    for cli in ("claude", "codex"):
        if shutil.which(cli) is None:
            pytest.skip(f"{cli} is not installed")
    claude_api, codex_api = FakeAnthropic(csp_env.root), FakeOpenAI(csp_env.root)
    yield claude_api, codex_api
    claude_api.stop()
    codex_api.stop()


def agents(env: CspEnv) -> dict[str, dict[str, Any]]:
    r = env.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    return {a["name"]: a for a in json.loads(r.stdout)}


def history(env: CspEnv) -> list[dict[str, Any]]:
    r = env.cspctl("history", "--json", "--limit", "500")
    assert r.returncode == 0, r.stderr
    result: list[dict[str, Any]] = json.loads(r.stdout)
    return result


def test_relay_between_real_clis_stops_at_the_hop_limit(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer,
        apis: tuple[FakeAnthropic, FakeOpenAI]) -> None:
    claude_api, codex_api = apis
    claude_pane(csp_env, tmux, claude_api)
    project = csp_env.root / "codex-project"
    project.mkdir()
    env = codex_home(csp_env.root / "codex", codex_api.url, project)
    command = [*sidecar_executable(), "--name", "codex", "--",
               "env", *(f"{k}={v}" for k, v in env.items()), "codex"]
    tmux.new_pane(f"cd {shlex.quote(str(project))} && {shlex.join(command)}", width=100)
    wait_for(lambda: all(agents(csp_env).get(n, {}).get("state") == "ready"
                         for n in ("claude", "codex")), timeout=60, what="both agents ready")
    r = csp_env.cspctl("rooms", "relay", "main", "on", "--hop-limit", str(HOP_LIMIT))
    assert r.returncode == 0, r.stderr
    assert csp_env.cspctl("send", "@all", "compare your notes").returncode == 0

    wait_for(lambda: any("relay paused" in str(m["content"]) for m in history(csp_env)
                         if m["kind"] == "system"), timeout=90, what="the loop guard")

    def settled() -> bool:
        rows = agents(csp_env)
        return all(rows[n]["state"] == "ready" and rows[n]["queue"] == 0
                   and rows[n]["pending"] == 0 for n in ("claude", "codex"))

    wait_for(settled, timeout=60, what="both agents idle, nothing waiting")
    calls = len(claude_api.conversation()) + len(codex_api.requests("main"))
    # one call each for the human's question, then at most HOP_LIMIT relayed replies
    # (fewer calls when a relay and another prompt went in together)
    assert 3 <= calls <= 2 + HOP_LIMIT, (claude_api.conversation(), codex_api.requests("main"))
    replies = [m for m in history(csp_env) if m["kind"] == "output"
               and m["from"] in ("claude", "codex")]
    assert len(replies) == calls  # each model call's reply posted once, nothing else
