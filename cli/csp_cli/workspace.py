"""The tmux session of ``cspctl attach``: build it, add agents, end it cleanly.

Panes carry tmux user options so csp can find them again whatever the user did
to the window: ``@csp_role`` (``chat`` or ``agent``) and ``@csp_agent`` (the
agent's name).  Agent panes run ``sh -c WRAPPER`` around the sidecar, and the
chat pane around ``cspctl chat``: when either exits, the wrapper prints why and
how to restart it, and the window's ``remain-on-exit`` keeps the pane (dead) on
screen instead of letting it vanish.

tmux gives a pane the ``history-limit`` in effect when the pane is made, so the
session is first made around a placeholder, given its options, and only then
is the chat's window made (in the placeholder's place).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csp_core.errors import Conflict

from .agentsconf import AgentsConfig, AgentSpec, LayoutConfig
from .layout import layout_string
from .tmux import NoServer, NoSession, Pane, Tmux

SIDECAR_ENV = "CSP_SIDECAR"
# what a pane needs to find the same gateway, bus and config as the cspctl that made it
PASSED_ENV = ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
              "CSP_GATEWAY", "CSP_SIDECAR", "DBUS_SESSION_BUS_ADDRESS", "PATH")
# the sidecar keeps @csp_title current ("claude · busy · 2 queued"); the agent may retitle
# its pane (Claude Code does, by OSC), which must not hide the state
BORDER_FORMAT = ("#{?pane_active,#[bold],} #{pane_index}: "
                 "#{?@csp_title,#{@csp_title},#{pane_title}} #[default]")

# $0 = the pane's name (an agent's, or "chat"), $1 = how to restart it,
# "$@" after shift = the command (the sidecar's argv, or cspctl chat)
WRAPPER = (
    'hint=$1; shift; "$@"; s=$?; '
    r"""printf '\033]2;%s · exited (status %s)\033\\\n[csp] %s exited with status %s.\n"""
    r"""[csp] restart it with:  %s\n' "$0" "$s" "$0" "$s" "$hint"; exit "$s" """.rstrip()
)


def own_command(script: str, module: str) -> list[str]:
    """How to run one of csp's executables: next to this Python, on PATH, or -m."""
    beside = Path(sys.executable).parent / script
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which(script)
    return [found] if found else [sys.executable, "-m", module]


def sidecar_command() -> list[str]:
    """``$CSP_SIDECAR`` (for development and tests) or the installed csp-sidecar."""
    override = os.environ.get(SIDECAR_ENV)
    return shlex.split(override) if override else own_command("csp-sidecar", "csp_sidecar")


def chat_command() -> list[str]:
    return [*own_command("cspctl", "csp_cli"), "chat"]


# the panes' wrappers run under this shell, named in full: a pane's PATH may lack it
SHELL = "/bin/sh"
# waits, doing nothing, until the chat's window takes its place
PLACEHOLDER = [SHELL, "-c", "read -r _"]


def sidecar_argv(spec: AgentSpec) -> list[str]:
    argv = [*sidecar_command(), "--name", spec.name]
    if spec.profile:
        argv += ["--profile", spec.profile]
    if spec.room:
        argv += ["--room", spec.room]
    for key, value in spec.env.items():  # the agent's alone: the sidecar keeps the user's HOME
        argv += ["--env", f"{key}={value}"]
    return [*argv, "--", *spec.command]


def pane_env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}


