"""``cspctl send`` and ``cspctl history``."""

from __future__ import annotations

import sys

import click

from csp_core import quick
from csp_core.endpoint import speaker
from csp_core.errors import NotFound
from csp_core.protocol import API, HUMAN, Message, check_name

from .entry import message_body
from .render import format_message, print_json, print_json_line
from .runner import coro_command, edge

SEND_HELP = """Send a message to the group chat.

\b
  cspctl send @all "tests pass on main"
  cspctl send @claude @codex "please review #12"
  cspctl send '#backend' "deploy at 5"
  git log -1 | cspctl send @codex -        (text from stdin)

Without an address the message goes to the whole room.  A message starting
with '!' is urgent: agents get it without waiting until they are idle.
Inside an agent you speak as that agent (the gateway knows its processes),
otherwise as 'human' or --as a name that is not an online agent's.  Exits 0
only once the gateway has stored the message.

\b
  cspctl send @codex "is main green?" --wait        (prints codex's reply)
  cspctl send @all "status?" --wait --timeout 120 --json

With --wait it then prints each addressed agent's reply to that message (its
next reply after the message was typed in), labelled when there are several,
and exits 8 if not all came within --timeout, after printing those that did.
"""


@click.command("send", help=SEND_HELP)
@click.argument("words", nargs=-1, required=False)
@click.option("--room", "-r", help="Room to post in (default: your room).")
@click.option("--as", "as_name", metavar="NAME", help="Speak as NAME instead of $CSP_AGENT.")
@click.option("--urgent", is_flag=True, help="Deliver without waiting for the agents to idle.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored message as JSON.")
@click.option("--wait", is_flag=True,
              help="Then print the addressed agents' replies to it (exit 8 on timeout).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=600.0, show_default=True,
              help="With --wait: seconds to wait for the replies.")
@edge
def send(words: tuple[str, ...], room: str | None, as_name: str | None, urgent: bool,
         as_json: bool, wait: bool, timeout: float) -> None:
    agent = sender_name(as_name)
    body = message_body(list(words), room, urgent)  # the same words the fast path reads
    busy: set[str] = set()
    if wait:  # aiohttp only on this path: plain `send` stays quick to start
        from .send_wait import agents_with_work, wait_and_report
        busy = agents_with_work()  # before the message: what is ahead of it
    # one request: the standard-library client keeps `cspctl send` quick to start
    message = Message.from_json(quick.call("POST", f"{API}/messages", body=body,
                                           agent=agent))
    if wait:
        click.echo(f"sent #{message.id}; waiting for the reply...", err=True)
        wait_and_report(message, busy, timeout, as_json)
    elif as_json:
        print_json(message.to_json())
    else:
        click.echo(f"sent #{message.id} to {', '.join('@' + t for t in message.to)} "
                   f"in #{message.room}", err=True)


def sender_name(as_name: str | None) -> str:
    """Who ``--as`` (or ``CSP_AGENT``) says is speaking, checked before anything is sent.

    The name travels in a header: a CR, LF, NUL or a character outside Latin-1 would
    otherwise fail inside the HTTP client (a traceback) or be refused by the gateway's
    parser (a confusing "not running").  A bad name is bad input: exit 2.
    """
    agent = speaker(as_name)
    if agent != HUMAN:
        check_name(agent)
    return agent


@click.command("history")
@click.option("--room", "-r", help="Only this room.")
@click.option("--limit", "-n", default=50, show_default=True, help="How many messages.")
@click.option("--since", default=0, help="Only messages after this id.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new messages as they come.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line (with --follow) or a JSON list.")
@edge
def history(room: str | None, limit: int, since: int, follow: bool, as_json: bool) -> None:
    """Show the chat history (the newest LIMIT messages, oldest first).

    \b
      cspctl history                     # the last 50, every room
      cspctl history -r backend -n 200
      cspctl history -f                  # then keep printing new ones
      cspctl history --since 120 --json  # what came after message #120

    An unknown room is an error (exit 5), not an empty history.
    """
    colour = sys.stdout.isatty()
    params: dict[str, object] = {"since": since, "limit": limit}
    if room:
        params["room"] = room
    data = quick.call("GET", f"{API}/messages", params=params)
    messages = [Message.from_json(m) for m in data["messages"]]
    if room and not messages:
        _check_room(room)  # a typo must not look like an empty room
    if as_json and not follow:
        print_json([m.to_json() for m in messages])
        return
    last = since
    for m in messages:
        _emit(m, as_json, colour)
        last = max(last, m.id)
    if follow:
        if since == 0:
            # "the last N" covered everything up to the newest id when it was asked
            last = max(last, int(data.get("last_id", last)))
        _follow(room, last, as_json, colour)


def _check_room(room: str) -> None:
    rooms = quick.call("GET", f"{API}/rooms")["rooms"]
    if room not in {r["name"] for r in rooms}:
        raise NotFound(f"no room #{room}", room=room)


@coro_command
async def _follow(room: str | None, since: int, as_json: bool, colour: bool) -> None:
    """Print live messages; when the gateway goes away, say so and pick up where it was."""
    from csp_core.backoff import Backoff
    from csp_core.client import GatewayClient  # aiohttp only when following
    from csp_core.errors import GatewayUnavailable

    last, backoff, lost = since, Backoff(), False
    while True:
        try:
            async with GatewayClient(timeout=None) as client:  # type: ignore[arg-type]
                if lost:
                    await client.health()
                    click.echo("cspctl: reconnected", err=True)
                    lost = False
                    backoff.reset()
                async for m in client.follow(room=room, since=last):
                    _emit(m, as_json, colour)
                    last = max(last, m.id)
        except GatewayUnavailable:
            pass
        if not lost:  # once per outage, not once per attempt
            click.echo("cspctl: the gateway went away; reconnecting...", err=True)
            lost = True
        await backoff.wait()


def _emit(m: Message, as_json: bool, colour: bool) -> None:
    if as_json:
        print_json_line(m.to_json())
    else:
        click.echo(format_message(m, colour))
