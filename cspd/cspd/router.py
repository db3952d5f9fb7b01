"""Addressing, fan-out decisions and the loop guard.

The router turns "who sent what to whom" into a stored message plus the set of
agents whose terminals it should reach.  Humans see every message of a room
through watchers; agents only get what is meant for them:

* ``@all`` / ``#room``: every member of the room but the sender;
* ``@name``: those agents, members of the room or not;
* an agent's captured ``output`` reaches other agents only when it mentions
  them (``@codex``) or the room relays output.

Loop guard: each agent-sent message that would reach other agents counts one
hop in its room; a human message resets the count.  Past the room's hop limit
the room stops relaying to agents (humans still see everything) and says so
once, until a human speaks.
"""

from __future__ import annotations

from dataclasses import dataclass

from csp_core.config import GatewayConfig
from csp_core.errors import BadRequest, NotFound, PayloadTooLarge, UnknownRecipient
from csp_core.protocol import HUMAN, Message, Targets, mentions, parse_targets
from csp_core.sanitize import is_blank

from .hub import Hub
from .store import Draft, Room, Store

CLIENT_KINDS = ("chat", "output")


@dataclass(frozen=True)
class Post:
    sender: str
    to: list[str]
    content: str
    kind: str = "chat"
    room: str | None = None
    urgent: bool = False


