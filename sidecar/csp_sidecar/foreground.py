"""What runs in the PTY's foreground, checked before every message is typed in.

Text typed into a PTY goes to whatever reads the terminal at that moment, and
that need not be the agent: ``env bash`` is a shell the profiles never heard
of, an agent may ``exec bash``, open an editor or a pager, or start a shell
that takes the terminal with job control.  A chat message typed into a shell
runs as a command.  So before each delivery the sidecar asks the kernel, not
the screen, what runs there:

- the terminal's foreground process group (``tcgetpgrp`` on the master) must
  be the agent's own group: the agent was started as a session leader, so its
  group id is its pid, and a shell with job control moves the terminal to a
  group of its own;
- that group's leader, the agent's pid, must still run a program the sidecar
  expects (the command's own program, the profile's ``commands``), named from
  ``/proc`` the way :mod:`.command` names it (``node /usr/bin/codex`` is
  ``codex``), which catches an ``exec``;
- no other member of the group that has the terminal open may be a shell, an
  editor, a pager or a remote/privilege program (those wait in the agent's own
  group when started without job control), unless the agent runs under it
  (``npx codex`` runs ``sh -c codex``, and dash waits there for codex).

Shells, editors, pagers and remote/privilege programs are never the agent, even
when the command named them.  Anything unreadable blocks, with the reason:
typing into the unknown is the failure this module exists to prevent.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .command import SHELLS, Located, locate, program_name
from .profiles import Profile, match_profile

EDITORS = frozenset({"vim", "vi", "nvim", "view", "vimdiff", "nano", "pico", "emacs",
                     "emacsclient", "micro", "hx", "helix", "ed", "joe", "mcedit", "kak"})
PAGERS = frozenset({"less", "more", "most", "man", "pg", "w3m", "lynx"})
REMOTE = frozenset({"ssh", "mosh", "mosh-client", "telnet", "sudo", "su", "doas", "runuser",
                    "docker", "podman", "kubectl", "tmux", "screen", "script", "nsenter",
                    "machinectl", "systemd-run", "login"})
NEVER_AGENT = SHELLS | EDITORS | PAGERS | REMOTE
# programs that read keys from /dev/tty whatever their stdin is
_TTY_READERS = EDITORS | PAGERS
_DEV_TTY = os.makedev(5, 0)
_GONE = (FileNotFoundError, ProcessLookupError)
KNOWN_MAX = 64  # processes whose names a check remembers (see ForegroundCheck)


class Unreadable(Exception):
    """``/proc`` could not be read: the check cannot vouch for the terminal."""


class Stat(NamedTuple):
    """The fields of ``/proc/PID/stat`` the check needs (a tuple: one is made for each
    process of the agent's tree before every message)."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    tty_nr: int
    starttime: int
    threads: int


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def read_stat(pid: int, proc: str = "/proc") -> Stat:
    """``/proc/PID/stat``, parsed past the command name (which may hold spaces and
    parentheses).  Raises FileNotFoundError/ProcessLookupError when it is gone."""
    return _parse_stat(pid, _read(f"{proc}/{pid}/stat"))


def _parse_stat(pid: int, data: bytes) -> Stat:
    raw = data.decode("utf-8", "replace")
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 of proc(5): state, ppid, pgrp, session, tty_nr, ...
    # num_threads (20), starttime (22)
    return Stat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[4]),
                int(fields[19]), int(fields[17]))


def read_argv(pid: int, proc: str = "/proc") -> list[str]:
    """The process's argv.  A program that renamed itself (``process.title``: npm shows
    ``npm exec codex``) leaves one string padded with NULs; it is split at spaces."""
    return _argv_of(_read(f"{proc}/{pid}/cmdline"))


def _argv_of(cmdline: bytes) -> list[str]:
    words = [w for w in cmdline.decode("utf-8", "replace").split("\0") if w]
    if len(words) == 1 and " " in words[0] and not os.path.exists(words[0]):
        return words[0].split()
    return words


def _exe_name(pid: int, proc: str) -> str:
    """The name of the file the process runs; "" when that cannot be read (another
    user's process, a kernel thread): argv and comm still name it."""
    try:
        target = os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        return ""
    return program_name(target.removesuffix(" (deleted)"))


