"""A small wrapper over the tmux command line, in the spirit of libtmux.

Every call goes through :meth:`Tmux.run`, which adds ``-L SOCKET`` when a
private server is selected and turns tmux's complaints into typed errors.  The
calls are blocking subprocesses: use them from synchronous code (``cspctl``'s
commands), or through :meth:`Tmux.arun` from an event loop, never the blocking
form inside a loop (a tmux server that hangs must not freeze a client).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from csp_core.errors import CspError, NotFound

# fields read by list_panes; joined with a separator no title can contain
_SEP = "\x1f"
PANE_FIELDS = ("pane_id", "pane_index", "pane_pid", "pane_dead", "pane_dead_status",
               "pane_title", "pane_start_command", "@csp_role", "@csp_agent")


class TmuxError(CspError):
    """tmux refused a command or could not be run."""

    code = "tmux"
    exit_code = 1


class TmuxNotInstalled(TmuxError):
    pass


class NoServer(TmuxError):
    """No tmux server is listening on the selected socket."""

    exit_code = 5


class NoSession(TmuxError):
    exit_code = NotFound.exit_code


@dataclass(frozen=True)
class Pane:
    id: str
    index: int
    pid: int
    dead: bool
    dead_status: int | None
    title: str
    start_command: str
    role: str
    agent: str


def _parse_pane(line: str) -> Pane:
    f = line.split(_SEP)
    f += [""] * (len(PANE_FIELDS) - len(f))
    return Pane(id=f[0], index=int(f[1] or 0), pid=int(f[2] or 0), dead=f[3] == "1",
                dead_status=int(f[4]) if f[4].lstrip("-").isdigit() else None,
                title=f[5], start_command=f[6], role=f[7], agent=f[8])


class Tmux:
    """One tmux server: the default one, or ``tmux -L SOCKET``."""

    def __init__(self, socket: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.socket = socket
        self.env = dict(env) if env is not None else None

    def argv(self, *args: str) -> list[str]:
        exe = shutil.which("tmux")
        if exe is None:
            raise TmuxNotInstalled("tmux is not installed: install it (e.g. `apt install tmux`)")
        return [exe, *(["-L", self.socket] if self.socket else []), *args]

    def run(self, *args: str, check: bool = True) -> str:
        """Run one tmux command; return its stdout without the final newline."""
        try:
            proc = subprocess.run(self.argv(*args), capture_output=True, text=True,
                                  check=False, env=self.env, stdin=subprocess.DEVNULL,
                                  timeout=30)
        except subprocess.TimeoutExpired:
            raise TmuxError(f"tmux {args[0] if args else ''} did not answer in 30s") from None
        if check and proc.returncode != 0:
            raise self._error(args, proc.stderr)
        return proc.stdout.rstrip("\n")

    async def arun(self, *args: str, check: bool = True) -> str:
        """:meth:`run` for callers on an event loop: the loop keeps turning meanwhile."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TmuxError(f"tmux {args[0] if args else ''} did not answer in 30s") from None
        if check and proc.returncode != 0:
            raise self._error(args, err.decode(errors="replace"))
        return out.decode(errors="replace").rstrip("\n")

    def _error(self, args: Sequence[str], stderr: str) -> TmuxError:
        detail = stderr.strip() or "failed"
        where = f" -L {self.socket}" if self.socket else ""
        if "no server running" in detail or "error connecting to" in detail:
            return NoServer(f"no tmux server is running{where}")
        if ("can't find session" in detail or "session not found" in detail
                or "can't find window" in detail):
            return NoSession(f"tmux{where}: {detail}")
        return TmuxError(f"tmux{where} {args[0] if args else ''}: {detail}")

    # -- queries -----------------------------------------------------------

    def has_session(self, name: str) -> bool:
        try:
            self.run("has-session", "-t", f"={name}")
        except (NoServer, NoSession):
            return False
        except TmuxError as exc:  # older servers word it differently
            if "can't find" in exc.message:
                return False
            raise
        return True

    def list_panes(self, session: str) -> list[Pane]:
        """Every pane of a session, in its window's order."""
        fmt = _SEP.join("#{" + f + "}" for f in PANE_FIELDS)
        out = self.run("list-panes", "-s", "-t", f"={session}", "-F", fmt)
        return [_parse_pane(line) for line in out.splitlines() if line]

    def display(self, target: str, fmt: str) -> str:
        return self.run("display-message", "-p", "-t", target, fmt)

    def capture(self, target: str) -> str:
        return self.run("capture-pane", "-p", "-J", "-t", target)

    # -- changes -----------------------------------------------------------

    def new_session(self, name: str, command: Sequence[str], *, width: int | None = None,
                    height: int | None = None, env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> str:
        """Create a detached session; return its first pane's id."""
        args = ["new-session", "-d", "-s", name, "-P", "-F", "#{pane_id}"]
        if width and height:
            args += ["-x", str(width), "-y", str(height)]
        args += _env_args(env) + (["-c", cwd] if cwd else [])
        return self.run(*args, *command)

    def new_window(self, target: str, command: Sequence[str], *,
                   env: Mapping[str, str] | None = None, cwd: str | None = None,
                   replace: bool = False) -> str:
        """A new window at ``target``'s index (``replace``: in place of the window there,
        which is destroyed); return its pane's id."""
        args = ["new-window", "-t", target, "-P", "-F", "#{pane_id}", *(["-k"] if replace else [])]
        args += _env_args(env) + (["-c", cwd] if cwd else [])
        return self.run(*args, *command)

    def split(self, target: str, command: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, vertical: bool = True) -> str:
        args = ["split-window", "-d", "-t", target, "-P", "-F", "#{pane_id}",
                "-v" if vertical else "-h"]
        args += _env_args(env) + (["-c", cwd] if cwd else [])
        return self.run(*args, *command)

    def respawn(self, pane: str, command: Sequence[str], *,
                env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self.run("respawn-pane", "-k", "-t", pane, *_env_args(env),
                 *(["-c", cwd] if cwd else []), *command)

    def set_option(self, target: str, name: str, value: str, scope: str = "") -> None:
        """``scope``: "" session, "w" window, "p" pane (tmux 3.0+ pane options)."""
        self.run("set-option", *([f"-{scope}"] if scope else []), "-t", target, name, value)

    def set_title(self, pane: str, title: str) -> None:
        self.run("select-pane", "-t", pane, "-T", title)

    def select_layout(self, target: str, layout: str) -> None:
        self.run("select-layout", "-t", target, layout)

    def send_keys(self, target: str, text: str, *, literal: bool = True) -> None:
        self.run("send-keys", "-t", target, *(["-l"] if literal else []), text)

    def kill_session(self, name: str) -> None:
        self.run("kill-session", "-t", f"={name}")


def _env_args(env: Mapping[str, str] | None) -> list[str]:
    out: list[str] = []
    for key, value in (env or {}).items():
        out += ["-e", f"{key}={value}"]
    return out


def inside_tmux_socket() -> str | None:
    """The socket path of the tmux server this process runs inside, if any."""
    value = os.environ.get("TMUX")
    return value.split(",", 1)[0] if value else None
