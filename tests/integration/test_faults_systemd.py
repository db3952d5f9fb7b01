"""Faults under a real systemd user manager (issue #10): crash loops, reload, STATUS=, TCP.

The gateway's units, pointing at this checkout, are runtime units of the
session's isolated manager (``$XDG_RUNTIME_DIR/systemd/user``, outside HOME,
like tests/integration/test_attach_systemd.py), so these tests run the code as
it is now, with the hardening and socket activation of the real units.  What
the manager did is read back from it: unit properties, and ``PropertiesChanged``
recorded as it happened (:class:`~tests.usermanager.UnitWatch`).
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.test_systemd_gateway import (
    UnixHTTPConnection,
    after,
    flat,
    free_port,
    request,
)
from tests.polling import wait_for
from tests.usermanager import UnitWatch, UserManager, user_manager, wait_gone

__all__ = ["user_manager"]  # the session fixture, re-exported for pytest

# they share one isolated systemd --user, and `make test` runs them on their own (see Makefile)
pytestmark = [pytest.mark.integration, pytest.mark.systemd]

SERVICE = "csp-gateway.service"
SOCKET = "csp-gateway.socket"
TCP_SOCKET = "csp-gateway-tcp.socket"
UNITS = (SERVICE, SOCKET, TCP_SOCKET)
SENDERS = 4


class Units:
    """The session's user manager with the checkout's units installed as runtime units."""

    def __init__(self, um: UserManager) -> None:
        self.um = um

    @property
    def socket(self) -> Path:
        return self.um.runtime / "csp" / "gateway.sock"

    @property
    def token_file(self) -> Path:
        return self.um.runtime / "csp" / "token"

    @property
    def config(self) -> Path:
        return self.um.home / ".config" / "csp" / "config.toml"

    def cspctl(self, *args: str, timeout: float = 60) -> Any:
        return self.um.run(sys.executable, "-m", "csp_cli", *args, timeout=timeout)

    def main_pid(self) -> int:
        return int(self.um.prop(SERVICE, "MainPID"))

    def state(self, unit: str) -> str:
        return self.um.prop(unit, "ActiveState")

    def warm_up(self) -> str:
        """Send one message (activating the gateway); the token it now accepts."""
        r = self.cspctl("send", "@all", "warm up")
        assert r.returncode == 0, f"{r.stderr}\n{self.um.log_tail()}"
        return self.token_file.read_text().strip()

    def messages(self) -> list[dict[str, Any]]:
        """Every message in the store, page by page (a burst outgrows one page)."""
        token = self.token_file.read_text().strip()
        out: list[dict[str, Any]] = []
        since = 0
        while True:
            reply = request(UnixHTTPConnection(self.socket), "GET",
                            f"/v1/messages?since={since}&limit=5000", token)
            assert reply.status == 200, reply.body
            page: list[dict[str, Any]] = reply.body["messages"]  # type: ignore[assignment]
            out.extend(page)
            if len(page) < 5000:
                return out
            since = int(page[-1]["id"])


@pytest.fixture(scope="module")
def runtime_units(user_manager: UserManager) -> Iterator[UserManager]:
    um = user_manager
    unit_dir = um.runtime / "systemd" / "user"
    unit_dir.mkdir(parents=True, exist_ok=True)
    cspd = Path(sys.executable).parent / "cspd"
    for unit in UNITS:
        text = (REPO / "units" / unit).read_text().replace("@CSPD@", str(cspd))
        (unit_dir / unit).write_text(text)
    um.ok("daemon-reload")
    yield um
    um.systemctl("stop", *UNITS)
    um.systemctl("reset-failed", *UNITS)
    for unit in UNITS:
        (unit_dir / unit).unlink(missing_ok=True)
    um.systemctl("daemon-reload")


@pytest.fixture
def units(runtime_units: UserManager) -> Iterator[Units]:
    """Each test starts with everything stopped, and leaves nothing behind in HOME."""
    um = runtime_units
    u = Units(um)
    dropin = um.home / ".config/systemd/user" / f"{TCP_SOCKET}.d"

    def clean() -> None:
        um.systemctl("disable", TCP_SOCKET)
        um.systemctl("stop", *UNITS)
        um.systemctl("reset-failed", *UNITS)
        u.config.unlink(missing_ok=True)
        u.token_file.unlink(missing_ok=True)  # a test may have emptied it
        if dropin.exists():
            shutil.rmtree(dropin)
            um.ok("daemon-reload")

    clean()
    yield u
    clean()


@dataclass
class Poster:
    """Threads posting over the unix socket; remembers what the gateway acknowledged.

    Every attempt posts a text no other attempt (in any test) posts, so
    "stored once" can be checked by content.
    """

    socket: Path
    token: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acked: dict[int, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            content = f"{self.tag}-w{worker}-{n}"
            try:
                reply = request(UnixHTTPConnection(self.socket, timeout=20), "POST",
                                "/v1/messages", self.token, {"to": ["@all"], "content": content})
            except (OSError, http.client.HTTPException):
                continue  # not acknowledged: the sender would try again (as a new text)
            if reply.status == 201:
                with self.lock:
                    self.acked[int(reply.body["id"])] = content  # type: ignore[call-overload]

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def tcp_on_a_free_port(um: UserManager) -> int:
    """Point the TCP socket unit at a free port (8765 may be another session's)."""
    port = free_port()
    dropin = um.home / ".config/systemd/user" / f"{TCP_SOCKET}.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "port.conf").write_text(f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")
    um.ok("daemon-reload")
    return port


