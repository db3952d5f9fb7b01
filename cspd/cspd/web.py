"""The room in a browser (issue 15): the page, its login, and what a browser may do.

``cspctl web`` asks ``POST /v1/web/code`` (owner only, with the token) for a
one-time code and opens ``http://127.0.0.1:PORT/web/login?code=...``.  The code
is random, single-use and short-lived; the login answers with an HttpOnly,
SameSite=Strict session cookie and sends the browser on to ``/web/``, so the
token itself never reaches a URL, a page or the browser's storage.

A request carrying that cookie (and no ``Authorization``) is the owner's, like a
request with the token: :func:`vouches` is what the security middleware asks
before it checks the bearer.  The page then uses the ordinary API and the
``/v1/stream`` WebSocket, plus two reads of its own here (earlier history and a
search).  Every browser request must name one of the gateway's own loopback
hosts in ``Host`` (a DNS-rebinding page names its own), and a browser write
(anything but GET/HEAD, and the WebSocket) must carry one of its own origins.
Every answer carries a strict Content-Security-Policy: scripts, styles and
connections from the gateway itself only, nothing inline, no third-party origin.

Sessions live in the gateway's memory: a restart or ``cspctl token --rotate``
logs the browser out, and ``cspctl web`` logs it in again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from csp_core.auth import read_token
from csp_core.errors import BadRequest, ConfigError, Forbidden, NotFound, Unauthorized
from csp_core.protocol import API, check_name

from .gateway import gateway_of
from .identity import owner

WEB = "/web"
COOKIE = "csp_session"
CODE_TTL = 120.0  # seconds a login code is good for
SESSION_TTL = 12 * 3600.0  # a browser session, from its login
MAX_CODES = 32  # codes not used yet; the oldest goes first
MAX_SESSIONS = 64
STATIC = {"app.js": "text/javascript", "markdown.js": "text/javascript",
          "style.css": "text/css", "icon.svg": "image/svg+xml"}
ASSETS = Path(__file__).resolve().parent / "webui"  # package data (pyproject.toml)
PAGE_LIMIT = 500  # messages per page of earlier history or search results

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "font-src 'self'; connect-src 'self' {ws}; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
_POLICIES: dict[str, str] = {}  # Host -> its Content-Security-Policy
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class WebSessions:
    """One-time codes and browser sessions, in memory (random ids -> expiry)."""

    codes: dict[str, float] = field(default_factory=dict)
    # session id -> (expiry, digest of the token it was opened under)
    sessions: dict[str, tuple[float, bytes]] = field(default_factory=dict)

    def new_code(self) -> str:
        now = time.monotonic()
        self._expire(now)
        while len(self.codes) >= MAX_CODES:
            self.codes.pop(next(iter(self.codes)))
        code = secrets.token_urlsafe(24)
        self.codes[code] = now + CODE_TTL
        return code

    def redeem(self, code: str, token_digest: bytes) -> str | None:
        """A new session for a good code, which is spent; None for any other."""
        now = time.monotonic()
        self._expire(now)
        expiry = self.codes.pop(code, None)  # spent now, whatever follows
        if expiry is None:
            return None
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = (now + SESSION_TTL, token_digest)
        return sid

    def valid(self, sid: str, token_digest: bytes) -> bool:
        entry = self.sessions.get(sid)
        if entry is None:
            return False
        expiry, digest = entry
        if expiry < time.monotonic() or not hmac.compare_digest(digest, token_digest):
            self.sessions.pop(sid, None)  # expired, or the token was rotated since
            return False
        return True

    def end(self, sid: str) -> None:
        self.sessions.pop(sid, None)

    def _expire(self, now: float) -> None:
        for code in [c for c, t in self.codes.items() if t < now]:
            del self.codes[code]
        for sid in [s for s, (t, _) in self.sessions.items() if t < now]:
            del self.sessions[sid]


SESSIONS = web.AppKey("web_sessions", WebSessions)


def _token_digest(request: web.Request) -> bytes:
    """What ties a session to the token it was opened under: rotating it logs out."""
    try:
        token = read_token(gateway_of(request).tokens.path)
    except ConfigError:
        return b""
    return hashlib.sha256(token.encode()).digest()


def own_hosts(request: web.Request) -> frozenset[str]:
    """``127.0.0.1:PORT`` and the like: the gateway's origins without the scheme."""
    origins = frozenset(gateway_of(request).origins)
    cached = _HOSTS.get(origins)
    if cached is None:
        cached = _HOSTS[origins] = frozenset(urlsplit(o).netloc for o in origins)
    return cached


