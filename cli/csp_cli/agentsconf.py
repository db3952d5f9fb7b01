"""The agents and layout tables of ``config.toml``.

::

    [layout]
    session = "csp"          # tmux session name
    chat_height = 30         # percent of the window for the chat pane
    mouse = true
    history_limit = 50000    # scrollback of the agent panes

    [[agents]]
    name = "claude"
    command = ["claude"]
    profile = "claude"       # sidecar profile (optional)
    cwd = "~/src/project"    # optional
    room = "main"            # optional
    env = { FOO = "bar" }    # optional

The file is read with tomllib; ``cspctl agents add/remove`` change only the lines
of the one entry (:mod:`.tomledit`), so comments and layout survive.  Errors name
the file, the line and the key, because a person has to go and fix them by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from csp_core import paths
from csp_core.config import load_document, save_text
from csp_core.errors import BadRequest, ConfigError, Conflict, NotFound
from csp_core.protocol import check_name

from . import tomledit

AGENT_KEYS = ("name", "command", "profile", "cwd", "env", "room")


@dataclass(frozen=True)
class AgentSpec:
    name: str
    command: list[str]
    profile: str | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    room: str | None = None

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "command": list(self.command)}
        for key in ("profile", "cwd", "room"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.env:
            out["env"] = dict(self.env)
        return out

    def resolved_cwd(self) -> str | None:
        return str(Path(self.cwd).expanduser()) if self.cwd else None


@dataclass(frozen=True)
class LayoutConfig:
    session: str = "csp"
    chat_height: int = 30
    mouse: bool = True
    history_limit: int = 50000


@dataclass(frozen=True)
class AgentsConfig:
    path: Path
    agents: list[AgentSpec]
    layout: LayoutConfig

    def get(self, name: str) -> AgentSpec:
        for spec in self.agents:
            if spec.name == name:
                return spec
        known = ", ".join(a.name for a in self.agents) or "none"
        raise NotFound(f"no agent {name!r} in {self.path} (configured: {known}); "
                       f"add it with `cspctl agents add {name} -- COMMAND`")


# -- locating keys in the file text -------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


def key_line(text: str, table: str, key: str | None, index: int | None = None) -> int | None:
    """The 1-based line where ``key`` is set in ``[table]`` (or the ``index``-th
    ``[[table]]``); the table's header line when the key is not written there."""
    lines = text.splitlines()
    seen = -1
    inside = False
    header_line: int | None = None
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
    for number, line in enumerate(lines, 1):
        m = _HEADER.match(line)
        if m:
            header = m.group(1).replace(" ", "")
            if inside and key and header == f"{table}.{key}":
                return number  # a sub-table of this entry: [agents.env]
            if inside and not header.startswith(table + "."):
                break
            if header == table:
                seen += 1
                if index is None or seen == index:
                    inside, header_line = True, number
            continue
        if inside and key_re is not None and key_re.match(line):
            return number
    if header_line is not None:
        return header_line
    # inline forms (agents = [{...}]): the first line that mentions the key
    needle = re.compile(rf"\b{re.escape(key or table)}\b")
    return next((n for n, line in enumerate(lines, 1) if needle.search(line)), None)


