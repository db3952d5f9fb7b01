"""The sidecar itself: a PTY proxy with a group-chat link.

One asyncio loop carries everything, in the manner of a select loop with
nested handlers: bytes from the human go to the agent's PTY, bytes from the
agent go to the human's terminal *first* and only then into the screen model;
timers notice when the agent has gone quiet; the gateway link queues messages
that are injected when it is safe; D-Bus and the gateway read the state.

Injection is safe when: delivery is not paused, the human has no half-typed
line, and (unless the message is urgent) the agent is ready: quiet for the
profile's interval with its prompt on screen and no busy marker.  While a
message is being typed in (paste, pause, submit key), the human's keystrokes
are held back and released right after, so they never splice into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cspd.client import AGENT_ENV, GATEWAY_ENV, ROOM_ENV, gateway_address
from cspd.protocol import Message, now_iso

from .agent_process import AgentProcess
from .capture import Capture
from .control import ChangeListener
from .injection import keystrokes_for
from .keys import LineTracker
from .link import GatewayLink
from .profiles import Profile, apply_to_command, apply_to_env
from .screen import ScreenModel
from .terminal import get_size, is_tty, raw_mode
from .title import PaneTitle

log = logging.getLogger("csp_sidecar")

STDIN, STDOUT = 0, 1
READ_SIZE = 65536
# after an injection, wait for the agent to react before calling it ready again
REACTION_TIMEOUT = 5.0


@dataclass
class Options:
    name: str
    profile: Profile
    command: list[str]
    room: str | None = None
    cwd: str | None = None
    gateway: str | None = None
    env: dict[str, str] = field(default_factory=dict)


class Sidecar:
    """Implements :class:`~csp_sidecar.control.AgentControl`."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.name = options.name
        self.profile_obj = options.profile
        self.profile = options.profile.name
        self.room = options.room or ""
        self.command = list(options.command)
        self.keys = LineTracker()
        self.capture = Capture(options.profile)
        self.title = PaneTitle()
        self.queue: list[Message] = []
        self.injected_ids: set[int] = set()
        self.paused = False
        self.injecting = False
        self.exit_status: int | None = None
        self._listeners: list[ChangeListener] = []
        self._held_input = bytearray()
        self._to_child = bytearray()
        self._last_output = 0.0
        self._last_activity = time.time()
        self._ever_ready = False
        self._injected_at = 0.0
        self._injected_gen = -1
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._capture_timer: asyncio.TimerHandle | None = None
        self._published: dict[str, Any] = {}
        self._done = asyncio.Event()
        self._local_ids = -1
        self._inject_task: asyncio.Task[None] | None = None
        self.child: AgentProcess | None = None
        rows, cols = get_size(STDIN)
        self.screen = ScreenModel(rows, cols)
        self.link = GatewayLink(
            options.name, options.room, options.profile.name, " ".join(options.command),
            on_message=self.receive, on_control=self.control, address=options.gateway)

    # -- AgentControl --------------------------------------------------------

    @property
    def pid(self) -> int:
        return int(self.child.pid) if self.child is not None else 0

    @property
    def queue_length(self) -> int:
        return len(self.queue)

    @property
    def last_activity(self) -> float:
        return self._last_activity

    @property
    def state(self) -> str:
        if self.exit_status is not None or (self.child is not None and self._done.is_set()):
            return "exited"
        if self.paused:
            return "paused"
        if self.is_ready():
            return "ready"
        return "busy" if self._ever_ready else "starting"

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def pause(self) -> None:
        self.paused = True
        self.publish()

    def resume(self) -> None:
        self.paused = False
        self.publish()
        self.try_deliver()

    def inject(self, text: str, sender: str = "dbus") -> None:
        self._local_ids -= 1
        self.receive(Message(id=self._local_ids, room=self.room, sender=sender, to=[self.name],
                             kind="direct", content=text, ts=now_iso()))

    def interrupt(self) -> None:
        self.keys.clear()
        self.write_child(b"\x03")

    # -- messages in ---------------------------------------------------------

    def receive(self, message: Message) -> None:
        """A message for the agent: queue it (once) and deliver when safe."""
        if message.kind == "system":
            return
        if message.id in self.injected_ids:
            # injected before, but the ack was lost: acknowledge again
            asyncio.get_running_loop().create_task(self.link.ack([message.id]))
            return
        if any(m.id == message.id for m in self.queue):
            return
        if message.content.strip() in ("/pause", "/resume"):
            self.injected_ids.add(message.id)
            asyncio.get_running_loop().create_task(self.link.ack([message.id]))
            self.control(message.content.strip()[1:])
            return
        if message.urgent:
            # urgent ones go ahead of the ordinary ones, in their own order
            at = next((i for i, m in enumerate(self.queue) if not m.urgent), len(self.queue))
            self.queue.insert(at, message)
        else:
            self.queue.append(message)
        self.publish()
        self.try_deliver()

    def control(self, action: str) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "pause": self.pause, "resume": self.resume, "interrupt": self.interrupt}
        handler = handlers.get(action)
        if handler is not None:
            handler()

    # -- readiness and delivery ---------------------------------------------

    def is_ready(self) -> bool:
        p = self.profile_obj
        now = time.monotonic()
        if now - self._last_output < p.quiet_ms / 1000:
            return False
        if self.screen.alternate_screen:
            return False
        if (self._injected_gen == self.screen.generation
                and now - self._injected_at < REACTION_TIMEOUT):
            return False  # typed something in and the agent has not reacted yet
        if p.busy_patterns and self.screen.any_line_matches(p.busy_patterns):
            return False
        if p.prompt_patterns and not self.screen.any_line_matches(p.prompt_patterns):
            return False
        self._ever_ready = True
        return True

    def try_deliver(self) -> None:
        if (not self.queue or self.injecting or self.paused or self.keys.dirty
                or self.child is None or self._done.is_set()):
            return
        if not self.profile_obj.is_agent():
            self._drop_for_non_agent()
            return
        message = self.queue[0]
        if not message.urgent and not self.is_ready():
            self._arm_quiet_timer()
            return
        self.injecting = True
        self._inject_task = asyncio.get_running_loop().create_task(self._inject(message))

    def _drop_for_non_agent(self) -> None:
        ids = [m.id for m in self.queue if m.id > 0]
        self.queue.clear()
        self.injected_ids.update(ids)
        if ids:
            asyncio.get_running_loop().create_task(self.link.ack(ids))
        self.publish()

    async def _inject(self, message: Message) -> None:
        try:
            keys = keystrokes_for(message, self.profile_obj, self.name,
                                  self.screen.bracketed_paste)
            self.capture.expect_echo(keys.text)
            self.write_child(keys.payload)
            # the submit key must arrive as its own write, after the CLI took the paste
            await asyncio.sleep(self.profile_obj.submit_delay_ms / 1000)
            if self._done.is_set():
                return
            self.write_child(keys.submit)
            self._expect_reaction()
            self.queue.remove(message)
            if message.id > 0:
                self.injected_ids.add(message.id)
                await self.link.ack([message.id])
        finally:
            self.injecting = False
            if self._held_input:
                held, self._held_input = bytes(self._held_input), bytearray()
                self._from_human(held)
            self.publish()
            self._arm_quiet_timer()

    # -- state publication ---------------------------------------------------

    def publish(self) -> None:
        """Tell listeners (D-Bus), the gateway and the pane title what changed."""
        props = {"State": self.state, "QueueLength": self.queue_length, "Pid": self.pid,
                 "LastActivity": self._last_activity}
        changed = {k: v for k, v in props.items() if self._published.get(k) != v}
        if not changed:
            return
        coarse_change = any(k != "LastActivity" for k in changed)
        self._published.update(changed)
        for listener in self._listeners:
            try:
                listener(changed)
            except Exception:
                log.exception("state listener failed")
        if coarse_change:
            queued = f" · {self.queue_length} queued" if self.queue else ""
            self.title.set(f"{self.name} · {props['State']}{queued}")
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self.link.report_state(
                    state=props["State"], queue=self.queue_length, pid=self.pid))

    # -- the byte pump -------------------------------------------------------

    def write_child(self, data: bytes) -> None:
        """Queue bytes for the agent's PTY; never blocks the loop."""
        if self.child is None or not data:
            return
        self._to_child += data
        self._flush_child()

    def _flush_child(self) -> None:
        assert self.child is not None
        fd = self.child.fd
        loop = asyncio.get_running_loop()
        while self._to_child:
            try:
                n = os.write(fd, self._to_child)
            except BlockingIOError:
                loop.add_writer(fd, self._flush_child)
                return
            except OSError:
                self._to_child.clear()
                break
            del self._to_child[:n]
        loop.remove_writer(fd)

    def _on_stdin(self) -> None:
        try:
            data = os.read(STDIN, READ_SIZE)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return
            data = b""
        if not data:
            # the human's side is gone: pass an end-of-file on if it was a pipe
            asyncio.get_running_loop().remove_reader(STDIN)
            if not is_tty(STDIN) and self.child is not None:
                self.write_child(b"\x04")
            return
        self._last_activity = time.time()
        if self.injecting:
            self._held_input += data
            return
        self._from_human(data)

    def _from_human(self, data: bytes) -> None:
        self.write_child(data)
        was_dirty, submits = self.keys.dirty, self.keys.submits
        self.keys.feed(data)
        if self.keys.submits != submits:
            # the human just gave the agent work: let it react before typing more in
            self._expect_reaction()
        if was_dirty and not self.keys.dirty:
            self.try_deliver()

    def _expect_reaction(self) -> None:
        self._injected_at = time.monotonic()
        self._injected_gen = self.screen.generation

    def _on_child_output(self) -> None:
        assert self.child is not None
        try:
            data = os.read(self.child.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._child_closed()
            return
        _write_all(STDOUT, data)  # the human's view first, untouched
        self._last_output = time.monotonic()
        self._last_activity = time.time()
        self.screen.feed(data)
        self._arm_quiet_timer()
        self._arm_capture_timer()
        if self._published.get("State") == "ready":
            self.publish()

    def _arm_quiet_timer(self) -> None:
        """Wake up when the agent may have become ready; an earlier wake-up wins."""
        if self._done.is_set():
            return
        delay = max(0.0, self._last_output + self.profile_obj.quiet_ms / 1000 - time.monotonic())
        if self._injected_gen == self.screen.generation:
            delay = max(delay, self._injected_at + REACTION_TIMEOUT - time.monotonic())
        loop = asyncio.get_running_loop()
        when = loop.time() + delay + 0.01
        if self._quiet_timer is not None:
            if self._quiet_timer.when() <= when:
                return
            self._quiet_timer.cancel()
        self._quiet_timer = loop.call_at(when, self._on_quiet)

    def _on_quiet(self) -> None:
        self._quiet_timer = None
        if time.monotonic() - self._last_output < self.profile_obj.quiet_ms / 1000:
            self._arm_quiet_timer()
            return
        self.publish()
        self.try_deliver()

    def _arm_capture_timer(self) -> None:
        if not self.profile_obj.capture:
            return
        if self._capture_timer is not None:
            self._capture_timer.cancel()
        self._capture_timer = asyncio.get_running_loop().call_later(
            self.profile_obj.capture_quiet_ms / 1000, self._on_capture)

    def _on_capture(self) -> None:
        self._capture_timer = None
        self.capture.echoes.extend(" ".join(s.split()) for s in self.keys.submitted)
        self.keys.submitted.clear()
        scrolled = self.screen.take_scrolled()
        if self.screen.alternate_screen:
            self.capture.reset(self.screen.lines()[:self.screen.cursor_row])
            return
        lines = self.capture.settle(scrolled, self.screen.lines(), self.screen.cursor_row)
        for chunk in self.capture.chunks(lines):
            self.link.share(chunk)

    def _on_winch(self) -> None:
        rows, cols = get_size(STDIN)
        if self.child is not None:
            self.child.resize(rows, cols)
        self.screen.resize(rows, cols)

    # -- lifecycle -----------------------------------------------------------

    def child_env(self) -> dict[str, str]:
        env = apply_to_env(self.profile_obj, dict(os.environ))
        for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
            env.pop(var, None)
        env.update(self.options.env)
        env[AGENT_ENV] = self.name
        env[ROOM_ENV] = self.room
        env[GATEWAY_ENV] = self.options.gateway or gateway_address()
        return env

    def spawn(self) -> None:
        self.child = AgentProcess(apply_to_command(self.profile_obj, self.command),
                                  cwd=self.options.cwd, env=self.child_env(),
                                  size=get_size(STDIN))
        self.link.pid = self.child.pid

    def _child_closed(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.child is not None
        loop.remove_reader(self.child.fd)
        loop.remove_writer(self.child.fd)
        self._done.set()

    async def run(self) -> int:
        """Run the child to the end; returns the exit status to exit with."""
        loop = asyncio.get_running_loop()
        self.spawn()
        assert self.child is not None
        self.publish()
        tasks = [loop.create_task(self.link.run()), loop.create_task(self.link.run_outbox())]
        loop.add_reader(self.child.fd, self._on_child_output)
        with contextlib.suppress(OSError, ValueError):
            loop.add_reader(STDIN, self._on_stdin)
        loop.add_signal_handler(signal.SIGWINCH, self._on_winch)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_terminate, sig)
        if not is_tty(STDIN):
            loop.add_signal_handler(signal.SIGINT, self.child.signal_group, signal.SIGINT)
        try:
            with raw_mode(STDIN):
                await self._done.wait()
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(STDIN)
            for sig in (signal.SIGWINCH, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                loop.remove_signal_handler(sig)
            status = await self.child.reap()
            self.exit_status = status
            self._restore_modes()
            self.publish()
            await self._flush_outbox()
            for task in tasks:
                task.cancel()
            await self.link.stop()
            await self.title.wait()
        return status

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
            _write_all(STDOUT, resets + b"\x1b[?25h")

    async def _flush_outbox(self) -> None:
        """Share the last captured output if the gateway is there (bounded wait)."""
        if self._capture_timer is not None:
            self._capture_timer.cancel()
            self._on_capture()
        deadline = time.monotonic() + 2.0
        while self.link.outbox and self.link.connected.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select
            select.select([], [fd], [], 1.0)
            continue
        except OSError:
            return  # the terminal vanished; keep serving the agent
        view = view[n:]