_HOSTS: dict[frozenset[str], frozenset[str]] = {}


def check_host(request: web.Request) -> None:
    """Refuse a Host that is not one of ours: a DNS-rebinding page names its own."""
    if request.host.lower() not in own_hosts(request):
        raise Forbidden(f"host {request.host!r} is not allowed; open the address "
                        "`cspctl web` prints")


def _check_browser_write(request: web.Request) -> None:
    """A browser's write (and its WebSocket) names its page's origin: it must be ours."""
    if request.method in ("GET", "HEAD") and not _is_websocket(request):
        return
    origin = request.headers.get("Origin")
    if origin is None or origin.rstrip("/").lower() not in gateway_of(request).origins:
        raise Forbidden(f"origin {origin!r} is not allowed")


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def is_page(request: web.Request) -> bool:
    return request.path == WEB or request.path.startswith(WEB + "/")


def vouches(request: web.Request) -> bool:
    """Whether the web view answers for this request instead of the bearer token.

    Its own pages need no token (they hold no data; the page's requests do), and a
    request with a live session cookie and no ``Authorization`` is the owner's.
    Either way the Host must be ours, and a browser write must come from our origin.
    A bad cookie is a 401, so the page can say "log in again".
    """
    if is_page(request):
        check_host(request)
        return True
    sid = request.cookies.get(COOKIE)
    if sid is None or "Authorization" in request.headers:
        return False
    check_host(request)
    _check_browser_write(request)
    if not request.app[SESSIONS].valid(sid, _token_digest(request)):
        raise Unauthorized("the browser session has ended; run `cspctl web` to log in again")
    return True


# -- routes ---------------------------------------------------------------------------

async def new_code(request: web.Request) -> web.Response:
    """``POST /v1/web/code``: a one-time login code (the owner's, like the token)."""
    gw = gateway_of(request)
    owner(request, gw, "opening the web view")
    if "Authorization" not in request.headers:
        raise Forbidden("a login code is given for the token, not for a browser session")
    code = request.app[SESSIONS].new_code()
    return web.json_response({"code": code, "expires_in": CODE_TTL,
                              "path": f"{WEB}/login?code={code}"}, status=201)


