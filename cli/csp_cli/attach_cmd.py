"""``cspctl attach``, ``cspctl spawn`` and ``cspctl kill``: the tmux side of csp."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
import time

import click

from csp_core.client import GatewayClient
from csp_core.errors import CspError, GatewayUnavailable
from csp_core.protocol import check_name

from . import agentsconf, presets, systemd
from .agentsconf import AgentSpec
from .runner import edge
from .tmux import inside_tmux_socket
from .workspace import Workspace, workspace_for

DETACHED_SIZE = (160, 48)
# tmux refuses a window smaller than 1x1 or larger than 10000x10000; below 20x10 the
# chat and an agent do not both fit
MIN_SIZE, MAX_SIZE = (20, 10), (10000, 10000)

socket_option = click.option("-L", "--tmux-socket", "socket", metavar="NAME",
                             help="Use the tmux server on this socket name (tmux -L).")
session_option = click.option("--session", "-s", metavar="NAME",
                              help="tmux session name (default: [layout] session, or 'csp').")


# -- the gateway ------------------------------------------------------------------

async def _answers() -> bool:
    try:
        async with GatewayClient(timeout=3.0) as client:
            await client.health()
        return True
    except CspError:
        return False


def ensure_gateway(timeout: float = 10.0) -> str:
    """Start the gateway through systemd when there is a user manager; make sure it answers.

    Returns how it was found ("systemd" or "running").
    """
    how, why = "running", ""
    try:
        systemd.systemctl("start", systemd.SOCKET)
        how = "systemd"
    except systemd.NoUserManager as exc:
        why = exc.message.splitlines()[0]
    except CspError as exc:  # e.g. the units are not installed
        why = exc.message
    deadline = time.monotonic() + (timeout if how == "systemd" else 0.3)
    while not asyncio.run(_answers()):
        if time.monotonic() > deadline:
            hint = ("start it with `cspctl gateway start`" if how == "systemd" else
                    "run `cspd` in another terminal, or install the units with `make install` "
                    "and run `systemctl --user start csp-gateway.socket`")
            raise GatewayUnavailable(f"the gateway does not answer; {hint}"
                                     + (f"\n({why})" if why else ""))
        time.sleep(0.1)
    return how


# -- first run --------------------------------------------------------------------

def first_run(interactive: bool) -> list[AgentSpec]:
    """No agents configured: offer the agent CLIs found on PATH."""
    found = presets.installed()
    if not found:
        click.echo(
            "No agents are configured and no agent CLI was found on PATH "
            f"({', '.join(presets.PRESETS)}).\n"
            "Install one, e.g.:\n"
            + "".join(f"  {p.install_hint:<46}# {p.title}\n" for p in presets.PRESETS.values())
            + "then run `cspctl agents add NAME`; any other CLI works too:\n"
            "  cspctl agents add NAME -- COMMAND [ARGS...]\n"
            "Starting with the chat only; add an agent later with `cspctl spawn NAME`.",
            err=True)
        return []
    names = ", ".join(p.name for p in found)
    if not interactive:
        click.echo(f"No agents are configured. Found on PATH: {names}. Add them with:", err=True)
        for p in found:
            click.echo(f"  cspctl agents add {p.name}", err=True)
        click.echo("then `cspctl spawn NAME` (or re-create the session). Starting with the "
                   "chat only.", err=True)
        return []
    if not click.confirm(f"No agents are configured. Add {names} (found on PATH)?",
                         default=True, err=True):
        click.echo("Starting with the chat only; add an agent with "
                   "`cspctl agents add NAME [-- COMMAND]`, then `cspctl spawn NAME`.", err=True)
        return []
    specs = []
    for p in found:
        spec = AgentSpec(name=p.name, command=list(p.command), profile=p.profile)
        agentsconf.add_agent(spec)
        specs.append(spec)
        click.echo(f"added {p.name}: {' '.join(p.command)}  "
                   f"(to skip its permission prompts: cspctl agents add {p.name} --replace "
                   "--skip-permissions)", err=True)
    return specs


def parse_size(ctx: click.Context | None, param: click.Parameter | None,
               value: str | None) -> tuple[int, int] | None:
    """``COLSxROWS`` (``160x48``): the size of the layout when there is no terminal."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", value)
    if m is None:
        raise click.BadParameter(f"{value!r} is not COLSxROWS (e.g. 160x48)", ctx, param)
    cols, rows = int(m.group(1)), int(m.group(2))
    if not (MIN_SIZE[0] <= cols <= MAX_SIZE[0] and MIN_SIZE[1] <= rows <= MAX_SIZE[1]):
        raise click.BadParameter(
            f"{cols}x{rows} is out of range: columns {MIN_SIZE[0]} to {MAX_SIZE[0]}, "
            f"rows {MIN_SIZE[1]} to {MAX_SIZE[1]}", ctx, param)
    return cols, rows


