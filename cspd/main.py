"""``cspd``: the gateway daemon's entry point and lifecycle.

Started by systemd (``csp-gateway.service``, socket-activated) or by hand in a
terminal.  Lifecycle: config, sockets, token, store, serve, ``READY=1``; SIGHUP
reloads the config; SIGTERM/SIGINT stop cleanly after ``STOPPING=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import click
from aiohttp import web

from . import __version__, activation, paths
from .app import Gateway, create_app, open_gateway
from .auth import ensure_token
from .config import gateway_config
from .errors import CspError

log = logging.getLogger("cspd")


async def serve(tcp: bool) -> None:
    config = gateway_config()
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
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    for listener in listeners:
        await web.SockSite(runner, listener.sock, shutdown_timeout=2.0).start()
    log.info("serving on %s", ", ".join(
        str(lst.path or lst.sock.getsockname()) + (" (systemd)" if lst.inherited else "")
        for lst in listeners))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(gw))
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


def _reload(gw: Gateway) -> None:
    """SIGHUP: re-read config.toml; keep the old one if the new one is invalid."""
    gw.notifier.reloading()
    try:
        config = gateway_config()
    except CspError as exc:
        log.error("reload failed, keeping the running config: %s", exc.message)
    else:
        gw.config = config
        gw.router.config = config
        gw.limiter.configure(config.rate_per_second, config.rate_burst)
        log.info("configuration reloaded")
    gw.tokens.refresh()
    gw.notifier.ready(gw.status_text())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tcp", is_flag=True,
              help="Also listen on 127.0.0.1 (port from config, default 8765) when run by hand.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.version_option(__version__, prog_name="cspd")
def main(tcp: bool, verbose: bool) -> None:
    """The csp gateway: routes and stores the group chat.

    Normally started by systemd (`systemctl --user start csp-gateway`), which
    hands it the socket $XDG_RUNTIME_DIR/csp/gateway.sock.  Run by hand, it
    binds that socket itself and serves until Ctrl-C.

    \b
      cspd                     # in a terminal, where there is no systemd --user
      cspd --tcp -v            # also on 127.0.0.1:8765, with debug logs
      cspctl gateway status    # is it answering? (exit 0, or 3 when not)

    SIGHUP re-reads [gateway] in config.toml (`cspctl config show`).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if os.environ.get("INVOCATION_ID")
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr)
    try:
        asyncio.run(serve(tcp))
    except CspError as exc:
        click.echo(f"cspd: {exc.message}", err=True)
        sys.exit(exc.exit_code)
