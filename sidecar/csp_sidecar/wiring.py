"""Per-run wiring of an agent CLI's turn reports: what the sidecar adds when it spawns it.

The profile's ``[reports]`` table says how a CLI reports its turns; this module
turns that table and the run's facts (agent name, hook socket, environment, the
user's command, a fresh session id) into a ``Wiring``: arguments to put right
after the program, environment variables, the event rules for the hook channel
(``hooks``) and, for a CLI that only keeps a transcript, what to follow
(``transcript``).  Three kinds of wiring exist in code; every CLI-specific name
(flags, event names, JSON fields, paths) is in the TOML:

``settings_hooks``
    A settings JSON with hooks, in Claude Code's format, passed with a flag for
    this run only (``--settings``): its hooks run in addition to the user's own.
    The flag takes one value, so a ``--settings`` the user gave is merged into
    ours (in a 0600 file in the runtime dir) and replaced.
``notify``
    A program the CLI runs at the end of each turn with the JSON as its last
    argument, set for this run with a config override (``-c notify=[...]``).
    The override replaces the user's own ``notify`` (from their command line or
    their config file), so csp-hook chains to it: it runs it, detached, with the
    argv it would have had.
``transcript``
    The CLI is given a session id (``--session-id``) and its JSONL transcript,
    found by a glob, is followed (``transcript.TranscriptFollower``).

Nothing in the user's files changes, and no hook of theirs is disabled.  A
``[reports]`` table that cannot be read raises ``ConfigError``; a user setup
that cannot be combined with ours (an unreadable ``--settings``, a resumed
session) gives a Wiring without reports and says why in ``notes``: the screen
is then all there is, as for a CLI without a ``[reports]`` table.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shlex
import sys
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from csp_core import paths
from csp_core.errors import ConfigError

from . import hook_cmd
from .hooks import SOCKET_ENV, HookSpec
from .mcp_wiring import mcp_wiring
from .profiles import Profile
from .transcript import TranscriptSpec

log = logging.getLogger("csp_sidecar.wiring")

KINDS = ("settings_hooks", "notify", "transcript")
DEFAULT_HOOK_TIMEOUT = 10


def hook_argv() -> tuple[str, ...]:
    """The fast way to run csp-hook: this Python, no site, the module's file by path."""
    return (sys.executable, "-I", "-S", str(Path(hook_cmd.__file__).resolve()))


@dataclass(frozen=True)
class RunFacts:
    """What the wiring needs to know about this run.

    ``env`` is the environment the agent will get (its HOME, CODEX_HOME... say
    where the CLI keeps its files); ``command`` the user's command, program
    first (flags the user gave are respected: see ``Wiring.apply``); ``cwd``
    where the agent runs (a relative ``--settings`` path is read from there);
    ``private_dir`` where a file of ours may go (default: the socket's directory);
    ``session``: the session id a CLI is given (``transcript`` kind).
    """

    agent: str
    hook_socket: Path
    env: Mapping[str, str]
    command: Sequence[str] = ()
    cwd: Path | str | None = None
    session: str = field(default_factory=lambda: str(uuid.uuid4()))
    hook_argv: tuple[str, ...] = field(default_factory=hook_argv)
    private_dir: Path | None = None


@dataclass(frozen=True)
class Taken:
    """A user's option that our arguments take over: ``flag VALUE`` / ``flag=VALUE``
    whose value starts with ``prefix`` (``-c notify=...``)."""

    flags: tuple[str, ...]
    prefix: str = ""