def _comm(pid: int, proc: str) -> str:
    with contextlib.suppress(OSError):
        return _read(f"{proc}/{pid}/comm").decode("utf-8", "replace").strip()
    return ""


@dataclass(frozen=True)
class Identity:
    """A process as :mod:`.command` would name its command line, and the other names it
    goes by (its argv[0], its executable, its comm), any of which can betray a shell."""

    name: str
    aliases: frozenset[str]

    @property
    def never_agent(self) -> bool:
        return bool(({self.name} | self.aliases) & NEVER_AGENT)

    @property
    def label(self) -> str:
        """The name to show: the shell's, when a wrapper in front of it has another."""
        if self.name in NEVER_AGENT or not self.never_agent:
            return self.name
        return sorted(self.aliases & NEVER_AGENT)[0]

    def is_one_of(self, expected: frozenset[str]) -> bool:
        return not self.never_agent and bool(({self.name} | self.aliases) & expected)


@functools.lru_cache(maxsize=64)
def _locate(argv: tuple[str, ...]) -> Located:
    """:func:`locate`, remembered: the same few command lines are asked about before
    every message."""
    return locate(list(argv))


def identify(pid: int, proc: str = "/proc") -> Identity:
    """Name process ``pid`` (its argv walked through wrappers and interpreters)."""
    return _identity(pid, proc, read_argv(pid, proc))


def _identity(pid: int, proc: str, argv: list[str]) -> Identity:
    exe, comm = _exe_name(pid, proc), _comm(pid, proc)
    located = _locate(tuple(argv))
    if located.index is not None:
        name = located.name
    else:
        name = program_name(argv[0]) if argv else (exe or comm)
    aliases = {program_name(argv[0]) if argv else "", exe, program_name(comm)} - {""}
    return Identity(name or "?", frozenset(aliases))


def _exists(pid: int) -> bool:
    """Whether ``pid`` runs (or is a zombie): its /proc entry missing then means /proc
    itself is missing, not the process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def expected_programs(command: list[str], profile: Profile) -> frozenset[str]:
    """What the agent's leader may run: the command's own program and the profile's."""
    located = locate(command)
    names = set(profile.commands)
    if located.index is not None:
        names.add(located.name)
    return frozenset(names)


