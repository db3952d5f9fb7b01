"""The gateway's cases of issue 11, each with its target: a room of 50 and of 200
agents, one idle agent, durable messages per second, cold start, idle memory.

Agents here are real ``csp-sidecar`` processes around the stand-in CLI of
:mod:`tests.bench.standin` (see :mod:`tests.bench.fleet`); they are started by
the first case that needs them, grown by the next, and stopped when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import stages, wakechain
from .coldstart import cold_starts
from .figures import percentiles
from .fleet import IDLE_GAP_S, POLL_S, Fleet
from .gateway import BenchGateway
from .procstat import CpuWindow, children, oncpu_ns, sample, thread_cpu_s
from .profile import profiled
from .ptyrun import REPO
from .rawpost import RawPoster
from .registry import Context, Figures, Target, case

RATE_ROOM = "rate"
QUIET_S = 1.0
FLOOR_IMPORT = "import aiohttp.web"
# targets the cases' verdicts and their why_missed both use (issue 11)
ONE_AGENT_P99_MS = 2
FANOUT_50_P99_MS = 25
FANOUT_200_P99_MS = 100
STAGED_ROUNDS = 12  # messages in the staged pass that one_agent runs when it misses


async def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    await proc.wait()
    return time.perf_counter() - t0


async def _floor(ctx: Context, loop: str = "asyncio") -> Figures:
    """What the machine and the framework allow (see :mod:`tests.bench.floor_server`),
    measured once per run: a bare aiohttp server's idle RSS and requests/s, and the
    wall time of a Python that only imports aiohttp."""
    key = f"floor-{loop}"
    if key in ctx.shared:
        floor: Figures = ctx.shared[key]
        return floor
    path = ctx.gateway.root / f"floor-{loop}.sock"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.floor_server", str(path), cwd=REPO,
        env={**ctx.gateway.env, "CSP_EVENT_LOOP": loop}, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 30)
        await asyncio.sleep(QUIET_S)
        rss = sample(proc.pid).rss_kib
        rate = await _load(ctx.gateway, 8, ctx.n(20_000), socket_path=str(path))
        idle = await _idle_posts(ctx, path, proc.pid) if loop == "asyncio" else {}
    finally:
        proc.kill()
        await proc.wait()
    runs = 2 if ctx.quick else 5
    python = [await _wall([sys.executable, "-c", "pass"]) for _ in range(runs)]
    imports = [await _wall([sys.executable, "-c", FLOOR_IMPORT]) for _ in range(runs)]
    floor = ctx.shared[key] = {
        "rss_mib": round(rss / 1024, 1), "single_req_per_s": rate["msgs_per_s"],
        "python_ms": round(statistics.median(python) * 1e3, 1),
        "import_ms": round(statistics.median(imports) * 1e3, 1), **idle}
    return floor


async def _idle_posts(ctx: Context, path: Path, pid: int) -> Figures:
    """POSTs to the bare server, each after the idle gap of the one_agent case: how
    long it takes to answer one request from cold, and the CPU it spends on it."""
    answered: list[float] = []
    cpu_ns = 0
    async with RawPoster(path, ctx.gateway.token_path) as c:
        for i in range(ctx.n(40)):
            await asyncio.sleep(IDLE_GAP_S)
            before = oncpu_ns(pid)
            t0 = time.perf_counter()
            await c.send(["floor"], f"idle {i}")
            answered.append(time.perf_counter() - t0)
            cpu_ns += oncpu_ns(pid) - before
    return {**percentiles(answered, "idle_post_"),
            "idle_post_cpu_ms": round(cpu_ns / len(answered) / 1e6, 3)}


@case("gateway_idle", "cspd's RSS once it serves and is idle (fresh, before any load); "
                      "beside it a bare aiohttp server's",
      targets=(Target("idle_rss_mib", 40),))
async def gateway_idle(ctx: Context) -> Figures:
    floor = await _floor(ctx)
    figures: Figures = {"idle_rss_mib": round(ctx.started.rss_kib / 1024, 1),
                        "idle_rss_kib": ctx.started.rss_kib,
                        "start_cpu_s": round(ctx.started.cpu_s, 3),
                        "floor_bare_aiohttp_rss_mib": floor["rss_mib"]}
    if figures["idle_rss_mib"] > 40:
        figures["why_missed"] = (
            f"a bare aiohttp server on the same loop idles at {floor['rss_mib']} MiB here "
            f"(tests/bench/floor_server.py); cspd is {figures['idle_rss_mib']} MiB")
    return figures


@case("cold_start", "first request to a stopped, socket-activated gateway until its answer "
                    "(systemd-socket-activate passes the socket as systemd does)",
      targets=(Target("p50_ms", 300),))
async def cold_start(ctx: Context) -> Figures:
    floor = await _floor(ctx)
    samples = await cold_starts(2 if ctx.quick else 7)
    figures: Figures = {**percentiles(samples), "harness": "systemd-socket-activate",
                        "floor_python_ms": floor["python_ms"],
                        "floor_import_aiohttp_ms": floor["import_ms"]}
    if figures["p50_ms"] > 300:
        figures["why_missed"] = (
            f"a Python that only runs `{FLOOR_IMPORT}` takes {floor['import_ms']} ms here "
            f"(`python -c pass`: {floor['python_ms']} ms): that much of the "
            f"{figures['p50_ms']} ms is aiohttp's import, before csp runs")
    return figures


async def _load(gw: BenchGateway, senders: int, count: int, batch: int = 0,
                socket_path: str | None = None) -> Figures:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.loadgen", socket_path or str(gw.socket),
        str(gw.token_path), str(senders), str(count), str(batch), RATE_ROOM,
        cwd=REPO, env=gw.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.decode()[-2000:]}")
    figures: Figures = json.loads(out)
    return figures


async def _rates(ctx: Context, gw: BenchGateway, prefix: str = "") -> Figures:
    async with gw.client() as c:
        await c.request("POST", "/v1/rooms", json_body={"name": RATE_ROOM})
        batches0 = int((await c.health())["store_batches"])
        cpu0, loop0 = gw.sample().cpu_s, thread_cpu_s(gw.pid)
        single = await _load(gw, 8, ctx.n(10_000))
        batches1 = int((await c.health())["store_batches"])
        cpu1, loop1 = gw.sample().cpu_s, thread_cpu_s(gw.pid)
        batch = await _load(gw, 8, ctx.n(50_000), 100)
        cpu2 = gw.sample().cpu_s
    return {
        f"{prefix}single_messages": single["messages"],
        f"{prefix}single_msgs_per_s": single["msgs_per_s"],
        **{f"{prefix}single_{k}": v for k, v in single.items() if k.startswith("answer_")},
        f"{prefix}single_commits_per_msg": round((batches1 - batches0) / single["messages"], 3),
        f"{prefix}single_gateway_cpu_us_per_msg": round(
            (cpu1 - cpu0) / single["messages"] * 1e6, 1),
        # the event loop's thread: Python runs on one core at a time (the GIL)
        f"{prefix}single_gateway_loop_busy_percent": round(
            (loop1 - loop0) / single["wall_s"] * 100, 1),
        f"{prefix}batch_messages": batch["messages"],
        f"{prefix}batch_msgs_per_s": batch["msgs_per_s"],
        f"{prefix}batch_gateway_cpu_us_per_msg": round(
            (cpu2 - cpu1) / batch["messages"] * 1e6, 1)}


@case("durable_rate", "durable messages/s (each answered 201 once committed and fsynced), "
                      "8 concurrent senders: one message per POST, and 100 per POST "
                      "/v1/messages:batch; then the same on uvloop "
                      "(CSP_EVENT_LOOP=uvloop, not the default)",
      targets=(Target("single_msgs_per_s", 5000, "min"),
               Target("batch_msgs_per_s", 20000, "min")))
async def durable_rate(ctx: Context) -> Figures:
    figures = await _rates(ctx, ctx.gateway)
    # the same load once more, under a profiler (not timed: sampling slows it)
    async with profiled(ctx.gateway.pid, figures, "single_profile_"):
        await _load(ctx.gateway, 8, ctx.n(5_000))
    floor = await _floor(ctx)
    figures["floor_bare_aiohttp_req_per_s"] = floor["single_req_per_s"]
    on_uvloop = ""
    if importlib.util.find_spec("uvloop") is not None:
        uv = BenchGateway(ctx.gateway.config)
        uv.env["CSP_EVENT_LOOP"] = "uvloop"
        async with uv:
            figures.update(await _rates(ctx, uv, "uvloop_"))
        uv_floor = await _floor(ctx, "uvloop")
        figures["uvloop_floor_bare_aiohttp_req_per_s"] = uv_floor["single_req_per_s"]
        on_uvloop = f" ({uv_floor['single_req_per_s']} on uvloop)"
    if figures["single_msgs_per_s"] < 5000:
        per_msg = figures["single_gateway_cpu_us_per_msg"]
        spread = (f"csp's own code has {figures['single_profile_csp_percent']}% of the "
                  f"CPU samples, its largest function "
                  f"{figures.get('single_profile_top_csp_function', '-')}; aiohttp "
                  f"{figures.get('single_profile_aiohttp_percent', 0)}%, asyncio "
                  f"{figures.get('single_profile_asyncio_percent', 0)}% (single_profile_*)"
                  if "single_profile_csp_percent" in figures else
                  f"no profile: {figures.get('single_profile_error', '?')}")
        busy = figures["single_gateway_loop_busy_percent"]
        bound = ("one core's worth of Python (the GIL) is the limit" if busy >= 90 else
                 "the senders wait on the disk too: each answer waits for its fsync")
        figures["why_missed"] = (
            f"the gateway's event-loop thread was busy {busy}% of the run: {bound}. It "
            f"spends {per_msg} us of CPU per message on this path (all its threads; 200 "
            f"would be needed for 5,000/s on one core), spread thin: {spread}; "
            "a bare aiohttp server on asyncio's loop "
            f"answers {floor['single_req_per_s']} requests/s here to the same client"
            f"{on_uvloop}, with no store, no token, no routing (tests/bench/floor_server.py). "
            "Volume goes through POST /v1/messages:batch (batch_msgs_per_s)")
    return figures


def _fleet(ctx: Context) -> Fleet:
    fleet = ctx.shared.get("fleet")
    if fleet is None:
        fleet = ctx.shared["fleet"] = Fleet(ctx.gateway)
        ctx.cleanups.append(fleet.close)
    assert isinstance(fleet, Fleet)
    return fleet


async def _fanout(ctx: Context, size: int, rounds: int, target_ms: float
                  ) -> tuple[Figures, list[float]]:
    fleet = _fleet(ctx)
    started = await fleet.grow(size)
    names = fleet.names[:size]
    await asyncio.sleep(QUIET_S)  # the start-up has settled
    samples: list[float] = []
    pids = fleet.pids()[:size]
    async with _poster(ctx) as c:
        # The first message a sidecar types in costs it about three times what the
        # next ones do (Python runs that code for the first time in the process:
        # unspecialised, nothing cached), and the agents started just before this
        # case have had none: it is timed on its own, and the figures are for idle
        # agents that have been typed into before, as in a room that has been talking.
        cold = await fleet.deliver(names, lambda: c.send(
            ["@all"], f"fan-out {size} first message", room=fleet.room))
    window = CpuWindow({"sidecars": pids, "stand-ins": [c for p in pids for c in children(p)],
                        "gateway": [ctx.gateway.pid], "bench": [os.getpid()]})
    last: list[float] = []  # each round's last paste
    cpu0, sidecars0 = ctx.gateway.sample().cpu_s, _cpu(pids)
    t0 = time.monotonic()
    async with _poster(ctx) as c:
        for i in range(rounds):
            got = await fleet.deliver(names, functools.partial(
                c.send, ["@all"], f"fan-out {size} round {i}", room=fleet.room), window)
            samples += got
            last.append(max(got))
    busy, sidecars1 = ctx.gateway.sample(), _cpu(pids)
    cold_figures = percentiles(cold)
    figures: Figures = {"agents": size, "rounds": rounds, "fleet_grow_s": round(started, 1),
                        **percentiles(samples),
                        "first_message_p50_ms": cold_figures["p50_ms"],
                        "first_message_max_ms": cold_figures["max_ms"],
                        "gateway_rss_mib": round(busy.rss_kib / 1024, 1),
                        "gateway_cpu_ms_per_round": round((busy.cpu_s - cpu0) / rounds * 1e3, 1),
                        "gateway_cpu_percent": round(100 * (busy.cpu_s - cpu0)
                                                     / (time.monotonic() - t0), 1),
                        # where a round's CPU goes: each sidecar's share of it (typing the
                        # message in, its state reports, the ack), on 2 cores for all
                        "sidecar_cpu_ms_per_delivery": round(
                            (sidecars1 - sidecars0) / (rounds * size) * 1e3, 2)}
    figures.update(_window_figures(window, last, size))
    if figures["p99_ms"] > target_ms:
        figures["why_missed"] = _why_fanout_missed(figures, size, target_ms)
    return figures, samples


def _window_figures(window: CpuWindow, last: list[float], size: int) -> Figures:
    """Where a fan-out's CPU goes between the POST and the last paste: what the last
    paste of a round cannot come before on this machine's cores."""
    used = window.ms_per_window()
    total = sum(used.values())
    cores = os.cpu_count() or 1
    figures: Figures = {f"window_cpu_ms_{name}": round(ms, 1) for name, ms in used.items()}
    figures.update({
        "window_cpu_ms_total": round(total, 1),
        "window_sidecar_cpu_ms_each": round(used["sidecars"] / size, 3),
        "window_cpu_floor_ms": round(total / cores, 1),
        "last_paste_mean_ms": round(statistics.fmean(last) * 1e3, 1),
        "note": (
            "window_*: CPU used from the POST until the last paste of a round was seen "
            f"(read every {POLL_S * 1e3:g} ms, so up to that past it), per round, from the "
            "scheduler's own "
            f"account (/proc/PID/task/TID/schedstat: user and kernel); on {cores} cores the "
            "last paste cannot come before window_cpu_ms_total / cores "
            "(window_cpu_floor_ms), however the work is scheduled")})
    return figures


