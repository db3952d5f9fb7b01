"""A private, pre-answered Codex home, so the real Codex CLI runs offline in a test.

``codex_home(root, api_url, project)`` writes ``root/home/.codex/config.toml``
pointing Codex at a local Responses API stand-in (``tests.tools.fake_openai``)
and answering in advance every screen a first run would stop at, then returns
the environment a test gives the ``codex`` process.  Nothing outside ``root``
is read or written: HOME, CODEX_HOME and the XDG directories all point inside
it, so the user's own ``~/.codex`` (auth, sessions, config, notify) stays out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

PROVIDER = "csp_fake"
KEY_ENV = "CSP_FAKE_OPENAI_API_KEY"
MODEL = "gpt-5.5"
# "Meet GPT-6 Sol ... Try new model / Use existing model": answered "existing" in advance
# (what Codex itself writes when the user picks "Use existing model").
MIGRATIONS = (("gpt-5.5", "gpt-6-sol"),)
# The "Tip: Maximize usage with <model>" announcements, counted as shown this many times.
NUX_MODELS = ("gpt-5.5", "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-6-sol",
              "gpt-6-luna", "gpt-6-astra", "gpt-6.1-sol", "gpt-6.1-terra", "gpt-6.2-sol",
              "gpt-6.2-astra")
NUX_SEEN = 99


def _toml_str(value: str) -> str:
    """A TOML basic string: JSON's escaping is one TOML accepts.

    ``ensure_ascii=False`` because JSON writes characters beyond the BMP as
    surrogate pairs (``\\ud83d...``), which TOML rejects.
    """
    return json.dumps(value, ensure_ascii=False)


def config_toml(api_url: str, project: Path, notify: Sequence[str] = ()) -> str:
    """The config.toml text for a Codex that talks only to ``api_url``.

    Why each key is here:
    - ``model_provider`` + ``[model_providers.*]``: the stand-in, over the
      Responses wire API, with the key read from ``KEY_ENV`` (no login screen).
    - ``[projects."<dir>"] trust_level``: skips the "trust this folder?" screen.
    - ``[notice]`` (with ``model_migrations``): the "Meet GPT-6 Sol" upgrade
      screen and the warning screens count as answered.
    - ``[tui]``: no startup tips, no model announcements (``model_availability_nux``),
      and the screen-reader question counts as asked (Codex writes that key itself).
    - ``[features]``: no model-change announcements; no app-server daemon that
      would outlive the terminal (the same as ``--no-daemon``).
    - update check, analytics, feedback off: nothing may go to the network.
    The only first-run item left is the footer's "⚠ 1 warning · f2 to view"
    (no bubblewrap on PATH), which stops nothing.

    ``notify``: the user's own notify program (argv; Codex appends the turn's
    JSON), as a user would set it, a top-level key.  Empty: none.
    """
    migrations = "\n".join(f"{_toml_str(old)} = {_toml_str(new)}" for old, new in MIGRATIONS)
    nux = "\n".join(f"{_toml_str(model)} = {NUX_SEEN}" for model in NUX_MODELS)
    base = api_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    notify_line = ("notify = [" + ", ".join(_toml_str(a) for a in notify) + "]\n"
                   if notify else "")
    return f"""\
{notify_line}model = {_toml_str(MODEL)}
model_provider = {_toml_str(PROVIDER)}
approval_policy = "on-request"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false
cli_auth_credentials_store = "file"

[model_providers.{PROVIDER}]
name = "csp fake OpenAI"
base_url = {_toml_str(base)}
wire_api = "responses"
env_key = {_toml_str(KEY_ENV)}
request_max_retries = 0
stream_max_retries = 0

[projects.{_toml_str(str(project.resolve()))}]
trust_level = "trusted"

[notice]
hide_full_access_warning = true
hide_world_writable_warning = true
hide_rate_limit_model_nudge = true
hide_gpt5_1_migration_prompt = true

[notice.model_migrations]
{migrations}

[tui]
show_tooltips = false
screen_reader_detection_done = true

[tui.model_availability_nux]
{nux}

[features]
suppress_model_change_announcements = true
daemon_auto_start = false

[analytics]
enabled = false

[feedback]
enabled = false

[history]
persistence = "save-all"
"""


def codex_home(root: Path, api_url: str, project: Path,
               notify: Sequence[str] = ()) -> dict[str, str]:
    """Create HOME and CODEX_HOME under ``root``; return the env for the codex process.

    The returned mapping is meant to be laid over a minimal environment (PATH,
    TERM, LANG): it sets HOME, CODEX_HOME, the XDG base directories, TMPDIR and
    the API key variable named in the config.  Even ``codex --version`` writes
    under ``$CODEX_HOME/tmp``, so every codex a test runs needs this environment.
    ``notify``: the user's own notify program (see ``config_toml``).
    """
    home = root / "home"
    codex = home / ".codex"
    codex.mkdir(parents=True, exist_ok=True)
    (codex / "config.toml").write_text(config_toml(api_url, project, notify), encoding="utf-8")
    xdg = {name: home / sub for name, sub in (
        ("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"), ("XDG_STATE_HOME", ".local/state"))}
    # Codex refuses to put its helper links (apply_patch...) under the temp dir and
    # says so on the terminal; a TMPDIR of our own also keeps its temp files in root.
    xdg["TMPDIR"] = root / "tmp"
    for path in xdg.values():
        path.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "CODEX_HOME": str(codex), KEY_ENV: "sk-csp-fake",
            **{name: str(path) for name, path in xdg.items()}}
