"""A watcher whose backlog is longer than one history page still misses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from cspd import hub as hub_mod
from tests.unit.conftest import config, start_api, stop_api
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
