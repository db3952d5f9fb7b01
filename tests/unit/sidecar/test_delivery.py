"""The delivery policy and its exactly-once record, without a terminal."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from csp_core.protocol import Message
from csp_sidecar.delivery import Decision, Delivery, Facts, Queue, decide
from csp_sidecar.journal import Journal
from csp_sidecar.profiles import load_profile
from tests.polling import async_wait_for

IDLE = Facts(paused=False, refuse=None, started=True, foreground=None, alternate_screen=False,
             waiting_for_human=False, draft=False, unconfirmed=False, busy=False,
             quiet_for=10.0, needs_quiet=True)
PROFILE = load_profile("claude")

# every gate, as the fact that closes it
GATES = {
    "paused": {"paused": True},
    "refused": {"refuse": "the shell profile never takes typed chat"},
    "not started": {"started": False},
    "foreground": {"foreground": "bash is in the foreground"},
    "alternate screen": {"alternate_screen": True},
    "menu": {"waiting_for_human": True},
    "draft": {"draft": True},
    "unconfirmed": {"unconfirmed": True},
}


def message(i: int, urgent: bool = False, room: str = "main", hops: int = 0) -> Message:
    return Message(id=i, room=room, sender="human", to=["fa"], kind="direct",
                   content=f"m{i}", ts="2026-12-01T00:00:00Z", urgent=urgent, hops=hops)


def test_an_idle_agent_takes_a_message() -> None:
    assert decide(IDLE, PROFILE, urgent=False) == Decision(True)


@pytest.mark.parametrize("urgent", [False, True], ids=["ordinary", "urgent"])
@pytest.mark.parametrize("gate", sorted(GATES))
def test_every_gate_holds_every_message(gate: str, urgent: bool) -> None:
    facts = dataclasses.replace(IDLE, **GATES[gate])
    decision = decide(facts, PROFILE, urgent=urgent)
    assert not decision.go
    assert decision.reason  # the human is told why


def test_urgent_only_shortens_the_wait_for_idle() -> None:
    busy = dataclasses.replace(IDLE, busy=True)
    assert not decide(busy, PROFILE, urgent=False).go
    assert decide(busy, PROFILE, urgent=True).go  # the CLI queues a prompt typed mid-turn
    recent = dataclasses.replace(IDLE, quiet_for=(PROFILE.urgent_quiet_ms + 10) / 1000)
    assert not decide(recent, PROFILE, urgent=False).go
    assert decide(recent, PROFILE, urgent=True).go


def test_a_reported_turn_end_needs_no_quiet_spell() -> None:
    just_ended = dataclasses.replace(IDLE, quiet_for=0.0, needs_quiet=False)
    assert decide(just_ended, PROFILE, urgent=False).go
    still_printing = dataclasses.replace(IDLE, quiet_for=0.0)
    waiting = decide(still_printing, PROFILE, urgent=False)
    assert not waiting.go and waiting.retry_in is not None and waiting.retry_in > 0


def test_urgent_messages_go_first_each_kind_in_order() -> None:
    q = Queue()
    for m in (message(1), message(2, urgent=True), message(3), message(4, urgent=True)):
        q.add(m)
    assert [m.id for m in q.items] == [2, 4, 1, 3]
    assert 3 in q and 9 not in q
    assert [m.id for m in q.take(lambda m: m.id % 2 == 1)] == [1, 3]
    assert [m.id for m in q.items] == [2, 4]


# -- the journal -------------------------------------------------------------------


def test_a_submitted_message_is_remembered_across_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "fa.journal"
    first = Journal(path)
    first.open()
    first.typing([message(1), message(2)])
    first.submitted([1, 2])
    first.typing([message(3)])  # crash while typing 3: the CLI died with the paste
    # (no close: a kill -9)
    recovered = Journal(path).recover()
    assert recovered.submitted == {1, 2}
    assert [m.id for m in recovered.unanswered] == [1, 2]  # their turn never ended
    assert {m.sender for m in recovered.unanswered} == {"human"}  # named in the report
    assert path.stat().st_mode & 0o777 == 0o600
    assert "m1" not in path.read_text()  # ids and senders only, not the text


def test_a_journal_with_whole_messages_is_still_read(tmp_path: Path) -> None:
    # earlier sidecars wrote each typed message whole
    path = tmp_path / "fa.journal"
    path.write_text(json.dumps({"op": "typing", "ids": [4],
                                "messages": [message(4).to_json()]}) + "\n"
                    + json.dumps({"op": "submitted", "ids": [4]}) + "\n")
    recovered = Journal(path).recover()
    assert recovered.submitted == {4}
    assert [(m.id, m.sender) for m in recovered.unanswered] == [(4, "human")]


def test_an_answered_turn_is_not_reported_again(tmp_path: Path) -> None:
    path = tmp_path / "fa.journal"
    j = Journal(path)
    j.open()
    j.typing([message(1)])
    j.submitted([1])
    j.answered([1])
    j.close()
    recovered = Journal(path).recover()
    assert recovered.submitted == {1} and recovered.unanswered == []


def test_reopening_compacts_but_keeps_what_a_replay_needs(tmp_path: Path) -> None:
    path = tmp_path / "fa.journal"
    j = Journal(path)
    j.open()
    for i in range(1, 50):
        j.typing([message(i)])
        j.submitted([i])
        j.answered([i])
    j.close()
    size = path.stat().st_size
    again = Journal(path)
    again.open()
    again.close()
    assert path.stat().st_size < size / 10
    assert Journal(path).recover().submitted == set(range(1, 50))


def test_a_line_cut_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "fa.journal"
    j = Journal(path)
    j.open()
    j.typing([message(7)])
    j.submitted([7])
    j.close()
    with path.open("a") as fh:
        fh.write('{"op": "submitted", "ids": [8')  # the write a kill cut short
    assert Journal(path).recover().submitted == {7}


# -- typing and confirmation, with stand-ins for the terminal and the gateway --------


class Harness:
    """A Delivery wired to lists instead of a PTY and a gateway."""

    def __init__(self, tmp_path: Path, **profile: Any) -> None:
        prof = dataclasses.replace(PROFILE, submit_delay_ms=1, **profile)
        self.facts = IDLE
        self.written: list[bytes] = []
        self.acked: list[int] = []
        self.reports: list[str] = []
        self.journal = Journal(tmp_path / "fa.journal")
        self.delivery = Delivery(
            prof, "fa", self.journal, facts=lambda: self.facts, write=self.written.append,
            hold=lambda: None, release=lambda: None, bracketed_paste=lambda: True,
            ack=self._ack, report=self.reports.append, on_typed=lambda keys: None,
            on_change=lambda: None, busy=lambda: False, confirm_by_report=True)

    async def _ack(self, ids: list[int]) -> None:
        self.acked.extend(ids)


async def test_a_confirmed_prompt_is_acknowledged(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.delivery.receive(message(1))
    await async_wait_for(_async(lambda: h.delivery.pending), what="typed, awaiting")
    assert h.written[-1] == b"\r" and h.acked == []
    h.delivery.confirm("[human → @fa] m1")
    await async_wait_for(_async(lambda: h.acked == [1]), what="acknowledged")
    assert h.reports == []


async def test_an_unconfirmed_prompt_is_submitted_again_then_reported(tmp_path: Path) -> None:
    h = Harness(tmp_path, confirm_timeout_ms=50)
    h.delivery.receive(message(1))
    await async_wait_for(_async(lambda: h.reports), what="the report")
    assert h.written.count(b"\r") == 2  # the submit key once more, then it gave up
    assert "did not confirm" in h.reports[0] and "#1" in h.reports[0]
    assert h.acked == [1]  # reported, so it is not replayed forever


async def test_queued_messages_go_in_as_one_prompt(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.facts = dataclasses.replace(IDLE, draft=True)  # held back while the human types
    for i in (1, 2, 3):
        h.delivery.receive(message(i))
    h.facts = IDLE
    h.delivery.kick()
    await async_wait_for(_async(lambda: h.delivery.pending), what="typed")
    pastes = [w for w in h.written if w != b"\r"]
    assert len(pastes) == 1 and all(f"m{i}".encode() in pastes[0] for i in (1, 2, 3))
    h.delivery.confirm("[human → @fa] m1\n\n[human → @fa] m2\n\n[human → @fa] m3")
    await async_wait_for(_async(lambda: sorted(h.acked) == [1, 2, 3]), what="all acked")


def _async(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return check()
    return run
