"""``csp-hook``: hand one of the agent CLI's turn events to its sidecar, and return at once.

    csp-hook [--stdin | --argv] [--socket PATH] LABEL [--then PROG ARG...] [PAYLOAD]

The agent CLI runs this for every hook or notify event (``wiring.py`` puts it
there).  It sends ``CSPHOOK1 LABEL\\n`` and the event's JSON, byte for byte, to
the unix socket named by ``--socket`` or ``$CSP_HOOK_SOCKET``, and exits 0
whatever happens, printing nothing: a missing, dead or stuck sidecar never fails
or stalls the CLI's turn (connect and send give up after 0.2 s), and an empty
stdout with status 0 means "no opinion" to Claude Code's hooks (UserPromptSubmit
would add stdout to the prompt; Stop would show it).

Where the JSON comes from: ``--stdin`` (Claude Code writes it to the hook's
stdin), ``--argv`` (Codex appends it to the notify program's arguments: the last
argument), or, without either, stdin when it is not a terminal and has data
within 50 ms, else the last argument.

``--then PROG ARG...`` chains to the program the user had configured in the
CLI's place (Codex's ``notify``, which csp's own replaces for the run): it is
started detached (own session, stdio on /dev/null, never waited for) with
exactly the argv the CLI would have given it, ``PROG ARG... PAYLOAD`` (the
payload only when it came as an argument).  It is started first, so a slow
sidecar never delays it.

Speed matters (this runs inside every turn), so this file uses the standard
library only and imports nothing of csp: the wiring runs it as
``python3 -I -S hook_cmd.py`` (no site, no user paths); it also works as the
console script ``csp-hook``.  It calls the ``posix`` module directly: without
``site``, importing ``os`` (and the abstract base classes it needs) would be a
fifth of the interpreter's whole start.
"""

from __future__ import annotations

import posix
import sys

MAGIC = b"CSPHOOK1 "
SOCKET_ENV = "CSP_HOOK_SOCKET"
SEND_TIMEOUT = 0.2
# how long to wait for a hook's stdin to reach EOF, and to see whether it has data at all
STDIN_TIMEOUT = 2.0
STDIN_PEEK = 0.05
# the sidecar drops larger frames; reading stops a little past it
MAX_READ = 4 * 1024 * 1024 + 1


class Args:
    """The parsed command line (hand-rolled: argparse alone costs more than the rest)."""

    def __init__(self) -> None:
        self.mode = "auto"
        self.socket = ""
        self.label = ""
        self.rest: list[str] = []


def parse(argv: list[str]) -> Args:
    args = Args()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("--stdin", "--argv"):
            args.mode = word[2:]
        elif word == "--socket" and i + 1 < len(argv):
            i += 1
            args.socket = argv[i]
        elif word.startswith("--socket="):
            args.socket = word[len("--socket="):]
        else:
            args.label = word
            args.rest = argv[i + 1:]
            break
        i += 1
    return args


def read_stdin(deadline_s: float) -> bytes:
    """Everything on stdin up to EOF, bounded in size and time."""
    import select
    import time

    chunks: list[bytes] = []
    size = 0
    end = time.monotonic() + deadline_s
    while size < MAX_READ:
        left = end - time.monotonic()
        if left <= 0 or not select.select([0], [], [], left)[0]:
            break
        chunk = posix.read(0, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def stdin_payload() -> bytes | None:
    """Auto mode: the payload on stdin, or None when stdin is a terminal or has nothing."""
    import select

    try:
        if posix.isatty(0) or not select.select([0], [], [], STDIN_PEEK)[0]:
            return None
    except (OSError, ValueError):
        return None
    data = read_stdin(STDIN_TIMEOUT)
    return data or None


def split(args: Args) -> tuple[bytes, list[str]]:
    """(payload, chained program's argv) from the command line and stdin."""
    rest = args.rest
    chained = rest[1:] if rest[:1] == ["--then"] else []
    from_stdin: bytes | None = None
    if args.mode == "stdin":
        from_stdin = read_stdin(STDIN_TIMEOUT)
    elif args.mode == "auto":
        from_stdin = stdin_payload()
    if from_stdin is not None:
        return from_stdin, chained
    if chained:
        # Codex: PROG ARG... were ours to pass on; the JSON it appended is the last one
        return _fsencode(chained[-1]), chained if len(chained) > 1 else []
    return (_fsencode(rest[-1]) if rest else b""), []


def _fsencode(text: str) -> bytes:
    """``os.fsencode``: an argument back to the bytes it came from."""
    return text.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def start_detached(argv: list[str]) -> None:
    """Start ``argv`` in its own session with stdio on /dev/null; never wait for it."""
    null = "/dev/null"
    actions = [(posix.POSIX_SPAWN_OPEN, 0, null, posix.O_RDONLY, 0),
               (posix.POSIX_SPAWN_OPEN, 1, null, posix.O_WRONLY, 0),
               (posix.POSIX_SPAWN_OPEN, 2, null, posix.O_WRONLY, 0)]
    try:
        posix.posix_spawnp(argv[0], argv, posix.environ, file_actions=actions, setsid=True)
    except NotImplementedError:  # a libc without POSIX_SPAWN_SETSID
        _fork_detached(argv)
    except OSError:
        return  # not found, not executable: as the CLI itself, say nothing


def _fork_detached(argv: list[str]) -> None:
    import os  # a rare libc: here the cost of os does not matter

    if os.fork() != 0:
        return
    try:
        os.setsid()
        fd = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(fd, target)
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)


def send(path: str, label: str, payload: bytes) -> None:
    """One frame to the sidecar; gives up quietly after SEND_TIMEOUT."""
    try:
        import _socket as sockmod  # the C module: socket.py's imports cost ~8 ms
    except ImportError:  # pragma: no cover - every CPython has it
        import socket as sockmod  # type: ignore[no-redef]
    sock = sockmod.socket(sockmod.AF_UNIX, sockmod.SOCK_STREAM)
    try:
        sock.settimeout(SEND_TIMEOUT)
        sock.connect(path)
        sock.sendall(MAGIC + label.encode("utf-8", "surrogateescape") + b"\n" + payload)
        sock.shutdown(sockmod.SHUT_WR)
    finally:
        sock.close()


def run(argv: list[str]) -> None:
    args = parse(argv)
    if not args.label:
        return
    payload, chained = split(args)
    if chained:
        start_detached(chained)
    path = args.socket or posix.environ.get(SOCKET_ENV.encode(), b"").decode(
        sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
    if path:
        send(path, args.label, payload)


def main() -> None:
    """Entry point: never fails, never prints (stdout means something to the CLIs)."""
    try:
        run(sys.argv[1:])
    finally:
        posix._exit(0)  # whatever happened (an exception dies here): a hook never fails a turn


if __name__ == "__main__":
    main()