async def login(request: web.Request) -> web.Response:
    """Spend the code, set the session cookie, and go on to the page (a 303 either way:
    a spent or stale code lands on the page, which says how to log in again)."""
    code = request.query.get("code", "")
    sid = request.app[SESSIONS].redeem(code, _token_digest(request)) if code else None
    if sid is None:
        return _see_other(f"{WEB}/#expired")
    resp = _see_other(f"{WEB}/")
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                    max_age=int(SESSION_TTL))
    return resp


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def logout(request: web.Request) -> web.Response:
    sid = request.cookies.get(COOKIE)
    if sid is not None:
        _check_browser_write(request)
        request.app[SESSIONS].end(sid)
    resp = web.json_response({"logged_out": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


HELLO_CONTEXT = b"csp-web-hello:"


def hello_proof(token: str, nonce: str) -> str:
    """What only a holder of ``token`` can answer to ``nonce`` (see :func:`hello`)."""
    return hmac.new(token.encode(), HELLO_CONTEXT + nonce.encode(), hashlib.sha256).hexdigest()


async def hello(request: web.Request) -> web.Response:
    """``GET /web/hello?nonce=N``: prove this listener is the gateway that holds the token.

    ``cspctl web`` asks before it sends a login code to a TCP port: another local
    user may have taken the port while this gateway was not listening on it.
    """
    nonce = request.query.get("nonce", "")
    if not 16 <= len(nonce) <= 128:
        raise BadRequest("nonce must be 16 to 128 characters")
    try:
        token = read_token(gateway_of(request).tokens.path)
    except ConfigError as exc:
        raise Forbidden(exc.message) from None
    return web.json_response({"proof": hello_proof(token, nonce)})


def _asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


async def page(request: web.Request) -> web.Response:
    if request.path == WEB:
        return _see_other(f"{WEB}/")
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = STATIC.get(name)
    if kind is None:
        raise NotFound(f"no such file {name!r}")
    return web.Response(body=_asset(name), content_type=kind, charset="utf-8")


def _room_param(request: web.Request) -> str | None:
    room = request.query.get("room") or None
    return check_name(room, "room name") if room is not None else None


def _int_param(request: web.Request, name: str, default: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= hi:
        raise BadRequest(f"{name} must be an integer from 1 to {hi}")
    return int(raw)


async def earlier(request: web.Request) -> web.Response:
    """``GET /v1/web/earlier?room=R&before=ID&limit=N``: the N messages before ID."""
    room = _room_param(request)
    before = _int_param(request, "before", 2**62, 2**62)
    limit = _int_param(request, "limit", 200, PAGE_LIMIT)
    found = await gateway_of(request).store.newest(room, limit, before=before)
    return web.json_response({"messages": [m.to_json() for m in found],
                              "more": len(found) == limit})


async def delivery(request: web.Request) -> web.Response:
    """``GET /v1/web/delivery?id=M``: whom message M still waits for (not typed in yet).

    ``before`` and ``after`` are the newest message id just before and just after the
    look: a recipient pending here acknowledges M after every message up to ``before``;
    one not pending did so before every message past ``after``.  ``cspctl send --wait``
    tells by this which of an agent's replies can answer M.
    """
    gw = gateway_of(request)
    message_id = _int_param(request, "id", 0, 2**62)
    if message_id == 0:
        raise BadRequest("id is required")
    store = gw.store
    before = store.last_id
    pending = await store.pending_recipients(message_id)
    return web.json_response({"id": message_id, "pending": pending, "before": before,
                              "after": store.last_id})


async def search(request: web.Request) -> web.Response:
    """``GET /v1/web/search?q=TEXT&room=R``: the newest messages containing TEXT
    (case-insensitive for ASCII), or sent by a name when TEXT is ``from:NAME``."""
    text = request.query.get("q", "").strip()
    if not text or len(text) > 200:
        raise BadRequest("q must be 1 to 200 characters")
    room = _room_param(request)
    limit = _int_param(request, "limit", 100, PAGE_LIMIT)
    store = gateway_of(request).store
    if text.startswith("from:"):
        sender = text[5:].strip()
        if not sender:
            raise BadRequest("from: needs a name")
        found = await store.newest(room, limit, sender=sender)
    else:
        found = await store.newest(room, limit, text=text)
    return web.json_response({"messages": [m.to_json() for m in found]})


async def _security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """Every answer: a strict CSP (no inline script, no origin but ours), no framing,
    no sniffing.  The WebSocket URL must be named: 'self' is not ws: everywhere."""
    host = request.host.lower()
    policy = _POLICIES.get(host)
    if policy is None:
        ws = f"ws://{host}" if host in own_hosts(request) else ""
        policy = CSP.format(ws=ws).replace("  ", " ")
        if ws:  # a foreign Host is refused anyway; remember only our own
            _POLICIES[host] = policy
    resp.headers.setdefault("Content-Security-Policy", policy)
    for name, value in HEADERS.items():
        resp.headers.setdefault(name, value)


def install(app: web.Application) -> None:
    app[SESSIONS] = WebSessions()
    app.on_response_prepare.append(_security_headers)
    app.router.add_post(f"{API}/web/code", new_code)
    app.router.add_get(f"{API}/web/earlier", earlier)
    app.router.add_get(f"{API}/web/search", search)
    app.router.add_get(f"{API}/web/delivery", delivery)
    app.router.add_get(WEB, page)
    app.router.add_get(f"{WEB}/", page)
    app.router.add_get(f"{WEB}/login", login)
    app.router.add_get(f"{WEB}/hello", hello)
    app.router.add_post(f"{WEB}/logout", logout)
    app.router.add_get(f"{WEB}/static/{{name}}", static)
