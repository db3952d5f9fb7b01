"""CPU time and memory of a process, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float  # user + system CPU seconds so far
    rss_kib: int  # VmRSS
    peak_rss_kib: int  # VmHWM


def thread_cpu_s(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of one thread (the main thread when ``tid`` is None)."""
    with open(f"/proc/{pid}/task/{tid or pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat") as fh:
        # the command name may hold spaces and parentheses: fields start after the last ')'
        fields = fh.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    mem: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                mem[key] = int(value.split()[0])
    return ProcSample((utime + stime) / CLK_TCK, mem.get("VmRSS", 0), mem.get("VmHWM", 0))


def oncpu_ns(pid: int) -> int:
    """Nanoseconds all of ``pid``'s threads have run on a CPU, user and kernel alike,
    from the scheduler's own account (``/proc/PID/task/TID/schedstat``): exact to the
    nanosecond, where stat's clock ticks are 10 ms.  0 for a process that is gone."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of all its threads)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return out


class CpuWindow:
    """The CPU time groups of processes use between :meth:`start` and :meth:`stop`,
    summed over the windows measured: where a fan-out's CPU goes while it runs."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.windows = 0
        self.used_ns = dict.fromkeys(groups, 0)
        self._at_start: dict[str, int] = {}

    def _now(self, names: list[str]) -> dict[str, int]:
        return {name: sum(oncpu_ns(pid) for pid in self.groups[name]) for name in names}

    def start(self) -> None:
        # in this order, and the reverse at stop: a group holding the caller itself
        # (the bench), named last, does not count the reading of the others
        self._at_start = self._now(list(self.groups))

    def stop(self) -> None:
        now = self._now(list(reversed(self.groups)))
        for name, ns in now.items():
            self.used_ns[name] += ns - self._at_start[name]
        self.windows += 1

    def ms_per_window(self) -> dict[str, float]:
        return {name: ns / 1e6 / max(1, self.windows) for name, ns in self.used_ns.items()}
