"""Local abuse of the gateway's HTTP edge (issue #10), end to end.

* Another local user (``nobody``) opens 1,000 half-sent requests on the TCP port of a
  real ``cspd`` that has systemd's 1,024 file limit and no room to raise it: the
  owner's ``cspctl send`` over the unix socket is still served at once, and every
  flooding connection is answered (503 at the cap, 408 at the head deadline).
* A WebSocket watcher that stops reading delays no other watcher, holds no more than
  a send buffer, and is dropped after the stall deadline.
* 100 clients connecting, posting, watching and leaving at random, abruptly or not,
  for a bounded time: afterwards the gateway holds exactly the file descriptors and
  tasks it held before.

The last two run the real app and listeners in-process (:class:`EdgeGateway`) so
that deadlines can be short and tasks counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from csp_core import quick
from csp_core.protocol import API
from cspd.gateway import HttpLimits
from tests.conftest import CspEnv, require
from tests.httpedge import EdgeGateway, TcpGatewayProcess, fd_count
from tests.polling import async_wait_for, wait_for

pytestmark = pytest.mark.integration

FLOOD_CONNECTIONS = 1000
GATEWAY_NOFILE = 1024  # systemd's soft limit for a user service

# -- 1,000 half-open TCP connections from another uid ----------------------------

FLOOD = r"""
import json, os, socket, sys, time
port, count, wait = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held, errors = [], 0
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")  # and no more
    except OSError:
        errors += 1
        s.close()
        continue
    held.append(s)
print(json.dumps({"uid": os.getuid(), "connected": len(held), "errors": errors}), flush=True)
sys.stdin.readline()  # hold them until the owner has been served
answers = {}
deadline = time.monotonic() + wait
for s in held:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        data = s.recv(64)
        key = data[:12].decode("latin-1") if data else "closed"
    except socket.timeout:
        key = "held"
    except OSError as exc:
        key = type(exc).__name__
    answers[key] = answers.get(key, 0) + 1
    s.close()
