"""Following a JSONL transcript: found when it appears, read as it grows, turns reported.

The records are shaped like Gemini CLI 0.61's session files (a metadata line with
``sessionId``, then ``user`` and ``gemini`` messages with ids, ``$set`` updates, a
reply re-written with its tool calls), written by the test in pieces.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from csp_sidecar.hooks import HookEvent
from csp_sidecar.profiles import load_profile
from csp_sidecar.transcript import TranscriptFollower, TranscriptSpec, record_text, watch_dirs
from csp_sidecar.wiring import RunFacts, wire
from tests.polling import async_wait_for

SESSION = "6a1b2c3d-0000-4000-8000-123456789abc"
OTHER = "6a1b2c3d-ffff-4fff-8fff-ffffffffffff"  # same first 8 characters: the glob matches both


def gemini_spec(home: Path, **changes: Any) -> TranscriptSpec:
    run = RunFacts("gemini", home / "hook.sock", {"HOME": str(home)}, ["gemini"],
                   session=SESSION)
    spec = wire(load_profile("gemini"), run).transcript
    assert spec is not None
    return replace(spec, **{"settle_ms": 100, **changes})


def chats(home: Path) -> Path:
    return home / ".gemini" / "tmp" / "my-project" / "chats"


def line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


def meta(session: str = SESSION) -> bytes:
    return line({"sessionId": session, "projectHash": "h", "startTime": "t", "kind": "main"})


def user(rid: str, text: str, display: str | None = None) -> bytes:
    rec: dict[str, Any] = {"id": rid, "timestamp": "t", "type": "user",
                           "content": [{"text": text}]}
    if display is not None:
        rec["displayContent"] = [{"text": display}]
    return line(rec)


def gemini(rid: str, text: str, tools: list[dict[str, Any]] | None = None) -> bytes:
    rec: dict[str, Any] = {"id": rid, "timestamp": "t", "type": "gemini", "content": text,
                           "thoughts": [], "tokens": None, "model": "m"}
    if tools is not None:
        rec["toolCalls"] = tools
    return line(rec)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


class Events:
    def __init__(self) -> None:
        self.list: list[HookEvent] = []

    def __call__(self, event: HookEvent) -> None:
        self.list.append(event)

    async def wait(self, count: int) -> list[tuple[str, str | None]]:
        async def enough() -> list[HookEvent]:
            return self.list if len(self.list) >= count else []
        await async_wait_for(enough, what=f"{count} transcript event(s): {self.list}")
        return self.summary()

    def summary(self) -> list[tuple[str, str | None]]:
        return [(e.kind, e.prompt if e.kind == "prompt" else e.reply if e.kind == "turn_end"
                 else e.detail) for e in self.list]


@pytest.fixture(params=["inotify", "poll"])
def use_inotify(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "inotify")


@pytest.fixture
async def follow(tmp_path: Path, use_inotify: bool
                 ) -> AsyncIterator[tuple[Path, Events, list[TranscriptFollower]]]:
    """(home, events, followers): start followers with ``start(spec)``; all closed after."""
    events = Events()
    followers: list[TranscriptFollower] = []
    yield tmp_path, events, followers
    for f in followers:
        await f.close()


async def read_all(follower: TranscriptFollower, path: Path) -> None:
    """Wait until the follower has read the file as far as it is written."""
    size = path.stat().st_size

    async def caught_up() -> bool:
        return follower.bytes_read == size
    await async_wait_for(caught_up, what=f"the follower to read {size} bytes")


async def start(followers: list[TranscriptFollower], spec: TranscriptSpec, events: Events,
                use_inotify: bool) -> TranscriptFollower:
    follower = TranscriptFollower(replace(spec, poll_interval=0.05), events,
                                  use_inotify=use_inotify)
    followers.append(follower)
    await follower.start()
    return follower


async def test_a_file_created_after_the_start_is_found_and_read_in_pieces(
        follow: tuple[Path, Events, list[TranscriptFollower]], use_inotify: bool) -> None:
    home, events, followers = follow
    follower = await start(followers, gemini_spec(home), events, use_inotify)
    assert follower.mode == ("inotify" if use_inotify else "poll")
    # nothing exists yet, not even ~/.gemini: the directories come with the file
    folder = chats(home)
    folder.mkdir(parents=True)
    path = folder / f"session-2026-01-01T10-00-{SESSION[:8]}.jsonl"
    prompt = "[human → @gemini] hello ✓\nsecond line"
    append(path, meta())
    await read_all(follower, path)
    assert follower.path == path
    record = user("u1", "expanded @file contents", display=prompt)
    for piece in (record[:17], record[17:-5]):  # a partial line waits for its newline
        append(path, piece)
        await read_all(follower, path)
        assert events.list == []
    append(path, record[-5:] + line({"$set": {"lastUpdated": "t2"}}))
    assert await events.wait(1) == [("prompt", prompt)]
    reply = "# Title\n\n- ünïcode ✓\n\n```\ncode\n```"
    data = gemini("g1", reply)
    append(path, data[:40])
    await read_all(follower, path)
    append(path, data[40:])
    assert await events.wait(2) == [("prompt", prompt), ("turn_end", reply)]
    assert events.list[-1].thread == SESSION and events.list[-1].raw["id"] == "g1"


async def test_a_turn_with_a_tool_call_reports_the_call_and_only_the_last_reply(
        follow: tuple[Path, Events, list[TranscriptFollower]], use_inotify: bool) -> None:
    home, events, followers = follow
    folder = chats(home)
    folder.mkdir(parents=True)
    path = folder / f"session-x-{SESSION[:8]}.jsonl"
    path.write_bytes(meta())
    await start(followers, gemini_spec(home, settle_ms=5000), events, use_inotify)
    call = {"id": "c1", "name": "run_shell_command", "displayName": "Shell",
            "args": {"command": "ls -la", "description": "list"}, "status": "success"}
    append(path, user("u1", "list files"))
    append(path, gemini("g1", "I'll list the files."))
    # the tool has run: Gemini writes the same reply again, now with its tool call, and
    # the tool's result as a "user" record without text (seen with 0.61): not a prompt
    append(path, gemini("g1", "I'll list the files.", tools=[call]))
    append(path, line({"id": "r1", "type": "user", "content": [
        {"functionResponse": {"id": "c1", "name": "run_shell_command",
                              "response": {"output": "a b c"}}}]}))
    append(path, gemini("g2", "There are 3 files."))
    append(path, gemini("g2", "There are 3 files.") + line({"$set": {"lastUpdated": "x"}}))
    # the next prompt makes the last reply final at once (no settle wait)
    append(path, user("u2", "thanks"))
    assert await events.wait(4) == [
        ("prompt", "list files"), ("tool", "Shell: ls -la"),
        ("turn_end", "There are 3 files."), ("prompt", "thanks")]


async def test_a_reply_settles_into_a_turn_end(
        follow: tuple[Path, Events, list[TranscriptFollower]], use_inotify: bool) -> None:
    home, events, followers = follow
    folder = chats(home)
    folder.mkdir(parents=True)
    path = folder / f"session-x-{SESSION[:8]}.jsonl"
    path.write_bytes(meta() + user("u1", "hi"))
    await start(followers, gemini_spec(home), events, use_inotify)
    assert await events.wait(1) == [("prompt", "hi")]
    append(path, gemini("g0", ""))  # a tool call's reply without text: not a turn end
    append(path, gemini("g1", "Hello!"))
    assert await events.wait(2) == [("prompt", "hi"), ("turn_end", "Hello!")]


async def test_another_sessions_file_is_not_followed(
        follow: tuple[Path, Events, list[TranscriptFollower]], use_inotify: bool) -> None:
    home, events, followers = follow
    folder = chats(home)
    folder.mkdir(parents=True)
    theirs = folder / f"session-a-{SESSION[:8]}.jsonl"
    theirs.write_bytes(meta(OTHER) + user("x", "not ours"))
    follower = await start(followers, gemini_spec(home), events, use_inotify)
    ours = folder / f"session-b-{SESSION[:8]}.jsonl"
    ours.write_bytes(meta() + user("u1", "ours"))
    assert await events.wait(1) == [("prompt", "ours")]
    assert follower.path == ours


async def test_a_file_rewritten_whole_is_read_again_without_repeats(
        follow: tuple[Path, Events, list[TranscriptFollower]], use_inotify: bool) -> None:
    home, events, followers = follow
    folder = chats(home)
    folder.mkdir(parents=True)
    path = folder / f"session-x-{SESSION[:8]}.jsonl"
    path.write_bytes(meta() + user("u1", "one") + gemini("g1", "first"))
    await start(followers, gemini_spec(home), events, use_inotify)
    assert await events.wait(2) == [("prompt", "one"), ("turn_end", "first")]
    # Gemini rewrites a session atomically (temp file, rename): compacted, then a new turn
    tmp = folder / "rewrite.tmp"
    tmp.write_bytes(meta() + user("u1", "one") + gemini("g1", "first") + user("u2", "two"))
    os.rename(tmp, path)
    assert await events.wait(3) == [("prompt", "one"), ("turn_end", "first"), ("prompt", "two")]
    append(path, gemini("g2", "second"))
    assert await events.wait(4) == [("prompt", "one"), ("turn_end", "first"), ("prompt", "two"),
                                    ("turn_end", "second")]


async def test_without_ids_a_rewrite_skips_the_records_already_read(
        follow: tuple[Path, Events, list[TranscriptFollower]], use_inotify: bool) -> None:
    home, events, followers = follow
    folder = chats(home)
    folder.mkdir(parents=True)
    path = folder / f"session-x-{SESSION[:8]}.jsonl"
    path.write_bytes(meta() + user("u1", "one"))
    await start(followers, gemini_spec(home, id_field=None), events, use_inotify)
    assert await events.wait(1) == [("prompt", "one")]
    tmp = folder / "rewrite.tmp"
    tmp.write_bytes(meta() + user("u1", "one") + user("u2", "two"))
    os.rename(tmp, path)
    assert await events.wait(2) == [("prompt", "one"), ("prompt", "two")]


async def test_a_reply_still_settling_is_reported_on_close(tmp_path: Path) -> None:
    folder = chats(tmp_path)
    folder.mkdir(parents=True)
    (folder / f"session-x-{SESSION[:8]}.jsonl").write_bytes(
        meta() + user("u1", "hi") + gemini("g1", "bye"))
    events = Events()
    follower = TranscriptFollower(gemini_spec(tmp_path, settle_ms=60_000), events)
    await follower.start()
    assert events.summary() == [("prompt", "hi")]  # read at start, the reply still settling
    await follower.close()
    assert events.summary() == [("prompt", "hi"), ("turn_end", "bye")]


async def test_a_bad_line_is_skipped(
        follow: tuple[Path, Events, list[TranscriptFollower]], use_inotify: bool) -> None:
    home, events, followers = follow
    folder = chats(home)
    folder.mkdir(parents=True)
    path = folder / f"session-x-{SESSION[:8]}.jsonl"
    path.write_bytes(meta() + b"{oops\n" + b"[1]\n" + user("u1", "fine"))
    await start(followers, gemini_spec(home), events, use_inotify)
    assert await events.wait(1) == [("prompt", "fine")]


def test_record_text_reads_strings_and_parts() -> None:
    assert record_text("a\nb") == "a\nb"
    assert record_text([{"text": "a"}, {"inlineData": {}}, {"text": "b"}]) == "ab"
    assert record_text({"text": "x"}) == "x"
    assert record_text([{"functionCall": {}}]) is None and record_text(None) is None


def test_watch_dirs_starts_from_the_nearest_existing_directory(tmp_path: Path) -> None:
    pattern = f"{tmp_path}/home/.gemini/tmp/*/chats/session-*-x.jsonl"
    assert watch_dirs(pattern) == [tmp_path]
    (tmp_path / "home" / ".gemini" / "tmp" / "p1" / "chats").mkdir(parents=True)
    (tmp_path / "home" / ".gemini" / "tmp" / "p2").mkdir()
    (tmp_path / "home" / ".gemini" / "tmp" / "file").touch()
    base = tmp_path / "home" / ".gemini" / "tmp"
    assert watch_dirs(pattern) == [base, base / "p1", base / "p2", base / "p1" / "chats"]
