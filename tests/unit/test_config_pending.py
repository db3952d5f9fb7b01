"""``[gateway]`` bounds on what waits for an absent agent: defaults and checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from csp_core.config import (
    PENDING_MAX_AGE_LIMIT,
    PENDING_MAX_COUNT_LIMIT,
    GatewayConfig,
    gateway_config,
)
from csp_core.errors import ConfigError
from cspd.hub import MAX_QUEUE


def test_defaults_are_a_day_and_a_hundred(tmp_path: Path) -> None:
    cfg = gateway_config(path=tmp_path / "none.toml")
    assert (cfg.pending_max_age_s, cfg.pending_max_count) == (86400, 100)


def test_values_are_taken(tmp_path: Path) -> None:
    cfg = gateway_config({"gateway": {"pending_max_age_s": 3600, "pending_max_count": 20}},
                         path=tmp_path / "c.toml")
    assert cfg == GatewayConfig(pending_max_age_s=3600, pending_max_count=20)


@pytest.mark.parametrize("table,needle", [
    ({"pending_max_count": 0}, "positive"),
    ({"pending_max_count": -5}, "positive"),
    ({"pending_max_count": 2.5}, "must be int"),
    ({"pending_max_count": True}, "must be int"),
    ({"pending_max_count": "100"}, "must be int"),
    ({"pending_max_count": PENDING_MAX_COUNT_LIMIT + 1}, f"at most {PENDING_MAX_COUNT_LIMIT}"),
    ({"pending_max_age_s": 0}, "positive"),
    ({"pending_max_age_s": 86400.0}, "must be int"),
    ({"pending_max_age_s": 10**12}, f"at most {PENDING_MAX_AGE_LIMIT}"),
])
def test_invalid_values_name_the_key(tmp_path: Path, table: dict[str, object],
                                     needle: str) -> None:
    (key,) = table
    with pytest.raises(ConfigError, match=f"gateway\\.{key} .*{needle}"):
        gateway_config({"gateway": table}, path=tmp_path / "c.toml")


def test_the_largest_backlog_fits_in_one_connection() -> None:
    # the recent ones and the summary line take at most half of a connection's
    # queue: the other half is for live messages arriving meanwhile
    assert (PENDING_MAX_COUNT_LIMIT + 1) * 2 <= MAX_QUEUE + 2
