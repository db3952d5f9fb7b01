"""The gateway's benchmark cases (loopback unix socket only, bounded loops)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from csp_core.client import GatewayClient

from .figures import percentiles
from .ptyrun import REPO
from .registry import Context, Figures, case

QUIET_INTERVAL_S = 3.0
RECEIVE_TIMEOUT_S = 10.0


async def _batches(ctx: Context) -> int:
    async with ctx.gateway.client() as c:
        return int((await c.health())["store_batches"])


@case("post_latency", "sequential POST /v1/messages over the unix socket")
async def post_latency(ctx: Context) -> Figures:
    count = ctx.n(500)
    samples = []
    async with ctx.gateway.client() as c:
        await c.send(["@all"], "warm-up")
        for i in range(count):
            t0 = time.perf_counter()
            await c.send(["@all"], f"latency {i}")
            samples.append(time.perf_counter() - t0)
    return percentiles(samples)


async def _throughput(ctx: Context, senders: int, total: int) -> Figures:
    per_sender = max(1, total // senders)
    batches_before = await _batches(ctx)

    async def sender(c: GatewayClient, k: int) -> None:
        for i in range(per_sender):
            await c.send(["@all"], f"sender {k} message {i}")

    clients = [ctx.gateway.client() for _ in range(senders)]
    for c in clients:
        await c.__aenter__()
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(sender(c, k) for k, c in enumerate(clients)))
        wall = time.perf_counter() - t0
    finally:
        for c in clients:
            await c.close()
    messages = per_sender * senders
    batches = await _batches(ctx) - batches_before  # health reads commit nothing
    return {f"c{senders}_messages": messages,
            f"c{senders}_msgs_per_s": round(messages / wall, 1),
            f"c{senders}_batches_per_msg": round(batches / messages, 3)}


@case("throughput", "messages/s with N concurrent senders, and store batches per message")
async def throughput(ctx: Context) -> Figures:
    figures: Figures = {}
    for senders in (1, 8, 32):
        figures.update(await _throughput(ctx, senders, ctx.n(1200)))
    return figures


async def _fanout(ctx: Context, subscribers: int, count: int) -> Figures:
    """POST -> receipt at each agent; each agent is a process of its own (see subscribers)."""
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.subscribers", f"bench{subscribers}x{k}", cwd=REPO,
        env=ctx.gateway.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        for k in range(subscribers)]

    async def line(proc: asyncio.subprocess.Process) -> str:
        assert proc.stdout is not None
        return (await asyncio.wait_for(proc.stdout.readline(), RECEIVE_TIMEOUT_S)).decode()

    async def receipt(proc: asyncio.subprocess.Process, mid: int) -> float:
        while True:
            got, _, t = (await line(proc)).split()
            if int(got) == mid:
                return float(t)

    try:
        for proc in procs:
            if (first := await line(proc)).strip() != "ready":
                raise RuntimeError(f"a subscriber did not start: {first!r}")
        samples: list[float] = []
        async with ctx.gateway.client() as sender:
            for i in range(count):
                t0 = time.perf_counter()
                message = await sender.send(["@all"], f"fan-out {i}")
                times = await asyncio.gather(*(receipt(p, message.id) for p in procs))
                samples.extend(t - t0 for t in times)
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return percentiles(samples, prefix=f"s{subscribers}_")


@case("fanout", "post -> WebSocket receipt latency at 1 and 5 agent subscribers")
async def fanout(ctx: Context) -> Figures:
    figures: Figures = {}
    for subscribers in (1, 5):
        figures.update(await _fanout(ctx, subscribers, ctx.n(200)))
    return figures


def _cspctl() -> list[str]:
    exe = Path(sys.executable).parent / "cspctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "csp_cli"]


@case("cspctl_send", "`cspctl send` wall time per invocation (process start to exit)")
async def cspctl_send(ctx: Context) -> Figures:
    command = _cspctl()
    samples = []
    env = {**ctx.gateway.env}
    for i in range(ctx.n(12)):
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *command, "send", "@all", f"from cspctl {i}", env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        samples.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"cspctl send failed ({proc.returncode}): {err.decode()}")
    return {"command": os.path.basename(command[-1]), **percentiles(samples)}


@case("resources", "cspd CPU seconds and RSS: at start, after the load above, idle")
async def resources(ctx: Context) -> Figures:
    after = ctx.gateway.sample()
    await asyncio.sleep(QUIET_INTERVAL_S)  # a quiet interval: nothing talks to cspd
    idle = ctx.gateway.sample()
    return {
        "start_cpu_s": round(ctx.started.cpu_s, 3),
        "start_rss_kib": ctx.started.rss_kib,
        "after_load_cpu_s": round(after.cpu_s, 3),
        "after_load_rss_kib": after.rss_kib,
        "peak_rss_kib": idle.peak_rss_kib,
        "quiet_interval_s": QUIET_INTERVAL_S,
        "idle_cpu_s": round(idle.cpu_s - after.cpu_s, 3),
        "idle_cpu_percent": round(100 * (idle.cpu_s - after.cpu_s) / QUIET_INTERVAL_S, 2),
    }
