"""Backlogs: a watcher whose backlog is longer than one history page still misses
nothing; an agent back after a long absence gets the recent messages and one
summary line for the rest, once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cspd import hub as hub_mod
from cspd import stream as stream_mod
from cspd.store import StorageUnavailable
from tests.polling import async_wait_for
from tests.unit.conftest import Api, config, start_api, stop_api
from tests.unit.test_stream import connect, next_message, post


async def test_watcher_backlog_longer_than_a_page(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    api = await start_api(tmp_path, config(history_limit_max=3))
    try:
        ids = [await post(api, [], f"m{i}") for i in range(8)]
        ws = await connect(api, since=str(ids[0]))
        live = await post(api, [], "live")
        got = [(await next_message(ws))["id"] for _ in range(len(ids))]
        assert got == [*ids[1:], live]
        await ws.close()
    finally:
        await stop_api(api)


async def test_watcher_cut_loose_is_hung_up_and_resumes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a backlog longer than the subscriber's queue: the gateway sends what fits,
    # hangs up, and the client resumes from the last id it saw; nothing is missed
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(hub_mod, "MAX_QUEUE", 5)
    api = await start_api(tmp_path, config(history_limit_max=4))
    try:
        ids = [await post(api, [], f"m{i}") for i in range(13)]
        seen: list[int] = []
        cursor = ids[0]
        for _ in range(10):  # bounded: 12 messages at up to 5 per connection
            ws = await connect(api, since=str(cursor))
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame["type"] == "message":
                    seen.append(frame["message"]["id"])
                if seen and seen[-1] == ids[-1]:
                    break
            await ws.close()
            if seen and seen[-1] == ids[-1]:
                break
            assert seen, "no progress"
            cursor = seen[-1]
        assert seen == ids[1:]
    finally:
        await stop_api(api)


# -- an agent coming back ----------------------------------------------------


@pytest.fixture
async def bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """A gateway that keeps at most 5 messages for an absent agent."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    api = await start_api(tmp_path, config(pending_max_count=5))
    try:
        yield api
    finally:
        await stop_api(api)


async def _offline(api: Api, name: str) -> bool:
    return not api.gw.hub.online(name)


async def away(api: Api, name: str) -> None:
    """Register ``name`` as an agent, then leave; returns once the gateway knows."""
    ws = await connect(api, agent=name)
    await ws.close()
    await async_wait_for(lambda: _offline(api, name), what=f"{name} offline")


async def quiet(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Everything but notices that arrives before a pong: what else the agent got."""
    await ws.send_json({"type": "ping"})
    got = []
    while (frame := await ws.receive_json(timeout=10))["type"] != "pong":
        if frame["type"] == "message" and frame["message"]["kind"] != "system":
            got.append(frame["message"])
    return got


async def test_agent_back_gets_recent_messages_and_one_summary(bounded: Api) -> None:
    api = bounded
    await away(api, "codex")
    sent = [await post(api, ["@codex"], f"while away {i}") for i in range(8)]
    watcher = await connect(api, since=str(sent[-1]))

    ws = await connect(api, agent="codex")
    got = [await next_message(ws) for _ in range(6)]
    assert [m["id"] for m in got[:5]] == sent[3:]
    summary = got[5]
    assert (summary["from"], summary["to"], summary["kind"]) == ("system", ["codex"], "direct")
    assert summary["content"] == ("3 older messages while you were away: "
                                  f"`cspctl history --room main --since {sent[0] - 1}`")
    assert await quiet(ws) == []
    # the human watching the room sees the line too
    assert (await next_message(watcher))["id"] == summary["id"]
    await watcher.close()

    # acknowledged: gone for good, and the next return brings no new summary
    await ws.send_json({"type": "ack", "ids": [m["id"] for m in got]})
    assert await quiet(ws) == []
    await ws.close()
    await async_wait_for(lambda: _offline(api, "codex"), what="codex offline")
    ws = await connect(api, agent="codex")
    assert await quiet(ws) == []
    live = await post(api, ["@codex"], "hello again")
    assert (await next_message(ws))["id"] == live
    await ws.close()


async def test_unacknowledged_summary_comes_again_with_the_same_id(bounded: Api) -> None:
    api = bounded
    await away(api, "codex")
    for i in range(7):
        await post(api, ["@codex"], f"m{i}")
    ws = await connect(api, agent="codex")
    first = [(await next_message(ws))["id"] for _ in range(6)]
    await ws.close()  # gone before typing anything in
    await async_wait_for(lambda: _offline(api, "codex"), what="codex offline")
    ws = await connect(api, agent="codex")
    again = [(await next_message(ws))["id"] for _ in range(6)]
    assert again == first  # the same messages and the same summary: the sidecar dedups by id
    assert await quiet(ws) == []
    await ws.close()


async def test_agent_backlog_is_read_page_by_page(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(stream_mod, "PENDING_PAGE", 3)
    api = await start_api(tmp_path, config(pending_max_count=100))
    try:
        await away(api, "codex")
        sent = [await post(api, ["@codex"], f"m{i}") for i in range(10)]
        ws = await connect(api, agent="codex")
        assert [(await next_message(ws))["id"] for _ in range(10)] == sent
        assert await quiet(ws) == []  # each once, no summary: nothing was stale
        await ws.close()
    finally:
        await stop_api(api)


async def test_full_disk_replays_only_recent_and_drops_nothing(
        bounded: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = bounded
    await away(api, "codex")
    sent = [await post(api, ["@codex"], f"m{i}") for i in range(8)]

    async def cannot_write(*args: object, **kw: object) -> None:
        raise StorageUnavailable("disk full", reason="database or disk is full")
    monkeypatch.setattr(api.gw.store, "expire_pending", cannot_write)
    monkeypatch.setattr(stream_mod, "PENDING_PAGE", 3)  # the recent ones are on the last page
    ws = await connect(api, agent="codex")
    assert [(await next_message(ws))["id"] for _ in range(5)] == sent[3:]
    assert await quiet(ws) == []  # no summary, and not the old ones either
    await ws.close()
    assert await api.gw.store.pending_count("codex") == 8  # summed up next time
