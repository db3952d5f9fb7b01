"""Where the agent CLI's own program sits in a command line, however it is wrapped.

A user starts an agent as ``codex``, but just as well as ``env HOME=/x codex``,
``nice -n 5 npx -y @openai/codex@0.171.0`` or ``node ./codex.js``.  Two things
need the CLI's own program rather than the first word: a profile's extra
arguments go right after it (after ``env`` they would be taken as env's own
options), and the sidecar must know which program it expects to type into.

:func:`locate` walks the argv through the wrappers it knows, skipping each
wrapper's options, until it reaches a word that is no wrapper: that is the
program.  Interpreters count as wrappers of their script (``node codex.js``
runs ``codex``).  Wrappers that hide the program (``sh -c '...'``, ``ssh host
cmd``, ``tmux``, ``sudo -i`` with no command, which runs a shell) give no index
and a reason, so the caller can say why instead of building a broken command.
The same walk names a running process from its ``/proc/PID/cmdline``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# dropped from a program's name: scripts and Windows-style binaries
# (Claude Code's native binary is ``claude.exe``, reached through ``claude``)
_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".py", ".rb", ".pl", ".exe")
_VERSION = re.compile(r"(?<=.)@[^/@]*$")  # "codex@0.171.0", "@openai/codex@latest"


def program_name(word: str) -> str:
    """A name to compare programs by: ``/usr/bin/codex.js`` and ``@openai/codex@1.2`` are
    both ``codex``, so a profile's ``commands`` match however the program was reached."""
    name = _VERSION.sub("", word.rstrip("/"))
    name = name.rsplit("/", 1)[-1]
    for suffix in _SUFFIXES:
        if len(name) > len(suffix) and name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Located:
    """The program's index in the argv and its comparable name, or why there is none."""

    index: int | None
    name: str = ""
    reason: str = ""


def _found(command: list[str], index: int) -> Located:
    return Located(index, program_name(command[index]))


def _hidden(reason: str) -> Located:
    return Located(None, reason=reason)


@dataclass(frozen=True)
class _Opts:
    """A wrapper's command-line options: those that take a value (``-u NAME``,
    ``--unset NAME``, ``--unset=NAME``); any other option is a flag.  ``hiding``
    options put the program out of reach (``env -S 'codex ...'``)."""

    short_arg: str = ""
    long_arg: frozenset[str] = frozenset()
    hiding: frozenset[str] = frozenset()


def _skip_options(command: list[str], i: int, opts: _Opts) -> tuple[int, str]:
    """The index of the first word at or after ``i`` that is not an option (nor an option's
    value), and the first hiding option met on the way ("" if none)."""
    while i < len(command):
        word = command[i]
        if word == "--":
            return i + 1, ""
        if not word.startswith("-") or word == "-":
            return i, ""
        if word.startswith("--"):
            long = word.split("=", 1)[0]
            if long in opts.hiding:
                return i, long
            i += 2 if long in opts.long_arg and "=" not in word else 1
            continue
        for pos, char in enumerate(word[1:], start=1):
            if f"-{char}" in opts.hiding:
                return i, f"-{char}"
            if char in opts.short_arg:
                i += 1 if pos + 1 < len(word) else 2  # "-uNAME" or "-u NAME"
                break
        else:
            i += 1
    return i, ""


# A wrapper's handler gets the argv and the wrapper's index.  It answers with the index
# of the next word to look at (the program, or another wrapper), or a final Located.
Step = int | Located
Handler = Callable[[list[str], int], Step]


def _plain(opts: _Opts, operands: int = 0) -> Handler:
    """A wrapper that takes options, then ``operands`` words of its own, then the program."""

    def handle(command: list[str], i: int) -> Step:
        name = program_name(command[i])
        j, hider = _skip_options(command, i + 1, opts)
        if hider:
            return _hidden(f"{name} {hider} hides the program in a string")
        return j + operands

    return handle


def _env(command: list[str], i: int) -> Step:
    j, hider = _skip_options(command, i + 1, _ENV)
    if hider:
        return _hidden(f"env {hider} hides the program in a string")
    while j < len(command) and "=" in command[j] and not command[j].startswith("="):
        j += 1  # VAR=value
    return j


_ENV = _Opts(short_arg="uC", long_arg=frozenset({"--unset", "--chdir"}),
             hiding=frozenset({"-S", "--split-string"}))


