"""``POST /v1/messages:batch``: many messages in one request, all or none, in order,
durable before the 201; and the room/member cache a post reads from."""

from __future__ import annotations

from tests.unit.conftest import Api

BATCH = "/v1/messages:batch"


async def _history(api: Api) -> list[dict[str, object]]:
    r = await api.client.get("/v1/messages", params={"limit": "1000"}, headers=api.headers())
    assert r.status == 200
    return list((await r.json())["messages"])


async def test_a_batch_is_stored_in_order_and_answered_with_its_ids(api: Api) -> None:
    before = await _history(api)
    commits = api.gw.store.batches
    body = {"messages": [{"to": ["@all"], "content": f"line {i}"} for i in range(50)]}
    r = await api.client.post(BATCH, json=body, headers=api.headers())
    assert r.status == 201, await r.text()
    ids = [m["id"] for m in (await r.json())["messages"]]
    assert ids == sorted(ids) and len(set(ids)) == 50
    stored = (await _history(api))[len(before):]
    assert [m["content"] for m in stored] == [f"line {i}" for i in range(50)]
    assert [m["id"] for m in stored] == ids
    assert api.gw.store.batches - commits == 1  # committed together, not one by one


async def test_one_bad_message_refuses_the_whole_batch(api: Api) -> None:
    before = await _history(api)
    body = {"messages": [{"to": ["@all"], "content": "fine"},
                         {"to": ["@all"], "content": "  "},  # blank: refused
                         {"to": ["@all"], "content": "fine too"}]}
    r = await api.client.post(BATCH, json=body, headers=api.headers())
    assert r.status == 400
    assert (await _history(api)) == before
    r = await api.client.post(BATCH, json={"messages": [{"to": ["@nobody"], "content": "x"}]},
                              headers=api.headers())
    assert r.status == 404
    r = await api.client.post(BATCH, json={"messages": [{"content": 3}]}, headers=api.headers())
    assert r.status == 400 and "messages[0]" in (await r.json())["message"]
    assert (await _history(api)) == before


async def test_batch_shape_is_checked(api: Api) -> None:
    for body in ({}, {"messages": []}, {"messages": "x"},
                 {"messages": [{"content": "x"}] * 1001}):
        r = await api.client.post(BATCH, json=body, headers=api.headers())
        assert r.status == 400, body
        assert set(await r.json()) >= {"error", "message"}
    r = await api.client.post(BATCH, json={"messages": [{"content": "x"}]})  # no token
    assert r.status == 401


async def test_membership_changes_reach_the_next_post(api: Api) -> None:
    """Rooms and members are cached for posts; every change is seen by the next one."""
    store = api.gw.store
    await store.ensure_room("dev")
    await store.upsert_agent("codex", "", "dev", "")
    api.gw.router.known.add("codex")
    assert await store.members("dev") == []
    await store.join("dev", "codex")
    assert await store.members("dev") == ["codex"]
    r = await api.client.post("/v1/messages", json={"to": ["@all"], "content": "hi",
                                                    "room": "dev"}, headers=api.headers())
    assert r.status == 201
    assert [m.content for m in await store.pending("codex")] == ["hi"]
    await store.leave("dev", "codex")
    assert await store.members("dev") == []
    r = await api.client.post("/v1/messages", json={"to": ["@all"], "content": "bye",
                                                    "room": "dev"}, headers=api.headers())
    assert r.status == 201
    assert [m.content for m in await store.pending("codex")] == ["hi"]
    await store.update_room("dev", relay=True)
    room = await store.room("dev")
    assert room is not None and room.relay
