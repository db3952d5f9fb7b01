"""An isolated ``systemd --user`` manager for integration tests (see TESTING.md).

Several user managers can run side by side for the same uid as long as each
has its own ``HOME`` and ``XDG_RUNTIME_DIR``, so a test session starts its own
instead of touching the real one.  The services' output is inherited
into ``manager.log``: that is where a test reads what the daemon logged
and why a unit failed (there is no journal, and the manager's own log does not
reach this file).

Teardown is bounded: ``systemctl --user exit``, then SIGKILL after a deadline,
then SIGKILL for any process still carrying this manager's runtime dir in its
environment (we started those, and cgroups are not reliable in these VMs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from tests.conftest import require
from tests.polling import wait_for

SYSTEMD = Path("/lib/systemd/systemd")
BOOTED_MARKER = Path("/run/systemd/system")

USER_CONF = """\
[Manager]
DefaultTimeoutStopSec=3s
DefaultTimeoutStartSec=20s
DefaultStandardOutput=inherit
DefaultStandardError=inherit
"""


def availability() -> tuple[bool, str]:
    """Can this machine run an isolated user manager?  (ok, reason if not)."""
    if not SYSTEMD.exists() or shutil.which("systemctl") is None:
        return False, "systemd is not installed"
    if not BOOTED_MARKER.is_dir() and os.geteuid() != 0:
        return False, f"{BOOTED_MARKER} is missing and we are not root to create it"
    return True, ""


@dataclass
class UserManager:
    """One running ``systemd --user`` with its own HOME and runtime dir."""

    root: Path
    proc: subprocess.Popen[bytes]
    created_marker: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def runtime(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "manager.log"

    def run(self, *args: str, timeout: float = 60, input: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command as a process of this user session would."""
        return subprocess.run(list(args), env={**self.env, **(extra_env or {})},
                              cwd=self.home, input=input, text=True, capture_output=True,
                              timeout=timeout, check=False)

    def systemctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", "--no-pager", *args, timeout=timeout)

    def ok(self, *args: str) -> str:
        """``systemctl --user ARGS`` that must succeed; its stdout."""
        r = self.systemctl(*args)
        assert r.returncode == 0, (f"systemctl --user {' '.join(args)}: rc={r.returncode}\n"
                                   f"{r.stderr}\n--- manager log ---\n{self.log_tail()}")
        return r.stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.ok("show", unit, *(f"-p{p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def prop(self, unit: str, name: str) -> str:
        return self.show(unit, name)[name]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def state(self) -> str:
        return self.systemctl("is-system-running").stdout.strip()

    def stop(self, bound: float = 10.0) -> None:
        """Bounded teardown: ask the manager to exit, then kill what is left."""
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.systemctl("exit", timeout=5)
            try:
                self.proc.wait(timeout=bound)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pid in processes_with_env("XDG_RUNTIME_DIR", str(self.runtime)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.created_marker and not other_user_managers():
            with contextlib.suppress(OSError):
                BOOTED_MARKER.rmdir()


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids whose environment has ``name=value`` (ours: we may read them)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def other_user_managers() -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"systemd") and b"--user" in cmdline:
            return True
    return False


def session_env(root: Path) -> dict[str, str]:
    """A clean login-like environment: nothing of the developer's session leaks in."""
    env = {
        "HOME": str(root / "home"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "USER": os.environ.get("USER", "root"),
        "SYSTEMD_PAGER": "",
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={root / 'run' / 'bus'}",
    }
    return env


def start_user_manager(root: Path, timeout: float = 20.0) -> UserManager:
    """Start ``systemd --user`` in ``root`` (home/, run/, manager.log) and wait for it."""
    created = False
    if not BOOTED_MARKER.is_dir():
        # systemd refuses a user instance unless the machine "booted with systemd";
        # the check is only for this directory (TESTING.md).
        BOOTED_MARKER.mkdir(parents=True)
        created = True
    (root / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root / "run", 0o700)
    conf = root / "home" / ".config" / "systemd"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "user.conf").write_text(USER_CONF)
    env = session_env(root)
    with open(root / "manager.log", "ab") as log:
        proc = subprocess.Popen([str(SYSTEMD), "--user"], env=env, cwd=env["HOME"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    um = UserManager(root=root, proc=proc, created_marker=created, env=env)

    def running() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"systemd --user exited {proc.returncode}:\n{um.log_tail()}")
        return um.state() in ("running", "degraded")

    try:
        wait_for(running, timeout=timeout, what="systemd --user to be running")
    except BaseException:
        um.stop()
        raise
    return um


@pytest.fixture(scope="session")
def user_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManager]:
    """A real, isolated ``systemd --user`` for the whole test session."""
    ok, reason = availability()
    require(ok, reason)
    # short path: unix socket paths under it must stay below 108 bytes
    root = Path(tmp_path_factory.mktemp("um"))
    try:
        um = start_user_manager(root)
    except AssertionError as exc:
        # e.g. a normal user inside a login session: its cgroup is not delegated
        require(False, f"cannot start systemd --user here: {exc}")
        raise
    try:
        yield um
    finally:
        um.stop()


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait for ``pid`` to disappear (killed processes become zombies of the manager)."""
    def gone() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    wait_for(gone, timeout=timeout, what=f"pid {pid} to exit")



def unit_object_path(unit: str) -> str:
    """systemd's D-Bus object path for a unit (bus_path_escape)."""
    escaped = "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)
    return f"/org/freedesktop/systemd1/unit/{escaped}"


class UnitWatch:
    """Record what the manager says about one unit, as it happens.

    The manager's own log does not reach a file here, so this is how a test sees
    what the daemon told systemd: it subscribes to the manager on the session
    bus and keeps every ``PropertiesChanged`` of the unit (``ActiveState``,
    ``SubState``, ``StatusText`` ...).  A ``STATUS=`` sent in the same datagram as
    ``RELOADING=1`` or ``STOPPING=1`` shows up together with the state that
    notification put the unit in.
    """

    PROPS = ("ActiveState", "SubState", "StatusText", "MainPID")

    def __init__(self, um: UserManager, unit: str) -> None:
        self.address = um.env["DBUS_SESSION_BUS_ADDRESS"]
        self.path = unit_object_path(unit)
        self.changes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UnitWatch:
        self._thread.start()
        if not self._ready.wait(timeout=15) or self._error is not None:
            self.__exit__()
            raise AssertionError(f"cannot watch the user manager on {self.address}: "
                                 f"{self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.changes)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread by __enter__
            self._error = exc
            self._ready.set()

    def _on_message(self, msg: Message) -> None:
        if (msg.message_type != MessageType.SIGNAL or msg.member != "PropertiesChanged"
                or msg.path != self.path):
            return
        changed = {k: v.value for k, v in msg.body[1].items() if k in self.PROPS}
        if changed:
            with self._lock:
                self.changes.append(changed)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        bus = await MessageBus(bus_address=self.address).connect()
        try:
            bus.add_message_handler(self._on_message)
            for msg in (
                Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                        body=["type='signal',sender='org.freedesktop.systemd1',"
                              f"path='{self.path}',member='PropertiesChanged'"]),
                Message(destination="org.freedesktop.systemd1", path="/org/freedesktop/systemd1",
                        interface="org.freedesktop.systemd1.Manager", member="Subscribe"),
            ):
                reply = await bus.call(msg)
                if reply is None or reply.message_type == MessageType.ERROR:
                    raise AssertionError(f"{msg.member}: {reply.body if reply else None}")
            self._ready.set()
            await self._stop.wait()
        finally:
            bus.disconnect()
