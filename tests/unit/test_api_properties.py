"""Hostile and malformed requests against the real app (property-based).

One in-process gateway (real app, real Store in tmp) takes every generated
request.  Whatever comes in: no 500, every error is JSON ``{"error", "message"}``,
the gateway keeps serving, and every message it acknowledged (201) is in the
history afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from csp_core.sanitize import is_blank
from tests.unit.conftest import Api, start_api, stop_api

SETTINGS = settings(max_examples=400, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

NAMES = st.sampled_from(["main", "codex", "claude", "human", "all", "system", "x" * 40,
                         "Bad", "a b", "..", "%00", "é", "1abc", ""])
WORDS = st.one_of(NAMES.map(lambda n: "@" + n), NAMES.map(lambda n: "#" + n),
                  st.text(max_size=12))
PATHS = st.one_of(
    st.sampled_from([
        "/v1/health", "/v1/messages", "/v1/agents", "/v1/ack", "/v1/rooms", "/v1/stream",
        "/mcp", "/", "/v1", "/v2/messages", "/v1/messages/", "/v1//health"]),
    NAMES.map(lambda n: f"/v1/agents/{n}"),
    NAMES.map(lambda n: f"/v1/agents/{n}/control"),
    st.tuples(NAMES, st.sampled_from(["", "/join", "/leave"])).map(
        lambda t: f"/v1/rooms/{t[0]}{t[1]}"),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=30)
    .map(lambda s: "/" + s.replace("?", "").replace("#", "").lstrip("/")),
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                           "TRACE", "PROPFIND"])
# the routes that exist, with their own methods: most requests aim at real handlers
ROUTES = st.one_of(
    st.sampled_from([("GET", "/v1/health"), ("POST", "/v1/messages"), ("GET", "/v1/messages"),
                     ("GET", "/v1/agents"), ("POST", "/v1/ack"), ("GET", "/v1/rooms"),
                     ("POST", "/v1/rooms"), ("GET", "/v1/stream"), ("POST", "/mcp")]),
    NAMES.map(lambda n: ("DELETE", f"/v1/agents/{n}")),
    NAMES.map(lambda n: ("POST", f"/v1/agents/{n}/control")),
    NAMES.map(lambda n: ("PATCH", f"/v1/rooms/{n}")),
    st.tuples(st.just("POST"), st.tuples(NAMES, st.sampled_from(["/join", "/leave"])).map(
        lambda t: f"/v1/rooms/{t[0]}{t[1]}")),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70),
                                                               max_value=2**70),
                         st.floats(allow_nan=False), st.text(max_size=40))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
FIELD_VALUE = st.one_of(JSON_VALUES, st.lists(WORDS, max_size=4), WORDS,
                        st.text(max_size=200), st.sampled_from(["chat", "output", "system",
                                                                "direct", "pause"]))
SHAPED = st.dictionaries(
    st.sampled_from(["to", "content", "kind", "room", "urgent", "ids", "name", "relay",
                     "hop_limit", "action", "jsonrpc", "method", "params", "id"]),
    FIELD_VALUE, max_size=6)
GOOD_MESSAGE = st.fixed_dictionaries(
    {"content": st.text(min_size=1, max_size=300)},
    optional={"to": st.lists(st.sampled_from(["@all", "@human", "#main"]), max_size=2),
              "urgent": st.booleans(), "kind": st.sampled_from(["chat", "output"])})


def _raw_json(value: Any) -> bytes:
    return json.dumps(value).encode()


BODIES = st.one_of(
    st.none(),
    GOOD_MESSAGE.map(_raw_json),
    SHAPED.map(_raw_json),
    JSON_VALUES.map(_raw_json),
    st.binary(max_size=200),                                      # invalid UTF-8 and all
    st.sampled_from([b"{", b'{"content": "\\ud800", "to": []}', b'{"content": "\xff\xfe"}',
                     b"[" * 50_000 + b"]" * 50_000, b"[" * 50_000, b'{"a":' * 30_000,
                     b"1" * 5000, b'"' + b"x" * 70_000 + b'"', b"NaN", b"\x00" * 10]),
    st.integers(min_value=64 * 1024 - 8, max_value=64 * 1024 + 8).map(
        lambda n: _raw_json({"content": "y" * n})),
)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                      max_size=60)
QUERY = st.dictionaries(st.sampled_from(["since", "limit", "room", "agent", "x"]),
                        st.one_of(st.integers(min_value=-(2**80), max_value=2**80).map(str),
                                  st.text(max_size=20), NAMES), max_size=3)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:  # a plausible post, so that some get accepted
        body = draw(st.one_of(GOOD_MESSAGE, SHAPED))
        return {"method": "POST", "path": "/v1/messages", "params": {}, "auth": "good",
                "body": _raw_json(body), "headers": {"Content-Type": "application/json"}}
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["good", "good", "good", "none", "wrong", "odd"]))
    if auth == "wrong":
        headers["Authorization"] = "Bearer " + draw(HEADER_TEXT)
    elif auth == "odd":
        headers["Authorization"] = draw(HEADER_TEXT)
    if draw(st.booleans()):
        headers["X-CSP-Agent"] = draw(st.one_of(NAMES, HEADER_TEXT))
    if draw(st.integers(0, 4)) == 0:
        headers["Origin"] = draw(st.one_of(st.just("http://localhost:8765"), HEADER_TEXT))
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.one_of(
            st.sampled_from(["application/json", "text/plain; charset=latin-1",
                             "application/json; charset=utf-16", "multipart/form-data",
                             "application/json; charset=nope"]), HEADER_TEXT))
    if draw(st.integers(0, 9)) == 0:
        headers["X-Junk"] = "z" * draw(st.integers(1, 7000))
    if draw(st.integers(0, 3)):
        method, path = draw(ROUTES)
    else:
        method, path = draw(METHODS), draw(PATHS)
    return {"method": method, "path": path, "params": draw(QUERY),
            "body": draw(BODIES), "headers": headers, "auth": auth}


class Harness:
    """One event loop and one gateway for all examples of a test."""

    def __init__(self, tmp_path: Path) -> None:
        self.runner = asyncio.Runner()
        self.api: Api = self.runner.run(start_api(tmp_path))
        self.accepted: dict[int, str] = {}
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def close(self) -> None:
        self.runner.run(stop_api(self.api))
        self.runner.close()

    def send(self, req: dict[str, Any]) -> None:
        self.runner.run(self._send(req))

    async def _send(self, req: dict[str, Any]) -> None:
        headers = dict(req["headers"])
        if req["auth"] == "good":
            headers["Authorization"] = f"Bearer {self.api.token}"
        async with self.api.client.request(req["method"], req["path"], params=req["params"],
                                           data=req["body"], headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status != 500 and status < 500, (status, raw[:300])
        if status >= 400 and req["method"] != "HEAD":
            body = json.loads(raw)
            assert isinstance(body, dict), body
            if req["path"] == "/mcp" and isinstance(body.get("error"), dict):
                body = body["error"]  # JSON-RPC's own error shape
                assert isinstance(body.get("message"), str), body
            else:
                assert isinstance(body.get("error"), str), body
                assert isinstance(body.get("message"), str), body
        if status == 201 and req["path"] == "/v1/messages" and req["method"] == "POST":
            message = json.loads(raw)
            self.accepted[message["id"]] = message["content"]

    def check_still_serving_and_nothing_lost(self) -> None:
        async def run() -> None:
            client, h = self.api.client, self.api.headers()
            r = await client.get("/v1/health", headers=h)
            assert r.status == 200 and (await r.json())["ok"] is True
            r = await client.post("/v1/messages", json={"to": ["@all"], "content": "after"},
                                  headers=h)
            assert r.status == 201
            r = await client.get("/v1/messages", params={"limit": "5000"}, headers=h)
            stored = {m["id"]: m["content"] for m in (await r.json())["messages"]}
            missing = {i: c for i, c in self.accepted.items() if stored.get(i) != c}
            assert not missing, missing
        self.runner.run(run())


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()


NASTY = [b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 30_000, b'{"content": "\\ud800"}',
         b'{"ids": [18446744073709551616]}', b"\xff\xfe{}"]


def _nasty(method: str, path: str, body: bytes, auth: str = "good",
           **headers: str) -> dict[str, Any]:
    return {"method": method, "path": path, "params": {}, "body": body,
            "headers": headers, "auth": auth}


def test_hostile_requests_never_break_the_gateway(harness: Harness) -> None:
    @SETTINGS
    @given(req=requests())
    @example(req=_nasty("POST", "/v1/messages", NASTY[0]))
    @example(req=_nasty("POST", "/v1/ack", NASTY[1]))
    @example(req=_nasty("POST", "/mcp", NASTY[0]))
    @example(req=_nasty("POST", "/v1/messages", NASTY[2]))
    @example(req=_nasty("POST", "/v1/ack", NASTY[3]))
    @example(req=_nasty("POST", "/v1/messages", NASTY[4]))
    @example(req=_nasty("POST", "/v1/messages", b"{}",
                        **{"Content-Type": "application/json; charset=nope"}))
    @example(req=_nasty("POST", "/mcp", b"{}", **{"Content-Type": "text/plain; charset=x"}))
    @example(req={**_nasty("GET", "/v1/stream", b""), "params": {"since": str(10**30)}})
    @example(req={**_nasty("GET", "/v1/messages", b""), "params": {"since": str(2**70)}})
    def one(req: dict[str, Any]) -> None:
        harness.send(req)

    one()
    # the run really exercised handlers, not only the auth wall
    assert harness.sent >= 100 and harness.accepted, harness.statuses
    assert sum(n for code, n in harness.statuses.items() if code not in (401, 403, 404)) >= 30
    harness.check_still_serving_and_nothing_lost()


def test_valid_messages_are_all_kept(harness: Harness) -> None:
    @settings(SETTINGS, max_examples=60)
    @given(batch=st.lists(GOOD_MESSAGE, min_size=1, max_size=8))
    def one(batch: list[dict[str, Any]]) -> None:
        async def run() -> None:
            h = harness.api.headers()
            resps = await asyncio.gather(*(harness.api.client.post(
                "/v1/messages", json=m, headers=h) for m in batch))
            for m, r in zip(batch, resps, strict=True):
                body = await r.json()
                if not is_blank(m["content"]):
                    assert r.status == 201, body
                    harness.accepted[body["id"]] = m["content"]
                else:
                    assert r.status == 400 and body["error"] == "bad_request"
        harness.runner.run(run())

    one()
    harness.check_still_serving_and_nothing_lost()


RAW_REQUESTS = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.tuples(st.sampled_from([b"GET", b"POST", b"G\x00T", b"\xff\xfe", b"GET GET"]),
              st.sampled_from([b"/v1/health", b"/v1/messages", b"*", b"/\xff", b"",
                               b"http://evil/v1/health", b"/" + b"a" * 9000]),
              st.sampled_from([b"HTTP/1.1", b"HTTP/9.9", b"HTTP/1.1 x", b""]),
              st.lists(st.sampled_from([
                  b"Host: x", b"Content-Length: -1", b"Content-Length: 99999999999",
                  b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
                  b"Authorization: Bearer \xff\xfe", b"X-CSP-Agent: \xff",
                  b"Origin: \xff", b"no colon", b": empty name", b"X: " + b"v" * 9000,
                  b"Content-Length: 5", b"Content-Length: 5", b"\x00: \x00"]), max_size=5))
    .map(lambda t: t[0] + b" " + t[1] + b" " + t[2] + b"\r\n" + b"\r\n".join(t[3])
         + b"\r\n\r\n{\"content\":1}"),
)


def test_raw_bytes_never_get_a_500(harness: Harness) -> None:
    server = harness.api.client.server

    @settings(SETTINGS, max_examples=80)
    @given(payload=RAW_REQUESTS)
    def one(payload: bytes) -> None:
        async def run() -> None:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            try:
                writer.write(payload)
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                head = await asyncio.wait_for(reader.read(64), 10)
            except ConnectionResetError:
                head = b""
            finally:
                writer.close()
            assert not head.startswith(b"HTTP/1.1 5"), head
        harness.runner.run(run())

    one()
    harness.check_still_serving_and_nothing_lost()