def _timeout(command: list[str], i: int) -> Step:
    opts = _Opts(short_arg="sk", long_arg=frozenset({"--signal", "--kill-after"}))
    j, _ = _skip_options(command, i + 1, opts)
    return j + 1  # the duration


def _pid_mode(name: str, opts: _Opts, operands: int) -> Handler:
    """``taskset``, ``chrt`` and ``ionice`` change a running process with ``-p``: then
    they run no program at all."""

    def handle(command: list[str], i: int) -> Step:
        j, hider = _skip_options(command, i + 1, opts)
        if hider:
            return _hidden(f"{name} {hider} changes a running process and starts none")
        return j + operands

    return handle


def _chrt(command: list[str], i: int) -> Step:
    opts = _Opts(short_arg="TPD", hiding=frozenset({"-p", "--pid"}))
    step = _pid_mode("chrt", opts, 0)(command, i)
    if isinstance(step, int) and step < len(command) and command[step].isdigit():
        step += 1  # the priority (optional for some policies)
    return step


_SUDO = _Opts(short_arg="ugCDhprtTU",
              long_arg=frozenset({"--user", "--group", "--close-from", "--chdir", "--host",
                                  "--prompt", "--role", "--type", "--command-timeout",
                                  "--other-user", "--chroot"}))


def _flags(words: list[str], opts: _Opts) -> set[str]:
    """The options among ``words`` (a wrapper's own), short ones split out of their
    clusters ("-iE" is "-i" and "-E"; "-uleo" is "-u" with the value "leo")."""
    found: set[str] = set()
    for word in words:
        if word.startswith("--"):
            found.add(word.split("=", 1)[0])
        elif word.startswith("-"):
            for char in word[1:]:
                found.add(f"-{char}")
                if char in opts.short_arg:
                    break
    return found


def _sudo(command: list[str], i: int) -> Step:
    j, _ = _skip_options(command, i + 1, _SUDO)
    flags = _flags(command[i + 1:j], _SUDO)
    if flags & {"-e", "--edit", "-l", "--list"}:
        return _hidden("sudo -e/-l runs no program of yours")
    if j >= len(command) and flags & {"-i", "--login", "-s", "--shell"}:
        return _hidden("sudo -i/-s with no command runs a shell")
    return j


def _doas(command: list[str], i: int) -> Step:
    j, hider = _skip_options(command, i + 1, _Opts(short_arg="uC", hiding=frozenset({"-s"})))
    if hider:
        return _hidden("doas -s runs a shell")
    return j


def _npx(command: list[str], i: int) -> Step:
    """``npx [options] pkg``: with ``--package`` the program is a bin the package provides,
    named by the first word after the options, which is what ``npx`` runs too."""
    opts = _Opts(short_arg="pw", long_arg=frozenset({"--package", "--registry", "--cache",
                                                     "--userconfig", "--workspace",
                                                     "--prefix"}),
                 hiding=frozenset({"-c", "--call"}))
    j, hider = _skip_options(command, i + 1, opts)
    if hider:
        name = program_name(command[i])
        if i > 0 and program_name(command[i - 1]) in _MANAGERS:  # "pnpm dlx -c"
            name = f"{program_name(command[i - 1])} {name}"
        return _hidden(f"{name} {hider} hides the program in a string")
    return j


_MANAGERS = frozenset({"npm", "npm-cli", "pnpm", "yarn", "bun"})


def _subcommand(subs: frozenset[str], then: Handler) -> Handler:
    """``pnpm dlx pkg``, ``npm exec pkg``, ``bun x pkg``: a package runner behind a
    subcommand; without it the manager itself is the program."""

    def handle(command: list[str], i: int) -> Step:
        if i + 1 < len(command) and command[i + 1] in subs:
            return then(command, i + 1)
        return _found(command, i)

    return handle


_SHELL = _Opts(short_arg="oO", long_arg=frozenset({"--rcfile", "--init-file"}),
               hiding=frozenset({"-c"}))


def _shell(command: list[str], i: int) -> Step:
    """A shell named in the command: with ``-c`` it hides the program in a string;
    with a script the script is the program; else the shell itself is."""
    j, hider = _skip_options(command, i + 1, _SHELL)
    if hider:
        return _hidden(f"{program_name(command[i])} -c hides the program in a string")
    if j < len(command) and "-s" not in _flags(command[i + 1:j], _SHELL):
        return _found(command, j)
    return _found(command, i)


