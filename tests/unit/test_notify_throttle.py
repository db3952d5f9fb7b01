"""STATUS= is sent when the text changes, at most a few times a second (issue #10)."""

from __future__ import annotations

import asyncio
import socket

from cspd import notify
from cspd.notify import STATUS_INTERVAL, Notifier
from tests.polling import async_wait_for
from tests.unit.conftest import datagrams


async def next_datagrams(sock: socket.socket) -> list[str]:
    """Poll until the deferred send arrives (one throttle interval, give or take)."""
    got: list[str] = []

    async def arrived() -> bool:
        got.extend(datagrams(sock))
        return bool(got)
    await async_wait_for(arrived, timeout=5, what="a deferred STATUS=")
    return got


async def nothing_more(sock: socket.socket) -> None:
    """No datagram within two throttle intervals (absence takes a bounded wait)."""
    await asyncio.sleep(STATUS_INTERVAL * 2)
    assert datagrams(sock) == []


async def test_a_burst_of_changes_sends_the_first_and_then_the_newest(
        notify_socket: socket.socket) -> None:
    n = Notifier()
    for i in range(200):
        n.status(f"{i} messages")
    assert datagrams(notify_socket) == ["STATUS=0 messages"]
    assert await next_datagrams(notify_socket) == ["STATUS=199 messages"]
    await nothing_more(notify_socket)  # nothing new, nothing sent


async def test_an_unchanged_text_is_not_sent_again(notify_socket: socket.socket) -> None:
    n = Notifier()
    n.status("same")
    assert datagrams(notify_socket) == ["STATUS=same"]
    n.status("same")
    n.status("same")
    await nothing_more(notify_socket)


async def test_back_to_the_sent_text_within_the_interval_sends_nothing(
        notify_socket: socket.socket) -> None:
    n = Notifier()
    n.status("a")
    n.status("b")
    n.status("a")
    assert datagrams(notify_socket) == ["STATUS=a"]
    await nothing_more(notify_socket)


async def test_sustained_load_stays_under_the_rate(notify_socket: socket.socket) -> None:
    n = Notifier()
    loop = asyncio.get_running_loop()
    began = loop.time()
    i = 0
    while loop.time() - began < 1.0:
        n.status(f"{i} messages")
        i += 1
        await asyncio.sleep(0.002)  # the load: a post every 2 ms, not a synchronisation
    sent = datagrams(notify_socket)

    async def newest_arrived() -> bool:
        sent.extend(datagrams(notify_socket))
        return sent[-1] == f"STATUS={i - 1} messages"
    await async_wait_for(newest_arrived, timeout=5, what="the newest status")
    assert i > 100
    assert len(sent) <= notify.STATUS_PER_SECOND + 2, sent
    assert sent[-1] == f"STATUS={i - 1} messages"


async def test_stopping_wins_over_a_pending_status(notify_socket: socket.socket) -> None:
    n = Notifier()
    n.status("1 message")
    n.status("2 messages")  # deferred
    n.stopping()
    n.status("3 messages")  # a watcher leaving during shutdown
    assert datagrams(notify_socket) == ["STATUS=1 message", "STOPPING=1\nSTATUS=stopping"]
    await nothing_more(notify_socket)


async def test_ready_after_a_reload_sends_the_status_at_once(
        notify_socket: socket.socket) -> None:
    n = Notifier()
    n.status("1 message")
    n.reloading()
    n.ready("1 message")
    assert datagrams(notify_socket) == ["STATUS=1 message",
                                        "RELOADING=1\nSTATUS=reloading configuration",
                                        "STATUS=1 message", "READY=1"]


async def test_a_text_given_as_a_function_is_worked_out_only_when_it_may_be_sent(
        notify_socket: socket.socket) -> None:
    """The gateway passes its status as a function (it counts every agent online): while
    a send is due, a burst of posts makes no text at all; the send makes the newest."""
    n = Notifier()
    made: list[int] = []
    count = 0

    def text() -> str:
        made.append(count)
        return f"{count} messages"

    for count in range(1, 201):  # noqa: B007  (text() reads it)
        n.status(text)
    assert datagrams(notify_socket) == ["STATUS=1 messages"]
    assert made == [1, 2]  # the first send, and the second call (not yet due: compared)
    assert await next_datagrams(notify_socket) == ["STATUS=200 messages"]
    assert made == [1, 2, 200]
