"""``[gateway]`` in config.toml: defaults, checks, atomic writes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from csp_core.config import GatewayConfig, gateway_config, load_document, save_text
from csp_core.errors import ConfigError


def test_defaults_when_missing(tmp_path: Path) -> None:
    cfg = gateway_config(path=tmp_path / "none.toml")
    assert cfg == GatewayConfig()
    assert cfg.max_message_bytes == 64 * 1024 and cfg.default_room == "main"


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "csp" / "config.toml"
    save_text('[gateway]\nhop_limit = 3\nrate_per_second = 5\n\n[sidecar]\nother = "kept"\n',
              path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    cfg = gateway_config(path=path)
    assert cfg.hop_limit == 3 and cfg.rate_per_second == 5.0
    assert isinstance(cfg.rate_per_second, float)
    assert load_document(path)["sidecar"] == {"other": "kept"}
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("table,needle", [
    ({"nope": 1}, "unknown key gateway.nope"),
    ({"hop_limit": "3"}, "gateway.hop_limit"),
    ({"hop_limit": 0}, "positive"),
    ({"rate_burst": 2.5}, "gateway.rate_burst"),
    ({"hop_limit": True}, "gateway.hop_limit"),
    ({"default_room": 5}, "gateway.default_room"),
    ({"default_room": "Not A Room"}, "gateway.default_room"),
    ({"tcp_port": 70000}, "gateway.tcp_port"),
])
def test_invalid_values_name_the_key(tmp_path: Path, table: dict[str, object],
                                     needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        gateway_config({"gateway": table}, path=tmp_path / "c.toml")


def test_gateway_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a table"):
        gateway_config({"gateway": 3}, path=tmp_path / "c.toml")


def test_broken_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[gateway\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_document(path)
