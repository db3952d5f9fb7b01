"""``cspctl install-units``: the gateway's systemd user units, for this installation.

``make install`` and the Debian package lay the units down themselves; an install
by ``pipx install .`` (or any ``pip install``) has only the executables.  This
writes the three units into the user's unit directory, ``$XDG_DATA_HOME/systemd/user``
(``~/.local/share/systemd/user``, where ``make install`` puts them too), with
``ExecStart=`` the ``cspd`` of the installation that runs this command, so the
gateway runs the same code as the ``cspctl`` that installed it.  A running gateway
is restarted on the new units, and says so; ``--remove`` stops it and takes the
units away again.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import click

from csp_core.errors import CspError

from . import systemd
from .runner import edge
from .workspace import own_command

UNITS = (systemd.SERVICE, systemd.SOCKET, systemd.TCP_SOCKET)
PLACEHOLDER = "@CSPD@"
# what systemd reads literally in an ExecStart= path (no quoting, escaping or specifiers)
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+,:@=-]+")


def default_unit_dir() -> Path:
    """Where a user's own units live on the user manager's search path."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "systemd" / "user"


def installed_cspd() -> Path:
    """The ``cspd`` of the installation this ``cspctl`` runs from."""
    argv = own_command("cspd", "cspd")
    if len(argv) != 1:
        raise CspError("cannot find the cspd executable of this installation (looked next "
                       "to this Python and on PATH); reinstall csp (pipx install .)")
    path = Path(argv[0]).absolute()
    if not PLAIN_PATH.fullmatch(str(path)):
        raise CspError(f"cspd is at {path}, a path systemd would need quoted; install csp "
                       "where the path has no spaces or special characters")
    return path


def template(name: str) -> str:
    return (resources.files(__package__) / "units" / name).read_text(encoding="utf-8")


def render(name: str, cspd: Path) -> str:
    """The unit ``name`` as it is installed: only the service names an executable."""
    return template(name).replace(PLACEHOLDER, str(cspd))


def write_units(unit_dir: Path, cspd: Path) -> list[Path]:
    unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in UNITS:
        path = unit_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(render(name, cspd), encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(path)  # atomic: a reload never reads half a unit
        written.append(path)
    return written


def manager_reachable() -> bool:
    """Is a user manager reachable?  (Says why not, once, when it is not.)"""
    try:
        systemd.systemctl("show-environment")
    except systemd.NoUserManager as exc:
        click.echo(f"{exc.message.splitlines()[0]}\nrun `systemctl --user daemon-reload` "
                   "in your session to pick the units up", err=True)
        return False
    return True


def _active(unit: str) -> bool:
    return systemd.systemctl("is-active", "--quiet", unit, check=False).returncode == 0


def install_to(unit_dir: Path) -> None:
    cspd = installed_cspd()
    for path in write_units(unit_dir, cspd):
        click.echo(f"wrote {path}", err=True)
    click.echo(f"ExecStart={cspd}", err=True)
    if not manager_reachable():
        return
    systemd.systemctl("daemon-reload")
    click.echo("systemd user manager reloaded", err=True)
    if _active(systemd.SERVICE):
        systemd.systemctl("restart", systemd.SERVICE)
        click.echo("the gateway was running: restarted it on these units", err=True)
    else:
        click.echo("start it:  systemctl --user enable --now csp-gateway.socket", err=True)


def remove_from(unit_dir: Path) -> None:
    present = [unit_dir / name for name in UNITS if (unit_dir / name).exists()]
    if not present:
        click.echo(f"no csp units in {unit_dir}", err=True)
        return
    manager = manager_reachable()
    if manager:
        # disable drops the user's enable links; --now stops the sockets before the
        # service, so nothing starts it again
        systemd.systemctl("disable", "--now", *UNITS, check=False)
        click.echo("stopped and disabled the gateway's units", err=True)
    for path in present:
        path.unlink()
        click.echo(f"removed {path}", err=True)
    if manager:
        systemd.systemctl("daemon-reload")
        click.echo("systemd user manager reloaded", err=True)


@click.command("install-units")
@click.option("--print", "show", is_flag=True,
              help="Print the units to stdout instead of writing them.")
@click.option("--remove", is_flag=True,
              help="Stop the gateway and remove the units from the unit directory.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write them (default: $XDG_DATA_HOME/systemd/user).")
@edge
def install_units(show: bool, remove: bool, unit_dir: Path | None) -> None:
    """Install the gateway's systemd user units for this user.

    \b
      pipx install .                  # or: pip install --user ...
      cspctl install-units            # ExecStart= this installation's cspd
      systemctl --user enable --now csp-gateway.socket

    For installs without `make install` or the Debian package, which lay the
    units down themselves.  Reloads the user manager when one is reachable and
    restarts a running gateway on the new units.
    """
    if show and remove:
        raise click.UsageError("--print and --remove do not go together")
    target = unit_dir or default_unit_dir()
    if show:
        cspd = installed_cspd()
        for name in UNITS:
            click.echo(f"# {target / name}\n{render(name, cspd)}")
    elif remove:
        remove_from(target)
    else:
        install_to(target)
