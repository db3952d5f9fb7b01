"""``cspctl agents add/remove`` keep the person's config.toml as written."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from csp_cli import agentsconf, tomledit
from csp_cli.agentsconf import AgentSpec
from csp_core.errors import ConfigError

COMMENTED = '''# my csp setup
[layout]
session = "work"   # the tmux session
mouse = true

# the reviewers
[[agents]]
name = "claude"    # the main one
command = ["claude"]
profile = "claude"

[gateway]
max_message_bytes = 131072  # long replies
'''

SHAPES = {
    "commented": COMMENTED,
    "empty": "",
    "comment only": "# nothing yet\n",
    "no final newline": '[layout]\nmouse = false',
    "agents last, no blank": '[[agents]]\nname = "a"\ncommand = ["a"]\n',
    "agents then tables, tight":
        '[[agents]]\nname = "a"\ncommand = ["a"]\n[gateway]\nhop_limit = 3\n',
    "trailing comment": '[[agents]]\nname = "a"\ncommand = ["a"]\n\n# end of file\n',
}


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_add_then_remove_gives_the_file_back_byte_for_byte(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    spec = AgentSpec("codex", ["codex", "--model", "o3"], cwd="~/src/x",
                     env={"CODEX_HOME": "/tmp/c", "WITH SPACE": 'q"uote'})
    agentsconf.add_agent(spec, path)
    added = path.read_text()
    assert agentsconf.load(path).get("codex") == spec
    if text.strip():
        assert text.rstrip("\n") in added  # the rest untouched
    agentsconf.remove_agent("codex", path)
    expected = text if not text or text.endswith("\n") else text + "\n"
    assert path.read_text() == expected


def test_replace_edits_the_entry_in_place(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(COMMENTED)
    agentsconf.add_agent(AgentSpec("claude", ["claude", "--model", "opus"]), path,
                         replace=True)
    text = path.read_text()
    assert "# the reviewers\n[[agents]]\nname = \"claude\"\n" in text
    assert "max_message_bytes = 131072  # long replies" in text
    assert agentsconf.load(path).get("claude").command == ["claude", "--model", "opus"]


def test_removing_a_middle_agent_keeps_its_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(COMMENTED)
    agentsconf.add_agent(AgentSpec("b", ["b"]), path)
    agentsconf.add_agent(AgentSpec("c", ["c"]), path)
    agentsconf.remove_agent("b", path)
    assert [a.name for a in agentsconf.load(path).agents] == ["claude", "c"]
    assert path.read_text().startswith(COMMENTED)


def test_inline_agents_are_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = 'agents = [{name = "a", command = ["a"]}]  # inline\n'
    path.write_text(text)
    with pytest.raises(ConfigError, match="edit the file by hand"):
        agentsconf.remove_agent("a", path)
    assert path.read_text() == text


def test_rendered_values_are_toml() -> None:
    entry = {"name": "x", "command": ["a\x1b[2J", "b\\c"], "env": {"K": "v\n", "a.b": "1"}}
    doc = tomllib.loads(tomledit.render_entry("agents", entry))
    assert doc["agents"] == [entry]
