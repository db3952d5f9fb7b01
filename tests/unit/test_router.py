"""Addressing, limits and the loop guard, against a real Store and Hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from csp_core.errors import BadRequest, NotFound, PayloadTooLarge, UnknownRecipient
from csp_core.protocol import Message
from cspd.hub import Hub, Subscriber
from cspd.router import Post, Router
from cspd.store import Store
from tests.unit.conftest import Api, config


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[Router]:
    store = Store(tmp_path / "db.sqlite3")
    await store.open()
    r = Router(store, Hub(), config(hop_limit=3))
    await r.load()
    for name in ("claude", "codex", "gemini"):
        await r.register(name, name, "main", name)
    try:
        yield r
    finally:
        await store.close()


async def pending(r: Router, name: str) -> list[int]:
    return [m.id for m in await r.store.pending(name)]


async def test_all_reaches_every_member_but_sender(router: Router) -> None:
    m = await router.post(Post("claude", ["@all"], "hi all"))
    assert m.to == ["all"] and m.kind == "chat" and m.room == "main"
    assert await pending(router, "codex") == [m.id]
    assert await pending(router, "gemini") == [m.id]
    assert await pending(router, "claude") == []


async def test_no_address_means_the_room(router: Router) -> None:
    m = await router.post(Post("human", [], "hello"))
    assert m.to == ["all"]
    for name in ("claude", "codex", "gemini"):
        assert await pending(router, name) == [m.id]


async def test_direct_reaches_only_named(router: Router) -> None:
    m = await router.post(Post("human", ["@codex", "@gemini", "@codex"], "psst"))
    assert m.kind == "direct" and m.to == ["codex", "gemini"]
    assert await pending(router, "codex") == [m.id]
    assert await pending(router, "gemini") == [m.id]
    assert await pending(router, "claude") == []


async def test_room_address(router: Router) -> None:
    await router.store.ensure_room("dev")
    await router.store.join("dev", "codex")
    m = await router.post(Post("human", ["#dev"], "in dev"))
    assert m.room == "dev"
    assert await pending(router, "codex") == [m.id]
    assert await pending(router, "claude") == []
    with pytest.raises(NotFound, match="#nope"):
        await router.post(Post("human", ["#nope"], "x"))


async def test_unknown_recipient_is_named(router: Router) -> None:
    with pytest.raises(UnknownRecipient) as err:
        await router.post(Post("human", ["@codex", "@ghost", "@spook"], "x"))
    assert err.value.status == 404
    assert "@ghost" in err.value.message and "@spook" in err.value.message
    assert err.value.details["names"] == ["ghost", "spook"]
    assert await router.store.history(None, 0, 10) == []  # nothing stored


async def test_size_limit(router: Router) -> None:
    limit = 64 * 1024
    assert router.config.max_message_bytes == limit
    await router.post(Post("human", [], "x" * limit))
    with pytest.raises(PayloadTooLarge) as err:
        await router.post(Post("human", [], "x" * (limit + 1)))
    assert err.value.status == 413
    with pytest.raises(PayloadTooLarge):  # bytes, not characters
        await router.post(Post("human", [], "é" * (limit // 2 + 1)))


@pytest.mark.parametrize("content", [
    "", "   ", "\n\t ", "\x1b\x03\r\n", "\u200b\u200d\u2060\ufeff", "\u202e\u2066 \u200f",
    "\U000e0041\U000e0042", "\ue000\U000f0001", "\ufdd0\uffff", "\x1b"])
async def test_empty_message(router: Router, content: str) -> None:
    with pytest.raises(BadRequest, match="empty message") as err:
        await router.post(Post("human", [], content))
    assert err.value.status == 400
    assert await router.store.history(None, 0, 10) == []  # nothing stored


async def test_a_message_with_something_visible_is_stored_as_sent(router: Router) -> None:
    m = await router.post(Post("human", [], "\u200bhi\u202e\r"))
    assert m.content == "\u200bhi\u202e\r"  # readers clean what they show


async def test_the_api_answers_a_message_with_nothing_visible_with_400(api: Api) -> None:
    r = await api.client.post("/v1/messages", json={"to": ["@all"], "content": "\u200b\u202e"},
                              headers=api.headers())
    body = await r.json()
    assert r.status == 400 and body["error"] == "bad_request"
    assert "empty message" in body["message"]


async def test_nothing_visible_but_lone_surrogates_is_a_bad_request(router: Router) -> None:
    with pytest.raises(BadRequest):
        await router.post(Post("human", [], "\ud800\u200b"))


async def test_unencodable_text_is_a_bad_request(router: Router) -> None:
    with pytest.raises(BadRequest):
        await router.post(Post("human", [], "lone \ud800 surrogate"))


async def test_clients_cannot_post_system_messages(router: Router) -> None:
    with pytest.raises(BadRequest):
        await router.post(Post("human", [], "x", kind="system"))


async def test_loop_guard_halts_after_hop_limit(router: Router) -> None:
    # three agent hops pass (limit 3), the fourth is stored but reaches no agent
    sent = []
    for i in range(3):
        sender, to = ("claude", "@codex") if i % 2 == 0 else ("codex", "@claude")
        sent.append(await router.post(Post(sender, [to], f"hop {i}")))
    assert [m.hops for m in sent] == [1, 2, 3]
    before = {n: await pending(router, n) for n in ("claude", "codex")}
    halted = await router.post(Post("codex", ["@claude"], "hop 3"))
    more = await router.post(Post("claude", ["@codex"], "hop 4"))
    assert {n: await pending(router, n) for n in ("claude", "codex")} == before
    history = await router.store.history(None, 0, 100)
    notices = [m for m in history if m.kind == "system"]
    assert len(notices) == 1 and "relay paused" in notices[0].content
    assert halted.id in [m.id for m in history] and more.id in [m.id for m in history]

    # a human speaking resets the count and relaying resumes
    human = await router.post(Post("human", ["@codex"], "carry on"))
    assert human.hops == 0
    again = await router.post(Post("codex", ["@claude"], "resumed"))
    assert again.hops == 1 and again.id in await pending(router, "claude")


async def test_concurrent_agent_posts_each_count_a_hop(router: Router) -> None:
    posts = [Post("claude" if i % 2 else "codex", ["@gemini"], f"burst {i}") for i in range(6)]
    sent = await asyncio.gather(*(router.post(p) for p in posts))
    assert sorted(m.hops for m in sent) == [1, 2, 3, 4, 5, 6]
    notices = [m for m in await router.store.history(None, 0, 100) if m.kind == "system"]
    assert len(notices) == 1  # the relay stops once, and says so once


async def test_lowering_the_hop_limit_still_announces_the_stop(router: Router) -> None:
    for i in range(2):
        await router.post(Post("claude", ["@codex"], f"hop {i}"))
    await router.store.update_room("main", hop_limit=1)
    late = await router.post(Post("codex", ["@claude"], "over the new limit"))
    assert late.id not in await pending(router, "claude")
    notices = [m for m in await router.store.history(None, 0, 100) if m.kind == "system"]
    assert len(notices) == 1 and "relay paused" in notices[0].content


async def test_output_reaches_only_mentioned_agents(router: Router) -> None:
    quiet = await router.post(Post("claude", [], "just thinking aloud", kind="output"))
    assert await pending(router, "codex") == [] and await pending(router, "gemini") == []
    assert quiet.hops == 0  # reached no agent, so no hop either
    m = await router.post(Post("claude", [], "@codex please review", kind="output"))
    assert await pending(router, "codex") == [m.id]
    assert await pending(router, "gemini") == []


async def test_a_quoted_csp_tag_in_output_addresses_no_one(router: Router) -> None:
    # an agent quotes the prompt it was given: the names in csp's own tag are not its words
    quoted = "You asked:\n[human → @codex @gemini] compare notes\nHere is my answer."
    m = await router.post(Post("claude", [], quoted, kind="output"))
    assert await pending(router, "codex") == [] and await pending(router, "gemini") == []
    assert m.hops == 0
    # its own words still route, on the lines that are not a tag
    said = await router.post(Post("claude", [], f"{quoted}\n@gemini what do you think?",
                                  kind="output"))
    assert await pending(router, "gemini") == [said.id]
    assert await pending(router, "codex") == []
    # an invisible character cannot hide a name from the reader but route it
    hidden = await router.post(Post("claude", [], "@co\u200bdex look", kind="output"))
    assert await pending(router, "codex") == [hidden.id]


async def test_output_reaches_the_room_when_it_relays(router: Router) -> None:
    await router.store.update_room("main", relay=True)
    m = await router.post(Post("claude", [], "working...", kind="output"))
    assert await pending(router, "codex") == [m.id]
    assert await pending(router, "gemini") == [m.id]
    assert await pending(router, "claude") == []


async def test_published_to_live_subscribers(router: Router) -> None:
    got: list[int] = []

    async def send(frame: dict[str, object]) -> None:
        message = frame["message"]
        assert isinstance(message, dict)
        got.append(int(message["id"]))

    sub = Subscriber(send, agent="codex")
    router.hub.add(sub)
    sub.finish_replay([])
    m1 = await router.post(Post("human", ["@codex"], "one"))
    await router.post(Post("human", ["@claude"], "not for codex"))
    m3 = await router.post(Post("human", [], "everyone"))
    sub.close()
    await sub.run_writer()
    assert got == [m1.id, m3.id]


def test_message_json_contract() -> None:
    m = Message(1, "main", "human", ["all"], "chat", "hi", "2026-01-01T00:00:00.000Z")
    data = m.to_json()
    assert {"id", "room", "from", "to", "kind", "content", "ts"} <= set(data)
    assert Message.from_json(data) == m


async def test_the_hop_count_survives_a_gateway_restart(router: Router) -> None:
    for i in range(3):  # the limit (3) is reached...
        await router.post(Post("claude" if i % 2 else "codex", ["@gemini"], f"hop {i}"))
    restarted = Router(router.store, Hub(), config(hop_limit=3))
    await restarted.load()
    over = await restarted.post(Post("codex", ["@gemini"], "one hop too many"))
    assert over.hops == 4  # ...and a restarted gateway goes on counting, not from 0
    assert over.id not in await pending(restarted, "gemini")
