"""Rooms through cspctl: create, join, leave, relay, and #room addressing."""

from __future__ import annotations

import json

from tests.conftest import CspEnv, GatewayProcess


def rooms(env: CspEnv) -> dict[str, dict[str, object]]:
    r = env.cspctl("rooms", "--json")
    assert r.returncode == 0, r.stderr
    return {room["name"]: room for room in json.loads(r.stdout)["rooms"]}


def test_rooms_lifecycle(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    assert "main" in rooms(csp_env)
    assert csp_env.cspctl("rooms", "create", "backend").returncode == 0
    assert "human" in rooms(csp_env)["backend"]["members"]  # type: ignore[operator]
    sent = csp_env.cspctl("send", "#backend", "deploy at 5", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["room"] == "backend"
    hist = json.loads(csp_env.cspctl("history", "--room", "backend", "--json").stdout)
    assert [m["content"] for m in hist] == ["deploy at 5"]

    assert csp_env.cspctl("rooms", "relay", "backend", "on", "--hop-limit", "3").returncode == 0
    room = rooms(csp_env)["backend"]
    assert room["relay"] is True and room["hop_limit"] == 3
    assert csp_env.cspctl("rooms", "leave", "backend").returncode == 0
    assert "human" not in rooms(csp_env)["backend"]["members"]  # type: ignore[operator]


def test_unknown_room_is_a_clear_error(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    r = csp_env.cspctl("send", "#nowhere", "hello")
    assert r.returncode == 5 and "no room #nowhere" in r.stderr
    r = csp_env.cspctl("rooms", "join", "nowhere")
    assert r.returncode == 5
    r = csp_env.cspctl("rooms", "join", "main", "ghost")
    assert r.returncode == 5 and "ghost" in r.stderr
    r = csp_env.cspctl("rooms", "create", "Bad Name")
    assert r.returncode == 2 and "invalid room name" in r.stderr
