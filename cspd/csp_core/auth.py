"""The bearer token, the agents' credentials and the Origin check.

The token is a random secret in ``$XDG_RUNTIME_DIR/csp/token`` (0600 in a 0700
directory).  Whoever starts first creates it (the gateway or a client about to
socket-activate it), atomically and exclusively.  The gateway re-reads the file
when it changes, so ``cspctl token --rotate`` takes effect without a restart.

The token is the owner's.  An agent gets its own *credential* instead
(``agent.NAME.MAC``, an HMAC of its name under a second secret, ``agent-key``
beside the token): the gateway hands it to the sidecar at registration and the
sidecar puts it in the agent's environment, so an agent's ``cspctl`` says who
it is without the owner's token, on TCP too, where the kernel cannot tell.
Derived rather than stored, a credential outlives a gateway restart, and
rotating the owner's token does not strand the agents that are running.

Reading the token is on every ``cspctl`` command's start-up path; the hashing and
random modules only the gateway and a token's creation need are imported where used.
"""

from __future__ import annotations

import contextlib
import os

from . import paths
from .endpoint import AGENT_TOKEN_ENV
from .errors import BadRequest, ConfigError, CspError, Forbidden, Unauthorized
from .names import check_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

AGENT_KEY_FILE = "agent-key"
CREDENTIAL_PREFIX = "agent."


def ensure_token(path: Path | None = None) -> str:
    """Read the token, creating it first if there is none."""
    return _ensure_secret(path or paths.token_path())


def _ensure_secret(path: Path) -> str:
    paths.ensure_private_dir(path.parent)
    if path.exists():
        return read_token(path)
    import secrets
    # write it aside, then link it into place: link() is exclusive and atomic, so
    # a racing reader never sees a created-but-still-empty token file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    return read_token(path)


def read_token(path: str | Path | None = None) -> str:
    path = path or paths.token_path()
    try:
        with open(path) as fh:
            token = fh.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"no token at {path}: start the gateway first") from None
    except PermissionError:
        raise ConfigError(f"cannot read the token at {path}: permission denied") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty; run `cspctl token --rotate`")
    return token


def client_token(path: Path | None = None, *, create: bool = True) -> str:
    """What a client sends: its agent's credential inside an agent, else the token.

    Inside an agent the credential says who is speaking without the owner's token;
    elsewhere a client may be the one that socket-activates the gateway, so it may
    have to create the token the gateway will then read.
    """
    credential = os.environ.get(AGENT_TOKEN_ENV, "").strip()
    if credential:
        return credential
    if path is None:  # as a rule the token is there: read it by name (see paths)
        with contextlib.suppress(ConfigError):
            return read_token(os.path.join(paths.runtime_base(), paths.TOKEN_NAME))
    return ensure_token(path) if create else read_token(path)


class Bearer:
    """What a long-lived client (``cspctl chat``, a sidecar) sends as its bearer.

    Re-read whenever the token file changes: such a client must not hold on to a
    token that ``cspctl token --rotate`` replaced (a stat per request is cheap next
    to the request); a file briefly missing keeps the token it has.  A token given
    up front, or an agent's credential once issued, is never re-read.
    """

    def __init__(self, token: str | None = None, token_path: Path | None = None, *,
                 create: bool = True) -> None:
        self._token = token
        self._fixed = token is not None
        self._stamp: tuple[int, int] | None = None  # the token file's, when last read
        self._path = token_path
        self._create = create

    def value(self) -> str:
        if self._fixed and self._token is not None:
            return self._token
        stamp = self._file_stamp()
        if self._token is None or (stamp is not None and stamp != self._stamp):
            # inside an agent, the agent's credential; else the owner's token
            self._token = client_token(self._path, create=self._create)
            self._stamp = self._file_stamp()
        return self._token

    def refresh(self) -> bool:
        """Re-read the token now (after a 401); True when it changed, i.e. worth a retry."""
        if self._fixed:
            return False
        before, self._stamp = self._token, None
        self._token = None
        try:
            return self.value() != before
        except CspError:
            self._token = before
            return False

    def use_credential(self, credential: str) -> None:
        """From now on the agent's credential, which the gateway issued."""
        self._token = credential
        self._fixed = True

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = (self._path or paths.token_path()).stat()
        except (OSError, CspError):
            return None
        return (st.st_ino, st.st_mtime_ns)


