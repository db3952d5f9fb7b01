"""The gateway's HTTP edge (issue #10): budgets, deadlines, JSON for every error.

The real app behind the real listeners (:func:`cspd.edge.start_http`), in-process
on a unix socket and 127.0.0.1:0, with deadlines shortened where a test waits for
one.  Raw sockets throughout: the point is what aiohttp's parser and the accept
loop answer, which a well-behaved HTTP client would never provoke.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from csp_core.errors import Busy, HeadersTooLarge, RequestTimeout, from_json
from cspd.activation import (
    REFUSED_LINGERING,
    RESERVED_FDS,
    TCP_MAX,
    ConnectionCaps,
    connection_caps,
)
from cspd.gateway import HttpLimits
from tests.httpedge import EdgeGateway, assert_json_error, parse_reply, read_until_closed
from tests.polling import async_wait_for

FAST = HttpLimits(head_timeout=0.5, body_timeout=0.5, keepalive_timeout=30.0,
                  stall_timeout=30.0, lingering_time=0.2)


@pytest.fixture
async def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               caplog: pytest.LogCaptureFixture) -> AsyncIterator[EdgeGateway]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    gw = await EdgeGateway.start(tmp_path, FAST, ConnectionCaps(unix=4, tcp=3))
    try:
        yield gw
    finally:
        await gw.stop()
    # what clients do wrong is never an error (nor a traceback) in the gateway's log
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


# -- budgets and limits, pure ---------------------------------------------------


@pytest.mark.parametrize("limit", [64, 100, 256, 1024, 4096, 65536, 1 << 20])
def test_connection_caps_fit_the_file_limit(limit: int) -> None:
    caps = connection_caps(limit)
    assert 1 <= caps.tcp <= TCP_MAX and caps.unix >= 1
    if limit > RESERVED_FDS + 2 * REFUSED_LINGERING + 8:
        # never EMFILE, refused connections lingering included
        assert caps.unix + caps.tcp + RESERVED_FDS + 2 * REFUSED_LINGERING <= limit
        assert caps.unix >= caps.tcp  # the owner's socket keeps the larger share
    assert caps.for_family(socket.AF_UNIX) == caps.unix
    assert caps.for_family(socket.AF_INET) == caps.tcp


def test_connection_caps_at_systemds_default_limit() -> None:
    assert connection_caps(1024) == ConnectionCaps(unix=640, tcp=256)


RAISE = """
import json, resource, sys
from cspd.activation import raise_fd_limit
soft, hard, wanted = map(int, sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print(json.dumps([raise_fd_limit(wanted), resource.getrlimit(resource.RLIMIT_NOFILE)[0]]))
"""


@pytest.mark.parametrize(("soft", "hard", "wanted", "expect"), [
    (256, 4096, 65536, 4096),  # systemd's 1024:524288, in small: raised to the hard limit
    (256, 256, 65536, 256),    # no room: stays, and the budgets shrink to fit
    (256, 4096, 2048, 2048),   # never more than it wants
    (4096, 4096, 2048, 4096),  # never lowered
])
def test_raise_fd_limit(soft: int, hard: int, wanted: int, expect: int) -> None:
    # in a child: the test process keeps its own limit
    r = subprocess.run([sys.executable, "-c", RAISE, str(soft), str(hard), str(wanted)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [expect, expect]


def test_new_error_codes_come_back_as_their_classes() -> None:
    busy = from_json(503, {"error": "busy", "message": "too many"})
    assert isinstance(busy, Busy) and busy.exit_code == 7
    big = from_json(431, {"error": "headers_too_large", "message": "x"})
    assert isinstance(big, HeadersTooLarge) and big.exit_code == 2
    slow = from_json(408, {"error": "request_timeout", "message": "x"})
    assert isinstance(slow, RequestTimeout) and slow.exit_code == 1


# -- what the parser refuses is JSON too ---------------------------------------

H = b"Host: 127.0.0.1\r\n"

REFUSED = {
    "10 KB Authorization": (b"GET /v1/health HTTP/1.1\r\n" + H + b"Authorization: Bearer "
                            + b"a" * 10_000 + b"\r\n\r\n", 431),
    "NUL in Origin": (b"GET /v1/health HTTP/1.1\r\n" + H + b"Origin: http://a\x00b\r\n\r\n", 400),
    "HTTP/0.9 request line": (b"GET /v1/health\r\n\r\n", 400),
    "HTTP/2.0 request line": (b"GET /v1/health HTTP/2.0\r\n" + H + b"\r\n", 400),
    "HTTP/1.2 request line": (b"GET /v1/health HTTP/1.2\r\n" + H + b"\r\n", 400),
    "h2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "NUL in the method": (b"G\x00T /v1/health HTTP/1.1\r\n" + H + b"\r\n", 400),
    "8-bit header name": (b"GET /v1/health HTTP/1.1\r\n" + H + b"X\xff: 1\r\n\r\n", 400),
    "header without colon": (b"GET /v1/health HTTP/1.1\r\n" + H + b"nocolon\r\n\r\n", 400),
    "bad Content-Length": (b"POST /v1/messages HTTP/1.1\r\n" + H
                           + b"Content-Length: x\r\n\r\n", 400),
    "two Content-Lengths": (b"POST /v1/messages HTTP/1.1\r\n" + H
                            + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n{}", 400),
    "chunked garbage": (b"POST /v1/messages HTTP/1.1\r\n" + H
                        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "300 headers": (b"GET /v1/health HTTP/1.1\r\n" + H
                    + b"".join(b"X-%d: v\r\n" % i for i in range(300)) + b"\r\n", 431),
    "9 KB target": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 431),
    "HTTP/1.1 without Host": (b"GET /v1/health HTTP/1.1\r\n\r\n", 400),
    "unknown Expect": (b"GET /v1/health HTTP/1.1\r\n" + H + b"Expect: tea\r\n"
                       b"Connection: close\r\n\r\n", 417),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "unix"])
async def test_parser_errors_are_json(edge: EdgeGateway, case: str, tcp: bool) -> None:
    raw, status = REFUSED[case]
    reply = await edge.exchange(raw, tcp=tcp, timeout=5)
    resp = reply.first
    assert resp.status == status, (resp, reply.responses)
    body = assert_json_error(resp)
    assert len(body["message"]) < 300  # never the 10 KB the client sent, echoed
    assert "\x00" not in body["message"]


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "unix"])
async def test_a_client_still_sending_gets_its_answer(edge: EdgeGateway, tcp: bool) -> None:
    # refused at the head, while 4 MB of body are still on their way: the gateway
    # answers, sends FIN and drops what follows, rather than resetting the connection
    # (which would destroy the answer before the client reads it)
    reader, writer = await edge.open(tcp=tcp)
    writer.write(b"POST /v1/messages HTTP/1.1\r\n" + H + b"Origin: http://a\x00b\r\n"
                 b"Content-Length: 4000000\r\n\r\n")

    async def upload() -> None:
        try:
            for _ in range(4000):
                writer.write(b"z" * 1000)
                await writer.drain()
        except ConnectionError:
            pass

    sending = asyncio.create_task(upload())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    resp = parse_reply(head + await reader.readexactly(_content_length(head))).first
    await sending
    writer.close()
    assert resp.status == 400 and assert_json_error(resp)["error"] == "bad_request"


def _content_length(head: bytes) -> int:
    return int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")))


async def test_a_handlers_bare_error_gets_the_json_body(edge: EdgeGateway) -> None:
    # mcp.py answers GET /mcp with an empty 405: the edge gives it the documented body
    reply = await edge.exchange(b"GET /mcp HTTP/1.1\r\n" + H + edge.auth()
                                + b"Connection: close\r\n\r\n", timeout=5)
    assert reply.first.status == 405
    assert assert_json_error(reply.first)["error"] == "method_not_allowed"
    assert reply.first.headers["allow"] == "POST"


# -- deadlines -------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"GET /v1/hea", b"GET /v1/health HTTP/1.1\r\nHost: x"])
async def test_an_unfinished_head_is_answered_408_and_closed(edge: EdgeGateway,
                                                             sent: bytes) -> None:
    reader, writer = await edge.open(tcp=True)
    writer.write(sent)
    # read_until_closed returns when the gateway closes: within the deadline, not ours
    data = await read_until_closed(reader, timeout=10)
    writer.close()
    resp = parse_reply(data).first
    assert resp.status == 408 and assert_json_error(resp)["error"] == "request_timeout"
    assert resp.headers["connection"].lower() == "close"
    await async_wait_for(_no_connections(edge), timeout=5, what="the connection to go")


def _no_connections(edge: EdgeGateway) -> Any:
    async def check() -> bool:
        return edge.tcp_site.open == 0 and edge.unix_site.open == 0
    return check


async def test_a_served_connection_is_not_cut_by_the_head_deadline(edge: EdgeGateway) -> None:
    reader, writer = await edge.open()
    request = b"GET /v1/health HTTP/1.1\r\n" + H + edge.auth() + b"\r\n"
    try:
        for _ in range(2):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
            await reader.readexactly(_content_length(head))
            # idle past the head deadline: keep-alive (75 s) governs now, not the 0.5 s
            await asyncio.sleep(FAST.head_timeout * 3)
    finally:
        writer.close()


async def test_a_slow_body_is_answered_408(edge: EdgeGateway) -> None:
    reader, writer = await edge.open()
    writer.write(b"POST /v1/messages HTTP/1.1\r\n" + H + edge.auth()
                 + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"to\"")
    data = await read_until_closed(reader, timeout=10)
    writer.close()
    resp = parse_reply(data).first
    assert resp.status == 408 and assert_json_error(resp)["error"] == "request_timeout"
    assert edge.gw.store.last_id == 0


async def test_a_refused_token_ends_the_connection(edge: EdgeGateway) -> None:
    # a client without the token cannot keep a connection by asking again and again
    reader, writer = await edge.open(tcp=True)
    writer.write(b"GET /v1/health HTTP/1.1\r\n" + H + b"\r\n")
    data = await read_until_closed(reader, timeout=10)  # returns: the gateway closed it
    writer.close()
    resp = parse_reply(data).first
    assert resp.status == 401 and resp.headers["connection"].lower() == "close"


# -- budgets ---------------------------------------------------------------------


async def test_tcp_at_its_cap_refuses_with_json_and_the_unix_socket_is_served(
        edge: EdgeGateway) -> None:
    held = [await edge.open(tcp=True) for _ in range(3)]  # the TCP cap, half-open
    for _, w in held:
        w.write(b"GET /v1/health HTTP/1.1\r\n")
    await async_wait_for(_sites_open(edge, tcp=3), timeout=5, what="3 TCP connections")

    reply = await edge.exchange(b"GET /v1/health HTTP/1.1\r\n" + H + edge.auth() + b"\r\n",
                                tcp=True, timeout=5)
    assert reply.first.status == 503, reply
    assert assert_json_error(reply.first)["error"] == "busy"
    assert reply.first.headers["retry-after"] == "1"
    assert edge.tcp_site.refused == 1

    # the owner's socket has its own budget
    ok = await edge.exchange(b"GET /v1/health HTTP/1.1\r\n" + H + edge.auth()
                             + b"Connection: close\r\n\r\n", timeout=5)
    assert ok.first.status == 200, ok

    # and is capped too (a runaway script of the owner's), separately
    unix_held = [await edge.open() for _ in range(4)]
    await async_wait_for(_sites_open(edge, tcp=3, unix=4), timeout=5, what="4 unix")
    busy = await edge.exchange(b"GET /v1/health HTTP/1.1\r\n" + H + edge.auth() + b"\r\n",
                               timeout=5)
    assert busy.first.status == 503

    for _, w in held + unix_held:
        w.close()
    await async_wait_for(_sites_open(edge), timeout=5, what="every connection to close")
    ok = await edge.exchange(b"GET /v1/health HTTP/1.1\r\n" + H + edge.auth()
                             + b"Connection: close\r\n\r\n", tcp=True, timeout=5)
    assert ok.first.status == 200


def _sites_open(edge: EdgeGateway, tcp: int = 0, unix: int = 0) -> Any:
    async def check() -> bool:
        return edge.tcp_site.open == tcp and edge.unix_site.open == unix
    return check


class _EmfileOnce:
    """A listening socket whose first accept() fails as it does out of descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.failed = 0

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.failed:
            self.failed += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self._sock.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


async def test_emfile_pauses_the_listener_and_it_comes_back(
        edge: EdgeGateway, caplog: pytest.LogCaptureFixture) -> None:
    site = edge.unix_site
    fake = _EmfileOnce(site._sock)
    site._sock = fake  # type: ignore[assignment]
    reply = await edge.exchange(b"GET /v1/health HTTP/1.1\r\n" + H + edge.auth()
                                + b"Connection: close\r\n\r\n", timeout=10)
    assert fake.failed == 1 and reply.first.status == 200
    assert "Too many open files" in caplog.text


# -- cspctl --as: a bad name is bad input ----------------------------------------


def bad_names() -> list[str]:
    ctrl = [chr(c) for c in [*range(0, 32), 127]]
    names = [f"a{c}b" for c in ctrl] + [f"ab{c}" for c in ("\r", "\n", "\r\n", "\t", "\x00")]
    names += [f"a{c}b" for c in "é名🙂\u200b\u202e\ufeff\udcff\x85\xa0"]
    names += ["Bob", "1abc", "-x", "_x", "a b", "a.b", "a/b", "a:b", "a@b", "@a", "#a",
              "x" * 33, "all", "system", "room", "everyone", " a", "a ", "ａ", "é", "名前"]
    return names


def test_send_as_a_bad_name_exits_2_without_a_traceback(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from csp_cli.main import cli as main

    monkeypatch.delenv("CSP_AGENT", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("CSP_GATEWAY", str(tmp_path / "nowhere.sock"))  # never reached
    names = bad_names()
    assert len(names) >= 60
    runner = CliRunner()
    for name in names:
        for argv in (["send", "--as", name, "hello"], ["mcp", "--as", name]):
            result = runner.invoke(main, argv, input="")
            out = result.output
            assert result.exit_code == 2, (name, argv, out, result.exception)
            assert isinstance(result.exception, SystemExit), (name, result.exception)
            assert "Traceback" not in out and "not running" not in out, (name, out)
            assert out.startswith("cspctl: ") and (
                "invalid agent name" in out or "is reserved" in out), (name, out)


def test_a_bad_csp_agent_is_bad_input_too(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from csp_cli.main import cli as main

    monkeypatch.setenv("CSP_AGENT", "a\r\nX-Injected: 1")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("CSP_GATEWAY", str(tmp_path / "nowhere.sock"))
    result = CliRunner().invoke(main, ["send", "hello"])
    assert result.exit_code == 2 and "invalid agent name" in result.output, result.output
