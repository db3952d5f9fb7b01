"""A local stand-in for the Gemini API, so the real Gemini CLI answers offline.

``python -m tests.tools.fake_gemini --log FILE`` listens on 127.0.0.1 on a free
port, prints ``port <N>`` once it serves, and appends every request it gets to
FILE (one JSON line: method, path, query, a few headers, the body, and
``kind``: what the stand-in took the request for), so a test can see exactly
what the CLI sent.  Point Gemini CLI 0.61 at it with
``GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:<N>`` and any ``GEMINI_API_KEY``
(``tests.tools.gemini_setup.gemini_home`` does both).

The CLI speaks the public REST shape through @google/genai:
``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` for the
conversation, ``:generateContent`` for its side requests, ``:countTokens``,
``GET /v1beta/models``.  The conversation (``kind`` ``main``) is answered with
``tests.tools.long_reply.long_reply(prompt, turn)``: prompt = the last user
text, turn = 1, 2, 3... counted over the distinct prompts of the conversation,
so a retried request gets the same answer.  A prompt with a line
``RUN: <command>`` is answered with a ``run_shell_command`` function call
(``kind`` ``tool_call``), and the tool's result with
``TOOL RESULT: <its first line>`` (``kind`` ``tool_result``).  A prompt
containing ``take your time`` is answered slowly (``SLOW_SECONDS`` before the
first chunk), so a test can watch the CLI busy.

Side requests are answered so that the CLI carries on as it would against the
real API: a request with a JSON schema (router/classifier, next-speaker check,
loop detection...) gets a JSON value valid for that schema, with
``next_speaker`` = ``user`` (the turn is over) and every confidence 0 (no
loop); ``kind`` is ``json:<what>``.  Any other non-streamed request (session
summaries, titles) gets a short plain text (``kind`` ``side_text``).  Anything
unknown is logged and answered with an empty JSON object, so a new CLI version
that calls something new shows up in the log instead of hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.tools.long_reply import long_reply

LOG_KEY = web.AppKey("log", Path)
PROMPTS_KEY = web.AppKey("prompts", list[str])
SLOW_MARK = "take your time"
RUN_MARK = "RUN:"
CONTEXT_MARK = "<session_context>"
SLOW_SECONDS = 3.0
MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
          "gemini-3-pro-preview", "gemini-3-flash-preview")
_HEADERS = ("user-agent", "x-goog-api-key", "x-goog-api-client", "content-type")
# Thinking models stream a thought part before the answer; the CLI shows its
# bold subject while busy and must keep it out of the reply.
THOUGHT: dict[str, Any] = {"text": "**Weighing the request**\n\nI will answer in full.",
                           "thought": True}
# Text the CLI itself puts in a user turn of a side request; such a turn is
# never the human's prompt.
_SIDE_PROMPTS = {
    "next_speaker": "determine who should logically speak next",
}


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
    """What the human typed last: the first text part of the last user content
    that is not a tool result, leaving out the ``<session_context>`` part the
    CLI puts before the first prompt (and the file contents an ``@path``
    reference adds after it)."""
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

    ``next_speaker`` is ``user`` (the model has finished: no extra "continue"
    turn), any confidence or number is 0 (no loop detected), an enum takes its
    first choice (the router's "flash").
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
        return 0
    if kind == "boolean":
        return False
    return f"stand-in {name or 'text'}"


def classify(body: dict[str, Any], streamed: bool) -> str:
    """What a generate request is: ``main``, ``tool_call``, ``tool_result``,
    ``json:<name>`` or ``side_text``."""
    schema = _schema(body)
    if schema is not None:
        props = schema.get("properties")
        keys = sorted(props) if isinstance(props, dict) else []
        text = last_user_text(body)
        for name, mark in _SIDE_PROMPTS.items():
            if mark in text:
                return f"json:{name}"
        if "model_choice" in keys:
            return "json:router"
        if any("unproductive" in key or "loop" in key for key in keys):
            return "json:loop_detection"
        return "json:" + (",".join(keys) or "object")
    if _tool_results(body):
        return "tool_result"
    if not streamed:
        return "side_text"
    for line in last_user_text(body).splitlines():
        if RUN_MARK in line:
            return "tool_call"
    return "main"


def _turn(app: web.Application, prompt: str) -> int:
    """Number of ``prompt`` among the conversation's prompts (1, 2, 3...).

    A prompt seen before (the CLI retrying the same request) keeps its number.
    """
    prompts = app[PROMPTS_KEY]
    if not prompts or prompts[-1] != prompt:
        prompts.append(prompt)
    return len(prompts)


def answer_parts(app: web.Application, body: dict[str, Any],
                 kind: str) -> list[dict[str, Any]]:
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
        _turn(app, prompt)
        return [THOUGHT, {"functionCall": {"name": "run_shell_command",
                                           "args": {"command": command,
                                                    "description": "Run the requested command"}}}]
    return [THOUGHT, {"text": long_reply(prompt, _turn(app, prompt))}]


def _usage(body: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, int]:
    prompt = max(1, len(json.dumps(body.get("contents", []))) // 4)
    output = max(1, len(json.dumps(parts)) // 4)
    return {"promptTokenCount": prompt, "candidatesTokenCount": output,
            "totalTokenCount": prompt + output}


def _response(body: dict[str, Any], model: str, parts: list[dict[str, Any]],
              finish: str | None, usage: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model,
                           "responseId": f"fake-{time.monotonic_ns():x}"}
    if usage:
        out["usageMetadata"] = _usage(body, parts)
    return out


def _chunks(parts: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The parts split as the real API streams them: text a few lines at a time."""
    out: list[list[dict[str, Any]]] = []
    for part in parts:
        text = part.get("text")
        if not isinstance(text, str) or part.get("thought"):
            out.append([part])
            continue
        lines = text.split("\n")
        for i in range(0, len(lines), 5):
            piece = "\n".join(lines[i:i + 5]) + ("\n" if i + 5 < len(lines) else "")
            out.append([{"text": piece}])
    return out or [[{"text": ""}]]


