"""``cspctl install-units`` without a real user manager: what it writes and asks systemd.

The real manager, with a pipx installation, is in tests/integration/test_install_units.py.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from csp_cli import units_cmd
from csp_cli.systemd import NO_MANAGER_HELP, NoUserManager
from csp_cli.units_cmd import UNITS, install_units

CSPD = Path("/opt/csp env/bin/cspd")


class FakeSystemctl:
    """Records ``systemctl --user`` calls; answers ``is-active`` with ``active``."""

    def __init__(self, reachable: bool = True, active: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.reachable = reachable
        self.active = active

    def __call__(self, *args: str, check: bool = True,
                 capture: bool = True) -> subprocess.CompletedProcess[str]:
        if not self.reachable:
            raise NoUserManager(NO_MANAGER_HELP.format(why="Failed to connect to bus"))
        self.calls.append(args)
        rc = 0 if args[0] != "is-active" or self.active else 3
        return subprocess.CompletedProcess(["systemctl", "--user", *args], rc, "", "")


@pytest.fixture
def unit_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(units_cmd, "own_command", lambda script, module: ["/opt/csp/bin/cspd"])
    return tmp_path / "data" / "systemd" / "user"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(install_units, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout, r.stderr


def test_the_templates_ship_with_the_package() -> None:
    for name in UNITS:
        assert units_cmd.template(name).startswith(("[Unit]", "#"))
    assert "ExecStart=@CSPD@\n" in units_cmd.template("csp-gateway.service")


def test_writes_the_units_with_this_cspd_and_says_to_reload_without_a_manager(
        unit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units_cmd.systemd, "systemctl", FakeSystemctl(reachable=False))
    code, _, err = run()
    assert code == 0, err
    service = (unit_dir / "csp-gateway.service").read_text()
    assert "\nExecStart=/opt/csp/bin/cspd\n" in service and "@CSPD@" not in service
    for name in UNITS:
        assert stat.S_IMODE((unit_dir / name).stat().st_mode) == 0o644
    assert (unit_dir / "csp-gateway.socket").read_text() == units_cmd.template(
        "csp-gateway.socket")
    assert "systemctl --user daemon-reload" in err
    assert not list(unit_dir.glob(".*"))  # no temporary file left behind


def test_reloads_and_restarts_a_running_gateway(unit_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSystemctl(active=True)
    monkeypatch.setattr(units_cmd.systemd, "systemctl", fake)
    code, _, err = run()
    assert code == 0, err
    assert ("daemon-reload",) in fake.calls
    assert fake.calls.index(("daemon-reload",)) < fake.calls.index(
        ("restart", "csp-gateway.service"))
    assert "restarted" in err


def test_a_stopped_gateway_stays_stopped(unit_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSystemctl(active=False)
    monkeypatch.setattr(units_cmd.systemd, "systemctl", fake)
    code, _, err = run()
    assert code == 0, err
    assert not any(c[0] in ("restart", "start") for c in fake.calls)
    assert "systemctl --user enable --now csp-gateway.socket" in err


def test_remove_stops_before_it_deletes(unit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    present_at_disable: list[bool] = []

    class Watching(FakeSystemctl):
        def __call__(self, *args: str, check: bool = True,
                     capture: bool = True) -> subprocess.CompletedProcess[str]:
            if args[0] == "disable":
                present_at_disable.append(all((unit_dir / n).exists() for n in UNITS))
            return super().__call__(*args, check=check, capture=capture)

    fake = Watching()
    monkeypatch.setattr(units_cmd.systemd, "systemctl", fake)
    assert run()[0] == 0
    fake.calls.clear()
    code, _, err = run("--remove")
    assert code == 0, err
    assert ("disable", "--now", *UNITS) in fake.calls
    assert present_at_disable == [True]  # stopped while its units were still there
    assert fake.calls[-1] == ("daemon-reload",)
    assert not any((unit_dir / name).exists() for name in UNITS)
    code, _, err = run("--remove")
    assert code == 0 and "no csp units" in err


def test_print_writes_nothing(unit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSystemctl()
    monkeypatch.setattr(units_cmd.systemd, "systemctl", fake)
    code, out, _ = run("--print")
    assert code == 0
    assert "ExecStart=/opt/csp/bin/cspd\n" in out
    assert all(f"# {unit_dir / name}\n" in out for name in UNITS)
    assert not unit_dir.exists() and fake.calls == []


def test_print_and_remove_together_is_bad_input(unit_dir: Path) -> None:
    code, _, err = run("--print", "--remove")
    assert code == 2 and "do not go together" in err


def test_a_cspd_path_systemd_would_misread_is_refused(unit_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units_cmd, "own_command", lambda script, module: [str(CSPD)])
    code, _, err = run()
    assert code == 1 and "Traceback" not in err
    assert str(CSPD) in err
    assert not unit_dir.exists()


def test_no_cspd_found_is_a_clear_error(unit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units_cmd, "own_command",
                        lambda script, module: ["/usr/bin/python3", "-m", module])
    code, _, err = run()
    assert code == 1 and "cannot find the cspd executable" in err and "Traceback" not in err


def test_unit_dir_defaults_to_xdg_data_home(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert units_cmd.default_unit_dir() == tmp_path / ".local/share/systemd/user"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "d"))
    assert units_cmd.default_unit_dir() == tmp_path / "d/systemd/user"
