"""``cspd``: the gateway daemon's entry point and lifecycle.

Started by systemd (``csp-gateway.service``, socket-activated) or by hand in a
terminal.  Lifecycle: config, sockets, token, store, serve, ``READY=1``; SIGHUP
reloads the config; SIGTERM/SIGINT stop cleanly after ``STOPPING=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from csp_core import __version__, paths
from csp_core.auth import ensure_token
from csp_core.config import gateway_config
from csp_core.errors import CspError

from . import activation, restarts
from .notify import Notifier

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("cspd")

# where OpenSSL looks for the certificate authorities it trusts
_TLS_ROOTS = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@contextlib.contextmanager
def _no_tls_roots() -> Iterator[None]:
    """While importing aiohttp: point OpenSSL's trusted roots at nothing.

    Only under uvloop, which loads :mod:`ssl`; otherwise the entry point left TLS
    out altogether (:mod:`.entry`).  aiohttp builds two TLS *client* contexts when
    it is imported, loading every
    certificate authority of the system (some 65 ms and 1.7 MiB on a 2-core
    machine, measured by `make bench` cases cold_start and gateway_idle).  The
    gateway is never a TLS client, so its copies stay empty; the variables are
    put back at once, and nothing else the gateway does reads them.
    """
    saved = {name: os.environ.get(name) for name in _TLS_ROOTS}
    os.environ.update(dict.fromkeys(_TLS_ROOTS, os.devnull))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def serve(tcp: bool) -> None:
    with _no_tls_roots():  # imported here, not at the top: see _no_tls_roots
        from .app import create_app
        from .edge import start_http
        from .gateway import open_gateway
    config = gateway_config()
    # before any socket: the connection budgets are cut from the file limit in force
    caps = activation.connection_caps(activation.raise_fd_limit())
    listeners = activation.inherited_sockets()
    if not listeners:
        listeners.append(activation.bind_unix(paths.socket_path()))
        if tcp:
            listeners.append(activation.bind_tcp(config.tcp_port))
    ensure_token()
    gw = open_gateway(config, paths.database_path(), paths.token_path())
    await gw.store.open()
    await gw.router.load()
    app = create_app(gw, activation.tcp_port_of(listeners))
    runner, _ = await start_http(app, listeners, caps)
    log.info("serving on %s", ", ".join(
        str(lst.path or lst.sock.getsockname()) + (" (systemd)" if lst.inherited else "")
        for lst in listeners))
    log.info("connection limits: %d on the unix socket, %d on TCP", caps.unix, caps.tcp)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(gw))
    # what start-up made (aiohttp, SQLite, the routes: some 40,000 objects) lives as
    # long as the gateway: out of the collector's full passes, which otherwise walked
    # it all, 15-45 ms with the loop stopped, several times a minute under load
    gc.freeze()
    gw.notifier.ready(gw.status_text())
    gw.notifier.start_watchdog(loop)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        gw.notifier.stopping()
        gw.notifier.stop_watchdog()
        await runner.cleanup()
        await gw.store.close()
        for listener in listeners:
            if not listener.inherited and listener.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    listener.path.unlink()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """asyncio's own event loop; uvloop's with ``CSP_EVENT_LOOP=uvloop`` (if installed).

    Not the default: measured on a 2-core machine (`make bench`, durable_rate,
    prints both loops), a bare aiohttp server answers 1.4-1.6 times the requests
    on uvloop, but csp's gateway only 3-15% more durable messages a second (most
    of its time is its own Python and aiohttp's, not the loop's), one idle
    agent's message arrives no sooner, and the gateway holds 42.6 MiB instead of
    35.3 at rest (uvloop loads :mod:`ssl`): past the 40 MiB it should stay under.
    (A browser page's reload once lost messages under uvloop; it did not recur
    in five runs of tests/integration/test_web.py, and the non-systemd
    integration suite passes with the gateway on uvloop.)
    """
    if os.environ.get("CSP_EVENT_LOOP") != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("CSP_EVENT_LOOP=uvloop but uvloop is not installed: asyncio's loop")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _reload(gw: Gateway) -> None:
    """SIGHUP: re-read config.toml; keep the old one if the new one is invalid.

    ``READY=1`` follows ``RELOADING=1`` whatever goes wrong in between (a token
    file that is gone, a bug): without it systemd would keep the unit
    "reloading" for good.
    """
    gw.notifier.reloading()
    try:
        try:
            config = gateway_config()
        except CspError as exc:
            log.error("reload failed, keeping the running config: %s", exc.message)
        else:
            gw.config = config
            gw.router.config = config
            gw.limiter.configure(config.rate_per_second, config.rate_burst)
            log.info("configuration reloaded")
        try:
            gw.tokens.refresh()
        except (OSError, CspError) as exc:
            why = exc.message if isinstance(exc, CspError) else (exc.strerror or str(exc))
            log.warning("cannot re-read the token file (%s); the current token stays valid "
                        "(`cspctl token --rotate` writes a new one)", why)
    except Exception:
        log.exception("reload failed, keeping the running config")
    finally:
        gw.notifier.ready(gw.status_text())


DESCRIPTION = """\
The csp gateway: routes and stores the group chat.

Normally started by systemd (`systemctl --user start csp-gateway`), which
hands it the socket $XDG_RUNTIME_DIR/csp/gateway.sock.  Run by hand, it
binds that socket itself and serves until Ctrl-C.

  cspd                     # in a terminal, where there is no systemd --user
  cspd --tcp -v            # also on 127.0.0.1:8765, with debug logs
  cspctl gateway status    # is it answering? (exit 0, or 3 when not)

SIGHUP re-reads [gateway] in config.toml (`cspctl config show`).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (argparse, which aiohttp imports anyway: click would be one
    more library in the gateway's memory and start-up, for three options)."""
    parser = argparse.ArgumentParser(
        prog="cspd", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tcp", action="store_true", help=(
        "Also listen on 127.0.0.1 (port from config, default 8765) when run by hand."))
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug detail.")
    parser.add_argument("--version", action="version", version=f"cspd, version {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """``cspd [--tcp] [-v]``: see :data:`DESCRIPTION`."""
    args = parse_args(argv)
    tcp, verbose = bool(args.tcp), bool(args.verbose)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if os.environ.get("INVOCATION_ID")
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr)
    # until the loop's own handler is in place, a reload request must not kill us
    # (SIGHUP's default action); the config is read at start anyway
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pacer = restarts.Pacer(Notifier())
    if not pacer.start():  # crash-loop backoff under systemd; False: stopped while waiting
        return
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(tcp))
    except CspError as exc:
        pacer.failed(exc.message)
        print(f"cspd: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        pacer.failed(f"{exc.__class__.__name__}: {exc}")
        raise
    pacer.clean()
