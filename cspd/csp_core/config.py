"""``$XDG_CONFIG_HOME/csp/config.toml``: read with tomllib, written with tomli-w.

Only the ``[gateway]`` table is the gateway's; other parts of csp keep their own
tables in the same file and read them through :func:`load_document`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from . import paths
from .errors import BadRequest, ConfigError
from .protocol import check_name


@dataclass(frozen=True)
class GatewayConfig:
    """Limits and defaults of the gateway; every field can be set in ``[gateway]``."""

    default_room: str = "main"
    max_message_bytes: int = 64 * 1024
    rate_per_second: float = 50.0
    rate_burst: int = 200
    hop_limit: int = 6
    tcp_port: int = 8765
    history_limit_max: int = 5000
    # what waits for an agent that is away: deliveries older than this many seconds,
    # or past the newest pending_max_count, are dropped when it comes back and
    # replaced by one summary line (each typed-in message is a paid model turn)
    pending_max_age_s: int = 86400
    pending_max_count: int = 100


# the replay of an agent's backlog must fit in one connection's queue (10,000,
# hub.MAX_QUEUE) with room for the summary line and live messages
PENDING_MAX_COUNT_LIMIT = 5000
PENDING_MAX_AGE_LIMIT = 10 * 365 * 86400  # ten years: "never" without overflowing dates


def load_document(path: Path | None = None) -> dict[str, Any]:
    """Parse the config file; a missing file is an empty config."""
    path = path or paths.config_path()
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def save_text(text: str, path: Path | None = None) -> Path:
    """Write the config atomically (temp file, then rename), as the caller edited it."""
    path = path or paths.config_path()
    paths.ensure_private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def gateway_config(doc: dict[str, Any] | None = None, path: Path | None = None) -> GatewayConfig:
    """The ``[gateway]`` table, checked field by field with errors naming the key."""
    path = path or paths.config_path()
    if doc is None:
        doc = load_document(path)
    table = doc.get("gateway", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [gateway] must be a table")
    known = {f.name: f for f in fields(GatewayConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        field = known.get(key)
        if field is None:
            raise ConfigError(f"{path}: unknown key gateway.{key}")
        default = getattr(GatewayConfig, key)
        # a float setting takes an int too; nothing takes a bool (TOML true is not 1)
        allowed = (float, int) if isinstance(default, float) else (type(default),)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise ConfigError(
                f"{path}: gateway.{key} must be {type(default).__name__}, got {value!r}"
            )
        if isinstance(value, int | float) and value <= 0:
            raise ConfigError(f"{path}: gateway.{key} must be positive, got {value!r}")
        values[key] = type(default)(value)
    for key, most in (("tcp_port", 65535), ("pending_max_count", PENDING_MAX_COUNT_LIMIT),
                      ("pending_max_age_s", PENDING_MAX_AGE_LIMIT)):
        if key in values and values[key] > most:
            raise ConfigError(f"{path}: gateway.{key} must be at most {most}, "
                              f"got {values[key]!r}")
    if "default_room" in values:
        try:
            check_name(values["default_room"], "room name")
        except BadRequest as exc:
            raise ConfigError(f"{path}: gateway.default_room: {exc.message}") from None
    return GatewayConfig(**values)
