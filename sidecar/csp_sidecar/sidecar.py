"""The sidecar: an agent CLI on a PTY, joined to the group chat.

This module only puts the parts together and runs their life cycle; each
concern has its own module:

* :mod:`.pump` copies bytes between the human's terminal and the agent's PTY;
* :mod:`.screen` models what the agent shows, :mod:`.keys` what the human types;
* :mod:`.readiness` says whether the agent waits for input, from its own turn
  reports (hooks: :mod:`.wiring`, :mod:`.hooks`, :mod:`.transcript`) or its screen;
* :mod:`.delivery` decides when a message may be typed in and types it exactly
  once (:mod:`.journal` keeps the record across crashes);
* :mod:`.capture` reads replies off the screen for CLIs that cannot report them;
* :mod:`.state` tells D-Bus, the gateway and the pane title what goes on;
* :mod:`.link` is the connection to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import termios
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from csp_core.endpoint import AGENT_ENV, AGENT_TOKEN_ENV, GATEWAY_ENV, ROOM_ENV, gateway_address
from csp_core.protocol import HUMAN, Message, now_iso

from .agent_process import AgentProcess
from .capture import Capture
from .command import env_after_wrappers, locate_program
from .control import ChangeListener
from .delivery import Delivery, Facts
from .foreground import ForegroundCheck
from .hooks import HookChannel, HookEvent, socket_path
from .injection import Keystrokes, render_text
from .journal import Journal, journal_path
from .keys import LineTracker
from .link import GatewayLink
from .looplag import LoopLag
from .profiles import Profile, apply_to_command, apply_to_env
from .pump import STDIN, STDOUT, Pump, write_all
from .readiness import STALE_TURN, TURN_BUSY, TURN_IDLE, TURN_WAITING, Readiness
from .screen import ScreenModel
from .state import StatePublisher
from .terminal import get_size, is_tty, raw_mode
from .transcript import TranscriptFollower
from .wiring import RunFacts, Wiring, wire_run

log = logging.getLogger("csp_sidecar")

MAX_SHARE_BYTES = 60_000  # under the gateway's 64 KiB per message


@dataclass
class Options:
    name: str
    profile: Profile
    command: list[str]
    room: str | None = None
    cwd: str | None = None
    gateway: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # the user named the profile (--profile), or a profile knows the program: either
    # way the sidecar knows what it types into; otherwise it types nothing
    profile_known: bool = True


class Sidecar:
    """Implements :class:`~csp_sidecar.control.AgentControl`."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.name = options.name
        self.profile_obj = p = options.profile
        self.profile = p.name
        self.room = options.room or ""
        self.command = list(options.command)
        self.paused = False
        self.exit_status: int | None = None
        self.child: AgentProcess | None = None
        self.pump: Pump | None = None
        self.foreground: ForegroundCheck | None = None
        self.keys = LineTracker(esc_clears=p.esc_clears, backslash_newline=p.backslash_newline)
        rows, cols = get_size(STDIN)
        self.screen = ScreenModel(rows, cols)
        # the CLI reports its turns (hooks...) when its profile says how and the sidecar
        # can add the wiring to its command line (not through `sh -c '...'`)
        self.reported = bool(p.reports) and locate_program(self.command) is not None
        if p.reports and not self.reported:
            log.warning("cannot wire %s's turn reports through %r: reading its screen",
                        p.name, self.command[0] if self.command else "")
        self.readiness = Readiness(p, self.screen, reported=self.reported,
                                   keys_mode=self._keys_mode)
        # replies come from the CLI's reports where it has them, else from the screen
        self.capture = Capture(p) if p.capture and not self.reported else None
        self.link = GatewayLink(
            options.name, options.room, p.name, " ".join(options.command),
            on_message=self.receive, on_control=self.control, address=options.gateway)
        self.states = StatePublisher(self.name, self.link.report_state)
        # read and written only once the name is ours (run): a second sidecar under a
        # taken name must not touch the first one's record
        self.journal = Journal(journal_path(self.name))
        self.delivery = Delivery(
            p, self.name, self.journal, facts=self.facts, write=self._write,
            hold=self._hold, release=self._release,
            bracketed_paste=lambda: self.screen.bracketed_paste, ack=self.link.ack,
            report=self.report, on_typed=self._typed, on_change=self.publish,
            busy=lambda: self.readiness.busy(),
            confirm_by_report=self.reported and p.reports.get("confirm") == "report")
        self.session = str(uuid.uuid4())
        self.hooks: HookChannel | None = None
        self.transcript: TranscriptFollower | None = None
        self.wiring: Wiring | None = None
        self._last_activity = time.time()
        self._done = asyncio.Event()
        self._local_ids = -1
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._capture_timer: asyncio.TimerHandle | None = None
        self._pumping = False
        self._lag: LoopLag | None = None

    # -- AgentControl --------------------------------------------------------

    @property
    def pid(self) -> int:
        return int(self.child.pid) if self.child is not None else 0

    @property
    def queue_length(self) -> int:
        return len(self.delivery.queue)

    @property
    def reason(self) -> str:
        return self.delivery.reason if self.delivery.queue else ""

    @property
    def last_activity(self) -> float:
        return self._last_activity

    @property
    def state(self) -> str:
        if self.exit_status is not None or (self.child is not None and self._done.is_set()):
            return "exited"
        if self.paused:
            return "paused"
        if not self.readiness.check_started(self.profile_obj.quiet_ms / 1000):
            return "starting"
        if self.readiness.waiting_for_human():
            return "waiting"
        if self.delivery.typing or self.readiness.busy():
            return "busy"
        if self.readiness.needs_quiet() and (
                self.readiness.quiet_for() < self.profile_obj.quiet_ms / 1000):
            return "busy"
        return "ready"

    def add_listener(self, listener: ChangeListener) -> None:
        self.states.add_listener(listener)

    def pause(self) -> None:
        self.paused = True
        self.publish()

    def resume(self) -> None:
        self.paused = False
        self.publish()
        self.delivery.kick()

    def inject(self, text: str, sender: str = "dbus") -> None:
        self._local_ids -= 1
        self.receive(Message(id=self._local_ids, room=self.room, sender=sender, to=[self.name],
                             kind="direct", content=text, ts=now_iso()))

    def interrupt(self) -> None:
        self.keys.clear()
        self._write(b"\x03")

    def control(self, action: str, frame: dict[str, Any] | None = None) -> None:
        """An action from the gateway (``cspctl pause NAME``, the loop guard)."""
        if action == "drop_relays":
            self._drop_relays(str((frame or {}).get("room", "")))
            return
        handler = {"pause": self.pause, "resume": self.resume,
                   "interrupt": self.interrupt}.get(action)
        if handler is not None:
            handler()

    def _drop_relays(self, room: str) -> None:
        """The room's loop guard stopped relaying: agents' queued messages are not typed."""
        dropped = self.delivery.queue.take(lambda m: m.room == room and m.hops > 0)
        ids = [m.id for m in dropped if m.id > 0]
        if ids:
            log.info("relay stopped in #%s: dropping queued relays %s", room, ids)
            asyncio.get_running_loop().create_task(self.link.ack(ids))
            self.publish()

    # -- messages in ---------------------------------------------------------

    def receive(self, message: Message) -> None:
        """A message for the agent: queued once, typed in when :func:`decide` says so."""
        if message.kind == "system":
            return
        if message.sender == HUMAN and message.content.strip() in ("/pause", "/resume"):
            self.delivery.submitted.add(message.id)
            asyncio.get_running_loop().create_task(self.link.ack([message.id]))
            self.control(message.content.strip()[1:])
            return
        self.delivery.receive(message)

    def facts(self) -> Facts:
        r, p = self.readiness, self.profile_obj
        return Facts(
            paused=self.paused,
            refuse=self._refusal(),
            started=r.check_started(p.quiet_ms / 1000) and self.child is not None,
            foreground=self._foreground(),
            alternate_screen=self.screen.alternate_screen,
            waiting_for_human=r.waiting_for_human(),
            draft=self.keys.dirty,
            unconfirmed=self.delivery.unconfirmed,
            busy=r.busy(),
            quiet_for=r.quiet_for(),
            needs_quiet=r.needs_quiet())

    def _refusal(self) -> str | None:
        if not self.profile_obj.is_agent():
            return f"the {self.profile} profile never takes typed chat"
        if not self.options.profile_known:
            program = self.command[0] if self.command else "?"
            return (f"no profile knows {program!r}: nothing is typed in until one is named "
                    "(csp-sidecar --profile NAME)")
        return None

    def _keys_mode(self) -> str:
        """Does the agent's terminal hand it keys (raw) or lines (canonical mode)?"""
        if self.child is None:
            return "unknown"
        try:
            lflag = termios.tcgetattr(self.child.fd)[3]
        except (termios.error, OSError):
            return "unknown"
        return "lines" if lflag & termios.ICANON else "keys"

    def _foreground(self) -> str | None:
        if self.foreground is None or self.child is None or self._done.is_set():
            return "the agent is not running"
        return self.foreground.blocker(self.child.fd)

    # -- typing in -----------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.pump is not None:
            self.pump.write_child(data)

    def _hold(self) -> None:
        if self.pump is not None:
            self.pump.hold_human()

    def _release(self) -> None:
        if self.pump is not None:
            self.pump.release_human()

    def _typed(self, keys: Keystrokes) -> None:
        if self.capture is not None:
            self.capture.expect_echo(keys.text)
        self.readiness.note_submit()

    def report(self, text: str) -> None:
        """Say something about delivery in the room (as this agent's output)."""
        log.warning("%s", text)
        self.link.share(f"⚠ csp: {text}")

    # -- the human's keys ----------------------------------------------------

    def _on_human(self, data: bytes) -> None:
        self._write(data)
        self._last_activity = time.time()
        was_dirty, submits = self.keys.dirty, self.keys.submits
        self.keys.feed(data)
        if self.readiness.turn == TURN_WAITING:
            self.readiness.note_report(TURN_BUSY)  # the human answers the agent's question
        if self.keys.submits != submits:
            self.readiness.note_submit()  # the human gave the agent work
        if was_dirty and not self.keys.dirty:
            self.delivery.kick()
        self.publish()

    # -- the agent's output --------------------------------------------------

    def _on_output(self, data: bytes) -> None:
        self._last_activity = time.time()
        self.screen.feed(data)
        self._schedule_pump()
        self.readiness.note_output()
        self._arm_quiet_timer()
        if self.capture is not None:
            self._arm_capture_timer()
        if self.states.get("State") == "ready":
            self.publish()

    def _watch_start(self) -> None:
        """Until the CLI has been ready once, look again now and then: a program that
        prints nothing gives no event to look again on."""
        started = self.readiness.check_started(self.profile_obj.quiet_ms / 1000)
        self.publish()
        if not started and not self._done.is_set():
            asyncio.get_running_loop().call_later(0.25, self._watch_start)
        else:
            self._rehearse()
            self.delivery.kick()

    def _rehearse(self) -> None:
        """Go through a delivery's checks once, typing nothing, as soon as the CLI is ready.

        The first message a sidecar types in took it two to three times as long as the
        next ones (`make bench`, fanout_50 and fanout_200: first_message_*): Python
        running that code for the first time in the process, its regexes and caches
        still to make.  With an ``@all`` to many agents just started, that was the
        slowest message of all."""
        try:
            self.facts()
            # render_text, not keystrokes_for: a profile with a tiny max_paste_bytes would
            # have the rehearsal spill a file; rendering touches nothing
            render_text(Message(0, self.room, HUMAN, [self.name], "chat", "rehearsal",
                                now_iso()), self.profile_obj)
        except Exception:  # only ever a head start: a real message runs it all again
            log.debug("rehearsal failed", exc_info=True)

    def _schedule_pump(self) -> None:
        """Emulate queued output in slices between other events, so no single look at
        the screen (readiness, capture) has a flood to catch up on."""
        if not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._pump_screen)

    def _pump_screen(self) -> None:
        if self.screen.pump():
            asyncio.get_running_loop().call_soon(self._pump_screen)
        else:
            self._pumping = False

    def _arm_quiet_timer(self) -> None:
        """Look again once the output has been quiet for the profile's time."""
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
        self._quiet_timer = asyncio.get_running_loop().call_later(
            self.profile_obj.quiet_ms / 1000 + 0.01, self._on_quiet)

    def _on_quiet(self) -> None:
        self._quiet_timer = None
        if not self.reported and not self.readiness.busy():
            self.delivery.turn_ended()  # the screen says it is waiting for input again
        self.publish()
        self.delivery.kick()
        if self.reported and self.readiness.turn == TURN_BUSY and not self._done.is_set():
            # a turn that ends without its report (the human interrupted, dismissed a
            # menu) is over once the screen has looked idle long enough: look again then
            wait = max(STALE_TURN, self.profile_obj.quiet_ms / 1000) - self.readiness.quiet_for()
            self._quiet_timer = asyncio.get_running_loop().call_later(
                max(wait, 0.05) + 0.01, self._on_quiet)

    def _arm_capture_timer(self) -> None:
        if self._capture_timer is not None:
            self._capture_timer.cancel()
        self._capture_timer = asyncio.get_running_loop().call_later(
            self.profile_obj.capture_quiet_ms / 1000, self._on_capture)

    def _on_capture(self) -> None:
        self._capture_timer = None
        if self.capture is None:
            return
        typed, self.keys.submitted = list(self.keys.submitted), []
        for chunk in self.capture.take(self.screen, typed):
            self.link.share(chunk)
        if self.capture.more:  # bounded work per call: the rest right after other events
            self._capture_timer = asyncio.get_running_loop().call_later(0, self._on_capture)

    # -- the CLI's own reports -----------------------------------------------

    def _on_report(self, event: HookEvent) -> None:
        """A turn event from the CLI's hooks or transcript."""
        log.debug("report: %s", event.kind)
        if event.kind == "prompt":
            self.readiness.note_report(TURN_BUSY)
            self.delivery.confirm(event.prompt or "")
        elif event.kind == "turn_end":
            if event.prompt:
                self.delivery.confirm(event.prompt)
            self.readiness.note_report(TURN_IDLE)
            # the next prompt first: the reply's posting and the journal can wait a moment,
            # the agent's next turn is the latency that shows
            self.delivery.kick()
            if event.reply and event.reply.strip():
                self._share_reply(event.reply)
            self.delivery.turn_ended()
        elif event.kind == "waiting":
            self.readiness.note_report(TURN_WAITING)
        elif event.kind == "tool":
            self.readiness.note_report(TURN_BUSY)
            if self.profile_obj.reports.get("share_tools") and event.detail:
                self.link.share(event.detail)
        self.publish()
        self.delivery.kick()

    def _share_reply(self, reply: str) -> None:
        for chunk in split_for_sharing(reply.strip("\n"), MAX_SHARE_BYTES):
            self.link.share(chunk)

    # -- state ---------------------------------------------------------------

    def publish(self) -> None:
        self.states.changed(self._properties)

    def _properties(self) -> dict[str, Any]:
        return {"State": self.state, "QueueLength": self.queue_length, "Reason": self.reason,
                "Pid": self.pid, "LastActivity": self._last_activity}

    # -- lifecycle -----------------------------------------------------------

    def child_env(self, wiring: Wiring | None) -> dict[str, str]:
        env = apply_to_env(self.profile_obj, os.environ)
        for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
            env.pop(var, None)
        env.update(self.options.env)
        env[AGENT_ENV] = self.name
        env[AGENT_TOKEN_ENV] = self.link.agent_credential()  # never the owner's token
        env[ROOM_ENV] = self.room
        env[GATEWAY_ENV] = self.options.gateway or gateway_address()
        if wiring is not None:
            env.update(wiring.env)
        return env

    def child_command(self, wiring: Wiring | None) -> list[str]:
        command = apply_to_command(self.profile_obj, self.command)
        at = locate_program(command)
        if wiring is not None and at is not None:
            command = wiring.apply(command, at=at)
        return command

    async def _wire(self) -> Wiring | None:
        """Ask the CLI to report its turns, for this run only (never in the user's files)."""
        if not self.reported:
            return None
        env = env_after_wrappers(
            self.command, {**apply_to_env(self.profile_obj, os.environ), **self.options.env})
        wiring = wire_run(self.profile_obj, RunFacts(
            agent=self.name, hook_socket=socket_path(self.name), env=env,
            command=self.command, cwd=self.options.cwd or os.getcwd(), session=self.session))
        for note in wiring.notes:
            log.info("wiring: %s", note)
        if wiring.hooks is not None:
            self.hooks = HookChannel(socket_path(self.name), self._on_report, wiring.hooks)
            await self.hooks.start()
        if wiring.transcript is not None:
            self.transcript = TranscriptFollower(wiring.transcript, self._on_report)
            await self.transcript.start()
        return wiring

    def spawn(self, wiring: Wiring | None) -> None:
        command = self.child_command(wiring)
        self.child = AgentProcess(command, cwd=self.options.cwd, env=self.child_env(wiring),
                                  size=get_size(STDIN))
        self.link.pid = self.child.pid
        self.foreground = ForegroundCheck.for_agent(
            self.child.pid, self.command, self.profile_obj,
            profile_named=self.options.profile_known)

    def _child_closed(self) -> None:
        if self._lag is not None:
            self._lag.stop()  # what the human sees while the agent runs; not the wrap-up
        self._done.set()

    async def run(self) -> int:
        """Run the child to the end; returns the exit status to exit with."""
        loop = asyncio.get_running_loop()
        recovered = self.journal.recover()
        self.delivery.submitted |= recovered.submitted
        self.journal.open()
        self.wiring = await self._wire()
        self.spawn(self.wiring)
        assert self.child is not None
        self.pump = Pump(self.child.fd, on_human=self._on_human, on_output=self._on_output,
                         on_closed=self._child_closed)
        self.publish()
        for m in recovered.unanswered:
            self.report(f"{self.name} stopped (its sidecar was ended) before answering "
                        f"message #{m.id} from {m.sender}; it was not answered")
        tasks = [loop.create_task(self.link.run()), loop.create_task(self.link.run_outbox())]
        self.pump.start()
        self._watch_start()
        gc.freeze()  # what start-up made lives as long as we do: keep it out of GC passes
        lag = self._lag = LoopLag.from_env()
        if lag is not None:
            lag.start()
        loop.add_signal_handler(signal.SIGWINCH, self._on_winch)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_terminate, sig)
        if not is_tty(STDIN):
            loop.add_signal_handler(signal.SIGINT, self.child.signal_group, signal.SIGINT)
        try:
            with raw_mode(STDIN):
                await self._done.wait()
        finally:
            self.pump.stop()
            for sig in (signal.SIGWINCH, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                loop.remove_signal_handler(sig)
            status = await self.child.reap()
            self.exit_status = status
            if self.foreground is not None:
                self.foreground.close()
            self.delivery.interrupted(f"exited (status {status})")
            self.delivery.close()
            self._restore_modes()
            self.publish()
            self.states.flush()
            await self._close_reports()
            await self._flush_outbox()
            for task in tasks:
                task.cancel()
            await self.link.stop()
            await self.states.wait()
            self.journal.close()
            if lag is not None:
                lag.write()
        return status

    async def _close_reports(self) -> None:
        for part in (self.transcript, self.hooks):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.close()
        if self.wiring is not None:
            self.wiring.cleanup()

    def _on_winch(self) -> None:
        rows, cols = get_size(STDIN)
        if self.child is not None:
            self.child.resize(rows, cols)
        self.screen.resize(rows, cols)

    def _on_terminate(self, sig: int) -> None:
        """The sidecar is told to go (pane closed, systemd, kill): the agent goes too."""
        if self.child is not None:
            asyncio.get_running_loop().create_task(self.child.end_group(signal.SIGHUP))

    def _restore_modes(self) -> None:
        """Leave the human's terminal usable even if the agent died mid-screen."""
        if not is_tty(STDOUT):
            return
        resets = b""
        if self.screen.alternate_screen:
            resets += b"\x1b[?1049l"
        if self.screen.bracketed_paste:
            resets += b"\x1b[?2004l"
        if resets:
            write_all(STDOUT, resets + b"\x1b[?25h")

    async def _flush_outbox(self) -> None:
        """Share the last captured output if the gateway is there (bounded wait)."""
        if self._capture_timer is not None:
            self._capture_timer.cancel()
            self._on_capture()
        deadline = time.monotonic() + 2.0
        while self.link.outbox and self.link.connected.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def split_for_sharing(text: str, limit: int) -> list[str]:
    """Cut a reply longer than one message allows at line ends (rarely needed)."""
    if len(text.encode()) <= limit:
        return [text]
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if current and len(candidate.encode()) > limit:
            out.append(current)
            current = line
        else:
            current = candidate
        while len(current.encode()) > limit:  # one huge line
            cut = len(current.encode()[:limit].decode(errors="ignore"))
            out.append(current[:cut])
            current = current[cut:]
    if current:
        out.append(current)
    return out
