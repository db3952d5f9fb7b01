"""Processes as the kernel reports them: a process's ancestry from ``/proc``, the set of
processes that are one agent (:class:`AgentTree`), and the agent a process works for
(:func:`agent_of`).

The gateway decides who a request speaks as from these (``cspd.identity``, and
``cspd.hub`` keeps each agent's tree); a sidecar decides from them whether a D-Bus
caller is another agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .endpoint import AGENT_ENV

PROC = Path("/proc")
MAX_DEPTH = 64  # ancestors walked at most: process trees are shallow, loops impossible


@dataclass(frozen=True)
class Proc:
    """A process, told apart from a later one that reuses its pid by its start time."""

    pid: int
    start: int  # clock ticks after boot (field 22 of /proc/PID/stat)


@dataclass(frozen=True)
class ProcInfo:
    proc: Proc
    ppid: int
    session: int


def read_proc(pid: int, proc_root: Path = PROC) -> ProcInfo | None:
    """A process's parent, session and start time; None once it is gone."""
    try:
        raw = (proc_root / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return ProcInfo(Proc(pid, int(fields[19])), ppid=int(fields[1]),
                        session=int(fields[3]))
    except (IndexError, ValueError):
        return None


def ancestry(pid: int, proc_root: Path = PROC) -> list[ProcInfo]:
    """The process and its ancestors, nearest first (empty if it is gone)."""
    chain: list[ProcInfo] = []
    while pid > 0 and len(chain) < MAX_DEPTH:
        info = read_proc(pid, proc_root)
        if info is None:
            break
        chain.append(info)
        pid = info.ppid
    return chain


AGENT_VARIABLE = f"{AGENT_ENV}=".encode()  # what a sidecar puts in its agent's environment


def agent_of(pid: int, proc_root: Path = PROC) -> str | None:
    """The agent ``pid`` works for: the ``CSP_AGENT`` its sidecar gave the nearest
    process of its ancestry that has one (the variable can be unset below the agent
    CLI, but the CLI's own environment, as it was started, still names it); None for
    a process outside every agent, such as the person's shell.
    """
    for info in ancestry(pid, proc_root):
        try:
            environ = (proc_root / str(info.proc.pid) / "environ").read_bytes()
        except OSError:
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(AGENT_VARIABLE):
                return entry[len(AGENT_VARIABLE):].decode("utf-8", "replace") or None
    return None


@dataclass
class AgentTree:
    """The processes that are one agent, fixed when it registers.

    ``sidecar`` is the process that registered (over the unix socket): it and
    its descendants are the agent.  ``session`` is the agent CLI's session, once
    the sidecar names the CLI's pid and that pid is found under the sidecar:
    processes that left the tree but not the session are the agent too.
    """

    sidecar: Proc | None = None
    session: Proc | None = None
    _tried: int | None = field(default=None, repr=False)  # the last pid checked

    def holds(self, chain: Sequence[ProcInfo], proc_root: Path = PROC) -> bool:
        if not chain:
            return False
        if self.sidecar is not None and any(p.proc == self.sidecar for p in chain):
            return True
        return self.session is not None and chain[0].session == self.session.pid and (
            self._session_is_ours(proc_root))

    def _session_is_ours(self, proc_root: Path) -> bool:
        # the kernel never hands out a pid still used as a session id; the leader
        # itself may have exited, but if that pid runs again it must be the leader
        assert self.session is not None
        leader = read_proc(self.session.pid, proc_root)
        return leader is None or leader.proc == self.session

    def adopt_session(self, pid: int, proc_root: Path = PROC) -> bool:
        """Take the agent CLI's session as the agent's, if ``pid`` leads a session
        under the sidecar (a claim about any other process is ignored)."""
        if self.sidecar is None or pid == self._tried:
            return False
        self._tried = pid
        chain = ancestry(pid, proc_root)
        if not chain or chain[0].session != pid:
            return False
        if not any(p.proc == self.sidecar for p in chain[1:]):
            return False
        self.session = chain[0].proc
        return True