@dataclass(frozen=True)
class _Interpreter:
    """An interpreter's options: ``code`` options run inline code (the interpreter is
    then the program), ``module`` options name the program (``python3 -m aider``)."""

    opts: _Opts
    code: frozenset[str] = frozenset()
    module: frozenset[str] = frozenset()
    subcommand: str = ""  # "deno run script.ts"


def _interpreter(spec: _Interpreter) -> Handler:
    def handle(command: list[str], i: int) -> Step:
        j = i + 1
        if spec.subcommand:
            if j >= len(command) or command[j] != spec.subcommand:
                return _found(command, i)  # "deno" alone, "deno repl": the interpreter
            j += 1
        return _script(command, i, j, spec)

    return handle


def _script(command: list[str], i: int, j: int, spec: _Interpreter) -> Step:
    stops = spec.code | spec.module
    opts = _Opts(spec.opts.short_arg, spec.opts.long_arg, frozenset(stops))
    j, stop = _skip_options(command, j, opts)
    if stop in spec.module:
        rest = command[j].split(stop[1], 1)[1]  # "-m aider", "-maider"
        if rest:
            return Located(j, program_name(rest))
        return j + 1 if j + 1 < len(command) else _found(command, i)
    if stop or j >= len(command) or command[j] == "-":
        return _found(command, i)  # inline code, stdin, or the interactive interpreter
    if program_name(command[j]) in _SCRIPT_WRAPPERS:
        return j  # "node /usr/bin/npx -y @openai/codex": the walk goes on
    return _found(command, j)  # the script ("node codex.js" runs codex)


_PYTHON = _Interpreter(_Opts(short_arg="WX", long_arg=frozenset({"--check-hash-based-pycs"})),
                       code=frozenset({"-c"}), module=frozenset({"-m"}))
_NODE = _Interpreter(_Opts(short_arg="rC", long_arg=frozenset({
    "--require", "--import", "--loader", "--experimental-loader", "--conditions",
    "--env-file", "--title", "--input-type", "--inspect-port"})),
    code=frozenset({"-e", "-p", "--eval", "--print"}))
_RUBY = _Interpreter(_Opts(short_arg="IrCEF"), code=frozenset({"-e"}))
_PERL = _Interpreter(_Opts(short_arg="I"), code=frozenset({"-e", "-E"}))
_DENO = _Interpreter(_Opts(short_arg="cL", long_arg=frozenset({
    "--config", "--import-map", "--cert", "--location", "--seed", "--log-level",
    "--env-file", "--lock"})), subcommand="run")
_BUN_OWN = frozenset({"install", "i", "add", "a", "remove", "rm", "update", "build", "test",
                      "repl", "upgrade", "init", "create", "pm", "link", "unlink", "outdated",
                      "publish", "patch", "audit", "info"})


def _bun(command: list[str], i: int) -> Step:
    """``bun script.ts``, ``bun run script``, ``bun x pkg``; ``bun install`` and its other
    own subcommands are bun itself."""
    j = i + 1
    if j < len(command) and command[j] == "x":
        return _npx(command, j)
    if j < len(command) and command[j] == "exec":
        return _hidden("bun exec hides the program in a string")
    if j < len(command) and command[j] in _BUN_OWN:
        return _found(command, i)
    if j < len(command) and command[j] == "run":
        j += 1
    return _script(command, i, j, _Interpreter(_Opts(), code=frozenset({"-e", "--eval"})))


def _never(reason: str) -> Handler:
    def handle(command: list[str], i: int) -> Step:
        return _hidden(f"{program_name(command[i])} {reason}")

    return handle


# package runners that are scripts themselves, so an interpreter may run them
_SCRIPT_WRAPPERS = frozenset({"npx", "pnpx", "npm", "pnpm", "yarn", "npx-cli", "npm-cli"})
_ON_ANOTHER_MACHINE = _never("runs its program on another machine or in a container")
_IN_ITS_OWN_TERMINAL = _never("runs its program in a terminal of its own")

