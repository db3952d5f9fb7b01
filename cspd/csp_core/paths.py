"""Where csp keeps its socket, token, state and config (XDG base directories).

The functions return :class:`~pathlib.Path` objects; :func:`runtime_base` and
the ``*_NAME`` constants give a one-shot client the socket's and the token's
places as text, so that ``cspctl send`` does not import pathlib (a few ms of its
start) to read one file and open one socket.
"""

from __future__ import annotations

import os

from .errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

SOCKET_NAME = "gateway.sock"
TOKEN_NAME = "token"


def _path(text: str) -> Path:
    from pathlib import Path  # see the module docstring

    return Path(text)


def runtime_base() -> str:
    """``$XDG_RUNTIME_DIR/csp`` as text: the socket and the token live here."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        candidate = f"/run/user/{os.getuid()}"
        if not os.path.isdir(candidate):
            raise ConfigError(
                "XDG_RUNTIME_DIR is not set and /run/user/<uid> does not exist; "
                "log in through a session that provides it or export XDG_RUNTIME_DIR"
            )
        base = candidate
    return os.path.join(base, "csp")


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/csp``: the socket and the token live here."""
    return _path(runtime_base())


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return _path(base) / "csp"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".config")
    return _path(base) / "csp"


def socket_path() -> Path:
    return runtime_dir() / SOCKET_NAME


def token_path() -> Path:
    return runtime_dir() / TOKEN_NAME


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