def never_failed(watch: UnitWatch) -> None:
    states = [v for k, v in flat(watch) if k == "ActiveState"]
    assert "failed" not in states, f"the unit failed on the way: {states}"


def acked_once(poster: Poster, stored: list[dict[str, Any]]) -> None:
    """Every acknowledged message is in the history, exactly once."""
    by_id = {int(m["id"]): m["content"] for m in stored}
    lost = {i: c for i, c in poster.acked.items() if by_id.get(i) != c}
    assert not lost, f"acknowledged but not stored: {sorted(lost)[:10]}"
    counts = collections.Counter(m["content"] for m in stored)
    twice = [c for c in poster.acked.values() if counts[c] != 1]
    assert not twice, f"stored more than once: {twice[:10]}"


def start_posters(u: Units, token: str) -> tuple[Poster, list[threading.Thread]]:
    poster = Poster(u.socket, token)
    threads = [threading.Thread(target=poster.run, args=(i,), daemon=True)
               for i in range(SENDERS)]
    for t in threads:
        t.start()
    return poster, threads


def more_acks(poster: Poster, what: str, n: int = 10) -> None:
    before = poster.count()
    wait_for(lambda: poster.count() >= before + n, timeout=30, what=what)


def stop_posters(poster: Poster, threads: list[threading.Thread]) -> None:
    poster.stop.set()
    for t in threads:
        t.join(timeout=30)


# ----------------------------------------------------------------------- crash loops

def test_kill_9_eight_times_in_ten_seconds_under_four_senders(units: Units) -> None:
    """The issue's case: with systemd's start limit both sockets ended `failed`."""
    u, um = units, units.um
    port = tcp_on_a_free_port(um)
    um.ok("start", SOCKET, TCP_SOCKET)
    token = u.warm_up()
    poster, threads = start_posters(u, token)
    try:
        with UnitWatch(um, SOCKET) as socket_watch, UnitWatch(um, TCP_SOCKET) as tcp_watch:
            wait_for(lambda: poster.count() >= 20, what="the senders to get going")
            killed: list[int] = []
            began = time.monotonic()
            while len(killed) < 8:
                pid = wait_for(lambda: (p := u.main_pid()) not in (0, *killed[-1:]) and p,
                               timeout=5, interval=0.01, what="the next gateway process")
                os.kill(pid, 9)
                killed.append(pid)
            elapsed = time.monotonic() - began
            assert elapsed < 10, f"8 kills took {elapsed:.1f} s"
            wait_gone(killed[-1])
            # nobody restarts anything: it answers by itself
            wait_for(lambda: u.cspctl("gateway", "status").returncode == 0, timeout=40,
                     what="the gateway to answer again by itself")
            before = poster.count()
            wait_for(lambda: poster.count() >= before + 20, timeout=30,
                     what="the senders to be acknowledged again")
        never_failed(socket_watch)
        never_failed(tcp_watch)
    finally:
        stop_posters(poster, threads)
    assert u.state(SOCKET) == u.state(TCP_SOCKET) == u.state(SERVICE) == "active"
    assert tcp_health(port, token) == 200
    assert int(um.prop(SERVICE, "NRestarts")) >= 8
    assert u.main_pid() not in killed
    acked_once(poster, u.messages())


