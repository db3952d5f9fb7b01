"""What runs in the PTY's foreground: real processes on real PTYs, and a made-up /proc
for the races and corner cases a real system will not produce on demand."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ptyprocess import PtyProcess

from csp_sidecar.foreground import ForegroundCheck, identify
from csp_sidecar.profiles import load_profile, profile_for_command
from tests.polling import Timeout, wait_for

PYTHON = shutil.which("python3")
pytestmark = pytest.mark.skipif(PYTHON is None, reason="needs python3 on PATH")

# an agent that says READY, then on each Enter does ACTION and waits again
AGENT = ("import os, subprocess, sys\n"
         "print('READY', flush=True)\n"
         "while True:\n"
         "    input()\n"
         "    {action}\n")


def agent(action: str) -> list[str]:
    return ["python3", "-c", AGENT.format(action=action)]


@pytest.fixture(autouse=True)
def _no_user_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _session_members(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{entry}/stat").read_text()
            if int(raw[raw.rindex(")") + 2:].split()[3]) == sid:
                found.append(int(entry))
    return found


class Term:
    """A command on a PTY of its own, as the sidecar runs the agent (session leader,
    the PTY its controlling terminal); its output is read so that it never stalls."""

    def __init__(self, argv: list[str], home: Path) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "TERM": "xterm-256color", "LANG": "C.UTF-8"}
        self.proc = PtyProcess.spawn(argv, env=env, dimensions=(24, 80))
        os.set_blocking(self.proc.fd, False)
        self.output = b""

    @property
    def fd(self) -> int:
        return int(self.proc.fd)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def drain(self) -> str:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.fd, 65536):
                self.output += chunk
        return self.output.decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait_output(self, needle: str) -> None:
        wait_for(lambda: needle in self.drain(), what=f"{needle!r} on the terminal")

    def wait_reason(self, check: ForegroundCheck, expected: str | None) -> None:
        seen: list[str | None] = []

        def reached() -> bool:
            self.drain()
            seen.append(check.blocker(self.fd))
            return seen[-1] == expected

        try:
            wait_for(reached, what=f"blocker {expected!r}")
        except Timeout:
            raise AssertionError(f"blocker stayed {seen[-1]!r}, not {expected!r}; "
                                 f"screen: {self.drain()[-500:]!r}") from None

    def close(self) -> None:
        """Every process of its session goes, job-control groups included."""
        for pid in [self.pid, *_session_members(self.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.close(force=True)
        wait_for(lambda: not _session_members(self.pid), what="the session to be gone")


Start = Callable[[list[str]], Term]


@pytest.fixture
def term(tmp_path: Path) -> Iterator[Start]:
    """Starts commands on PTYs; every one is ended, whole session, after the test."""
    started: list[Term] = []

    def start(argv: list[str]) -> Term:
        started.append(Term(argv, tmp_path))
        return started[-1]

    yield start
    for t in started:
        t.close()


def test_the_agent_itself_in_the_foreground_may_be_typed_into(term: Start) -> None:
    t = term(agent("pass"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.wait_reason(check, None)
    costs = []
    for _ in range(20):
        assert check.blocker(t.fd) is None
        costs.append(check.last_cost)
    # one call scans /proc/*/stat once: a few ms with a few hundred processes
    print(f"blocker(): median {statistics.median(costs) * 1000:.2f} ms, "
          f"max {max(costs) * 1000:.2f} ms, {len(os.listdir('/proc'))} /proc entries")
    assert statistics.median(costs) < 0.1


def test_a_shell_behind_env_is_never_typed_into(term: Start) -> None:
    command = ["env", "bash", "--norc", "--noprofile"]
    t = term(command)
    chosen = ForegroundCheck.for_agent(t.pid, command, profile_for_command(command),
                                       profile_named=False)
    named = ForegroundCheck.for_agent(t.pid, command, load_profile("generic"),
                                      profile_named=True)
    t.wait_reason(chosen, "bash is in the foreground")
    t.wait_reason(named, "bash is in the foreground")


def test_a_shell_after_an_exec_is_caught(term: Start) -> None:
    command = ["sh", "-c", "exec bash --norc --noprofile"]
    t = term(command)
    check = ForegroundCheck.for_agent(t.pid, command, load_profile("generic"),
                                      profile_named=True)
    t.wait_reason(check, "the agent's program is now bash (exec)")


def test_the_agent_execing_a_shell_is_caught(term: Start) -> None:
    t = term(agent("os.execvp('bash', ['bash', '--norc', '--noprofile'])"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.wait_reason(check, None)
    t.send(b"\r")
    t.wait_reason(check, "the agent's program is now bash (exec)")


def test_a_shell_the_agent_starts_with_job_control_is_caught(term: Start) -> None:
    t = term(agent("subprocess.call(['bash', '--norc', '--noprofile', '-i'])"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.send(b"\r")
    t.wait_reason(check, "bash is in the foreground")  # in a group of its own
    t.send(b"exit\r")
    t.wait_reason(check, None)  # the agent has the terminal back


def test_a_shell_the_agent_starts_without_job_control_is_caught(term: Start) -> None:
    # stderr away from the terminal: bash is not interactive, so it keeps no job control
    # and stays in the agent's group, reading commands from the terminal all the same
    t = term(agent("subprocess.call(['bash', '--norc', '--noprofile'], "
                   "stderr=subprocess.DEVNULL)"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.send(b"\r")
    t.wait_reason(check, "bash is in the foreground")
    assert os.tcgetpgrp(t.fd) == t.pid  # it is in the agent's own group
    t.send(b"echo RUN''NING; cat\r")  # waiting for its command, it still gets what is
    t.wait_output("RUNNING")           # typed after it
    assert check.blocker(t.fd) == "bash is in the foreground"
    t.send(b"\x04")  # ^D ends cat, "exit" the shell: the agent has the terminal back
    t.send(b"exit\r")
    t.wait_reason(check, None)
    assert t.proc.isalive()


def test_a_shell_a_second_thread_starts_is_caught(term: Start) -> None:
    # children are listed per thread: one started from another thread than the main
    # one is found only by reading that thread's list
    t = term(agent("import threading; threading.Thread(target=subprocess.call, args=("
                   "['bash', '--norc', '--noprofile'],), kwargs={'stderr': subprocess.DEVNULL}"
                   ").start(); threading.Event().wait()"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.wait_reason(check, None)
    t.send(b"\r")
    t.wait_reason(check, "bash is in the foreground")


def test_a_shell_with_job_control_names_what_it_runs(term: Start) -> None:
    t = term(agent("subprocess.call(['bash', '--norc', '--noprofile', '-i'])"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.send(b"\r")
    t.wait_reason(check, "bash is in the foreground")
    t.send(b"sleep 60\r")
    t.wait_reason(check, "sleep is in the foreground")


@pytest.mark.skipif(shutil.which("vim") is None, reason="needs vim")
def test_an_editor_the_agent_opens_is_caught(term: Start) -> None:
    t = term(agent("subprocess.call(['vim', '-u', 'NONE', '-N', '-n'])"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.send(b"\r")
    t.wait_reason(check, "vim is in the foreground")
    t.send(b"\x1b:q!\r")
    t.wait_reason(check, None)


@pytest.mark.skipif(shutil.which("less") is None, reason="needs less")
def test_a_pager_reading_dev_tty_is_caught(term: Start) -> None:
    t = term(agent("subprocess.call('echo text | less', shell=True)"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.send(b"\r")
    t.wait_reason(check, "less is in the foreground")


def test_a_shell_the_agent_runs_under_is_not_a_blocker(term: Start) -> None:
    # ``npx codex`` runs ``sh -c codex``, and dash waits there for codex to end
    inner = "python3 -c \"print('INNER', flush=True); input()\"; true"
    t = term(agent(f"subprocess.call(['sh', '-c', {inner!r}])"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.send(b"\r")
    t.wait_output("INNER")
    assert check.blocker(t.fd) is None


def test_a_program_no_profile_knows_waits_for_one_to_be_named(term: Start) -> None:
    command = agent("pass")
    t = term(command)
    unnamed = ForegroundCheck.for_agent(t.pid, command, profile_for_command(command),
                                        profile_named=False)
    named = ForegroundCheck.for_agent(t.pid, command, load_profile("generic"),
                                      profile_named=True)
    t.wait_output("READY")
    assert unnamed.blocker(t.fd) == "no profile knows 'python3': name one with --profile"
    t.wait_reason(named, None)


def test_an_agent_that_has_exited_is_not_typed_into(term: Start) -> None:
    t = term(["python3", "-c", "pass"])
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_reason(check, "the agent has exited")  # a zombie, then reaped
    wait_for(lambda: not t.proc.isalive(), what="the agent reaped")
    assert check.blocker(t.fd) == "the agent has exited"


def test_kept_files_follow_the_agent_and_let_go_of_what_is_gone(term: Start) -> None:
    # the check reads the agent's /proc files through descriptors it keeps open between
    # calls: they must see a child come and go, hold nothing of the child once it is
    # gone, and see the agent itself exit
    t = term(agent("subprocess.call(['bash', '--norc', '--noprofile'], "
                   "stderr=subprocess.DEVNULL)"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.wait_reason(check, None)
    alone = len(check.files)
    assert alone >= 3  # its stat, its command line, its threads' children lists
    t.send(b"\r")
    t.wait_reason(check, "bash is in the foreground")
    assert len(check.files) > alone  # the shell's files too
    t.send(b"exit\r")
    t.wait_reason(check, None)
    # the shell's are closed once it is reaped (a zombie's stat is still read, to see it is one)
    wait_for(lambda: check.blocker(t.fd) is None and len(check.files) == alone,
             what=f"the shell's files closed (kept: {len(check.files)}, alone: {alone})")
    t.send(b"\x04")  # input() ends: the agent exits
    t.wait_reason(check, "the agent has exited")
    wait_for(lambda: not t.proc.isalive(), what="the agent reaped")
    assert check.blocker(t.fd) == "the agent has exited"
    check.close()
    assert len(check.files) == 0


def test_a_shell_that_exited_and_waits_to_be_reaped_is_not_a_blocker(term: Start) -> None:
    # a zombie reads nothing: only its stat is read (to see it is one), not its command
    # line or its children, and the agent is typed into
    t = term(agent("child = subprocess.Popen(['bash', '--norc', '--noprofile', '-c', 'exit']); "
                   "print('CHILD', child.pid, flush=True)"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.wait_reason(check, None)
    alone = len(check.files)
    t.send(b"\r")
    t.wait_output("CHILD")
    child = int(t.drain().split("CHILD", 1)[1].split()[0])
    wait_for(lambda: Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z",
             what="the shell a zombie")
    assert check.blocker(t.fd) is None
    assert len(check.files) == alone + 1  # its stat only


def test_a_shell_under_a_process_whose_main_thread_ended_is_caught(term: Start) -> None:
    # a process whose main thread alone has ended shows "Z" in its stat while its other
    # threads still run: unlike a zombie, what it started (here a shell, from its second
    # thread) must still be found
    wrapper = ("import ctypes, subprocess, threading; threading.Thread(target=subprocess.call, "
               "args=(['bash', '--norc', '--noprofile'],), "
               "kwargs={'stderr': subprocess.DEVNULL}).start(); "
               "ctypes.CDLL(None).pthread_exit(None)")
    t = term(agent(f"subprocess.call([sys.executable, '-c', {wrapper!r}])"))
    check = ForegroundCheck(t.pid, {"python3"})
    t.wait_output("READY")
    t.wait_reason(check, None)
    t.send(b"\r")
    t.wait_reason(check, "bash is in the foreground")


def test_an_unreadable_proc_blocks(term: Start, tmp_path: Path) -> None:
    t = term(agent("pass"))
    t.wait_output("READY")
    check = ForegroundCheck(t.pid, {"python3"}, proc=str(tmp_path / "no-proc"))
    reason = check.blocker(t.fd)
    assert reason is not None and reason.startswith("cannot read /proc")


def test_a_descriptor_that_is_no_terminal_blocks() -> None:
    read_end, write_end = os.pipe()
    try:
        reason = ForegroundCheck(os.getpid(), {"python3"}).blocker(read_end)
        assert reason is not None and reason.startswith("cannot tell what runs in the terminal")
    finally:
        os.close(read_end)
        os.close(write_end)


def test_real_processes_are_named_like_commands() -> None:
    me = identify(os.getpid())
    assert me.name.startswith("python") or me.name in ("pytest", "py.test")
    assert not me.never_agent


# ---- a made-up /proc: races, spoofing, what has the terminal open ----------------------

TTY = os.stat("/dev/null").st_rdev  # the "terminal": a character device to point fds at
AGENT_PID = 4_000_000  # above any pid_max, so no real process is ever confused with it


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.regular = root / "a-file"
        self.regular.write_text("")

    def add(self, pid: int, argv: list[str], *, ppid: int = 1, start: int = 100,
            exe: str | None = None, fd0_tty: bool = True, fds: dict[str, str] | None = None,
            pgrp: int = AGENT_PID) -> Path:
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True)
        comm = Path(exe or argv[0]).name[:15]
        rest = ["0"] * 13 + [str(start)] + ["0"] * 10
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pgrp} {AGENT_PID} {TTY} "
                                f"{pgrp} {' '.join(rest)}\n")
        (d / "cmdline").write_bytes(b"".join(w.encode() + b"\0" for w in argv))
        (d / "comm").write_text(comm + "\n")
        (d / "exe").symlink_to(exe or f"/usr/bin/{argv[0]}")
        (d / "fd" / "0").symlink_to("/dev/null" if fd0_tty else self.regular)
        for fd, target in (fds or {}).items():
            (d / "fd" / fd).symlink_to(target)
        return d

    def check(self, expected: set[str]) -> str | None:
        return ForegroundCheck(AGENT_PID, expected, proc=str(self.root)).blocker_for_group(
            AGENT_PID)


@pytest.fixture
def fake(tmp_path: Path) -> FakeProc:
    proc = FakeProc(tmp_path / "proc")
    proc.add(AGENT_PID, ["node", "/usr/bin/codex"], exe="/usr/bin/node", start=50)
    return proc


def test_fake_the_agent_and_its_helpers_pass(fake: FakeProc) -> None:
    fake.add(AGENT_PID + 1, ["/opt/codex/bin/codex"], ppid=AGENT_PID, start=60)
    # a shell the agent runs for a tool or an MCP server, not reading the terminal
    fake.add(AGENT_PID + 2, ["bash", "-c", "mcp-server"], ppid=AGENT_PID, start=70,
             fd0_tty=False)
    assert fake.check({"codex"}) is None


def test_fake_a_shell_waiting_for_a_command_blocks(fake: FakeProc) -> None:
    fake.add(AGENT_PID + 1, ["bash", "--norc"], ppid=AGENT_PID, start=60)
    fake.add(AGENT_PID + 2, ["sleep", "60"], ppid=AGENT_PID + 1, start=70)
    assert fake.check({"codex"}) == "bash is in the foreground"


def test_fake_a_shell_that_runs_the_agent_passes(fake: FakeProc) -> None:
    fake.add(AGENT_PID + 1, ["sh", "-c", "codex"], ppid=AGENT_PID, start=60)
    fake.add(AGENT_PID + 2, ["node", "/usr/bin/codex"], ppid=AGENT_PID + 1, start=70)
    assert fake.check({"codex"}) is None


def test_fake_a_pager_with_dev_tty_open_blocks(fake: FakeProc) -> None:
    fake.add(AGENT_PID + 1, ["less"], ppid=AGENT_PID, start=60, fd0_tty=False,
             fds={"3": "/dev/null"})
    assert fake.check({"codex"}) == "less is in the foreground"


def test_fake_a_renamed_shell_is_still_a_shell(fake: FakeProc) -> None:
    # ``exec -a codex bash``: argv says codex, the executable is bash
    fake.add(AGENT_PID + 1, ["codex"], ppid=AGENT_PID, exe="/usr/bin/bash", start=60)
    assert fake.check({"codex"}) == "bash is in the foreground"


def test_fake_a_retitled_program_is_named_by_its_title(fake: FakeProc) -> None:
    # npm sets process.title: one string padded with NULs
    leader = fake.root / str(AGENT_PID)
    (leader / "cmdline").write_bytes(b"npm exec codex" + b"\0" * 20)
    assert fake.check({"codex"}) is None
    assert fake.check({"gemini"}) == "the agent's program is now codex (exec)"


def test_fake_processes_that_vanish_mid_scan_are_skipped(fake: FakeProc) -> None:
    (fake.root / str(AGENT_PID + 1)).mkdir()  # listed, then gone before its stat is read
    gone = fake.add(AGENT_PID + 2, ["bash"], ppid=AGENT_PID, start=60)
    (gone / "cmdline").unlink()  # its stat read, then gone before its cmdline
    gone_fd = fake.add(AGENT_PID + 3, ["vim"], ppid=AGENT_PID, start=70)
    shutil.rmtree(gone_fd / "fd")  # gone before its descriptors are looked at
    assert fake.check({"codex"}) is None


def test_fake_a_garbled_stat_blocks(fake: FakeProc) -> None:
    (fake.root / str(AGENT_PID) / "stat").write_text("garbage")
    reason = fake.check({"codex"})
    assert reason is not None and reason.startswith("cannot read /proc")


def test_fake_another_group_in_the_foreground_is_named(fake: FakeProc) -> None:
    fake.add(AGENT_PID + 5, ["vim", "notes"], ppid=AGENT_PID, pgrp=AGENT_PID + 5, start=60)
    check = ForegroundCheck(AGENT_PID, {"codex"}, proc=str(fake.root))
    assert check.blocker_for_group(AGENT_PID + 5) == "vim is in the foreground"
    assert check.blocker_for_group(AGENT_PID + 9) == (
        f"another process group ({AGENT_PID + 9}) is in the foreground")
    assert check.blocker_for_group(0) == "no process is in the foreground"
