"""The web view's login codes and sessions (cspd.web.WebSessions): single use, short
lives, bounded memory, and a session ends when the token it was opened under changes."""

from __future__ import annotations

import pytest

from cspd import web

DIGEST = b"d" * 32


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(web.time, "monotonic", lambda: now[0])
    return now


def test_a_code_logs_in_once(clock: list[float]) -> None:
    s = web.WebSessions()
    code = s.new_code()
    sid = s.redeem(code, DIGEST)
    assert sid is not None and s.valid(sid, DIGEST)
    assert s.redeem(code, DIGEST) is None  # spent
    assert s.redeem("made-up", DIGEST) is None


def test_codes_and_sessions_expire(clock: list[float]) -> None:
    s = web.WebSessions()
    late = s.new_code()
    clock[0] += web.CODE_TTL + 1
    assert s.redeem(late, DIGEST) is None
    sid = s.redeem(s.new_code(), DIGEST)
    assert sid is not None
    clock[0] += web.SESSION_TTL + 1
    assert not s.valid(sid, DIGEST)


def test_a_rotated_token_ends_the_session(clock: list[float]) -> None:
    s = web.WebSessions()
    sid = s.redeem(s.new_code(), DIGEST)
    assert sid is not None
    assert not s.valid(sid, b"e" * 32)
    assert not s.valid(sid, DIGEST)  # gone for good, not only for the other token


def test_memory_is_bounded(clock: list[float]) -> None:
    s = web.WebSessions()
    codes = [s.new_code() for _ in range(web.MAX_CODES + 5)]
    assert len(s.codes) == web.MAX_CODES
    assert s.redeem(codes[0], DIGEST) is None  # the oldest went first
    sessions = [s.redeem(s.new_code(), DIGEST) for _ in range(web.MAX_SESSIONS + 3)]
    assert len(s.sessions) == web.MAX_SESSIONS
    assert sessions[0] is not None and not s.valid(sessions[0], DIGEST)
    assert sessions[-1] is not None and s.valid(sessions[-1], DIGEST)


def test_hello_proof_depends_on_token_and_nonce() -> None:
    a = web.hello_proof("token-a", "n" * 16)
    assert a == web.hello_proof("token-a", "n" * 16)
    assert a != web.hello_proof("token-b", "n" * 16)
    assert a != web.hello_proof("token-a", "m" * 16)
