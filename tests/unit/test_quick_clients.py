"""The standard-library clients: ``cspctl send``'s fast path reads a command line as click
does, and the hand-written HTTP and WebSocket framing reads what it writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csp_cli.entry import read_send
from csp_cli.messages_cmd import send as click_send
from csp_core import streamclient
from csp_core.endpoint import AGENT_TOKEN_ENV
from csp_core.errors import BadRequest, Conflict, GatewayUnavailable
from csp_core.quick import NotHttp, complete_response, request_bytes
from csp_core.streamclient import StreamClient, _accept
from csp_core.wsframe import FrameReader, frame, masked

WORDS = ["@all", "@codex", "#backend", "hello", "-", "--room", "-r", "--as", "--urgent",
         "--json", "--room=ops", "--as=bob", "--wait", "--help", "-h", "--", "-rX", "-5",
         "two words", "", "!now", "--urgent=1", "x=y"]


def click_params(args: list[str]) -> dict[str, object] | None:
    """What click's own ``send`` makes of ``args`` (None: it refuses them)."""
    try:
        ctx = click_send.make_context("send", list(args), resilient_parsing=False)
    except BaseException:  # click.UsageError, or --help's Exit
        return None
    return dict(ctx.params)


@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_the_fast_path_reads_a_send_line_as_click_does(args: list[str]) -> None:
    mine = read_send(args)
    if mine is None:
        return  # click reads it (and says what is wrong with it)
    theirs = click_params(args)
    assert theirs is not None, f"the fast path took what click refuses: {args}"
    for key in ("room", "as_name", "urgent", "as_json"):
        assert mine[key] == theirs[key], (args, key)
    assert tuple(mine["words"]) == tuple(theirs["words"]), args  # type: ignore[arg-type]
    assert not theirs.get("wait"), args  # --wait is click's alone


@pytest.mark.parametrize("args", [["--help"], ["-h", "x"], ["--wait", "@a", "hi"],
                                  ["--", "-x"], ["--room"], ["--room", "-x", "hi"],
                                  ["--bogus", "hi"], ["-rX", "hi"]])
def test_what_the_fast_path_is_not_sure_of_goes_to_click(args: list[str]) -> None:
    assert read_send(args) is None


def test_a_plain_line() -> None:
    assert read_send(["@codex", "-r", "ops", "please", "--urgent", "look"]) == {
        "words": ["@codex", "please", "look"], "room": "ops", "as_name": None,
        "urgent": True, "as_json": False}


# -- HTTP framing ----------------------------------------------------------------------


def test_an_answer_is_complete_when_its_length_says_so() -> None:
    head = b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\n"
    assert complete_response(head + b'{"id":', closed=False) is None
    assert complete_response(head + b'{"id":1}', closed=False) == (201, b'{"id":1')
    with pytest.raises(NotHttp):
        complete_response(head + b"{", closed=True)


def test_a_chunked_answer_is_put_together() -> None:
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\n{\"a\r\n4\r\n\": 1\r\n1\r\n}\r\n0\r\n\r\n")
    status, body = complete_response(data, closed=False) or (0, b"")
    assert status == 200 and json.loads(body) == {"a": 1}


def test_what_is_not_http_is_said_to_be() -> None:
    with pytest.raises(NotHttp):
        complete_response(b"SSH-2.0-OpenSSH\r\n\r\n", closed=False)
    with pytest.raises(NotHttp):
        complete_response(b"", closed=True)


@pytest.mark.parametrize("header", ["a\r\nX-Evil: 1", "a\nb", "a\0b"])
def test_a_line_break_in_a_header_is_refused_not_sent(header: str) -> None:
    with pytest.raises(BadRequest):
        request_bytes("POST", "/v1/messages", {"X-CSP-Agent": header}, b"{}")