class KeptFiles:
    """``/proc`` files kept open between checks and read again with ``pread``.

    A check runs before every message and reads the same few files each time (the
    agent's stat and command line, its threads' children lists): kept open, each is
    one system call instead of three, and no path lookup.  A kept file answers for
    its process as it is now (an ``exec`` shows its new command line); once the
    process is gone it fails with ESRCH, and is opened by path again, which then
    finds the pid's new owner or nothing.  Files a check did not read are closed
    after it (:meth:`sweep`), so the processes of earlier checks are not held.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._read_now: set[str] = set()

    def read(self, path: str) -> bytes:
        self._read_now.add(path)
        fd = self._fds.get(path)
        if fd is not None:
            try:
                return os.pread(fd, 65536, 0)
            except OSError:
                self._close(path)  # gone (or never what it was): ask the path again
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, 65536, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fds[path] = fd
        return data

    def sweep(self) -> None:
        """Close what the check just made did not read."""
        for path in [p for p in self._fds if p not in self._read_now]:
            self._close(path)
        self._read_now.clear()

    def close(self) -> None:
        for path in list(self._fds):
            self._close(path)

    def _close(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fds.pop(path))

    def __len__(self) -> int:
        return len(self._fds)


class ForegroundCheck:
    """Before each message: is the agent itself what reads the terminal?

    ``unknown`` (a program no profile knows, the user having named none) blocks
    every message: the sidecar cannot tell that program's prompt from a shell's.
    ``last_cost`` is how long the last :meth:`blocker` call took, in seconds.

    It runs before every message, so what it learns of a process is kept, keyed by
    what tells one program from another in the same pid: the process's start time
    and its command line (an ``exec`` changes that; ``/proc/PID/exe`` and ``comm``
    are read again only then).  Everything else is read afresh each time, the files
    of the agent and its descendants through descriptors kept open (:class:`KeptFiles`).
    """

    def __init__(self, agent_pid: int, expected: Iterable[str], *, unknown: str | None = None,
                 proc: str = "/proc") -> None:
        self.agent_pid = agent_pid
        self.expected = frozenset(expected)
        self.unknown = unknown
        self.proc = proc
        self.last_cost = 0.0
        self._known: dict[tuple[int, int, bytes], Identity] = {}
        self.files = KeptFiles()

    @classmethod
    def for_agent(cls, agent_pid: int, command: list[str], profile: Profile, *,
                  profile_named: bool) -> ForegroundCheck:
        """The check for ``command`` started with ``profile``; when the user named no
        profile and none knows the program, nothing is typed in."""
        unknown = None
        if not profile_named and match_profile(command) is None:
            located = locate(command)
            unknown = located.name or (program_name(command[0]) if command else "(nothing)")
        return cls(agent_pid, expected_programs(command, profile), unknown=unknown)

    def blocker(self, master_fd: int) -> str | None:
        """None when the agent's own program reads the terminal, else why not (short,
        for the state shown to people)."""
        started = time.perf_counter()
        try:
            return self._blocker(master_fd)
        finally:
            self.last_cost = time.perf_counter() - started

    def _blocker(self, master_fd: int) -> str | None:
        if self.unknown is not None:
            return f"no profile knows {self.unknown!r}: name one with --profile"
        try:
            foreground = os.tcgetpgrp(master_fd)
        except OSError as exc:
            return f"cannot tell what runs in the terminal ({exc.strerror})"
        return self.blocker_for_group(foreground)

    def blocker_for_group(self, foreground: int) -> str | None:
        """:meth:`blocker` for the terminal's foreground process group ``foreground``."""
        try:
            return self._check(foreground)
        except Unreadable as exc:
            return f"cannot read /proc ({exc})"
        finally:
            self.files.sweep()

    def close(self) -> None:
        """Close the files kept open (the agent has exited)."""
        self.files.close()

    def _stat_of(self, pid: int) -> Stat:
        return _parse_stat(pid, self.files.read(f"{self.proc}/{pid}/stat"))

    def _check(self, foreground: int) -> str | None:
        leader = self._stat(self.agent_pid)
        if leader is None and _exists(self.agent_pid):
            raise Unreadable(f"no {self.proc}/{self.agent_pid}/stat")
        if leader is None or leader.state in ("Z", "X"):
            return "the agent has exited"
        if foreground <= 0:
            return "no process is in the foreground"
        if foreground != self.agent_pid:
            return self._other_group(foreground)
        who = self._identify(leader)
        if who is None:
            return "the agent has exited"
        if who.never_agent:
            if who.name in self.expected:
                return f"{who.label} is in the foreground"
            return f"the agent's program is now {who.label} (exec)"
        if not who.is_one_of(self.expected):
            return f"the agent's program is now {who.name} (exec)"
        return self._waiting_child(leader)

    def _other_group(self, pgrp: int) -> str:
        members = self._members(pgrp)
        lead = next((m for m in members if m.pid == pgrp), None)
        newest = max(members, key=lambda m: (m.starttime, m.pid), default=None)
        for stat_ in (lead, newest):
            who = self._identify(stat_) if stat_ is not None else None
            if who is not None:
                return f"{who.label} is in the foreground"
        return f"another process group ({pgrp}) is in the foreground"

    def _waiting_child(self, leader: Stat) -> str | None:
        """A shell, editor or pager in the agent's own group that has the terminal
        open (no job control moved it to a group of its own), unless the agent runs
        under it; the newest such is named."""
        members = [m for m in self._members(leader.pgrp, leader) if m.pid != leader.pid]
        names = {m.pid: who for m in members if (who := self._identify(m)) is not None}
        for m in sorted(members, key=lambda m: (m.starttime, m.pid), reverse=True):
            who = names.get(m.pid)
            if who is None or not who.never_agent:
                continue
            if not self._uses_terminal(m.pid, leader.tty_nr, who):
                continue
            if self._runs_agent_below(m.pid, members, names):
                continue
            return f"{who.label} is in the foreground"
        return None

    def _runs_agent_below(self, pid: int, members: list[Stat],
                          names: dict[int, Identity]) -> bool:
        """Whether an expected program runs below ``pid`` in the group (``sh -c codex``)."""
        children: dict[int, list[int]] = {}
        for m in members:
            children.setdefault(m.ppid, []).append(m.pid)
        todo, seen = list(children.get(pid, [])), set()
        while todo:
            child = todo.pop()
            if child in seen:
                continue
            seen.add(child)
            who = names.get(child)
            if who is not None and who.is_one_of(self.expected):
                return True
            todo.extend(children.get(child, []))
        return False

    def _uses_terminal(self, pid: int, tty: int, who: Identity) -> bool:
        """Shells read their stdin; editors and pagers may open /dev/tty.  Unreadable
        descriptors count as the terminal (block rather than type blind)."""
        fd_dir = f"{self.proc}/{pid}/fd"
        try:
            fds = ["0"] if not ({who.name} | who.aliases) & _TTY_READERS else os.listdir(fd_dir)
            for fd in fds:
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(f"{fd_dir}/{fd}")
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev in (tty, _DEV_TTY):
                        return True
        except _GONE:
            return False
        except OSError:
            return True
        return False

    def _stat(self, pid: int) -> Stat | None:
        try:
            return self._stat_of(pid)
        except _GONE:
            return None
        except (OSError, ValueError, IndexError) as exc:
            raise Unreadable(f"{pid}/stat: {exc}") from None

    def _identify(self, st: Stat) -> Identity | None:
        try:
            cmdline = self.files.read(f"{self.proc}/{st.pid}/cmdline")
            key = (st.pid, st.starttime, cmdline)
            who = self._known.get(key)
            if who is None:
                who = _identity(st.pid, self.proc, _argv_of(cmdline))
                if len(self._known) >= KNOWN_MAX:
                    self._known.clear()
                self._known[key] = who
            return who
        except _GONE:
            return None
        except OSError as exc:
            raise Unreadable(f"{st.pid}/cmdline: {exc}") from None

    def _members(self, pgrp: int, leader: Stat | None = None) -> list[Stat]:
        """The processes of group ``pgrp``: found among the agent's descendants (its
        session), else by reading every /proc/PID/stat once.

        The full scan costs a read per process on the machine, before every message:
        with 200 agents (400 processes and more) that was most of the time from a
        post to the paste (`make bench`, cases fanout_50 and fanout_200).
        """
        found = self._members_below(pgrp, leader)
        return found if found is not None else self._members_scan(pgrp)

    def _members_below(self, pgrp: int, leader: Stat | None = None) -> list[Stat] | None:
        """Group ``pgrp`` among the agent and its descendants (the kernel's
        ``/proc/PID/task/TID/children``); None when that cannot tell: no such file
        (a kernel without it, a made-up /proc), or a foreign group whose leader is not
        below the agent (an orphaned job: the full scan finds it).  ``leader``: the
        agent's stat, read just now (not read again)."""
        members: list[Stat] = []
        todo, seen = [self.agent_pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            st: Stat | None = None
            with contextlib.suppress(OSError, ValueError, IndexError):
                st = leader if leader is not None and pid == leader.pid else self._stat_of(pid)
                if st.state in ("Z", "X") and st.threads <= 1 and pid != self.agent_pid:
                    # exited, not yet reaped: reads nothing, holds no children.  (A leader
                    # whose main thread alone ended is "Z" too, but its threads still run
                    # and count: it is checked like any other.)
                    continue
                if st.pgrp == pgrp:
                    members.append(st)
            try:
                # one thread (a stand-in, a shell): its own is the only children list
                tasks = [str(pid)] if st is not None and st.threads == 1 else os.listdir(
                    f"{self.proc}/{pid}/task")
            except OSError:
                if pid == self.agent_pid:
                    return None
                continue  # gone meanwhile
            for tid in tasks:
                try:
                    todo.extend(int(c) for c in self.files.read(
                        f"{self.proc}/{pid}/task/{tid}/children").split())
                except FileNotFoundError:
                    if pid == self.agent_pid and tid == str(pid):
                        return None  # the kernel does not list children
                except (OSError, ValueError):
                    continue
        if pgrp != self.agent_pid and not any(m.pid == pgrp for m in members):
            return None
        return members

    def _members_scan(self, pgrp: int) -> list[Stat]:
        """Every /proc/PID/stat is read once (a few hundred small reads), those that
        vanish meanwhile are skipped."""
        try:
            entries = os.listdir(self.proc)
        except OSError as exc:
            raise Unreadable(str(exc)) from None
        members = []
        for entry in entries:
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                st = read_stat(int(entry), self.proc)
                if st.pgrp == pgrp:
                    members.append(st)
        return members
