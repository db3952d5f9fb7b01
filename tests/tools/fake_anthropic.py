"""A local stand-in for the Anthropic Messages API, so Claude Code answers offline.

``python -m tests.tools.fake_anthropic --log FILE`` listens on 127.0.0.1 on a
free port, prints ``port <N>`` once it serves, and appends every request it
gets to FILE (one JSON line: method, path, query, a few headers, the body), so
a test can see exactly what the CLI sent.  Point Claude Code at it with
``ANTHROPIC_BASE_URL=http://127.0.0.1:<N>`` and any ``ANTHROPIC_API_KEY``.

``POST /v1/messages`` answers deterministically.  A request of the main
conversation (one that offers Claude its tools) is answered with
``long_reply(<the last user text>, <n>)`` (``tests.tools.long_reply``: 46 lines
of markdown), n counting those requests 1, 2, 3...; the log entry of such a
request carries ``"turn": n``, so a test can compute the reply it must see.
Claude Code's side requests (a one-token quota probe, title and topic guesses:
no tools) get a short one-line ``SIDE: <the last user text>`` and do not
advance the count.  With ``"stream": true`` a reply is streamed as server-sent
events in the order the real API uses (message_start, content_block_start,
ping, content_block_delta..., content_block_stop, message_delta, message_stop).
A prompt with a line ``RUN: <command>`` is answered with a Bash tool call, and
the tool's result with ``TOOL RESULT: <its first line>`` (both count as turns).
A line ``MCP: <tool> <JSON arguments>`` calls the offered MCP tool whose name ends
in ``__<tool>`` (``mcp__csp__send_message``) the same way.
A prompt containing ``take your time`` is held: its stream starts, then waits
before its first word until the test lets go (``POST /_test/release``, which
also lets every later such prompt through; ``POST /_test/hold`` holds them
again), or ``HOLD_MAX_SECONDS`` pass, so a test can watch the CLI busy for as
long as it needs, without racing a timer.
``count_tokens`` and ``GET /v1/models`` answer plausibly; anything else is
logged and answered with an empty JSON object, so a new CLI version that
calls something new shows up in the log instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.tools import standin_server
from tests.tools.long_reply import long_reply

LOG_KEY = web.AppKey("log", Path)
TURNS_KEY = web.AppKey("turns", list[int])
_ids = itertools.count(1)
SLOW_MARK = "take your time"
RUN_MARK = "RUN:"
MCP_MARK = "MCP:"
HOLD_MAX_SECONDS = 120.0
RELEASE_KEY = web.AppKey("release", asyncio.Event)
_HEADERS = ("user-agent", "anthropic-version", "anthropic-beta", "x-api-key", "authorization")


def user_texts(message: dict[str, Any]) -> list[str]:
    """The text blocks of one message, without Claude Code's <system-reminder> blocks."""
    content = message.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        blocks = content
    else:
        return []
    out = []
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "text":
            text = str(block.get("text", ""))
            if not text.lstrip().startswith("<system-reminder>"):
                out.append(text)
    return out


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            texts = user_texts(message)
            if texts:
                return texts[-1]
    return ""


def is_main(body: dict[str, Any]) -> bool:
    """A request of the user's conversation (it offers tools), not a side request."""
    return bool(body.get("tools"))


def reply_for(body: dict[str, Any], turn: int | None) -> str:
    """The answer to a prompt: the long reply for main turn ``turn``, else one short line."""
    text = last_user_text(body)
    if turn is None:
        return "SIDE: " + " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return long_reply(text, turn)


def _tool_results(body: dict[str, Any]) -> list[str]:
    """The results in the last user message, when it only answers a tool call.

    A rejected call's result comes together with the user's next prompt: then
    the prompt is what gets answered.
    """
    messages = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    content = messages[-1].get("content") if messages else None
    if not isinstance(content, list) or user_texts(messages[-1]):
        return []
    out = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            result = block.get("content")
            if isinstance(result, list):
                result = " ".join(str(b.get("text", "")) for b in result if isinstance(b, dict))
            out.append(str(result or ""))
    return out


def blocks_for(body: dict[str, Any], turn: int | None = None
               ) -> tuple[list[dict[str, Any]], str]:
    """The reply's content blocks and its stop reason (``turn``: see ``reply_for``).

    A prompt with ``RUN: <command>`` on a line gets a Bash tool call for it (so
    a test can see Claude Code ask for permission); the tool's result is then
    answered with ``TOOL RESULT: <first line>``; anything else with ``reply_for``.
    """
    results = _tool_results(body)
    if results:
        first = (results[0].strip().splitlines() or [""])[0]
        return [{"type": "text", "text": f"TOOL RESULT: {first}"}], "end_turn"
    for line in last_user_text(body).splitlines():
        if MCP_MARK in line:
            call = mcp_call(body, line.split(MCP_MARK, 1)[1].strip())
            if call is not None:
                return [call], "tool_use"
        if RUN_MARK in line:
            command = line.split(RUN_MARK, 1)[1].strip()
            return [{"type": "tool_use", "id": f"toolu_fake{next(_ids):06d}", "name": "Bash",
                     "input": {"command": command, "description": "Run the requested command"}}
                    ], "tool_use"
    return [{"type": "text", "text": reply_for(body, turn)}], "end_turn"


