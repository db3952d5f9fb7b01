"""What every API stand-in (``fake_anthropic``, ``fake_openai``, ``fake_gemini``) shares.

Each builds its own aiohttp app from the file it logs requests to; this serves
it on 127.0.0.1, prints ``port N`` once it listens (what the tests wait for),
and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

AppFactory = Callable[[Path], web.Application]


async def serve(make_app: AppFactory, log: Path, port: int) -> None:
    runner = web.AppRunner(make_app(log), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"port {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(make_app: AppFactory, description: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--log", type=Path, required=True, help="append requests here (JSONL)")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(make_app, args.log, args.port))
    return 0
