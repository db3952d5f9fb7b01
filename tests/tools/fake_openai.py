"""A local stand-in for the OpenAI Responses API, so the real Codex CLI answers offline.

``python -m tests.tools.fake_openai --log FILE`` listens on 127.0.0.1 on a free
port, prints ``port <N>`` once it serves, and appends every request it gets to
FILE as one JSON line: ``kind`` (``main``, ``side``, ``models``, ``unknown``, or
``dropped`` when Codex hung up mid-stream), ``source`` (Codex's
``thread_source``: ``user``, ``thread_title``...), ``turn`` (main requests),
``thread_id``/``turn_id`` (from Codex's turn metadata), then method, path,
query, headers and body, so a test can see exactly what Codex sent.  Point
Codex at it with ``tests.tools.codex_setup.codex_home`` (a model provider with
``base_url = "http://127.0.0.1:<N>/v1"`` and ``wire_api = "responses"``).

``POST /v1/responses`` streams server-sent events in the order the real API
uses (response.created, response.in_progress, response.output_item.added,
response.content_part.added, response.output_text.delta..., response.output_text.done,
response.content_part.done, response.output_item.done, response.completed):
Codex renders the deltas and ends the turn only on ``response.completed``.
A request of the user's conversation is answered with
``long_reply(<last user text>, <n>)``, n counting those requests 1, 2, 3...
(one per Codex turn, or two when the user steers a busy turn with Enter).
Codex's side requests (the thread title it generates after the first prompt,
in a thread of its own) get a short answer that fits their JSON schema
(``{"title": "Fake thread title"}``) and do not advance the count.

A prompt containing ``take your time`` is answered slowly (``SLOW_SECONDS``
before the first word), so a test can watch Codex busy or interrupt it; one
containing ``answer with an error`` gets an HTTP 400, which Codex does not
retry: the turn ends with the error on screen.  ``GET /v1/models`` answers
plausibly; anything else is logged and answered with an empty JSON object, so
a new Codex version that calls something new shows up in the log instead of
hanging.
"""

from __future__ import annotations

import asyncio
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
SLOW_SECONDS = 3.0
ERROR_MARK = "answer with an error"
SIDE_REPLY = "Fake thread title"
# the user-role messages Codex writes itself, before the user's first prompt
CONTEXT_PREFIXES = ("<environment_context>", "<user_instructions>", "# AGENTS.md instructions",
                    "<skills_instructions>", "<user_shell_command>", "<turn_aborted>")
_HEADERS = ("user-agent", "authorization", "originator", "session_id", "conversation_id",
            "openai-beta", "version", "accept")