def _why_fanout_missed(figures: Figures, size: int, target_ms: float) -> str:
    cores = os.cpu_count() or 1
    others = (figures["window_cpu_ms_total"] - figures["window_cpu_ms_sidecars"]) / cores
    each_for_target = max(0.0, (target_ms - others) * cores / size)
    return (
        f"CPU-bound: between the POST and the last paste the fan-out's processes used "
        f"{figures['window_cpu_ms_total']} ms of CPU per round (the {size} sidecars "
        f"{figures['window_cpu_ms_sidecars']}, {figures['window_sidecar_cpu_ms_each']} ms "
        f"each from the frame's arrival to its paste, run cold; the stand-in CLIs "
        f"{figures['window_cpu_ms_stand-ins']}, the gateway {figures['window_cpu_ms_gateway']}, "
        f"the bench {figures['window_cpu_ms_bench']}), so on {cores} cores the last paste "
        f"cannot come before {figures['window_cpu_floor_ms']} ms (it came at "
        f"{figures['last_paste_mean_ms']} ms on average). That floor alone would stay under "
        f"{target_ms:g} ms with a sidecar's delivery under {each_for_target:.2f} ms of CPU "
        "on this machine")


def _poster(ctx: Context) -> RawPoster:
    """The POSTs these cases time (see :mod:`tests.bench.rawpost`)."""
    return RawPoster(ctx.gateway.socket, ctx.gateway.token_path)


