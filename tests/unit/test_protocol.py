"""Names, address words and mentions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csp_core.errors import BadRequest
from csp_core.protocol import check_name, mentions, now_iso, parse_targets, split_address_words


@pytest.mark.parametrize("name", ["a", "codex", "claude-2", "g_1", "a" * 32])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "1a", "-a", "a b", "a" * 33, "é", "a/b", "a.b",
                                  "all", "system", "a\n"])
def test_bad_names(name: str) -> None:
    with pytest.raises(BadRequest):
        check_name(name)


def test_reserved_names_are_fine_as_rooms() -> None:
    assert check_name("all", "room name") == "all"


def test_parse_targets() -> None:
    t = parse_targets([])
    assert t.everyone and not t.names and t.room is None
    t = parse_targets(["@codex", "@claude", "@codex"])
    assert t.names == ["codex", "claude"] and t.is_direct
    t = parse_targets(["@all", "@codex"])
    assert t.everyone and not t.is_direct
    t = parse_targets(["#dev"])
    assert t.room == "dev" and t.everyone
    assert parse_targets(["@human"]).names == ["human"]


@pytest.mark.parametrize("words", [["codex"], ["@"], ["#"], ["@Codex"], ["#dev", "#ops"],
                                   ["@a b"], [""], ["#ALL"]])
def test_parse_targets_rejects(words: list[str]) -> None:
    with pytest.raises(BadRequest):
        parse_targets(words)


@given(st.lists(st.text(max_size=10), max_size=5))
def test_parse_targets_only_raises_bad_request(words: list[str]) -> None:
    try:
        t = parse_targets(words)
    except BadRequest:
        return
    assert t.everyone or t.names


def test_split_address_words() -> None:
    assert split_address_words(["@a", "#r", "hello", "@b"]) == (["@a", "#r"], ["hello", "@b"])
    assert split_address_words(["hi"]) == ([], ["hi"])
    assert split_address_words(["@", "x"]) == ([], ["@", "x"])


@pytest.mark.parametrize("text,names", [
    ("@codex please", ["codex"]), ("hey @claude and @codex, @claude", ["claude", "codex"]),
    ("mail me at bob@codex.dev", []), ("@Codex", []), ("(@gemini)", ["gemini"]),
    ("@codex-", ["codex"]), ("@" + "a" * 40, []), ("@@codex", [])])
def test_mentions(text: str, names: list[str]) -> None:
    assert mentions(text) == names


def test_now_iso_is_utc_with_z() -> None:
    ts = now_iso()
    assert ts.endswith("Z") and "T" in ts and len(ts) == len("2026-01-01T00:00:00.000Z")
