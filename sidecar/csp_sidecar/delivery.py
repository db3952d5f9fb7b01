"""When a chat message may be typed into the agent, and typing it exactly once.

The policy is :func:`decide`, one function that reads top to bottom: every
message, urgent or not, passes every safety gate.  Urgent changes only how
long to wait for the agent to be idle (and lets a message go in while a turn
runs, where the CLI queues typed prompts); it never opens a gate.

:class:`Delivery` holds the queue and carries a decision out: it takes the
next batch (queued messages coalesce into one prompt), records it in the
journal, types it with the human's keys held back, submits it, and
acknowledges it to the gateway once the CLI confirms it took the prompt (its
hook), or right after the submit key for CLIs that cannot say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from csp_core.protocol import Message

from .injection import Keystrokes, keystrokes_for, take_batch
from .journal import Journal
from .profiles import Profile

log = logging.getLogger("csp_sidecar.delivery")


@dataclass(frozen=True)
class Facts:
    """What the sidecar knows right now, for :func:`decide`."""

    paused: bool
    refuse: str | None  # why this agent never takes typed chat (a shell; no profile)
    started: bool  # the CLI has been ready for input at least once
    foreground: str | None  # what runs in the foreground instead of the agent
    alternate_screen: bool
    waiting_for_human: bool  # a permission or question prompt, a menu
    draft: bool  # the human has a half-typed input
    unconfirmed: bool  # the last prompt we typed has not been taken yet
    busy: bool  # a turn is in progress
    quiet_for: float  # seconds since the agent's last output
    needs_quiet: bool  # False right after the CLI reported its turn's end


@dataclass(frozen=True)
class Decision:
    go: bool
    reason: str = ""  # why it waits, for the state the human sees
    retry_in: float | None = None  # ask again after this long (None: on the next event)


def decide(facts: Facts, profile: Profile, urgent: bool) -> Decision:
    """May the next message be typed in now?  Every gate applies to every message."""
    if facts.paused:
        return Decision(False, "paused")
    if facts.refuse:
        return Decision(False, facts.refuse)
    if not facts.started:
        return Decision(False, "the agent has not shown its prompt yet", 0.1)
    if facts.foreground:
        return Decision(False, facts.foreground, 0.5)
    if facts.alternate_screen:
        return Decision(False, "a full-screen program is open (alternate screen)", 0.5)
    if facts.waiting_for_human:
        return Decision(False, "the agent waits for its human (a prompt or menu is open)", 0.5)
    if facts.draft:
        return Decision(False, "the human has a half-typed line")
    if facts.unconfirmed:
        return Decision(False, "the agent has not taken the last message yet")
    if facts.busy and not urgent:
        return Decision(False, "the agent is busy", 0.25)
    quiet = (profile.urgent_quiet_ms if urgent else profile.quiet_ms) / 1000
    if facts.needs_quiet and facts.quiet_for < quiet:
        return Decision(False, "", quiet - facts.quiet_for + 0.005)
    return Decision(True)


@dataclass
class Pending:
    """A typed batch whose prompt the CLI has not confirmed yet."""

    batch: list[Message]
    keys: Keystrokes
    deadline: float
    tries: int = 1


@dataclass
class Queue:
    """Messages waiting for the agent: urgent ones first, each kind in arrival order."""

    items: list[Message] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, message_id: int) -> bool:
        return any(m.id == message_id for m in self.items)

    def add(self, message: Message) -> None:
        if message.urgent:
            at = next((i for i, m in enumerate(self.items) if not m.urgent), len(self.items))
            self.items.insert(at, message)
        else:
            self.items.append(message)

    def remove(self, batch: list[Message]) -> None:
        ids = {m.id for m in batch}
        self.items = [m for m in self.items if m.id not in ids]

    def take(self, which: Callable[[Message], bool]) -> list[Message]:
        """Remove and return the messages ``which`` picks."""
        out = [m for m in self.items if which(m)]
        self.items = [m for m in self.items if not which(m)]
        return out


class Delivery:
    """The queue and the typing of it; the sidecar supplies the facts and the writes."""

    def __init__(self, profile: Profile, agent: str, journal: Journal, *,
                 facts: Callable[[], Facts],
                 write: Callable[[bytes], None],
                 hold: Callable[[], None], release: Callable[[], None],
                 bracketed_paste: Callable[[], bool],
                 ack: Callable[[list[int]], Awaitable[object]],
                 report: Callable[[str], None],
                 on_typed: Callable[[Keystrokes], None],
                 on_change: Callable[[], None],
                 busy: Callable[[], bool],
                 confirm_by_report: bool) -> None:
        self.profile = profile
        self.agent = agent
        self.journal = journal
        self.queue = Queue()
        self.submitted: set[int] = set()  # typed and submitted (also in earlier runs)
        self.pending: Pending | None = None
        self.in_turn: list[Message] = []  # the last batch typed in, until its turn ends
        self.reason = ""
        self.typing = False
        self.confirm_by_report = confirm_by_report
        self._facts = facts
        self._write = write
        self._hold, self._release = hold, release
        self._bracketed = bracketed_paste
        self._ack = ack
        self._report = report
        self._on_typed = on_typed
        self._on_change = on_change
        self._busy = busy
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    # -- messages in ---------------------------------------------------------

    def receive(self, message: Message) -> None:
        """Queue a message once; one typed before (this run or the last) is only acked."""
        if message.id in self.submitted:
            self._spawn(self._ack([message.id]))
            return
        if message.id in self.queue or (self.pending and any(
                m.id == message.id for m in self.pending.batch)):
            return
        self.queue.add(message)
        self.kick()  # type first (when it may), tell the world after
        self._on_change()

    # -- the decision --------------------------------------------------------

    def kick(self) -> None:
        """Something changed: decide again (cheap; call it freely)."""
        if self.closed or self.typing:
            return
        self._check_pending()  # also with nothing queued: an unconfirmed prompt times out
        if not self.queue:
            self._set_reason("")
            return
        decision = decide(self._facts(), self.profile, self.queue.items[0].urgent)
        self._set_reason(decision.reason)
        if decision.go:
            self._type_next()
        elif decision.retry_in is not None:
            self._arm(decision.retry_in)

    def _set_reason(self, reason: str) -> None:
        if reason != self.reason:
            self.reason = reason
            self._on_change()

    def _arm(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.kick()

    # -- typing --------------------------------------------------------------

    def _type_next(self) -> None:
        """Type the next batch in: its paste now, in this call, the submit key later.

        The paste is written before this returns, not from a task: a task would start
        only after everything else the loop has ready (at a turn's end, the reply's
        posting and the screen's update: some 10 ms), and a turn's end to the next
        prompt is a latency csp promises (<= 50 ms).  The submit key follows after the
        profile's delay, from a task started then: nothing more is made in this call
        (in a fan-out every agent's sidecar wakes at once, and what each does before
        it sleeps again delays the pastes of the others).
        """
        self.typing = True
        loop = asyncio.get_running_loop()
        try:
            batch = take_batch(self.queue.items, self.profile)
            keys = keystrokes_for(batch, self.profile, self.agent, self._bracketed())
            if keys is None:  # nothing would show: nothing to type, nothing to wait for
                self.queue.remove(batch)
                self._task = loop.create_task(
                    self._finish(self._ack([m.id for m in batch if m.id > 0])))
                return
            self._paste(batch, keys)
        except Exception:
            log.exception("typing a message in failed")
            self.typing = False
            self._on_change()
            loop.call_soon(self.kick)  # not from inside kick
            return
        loop.call_later(self.profile.submit_delay_ms / 1000, self._start_submit, batch, keys)

    def _start_submit(self, batch: list[Message], keys: Keystrokes) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._finish(self._submit(batch, keys)))

    async def _finish(self, rest: Awaitable[object]) -> None:
        try:
            await rest
        except Exception:
            log.exception("typing a message in failed")
        finally:
            self.typing = False
            self._on_change()
            if not self.closed:
                self.kick()

    def _paste(self, batch: list[Message], keys: Keystrokes) -> None:
        """Journal the batch, hold the human's keys back, write the paste."""
        log.debug("typing in message(s) %s", [m.id for m in batch])
        self.journal.typing(batch)
        self._hold()
        try:
            self._on_typed(keys)
            self._write(keys.payload)
        except BaseException:
            self._release()
            raise

    async def _submit(self, batch: list[Message], keys: Keystrokes) -> None:
        """The submit key, as its own write once the CLI took the paste (the profile's
        delay after it); then the records."""
        ids = [m.id for m in batch if m.id > 0]
        try:
            if self.closed:
                return
            self._write(keys.submit)
        finally:
            self._release()
        self.queue.remove(batch)
        self.submitted.update(m.id for m in batch)
        self.journal.submitted([m.id for m in batch])
        self.turn_ended()  # a turn still open on an earlier batch ends with this one
        self.in_turn = list(batch)
        if self.confirm_by_report:
            timeout = self.profile.confirm_timeout_ms / 1000
            self.pending = Pending(batch, keys, time.monotonic() + timeout)
            self._arm(timeout)
        elif ids:
            await self._ack(ids)

    # -- confirmation --------------------------------------------------------

    def confirm(self, prompt: str) -> None:
        """The CLI reported a prompt: if it is the one we typed, it is taken: ack it."""
        pending = self.pending
        if pending is None or not _same_prompt(prompt, pending.keys.text):
            return
        self.pending = None
        ids = [m.id for m in pending.batch if m.id > 0]
        if ids:
            self._spawn(self._ack(ids))
        self.kick()

    def _check_pending(self) -> None:
        """A prompt not confirmed in time is submitted once more, then reported."""
        pending = self.pending
        if pending is None or time.monotonic() < pending.deadline:
            return
        if self._busy():
            # typed in during a turn (urgent): the CLI takes it when that turn ends
            pending.deadline = time.monotonic() + self.profile.confirm_timeout_ms / 1000
            self._arm(self.profile.confirm_timeout_ms / 1000)
            return
        if pending.tries == 1:
            log.warning("the agent did not confirm message(s) %s; pressing submit again",
                        [m.id for m in pending.batch])
            pending.tries = 2
            pending.deadline = time.monotonic() + self.profile.confirm_timeout_ms / 1000
            self._write(pending.keys.submit)
            self._arm(self.profile.confirm_timeout_ms / 1000)
            return
        self.pending = None
        ids = [m.id for m in pending.batch if m.id > 0]
        self._report(f"{self.agent} did not confirm that it took message(s) "
                     f"{', '.join('#' + str(i) for i in ids) or '(local)'}; "
                     "it may not have seen them")
        if ids:
            self._spawn(self._ack(ids))

    @property
    def unconfirmed(self) -> bool:
        self._check_pending()
        return self.pending is not None

    # -- turns ---------------------------------------------------------------

    def turn_ended(self) -> None:
        """The agent's turn on what we typed is over: nothing to report if it dies now."""
        if self.in_turn:
            self.journal.answered([m.id for m in self.in_turn])
            self.in_turn = []

    def interrupted(self, why: str) -> None:
        """The CLI went away mid-turn: say so in the room for what it was answering."""
        for m in self.in_turn:
            self._report(f"{self.agent} {why} before answering message #{m.id} from "
                         f"{m.sender}; it was not answered")
        self.turn_ended()

    # -- plumbing ------------------------------------------------------------

    def _spawn(self, coro: Awaitable[object]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("acknowledging failed")
        asyncio.get_running_loop().create_task(run())

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _norm(text: str) -> str:
    return " ".join(text.split())


def _same_prompt(reported: str, typed: str) -> bool:
    """Does the CLI's reported prompt hold what we typed (it may add or fold text)?"""
    a, b = _norm(reported), _norm(typed)
    if not a or not b:
        return False
    head = b[:200]
    return head in a or a in b
