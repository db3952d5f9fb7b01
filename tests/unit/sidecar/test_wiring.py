"""Per-run wiring: what each shipped profile adds to its CLI's command line and environment.

The produced values are parsed back the way the CLI would (Claude's settings
JSON and its shell command, Codex's TOML ``-c`` value) and, where it matters,
run for real against a hook channel.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from csp_core.errors import ConfigError
from csp_sidecar.hooks import SOCKET_ENV, HookChannel, HookEvent
from csp_sidecar.profiles import load_profile, parse_profile
from csp_sidecar.wiring import RunFacts, Wiring, hook_argv, validate, wire
from tests.polling import async_wait_for, wait_for

SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="cspw", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def facts(sock_dir: Path, command: list[str], **env: str) -> RunFacts:
    environment = {"HOME": str(sock_dir / "home"), **env}
    return RunFacts("agent", sock_dir / "hooks" / "agent.sock", environment, command,
                    cwd=sock_dir, session=SESSION)


# -- every shipped profile ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["aider", "claude", "codex", "gemini", "generic", "shell"])
def test_every_shipped_reports_table_can_be_wired(name: str) -> None:
    validate(load_profile(name))


@pytest.mark.parametrize("name", ["aider", "generic", "shell"])
def test_a_profile_without_reports_adds_nothing(sock_dir: Path, name: str) -> None:
    wiring = wire(load_profile(name), facts(sock_dir, ["x"]))
    assert wiring == Wiring() and not wiring.reports
    assert wiring.apply(["x", "a"]) == ["x", "a"]


def test_the_hook_command_is_the_fast_form() -> None:
    argv = hook_argv()
    assert argv[:3] == (sys.executable, "-I", "-S")
    assert argv[3].endswith("hook_cmd.py") and Path(argv[3]).is_file()


@pytest.mark.parametrize("reports, error", [
    ({"kind": "telepathy"}, "'kind' must be one of"),
    ({"kind": "notify", "confg_key": "notify"}, "unknown key 'confg_key'"),
    ({"kind": "settings_hooks", "settings_flag": "--settings",
      "events": {"Stop": {"kind": "finished"}}}, "kind must be one of"),
    ({"kind": "settings_hooks", "settings_flag": "--settings",
      "events": {"Stop": {"kind": "turn_end", "replies": "x"}}}, "unknown key 'replies'"),
    ({"kind": "transcript", "session_flag": "--s", "transcript": "{home}/{nope}"},
     "bad placeholder"),
])
def test_a_bad_reports_table_is_a_clear_error(sock_dir: Path, reports: dict[str, Any],
                                              error: str) -> None:
    profile = parse_profile("x", {"reports": reports}, "x.toml")
    with pytest.raises(ConfigError, match=error):
        wire(profile, facts(sock_dir, ["x"]))


# -- Claude Code: --settings with hooks ----------------------------------------------------


def claude_settings(wiring: Wiring) -> dict[str, Any]:
    assert wiring.args[0] == "--settings"
    value = wiring.args[1]
    text = value if value.startswith("{") else Path(value).read_text()
    settings: dict[str, Any] = json.loads(text)
    return settings


def test_claude_gets_hooks_that_call_csp_hook(sock_dir: Path) -> None:
    profile = load_profile("claude")
    wiring = wire(profile, facts(sock_dir, ["claude", "--model", "opus"]))
    assert wiring.env == {SOCKET_ENV: str(sock_dir / "hooks" / "agent.sock")}
    assert wiring.hooks is not None and wiring.transcript is None
    hooks = claude_settings(wiring)["hooks"]
    assert set(hooks) == set(profile.reports["events"])
    for label, entries in hooks.items():
        (entry,) = entries
        (command,) = entry["hooks"]
        assert command["type"] == "command" and command["timeout"] == 10
        assert shlex.split(command["command"]) == [*hook_argv(), *socket_args(sock_dir),
                                                   "--stdin", label]
    assert hooks["Notification"][0]["matcher"] == \
        "permission_prompt|elicitation_dialog|elicitation_url_dialog"
    assert hooks["PreToolUse"][0]["hooks"][0]["async"] is True
    assert "matcher" not in hooks["Stop"][0] and "async" not in hooks["Stop"][0]["hooks"][0]
    assert wiring.apply(["claude", "--model", "opus"]) == ["claude", *wiring.args, "--model",
                                                           "opus"]


async def test_claudes_hook_command_runs_through_a_shell_and_reaches_the_channel(
        sock_dir: Path) -> None:
    """The command string as Claude Code runs it (a shell), JSON on stdin."""
    run = facts(sock_dir, ["claude"])
    wiring = wire(load_profile("claude"), run)
    got: list[HookEvent] = []
    assert wiring.hooks is not None
    channel = HookChannel(run.hook_socket, got.append, wiring.hooks)
    await channel.start()
    try:
        command = claude_settings(wiring)["hooks"]["Stop"][0]["hooks"][0]["command"]
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={"PATH": os.environ["PATH"], **wiring.env})
        payload = '{"last_assistant_message": "it\'s \\"done\\" ✓"}'.encode()
        out, _ = await proc.communicate(payload)
        assert (proc.returncode, out) == (0, b"")

        async def arrived() -> list[HookEvent]:
            return got
        (event,) = await async_wait_for(arrived, what="the Stop event")
        assert (event.kind, event.reply) == ("turn_end", 'it\'s "done" ✓')
    finally:
        await channel.close()


def test_a_hook_path_with_spaces_and_quotes_is_quoted_for_the_shell(sock_dir: Path) -> None:
    odd = ("/opt/my python/bin/python3", "-I", "-S", "/x/it's here/hook_cmd.py")
    run = replace(facts(sock_dir, ["claude"]), hook_argv=odd)
    command = claude_settings(wire(load_profile("claude"), run))["hooks"]["Stop"][0]["hooks"][0]
    assert shlex.split(command["command"]) == [*odd, *socket_args(sock_dir), "--stdin", "Stop"]


def test_claude_merges_the_users_own_settings_json_and_keeps_their_hooks(sock_dir: Path) -> None:
    theirs: dict[str, Any] = {"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command",
                                                                 "command": "my-stop"}]}]}}
    command = ["claude", "--settings", json.dumps(theirs), "-c"]
    wiring = wire(load_profile("claude"), facts(sock_dir, command))
    path = Path(wiring.args[1])
    assert wiring.files == [path]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = claude_settings(wiring)
    assert settings["model"] == "opus"
    stop = settings["hooks"]["Stop"]
    assert stop[0] == theirs["hooks"]["Stop"][0]  # theirs first, untouched
    assert "hook_cmd.py" in stop[1]["hooks"][0]["command"]
    # their --settings is replaced by the merged one, nothing else changes
    assert wiring.apply(command) == ["claude", "--settings", str(path), "-c"]
    wiring.cleanup()
    assert not path.exists()


def test_claude_merges_a_users_settings_file(sock_dir: Path) -> None:
    (sock_dir / "mine.json").write_text(json.dumps({"env": {"A": "1"}}))
    command = ["claude", "--settings=mine.json"]
    wiring = wire(load_profile("claude"), facts(sock_dir, command))
    assert claude_settings(wiring)["env"] == {"A": "1"}
    assert wiring.apply(command) == ["claude", *wiring.args]
    wiring.cleanup()


def test_claude_with_an_unreadable_settings_file_falls_back_to_the_screen(
        sock_dir: Path) -> None:
    command = ["claude", "--settings", "missing.json"]
    wiring = wire(load_profile("claude"), facts(sock_dir, command))
    assert not wiring.reports and wiring.args == [] and wiring.notes
    assert wiring.apply(command) == command  # theirs stays: Claude reports the error itself


# -- Codex: -c notify=[...] chaining to the user's notify ------------------------------------


def socket_args(sock_dir: Path) -> list[str]:
    """csp-hook names its socket itself: an ``env -i`` in front of the CLI cannot lose it."""
    return ["--socket", str(sock_dir / "hooks" / "agent.sock")]


def codex_notify(wiring: Wiring) -> list[str]:
    assert wiring.args[0] == "-c"
    value: list[str] = tomllib.loads(wiring.args[1])["notify"]  # "notify=[...]" is TOML
    return value


def test_codex_notify_calls_csp_hook_without_a_user_notify(sock_dir: Path) -> None:
    wiring = wire(load_profile("codex"), facts(sock_dir, ["codex"]))
    assert codex_notify(wiring) == [*hook_argv(), *socket_args(sock_dir), "--argv", "notify"]
    assert wiring.env == {SOCKET_ENV: str(sock_dir / "hooks" / "agent.sock")}
    assert wiring.apply(["codex", "--no-alt-screen"]) == ["codex", *wiring.args,
                                                          "--no-alt-screen"]


@pytest.mark.parametrize("where", ["CODEX_HOME", "HOME"])
def test_codex_chains_to_the_users_notify_from_their_config(sock_dir: Path, where: str) -> None:
    codex_home = sock_dir / "codex-home" if where == "CODEX_HOME" else sock_dir / "home" / ".codex"
    codex_home.mkdir(parents=True)
    theirs = ["notify-send", "-a", "Codex \"CLI\"", "ünï\tcode"]
    (codex_home / "config.toml").write_text(
        f'model = "x"\nnotify = {json.dumps(theirs, ensure_ascii=False)}\n[tui]\nx = 1\n')
    env = {"CODEX_HOME": str(codex_home)} if where == "CODEX_HOME" else {}
    wiring = wire(load_profile("codex"), facts(sock_dir, ["codex"], **env))
    assert codex_notify(wiring) == [*hook_argv(), *socket_args(sock_dir), "--argv", "notify",
                                    "--then", *theirs]
    assert any("chains" in n for n in wiring.notes)


def test_codex_chains_to_a_notify_given_on_the_command_line_and_replaces_it(
        sock_dir: Path) -> None:
    command = ["codex", "-c", 'notify=["my-notify", "x"]', "--config", "model=\"o3\"", "hi"]
    wiring = wire(load_profile("codex"), facts(sock_dir, command))
    assert codex_notify(wiring)[-3:] == ["--then", "my-notify", "x"]
    assert wiring.apply(command) == ["codex", *wiring.args, "--config", 'model="o3"', "hi"]


def test_codex_with_a_broken_config_is_wired_without_chaining(sock_dir: Path) -> None:
    codex_home = sock_dir / "ch"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text("notify = [unterminated\n")
    wiring = wire(load_profile("codex"), facts(sock_dir, ["codex"], CODEX_HOME=str(codex_home)))
    assert codex_notify(wiring) == [*hook_argv(), *socket_args(sock_dir), "--argv", "notify"]
    assert wiring.reports and any("cannot be read" in n for n in wiring.notes)


async def test_codex_notify_as_codex_runs_it_reaches_the_sidecar_and_the_users_program(
        sock_dir: Path) -> None:
    """Codex appends the JSON to the notify argv: the sidecar and the user's program get it."""
    record = sock_dir / "user-notify.json"
    script = sock_dir / "user_notify.py"
    script.write_text("import json, sys\n"
                      f"open({str(record)!r} + '.tmp', 'w').write(json.dumps(sys.argv[1:]))\n"
                      "import os\n"
                      f"os.rename({str(record)!r} + '.tmp', {str(record)!r})\n")
    codex_home = sock_dir / "ch"
    codex_home.mkdir()
    theirs = [sys.executable, str(script), "--from-config"]
    (codex_home / "config.toml").write_text(f"notify = {json.dumps(theirs)}\n")
    run = facts(sock_dir, ["codex"], CODEX_HOME=str(codex_home))
    wiring = wire(load_profile("codex"), run)
    got: list[HookEvent] = []
    assert wiring.hooks is not None
    channel = HookChannel(run.hook_socket, got.append, wiring.hooks)
    await channel.start()
    try:
        payload = json.dumps({"type": "agent-turn-complete", "thread-id": "t",
                              "input-messages": ["hi"], "last-assistant-message": "hello\n✓"})
        proc = await asyncio.create_subprocess_exec(
            *codex_notify(wiring), payload, stdin=subprocess.DEVNULL,
            env={"PATH": os.environ["PATH"], **wiring.env})
        assert await proc.wait() == 0

        async def arrived() -> list[HookEvent]:
            return got
        (event,) = await async_wait_for(arrived, what="the notify event")
        assert (event.kind, event.reply, event.thread) == ("turn_end", "hello\n✓", "t")
        argv = wait_for(lambda: json.loads(record.read_text()) if record.exists() else None,
                        what="the user's notify program")
        assert argv == ["--from-config", payload]
    finally:
        await channel.close()


