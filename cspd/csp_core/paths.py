"""Where csp keeps its socket, token, state and config (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/csp``: the socket and the token live here."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        candidate = Path(f"/run/user/{os.getuid()}")
        if not candidate.is_dir():
            raise ConfigError(
                "XDG_RUNTIME_DIR is not set and /run/user/<uid> does not exist; "
                "log in through a session that provides it or export XDG_RUNTIME_DIR"
            )
        base = str(candidate)
    return Path(base) / "csp"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "csp"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "csp"


def socket_path() -> Path:
    return runtime_dir() / "gateway.sock"


def token_path() -> Path:
    return runtime_dir() / "token"


def database_path() -> Path:
    return state_dir() / "csp.sqlite3"


def config_path() -> Path:
    return config_dir() / "config.toml"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make sure only the owner can enter it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
