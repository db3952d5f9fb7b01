"""A local stand-in for the Gemini API, so the real Gemini CLI answers offline.

``python -m tests.tools.fake_gemini --log FILE`` listens on 127.0.0.1 on a free
port, prints ``port <N>`` once it serves, and appends every request it gets to
FILE (one JSON line: method, path, query, a few headers, the body, ``kind``:
what the stand-in took the request for, and ``turn`` for the conversation's
requests), so a test can see exactly what the CLI sent.  Point Gemini CLI 0.61
at it with ``GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:<N>`` and any
``GEMINI_API_KEY`` (``tests.tools.gemini_setup.gemini_home`` does both).

Gemini CLI speaks the public REST shape through @google/genai:
``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` for the
conversation, ``:generateContent`` for its side requests, and (in some
versions and settings) ``:countTokens`` and ``GET /v1beta/models``.

Kinds of request and their answers:

- ``main``: a streamed request whose last user content is a prompt.  It gets a
  thought part (thinking models stream one first; the CLI shows its bold
  subject while busy and keeps it out of the reply), then
  ``tests.tools.long_reply.long_reply(prompt, turn)`` a few lines per chunk;
  prompt = the text the human typed, turn = 1, 2, 3... counting ``main`` and
  ``tool_call`` requests.  A prompt containing ``take your time`` is answered
  slowly (``SLOW_SECONDS`` before the first chunk), so a test can watch the
  CLI busy; one containing ``answer with an error`` gets an HTTP 400.
- ``tool_call``: a prompt with a line ``RUN: <command>`` is answered with a
  ``run_shell_command`` function call (the CLI asks for permission unless the
  command is read-only, such as ``echo``).
- ``tool_result``: the request that carries the tool's output gets
  ``TOOL RESULT: <its first line>`` in one chunk.
- ``json:<what>``: a request with a JSON schema (the model router, the
  next-speaker check, loop detection...) gets JSON valid for that schema, with
  ``next_speaker`` = ``user`` (the turn is over), confidences 0 (no loop) and
  scores 1 (simple task); the CLI then carries on as it would with the real API.
- ``side_text``: any other non-streamed generate request (summaries, titles)
  gets a short plain text.

Anything else is logged and answered with an empty JSON object, so a new CLI
version that calls something new shows up in the log instead of hanging.
"""

from __future__ import annotations

import asyncio
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
SLOW_MARK = "take your time"
ERROR_MARK = "answer with an error"
RUN_MARK = "RUN:"
SLOW_SECONDS = 3.0
# The part the CLI puts before the first prompt of a session (cwd, date, tree).
CONTEXT_MARK = "<session_context>"
LINES_PER_CHUNK = 5
THOUGHT: dict[str, Any] = {"text": "**Weighing the request**\n\nI will answer in full.",
                           "thought": True}
MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
          "gemini-3-pro-preview", "gemini-3-flash-preview")
_HEADERS = ("user-agent", "x-goog-api-key", "x-goog-api-client", "content-type")
# Words in the last user text of a JSON request that name the side request.
_SIDE_PROMPTS = {"next_speaker": "who should logically speak next"}