# -- Gemini CLI: --session-id and its transcript ---------------------------------------------


def test_gemini_gets_a_session_id_and_a_transcript_to_follow(sock_dir: Path) -> None:
    wiring = wire(load_profile("gemini"), facts(sock_dir, ["gemini"]))
    assert wiring.args == ["--session-id", SESSION]
    assert wiring.env == {} and wiring.hooks is None
    spec = wiring.transcript
    assert spec is not None and spec.session == SESSION
    assert spec.pattern == f"{sock_dir}/home/.gemini/tmp/*/chats/session-*-0f8fad5b.jsonl"
    assert (spec.type_field, spec.prompt_types, spec.reply_types) == ("type", ("user",),
                                                                      ("gemini",))
    assert spec.session_field == "sessionId" and spec.settle_ms == 1500


def test_gemini_home_variable_and_glob_characters_in_it(sock_dir: Path) -> None:
    odd = sock_dir / "we[ir]d*home"
    wiring = wire(load_profile("gemini"), facts(sock_dir, ["gemini"], GEMINI_CLI_HOME=str(odd)))
    assert wiring.transcript is not None
    assert wiring.transcript.pattern.startswith(f"{sock_dir}/we[[]ir]d[*]home/.gemini/tmp/")


def test_gemini_keeps_a_session_id_the_user_chose(sock_dir: Path) -> None:
    mine = "11111111-2222-3333-4444-555555555555"
    command = ["gemini", "--session-id", mine]
    wiring = wire(load_profile("gemini"), facts(sock_dir, command))
    assert wiring.args == [] and wiring.transcript is not None
    assert wiring.transcript.session == mine and "-11111111.jsonl" in wiring.transcript.pattern
    assert wiring.apply(command) == command


@pytest.mark.parametrize("flag", [["--resume", "latest"], ["-r", "2"], ["--resume=3"]])
def test_gemini_resuming_another_session_is_left_to_the_screen(sock_dir: Path,
                                                              flag: list[str]) -> None:
    wiring = wire(load_profile("gemini"), facts(sock_dir, ["gemini", *flag]))
    assert not wiring.reports and wiring.args == [] and wiring.notes
