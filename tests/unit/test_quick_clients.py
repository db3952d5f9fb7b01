"""The standard-library clients: ``cspctl send``'s fast path reads a command line as click
does, and the hand-written HTTP and WebSocket framing reads what it writes."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csp_cli.entry import read_send
from csp_cli.messages_cmd import send as click_send
from csp_core.errors import BadRequest
from csp_core.quick import NotHttp, complete_response, request_bytes
from csp_core.streamclient import WebSocket, _accept
from csp_core.wsframe import frame, masked

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
async def test_a_frame_reads_back_as_written(size: int, mask: bool) -> None:
    text = ("é" * size)[:size] if size else ""
    payload = text.encode()
    reader = asyncio.StreamReader()
    reader.feed_data(frame(0x1, payload, mask=mask))
    reader.feed_eof()
    ws = WebSocket(reader, None)  # type: ignore[arg-type]  (never written to here)
    fin, opcode, got = await ws._read_frame(1 << 30)
    assert fin and opcode == 0x1 and got == payload


def test_masking_twice_gives_the_text_back() -> None:
    data = bytes(range(256)) * 3 + b"tail"
    assert masked(masked(data, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04") == data
    assert masked(data, b"\x01\x02\x03\x04") != data
