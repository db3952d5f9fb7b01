"""Identity from the connection: process trees, agent credentials, the owner's rules.

The in-process app listens on TCP here (the test server) and, for the kernel's
word on who is calling, on a unix socket too.  The end-to-end case -- a
process in an agent's pane trying to pass for another agent -- is in
tests/integration/test_identity.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from csp_core import auth
from csp_core.endpoint import AGENT_TOKEN_ENV
from csp_core.errors import Conflict, Forbidden, Unauthorized
from csp_core.proctree import AgentTree, Proc, ProcInfo, ancestry, read_proc
from cspd.app import create_app
from cspd.hub import Hub, Subscriber
from cspd.identity import Caller
from tests.polling import async_wait_for
from tests.unit.conftest import Api

# -- /proc ---------------------------------------------------------------------


def test_ancestry_of_this_process_reaches_its_parent() -> None:
    chain = ancestry(os.getpid())
    assert chain[0].proc.pid == os.getpid() and chain[0].ppid == os.getppid()
    assert chain[1].proc.pid == os.getppid()
    assert chain[0].session == os.getsid(0)


def test_read_proc_survives_odd_command_names(tmp_path: Path) -> None:
    # the command name may hold spaces and parentheses: fields count from the last ')'
    (tmp_path / "42").mkdir()
    rest = " ".join(str(n) for n in range(100, 150))
    (tmp_path / "42" / "stat").write_text(f"42 (a) (b c) S 7 8 9 {rest}\n")
    info = read_proc(42, tmp_path)
    assert info == ProcInfo(Proc(42, 115), ppid=7, session=9)  # field 22
    assert read_proc(43, tmp_path) is None  # gone
    (tmp_path / "44").mkdir()
    (tmp_path / "44" / "stat").write_text("44 (short) S 1\n")
    assert read_proc(44, tmp_path) is None


def _fake_proc(root: Path, pid: int, ppid: int, session: int, start: int) -> None:
    (root / str(pid)).mkdir(exist_ok=True)
    fields = ["S", str(ppid), str(pid), str(session)] + ["0"] * 15 + [str(start)]
    (root / str(pid) / "stat").write_text(f"{pid} (p) {' '.join(fields)}\n")


def test_tree_holds_descendants_and_its_session_but_not_a_reused_pid(tmp_path: Path) -> None:
    # 10 is the sidecar; 20 the agent CLI (a session leader); 30 runs in its session
    _fake_proc(tmp_path, 10, 1, 5, start=100)
    _fake_proc(tmp_path, 20, 10, 20, start=200)
    _fake_proc(tmp_path, 30, 20, 20, start=300)
    tree = AgentTree(sidecar=Proc(10, 100))
    assert tree.holds(ancestry(30, tmp_path), tmp_path)
    assert tree.adopt_session(20, tmp_path) and tree.session == Proc(20, 200)
    # 30 orphaned (reparented to 1): out of the tree, still in the agent's session
    _fake_proc(tmp_path, 30, 1, 20, start=300)
    assert tree.holds(ancestry(30, tmp_path), tmp_path)
    # the sidecar's pid reused by another process: no longer the agent
    assert not AgentTree(sidecar=Proc(10, 999)).holds(ancestry(20, tmp_path), tmp_path)
    # the session leader's pid running again as another process: not the agent's session
    _fake_proc(tmp_path, 20, 1, 20, start=777)
    assert not tree.holds(ancestry(30, tmp_path), tmp_path)


def test_adopt_session_only_for_a_session_leader_under_the_sidecar(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 10, 1, 5, start=100)
    _fake_proc(tmp_path, 20, 10, 5, start=200)  # under the sidecar, not a session leader
    _fake_proc(tmp_path, 40, 1, 40, start=400)  # a session leader elsewhere
    tree = AgentTree(sidecar=Proc(10, 100))
    assert not tree.adopt_session(20, tmp_path)
    assert not tree.adopt_session(40, tmp_path)
    assert not tree.adopt_session(41, tmp_path)  # gone
    assert tree.session is None
    assert not AgentTree().adopt_session(20, tmp_path)  # over TCP: no tree to check


def test_adopt_session_of_a_real_child() -> None:
    me = ancestry(os.getpid())[0].proc
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, start_new_session=True)
    try:
        tree = AgentTree(sidecar=me)
        assert tree.adopt_session(child.pid)
        assert tree.holds(ancestry(child.pid))
        assert not AgentTree(sidecar=Proc(me.pid, me.start + 1)).holds(ancestry(child.pid))
    finally:
        child.communicate(b"", timeout=10)


# -- the rules -----------------------------------------------------------------


def test_caller_rules() -> None:
    def online(name: str) -> bool:
        return name in {"codex", "claude"}
    agent = Caller("codex", how="process")
    assert agent.speak_as(None, online) == "codex"
    assert agent.speak_as("codex", online) == "codex"
    for claim in ("claude", "human", "script"):
        with pytest.raises(Forbidden, match="belongs to agent 'codex'"):
            agent.speak_as(claim, online)
    with pytest.raises(Forbidden, match="the owner's"):
        agent.require_owner("control")
    owner = Caller()
    assert owner.speak_as(None, online) == "human"
    assert owner.speak_as("human", online) == "human"
    assert owner.speak_as("nightly", online) == "nightly"  # a script's chosen name
    with pytest.raises(Forbidden, match="online agent"):
        owner.speak_as("claude", online)
    owner.require_owner("control")


def test_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_path = tmp_path / "csp" / "token"
    token = auth.ensure_token(token_path)
    checker = auth.TokenChecker(token_path)
    assert not auth.agent_key_path(token_path).exists()  # made when first needed
    cred = checker.issue("codex")
    assert cred.startswith("agent.codex.") and token not in cred
    assert checker.issue("codex") == cred  # derived: the same after a restart
    assert auth.TokenChecker(token_path).check(f"Bearer {cred}") == "codex"
    assert checker.check(f"Bearer {token}") is None  # the owner
    assert checker.agent_of(f"Bearer {cred}") == "codex"
    assert checker.agent_of(f"Bearer {token}") is None
    forged = "agent.claude." + cred.rsplit(".", 1)[1]  # codex's MAC under claude's name
    for bad in (forged, cred[:-1], "agent.codex.", "agent.Bad!.x", "agent.codex"):
        with pytest.raises(Unauthorized):
            checker.check(f"Bearer {bad}")
        assert checker.agent_of(f"Bearer {bad}") is None
    # rotating the owner's token strands no running agent
    auth.rotate_token(token_path)
    assert checker.check(f"Bearer {cred}") == "codex"
    # what a client sends: the agent's credential inside an agent, else the token
    monkeypatch.delenv(AGENT_TOKEN_ENV, raising=False)
    assert auth.client_token(token_path) == auth.read_token(token_path)
    monkeypatch.setenv(AGENT_TOKEN_ENV, cred)
    assert auth.client_token(token_path) == cred


def test_hub_claim_is_check_and_add_in_one() -> None:
    async def sink(frame: dict[str, Any]) -> None:
        return None
    h = Hub()
    first, twin = Subscriber(sink, agent="codex"), Subscriber(sink, agent="codex")
    h.claim(first)
    with pytest.raises(Conflict):
        h.claim(twin)
    assert h.agents["codex"] is first
    h.remove(twin)  # the loser going away leaves the winner registered
    assert h.agents["codex"] is first
    h.remove(first)
    h.claim(twin)
    assert h.agents["codex"] is twin


# -- through the app, on TCP: the credential decides --------------------------


async def _register(api: Api, name: str, **headers: str) -> tuple[
        aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await api.client.ws_connect("/v1/stream", params={"agent": name},
                                     headers={**api.headers(), **headers})
    hello: dict[str, Any] = await ws.receive_json(timeout=10)
    assert hello["type"] == "hello", hello
    return ws, hello


def _as(cred: str, agent: str | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {cred}"}
    if agent:
        h["X-CSP-Agent"] = agent
    return h


async def _post(api: Api, headers: dict[str, str], to: list[str],
                content: str) -> aiohttp.ClientResponse:
    return await api.client.post("/v1/messages", json={"to": to, "content": content},
                                 headers=headers)


async def test_registration_issues_a_credential_that_speaks_for_the_agent(api: Api) -> None:
    ws, hello = await _register(api, "codex")
    cred = hello["credential"]
    assert cred.startswith("agent.codex.") and api.token not in cred
    r = await _post(api, _as(cred), ["@all"], "from codex")
    assert r.status == 201 and (await r.json())["from"] == "codex"
    r = await _post(api, _as(cred, "codex"), ["@all"], "claimed rightly")
    assert r.status == 201
    for claim in ("claude", "human"):
        r = await _post(api, _as(cred, claim), ["@all"], f"I am {claim}")
        assert r.status == 403 and (await r.json())["error"] == "forbidden"
    # the owner's token may not claim an online agent's name either
    r = await _post(api, api.headers("codex"), ["@all"], "I am codex")
    assert r.status == 403
    # ... but any other name, for a script, and human by default
    r = await _post(api, api.headers("nightly"), ["@all"], "from a script")
    assert r.status == 201 and (await r.json())["from"] == "nightly"
    r = await _post(api, api.headers(), ["@all"], "from the owner")
    assert (await r.json())["from"] == "human"
    await ws.close()


async def test_an_agent_acks_only_its_own_messages(api: Api) -> None:
    ws, hello = await _register(api, "codex")
    victim, _ = await _register(api, "claude")
    cred = hello["credential"]
    r = await _post(api, api.headers(), ["@claude"], "for claude only")
    mid = (await r.json())["id"]
    assert [m.id for m in await api.gw.store.pending("claude")] == [mid]
    r = await api.client.post("/v1/ack", json={"ids": [mid]}, headers=_as(cred, "claude"))
    assert r.status == 403
    r = await api.client.post("/v1/ack", json={"ids": [mid]}, headers=_as(cred))
    assert r.status == 200 and (await r.json())["acked"] == 0
    assert [m.id for m in await api.gw.store.pending("claude")] == [mid]
    await ws.close()
    await victim.close()


async def test_control_and_room_policy_are_the_owners(api: Api) -> None:
    ws, hello = await _register(api, "codex")
    other, _ = await _register(api, "claude")
    cred = hello["credential"]
    for action in ("pause", "resume", "interrupt"):
        r = await api.client.post("/v1/agents/claude/control", json={"action": action},
                                  headers=_as(cred))
        assert r.status == 403, action
        assert "owner's" in (await r.json())["message"]
    r = await api.client.patch("/v1/rooms/main", json={"hop_limit": 1000}, headers=_as(cred))
    assert r.status == 403
    r = await api.client.post("/v1/rooms/main/leave", json={"name": "claude"},
                              headers=_as(cred))
    assert r.status == 403
    r = await api.client.post("/v1/rooms/main/leave", json={}, headers=_as(cred))
    assert r.status == 200 and (await r.json())["left"] == "codex"  # its own: fine
    r = await api.client.delete("/v1/agents/claude", headers=_as(cred))
    assert r.status == 403
    # the owner controls
    r = await api.client.post("/v1/agents/claude/control", json={"action": "pause"},
                              headers=api.headers())
    assert r.status == 202
    frame = await other.receive_json(timeout=10)
    while frame["type"] != "control":
        frame = await other.receive_json(timeout=10)
    assert (frame["action"], frame["by"]) == ("pause", "human")
    await ws.close()
    await other.close()


async def test_a_credential_registers_no_other_agent(api: Api) -> None:
    ws, hello = await _register(api, "codex")
    cred = hello["credential"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await api.client.ws_connect("/v1/stream", params={"agent": "helper"}, headers=_as(cred))
    assert err.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await api.client.ws_connect("/v1/stream", params={"agent": "helper"},
                                    headers=api.headers("codex"))
    assert err.value.status == 403  # the header and the registered name disagree
    await ws.close()
    assert not api.gw.hub.online("helper")


async def test_simultaneous_registrations_of_one_name(api: Api) -> None:
    async def attempt() -> aiohttp.ClientWebSocketResponse | int:
        try:
            ws = await api.client.ws_connect("/v1/stream", params={"agent": "twin"},
                                             headers=api.headers())
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        frame = await ws.receive_json(timeout=10)
        if frame["type"] != "hello":
            await ws.close()
            return 409
        return ws

    results = await asyncio.gather(*(attempt() for _ in range(12)))
    winners = [r for r in results if not isinstance(r, int)]
    assert len(winners) == 1 and sorted(set(r for r in results if isinstance(r, int))) == [409]
    assert api.gw.hub.online("twin")
    await winners[0].close()
    await async_wait_for(lambda: _offline(api, "twin"), what="twin offline")


async def _offline(api: Api, name: str) -> bool:
    return not api.gw.hub.online(name)


# -- through the app, on a unix socket: the kernel decides --------------------


@pytest.fixture
async def unix_api(api: Api, tmp_path: Path) -> AsyncIterator[str]:
    """The same gateway, also on a unix socket; yields the socket's path."""
    path = str(tmp_path / "gw.sock")
    runner = web.AppRunner(create_app(api.gw))
    await runner.setup()
    site = web.UnixSite(runner, path)
    await site.start()
    try:
        yield path
    finally:
        await runner.cleanup()


