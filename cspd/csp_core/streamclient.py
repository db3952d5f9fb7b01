"""A small asyncio client for a sidecar's link: the WebSocket stream and the posts beside it.

Standard library only.  aiohttp's import alone costs a process some 14 MiB, more
than all the rest of a sidecar at rest, and a sidecar needs little of it: one
WebSocket (RFC 6455, the client's side: text frames, ping, close) and a few JSON
posts, each on a connection of its own, to its own gateway on a local socket.
The request and answer framing is :mod:`csp_core.quick`'s; the errors are the
:class:`~csp_core.errors.CspError` classes :class:`csp_core.client.GatewayClient`
raises (that client, on aiohttp, serves everything else).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections import deque
from urllib.parse import urlencode, urlsplit

from .auth import Bearer
from .endpoint import gateway_address
from .errors import GatewayUnavailable, Unauthorized, decode_response
from .names import API, IDENTITY_HEADER
from .protocol import Message, post_body
from .quick import NotHttp, complete_response, parse_head, request_bytes
from .wsframe import BINARY, CLOSE, PING, PONG, TEXT, FrameReader, frame

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    _P = TypeVar("_P", bound=asyncio.BaseProtocol)

MAX_MESSAGE = 4 * 1024 * 1024  # as the gateway's own limit
READ_SIZE = 16 * 1024  # one read's buffer, kept for the connection's life (a frame is mostly
# a few hundred bytes; a large one takes a few reads)
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


class StreamClient:
    """The gateway as one agent's sidecar sees it (the subset of GatewayClient it uses)."""

    def __init__(self, address: str | None = None, *, agent: str | None = None,
                 timeout: float = 30.0) -> None:
        self.address = address or gateway_address()
        self.agent = agent
        self.timeout = timeout
        self._bearer = Bearer()

    def use_credential(self, credential: str) -> None:
        """Authenticate further requests with the agent's credential (see GatewayClient)."""
        self._bearer.use_credential(credential)

    def _headers(self) -> dict[str, str]:
        headers = {"Host": "localhost", "Authorization": f"Bearer {self._bearer.value()}"}
        if self.agent:
            headers[IDENTITY_HEADER] = self.agent
        return headers

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await self._open(lambda: protocol)
        return reader, asyncio.StreamWriter(transport, protocol, reader,
                                            asyncio.get_running_loop())

    async def _open(self, factory: Callable[[], _P]) -> tuple[asyncio.Transport, _P]:
        """A connection to the gateway (its unix socket or a loopback URL) served by
        ``factory``'s protocol; failing to connect is said as GatewayUnavailable."""
        loop = asyncio.get_running_loop()
        if self.address.startswith(("http://", "https://")):
            url = urlsplit(self.address)
            opening = loop.create_connection(factory, url.hostname or "127.0.0.1",
                                             url.port or 80)
        else:
            opening = loop.create_unix_connection(factory, self.address)
        try:
            return await asyncio.wait_for(opening, self.timeout)
        except TimeoutError:
            raise GatewayUnavailable.no_answer(self.address, self.timeout) from None
        except OSError as exc:
            raise GatewayUnavailable.not_running(self.address,
                                                 str(exc.strerror or exc)) from None

    # -- requests ------------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One request on a connection of its own; a 401 is retried once with a token
        re-read (it was rotated meanwhile: a 401 stored nothing)."""
        status, text = await self._exchange(method, path, body)
        if status == 401 and self._bearer.refresh():
            status, text = await self._exchange(method, path, body)
        return decode_response(status, text)

    async def _exchange(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        headers = {**self._headers(), "Accept": "application/json", "Connection": "close"}
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        reader, writer = await self._connect()
        try:
            writer.write(request_bytes(method, path, headers, payload))
            return await self._rest_of(reader, b"")
        except TimeoutError:
            raise GatewayUnavailable.no_answer(self.address, self.timeout) from None
        except OSError as exc:
            raise GatewayUnavailable.not_running(self.address,
                                                 str(exc.strerror or exc)) from None
        except NotHttp as exc:
            raise GatewayUnavailable(f"what answers at {self.address} is not csp's "
                                     f"gateway ({exc})") from None
        finally:
            writer.close()

    async def _rest_of(self, reader: asyncio.StreamReader, data: bytes) -> tuple[int, bytes]:
        """Read on until ``data`` holds a whole answer (its length says when: the peer
        need not close the connection)."""
        closed = False
        while (answer := complete_response(data, closed)) is None:
            chunk = await asyncio.wait_for(reader.read(65536), self.timeout)
            data, closed = data + chunk, not chunk
        return answer

    async def send(self, to: list[str], content: str, *, kind: str = "chat",
                   room: str | None = None, urgent: bool = False) -> Message:
        body = post_body(to, content, kind=kind, room=room, urgent=urgent)
        return Message.from_json(await self.request("POST", f"{API}/messages", body))

    # -- the stream ----------------------------------------------------------

    async def stream(self, *, agent: str | None = None, room: str | None = None,
                     since: int = 0, extra: dict[str, str] | None = None) -> WebSocket:
        """Open the WebSocket (as GatewayClient.stream); the caller reads and sends."""
        params: dict[str, str] = {"since": str(since)}
        if agent:
            params["agent"] = agent
        if room:
            params["room"] = room
        params.update(extra or {})
        path = f"{API}/stream?{urlencode(params)}"
        try:
            return await self._upgrade(path)
        except Unauthorized:
            if not self._bearer.refresh():
                raise
            return await self._upgrade(path)  # the token was rotated meanwhile

    async def _upgrade(self, path: str) -> WebSocket:
        key = base64.b64encode(os.urandom(16))
        headers = {**self._headers(), "Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Key": key.decode(), "Sec-WebSocket-Version": "13"}
        ws = WebSocket()
        try:
            await self._open(lambda: ws)
            ws.transport_write(request_bytes("GET", path, headers, b""))
            status, answer, body = await asyncio.wait_for(ws.handshake(), self.timeout)
            if status != 101:  # refused: the answer's body says why
                decode_response(status, body)  # raises the error it describes
                raise GatewayUnavailable(f"the gateway answered {status} to a WebSocket")
            if answer.get("sec-websocket-accept", "").encode() != _accept(key):
                raise NotHttp("a WebSocket handshake with the wrong accept key")
        except TimeoutError:
            ws.abort()
            raise GatewayUnavailable.no_answer(self.address, self.timeout) from None
        except OSError as exc:
            ws.abort()
            raise GatewayUnavailable.not_running(self.address,
                                                 str(exc.strerror or exc)) from None
        except NotHttp as exc:
            ws.abort()
            raise GatewayUnavailable(f"what answers at {self.address} is not csp's "
                                     f"gateway ({exc})") from None
        except BaseException:
            ws.abort()
            raise
        return ws


def _accept(key: bytes) -> bytes:
    import hashlib  # the handshake only

    return base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())


class WebSocket(asyncio.BufferedProtocol):
    """The client's end of one WebSocket: text in and out, pings answered.

    A protocol, not a pair of streams: bytes are read into one buffer kept for the
    connection's life (no allocation per read), and once :meth:`listen` is called each
    text message is handed over from the read's own callback, so a message costs the
    event loop one wake-up and no task.  (A sidecar of a 50-agent room wakes with
    every other one for an ``@all``; what each does before it types delays the rest.)
    Before that, :meth:`receive` returns the messages one by one.
    """

    def __init__(self) -> None:
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray(READ_SIZE)
        self._http = b""  # the handshake's answer, until it is whole
        self._answer: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        self._frames = FrameReader(MAX_MESSAGE)
        self._parts: list[bytes] = []
        self._size = 0
        self._inbox: deque[str] = deque()
        self._on_text: Callable[[str], None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    # -- the protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._answer = loop.create_future()  # the upgrade's answer comes first

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self._take(memoryview(self._buffer)[:nbytes])

    def _take(self, data: bytes | memoryview) -> None:
        if self._answer is not None:
            self._http += data
            self._check_answer(closed=False)
            return
        self._frames.feed(data)
        while not self.closed:
            try:
                got = self._frames.next()
            except ValueError:  # a message over the limit: nothing sane follows it
                self._end()
                return
            if got is None:
                return
            self._on_frame(*got)

    def eof_received(self) -> bool:
        if self._answer is not None:
            self._check_answer(closed=True)
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionResetError("the connection closed"))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- the handshake -------------------------------------------------------

    def transport_write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the connection closed")
        self._transport.write(data)

    async def handshake(self) -> tuple[int, dict[str, str], bytes]:
        """The answer to the upgrade: (status, headers, body); after a 101, what follows
        the head is WebSocket frames."""
        if self._answer is None:
            raise ConnectionResetError("the connection closed")
        return await self._answer

    def _check_answer(self, closed: bool) -> None:
        assert self._answer is not None
        answer = self._answer
        try:
            head, sep, rest = self._http.partition(b"\r\n\r\n")
            status, headers = parse_head(head) if sep else (0, {})
            if status == 101:
                self._answer, self._http = None, b""
                answer.set_result((status, headers, b""))
                if rest:  # frames in the same read as the answer
                    self._take(rest)
                return
            whole = complete_response(self._http, closed)  # a refusal: its body says why
        except NotHttp as exc:
            self._answer = None
            answer.set_exception(exc)
            return
        if whole is not None:
            self._answer = None
            answer.set_result((whole[0], headers, whole[1]))

    # -- messages in ---------------------------------------------------------

    def _on_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self._send_now(PONG, payload)
        elif opcode == PONG:
            pass
        elif opcode in (CLOSE, BINARY):
            self._end()
        else:  # text, or its continuation
            self._parts.append(payload)
            self._size += len(payload)
            if self._size > MAX_MESSAGE:
                self._end()
            elif fin:
                text = b"".join(self._parts).decode("utf-8", "replace")
                self._parts, self._size = [], 0
                if self._on_text is not None:
                    self._on_text(text)
                else:
                    self._inbox.append(text)
                    self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def receive(self, timeout: float | None = None) -> str | None:
        """The next text message; None once the connection is closed (or sends binary)."""
        if timeout is None:
            return await self._receive()
        return await asyncio.wait_for(self._receive(), timeout)

    async def _receive(self) -> str | None:
        while not self._inbox:
            if self.closed:
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
        return self._inbox.popleft()

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str:
        text = await self.receive()
        if text is None:
            raise StopAsyncIteration
        return text

    async def listen(self, on_text: Callable[[str], None]) -> None:
        """Hand every text message to ``on_text`` as it arrives, in the read's callback
        (it must not block, and what it raises ends the connection), until the
        connection closes."""
        while self._inbox:
            on_text(self._inbox.popleft())
        self._on_text = on_text
        try:
            if not self.closed and self._lost is not None:
                await asyncio.shield(self._lost)
        finally:
            self._on_text = None

    # -- messages out --------------------------------------------------------

    def _send_now(self, opcode: int, payload: bytes) -> None:
        if self.closed or self._transport is None or self._transport.is_closing():
            raise ConnectionError("the WebSocket is closed")
        self._transport.write(frame(opcode, payload, mask=True))

    async def _write(self, opcode: int, payload: bytes) -> None:
        self._send_now(opcode, payload)
        if self._writable is not None and not self._writable.done():
            await self._writable
        if self.closed:
            raise ConnectionError("the WebSocket is closed")

    async def send_str(self, text: str) -> None:
        await self._write(TEXT, text.encode())

    # -- the end -------------------------------------------------------------

    def _end(self) -> None:
        """Say goodbye (status 1000) and close; what waits is woken."""
        if self.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._send_now(CLOSE, (1000).to_bytes(2, "big"))
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        """Say goodbye and close the connection; again is a no-op."""
        self._end()
        if self._lost is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._lost)
