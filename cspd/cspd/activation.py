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
import resource
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from csp_core.errors import ConfigError

SD_LISTEN_FDS_START = 3

# Connection budgets.  systemd gives a user service a soft limit of 1024 open files
# (hard 524288); the gateway raises the soft one towards FD_LIMIT_WANTED and shares
# what it gets between its listeners, keeping RESERVED_FDS for itself (stdio, the
# listeners, SQLite's database, WAL and shm, epoll, the loop's self-pipe, the session
# bus, the notify socket, executor threads' files) and, per listener, room for
# REFUSED_LINGERING refused connections kept a moment to read their request.  The
# unix socket (the owner's, 0600) gets its own budget, so a flood on the TCP port can
# never starve it; the TCP port is loopback only, and every peer is local, so its
# cap is a total, not per address.
FD_LIMIT_WANTED = 65536
RESERVED_FDS = 64
REFUSED_LINGERING = 32
UNIX_MAX = 1024
TCP_MAX = 256


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


@dataclass(frozen=True)
class ConnectionCaps:
    """How many connections each kind of listener may hold open at once."""

    unix: int
    tcp: int

    def for_family(self, family: int) -> int:
        return self.unix if family == socket.AF_UNIX else self.tcp


def raise_fd_limit(wanted: int = FD_LIMIT_WANTED) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard one; return the soft limit in force.

    Never fatal: under ``SystemCallFilter=~@resources`` (or any refusal) the limit
    stays what it was and the budgets shrink to fit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return wanted if soft == resource.RLIM_INFINITY else int(soft)


def connection_caps(fd_limit: int, unix_max: int = UNIX_MAX,
                    tcp_max: int = TCP_MAX) -> ConnectionCaps:
    """Share ``fd_limit`` between the listeners so the process never reaches EMFILE.

    TCP gets at most a third of what is left after the reserve; the unix socket gets
    the rest (up to its own maximum), so the owner keeps room however full TCP is.
    """
    available = max(fd_limit - RESERVED_FDS - 2 * REFUSED_LINGERING, 8)
    tcp = max(1, min(tcp_max, available // 3))
    unix = max(1, min(unix_max, available - tcp))
    return ConnectionCaps(unix=unix, tcp=tcp)


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
