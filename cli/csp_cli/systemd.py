"""Thin wrappers over ``systemctl --user`` and ``journalctl --user``."""

from __future__ import annotations

import shutil
import subprocess

from csp_core.errors import CspError

SERVICE = "csp-gateway.service"
SOCKET = "csp-gateway.socket"
TCP_SOCKET = "csp-gateway-tcp.socket"


class NoUserManager(CspError):
    code = "no_user_manager"
    exit_code = 3


NO_MANAGER_HELP = (
    "there is no systemd user manager to talk to ({why}).\n"
    "Run the gateway in the foreground instead:  cspd\n"
    "(or log in through a session that starts `systemd --user`)"
)


def systemctl(*args: str, check: bool = True, capture: bool = True,
              ) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemctl") is None:
        raise NoUserManager(NO_MANAGER_HELP.format(why="systemctl is not installed"))
    proc = subprocess.run(["systemctl", "--user", *args], text=True,
                          capture_output=capture, check=False)
    if capture and proc.returncode != 0 and _no_bus(proc.stderr):
        raise NoUserManager(NO_MANAGER_HELP.format(why=proc.stderr.strip().splitlines()[0]))
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        raise CspError(f"systemctl --user {' '.join(args)} failed: {detail}")
    return proc


def _no_bus(stderr: str) -> bool:
    # the last case: a session bus without a user manager on it (dbus-launch, dbus-run-session)
    return ("Failed to connect to bus" in stderr or "No medium found" in stderr
            or "org.freedesktop.systemd1" in stderr)


def show(unit: str, *props: str) -> dict[str, str]:
    out = systemctl("show", unit, *(f"-p{p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(unit: str, lines: int, follow: bool) -> int:
    if shutil.which("journalctl") is None:
        raise CspError("journalctl is not installed")
    args = ["journalctl", "--user", "-u", unit, "-n", str(lines), "--no-pager"]
    if follow:
        args.append("-f")
    return subprocess.call(args)
