"""Control characters never survive into a terminal."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cspd.sanitize import one_line, strip_controls


@pytest.mark.parametrize("raw,clean", [
    ("a\x1b[201~b", "a[201~b"), ("x\x03y\x04z", "xyz"), ("\x1b\x1b[Z", "[Z"),
    ("line1\r\nline2", "line1\nline2"), ("cr\ronly", "cronly"), ("tab\tok\n", "tab\tok\n"),
    ("del\x7f c1\x9b2J", "del c12J"), ("ls\u2028sep", "lssep"), ("", "")])
def test_strip_controls(raw: str, clean: str) -> None:
    assert strip_controls(raw) == clean


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    out = strip_controls(text)
    assert all(ch in "\n\t" or unicodedata.category(ch) != "Cc" for ch in out)
    assert "\x1b" not in out and "\r" not in out
    assert strip_controls(out) == out  # a fixed point


@given(st.text())
def test_one_line(text: str) -> None:
    out = one_line(text)
    assert "\n" not in out and "\t" not in out and out == out.strip()
