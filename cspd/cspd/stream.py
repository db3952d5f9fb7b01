"""``GET /v1/stream``: the WebSocket each client keeps open.

``?agent=NAME`` registers a sidecar: it receives the messages addressed to its
agent (pending ones first), sends ``ack`` frames once it has injected them and
``state`` frames when its agent changes state.  Without ``agent`` the client is
a watcher of one room (or all) from ``since`` on.

Registration is where an agent's identity is fixed (:mod:`cspd.identity`): the
registering process becomes the root of the agent's process tree, a name is
claimed at most once at a time, and ``hello`` hands the sidecar the agent's
credential.  Only this connection acknowledges the agent's messages.

Frames, server to client: ``hello`` (with ``credential`` for an agent),
``message``, ``control``, ``error``.
Client to server: ``ack`` (``ids``), ``state`` (``state``, ``queue``, ``pid``,
``dbus_name``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from csp_core.errors import BadRequest, StorageUnavailable
from csp_core.protocol import API, Message, check_name

from . import identity
from .gateway import Gateway, gateway_of
from .hub import MAX_QUEUE, Subscriber
from .store import within_bounds

log = logging.getLogger("cspd.stream")

# "waiting": the agent waits for its human (a permission or question prompt)
AGENT_STATES = ("starting", "ready", "busy", "waiting", "paused", "exited")
SOCKETS = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse])


async def stream(request: web.Request) -> web.StreamResponse:
    gw = gateway_of(request)
    q = request.query
    agent = q.get("agent")
    room = q.get("room") or None
    if room is not None:
        check_name(room, "room name")
    try:
        since = int(q.get("since", "0"))
    except ValueError:
        raise BadRequest("since must be an integer") from None
    ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)

    sub = Subscriber(ws.send_str, agent=agent, room=room,
                     since=since if agent is None else 0, encoded=True,
                     send_now=_direct_writer(request, ws))
    if agent is not None:
        check_name(agent)
        sub.tree = identity.registration(request, gw, agent)
        gw.hub.claim(sub)  # 409 if the name is online; atomic, so one of two twins wins
    else:
        identity.speaker(request, gw)  # a watcher too is refused a claim it contradicts
    try:
        await ws.prepare(request)
    except BaseException:
        gw.hub.remove(sub)
        raise
    request.app[SOCKETS].add(ws)
    if agent is None:
        gw.hub.add(sub)
    writer = asyncio.create_task(_write_then_hang_up(ws, sub))
    try:
        hello: dict[str, Any] = {"type": "hello", "agent": agent, "room": room,
                                 "last_id": gw.store.last_id}
        if agent is not None:
            home = room or gw.router.home_room(agent)
            await gw.router.register(agent, q.get("profile", ""), home, q.get("command", ""))
            _agent_pid(sub, q.get("pid"))
            # the agent's own credential: its environment carries it, never the token
            hello["credential"] = gw.tokens.issue(agent)
        await ws.send_str(json.dumps(hello))
        replay = []
        if agent is not None:
            replay = await _agent_backlog(gw, agent)
        elif since > 0:
            replay = await _backlog(gw, room, since)
        elif since == 0:
            replay = await gw.store.history(room, since, gw.config.history_limit_max)
        sub.finish_replay(replay)
        if agent is not None and not gw.bus_presence:  # else presence.py announces it
            await gw.router.system(home, f"{agent} joined #{home}")
        await _read_frames(gw, ws, sub)
    finally:
        gw.hub.remove(sub)
        sub.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 1.0)
        writer.cancel()
        if agent is not None and not gw.hub.online(agent):
            with contextlib.suppress(Exception):
                await gw.store.touch_agent(agent)
                if not gw.bus_presence:  # else presence.py announces it
                    await gw.router.system(gw.router.home_room(agent), f"{agent} left")
    return ws


# past this much unsent output a connection's frames wait in its queue (and its
# writer waits for the socket to drain) instead of piling up in the transport
DIRECT_BUFFER_LIMIT = 64 * 1024


def _direct_writer(request: web.Request, ws: web.WebSocketResponse
                   ) -> Callable[[bytes], bool]:
    """Write a whole frame to the connection's transport at once, when that is safe:
    the handshake done, the socket open, no compression negotiated (the frame is
    plain), and not much unsent already.  aiohttp writes its own frames (a pong,
    the close) each in one synchronous call too, so frames never interleave."""
    transport = request.transport

    def send_now(wire: bytes) -> bool:
        if (transport is None or not ws.prepared or ws.closed or ws.compress
                or transport.is_closing()
                or transport.get_write_buffer_size() > DIRECT_BUFFER_LIMIT):
            return False
        transport.write(wire)
        return True

    return send_now


def _agent_pid(sub: Subscriber, pid: object) -> None:
    """The sidecar names its agent CLI's pid: shown in ``cspctl agents``, and its
    session joins the agent's processes if the CLI really runs under the sidecar."""
    if isinstance(pid, str):
        pid = int(pid) if pid.isdigit() and len(pid) < 10 else None
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
        return
    sub.state.pid = pid
    sub.tree.adopt_session(pid)