async def _record(request: web.Request, kind: str | None = None) -> dict[str, Any]:
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    parsed = body if isinstance(body, dict) else {}
    if kind is None:
        kind = "other"
    elif kind == "generate":
        kind = classify(parsed, ":streamGenerateContent" in request.path)
    entry = {"t": time.time(), "method": request.method, "path": request.path,
             "query": request.query_string, "kind": kind,
             "headers": {k: request.headers[k] for k in _HEADERS if k in request.headers},
             "body": body}
    with request.app[LOG_KEY].open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")
    parsed["__kind"] = kind
    return parsed


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\r\n\r\n".encode()


async def model_call(request: web.Request) -> web.StreamResponse:
    """``/<version>/models/<model>:<method>``: generate, stream, count, embed."""
    model, _, method = request.match_info["rest"].partition(":")
    if request.method == "GET" or not method:
        await _record(request, "model_info")
        return web.json_response(_model_info(model))
    if method == "countTokens":
        body = await _record(request, "count_tokens")
        return web.json_response({"totalTokens": max(1, len(json.dumps(body)) // 4)})
    if method in ("embedContent", "batchEmbedContents"):
        body = await _record(request, "embed")
        count = len(body.get("requests") or [None])
        return web.json_response({"embeddings": [{"values": [0.0] * 8}] * count,
                                  "embedding": {"values": [0.0] * 8}})
    if method not in ("generateContent", "streamGenerateContent"):
        await _record(request, "other")
        return web.json_response({})
    body = await _record(request, "generate")
    kind = str(body.pop("__kind"))
    parts = answer_parts(request.app, body, kind)
    if method == "generateContent":
        return web.json_response(_response(body, model, parts, "STOP", True))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    if kind == "main" and SLOW_MARK in last_user_text(body):
        await asyncio.sleep(SLOW_SECONDS)
    chunks = _chunks(parts)
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        await response.write(_sse(_response(body, model, chunk, "STOP" if last else None,
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
    await _record(request, "models")
    return web.json_response({"models": [_model_info(m) for m in MODELS]})


async def anything_else(request: web.Request) -> web.Response:
    await _record(request, "other")
    return web.json_response({})


def make_app(log: Path) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[LOG_KEY] = log
    app[PROMPTS_KEY] = []
    app.router.add_get("/{version}/models", models)
    app.router.add_route("*", "/{version}/models/{rest:.+}", model_call)
    app.router.add_route("*", "/{tail:.*}", anything_else)
    return app


async def serve(log: Path, port: int) -> None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="append requests here (JSONL)")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.log, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
