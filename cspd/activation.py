"""Listening sockets: inherited from systemd, or bound by hand.

With socket activation systemd passes the sockets as fds 3.. and names them in
``LISTEN_FDNAMES`` (``FileDescriptorName=`` in the socket units).  The
variables are checked against ``LISTEN_PID`` and removed from the environment
so that nothing we spawn believes the sockets are its own.  Inherited sockets
are never unlinked: they belong to systemd.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

SD_LISTEN_FDS_START = 3


@dataclass
class Listener:
    sock: socket.socket
    name: str
    inherited: bool
    path: Path | None = None


def inherited_sockets(environ: dict[str, str] | None = None) -> list[Listener]:
    """Take the sockets systemd passed us (and clear the variables)."""
    env = os.environ if environ is None else environ
    try:
        pid = int(env.get("LISTEN_PID", "0"))
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        count, pid = 0, 0
    names = env.get("LISTEN_FDNAMES", "").split(":")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(var, None)
    if pid != os.getpid() or count <= 0:
        return []
    listeners = []
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        name = names[i] if i < len(names) and names[i] else f"fd{fd}"
        path = Path(sock.getsockname()) if sock.family == socket.AF_UNIX else None
        listeners.append(Listener(sock, name, inherited=True, path=path))
    return listeners


def bind_unix(path: Path) -> Listener:
    """Bind the gateway socket ourselves (run by hand, no systemd)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            if _socket_alive(path):
                raise ConfigError(f"{path} is in use: a gateway is already running "
                                  "(see `cspctl gateway status`)")
            path.unlink()
        else:
            raise ConfigError(f"{path} exists and is not a socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return Listener(sock, "unix", inherited=False, path=path)


def bind_tcp(port: int) -> Listener:
    """Loopback only, never a wildcard address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return Listener(sock, "tcp", inherited=False)


def _socket_alive(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return True


def tcp_port_of(listeners: list[Listener]) -> int | None:
    for listener in listeners:
        if listener.sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(listener.sock.getsockname()[1])
    return None
