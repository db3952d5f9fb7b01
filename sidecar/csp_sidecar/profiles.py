"""Per-CLI knowledge, kept in TOML rather than in code paths.

A profile says how to tell that an agent waits for input (prompt and busy
patterns on the *screen*, not in the raw byte stream), how to type a message
into it (paste style, submit key, the pause before the submit key), which
leading characters it treats as commands, and which screen lines are its own
chrome rather than things it says.  Shipped profiles live next to this module;
a user's own in ``$XDG_CONFIG_HOME/csp/profiles/NAME.toml`` replace them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from csp_core import paths
from csp_core.errors import ConfigError

from .command import SHELLS, locate, program_name

PASTE_STYLES = ("bracketed", "typed")
# sizes that must not be zero (a zero chunk size would never finish chunking)
_POSITIVE = ("max_paste_bytes", "chunk_max_chars")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    commands: tuple[str, ...] = ()
    # readiness: output quiet for quiet_ms and (if any) a prompt pattern on screen
    prompt_patterns: tuple[re.Pattern[str], ...] = ()
    busy_patterns: tuple[re.Pattern[str], ...] = ()
    quiet_ms: int = 400
    # an urgent message waits only this long for quiet (it never skips a safety gate)
    urgent_quiet_ms: int = 150
    # typing a message in
    paste: str = "bracketed"
    submit_key: str = "\r"
    submit_delay_ms: int = 500
    max_paste_bytes: int = 8000
    guard_prefixes: str = "!/#"
    tag_format: str = "[{sender} → {to}] {text}"
    # several queued messages go in as one prompt (each with its own tag)
    coalesce: bool = True
    # the human's draft: Esc clears the input line; "\\" then Enter is a new line
    esc_clears: bool = False
    backslash_newline: bool = True
    # a prompt the CLI never confirms (its hook) within this time is typed once more,
    # then reported in the room
    confirm_timeout_ms: int = 15000
    # how the CLI reports its turns (hooks, a notify program, a transcript): a table
    # read by csp_sidecar.wiring; empty means the screen is all there is
    reports: dict[str, Any] = field(default_factory=dict)
    # csp's MCP server for each run of the CLI: a table read by csp_sidecar.mcp_wiring
    mcp: dict[str, Any] = field(default_factory=dict)
    # capture: screen lines that are the CLI's chrome, and reply markers to strip
    chrome_patterns: tuple[re.Pattern[str], ...] = ()
    reply_markers: tuple[str, ...] = ()
    # capture: while any of these matches a screen line a menu is open (a permission
    # prompt): nothing is captured until it is gone
    menu_patterns: tuple[re.Pattern[str], ...] = ()
    # capture: nothing before a prompt pattern first shows (onboarding, splash, start
    # notices); the screen then is taken as seen
    capture_after_prompt: bool = False
    inject: bool = True
    capture: bool = True
    capture_quiet_ms: int = 200
    chunk_max_chars: int = 4000
    # how to start the CLI so it draws inline (not in the alternate screen, where the
    # sidecar can neither tell it is ready nor capture it): variables set unless the
    # user's environment already sets them, and arguments added after the program
    env: dict[str, str] = field(default_factory=dict)
    # variables taken out of the inherited environment because they make the CLI leave
    # its interactive mode even on a terminal (Gemini CLI and CI=true); an explicit
    # ``csp-sidecar --env`` still sets them
    env_unset: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def is_agent(self) -> bool:
        """A profile that must never receive typed chat (a shell) is not an agent."""
        return self.inject


def _compile(path: str, key: str, values: Any) -> tuple[re.Pattern[str], ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{path}: '{key}' must be a list of regular expressions")
    out = []
    for v in values:
        try:
            out.append(re.compile(v))
        except re.error as exc:
            raise ConfigError(f"{path}: '{key}': bad pattern {v!r}: {exc}") from None
    return tuple(out)


def parse_profile(name: str, data: dict[str, Any], source: str) -> Profile:
    """Build a profile from a TOML table, naming the file and key on any error."""
    known = set(Profile.__dataclass_fields__) - {"name", "extra"}
    kwargs: dict[str, Any] = {"name": name}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{key}'")
        if key.endswith("_patterns"):
            kwargs[key] = _compile(source, key, value)
        elif key in ("reports", "mcp"):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{key}' must be a table")
            kwargs[key] = dict(value)
        elif key == "env":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ConfigError(f"{source}: 'env' must be a table of strings")
            kwargs[key] = dict(value)
        elif key in ("commands", "reply_markers", "args", "env_unset"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: '{key}' must be a list of strings")
            kwargs[key] = tuple(value)
        else:
            default = Profile.__dataclass_fields__[key].default
            if type(value) is not type(default):
                raise ConfigError(f"{source}: '{key}' must be {type(default).__name__}")
            if isinstance(value, int) and value < (1 if key in _POSITIVE else 0):
                raise ConfigError(f"{source}: '{key}' must be "
                                  f"{'positive' if key in _POSITIVE else 'zero or more'}")
            kwargs[key] = value
    if kwargs.get("paste", "bracketed") not in PASTE_STYLES:
        raise ConfigError(f"{source}: 'paste' must be one of {', '.join(PASTE_STYLES)}")
    if "{text}" not in kwargs.get("tag_format", "{text}"):
        raise ConfigError(f"{source}: 'tag_format' must contain {{text}}")
    try:
        kwargs.get("tag_format", "{text}").format(sender="s", to="@t", text="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{source}: 'tag_format': only {{sender}}, {{to}} and {{text}} "
                          f"may be used ({exc!r})") from None
    return Profile(**kwargs)


def apply_to_command(profile: Profile, command: list[str]) -> list[str]:
    """The command with the profile's ``args`` right after the CLI's own program (past
    ``env VAR=...``, ``npx``, ``nice`` and the like), unless already given there.

    A wrapper that hides the program (``sh -c '...'``, ``ssh host codex``) leaves nowhere
    to put them: that is an error at start rather than a command that fails later.
    """
    if not profile.args:
        return list(command)
    located = locate(command)
    if located.index is None:
        raise ConfigError(
            f"profile {profile.name!r} adds {' '.join(profile.args)} after the CLI's program, "
            f"but {located.reason}: put the CLI's program itself in the command "
            f"(e.g. -- {profile.commands[0] if profile.commands else 'PROGRAM'} ...), "
            f"or use a profile without args")
    cut = located.index + 1
    missing = [a for a in profile.args if a not in command[cut:]]
    return command[:cut] + missing + command[cut:]


def apply_to_env(profile: Profile, env: Mapping[str, str]) -> dict[str, str]:
    """The inherited environment less the profile's ``env_unset``, with the profile's
    ``env`` where the user has not set it."""
    kept = {k: v for k, v in env.items() if k not in profile.env_unset}
    return {**profile.env, **kept}


def _user_dir() -> Path:
    return paths.config_dir() / "profiles"


def _load_file(path: Path | Any, name: str) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_profile(name, data, str(path))


def shipped_names() -> list[str]:
    base = resources.files("csp_sidecar") / "profiles"
    return sorted(p.name[:-5] for p in base.iterdir() if p.name.endswith(".toml"))


def load_profile(name: str) -> Profile:
    """The user's profile NAME if there is one, else the shipped one."""
    user = _user_dir() / f"{name}.toml"
    if user.is_file():
        return _load_file(user, name)
    shipped = resources.files("csp_sidecar") / "profiles" / f"{name}.toml"
    if not shipped.is_file():
        available = ", ".join(sorted(set(shipped_names()) | _user_names()))
        raise ConfigError(f"no profile named {name!r} (available: {available})")
    return _load_file(shipped, name)


def _user_names() -> set[str]:
    d = _user_dir()
    return {p.stem for p in d.glob("*.toml")} if d.is_dir() else set()


def match_profile(command: list[str]) -> Profile | None:
    """The profile whose ``commands`` names the CLI's own program (found past its wrappers:
    ``env HOME=/x codex``, ``npx -y @openai/codex``), the user's profiles first; None when
    no profile knows it, or a wrapper hides it.  A command that starts with a shell
    (``bash -c ...``, ``sh script``) is also the shell's: it runs whatever is typed."""
    located = locate(command)
    names = [located.name] if located.index is not None else []
    if command and program_name(command[0]) in SHELLS:
        names.append(program_name(command[0]))
    for name in sorted(_user_names()) + shipped_names():
        profile = load_profile(name)
        if any(n in profile.commands for n in names):
            return profile
    return None


def profile_for_command(command: list[str]) -> Profile:
    """Pick the profile whose ``commands`` list names the program, else ``generic``."""
    return match_profile(command) or load_profile("generic")
