"""``csp-sidecar``: command line, logging, and the startup order.

The order matters: the name is claimed (gateway, D-Bus) *before* the agent
starts, so a clash is a clear error instead of an agent running unseen.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Protocol

import click

from csp_core import __version__, paths
from csp_core.busnames import session_bus_address
from csp_core.errors import BadRequest, CspError
from csp_core.protocol import check_name

from .command import locate
from .link import NameTaken
from .profiles import apply_to_command, load_profile, match_profile
from .sidecar import Options, Sidecar

EXIT_USAGE = 2


def _setup_logging(name: str, verbose: bool) -> None:
    """Log to a file: the terminal belongs to the agent."""
    folder = paths.ensure_private_dir(paths.state_dir())
    logging.basicConfig(
        filename=folder / f"sidecar-{name}.log",
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _start(options: Options) -> int:
    sidecar = Sidecar(options)
    if not await sidecar.link.first_connect():
        click.echo(f"csp-sidecar: gateway not reachable ({sidecar.link.last_error}); "
                   "the agent starts anyway and joins when the gateway is up", err=True)
    bus = await _export_on_bus(sidecar)
    try:
        return await sidecar.run()
    except FileNotFoundError:
        await sidecar.link.stop()  # the agent never ran: close the gateway link cleanly
        raise
    finally:
        if bus is not None:
            await bus.close()


class BusExport(Protocol):
    async def close(self) -> None: ...


async def _export_on_bus(sidecar: Sidecar) -> BusExport | None:
    """Claim the agent's D-Bus name (None when there is no session bus).

    Without a bus the D-Bus library is never imported: it would hold some 7 MiB of
    the sidecar's memory for nothing.
    """
    if session_bus_address() is None:
        logging.getLogger("csp_sidecar.dbus").warning(
            "no session bus: DBUS_SESSION_BUS_ADDRESS is not set and $XDG_RUNTIME_DIR/bus "
            "does not exist; running without D-Bus (presence falls back to the gateway "
            "connection)")
        return None
    try:
        from . import dbus_service
    except ImportError:
        return None
    export = getattr(dbus_service, "export_agent", None)
    if export is None:
        return None
    result: BusExport | None = await export(sidecar)
    return result


HELP = """Run an agent CLI inside csp: its terminal stays untouched, and it joins
the group chat as NAME.

\b
  csp-sidecar --name claude -- claude
  csp-sidecar --name codex --room backend -- codex --no-alt-screen
  csp-sidecar --name helper --profile generic -- python3 -i

Group messages are typed into the agent only when it is safe: the agent
itself in the foreground (no shell, editor or pager), its prompt on screen,
no menu or permission prompt open, and no draft of yours in its input.  What
the agent says is shared with the room: the exact reply, from the CLI's own
hooks where it has them (Claude Code, Codex, Gemini CLI), else read off the
screen.  The profile (how to tell it is ready, how to type into it, how it
reports its turns) is chosen from the command's program unless --profile is
given; shipped profiles: claude, codex, gemini, aider, generic, shell.  For a
program no profile knows, nothing is typed in until you name a profile.
Exits with the agent's exit status.
"""


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", "-n", required=True, help="The agent's name in the chat (a-z, 0-9, -, _).")
@click.option("--profile", "-p", "profile_name", help="Profile to use (default: from COMMAND).")
@click.option("--room", "-r", help="Room to join (default: the gateway's default room).")
@click.option("--cwd", type=click.Path(exists=True, file_okay=False), help="Run COMMAND here.")
@click.option("--gateway", "gateway", metavar="ADDR",
              help="Gateway socket path or http://127.0.0.1:PORT (default: $CSP_GATEWAY "
                   "or the user's socket).")
@click.option("--env", "-e", "env_pairs", multiple=True, metavar="KEY=VALUE",
              help="Set a variable in the agent CLI's environment only (repeatable); "
                   "it wins over the profile's env and env_unset.")
@click.option("-v", "--verbose", is_flag=True, help="Debug detail in the sidecar's log file.")
@click.version_option(__version__, prog_name="csp-sidecar")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def cli(name: str, profile_name: str | None, room: str | None, cwd: str | None,
        gateway: str | None, env_pairs: tuple[str, ...], verbose: bool,
        command: tuple[str, ...]) -> None:
    try:
        env = _parse_env(env_pairs)
        check_name(name)
        if room:
            check_name(room, "room name")
        matched = match_profile(list(command))
        profile = load_profile(profile_name) if profile_name else (
            matched or load_profile("generic"))
        apply_to_command(profile, list(command))  # a wrapper that hides the program: say so now
    except CspError as exc:
        click.echo(f"csp-sidecar: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    _setup_logging(name, verbose)
    if not profile_name and matched is None:
        program = locate(list(command)).name or command[0]
        click.echo(f"csp-sidecar: no profile knows {program!r}: the agent runs, but no "
                   "message is typed into it until you name a profile (--profile NAME)",
                   err=True)
    options = Options(name=name, profile=profile, command=list(command), room=room, cwd=cwd,
                      gateway=gateway, env=env,
                      profile_known=bool(profile_name) or matched is not None)
    try:
        status = asyncio.run(_start(options))
    except NameTaken as exc:
        click.echo(f"csp-sidecar: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except CspError as exc:
        click.echo(f"csp-sidecar: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except FileNotFoundError as exc:
        # ptyprocess raises it without an errno (strerror None)
        why = exc.strerror or "not found or not executable"
        click.echo(f"csp-sidecar: cannot run {command[0]!r}: {why}", err=True)
        sys.exit(127)
    sys.exit(status)


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or "\0" in pair:
            raise BadRequest(f"--env {pair!r}: use KEY=VALUE")
        env[key] = value
    return env


def main() -> None:
    cli()