def test_a_crash_loop_backs_off_says_so_and_ends_by_itself(units: Units) -> None:
    """A cause that outlasts systemd's start limit (5 in 10 s): a config the gateway
    refuses.  It keeps trying, waiting longer each time, and is back once it is fixed."""
    u, um = units, units.um
    u.config.parent.mkdir(parents=True, exist_ok=True)
    u.config.write_text('[gateway]\nmax_message_bytes = "lots"\n')
    um.ok("start", SOCKET)
    with UnitWatch(um, SOCKET) as socket_watch, UnitWatch(um, SERVICE) as service_watch:
        um.ok("start", "--no-block", SERVICE)

        def waits() -> set[float]:
            found = (re.search(r"waiting ([\d.]+) s", str(v))
                     for k, v in flat(service_watch) if k == "StatusText")
            return {float(m.group(1)) for m in found if m}

        wait_for(lambda: {0.5, 1.0, 2.0} <= waits(), timeout=60,
                 what="the waits between attempts to grow (0.5 s, 1 s, 2 s)")
        assert int(um.prop(SERVICE, "NRestarts")) >= 5  # past systemd's default limit

        def status_explains() -> str | None:
            r = u.cspctl("gateway", "status")
            ok = r.returncode == 3 and "config.toml" in r.stdout
            return str(r.stdout) if ok else None
        text = wait_for(status_explains, timeout=30,
                        what="`cspctl gateway status` to say what happens")
        assert text is not None and "max_message_bytes" in text
        assert re.search(r"crash loop|restarting by itself", text), text

        u.config.unlink()  # the cause is gone; nobody touches systemd
        wait_for(lambda: u.cspctl("gateway", "status").returncode == 0, timeout=30,
                 what="the gateway to come back by itself")
        never_failed(socket_watch)
    assert u.state(SOCKET) == "active"
    assert um.prop(SERVICE, "SubState") == "running"
    r = u.cspctl("send", "@all", "back")
    assert r.returncode == 0, r.stderr
    # a clean stop forgets the loop: the next start does not wait
    um.ok("restart", SERVICE)
    assert "crash loop" not in um.prop(SERVICE, "StatusText")
    assert u.cspctl("gateway", "status").returncode == 0


# ----------------------------------------------------------------------- reload

@pytest.mark.parametrize("damage", ["removed", "emptied"])
def test_reload_without_a_usable_token_file_still_reports_ready(units: Units,
                                                                damage: str) -> None:
    u, um = units, units.um
    um.ok("start", SERVICE)
    token = u.warm_up()
    pid = u.main_pid()
    if damage == "removed":
        u.token_file.unlink()
    else:
        u.token_file.write_text("")
    with UnitWatch(um, SERVICE) as watch:
        um.ok("reload", SERVICE)

        def ready_again() -> bool:
            seq = flat(watch)
            return (("StatusText", "reloading configuration") in seq
                    and ("ActiveState", "active") in after(seq, ("StatusText",
                                                                 "reloading configuration")))
        wait_for(ready_again, what="READY=1 after RELOADING=1")
    assert um.show(SERVICE, "ActiveState", "SubState") == {"ActiveState": "active",
                                                           "SubState": "running"}
    assert u.main_pid() == pid
    # the running token stays valid, and a second reload is just as fine
    health = request(UnixHTTPConnection(u.socket), "GET", "/v1/health", token)
    assert health.status == 200, health.body
    um.ok("reload", SERVICE)
    wait_for(lambda: um.prop(SERVICE, "ActiveState") == "active", what="active again")


# ----------------------------------------------------------------------- STATUS=

