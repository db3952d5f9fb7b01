"""``python -m tests.bench.floor_server SOCKET``: the floor under the gateway's figures.

A bare aiohttp server on the event loop ``cspd`` would run on (``CSP_EVENT_LOOP``),
on a unix socket, with one route: ``POST /v1/messages`` reads the JSON body and
answers 201 with a small JSON object.  No token, no store, no routing.  What it
does per second (with :mod:`tests.bench.loadgen`), its RSS when idle and how
long its imports take are what the machine and the framework allow before csp
does anything: the scale cases report them beside their own figures, so a
missed target says whether the time went to csp or under it.  Prints ``ready``
once it serves; runs until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web


async def post(request: web.Request) -> web.Response:
    data = await request.json()
    return web.json_response({"id": 1, "content": data.get("content")}, status=201)


async def serve(path: str) -> None:
    app = web.Application()
    app.router.add_post("/v1/messages", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(path: str) -> None:
    if os.environ.get("CSP_EVENT_LOOP") != "uvloop":
        asyncio.run(serve(path))
        return
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(path))


if __name__ == "__main__":
    main(sys.argv[1])
