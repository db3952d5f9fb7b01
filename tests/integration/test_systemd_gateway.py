"""The gateway as a real systemd user service, installed by the real ``make install``.

One isolated ``systemd --user`` per test session (tests/usermanager.py) and one
``make install PREFIX=$HOME/.local`` into its temporary HOME; every test then
drives the installed units and the installed ``cspctl`` the way a user would.
The last test runs ``make uninstall`` and compares file lists, so keep it last.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.polling import wait_for
from tests.usermanager import UnitWatch, UserManager, user_manager, wait_gone

__all__ = ["user_manager"]  # the session fixture, re-exported for pytest

# they share one isolated systemd --user, and `make test` runs them on their own (see Makefile)
pytestmark = [pytest.mark.integration, pytest.mark.systemd]

SERVICE = "csp-gateway.service"
SOCKET = "csp-gateway.socket"
TCP_SOCKET = "csp-gateway-tcp.socket"
UNITS = (SERVICE, SOCKET, TCP_SOCKET)
STATUS_RE = re.compile(r"^\d+ agents? online, (\d+) messages")
# where an install may put files under HOME: PREFIX, and the user's unit dir
# (enable/disable symlinks); the gateway's own data is not the install's
INSTALL_AREAS = (".local/", ".config/systemd/")
RUNTIME_DATA = (".local/state/",)


# --------------------------------------------------------------------- helpers

def home_files(home: Path) -> set[str]:
    """Files and symlinks (relative) where an install may write, minus runtime data."""
    out = set()
    for dirpath, dirs, files in os.walk(home):
        links = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
        for name in (*files, *links):
            rel = os.path.relpath(os.path.join(dirpath, name), home)
            if rel.startswith(INSTALL_AREAS) and not rel.startswith(RUNTIME_DATA):
                out.add(rel)
    return out


def pip_cache() -> str:
    """The developer's pip cache, so the install downloads nothing twice."""
    return os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")


def make(um: UserManager, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = um.run("make", "-C", str(REPO), *args, timeout=timeout,
               extra_env={"PIP_CACHE_DIR": pip_cache(), "PYTHON": "python3"})
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 15) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


@dataclass
class Reply:
    status: int
    body: dict[str, object]


def request(conn: http.client.HTTPConnection, method: str, path: str, token: str | None,
            body: object = None, headers: dict[str, str] | None = None) -> Reply:
    h = {"Connection": "close", **(headers or {})}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    return Reply(resp.status, json.loads(raw) if raw else {})


