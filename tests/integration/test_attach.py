"""``cspctl attach/spawn/kill`` on a private tmux server with a real gateway and sidecars."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.conftest import CspEnv, GatewayProcess, require
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

FIELDS = ("pane_id", "pane_top", "pane_left", "pane_width", "pane_dead", "@csp_role",
          "@csp_agent", "pane_title", "pane_start_command", "pane_pid")


def panes(server: TmuxServer, session: str = "csp") -> list[dict[str, str]]:
    fmt = "\x1f".join("#{" + f + "}" for f in FIELDS)
    out = server.run("list-panes", "-s", "-t", f"={session}", "-F", fmt).stdout
    return [dict(zip(FIELDS, line.split("\x1f"), strict=True))
            for line in out.splitlines() if line]


def add_agent(env: CspEnv, name: str, *command: str, options: tuple[str, ...] = ()) -> None:
    r = env.cspctl("agents", "add", name, *options, "--", *command)
    assert r.returncode == 0, r.stderr


def attach(env: CspEnv, server: TmuxServer, *extra: str) -> subprocess.CompletedProcess[str]:
    return env.cspctl("attach", "--detached", "-L", server.socket, *extra)


def sidecar_works(env: CspEnv) -> bool:
    r = env.run(sys.executable, "-m", "csp_sidecar", "--help")
    return r.returncode == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_attach_builds_the_layout_once(csp_env: CspEnv, gateway: GatewayProcess,
                                       tmux: TmuxServer) -> None:
    require(sidecar_works(csp_env), "csp-sidecar does not run")
    add_agent(csp_env, "one", "cat")
    add_agent(csp_env, "two", "cat", options=("--profile", "generic"))
    r = attach(csp_env, tmux)
    assert r.returncode == 0, r.stderr
    rows = panes(tmux)
    assert [p["@csp_role"] for p in rows] == ["chat", "agent", "agent"]
    assert [p["@csp_agent"] for p in rows[1:]] == ["one", "two"]  # the config's order
    chat, one, two = rows
    assert chat["pane_start_command"].endswith("chat")
    # agents below the chat (the top row is the border's title), side by side
    assert chat["pane_top"] == "1"
    assert one["pane_top"] == two["pane_top"] and int(one["pane_top"]) > 1
    assert int(one["pane_left"]) < int(two["pane_left"])
    assert "csp-sidecar --name one -- cat" in one["pane_start_command"]
    assert "csp-sidecar --name two --profile generic -- cat" in two["pane_start_command"]
    # the sidecars join the gateway; their titles name them
    wait_for(lambda: {"one", "two"} <= set(_online(csp_env)), what="both agents online")
    for name, pane in (("one", one), ("two", two)):
        wait_for(lambda n=name, p=pane: n in tmux.run(
            "display-message", "-p", "-t", p["pane_id"], "#{pane_title}").stdout,
            what=f"{name}'s title")
        # the border shows the sidecar's own title (state and queue), which the agent
        # cannot hide by retitling its pane
        tmux.run("select-pane", "-t", pane["pane_id"], "-T", "retitled by the agent")
        border = tmux.run("show-options", "-wv", "-t", "csp:", "pane-border-format").stdout
        wait_for(lambda n=name, p=pane, b=border: f"{n} · ready" in tmux.run(
            "display-message", "-p", "-t", p["pane_id"], b.strip()).stdout,
            what=f"{name}'s state in its border")
    # options scoped to this session and window, not the server
    assert tmux.run("show-options", "-v", "-t", "csp", "mouse").stdout.strip() == "on"
    assert tmux.run("show-options", "-gv", "mouse").stdout.strip() == "off"
    assert tmux.run("show-options", "-wv", "-t", "csp:", "pane-border-status").stdout.strip() \
        == "top"
    assert tmux.run("show-options", "-gwv", "pane-border-status").stdout.strip() == "off"

    again = attach(csp_env, tmux)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert [p["pane_id"] for p in panes(tmux)] == [p["pane_id"] for p in rows]
    assert tmux.run("list-sessions", "-F", "#{session_name}").stdout.split() == ["csp"]


def _online(env: CspEnv) -> list[str]:
    import json
    r = env.cspctl("agents", "--json")
    return [a["name"] for a in json.loads(r.stdout) if a.get("online")] if r.returncode == 0 \
        else []


def test_more_than_three_agents_are_tiled(csp_env: CspEnv, gateway: GatewayProcess,
                                          tmux: TmuxServer) -> None:
    for name in ("a1", "a2", "a3", "a4"):
        add_agent(csp_env, name, "cat")
    r = attach(csp_env, tmux, "--session", "grid")
    assert r.returncode == 0, r.stderr
    rows = panes(tmux, "grid")
    chat, agents = rows[0], rows[1:]
    assert chat["@csp_role"] == "chat" and chat["pane_top"] == "1"
    assert int(chat["pane_width"]) == int(
        tmux.run("display-message", "-p", "-t", "grid:", "#{window_width}").stdout)
    tops = sorted({int(a["pane_top"]) for a in agents})
    assert len(tops) == 2 and tops[0] > 1  # two rows of two under the chat
    for top in tops:
        assert sum(int(a["pane_top"]) == top for a in agents) == 2


def test_spawn_adds_restarts_and_refuses_twins(csp_env: CspEnv, gateway: GatewayProcess,
                                               tmux: TmuxServer) -> None:
    flag = csp_env.root / "may-run"
    add_agent(csp_env, "one", "cat")
    # exits with status 3 until the flag file exists
    add_agent(csp_env, "moody", "sh", "-c", f"test -e {flag} || exit 3; exec cat")
    early = csp_env.cspctl("spawn", "one", "-L", tmux.socket)
    assert early.returncode == 5 and "cspctl attach" in early.stderr
    r = attach(csp_env, tmux)
    assert r.returncode == 0, r.stderr
    moody = next(p for p in panes(tmux) if p["@csp_agent"] == "moody")
    # an exited agent stays on screen and says how to restart it
    wait_for(lambda: "restart it with:  cspctl spawn moody -L " + tmux.socket
             in tmux.run("capture-pane", "-p", "-J", "-t", moody["pane_id"]).stdout,
             what="the restart hint")
    text = tmux.run("capture-pane", "-p", "-J", "-t", moody["pane_id"]).stdout
    assert "moody exited with status 3" in text
    wait_for(lambda: "moody · exited (status 3)" in tmux.run(
        "display-message", "-p", "-t", moody["pane_id"], "#{pane_title}").stdout,
        what="the title to say it exited")
    assert next(p for p in panes(tmux) if p["@csp_agent"] == "moody")["pane_dead"] == "1"

    flag.touch()
    r = csp_env.cspctl("spawn", "moody", "-L", tmux.socket)
    assert r.returncode == 0, r.stderr
    again = next(p for p in panes(tmux) if p["@csp_agent"] == "moody")
    assert again["pane_id"] == moody["pane_id"] and again["pane_dead"] == "0"
    assert len(panes(tmux)) == 3

    twin = csp_env.cspctl("spawn", "one", "-L", tmux.socket)
    assert twin.returncode == 6 and "already running" in twin.stderr

    add_agent(csp_env, "late", "cat")
    hint = attach(csp_env, tmux)
    assert f"late is configured but has no pane: start it with `cspctl spawn late -L " \
        f"{tmux.socket}`" in hint.stderr
    r = csp_env.cspctl("spawn", "late", "-L", tmux.socket)
    assert r.returncode == 0, r.stderr
    rows = panes(tmux)
    assert [p["@csp_agent"] for p in rows] == ["", "one", "moody", "late"]
    assert len({p["pane_top"] for p in rows[1:]}) == 1  # still one row under the chat

    unknown = csp_env.cspctl("spawn", "nobody", "-L", tmux.socket)
    assert unknown.returncode == 5 and "cspctl agents add nobody" in unknown.stderr


def test_kill_ends_agents_and_session(csp_env: CspEnv, gateway: GatewayProcess,
                                      tmux: TmuxServer) -> None:
    require(sidecar_works(csp_env), "csp-sidecar does not run")
    add_agent(csp_env, "one", "cat")
    add_agent(csp_env, "two", "cat")
    assert attach(csp_env, tmux).returncode == 0
    wait_for(lambda: {"one", "two"} <= set(_online(csp_env)), what="both agents online")
    pids = [int(p["pane_pid"]) for p in panes(tmux)]
    r = csp_env.cspctl("kill", "-L", tmux.socket, "--timeout", "10")
    assert r.returncode == 0, r.stderr
    assert "ended" in r.stderr and "terminated" not in r.stderr  # nobody had to be forced
    assert tmux.run("has-session", "-t", "=csp", check=False).returncode != 0
    wait_for(lambda: not any(alive(pid) for pid in pids), what="the panes' processes to end")
    wait_for(lambda: not set(_online(csp_env)) & {"one", "two"}, what="agents offline")
    # idempotent
    assert csp_env.cspctl("kill", "-L", tmux.socket).returncode == 0


def _fake_cli_dir(root: Path, names: tuple[str, ...]) -> str:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    tmux_exe = shutil.which("tmux")
    assert tmux_exe
    (bin_dir / "tmux").symlink_to(tmux_exe)  # the only other program attach looks up
    for name in names:
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\nexec cat\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir)


@pytest.mark.parametrize("found", [("claude", "gemini"), ()])
def test_first_run_without_agents(csp_env: CspEnv, gateway: GatewayProcess,
                                  tmux: TmuxServer, found: tuple[str, ...]) -> None:
    path = _fake_cli_dir(csp_env.root, found)  # nothing else: real CLIs may be installed
    r = csp_env.cspctl("attach", "--detached", "-L", tmux.socket, extra_env={"PATH": path})
    assert r.returncode == 0, r.stderr
    if found:
        assert "Found on PATH: claude, gemini" in r.stderr
        assert "cspctl agents add claude" in r.stderr
    else:
        assert "no agent CLI was found on PATH" in r.stderr
        assert "cspctl agents add NAME -- COMMAND" in r.stderr
    assert [p["@csp_role"] for p in panes(tmux)] == ["chat"]


def test_attach_without_gateway_says_how_to_start_it(csp_env: CspEnv,
                                                     tmux: TmuxServer) -> None:
    r = attach(csp_env, tmux)
    assert r.returncode == 3
    assert "cspd" in r.stderr and "Traceback" not in r.stderr
    assert tmux.run("has-session", "-t", "=csp", check=False).returncode != 0


def test_bad_config_names_file_line_and_key(csp_env: CspEnv,
                                            tmux: TmuxServer) -> None:
    csp_env.config.parent.mkdir(parents=True)
    csp_env.config.write_text('[[agents]]\nname = "ok"\ncommand = ["cat"]\n\n'
                              '[[agents]]\nname = "bad"\ncommand = "cat"\n')
    r = attach(csp_env, tmux)
    assert r.returncode == 2
    assert f"{csp_env.config}:7: agents[1].command" in r.stderr


class _Server:
    """A second private tmux server, for tests that nest one inside the other."""

    def __init__(self, env: CspEnv) -> None:
        self.socket = f"csp-test-{uuid.uuid4().hex[:10]}"
        self.env = env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.env.run("tmux", "-L", self.socket, *args)

    def new_session(self, name: str, command: str) -> None:
        env_args: list[str] = []
        for key in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "PATH", "HOME"):
            if key in self.env.env:
                env_args += ["-e", f"{key}={self.env.env[key]}"]
        r = self.run("new-session", "-d", "-s", name, "-x", "120", "-y", "40", *env_args,
                     command)
        assert r.returncode == 0, r.stderr

    def client_sessions(self) -> list[str]:
        return self.run("list-clients", "-F", "#{client_session}").stdout.split()


@pytest.fixture
def inner(csp_env: CspEnv) -> Iterator[_Server]:
    server = _Server(csp_env)
    yield server
    server.run("kill-server")


CSPCTL = f"{shlex.quote(sys.executable)} -m csp_cli"


def test_attach_from_a_terminal_attaches_it(csp_env: CspEnv, gateway: GatewayProcess,
                                            tmux: TmuxServer,
                                            inner: _Server) -> None:
    """Run in a terminal (a pane of another tmux), attach takes it over: nesting."""
    add_agent(csp_env, "one", "cat")  # configured: no first-run question
    outer = _Server(csp_env)
    outer.socket = tmux.socket
    outer.new_session("term", f"{CSPCTL} attach -L {inner.socket}")
    wait_for(lambda: inner.client_sessions() == ["csp"], what="a client on the csp session")
    wait_for(lambda: "connected" in tmux.run("capture-pane", "-p", "-t", "=term:").stdout,
             what="the chat on the outer terminal")
    # from inside tmux on the same server, attach switches the client instead of nesting
    inner.new_session("work", "bash --norc")
    outer.new_session("term2", f"env -u TMUX tmux -L {inner.socket} attach -t work")
    wait_for(lambda: sorted(inner.client_sessions()) == ["csp", "work"], what="two clients")
    inner.run("send-keys", "-t", "=work:", "-l", f"{CSPCTL} attach -L {inner.socket}")
    inner.run("send-keys", "-t", "=work:", "Enter")
    wait_for(lambda: inner.client_sessions() == ["csp", "csp"], what="the client switched")
    sessions = inner.run("list-sessions", "-F", "#{session_name}").stdout.split()
    assert sorted(sessions) == ["csp", "work"]


def test_interactive_first_run_adds_the_found_clis(
        csp_env: CspEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from csp_cli import attach_cmd
    from csp_cli.presets import PRESETS
    monkeypatch.setenv("XDG_CONFIG_HOME", csp_env.env["XDG_CONFIG_HOME"])
    monkeypatch.setattr(attach_cmd.presets, "installed",
                        lambda: [PRESETS["claude"], PRESETS["aider"]])

    @click.command()
    def first() -> None:
        specs = attach_cmd.first_run(interactive=True)
        click.echo(",".join(s.name for s in specs))

    result = CliRunner().invoke(first, input="y\n")
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("claude,aider")
    assert "--skip-permissions" in result.output  # offered, not applied
    assert csp_env.cspctl("config", "show", "--json").stdout.count('"--') == 0
    declined = CliRunner().invoke(first, input="n\n")
    assert "cspctl agents add NAME" in declined.output
    assert declined.output.splitlines()[-1] == ""  # nothing added


async def test_tmux_wrapper_errors_are_typed(tmux: TmuxServer) -> None:
    from csp_cli.tmux import NoServer, NoSession, Tmux, TmuxError
    t = Tmux(tmux.socket, env=tmux.env)
    assert not t.has_session("csp")
    with pytest.raises(NoServer):
        t.list_panes("csp")
    pane = t.new_session("s1", ["sleep", "60"], width=80, height=20)
    assert pane.startswith("%") and t.has_session("s1") and not t.has_session("s")
    with pytest.raises(NoSession):
        t.list_panes("nope")
    with pytest.raises(TmuxError, match="unknown command"):
        t.run("no-such-command")
    # the async form, for callers on an event loop
    assert await t.arun("display-message", "-p", "-t", pane, "#{pane_id}") == pane
    [info] = t.list_panes("s1")
    assert info.id == pane and info.start_command == "sleep 60" and not info.dead


def test_attach_size_and_scrollback(csp_env: CspEnv, gateway: GatewayProcess,
                                    tmux: TmuxServer) -> None:
    """No terminal: the layout is made for --size (else 160x48); every pane, the chat's
    included, keeps [layout] history_limit lines."""
    for bad, why in (("wide", "is not COLSxROWS"), ("10x5", "out of range"),
                     ("160x48x2", "is not COLSxROWS")):
        r = attach(csp_env, tmux, "--size", bad)
        assert r.returncode == 2 and why in r.stderr and "--size" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert tmux.run("has-session", "-t", "=csp", check=False).returncode != 0

    add_agent(csp_env, "one", "cat")
    r = attach(csp_env, tmux, "--size", "120x40")
    assert r.returncode == 0, r.stderr
    size = tmux.run("display-message", "-p", "-t", "=csp:", "#{window_width}x#{window_height}")
    assert size.stdout.strip() == "120x40"
    rows = panes(tmux)
    assert [p["@csp_role"] for p in rows] == ["chat", "agent"]
    limits = [tmux.run("display-message", "-p", "-t", p["pane_id"], "#{history_limit}")
              .stdout.strip() for p in rows]
    assert limits == ["50000", "50000"]
    # one window: the placeholder the session was made around is gone
    assert tmux.run("list-windows", "-t", "=csp", "-F", "#{window_name}").stdout.split() \
        == ["csp"]

    r = attach(csp_env, tmux, "--session", "other")
    assert r.returncode == 0, r.stderr
    size = tmux.run("display-message", "-p", "-t", "=other:", "#{window_width}x#{window_height}")
    assert size.stdout.strip() == "160x48"
