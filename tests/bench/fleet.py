"""A fleet of agents for the scale cases: real ``csp-sidecar`` processes, each around
the stand-in CLI of :mod:`tests.bench.standin`, all in one room of the bench gateway.

The benchmark holds each sidecar's PTY master (it plays the terminals, and drains
them) and one file to which every stand-in appends each read with its timestamp;
the benchmark reads it every ``POLL_S``, so no report wakes it (the harness would
otherwise take its share of the two cores while the last agents of a fan-out still
wait for theirs).  "POST to the first byte at an agent's PTY" is then the
stand-in's timestamp of the read that holds the start of the bracketed paste,
minus the moment just before the POST went out: one clock (``CLOCK_MONOTONIC``)
for all; when the benchmark reads the file does not change it.

The stand-ins use a profile of their own (``benchcli``: bracketed paste, a short
quiet time), so a round ends and the agents are idle again within half a second.
Its submit delay is the shortest of the profiles csp ships (generic and aider,
300 ms): what a sidecar does after the paste (the submit key, the CLI's answer,
the screen) then comes when it would with a real CLI, after the fan-out, and not
inside the window being measured.  (At 20 ms, as it was, 50 submits and their
screens competed with the last pastes for the two cores.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .gateway import BenchGateway
from .procstat import CpuWindow
from .ptyrun import PtyRun, bench_env, sidecar_argv

STANDIN = Path(__file__).with_name("standin.py")
PROFILE = "benchcli"
PROFILE_TOML = """\
description = "the benchmark's stand-in CLI (tests/bench/standin.py)"
commands = []
prompt_patterns = ['^\u276f(\\s|$)']
quiet_ms = 40
paste = "bracketed"
submit_key = "\\r"
submit_delay_ms = 300
capture = false
"""
WAVE = 25  # sidecars started at once; the next wave when these are online
WAVE_TIMEOUT_S = 90.0
ROUND_TIMEOUT_S = 30.0
# an idle agent has been quiet a while: this long (3x the profile's quiet time) after
# it reported itself ready, so the sidecar's own quiet check is long satisfied
IDLE_GAP_S = 0.12
POLL_S = 0.002  # how often the stand-ins' reports are read while a round runs


class Fleet:
    def __init__(self, gateway: BenchGateway, room: str = "fleet", prefix: str = "a") -> None:
        self.gateway = gateway
        self.room = room
        self.prefix = prefix
        self.names: list[str] = []
        self.runs: list[PtyRun] = []
        self.reports_path = gateway.root / "standin.reports"
        self._reports: int | None = None  # read end of the reports file
        self._partial = b""
        self._t0 = 0
        self._want: set[str] = set()
        self._got: dict[str, int] = {}
        self._submitted: set[str] = set()
        # each round delivered: (just before the POST, each agent's paste), CLOCK_MONOTONIC ns
        self.rounds: list[tuple[int, dict[str, int]]] = []
        profiles = gateway.root / "config" / "csp" / "profiles"
        profiles.mkdir(parents=True, exist_ok=True, mode=0o700)
        (profiles / f"{PROFILE}.toml").write_text(PROFILE_TOML)

    # -- the stand-ins' reports --------------------------------------------

    def _open_reports(self) -> None:
        if self._reports is not None:
            return
        self.reports_path.touch(mode=0o600)
        self._reports = os.open(self.reports_path, os.O_RDONLY | os.O_CLOEXEC)

    def _read_reports(self) -> None:
        """Take in the lines the stand-ins appended since the last look."""
        assert self._reports is not None
        while chunk := os.read(self._reports, 1 << 20):
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._on_report(line)

    async def _until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Read reports until ``condition`` holds; False if it does not in time."""
        deadline = time.monotonic() + timeout
        while True:
            self._read_reports()
            if condition():
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)

    def _on_report(self, raw: bytes) -> None:
        if raw:
            name, at, flags = raw.decode().split()
            t = int(at)
            if t < self._t0:
                return
            if "P" in flags and name in self._want and name not in self._got:
                self._got[name] = t
            if "S" in flags:
                self._submitted.add(name)

    # -- starting and stopping ---------------------------------------------

    async def grow(self, size: int) -> float:
        """Start agents until there are ``size``; seconds it took (all online)."""
        self._open_reports()
        t0 = time.monotonic()
        env = bench_env(self.gateway.env)
        while len(self.names) < size:
            wave = [f"{self.prefix}{k}" for k in range(len(self.names),
                                                       min(size, len(self.names) + WAVE))]
            for name in wave:
                argv = sidecar_argv(name, PROFILE, sys.executable, "-I", "-S", str(STANDIN),
                                    name, str(self.reports_path))
                argv[argv.index("--"):argv.index("--")] = ["--room", self.room]
                run = PtyRun(argv, env)
                asyncio.get_running_loop().add_reader(run.fd, _drain, run)
                self.runs.append(run)
                self.names.append(name)
            await self._until_online(wave)
        await self.until_ready()
        return time.monotonic() - t0

    async def _until_online(self, names: list[str]) -> None:
        deadline = time.monotonic() + WAVE_TIMEOUT_S
        async with self.gateway.client() as c:
            while not set(names) <= set((await c.health())["agents_online"]):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fleet: {names} not all online in {WAVE_TIMEOUT_S}s")
                await asyncio.sleep(0.05)

    async def until_ready(self, names: list[str] | None = None,
                          timeout: float = ROUND_TIMEOUT_S) -> None:
        """Until every agent (or those named) reports itself ready (idle)."""
        wanted = set(names if names is not None else self.names)
        deadline = time.monotonic() + timeout
        async with self.gateway.client() as c:
            while True:
                states = {a["name"]: a["state"] for a in await c.agents()}
                if all(states.get(n) == "ready" for n in wanted):
                    return
                if time.monotonic() > deadline:
                    late = sorted(n for n in wanted if states.get(n) != "ready")
                    raise RuntimeError(f"fleet: not ready within {timeout}s: {late[:5]}")
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for run in self.runs:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(run.fd)
        await asyncio.gather(*(asyncio.to_thread(run.close) for run in self.runs))
        self.runs.clear()
        self.names.clear()
        if self._reports is not None:
            os.close(self._reports)
            self._reports = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.reports_path)

    def pids(self) -> list[int]:
        return [run.pid for run in self.runs]

    # -- one message, timed ------------------------------------------------

    async def deliver(self, names: list[str], post: Callable[[], Awaitable[Any]],
                      cpu: CpuWindow | None = None) -> list[float]:
        """Seconds from just before ``post()`` to the paste's first byte at each of
        ``names``; then wait until they have taken it and are idle again.  ``cpu``, if
        given, counts the CPU its processes use from just before the POST until the
        last paste is seen (up to ``POLL_S`` after it)."""
        await asyncio.sleep(IDLE_GAP_S)
        self._read_reports()  # what came before this round is not part of it
        self._want, self._got, self._submitted = set(names), {}, set()
        if cpu is not None:
            cpu.start()
        self._t0 = time.monotonic_ns()
        await post()
        if not await self._until(lambda: len(self._got) == len(self._want), ROUND_TIMEOUT_S):
            missing = sorted(set(names) - set(self._got))
            raise RuntimeError(f"fleet: no paste at {len(missing)} agent(s) within "
                               f"{ROUND_TIMEOUT_S}s: {missing[:5]}")
        if cpu is not None:
            cpu.stop()
        samples = [(t - self._t0) / 1e9 for t in self._got.values()]
        self.rounds.append((self._t0, dict(self._got)))
        await self._until(lambda: set(names) <= self._submitted, ROUND_TIMEOUT_S)
        await self.until_ready(names)
        return samples


def _drain(run: PtyRun) -> None:
    """Read and drop what a sidecar shows on its terminal (as a terminal would)."""
    try:
        data = os.read(run.fd, 65536)
    except OSError:  # EIO: the sidecar is gone
        data = b""
    if not data:
        asyncio.get_running_loop().remove_reader(run.fd)
