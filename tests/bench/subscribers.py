"""``python -m tests.bench.subscribers NAME``: an agent on the gateway, in a process of its own.

The gateway knows an agent by its connection: the process that registered an
agent *is* that agent (whatever else it posts is the agent's, and it may
register no other).  So each of the fan-out benchmark's subscribers is a
process of its own, apart from the sender.  NAME registers over
``/v1/stream?agent=NAME``; once greeted it prints ``ready``, then one line
``ID NAME T`` per message received (``T`` is
``time.perf_counter()``, the system's monotonic clock, comparable across
processes), acknowledging each.  It runs until its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from csp_core.client import GatewayClient


async def listen(ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        frame = json.loads(msg.data)
        if frame.get("type") != "message":
            continue
        message = frame["message"]
        if message["kind"] != "system":
            print(f"{message['id']} {name} {time.perf_counter()}", flush=True)
        await ws.send_json({"type": "ack", "ids": [message["id"]]})


async def main(names: list[str]) -> None:
    """One name is what the gateway allows; more work only from separate processes."""
    clients = [GatewayClient(agent=n) for n in names]
    readers = []
    for client, name in zip(clients, names, strict=True):
        await client.__aenter__()
        ws = await client.stream(agent=name)
        hello = await ws.receive_json(timeout=10)
        if hello.get("type") != "hello":
            raise SystemExit(f"expected hello, got {hello}")
        readers.append(asyncio.create_task(listen(ws, name)))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in readers:
        task.cancel()
    for client in clients:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
