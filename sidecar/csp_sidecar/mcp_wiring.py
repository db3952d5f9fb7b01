"""csp's MCP server for one run of an agent CLI, through the CLI's own per-run mechanism.

Every agent csp starts gets the ``csp`` MCP server (``cspctl mcp`` on stdio,
which speaks as that agent: the gateway knows its processes) without anyone
running ``mcp add`` and without a change to the user's files.  The profile's
``[mcp]`` table says how; every CLI-specific name is in the TOML:

``mcp_config`` (Claude Code)
    ``--mcp-config=<JSON>``: servers for this run, in addition to the user's.
    With ``allow``, the settings file csp passes for this run (see
    :mod:`csp_sidecar.wiring`) pre-approves the server's tools (``mcp__csp``);
    with ``always_load``, its tools are offered to the model in every request
    (Claude Code 2.1 otherwise defers MCP tools behind its ToolSearch tool).
``config_override`` (Codex)
    ``-c mcp_servers.csp={command=..., args=[...], env_vars=[...]}``: a config
    override for this run, layered over the user's ``config.toml``.  Codex starts MCP servers with
    a reduced environment, so the variables ``cspctl mcp`` needs are named in
    ``env_vars`` (passed through, never written into the arguments).
``settings_defaults`` (Gemini CLI)
    A system-defaults settings file (its lowest-priority layer) named by an
    environment variable for this run: the user's own defaults file, if any,
    with the ``csp`` server added (``mcpServers`` of all layers are merged).

``enabled = false`` (or ``kind = "none"``) turns it off for that profile.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csp_core import paths
from csp_core.endpoint import AGENT_ENV, AGENT_TOKEN_ENV, GATEWAY_ENV, ROOM_ENV
from csp_core.errors import ConfigError

from .profiles import Profile

SERVER = "csp"
KINDS = ("mcp_config", "config_override", "settings_defaults")
_KEYS = {
    "mcp_config": {"flag", "allow", "always_load"},
    "config_override": {"flag", "key"},
    "settings_defaults": {"env", "default_file", "trust"},
}
# what `cspctl mcp` reads: who it is, where the gateway is, its credential and token file
PASS_ENV = (AGENT_ENV, AGENT_TOKEN_ENV, GATEWAY_ENV, ROOM_ENV, "XDG_RUNTIME_DIR",
            "XDG_CONFIG_HOME", "XDG_STATE_HOME", "PYTHONPATH")


@dataclass
class McpWiring:
    """Arguments, environment and files for this run; ``allow``: permission rules for
    the CLI's settings (csp's tools need no approval)."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    allow: tuple[str, ...] = ()


def server_argv() -> list[str]:
    """How an agent CLI starts csp's MCP server: this Python's ``cspctl mcp``."""
    return [sys.executable, "-m", "csp_cli", "mcp"]


def mcp_wiring(profile: Profile, agent: str, env: Mapping[str, str],
               private_dir: Path) -> McpWiring:
    """What ``profile.mcp`` adds to this run (nothing when it has no ``[mcp]``)."""
    table = profile.mcp
    source = f"profile {profile.name}: mcp"
    kind = table.get("kind")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{source}: 'enabled' must be true or false")
    if not table or kind in (None, "", "none") or not enabled:
        return McpWiring()
    if kind not in KINDS:
        raise ConfigError(f"{source}: 'kind' must be one of {', '.join(KINDS)} or none, "
                          f"not {kind!r}")
    unknown = sorted(set(table) - _KEYS[str(kind)] - {"kind", "enabled"})
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' for kind {kind!r}")
    if kind == "mcp_config":
        return _mcp_config(table, source)
    if kind == "config_override":
        return _config_override(table, source)
    return _settings_defaults(table, source, agent, env, private_dir)


