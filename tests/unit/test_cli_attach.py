"""Units of ``cspctl attach``: the layout string, the agents config, presets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csp_cli import agentsconf, presets
from csp_cli.agentsconf import AgentSpec, key_line
from csp_cli.layout import checksum, grid_shape, layout_string, split_sizes
from csp_cli.workspace import WRAPPER, sidecar_argv
from csp_core.errors import ConfigError, Conflict, NotFound


def test_checksum_matches_tmux() -> None:
    # a layout tmux 3.3a printed for #{window_layout}
    assert checksum("120x40,0,0[120x20,0,0,0,120x9,0,21,1,120x9,0,31,2]") == "e79b"


@given(st.integers(10, 500), st.integers(1, 9))
def test_split_sizes_fill_the_space(total: int, parts: int) -> None:
    sizes = split_sizes(total, parts)
    assert sum(sizes) + parts - 1 == total
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("count", "shape"), [(1, (1, 1)), (3, (3, 1)), (4, (2, 2)),
                                              (5, (3, 2)), (9, (3, 3)), (10, (3, 4))])
def test_grid_shape(count: int, shape: tuple[int, int]) -> None:
    assert grid_shape(count) == shape


def _leaves(layout: str) -> list[tuple[int, int, int, int, int]]:
    body = layout.split(",", 1)[1]
    return [tuple(map(int, m)) for m in  # type: ignore[misc]
            re.findall(r"(\d+)x(\d+),(\d+),(\d+),(\d+)(?=[,\]}]|$)", body)]


@given(st.integers(40, 300), st.integers(20, 100), st.integers(0, 8))
def test_layout_cells_tile_the_window(width: int, height: int, agents: int) -> None:
    ids = [f"%{i}" for i in range(1, agents + 1)]
    layout = layout_string(width, height, "%0", ids, 30)
    assert checksum(layout.split(",", 1)[1]) == layout[:4]
    leaves = _leaves(layout)
    assert [leaf[4] for leaf in leaves] == list(range(agents + 1))
    chat = leaves[0]
    assert chat[:4] == ((width, height, 0, 0) if not agents else (width, chat[1], 0, 0))
    area = sum(w * h for w, h, *_ in leaves)
    assert area <= width * height
    for w, h, x, y, _ in leaves:
        assert w >= 1 and h >= 1 and x + w <= width and y + h <= height
        if agents:
            assert y == 0 or y > chat[1]  # agents below the chat
    if 0 < agents <= 3:
        assert len({leaf[3] for leaf in leaves[1:]}) == 1  # side by side


# -- config ----------------------------------------------------------------------

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_file_is_defaults(tmp_path: Path) -> None:
    conf = agentsconf.load(tmp_path / "nope.toml")
    assert conf.agents == [] and conf.layout.session == "csp"


def test_add_remove_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nhop_limit = 4\n')
    agentsconf.add_agent(AgentSpec("claude", ["claude"], profile="claude"), path)
    agentsconf.add_agent(AgentSpec("sh", ["bash", "--norc"], cwd="~/src", env={"A": "1"},
                                   room="dev"), path)
    conf = agentsconf.load(path)
    assert [a.name for a in conf.agents] == ["claude", "sh"]
    assert conf.agents[1].env == {"A": "1"} and conf.agents[1].room == "dev"
    assert conf.agents[1].resolved_cwd() == str(Path.home() / "src")
    with pytest.raises(Conflict):
        agentsconf.add_agent(AgentSpec("claude", ["x"]), path)
    agentsconf.add_agent(AgentSpec("claude", ["x"]), path, replace=True)
    assert agentsconf.load(path).get("claude").command == ["x"]
    agentsconf.remove_agent("claude", path)
    assert [a.name for a in agentsconf.load(path).agents] == ["sh"]
    with pytest.raises(NotFound):
        agentsconf.remove_agent("claude", path)
    assert "hop_limit = 4" in path.read_text()  # other tables survive


@pytest.mark.parametrize(("text", "line", "key"), [
    ('[[agents]]\nname = "a"\ncommand = "cat"\n', 3, "agents[0].command"),
    ('[[agents]]\nname = "a"\ncommand = ["cat"]\n\n[[agents]]\nname = "Bad!"\n'
     'command = ["x"]\n', 6, "agents[1].name"),
    ('[[agents]]\nname = "a"\ncommand = ["cat"]\n[[agents]]\nname = "a"\ncommand = ["x"]\n',
     5, "agents[1].name"),
    ('[[agents]]\nname = "a"\ncommand = ["cat"]\ncolour = "red"\n', 4, "agents[0].colour"),
    ('[[agents]]\nname = "a"\n', 1, "agents[0].command"),
    ('[[agents]]\nname = "a"\ncommand = ["c"]\n\n[agents.env]\nA = 1\n', 5,
     "agents[0].env"),
    ('[layout]\n# the session\nsession = "has space"\n', 3, "layout.session"),
    ('[layout]\nmouse = "yes"\n', 2, "layout.mouse"),
    ('[layout]\nchat_height = 99\n', 2, "layout.chat_height"),
    ('[layout]\nsize = 1\n', 2, "layout.size"),
])
def test_bad_config_names_file_line_and_key(tmp_path: Path, text: str, line: int,
                                            key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        agentsconf.load(path)
    assert err.value.message.startswith(f"{path}:{line}: {key}:"), err.value.message
    assert err.value.details["line"] == line and err.value.details["key"] == key


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.toml: .*line 2"):
        agentsconf.load(write(tmp_path, '[layout]\nmouse = \n'))


def test_key_line_prefers_the_right_table() -> None:
    text = '[layout]\nsession = "a"\n[[agents]]\nname = "x"\nsession = 1\n'
    assert key_line(text, "layout", "session") == 2
    assert key_line(text, "agents", "session", 0) == 5


# -- presets and pane commands -------------------------------------------------------

def test_presets_never_add_skip_flags_by_themselves() -> None:
    for p in presets.PRESETS.values():
        assert not set(p.command) & set(p.skip_permissions)
        assert p.skip_permissions  # but the flag is known, so it can be offered
    assert presets.preset_for_command(["/usr/local/bin/claude", "-c"]) is presets.PRESETS[
        "claude"]
    assert presets.preset_for_command(["vim"]) is None


def test_sidecar_argv_and_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSP_SIDECAR", "/opt/csp-sidecar -v")
    spec = AgentSpec("rev", ["codex", "--x"], profile="codex", room="dev")
    assert sidecar_argv(spec) == ["/opt/csp-sidecar", "-v", "--name", "rev", "--profile",
                                  "codex", "--room", "dev", "--", "codex", "--x"]
    # the agent's env goes to the CLI alone, never the sidecar (whose HOME keeps its log
    # in the user's state directory)
    homed = AgentSpec("rev", ["codex"], env={"HOME": "/tmp/throwaway", "A": "b=c"})
    assert sidecar_argv(homed)[-6:] == ["--env", "HOME=/tmp/throwaway", "--env", "A=b=c",
                                        "--", "codex"]
    assert '"$@"' in WRAPPER and "restart it with" in WRAPPER
