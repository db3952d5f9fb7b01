"""``cspctl chat``: the click command around :mod:`csp_cli.chat`."""

from __future__ import annotations

import sys

import click
from csp_core.protocol import check_name

from .chat import run_plain, run_tty
from .runner import coro_command


@click.command("chat")
@click.option("--room", "-r", help="Watch and talk in this room (default: all rooms; "
                                  "messages go to the gateway's default room).")
@click.option("--plain", is_flag=True,
              help="Line mode (automatic when stdin or stdout is not a terminal).")
@coro_command
async def chat(room: str | None, plain: bool) -> None:
    """The command center: the room live above, an input line below.

    \b
      text            to everyone          @name text   to one agent
      !text           urgent               /help        all commands
      /list  /history [N]  /pause NAME  /resume NAME  /room NAME  /quit

    It reconnects by itself when the gateway restarts.
    """
    if room:
        check_name(room, "room name")
    if plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        await run_plain(room)
    else:
        await run_tty(room)
