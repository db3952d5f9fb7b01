"""A private, pre-answered Gemini CLI home, so the real Gemini CLI runs offline in a test.

``gemini_home(root, api_url, project)`` writes ``root/home/.gemini/settings.json``
(and the folder-trust file) so that Gemini CLI 0.61 talks only to a local API
stand-in (``tests.tools.fake_gemini``) and stops at none of its first-run
screens, then returns the environment a test gives the ``gemini`` process.
Nothing outside ``root`` is read or written: HOME, GEMINI_CLI_HOME, the
trusted-folders path, the system settings paths, TMPDIR and the XDG
directories all point inside it, so the user's own ``~/.gemini`` (auth,
sessions, hooks) and the machine's ``/etc/gemini-cli`` stay out.

Where gemini then writes (0.61): the session transcript goes to
``root/home/.gemini/tmp/<slug>/chats/session-<UTC YYYY-MM-DDTHH-MM>-<first 8
characters of the session id>.jsonl``, ``<slug>`` being the project
directory's basename lower-cased with every run of other characters than
``a-z0-9`` made one ``-`` (``-1``, ``-2``... on a clash), recorded in
``root/home/.gemini/projects.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL = "gemini-2.5-pro"
API_KEY = "csp-fake-gemini-key"


def settings(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The user settings for a Gemini CLI that only talks to the stand-in.

    Why each key is here:
    - ``security.auth.selectedType`` = ``gemini-api-key``: no "how do you want
      to log in?" screen; the key comes from GEMINI_API_KEY.
    - ``model.name``: a fixed model, so requests name the same model every run
      and no router request (the default "auto" asks a classifier first) runs.
    - update check and update notice off, usage statistics and telemetry off:
      nothing may go to the network but the stand-in.
    - ``ide`` off and its nudge seen: no "connect to your IDE?" screen.
    - banner, tips, compatibility and home-directory warnings hidden: the
      screen holds only what the test is looking at.
    ``extra`` is merged in at the top level (e.g. ``hooks``, ``hooksConfig``).
    """
    out: dict[str, Any] = {
        "security": {"auth": {"selectedType": "gemini-api-key"},
                     "folderTrust": {"enabled": True}},
        "model": {"name": MODEL},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False,
                    "enableNotifications": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False, "logPrompts": False},
        "ide": {"enabled": False, "hasSeenNudge": True},
        "ui": {"hideBanner": True, "hideTips": True, "showCompatibilityWarnings": False,
               "showHomeDirectoryWarning": False},
    }
    out.update(extra or {})
    return out


def gemini_home(root: Path, api_url: str, project: Path,
                extra_settings: dict[str, Any] | None = None) -> dict[str, str]:
    """Create a HOME under ``root``; return the env for the gemini process.

    The returned mapping is meant to be laid over a minimal environment (PATH,
    TERM, LANG).  ``project`` is the directory gemini will run in: it is
    marked trusted so the folder-trust screen never shows (and project
    settings, if a test writes any, are honoured).
    """
    home = root / "home"
    gemini_dir = home / ".gemini"
    gemini_dir.mkdir(parents=True, exist_ok=True)
    (gemini_dir / "settings.json").write_text(
        json.dumps(settings(extra_settings), indent=2) + "\n", encoding="utf-8")
    trusted = gemini_dir / "trustedFolders.json"
    trusted.write_text(json.dumps({str(project.resolve()): "TRUST_FOLDER"}, indent=2) + "\n",
                       encoding="utf-8")
    xdg = {name: home / sub for name, sub in (
        ("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"), ("XDG_STATE_HOME", ".local/state"))}
    tmp = root / "tmp"
    for path in (*xdg.values(), tmp):
        path.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        # gemini's own idea of home (settings, sessions, trust, extensions);
        # the same place, named explicitly so a user's GEMINI_CLI_HOME cannot
        # leak in.
        "GEMINI_CLI_HOME": str(home),
        "GEMINI_CLI_TRUSTED_FOLDERS_PATH": str(trusted),
        # files that do not exist: /etc/gemini-cli/{settings,system-defaults}.json
        # of the machine stay out of the test
        "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(root / "no-system-settings.json"),
        "GEMINI_CLI_SYSTEM_DEFAULTS_PATH": str(root / "no-system-defaults.json"),
        "GOOGLE_GEMINI_BASE_URL": api_url.rstrip("/"),
        "GEMINI_API_KEY": API_KEY,
        "TMPDIR": str(tmp),
        **{name: str(path) for name, path in xdg.items()},
    }