class _Where:
    """Builds ConfigErrors that point at ``file:line: key``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text()
        except OSError:
            self.text = ""

    def error(self, table: str, key: str | None, message: str,
              index: int | None = None) -> ConfigError:
        line = key_line(self.text, table, key, index)
        label = table if index is None else f"{table}[{index}]"
        if key:
            label += f".{key}"
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {label}: {message}", file=str(self.path), line=line,
                           key=label)


# -- reading --------------------------------------------------------------------

def load(path: Path | None = None) -> AgentsConfig:
    path = path or paths.config_path()
    doc = load_document(path)
    where = _Where(path)
    return AgentsConfig(path, _agents(doc, where), _layout(doc, where))


def _agents(doc: dict[str, Any], where: _Where) -> list[AgentSpec]:
    raw = doc.get("agents", [])
    if not isinstance(raw, list):
        raise where.error("agents", None, "must be an array of tables ([[agents]])")
    out: list[AgentSpec] = []
    for i, entry in enumerate(raw):
        spec = _agent(entry, i, where)
        if any(a.name == spec.name for a in out):
            raise where.error("agents", "name", f"duplicate agent name {spec.name!r}", i)
        out.append(spec)
    return out


def _agent(entry: Any, i: int, where: _Where) -> AgentSpec:
    if not isinstance(entry, dict):
        raise where.error("agents", None, "each entry must be a table", i)
    for key in entry:
        if key not in AGENT_KEYS:
            raise where.error("agents", key,
                              f"unknown key (known: {', '.join(AGENT_KEYS)})", i)
    name = entry.get("name")
    if not isinstance(name, str):
        raise where.error("agents", "name", "missing or not a string", i)
    try:
        check_name(name)
    except BadRequest as exc:
        raise where.error("agents", "name", exc.message, i) from None
    command = entry.get("command")
    if isinstance(command, str):
        raise where.error("agents", "command",
                          f'must be a list of strings, e.g. command = ["{command}"]', i)
    if (not isinstance(command, list) or not command
            or not all(isinstance(c, str) and c for c in command)):
        raise where.error("agents", "command", "must be a non-empty list of strings", i)
    for key in ("profile", "cwd", "room"):
        if key in entry and not isinstance(entry[key], str):
            raise where.error("agents", key, "must be a string", i)
    room = entry.get("room")
    if room is not None:
        try:
            check_name(room, "room name")
        except BadRequest as exc:
            raise where.error("agents", "room", exc.message, i) from None
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise where.error("agents", "env", "must be a table of strings", i)
    return AgentSpec(name=name, command=list(command), profile=entry.get("profile"),
                     cwd=entry.get("cwd"), env=dict(env), room=room)


def _layout(doc: dict[str, Any], where: _Where) -> LayoutConfig:
    table = doc.get("layout", {})
    if not isinstance(table, dict):
        raise where.error("layout", None, "must be a table")
    known = {f.name for f in fields(LayoutConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise where.error("layout", key, f"unknown key (known: {', '.join(sorted(known))})")
        default = getattr(LayoutConfig, key)
        if type(value) is not type(default):
            raise where.error("layout", key,
                              f"must be {type(default).__name__}, got {value!r}")
        values[key] = value
    if "session" in values and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", values["session"]):
        raise where.error("layout", "session", "use letters, digits, '-' and '_'")
    if "chat_height" in values and not 10 <= values["chat_height"] <= 90:
        raise where.error("layout", "chat_height", "must be a percentage from 10 to 90")
    if "history_limit" in values and values["history_limit"] < 0:
        raise where.error("layout", "history_limit", "must not be negative")
    return LayoutConfig(**values)


# -- writing --------------------------------------------------------------------

def add_agent(spec: AgentSpec, path: Path | None = None, replace: bool = False) -> Path:
    """Append (or with ``replace`` overwrite in place) an agent; the file is checked
    first, and everything else in it stays as written (:mod:`.tomledit`)."""
    path = path or paths.config_path()
    config = load(path)  # refuse to rewrite a file that is already broken
    names = [a.name for a in config.agents]
    text = _text(path)
    if spec.name in names:
        if not replace:
            raise Conflict(f"agent {spec.name!r} is already in {path}; "
                           "use --replace to overwrite it")
        at = names.index(spec.name)
        new = _edit(path, text, names, lambda: tomledit.replace_entry(
            text, "agents", at, spec.to_toml()))
        expected = [*names[:at], spec.name, *names[at + 1:]]
    else:
        new = tomledit.append_entry(text, "agents", spec.to_toml())
        expected = [*names, spec.name]
    tomledit.checked(path, new, lambda doc: _names(doc) == expected)
    return save_text(new, path)


def remove_agent(name: str, path: Path | None = None) -> Path:
    path = path or paths.config_path()
    config = load(path)
    config.get(name)
    names = [a.name for a in config.agents]
    text = _text(path)
    at = names.index(name)
    new = _edit(path, text, names, lambda: tomledit.remove_entry(text, "agents", at))
    tomledit.checked(path, new, lambda doc: _names(doc) == names[:at] + names[at + 1:])
    return save_text(new, path)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def _edit(path: Path, text: str, names: list[str], change: Callable[[], str]) -> str:
    """``change()`` when every agent is a ``[[agents]]`` block tomledit can find."""
    if len(tomledit.entry_spans(text, "agents")) != len(names):
        raise ConfigError(f"{path}: the agents are not all written as [[agents]] tables; "
                          "please edit the file by hand")
    return change()


def _names(doc: dict[str, Any]) -> list[str]:
    return [str(e.get("name")) for e in doc.get("agents", []) if isinstance(e, dict)]
