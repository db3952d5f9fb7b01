"""``GET /v1/stream``: the WebSocket each client keeps open.

``?agent=NAME`` registers a sidecar: it receives the messages addressed to its
agent (pending ones first), sends ``ack`` frames once it has injected them and
``state`` frames when its agent changes state.  Without ``agent`` the client is
a watcher of one room (or all) from ``since`` on.

Frames, server to client: ``hello``, ``message``, ``control``, ``error``.
Client to server: ``ack`` (``ids``), ``state`` (``state``, ``queue``, ``pid``,
``dbus_name``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from typing import Any

from aiohttp import WSMsgType, web

from .app import Gateway, gateway_of
from .errors import BadRequest, Conflict
from .hub import MAX_QUEUE, Subscriber
from .protocol import API, Message, check_name

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
    if agent is not None:
        check_name(agent)
        if gw.hub.online(agent):
            raise Conflict(f"an agent named {agent!r} is already online; pick another --name",
                           name=agent)

    ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)

    async def send(frame: dict[str, Any]) -> None:
        await ws.send_str(json.dumps(frame))

    sub = Subscriber(send, agent=agent, room=room, since=since if agent is None else 0)
    if agent is not None:
        if gw.hub.online(agent):  # lost a race with a twin while upgrading
            await send({"type": "error", "error": "conflict",
                        "message": f"an agent named {agent!r} is already online"})
            await ws.close()
            return ws
        home = room or gw.router.home_room(agent)
        await gw.router.register(agent, q.get("profile", ""), home, q.get("command", ""))
        pid = q.get("pid")
        sub.state.pid = int(pid) if pid and pid.isdigit() else None
    gw.hub.add(sub)
    writer = asyncio.create_task(_write_then_hang_up(ws, sub))
    try:
        await send({"type": "hello", "agent": agent, "room": room,
                    "last_id": gw.store.last_id})
        replay = []
        if agent is not None:
            replay = await gw.store.pending(agent)
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
        pid = frame.get("pid")
        if isinstance(pid, int) and pid > 0:
            sub.state.pid = pid
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
