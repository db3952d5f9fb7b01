"""Token and Origin checks, unit level and through the real app."""

from __future__ import annotations

import hmac
import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from csp_core import auth
from csp_core.auth import TokenChecker, check_origin, ensure_token, own_origins, rotate_token
from csp_core.errors import ConfigError, Forbidden, Unauthorized
from tests.unit.conftest import Api


def test_ensure_token_creates_private_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "csp" / "token"
    token = ensure_token(path)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_token(path) == token  # the second caller reads, never overwrites


def test_ensure_token_race_never_sees_a_half_written_file(tmp_path: Path) -> None:
    # many processes start at once (gateway + clients): all must agree on one token
    path = tmp_path / "csp" / "token"
    code = ("import sys; from pathlib import Path; from csp_core.auth import ensure_token;"
            "print(ensure_token(Path(sys.argv[1])))")
    for _ in range(3):
        if path.exists():
            path.unlink()
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(8)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
        assert len({o.strip() for o, _ in outs}) == 1
        assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temp files left


def test_read_token_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no token"):
        auth.read_token(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        auth.read_token(empty)


def test_checker_uses_constant_time_compare(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "token"
    token = ensure_token(path)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module csp_core.auth calls
    checker = TokenChecker(path)
    checker.check(f"Bearer {token}")
    with pytest.raises(Unauthorized):
        checker.check("Bearer nope")
    assert calls == [(token.encode(), token.encode()), (b"nope", token.encode())]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "Basic abc",
                                    "Bearer \udcff\udcfe", "Bearer \ud800"])
def test_checker_refuses(tmp_path: Path, header: str | None) -> None:
    checker = TokenChecker(tmp_path / "token") if ensure_token(tmp_path / "token") else None
    assert checker is not None
    with pytest.raises(Unauthorized):
        checker.check(header)


def test_checker_picks_up_rotation(tmp_path: Path) -> None:
    path = tmp_path / "token"
    old = ensure_token(path)
    checker = TokenChecker(path)
    checker.check(f"Bearer {old}")
    new = rotate_token(path)
    assert new != old and stat.S_IMODE(path.stat().st_mode) == 0o600
    checker.check(f"bearer {new}")  # scheme is case-insensitive
    with pytest.raises(Unauthorized):
        checker.check(f"Bearer {old}")


def test_checker_keeps_last_token_while_file_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = ensure_token(path)
    checker = TokenChecker(path)
    path.unlink()
    checker.check(f"Bearer {token}")


def test_origin_rules() -> None:
    own = own_origins(8765)
    check_origin(None, own)
    for origin in ("http://127.0.0.1:8765", "http://localhost:8765/", "HTTP://LOCALHOST:8765",
                   "http://[::1]:8765"):
        check_origin(origin, own)
    for origin in ("http://evil.example", "http://127.0.0.1:8766", "null", "",
                   "http://localhost:8765.evil.example", "https://localhost:8765"):
        with pytest.raises(Forbidden):
            check_origin(origin, own)


async def test_api_requires_token(api: Api) -> None:
    r = await api.client.get("/v1/health")
    assert r.status == 401 and (await r.json())["error"] == "unauthorized"
    r = await api.client.get("/v1/health", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
    r = await api.client.get("/v1/health", headers=api.headers())
    assert r.status == 200 and (await r.json())["ok"] is True


async def test_api_follows_rotation(api: Api) -> None:
    new = rotate_token(api.token_path)
    r = await api.client.get("/v1/health", headers=api.headers())
    assert r.status == 401
    r = await api.client.get("/v1/health", headers={"Authorization": f"Bearer {new}"})
    assert r.status == 200


@pytest.mark.parametrize("origin,status", [
    (None, 200), ("http://127.0.0.1:8765", 200), ("http://localhost:8765", 200),
    ("http://evil.example", 403), ("http://127.0.0.1:9", 403)])
async def test_api_origin(api: Api, origin: str | None, status: int) -> None:
    headers = api.headers(**({"Origin": origin} if origin else {}))
    r = await api.client.get("/v1/health", headers=headers)
    assert r.status == status
    if status == 403:
        assert (await r.json())["error"] == "forbidden"


async def test_foreign_origin_refused_before_token_check(api: Api) -> None:
    # a browser page never learns whether its guess at the token was right
    r = await api.client.get("/v1/health", headers={"Origin": "http://evil.example"})
    assert r.status == 403


async def test_websocket_upgrade_checks_origin_and_token(api: Api) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await api.client.ws_connect("/v1/stream", headers=api.headers(
            Origin="http://evil.example"))
    assert err.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await api.client.ws_connect("/v1/stream")
    assert err.value.status == 401
    ws = await api.client.ws_connect("/v1/stream", headers=api.headers(
        Origin="http://localhost:8765"))
    hello = await ws.receive_json(timeout=10)
    assert hello["type"] == "hello"
    await ws.close()


def test_token_file_not_world_readable_even_with_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ensure_token(tmp_path / "t" / "token")
        rotate_token(tmp_path / "t" / "token")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t" / "token").stat().st_mode) == 0o600