def test_a_request_says_its_length() -> None:
    raw = request_bytes("POST", "/v1/ack", {"Host": "localhost"}, b'{"ids": []}')
    assert raw.startswith(b"POST /v1/ack HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 11\r\n\r\n" in raw and raw.endswith(b'{"ids": []}')


# -- WebSocket framing -----------------------------------------------------------------


def test_the_accept_key_is_rfc_6455s() -> None:
    assert _accept(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("mask", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_a_frame_reads_back_as_written(size: int, mask: bool) -> None:
    text = ("é" * size)[:size] if size else ""
    payload = text.encode()
    wire = frame(0x1, payload, mask=mask) + frame(0x9, b"ping", mask=mask)
    whole = frames_of(FrameReader(1 << 30), wire)
    assert whole == [(True, 0x1, payload), (True, 0x9, b"ping")]
    reader = FrameReader(1 << 30)  # the same, a few bytes at a time
    got = [f for at in range(0, len(wire), 7) for f in frames_of(reader, wire[at:at + 7])]
    assert got == whole


def frames_of(reader: FrameReader, data: bytes) -> list[tuple[bool, int, bytes]]:
    reader.feed(data)
    out = []
    while (got := reader.next()) is not None:
        out.append(got)
    return out


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(ValueError):
        frames_of(FrameReader(100), frame(0x1, b"x" * 101)[:4])


@pytest.fixture
def _agent_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients below authenticate as an agent (no token file needed)."""
    monkeypatch.setenv(AGENT_TOKEN_ENV, "agent-credential")


async def _ws_server(path: str, script: Callable[[bytes], list[bytes]],
                     heard: list[bytes]) -> asyncio.Server:
    """A unix socket server that answers an upgrade with ``script(key)``'s writes and
    keeps what the client sends after it."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        for chunk in script(key):
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                heard.append(data)
        writer.close()

    return await asyncio.start_unix_server(serve, path)


def _upgraded(key: bytes) -> bytes:
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + _accept(key) + b"\r\n\r\n")


@pytest.mark.usefixtures("_agent_token")
async def test_a_websocket_hands_over_each_message_as_it_is_read(tmp_path: Path) -> None:
    hello = json.dumps({"type": "hello"}).encode()
    heard: list[bytes] = []

    def script(key: bytes) -> list[bytes]:
        return [_upgraded(key) + frame(0x1, hello),  # the first frame with the answer
                frame(0x9, b"are you there"),
                b"\x01" + frame(0x1, b"one, in ")[1:]  # a text frame without FIN,
                + frame(0x0, b"two parts"),               # then its continuation
                frame(0x8, (1000).to_bytes(2, "big"))]

    path = str(tmp_path / "ws.sock")
    server = await _ws_server(path, script, heard)
    async with server:
        ws = await StreamClient(path).stream()
        assert await ws.receive(timeout=10) == hello.decode()  # before listen: one by one
        got: list[str] = []
        await asyncio.wait_for(ws.listen(got.append), 10)  # returns once the peer closes
        assert got == ["one, in two parts"]
        assert ws.closed
    sent = frames_of(FrameReader(1 << 20), b"".join(heard))
    assert (True, 0xA, b"are you there") in sent  # the ping answered
    assert sent[-1][1] == 0x8  # and the close


@pytest.mark.usefixtures("_agent_token")
async def test_a_message_larger_than_a_read_arrives_whole(tmp_path: Path) -> None:
    big = ("0123456789abcdef" * (1 << 16)).encode()  # 1 MiB: many reads of the buffer

    def script(key: bytes) -> list[bytes]:
        return [_upgraded(key), frame(0x1, big), frame(0x1, b"after")]

    path = str(tmp_path / "ws.sock")
    async with await _ws_server(path, script, []):
        ws = await StreamClient(path).stream()
        assert await ws.receive(timeout=10) == big.decode()
        assert await ws.receive(timeout=10) == "after"
        await ws.close()


@pytest.mark.usefixtures("_agent_token")
async def test_a_refused_upgrade_raises_what_the_gateway_said(tmp_path: Path) -> None:
    body = json.dumps({"error": "conflict", "message": "an agent named x is online"}).encode()

    def script(key: bytes) -> list[bytes]:
        return [b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5],
                body[5:]]

    path = str(tmp_path / "ws.sock")
    async with await _ws_server(path, script, []):
        with pytest.raises(Conflict, match="online"):
            await StreamClient(path).stream(agent="x")


@pytest.mark.usefixtures("_agent_token")
async def test_no_gateway_is_said_as_such_for_the_stream_and_a_request(tmp_path: Path) -> None:
    client = StreamClient(str(tmp_path / "nobody.sock"))
    with pytest.raises(GatewayUnavailable, match=r"nobody\.sock"):
        await client.stream()
    with pytest.raises(GatewayUnavailable, match=r"nobody\.sock"):
        await client.request("GET", "/v1/health")


@pytest.mark.usefixtures("_agent_token")
async def test_a_message_over_the_limit_ends_the_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamclient, "MAX_MESSAGE", 64)

    def script(key: bytes) -> list[bytes]:
        return [_upgraded(key), frame(0x1, b"small"), frame(0x1, b"x" * 65)]

    path = str(tmp_path / "ws.sock")
    async with await _ws_server(path, script, []):
        ws = await StreamClient(path).stream()
        got: list[str] = []
        await asyncio.wait_for(ws.listen(got.append), 10)
        assert got == ["small"] and ws.closed


def test_masking_twice_gives_the_text_back() -> None:
    data = bytes(range(256)) * 3 + b"tail"
    assert masked(masked(data, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04") == data
    assert masked(data, b"\x01\x02\x03\x04") != data
