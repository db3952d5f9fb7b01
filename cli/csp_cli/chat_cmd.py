"""``cspctl chat``: the click command around :mod:`csp_cli.chat` and :mod:`csp_cli.chatterm`."""

from __future__ import annotations

import sys

import click

from csp_core.protocol import check_name

from .runner import coro_command

TTY_BACKLOG = 30


@click.command("chat")
@click.option("--room", "-r", help="Watch and talk in this room (default: all rooms; "
                                  "messages go to the gateway's default room).")
@click.option("--since", type=click.IntRange(min=0), metavar="ID",
              help="First show the messages after message ID.")
@click.option("--limit", "-n", type=click.IntRange(min=1), metavar="N",
              help=f"First show the last N messages (on a terminal: {TTY_BACKLOG}; "
                   "in line mode: none).")
@click.option("--plain", is_flag=True,
              help="Line mode (automatic when stdin or stdout is not a terminal).")
@coro_command
async def chat(room: str | None, since: int | None, limit: int | None, plain: bool) -> None:
    """The command center: the room live above, an input line below.

    \b
      text            to everyone          @name text   to one agent
      !text           urgent               /help        all commands
      /list  /history [N]  /pause NAME  /resume NAME  /room NAME  /quit
    Tab completes @names, #rooms and /commands; Up recalls what you sent.

    It reconnects by itself when the gateway restarts.  In line mode (a pipe,
    a script) it prints only what happens after it starts, unless --since or
    --limit ask for earlier messages; at the end of its input it leaves.
    """
    if room:
        check_name(room, "room name")
    if plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        from .chat import run_plain
        await run_plain(room, since=since, limit=limit)
    else:
        from .chatterm import run_tty  # prompt_toolkit only for the terminal
        await run_tty(room, since=since,
                      limit=limit if limit or since is not None else TTY_BACKLOG)
