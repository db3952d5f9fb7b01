"""Stage timestamps along one message's path, for ``make bench`` (one_agent).

A latency of two milliseconds is too short for a sampling profiler (py-spy at
200 Hz sees nothing of it), and most of it is spent waking processes and running
cold code, which no call count shows.  So a staged pass runs the gateway and the
sidecar with this module loaded (from :file:`sitecustomize.py`): as each module
named in :data:`STAGES` is imported, the functions named there are wrapped to note
``(stage, CLOCK_MONOTONIC ns)`` on entry or on return, kept in memory and written
out (one file per process, in the directory ``CSP_BENCH_STAGES`` names) only
after the paste or the answer, off the path being timed.  The code measured is
csp's own, unchanged; each note costs well under a microsecond.

Standard library only, and nothing is imported unless the variable is set.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import os
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

# (stage, module, attribute path, "enter" or "exit"); a stage flagged with a
# trailing "!" writes the process's notes out once it is noted
STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("gw_bytes", "cspd.edge", "GuardedHandler.data_received", "enter"),
    ("gw_middleware", "cspd.app", "errors_middleware", "enter"),
    ("gw_handler", "cspd.api", "post_message", "enter"),
    ("gw_store", "cspd.store", "Store.append_many", "enter"),
    ("gw_publish", "cspd.hub", "Hub.publish", "enter"),
    ("gw_published", "cspd.hub", "Hub.publish", "exit"),
    ("gw_answered!", "cspd.api", "post_message", "exit"),
    ("sc_bytes", "csp_core.streamclient", "WebSocket._take", "enter"),
    ("sc_queued", "csp_sidecar.delivery", "Delivery.receive", "enter"),
    ("sc_facts", "csp_sidecar.sidecar", "Sidecar.facts", "enter"),
    ("sc_decided", "csp_sidecar.sidecar", "Sidecar.facts", "exit"),
    ("sc_journal", "csp_sidecar.journal", "Journal.typing", "enter"),
    ("sc_write", "csp_sidecar.sidecar", "Sidecar._write", "enter"),
    ("sc_written!", "csp_sidecar.sidecar", "Sidecar._write", "exit"),
)

_notes: list[tuple[str, int]] = []
_out = ""


def _flush() -> None:
    global _notes
    notes, _notes = _notes, []
    fd = os.open(os.path.join(_out, str(os.getpid())),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, "".join(f"{stage} {ns}\n" for stage, ns in notes).encode())
    finally:
        os.close(fd)


def _note(stage: str) -> None:
    _notes.append((stage.rstrip("!"), time.monotonic_ns()))
    if stage.endswith("!"):
        _flush()


def _wrap(func: Callable[..., Any], stage: str, where: str) -> Callable[..., Any]:
    if where == "enter" and inspect.iscoroutinefunction(func):
        @functools.wraps(func)  # a coroutine still (aiohttp asks of a handler)
        async def began(*args: Any, **kwargs: Any) -> Any:
            _note(stage)
            return await func(*args, **kwargs)
        return began
    if where == "enter":
        @functools.wraps(func)
        def entered(*args: Any, **kwargs: Any) -> Any:
            _note(stage)
            return func(*args, **kwargs)
        return entered
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            finally:
                _note(stage)
        return awaited

    @functools.wraps(func)
    def returned(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            _note(stage)
    return returned


def _patch(module: ModuleType, stages: Sequence[tuple[str, str, str]]) -> None:
    # exits first: an "enter" wrapper then calls the "exit" one, so both see the call
    for stage, path, where in sorted(stages, key=lambda s: s[2] != "exit"):
        *owner_path, name = path.split(".")
        owner: Any = module
        for part in owner_path:
            owner = getattr(owner, part)
        setattr(owner, name, _wrap(getattr(owner, name), stage, where))


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader,
                 stages: Sequence[tuple[str, str, str]]) -> None:
        self.inner = inner
        self.stages = stages

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _patch(module, self.stages)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        return getattr(self.inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.wanted: dict[str, list[tuple[str, str, str]]] = {}
        for stage, module, path, where in STAGES:
            self.wanted.setdefault(module, []).append((stage, path, where))

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        stages = self.wanted.pop(name, None)
        if stages is None:
            return None
        spec = None
        for finder in sys.meta_path:  # the others (an editable install brings its own)
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, stages)
        return spec


def install(out: str) -> None:
    global _out
    _out = out
    sys.meta_path.insert(0, _Finder())
