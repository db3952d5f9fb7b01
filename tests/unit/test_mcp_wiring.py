"""csp's MCP server on every agent csp starts: what each shipped profile adds to a run.

The values are parsed back the way each CLI reads them: Claude Code's
``--mcp-config`` JSON and its settings' ``permissions.allow``, Codex's ``-c``
TOML values, Gemini CLI's system-defaults JSON.  Nothing of the user's is
written to; a profile turns it off with ``enabled = false``.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from csp_core.errors import ConfigError
from csp_sidecar import mcp_wiring
from csp_sidecar.mcp_wiring import PASS_ENV, server_argv
from csp_sidecar.profiles import load_profile, parse_profile
from csp_sidecar.wiring import RunFacts, Wiring, wire_run

SERVER = server_argv()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="cspm", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def facts(sock_dir: Path, command: list[str], **env: str) -> RunFacts:
    environment = {"HOME": str(sock_dir / "home"), **env}
    return RunFacts("agent", sock_dir / "hooks" / "agent.sock", environment, command,
                    cwd=sock_dir)


def test_the_server_is_this_pythons_cspctl_mcp() -> None:
    assert [sys.executable, "-m", "csp_cli", "mcp"] == SERVER


# -- Claude Code ----------------------------------------------------------------------


def _claude_parts(wiring: Wiring) -> tuple[dict[str, Any], dict[str, Any]]:
    flag, _, config = wiring.args[0].partition("=")
    assert flag == "--mcp-config"
    assert wiring.args[1] == "--settings"
    return json.loads(config), json.loads(wiring.args[2])


def test_claude_gets_the_server_by_mcp_config_and_its_tools_pre_approved(
        sock_dir: Path) -> None:
    wiring = wire_run(load_profile("claude"), facts(sock_dir, ["claude", "fix the bug"]))
    config, settings = _claude_parts(wiring)
    assert config == {"mcpServers": {"csp": {"type": "stdio", "command": SERVER[0],
                                             "args": SERVER[1:], "alwaysLoad": True}}}
    assert settings["permissions"]["allow"] == ["mcp__csp"]
    assert "Stop" in settings["hooks"]  # the turn reports are still there
    # "--mcp-config=JSON": the variadic flag cannot take the user's prompt
    command = wiring.apply(["claude", "fix the bug"])
    assert command[0] == "claude" and command[-1] == "fix the bug"
    assert command[1].startswith("--mcp-config=")


def test_claude_keeps_the_users_own_allow_rules(sock_dir: Path) -> None:
    user = sock_dir / "mine.json"
    user.write_text(json.dumps({"permissions": {"allow": ["Bash(ls)"]}}))
    wiring = wire_run(load_profile("claude"),
                      facts(sock_dir, ["claude", "--settings", str(user)]))
    merged = json.loads(Path(wiring.args[2]).read_text())
    assert merged["permissions"]["allow"] == ["Bash(ls)", "mcp__csp"]
    assert json.loads(user.read_text()) == {"permissions": {"allow": ["Bash(ls)"]}}


def test_claude_without_allow_leaves_permissions_alone(sock_dir: Path) -> None:
    profile = load_profile("claude")
    profile = replace(profile, mcp={**profile.mcp, "allow": False})
    _, settings = _claude_parts(wire_run(profile, facts(sock_dir, ["claude"])))
    assert "permissions" not in settings


# -- Codex ---------------------------------------------------------------------------


def test_codex_gets_config_overrides_that_parse_as_toml(sock_dir: Path) -> None:
    wiring = wire_run(load_profile("codex"), facts(sock_dir, ["codex"]))
    values: dict[str, Any] = {}
    args = wiring.args
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    for flag, value in pairs:
        assert flag == "-c"
        key, _, raw = value.partition("=")
        values[key] = tomllib.loads(f"v = {raw}")["v"]  # as Codex parses a -c value
    # one table in one override (Codex's title thread rejects one built field by field)
    server = values["mcp_servers.csp"]
    assert server["command"] == SERVER[0]
    assert server["args"] == SERVER[1:]
    assert set(server["env_vars"]) == set(PASS_ENV)
    assert "notify" in values  # the turn reports are still wired
    assert not any("TOKEN=" in a for a in args)  # a credential never goes on a command line


# -- Gemini CLI ----------------------------------------------------------------------


@pytest.fixture
def secure_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's /tmp directories taken as safe (Gemini CLI refuses files under /tmp:
    see test_gemini_under_a_directory_others_may_write_goes_without)."""
    monkeypatch.setattr(mcp_wiring, "insecure_ancestor", lambda folder: None)


def test_gemini_under_a_directory_others_may_write_goes_without(sock_dir: Path) -> None:
    wiring = wire_run(load_profile("gemini"), facts(sock_dir, ["gemini"]))
    assert "GEMINI_CLI_SYSTEM_DEFAULTS_PATH" not in wiring.env
    assert any("/tmp is writable by others" in n for n in wiring.notes), wiring.notes
    assert wiring.transcript is not None