_WRAPPERS: dict[str, Handler] = {
    "env": _env,
    "nice": _plain(_Opts(short_arg="n", long_arg=frozenset({"--adjustment"}))),  # "-5" too
    "nohup": _plain(_Opts()),
    "stdbuf": _plain(_Opts(short_arg="ioe", long_arg=frozenset({"--input", "--output",
                                                                 "--error"}))),
    "timeout": _timeout,
    "ionice": _pid_mode("ionice", _Opts(short_arg="cn", long_arg=frozenset({
        "--class", "--classdata"}), hiding=frozenset({"-p", "--pid", "-P", "--pgid", "-u",
                                                      "--uid"})), 0),
    "taskset": _pid_mode("taskset", _Opts(hiding=frozenset({"-p", "--pid"})), 1),
    "chrt": _chrt,
    "setsid": _plain(_Opts()),
    "time": _plain(_Opts(short_arg="fo", long_arg=frozenset({"--format", "--output"}))),
    "sudo": _sudo,
    "doas": _doas,
    "su": _never("runs a shell (and its -c hides the program in a string)"),
    "npx": _npx,
    "pnpx": _npx,
    "bunx": _npx,
    "npx-cli": _npx,
    "npm": _subcommand(frozenset({"exec", "x"}), _npx),
    "npm-cli": _subcommand(frozenset({"exec", "x"}), _npx),
    "pnpm": _subcommand(frozenset({"dlx", "exec"}), _npx),
    "yarn": _subcommand(frozenset({"dlx", "exec"}), _npx),
    "bun": _bun,
    "deno": _interpreter(_DENO),
    "node": _interpreter(_NODE),
    "nodejs": _interpreter(_NODE),
    "ruby": _interpreter(_RUBY),
    "perl": _interpreter(_PERL),
    "script": _never("runs its program through a shell in a terminal of its own"),
    "tmux": _IN_ITS_OWN_TERMINAL,
    "screen": _IN_ITS_OWN_TERMINAL,
    "ssh": _ON_ANOTHER_MACHINE,
    "mosh": _ON_ANOTHER_MACHINE,
    "docker": _ON_ANOTHER_MACHINE,
    "podman": _ON_ANOTHER_MACHINE,
    "kubectl": _ON_ANOTHER_MACHINE,
}
SHELLS = frozenset({"bash", "sh", "dash", "zsh", "fish", "ksh", "mksh", "tcsh", "csh",
                    "busybox", "ash"})
_PYTHON_NAME = re.compile(r"(python|pypy)[\d.]*")


def _handler(name: str) -> Handler | None:
    if name in SHELLS:
        return _shell
    if _PYTHON_NAME.fullmatch(name):
        return _interpreter(_PYTHON)
    return _WRAPPERS.get(name)


def locate(command: list[str]) -> Located:
    """Walk ``command`` through its wrappers to the CLI's own program."""
    if not command:
        return _hidden("the command is empty")
    i = wrapper = 0
    while i < len(command):
        handler = _handler(program_name(command[i]))
        if handler is None:
            return _found(command, i)
        step = handler(command, i)
        if isinstance(step, Located):
            return step
        i, wrapper = max(step, i + 1), i  # every step moves right: the walk ends
    return _hidden(f"no program follows {program_name(command[wrapper])}")


def locate_program(command: list[str]) -> int | None:
    """The index of the CLI's own program in ``command``, or None when a wrapper hides it."""
    return locate(command).index


def env_after_wrappers(command: list[str], env: dict[str, str]) -> dict[str, str]:
    """The environment the CLI itself gets: ``env``'s assignments and removals in front of
    its program applied (``env -i HOME=/x CODEX_HOME=/y codex``), so what the sidecar reads
    for it (its config, its home) is what the CLI will read."""
    at = locate_program(command)
    out = dict(env)
    i = 0
    while i < (at if at is not None else len(command)):
        if program_name(command[i]) != "env":
            i += 1
            continue
        i += 1
        while i < len(command):
            word = command[i]
            if word in ("-i", "--ignore-environment", "-"):
                out.clear()
            elif word in ("-u", "--unset") and i + 1 < len(command):
                i += 1
                out.pop(command[i], None)
            elif word.startswith("--unset="):
                out.pop(word.split("=", 1)[1], None)
            elif word.startswith("-u") and len(word) > 2:
                out.pop(word[2:], None)
            elif word in ("-C", "--chdir") and i + 1 < len(command):
                i += 1
            elif "=" in word and not word.startswith(("=", "-")):
                name, value = word.split("=", 1)
                out[name] = value
            elif not word.startswith("-") or word == "--":
                break
            i += 1
    return out
