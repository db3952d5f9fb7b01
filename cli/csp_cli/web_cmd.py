"""``cspctl web``: the room in a browser.

The gateway serves the page on its loopback TCP listener (see ``cspctl gateway
tcp``); this turns the listener on when it is off, asks the gateway (over the
usual socket, with the token) for a one-time login code, and prints the address
with the code, opening the user's browser when there is a display.  The code is
spent at the first login and expires after two minutes; the browser keeps an
HttpOnly session cookie, never the token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import sys
from urllib.parse import urlencode, urlsplit

import click

from csp_core import quick
from csp_core.auth import read_token
from csp_core.config import gateway_config
from csp_core.endpoint import gateway_address, owner_only
from csp_core.errors import CspError, GatewayUnavailable
from csp_core.protocol import API

from .render import print_json
from .runner import edge

PROBE_TIMEOUT = 3.0


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), PROBE_TIMEOUT):
        return True
    return False


def _configured_address() -> tuple[str, int]:
    """Where the web view is: ``$CSP_GATEWAY`` when it is a TCP address, else the
    loopback port of the configuration (the TCP socket unit's, when systemd has one)."""
    address = gateway_address()
    if address.startswith("http://"):
        url = urlsplit(address)
        return url.hostname or "127.0.0.1", url.port or 80
    return "127.0.0.1", gateway_config().tcp_port


def _turn_tcp_on(host: str, port: int) -> tuple[str, int]:
    """Start the TCP socket unit (for this session only), as ``gateway tcp on --now-only``."""
    from . import gateway_cmd, systemd

    try:
        done = gateway_cmd._tcp_on(persist=False)
        address = gateway_cmd._tcp_address()
    except systemd.NoUserManager as exc:
        why = exc.message.splitlines()[0].rstrip(".")
        raise GatewayUnavailable(f"nothing listens on {_host(host)}:{port}, and {why}; "
                                 "run the gateway as `cspd --tcp`") from None
    click.echo(f"tcp: {done}", err=True)
    if address is None:
        raise GatewayUnavailable("the TCP socket unit has no loopback address")
    return address


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_listener(host: str, port: int) -> None:
    """The listener must prove it holds the token before it is sent a login code: another
    local user may have taken the port while the gateway was not listening on it."""
    nonce = secrets.token_urlsafe(24)
    conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", "/web/hello?" + urlencode({"nonce": nonce}))
        resp = conn.getresponse()
        body = resp.read()
    except OSError as exc:
        raise GatewayUnavailable.not_running(f"http://{_host(host)}:{port}", str(exc)) from None
    finally:
        conn.close()
    try:
        proof = str(json.loads(body)["proof"])
    except (ValueError, KeyError, TypeError):
        proof = ""
    # the same formula as cspd.web.hello_proof (the CLI does not import the daemon)
    good = hmac.new(read_token().encode(), b"csp-web-hello:" + nonce.encode(),
                    hashlib.sha256).hexdigest()
    if resp.status != 200 or not hmac.compare_digest(proof, good):
        raise CspError(f"what listens on {_host(host)}:{port} is not this user's gateway "
                       f"(HTTP {resp.status}); stop it or change gateway.tcp_port")


def _has_display() -> bool:
    """A graphical browser can open: without one, ``webbrowser`` would start a text
    browser (lynx, w3m) in this terminal instead."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY")
                                            or os.environ.get("WAYLAND_DISPLAY"))


def _open(url: str) -> bool:
    import webbrowser

    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


@click.command("web")
@click.option("--no-open", is_flag=True, help="Print the address only; open no browser.")
@click.option("--json", "as_json", is_flag=True, help="Print the address as JSON.")
@edge
def web(no_open: bool, as_json: bool) -> None:
    """Open the room in a browser (served by the gateway on 127.0.0.1).

    \b
      cspctl web                 # prints the login address and opens the browser
      cspctl web --no-open       # on a machine without a display: copy the address
      cspctl web --json | jq -r .login_url

    Turns the loopback TCP listener on for this session if it is off (see
    `cspctl gateway tcp`).  The address carries a one-time code, good for one
    login within two minutes; the browser then holds a session cookie, never
    the token.  Run it again for another browser or after a gateway restart.
    """
    owner_only("opening the web view")
    host, port = _configured_address()
    if not _listening(host, port):
        if gateway_address().startswith("http://"):
            raise GatewayUnavailable.not_running(gateway_address(), "nothing listens there")
        host, port = _turn_tcp_on(host, port)
    _check_listener(host, port)
    answer = quick.call("POST", f"{API}/web/code")
    base = f"http://{_host(host)}:{port}"
    login_url = base + str(answer["path"])
    expires = float(answer.get("expires_in", 120))
    opened = False
    if not no_open and _has_display():
        opened = _open(login_url)
    if as_json:
        print_json({"url": base + "/web/", "login_url": login_url, "expires_in": expires,
                    "opened": opened})
        return
    click.echo(login_url)
    how = "opened in your browser" if opened else "open it in a browser on this machine"
    click.echo(f"cspctl: {how}; the code works once, within {expires:.0f}s", err=True)
