"""A state directory that is full or read-only: new messages are refused with a
503 ``storage_unavailable`` (never a 201, so never acknowledged), reads keep
working, and writes resume by themselves once space returns.

Root ignores permission bits, so an unwritable directory proves nothing here:
the database lives on a real, small tmpfs mounted for the test (filled up, or
remounted read-only) and unmounted afterwards.  Without the right to mount, the
tests skip and say why.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cspd.store import StorageUnavailable
from tests.unit.conftest import Api, start_api, stop_api
from tests.unit.test_stream import connect, next_message, post


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def state_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 4 MiB tmpfs where the gateway keeps its database (tmp_path/state)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem for the database needs root")
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    where = tmp_path / "state"
    where.mkdir()
    done = _mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the filesystem; returns the file that holds them."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


async def history_contents(api: Api) -> list[str]:
    """What people said, oldest first (the gateway's joined/left notices left out)."""
    r = await api.client.get("/v1/messages", params={"limit": "100"}, headers=api.headers())
    assert r.status == 200, await r.text()
    return [m["content"] for m in (await r.json())["messages"] if m["kind"] != "system"]


async def refused(api: Api, content: str) -> dict[str, Any]:
    r = await api.client.post("/v1/messages", json={"to": ["@all"], "content": content},
                              headers=api.headers())
    body: dict[str, Any] = await r.json()
    assert r.status == 503, (r.status, body)
    assert body["error"] == "storage_unavailable", body
    assert "nothing was stored" in body["message"]
    return body


async def test_full_disk_refuses_messages_keeps_reads_and_recovers(state_fs: Path) -> None:
    api = await start_api(state_fs.parent)
    try:
        ws = await connect(api, agent="codex")  # an agent with a delivery pending
        await ws.close()
        waiting = [await post(api, [], "before"), await post(api, ["@codex"], "for codex")]
        filler = fill(state_fs)

        body = await refused(api, "x" * 2000)
        assert "full" in body["reason"], body
        await refused(api, "a short one")
        with pytest.raises(StorageUnavailable):  # an ack is a write too
            await api.gw.store.ack("codex", waiting)
        assert api.gw.store.write_error is not None

        # reads keep working: history, agents, health, a watcher's replay
        assert await history_contents(api) == ["before", "for codex"]
        r = await api.client.get("/v1/agents", headers=api.headers())
        assert r.status == 200 and (await r.json())["agents"][0]["pending"] == 2
        r = await api.client.get("/v1/health", headers=api.headers())
        assert r.status == 200
        watcher = await connect(api, since="0")
        assert (await next_message(watcher))["content"] == "before"
        await watcher.close()

        filler.unlink()  # space returns: writes resume without a restart
        await post(api, [], "after")
        assert await history_contents(api) == ["before", "for codex", "after"]
        assert await api.gw.store.ack("codex", waiting) == 2
        assert api.gw.store.write_error is None
    finally:
        await stop_api(api)
    db = sqlite3.connect(state_fs / "csp.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


async def test_read_only_state_directory_serves_reads_and_recovers(state_fs: Path) -> None:
    api = await start_api(state_fs.parent)
    try:
        await post(api, [], "stored earlier")
    finally:
        await stop_api(api)
    done = _mount("-o", "remount,ro", str(state_fs))
    assert done.returncode == 0, done.stderr

    api = await start_api(state_fs.parent)  # starts, read-only
    try:
        assert api.gw.store.read_only
        assert await history_contents(api) == ["stored earlier"]
        body = await refused(api, "not now")
        assert "read-only" in body["reason"].lower() or "readonly" in body["reason"], body

        done = _mount("-o", "remount,rw", str(state_fs))
        assert done.returncode == 0, done.stderr
        await post(api, [], "writable again")  # reopened for writing, no restart
        assert not api.gw.store.read_only
        assert await history_contents(api) == ["stored earlier", "writable again"]
    finally:
        await stop_api(api)
