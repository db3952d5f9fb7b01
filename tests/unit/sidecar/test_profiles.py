"""Profiles: shipped ones load, a user's own override them, mistakes name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from csp_core.errors import ConfigError
from csp_sidecar.profiles import load_profile, profile_for_command, shipped_names

SHIPPED = ["aider", "claude", "codex", "gemini", "generic", "shell"]


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "config" / "csp" / "profiles"
    folder.mkdir(parents=True)
    return folder


def test_the_shipped_profiles_are_all_there() -> None:
    assert shipped_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_is_sane(user_dir: Path, name: str) -> None:
    p = load_profile(name)
    assert p.name == name and p.description
    assert p.paste in ("bracketed", "typed")
    assert p.chunk_max_chars > 0 and p.max_paste_bytes > 0
    assert "{text}" in p.tag_format
    if p.is_agent():
        assert set("!/") <= set(p.guard_prefixes)
        assert p.submit_key == "\r" and p.submit_delay_ms > 0


def test_the_shell_profile_is_never_injected_into(user_dir: Path) -> None:
    assert not load_profile("shell").is_agent()
    assert all(load_profile(n).is_agent() for n in SHIPPED if n != "shell")


@pytest.mark.parametrize("name,ready,busy", [
    ("claude", "❯ ", "✻ Pondering… (esc to interrupt)"),
    ("codex", "› Ask Codex to do anything", "Working (3s • esc to interrupt)"),
    ("gemini", ">   Type your message or @path/to/file", "⠼ Thinking (esc to cancel, 3s)"),
])
def test_agent_profiles_recognise_their_prompt_and_busy_lines(
        user_dir: Path, name: str, ready: str, busy: str) -> None:
    p = load_profile(name)
    assert any(r.search(ready) for r in p.prompt_patterns)
    assert any(r.search(busy) for r in p.busy_patterns)
    assert not any(r.search(ready) for r in p.busy_patterns)


def test_a_user_profile_overrides_the_shipped_one(user_dir: Path) -> None:
    (user_dir / "claude.toml").write_text('description = "mine"\nsubmit_delay_ms = 900\n')
    p = load_profile("claude")
    assert p.description == "mine" and p.submit_delay_ms == 900
    assert p.prompt_patterns == ()  # replaced whole, not merged


def test_a_user_only_profile_loads_and_is_listed_when_a_name_is_unknown(user_dir: Path) -> None:
    (user_dir / "mine.toml").write_text('commands = ["mycli"]\n')
    assert load_profile("mine").commands == ("mycli",)
    with pytest.raises(ConfigError) as info:
        load_profile("nope")
    assert "nope" in info.value.message and "mine" in info.value.message
    assert "claude" in info.value.message


@pytest.mark.parametrize("content,needle", [
    ("quiet_ms = 1\nsubmit_key = = 3\n", "line 2"),  # bad TOML
    ("colour = 3\n", "'colour'"),
    ("prompt_patterns = ['(unclosed']\n", "'prompt_patterns'"),
    ("chrome_patterns = 'not a list'\n", "'chrome_patterns'"),
    ("commands = [1, 2]\n", "'commands'"),
    ("quiet_ms = '400'\n", "'quiet_ms'"),
    ("quiet_ms = 0.5\n", "'quiet_ms'"),
    ("inject = 1\n", "'inject'"),
    ("quiet_ms = true\n", "'quiet_ms'"),
    ("paste = 'typed-fast'\n", "'paste'"),
    ("tag_format = 'no text here'\n", "'tag_format'"),
    ("tag_format = '{sender} {room}: {text}'\n", "'tag_format'"),
    ("tag_format = '{text} {'\n", "'tag_format'"),
    ("submit_delay_ms = -1\n", "'submit_delay_ms'"),
    ("chunk_max_chars = 0\n", "'chunk_max_chars'"),
    ("max_paste_bytes = 0\n", "'max_paste_bytes'"),
])
def test_mistakes_name_the_file_and_the_key(user_dir: Path, content: str, needle: str) -> None:
    path = user_dir / "broken.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_profile("broken")
    assert str(path) in info.value.message and needle in info.value.message


def test_profile_for_command_picks_by_program_name(user_dir: Path) -> None:
    assert profile_for_command(["claude", "--resume"]).name == "claude"
    assert profile_for_command(["/usr/local/bin/codex"]).name == "codex"
    assert profile_for_command(["gemini"]).name == "gemini"
    assert profile_for_command(["aider", "--model", "x"]).name == "aider"
    assert profile_for_command(["bash", "--norc"]).name == "shell"
    assert profile_for_command(["python3", "-i"]).name == "generic"
    assert profile_for_command([]).name == "generic"


def test_a_user_profile_can_claim_a_program(user_dir: Path) -> None:
    (user_dir / "fast-claude.toml").write_text('commands = ["claude"]\nquiet_ms = 100\n')
    (user_dir / "py.toml").write_text('commands = ["python3"]\n')
    assert profile_for_command(["claude"]).name == "fast-claude"
    assert profile_for_command(["python3"]).name == "py"


def test_profile_env_and_args_apply_without_overriding_the_user() -> None:
    from csp_sidecar.profiles import apply_to_command, apply_to_env, load_profile

    claude = load_profile("claude")
    assert apply_to_env(claude, {})["CLAUDE_CODE_DISABLE_ALTERNATE_SCREEN"] == "1"
    mine = {"CLAUDE_CODE_DISABLE_ALTERNATE_SCREEN": "0"}
    assert apply_to_env(claude, mine) == mine
    gemini = load_profile("gemini")
    assert apply_to_env(gemini, {"CI": "true", "GITHUB_ACTIONS": "true", "TERM": "xterm"}) == {
        "TERM": "xterm"}
    codex = load_profile("codex")
    assert apply_to_command(codex, ["codex", "resume"]) == [
        "codex", "--no-alt-screen", "--no-daemon", "resume"]
    assert apply_to_command(codex, ["codex", "--no-alt-screen"]) == [
        "codex", "--no-daemon", "--no-alt-screen"]


def test_profile_env_must_be_a_table_of_strings(tmp_path: Path) -> None:
    from csp_sidecar.profiles import parse_profile

    with pytest.raises(ConfigError, match="'env' must be a table of strings"):
        parse_profile("x", {"env": {"A": 1}}, "x.toml")
    with pytest.raises(ConfigError, match="'args' must be a list of strings"):
        parse_profile("x", {"args": "--flag"}, "x.toml")


@pytest.mark.parametrize("command,expected", [
    (["env", "HOME=/x", "codex"], ["env", "HOME=/x", "codex", "--no-alt-screen", "--no-daemon"]),
    (["npx", "-y", "@openai/codex@0.171.0", "resume"],
     ["npx", "-y", "@openai/codex@0.171.0", "--no-alt-screen", "--no-daemon", "resume"]),
    (["nice", "-n", "5", "/usr/bin/codex"],
     ["nice", "-n", "5", "/usr/bin/codex", "--no-alt-screen", "--no-daemon"]),
    (["node", "./codex.js", "--no-daemon"],
     ["node", "./codex.js", "--no-alt-screen", "--no-daemon"]),
    # a wrapper's own words that look like the args do not count as given
    (["env", "X=--no-daemon", "codex"], ["env", "X=--no-daemon", "codex", "--no-alt-screen",
                                          "--no-daemon"]),
])
def test_profile_args_go_right_after_the_program_however_wrapped(
        user_dir: Path, command: list[str], expected: list[str]) -> None:
    from csp_sidecar.profiles import apply_to_command

    assert apply_to_command(load_profile("codex"), command) == expected


@pytest.mark.parametrize("command,wrapper", [
    (["sh", "-c", "codex"], "sh -c"),
    (["ssh", "host", "codex"], "ssh"),
    (["env", "-S", "codex"], "env -S"),
    (["tmux", "new", "codex"], "tmux"),
])
def test_a_wrapper_that_hides_the_program_is_an_error_at_start_when_args_are_due(
        user_dir: Path, command: list[str], wrapper: str) -> None:
    from csp_sidecar.profiles import apply_to_command

    with pytest.raises(ConfigError) as info:
        apply_to_command(load_profile("codex"), command)
    message = info.value.message
    assert wrapper in message and "--no-alt-screen" in message
    assert "codex" in message and "without args" in message


def test_a_profile_without_args_leaves_any_command_as_it_is(user_dir: Path) -> None:
    from csp_sidecar.profiles import apply_to_command

    for command in (["sh", "-c", "claude"], ["env", "A=1", "claude", "-c"], []):
        result = apply_to_command(load_profile("claude"), command)
        assert result == command and result is not command


@pytest.mark.parametrize("command,name", [
    (["env", "HOME=/x", "codex"], "codex"),
    (["npx", "-y", "@openai/codex@0.171.0"], "codex"),
    (["node", "/usr/bin/gemini"], "gemini"),
    (["/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"], "claude"),
    (["nice", "python3", "-m", "aider"], "aider"),
    (["env", "bash"], "shell"),
    (["sh", "-c", "codex"], "shell"),  # a shell runs what is typed in, whatever it starts
    (["bash", "run-agent.sh"], "shell"),
    (["python3", "-i"], None),
    (["ssh", "host", "codex"], None),
    (["sudo", "-i"], None),
    (["env", "HOME=/x"], None),
    ([], None),
])
def test_match_profile_names_the_profile_of_the_located_program(
        user_dir: Path, command: list[str], name: str | None) -> None:
    from csp_sidecar.profiles import match_profile

    found = match_profile(command)
    assert (found.name if found else None) == name
    assert profile_for_command(command).name == (name or "generic")


def test_match_profile_prefers_the_users_profile(user_dir: Path) -> None:
    from csp_sidecar.profiles import match_profile

    (user_dir / "mine.toml").write_text('commands = ["codex", "mycli"]\n')
    for command in (["env", "A=1", "codex"], ["npx", "mycli@2"]):
        found = match_profile(command)
        assert found is not None and found.name == "mine"
