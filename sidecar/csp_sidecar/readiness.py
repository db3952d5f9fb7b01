"""Is the agent ready for input?  What the screen shows and what the CLI says.

Two sources, the better one winning:

* the CLI's own reports (hooks, a notify program, a transcript: see
  :mod:`csp_sidecar.wiring`): a prompt received means busy, a turn's end
  means ready at once, a permission or question prompt means it waits for its
  human.  Exact, and no timer is needed.
* the screen, for CLIs without reports and as a fallback: output quiet for a
  while, the profile's prompt pattern on screen, no busy pattern, no menu.

Either way, nothing is typed before the CLI has been ready for input once:
a CLI flushes its input when it switches its terminal to raw mode at start,
so a message typed before then is lost.  Ready the first time means its
prompt on screen (a profile with prompt patterns), else bracketed paste
turned on, else the terminal already in raw mode (the program switched, and
flushed), else, for a program reading lines, something printed (or 2 s of
silence); each after the output has been quiet for the profile's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .profiles import Profile
from .screen import ScreenModel

# after typing something in, wait this long for the agent to react (its screen to
# change, or its hook to say it took the prompt) before the screen may call it ready
REACTION_TIMEOUT = 5.0
# a turn end the CLI reported is believed over the screen for this long (its last
# frames may still show a spinner when the hook fires)
REPORT_TRUST = 2.0
# a reported turn that never ended (Claude Code's Stop hook does not fire when the
# human interrupts) is taken as over once the screen has looked idle this long
STALE_TURN = 3.0
# a program reading lines that has printed nothing is taken as ready after this long
# (cat, a script's read): a CLI that flushes its input at start prints before then
QUIET_START = 2.0

TURN_IDLE, TURN_BUSY, TURN_WAITING = "idle", "busy", "waiting"


class Readiness:
    def __init__(self, profile: Profile, screen: ScreenModel, *, reported: bool,
                 keys_mode: Callable[[], str] = lambda: "unknown") -> None:
        self.profile = profile
        self.screen = screen
        # how the terminal delivers keys now: "keys" (the program reads them one by one,
        # it is at its input), "lines" (the terminal's line editing), or "unknown"
        self.keys_mode = keys_mode
        self.output_seen = False
        self.created = time.monotonic()
        # the CLI reports its turns (hooks): its word beats the screen's look
        self.reported = reported
        self.turn = TURN_IDLE
        self.started = False
        self.last_output = 0.0  # time.monotonic() of the agent's last output
        self._reacted_gen = -1  # screen generation when we (or the human) submitted
        self._reaction_at = 0.0
        self._turn_end_at = 0.0

    # -- what happened -------------------------------------------------------

    def note_output(self) -> None:
        self.last_output = time.monotonic()
        self.output_seen = True

    def note_submit(self) -> None:
        """Something was submitted: the agent should react before it counts as ready."""
        self._reaction_at = time.monotonic()
        self._reacted_gen = self.screen.generation
        if self.reported:
            self.turn = TURN_BUSY

    def note_report(self, turn: str) -> None:
        """The CLI said: a prompt arrived (busy), the turn ended (idle), it waits (waiting)."""
        self.turn = turn
        self._reacted_gen = -1
        if turn == TURN_IDLE:
            self.started = True
            self._turn_end_at = time.monotonic()

    # -- what it means -------------------------------------------------------

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_output

    def menu_open(self) -> bool:
        """A permission prompt or another menu is on screen (typing would answer it)."""
        patterns = self.profile.menu_patterns
        return bool(patterns) and self.screen.any_line_matches(patterns)

    def waiting_for_human(self) -> bool:
        return self.turn == TURN_WAITING or self.menu_open()

    def awaiting_reaction(self) -> bool:
        return (self._reacted_gen == self.screen.generation
                and time.monotonic() - self._reaction_at < REACTION_TIMEOUT)

    def screen_idle(self) -> bool:
        """The screen looks like the CLI waits for input (quietness aside)."""
        p = self.profile
        if p.busy_patterns and self.screen.any_line_matches(p.busy_patterns):
            return False
        return not p.prompt_patterns or self.screen.any_line_matches(p.prompt_patterns)

    def check_started(self, quiet: float) -> bool:
        """Has the CLI been ready for input at least once?  Latches."""
        if self.started:
            return True
        if self.screen.alternate_screen or self.quiet_for() < quiet:
            return False
        if self.profile.prompt_patterns:
            ok = self.screen_idle()
        elif self.screen.bracketed_paste:
            ok = True  # it asked for pastes: it reads its input
        else:
            # no prompt to look for: it must read keys itself (raw mode: it switched
            # already, flushing what came before), or read lines and have said something
            mode = self.keys_mode()
            ok = mode == "keys" or (mode == "lines" and (
                self.output_seen or time.monotonic() - self.created >= QUIET_START))
        self.started = ok
        return ok

    def busy(self) -> bool:
        """A turn is in progress (the CLI said so, or its screen shows it)."""
        if self.awaiting_reaction():
            return True
        if self.reported and self.turn == TURN_BUSY:
            if self.screen_idle() and self.quiet_for() >= max(STALE_TURN, self._quiet()):
                self.turn = TURN_IDLE  # interrupted without a turn end: the screen wins
                return False
            return True
        if self._fresh_turn_end():
            return False
        return not self.screen_idle()

    def needs_quiet(self) -> bool:
        """After a reported turn end no quiet spell is needed: the CLI said it is ready."""
        return not self._fresh_turn_end()

    def _fresh_turn_end(self) -> bool:
        return (self.reported and self.turn == TURN_IDLE
                and time.monotonic() - self._turn_end_at < REPORT_TRUST)

    def _quiet(self) -> float:
        return self.profile.quiet_ms / 1000