@dataclass
class Installed:
    um: UserManager
    before: set[str] = field(repr=False)
    after: set[str] = field(repr=False)

    @property
    def home(self) -> Path:
        return self.um.home

    @property
    def prefix(self) -> Path:
        return self.home / ".local"

    @property
    def csp_runtime(self) -> Path:
        return self.um.runtime / "csp"

    @property
    def socket(self) -> Path:
        return self.csp_runtime / "gateway.sock"

    def token(self) -> str:
        return (self.csp_runtime / "token").read_text().strip()

    def cspctl(self, *args: str, input: str | None = None,
               extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The installed cspctl, as the user would run it."""
        return self.um.run(str(self.prefix / "bin" / "cspctl"), *args, input=input,
                           extra_env=extra_env)

    def send(self, *args: str) -> dict[str, object]:
        r = self.cspctl("send", *args, "--json")
        assert r.returncode == 0, f"cspctl send: rc={r.returncode} {r.stderr}\n{self.um.log_tail()}"
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def history(self) -> list[dict[str, object]]:
        r = self.cspctl("history", "--json", "--limit", "5000")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def main_pid(self) -> int:
        return int(self.um.prop(SERVICE, "MainPID"))


@pytest.fixture(scope="session")
def installed(user_manager: UserManager) -> Installed:
    """``make install PREFIX=$HOME/.local`` once per session, into the manager's HOME."""
    before = home_files(user_manager.home)
    r = make(user_manager, "install", f"PREFIX={user_manager.home / '.local'}")
    assert "systemd user manager reloaded" in r.stdout, r.stdout
    return Installed(user_manager, before, home_files(user_manager.home))


@pytest.fixture
def gw(installed: Installed) -> Iterator[Installed]:
    """Every test starts with the units installed and everything stopped."""
    um = installed.um
    um.systemctl("stop", *UNITS)
    um.systemctl("reset-failed", *UNITS)
    yield installed
    um.systemctl("stop", *UNITS)
    um.systemctl("reset-failed", *UNITS)


def log_since(um: UserManager, offset: int) -> str:
    return um.log_text()[offset:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ----------------------------------------------------------------------- tests

def test_install_lays_out_bin_venv_and_units(installed: Installed) -> None:
    new = installed.after - installed.before
    for exe in ("cspd", "csp-sidecar", "cspctl"):
        link = installed.prefix / "bin" / exe
        assert f".local/bin/{exe}" in new
        assert os.readlink(link) == str(installed.prefix / "lib/csp/venv/bin" / exe)
    unitdir = installed.prefix / "share/systemd/user"
    for unit in UNITS:
        assert f".local/share/systemd/user/{unit}" in new
    text = (unitdir / SERVICE).read_text()
    assert f"ExecStart={installed.prefix}/lib/csp/venv/bin/cspd\n" in text
    assert "@CSPD@" not in text
    assert installed.um.prop(SERVICE, "FragmentPath") == str(unitdir / SERVICE)


def test_first_send_activates_the_service_and_status_shows(gw: Installed) -> None:
    um = gw.um
    um.ok("start", SOCKET)
    assert um.prop(SERVICE, "ActiveState") == "inactive"
    # the socket belongs to systemd: 0600 in a 0700 dir, before the daemon runs
    assert stat.S_IMODE(gw.socket.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(gw.socket.stat().st_mode)
    assert stat.S_IMODE(gw.csp_runtime.stat().st_mode) == 0o700

    first = gw.send("@all", "hello from a script")
    assert um.prop(SERVICE, "ActiveState") == "active"
    assert gw.main_pid() > 0
    assert stat.S_IMODE((gw.csp_runtime / "token").stat().st_mode) == 0o600
    assert first["from"] == "human" and first["to"] == ["all"]

    second = gw.send("@all", "and again")
    assert int(second["id"]) > int(first["id"])  # type: ignore[call-overload]

    def status_counts_second() -> bool:
        m = STATUS_RE.match(um.prop(SERVICE, "StatusText"))
        return m is not None and int(m.group(1)) >= int(second["id"])  # type: ignore[call-overload]
    wait_for(status_counts_second, what="StatusText to count the messages")

    ids = [m["id"] for m in gw.history()]
    assert first["id"] in ids and second["id"] in ids
    r = gw.cspctl("gateway", "status")
    assert r.returncode == 0 and "messages" in r.stdout, r.stdout + r.stderr


def test_start_the_service_directly(gw: Installed) -> None:
    gw.um.ok("start", "csp-gateway")
    assert gw.um.prop(SERVICE, "ActiveState") == "active"
    assert gw.um.prop(SOCKET, "ActiveState") == "active"  # Requires= pulled it in
    assert STATUS_RE.match(gw.um.prop(SERVICE, "StatusText"))
    assert gw.send("@all", "started by hand")["content"] == "started by hand"


def test_enable_now_socket(gw: Installed) -> None:
    um = gw.um
    um.ok("enable", "--now", SOCKET)
    try:
        link = um.home / ".config/systemd/user/sockets.target.wants" / SOCKET
        assert link.is_symlink()
        assert um.systemctl("is-enabled", SOCKET).stdout.strip() == "enabled"
        assert um.prop(SOCKET, "ActiveState") == "active"
        gw.send("@all", "via the enabled socket")
        assert um.prop(SERVICE, "ActiveState") == "active"
    finally:
        um.ok("disable", "--now", SOCKET)
    assert not link.exists()


def test_wrong_token_is_refused(gw: Installed, tmp_path: Path) -> None:
    gw.um.ok("start", SOCKET)
    gw.send("@all", "make sure it runs")  # also creates the real token
    reply = request(UnixHTTPConnection(gw.socket), "POST", "/v1/messages", "not-the-token",
                    {"to": ["@all"], "content": "sneaky"})
    assert reply.status == 401
    assert reply.body["error"] == "unauthorized" and reply.body["message"]
    assert request(UnixHTTPConnection(gw.socket), "GET", "/v1/health", None).status == 401

    # a client whose token file is stale, pointed at the real socket
    fake_run = tmp_path / "run"
    (fake_run / "csp").mkdir(parents=True, mode=0o700)
    (fake_run / "csp" / "token").write_text("stale-token\n")
    r = gw.cspctl("send", "@all", "should not land",
                  extra_env={"XDG_RUNTIME_DIR": str(fake_run), "CSP_GATEWAY": str(gw.socket)})
    assert r.returncode == 4, r.stdout + r.stderr
    assert "token" in r.stderr and "Traceback" not in r.stderr
    assert all(m["content"] != "should not land" for m in gw.history())


@dataclass
class Poster:
    """Threads posting over the unix socket; remembers what the gateway acknowledged."""

    socket: Path
    token: str
    acked: dict[int, str] = field(default_factory=dict)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            content = f"w{worker}-{n}"
            try:
                reply = request(UnixHTTPConnection(self.socket, timeout=20), "POST",
                                "/v1/messages", self.token, {"to": ["@all"], "content": content})
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.failures += 1
                continue
            if reply.status == 201:
                with self.lock:
                    self.acked[int(reply.body["id"])] = content  # type: ignore[call-overload]

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def test_kill_9_loses_no_acknowledged_message(gw: Installed) -> None:
    um = gw.um
    um.ok("start", SOCKET)
    gw.send("@all", "warm up")
    poster = Poster(gw.socket, gw.token())
    threads = [threading.Thread(target=poster.run, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: poster.count() >= 30, what="30 acknowledged messages")
        pid = gw.main_pid()
        os.kill(pid, 9)  # in the middle of the burst
        wait_gone(pid)
        before_kill = poster.count()
        wait_for(lambda: poster.count() >= before_kill + 30, timeout=30,
                 what="the gateway to come back and acknowledge again")
    finally:
        poster.stop.set()
        for t in threads:
            t.join(timeout=30)
    assert gw.main_pid() not in (0, pid)
    stored = {int(m["id"]): m["content"] for m in gw.history()}  # type: ignore[call-overload]
    lost = {i: c for i, c in poster.acked.items() if stored.get(i) != c}
    assert not lost, f"acknowledged but lost after kill -9: {sorted(lost)[:10]}"


def test_kill_9_then_next_request_activates(gw: Installed) -> None:
    """Without Restart=, the socket alone brings the killed daemon back."""
    um = gw.um
    dropin = um.home / ".config/systemd/user" / f"{SERVICE}.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "no-restart.conf").write_text("[Service]\nRestart=no\n")
    um.ok("daemon-reload")
    try:
        um.ok("start", SOCKET)
        acked = gw.send("@all", "before the kill")
        pid = gw.main_pid()
        os.kill(pid, 9)
        wait_gone(pid)
        wait_for(lambda: um.prop(SERVICE, "ActiveState") == "failed", what="service failed")
        assert um.prop(SOCKET, "ActiveState") == "active"
        after = gw.send("@all", "after the kill")
        assert gw.main_pid() not in (0, pid)
        contents = {m["id"]: m["content"] for m in gw.history()}
        assert contents[acked["id"]] == "before the kill"
        assert contents[after["id"]] == "after the kill"
    finally:
        shutil.rmtree(dropin)
        um.ok("daemon-reload")


def flat(watch: UnitWatch) -> list[tuple[str, object]]:
    return [item for change in watch.snapshot() for item in change.items()]


def after(seq: list[tuple[str, object]], item: tuple[str, object]) -> list[tuple[str, object]]:
    """What came after the first ``item`` in ``seq`` (fails if it never came)."""
    assert item in seq, f"{item} never reported; saw {seq}"
    return seq[seq.index(item) + 1:]


def test_reload_rereads_config_and_notifies(gw: Installed) -> None:
    um = gw.um
    um.ok("start", SERVICE)
    pid = gw.main_pid()
    config = um.home / ".config/csp/config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    big = "x" * 300
    assert gw.cspctl("send", "@all", big).returncode == 0
    offset = len(um.log_text())
    try:
        config.write_text("[gateway]\nmax_message_bytes = 100\n")
        with UnitWatch(um, SERVICE) as watch:
            um.ok("reload", "csp-gateway")

            def ready_again() -> bool:
                seq = flat(watch)
                if ("StatusText", "reloading configuration") not in seq:
                    return False
                rest = after(seq, ("StatusText", "reloading configuration"))
                return ("ActiveState", "active") in rest
            wait_for(ready_again, what="RELOADING=1 then READY=1 to reach systemd")
        # RELOADING=1 (sent with STATUS=reloading configuration) put the unit in
        # "reloading"; READY=1 brought it back to "active" with the usual status
        rest = after(flat(watch), ("StatusText", "reloading configuration"))
        assert ("ActiveState", "reloading") in rest
        after(rest, ("ActiveState", "active"))
        statuses = [v for k, v in rest if k == "StatusText"]
        assert any(STATUS_RE.match(str(v)) for v in statuses), rest
        assert gw.main_pid() == pid  # reloaded, not restarted

        r = gw.cspctl("send", "@all", big)
        assert r.returncode == 2, r.stdout + r.stderr  # the new limit is in force
        assert "100" in r.stderr or "large" in r.stderr, r.stderr
        assert "configuration reloaded" in log_since(um, offset)
        assert um.show(SERVICE, "ActiveState", "SubState") == {
            "ActiveState": "active", "SubState": "running"}
    finally:
        config.unlink(missing_ok=True)
        um.ok("reload", "csp-gateway")
    wait_for(lambda: gw.cspctl("send", "@all", big).returncode == 0,
             what="the default limit to be back")


def test_stop_is_clean(gw: Installed) -> None:
    um = gw.um
    um.ok("start", SERVICE)
    pid = gw.main_pid()
    offset = len(um.log_text())
    with UnitWatch(um, SERVICE) as watch:
        um.ok("stop", SERVICE)
        wait_for(lambda: ("ActiveState", "inactive") in flat(watch), what="inactive")
    props = um.show(SERVICE, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success",
                     "ExecMainCode": "1", "ExecMainStatus": "0"}, props
    # STOPPING=1 went out with STATUS=stopping, before the unit was inactive
    seq = flat(watch)
    assert ("ActiveState", "inactive") in after(seq, ("StatusText", "stopping"))
    wait_gone(pid)
    assert "stopping" in log_since(um, offset)
    # the socket stays: the next client starts it again
    assert um.prop(SOCKET, "ActiveState") == "active"
    assert gw.socket.exists()
    gw.send("@all", "after a stop")


def test_tcp_socket_on_loopback_with_origin_check(gw: Installed) -> None:
    um = gw.um
    dropin = um.home / ".config/systemd/user" / f"{TCP_SOCKET}.d"
    port = 8765
    if not port_is_free(port):
        port = free_port()
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "port.conf").write_text(
            f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")
        um.ok("daemon-reload")
    try:
        um.ok("start", TCP_SOCKET)
        assert um.prop(TCP_SOCKET, "Listen") == f"127.0.0.1:{port} (Stream)"
        assert um.prop(SERVICE, "ActiveState") == "inactive"
        token = gw.token() if (gw.csp_runtime / "token").exists() else None
        # a request over TCP activates the service (the unix socket comes along)
        health = request(http.client.HTTPConnection("127.0.0.1", port, timeout=15),
                         "GET", "/v1/health", token or "x")
        if token is None:  # the daemon created the token on its first start
            assert health.status == 401
            token = gw.token()
            health = request(http.client.HTTPConnection("127.0.0.1", port, timeout=15),
                             "GET", "/v1/health", token)
        assert health.status == 200 and health.body["ok"] is True
        assert um.prop(SERVICE, "ActiveState") == "active"

        def tcp(method: str, path: str, origin: str | None, **kw: object) -> Reply:
            headers = {"Origin": origin} if origin else {}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            return request(conn, method, path, token, headers=headers, **kw)  # type: ignore[arg-type]

        foreign = tcp("POST", "/v1/messages", "http://evil.example",
                      body={"to": ["@all"], "content": "rebound"})
        assert foreign.status == 403 and foreign.body["error"] == "forbidden"
        assert tcp("GET", "/v1/health", f"http://127.0.0.1:{port}").status == 200
        upgrade = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        ws_reply = request(upgrade, "GET", "/v1/stream", token, headers={
            "Origin": "http://evil.example", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
        assert ws_reply.status == 403

        r = gw.cspctl("send", "@all", "over tcp", "--json",
                      extra_env={"CSP_GATEWAY": f"http://127.0.0.1:{port}"})
        assert r.returncode == 0, r.stderr
        assert all(m["content"] != "rebound" for m in gw.history())
        # loopback only: nothing listens on the machine's other addresses
        assert not um.prop(TCP_SOCKET, "Listen").startswith(("0.0.0.0", "[::]"))
    finally:
        um.systemctl("stop", TCP_SOCKET)
        if dropin.exists():
            shutil.rmtree(dropin)
            um.ok("daemon-reload")


HARDENING = re.compile(r"^(NoNewPrivileges|LockPersonality|Restrict\w+|SystemCall\w+|"
                       r"MemoryDenyWriteExecute|KeyringMode|AmbientCapabilities|UMask|"
                       r"Protect\w+|Private\w+|CapabilityBoundingSet|IPAddress\w+|"
                       r"Device\w+|ProcSubset)=", re.M)


# the gateway needs these (its sockets, the session bus); everything else is refused
NEEDED_FAMILIES = ("RestrictAddressFamilies=~AF_UNIX ", "RestrictAddressFamilies=~AF_(INET|INET6) ")


def test_hardening_directives_are_effective(gw: Installed) -> None:
    um = gw.um
    unit = (gw.prefix / "share/systemd/user" / SERVICE).read_text()
    directives = sorted(set(HARDENING.findall(unit)))
    assert len(directives) >= 10, directives
    um.ok("start", SERVICE)  # starts with all of them at once
    r = um.run("systemd-analyze", "--user", "security", SERVICE, "--no-pager")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in directives:
        # SystemCallErrorNumber= is not scored; the rest must each be a ✓
        rated = [ln for ln in lines if ln[2:].startswith(f"{name}=")]
        if name == "SystemCallErrorNumber":
            continue
        assert rated, f"{name}= is not rated by systemd-analyze"
        bad = [ln for ln in rated if not ln.startswith("✓")
               and not any(ok in ln for ok in NEEDED_FAMILIES)]
        assert not bad, f"{name}= not effective: {bad}"
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert score, r.stdout[-300:]
    readme = (REPO / "README.md").read_text()
    assert f"exposure {score.group(1)}" in readme, (
        f"README must state the measured exposure {score.group(1)}")
    # and the kernel agrees for the running daemon
    status = Path(f"/proc/{gw.main_pid()}/status").read_text()
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert re.search(r"^Seccomp:\s+2$", status, re.M)
    assert re.search(r"^Umask:\s+0077$", status, re.M)


def test_packager_install_with_destdir(installed: Installed, tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    make(installed.um, "install", f"DESTDIR={dest}", "PREFIX=/usr")
    unit = dest / "usr/lib/systemd/user" / SERVICE
    assert "ExecStart=/usr/lib/csp/venv/bin/cspd\n" in unit.read_text()
    for name in UNITS:
        assert (dest / "usr/lib/systemd/user" / name).is_file()
    for exe in ("cspd", "csp-sidecar", "cspctl"):
        assert os.readlink(dest / "usr/bin" / exe) == f"/usr/lib/csp/venv/bin/{exe}"
    # no file (scripts, pyvenv.cfg, units, byte-code) and no symlink names DESTDIR
    leaks = []
    for dirpath, dirs, files in os.walk(dest):
        for name in (*files, *dirs):
            path = Path(dirpath, name)
            if path.is_symlink():
                if str(dest) in os.readlink(path):
                    leaks.append(str(path.relative_to(dest)))
            elif path.is_file() and str(dest).encode() in path.read_bytes():
                leaks.append(str(path.relative_to(dest)))
    assert not leaks, f"DESTDIR left in {leaks[:10]}"
    shebang = (dest / "usr/lib/csp/venv/bin/cspd").read_text().splitlines()[0]
    assert shebang.startswith("#!/usr/lib/csp/venv/bin/python"), shebang


def test_uninstall_removes_exactly_what_install_added(installed: Installed) -> None:
    """Keep this test last: it removes the installation the others use."""
    um = installed.um
    um.ok("start", SOCKET)
    um.ok("enable", SOCKET)
    make(um, "uninstall", f"PREFIX={installed.prefix}")
    remaining = home_files(installed.home)
    assert remaining == installed.before, (
        f"left behind: {sorted(remaining - installed.before)}; "
        f"removed too much: {sorted(installed.before - remaining)}")
    assert um.prop(SERVICE, "LoadState") == "not-found"
    assert um.prop(SOCKET, "ActiveState") == "inactive"
