"""The sidecar's connection to the gateway.

One WebSocket registers the agent and brings its messages (pending ones
first); acks go back once a message has been injected.  Registering gets the
agent its credential: the sidecar posts with it, and the agent's environment
carries it (never the owner's token), so the agent's own ``cspctl`` speaks as
the agent on TCP too.  Captured output is
posted over HTTP from an ordered outbox, so output produced while the gateway
is away is shared afterwards, in order.  When the gateway goes away the link
reconnects with backoff; the agent keeps working meanwhile.

The client is :mod:`csp_core.streamclient` (standard library), not aiohttp: a
sidecar at rest is mostly the modules it imported, and aiohttp's alone would be
more than half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from csp_core.auth import agent_credential, ensure_agent_key
from csp_core.backoff import Backoff
from csp_core.errors import Conflict, CspError, GatewayUnavailable, RateLimited, Unauthorized
from csp_core.protocol import Message
from csp_core.streamclient import StreamClient, WebSocket

log = logging.getLogger("csp_sidecar.link")

HELLO_TIMEOUT = 10.0


class NameTaken(Conflict):
    """Another sidecar is online under this name."""


class GatewayLink:
    def __init__(self, name: str, room: str | None, profile: str, command: str,
                 on_message: Callable[[Message], None],
                 on_control: Callable[[str, dict[str, Any]], None],
                 address: str | None = None) -> None:
        self.name = name
        self.room = room
        self.profile = profile
        self.command = command
        self.on_message = on_message
        self.on_control = on_control
        self.address = address
        self.pid: int | None = None
        self.connected = asyncio.Event()
        self.outbox: deque[str] = deque()
        self._outbox_ready = asyncio.Event()
        self._ws: WebSocket | None = None
        self._client: StreamClient | None = None
        self._state: dict[str, Any] = {}
        self._stopping = False
        self.last_error: str | None = None
        self.credential: str | None = None  # issued by the gateway at registration

    # -- connecting ----------------------------------------------------------

    async def _open(self) -> None:
        client = StreamClient(self.address, agent=self.name, timeout=30.0)
        try:
            extra = {"profile": self.profile, "command": self.command}
            if self.pid:
                extra["pid"] = str(self.pid)
            ws = await client.stream(agent=self.name, room=self.room, extra=extra)
            hello = await self._await_hello(ws)
        except Conflict:
            raise NameTaken(f"an agent named {self.name!r} is already online; "
                            "pick another --name") from None
        credential = hello.get("credential")
        if isinstance(credential, str) and credential:
            self.credential = credential
            client.use_credential(credential)
        self._client, self._ws = client, ws
        self.connected.set()
        self.last_error = None
        if self._state:
            await self._send(self._state)

    async def _await_hello(self, ws: WebSocket) -> dict[str, Any]:
        """The gateway registers the agent, then says hello: only then is it addressable."""
        try:
            text = await ws.receive(timeout=HELLO_TIMEOUT)
        except TimeoutError:
            await ws.close()
            raise GatewayUnavailable("the gateway did not greet the sidecar") from None
        frame: Any = None
        if text is not None:
            with contextlib.suppress(ValueError):
                frame = json.loads(text)
        if isinstance(frame, dict) and frame.get("type") == "hello":
            return frame
        await ws.close()
        if isinstance(frame, dict) and frame.get("error") == "conflict":
            raise Conflict(str(frame.get("message", "name taken")))
        raise GatewayUnavailable("the gateway closed the connection before greeting")

    def agent_credential(self) -> str:
        """The credential for the agent's environment: the one the gateway issued,
        else (no gateway yet) the same one made from the key beside the token."""
        if self.credential is None:
            self.credential = agent_credential(self.name, ensure_agent_key())
        return self.credential

    async def first_connect(self) -> bool:
        """Try once before the child starts: a taken name is fatal, no gateway is not."""
        try:
            await self._open()
            return True
        except NameTaken:
            raise
        except CspError as exc:
            self.last_error = exc.message
            return False

    async def run(self) -> None:
        """Read frames for as long as the sidecar lives, reconnecting as needed."""
        backoff = Backoff()
        while not self._stopping:
            if self._ws is None:
                try:
                    await self._open()
                    backoff.reset()
                except CspError as exc:  # a taken name, a refused token, no gateway
                    self.last_error = exc.message
                if self._ws is None:
                    await backoff.wait()
                    continue
            await self._read()
            await self._drop()

    async def _read(self) -> None:
        """Frames until the connection ends, each handled as it is read (no task woken
        per message: see :class:`~csp_core.streamclient.WebSocket`)."""
        assert self._ws is not None
        with contextlib.suppress(ConnectionError):
            await self._ws.listen(self._on_text)

    def _on_text(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        try:
            self._dispatch(frame)
        except Exception:  # a fault in handling one frame must not end the link
            log.exception("handling a frame from the gateway failed")

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            try:
                message = Message.from_json(frame["message"])
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed message frame")
                return
            self.on_message(message)
        elif kind == "control" and isinstance(frame.get("action"), str):
            self.on_control(frame["action"], frame)
        elif kind == "error":
            log.warning("gateway: %s", frame.get("message"))

    async def _drop(self) -> None:
        self.connected.clear()
        ws = self._ws
        self._ws, self._client = None, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def stop(self) -> None:
        self._stopping = True
        await self._drop()

    # -- sending -------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(json.dumps(frame))
            return True
        except (ConnectionError, RuntimeError):
            return False

    async def ack(self, ids: list[int]) -> bool:
        """Acknowledge injected messages; unacked ones come again after a reconnect."""
        return await self._send({"type": "ack", "ids": ids})

    async def report_state(self, **state: Any) -> None:
        self._state = {"type": "state", **self._state, **state}
        self._state["type"] = "state"
        await self._send(self._state)

    def share(self, text: str) -> None:
        """Queue captured output for posting; kept in order across outages."""
        self.outbox.append(text)
        self._outbox_ready.set()

    async def run_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            while self.outbox:
                await self.connected.wait()
                client = self._client
                if client is None:
                    continue
                try:
                    await client.send([], self.outbox[0], kind="output", room=self.room)
                except (GatewayUnavailable, Unauthorized) as exc:
                    # the gateway went away, or the token was rotated: reconnect (which
                    # reads the current token) and post again; the outbox keeps its order
                    log.info("output waits for a new connection: %s", exc.message)
                    await self._drop()
                    await self.connected.wait()
                    continue
                except RateLimited as exc:
                    await asyncio.sleep(float(exc.details.get("retry_after", 1.0)))
                    continue
                except CspError as exc:  # refused for good (too large, ...): drop it
                    log.warning("output not shared: %s", exc.message)
                self.outbox.popleft()
            self._outbox_ready.clear()

