"""Installing csp without the Debian package: pipx + ``cspctl install-units``, and
``make install``/``make uninstall`` over a running gateway and session.

All against the session's isolated ``systemd --user`` (tests/usermanager.py).  The
units these tests write go where a user's would and are gone when each test ends,
so the ``make install`` tests of test_systemd_gateway.py find HOME as they expect.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, require
from tests.integration.test_systemd_gateway import pip_cache
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer
from tests.usermanager import UserManager, user_manager, wait_gone

__all__ = ["user_manager"]  # the session fixture, re-exported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.systemd]

SERVICE = "csp-gateway.service"
SOCKET = "csp-gateway.socket"
UNITS = (SERVICE, SOCKET, "csp-gateway-tcp.socket")


def main_pid(um: UserManager) -> int:
    return int(um.prop(SERVICE, "MainPID"))


def program_of(pid: int) -> str:
    """The script a Python process runs (``python SCRIPT ...``), or its program."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return args[1 if len(args) > 1 and b"python" in args[0] else 0].decode()


def send(um: UserManager, cspctl: Path, text: str, env: dict[str, str] | None = None) -> None:
    r = um.run(str(cspctl), "send", "@all", text, extra_env=env)
    assert r.returncode == 0, f"cspctl send: {r.stderr}\n{um.log_tail()}"


def stopped(um: UserManager) -> None:
    um.systemctl("stop", *UNITS)
    um.systemctl("reset-failed", *UNITS)


@pytest.fixture
def user_unit_dir(user_manager: UserManager) -> Iterator[Path]:
    """``~/.local/share/systemd/user``; what was there before comes back afterwards."""
    um = user_manager
    stopped(um)
    unit_dir = um.home / ".local/share/systemd/user"
    saved = {p: p.read_bytes() for p in (unit_dir / u for u in UNITS) if p.exists()}
    yield unit_dir
    stopped(um)
    for name in UNITS:
        (unit_dir / name).unlink(missing_ok=True)
    for path, data in saved.items():
        path.write_bytes(data)
    um.systemctl("daemon-reload")


@pytest.fixture
def pipx_csp(user_manager: UserManager, tmp_path: Path) -> Iterator[Path]:
    """``pipx install`` of this checkout, as the manager's user; its bin directory."""
    require(shutil.which("pipx") is not None, "pipx is not installed (apt-get install pipx)")
    um = user_manager
    env = {"PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
           "PIP_CACHE_DIR": pip_cache()}
    r = um.run("pipx", "install", str(REPO), timeout=300, extra_env=env)
    assert r.returncode == 0, f"pipx install: {r.stdout}\n{r.stderr}"
    assert "WARNING" not in r.stdout + r.stderr and "DEPRECATION" not in r.stdout + r.stderr, (
        r.stdout + r.stderr)
    yield tmp_path / "bin"
    um.run("pipx", "uninstall", "csp", timeout=60, extra_env=env)


def test_pipx_install_then_install_units(user_manager: UserManager, user_unit_dir: Path,
                                         pipx_csp: Path, tmp_path: Path) -> None:
    um = user_manager
    cspctl = pipx_csp / "cspctl"
    for exe in ("cspd", "csp-sidecar", "cspctl", "csp-hook"):
        assert (pipx_csp / exe).exists(), f"pipx installed no {exe}"
    cspd = tmp_path / "pipx/venvs/csp/bin/cspd"

    r = um.run(str(cspctl), "install-units")
    assert r.returncode == 0, r.stderr
    assert "systemd user manager reloaded" in r.stderr and "enable --now" in r.stderr, r.stderr
    service = (user_unit_dir / SERVICE).read_text()
    assert f"\nExecStart={cspd}\n" in service and "@CSPD@" not in service
    assert um.prop(SERVICE, "FragmentPath") == str(user_unit_dir / SERVICE)

    # the socket activates the pipx installation's gateway, which answers
    um.ok("enable", "--now", SOCKET)
    assert um.prop(SERVICE, "ActiveState") == "inactive"
    send(um, cspctl, "hello from pipx")
    first = main_pid(um)
    assert program_of(first) == str(cspd)

    # again, over the running gateway: restarted on the units, and it says so
    r = um.run(str(cspctl), "install-units")
    assert r.returncode == 0, r.stderr
    assert "restarted" in r.stderr, r.stderr
    wait_gone(first)
    assert main_pid(um) not in (0, first)
    send(um, cspctl, "after the restart")

    # --remove: stopped, disabled, gone, and the manager knows it
    pid = main_pid(um)
    r = um.run(str(cspctl), "install-units", "--remove")
    assert r.returncode == 0, r.stderr
    wait_gone(pid)
    assert not any((user_unit_dir / u).exists() for u in UNITS)
    assert not (um.home / ".config/systemd/user/sockets.target.wants" / SOCKET).exists()
    assert um.prop(SERVICE, "LoadState") == "not-found"
    assert um.prop(SOCKET, "ActiveState") == "inactive"


