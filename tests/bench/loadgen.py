"""``python -m tests.bench.loadgen SOCKET TOKEN_FILE SENDERS COUNT [BATCH [ROOM]]``: durable
messages per second, measured from a process of its own.

SENDERS connections each POST one request at a time (the next once the previous
one is answered 201, i.e. durable), COUNT messages in all: one message per
``POST /v1/messages``, or BATCH per ``POST /v1/messages:batch`` when BATCH > 0;
``@all`` in ROOM (the sender's home room when not given).
The client is a few lines of HTTP/1.1 over asyncio streams with the requests
built up front, so that it costs far less than the gateway it measures (an
aiohttp client in the benchmark's own process would measure itself, on the same
two cores).  Prints one JSON line: messages, requests, wall_s, msgs_per_s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from .figures import percentiles


def request(token: str, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def bodies(sender: int, requests: int, batch: int, room: str | None) -> list[bytes]:
    def one(i: int) -> dict[str, object]:
        message: dict[str, object] = {"to": ["@all"], "content": f"load {sender} {i}"}
        if room:
            message["room"] = room
        return message

    if batch <= 0:
        return [json.dumps(one(i)).encode() for i in range(requests)]
    return [json.dumps({"messages": [one(r * batch + k) for k in range(batch)]}).encode()
            for r in range(requests)]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def sender(socket_path: str, payloads: list[bytes], start: asyncio.Event,
                 answered: list[float]) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    await start.wait()
    try:
        for payload in payloads:
            t0 = time.perf_counter()
            writer.write(payload)
            status, body = await read_response(reader)
            answered.append(time.perf_counter() - t0)
            if status != 201:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    finally:
        writer.close()


async def main(socket_path: str, token_file: str, senders: int, count: int,
               batch: int, room: str | None) -> dict[str, Any]:
    token = Path(token_file).read_text().strip()
    per_message = max(batch, 1)
    requests = max(1, count // senders // per_message)
    path = "/v1/messages:batch" if batch > 0 else "/v1/messages"
    payloads = [[request(token, path, b) for b in bodies(k, requests, batch, room)]
                for k in range(senders)]
    start = asyncio.Event()
    answered: list[float] = []  # each request: sent -> its 201
    tasks = [asyncio.create_task(sender(socket_path, p, start, answered)) for p in payloads]
    await asyncio.sleep(0.2)  # every connection made before the clock starts
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    messages = senders * requests * per_message
    return {"messages": messages, "requests": senders * requests, "wall_s": round(wall, 3),
            "msgs_per_s": round(messages / wall, 1),
            # a stall of the gateway's loop (a full GC pass, a blocking call) shows here
            **percentiles(answered, "answer_")}


if __name__ == "__main__":
    args = sys.argv[1:]
    figures = asyncio.run(main(args[0], args[1], int(args[2]), int(args[3]),
                               int(args[4]) if len(args) > 4 else 0,
                               args[5] if len(args) > 5 else None))
    print(json.dumps(figures), flush=True)
