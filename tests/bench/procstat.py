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
