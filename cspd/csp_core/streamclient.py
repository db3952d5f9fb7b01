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
from urllib.parse import urlencode, urlsplit

from .auth import Bearer
from .endpoint import gateway_address
from .errors import GatewayUnavailable, Unauthorized, decode_response
from .names import API, IDENTITY_HEADER
from .protocol import Message, post_body
from .quick import NotHttp, complete_response, parse_head, request_bytes
from .wsframe import BINARY, CLOSE, PING, PONG, TEXT, frame, masked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

MAX_MESSAGE = 4 * 1024 * 1024  # as the gateway's own limit
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
        try:
            if self.address.startswith(("http://", "https://")):
                url = urlsplit(self.address)
                opening = asyncio.open_connection(url.hostname or "127.0.0.1", url.port or 80)
            else:
                opening = asyncio.open_unix_connection(self.address)
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
        reader, writer = await self._connect()
        try:
            writer.write(request_bytes("GET", path, headers, b""))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            status, answer = parse_head(head[:-4])
            if status != 101:  # refused: the answer's body says why
                _, body = await self._rest_of(reader, head)
                decode_response(status, body)  # raises the error it describes
                raise GatewayUnavailable(f"the gateway answered {status} to a WebSocket")
            if answer.get("sec-websocket-accept", "").encode() != _accept(key):
                raise NotHttp("a WebSocket handshake with the wrong accept key")
        except TimeoutError:
            writer.close()
            raise GatewayUnavailable.no_answer(self.address, self.timeout) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise GatewayUnavailable.not_running(self.address, str(exc)) from None
        except NotHttp as exc:
            writer.close()
            raise GatewayUnavailable(f"what answers at {self.address} is not csp's "
                                     f"gateway ({exc})") from None
        except BaseException:
            writer.close()
            raise
        return WebSocket(reader, writer)


def _accept(key: bytes) -> bytes:
    import hashlib  # the handshake only

    return base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())


class WebSocket:
    """The client's end of one WebSocket: text in and out, pings answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.closed = False

    async def receive(self, timeout: float | None = None) -> str | None:
        """The next text message; None once the connection is closed (or sends binary)."""
        if timeout is None:
            return await self._receive()
        return await asyncio.wait_for(self._receive(), timeout)

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str:
        text = await self.receive()
        if text is None:
            raise StopAsyncIteration
        return text

    async def _receive(self) -> str | None:
        parts: list[bytes] = []
        size = 0
        while not self.closed:
            try:
                fin, opcode, payload = await self._read_frame(MAX_MESSAGE - size)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                await self.close()
                return None
            if opcode == PING:
                await self._write(PONG, payload)
            elif opcode == PONG:
                continue
            elif opcode in (CLOSE, BINARY):
                await self.close()
                return None
            else:  # text, or its continuation
                parts.append(payload)
                size += len(payload)
                if fin:
                    return b"".join(parts).decode("utf-8", "replace")
        return None

    async def _read_frame(self, room: int) -> tuple[bool, int, bytes]:
        first, second = await self._reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self._reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self._reader.readexactly(8), "big")
        if size > room:
            raise ValueError(f"a message over {MAX_MESSAGE} bytes")
        mask = await self._reader.readexactly(4) if second & 0x80 else b""
        payload = await self._reader.readexactly(size)
        return bool(first & 0x80), first & 0x0F, masked(payload, mask) if mask else payload

    async def _write(self, opcode: int, payload: bytes) -> None:
        if self.closed:
            raise ConnectionError("the WebSocket is closed")
        self._writer.write(frame(opcode, payload, mask=True))
        await self._writer.drain()

    async def send_str(self, text: str) -> None:
        await self._write(TEXT, text.encode())

    async def close(self) -> None:
        """Say goodbye (status 1000) and close the connection; again is a no-op."""
        if self.closed:
            return
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write(frame(CLOSE, (1000).to_bytes(2, "big"), mask=True))
        self.closed = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
