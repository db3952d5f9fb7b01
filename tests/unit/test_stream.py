"""The WebSocket stream against the real in-process app: replay, live, acks."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.unit.conftest import Api


async def post(api: Api, to: list[str], content: str, agent: str | None = None) -> int:
    r = await api.client.post("/v1/messages", json={"to": to, "content": content},
                              headers=api.headers(agent))
    assert r.status == 201, await r.text()
    return int((await r.json())["id"])


async def connect(api: Api, **params: str) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect("/v1/stream", params=params, headers=api.headers())
    hello = await ws.receive_json(timeout=10)
    assert hello["type"] == "hello"
    return ws


async def next_message(ws: aiohttp.ClientWebSocketResponse,
                       skip_system: bool = True) -> dict[str, Any]:
    while True:
        frame = await ws.receive_json(timeout=10)
        if frame["type"] != "message":
            continue
        message: dict[str, Any] = frame["message"]
        if skip_system and message["kind"] == "system":
            continue
        return message


async def pending_of(api: Api, name: str) -> list[int]:
    return [m.id for m in await api.gw.store.pending(name)]


async def test_agent_gets_pending_then_live_and_acks(api: Api) -> None:
    ws = await connect(api, agent="codex")  # registers codex
    await ws.close()
    queued = [await post(api, ["@codex"], f"queued {i}") for i in range(3)]
    assert await pending_of(api, "codex") == queued

    ws = await connect(api, agent="codex")
    got = [(await next_message(ws))["id"] for _ in range(3)]
    assert got == queued
    live = await post(api, ["@codex"], "live")
    assert (await next_message(ws))["id"] == live
    await ws.send_json({"type": "ack", "ids": [*queued, live]})
    await ws.send_json({"type": "ping"})
    while (await ws.receive_json(timeout=10))["type"] != "pong":
        pass
    assert await pending_of(api, "codex") == []
    await ws.close()


async def test_reconnect_misses_nothing(api: Api) -> None:
    ws = await connect(api, agent="claude")
    first = await post(api, ["@claude"], "one")
    assert (await next_message(ws))["id"] == first
    await ws.close()  # gone without acking
    while_away = await post(api, ["@claude"], "two")
    ws = await connect(api, agent="claude")
    assert [(await next_message(ws))["id"] for _ in range(2)] == [first, while_away]
    await ws.close()


async def test_duplicate_agent_name_conflicts(api: Api) -> None:
    ws = await connect(api, agent="gemini")
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await api.client.ws_connect("/v1/stream", params={"agent": "gemini"},
                                    headers=api.headers())
    assert err.value.status == 409
    await ws.close()
    # once the first one is gone, the name is free again
    again = await connect(api, agent="gemini")
    await again.close()


async def test_watcher_replays_after_since_then_live(api: Api) -> None:
    ids = [await post(api, [], f"m{i}") for i in range(4)]
    ws = await connect(api, since=str(ids[1]))
    assert [(await next_message(ws))["id"] for _ in range(2)] == ids[2:]
    live = await post(api, [], "live")
    assert (await next_message(ws))["id"] == live
    await ws.close()


async def test_watcher_of_one_room(api: Api) -> None:
    r = await api.client.post("/v1/rooms", json={"name": "dev"}, headers=api.headers())
    assert r.status == 201
    ws = await connect(api, room="dev", since="0")
    await post(api, [], "main room")
    dev = await post(api, ["#dev"], "dev room")
    assert (await next_message(ws))["id"] == dev
    await ws.close()


@pytest.mark.parametrize("params,status", [
    ({"agent": "Bad Name"}, 400), ({"agent": "all"}, 400), ({"since": "x"}, 400),
    ({"room": "../etc"}, 400)])
async def test_bad_stream_params(api: Api, params: dict[str, str], status: int) -> None:
    r = await api.client.get("/v1/stream", params=params, headers=api.headers())
    assert r.status == status
    body = await r.json()
    assert set(body) >= {"error", "message"}


async def test_bad_frames_get_error_frames(api: Api) -> None:
    ws = await connect(api, agent="codex")
    for frame in ("not json", "[1]", '{"type": "nope"}', '{"type": "ack", "ids": "x"}',
                  '{"type": "state", "state": "dancing"}'):
        await ws.send_str(frame)
        while (reply := await ws.receive_json(timeout=10))["type"] == "message":
            pass
        assert reply["type"] == "error"
    # still alive and serving
    live = await post(api, ["@codex"], "still here")
    assert (await next_message(ws))["id"] == live
    await ws.close()


async def test_state_frame_shows_in_agents(api: Api) -> None:
    ws = await connect(api, agent="codex")
    await ws.send_json({"type": "state", "state": "busy", "queue": 2, "pid": 4242})
    await ws.send_json({"type": "ping"})
    while (await ws.receive_json(timeout=10))["type"] != "pong":
        pass
    r = await api.client.get("/v1/agents", headers=api.headers())
    (agent,) = (await r.json())["agents"]
    assert (agent["name"], agent["online"], agent["state"], agent["queue"], agent["pid"]) == (
        "codex", True, "busy", 2, 4242)
    await ws.close()


async def test_watcher_with_huge_since_is_served(api: Api) -> None:
    ws = await connect(api, since=str(10**30))
    live = await post(api, [], "after")
    # nothing can be after 10**30: the watcher is quiet but the connection works
    await ws.send_json({"type": "ping"})
    frame = await ws.receive_json(timeout=10)
    assert frame["type"] in ("pong", "message")
    assert live > 0
    await ws.close()


async def test_health_counts_store_batches(api: Api) -> None:
    await post(api, [], "one")
    r = await api.client.get("/v1/health", headers=api.headers())
    body = await r.json()
    assert body["store_batches"] >= 1 and body["messages"] >= 1