async def test_on_the_unix_socket_the_process_is_the_agent(api: Api, unix_api: str) -> None:
    conn = aiohttp.UnixConnector(path=unix_api)
    async with aiohttp.ClientSession(connector=conn) as s:
        # this test process registers: it, and what it starts, is agent "me"
        ws = await s.ws_connect("http://localhost/v1/stream", params={"agent": "me"},
                                headers=api.headers())
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        other, _ = await _register(api, "other")  # over TCP: nobody's tree

        async def post(headers: dict[str, str]) -> tuple[int, Any]:
            async with s.post("http://localhost/v1/messages", headers=headers,
                              json={"to": ["@all"], "content": "hi"}) as r:
                return r.status, await r.json()

        status, body = await post(api.headers())
        assert (status, body["from"]) == (201, "me")  # the owner's token, yet the agent
        for claim in ("other", "human", "nightly"):
            status, body = await post(api.headers(claim))
            assert status == 403 and "belongs to agent 'me'" in body["message"]
        # a credential of another agent contradicts the kernel
        cred = api.gw.tokens.issue("other")
        status, body = await post({"Authorization": f"Bearer {cred}"})
        assert status == 403
        async with s.post("http://localhost/v1/agents/other/control", headers=api.headers(),
                          json={"action": "pause"}) as r:
            assert r.status == 403
        # a second registration from inside the agent: no other name
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect("http://localhost/v1/stream", params={"agent": "spare"},
                               headers=api.headers())
        assert err.value.status == 403
        await ws.close()
        await other.close()
        await async_wait_for(lambda: _offline(api, "me"), what="me offline")
        status, body = await post(api.headers())  # the agent gone: the owner again
        assert (status, body["from"]) == (201, "human")