def test_install_units_print_writes_nothing(user_manager: UserManager,
                                            user_unit_dir: Path) -> None:
    um = user_manager
    cspctl = Path(sys.executable).parent / "cspctl"
    r = um.run(str(cspctl), "install-units", "--print")
    assert r.returncode == 0, r.stderr
    assert f"ExecStart={Path(sys.executable).parent / 'cspd'}\n" in r.stdout
    for name in UNITS:
        assert f"# {user_unit_dir / name}\n" in r.stdout
        assert not (user_unit_dir / name).exists()


# ------------------------------------------------- make install / make uninstall

def venv_processes(venv: Path) -> dict[int, str]:
    """pid -> command line of the processes running a program from ``venv``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace")
                    for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if any(a.startswith(f"{venv}/") for a in args[:2]):
            found[int(entry.name)] = " ".join(args)
    return found


def make(um: UserManager, env: dict[str, str], *args: str) -> str:
    """``make ARGS`` as the manager's user; its output (stdout and stderr)."""
    r = um.run("make", "-C", str(REPO), *args, timeout=300,
               extra_env={"PIP_CACHE_DIR": pip_cache(), "PYTHON": "python3", **env})
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def test_make_install_restarts_the_gateway_and_uninstall_stops_everything(
        user_manager: UserManager, tmp_path: Path) -> None:
    require(shutil.which("tmux") is not None, "tmux is not installed")
    um = user_manager
    stopped(um)
    prefix = tmp_path / "prefix"
    unit_dir = um.home / ".config/systemd/user"  # on the manager's unit path, before ~/.local
    args = (f"PREFIX={prefix}", f"UNITDIR={unit_dir}")
    venv = prefix / "lib/csp/venv"
    cspctl = prefix / "bin/cspctl"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    tmux = TmuxServer({**um.env, **env})
    try:
        # a cache of its own: every dependency is fetched and built as a user's would be
        out = make(um, {**env, "PIP_CACHE_DIR": str(tmp_path / "pip-cache")}, "install", *args)
        assert "DEPRECATION" not in out and "legacy" not in out, out
        assert "start it:" in out, out
        um.ok("start", SOCKET)
        send(um, cspctl, "from the first installation")
        first = main_pid(um)
        assert program_of(first) == str(venv / "bin/cspd")

        # an agent session from this installation: the chat pane and a sidecar
        r = um.run(str(cspctl), "agents", "add", "cat1", "--", "cat", extra_env=env)
        assert r.returncode == 0, r.stderr
        r = um.run(str(cspctl), "attach", "--detached", "-L", tmux.socket, extra_env=env)
        assert r.returncode == 0, f"{r.stderr}\n{um.log_tail()}"
        wait_for(lambda: any("csp-sidecar" in p for p in venv_processes(venv).values()),
                 what="the sidecar from the installation")
        # up and registered: done importing (a process still loading its modules while
        # the environment is replaced can fail to, which is not what this test is about)
        wait_for(lambda: '"online": true' in um.run(str(cspctl), "agents", "--json").stdout,
                 what="cat1 online")

        # install again over all of it: the gateway restarts on the new code and says so;
        # the session's processes are named as still running the old one
        out = make(um, env, "install", *args)
        assert "the gateway was running: restarted it" in out, out
        assert "still running the code of the previous installation" in out, out
        assert "csp-sidecar" in out, out
        wait_gone(first)
        send(um, cspctl, "from the second installation")
        assert main_pid(um) not in (0, first)
        assert program_of(main_pid(um)) == str(venv / "bin/cspd")

        gateway = main_pid(um)
        out = make(um, env, "uninstall", *args)
        assert "stopping the gateway" in out, out
        assert "ending tmux session 'csp'" in out, out
        wait_gone(gateway)
        assert tmux.run("has-session", "-t", "=csp", check=False).returncode != 0
        assert venv_processes(venv) == {}
        assert not venv.exists() and not cspctl.exists()
        assert not any((unit_dir / u).exists() for u in UNITS)
        assert um.prop(SERVICE, "FragmentPath") != str(unit_dir / SERVICE)
    finally:
        tmux.kill()
        stopped(um)
        for name in UNITS:
            (unit_dir / name).unlink(missing_ok=True)
        um.systemctl("daemon-reload")
        for pid in venv_processes(venv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(prefix, ignore_errors=True)
