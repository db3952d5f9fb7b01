"""Agents relaying to each other stop at the room's hop limit: model calls are bounded.

Two fake agent CLIs (Claude Code's hooks, so each reply is posted exactly once)
share a room that relays agents' output; every reply reaches the other agent,
which answers it, and so on.  The loop guard must stop that after the room's
hop limit, and relays already queued in a sidecar must not be typed in after it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CspEnv, GatewayProcess
from tests.integration.test_sidecar import agent_state, fake_cli, history, prompts, sidecar_cmd
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

HOP_LIMIT = 3


def test_relay_between_agents_stops_at_the_hop_limit(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    logs: dict[str, Path] = {}
    for name in ("ann", "bob"):
        logs[name] = csp_env.root / f"{name}.log"
        csp_env.env["FAKECLI_LOG"] = str(logs[name])
        csp_env.env["FAKECLI_THINK"] = "0.3"
        pane = tmux.new_pane(sidecar_cmd(name, *fake_cli(), profile="claude"))
        pane.wait_text("fake agent ready")
        wait_for(lambda n=name: agent_state(csp_env, n).get("state") == "ready",
                 what=f"{name} ready")
    r = csp_env.cspctl("rooms", "relay", "main", "on", "--hop-limit", str(HOP_LIMIT))
    assert r.returncode == 0, r.stderr
    assert csp_env.cspctl("send", "@all", "start the discussion").returncode == 0

    halted = wait_for(lambda: [m for m in history(csp_env) if m["kind"] == "system"
                               and "relay paused" in str(m["content"])],
                      timeout=30, what="the loop guard to stop the relay")
    assert halted

    def settled() -> bool:
        return all(agent_state(csp_env, n).get("state") == "ready"
                   and agent_state(csp_env, n).get("queue") == 0
                   and agent_state(csp_env, n).get("pending") == 0 for n in logs)

    wait_for(settled, timeout=30, what="both agents idle with nothing waiting")
    taken = {n: prompts(log) for n, log in logs.items()}
    # the human's message once each, then at most HOP_LIMIT relayed agent messages in all
    # (fewer prompts when queued ones went in together)
    relayed = sum(len(p) for p in taken.values()) - len(logs)
    assert all(any("start the discussion" in p for p in ps) for ps in taken.values()), taken
    assert 1 <= relayed <= HOP_LIMIT, json.dumps(taken, indent=1)