def _parts(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, dict):
        return []
    parts = content.get("parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _is_function_response(content: Any) -> bool:
    return any("functionResponse" in p for p in _parts(content))


def _user_contents(body: dict[str, Any]) -> list[Any]:
    contents = body.get("contents")
    if not isinstance(contents, list):
        return []
    return [c for c in contents if isinstance(c, dict) and c.get("role", "user") == "user"]


def last_user_text(body: dict[str, Any]) -> str:
    """What the human typed last.

    That is the first text part of the last user content that is not a tool
    result: the CLI puts a ``<session_context>`` part before the first prompt
    of a session (in the same content or its own), and an ``@path`` reference
    adds the file's text after the prompt.
    """
    for content in reversed(_user_contents(body)):
        if _is_function_response(content):
            continue
        for part in _parts(content):
            text = part.get("text")
            if (isinstance(text, str) and text.strip() and not part.get("thought")
                    and not text.lstrip().startswith(CONTEXT_MARK)):
                return text
    return ""


def _tool_results(body: dict[str, Any]) -> list[str]:
    """The tool outputs in the last user content, when it only answers a call."""
    users = _user_contents(body)
    if not users or not _is_function_response(users[-1]):
        return []
    out = []
    for part in _parts(users[-1]):
        response = part.get("functionResponse")
        if isinstance(response, dict):
            result = response.get("response")
            if isinstance(result, dict):
                result = result.get("output", result.get("error", result))
            out.append(result if isinstance(result, str) else json.dumps(result))
    return out


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks its answer to follow, if any."""
    config = body.get("generationConfig")
    if not isinstance(config, dict):
        return None
    for key in ("responseJsonSchema", "responseSchema"):
        schema = config.get(key)
        if isinstance(schema, dict):
            return schema
    if config.get("responseMimeType") == "application/json":
        return {"type": "object"}
    return None


def value_for(schema: Any, name: str = "") -> Any:
    """A JSON value valid for ``schema`` that keeps the CLI on its normal path.

    ``next_speaker`` is ``user`` (the model has finished: no extra "Please
    continue." turn), a confidence is 0 (no loop detected), any other number 1
    (the router's complexity score must be 1-100), an enum takes its first
    choice.  Types may be upper case (@google/genai's ``Type.OBJECT``).
    """
    if not isinstance(schema, dict):
        return None
    if name == "next_speaker":
        return "user"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        return {key: value_for(sub, key) for key, sub in props.items()}
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return 0 if "confidence" in name else max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return f"stand-in {name or 'text'}"


def classify(body: dict[str, Any], streamed: bool) -> str:
    """What a generate request is (see the module docstring for the kinds)."""
    schema = _schema(body)
    if schema is not None:
        props = schema.get("properties")
        keys = sorted(props) if isinstance(props, dict) else []
        text = last_user_text(body)
        for name, mark in _SIDE_PROMPTS.items():
            if mark in text:
                return f"json:{name}"
        if "next_speaker" in keys:
            return "json:next_speaker"
        if "model_choice" in keys or any("complexity" in key for key in keys):
            return "json:router"
        if any("unproductive" in key or "loop" in key for key in keys):
            return "json:loop_detection"
        return "json:" + (",".join(keys) or "object")
    if _tool_results(body):
        return "tool_result"
    if not streamed:
        return "side_text"
    if any(RUN_MARK in line for line in last_user_text(body).splitlines()):
        return "tool_call"
    return "main"


def answer_parts(body: dict[str, Any], kind: str, turn: int) -> list[dict[str, Any]]:
    """The model's parts for one request of the given ``kind``."""
    if kind.startswith("json:"):
        return [{"text": json.dumps(value_for(_schema(body)))}]
    if kind == "tool_result":
        # the CLI wraps a tool's output in <untrusted_context> tag lines
        lines = [line.strip() for line in _tool_results(body)[0].splitlines()]
        first = next((line for line in lines if line and not line.startswith("<")), "")
        return [{"text": f"TOOL RESULT: {first}"}]
    if kind == "side_text":
        return [{"text": "Stand-in summary"}]
    prompt = last_user_text(body)
    if kind == "tool_call":
        command = next(line.split(RUN_MARK, 1)[1].strip()
                       for line in prompt.splitlines() if RUN_MARK in line)
        call = {"name": "run_shell_command",
                "args": {"command": command, "description": "Run the requested command"}}
        return [THOUGHT, {"functionCall": call}]
    return [THOUGHT, {"text": long_reply(prompt, turn)}]


def _usage(body: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, int]:
    prompt = max(1, len(json.dumps(body.get("contents", []))) // 4)
    output = max(1, len(json.dumps(parts)) // 4)
    return {"promptTokenCount": prompt, "candidatesTokenCount": output,
            "totalTokenCount": prompt + output}


def _response(body: dict[str, Any], model: str, parts: list[dict[str, Any]],
              finish: str | None, usage: bool) -> dict[str, Any]:
    """One GenerateContentResponse (a whole answer, or one chunk of a stream)."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model,
                           "responseId": f"fake-{time.monotonic_ns():x}"}
    if usage:
        out["usageMetadata"] = _usage(body, parts)
    return out


def chunks(parts: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The parts split as the real API streams them: text a few lines at a time,
    a thought or a function call in a chunk of its own."""
    out: list[list[dict[str, Any]]] = []
    for part in parts:
        text = part.get("text")
        if not isinstance(text, str) or part.get("thought"):
            out.append([part])
            continue
        lines = text.split("\n")
        for i in range(0, len(lines), LINES_PER_CHUNK):
            more = i + LINES_PER_CHUNK < len(lines)
            out.append([{"text": "\n".join(lines[i:i + LINES_PER_CHUNK]) + ("\n" if more else "")}])
    return out or [[{"text": ""}]]


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _log(request: web.Request, body: Any, kind: str, **extra: Any) -> None:
    entry = {"t": time.time(), "method": request.method, "path": request.path,
             "query": request.query_string, "kind": kind, **extra,
             "headers": {k: request.headers[k] for k in _HEADERS if k in request.headers},
             "body": body}
    with request.app[LOG_KEY].open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\r\n\r\n".encode()


async def model_call(request: web.Request) -> web.StreamResponse:
    """``/<version>/models/<model>:<method>``: generate, stream, count, embed."""
    model, _, method = request.match_info["rest"].partition(":")
    raw = await _body(request)
    body: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if request.method == "GET" or not method:
        _log(request, raw, "model_info")
        return web.json_response(_model_info(model))
    if method == "countTokens":
        _log(request, raw, "count_tokens")
        return web.json_response({"totalTokens": max(1, len(json.dumps(body)) // 4)})
    if method not in ("generateContent", "streamGenerateContent"):
        _log(request, raw, "other")
        return web.json_response({})
    kind = classify(body, method == "streamGenerateContent")
    turn = 0
    if kind in ("main", "tool_call"):
        turns = request.app[TURNS_KEY]
        turns[0] += 1
        turn = turns[0]
        _log(request, raw, kind, turn=turn)
    else:
        _log(request, raw, kind)
    prompt = last_user_text(body) if turn else ""
    if ERROR_MARK in prompt:
        return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                            "message": "Stand-in error, as asked."}},
                                 status=400)
    parts = answer_parts(body, kind, turn)
    if method == "generateContent":
        return web.json_response(_response(body, model, parts, "STOP", True))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    if SLOW_MARK in prompt:
        await asyncio.sleep(SLOW_SECONDS)
    pieces = chunks(parts)
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        await response.write(_sse(_response(body, model, piece, "STOP" if last else None,
                                            last)))
        await asyncio.sleep(0.02)
    await response.write_eof()
    return response


def _model_info(model: str) -> dict[str, Any]:
    return {"name": f"models/{model}", "baseModelId": model, "version": "001",
            "displayName": model, "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "thinking": True}


async def models(request: web.Request) -> web.Response:
    _log(request, await _body(request), "models")
    return web.json_response({"models": [_model_info(m) for m in MODELS]})


async def anything_else(request: web.Request) -> web.Response:
    _log(request, await _body(request), "other")
    return web.json_response({})


def make_app(log: Path) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[LOG_KEY] = log
    app[TURNS_KEY] = [0]
    app.router.add_get("/{version}/models", models)
    app.router.add_route("*", "/{version}/models/{rest:.+}", model_call)
    app.router.add_route("*", "/{tail:.*}", anything_else)
    return app


def main(argv: list[str] | None = None) -> int:
    return standin_server.main(make_app, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