print(json.dumps(answers), flush=True)
"""


def _as_nobody(nofile: int) -> Callable[[], None]:
    user = pwd.getpwnam("nobody")

    def drop() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    return drop


def _python_for_nobody() -> str | None:
    """An interpreter ``nobody`` may run (the venv's may live under /root): the flood
    needs only the standard library."""
    for candidate in (sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3"):
        if not candidate:
            continue
        try:
            r = subprocess.run([candidate, "-c", "pass"], preexec_fn=_as_nobody(256),
                               capture_output=True, timeout=30, check=False)
        except OSError:  # exec refused: a directory on its path is closed to nobody
            continue
        if r.returncode == 0:
            return candidate
    return None


@pytest.fixture
def tcp_gateway(csp_env: CspEnv) -> Iterator[TcpGatewayProcess]:
    gw = TcpGatewayProcess(csp_env, nofile=GATEWAY_NOFILE)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def _timed_send(csp_env: CspEnv, text: str) -> float:
    start = time.monotonic()
    r = csp_env.cspctl("send", "@all", text, timeout=60)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    return elapsed


def test_half_open_flood_from_another_user_leaves_the_owner_served(
        csp_env: CspEnv, tcp_gateway: TcpGatewayProcess,
        monkeypatch: pytest.MonkeyPatch) -> None:
    require(os.geteuid() == 0, "flooding as another uid (nobody) needs root")
    python = _python_for_nobody()
    require(python is not None, "no Python interpreter that user nobody may run")
    assert python is not None
    monkeypatch.setenv("XDG_RUNTIME_DIR", csp_env.env["XDG_RUNTIME_DIR"])
    monkeypatch.delenv("CSP_GATEWAY", raising=False)
    baseline = _timed_send(csp_env, "before the flood")

    head_deadline = HttpLimits().head_timeout
    flood = subprocess.Popen([python, "-c", FLOOD, str(tcp_gateway.port),
                              str(FLOOD_CONNECTIONS), str(head_deadline + 10)],
                             preexec_fn=_as_nobody(4096), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert flood.stdout is not None and flood.stdin is not None
        opened = json.loads(flood.stdout.readline() or "null")
        assert opened is not None, flood.stderr.read() if flood.stderr else ""
        assert opened["uid"] == pwd.getpwnam("nobody").pw_uid
        assert opened["connected"] + opened["errors"] == FLOOD_CONNECTIONS

        # the owner, over the unix socket, while the 1,000 are held
        start = time.monotonic()
        sent = quick.call("POST", f"{API}/messages", timeout=10,
                          body={"to": ["@all"], "content": "during the flood"})
        request_time = time.monotonic() - start
        assert sent["content"] == "during the flood"
        under_flood = _timed_send(csp_env, "during the flood, by cspctl")
        gateway_fds = fd_count(tcp_gateway.pid)
        print(f"\nowner's request under the flood: {request_time * 1000:.0f} ms; "
              f"cspctl send: {under_flood * 1000:.0f} ms (before the flood: "
              f"{baseline * 1000:.0f} ms); gateway fds: {gateway_fds}/{GATEWAY_NOFILE}")
        assert request_time < 1.0
        assert under_flood < baseline + 1.0
        assert gateway_fds < GATEWAY_NOFILE

        # the owner over TCP is refused like anyone else, at once and in JSON
        with socket.create_connection(("127.0.0.1", tcp_gateway.port), timeout=5) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "busy"

        # then every flooding connection has had its answer: none is held any more
        flood.stdin.write("report\n")
        flood.stdin.flush()
        answers = json.loads(flood.stdout.readline() or "null")
    finally:
        flood.kill()
        flood.wait(timeout=10)
    print(f"flood connections' answers: {answers}")
    assert answers.get("held", 0) == 0, answers
    assert answers.get("HTTP/1.1 408", 0) >= 1 and answers.get("HTTP/1.1 503", 0) >= 1
    assert answers["HTTP/1.1 408"] + answers["HTTP/1.1 503"] >= opened["connected"] - 5

    # TCP serves again once the flood is gone, and the gateway never ran out of fds
    wait_for(lambda: quick.call("GET", f"{API}/health", timeout=5,
                                address=f"http://127.0.0.1:{tcp_gateway.port}")["ok"],
             timeout=15, what="TCP to serve again")
    log = tcp_gateway.log.read_text()
    assert "Too many open files" not in log
    assert "TCP connection limit (256) reached" in log
    assert "Traceback" not in log


# -- a WebSocket watcher that stops reading ---------------------------------------

UPGRADE = ("GET /v1/stream?since={since} HTTP/1.1\r\nHost: localhost\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "Authorization: Bearer {token}\r\n\r\n")


async def _stalled_watcher(edge: EdgeGateway) -> socket.socket:
    """A watcher that completes the upgrade and then reads nothing, ever."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(s, str(edge.socket_path))
    await loop.sock_sendall(s, UPGRADE.format(since=edge.gw.store.last_id,
                                              token=edge.token).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(s, 1), 10)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[Callable[[EdgeGateway],
                                                            aiohttp.ClientSession]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(edge: EdgeGateway) -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(edge.socket_path)),
                                  headers={"Authorization": f"Bearer {edge.token}"})
        sessions.append(s)
        return s
    yield make
    for s in sessions:
        await s.close()


@pytest.fixture
async def start_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> AsyncIterator[Callable[..., Any]]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    started: list[EdgeGateway] = []

    async def start(**limits: float) -> EdgeGateway:
        edge = await EdgeGateway.start(tmp_path, HttpLimits(**limits))
        started.append(edge)
        return edge
    yield start
    for edge in started:
        await edge.stop()


BIG = "x" * 30_000


async def _post_many(http: aiohttp.ClientSession, count: int, tag: str) -> None:
    for batch in range(0, count, 10):
        resps = await asyncio.gather(*(
            http.post(f"http://localhost{API}/messages",
                      json={"to": ["@all"], "content": f"{tag} {i} {BIG}"})
            for i in range(batch, min(batch + 10, count))))
        for r in resps:
            assert r.status == 201, await r.text()
            r.release()


async def _receive(ws: aiohttp.ClientWebSocketResponse, count: int, tag: str) -> list[int]:
    got: list[int] = []
    while len(got) < count:
        frame = await ws.receive_json(timeout=20)
        if frame.get("type") == "message" and frame["message"]["content"].startswith(tag):
            got.append(int(frame["message"]["content"].split()[1]))
    return got