@dataclass
class Wiring:
    """What to add to this run.  ``hooks``: rules for a ``HookChannel`` (None: no
    channel needed); ``transcript``: what a ``TranscriptFollower`` follows;
    ``files``: files written for this run (``cleanup`` removes them)."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    hooks: HookSpec | None = None
    transcript: TranscriptSpec | None = None
    takes: tuple[Taken, ...] = ()
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def reports(self) -> bool:
        """Does this run report its turns (else the screen is all there is)?"""
        return self.hooks is not None or self.transcript is not None

    def apply(self, command: Sequence[str], at: int = 0) -> list[str]:
        """The command with our arguments right after the program (``command[at]``),
        minus the user's options that ours take over (their values are merged or
        chained into ours: a second ``--settings`` would replace ours)."""
        if len(command) <= at:
            return list(command)
        rest = _without(list(command[at + 1:]), self.takes)
        head = [self._assignment(word) for word in command[:at]]
        return [*head, command[at], *self.args, *rest]

    def _assignment(self, word: str) -> str:
        """A wrapper's ``VAR=value`` (``env VAR=value cli``) for a variable of ours gets
        our value: it would otherwise replace ours in the CLI's environment.  Ours was
        made from theirs (see ``mcp_wiring``: the user's defaults file is merged in)."""
        name, eq, _ = word.partition("=")
        if eq and name in self.env and name.isidentifier():
            return f"{name}={self.env[name]}"
        return word

    def cleanup(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)

    def joined(self, other: Wiring) -> Wiring:
        """This wiring and ``other`` together (``other``'s arguments go first: a
        variadic flag of ours must not take the user's words, and ours end in a value)."""
        return Wiring(args=[*other.args, *self.args], env={**self.env, **other.env},
                      hooks=self.hooks, transcript=self.transcript,
                      takes=(*self.takes, *other.takes), notes=[*self.notes, *other.notes],
                      files=[*self.files, *other.files])


def wire_run(profile: Profile, run: RunFacts) -> Wiring:
    """Everything this run gets: the turn reports (:func:`wire`) and csp's MCP server
    (``profile.mcp``, see :mod:`csp_sidecar.mcp_wiring`)."""
    mcp = mcp_wiring(profile, run.agent, run.env, run.private_dir or run.hook_socket.parent)
    return wire(profile, run, mcp.allow).joined(
        Wiring(args=mcp.args, env=mcp.env, files=mcp.files, notes=mcp.notes))


def wire(profile: Profile, run: RunFacts, allow: tuple[str, ...] = ()) -> Wiring:
    """The wiring ``profile.reports`` asks for on this run (empty when it asks none);
    ``allow``: permission rules for the settings it passes (csp's MCP tools)."""
    wiring = _reports(profile, run, allow)
    for note in wiring.notes:
        log.info("%s: %s", profile.name, note)
    return wiring


def _reports(profile: Profile, run: RunFacts, allow: tuple[str, ...]) -> Wiring:
    reports = profile.reports
    source = f"profile {profile.name}: reports"
    kind = reports.get("kind")
    if not reports or kind in (None, "", "none"):
        return Wiring()
    _check_keys(reports, str(kind), source)
    if kind == "settings_hooks":
        return _settings_hooks(reports, run, source, allow)
    if kind == "notify":
        return _notify(reports, run, source)
    return _transcript(reports, run, source)


# -- helpers -----------------------------------------------------------------------

# read by the sidecar: share_tools (post "tool" events to the room); confirm = "report"
# (a typed message is acknowledged when the CLI reports it as a prompt, else on submit)
_COMMON = {"kind", "base_env", "base_default", "share_tools", "confirm"}
_HOOK_KEYS = {"events", "label_field", "side_threads", "tool_summary_keys"}
_KEYS = {
    "settings_hooks": _COMMON | _HOOK_KEYS | {"settings_flag", "payload", "hook_timeout"},
    "notify": _COMMON | _HOOK_KEYS | {"config_flag", "config_flags", "config_key",
                                      "config_file", "label"},
    "transcript": _COMMON | set(TranscriptSpec.__dataclass_fields__)
    - {"pattern", "session", "poll_interval"}
    | {"session_flag", "conflicting_flags", "transcript"},
}


def _check_keys(reports: Mapping[str, Any], kind: str, source: str) -> None:
    """A misspelt key is an error, not a silently ignored setting."""
    known = _KEYS.get(kind)
    if known is None:
        raise ConfigError(f"{source}: 'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    unknown = sorted(set(reports) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' for kind {kind!r}")



def _get(reports: Mapping[str, Any], key: str, source: str, default: str | None = None) -> str:
    value = reports.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: '{key}' must be a non-empty string")
    return value


def _list(reports: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = reports.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: '{key}' must be a list of strings")
    return tuple(value)


def _home(run: RunFacts) -> str:
    return run.env.get("HOME") or os.path.expanduser("~")


def _fill(template: str, run: RunFacts, reports: Mapping[str, Any], source: str,
          *, for_glob: bool = False) -> str:
    """Fill ``{home}``, ``{base}``, ``{session}``, ``{agent}`` (``{session:.8}``: its start).

    ``{base}`` is the variable ``base_env`` names when it is set, else
    ``base_default`` (itself a template).  In a glob, the values are escaped.
    """
    def esc(value: str) -> str:
        return glob.escape(value) if for_glob else value

    raw = {"home": _home(run), "session": run.session, "agent": run.agent}
    base_env = reports.get("base_env")
    base = run.env.get(base_env) if isinstance(base_env, str) else None
    if not base:
        default = reports.get("base_default", "{home}")
        base = _format(default if isinstance(default, str) else "{home}", raw, source)
    raw["base"] = base
    return _format(template, {k: esc(v) for k, v in raw.items()}, source)


def _format(template: str, values: Mapping[str, str], source: str) -> str:
    try:
        return template.format_map(values)
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise ConfigError(f"{source}: bad placeholder in {template!r}: {exc!r} "
                          "(known: {home}, {base}, {session}, {agent})") from None


def _match(flag: str, word: str, following: str | None) -> tuple[int, str | None]:
    """(words used, value) when ``word`` gives ``flag`` a value, else (0, None).

    Forms: ``--flag V``, ``--flag=V``, ``-f V``, ``-fV``.
    """
    if word == flag:
        return (2, following) if following is not None else (0, None)
    if flag.startswith("--") and word.startswith(flag + "="):
        return 1, word[len(flag) + 1:]
    if len(flag) == 2 and flag[0] == "-" and flag[1] != "-" and word.startswith(flag):
        return 1, word[2:]
    return 0, None


def _option_values(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """Every value given to one of ``flags`` in ``args`` (up to a ``--``)."""
    out = []
    i = 0
    while i < len(args) and args[i] != "--":
        following = args[i + 1] if i + 1 < len(args) else None
        used = 1
        for flag in flags:
            n, value = _match(flag, args[i], following)
            if n and value is not None:
                out.append(value)
                used = n
                break
        i += used
    return out


def _without(args: list[str], takes: Sequence[Taken]) -> list[str]:
    """``args`` minus each option ``takes`` names (flag and value), up to a ``--``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--":
            return out + args[i:]
        following = args[i + 1] if i + 1 < len(args) else None
        skip = 0
        for taken in takes:
            for flag in taken.flags:
                n, value = _match(flag, args[i], following)
                if n and value is not None and value.startswith(taken.prefix):
                    skip = n
                    break
            if skip:
                break
        if not skip:
            out.append(args[i])
        i += skip or 1
    return out


def _private_file(run: RunFacts, name: str, text: str) -> Path:
    folder = paths.ensure_private_dir(run.private_dir or run.hook_socket.parent)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


# -- settings_hooks (Claude Code) ------------------------------------------------------


def _settings_hooks(reports: Mapping[str, Any], run: RunFacts, source: str,
                    allow: tuple[str, ...] = ()) -> Wiring:
    spec = HookSpec.from_reports(reports, source)
    flag = _get(reports, "settings_flag", source)
    mode = reports.get("payload", "stdin")
    default_timeout = reports.get("hook_timeout", DEFAULT_HOOK_TIMEOUT)
    if mode not in ("stdin", "argv") or type(default_timeout) is not int:
        raise ConfigError(f"{source}: 'payload' must be stdin or argv, 'hook_timeout' an int")
    ours = claude_hooks(spec, _hook_command(run), f"--{mode}", default_timeout)
    env = {SOCKET_ENV: str(run.hook_socket)}
    users = _option_values(list(run.command[1:]), [flag])
    if not users:
        return Wiring(args=[flag, json.dumps(merge_allow({"hooks": ours}, allow),
                                             ensure_ascii=False)], env=env,
                      hooks=spec, takes=(Taken((flag,)),))
    try:
        settings = _read_settings(users[-1], run.cwd)
    except (OSError, ValueError) as exc:
        return Wiring(notes=[f"your {flag} {users[-1]!r} cannot be read ({exc}): its hooks "
                             "cannot be combined with csp's, so turns are read off the screen"])
    merged = merge_allow(merge_hooks(settings, ours), allow)
    path = _private_file(run, f"{run.agent}.settings.json", json.dumps(merged, ensure_ascii=False))
    return Wiring(args=[flag, str(path)], env=env, hooks=spec, takes=(Taken((flag,)),),
                  files=[path], notes=[f"your {flag} is merged with csp's hooks in {path}"])


def _hook_command(run: RunFacts) -> list[str]:
    """csp-hook with its socket named on its command line: an ``env -i`` or ``env -u`` in
    front of the CLI may drop ``CSP_HOOK_SOCKET`` from its environment."""
    return [*run.hook_argv, "--socket", str(run.hook_socket)]


def claude_hooks(spec: HookSpec, argv: Sequence[str], mode: str,
                 default_timeout: int) -> dict[str, list[dict[str, Any]]]:
    """The ``hooks`` table of a settings JSON: each event runs ``csp-hook MODE EVENT``."""
    hooks: dict[str, list[dict[str, Any]]] = {}
    for label, rule in spec.events.items():
        command: dict[str, Any] = {"type": "command",
                                   "command": shlex.join([*argv, mode, label]),
                                   "timeout": rule.timeout or default_timeout}
        if rule.asynchronous:
            command["async"] = True
        entry: dict[str, Any] = {"hooks": [command]}
        if rule.matcher is not None:
            entry["matcher"] = rule.matcher
        hooks[label] = [entry]
    return hooks


def _read_settings(value: str, cwd: Path | str | None) -> dict[str, Any]:
    text = value if value.lstrip().startswith("{") else \
        Path(cwd or ".", value).expanduser().read_text(encoding="utf-8")
    settings = json.loads(text)
    if not isinstance(settings, dict):
        raise ValueError("not a JSON object")
    return settings


def merge_hooks(settings: dict[str, Any], ours: Mapping[str, list[dict[str, Any]]]
                ) -> dict[str, Any]:
    """The user's settings with our hook entries added after theirs, event by event."""
    theirs = settings.get("hooks")
    hooks: dict[str, Any] = dict(theirs) if isinstance(theirs, dict) else {}
    for label, entries in ours.items():
        existing = hooks.get(label)
        hooks[label] = (list(existing) if isinstance(existing, list) else []) + entries
    return {**settings, "hooks": hooks}


def merge_allow(settings: dict[str, Any], allow: Sequence[str]) -> dict[str, Any]:
    """The settings with permission rules added to ``permissions.allow`` (csp's own
    MCP tools, so that talking in the chat needs no approval each time)."""
    if not allow:
        return settings
    permissions = settings.get("permissions")
    permissions = dict(permissions) if isinstance(permissions, dict) else {}
    theirs = permissions.get("allow")
    rules = list(theirs) if isinstance(theirs, list) else []
    permissions["allow"] = rules + [r for r in allow if r not in rules]
    return {**settings, "permissions": permissions}


# -- notify (Codex) --------------------------------------------------------------------


def _notify(reports: Mapping[str, Any], run: RunFacts, source: str) -> Wiring:
    spec = HookSpec.from_reports(reports, source)
    flag = _get(reports, "config_flag", source)
    flags = _list(reports, "config_flags", source) or (flag,)
    key = _get(reports, "config_key", source)
    label = _get(reports, "label", source)
    notes: list[str] = []
    user = user_notify(run, reports, flags, key, source, notes)
    argv = [*_hook_command(run), "--argv", label]
    if user:
        argv += ["--then", *user]
        notes.append(f"csp's {key} chains to yours: {shlex.join(user)}")
    return Wiring(args=[flag, f"{key}={toml_array(argv)}"],
                  env={SOCKET_ENV: str(run.hook_socket)}, hooks=spec,
                  takes=(Taken(flags, f"{key}="),), notes=notes)


def toml_array(values: Sequence[str]) -> str:
    """A one-line TOML array of strings (tomli_w's quoting: every control byte escaped)."""
    return "[" + ", ".join(tomli_w.dumps({"v": v})[4:].rstrip("\n") for v in values) + "]"


def user_notify(run: RunFacts, reports: Mapping[str, Any], flags: Sequence[str], key: str,
                source: str, notes: list[str]) -> list[str]:
    """The user's own notify program: from their command line, else their config file."""
    given = [v.partition("=")[2] for v in _option_values(list(run.command[1:]), flags)
             if v.startswith(f"{key}=")]
    if given:
        try:
            value: Any = tomllib.loads(f"v = {given[-1]}")["v"]
        except tomllib.TOMLDecodeError as exc:
            notes.append(f"your -c {key}=... is not a TOML value ({exc}): not chained")
            return []
        return _argv_value(value, f"your {key} on the command line", notes)
    config = Path(_fill(_get(reports, "config_file", source), run, reports, source))
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        notes.append(f"{config} cannot be read ({exc}): your {key}, if any, is not chained")
        return []
    return _argv_value(data.get(key), f"{key} in {config}", notes)


def _argv_value(value: Any, what: str, notes: list[str]) -> list[str]:
    if value is None or value == []:
        return []
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    notes.append(f"{what} is not a list of strings: not chained")
    return []


# -- transcript (Gemini CLI) -----------------------------------------------------------


def _transcript(reports: Mapping[str, Any], run: RunFacts, source: str) -> Wiring:
    flag = _get(reports, "session_flag", source)
    user_args = list(run.command[1:])
    conflicts = [a for a in _list(reports, "conflicting_flags", source)
                 if any(w == a or w.startswith(a + "=") for w in user_args)]
    if conflicts:
        return Wiring(notes=[f"{conflicts[0]} given: csp cannot tell which transcript this run "
                             "writes, so turns are read off the screen"])
    given = _option_values(user_args, [flag])
    session = given[-1] if given else run.session
    facts = replace(run, session=session)
    spec = transcript_spec(reports, facts, source)
    args = [] if given else [flag, session]
    return Wiring(args=args, transcript=spec,
                  notes=[f"following {spec.pattern}"] + (["your session id is used"] if given
                                                          else []))


def transcript_spec(reports: Mapping[str, Any], run: RunFacts, source: str) -> TranscriptSpec:
    """The follower's spec from the table, with the run's paths and session filled in."""
    settle = reports.get("settle_ms", 1000)
    if type(settle) is not int or settle < 0:
        raise ConfigError(f"{source}: 'settle_ms' must be zero or more")

    def opt(key: str) -> str | None:
        value = reports.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string")
        return value

    return TranscriptSpec(
        pattern=_fill(_get(reports, "transcript", source), run, reports, source, for_glob=True),
        session=run.session,
        session_field=opt("session_field"),
        id_field=opt("id_field"),
        type_field=_get(reports, "type_field", source, "type"),
        prompt_types=_list(reports, "prompt_types", source),
        reply_types=_list(reports, "reply_types", source),
        prompt_fields=_list(reports, "prompt_fields", source) or ("content",),
        reply_field=_get(reports, "reply_field", source, "content"),
        tool_calls_field=opt("tool_calls_field"),
        tool_id_field=_get(reports, "tool_id_field", source, "id"),
        tool_name_fields=_list(reports, "tool_name_fields", source) or ("name",),
        tool_input_field=opt("tool_input_field"),
        tool_summary_keys=_list(reports, "tool_summary_keys", source),
        settle_ms=settle)


def validate(profile: Profile) -> None:
    """Raise ConfigError when ``profile.reports`` or ``profile.mcp`` cannot be wired
    (for tests and checks)."""
    home = Path("/nonexistent-csp-home")
    wire_run(profile, RunFacts(profile.name, home / "hook.sock", {"HOME": str(home)},
                           command=[profile.commands[0] if profile.commands else "agent"],
                           private_dir=home))