class Router:
    def __init__(self, store: Store, hub: Hub, config: GatewayConfig) -> None:
        self.store = store
        self.hub = hub
        self.config = config
        self.known: set[str] = set()
        self._hops: dict[str, int] = {}  # agent hops since the last human message, per room
        self._halted: set[str] = set()  # rooms whose relay the loop guard has stopped
        self.agent_rooms: dict[str, str] = {}

    async def load(self) -> None:
        await self.store.ensure_room(self.config.default_room)
        await self.store.join(self.config.default_room, HUMAN)
        for agent in await self.store.agents():
            self.known.add(agent.name)
            self.agent_rooms[agent.name] = agent.room

    def hops_in(self, room: str) -> int | None:
        """The room's current count, when this gateway has seen it (else None)."""
        return self._hops.get(room)

    def home_room(self, sender: str) -> str:
        return self.agent_rooms.get(sender, self.config.default_room)

    async def post(self, post: Post) -> Message:
        """Validate, store, publish once committed; returns the stored message once it is
        durable."""
        return (await self.post_many([post]))[0]

    async def post_many(self, posts: list[Post]) -> list[Message]:
        """Several posts at once: all validated before any is stored (one bad post
        refuses them all), then stored together in one transaction, in order, and
        published; returns the stored messages in the same order."""
        checked = [await self._check(post) for post in posts]
        drafts: list[Draft] = []
        halted: list[tuple[str, int, list[str]]] = []
        for post, (targets, room, members) in zip(posts, checked, strict=True):
            draft, halted_now = await self._draft(post, targets, room, members)
            drafts.append(draft)
            if halted_now:
                halted.append((room.name, room.hop_limit or self.config.hop_limit, members))
        def publish(stored: list[Message]) -> None:
            # at commit, before the fsync: recipients need not wait for the disk
            for message, draft in zip(stored, drafts, strict=True):
                self.hub.publish(message, draft.deliver_to)

        messages = await self.store.append_many(drafts, on_commit=publish)
        for room_name, limit, members in halted:
            self._drop_queued_relays(room_name, members)
            await self.system(room_name, f"relay paused in #{room_name}: {limit} agent-to-agent "
                              "hops without a human message; agents' messages reach only "
                              "humans until a human speaks")
        return messages

    async def _check(self, post: Post) -> tuple[Targets, Room, list[str]]:
        """Refuse what cannot be posted; the addressing, the room and its members."""
        if post.kind not in CLIENT_KINDS:
            raise BadRequest(f"kind must be one of {', '.join(CLIENT_KINDS)}")
        try:
            size = len(post.content.encode())
        except UnicodeEncodeError:  # lone surrogates from JSON "\ud800": not text
            raise BadRequest("content is not valid Unicode text") from None
        if size > self.config.max_message_bytes:
            raise PayloadTooLarge(
                f"message is {size} bytes; the limit is {self.config.max_message_bytes}",
                limit=self.config.max_message_bytes)
        if is_blank(post.content):
            raise BadRequest("empty message: nothing would show once control and invisible "
                             "characters are removed")
        targets = parse_targets(post.to)
        room_name = targets.room or post.room or self.home_room(post.sender)
        room = await self.store.room(room_name)
        if room is None:
            raise NotFound(f"no room #{room_name}", room=room_name)
        unknown = [n for n in targets.names if n != HUMAN and n not in self.known]
        if unknown:
            raise UnknownRecipient(f"unknown recipient: {', '.join('@' + n for n in unknown)}",
                                   names=unknown)

        return targets, room, await self.store.members(room_name)

    async def _draft(self, post: Post, targets: Targets, room: Room,
                     members: list[str]) -> tuple[Draft, bool]:
        """The message to store, its recipients and hop count; and whether it is the
        one that stops the room's relay."""
        kind = post.kind
        if kind == "chat" and targets.is_direct:
            kind = "direct"
        deliver = self._recipients(post, targets.everyone, targets.names, members, room.relay)
        if room.name not in self._hops:  # after a restart the count comes from the messages
            self._hops.setdefault(room.name, await self.store.room_hops(room.name))
        hops, deliver, halted_now = self._count_hop(room.name, room.hop_limit, post.sender,
                                                    deliver)
        to = ["all"] if targets.everyone else targets.names
        return Draft(room=room.name, sender=post.sender, to=to, kind=kind, content=post.content,
                     deliver_to=deliver, hops=hops, urgent=post.urgent), halted_now

    def _count_hop(self, room: str, hop_limit: int | None, sender: str,
                   deliver: tuple[str, ...]) -> tuple[int, tuple[str, ...], bool]:
        """Loop guard bookkeeping; synchronous, so concurrent posts cannot undercount.

        Returns the message's hop count, who it is still delivered to, and whether
        this message is the one that stops the relay (to say so once).  The count is
        kept in memory and stored only with each message, which is what a restarted
        gateway reads it back from.
        """
        hops = self._hops.get(room, 0)
        if sender == HUMAN or sender not in self.known:
            self._hops[room] = 0
            self._halted.discard(room)
            return 0, deliver, False
        if not deliver:
            return hops, deliver, False
        hops += 1
        self._hops[room] = hops
        if hops <= (hop_limit or self.config.hop_limit):
            return hops, deliver, False
        halted_now = room not in self._halted
        self._halted.add(room)
        return hops, (), halted_now

    def _drop_queued_relays(self, room: str, members: list[str]) -> None:
        """The relay stopped: agents' messages already queued in sidecars are not typed in."""
        for name in members:
            if name in self.known:
                self.hub.control(name, {"type": "control", "action": "drop_relays",
                                        "room": room})

    def _recipients(self, post: Post, everyone: bool, names: list[str], members: list[str],
                    relay: bool) -> tuple[str, ...]:
        agents = [m for m in members if m in self.known]
        if post.kind == "output":
            # captured output only goes where it is addressed, unless the room relays
            if relay:
                chosen = agents
            else:
                chosen = [n for n in mentions(post.content) if n in self.known]
        elif everyone:
            chosen = agents + [n for n in names if n not in agents]
        else:
            chosen = names
        return tuple(n for n in dict.fromkeys(chosen) if n != post.sender and n != HUMAN)

    async def system(self, room: str, text: str) -> Message:
        """A gateway notice in a room: stored, shown to watchers, typed into no terminal."""
        message = await self.store.append(Draft(room=room, sender="system", to=["all"],
                                                kind="system", content=text))
        self.hub.publish(message, ())
        return message

    async def register(self, name: str, profile: str, room: str, command: str) -> None:
        if await self.store.room(room) is None:
            await self.store.ensure_room(room)
        await self.store.upsert_agent(name, profile, room, command)
        await self.store.join(room, name)
        self.known.add(name)
        self.agent_rooms[name] = room