async def test_a_watcher_that_stops_reading_delays_no_one_and_holds_one_buffer(
        start_edge: Callable[..., Any], session: Callable[..., aiohttp.ClientSession]) -> None:
    edge = await start_edge(stall_timeout=120.0)  # not dropped during this test
    http = session(edge)
    stalled = await _stalled_watcher(edge)
    try:
        healthy = await http.ws_connect(f"http://localhost{API}/stream",
                                        params={"since": str(edge.gw.store.last_id)})
        await async_wait_for(_watchers(edge, 2), timeout=10, what="two watchers")
        buffered = []
        for tag in ("a", "b", "c"):  # 3 x 3 MB for the stalled watcher
            poster = asyncio.create_task(_post_many(http, 100, tag))
            # all, in order, while the stalled one is still there
            assert await _receive(healthy, 100, tag) == list(range(100))
            await poster
            assert len(edge.gw.hub.watchers) == 2
            buffered.append(_largest_send_buffer(edge))
        # what the gateway buffers for the stalled one: a bounded send buffer that
        # does not grow with what it is sent (the rest waits in its hub queue, which
        # the stall deadline empties: the next test)
        print(f"\nsend buffer of the stalled watcher after 100, 200, 300 messages: {buffered}")
        assert buffered[0] <= 512 * 1024 and buffered[2] <= buffered[0] + 64 * 1024, buffered
        await healthy.close()
    finally:
        stalled.close()


async def test_a_watcher_that_stops_reading_is_dropped_at_the_stall_deadline(
        start_edge: Callable[..., Any], session: Callable[..., aiohttp.ClientSession]) -> None:
    edge = await start_edge(stall_timeout=1.0)
    http = session(edge)
    stalled = await _stalled_watcher(edge)
    try:
        healthy = await http.ws_connect(f"http://localhost{API}/stream",
                                        params={"since": str(edge.gw.store.last_id)})
        await async_wait_for(_watchers(edge, 2), timeout=10, what="two watchers")
        await _post_many(http, 100, "m")
        assert await _receive(healthy, 100, "m") == list(range(100))
        # its subscriber (and the frames queued for it) goes with the connection
        await async_wait_for(_watchers(edge, 1), timeout=20, what="the stalled one dropped")
        await _post_many(http, 1, "after")
        assert await _receive(healthy, 1, "after") == [0]
        # and the stalled client, were it to look, finds its connection gone
        stalled.setblocking(True)
        stalled.settimeout(10)
        with pytest.raises((ConnectionError, EOFError)):
            while stalled.recv(1 << 20):
                pass
            raise EOFError
        await healthy.close()
    finally:
        stalled.close()


def _largest_send_buffer(edge: EdgeGateway) -> int:
    server = edge.runner.server
    assert server is not None
    return max(h.transport.get_write_buffer_size() for h in server.connections
               if h.transport is not None)


def _watchers(edge: EdgeGateway, n: int) -> Callable[[], Any]:
    async def check() -> bool:
        return len(edge.gw.hub.watchers) == n
    return check


# -- 100 clients coming and going at random: nothing leaks ----------------------