# pending messages read per query while replaying an agent's backlog
PENDING_PAGE = 1000


async def _agent_backlog(gw: Gateway, agent: str) -> list[Message]:
    """What waits for an agent that (re)connects, oldest first.

    First the store bounds it (``pending_max_age_s``, ``pending_max_count``): an
    agent back after days gets the recent messages and one summary line for the
    rest, a ``direct`` message from ``system`` that is pending like any other, so
    the sidecar types it in once and acknowledges it.  Watchers see that line live.
    Then the backlog is read page by page with an id cursor, so a long one moves
    forward instead of replaying its first page again.  When the store cannot
    write (a full disk), nothing is dropped: only the recent ones are replayed,
    and a later connection sums up the rest.
    """
    max_age, max_count = gw.config.pending_max_age_s, gw.config.pending_max_count
    expired = True
    try:
        summary = await gw.store.expire_pending(agent, max_age, max_count)
    except StorageUnavailable:  # a full disk: hold the stale ones back, drop nothing
        summary, expired = None, False
    if summary is not None:
        gw.hub.publish(summary, ())  # watchers; the agent gets it from the replay below
    out: list[Message] = []
    after = 0
    # past MAX_QUEUE the subscriber is cut loose anyway; unexpired, the whole list is
    # read through a window that keeps only the recent ones
    while not expired or len(out) <= MAX_QUEUE:
        page = await gw.store.pending(agent, PENDING_PAGE, after=after)
        out.extend(page)
        if not expired:
            out = within_bounds(out, max_age, max_count)
        if len(page) < PENDING_PAGE:
            break
        after = page[-1].id
    return out


async def _backlog(gw: Gateway, room: str | None, since: int) -> list[Message]:
    """Everything after ``since``: a full page of history is not the end of it."""
    out: list[Message] = []
    while len(out) <= MAX_QUEUE:  # past that the subscriber is cut loose anyway
        page = await gw.store.history(room, since, gw.config.history_limit_max)
        out.extend(page)
        if len(page) < gw.config.history_limit_max:
            break
        since = page[-1].id
    return out


async def _write_then_hang_up(ws: web.WebSocketResponse, sub: Subscriber) -> None:
    """Run the writer; if it stopped for a too-slow reader, hang up so that the
    client reconnects from its cursor instead of waiting on a silent socket."""
    await sub.run_writer()
    if sub.overflowed and not ws.closed:
        await ws.close(message=b"too slow; reconnect to resume")


async def _read_frames(gw: Gateway, ws: web.WebSocketResponse, sub: Subscriber) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            if msg.type == WSMsgType.ERROR:
                return
            continue
        try:
            frame = json.loads(msg.data)
            if not isinstance(frame, dict):
                raise ValueError("frame must be a JSON object")
            await _handle_frame(gw, sub, frame)
        except (ValueError, BadRequest) as exc:
            sub.push_frame({"type": "error", "error": "bad_request", "message": str(exc)})
        if sub.overflowed:
            await ws.close(message=b"too slow; reconnect to resume")
            return


async def _handle_frame(gw: Gateway, sub: Subscriber, frame: dict[str, Any]) -> None:
    kind = frame.get("type")
    if kind == "ack":
        ids = frame.get("ids")
        if sub.agent is None:
            raise BadRequest("only agent connections acknowledge messages")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise BadRequest("ack needs 'ids': a list of message ids")
        await gw.store.ack(sub.agent, ids)
    elif kind == "state":
        state = frame.get("state", sub.state.state)
        if state not in AGENT_STATES:
            raise BadRequest(f"state must be one of {', '.join(AGENT_STATES)}")
        sub.state.state = state
        queue = frame.get("queue")
        if isinstance(queue, int) and queue >= 0:
            sub.state.queue = queue
        if sub.agent is not None:
            _agent_pid(sub, frame.get("pid"))
        reason = frame.get("reason")
        if isinstance(reason, str):
            sub.state.reason = reason[:200]
        dbus_name = frame.get("dbus_name")
        if isinstance(dbus_name, str):
            sub.state.dbus_name = dbus_name
    elif kind == "ping":
        sub.push_frame({"type": "pong"})
    else:
        raise BadRequest(f"unknown frame type {kind!r}")


async def close_all(app: web.Application) -> None:
    """On shutdown, tell every client to go (it reconnects to the next gateway)."""
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=1001, message=b"gateway shutting down")


def add_routes(app: web.Application) -> None:
    app[SOCKETS] = weakref.WeakSet[web.WebSocketResponse]()
    app.on_shutdown.append(close_all)
    app.router.add_get(f"{API}/stream", stream)
