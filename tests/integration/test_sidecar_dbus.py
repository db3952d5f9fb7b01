"""The real csp-sidecar on a private session bus, with a real gateway watching it.

The sidecar's name appears with it and vanishes on SIGKILL (the gateway posts
joined/left); its properties read back through busctl; ``cspctl pause`` over
D-Bus holds a group message until ``cspctl resume``; a second sidecar with the
same name is refused before it starts its child.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CspEnv, GatewayProcess
from tests.dbus_bus import PrivateBus
from tests.integration.test_sidecar import SIDECAR, fake_cli, received, sidecar_cmd
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

pytestmark = pytest.mark.integration

DEST = "io.csp.Agent.fa_1"


@pytest.fixture
def bus_env(csp_env: CspEnv, bus: PrivateBus, tmp_path: Path) -> CspEnv:
    csp_env.env["DBUS_SESSION_BUS_ADDRESS"] = bus.address
    csp_env.env["FAKECLI_LOG"] = str(tmp_path / "fake_cli.log")
    csp_env.env["FAKECLI_THINK"] = "0.2"
    return csp_env


@pytest.fixture
def bus_gateway(bus_env: CspEnv) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(bus_env)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def prop(bus: PrivateBus, name: str) -> str:
    r = bus.busctl("get-property", DEST, "/io/csp/Agent", "io.csp.Agent1", name)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def owned(bus: PrivateBus) -> bool:
    return DEST in bus.busctl("list", "--acquired", "--no-pager").stdout


def system_lines(env: CspEnv) -> list[str]:
    r = env.cspctl("history", "--json")
    assert r.returncode == 0, r.stderr
    return [m["content"] for m in json.loads(r.stdout) if m["kind"] == "system"]


def test_sidecar_on_the_bus_from_start_to_sigkill(
        bus_env: CspEnv, bus: PrivateBus, bus_gateway: GatewayProcess,
        tmux: TmuxServer) -> None:
    pane = tmux.new_pane(sidecar_cmd("fa-1", *fake_cli(), profile="claude"))
    pane.wait_text("fake agent ready")
    wait_for(lambda: owned(bus), what=f"{DEST} on the bus")
    wait_for(lambda: prop(bus, "State") == 's "ready"', what="State ready")
    assert prop(bus, "Name") == 's "fa-1"'
    assert prop(bus, "Profile") == 's "claude"'
    assert prop(bus, "Command").startswith("as 2 ")
    assert prop(bus, "Pid") == f"u {_child_pid(pane.pid)}"
    wait_for(lambda: any(line.startswith("fa-1 joined") for line in system_lines(bus_env)),
             what="the join message")

    # pause over D-Bus holds a group message until resume
    r = bus_env.cspctl("pause", "fa-1")
    assert r.returncode == 0 and DEST in r.stderr, r.stderr
    assert prop(bus, "State") == 's "paused"'
    log = Path(bus_env.env["FAKECLI_LOG"])
    before = len(received(log))
    assert bus_env.cspctl("send", "@fa-1", "held one").returncode == 0
    wait_for(lambda: prop(bus, "QueueLength") == "u 1", what="first message queued")
    assert bus_env.cspctl("send", "@fa-1", "held two").returncode == 0
    wait_for(lambda: prop(bus, "QueueLength") == "u 2", what="second message queued")
    assert not any("held" in r for r in received(log)[before:])
    assert bus_env.cspctl("resume", "fa-1").returncode == 0
    wait_for(lambda: any("held one" in r for r in received(log)), what="delivery on resume")

    # a twin is refused the name before it starts its child (no gateway in the way)
    twin = tmux.new_pane(shlex.join([*SIDECAR, "--name", "fa-1", "--profile", "claude",
                                     "--gateway", str(bus_env.root / "no-gateway.sock"),
                                     "--", *fake_cli()]))
    assert twin.dead_status() == 6  # Conflict: the bus name is taken
    screen = twin.screen()
    assert f"{DEST} is already owned" in screen and "fake agent ready" not in screen
    assert prop(bus, "State") != 's "exited"'  # the first one carries on

    os.kill(pane.pid, signal.SIGKILL)
    wait_for(lambda: not owned(bus), what=f"{DEST} to vanish")
    wait_for(lambda: "fa-1 left" in system_lines(bus_env), what="the leave message")


def _child_pid(sidecar_pid: int) -> int:
    children = Path(f"/proc/{sidecar_pid}/task/{sidecar_pid}/children").read_text().split()
    return int(children[0])


def test_another_agent_may_not_call_an_agents_methods(
        bus_env: CspEnv, bus: PrivateBus, bus_gateway: GatewayProcess,
        tmux: TmuxServer) -> None:
    """Every process of the user reaches the session bus; an agent's own processes
    must still not pause, interrupt or type into another agent (AccessDenied), while
    the person's cspctl and the agent itself may."""
    pane = tmux.new_pane(sidecar_cmd("fa-1", *fake_cli(), profile="claude"))
    pane.wait_text("fake agent ready")
    wait_for(lambda: prop(bus, "State") == 's "ready"', what="fa-1 ready")
    out = bus_env.root / "mallory.txt"
    call = f"busctl --address={shlex.quote(bus.address)} call"
    script = (f"{call} {DEST} /io/csp/Agent io.csp.Agent1 Inject s 'rm -rf ~' > {out} 2>&1;"
              f" echo inject=$? >> {out};"
              f" env -u CSP_AGENT {call} {DEST} /io/csp/Agent io.csp.Agent1 Pause >> {out} 2>&1;"
              f" echo pause=$? >> {out};"
              f" {call} io.csp.Agent.mallory /io/csp/Agent io.csp.Agent1 Pause >> {out} 2>&1;"
              f" echo self=$? >> {out}; sleep 60")
    tmux.new_pane(sidecar_cmd("mallory", "sh", "-c", script, profile="generic"))
    text = wait_for(lambda: out.exists() and "self=" in out.read_text() and out.read_text(),
                    what="mallory's calls")
    assert "inject=1" in text and "pause=1" in text, text
    assert text.count("Access denied") == 2, text  # busctl's words for AccessDenied
    sidecar_log = (bus_env.state / "sidecar-fa-1.log").read_text()
    assert "refused D-Bus Inject from agent 'mallory'" in sidecar_log
    assert "refused D-Bus Pause from agent 'mallory'" in sidecar_log
    assert "self=0" in text, text  # an agent may pause itself
    assert prop(bus, "State") == 's "ready"'
    assert prop(bus, "QueueLength") == "u 0"
    log = Path(bus_env.env["FAKECLI_LOG"])
    assert not any("rm -rf" in r for r in received(log))
    # the person may
    assert bus_env.cspctl("pause", "fa-1").returncode == 0
    assert prop(bus, "State") == 's "paused"'