CHURN = r"""
import asyncio, json, random, socket, struct, sys
import aiohttp

sock_path, port, token, seconds, clients, seed = sys.argv[1:7]
port, seconds, clients, seed = int(port), float(seconds), int(clients), int(seed)
AUTH = f"Authorization: Bearer {token}\r\n".encode()
UPGRADE = (b"GET /v1/stream?since=0 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n" + AUTH + b"\r\n")
done = {}


async def raw(rnd):
    if rnd.random() < 0.5:
        return await asyncio.open_unix_connection(sock_path)
    return await asyncio.open_connection("127.0.0.1", port)


def session(rnd):
    if rnd.random() < 0.5:
        conn, base = aiohttp.UnixConnector(path=sock_path), "http://localhost"
    else:
        conn, base = aiohttp.TCPConnector(), f"http://127.0.0.1:{port}"
    return aiohttp.ClientSession(connector=conn, headers={"Authorization": f"Bearer {token}"}), base


def rst(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def post(rnd, i):
    s, base = session(rnd)
    async with s:
        for n in range(rnd.randint(1, 3)):
            async with s.post(base + "/v1/messages",
                              json={"to": ["@all"], "content": f"churn {i} {n}"}) as r:
                await r.read()


async def watch(rnd, i):
    s, base = session(rnd)
    async with s:
        params = {"since": str(rnd.randint(0, 50))}
        if rnd.random() < 0.3:
            params["agent"] = f"churn{i}"
        async with s.ws_connect(base + "/v1/stream", params=params) as ws:
            for _ in range(rnd.randint(0, 20)):
                try:
                    await ws.receive(timeout=rnd.uniform(0.01, 0.3))
                except asyncio.TimeoutError:
                    break
            if rnd.random() < 0.3:
                await ws.send_json({"type": "ping"})
            if rnd.random() < 0.3:
                ws._response.connection.transport.abort()  # no close frame


async def raw_ws_then_vanish(rnd, i):
    reader, writer = await raw(rnd)
    writer.write(UPGRADE)
    await reader.read(rnd.randint(1, 4096))
    rst(writer) if rnd.random() < 0.5 else writer.close()


async def half_head(rnd, i):
    reader, writer = await raw(rnd)
    writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n"[:rnd.randint(0, 30)])
    await asyncio.sleep(rnd.uniform(0, 0.3))
    rst(writer) if rnd.random() < 0.5 else writer.close()


async def abandon(rnd, i):
    reader, writer = await raw(rnd)
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n" + AUTH
                 + b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
                 + b'{"to":["@all"],"content":"abandoned"}   '[:rnd.randint(0, 40)])
    await asyncio.sleep(rnd.uniform(0, 0.2))
    rst(writer) if rnd.random() < 0.5 else writer.close()


async def garbage(rnd, i):
    reader, writer = await raw(rnd)
    writer.write(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 200))) + b"\r\n\r\n")
    try:
        await asyncio.wait_for(reader.read(), 2)
    finally:
        writer.close()


async def connect_close(rnd, i):
    reader, writer = await raw(rnd)
    rst(writer) if rnd.random() < 0.5 else writer.close()


ACTIONS = [post, post, watch, watch, raw_ws_then_vanish, half_head, abandon, garbage,
           connect_close]


async def client(i, end):
    rnd = random.Random(seed * 1000 + i)
    loop = asyncio.get_running_loop()
    while loop.time() < end:
        action = rnd.choice(ACTIONS)
        try:
            await asyncio.wait_for(action(rnd, i), 5)
            done[action.__name__] = done.get(action.__name__, 0) + 1
        except Exception as exc:
            key = f"{action.__name__}:{type(exc).__name__}"
            done[key] = done.get(key, 0) + 1


async def main():
    end = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(client(i, end) for i in range(clients)))
    print(json.dumps(done), flush=True)

asyncio.run(main())
"""


async def test_clients_coming_and_going_at_random_leak_nothing(
        start_edge: Callable[..., Any], session: Callable[..., aiohttp.ClientSession]) -> None:
    edge = await start_edge(head_timeout=2.0, lingering_time=0.5, stall_timeout=5.0)
    http = session(edge)
    # warm up everything created once (store threads, the first WebSocket, keep-alive)
    await _post_many(http, 1, "warm")
    ws = await http.ws_connect(f"http://localhost{API}/stream", params={"since": "0"})
    await ws.receive_json(timeout=10)
    await ws.close()
    await http.close()
    await async_wait_for(_settled(edge), timeout=15, what="the warm-up to settle")
    fds, tasks = fd_count(), len(asyncio.all_tasks())

    seed = int(os.environ.get("CSP_CHURN_SEED", "10"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHURN, str(edge.socket_path), str(edge.port), edge.token,
        "6", "100", str(seed), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    done = json.loads(out)
    print(f"\nchurn (seed {seed}): {done}")
    assert sum(done.values()) >= 300
    assert done.get("post", 0) >= 20 and done.get("watch", 0) >= 20

    async def back_to_baseline() -> bool:
        return (await _settled(edge)() and fd_count() == fds
                and len(asyncio.all_tasks()) == tasks)
    try:
        await async_wait_for(back_to_baseline, timeout=30, what="fds and tasks back")
    except AssertionError:
        raise AssertionError(
            f"fds {fd_count()} (before {fds}), tasks {len(asyncio.all_tasks())} (before "
            f"{tasks}), open unix {edge.unix_site.open} tcp {edge.tcp_site.open}, "
            f"watchers {len(edge.gw.hub.watchers)}, agents {list(edge.gw.hub.agents)}: "
            f"{[t.get_coro() for t in asyncio.all_tasks()]}") from None
    # and it still serves
    http = session(edge)
    await _post_many(http, 1, "after")


def _settled(edge: EdgeGateway) -> Callable[[], Any]:
    async def check() -> bool:
        return (edge.unix_site.open == 0 and edge.tcp_site.open == 0
                and not edge.gw.hub.watchers and not edge.gw.hub.agents
                and not edge.runner.server.connections)  # type: ignore[union-attr]
    return check
