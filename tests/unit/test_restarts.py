"""Crash-loop pacing (cspd/restarts.py, csp_core/startrecord.py): the record, the waits,
and what systemd is told."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from csp_core import startrecord
from csp_core.startrecord import HEALTHY, StartRecord
from cspd.notify import Notifier
from cspd.restarts import MAX_DELAY, Pacer, delay_for
from tests.unit.conftest import datagrams


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sleeps the pacer asked for (none really happen)."""
    asked: list[float] = []
    monkeypatch.setattr("cspd.restarts.time.sleep", asked.append)
    return asked


def test_the_first_unclean_ends_cost_nothing_then_the_wait_doubles_up_to_a_cap() -> None:
    assert [delay_for(n) for n in range(10)] == [0, 0, 0, 0.5, 1, 2, 4, 8, MAX_DELAY, MAX_DELAY]


def test_only_quick_unclean_runs_in_a_row_count() -> None:
    now = 1000.0
    quick = StartRecord(starts=[(990.0, 0.0), (994.0, 0.5), (997.0, 1.0)], clean=False)
    assert quick.failures(now) == 3
    assert StartRecord(starts=quick.starts, clean=True).failures(now) == 0
    # a run that served long enough ends the streak: only what came after it counts
    healthy = StartRecord(starts=[(100.0, 0.0), (100.0 + HEALTHY + 5, 0.0)], clean=False)
    assert healthy.failures(100.0 + HEALTHY + 6) == 1
    # the wait a run chose is not time it served
    waited = StartRecord(starts=[(100.0, HEALTHY)], clean=False)
    assert waited.failures(100.0 + HEALTHY + 1) == 1


def test_a_damaged_record_is_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "starts.json"
    path.write_text("{not json")
    assert StartRecord.load(path) == StartRecord()
    assert StartRecord.load(tmp_path / "missing.json") == StartRecord()


def test_off_systemd_nothing_is_recorded_or_waited(tmp_path: Path, waits: list[float],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    path = tmp_path / "starts.json"
    pacer = Pacer(Notifier(), path)
    for _ in range(6):
        assert pacer.start()
    pacer.failed("boom")
    pacer.clean()
    assert not path.exists() and waits == []


def test_a_crash_loop_waits_and_says_why(tmp_path: Path, notify_socket: socket.socket,
                                         waits: list[float]) -> None:
    path = tmp_path / "starts.json"
    for _ in range(3):  # three runs that each died without a clean stop
        assert Pacer(Notifier(), path).start()
    Pacer(Notifier(), path).failed("config.toml: gateway.x must be int\nmore detail")
    assert waits == [] and datagrams(notify_socket) == []

    assert Pacer(Notifier(), path).start()
    assert waits == [0.5]
    sent = datagrams(notify_socket)
    assert sent[0] == f"EXTEND_TIMEOUT_USEC={int(30.5 * 1_000_000)}"
    assert sent[1] == ("STATUS=crash loop: 3 unclean ends in a row (last run: config.toml: "
                       "gateway.x must be int); waiting 0.5 s before starting again")
    assert sent[2] == "STATUS=starting"
    assert startrecord.streak(path) == (4, "config.toml: gateway.x must be int")

    Pacer(Notifier(), path).start()
    assert waits == [0.5, 1.0]

    # a clean stop forgets the streak
    Pacer(Notifier(), path).clean()
    assert startrecord.streak(path) is None
    assert Pacer(Notifier(), path).start()
    assert waits == [0.5, 1.0]


def test_a_stop_while_waiting_leaves_quietly_and_clean(tmp_path: Path,
                                                       notify_socket: socket.socket,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "starts.json"
    for _ in range(3):
        Pacer(Notifier(), path).start()

    def sleep_until_stopped(seconds: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # systemctl stop, mid-wait

    monkeypatch.setattr("cspd.restarts.time.sleep", sleep_until_stopped)
    previous = signal.getsignal(signal.SIGTERM)
    assert Pacer(Notifier(), path).start() is False
    assert signal.getsignal(signal.SIGTERM) is previous  # put back
    assert StartRecord.load(path).clean
