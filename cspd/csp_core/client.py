"""Async client of the gateway, shared by cspctl, the sidecar and the tests.

It speaks to ``$CSP_GATEWAY`` (a socket path or an ``http://127.0.0.1:PORT``
URL) or to ``$XDG_RUNTIME_DIR/csp/gateway.sock``, with the token from the
runtime dir, and turns every failure into a :class:`~csp_core.errors.CspError`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from .auth import Bearer
from .endpoint import (
    AGENT_ENV,
    AGENT_TOKEN_ENV,
    GATEWAY_ENV,
    ROOM_ENV,
    default_identity,
    gateway_address,
)
from .errors import CspError, GatewayUnavailable, decode_response, from_json
from .protocol import API, IDENTITY_HEADER, Message, post_body

__all__ = ["AGENT_ENV", "AGENT_TOKEN_ENV", "GATEWAY_ENV", "ROOM_ENV", "GatewayClient",
           "default_identity", "gateway_address"]


class GatewayClient:
    """One HTTP session to the gateway; use as ``async with GatewayClient() as c``."""

    def __init__(self, address: str | None = None, *, agent: str | None = None,
                 token: str | None = None, token_path: Path | None = None,
                 create_token: bool = True, timeout: float = 30.0) -> None:
        self.address = address or gateway_address()
        self.agent = agent
        self._bearer = Bearer(token, token_path, create=create_token)
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_unix(self) -> bool:
        return not self.address.startswith(("http://", "https://"))

    @property
    def base_url(self) -> str:
        return "http://localhost" if self.is_unix else self.address.rstrip("/")

    def token(self) -> str:
        """The bearer to send, re-read whenever the token file changes (see Bearer)."""
        return self._bearer.value()

    def refresh_token(self) -> bool:
        """Re-read the token now (after a 401); True when it changed, i.e. worth a retry."""
        return self._bearer.refresh()

    def use_credential(self, credential: str) -> None:
        """Authenticate further requests with an agent's credential (a sidecar, once
        the gateway issued it: on TCP only that tells the gateway who is speaking)."""
        self._bearer.use_credential(credential)

    def headers(self) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token()}"}
        if self.agent:
            h[IDENTITY_HEADER] = self.agent
        return h

    async def __aenter__(self) -> GatewayClient:
        connector: aiohttp.BaseConnector
        if self.is_unix:
            connector = aiohttp.UnixConnector(path=self.address)
        else:
            connector = aiohttp.TCPConnector()
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use GatewayClient as an async context manager")
        return self._session

    def unavailable(self, exc: BaseException) -> GatewayUnavailable:
        # the OS's reason ("No such file or directory"), worded as quick.py words it
        why = getattr(exc, "strerror", None) or f"{exc.__class__.__name__}: {exc}"
        return GatewayUnavailable.not_running(self.address, str(why))

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      params: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        try:
            async with self.session.request(method, url, json=json_body, params=params,
                                            headers=self.headers()) as resp:
                status, text = resp.status, await resp.text()
            if status == 401 and self.refresh_token():
                # the token was rotated between our read and the gateway's: a 401 stored
                # nothing, so sending again with the new one is safe
                async with self.session.request(method, url, json=json_body, params=params,
                                                headers=self.headers()) as resp:
                    status, text = resp.status, await resp.text()
            return decode_response(status, text)
        except CspError:
            raise
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
            raise self.unavailable(exc) from None
        except TimeoutError:
            raise GatewayUnavailable.no_answer(self.address, self._timeout) from None

    # -- API ---------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"{API}/health")
        return result

    async def send(self, to: list[str], content: str, *, kind: str = "chat",
                   room: str | None = None, urgent: bool = False) -> Message:
        body = post_body(to, content, kind=kind, room=room, urgent=urgent)
        data = await self.request("POST", f"{API}/messages", json_body=body)
        return Message.from_json(data)

    async def history(self, room: str | None = None, since: int = 0,
                      limit: int = 100) -> list[Message]:
        params: dict[str, Any] = {"since": since, "limit": limit}
        if room:
            params["room"] = room
        data = await self.request("GET", f"{API}/messages", params=params)
        return [Message.from_json(m) for m in data["messages"]]

    async def agents(self) -> list[dict[str, Any]]:
        data = await self.request("GET", f"{API}/agents")
        return list(data["agents"])

    async def rooms(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"{API}/rooms")
        return result

    async def create_room(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"{API}/rooms",
                                                    json_body={"name": name})
        return result

    async def join_room(self, room: str, name: str | None = None) -> None:
        body = {"name": name} if name else {}
        await self.request("POST", f"{API}/rooms/{room}/join", json_body=body)

    async def leave_room(self, room: str, name: str | None = None) -> None:
        body = {"name": name} if name else {}
        await self.request("POST", f"{API}/rooms/{room}/leave", json_body=body)

    async def update_room(self, room: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", f"{API}/rooms/{room}",
                                                    json_body=fields)
        return result

    async def control(self, name: str, action: str) -> None:
        await self.request("POST", f"{API}/agents/{name}/control", json_body={"action": action})

    async def ack(self, ids: list[int]) -> None:
        await self.request("POST", f"{API}/ack", json_body={"ids": ids})

    async def stream(self, *, agent: str | None = None, room: str | None = None,
                     since: int = 0, extra: dict[str, str] | None = None,
                     ) -> aiohttp.ClientWebSocketResponse:
        """Open the WebSocket; the caller reads frames and sends acks."""
        params: dict[str, str] = {"since": str(since)}
        if agent:
            params["agent"] = agent
        if room:
            params["room"] = room
        params.update(extra or {})
        try:
            try:
                ws = await self._ws_connect(params)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status != 401 or not self.refresh_token():
                    raise
                ws = await self._ws_connect(params)  # the token was rotated meanwhile
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_error(exc) from None
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
            raise self.unavailable(exc) from None
        return ws

    async def _ws_connect(self, params: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(
            self.base_url + f"{API}/stream", params=params, headers=self.headers(),
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0), max_msg_size=4 * 1024 * 1024)

    async def follow(self, *, room: str | None = None,
                     since: int = 0) -> AsyncIterator[Message]:
        """Yield messages of a room after ``since``, live, until the gateway goes away."""
        ws = await self.stream(room=room, since=since)
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame.get("type") == "message":
                    yield Message.from_json(frame["message"])
        finally:
            await ws.close()


def _handshake_error(exc: aiohttp.WSServerHandshakeError) -> CspError:
    code = {401: "unauthorized", 403: "forbidden", 409: "conflict",
            404: "not_found", 400: "bad_request"}.get(exc.status, "internal")
    return from_json(exc.status, {"error": code, "message": exc.message or code})