def mcp_call(body: dict[str, Any], spec: str) -> dict[str, Any] | None:
    """``MCP: <tool> <JSON arguments>`` as a call of the offered tool named
    ``mcp__<server>__<tool>`` (None when no such tool is offered: then the prompt is
    answered as text, and a test sees the tool was missing)."""
    name, _, raw = spec.partition(" ")
    offered = [str(t.get("name", "")) for t in body.get("tools") or [] if isinstance(t, dict)]
    full = next((n for n in offered if n.startswith("mcp__") and n.endswith(f"__{name}")),
                None)
    if full is None:
        return None
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except ValueError:
        arguments = {"text": raw}
    return {"type": "tool_use", "id": f"toolu_fake{next(_ids):06d}", "name": full,
            "input": arguments}


def _usage(body: dict[str, Any], output: str) -> dict[str, int]:
    size = len(json.dumps(body.get("messages", [])))
    return {"input_tokens": max(1, size // 4), "output_tokens": max(1, len(output) // 4),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def _message(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {"id": f"msg_fake{next(_ids):06d}", "type": "message", "role": "assistant",
            "model": body.get("model", "claude-fake"), "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": _usage(body, text)}


async def _read(request: web.Request) -> tuple[Any, dict[str, Any]]:
    """The request body as parsed JSON (or text), and as a dict (empty if not one)."""
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return body, (body if isinstance(body, dict) else {})


def _log(request: web.Request, body: Any, **extra: Any) -> None:
    """Append one request to the log (``extra``, e.g. the turn, before the rest)."""
    entry = {"t": time.time(), **extra, "method": request.method, "path": request.path,
             "query": request.query_string,
             "headers": {k: request.headers[k] for k in _HEADERS if k in request.headers},
             "body": body}
    with request.app[LOG_KEY].open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


async def _record(request: web.Request) -> dict[str, Any]:
    body, as_dict = await _read(request)
    _log(request, body)
    return as_dict


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def messages(request: web.Request) -> web.StreamResponse:
    raw, body = await _read(request)
    turn: int | None = None
    if is_main(body):
        turns = request.app[TURNS_KEY]
        turns[0] += 1
        turn = turns[0]
        _log(request, raw, turn=turn)
    else:
        _log(request, raw)
    blocks, stop = blocks_for(body, turn)
    message = _message(body, json.dumps(blocks))
    if not body.get("stream"):
        message.update(content=blocks, stop_reason=stop)
        return web.json_response(message)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(_sse("message_start", {"type": "message_start", "message": message}))
    await response.write(_sse("ping", {"type": "ping"}))
    if SLOW_MARK in last_user_text(body) and not _tool_results(body):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.app[RELEASE_KEY].wait(), HOLD_MAX_SECONDS)
    for index, block in enumerate(blocks):
        for event in _block_events(index, block):
            await response.write(_sse(event["type"], event))
    await response.write(_sse("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": message["usage"]["output_tokens"]}}))
    await response.write(_sse("message_stop", {"type": "message_stop"}))
    await response.write_eof()
    return response


def _block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """One content block as the real API streams it: start, deltas, stop."""
    if block["type"] == "tool_use":
        start = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
    else:
        start = {"type": "text", "text": ""}
        # a few words at a time, as the real API streams
        words = str(block["text"]).split(" ")
        deltas = [{"type": "text_delta",
                   "text": " ".join(words[i:i + 4]) + (" " if i + 4 < len(words) else "")}
                  for i in range(0, len(words), 4)]
    return [{"type": "content_block_start", "index": index, "content_block": start},
            *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
            {"type": "content_block_stop", "index": index}]


async def count_tokens(request: web.Request) -> web.Response:
    body = await _record(request)
    return web.json_response({"input_tokens": _usage(body, "")["input_tokens"]})


async def models(request: web.Request) -> web.Response:
    await _record(request)
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")]
    return web.json_response({"data": data, "has_more": False,
                              "first_id": data[0]["id"], "last_id": data[-1]["id"]})


async def release(request: web.Request) -> web.Response:
    """The test lets held replies go (``/_test/release``) or holds them again."""
    await _record(request)
    if request.path.endswith("/release"):
        request.app[RELEASE_KEY].set()
    else:
        request.app[RELEASE_KEY].clear()
    return web.json_response({"released": request.app[RELEASE_KEY].is_set()})


async def anything_else(request: web.Request) -> web.Response:
    await _record(request)
    return web.json_response({})


def make_app(log: Path) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[LOG_KEY] = log
    app[TURNS_KEY] = [0]  # main-conversation requests so far
    app[RELEASE_KEY] = asyncio.Event()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/_test/release", release)
    app.router.add_post("/_test/hold", release)
    app.router.add_route("*", "/{tail:.*}", anything_else)
    return app


def main(argv: list[str] | None = None) -> int:
    return standin_server.main(make_app, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
