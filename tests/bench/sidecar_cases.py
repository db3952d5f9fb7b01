"""The sidecar's benchmark cases: keystroke echo, pass-through, injection, idle cost.

Each case runs a program on a PTY whose master the benchmark holds (it plays
the terminal), once directly and once inside ``csp-sidecar``, against the
shared benchmark gateway.  The figures say what the sidecar adds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from .figures import percentiles
from .ptyrun import TOOLS, PtyRun, bench_env, sidecar_argv
from .registry import Context, Figures, case

ECHO = [sys.executable, str(TOOLS / "echo_raw.py")]
FAKE_CLI = [sys.executable, str(TOOLS / "fake_cli.py")]
KEY_GAP_S = 0.002  # between keystrokes: faster than anyone types, slow enough to not batch
PASS_THROUGH_BYTES = 3_000_000  # of random bytes base64'd, and of coloured text
QUIET_INTERVAL_S = 3.0
WAIT_S = 30.0


def _echo_latencies(argv: list[str], env: dict[str, str], count: int) -> list[float]:
    """Type ``count`` single bytes, each after the previous one came back."""
    run = PtyRun(argv, env)
    try:
        run.wait_for(b"ready")
        samples = []
        for i in range(count):
            key = bytes([ord("a") + i % 26])
            time.sleep(KEY_GAP_S)
            t0 = time.perf_counter()
            run.write(key)
            got = b""
            while key not in got:
                got += run.read(5.0)
                if time.perf_counter() - t0 > 5.0:
                    raise RuntimeError(f"keystroke {i} not echoed within 5s")
            samples.append(time.perf_counter() - t0)
        run.write(b"\x04")
        run.read_to_end(10.0)
        return samples
    finally:
        run.close()


@case("sidecar_echo", "keystroke -> echo round trip through a raw-mode child, with and "
                      "without the sidecar")
async def sidecar_echo(ctx: Context) -> Figures:
    env = bench_env(ctx.gateway.env)
    count = ctx.n(300)
    direct = await asyncio.to_thread(_echo_latencies, ECHO, env, count)
    proxied = await asyncio.to_thread(
        _echo_latencies, sidecar_argv("bench-echo", "generic", *ECHO), env, count)
    figures: Figures = {**percentiles(direct, "direct_"), **percentiles(proxied, "sidecar_")}
    figures["added_p50_ms"] = round(figures["sidecar_p50_ms"] - figures["direct_p50_ms"], 3)
    figures["added_p99_ms"] = round(figures["sidecar_p99_ms"] - figures["direct_p99_ms"], 3)
    return figures


def _pass_through(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Read a large output to its end; MB/s from the first byte to the last, and
    (for the sidecar) its CPU seconds over that span and its peak RSS."""
    run = PtyRun(argv, env)
    try:
        first = b""
        while not first:
            first = run.read(WAIT_S)
        t0 = time.perf_counter()
        cpu0 = run.sample().cpu_s
        peak_kib = 0
        last = next_sample = t0
        try:
            while last - t0 < 10 * WAIT_S:
                if run.read(WAIT_S):
                    last = time.perf_counter()
                if last >= next_sample:  # now and then, not on every read
                    peak_kib = max(peak_kib, run.sample().peak_rss_kib)
                    next_sample = last + 0.2
        except EOFError:
            pass
        end = run.zombie_sample()
        size = run.read_bytes
        out = {"bytes": size, "mb_per_s": round(size / 1e6 / max(last - t0, 1e-9), 2),
               "wall_s": round(last - t0, 3)}
        if end is not None:
            out["cpu_s"] = round(end.cpu_s - cpu0, 3)
        out["peak_rss_kib"] = peak_kib
        return out
    finally:
        run.close()


@case("sidecar_passthrough", "MB/s of a large output with and without the sidecar; the "
                             "sidecar's CPU and peak RSS for it")
async def sidecar_passthrough(ctx: Context) -> Figures:
    env = bench_env(ctx.gateway.env)
    size = int(PASS_THROUGH_BYTES * ctx.scale)
    outputs = {
        "base64": ["sh", "-c", f"head -c {size} /dev/urandom | base64"],
        "ansi": [sys.executable, str(TOOLS / "ansi_flood.py"), str(size)],
    }
    figures: Figures = {}
    for kind, command in outputs.items():
        direct = await asyncio.to_thread(_pass_through, command, env)
        proxied = await asyncio.to_thread(
            _pass_through, sidecar_argv(f"bench-{kind}", "generic", *command), env)
        figures.update({
            f"{kind}_bytes": direct["bytes"],
            f"{kind}_direct_mb_per_s": direct["mb_per_s"],
            f"{kind}_sidecar_mb_per_s": proxied["mb_per_s"],
            f"{kind}_slowdown_x": round(direct["mb_per_s"] / max(proxied["mb_per_s"], 1e-9), 1),
            f"{kind}_sidecar_cpu_s": proxied.get("cpu_s", "n/a"),
            f"{kind}_sidecar_peak_rss_kib": proxied["peak_rss_kib"],
        })
    return figures


