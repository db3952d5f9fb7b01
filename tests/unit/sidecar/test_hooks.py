"""The hook channel and csp-hook: events arrive exact, and the agent's turn never waits.

csp-hook runs for real, as a subprocess, in both of its forms (the fast
``python -I -S hook_cmd.py`` the wiring uses, and the ``csp-hook`` console script).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from csp_sidecar import hook_cmd
from csp_sidecar.hooks import SOCKET_ENV, HookChannel, HookEvent, HookSpec, decode_frame, tool_line
from csp_sidecar.profiles import load_profile
from csp_sidecar.wiring import hook_argv
from tests.polling import async_wait_for, wait_for

CONSOLE_SCRIPT = Path(sys.executable).parent / "csp-hook"
FORMS = {
    "fast": list(hook_argv()),
    "console": [str(CONSOLE_SCRIPT)],
}


def long_reply() -> str:
    """~60 KB of markdown with unicode, tabs, CRLF, trailing spaces and quotes."""
    block = ("## Résumé — ünïcödé 🚀 \"quoted\" `code`\n\n"
             "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
             "```python\nprint('x')\t# tab\n```\n"
             "- item with trailing spaces   \n- CRLF line\r\n\n")
    text = ""
    n = 0
    while len(text.encode()) < 60_000:
        n += 1
        text += f"{n}. " + block
    return text + "last line without newline"


def hook_form(name: str) -> list[str]:
    if name == "console" and not CONSOLE_SCRIPT.exists():
        pytest.skip("csp-hook is not installed in this venv (pip install -e . --no-deps)")
    return FORMS[name]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory: a unix socket path must stay under 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="csph", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def spec(name: str) -> HookSpec:
    return HookSpec.from_reports(load_profile(name).reports, name)


class Received:
    def __init__(self) -> None:
        self.events: list[HookEvent] = []

    def __call__(self, event: HookEvent) -> None:
        self.events.append(event)

    async def wait(self, count: int) -> list[HookEvent]:
        async def enough() -> list[HookEvent]:
            return self.events if len(self.events) >= count else []
        return await async_wait_for(enough, what=f"{count} hook event(s)")


async def open_channel(path: Path, name: str, **kw: Any) -> tuple[HookChannel, Received]:
    got = Received()
    channel = HookChannel(path, got, spec(name), **kw)
    await channel.start()
    return channel, got


@pytest.fixture
async def claude_channel(sock_dir: Path) -> AsyncIterator[tuple[HookChannel, Received]]:
    channel, got = await open_channel(sock_dir / "hooks" / "claude.sock", "claude")
    yield channel, got
    await channel.close()


@pytest.fixture
async def codex_channel(sock_dir: Path) -> AsyncIterator[tuple[HookChannel, Received]]:
    channel, got = await open_channel(sock_dir / "hooks" / "codex.sock", "codex")
    yield channel, got
    await channel.close()


async def run_hook(argv: list[str], env: dict[str, str], stdin: bytes | None = None
                   ) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out, err


def base_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}


# -- the channel itself ------------------------------------------------------------


async def test_the_socket_is_private_and_close_removes_it(sock_dir: Path) -> None:
    channel, _ = await open_channel(sock_dir / "hooks" / "a.sock", "claude")
    assert stat.S_IMODE(channel.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(channel.path.parent.stat().st_mode) == 0o700
    assert channel.env == {SOCKET_ENV: str(channel.path)}
    await channel.close()
    assert not channel.path.exists()


async def test_a_stale_socket_is_replaced_and_close_leaves_a_newer_one(sock_dir: Path) -> None:
    path = sock_dir / "hooks" / "a.sock"
    first, _ = await open_channel(path, "claude")
    second, got = await open_channel(path, "claude")  # a restart finds the old file there
    await first.close()  # the old one closing late must not remove the new one's socket
    assert path.exists()
    rc, _, _ = await run_hook([*hook_argv(), "--stdin", "Stop"],
                              base_env(CSP_HOOK_SOCKET=str(path)),
                              b'{"last_assistant_message": "hi"}')
    assert rc == 0
    assert (await got.wait(1))[0].reply == "hi"
    await second.close()


# -- Claude style: the JSON on stdin ------------------------------------------------------


@pytest.mark.parametrize("form", ["fast", "console"])
async def test_claude_style_stdin_events_arrive_exact(
        claude_channel: tuple[HookChannel, Received], form: str) -> None:
    channel, got = claude_channel
    argv = hook_form(form)
    env = base_env(**channel.env)
    reply = long_reply()
    sent = [
        ("UserPromptSubmit", {"session_id": "s1", "prompt": "[human → @claude] hi ✓\nline 2"}),
        ("Stop", {"session_id": "s1", "last_assistant_message": reply,
                  "transcript_path": "/x.jsonl"}),
    ]
    for label, payload in sent:
        rc, out, err = await run_hook([*argv, "--stdin", label], env,
                                      json.dumps(payload).encode())
        assert (rc, out, err) == (0, b"", b"")  # nothing on stdout: Claude adds it to the prompt
    prompt, end = await got.wait(2)
    assert (prompt.kind, prompt.prompt, prompt.thread) == (
        "prompt", "[human → @claude] hi ✓\nline 2", "s1")
    assert (end.kind, end.label, end.thread) == ("turn_end", "Stop", "s1")
    assert end.reply == reply
    assert end.raw["transcript_path"] == "/x.jsonl"


async def test_claude_style_without_a_mode_flag_reads_stdin_too(
        claude_channel: tuple[HookChannel, Received]) -> None:
    channel, got = claude_channel
    rc, _, _ = await run_hook([*hook_argv(), "Stop"], base_env(**channel.env),
                              b'{"last_assistant_message": "auto"}')
    assert rc == 0
    assert (await got.wait(1))[0].reply == "auto"


async def test_claude_notification_is_waiting_only_for_a_question(
        claude_channel: tuple[HookChannel, Received]) -> None:
    channel, got = claude_channel
    env = base_env(**channel.env)
    for kind in ("permission_prompt", "idle_prompt"):
        payload = {"message": f"msg {kind}", "notification_type": kind, "session_id": "s"}
        await run_hook([*hook_argv(), "--stdin", "Notification"], env, json.dumps(payload).encode())
    call = {"tool_name": "Bash", "tool_input": {"command": "ls -la\n  | wc", "description": "d"}}
    for label in ("PreToolUse", "PermissionRequest"):
        await run_hook([*hook_argv(), "--stdin", label], env, json.dumps(call).encode())
    events = await got.wait(4)
    assert [(e.kind, e.detail) for e in events] == [
        ("waiting", "msg permission_prompt"), ("other", "msg idle_prompt"),
        ("tool", "Bash: ls -la | wc"), ("waiting", "Bash: ls -la | wc")]


# -- Codex style: the JSON as the last argument ------------------------------------------


@pytest.mark.parametrize("form", ["fast", "console"])
@pytest.mark.parametrize("mode", [["--argv"], []])
async def test_codex_style_argv_event_arrives_exact(
        codex_channel: tuple[HookChannel, Received], form: str, mode: list[str]) -> None:
    channel, got = codex_channel
    reply = long_reply()
    payload = {"type": "agent-turn-complete", "thread-id": "t-1", "turn-id": "u-1",
               "cwd": "/w", "input-messages": ["[human → @codex] go", "and more"],
               "last-assistant-message": reply}
    # stdin is /dev/null, as for a program Codex starts: not a terminal, no data
    rc, out, err = await run_hook([*hook_form(form), *mode, "notify", json.dumps(payload)],
                                  base_env(**channel.env))
    assert (rc, out, err) == (0, b"", b"")
    (event,) = await got.wait(1)
    assert (event.kind, event.label, event.thread) == ("turn_end", "agent-turn-complete", "t-1")
    assert event.reply == reply
    assert event.prompt == "[human → @codex] go\n\nand more"


async def test_codex_title_thread_is_a_side_thread(
        codex_channel: tuple[HookChannel, Received]) -> None:
    channel, got = codex_channel
    env = base_env(**channel.env)
    title = {"type": "agent-turn-complete", "thread-id": "side", "input-messages": [
        "Generate a concise, single-line task title of at most 36 characters.\n\n"
        "User prompt:\nhi"], "last-assistant-message": '{"title": "Greet"}'}
    main = {"type": "agent-turn-complete", "thread-id": "main", "input-messages": ["hi"],
            "last-assistant-message": "Hello!"}
    later = {**title, "input-messages": ["follow-up"], "last-assistant-message": "x"}
    for payload in (title, main, later):
        await run_hook([*hook_argv(), "--argv", "notify", json.dumps(payload)], env)
    events = await got.wait(3)
    assert [(e.kind, e.thread, e.detail) for e in events] == [
        ("other", "side", "side thread"), ("turn_end", "main", ""),
        ("other", "side", "side thread")]


# -- a missing, dead or stuck sidecar never stalls the turn --------------------------------


def _dead_socket(folder: Path) -> Path:
    """A socket file nobody listens on (a sidecar killed with SIGKILL leaves one)."""
    path = folder / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    return path


@pytest.mark.parametrize("where", ["missing", "dead", "unset"])
@pytest.mark.parametrize("mode", [("--stdin", "Stop"), ("--argv", "notify", "{}")])
def test_no_sidecar_returns_at_once_with_status_0(sock_dir: Path, where: str,
                                                  mode: tuple[str, ...]) -> None:
    env = base_env()
    if where == "missing":
        env[SOCKET_ENV] = str(sock_dir / "nothing-here.sock")
    elif where == "dead":
        env[SOCKET_ENV] = str(_dead_socket(sock_dir))
    # a bound far above the 0.2 s send timeout: this catches a hang, not a slow machine
    done = subprocess.run([*hook_argv(), *mode], env=env, input=b'{"a": 1}',
                          capture_output=True, timeout=10)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_a_stuck_sidecar_costs_at_most_the_send_timeout(sock_dir: Path) -> None:
    """Listening but never reading (stopped, or its loop blocked): csp-hook gives up."""
    path = sock_dir / "stuck.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        big = b'{"last_assistant_message": "' + b"x" * (3 * 1024 * 1024) + b'"}'
        done = subprocess.run([*hook_argv(), "--stdin", "Stop"], input=big,
                              env=base_env(CSP_HOOK_SOCKET=str(path)),
                              capture_output=True, timeout=10)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    finally:
        server.close()


def test_a_stdin_that_never_closes_does_not_hang_it(sock_dir: Path) -> None:
    proc = subprocess.Popen([*hook_argv(), "--stdin", "Stop"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=base_env(CSP_HOOK_SOCKET=str(sock_dir / "x.sock")))
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b'{"partial": ')
    proc.stdin.flush()
    try:
        rc = proc.wait(timeout=10)  # stdin left open: only csp-hook's own deadline ends it
    finally:
        proc.stdin.close()
    assert (rc, proc.stdout.read(), proc.stderr.read()) == (0, b"", b"")


# -- chaining to the user's own notify program -------------------------------------------


CHAINED = """\
import json, os, sys, time
out = sys.argv[1]
info = {"argv": sys.argv[2:], "pid": os.getpid(), "sid": os.getsid(0),
        "stdio": [os.readlink(f"/proc/self/fd/{n}") for n in (0, 1, 2)]}
