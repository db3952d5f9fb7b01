"""``cspctl``: the command group; each verb lives in its own module.

Verbs are imported only when used, so a one-shot ``cspctl history`` does not pay
for aiohttp, dbus-fast or the chat's terminal code.  A plain ``cspctl send`` does
not even come here (nor import click): :mod:`csp_cli.entry` posts it itself.
"""

from __future__ import annotations

import importlib

import click

from csp_core import __version__

# verb -> "module:attribute" (modules relative to this package)
COMMANDS = {
    "send": "messages_cmd:send",
    "history": "messages_cmd:history",
    "agents": "agents_cmd:agents",
    "pause": "agents_cmd:pause",
    "resume": "agents_cmd:resume",
    "interrupt": "agents_cmd:interrupt",
    "rooms": "rooms_cmd:rooms",
    "attach": "attach_cmd:attach",
    "spawn": "attach_cmd:spawn",
    "kill": "attach_cmd:kill",
    "chat": "chat_cmd:chat",
    "config": "config_cmd:config",
    "gateway": "gateway_cmd:gateway",
    "token": "token_cmd:token",
    "mcp": "mcp_cmd:mcp",
    "install-units": "units_cmd:install_units",
    "web": "web_cmd:web",
}


def _load(spec: str) -> click.Command:
    module, _, attr = spec.partition(":")
    command: object = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    if not isinstance(command, click.Command):
        raise TypeError(f"{spec} is not a click command")
    if attr == "agents" and isinstance(command, click.Group):
        from .config_cmd import agents_add, agents_presets, agents_remove
        for sub in (agents_add, agents_remove, agents_presets):
            command.add_command(sub)
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        return _load(spec) if spec else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cspctl")
def cli() -> None:
    """Talk to the csp group chat and manage its gateway and agents.

    \b
    Quick start:
      systemctl --user start csp-gateway      # or: cspctl gateway start
      cspctl send @all "hello"                # post as 'human'
      cspctl history -f                       # watch the room
      csp-sidecar --name claude -- claude     # put an agent in the chat
      cspctl attach                           # everything in one tmux window

    Exit codes: 0 ok, 1 error, 2 bad input, 3 gateway not running,
    4 token refused, 5 unknown agent/room, 6 conflict, 7 rate limited,
    8 no reply in time (send --wait).
    """


def main() -> None:
    # the same name in usage lines whether run as `cspctl` or `python -m csp_cli`
    cli(prog_name="cspctl")