def _log_records(log: Path) -> list[dict[str, Any]]:
    """Everything the fake CLI logged: reads ("data"), prompts, turn ends."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _log_entries(log: Path) -> list[dict[str, Any]]:
    """The fake CLI's reads only."""
    return [r for r in _log_records(log) if "data" in r]


async def _agent_state(ctx: Context, name: str) -> str:
    async with ctx.gateway.client() as c:
        for row in await c.agents():
            if row.get("name") == name:
                return str(row.get("state"))
    return ""


async def _until(what: str, check: Any, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark: no {what} within {timeout}s")
        await asyncio.sleep(0.005)


async def _fake_agent(ctx: Context, name: str, log: Path, think: float = 0.05,
                      **extra_env: str) -> PtyRun:
    env = bench_env(ctx.gateway.env)
    env.update({"FAKECLI_LOG": str(log), "FAKECLI_THINK": str(think), **extra_env})
    run = PtyRun(sidecar_argv(name, "claude", *FAKE_CLI), env)
    run.wait_for(b"fake agent ready")
    return run


@case("sidecar_inject", "POST accepted -> bracketed paste read by the fake CLI, -> its "
                        "submit key, and submit key -> ready again (claude profile)")
async def sidecar_inject(ctx: Context) -> Figures:
    name = "bench-inject"
    log = ctx.gateway.root / "inject-fake-cli.log"
    run = await _fake_agent(ctx, name, log)
    stop = asyncio.Event()
    drainer = asyncio.create_task(run.drain(stop))
    to_paste: list[float] = []
    to_submit: list[float] = []
    to_ready: list[float] = []

    async def ready() -> bool:
        return await _agent_state(ctx, name) == "ready"

    try:
        await _until("ready agent", ready)
        async with ctx.gateway.client() as c:
            for i in range(ctx.n(8)):
                text = f"bench message {i}"
                await c.send([f"@{name}"], text)
                accepted = time.time()

                async def arrived(text: str = text) -> list[dict[str, Any]]:
                    entries = _log_entries(log)
                    at = [k for k, e in enumerate(entries) if text in e["data"]]
                    return entries[at[0]:] if at and len(entries) > at[0] + 1 else []

                entries = await _until("paste and submit key", arrived)
                if entries[1]["data"] != "\r":
                    raise RuntimeError(f"expected the submit key, got {entries[1]['data']!r}")
                to_paste.append(entries[0]["t"] - accepted)
                to_submit.append(entries[1]["t"] - accepted)
                # the fake CLI answers in ~50 ms; when may the next message go in?
                await _until("ready agent", ready)
                to_ready.append(time.time() - entries[1]["t"])
    finally:
        stop.set()
        await drainer
        run.close()
    return {**percentiles(to_paste, "paste_"), **percentiles(to_submit, "submit_"),
            **percentiles(to_ready, "ready_again_")}


@case("sidecar_idle", "the sidecar's CPU over a quiet interval (fake CLI at its prompt) "
                      "and its RSS")
async def sidecar_idle(ctx: Context) -> Figures:
    name = "bench-idle"
    run = await _fake_agent(ctx, name, ctx.gateway.root / "idle-fake-cli.log")
    stop = asyncio.Event()
    drainer = asyncio.create_task(run.drain(stop))
    try:
        async def ready() -> bool:
            return await _agent_state(ctx, name) == "ready"

        await _until("ready agent", ready)
        started = run.sample()
        await asyncio.sleep(QUIET_INTERVAL_S)  # a quiet interval: nothing happens
        idle = run.sample()
    finally:
        stop.set()
        await drainer
        run.close()
    return {
        "start_cpu_s": round(started.cpu_s, 3),
        "rss_kib": idle.rss_kib,
        "peak_rss_kib": idle.peak_rss_kib,
        "quiet_interval_s": QUIET_INTERVAL_S,
        "idle_cpu_s": round(idle.cpu_s - started.cpu_s, 3),
        "idle_cpu_percent": round(100 * (idle.cpu_s - started.cpu_s) / QUIET_INTERVAL_S, 2),
    }


COALESCE_MESSAGES = 20
BUSY_THINK_S = 3.0


@case("sidecar_coalesce", f"{COALESCE_MESSAGES} messages sent while the agent is busy: "
                          "prompts it takes for them (target 1), and its reported turn end "
                          "-> the coalesced paste (target <= 50 ms)")
async def sidecar_coalesce(ctx: Context) -> Figures:
    name = "bench-coalesce"
    log = ctx.gateway.root / "coalesce-fake-cli.log"
    run = await _fake_agent(ctx, name, log, think=BUSY_THINK_S)
    stop = asyncio.Event()
    drainer = asyncio.create_task(run.drain(stop))
    gaps: list[float] = []
    prompts_taken: list[int] = []
    try:
        async def ready() -> bool:
            return await _agent_state(ctx, name) == "ready"

        for rnd in range(max(1, ctx.n(3))):
            await _until("ready agent", ready)
            before = len(_log_records(log))
            run.write(f"busy work {rnd}\r".encode())  # the human gives it a long task
            tag = f"r{rnd}-"
            async with ctx.gateway.client() as c:
                for i in range(COALESCE_MESSAGES):
                    await c.send([f"@{name}"], f"{tag}{i:02d}")

            async def all_taken(tag: str = tag, before: int = before) -> list[dict[str, Any]]:
                new = _log_records(log)[before:]
                got = "".join(r.get("prompt", "") for r in new)
                return new if all(f"{tag}{i:02d}" in got for i in range(COALESCE_MESSAGES)) \
                    else []

            new = await _until("all messages taken", all_taken, timeout=WAIT_S + BUSY_THINK_S)
            ours = [r for r in new if tag in r.get("prompt", "")]
            prompts_taken.append(len(ours))
            end = next(r["t"] for r in new if "turn_end" in r)  # the human's task ended
            paste = next(r["t"] for r in new if tag in r.get("data", ""))
            gaps.append(paste - end)
    finally:
        stop.set()
        await drainer
        run.close()
    return {"messages_per_round": COALESCE_MESSAGES, "rounds": len(prompts_taken),
            "prompts_per_round_max": max(prompts_taken), "target_prompts": 1,
            **percentiles(gaps, "turn_end_to_paste_"), "target_turn_end_to_paste_ms": 50}


@case("sidecar_reply", "a hooked CLI's turn end -> its exact 46-line reply in history "
                       "(fake CLI with Claude Code's hooks)")
async def sidecar_reply(ctx: Context) -> Figures:
    name = "bench-reply"
    log = ctx.gateway.root / "reply-fake-cli.log"
    run = await _fake_agent(ctx, name, log, FAKECLI_REPLY="long")
    stop = asyncio.Event()
    drainer = asyncio.create_task(run.drain(stop))
    samples: list[float] = []
    try:
        async def ready() -> bool:
            return await _agent_state(ctx, name) == "ready"

        async with ctx.gateway.client() as c:
            newest = await c.history(limit=1)
            last = newest[-1].id if newest else 0
            for i in range(ctx.n(10)):
                await _until("ready agent", ready)
                await c.send([f"@{name}"], f"question {i}")

                async def replied(i: int = i) -> float:
                    for m in await c.history(since=last, limit=50):
                        if m.sender == name and f"question {i}" in m.content:
                            return time.time()
                    return 0.0

                seen = await _until("the reply in history", replied)
                end = [r["t"] for r in _log_records(log) if "turn_end" in r][-1]
                samples.append(seen - end)
    finally:
        stop.set()
        await drainer
        run.close()
    return {**percentiles(samples, "turn_end_to_history_"),
            "note": "history polled every 5 ms: figures are up to 5 ms late"}


STALL_LINES = 5_000


@case("sidecar_stall", f"the sidecar's longest event-loop stall while a CLI without hooks "
                       f"prints {STALL_LINES:,} lines (screen capture on; target <= 20 ms)")
async def sidecar_stall(ctx: Context) -> Figures:
    lag_file = ctx.gateway.root / "stall-lag.json"
    env = bench_env(ctx.gateway.env)
    env["CSP_SIDECAR_LAG_FILE"] = str(lag_file)
    lines = int(STALL_LINES * max(ctx.scale, 0.2))
    program = (f"import time\nfor i in range({lines}):\n"
               "    print(f'| row {i:05d} | ' + 'markdown table cell text ' * 4 + '|')\n"
               "    if i % 500 == 0: time.sleep(0.3)\n")  # quiet points: capture runs
    run = PtyRun(sidecar_argv("bench-stall", "generic", sys.executable, "-c", program), env)
    try:
        await asyncio.to_thread(run.read_to_end, WAIT_S * 4)
    finally:
        run.close()
    figures = json.loads(lag_file.read_text()) if lag_file.exists() else {"error": "no lag file"}
    return {f"loop_lag_{k}": v for k, v in figures.items()} | {"lines": lines,
                                                               "target_max_ms": 20}
