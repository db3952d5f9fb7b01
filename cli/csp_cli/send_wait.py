"""``cspctl send --wait``: wait for the addressed agents' replies to one message.

An agent's reply is what its sidecar posts from the CLI's exact-reply path (the
hooks or the transcript: kind ``output``, from the agent, in the message's room)
when a turn ends.  The reply to message M from agent X is X's first ``output``
after X took M in: its sidecar acknowledges M when it types it, so the turn that
ends next is M's.  Messages carry no link from a reply to its prompt, so the
moment of the acknowledgement is watched instead (``GET /v1/web/delivery``, polled):
it lies between two message ids, ``before`` (M still pending) and ``after`` (M
taken).  X's outputs up to ``before`` answer something earlier; those past
``after`` answer M.  One in between is ambiguous: it is taken, unless something
was ahead of M for X when M was sent (X busy or with a queue) and no earlier
reply was seen yet, in which case that first one is the earlier turn's.

The room is followed from M's id on, so nothing posted before the stream opened
is missed, and a gateway restart is ridden out by following again.  Imported only
on the ``--wait`` path: it needs aiohttp.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from csp_core import quick
from csp_core.client import GatewayClient
from csp_core.errors import BadRequest, GatewayUnavailable
from csp_core.protocol import ALL, API, HUMAN, Message

from .render import print_json
from .runner import run

EXIT_TIMEOUT = 8
REPLY_KIND = "output"
POLL = 0.1  # seconds between two looks at whom the message still waits for
IDLE_STATES = ("ready", "paused", "exited", "offline")


def agents_with_work() -> set[str]:
    """Agents with something ahead of a message sent now: busy, or with a queue."""
    rows = quick.call("GET", f"{API}/agents")["agents"]
    return {str(a["name"]) for a in rows
            if a.get("online") and (a.get("state") not in IDLE_STATES
                                    or a.get("queue") or a.get("pending"))}


@dataclass
class Track:
    """One addressee: its outputs after the message, and when it took the message in."""

    name: str
    busy: bool  # something was ahead of the message for this agent when it was sent
    outputs: list[Message] = field(default_factory=list)
    window: tuple[int, int] | None = None  # acknowledged after id [0], by id [1]
    reply: Message | None = None

    def resolve(self, since: int) -> Message | None:
        if self.reply is not None or self.window is None:
            return self.reply
        before, after = self.window
        # the earlier turn's reply still to come only if none was seen before the window
        skip = self.busy and not any(since < m.id <= before for m in self.outputs)
        for m in self.outputs:
            if m.id <= before:
                continue
            if m.id <= after and skip:
                skip = False
                continue
            self.reply = m
            break
        return self.reply


@dataclass
class Waiting:
    message: Message
    tracks: dict[str, Track]  # in address order
    printed: set[str] = field(default_factory=set)
    # per agent, the newest id known to precede its acknowledgement of the message
    last_pending: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return [n for n, t in self.tracks.items() if t.reply is None]

    def note_output(self, m: Message) -> None:
        track = self.tracks.get(m.sender)
        if (track is not None and m.kind == REPLY_KIND and m.room == self.message.room
                and m.id > self.message.id and m not in track.outputs):
            track.outputs.append(m)

    def note_delivery(self, pending: list[str], before: int, after: int) -> None:
        """One look at whom the message still waits for (see the module's docstring)."""
        for name, track in self.tracks.items():
            if track.window is not None:
                continue
            if name in pending:
                self.last_pending[name] = before
            else:
                track.window = (self.last_pending.get(name, self.message.id), after)

    def resolve(self) -> list[Message]:
        """The replies found since the last call, in address order."""
        new = []
        for name, track in self.tracks.items():
            reply = track.resolve(self.message.id)
            if reply is not None and name not in self.printed:
                self.printed.add(name)
                new.append(reply)
        return new


async def _addressees(client: GatewayClient, message: Message) -> list[str]:
    """The agents the message went to: its names, or for ``@all`` the online agents
    that are members of its room (not the sender)."""
    if ALL not in message.to:
        names = [n for n in message.to if n not in (HUMAN, message.sender)]
    else:
        rooms = (await client.rooms())["rooms"]
        members: list[str] = next((r["members"] for r in rooms
                                   if r["name"] == message.room), [])
        online = {a["name"] for a in await client.agents() if a.get("online")}
        names = [n for n in members if n in online and n != message.sender]
    if not names:
        raise BadRequest(f"no agent to wait for: message #{message.id} went to no agent "
                         "that is online in its room")
    return names


def _print_reply(m: Message, label: bool) -> None:
    if label:
        click.echo(f"── {m.sender} (#{m.id}) ──")
    click.echo(m.content)
    sys.stdout.flush()


class Waiter:
    """Follows the room and polls the delivery until every reply is known."""

    def __init__(self, waiting: Waiting, as_json: bool) -> None:
        self.waiting = waiting
        self.as_json = as_json
        self.label = len(waiting.tracks) > 1
        self.done = asyncio.Event()

    def _settle(self) -> None:
        for reply in self.waiting.resolve():
            if not self.as_json:
                _print_reply(reply, self.label)
        if not self.waiting.missing:
            self.done.set()

    async def follow(self) -> None:
        message = self.waiting.message
        while True:
            try:
                async with GatewayClient(timeout=None) as client:  # type: ignore[arg-type]
                    async for m in client.follow(room=message.room, since=message.id):
                        self.waiting.note_output(m)
                        self._settle()
            except GatewayUnavailable:
                pass
            await asyncio.sleep(0.5)  # the gateway went away: follow again from M's id

    async def poll(self) -> None:
        params = {"id": self.waiting.message.id}
        while any(t.window is None for t in self.waiting.tracks.values()):
            try:
                async with GatewayClient(timeout=10.0) as client:
                    while any(t.window is None for t in self.waiting.tracks.values()):
                        d = await client.request("GET", f"{API}/web/delivery", params=params)
                        self.waiting.note_delivery(list(d["pending"]), int(d["before"]),
                                                   int(d["after"]))
                        self._settle()
                        await asyncio.sleep(POLL)
            except GatewayUnavailable:
                await asyncio.sleep(0.5)

    async def run(self, timeout: float) -> None:
        tasks = [asyncio.create_task(self.follow()), asyncio.create_task(self.poll())]
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _wait(message: Message, busy: set[str], timeout: float, as_json: bool) -> Waiting:
    deadline = time.monotonic() + timeout
    async with GatewayClient(timeout=30.0) as client:
        names = await _addressees(client, message)
    waiting = Waiting(message, {n: Track(n, n in busy) for n in names})
    await Waiter(waiting, as_json).run(max(deadline - time.monotonic(), 0.001))
    return waiting


def wait_and_report(message: Message, busy: set[str], timeout: float, as_json: bool) -> None:
    """Print the replies (as they come, or as JSON at the end); exit 8 on timeout."""
    waiting = run(_wait(message, busy, timeout, as_json))
    missing = waiting.missing
    if as_json:
        out: dict[str, Any] = {
            "message": message.to_json(),
            "replies": {n: t.reply.to_json() for n, t in waiting.tracks.items()
                        if t.reply is not None},
            "waiting_for": missing,
            "timed_out": bool(missing),
        }
        print_json(out)
    if missing:
        click.echo(f"cspctl: no reply from {', '.join(missing)} to #{message.id} "
                   f"within {timeout:g}s", err=True)
        sys.exit(EXIT_TIMEOUT)
