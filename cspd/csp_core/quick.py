"""A small synchronous client for one-shot requests (``cspctl send``, ``history``).

One request on one connection, written by hand and read to its end with the
socket module alone.  Start-up is most of what a one-shot command costs:
``http.client`` would do the same work but its import (email parsing, ssl) costs
more than the whole request, and aiohttp's far more.  For the same reason the
unix socket is opened with ``_socket``: ``socket`` builds enums of every constant
when imported.  Errors are the same :class:`~csp_core.errors.CspError` classes the
async client raises.  The request and answer framing here is shared with
:mod:`csp_core.streamclient`.
"""

from __future__ import annotations

import _socket
import json

from .auth import client_token
from .endpoint import gateway_address
from .errors import BadRequest, GatewayUnavailable, decode_response
from .names import IDENTITY_HEADER

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

TIMEOUT = 30.0
_READ = 65536
_HEAD_END = b"\r\n\r\n"


class NotHttp(Exception):
    """The peer's answer is not an HTTP response."""


def call(method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
         agent: str | None = None, address: str | None = None,
         timeout: float = TIMEOUT) -> Any:
    """One request to the gateway; returns the decoded JSON body or raises a CspError."""
    address = address or gateway_address()
    headers = {"Host": "localhost", "Authorization": f"Bearer {client_token()}",
               "Accept": "application/json", "Connection": "close"}
    if agent:
        headers[IDENTITY_HEADER] = agent
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if params:
        from urllib.parse import urlencode  # not on send's path: see the docstring

        path = f"{path}?{urlencode(params)}"
    request = request_bytes(method, path, headers, payload)
    try:
        status, text = _exchange(address, request, timeout)
    except TimeoutError:
        raise GatewayUnavailable.no_answer(address, timeout) from None
    except OSError as exc:
        raise GatewayUnavailable.not_running(address, str(exc.strerror or exc)) from None
    except NotHttp as exc:
        raise GatewayUnavailable(f"what answers at {address} is not csp's gateway "
                                 f"({exc})") from None
    return decode_response(status, text)


def request_bytes(method: str, path: str, headers: dict[str, str], payload: bytes) -> bytes:
    """The request's bytes; a line break or NUL in any part is refused, never sent."""
    if any(c in path for c in " \r\n\0"):
        raise BadRequest(f"cannot request {path!r}: it holds a space, line break or NUL")
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0"):
            raise BadRequest(f"cannot send the {name} header: it holds a line break or NUL")
    if payload or method in ("POST", "PUT", "PATCH"):
        headers["Content-Length"] = str(len(payload))
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequest("a request header holds a character outside Latin-1") from None
    return head + payload


def _connect(address: str, timeout: float) -> _socket.socket:
    if address.startswith(("http://", "https://")):
        import socket  # TCP only: its import cost is what the unix socket path avoids
        from urllib.parse import urlsplit

        url = urlsplit(address)
        return socket.create_connection((url.hostname or "127.0.0.1", url.port or 80),
                                        timeout=timeout)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _exchange(address: str, request: bytes, timeout: float) -> tuple[int, bytes]:
    """Send the request; read the answer until its body is complete (or the peer closes)."""
    sock = _connect(address, timeout)
    try:
        sock.sendall(request)
        data = bytearray()
        while True:
            chunk = sock.recv(_READ)
            data += chunk
            answer = complete_response(bytes(data), closed=not chunk)
            if answer is not None:
                return answer
    finally:
        sock.close()


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the headers (names in lower case) of an answer's head."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise NotHttp(f"it answered {status_line[:40]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(code), headers


def complete_response(data: bytes, closed: bool) -> tuple[int, bytes] | None:
    """(status, body) once ``data`` holds a whole answer; None while more is to come."""
    head, sep, body = data.partition(_HEAD_END)
    if not sep:
        if closed:
            raise NotHttp("no complete answer" if data else "it closed without an answer")
        return None
    code, headers = parse_head(head)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        whole = _dechunk(body)
    elif headers.get("content-length", "").isdigit():
        size = int(headers["content-length"])
        whole = body[:size] if len(body) >= size else None
    else:
        whole = body if closed else None  # the body ends where the connection does
    if whole is None and closed:
        raise NotHttp("the answer was cut short")
    return None if whole is None else (code, whole)


def _dechunk(body: bytes) -> bytes | None:
    """A chunked body's content once its last chunk is in; None until then."""
    parts: list[bytes] = []
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(body[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise NotHttp("a malformed chunk") from None
        if size == 0:
            return b"".join(parts)
        start = eol + 2
        if len(body) < start + size + 2:
            return None
        parts.append(body[start:start + size])
        pos = start + size + 2
