"""The bearer token and the Origin check.

The token is a random secret in ``$XDG_RUNTIME_DIR/csp/token`` (0600 in a 0700
directory).  Whoever starts first creates it (the gateway or a client about to
socket-activate it), atomically and exclusively.  The gateway re-reads the file
when it changes, so ``cspctl token --rotate`` takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

from . import paths
from .errors import ConfigError, Forbidden, Unauthorized


def ensure_token(path: Path | None = None) -> str:
    """Read the token, creating it first if there is none."""
    path = path or paths.token_path()
    paths.ensure_private_dir(path.parent)
    if path.exists():
        return read_token(path)
    # write it aside, then link it into place: link() is exclusive and atomic, so
    # a racing reader never sees a created-but-still-empty token file
    tmp = path.with_name(f".token.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    return read_token(path)


def read_token(path: Path | None = None) -> str:
    path = path or paths.token_path()
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"no token at {path}: start the gateway first") from None
    except PermissionError:
        raise ConfigError(f"cannot read the token at {path}: permission denied") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty; run `cspctl token --rotate`")
    return token


def rotate_token(path: Path | None = None) -> str:
    """Replace the token atomically; every client must re-read it."""
    path = path or paths.token_path()
    paths.ensure_private_dir(path.parent)
    tmp = path.with_name(f".token.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    os.replace(tmp, path)
    return read_token(path)


class TokenChecker:
    """Constant-time check of ``Authorization: Bearer`` against the token file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = b""
        self.refresh()

    def refresh(self) -> None:
        st = self.path.stat()
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            self._token = read_token(self.path).encode()
            self._stamp = stamp

    def check(self, header: str | None) -> None:
        # keep the last good token if the file is briefly missing
        with contextlib.suppress(OSError, ConfigError):
            self.refresh()
        if not header:
            raise Unauthorized("missing token: send 'Authorization: Bearer <token>' "
                               "(the token is in $XDG_RUNTIME_DIR/csp/token)")
        scheme, _, value = header.partition(" ")
        # header text may carry undecodable bytes as surrogates: compare them as bytes
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode("utf-8", "surrogatepass"), self._token):
            raise Unauthorized("wrong token")


def check_origin(origin: str | None, own: set[str]) -> None:
    """Refuse browsers on foreign pages (DNS rebinding): a present Origin must be ours."""
    if origin is None:
        return
    if origin.rstrip("/").lower() not in own:
        raise Forbidden(f"origin {origin!r} is not allowed")


def own_origins(port: int) -> set[str]:
    return {f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"}