def test_insecure_ancestor() -> None:
    assert mcp_wiring.insecure_ancestor(Path("/tmp/x/y")) is not None
    assert mcp_wiring.insecure_ancestor(Path("/usr/bin")) is None


def _gemini_defaults(wiring: Wiring) -> dict[str, Any]:
    path = Path(wiring.env["GEMINI_CLI_SYSTEM_DEFAULTS_PATH"])
    assert path in wiring.files
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_gemini_gets_a_private_system_defaults_file(sock_dir: Path, secure_dirs: None) -> None:
    wiring = wire_run(load_profile("gemini"), facts(
        sock_dir, ["gemini"], GEMINI_CLI_SYSTEM_DEFAULTS_PATH=str(sock_dir / "none.json")))
    defaults = _gemini_defaults(wiring)
    assert defaults == {"mcpServers": {"csp": {"command": SERVER[0], "args": SERVER[1:],
                                               "trust": True}}}
    assert wiring.transcript is not None  # the transcript is still followed
    wiring.cleanup()
    assert not Path(wiring.env["GEMINI_CLI_SYSTEM_DEFAULTS_PATH"]).exists()


def test_gemini_keeps_the_users_own_defaults(sock_dir: Path, secure_dirs: None) -> None:
    theirs = sock_dir / "defaults.json"
    original = {"ui": {"theme": "x"}, "mcpServers": {"other": {"command": "o"}}}
    theirs.write_text(json.dumps(original))
    wiring = wire_run(load_profile("gemini"), facts(
        sock_dir, ["gemini"], GEMINI_CLI_SYSTEM_DEFAULTS_PATH=str(theirs)))
    defaults = _gemini_defaults(wiring)
    assert defaults["ui"] == {"theme": "x"}
    assert set(defaults["mcpServers"]) == {"other", "csp"}
    assert json.loads(theirs.read_text()) == original  # never written to


def test_gemini_with_unreadable_defaults_runs_without_the_server(
        sock_dir: Path, secure_dirs: None) -> None:
    theirs = sock_dir / "defaults.json"
    theirs.write_text("{not json")
    wiring = wire_run(load_profile("gemini"), facts(
        sock_dir, ["gemini"], GEMINI_CLI_SYSTEM_DEFAULTS_PATH=str(theirs)))
    assert "GEMINI_CLI_SYSTEM_DEFAULTS_PATH" not in wiring.env
    assert any("cannot be read" in n for n in wiring.notes)


# -- turning it off, and bad tables ---------------------------------------------------


@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
def test_enabled_false_turns_it_off(sock_dir: Path, name: str) -> None:
    profile = load_profile(name)
    off = replace(profile, mcp={**profile.mcp, "enabled": False})
    wiring = wire_run(off, facts(sock_dir, [name], GEMINI_CLI_SYSTEM_DEFAULTS_PATH="/nope"))
    text = json.dumps([wiring.args, wiring.env])
    assert "csp_cli" not in text and "mcp__csp" not in text


@pytest.mark.parametrize("mcp, error", [
    ({"kind": "carrier_pigeon"}, "'kind' must be one of"),
    ({"kind": "mcp_config", "flagg": "--x"}, "unknown key 'flagg'"),
    ({"kind": "mcp_config", "enabled": "yes"}, "'enabled' must be true or false"),
    ({"kind": "settings_defaults"}, "'env' must be a non-empty string"),
])
def test_a_bad_mcp_table_is_a_clear_error(sock_dir: Path, mcp: dict[str, Any],
                                          error: str) -> None:
    profile = parse_profile("x", {"mcp": mcp}, "x.toml")
    with pytest.raises(ConfigError, match=error):
        wire_run(profile, facts(sock_dir, ["x"]))


def test_a_profile_without_mcp_adds_nothing(sock_dir: Path) -> None:
    assert wire_run(load_profile("generic"), facts(sock_dir, ["x"])) == Wiring()


def test_an_env_wrappers_own_defaults_path_is_merged_and_replaced(
        sock_dir: Path, secure_dirs: None) -> None:
    """``csp-sidecar -- env GEMINI_CLI_SYSTEM_DEFAULTS_PATH=theirs gemini``: the wrapper's
    file is the one merged, and the wrapper is given ours (else it would replace it)."""
    theirs = sock_dir / "theirs.json"
    theirs.write_text(json.dumps({"ui": {"theme": "x"}}))
    command = ["env", f"GEMINI_CLI_SYSTEM_DEFAULTS_PATH={theirs}", "HOME=/h", "gemini"]
    wiring = wire_run(load_profile("gemini"), facts(
        sock_dir, command, GEMINI_CLI_SYSTEM_DEFAULTS_PATH=str(theirs)))
    ours = wiring.env["GEMINI_CLI_SYSTEM_DEFAULTS_PATH"]
    assert _gemini_defaults(wiring)["ui"] == {"theme": "x"}
    applied = wiring.apply(command, at=3)
    assert applied[:4] == ["env", f"GEMINI_CLI_SYSTEM_DEFAULTS_PATH={ours}", "HOME=/h",
                           "gemini"]
