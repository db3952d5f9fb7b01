"""A small synchronous client for one-shot requests (``cspctl send``, ``history``).

It uses only the standard library, so a command that makes one request starts
in a fraction of the time aiohttp's import takes.  Errors are the same
:class:`~csp_core.errors.CspError` classes the async client raises.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit

from .auth import client_token
from .endpoint import gateway_address
from .errors import GatewayUnavailable, decode_response
from .protocol import IDENTITY_HEADER

TIMEOUT = 30.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _connection(address: str, timeout: float) -> http.client.HTTPConnection:
    if address.startswith(("http://", "https://")):
        url = urlsplit(address)
        return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80,
                                          timeout=timeout)
    return _UnixConnection(address, timeout)


def call(method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
         agent: str | None = None, address: str | None = None,
         timeout: float = TIMEOUT) -> Any:
    """One request to the gateway; returns the decoded JSON body or raises a CspError."""
    address = address or gateway_address()
    headers = {"Authorization": f"Bearer {client_token()}", "Accept": "application/json"}
    if agent:
        headers[IDENTITY_HEADER] = agent
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if params:
        path = f"{path}?{urlencode(params)}"
    conn = _connection(address, timeout)
    try:
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        text = resp.read()
    except TimeoutError:
        raise GatewayUnavailable.no_answer(address, timeout) from None
    except OSError as exc:
        raise GatewayUnavailable.not_running(address, str(exc.strerror or exc)) from None
    finally:
        conn.close()
    return decode_response(resp.status, text)