def layout_size(size: tuple[int, int] | None) -> tuple[int, int]:
    """The size the layout is made for: --size, else this terminal's, else 160x48."""
    if size is not None:
        return size
    if sys.stdout.isatty():
        term = shutil.get_terminal_size()
        return term.columns, term.lines
    return DETACHED_SIZE


# -- attaching --------------------------------------------------------------------

def _attach_client(ws: Workspace) -> None:
    """Attach this terminal; inside tmux on the same server, switch instead of nesting."""
    tmux = ws.tmux
    inside = inside_tmux_socket()
    if inside:
        server = tmux.display(ws.window, "#{socket_path}")
        if os.path.realpath(inside) == os.path.realpath(server):
            tmux.run("switch-client", "-t", f"={ws.session}")
            return
        click.echo("cspctl: nesting tmux (this terminal is inside another tmux server)",
                   err=True)
    argv = tmux.argv("attach-session", "-t", f"={ws.session}")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # tmux would only say "open terminal failed: not a terminal"
        attach_cmd = shlex.join(["tmux", *argv[1:-1], ws.session])
        raise CspError(f"cannot attach: this is not a terminal; session {ws.session!r} "
                       f"is running: attach from a terminal with `{attach_cmd}`")
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


@click.command("attach")
@session_option
@socket_option
@click.option("--detached", "-d", is_flag=True, help="Create the session but do not attach.")
@click.option("--size", metavar="COLSxROWS", callback=parse_size,
              help="Make the layout for COLSxROWS cells (default: this terminal's size, "
                   "or 160x48 without one); a terminal that attaches resizes it.")
@edge
def attach(session: str | None, socket: str | None, detached: bool,
           size: tuple[int, int] | None) -> None:
    """Open the group chat in tmux: the chat on top, one pane per agent below.

    \b
      cspctl agents add claude && cspctl agents add codex
      cspctl attach                  # create the session, or attach to it again
      cspctl attach --detached       # create it for later (scripts, ssh)
      cspctl attach -d --size 200x60 # ... laid out for a 200x60 terminal

    Creates the session the first time (starting the gateway through systemd
    if needed); afterwards it attaches to the same session again.
    """
    config = agentsconf.load()
    ws = workspace_for(config, socket, session)
    if ws.exists():
        if ws.repair_chat():
            click.echo("restarted the chat pane", err=True)
        for name in ws.missing(config.agents):
            click.echo(f"{name} is configured but has no pane: start it with "
                       f"`{ws.restart_hint(name)}`", err=True)
        if detached:
            click.echo(f"session {ws.session!r} is already running", err=True)
            return
        _attach_client(ws)
        return
    ensure_gateway()
    agents = config.agents
    if not agents:
        interactive = not detached and sys.stdin.isatty() and sys.stdout.isatty()
        agents = first_run(interactive)
    width, height = layout_size(size)
    ws.create(agents, width, height)
    names = ", ".join(a.name for a in agents) or "no agents"
    click.echo(f"session {ws.session!r} created: chat + {names}", err=True)
    if not detached:
        _attach_client(ws)


@click.command("spawn")
@click.argument("name")
@session_option
@socket_option
@edge
def spawn(name: str, session: str | None, socket: str | None) -> None:
    """Start agent NAME (from config.toml) in the running session.

    Adds a pane for it, or restarts it in its pane if it has exited.
    """
    check_name(name)
    config = agentsconf.load()
    spec = config.get(name)
    ws = workspace_for(config, socket, session)
    pane = ws.spawn(spec)
    click.echo(f"{name} started in pane {pane} of session {ws.session!r}", err=True)


@click.command("kill")
@session_option
@socket_option
@click.option("--timeout", default=10.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0),
              help="How long the agents get to exit before they are terminated.")
@edge
def kill(session: str | None, socket: str | None, timeout: float) -> None:
    """End the csp session: each agent gets the chance to exit, then the panes close."""
    config = agentsconf.load()
    ws = workspace_for(config, socket, session)
    if not ws.exists():
        click.echo(f"no session {ws.session!r} is running", err=True)
        return
    live = [p.agent for p in ws.agent_panes() if not p.dead and p.pid > 0]
    if live:  # the wait can take up to --timeout: say what it is waiting for
        click.echo(f"asking {', '.join(live)} to exit (up to {timeout:.0f}s)...", err=True)
    forced = ws.kill(timeout)
    if forced:
        click.echo(f"terminated after {timeout:.0f}s: {', '.join(forced)}", err=True)
    click.echo(f"session {ws.session!r} ended", err=True)