@dataclass
class Workspace:
    """One csp session on one tmux server."""

    tmux: Tmux
    session: str
    layout: LayoutConfig

    @property
    def window(self) -> str:
        return f"={self.session}:"

    def exists(self) -> bool:
        return self.tmux.has_session(self.session)

    def panes(self) -> list[Pane]:
        return self.tmux.list_panes(self.session)

    def agent_panes(self) -> list[Pane]:
        return [p for p in self.panes() if p.role == "agent"]

    def chat_pane(self) -> Pane | None:
        return next((p for p in self.panes() if p.role == "chat"), None)

    def restart_hint(self, name: str) -> str:
        """The command that restarts agent ``name`` in this session."""
        return self._hint(["cspctl", "spawn", name])

    def chat_restart_hint(self) -> str:
        """The command that restarts a quit chat pane (attach repairs it)."""
        return self._hint(["cspctl", "attach"])

    def _hint(self, argv: list[str]) -> str:
        if self.tmux.socket:
            argv += ["-L", self.tmux.socket]
        if self.session != LayoutConfig.session:
            argv += ["--session", self.session]
        return shlex.join(argv)

    # -- building ---------------------------------------------------------

    def create(self, agents: Sequence[AgentSpec], width: int, height: int) -> None:
        env = pane_env()
        t = self.tmux
        # the session's environment too (-e): panes the user adds find the same gateway
        placeholder = t.new_session(self.session, PLACEHOLDER, width=width, height=height,
                                    env=env)
        # session- and window-scoped only: the user's other sessions keep their settings
        t.set_option(self.session, "mouse", "on" if self.layout.mouse else "off")
        t.set_option(self.session, "history-limit", str(self.layout.history_limit))
        # now the chat's pane gets that scrollback too (it is read when a pane is made)
        chat = t.new_window(t.display(placeholder, "#{window_id}"), self.chat_argv(),
                            env=env, replace=True)
        t.run("rename-window", "-t", self.window, "csp")
        t.set_option(self.window, "pane-border-status", "top", scope="w")
        t.set_option(self.window, "pane-border-format", BORDER_FORMAT, scope="w")
        t.set_option(self.window, "remain-on-exit", "on", scope="w")
        t.set_option(self.window, "automatic-rename", "off", scope="w")
        t.set_option(chat, "@csp_role", "chat", scope="p")  # the chat titles itself
        last = chat
        for spec in agents:  # each after the previous: the window order is the config order
            last = self._split_agent(spec, last)
            self.relayout()  # before the next split halves a pane that is already small
        if not agents:
            self.relayout()
        t.run("select-pane", "-t", chat)

    def _split_agent(self, spec: AgentSpec, chat: str) -> str:
        pane = self.tmux.split(chat, self.agent_argv(spec), env=pane_env(),
                               cwd=spec.resolved_cwd())
        self._mark(pane, spec)
        return pane

    def _mark(self, pane: str, spec: AgentSpec) -> None:
        self.tmux.set_option(pane, "@csp_role", "agent", scope="p")
        self.tmux.set_option(pane, "@csp_agent", spec.name, scope="p")
        self.tmux.set_title(pane, f"{spec.name} · starting")

    def agent_argv(self, spec: AgentSpec) -> list[str]:
        return [SHELL, "-c", WRAPPER, spec.name, self.restart_hint(spec.name),
                *sidecar_argv(spec)]

    def chat_argv(self) -> list[str]:
        return [SHELL, "-c", WRAPPER, "chat", self.chat_restart_hint(), *chat_command()]

    def relayout(self) -> None:
        panes = self.panes()
        chat = next((p for p in panes if p.role == "chat"), panes[0])
        agents = [p.id for p in panes if p.id != chat.id]
        size = self.tmux.display(self.window, "#{window_width} #{window_height}").split()
        width, height = int(size[0]), int(size[1])
        self.tmux.select_layout(self.window, layout_string(
            width, height, chat.id, agents, self.layout.chat_height))

    def missing(self, agents: Sequence[AgentSpec]) -> list[str]:
        """Configured agents that have no pane in the session."""
        present = {p.agent for p in self.agent_panes()}
        return [a.name for a in agents if a.name not in present]

    def repair_chat(self) -> bool:
        """Restart the chat pane if it was quit; True when it had to."""
        chat = self.chat_pane()
        if chat is not None and chat.dead:
            self.tmux.respawn(chat.id, self.chat_argv(), env=pane_env())
            return True
        return False

    # -- spawning ---------------------------------------------------------

    def spawn(self, spec: AgentSpec) -> str:
        """Start ``spec`` in a new pane, or again in its dead pane; return the pane id."""
        if not self.exists():
            raise NoSession(f"no csp session {self.session!r} is running; "
                            "start it with `cspctl attach`")
        for pane in self.agent_panes():
            if pane.agent != spec.name:
                continue
            if not pane.dead:
                raise Conflict(f"agent {spec.name!r} is already running in pane {pane.id}",
                               pane=pane.id)
            self.tmux.respawn(pane.id, self.agent_argv(spec), env=pane_env(),
                              cwd=spec.resolved_cwd())
            self.tmux.set_title(pane.id, f"{spec.name} · starting")
            return pane.id
        new = self._split_agent(spec, self.panes()[-1].id)
        self.relayout()
        return new

    # -- ending -----------------------------------------------------------

    def kill(self, timeout: float = 10.0) -> list[str]:
        """End the agents (SIGHUP, then SIGTERM), then the session.

        SIGHUP is what a closing terminal sends: the sidecar takes it as the
        cue to end its agent's process group and exit.  Returns the names of
        agents that had to be forced.
        """
        live = [p for p in self.agent_panes() if not p.dead and p.pid > 0]
        for pane in live:
            _signal_group(pane.pid, signal.SIGHUP)
        stubborn = self._wait_dead(live, timeout)
        for pane in stubborn:
            _signal_group(pane.pid, signal.SIGTERM)
        stubborn = self._wait_dead(stubborn, 2.0)
        with contextlib.suppress(NoSession, NoServer):
            self.tmux.kill_session(self.session)
        return [p.agent for p in stubborn]

    def _wait_dead(self, panes: list[Pane], timeout: float) -> list[Pane]:
        deadline = time.monotonic() + timeout
        pending = panes
        while pending:
            try:
                now = {p.id: p for p in self.panes()}
            except (NoSession, NoServer):
                return []
            pending = [p for p in pending if p.id in now and not now[p.id].dead]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return pending


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def workspace_for(config: AgentsConfig, socket: str | None, session: str | None) -> Workspace:
    return Workspace(Tmux(socket), session or config.layout.session, config.layout)
