"""``POST /v1/messages`` for the timed cases: bytes built by hand on one kept-alive
unix connection.

The scale cases time from "just before the POST" to a paste; an aiohttp client in
the benchmark's own process spends a good part of a millisecond building and
sending each request (and waking from the 120 ms idle gap between rounds) before
anything reaches the gateway, and that would be counted against the gateway and
the sidecar.  A user's own client is ``cspctl send`` (its figure is a case of its
own) or a program of theirs; what is measured here starts where the request does.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from csp_core.names import API
from csp_core.protocol import post_body
from csp_core.quick import complete_response, request_bytes

TIMEOUT_S = 30.0


class RawPoster:
    def __init__(self, socket_path: Path, token_path: Path) -> None:
        self.socket_path = socket_path
        self.token = token_path.read_text().strip()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawPoster:
        self._reader, self._writer = await asyncio.open_unix_connection(str(self.socket_path))
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.close()

    async def send(self, to: list[str], content: str, room: str | None = None
                   ) -> dict[str, Any]:
        """Post a message; the stored message once the gateway answers 201."""
        assert self._reader is not None and self._writer is not None
        payload = json.dumps(post_body(to, content, room=room)).encode()
        self._writer.write(request_bytes(
            "POST", f"{API}/messages",
            {"Host": "localhost", "Authorization": f"Bearer {self.token}",
             "Content-Type": "application/json"}, payload))
        data = b""
        while (answer := complete_response(data, False)) is None:
            chunk = await asyncio.wait_for(self._reader.read(65536), TIMEOUT_S)
            if not chunk:
                raise RuntimeError("the gateway closed the connection")
            data += chunk
        status, body = answer
        if status != 201:
            raise RuntimeError(f"POST answered {status}: {body[:300]!r}")
        message: dict[str, Any] = json.loads(body)
        return message
