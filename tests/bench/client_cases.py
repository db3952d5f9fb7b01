"""The client side's benchmark cases: ``cspctl send``, a sidecar's idle memory, a turn's end
to the next prompt, and twenty messages to one agent.

The agents here are real ``csp-sidecar`` processes (claude profile) around
``hooked_standin.py``, a small CLI that reports its turns the way Claude Code's
hooks do, but from its own process: its timestamps say when "the hook said so",
and what follows is csp's part alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .figures import percentiles
from .ptyrun import REPO, PtyRun, bench_env, sidecar_argv
from .registry import Context, Figures, Target, case
from .sidecar_cases import _agent_state, _until

HOOKED = [sys.executable, str(Path(__file__).with_name("hooked_standin.py"))]
CAO_TWENTY_S = 16.5  # CAO 2.5.4, this machine, the same 20 messages (issue 11)
QUIET_S = 3.0


# -- cspctl send, installed the way `make install` installs it -------------------------


def _install_dir() -> Path:
    """A `make install` of this tree, kept between runs while the sources are the same."""
    digest = hashlib.sha256()
    for top in ("cspd", "sidecar", "cli", "units"):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    for name in ("pyproject.toml", "Makefile"):
        digest.update((REPO / name).read_bytes())
    name = f"csp-bench-install-{os.getuid()}-{digest.hexdigest()[:12]}"
    return Path(tempfile.gettempdir()) / name


def _installed() -> Path:
    prefix = _install_dir()
    cspctl = prefix / "lib" / "csp" / "venv" / "bin" / "cspctl"
    if cspctl.exists():
        return prefix
    for old in prefix.parent.glob(f"csp-bench-install-{os.getuid()}-*"):
        shutil.rmtree(old, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run(["make", "-s", "install", f"PREFIX={prefix}", f"PYTHON={base}"],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return prefix


def _user_env(env: dict[str, str]) -> dict[str, str]:
    """A user's environment: bytecode as the install left it (not the run's cache)."""
    return {k: v for k, v in env.items()
            if k not in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")}


def _times(commands: list[list[str]], env: dict[str, str], rounds: int) -> list[list[float]]:
    """Wall seconds of each command, run in turn ``rounds`` times (interleaved: a busy
    spell of the machine hits every command alike)."""
    out: list[list[float]] = [[] for _ in commands]
    for _ in range(rounds):
        for i, command in enumerate(commands):
            t0 = time.perf_counter()
            r = subprocess.run(command, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            out[i].append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"{command} failed: {r.stderr.decode()[-500:]}")
    return out


def _instructions(command: list[str], env: dict[str, str]) -> int | None:
    """User-space instructions of one run (valgrind): the figure machine load cannot move."""
    if shutil.which("valgrind") is None:
        return None
    r = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                        "--cachegrind-out-file=/dev/null", *command], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", r.stderr)
    return int(found.group(1).replace(",", "")) if found else None


def _median_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[len(ordered) // 2] * 1000, 2)


@case("cspctl_send_wall", "`cspctl send` wall time, gateway running, installed as "
                          "`make install` installs it (a venv in a scratch prefix)",
      targets=(Target("p50_ms", 40),))
async def cspctl_send_wall(ctx: Context) -> Figures:
    env = _user_env(ctx.gateway.env)
    if ctx.quick:  # a smoke run does not build a venv: the dev tree's `python -m csp_cli`
        python, cspctl, layout = sys.executable, [sys.executable, "-m", "csp_cli"], "dev tree"
    else:
        prefix = await asyncio.to_thread(_installed)
        python = str(prefix / "lib" / "csp" / "venv" / "bin" / "python")
        cspctl, layout = [str(prefix / "bin" / "cspctl")], f"make install PREFIX={prefix}"
    send = [*cspctl, "send", "@all", "from the client benchmark"]
    bare = [python, "-c", "pass"]
    rounds = max(3, ctx.n(40))
    send_s, bare_s = await asyncio.to_thread(_times, [send, bare], env, rounds)
    figures: Figures = {"layout": layout, **percentiles(send_s),
                        "python_bare_p50_ms": _median_ms(bare_s)}
    if not ctx.quick:
        send_i = await asyncio.to_thread(_instructions, send, env)
        bare_i = await asyncio.to_thread(_instructions, bare, env)
        if send_i and bare_i:
            figures["instructions_send_m"] = round(send_i / 1e6, 1)
            figures["instructions_python_bare_m"] = round(bare_i / 1e6, 1)
    if figures["p50_ms"] > 40:
        figures["why_missed"] = (
            f"a bare `python -c pass` of the same venv took {figures['python_bare_p50_ms']} "
            "ms at p50 in the same runs (about 9 ms on a quiet machine): the machine is "
            "busy; the instruction counts are the figures load cannot move")
    return figures


# -- a sidecar around the hooked stand-in -----------------------------------------------


class Agent:
    """A real sidecar (claude profile) around the hooked stand-in, its log read back."""

    def __init__(self, ctx: Context, name: str, think: float) -> None:
        self.ctx, self.name = ctx, name
        self.log = ctx.gateway.root / f"{name}-standin.log"
        env = bench_env(ctx.gateway.env)
        env.update({"STANDIN_LOG": str(self.log), "STANDIN_THINK": str(think)})
        self.run = PtyRun(sidecar_argv(name, "claude", *HOOKED), env)
        self.stop = asyncio.Event()
        self.drainer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Agent:
        try:
            await asyncio.to_thread(self.run.wait_for, b"stand-in ready")
            self.drainer = asyncio.create_task(self.run.drain(self.stop))
            await self.ready()
        except BaseException:
            self.run.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self.drainer is not None:
            await self.drainer
        self.run.close()

    async def ready(self) -> None:
        async def check() -> bool:
            return await _agent_state(self.ctx, self.name) == "ready"
        await _until(f"{self.name} ready", check)

    async def settled(self) -> None:
        """Ready, and the stand-in's own log agrees that every prompt it took has ended.

        The gateway hears an agent's state up to 100 ms late (the sidecar coalesces its
        reports): right after a prompt went in it may still say "ready", and a round
        started then would type its task into a turn still running."""
        async def check() -> bool:
            records = self.records()
            prompts = sum(1 for r in records if "prompt" in r)
            ends = sum(1 for r in records if "turn_end" in r)
            return prompts == ends and await _agent_state(self.ctx, self.name) == "ready"
        await _until(f"{self.name} settled", check)

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    async def until_prompted(self, tags: list[str], after: int) -> list[dict[str, Any]]:
        """The log from record ``after`` on, once its prompts hold every tag."""
        async def check() -> list[dict[str, Any]]:
            new = self.records()[after:]
            prompts = "".join(r.get("prompt", "") for r in new)
            return new if all(t in prompts for t in tags) else []
        result: list[dict[str, Any]] = await _until("every message prompted", check, 60.0)
        return result


def _memory(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("status", "smaps_rollup"):
        with open(f"/proc/{pid}/{name}") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "Pss"):
                    out[key] = int(value.split()[0])
    return out


def _mapped_extensions(pid: int) -> list[str]:
    """The compiled modules the process has mapped that matter to its size."""
    with open(f"/proc/{pid}/maps") as fh:
        files = {line.split()[-1] for line in fh if ".so" in line}
    wanted = ("aiohttp", "dbus_fast", "multidict", "yarl", "_ssl", "propcache", "frozenlist")
    return sorted({Path(f).name.split(".")[0] for f in files if any(w in f for w in wanted)})


def _import_costs() -> Figures:
    """What the big imports cost a fresh Python, in MiB (VmRSS after them)."""
    base = _import_rss_kib("import asyncio")
    out: Figures = {"python_asyncio_rss_mib": round(base / 1024, 1)}
    for name in ("pyte", "click", "aiohttp"):
        out[f"{name}_adds_mib"] = round((_import_rss_kib(f"import asyncio, {name}") - base)
                                        / 1024, 1)
    return out


def _import_rss_kib(code: str) -> int:
    """VmRSS of a fresh Python once it has run ``code`` (what an import costs)."""
    probe = (f"{code}\nfor line in open('/proc/self/status'):\n"
             "    if line.startswith('VmRSS:'): print(line.split()[1])")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       check=True)
    return int(r.stdout.strip())


@case("sidecar_idle_rss", "a sidecar's memory at rest (claude profile, hooked stand-in at "
                          "its prompt, no session bus)",
      targets=(Target("rss_mib", 25),))
async def sidecar_idle_rss(ctx: Context) -> Figures:
    async with Agent(ctx, "bench-rss", 0.05) as agent:
        await asyncio.sleep(QUIET_S)  # at rest: nothing happens
        pid = agent.run.pid
        mem = _memory(pid)
        loaded = _mapped_extensions(pid)
    figures: Figures = {"rss_mib": round(mem["VmRSS"] / 1024, 1),
                        "pss_mib": round(mem["Pss"] / 1024, 1),
                        "anon_mib": round(mem["RssAnon"] / 1024, 1),
                        "file_mib": round(mem["RssFile"] / 1024, 1),
                        "compiled_modules_mapped": " ".join(loaded) or "-"}
    if figures["rss_mib"] > 25:
        figures.update(await asyncio.to_thread(_import_costs))
        figures["why_missed"] = (
            "at rest a sidecar is mostly the code it imported: on this Python a bare "
            f"`import asyncio` is {figures['python_asyncio_rss_mib']} MiB; pyte (the "
            f"screen model) adds {figures['pyte_adds_mib']} MiB (its wcwidth imports "
            f"secrets, hence hashlib and OpenSSL), click (the command line) "
            f"{figures['click_adds_mib']} MiB, aiohttp would add "
            f"{figures['aiohttp_adds_mib']} MiB ("
            + ("loaded" if "_http_parser" in loaded else "not loaded any more") + ")")
    return figures


# -- a busy agent's turn ends: how soon the next prompt goes in -------------------------

BUSY_THINK_S = 1.0
QUEUED = 5


@case("turn_end_to_typing", "a busy agent's turn ends (its hook says so) -> the first byte "
                            f"of the next prompt ({QUEUED} messages queued meanwhile) at "
                            "the CLI",
      targets=(Target("p50_ms", 50),))
async def turn_end_to_typing(ctx: Context) -> Figures:
    gaps: list[float] = []
    prompts: list[int] = []
    async with Agent(ctx, "bench-turns", BUSY_THINK_S) as agent, \
            ctx.gateway.client() as c:
        for rnd in range(max(2, ctx.n(10))):
            await agent.settled()
            before = len(agent.records())
            agent.run.write(f"busy work {rnd}\r".encode())  # its human gives it a task
            tags = [f"t{rnd}-{i}." for i in range(QUEUED)]
            for tag in tags:
                await c.send([f"@{agent.name}"], f"{tag} queued while busy")
            new = await agent.until_prompted(tags, before)
            end = next(r["t"] for r in new if "turn_end" in r)
            typed = next(r["t"] for r in new if tags[0] in r.get("data", ""))
            gaps.append(typed - end)
            prompts.append(sum(1 for r in new if tags[0] in r.get("prompt", "")
                               or tags[-1] in r.get("prompt", "")))
    return {**percentiles(gaps), "queued_per_round": QUEUED,
            "prompts_per_round_max": max(prompts)}


# -- twenty messages to one agent, all submitted -----------------------------------------

TWENTY = 20


@case("twenty_to_one", f"{TWENTY} messages to one idle agent until the CLI has taken every "
                       f"one (hooked stand-in, claude profile); CAO 2.5.4: {CAO_TWENTY_S} s",
      targets=(Target("wall_s", round(CAO_TWENTY_S / 10, 2)),))
async def twenty_to_one(ctx: Context) -> Figures:
    walls: list[float] = []
    prompts: list[int] = []
    async with Agent(ctx, "bench-twenty", 0.05) as agent, ctx.gateway.client() as c:
        for rnd in range(max(1, ctx.n(3))):
            await agent.settled()
            before = len(agent.records())
            tags = [f"w{rnd}-{i:02d}." for i in range(TWENTY)]
            t0 = time.monotonic()
            for tag in tags:
                await c.send([f"@{agent.name}"], f"{tag} one of twenty")
            new = await agent.until_prompted(tags, before)
            done = max(r["t"] for r in new if "prompt" in r)
            walls.append(done - t0)
            prompts.append(sum(1 for r in new if "prompt" in r))
    wall = sorted(walls)[len(walls) // 2]
    return {"wall_s": round(wall, 3), "rounds": len(walls), "wall_max_s": round(max(walls), 3),
            "prompts_max": max(prompts), "cao_s": CAO_TWENTY_S,
            "ahead_of_cao_x": round(CAO_TWENTY_S / wall, 1),
            "note": "the claude profile waits 600 ms between a paste and its submit key "
                    "(Claude Code swallows an Enter that comes sooner): twice here"}