def agent_key_path(token_path: Path | None = None) -> Path:
    return (token_path or paths.token_path()).with_name(AGENT_KEY_FILE)


def ensure_agent_key(token_path: Path | None = None) -> str:
    """The secret agents' credentials derive from (created like the token)."""
    return _ensure_secret(agent_key_path(token_path))


def agent_credential(name: str, key: str) -> str:
    """The credential of agent ``name``: only a holder of ``key`` can make it."""
    import base64
    import hashlib
    import hmac

    mac = hmac.new(key.encode(), f"csp-agent:{name}".encode(), hashlib.sha256).digest()
    return f"{CREDENTIAL_PREFIX}{name}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def credential_name(value: str) -> str | None:
    """The agent name a credential-shaped value claims (unverified), or None."""
    if not value.startswith(CREDENTIAL_PREFIX):
        return None
    name, dot, mac = value[len(CREDENTIAL_PREFIX):].partition(".")
    if not dot or not mac:
        return None
    try:
        return check_name(name)
    except BadRequest:
        return None


def rotate_token(path: Path | None = None) -> str:
    """Replace the token atomically; every client must re-read it."""
    import secrets

    path = path or paths.token_path()
    paths.ensure_private_dir(path.parent)
    tmp = path.with_name(f".token.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    os.replace(tmp, path)
    return read_token(path)


class TokenChecker:
    """Constant-time check of ``Authorization: Bearer``: the owner's token from its
    file, or an agent's credential."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._where = str(path)
        self._stamp: tuple[int, int] | None = None
        self._token = b""
        self._key: str | None = None  # read (or made) when first needed
        import hmac  # the gateway's only: see the module docstring

        self._same = hmac.compare_digest  # constant time
        self.refresh()

    def refresh(self) -> None:
        st = os.stat(self._where)  # on every request: no pathlib in between
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            self._token = read_token(self.path).encode()
            self._stamp = stamp

    def check(self, header: str | None) -> str | None:
        """Refuse a request without a good bearer; return the agent a credential names
        (None for the owner's token)."""
        # keep the last good token if the file is briefly missing
        with contextlib.suppress(OSError, ConfigError):
            self.refresh()
        if not header:
            raise Unauthorized("missing token: send 'Authorization: Bearer <token>' "
                               "(the token is in $XDG_RUNTIME_DIR/csp/token)")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized("wrong token")
        # header text may carry undecodable bytes as surrogates: compare them as bytes
        raw = value.strip().encode("utf-8", "surrogatepass")
        if self._same(raw, self._token):
            return None
        name = self._credential_agent(value.strip())
        if name is None:
            raise Unauthorized("wrong token")
        return name

    def agent_of(self, header: str | None) -> str | None:
        """The agent whose credential ``header`` carries; None for anything else."""
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self._credential_agent(value.strip())

    def issue(self, name: str) -> str:
        """Agent ``name``'s credential, handed to its sidecar at registration."""
        if self._key is None:
            self._key = _ensure_secret(agent_key_path(self.path))
        return agent_credential(name, self._key)

    def _agent_key(self) -> str | None:
        if self._key is None:  # a sidecar may have made it before the gateway needed it
            with contextlib.suppress(ConfigError):
                self._key = read_token(agent_key_path(self.path))
        return self._key

    def _credential_agent(self, value: str) -> str | None:
        name = credential_name(value)
        if name is None:
            return None
        key = self._agent_key()
        if key is None:  # no credential was ever issued
            return None
        good = agent_credential(name, key).encode()
        if self._same(value.encode("utf-8", "surrogatepass"), good):
            return name
        return None


def check_origin(origin: str | None, own: set[str]) -> None:
    """Refuse browsers on foreign pages (DNS rebinding): a present Origin must be ours."""
    if origin is None:
        return
    if origin.rstrip("/").lower() not in own:
        raise Forbidden(f"origin {origin!r} is not allowed")


def own_origins(port: int) -> set[str]:
    return {f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"}
