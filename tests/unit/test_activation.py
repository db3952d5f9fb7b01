"""Socket activation parsing and binding the socket by hand.

The LISTEN_FDS cases run in a child process: it puts real sockets on fds 3..
the way systemd does, so the test process's own descriptors are never touched.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from csp_core.errors import ConfigError
from cspd.activation import bind_tcp, bind_unix, inherited_sockets, tcp_port_of

CHILD = r"""
import json, os, socket, sys
from cspd.activation import inherited_sockets
spec = json.loads(sys.argv[1])
keep = []
for i, kind in enumerate(spec["socks"]):
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(spec["path"]); s.listen(1)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0)); s.listen(1)
    os.dup2(s.fileno(), 3 + i, inheritable=True)
    keep.append(s)
os.environ["LISTEN_FDS"] = str(len(spec["socks"]))
os.environ["LISTEN_PID"] = str(os.getpid() + spec.get("pid_offset", 0))
if spec.get("names") is not None:
    os.environ["LISTEN_FDNAMES"] = spec["names"]
got = inherited_sockets()
print(json.dumps({
    "listeners": [{"name": l.name, "fd": l.sock.fileno(), "inherited": l.inherited,
                   "path": str(l.path) if l.path else None, "family": int(l.sock.family),
                   "cloexec": not os.get_inheritable(l.sock.fileno())} for l in got],
    "env": {k: v for k, v in os.environ.items() if k.startswith("LISTEN_")},
}))
"""


def run_child(tmp_path: Path, **spec: Any) -> dict[str, Any]:
    spec.setdefault("path", str(tmp_path / "gateway.sock"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_takes_named_sockets(tmp_path: Path) -> None:
    out = run_child(tmp_path, socks=["unix", "tcp"], names="unix:tcp")
    ls = out["listeners"]
    assert [(x["name"], x["fd"]) for x in ls] == [("unix", 3), ("tcp", 4)]
    assert ls[0]["path"] == str(tmp_path / "gateway.sock") and ls[1]["path"] is None
    assert ls[0]["family"] == socket.AF_UNIX and ls[1]["family"] == socket.AF_INET
    assert all(x["inherited"] and x["cloexec"] for x in ls)
    assert out["env"] == {}  # nothing we spawn believes the sockets are its own


def test_missing_names_fall_back_to_fd_numbers(tmp_path: Path) -> None:
    out = run_child(tmp_path, socks=["unix", "tcp"], names=None)
    assert [x["name"] for x in out["listeners"]] == ["fd3", "fd4"]
    out = run_child(tmp_path, socks=["unix", "tcp"], names="only",
                    path=str(tmp_path / "second.sock"))
    assert [x["name"] for x in out["listeners"]] == ["only", "fd4"]


def test_wrong_pid_is_ignored_and_cleared(tmp_path: Path) -> None:
    out = run_child(tmp_path, socks=["unix"], names="unix", pid_offset=1)
    assert out["listeners"] == [] and out["env"] == {}


@pytest.mark.parametrize("env", [
    {}, {"LISTEN_PID": "abc", "LISTEN_FDS": "1"}, {"LISTEN_FDS": "0"},
    {"LISTEN_FDS": "x", "LISTEN_FDNAMES": "unix"}])
def test_no_or_bad_variables(env: dict[str, str]) -> None:
    environ = {**env, "OTHER": "1"}
    if "LISTEN_FDS" in env and env["LISTEN_FDS"] == "0":
        environ["LISTEN_PID"] = str(os.getpid())
    assert inherited_sockets(environ) == []
    assert environ == {"OTHER": "1"}


def test_bind_unix_creates_private_socket(tmp_path: Path) -> None:
    path = tmp_path / "run" / "csp" / "gateway.sock"
    listener = bind_unix(path)
    try:
        assert not listener.inherited and listener.path == path
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        # it is really listening
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(path))
        # a live socket is refused, and left alone
        with pytest.raises(ConfigError, match="in use"):
            bind_unix(path)
        assert path.exists()
    finally:
        listener.sock.close()


def test_bind_unix_replaces_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: stale
    listener = bind_unix(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(path))
    finally:
        listener.sock.close()


def test_bind_unix_refuses_non_socket(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sock"
    path.write_text("precious")
    with pytest.raises(ConfigError, match="not a socket"):
        bind_unix(path)
    assert path.read_text() == "precious"


def test_bind_tcp_is_loopback_only() -> None:
    listener = bind_tcp(0)
    try:
        host, port = listener.sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert tcp_port_of([listener]) == port
        with pytest.raises(ConfigError, match="cannot listen"):
            bind_tcp(port)
    finally:
        listener.sock.close()