def _cpu(pids: list[int]) -> float:
    """CPU seconds of these processes so far (those gone count nothing)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += sample(pid).cpu_s
    return total


@case("one_agent", "POST -> the first byte of the paste at one idle agent's PTY (a real "
                   "sidecar around the stand-in CLI)",
      targets=(Target("p99_ms", ONE_AGENT_P99_MS),))
async def one_agent(ctx: Context) -> Figures:
    fleet = _fleet(ctx)
    await fleet.grow(1)
    name = fleet.names[0]
    samples: list[float] = []
    answered: list[float] = []  # the same POSTs: sent -> their 201 (stored durably)
    sidecar = fleet.pids()[0]
    window = CpuWindow({"gateway": [ctx.gateway.pid], "sidecar": [sidecar],
                        "stand-in": children(sidecar)})

    async with _poster(ctx) as c:
        async def post(i: int) -> None:
            t0 = time.perf_counter()
            await c.send([f"@{name}"], f"one agent {i}")
            answered.append(time.perf_counter() - t0)

        # 60 rounds: each is half a second (the stand-in's submit comes 300 ms after
        # the paste, then its state report), and the whole run must stay under 5 min
        for i in range(ctx.n(60)):
            samples += await fleet.deliver([name], functools.partial(post, i), window)
    cpu = window.ms_per_window()
    figures: Figures = {**percentiles(samples),
                        "mean_ms": round(statistics.fmean(samples) * 1e3, 3),
                        # each process's CPU per message (user and kernel), from the POST
                        # until the paste was seen and the POST answered
                        **{f"cpu_ms_{group}": round(ms, 3) for group, ms in cpu.items()},
                        **percentiles(answered, "post_answered_"),
                        **await wakechain.measure(ctx.n(40), IDLE_GAP_S,
                                                  prefix="floor_three_wakeups_")}
    floor = await _floor(ctx)
    figures.update({f"floor_bare_aiohttp_{k}": v for k, v in floor.items()
                    if k.startswith("idle_post_") and not k.endswith(("_n", "_p90_ms"))})
    if figures["p99_ms"] > ONE_AGENT_P99_MS:
        figures.update(await _staged(ctx, ctx.n(STAGED_ROUNDS)))
        under_csp = (figures["floor_bare_aiohttp_idle_post_p99_ms"]
                     + figures["floor_three_wakeups_p99_ms"])
        figures["why_missed"] = (
            "three processes wake in turn after the 120 ms each round leaves them idle "
            "(gateway, sidecar, CLI); three bare Python processes passing a byte the same "
            f"way take {figures['floor_three_wakeups_p50_ms']} ms at p50 and "
            f"{figures['floor_three_wakeups_p99_ms']} ms at p99 here "
            "(floor_three_wakeups_*, tests/bench/wakechain.py); the rest is csp's own "
            "Python along the path, run cold, one process after the other: per message the "
            f"gateway used {figures['cpu_ms_gateway']} ms of CPU (the whole request: "
            "parsing, checks, the commit the paste follows, the publish, the fsync's "
            f"hand-off and the 201), the sidecar {figures['cpu_ms_sidecar']} ms (the frame "
            "to the paste: its checks, the render, the journal, the write), the stand-in "
            f"{figures['cpu_ms_stand-in']} ms (cpu_ms_*, from schedstat). The POST until "
            f"its 201 (which waits for the fsync too): {figures['post_answered_p50_ms']} ms "
            "at p50. Under csp: a bare aiohttp server (tests/bench/floor_server.py: one "
            "route, no token, no store, no routing), idle as long between POSTs, answers "
            f"one in {figures['floor_bare_aiohttp_idle_post_p50_ms']} ms at p50 and "
            f"{figures['floor_bare_aiohttp_idle_post_p99_ms']} ms at p99, with "
            f"{figures['floor_bare_aiohttp_idle_post_cpu_ms']} ms of CPU; with the wake-ups "
            f"that is {under_csp:.2f} ms at p99 before csp runs a line of its own (the "
            f"target: {ONE_AGENT_P99_MS} ms for all of it)"
            + (f". And {stages.summary(figures)}" if figures.get("path_rounds") else ""))
    return figures


async def _staged(ctx: Context, rounds: int) -> Figures:
    """The one-agent path in stages (:mod:`tests.bench.stages`): a gateway and a sidecar
    of their own, started with the stage hook, ``rounds`` messages."""
    with tempfile.TemporaryDirectory(prefix="csp-stages-") as out:
        gw = BenchGateway(ctx.gateway.config)
        gw.env = stages.hook_env(Path(out), gw.env)
        async with gw:
            fleet = Fleet(gw)
            try:
                await fleet.grow(1)
                name = fleet.names[0]
                async with RawPoster(gw.socket, gw.token_path) as c:
                    for i in range(rounds):
                        await fleet.deliver([name], functools.partial(
                            c.send, [f"@{name}"], f"staged {i}"))
            finally:
                await fleet.close()
        notes = stages.read_notes(Path(out))
    return stages.segments([(t0, min(got.values())) for t0, got in fleet.rounds], notes)


@case("fanout_50", "one @all to 50 idle agents: POST -> the paste's first byte at each "
                   "agent's PTY",
      targets=(Target("p99_ms", FANOUT_50_P99_MS),))
async def fanout_50(ctx: Context) -> Figures:
    figures, _ = await _fanout(ctx, 3 if ctx.quick else 50, 2 if ctx.quick else 20,
                               FANOUT_50_P99_MS)
    return figures


@case("fanout_200", "the same to 200 agents; the gateway's RSS and CPU with them",
      targets=(Target("p99_ms", FANOUT_200_P99_MS),))
async def fanout_200(ctx: Context) -> Figures:
    figures, _ = await _fanout(ctx, 4 if ctx.quick else 200, 2 if ctx.quick else 10,
                               FANOUT_200_P99_MS)
    fleet = _fleet(ctx)
    sidecars = [sample(pid) for pid in fleet.pids()]
    figures["sidecar_rss_mib_median"] = round(
        statistics.median(s.rss_kib for s in sidecars) / 1024, 1)
    return figures