def test_status_goes_out_when_it_changes_at_most_a_few_times_a_second(units: Units) -> None:
    u, um = units, units.um
    um.ok("start", SERVICE)
    token = u.warm_up()
    burst = 150  # inside the rate limiter's burst: every post is a new status text
    with UnitWatch(um, SERVICE) as watch:
        began = time.monotonic()
        last = 0
        for i in range(burst):
            reply = request(UnixHTTPConnection(u.socket), "POST", "/v1/messages", token,
                            {"to": ["@all"], "content": f"status {i}"})
            assert reply.status == 201, reply.body
            last = int(reply.body["id"])  # type: ignore[call-overload]
        elapsed = time.monotonic() - began
        # the last count reaches systemd (late, not never)
        wait_for(lambda: f", {last} messages" in um.prop(SERVICE, "StatusText"),
                 what="the final count in StatusText")
        texts = [v for k, v in flat(watch) if k == "StatusText"]
    assert len(texts) <= 4 * (elapsed + 1) + 2, (
        f"{len(texts)} status changes for {burst} posts in {elapsed:.1f} s")


# ----------------------------------------------------------------------- TCP

def tcp_health(port: int, token: str) -> int | None:
    """HTTP status of /v1/health over TCP, or None when nothing listens."""
    try:
        return request(http.client.HTTPConnection("127.0.0.1", port, timeout=15), "GET",
                       "/v1/health", token).status
    except ConnectionRefusedError:
        return None


def test_tcp_on_and_off_whatever_state_the_gateway_is_in(units: Units) -> None:
    u, um = units, units.um
    port = tcp_on_a_free_port(um)

    # stopped, sockets and all: on, and the first TCP client starts the gateway
    r = u.cspctl("gateway", "tcp", "on")
    assert r.returncode == 0, r.stderr
    assert f"http://127.0.0.1:{port}" in r.stdout
    assert um.systemctl("is-enabled", TCP_SOCKET).stdout.strip() == "enabled"
    token = u.warm_up()
    assert tcp_health(port, token) == 200

    # running under four senders: off, on, off; nothing acknowledged is lost
    poster, threads = start_posters(u, token)
    try:
        wait_for(lambda: poster.count() >= 20, what="the senders to get going")
        for switch, expect in (("off", None), ("on", 200), ("off", None)):
            r = u.cspctl("gateway", "tcp", switch)
            assert r.returncode == 0, f"tcp {switch}: {r.stdout}{r.stderr}\n{um.log_tail()}"
            assert tcp_health(port, token) == expect, f"after tcp {switch}"
            more_acks(poster, f"unix senders acknowledged after tcp {switch}")
        assert um.systemctl("is-enabled", TCP_SOCKET).stdout.strip() == "disabled"

        # between two runs (just after a crash): still just works
        for switch, expect in (("on", 200), ("off", None)):
            pid = u.main_pid()
            os.kill(pid, 9)
            wait_gone(pid)
            r = u.cspctl("gateway", "tcp", switch)
            assert r.returncode == 0, f"tcp {switch}: {r.stdout}{r.stderr}\n{um.log_tail()}"
            wait_for(lambda: u.state(SERVICE) == "active", timeout=30, what="serving again")
            assert tcp_health(port, token) == expect, f"after a crash and tcp {switch}"
        more_acks(poster, "unix senders acknowledged at the end")
    finally:
        stop_posters(poster, threads)
    acked_once(poster, u.messages())

    r = u.cspctl("gateway", "status", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["tcp"]["state"] == "inactive"

    # `gateway start --tcp`: for this session only, the gateway started with both sockets
    assert u.cspctl("gateway", "stop").returncode == 0
    r = u.cspctl("gateway", "start", "--tcp")
    assert r.returncode == 0, r.stdout + r.stderr
    assert tcp_health(port, token) == 200
    assert um.systemctl("is-enabled", TCP_SOCKET).stdout.strip() == "disabled"


def test_readme_tells_how_to_switch_tcp() -> None:
    readme = (REPO / "README.md").read_text()
    assert "cspctl gateway tcp on" in readme
    # the instruction that fails whenever the gateway runs is gone
    assert "enable --now csp-gateway-tcp.socket" not in readme
