"""REST routes under ``/v1``: messages, history, agents, rooms, acks, health."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from csp_core import __version__
from csp_core.errors import BadRequest, Conflict, Forbidden, NotFound
from csp_core.protocol import API, HUMAN, check_name

from . import presence
from .gateway import Gateway, gateway_of, read_json
from .identity import caller, owner, speaker_of
from .router import Post


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}")
    return value


def _str_field(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string")
    return value


async def health(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    return web.json_response({
        "ok": True,
        "version": __version__,
        "uptime": round(time.monotonic() - gw.started, 3),
        "messages": gw.store.last_id,
        "agents_online": sorted(gw.hub.agents),
        "watchers": len(gw.hub.watchers),
        "status": gw.status_text(),
        "store_batches": gw.store.batches,  # group commits so far (see `make bench`)
    })


def _post_of(data: object, sender: str) -> Post:
    """A post from its JSON object, every field checked."""
    if not isinstance(data, dict):
        raise BadRequest("a message must be a JSON object")
    to = data.get("to", [])
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not all(isinstance(t, str) for t in to):
        raise BadRequest("'to' must be a list of addresses such as [\"@all\"]")
    content = _str_field(data, "content")
    if content is None:
        raise BadRequest("'content' is required")
    kind = _str_field(data, "kind", "chat") or "chat"
    room = _str_field(data, "room")
    if room is not None:
        check_name(room, "room name")
    urgent = data.get("urgent", False)
    if not isinstance(urgent, bool):
        raise BadRequest("'urgent' must be true or false")
    return Post(sender=sender, to=to, content=content, kind=kind, room=room, urgent=urgent)


async def post_message(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    sender = speaker_of(request)
    post = _post_of(await read_json(request), sender)
    gw.limiter.take(sender)
    message = await gw.router.post(post)
    gw.update_status()
    return web.json_response(message.to_json(), status=201)


# messages in one POST /v1/messages:batch (the body is bounded by client_max_size too)
BATCH_MAX = 1000


async def post_batch(request: web.Request) -> web.Response:
    """``POST /v1/messages:batch`` ``{"messages": [{to, content, ...}, ...]}``: many
    messages in one request, for volume (a script relaying a log, a bridge).

    Each is what ``POST /v1/messages`` takes and counts against the rate limit as
    one message.  All are checked before any is stored: one bad message refuses the
    batch (400 naming its index) and nothing is stored.  Then all are stored in one
    transaction, in order, and the answer (201) comes once they are durable:
    ``{"messages": [{"id", "ts"}, ...]}`` in the order sent.
    """
    gw = gateway_of(request)
    sender = speaker_of(request)
    data = await read_json(request)
    items = data.get("messages")
    if not isinstance(items, list) or not 1 <= len(items) <= BATCH_MAX:
        raise BadRequest(f"'messages' must be a list of 1 to {BATCH_MAX} messages")
    posts = []
    for i, item in enumerate(items):
        try:
            posts.append(_post_of(item, sender))
        except BadRequest as exc:
            raise BadRequest(f"messages[{i}]: {exc.message}") from None
    for _ in posts:
        gw.limiter.take(sender)
    messages = await gw.router.post_many(posts)
    gw.update_status()
    return web.json_response({"messages": [{"id": m.id, "ts": m.ts} for m in messages]},
                             status=201)


async def history(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    room = request.query.get("room")
    if room is not None:
        check_name(room, "room name")
    since = _int_param(request, "since", 0, 0, 2**62)
    limit = _int_param(request, "limit", 100, 1, gw.config.history_limit_max)
    # the newest id *before* the query: a follower that resumes from here after
    # showing these messages misses nothing committed in between
    last_id = gw.store.last_id
    messages = await gw.store.history(room, since, limit)
    return web.json_response({"messages": [m.to_json() for m in messages],
                              "last_id": last_id})


async def list_agents(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    out = []
    for rec in await gw.store.agents():
        sub = gw.hub.agents.get(rec.name)
        state = sub.state if sub else None
        out.append({
            "name": rec.name,
            "profile": rec.profile,
            "room": rec.room,
            "command": rec.command,
            "online": sub is not None,
            "state": state.state if state else "offline",
            "queue": state.queue if state else 0,
            "reason": state.reason if state else "",
            "pending": await gw.store.pending_count(rec.name),
            "pid": state.pid if state else None,
            "dbus_name": state.dbus_name if state else None,
            "last_seen": rec.last_seen,
        })
    return web.json_response({"agents": presence.with_bus(request.app, out)})


async def forget_agent(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    name = check_name(request.match_info["name"])
    owner(request, gw, "forgetting an agent")  # it drops what waits for that agent
    if name not in gw.router.known:
        raise NotFound(f"unknown agent {name!r}", names=[name])
    if gw.hub.online(name):
        raise Conflict(f"{name} is online; stop its sidecar first")
    await gw.store.forget_agent(name)
    gw.router.known.discard(name)
    gw.router.agent_rooms.pop(name, None)
    return web.json_response({"forgotten": name})


CONTROL_ACTIONS = ("pause", "resume", "interrupt")


async def control_agent(request: web.Request) -> web.Response:
    """Pass a control action to a running sidecar (``cspctl pause NAME``).

    Control is the owner's: an agent must not be able to silence another.
    """
    gw = gateway_of(request)
    name = check_name(request.match_info["name"])
    by = owner(request, gw, "control (pause, resume, interrupt)")
    data = await read_json(request)
    action = data.get("action")
    if action not in CONTROL_ACTIONS:
        raise BadRequest(f"'action' must be one of {', '.join(CONTROL_ACTIONS)}")
    if name not in gw.router.known:
        raise NotFound(f"unknown agent {name!r}", names=[name])
    if not gw.hub.control(name, {"type": "control", "action": action, "by": by}):
        raise NotFound(f"{name} is not online", names=[name])
    return web.json_response({"agent": name, "action": action}, status=202)


async def ack(request: web.Request) -> web.Response:
    """A receiver acknowledges delivered messages: only its own pending ones go."""
    gw = gateway_of(request)
    who = speaker_of(request)  # an agent's process is that agent, whatever it claims
    data = await read_json(request)
    ids = data.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and i >= 0 for i in ids):
        raise BadRequest("'ids' must be a list of message ids")
    removed = await gw.store.ack(who, ids)
    return web.json_response({"acked": removed})


async def list_rooms(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    rooms = [{"name": r.name, "relay": r.relay, "hop_limit": r.hop_limit or gw.config.hop_limit,
              "hops": await _room_hops(gw, r.name), "members": members, "created": r.created}
             for r, members in await gw.store.rooms()]
    return web.json_response({"rooms": rooms, "default": gw.config.default_room})


async def _room_hops(gw: Gateway, room: str) -> int:
    known = gw.router.hops_in(room)
    return known if known is not None else await gw.store.room_hops(room)


async def create_room(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    data = await read_json(request)
    name = check_name(_str_field(data, "name") or "", "room name")
    existed = await gw.store.room(name) is not None
    await gw.store.ensure_room(name)
    await gw.store.join(name, speaker_of(request))
    return web.json_response({"name": name, "created": not existed},
                             status=200 if existed else 201)


async def _room_or_404(request: web.Request) -> str:
    gw = gateway_of(request)
    room = check_name(request.match_info["room"], "room name")
    if await gw.store.room(room) is None:
        raise NotFound(f"no room #{room}", room=room)
    return room


def _member_name(request: web.Request, data: dict[str, Any]) -> str:
    """Whose membership changes: the speaker's own, or anyone's for the owner (an
    agent that could make another leave its room could silence it)."""
    gw = gateway_of(request)
    me = speaker_of(request)
    name = _str_field(data, "name") or me
    who = caller(request, gw)
    if name != me and not who.is_owner:
        raise Forbidden(f"{who.describe()}; it cannot change {name!r}'s rooms",
                        agent=who.agent)
    if name != HUMAN and check_name(name) not in gw.router.known:
        raise NotFound(f"unknown agent {name!r}", names=[name])
    return name


async def join_room(request: web.Request) -> web.Response:
    room, name = await _membership(request)
    await gateway_of(request).store.join(room, name)
    return web.json_response({"room": room, "joined": name})


async def leave_room(request: web.Request) -> web.Response:
    room, name = await _membership(request)
    await gateway_of(request).store.leave(room, name)
    return web.json_response({"room": room, "left": name})


async def _membership(request: web.Request) -> tuple[str, str]:
    """The room (404 if unknown) and whose membership changes (the speaker's own,
    unless the owner names another)."""
    room = await _room_or_404(request)
    return room, _member_name(request, await read_json(request) if request.can_read_body else {})


async def update_room(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    owner(request, gw, "a room's relay and hop limit")  # the loop guard is not the agents'
    room = await _room_or_404(request)
    data = await read_json(request)
    relay = data.get("relay")
    hop_limit = data.get("hop_limit")
    if relay is not None and not isinstance(relay, bool):
        raise BadRequest("'relay' must be true or false")
    if hop_limit is not None and (not isinstance(hop_limit, int) or isinstance(hop_limit, bool)
                                  or not 1 <= hop_limit <= 1000):
        raise BadRequest("'hop_limit' must be an integer from 1 to 1000")
    await gw.store.update_room(room, relay=relay, hop_limit=hop_limit)
    return web.json_response({"room": room, "relay": relay, "hop_limit": hop_limit})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{API}/health", health)
    app.router.add_post(f"{API}/messages", post_message)
    app.router.add_post(f"{API}/messages:batch", post_batch)
    app.router.add_get(f"{API}/messages", history)
    app.router.add_get(f"{API}/agents", list_agents)
    app.router.add_delete(f"{API}/agents/{{name}}", forget_agent)
    app.router.add_post(f"{API}/agents/{{name}}/control", control_agent)
    app.router.add_post(f"{API}/ack", ack)
    app.router.add_get(f"{API}/rooms", list_rooms)
    app.router.add_post(f"{API}/rooms", create_room)
    app.router.add_patch(f"{API}/rooms/{{room}}", update_room)
    app.router.add_post(f"{API}/rooms/{{room}}/join", join_room)
    app.router.add_post(f"{API}/rooms/{{room}}/leave", leave_room)
