"""``cspctl attach`` starts the gateway through a real systemd user manager."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, require
from tests.polling import wait_for
from tests.usermanager import UserManager, user_manager

__all__ = ["user_manager"]  # the session fixture, re-exported for pytest

# they share one isolated systemd --user, and `make test` runs them on their own (see Makefile)
pytestmark = [pytest.mark.integration, pytest.mark.systemd]

UNITS = ("csp-gateway.service", "csp-gateway.socket")


@pytest.fixture
def runtime_units(user_manager: UserManager) -> Iterator[UserManager]:
    """The gateway's units, pointing at this checkout, as runtime units of the manager.

    ``$XDG_RUNTIME_DIR/systemd/user`` is on the user unit path and outside HOME,
    so nothing is left where ``make install`` tests compare file lists.
    """
    um = user_manager
    unit_dir = um.runtime / "systemd" / "user"
    unit_dir.mkdir(parents=True, exist_ok=True)
    cspd = Path(sys.executable).parent / "cspd"
    service = (REPO / "units" / "csp-gateway.service").read_text()
    (unit_dir / UNITS[0]).write_text(service.replace("@CSPD@", str(cspd)))
    shutil.copy(REPO / "units" / UNITS[1], unit_dir / UNITS[1])
    um.ok("daemon-reload")
    yield um
    um.systemctl("stop", *UNITS)
    um.systemctl("reset-failed", *UNITS)
    for unit in UNITS:
        (unit_dir / unit).unlink(missing_ok=True)
    um.systemctl("daemon-reload")


def test_attach_starts_the_gateway_socket(runtime_units: UserManager,
                                          tmp_path: Path) -> None:
    require(shutil.which("tmux") is not None, "tmux is not installed")
    um = runtime_units
    assert um.systemctl("is-active", "csp-gateway.socket").stdout.strip() != "active"
    socket = f"csp-test-{uuid.uuid4().hex[:10]}"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}
    cspctl = [sys.executable, "-m", "csp_cli"]
    try:
        r = um.run(*cspctl, "attach", "--detached", "-L", socket, extra_env=env)
        assert r.returncode == 0, f"{r.stderr}\n{um.log_tail()}"
        assert um.systemctl("is-active", "csp-gateway.socket").stdout.strip() == "active"
        # the chat pane reached the socket-activated gateway
        wait_for(lambda: "connected" in um.run("tmux", "-L", socket, "capture-pane", "-p",
                                               "-t", "=csp:.0").stdout,
                 what="the chat connected")
        assert um.systemctl("is-active", "csp-gateway.service").stdout.strip() == "active"
    finally:
        um.run("tmux", "-L", socket, "kill-server")
