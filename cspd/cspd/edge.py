"""The HTTP edge below the application: what a connection may cost.

:class:`GuardedSite` and :class:`GuardedHandler` bound it (issue #10): each listener
accepts its own connections and counts them against its own budget (the owner's unix
socket apart from the TCP port, which other local users can reach), a request's head
must arrive within a deadline, a peer that stops reading is cut off, and even the
errors aiohttp's parser answers by itself carry the JSON error body.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from csp_core.errors import BadRequest, Busy, CspError, HeadersTooLarge, RequestTimeout

from .activation import REFUSED_LINGERING, ConnectionCaps, Listener
from .gateway import GATEWAY, HttpLimits
from .httperrors import as_json_error, brief, code_for, describe, json_error

log = logging.getLogger("cspd")


ACCEPT_BURST = 16  # connections accepted per wakeup of a listener, so listeners take turns
ACCEPT_RETRY = 0.1  # after EMFILE and the like: try again this much later, never die
WARN_EVERY = 60.0  # seconds between two warnings about the same refused connections
REFUSE_LINGER = 1.0  # a refused connection is kept this long to take the client's request


def raw_response(error: CspError, *headers: str) -> bytes:
    """A complete HTTP/1.1 answer with the JSON error body, for the places that have no
    request object to answer through (a refused connection, a head that never came)."""
    body = json.dumps(error.to_json()).encode()
    try:
        reason = HTTPStatus(error.status).phrase
    except ValueError:
        reason = "Error"
    head = [f"HTTP/1.1 {error.status} {reason}", "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def error_response(status: int, exc: BaseException | None,
                   message: str | None) -> web.Response:
    """The JSON answer to what aiohttp refused before the application saw it."""
    text = message or (describe(exc) if exc is not None else "") or HTTPStatus(status).phrase
    error: CspError | None = None
    if isinstance(exc, LineTooLong) or "Too many headers" in text:
        error = HeadersTooLarge("request line or headers too large: at most 8190 bytes "
                                "per line and 128 headers")
    elif status == 400:
        error = BadRequest(f"malformed HTTP request: {brief(text)}")
    if error is not None:
        resp = web.json_response(error.to_json(), status=error.status)
    else:
        resp = json_error(status, code_for(status),
                          "internal error; see `cspctl gateway logs`" if status >= 500
                          else brief(text))
    resp.force_close()
    return resp


class LingeringTransport(asyncio.Transport):
    """A connection's transport whose ``close()`` is graceful: it sends what is
    buffered, then FIN, and keeps reading (and dropping) what the client still sends
    until the client closes too or ``linger`` seconds pass (then it aborts).

    Closing a socket with unread input makes the kernel reset the connection, and a
    client that is still sending (a refused upload, the rest of 300 headers) then
    loses the answer it was sent: the 400 or 431 in JSON.  ``abort()`` stays abrupt.
    """

    def __init__(self, transport: asyncio.Transport, linger: float,
                 on_linger: Callable[[], None]) -> None:
        super().__init__()
        self._transport = transport
        self._linger = linger
        self._on_linger = on_linger
        self._timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        t = self._transport
        if t.is_closing() or self._timer is not None:
            return
        if self._linger <= 0 or not t.can_write_eof():
            t.close()
            return
        self._on_linger()
        try:
            t.write_eof()  # FIN once the buffer is flushed; reading goes on
        except (OSError, RuntimeError):
            t.close()
            return
        # then abort: a client that has not read its answer by now is not reading,
        # and close() would wait for it to
        self._timer = asyncio.get_running_loop().call_later(self._linger, t.abort)

    def cancel_linger(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def is_closing(self) -> bool:
        return self._timer is not None or self._transport.is_closing()

    def abort(self) -> None:
        self._transport.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, with the bounds of :class:`HttpLimits` and
    JSON bodies for the errors aiohttp answers itself (parser errors, its fallbacks)."""

    __slots__ = ("_closer", "_head_timer", "_limits", "_lingering", "_on_close",
                 "_stall_timer")

    def __init__(self, manager: web.Server, limits: HttpLimits,
                 on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._on_close = on_close
        self._head_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._closer: LingeringTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # a stream transport; uvloop's are ones without subclassing asyncio.Transport
        self._closer = LingeringTransport(cast(asyncio.Transport, transport),
                                          self._limits.lingering_time,
                                          self._start_lingering)
        self.transport = self._closer
        self._head_timer = self._loop.call_later(self._limits.head_timeout,
                                                 self._head_timed_out)

    def _start_lingering(self) -> None:
        self._lingering = True

    @property
    def who(self) -> str:
        """The peer, for the log: its address on TCP (all local, but which port)."""
        peer = self.peername
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a unix client"

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # closing: what still comes is dropped
        queued = len(self._messages)
        super().data_received(data)
        # the parser takes HTTP/0.9 and HTTP/2.0 request lines, and aiohttp would echo
        # the version in its status line ("HTTP/0.9 401"): refuse them as HTTP/1.x
        for i in range(queued, len(self._messages)):
            message, _ = self._messages[i]
            if (isinstance(message, RawRequestMessage)
                    and message.version not in (HttpVersion10, HttpVersion11)):
                exc = BadHttpMessage("unsupported HTTP version; use HTTP/1.1")
                self._messages[i] = (_ErrInfo(status=400, exc=exc, message=exc.message),
                                     EMPTY_PAYLOAD)
        # the parser counts every head it completes (errors included): from then on
        # aiohttp's keep-alive timeout bounds the idle time between requests
        if self._head_timer is not None and self._request_count:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._request_count or self.transport is None:
            return
        log.debug("no complete request head from %s in %gs; closing",
                  self.who, self._limits.head_timeout)
        self.transport.write(raw_response(RequestTimeout(
            f"no complete request within {self._limits.head_timeout:g}s")))
        self.force_close()  # closes once the answer is flushed

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_later(self._limits.stall_timeout,
                                                      self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        """The peer read nothing for ``stall_timeout`` with our send buffer full: drop
        it, so what waits for it (its queue, its buffers) is freed; a watcher that
        reconnects resumes from its cursor."""
        self._stall_timer = None
        if self.transport is not None:
            log.info("dropping %s: it read nothing for %gs", self.who,
                     self._limits.stall_timeout)
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._closer is not None:
            self._closer.cancel_linger()
        for timer in (self._head_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._stall_timer = None
        try:
            super().connection_lost(exc)
        finally:
            self._on_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A broken or late body found while draining it after the answer (bad
        chunking or compression, the body deadline) or a vanished client is the
        client's problem, not the gateway's: one debug line, not a traceback per
        request in the journal."""
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError | ConnectionError
                      | CspError):
            log.debug("dropped a connection from %s: %s", self.who, describe(exc))
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to what never reached the application: JSON like the rest."""
        if request.writer.output_size > 0:  # as aiohttp does: too late for an answer
            raise ConnectionError("response already started; cannot send the error")
        if status >= 500 and not isinstance(exc, ConnectionError):
            self.log_exception("error handling a request from %s", self.who, exc_info=exc)
        else:
            log.debug("refused a request from %s: %s", self.who, exc or message)
        return error_response(status, exc, message)

    async def finish_response(self, request: Any, resp: Any,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        """The last net: an error answer that is not JSON yet (an HTTPException raised
        outside the middlewares, such as a 417 for a bad ``Expect``, or a handler's
        bare 405) gets the JSON error body before it goes out."""
        resp = as_json_error(resp)
        return await super().finish_response(request, resp, start_time)


class GuardedSite(web.BaseSite):
    """A listening socket that accepts its own connections, so it can count them.

    At its cap a new connection is answered at once with a JSON 503 and closed:
    it costs an accept and a send, and its descriptor for at most REFUSE_LINGER
    (REFUSED_LINGERING of them at a time).  EMFILE (or ENFILE, ENOBUFS) pauses only
    this listener, briefly.
    """

    __slots__ = ("_accepting", "_cap", "_connecting", "_last_warning", "_limits",
                 "_lingering", "_sock", "_stopped", "family", "open", "refused")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, cap: int,
                 limits: HttpLimits) -> None:
        super().__init__(runner)
        self._sock = sock
        self._cap = cap
        self._limits = limits
        self._accepting = False
        self._stopped = False
        self._connecting: set[asyncio.Task[None]] = set()
        self._lingering: dict[socket.socket, asyncio.TimerHandle] = {}
        self._last_warning: dict[str, float] = {}
        self.family = sock.family
        self.open = 0  # connections accepted and not yet closed
        self.refused = 0

    @property
    def name(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"http://unix:{self._sock.getsockname()}:"
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def kind(self) -> str:
        return "unix" if self.family == socket.AF_UNIX else "TCP"

    async def start(self) -> None:
        await super().start()
        self._sock.setblocking(False)
        self._resume()

    async def stop(self) -> None:
        self._stopped = True
        self._pause()
        for conn in list(self._lingering):
            self._close_refused(conn)
        self._sock.close()
        await super().stop()

    def _resume(self) -> None:
        if not self._accepting and not self._stopped:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept)
            self._accepting = True

    def _pause(self) -> None:
        if self._accepting:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._accepting = False

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BURST):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._warn("accept", f"cannot accept on the {self.kind} socket: "
                               f"{exc.strerror}; {self.open} connections open")
                    self._pause()
                    loop.call_later(ACCEPT_RETRY, self._resume)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client gave up while queued
                log.warning("accept on the %s socket failed: %s", self.kind, exc)
                return
            if self.open >= self._cap:
                self._refuse(conn)
                continue
            self.open += 1
            task = loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    def _refuse(self, conn: socket.socket) -> None:
        """Answer 503 at once, then keep the socket a moment (at most REFUSE_LINGER,
        at most REFUSED_LINGERING of them) to swallow the request the client is
        still sending: closing on unread data would reset the connection, and the
        client would see a reset instead of the answer."""
        self.refused += 1
        self._warn("cap", f"{self.kind} connection limit ({self._cap}) reached: refusing "
                   f"new connections ({self.refused} so far)")
        busy = Busy(f"the gateway has too many open {self.kind} connections "
                    f"({self._cap}); try again shortly")
        try:
            conn.setblocking(False)
            conn.send(raw_response(busy, "Retry-After: 1"))  # an empty send buffer takes it
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        if len(self._lingering) >= REFUSED_LINGERING:
            self._swallow(conn)
            conn.close()
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), self._refused_readable, conn)
        self._lingering[conn] = loop.call_later(REFUSE_LINGER, self._close_refused, conn)

    @staticmethod
    def _swallow(conn: socket.socket) -> bool:
        """Read and drop what the client sent; False once it has closed its side."""
        try:
            return bool(conn.recv(65536))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def _refused_readable(self, conn: socket.socket) -> None:
        if not self._swallow(conn):
            self._close_refused(conn)

    def _close_refused(self, conn: socket.socket) -> None:
        timer = self._lingering.pop(conn, None)
        if timer is not None:
            timer.cancel()
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()

    async def _connect(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1

        server = self._runner.server
        assert server is not None
        try:
            conn.setblocking(False)
            await loop.connect_accepted_socket(
                lambda: GuardedHandler(server, self._limits, release, loop=loop,
                                       **server._kwargs),
                conn)
        except Exception as exc:
            log.debug("could not set up a %s connection: %s", self.kind, exc)
            release()
            conn.close()

    def _warn(self, what: str, message: str) -> None:
        """At most one warning per kind of trouble a minute: a flood must not flood
        the journal too."""
        now = time.monotonic()
        if now - self._last_warning.get(what, -WARN_EVERY) >= WARN_EVERY:
            self._last_warning[what] = now
            log.warning("%s", message)


async def start_http(app: web.Application, listeners: list[Listener],
                     caps: ConnectionCaps) -> tuple[web.AppRunner, list[GuardedSite]]:
    """Serve ``app`` on ``listeners``, each with its budget from ``caps``."""
    limits = app[GATEWAY].http
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0,
                           keepalive_timeout=limits.keepalive_timeout,
                           lingering_time=limits.lingering_time)
    await runner.setup()
    sites = []
    for listener in listeners:
        site = GuardedSite(runner, listener.sock, caps.for_family(listener.sock.family), limits)
        await site.start()
        sites.append(site)
    return runner, sites