def _texts(item: dict[str, Any], kinds: tuple[str, ...]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [str(part.get("text", "")) for part in content
            if isinstance(part, dict) and part.get("type") in kinds]


def _is_context(text: str) -> bool:
    """Codex sends its environment, AGENTS.md and skills as user messages of its own."""
    return text.lstrip().startswith(CONTEXT_PREFIXES)


def user_texts(body: dict[str, Any]) -> list[str]:
    """The texts the user typed, oldest first, without Codex's own context messages."""
    items = body.get("input")
    if isinstance(items, str):
        return [items]
    out: list[str] = []
    for item in items or []:
        if isinstance(item, dict) and item.get("role") == "user":
            out.extend(t for t in _texts(item, ("input_text", "text")) if not _is_context(t))
    return out


def last_user_text(body: dict[str, Any]) -> str:
    texts = user_texts(body)
    return texts[-1] if texts else ""


def turn_metadata(request: web.Request) -> dict[str, Any]:
    """Codex's ``x-codex-turn-metadata`` header (JSON): thread, turn, and why it asks."""
    try:
        meta = json.loads(request.headers.get("x-codex-turn-metadata", "{}"))
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def classify(request: web.Request, body: dict[str, Any]) -> tuple[str, str]:
    """(``main`` or ``side``, the request's source) for one /responses request.

    Codex 0.171 names the source in its turn metadata: ``thread_source`` is
    ``user`` for the conversation the human sees and e.g. ``thread_title`` for
    the title it generates on the side, in a thread of its own.  Without that
    header, a request asking for structured output (``text.format``
    json_schema) is taken for a side request: the real conversation never does.
    """
    source = str(turn_metadata(request).get("thread_source", ""))
    if source:
        return ("main" if source == "user" else "side"), source
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return "side", "json_schema"
    return "main", ""


def side_reply(body: dict[str, Any]) -> str:
    """A short answer to a side request, valid against its JSON schema when it has one.

    The title request demands ``{"title": <1..36 chars>}``; any other schema
    gets its string fields filled with a short title and the rest left empty.
    """
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    if not isinstance(schema, dict):
        return SIDE_REPLY
    out: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if kind == "string":
            out[name] = SIDE_REPLY[: int(prop.get("maxLength", len(SIDE_REPLY)))]
        elif kind in ("integer", "number"):
            out[name] = 0
        elif kind == "boolean":
            out[name] = False
        elif kind == "array":
            out[name] = []
        else:
            out[name] = None
    return json.dumps(out)


def _usage(body: dict[str, Any], text: str) -> dict[str, Any]:
    size = len(json.dumps(body.get("input", [])))
    inp, out = max(1, size // 4), max(1, len(text) // 4)
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out}


async def _read(request: web.Request) -> tuple[Any, dict[str, Any]]:
    """The request body as parsed JSON (or text), and as a dict (empty if not one)."""
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return body, (body if isinstance(body, dict) else {})


def _log(request: web.Request, body: Any, kind: str, **extra: Any) -> None:
    """Append one request to the log: ``kind`` first, so a test can filter on it."""
    headers = {k: v for k, v in request.headers.items()
               if k.lower() in _HEADERS or k.lower().startswith("x-")}
    entry = {"t": time.time(), "kind": kind, **extra, "method": request.method,
             "path": request.path, "query": request.query_string, "headers": headers,
             "body": body}
    with request.app[LOG_KEY].open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def _chunks(text: str) -> list[str]:
    """The reply in small pieces, as the real API streams it (newlines kept)."""
    words = text.split(" ")
    return [" ".join(words[i:i + 4]) + (" " if i + 4 < len(words) else "")
            for i in range(0, len(words), 4)]


def stream_events(body: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Every event of one streamed response that answers with ``text``, in order."""
    resp_id = f"resp_fake{next(_ids):06d}"
    msg_id = f"msg_fake{next(_ids):06d}"
    created = int(time.time())
    response = {"id": resp_id, "object": "response", "created_at": created,
                "status": "in_progress", "model": body.get("model", "gpt-fake"),
                "output": [], "usage": None}
    part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
    item: dict[str, Any] = {"id": msg_id, "type": "message", "status": "in_progress",
                            "role": "assistant", "content": []}
    seq = itertools.count(0)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "item_id": msg_id, "output_index": 0,
         "content_index": 0, "part": part},
    ]
    events += [{"type": "response.output_text.delta", "item_id": msg_id, "output_index": 0,
                "content_index": 0, "delta": chunk, "logprobs": []} for chunk in _chunks(text)]
    done_part = {**part, "text": text}
    done_item = {**item, "status": "completed", "content": [done_part]}
    events += [
        {"type": "response.output_text.done", "item_id": msg_id, "output_index": 0,
         "content_index": 0, "text": text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": msg_id, "output_index": 0,
         "content_index": 0, "part": done_part},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {"type": "response.completed",
         "response": {**response, "status": "completed", "output": [done_item],
                      "usage": _usage(body, text)}},
    ]
    for event in events:
        event["sequence_number"] = next(seq)
    return events


async def responses(request: web.Request) -> web.StreamResponse:
    raw, body = await _read(request)
    kind, source = classify(request, body)
    meta = turn_metadata(request)
    ids = {"source": source, "thread_id": meta.get("thread_id"), "turn_id": meta.get("turn_id")}
    if kind == "main" and ERROR_MARK in last_user_text(body):
        _log(request, raw, kind, error=True, **ids)
        return web.json_response({"error": {
            "message": "fake_openai: the prompt asked for an error",
            "type": "invalid_request_error", "param": None, "code": "invalid_prompt"}}, status=400)
    if kind == "main":
        turns = request.app[TURNS_KEY]
        turns[0] += 1
        _log(request, raw, kind, turn=turns[0], **ids)
        text = long_reply(last_user_text(body), turns[0])
    else:
        _log(request, raw, kind, **ids)
        text = side_reply(body)
    events = stream_events(body, text)
    if body.get("stream") is False:
        return web.json_response(events[-1]["response"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    slow = kind == "main" and SLOW_MARK in last_user_text(body)
    try:
        for event in events:
            if slow and event["type"] == "response.output_text.delta":
                await asyncio.sleep(SLOW_SECONDS)
                slow = False
            await response.write(_sse(event))
        await response.write_eof()
    except ConnectionResetError:
        # Codex drops the stream when the turn is interrupted (Esc) or steered
        # (Enter while busy): a normal event, logged so a test can see it.
        _log(request, None, "dropped", **ids)
    return response


async def models(request: web.Request) -> web.Response:
    _log(request, (await _read(request))[0], "models")
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"}
            for m in ("gpt-5.5", "gpt-5.1-codex", "gpt-5")]
    return web.json_response({"object": "list", "data": data})


async def anything_else(request: web.Request) -> web.Response:
    _log(request, (await _read(request))[0], "unknown")
    return web.json_response({})


def make_app(log: Path) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[LOG_KEY] = log
    app[TURNS_KEY] = [0]
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/responses", responses)
        app.router.add_get(f"{prefix}/models", models)
    app.router.add_route("*", "/{tail:.*}", anything_else)
    return app


def main(argv: list[str] | None = None) -> int:
    return standin_server.main(make_app, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