with open(out + ".tmp", "w") as f:
    json.dump(info, f)
os.rename(out + ".tmp", out)
while not os.path.exists(out + ".release"):   # held until the test lets it go
    time.sleep(0.01)
open(out + ".done", "w").close()
"""


def json_file(path: Path) -> Any:
    """The JSON in ``path`` once it is there (None before)."""
    return json.loads(path.read_text()) if path.exists() else None


def test_then_starts_the_users_program_with_codex_argv_and_does_not_wait(
        sock_dir: Path) -> None:
    script = sock_dir / "chained.py"
    script.write_text(CHAINED)
    out = sock_dir / "chained.json"
    payload = json.dumps({"type": "agent-turn-complete", "last-assistant-message": "a\nb é"})
    user_notify = [sys.executable, str(script), str(out), "--flag", "two words"]
    done = subprocess.run([*hook_argv(), "--argv", "notify", "--then", *user_notify, payload],
                          env=base_env(CSP_HOOK_SOCKET=str(sock_dir / "none.sock")),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    try:
        # csp-hook has returned while the chained program is still held
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        info = wait_for(lambda: json_file(out), what="the chained program to start")
        assert not Path(f"{out}.done").exists()
        # exactly the argv Codex would have given it: its own words, then the JSON
        assert info["argv"] == ["--flag", "two words", payload]
        assert info["sid"] == info["pid"]  # its own session: not in the agent's group
        assert info["stdio"] == ["/dev/null"] * 3
    finally:
        Path(f"{out}.release").touch()
    wait_for(lambda: Path(f"{out}.done").exists(), what="the chained program to finish")


async def test_then_and_the_sidecar_both_get_the_event(
        codex_channel: tuple[HookChannel, Received], sock_dir: Path) -> None:
    channel, got = codex_channel
    script = sock_dir / "chained.py"
    script.write_text(CHAINED)
    out = sock_dir / "c.json"
    Path(f"{out}.release").touch()
    payload = json.dumps({"type": "agent-turn-complete", "thread-id": "t",
                          "last-assistant-message": "done"})
    rc, _, _ = await run_hook([*hook_argv(), "--argv", "notify", "--then", sys.executable,
                               str(script), str(out), payload], base_env(**channel.env))
    assert rc == 0
    assert (await got.wait(1))[0].reply == "done"
    assert wait_for(lambda: json_file(out))["argv"] == [payload]


def test_a_missing_chained_program_is_silent(sock_dir: Path) -> None:
    done = subprocess.run([*hook_argv(), "--argv", "notify", "--then", "/nonexistent/prog",
                           "{}"], env=base_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=10)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_the_command_line_is_read_as_documented() -> None:
    def split(*argv: str) -> tuple[bytes, list[str]]:
        args = hook_cmd.parse(list(argv))
        args.mode = "argv" if args.mode == "auto" else args.mode
        return hook_cmd.split(args)

    assert split("notify", "{}") == (b"{}", [])
    assert split("--argv", "notify", "--then", "p", "a", "{}") == (b"{}", ["p", "a", "{}"])
    assert split("--argv", "notify", "--then", "{}") == (b"{}", [])
    args = hook_cmd.parse(["--socket", "/s", "--stdin", "Stop"])
    assert (args.socket, args.mode, args.label, args.rest) == ("/s", "stdin", "Stop", [])


# -- bad input never reaches the loop --------------------------------------------------------


def _send_raw(path: Path, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)


async def test_bad_frames_are_dropped_and_the_channel_keeps_working(sock_dir: Path) -> None:
    channel, got = await open_channel(sock_dir / "h" / "a.sock", "claude", max_bytes=1000)
    try:
        for junk in (b"", b"hello", b"CSPHOOK1 Stop\n{not json", b"CSPHOOK1 Stop\n[1, 2]",
                     b"CSPHOOK1 Stop\n" + b"x" * 5000, b"CSPHOOK1 \n{}", b"\xff\xfe\x00"):
            await asyncio.to_thread(_send_raw, channel.path, junk)
        await asyncio.to_thread(_send_raw, channel.path,
                                b'CSPHOOK1 Stop\n{"last_assistant_message": "ok"}')
        events = await got.wait(1)
        assert [(e.kind, e.reply) for e in events] == [("turn_end", "ok")]
    finally:
        await channel.close()


async def test_a_failing_handler_is_logged_not_raised(sock_dir: Path) -> None:
    seen: list[str] = []

    def handler(event: HookEvent) -> None:
        seen.append(event.kind)
        raise RuntimeError("boom")

    channel = HookChannel(sock_dir / "h" / "a.sock", handler, spec("claude"))
    await channel.start()
    try:
        for _ in range(2):
            await asyncio.to_thread(_send_raw, channel.path, b"CSPHOOK1 Stop\n{}")

        async def both() -> bool:
            return len(seen) == 2
        await async_wait_for(both, what="both events despite the handler failing")
    finally:
        await channel.close()


async def test_a_slow_client_is_dropped(sock_dir: Path) -> None:
    channel, got = await open_channel(sock_dir / "h" / "a.sock", "claude", read_timeout=0.2)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(channel.path))
            s.sendall(b"CSPHOOK1 Stop\n{")

            async def closed_by_server() -> bool:
                return await asyncio.to_thread(s.recv, 1) == b""
            await async_wait_for(closed_by_server, what="the server to drop the slow client")
        assert got.events == []
    finally:
        await channel.close()


# -- reading events ------------------------------------------------------------------------


def test_decode_frame_keeps_the_payload_exact() -> None:
    text = "line 1\r\nline 2\t✓ \U0001f680"
    label, raw = decode_frame(b"CSPHOOK1 Stop\n" + json.dumps({"r": text}).encode())
    assert (label, raw) == ("Stop", {"r": text})
    with pytest.raises(ValueError):
        decode_frame(b"CSPHOOK2 Stop\n{}")


def test_an_unknown_label_is_other() -> None:
    event = spec("claude").parse("SessionStart", {"source": "startup"})
    assert (event.kind, event.label, event.detail) == ("other", "SessionStart", "SessionStart")


def test_tool_lines_are_one_short_line() -> None:
    keys = ("command", "file_path")
    assert tool_line("Edit", {"file_path": "/a/b.py", "old": "x"}, keys) == "Edit: /a/b.py"
    assert tool_line("Web", {"q": "x"}, keys) == 'Web: {"q": "x"}'
    assert tool_line(None, None, keys) == "tool"
    long = tool_line("Bash", {"command": "echo " + "y" * 500}, keys)
    assert len(long) == 200 and long.endswith("…")
