"""What the sidecar has typed, on disk, so that a crash never types a message twice.

The gateway replays every message the agent has not acknowledged.  Between
typing a message and acknowledging it the sidecar may die (kill -9, a closed
pane); its record of what it typed must outlive it, or the replay types the
message again.  So before typing, the sidecar appends ``typing`` with the
messages' ids and senders (what a report of an interrupted turn names; not their
text, which can be megabytes); right after the submit key, ``submitted``; when the CLI's turn on it
ends, ``answered``.  Each record is one JSON line, written (``write(2)``) before
the sidecar goes on, and never fsynced: what it guards against is the *process*
dying, and a write survives that in the page cache.  Only the machine going down
loses it, and that takes the agent CLI, its terminal and what was typed into it
along (the runtime dir is a tmpfs that goes too): a message typed again into a new
agent after a reboot is not typed twice.  An fsync would cost each delivery a disk
flush on the event loop, with every agent of a fan-out waiting its turn.

On start, :meth:`Journal.recover` tells:

* ``submitted``: typed and submitted, whatever the gateway still thinks: a
  replay is acknowledged, never typed again;
* ``unanswered``: submitted, but the turn on it never ended (the CLI died with
  the sidecar): said in the room as interrupted, never lost without a word.

A ``typing`` record without ``submitted`` needs nothing: the CLI died with
the sidecar (it is started with PR_SET_PDEATHSIG), so its half-typed input died
too, and the unacknowledged message comes back from the gateway.

The file lives in the runtime dir (0600 in a 0700 dir), per agent name, and
is rewritten small once it grows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csp_core import paths
from csp_core.protocol import Message

log = logging.getLogger("csp_sidecar.journal")

COMPACT_AFTER = 500  # records
KEEP_IDS = 2000  # submitted ids remembered (replays of older ones are not expected)


@dataclass(frozen=True)
class Typed:
    """A message as the journal keeps it: enough to name it in the room."""

    id: int
    sender: str


@dataclass
class Recovered:
    submitted: set[int] = field(default_factory=set)
    unanswered: list[Typed] = field(default_factory=list)


def journal_path(agent: str) -> Path:
    folder = paths.ensure_private_dir(paths.runtime_dir() / "sidecar")
    return folder / f"{agent}.journal"


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._records = 0
        self._fd: int | None = None

    # -- reading -------------------------------------------------------------

    def _read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out  # a line cut by a crash is skipped: its step did not happen

    def recover(self) -> Recovered:
        """What the last run left: see the module's docstring."""
        typed: dict[int, Typed] = {}
        submitted: list[int] = []
        answered: set[int] = set()
        for record in self._read():
            ids = [i for i in record.get("ids", []) if isinstance(i, int)]
            op = record.get("op")
            if op == "typing":
                for raw in record.get("messages", []):
                    with contextlib.suppress(KeyError, TypeError, ValueError):
                        typed[int(raw["id"])] = Typed(int(raw["id"]), str(raw["from"]))
            elif op == "submitted":
                submitted.extend(ids)
            elif op == "answered":
                answered.update(ids)
        out = Recovered(submitted=set(submitted[-KEEP_IDS:]))
        out.unanswered = [typed[i] for i in submitted if i not in answered and i in typed]
        return out

    # -- writing -------------------------------------------------------------

    def open(self) -> None:
        """Compact what the last run left, then append from here."""
        recovered = self.recover()
        # keep what a later replay needs: the submitted ids; all else is done
        self._rewrite([{"op": "submitted", "ids": sorted(recovered.submitted)}]
                      if recovered.submitted else [])

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        self.close()
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, "".join(json.dumps(r) + "\n" for r in records).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        self._records = len(records)

    def _append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self.open()
        assert self._fd is not None
        try:
            os.write(self._fd, (json.dumps(record) + "\n").encode())
        except OSError as exc:  # a full runtime dir: say so, keep serving the agent
            log.warning("journal %s: %s", self.path, exc)
        self._records += 1
        if self._records > COMPACT_AFTER:
            self.open()

    def typing(self, messages: list[Message]) -> None:
        self._append({"op": "typing", "ids": [m.id for m in messages],
                      "messages": [{"id": m.id, "from": m.sender} for m in messages]})

    def submitted(self, ids: list[int]) -> None:
        self._append({"op": "submitted", "ids": ids})

    def answered(self, ids: list[int]) -> None:
        self._append({"op": "answered", "ids": ids})

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