def _str(table: Mapping[str, Any], key: str, source: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: '{key}' must be a non-empty string")
    return value


def _bool(table: Mapping[str, Any], key: str, source: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: '{key}' must be true or false")
    return value


def stdio_server() -> dict[str, Any]:
    argv = server_argv()
    return {"command": argv[0], "args": argv[1:]}


# -- Claude Code ------------------------------------------------------------------------


def _mcp_config(table: Mapping[str, Any], source: str) -> McpWiring:
    flag = _str(table, "flag", source, "--mcp-config")
    server: dict[str, Any] = {"type": "stdio", **stdio_server()}
    if _bool(table, "always_load", source):
        server["alwaysLoad"] = True  # offered to the model up front, not behind a search
    config = {"mcpServers": {SERVER: server}}
    # "--flag=VALUE": a variadic flag given this way takes no further words
    return McpWiring(args=[f"{flag}={json.dumps(config, ensure_ascii=False)}"],
                     allow=(f"mcp__{SERVER}",) if _bool(table, "allow", source) else ())


# -- Codex ---------------------------------------------------------------------------


def _config_override(table: Mapping[str, Any], source: str) -> McpWiring:
    flag = _str(table, "flag", source, "-c")
    key = _str(table, "key", source, f"mcp_servers.{SERVER}")
    server = stdio_server()
    values = {"command": server["command"], "args": server["args"],
              "env_vars": list(PASS_ENV)}
    # one inline table in one override (a JSON string or array of strings is TOML too).
    # Known cost, Codex 0.171: the thread it starts on the side to title the
    # conversation does not see -c overrides and fails on this one ("invalid
    # transport in mcp_servers.csp", in its log): no title is generated
    # (docs/mcp.md); the conversation and its MCP tools are unaffected
    table_text = ", ".join(f"{name} = {json.dumps(value, ensure_ascii=False)}"
                           for name, value in values.items())
    return McpWiring(args=[flag, f"{key}={{{table_text}}}"])


# -- Gemini CLI ----------------------------------------------------------------------


def _settings_defaults(table: Mapping[str, Any], source: str, agent: str,
                       env: Mapping[str, str], private_dir: Path) -> McpWiring:
    var = _str(table, "env", source)
    theirs = Path(env.get(var) or _str(table, "default_file", source))
    notes: list[str] = []
    try:
        settings = json.loads(theirs.read_text(encoding="utf-8"))
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
        notes.append(f"csp's MCP server is added to your defaults from {theirs}")
    except FileNotFoundError:
        settings = {}
    except (OSError, ValueError) as exc:
        return McpWiring(notes=[f"{theirs} cannot be read ({exc}): csp's MCP server is not "
                                "added to this run (add it with `cspctl mcp install`)"])
    folder = paths.ensure_private_dir(private_dir)
    unsafe = insecure_ancestor(folder)
    if unsafe is not None:
        # Gemini CLI would skip the file, with a security warning on its screen
        return McpWiring(notes=[f"{unsafe} is writable by others, so Gemini CLI would not "
                                f"read a settings file under {folder}: csp's MCP server is "
                                "not added to this run (add it with `cspctl mcp install`)"])
    servers = settings.get("mcpServers")
    servers = dict(servers) if isinstance(servers, dict) else {}
    servers[SERVER] = {**stdio_server(), "trust": _bool(table, "trust", source)}
    path = write_private(private_dir, f"{agent}.gemini-defaults.json",
                         json.dumps({**settings, "mcpServers": servers}, ensure_ascii=False))
    return McpWiring(env={var: str(path)}, files=[path], notes=notes)


def insecure_ancestor(folder: Path) -> Path | None:
    """The first of ``folder`` and its parents that others may write to (or that belongs
    to another user but root), if any: where a settings file is not to be trusted."""
    for path in (folder, *folder.parents):
        try:
            st = path.stat()
        except OSError:
            return path
        if st.st_mode & 0o022 or st.st_uid not in (0, os.getuid()):
            return path
    return None


def write_private(folder: Path, name: str, text: str) -> Path:
    """A 0600 file in a 0700 directory (it names the user's own settings)."""
    path = paths.ensure_private_dir(folder) / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path

