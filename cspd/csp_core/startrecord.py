"""The gateway's start record, ``$XDG_RUNTIME_DIR/csp/starts.json``.

The gateway writes it (``cspd.restarts`` paces a crash loop with it) and ``cspctl
gateway status`` reads it to say why a gateway is waiting, so it lives in the core.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths

HEALTHY = 30.0  # a run that served this long was not part of a crash loop
KEEP = 20  # starts remembered at most


def record_path() -> Path:
    return paths.runtime_dir() / "starts.json"


@dataclass
class StartRecord:
    """What ``starts.json`` holds: recent starts as ``[monotonic time, chosen wait]``."""

    starts: list[tuple[float, float]] = field(default_factory=list)
    clean: bool = True  # the last run stopped cleanly (or there was none)
    last_error: str = ""  # why the last run gave up, when it knew

    @classmethod
    def load(cls, path: Path) -> StartRecord:
        """The record, or an empty one if it is missing or unreadable (never fatal)."""
        try:
            data: Any = json.loads(path.read_text())
            starts = [(float(t), float(d)) for t, d in data.get("starts", [])]
            return cls(starts=starts, clean=bool(data.get("clean", True)),
                       last_error=str(data.get("last_error", "")))
        except (OSError, ValueError, TypeError, AttributeError):
            return cls()

    def save(self, path: Path) -> None:
        """Write atomically (temp file, rename), 0600 in the private runtime dir."""
        paths.ensure_private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"starts": self.starts[-KEEP:], "clean": self.clean,
                       "last_error": self.last_error}, fh)
        os.replace(tmp, path)

    def failures(self, now: float) -> int:
        """Unclean quick ends in a row before ``now`` (what this start must pace)."""
        if self.clean or not self.starts:
            return 0
        count = 0
        end = now  # the previous run ended at most here
        for started, waited in reversed(self.starts):
            if end - started - waited >= HEALTHY:
                break  # that run served long enough: the loop, if any, started after it
            count += 1
            end = started
        return count


def streak(path: Path | None = None) -> tuple[int, str] | None:
    """``(quick unclean runs in a row, last error)`` for ``cspctl gateway status``.

    The newest run counts too (it may be the one waiting now); None when the
    last run stopped cleanly or there is no record.
    """
    try:
        record = StartRecord.load(path or record_path())
    except Exception:  # no runtime dir: nothing was recorded either
        return None
    failures = record.failures(time.monotonic())
    return (failures, record.last_error) if failures else None
