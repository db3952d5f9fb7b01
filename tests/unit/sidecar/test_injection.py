"""Injection: a chat message becomes keystrokes that cannot do anything but be read."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from csp_sidecar.injection import GUARD, PASTE_END, PASTE_START, guard, keystrokes_for, render_text
from csp_sidecar.profiles import Profile, load_profile, shipped_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cspd.protocol import Message

C0 = [chr(c) for c in range(0x20) if chr(c) not in "\n\t"]
C1 = [chr(c) for c in range(0x80, 0xA0)]
CONTROLS = [*C0, "\x7f", *C1]


def msg(content: str, sender: str = "alice", to: list[str] | None = None,
        mid: int = 7) -> Message:
    return Message(id=mid, room="main", sender=sender, to=to or ["bob"], kind="direct",
                   content=content, ts="2026-01-01T00:00:00Z")


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return run


def plain(**kw: object) -> Profile:
    return dataclasses.replace(load_profile("generic"), **kw)  # type: ignore[arg-type]


def inner(payload: bytes) -> bytes:
    assert payload.startswith(PASTE_START) and payload.endswith(PASTE_END)
    return payload[len(PASTE_START):-len(PASTE_END)]


# -- the text -------------------------------------------------------------------


def test_every_message_is_tagged_with_its_sender_and_addressees(runtime: Path) -> None:
    claude = load_profile("claude")
    assert render_text(msg("hi"), claude) == "[alice → @bob] hi"
    assert render_text(msg("hi", to=["all"]), claude) == "[alice → @all] hi"
    assert render_text(msg("hi", to=["bob", "carol"]), claude) == "[alice → @bob @carol] hi"


def test_the_sender_is_sanitised_too(runtime: Path) -> None:
    text = render_text(msg("hi", sender="ev\x1b[2Jil\x07"), load_profile("claude"))
    assert text == "[ev[2Jil → @bob] hi"


@pytest.mark.parametrize("name", shipped_names())
def test_no_shipped_profile_lets_a_message_start_with_its_command_prefixes(
        runtime: Path, name: str) -> None:
    profile = load_profile(name)
    for prefix in profile.guard_prefixes:
        for attempt in (f"{prefix}exit", f"  \t{prefix}exit", f"\n\n{prefix}exit",
                        f"\x1b{prefix}exit", f"\x00 {prefix}exit"):
            for p in (profile, dataclasses.replace(profile, tag_format="{text}")):
                text = render_text(msg(attempt), p)
                assert text[0] not in profile.guard_prefixes, (name, attempt, text)
                assert text.endswith(f"{prefix}exit")


def test_the_claude_guard_covers_bang_slash_hash_and_at(runtime: Path) -> None:
    assert set("!/#@") <= set(load_profile("claude").guard_prefixes)
    for name in ("codex", "gemini"):
        assert set("!/@") <= set(load_profile(name).guard_prefixes)


def test_guard_prefixes_only_leading_command_characters() -> None:
    assert guard("/exit", "!/#") == GUARD + "/exit"
    assert guard("   !rm", "!/#") == GUARD + "!rm"
    assert guard("say /exit", "!/#") == "say /exit"
    assert guard("/exit", "") == "/exit"
    assert guard("", "!/#") == ""


@pytest.mark.parametrize("ch", CONTROLS, ids=[f"{ord(c):#04x}" for c in CONTROLS])
def test_every_c0_c1_control_and_del_is_stripped(runtime: Path, ch: str) -> None:
    profile = plain(tag_format="{text}")
    assert render_text(msg(f"a{ch}b"), profile) == "ab"
    keys = keystrokes_for(msg(f"a{ch}b"), profile, "bob", bracketed_paste=True)
    assert inner(keys.payload) == b"ab"


def test_stripping_is_repeated_so_no_sequence_reassembles(runtime: Path) -> None:
    text = render_text(msg("x\x1b\x1b[[201~\x1b\x00[201~y"), plain(tag_format="{text}"))
    assert "\x1b" not in text and text == "x[[201~[201~y"


def test_a_user_tag_format_cannot_bring_controls_in(runtime: Path) -> None:
    text = render_text(msg("hi"), plain(tag_format="\x1b[31m{sender}\x1b[0m: {text}\x03"))
    assert text == "[31malice[0m: hi"


# -- the keystrokes -------------------------------------------------------------


def test_multi_line_text_is_one_bracketed_paste_and_the_submit_key_is_separate(
        runtime: Path) -> None:
    keys = keystrokes_for(msg("one\ntwo\r\nthree\n"), load_profile("claude"), "bob", True)
    assert keys.payload == PASTE_START + "[alice → @bob] one\rtwo\rthree".encode() + PASTE_END
    assert keys.submit == b"\r" and b"\r" not in keys.payload[-len(PASTE_END):]
    assert keys.text == "[alice → @bob] one\ntwo\nthree"


def test_an_end_of_paste_marker_inside_the_content_cannot_end_the_paste(runtime: Path) -> None:
    keys = keystrokes_for(msg("a\x1b[201~\x03/exit\r\x1b[201~b"), load_profile("claude"),
                          "bob", True)
    body = inner(keys.payload)
    assert PASTE_END not in body and b"\x1b" not in body and b"\x03" not in body
    assert keys.payload.count(PASTE_END) == 1


def test_without_bracketed_paste_lines_are_joined_so_no_newline_submits_early(
        runtime: Path) -> None:
    keys = keystrokes_for(msg("one\n\n  two\nthree"), load_profile("claude"), "bob", False)
    assert keys.payload == "[alice → @bob] one two three".encode()
    assert b"\r" not in keys.payload and b"\n" not in keys.payload
    typed = keystrokes_for(msg("one\ntwo"), plain(paste="typed"), "bob", True)
    assert PASTE_START not in typed.payload and b"\n" not in typed.payload


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(), sender=st.text(max_size=20),
       name=st.sampled_from(["claude", "codex", "gemini", "aider", "generic"]))
def test_for_any_text_the_paste_holds_no_escape_and_no_control_but_cr_and_tab(
        runtime: Path, content: str, sender: str, name: str) -> None:
    profile = load_profile(name)
    keys = keystrokes_for(msg(content, sender=sender), profile, "bob", True)
    body = inner(keys.payload).decode()
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in body if c not in "\r\t")
    assert body.lstrip()[:1] not in profile.guard_prefixes or not body.strip()


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_for_any_text_typed_mode_holds_no_control_at_all(runtime: Path, content: str) -> None:
    keys = keystrokes_for(msg(content), plain(paste="typed"), "bob", True)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in keys.payload.decode()
                   if c != "\t")


def test_a_message_too_long_to_paste_goes_to_a_private_file(runtime: Path) -> None:
    profile = plain(max_paste_bytes=100)
    content = "x" * 50 + "\x1b[201~" + "é" * 50  # 100 characters, more bytes
    keys = keystrokes_for(msg(content, mid=42), profile, "bob", True)
    path = runtime / "csp" / "messages" / "bob" / "message-42.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == "[alice → @bob] " + "x" * 50 + "[201~" + "é" * 50 + "\n"
    body = inner(keys.payload).decode()
    assert str(path) in body and body.startswith("[alice → @bob] a long message")
    assert len(keys.payload) < 300


def test_a_spill_file_already_there_is_made_private(runtime: Path) -> None:
    folder = runtime / "csp" / "messages" / "bob"
    folder.mkdir(parents=True, mode=0o755)
    old = folder / "message-43.txt"
    old.write_text("old")
    old.chmod(0o644)
    keystrokes_for(msg("y" * 200, mid=43), plain(max_paste_bytes=100), "bob", True)
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert old.read_text().startswith("[alice → @bob] yyy")


def test_a_message_just_within_the_limit_is_pasted(runtime: Path) -> None:
    text = render_text(msg("z" * 20), plain())
    keys = keystrokes_for(msg("z" * 20), plain(max_paste_bytes=len(text.encode())), "bob", True)
    assert inner(keys.payload).decode() == text
    assert not (runtime / "csp" / "messages").exists()
